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

/// Throttling while a lost segment's rows are read again is normal: the re-read waits for the
/// stream, however long, and ends only on the stream's word (the segment's last record reached),
/// never PARTIAL because a minute passed without records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_reread_waits_and_restores_every_row() {
    use shoal_stream::emulator::{FaultProxy, Faults};
    let emulator =
        shoal_stream::emulator::Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("slowly", 1).await.unwrap();
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Small pages, one call a second: the re-read of a 400-row segment takes several pages.
    let mut config = table_config("slowly", "slowly", &proxy.endpoint(), 400);
    config["tableIndexConfig"]["streamConfigs"]["maxRecordsToFetch"] = "50".into();
    config["tableIndexConfig"]["streamConfigs"]["requests_per_second_limit"] = "1".into();
    let engine = Engine::open_with(dir.path(), shoal::EngineOptions::default()).await.unwrap();
    engine.create_table(&config, &schema("slowly")).await.unwrap();
    let t = now_ms();
    for i in 0..800 {
        emulator.put("slowly", "k", record(i, t).as_bytes()).await.unwrap();
    }
    assert_eq!(wait_for_rows(&engine, "slowly", 800, Duration::from_secs(120)).await, (800, 800));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.table_status("slowly").unwrap().sealed_rows < 800 {
        assert!(tokio::time::Instant::now() < deadline, "both segments sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let victim = engine.table_status("slowly").unwrap().segments[1].clone();
    engine.shutdown().await;
    drop(engine);
    let path = dir.path().join("tables/slowly/segments").join(format!("{}.seg", victim.name));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let engine = Engine::open_with(dir.path(), shoal::EngineOptions::default()).await.unwrap();
    // Once the first pages are back, every GetRecords call is throttled for over a minute.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let q = engine.table_status("slowly").unwrap().quarantined;
        if q[0].state == QuarantineState::Rereading && q[0].rows_restored > 0 {
            assert!(q[0].rows_restored < victim.rows, "the throttling starts mid-way: {q:?}");
            proxy.set(Faults { throttle: 1.0, ..Faults::default() });
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "re-read started: {q:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let throttled_from = proxy.counts().throttled;
    tokio::time::sleep(Duration::from_secs(65)).await;
    let q = engine.table_status("slowly").unwrap().quarantined;
    assert_eq!(q[0].state, QuarantineState::Rereading, "still waiting for the stream: {q:?}");
    assert!(proxy.counts().throttled > throttled_from, "the stream was throttling");
    proxy.set(Faults::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let q = engine.table_status("slowly").unwrap().quarantined;
        assert_ne!(q[0].state, QuarantineState::Partial, "{q:?}");
        if q[0].state == QuarantineState::Restored {
            assert_eq!(q[0].rows_restored, victim.rows);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "restored: {q:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counts(&engine, "slowly").await, (800, 800));
    engine.shutdown().await;
}
