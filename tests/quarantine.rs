//! Corrupted sealed files found at startup: quarantined with an error naming them, the table
//! serves the rest at once, and the lost rows are read again from the stream, which still
//! retains them, and committed as new segments: every row back, none twice, across restarts.

mod common;

use common::*;
use shoal::{Engine, QuarantineState, ShardState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segments_are_quarantined_and_their_rows_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("q", 2);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table_config("q", "q", "http://unused", 500), &schema("q")).await.unwrap();
    let t = now_ms();
    for i in 0..4000 {
        stream.put_by_key(&format!("k{}", i % 37), record(i, t));
    }
    assert_eq!(wait_for_rows(&engine, "q", 4000, Duration::from_secs(60)).await, (4000, 4000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.table_status("q").unwrap().sealed_rows < 3000 {
        assert!(tokio::time::Instant::now() < deadline, "segments sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let segments = engine.table_status("q").unwrap().segments;
    engine.shutdown().await;
    drop(engine);

    // Damage two segments of different shards: one cut short, one with a flipped byte in its
    // trailer.
    let segments_dir = dir.path().join("tables/q/segments");
    let by_shard = |shard: &str| segments.iter().find(|s| s.shard == shard).unwrap().name.clone();
    let shards: Vec<String> = segments
        .iter()
        .map(|s| s.shard.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(shards.len(), 2, "both shards sealed segments");
    let cut = by_shard(&shards[0]);
    let flipped = by_shard(&shards[1]);
    let file = |name: &str| segments_dir.join(format!("{name}.seg"));
    let bytes = std::fs::read(file(&cut)).unwrap();
    std::fs::write(file(&cut), &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = std::fs::read(file(&flipped)).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x40;
    std::fs::write(file(&flipped), &bytes).unwrap();

    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    let status = engine.table_status("q").unwrap();
    assert_eq!(status.quarantined.len(), 2, "{:?}", status.quarantined);
    for q in &status.quarantined {
        assert!(q.reason.contains(&q.file), "the error names the file: {}", q.reason);
        assert!(dir.path().join("tables/q/quarantine").join(&q.file).exists());
        assert!(!segments_dir.join(&q.file).exists());
    }
    // The rows come back from the stream; nothing is counted twice on the way.
    assert_eq!(wait_for_rows(&engine, "q", 4000, Duration::from_secs(60)).await, (4000, 4000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = engine.table_status("q").unwrap();
        if status.quarantined.iter().all(|q| q.state == QuarantineState::Restored) {
            for q in &status.quarantined {
                assert_eq!(q.rows_restored, q.rows, "{q:?}");
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "re-read: {:?}", status.quarantined);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await;
    drop(engine);

    // After a restart: nothing left to re-read, every row once.
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert!(engine.table_status("q").unwrap().quarantined.is_empty());
    assert_eq!(wait_for_rows(&engine, "q", 4000, Duration::from_secs(60)).await, (4000, 4000));
    engine.shutdown().await;
}

/// The same against kinesis-local, with the lost segment on a shard that was split (closed)
/// since: its rows are read again from the closed shard through GetShardIterator
/// AFTER_SEQUENCE_NUMBER and GetRecords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_segment_is_read_again_from_kinesis() {
    let emulator =
        shoal_stream::emulator::Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("lost", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), shoal::EngineOptions::default()).await.unwrap();
    let config = table_config("lost", "lost", &emulator.endpoint(), 400);
    engine.create_table(&config, &schema("lost")).await.unwrap();
    write_with_reshards(&emulator, "lost", 3000).await;
    assert_eq!(wait_for_rows(&engine, "lost", 3000, Duration::from_secs(120)).await, (3000, 3000));
    let status = engine.table_status("lost").unwrap();
    let ended: Vec<&str> =
        status.shards.iter().filter(|s| s.state == ShardState::Ended).map(|s| s.shard.as_str()).collect();
    let victim = status
        .segments
        .iter()
        .filter(|s| ended.contains(&s.shard.as_str()))
        .nth(1)
        .or_else(|| status.segments.iter().find(|s| ended.contains(&s.shard.as_str())))
        .expect("a segment of a closed shard")
        .clone();
    engine.shutdown().await;
    drop(engine);
    let path = dir.path().join("tables/lost/segments").join(format!("{}.seg", victim.name));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();

    let engine = Engine::open_with(dir.path(), shoal::EngineOptions::default()).await.unwrap();
    let quarantined = engine.table_status("lost").unwrap().quarantined;
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].reason.contains(&quarantined[0].file), "{}", quarantined[0].reason);
    assert_eq!(wait_for_rows(&engine, "lost", 3000, Duration::from_secs(120)).await, (3000, 3000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.table_status("lost").unwrap().quarantined[0].state != QuarantineState::Restored {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            engine.table_status("lost").unwrap().quarantined
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(engine.table_status("lost").unwrap().quarantined[0].rows_restored, victim.rows);
    engine.shutdown().await;
}
