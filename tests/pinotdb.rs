//! The real `pinotdb` client (PyPI, pinned in tests/clients/requirements.txt, installed by
//! scripts/test.sh) against the server: a count, a group-by and string filters through
//! `pinotdb.connect(...)`, with the auth token as an extra header, with `preserve_types=True`
//! (an OPTION clause on every query) and `use_multistage_engine=True` (`queryOptions` in the
//! body), give the values computed here from the rows written.

mod common;
mod server;

use common::*;
use serde_json::{Value, json};
use server::*;
use shoal_stream::emulator::Emulator;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "pinotdb-token";
const ROWS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinotdb_queries_give_the_rows_written() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("clicks", 2).await.unwrap();
    let t = now_ms();
    for i in 0..ROWS {
        emulator.put("clicks", &format!("k{i}"), record(i, t).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("clicks", "clicks", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table, &schema("clicks"), &["--auth-token", TOKEN]);
        let started = Instant::now();
        while count(&server, Some(TOKEN), "clicks") != ROWS as i64 {
            assert!(started.elapsed() < Duration::from_secs(60), "{ROWS} rows within a minute");
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = Command::new("python3")
            .arg("tests/clients/pinotdb_check.py")
            .args(["127.0.0.1", &server.port.to_string(), TOKEN, "clicks"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("python3 is needed (scripts/test.sh checks for it)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "pinotdb_check.py: {}\n{stdout}\n{stderr}", out.status);
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
    })
    .await
    .unwrap();

    // The version the requirements file pins is the one that ran.
    let pinned = include_str!("clients/requirements.txt")
        .lines()
        .find_map(|l| l.trim().strip_prefix("pinotdb=="))
        .expect("pinotdb==VERSION in tests/clients/requirements.txt");
    assert_eq!(out["version"], pinned, "{out}");

    // Expected values from the rows written: id i, key "key-{i % 37}".
    let rows: Vec<(usize, String)> = (0..ROWS).map(|i| (i, format!("key-{}", i % 37))).collect();
    let mut groups: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for (id, key) in &rows {
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += *id as f64;
    }
    assert_eq!(out["count"], json!({"columns": ["n"], "rows": [[ROWS]]}));
    assert_eq!(out["group_by"]["columns"], json!(["key", "n", "total"]));
    let got: Vec<(String, u64, f64)> = out["group_by"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap(), r[2].as_f64().unwrap()))
        .collect();
    let expected: Vec<(String, u64, f64)> =
        groups.iter().map(|(k, (n, s))| (k.to_string(), *n, *s)).collect();
    assert_eq!(got, expected, "{out}");
    let five: Vec<usize> = rows.iter().filter(|(_, k)| k == "key-5").map(|(i, _)| *i).collect();
    let lo_hi = &out["equals"]["rows"][0];
    assert_eq!(out["equals"]["columns"], json!(["n", "lo", "hi"]));
    assert_eq!(lo_hi[0].as_u64(), Some(five.len() as u64), "{out}");
    assert_eq!(lo_hi[1].as_f64(), Some(five[0] as f64), "{out}");
    assert_eq!(lo_hi[2].as_f64(), five.last().map(|&i| i as f64), "{out}");
    let like = rows.iter().filter(|(_, k)| k.starts_with("key-1")).count();
    assert_eq!(out["like"], json!({"columns": ["n"], "rows": [[like]]}));
    assert_eq!(out["unknown_table"], "DatabaseError", "{out}");
    // Pinot's default limit (pinot.broker.default.query.limit, 10) for a selection without one.
    assert_eq!(out["no_limit"], 10, "{out}");
    // preserve_types=True and use_multistage_engine=True: their OPTION(...) and queryOptions
    // are read. SUM is DOUBLE (pinot-core SumAggregationFunction.java): ids 0..199 sum to 19,900.
    assert_eq!(out["preserve_types"]["columns"], json!(["n", "total"]), "{out}");
    assert_eq!(out["preserve_types"]["rows"][0][0], ROWS, "{out}");
    assert_eq!(out["preserve_types"]["rows"][0][1].as_f64(), Some(19_900.0), "{out}");
    // COUNT is named count(*) (pinot-core CountAggregationFunction.java); key-0 has ids 0, 37,
    // ..., 185 (6 rows), key-1 ids 1, ..., 186 (6 rows).
    assert_eq!(
        out["preserve_types_group_by"],
        json!({"columns": ["key", "count(*)"], "rows": [["key-0", 6], ["key-1", 6]]}),
        "{out}"
    );
    assert_eq!(out["multistage"], json!({"columns": ["n"], "rows": [[ROWS]]}), "{out}");
}
