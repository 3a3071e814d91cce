//! The disk fills up during a seal. The limit is real: the process's file size limit
//! (RLIMIT_FSIZE) is lowered below a segment's size, so the kernel refuses the segment file's
//! writes (EFBIG) while the small manifest still fits. The shard must pause (nothing more read,
//! its rows still queryable), say why in the status and the metrics, leave no partial file, keep
//! the last commit, and resume by itself once the limit is lifted.
//!
//! This file holds one test on purpose: the limit applies to the whole test process.

mod common;

use common::*;
use shoal::{Engine, ShardState};
use std::time::Duration;

/// Lowers the process's file size limit; restores it when dropped (also on a failed assert).
struct FileSizeLimit(libc::rlimit);

impl FileSizeLimit {
    fn set(bytes: u64) -> FileSizeLimit {
        // SAFETY: plain libc calls with valid pointers; ignoring SIGXFSZ makes an over-limit
        // write fail with EFBIG instead of killing the process.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let mut old = std::mem::zeroed::<libc::rlimit>();
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
            let new = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: old.rlim_max };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &new), 0);
            FileSizeLimit(old)
        }
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        // SAFETY: restores the limit read in `set`, which is within the hard limit.
        unsafe {
            libc::setrlimit(libc::RLIMIT_FSIZE, &self.0);
        }
    }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_shard_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("disk", 1);
    let shard = stream.open_shards()[0].clone();
    let options = options(sources.clone()).with_seal_retry(Duration::from_millis(300));
    let engine = Engine::open_with(dir.path(), options.clone()).await.unwrap();
    engine.create_table(&table_config("disk", "disk", "http://unused", 1000), &schema("disk")).await.unwrap();
    let t = now_ms();
    for i in 0..1000 {
        stream.put(&shard, "k", record(i, t));
    }
    wait_for_rows(&engine, "disk", 1000, Duration::from_secs(60)).await;
    wait_until("the first seal", Duration::from_secs(60), || {
        engine.table_status("disk").unwrap().segments.len() == 1
    })
    .await;
    let segments_dir = dir.path().join("tables/disk/segments");
    let manifest_before = std::fs::read(dir.path().join("tables/disk/manifest.json")).unwrap();

    {
        // A segment of 1,000 rows takes tens of KiB; the manifest about one.
        let _limit = FileSizeLimit::set(8 * 1024);
        for i in 1000..3500 {
            stream.put(&shard, "k", record(i, t));
        }
        wait_until("the shard to pause", Duration::from_secs(60), || {
            engine.table_status("disk").unwrap().shards.iter().any(|s| s.state == ShardState::Paused)
        })
        .await;
        // Paused. The failing seal's 1,000 rows stay in memory, and while that seal was under
        // way (in the background) the shard read at most one more segment's worth; once the
        // failure is known nothing more is read from the stream.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = engine.table_status("disk").unwrap();
        let s = &status.shards[0];
        assert_eq!(s.state, ShardState::Paused);
        let error = s.error.as_deref().unwrap_or_default();
        assert!(error.contains("File too large"), "the status says why: {error}");
        assert!((1000..=2000).contains(&s.consuming_rows), "{s:?}");
        assert_eq!(s.rows_ingested, 1000 + s.consuming_rows, "{s:?}");
        assert_eq!(status.segments.len(), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = engine.table_status("disk").unwrap();
        assert_eq!(later.shards[0].rows_ingested, s.rows_ingested, "nothing read while paused: {later:?}");
        // Everything read is still queryable.
        let read = s.rows_ingested as i64;
        assert_eq!(counts(&engine, "disk").await, (read, read));
        let metrics = engine.metrics().prometheus();
        let failures = metrics
            .lines()
            .find_map(|l| l.strip_prefix("shoal_seal_failures_total{table=\"disk\"} "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(failures >= 2, "failures counted and retried: {failures}");
        // No partial segment file left behind, and the last commit untouched.
        let files: Vec<String> = std::fs::read_dir(&segments_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(std::fs::read(dir.path().join("tables/disk/manifest.json")).unwrap(), manifest_before);
    }

    // Space is back: the shard resumes by itself and reads the rest.
    assert_eq!(wait_for_rows(&engine, "disk", 3500, Duration::from_secs(60)).await, (3500, 3500));
    wait_until("sealing to catch up", Duration::from_secs(60), || {
        let status = engine.table_status("disk").unwrap();
        status.segments.len() == 3
            && status.shards.iter().all(|s| s.state == ShardState::Consuming && s.error.is_none())
    })
    .await;
    engine.shutdown().await;
    drop(engine);

    // What was committed is there after a restart; the rest is read again, nothing twice.
    let engine = Engine::open_with(dir.path(), options).await.unwrap();
    assert_eq!(engine.table_status("disk").unwrap().sealed_rows, 3000);
    assert_eq!(wait_for_rows(&engine, "disk", 3500, Duration::from_secs(60)).await, (3500, 3500));
    engine.shutdown().await;
}
