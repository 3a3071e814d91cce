//! Upsert against kinesis-local: versions of 37 keys written through a split and a merge, all
//! with the same comparison value (the time column), so that only the order in which they are
//! consumed decides which is the latest. Kinesis keeps a partition key's records in order within
//! a shard, and Shoal reads a split's or merge's children only after their parents: so the last
//! version written must win, for every key, live, across seals, and after SIGKILLs.

mod common;

use arrow::array::AsArray;
use common::*;
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions, Faults};
use shoal_stream::emulator::Emulator;
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "SHOAL_UPSERT_DIR";
const ENDPOINT: &str = "SHOAL_UPSERT_ENDPOINT";

/// `common::schema` with `key` as primary key; `common::record(id, t)` gives 37 keys, and
/// `write_with_reshards` puts every record with the same `ts` and its key as partition key.
fn upsert_schema(name: &str) -> Value {
    let mut s = schema(name);
    s["primaryKeyColumns"] = json!(["key"]);
    s
}

fn upsert_table(name: &str, endpoint: &str, rows: u64) -> Value {
    let mut t = table_config(name, name, endpoint, rows);
    // FULL; the comparison column is the time column, the same for every record.
    t["upsertConfig"] = json!({});
    t
}

/// The visible rows as (key, id), and the count of all versions (skipUpsert).
///
/// The count is taken first: versions arrive between the two queries, and rows read after a
/// count of every version hold every version (rows read first could miss the last versions that
/// the count then sees).
async fn visible(engine: &Engine, table: &str) -> (Vec<(String, i64)>, i64) {
    let all = engine.sql(&format!("SET skipUpsert = true; SELECT count(*) FROM {table}")).await.unwrap();
    let all = arrow::compute::cast(all[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    let all = all.as_primitive::<arrow::datatypes::Int64Type>().value(0);
    let batches = engine.sql(&format!("SELECT key, id FROM {table} ORDER BY key")).await.unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let keys = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let ids = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64).unwrap();
        for r in 0..b.num_rows() {
            rows.push((
                keys.as_string::<i32>().value(r).to_string(),
                ids.as_primitive::<arrow::datatypes::Int64Type>().value(r),
            ));
        }
    }
    (rows, all)
}

/// Each key's last version among ids 0..total: the largest id of its residue mod 37.
fn expected(total: usize) -> Vec<(String, i64)> {
    let mut last: Vec<(String, i64)> =
        (0..37).map(|k| (format!("key-{k}"), ((total - 1 - k) / 37 * 37 + k) as i64)).collect();
    last.sort();
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_version_wins_through_seals_a_split_and_a_merge() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("ups", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    engine
        .create_table(&upsert_table("ups", &emulator.endpoint(), 500), &upsert_schema("ups"))
        .await
        .unwrap();
    const TOTAL: usize = 6000;
    let writer =
        async { write_with_reshards_paced(&emulator, "ups", TOTAL, Duration::from_millis(150)).await };
    // While versions arrive and segments seal, a key is never seen twice and, once seen,
    // never missing.
    let watcher = async {
        let mut seen = 0;
        loop {
            let (rows, all) = visible(&engine, "ups").await;
            let mut keys: Vec<&String> = rows.iter().map(|(k, _)| k).collect();
            keys.dedup();
            assert_eq!(keys.len(), rows.len(), "a key seen twice: {rows:?}");
            assert!(rows.len() >= seen, "a key went missing: {} after {seen}", rows.len());
            seen = rows.len();
            if all == TOTAL as i64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, watched) = tokio::join!(writer, tokio::time::timeout(Duration::from_secs(240), watcher));
    watched.expect("every version consumed within 4 minutes");
    let (rows, all) = visible(&engine, "ups").await;
    assert_eq!(all, TOTAL as i64);
    assert_eq!(rows, expected(TOTAL));
    let status = engine.table_status("ups").unwrap();
    assert!(status.segments.len() >= 8, "sealed every 500 rows: {}", status.segments.len());
    assert_eq!(status.upsert.as_ref().unwrap().keys, 37);
    engine.shutdown().await;
    drop(engine);
    // The map rebuilt from the sealed rows at open gives the same view.
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, all) = visible(&engine, "ups").await;
        if all == TOTAL as i64 {
            assert_eq!(rows, expected(TOTAL));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all} versions after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await;
}

/// The child of the SIGKILL test: opens the engine (creating the table the first time) and
/// consumes until killed. Each seal waits 300 ms before its commit, a window to be killed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by upsert_survives_sigkills as a child process"]
async fn upsert_child() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(DIR), std::env::var(ENDPOINT)) else { return };
    let faults = Faults::default().pause_before_commit(Duration::from_millis(300));
    let options = EngineOptions::default().with_faults(Arc::new(faults));
    let engine = Engine::open_with(&dir, options).await.unwrap();
    if engine.tables().is_empty() {
        engine.create_table(&upsert_table("killed", &endpoint, 400), &upsert_schema("killed")).await.unwrap();
    }
    println!("CHILD STARTED");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_survives_sigkills() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("killed", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    const TOTAL: usize = 8000;
    const KILLS: usize = 6;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (emulator, writing) = (&emulator, Arc::clone(&writing));
        async move {
            write_with_reshards_paced(emulator, "killed", TOTAL, Duration::from_millis(700)).await;
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let endpoint = emulator.endpoint();
    let killer = async {
        let mut seed = now_ms() as u64 | 1;
        let mut mid_write = 0;
        for kill in 0..KILLS {
            let env = [(DIR, dir.path().as_os_str()), (ENDPOINT, endpoint.as_ref())];
            let mut child = Child::start(&exe, "upsert_child", &env);
            assert!(
                child.wait_for("CHILD STARTED", 0, Duration::from_secs(60)).await,
                "kill {kill}: the child starts:\n{}",
                child.tail()
            );
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            tokio::time::sleep(Duration::from_millis(800 + seed % 2500)).await;
            mid_write += usize::from(writing.load(std::sync::atomic::Ordering::SeqCst));
            assert!(child.kill(), "kill {kill}: the child was alive:\n{}", child.tail());
        }
        mid_write
    };
    let ((), mid_write) = tokio::join!(writer, killer);
    assert!(mid_write >= KILLS / 2, "most kills fall while versions are written: {mid_write}");
    // A last start, in this process, runs to the end: every version once, each key's last one
    // visible.
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let (rows, all) = visible(&engine, "killed").await;
        assert!(all <= TOTAL as i64, "a version stored twice: {all}");
        if all == TOTAL as i64 {
            assert_eq!(rows, expected(TOTAL), "after {KILLS} kills");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all} of {TOTAL} versions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.shutdown().await;
}
