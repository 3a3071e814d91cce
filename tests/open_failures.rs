//! Failures to open a data directory that say nothing about the data must fail the open
//! loudly and change nothing; only damage quarantines a segment:
//! - a second engine on the same data directory is refused at once, naming the holder's pid;
//! - the kernel refusing to map a segment (ENOMEM under RLIMIT_AS, as with `vm.max_map_count`)
//!   and a segment of a newer format version: the open fails naming the file; no segment is
//!   quarantined or forgotten, and a later open without the cause finds every row. (Which
//!   errors count as damage is unit-tested in `src/table/recovery.rs`: EMFILE and EACCES do
//!   not; EACCES cannot be made real here, where tests run as root.)
//!
//! The limit is real and applies to a whole process, so the open that meets it runs in a child
//! process: this test binary, running `open_child`.

mod common;

use common::*;
use shoal::{Engine, Error};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR: &str = "SHOAL_OPEN_DIR";
const LIMIT: &str = "SHOAL_OPEN_LIMIT";

/// A data directory with one table of `segments` sealed segments of `rows` rows each, every row
/// carrying `pad` bytes (so that the segments are as large as a test needs).
async fn data_dir_with_segments(dir: &Path, segments: usize, rows: usize, pad: usize) -> i64 {
    let sources = MemorySources::default();
    let stream = sources.stream("big", 1);
    let engine = Engine::open_with(dir, options(sources.clone())).await.unwrap();
    let mut schema = schema("big");
    schema["dimensionFieldSpecs"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "pad", "dataType": "STRING", "maxLength": pad + 1}));
    let mut config = table_config("big", "big", "http://unused", rows as u64);
    // Stored plain, so that every row's padding takes its bytes (one value, dictionary-encoded,
    // would take a key's).
    config["tableIndexConfig"]["noDictionaryColumns"] = serde_json::json!(["pad"]);
    engine.create_table(&config, &schema).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let padding = "p".repeat(pad);
    let t = now_ms();
    let total = segments * rows;
    for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
        stream.put_many(
            &shard,
            chunk.iter().map(|i| {
                ("k", bytes::Bytes::from(format!(r#"{{"id": {i}, "ts": {t}, "pad": "{padding}"}}"#)))
            }),
        );
    }
    let total = total as i64;
    assert_eq!(wait_for_rows(&engine, "big", total, Duration::from_secs(300)).await, (total, total));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while engine.table_status("big").unwrap().segments.len() < segments {
        assert!(tokio::time::Instant::now() < deadline, "segments sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await;
    total
}

/// The manifest and the segment files of the table, to compare before and after.
fn snapshot_of(dir: &Path) -> (String, Vec<String>) {
    let table = dir.join("tables/big");
    let manifest = std::fs::read_to_string(table.join("manifest.json")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(table.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (manifest, files)
}

/// The child: sets the limit `SHOAL_OPEN_LIMIT` names (`as:<bytes above what it holds>`),
/// opens the engine and prints what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the tests below as a child process"]
async fn open_child() {
    let (Ok(dir), Ok(limit)) = (std::env::var(DIR), std::env::var(LIMIT)) else { return };
    // The runtime's blocking threads exist before the limit: opening runs on one.
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    let (kind, extra) = limit.split_once(':').unwrap();
    let extra: u64 = extra.parse().unwrap();
    // SAFETY: plain libc calls on valid pointers.
    unsafe {
        let (resource, now) = match kind {
            "as" => (libc::RLIMIT_AS, address_space_bytes()),
            other => panic!("unknown limit {other}"),
        };
        let mut old = std::mem::zeroed::<libc::rlimit>();
        assert_eq!(libc::getrlimit(resource, &mut old), 0);
        let new = libc::rlimit { rlim_cur: (now + extra) as libc::rlim_t, rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(resource, &new), 0);
    }
    match Engine::open_with(&dir, options(MemorySources::default())).await {
        Ok(engine) => {
            println!("OPENED {}", engine.table_status("big").unwrap().quarantined.len());
            engine.shutdown().await;
        }
        Err(e) => println!("REFUSED {e}"),
    }
}

fn address_space_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Runs `open_child` with `limit` on `dir`; returns what it printed.
fn open_under(dir: &Path, limit: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["open_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(DIR, dir)
        .env(LIMIT, limit)
        // One malloc arena: threads do not reserve arenas of their own against the limit.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // The harness prints "test open_child ... " on the same line.
    stdout
        .lines()
        .find_map(|l| l.find("OPENED ").or_else(|| l.find("REFUSED ")).map(|at| l[at..].to_string()))
        .unwrap_or_else(|| panic!("the child printed no outcome:\n{stdout}\n{stderr}"))
}

/// After a refused open: nothing changed, and an open without the limit finds every row.
async fn nothing_lost(dir: &Path, before: &(String, Vec<String>), total: i64) {
    assert_eq!(&snapshot_of(dir), before, "the manifest and the segment files are untouched");
    assert!(!dir.join("tables/big/quarantine").exists(), "nothing quarantined");
    let engine = Engine::open_with(dir, options(MemorySources::default())).await.unwrap();
    let status = engine.table_status("big").unwrap();
    assert!(status.quarantined.is_empty(), "{:?}", status.quarantined);
    assert_eq!(status.sealed_rows, total as u64);
    assert_eq!(counts(&engine, "big").await, (total, total));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_map_fails_the_open_and_quarantines_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 8 segments of about 24 MB; the child may map only 64 MB more than it holds.
    let total = data_dir_with_segments(dir.path(), 8, 6000, 4000).await;
    let before = snapshot_of(dir.path());
    let outcome = open_under(dir.path(), &format!("as:{}", 64 << 20));
    assert!(outcome.starts_with("REFUSED"), "the open fails: {outcome}");
    assert!(outcome.contains(".seg"), "the error names the segment file: {outcome}");
    assert!(outcome.contains("Cannot allocate memory"), "the error is the kernel's ENOMEM: {outcome}");
    nothing_lost(dir.path(), &before, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_a_newer_format_fails_the_open_and_quarantines_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let total = data_dir_with_segments(dir.path(), 3, 100, 10).await;
    let (_, files) = snapshot_of(dir.path());
    let path = dir.path().join("tables/big/segments").join(&files[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    let original = bytes.clone();
    // The trailer's version field (the trailer is the last 56 bytes; the version follows the
    // 8-byte magic).
    let at = bytes.len() - 56 + 8;
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let before = snapshot_of(dir.path());
    let err = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&files[1]) && message.contains("version 99"), "{message}");
    assert_eq!(snapshot_of(dir.path()), before, "nothing changed");
    assert!(!dir.path().join("tables/big/quarantine").exists(), "nothing quarantined");
    // Put back as it was: every row is there.
    std::fs::write(&path, &original).unwrap();
    nothing_lost(dir.path(), &before, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("held", 1);
    let first = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    first
        .create_table(&table_config("held", "held", "http://unused", 1_000_000), &schema("held"))
        .await
        .unwrap();
    let t = now_ms();
    for i in 0..100 {
        stream.put_by_key("k", record(i, t));
    }
    assert_eq!(wait_for_rows(&first, "held", 100, Duration::from_secs(30)).await, (100, 100));
    let second = Engine::open_with(dir.path(), options(sources.clone())).await;
    match second {
        Err(Error::DataDirInUse { holder, .. }) => assert_eq!(holder, std::process::id().to_string()),
        other => panic!("a second engine must be refused: {other:?}"),
    }
    let message = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap_err().to_string();
    assert!(message.contains(&std::process::id().to_string()) && message.contains("in use"), "{message}");
    // The first engine goes on, untouched: its unsealed rows are still there.
    assert_eq!(counts(&first, "held").await, (100, 100));
    first.shutdown().await;
    // Once it has stopped, the directory can be opened again.
    let again = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert_eq!(wait_for_rows(&again, "held", 100, Duration::from_secs(30)).await, (100, 100));
    again.shutdown().await;
}
