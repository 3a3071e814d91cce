//! Crash recovery: the engine is killed with SIGKILL twelve times while 20,000 records are
//! written through a split and a merge, and restarted each time. Half of the kills fall at
//! random moments, half inside a seal (the segment file written, its commit not yet made).
//! In the end the table holds exactly 20,000 rows with 20,000 distinct ids.
//!
//! The test checks that it tests what it says: the child is alive when killed; the kills fall
//! while the records are being written; every kill aimed at a seal finds the child between a
//! segment's file and its commit, and the next start removes that uncommitted file. The
//! child's log is kept for the failure message.
//!
//! The engine runs in a child process: this test binary itself, running `crash_child`.

mod common;

use common::*;
use shoal::{Engine, EngineOptions, Faults};
use shoal_stream::emulator::Emulator;
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "SHOAL_CRASH_DIR";
const ENDPOINT: &str = "SHOAL_CRASH_ENDPOINT";
const KILLS: usize = 12;
/// What the child logs between writing a segment file and committing it.
const SEALING: &str = "segment file written; committing it";
/// What a start logs for each segment file no manifest names.
const ORPHAN: &str = "removing a segment file no manifest names";

/// The child: opens the engine (creating the table the first time) and consumes until killed,
/// logging to stdout. Each seal waits 400 ms before its commit, a window to be killed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_and_restart_twelve_times as a child process"]
async fn crash_child() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(DIR), std::env::var(ENDPOINT)) else { return };
    tracing_subscriber::fmt()
        .with_env_filter("shoal=debug")
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let faults = Faults::default().pause_before_commit(Duration::from_millis(400));
    let options = EngineOptions::default().with_faults(Arc::new(faults));
    let engine = Engine::open_with(&dir, options).await.unwrap();
    if engine.tables().is_empty() {
        engine
            .create_table(&table_config("crashy", "crashy", &endpoint, 1000), &schema("crashy"))
            .await
            .unwrap();
    }
    println!("CHILD STARTED");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// The child test, started on `dir` and `endpoint`.
fn child(exe: &std::path::Path, dir: &std::path::Path, endpoint: &str) -> Child {
    Child::start(exe, "crash_child", &[(DIR, dir.as_os_str()), (ENDPOINT, endpoint.as_ref())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_twelve_times() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("crashy", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (emulator, writing) = (&emulator, Arc::clone(&writing));
        async move {
            write_with_reshards_paced(emulator, "crashy", 20_000, Duration::from_millis(900)).await;
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let killer = async {
        let mut seed = now_ms() as u64 | 1;
        let mut report = Vec::new();
        let mut orphans_removed = 0;
        for kill in 0..KILLS {
            let mut child = child(&exe, dir.path(), &emulator.endpoint());
            assert!(
                child.wait_for("CHILD STARTED", 0, Duration::from_secs(60)).await,
                "kill {kill}: the child starts:\n{}",
                child.tail()
            );
            orphans_removed += child.count(ORPHAN);
            let at_seal = kill % 2 == 1;
            if at_seal {
                // Killed inside the seal window: after the file, before the commit.
                let sealing = child.count(SEALING);
                assert!(
                    child.wait_for(SEALING, sealing, Duration::from_secs(60)).await,
                    "kill {kill}: a seal starts:\n{}",
                    child.tail()
                );
            } else {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                tokio::time::sleep(Duration::from_millis(500 + seed % 2500)).await;
            }
            let mid_write = writing.load(std::sync::atomic::Ordering::SeqCst);
            assert!(child.kill(), "kill {kill}: the child was alive when killed:\n{}", child.tail());
            report.push((kill, at_seal, mid_write));
        }
        // A start after the last kill removes what the last seal left.
        let mut child = child(&exe, dir.path(), &emulator.endpoint());
        assert!(child.wait_for("CHILD STARTED", 0, Duration::from_secs(60)).await, "{}", child.tail());
        orphans_removed += child.count(ORPHAN);
        child.kill();
        (report, orphans_removed)
    };
    let ((), (report, orphans_removed)) = tokio::join!(writer, killer);
    let at_seals = report.iter().filter(|(_, at_seal, _)| *at_seal).count();
    let mid_write = report.iter().filter(|(_, _, w)| *w).count();
    assert!(mid_write >= KILLS / 2, "at least half the kills fall while records are written: {report:?}");
    assert!(
        orphans_removed >= at_seals,
        "every kill inside a seal left a segment file that no manifest named, removed at the next start \
         ({orphans_removed} removed, {at_seals} kills at a seal): {report:?}"
    );
    // A last start, in this process, runs to the end.
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    let (rows, distinct) = wait_for_rows(&engine, "crashy", 20_000, Duration::from_secs(240)).await;
    assert_eq!(
        (rows, distinct),
        (20_000, 20_000),
        "exactly every record, once, after {KILLS} kills: {report:?}"
    );
    engine.shutdown().await;
}
