//! The benchmark queries give the same results as DuckDB over the same rows.
//! Needs python3 with the duckdb package (scripts/test.sh installs it).

mod common;

use common::*;
use serde_json::Value;
use shoal_query::QueryOptions;
use std::io::Write;
use std::process::{Command, Stdio};

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

#[tokio::test]
async fn benchmark_queries_match_duckdb() {
    // 1M rows: nine sealed segments of 100,000 and 100,000 consuming.
    let (engine, _t, events, dir) = events_table(9, 100_000, 100_000, QueryOptions::default());
    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(&ndjson, events.join("\n") + "\n").unwrap();
    let ts = |i: usize| serde_json::from_str::<Value>(&events[i]).unwrap()["timestamp"].as_i64().unwrap();
    let (t0, t1) = (ts(150_000), ts(420_000));
    let queries: Vec<Value> =
        serde_json::from_str(include_str!("../../../benches/compare/queries.json")).unwrap();
    let rows = events.len();
    let fill = |sql: &str| shoal_segment::events::fill_query(sql, t0, t1, rows);

    let request = serde_json::json!({
        "ndjson": ndjson,
        "queries": queries.iter().map(|q| fill(q["duckdb"].as_str().unwrap())).collect::<Vec<_>>(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/compare/duckdb_queries.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the DuckDB comparison");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "DuckDB failed (install it with `pip install -r benches/compare/requirements.txt`, which scripts/test.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: Value = serde_json::from_slice(&out.stdout).unwrap();

    for (i, q) in queries.iter().enumerate() {
        let sql = fill(q["shoal"].as_str().unwrap());
        let response = shoal_server::broker::answer_query(&engine, &sql).await;
        assert!(response.exceptions.is_empty(), "{sql}: {:?}", response.exceptions);
        let ours = response.result_table.unwrap().rows;
        let theirs = duck["results"][i].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{}: row count", q["name"]);
        for (a, b) in ours.iter().zip(theirs) {
            let b = b.as_array().unwrap();
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!(close(x, y), "{}: {a:?} vs {b:?}", q["name"]);
            }
        }
    }
}
