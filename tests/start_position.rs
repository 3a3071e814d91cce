//! Where shards without a checkpoint start, across restarts, against kinesis-local:
//! - the default start (LATEST) means "what arrives after the table was created", durably: a
//!   graceful restart and a SIGKILL before any segment sealed lose neither the rows consumed
//!   but not sealed nor the records written while the engine was down;
//! - the seed page's config as written (AFTER_SEQUENCE_NUMBER without numbers) runs, starting
//!   where Pinot starts a new table: the oldest record.
//!
//! The SIGKILL case runs the engine in a child process: this test binary, running
//! `latest_child`.

mod common;

use common::*;
use serde_json::Value;
use shoal::{Engine, EngineOptions, ShardState};
use shoal_stream::emulator::Emulator;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR: &str = "SHOAL_START_DIR";
const ENDPOINT: &str = "SHOAL_START_ENDPOINT";

/// A table that seals nothing for an hour and names no start: LATEST.
fn latest_table(name: &str, endpoint: &str) -> Value {
    let mut config = table_config(name, name, endpoint, 1_000_000);
    let streams = config["tableIndexConfig"]["streamConfigs"].as_object_mut().unwrap();
    streams.remove("shardIteratorType");
    config
}

async fn put_range(emulator: &Emulator, stream: &str, ids: std::ops::Range<usize>) {
    let t = now_ms();
    for i in ids {
        emulator.put(stream, &format!("key-{}", i % 37), record(i, t).as_bytes()).await.unwrap();
    }
}

/// Waits until every shard of the table is consuming (its reader holds an iterator).
async fn wait_consuming(engine: &Engine, table: &str, shards: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = engine.table_status(table).unwrap();
        if status.shards.iter().filter(|s| s.state == ShardState::Consuming).count() == shards {
            // The readers' first GetShardIterator is on its way; give it a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "shards consuming: {:?}", status.shards);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids in `table`, sorted.
async fn ids(engine: &Engine, table: &str) -> Vec<i64> {
    let batches = engine.sql(&format!("SELECT id FROM {table} ORDER BY id")).await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
        out.extend(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c).values().iter());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_survives_a_graceful_restart_before_any_seal() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("calm", 2).await.unwrap();
    // Written before the table exists: LATEST never shows them.
    put_range(&emulator, "calm", 0..50).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    engine.create_table(&latest_table("calm", &emulator.endpoint()), &schema("calm")).await.unwrap();
    wait_consuming(&engine, "calm", 2).await;
    put_range(&emulator, "calm", 50..350).await;
    assert_eq!(wait_for_rows(&engine, "calm", 300, Duration::from_secs(60)).await, (300, 300));
    assert_eq!(engine.table_status("calm").unwrap().sealed_rows, 0, "nothing sealed: no checkpoint");
    engine.shutdown().await;
    drop(engine);

    // Written while the engine is down.
    put_range(&emulator, "calm", 350..650).await;
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert_eq!(wait_for_rows(&engine, "calm", 600, Duration::from_secs(60)).await, (600, 600));
    assert_eq!(ids(&engine, "calm").await, (50..650).collect::<Vec<i64>>());
    engine.shutdown().await;
}

/// The child: opens the engine (creating the table the first time), prints the row count
/// every 100 ms, and runs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by latest_survives_a_sigkill_before_any_seal as a child process"]
async fn latest_child() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(DIR), std::env::var(ENDPOINT)) else { return };
    let engine = Engine::open_with(&dir, EngineOptions::default()).await.unwrap();
    if engine.tables().is_empty() {
        engine.create_table(&latest_table("killed", &endpoint), &schema("killed")).await.unwrap();
    }
    wait_consuming(&engine, "killed", 2).await;
    loop {
        let (rows, _) = counts(&engine, "killed").await;
        println!("ROWS {rows}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_survives_a_sigkill_before_any_seal() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("killed", 2).await.unwrap();
    put_range(&emulator, "killed", 0..50).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["latest_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(DIR, dir.path())
        .env(ENDPOINT, emulator.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (rows_tx, mut rows_rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ROWS ").and_then(|n| n.parse::<i64>().ok()) {
                let _ = rows_tx.send(n);
            }
        }
    });
    // The child reports once its shards are consuming; then the records go in.
    let first = tokio::time::timeout(Duration::from_secs(60), rows_rx.recv()).await;
    assert_eq!(first.ok().flatten(), Some(0), "the child consumes from an empty table");
    put_range(&emulator, "killed", 50..350).await;
    loop {
        let rows = tokio::time::timeout(Duration::from_secs(60), rows_rx.recv())
            .await
            .expect("the child reports its rows")
            .expect("the child is alive");
        if rows == 300 {
            break;
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "the child is alive when killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    put_range(&emulator, "killed", 350..650).await;
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert_eq!(engine.table_status("killed").unwrap().sealed_rows, 0, "nothing was sealed before the kill");
    assert_eq!(wait_for_rows(&engine, "killed", 600, Duration::from_secs(60)).await, (600, 600));
    assert_eq!(ids(&engine, "killed").await, (50..650).collect::<Vec<i64>>());
    engine.shutdown().await;
}

/// The seed page's table config exactly as Pinot's docs give it (examples/config/
/// kinesisTable.table.json): AFTER_SEQUENCE_NUMBER and no sequence number. Only the
/// placeholders are filled in, and the emulator's endpoint added. It starts where Pinot
/// starts a new table (each shard's first record) and reads records written before it existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_config_runs_as_written() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("seed", 2).await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config/kinesisTable.table.json");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(r#""shardIteratorType": "AFTER_SEQUENCE_NUMBER""#), "{text}");
    let filled = text
        .replace("<your kinesis stream name>", "seed")
        .replace("<your region>", "us-east-1")
        .replace("<your access key>", "seed-access")
        .replace("<your secret key>", "seed-secret");
    let mut config: Value = serde_json::from_str(&filled).unwrap();
    config["tableIndexConfig"]["streamConfigs"]["endpoint"] = emulator.endpoint().into();
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config/kinesisTable.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let time_column = config["segmentsConfig"]["timeColumnName"].as_str().unwrap().to_string();
    for i in 0..100 {
        let row = serde_json::json!({time_column.clone(): now_ms(), "user": format!("u{i}"), "clicks": i});
        emulator.put("seed", &format!("k{i}"), row.to_string().as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    engine.create_table(&config, &schema).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let batches = engine.sql("SELECT count(*) FROM kinesisTable").await.unwrap();
        let n = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
        let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&n).value(0);
        if n == 100 {
            break;
        }
        assert!(n < 100 && tokio::time::Instant::now() < deadline, "{n} rows of 100");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.shutdown().await;
}
