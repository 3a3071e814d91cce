//! The ingest loops under pressure, against kinesis-local:
//! - over the table's memory cap, the largest consuming segment seals, not the one of the shard
//!   that happens to be appending (which would make a storm of tiny segments);
//! - an ingest task that panics is counted and started again from the shard's last commit:
//!   every record once, none twice (a reader handed out again resumes from the last commit,
//!   not from where the engine started);
//! - a full segment seals in the background: the shard's next records are queryable while
//!   its file is written and committed, each row once;
//! - a task that panics while its seal is under way waits for that seal, and its shard
//!   resumes after what the seal committed: nothing is read twice.
//!
//! Faults are injected with the `fault-injection` feature, which only tests build.

mod common;

use common::*;
use shoal::{Engine, EngineOptions, Faults};
use shoal_stream::emulator::Emulator;
use std::sync::Arc;
use std::time::Duration;

/// The shards of `stream`, each with the first hash key it owns.
async fn shards(emulator: &Emulator, stream: &str) -> Vec<(String, String)> {
    let out = emulator.client().list_shards().stream_name(stream).send().await.unwrap();
    out.shards()
        .iter()
        .map(|s| (s.shard_id().to_string(), s.hash_key_range().unwrap().starting_hash_key().to_string()))
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A table over a stream of two shards, the first ("big") holding 1,000 records already
/// consumed, the second ("small") none: each shard's id and a hash key that reaches it.
async fn big_and_small(
    stream: &str,
    options: EngineOptions,
) -> (Emulator, (String, String), (String, String), tempfile::TempDir, Engine) {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream(stream, 2).await.unwrap();
    let mut shards = shards(&emulator, stream).await;
    let small = shards.remove(1);
    let big = shards.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), options).await.unwrap();
    engine
        .create_table(&table_config(stream, stream, &emulator.endpoint(), 1_000_000), &schema(stream))
        .await
        .unwrap();
    put_ids(&emulator, stream, 0..1000, now_ms(), |_| "k".to_string(), Some(&big.1)).await;
    assert_eq!(wait_for_rows(&engine, stream, 1000, Duration::from_secs(60)).await, (1000, 1000));
    (emulator, big, small, dir, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_cap_the_largest_consuming_segment_seals() {
    // Before anything freezes, a consuming segment estimates half its records' JSON bytes:
    // 1,000 records of about 55 bytes are about 27 KB, under the cap; 400 more on the other
    // shard take the table over it.
    let options = EngineOptions::default().with_consuming_memory_cap(32 << 10);
    let (emulator, big, small, _dir, engine) = big_and_small("capped", options).await;
    assert!(engine.table_status("capped").unwrap().segments.is_empty(), "under the cap nothing seals");
    // The small shard's records arrive a few at a time, each batch taking the table further
    // over the cap.
    for n in 0..60 {
        let from = 1000 + n * 20;
        put_ids(&emulator, "capped", from..from + 20, now_ms(), |_| "k".to_string(), Some(&small.1)).await;
        wait_for_rows(&engine, "capped", (from + 20) as i64, Duration::from_secs(30)).await;
        if !engine.table_status("capped").unwrap().segments.is_empty() {
            break;
        }
    }
    let engine_ref = &engine;
    wait_until("a seal", Duration::from_secs(30), || {
        !engine_ref.table_status("capped").unwrap().segments.is_empty()
    })
    .await;
    let status = engine.table_status("capped").unwrap();
    assert_eq!(status.segments.len(), 1, "one seal: {:?}", status.segments);
    assert_eq!(&status.segments[0].shard, &big.0, "the largest segment sealed: {:?}", status.segments);
    assert_eq!(status.segments[0].rows, 1000);
    let small_status = status.shards.iter().find(|s| s.shard == small.0).unwrap();
    assert!(small_status.consuming_rows > 0, "the appending shard keeps consuming: {small_status:?}");
    let (rows, distinct) = counts(&engine, "capped").await;
    assert_eq!(rows, distinct);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_ingest_task_restarts_from_the_last_commit() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("panicky", 1).await.unwrap();
    let shard = shards(&emulator, "panicky").await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let options =
        EngineOptions::default().with_faults(Arc::new(Faults::default().panic_once_on("\"id\": 777,")));
    let engine = Engine::open_with(dir.path(), options).await.unwrap();
    engine
        .create_table(&table_config("panicky", "panicky", &emulator.endpoint(), 100), &schema("panicky"))
        .await
        .unwrap();
    // Several segments commit after the engine started; then record 777 makes the task panic.
    put_ids(&emulator, "panicky", 0..750, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    assert_eq!(wait_for_rows(&engine, "panicky", 750, Duration::from_secs(60)).await, (750, 750));
    let engine_ref = &engine;
    wait_until("7 segments", Duration::from_secs(30), || {
        engine_ref.table_status("panicky").unwrap().sealed_rows == 700
    })
    .await;
    put_ids(&emulator, "panicky", 750..1000, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    assert_eq!(wait_for_rows(&engine, "panicky", 1000, Duration::from_secs(60)).await, (1000, 1000));
    let status = engine.table_status("panicky").unwrap();
    let s = &status.shards[0];
    assert_eq!(s.restarts, 1, "{s:?}");
    assert!(s.last_panic.as_deref().is_some_and(|p| p.contains("injected fault")), "{s:?}");
    let metrics = engine.metrics().prometheus();
    assert!(metrics.contains("shoal_ingest_panics_total{table=\"panicky\"} 1"), "{metrics}");
    // Nothing twice, also once the rest seals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counts(&engine, "panicky").await, (1000, 1000));
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert_eq!(wait_for_rows(&engine, "panicky", 1000, Duration::from_secs(60)).await, (1000, 1000));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_keeps_consuming_while_its_full_segment_seals() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("busy", 1).await.unwrap();
    let shard = shards(&emulator, "busy").await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    // Each seal holds its commit for 12 s: the rows that arrive meanwhile must not wait for it.
    let faults = Faults::default().pause_before_commit(Duration::from_secs(12));
    let engine =
        Engine::open_with(dir.path(), EngineOptions::default().with_faults(Arc::new(faults))).await.unwrap();
    engine
        .create_table(&table_config("busy", "busy", &emulator.endpoint(), 500), &schema("busy"))
        .await
        .unwrap();
    put_ids(&emulator, "busy", 0..500, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    assert_eq!(wait_for_rows(&engine, "busy", 500, Duration::from_secs(30)).await, (500, 500));
    put_ids(&emulator, "busy", 500..700, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    // Queryable while the full segment is still being sealed: each row once, in the sealing
    // segment or the next one.
    assert_eq!(wait_for_rows(&engine, "busy", 700, Duration::from_secs(10)).await, (700, 700));
    let status = engine.table_status("busy").unwrap();
    assert!(status.segments.is_empty(), "the seal has not committed yet: {:?}", status.segments);
    assert_eq!(status.consuming_rows, 700, "{status:?}");
    assert_eq!(status.shards[0].consuming_rows, 700, "{status:?}");
    let engine_ref = &engine;
    wait_until("the seal", Duration::from_secs(60), || {
        engine_ref.table_status("busy").unwrap().sealed_rows == 500
    })
    .await;
    let status = engine.table_status("busy").unwrap();
    assert_eq!((status.segments.len(), status.consuming_rows), (1, 200), "{status:?}");
    assert_eq!(counts(&engine, "busy").await, (700, 700));
    // The commit moved the checkpoint to the sealed segment's last record: a restart reads
    // the other 200 again, and nothing twice.
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert_eq!(wait_for_rows(&engine, "busy", 700, Duration::from_secs(60)).await, (700, 700));
    assert_eq!(engine.table_status("busy").unwrap().sealed_rows, 500);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_a_seal_is_under_way_reads_nothing_twice() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("torn", 1).await.unwrap();
    let shard = shards(&emulator, "torn").await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    // Record 650 arrives while the seal of records 0..500 holds its commit for 5 s, and makes
    // the ingest task panic. The new task must resume after what that seal commits.
    let faults = Faults::default().pause_before_commit(Duration::from_secs(5)).panic_once_on("\"id\": 650,");
    let engine =
        Engine::open_with(dir.path(), EngineOptions::default().with_faults(Arc::new(faults))).await.unwrap();
    engine
        .create_table(&table_config("torn", "torn", &emulator.endpoint(), 500), &schema("torn"))
        .await
        .unwrap();
    put_ids(&emulator, "torn", 0..500, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    assert_eq!(wait_for_rows(&engine, "torn", 500, Duration::from_secs(30)).await, (500, 500));
    put_ids(&emulator, "torn", 500..700, now_ms(), |_| "k".to_string(), Some(&shard.1)).await;
    assert_eq!(wait_for_rows(&engine, "torn", 700, Duration::from_secs(60)).await, (700, 700));
    let status = engine.table_status("torn").unwrap();
    assert_eq!(status.shards[0].restarts, 1, "{status:?}");
    assert_eq!(status.sealed_rows, 500, "{status:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counts(&engine, "torn").await, (700, 700));
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    assert_eq!(wait_for_rows(&engine, "torn", 700, Duration::from_secs(60)).await, (700, 700));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_cap_a_largest_segment_still_sealing_is_waited_for() {
    // As in the test above, but every commit is held 10 s: while the big segment is being
    // sealed the table stays over the cap, and the small shard must not seal itself instead.
    let options = EngineOptions::default()
        .with_consuming_memory_cap(32 << 10)
        .with_faults(Arc::new(Faults::default().pause_before_commit(Duration::from_secs(10))));
    let (emulator, big, small, _dir, engine) = big_and_small("held", options).await;
    // The small shard's records, 20 at a time: at about 400 the table goes over the cap and the
    // big segment is handed off to seal; the rest arrive while its commit is held. 800 records
    // alone stay under the cap.
    let mut from = 1000;
    while from < 1800 {
        put_ids(&emulator, "held", from..from + 20, now_ms(), |_| "k".to_string(), Some(&small.1)).await;
        from += 20;
        assert_eq!(wait_for_rows(&engine, "held", from as i64, Duration::from_secs(30)).await.0, from as i64);
    }
    let engine_ref = &engine;
    wait_until("the big seal", Duration::from_secs(60), || {
        !engine_ref.table_status("held").unwrap().segments.is_empty()
    })
    .await;
    // Long enough for any other seal started meanwhile to commit too.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let status = engine.table_status("held").unwrap();
    assert_eq!(status.segments.len(), 1, "one seal, the big one: {:?}", status.segments);
    assert_eq!((&status.segments[0].shard, status.segments[0].rows), (&big.0, 1000));
    assert_eq!(counts(&engine, "held").await, (from as i64, from as i64));
    engine.shutdown().await;
}
