//! Damage inside a sealed segment's data (a flipped bit in the Arrow body, which opening does
//! not read) is found and handled, against kinesis-local:
//! - by the background scrub after open: the segment is quarantined and its rows read again
//!   from the stream, before any query meets it;
//! - by a query, when the scrub is off: the query answers from the other segments and says
//!   which one it left out (Pinot's error 235, a partial result), and the table quarantines the
//!   segment and restores its rows, so that the next query is whole again.

mod common;

use common::*;
use shoal::{Engine, EngineOptions, QuarantineState};
use shoal_stream::emulator::Emulator;
use std::path::Path;
use std::time::Duration;

/// A table `name` over a 2-shard stream with 1,200 rows sealed in segments of 200 (and none
/// consuming), stopped. Returns the data directory and the segments' file names.
async fn sealed_table(emulator: &Emulator, name: &str) -> (tempfile::TempDir, Vec<String>) {
    emulator.create_stream(name, 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    engine.create_table(&table_config(name, name, &emulator.endpoint(), 200), &schema(name)).await.unwrap();
    // 600 per shard: 3 segments of 200 each, nothing left consuming.
    let shards = emulator.client().list_shards().stream_name(name).send().await.unwrap();
    let t = now_ms();
    for (s, shard) in shards.shards().iter().enumerate() {
        let key = shard.hash_key_range().unwrap().starting_hash_key().to_string();
        for i in 0..600 {
            let id = s * 600 + i;
            emulator
                .client()
                .put_record()
                .stream_name(name)
                .partition_key("k")
                .explicit_hash_key(&key)
                .data(aws_sdk_kinesis::primitives::Blob::new(record(id, t)))
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(wait_for_rows(&engine, name, 1200, Duration::from_secs(120)).await, (1200, 1200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.table_status(name).unwrap().sealed_rows < 1200 {
        assert!(tokio::time::Instant::now() < deadline, "every row sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files =
        engine.table_status(name).unwrap().segments.iter().map(|s| format!("{}.seg", s.name)).collect();
    engine.shutdown().await;
    (dir, files)
}

/// Flips one bit in the middle of a segment's Arrow data: its trailer, metadata and IPC footer
/// stay intact, so opening it succeeds; only reading its data finds the damage.
fn flip_a_data_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let trailer = bytes.len() - 56;
    let ipc_len = u64::from_le_bytes(bytes[trailer + 16..trailer + 24].try_into().unwrap()) as usize;
    bytes[ipc_len / 2] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
}

async fn wait_restored(engine: &Engine, table: &str, file: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let quarantined = engine.table_status(table).unwrap().quarantined;
        if let Some(q) = quarantined.iter().find(|q| q.file == file)
            && q.state == QuarantineState::Restored
        {
            assert_eq!(q.rows_restored, q.rows, "{q:?}");
            assert!(q.reason.contains("data checksum mismatch"), "{q:?}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "restored: {quarantined:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_finds_a_flipped_data_bit_and_the_rows_come_back() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    let (dir, files) = sealed_table(&emulator, "scrubbed").await;
    let victim = &files[1];
    flip_a_data_bit(&dir.path().join("tables/scrubbed/segments").join(victim));

    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert!(engine.table_status("scrubbed").unwrap().quarantined.is_empty(), "opening reads no data");
    wait_restored(&engine, "scrubbed", victim).await;
    assert!(dir.path().join("tables/scrubbed/quarantine").join(victim).exists());
    let status = engine.table_status("scrubbed").unwrap();
    assert!(
        status.segments.iter().all(|s| format!("{}.seg", s.name) != *victim),
        "the damaged segment is out"
    );
    assert_eq!(status.sealed_rows, 1200, "its rows are back in a new segment");
    let originals: Vec<_> =
        status.segments.iter().filter(|s| files.contains(&format!("{}.seg", s.name))).collect();
    assert_eq!(originals.len(), files.len() - 1);
    assert!(originals.iter().all(|s| s.verified), "the scrub read every segment: {originals:?}");
    assert_eq!(counts(&engine, "scrubbed").await, (1200, 1200));
    let metrics = engine.metrics().prometheus();
    assert!(metrics.contains("shoal_segments_quarantined_total{table=\"scrubbed\"} 1"), "{metrics}");
    engine.shutdown().await;
    drop(engine);

    // After a restart: nothing lost, nothing twice, nothing left to re-read.
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert!(engine.table_status("scrubbed").unwrap().quarantined.is_empty());
    assert_eq!(counts(&engine, "scrubbed").await, (1200, 1200));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_leaves_out_a_damaged_segment_says_so_and_the_rows_come_back() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    let (dir, files) = sealed_table(&emulator, "queried").await;
    let victim = &files[2];
    flip_a_data_bit(&dir.path().join("tables/queried/segments").join(victim));

    let options = EngineOptions::default().with_scrub(None);
    let engine = Engine::open_with(dir.path(), options.clone()).await.unwrap();
    let answer = shoal_server::broker::answer(&engine, "SELECT count(*) FROM queried").await;
    assert_eq!(answer.exceptions.len(), 1, "{answer:?}");
    assert_eq!(answer.exceptions[0].error_code, 235, "Pinot's SERVER_SEGMENT_MISSING: {answer:?}");
    assert!(answer.exceptions[0].message.contains(victim.as_str()), "names the segment: {answer:?}");
    assert!(answer.partial_result);
    let rows = answer.result_table.as_ref().unwrap().rows[0][0].as_i64().unwrap();
    assert_eq!(rows, 1000, "the other segments answer: {answer:?}");

    wait_restored(&engine, "queried", victim).await;
    let answer = shoal_server::broker::answer(&engine, "SELECT count(*) FROM queried").await;
    assert!(answer.exceptions.is_empty(), "{answer:?}");
    assert!(!answer.partial_result);
    assert_eq!(answer.result_table.as_ref().unwrap().rows[0][0].as_i64().unwrap(), 1200);
    assert_eq!(counts(&engine, "queried").await, (1200, 1200));
    engine.shutdown().await;
}
