//! Crash recovery: the engine is killed with SIGKILL at random moments at least 10 times while
//! 20,000 records are written through a split and a merge, and restarted each time. In the
//! end the table holds exactly 20,000 rows with 20,000 distinct ids.
//!
//! The engine runs in a child process: this test binary itself, running `crash_child`.

mod common;

use common::*;
use shoal::{Engine, EngineOptions};
use shoal_stream::emulator::Emulator;
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR: &str = "SHOAL_CRASH_DIR";
const ENDPOINT: &str = "SHOAL_CRASH_ENDPOINT";

/// The child: opens the engine (creating the table the first time) and consumes until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_and_restart_ten_times as a child process"]
async fn crash_child() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(DIR), std::env::var(ENDPOINT)) else { return };
    let engine = Engine::open_with(&dir, EngineOptions::default()).await.unwrap();
    if engine.tables().is_empty() {
        engine
            .create_table(&table_config("crashy", "crashy", &endpoint, 1000), &schema("crashy"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_ten_times() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("crashy", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let writer = write_with_reshards(&emulator, "crashy", 20_000);
    let killer = async {
        let mut seed = now_ms() as u64 | 1;
        let mut kills = 0;
        while kills < 12 {
            let mut child = Command::new(&exe)
                .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
                .env(DIR, dir.path())
                .env(ENDPOINT, emulator.endpoint())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            tokio::time::sleep(Duration::from_millis(800 + seed % 3200)).await;
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
        }
        kills
    };
    let ((), kills) = tokio::join!(writer, killer);
    assert!(kills >= 10);
    // A last start, in this process, runs to the end.
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    let (rows, distinct) = wait_for_rows(&engine, "crashy", 20_000, Duration::from_secs(240)).await;
    assert_eq!((rows, distinct), (20_000, 20_000), "exactly every record, once, after {kills} kills");
    engine.shutdown().await;
}
