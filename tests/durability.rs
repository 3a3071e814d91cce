//! Directory changes are durable, seen in the system calls the engine makes (strace, in a
//! child process: this test binary, running `durable_child`):
//! - a new table's directory entry is fsynced (its parent `tables/`) before the table's files
//!   are written into it;
//! - a quarantined segment's rename is fsynced in both directories, and the new `quarantine/`
//!   directory's entry too;
//! - a dropped table's directory is renamed away and that rename fsynced before anything in
//!   it is deleted, so that a crash leaves either the whole table or a directory the next open
//!   deletes (also tested: such a leftover is deleted and never loaded as a table).

mod common;

use common::*;
use shoal::Engine;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DIR: &str = "SHOAL_DURABLE_DIR";

/// The child: creates a table, seals three segments, damages one, reopens (the segment is
/// quarantined and its rows read again), then drops the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by directory_changes_are_fsynced under strace"]
async fn durable_child() {
    let Ok(dir) = std::env::var(DIR) else { return };
    let sources = MemorySources::default();
    let stream = sources.stream("dur", 1);
    let engine = Engine::open_with(&dir, options(sources.clone())).await.unwrap();
    engine.create_table(&table_config("dur", "dur", "http://unused", 100), &schema("dur")).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let t = now_ms();
    for i in 0..300 {
        stream.put(&shard, "k", record(i, t));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.table_status("dur").unwrap().sealed_rows < 300 {
        assert!(tokio::time::Instant::now() < deadline, "sealed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = format!("{}.seg", engine.table_status("dur").unwrap().segments[0].name);
    engine.shutdown().await;
    drop(engine);
    let path = Path::new(&dir).join("tables/dur/segments").join(&victim);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let engine = Engine::open_with(&dir, options(sources.clone())).await.unwrap();
    assert_eq!(engine.table_status("dur").unwrap().quarantined.len(), 1);
    assert_eq!(wait_for_rows(&engine, "dur", 300, Duration::from_secs(60)).await, (300, 300));
    engine.drop_table("dur").await.unwrap();
    engine.shutdown().await;
    println!("CHILD DONE");
}

/// One traced system call: its name, the paths it names (`-y` prints a descriptor's path as
/// `3</path>`), and its line in the trace.
#[derive(Debug)]
struct Call {
    name: String,
    paths: Vec<String>,
    line: usize,
}

fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for (line, l) in text.lines().enumerate() {
        // "<pid> name(args) = result", or an unfinished call whose arguments come first.
        let rest = l.split_once(' ').map_or(l, |(_, r)| r).trim_start();
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else { continue };
        if args.contains("= -1") {
            continue;
        }
        let mut paths = Vec::new();
        for quoted in args.split('"').skip(1).step_by(2) {
            paths.push(quoted.to_string());
        }
        for fd in args.split('<').skip(1) {
            if let Some(p) = fd.split('>').next() {
                paths.push(p.to_string());
            }
        }
        calls.push(Call { name: name.to_string(), paths, line });
    }
    calls
}

fn is_fsync(c: &Call) -> bool {
    matches!(c.name.as_str(), "fsync" | "fdatasync")
}

/// The first call at or after `from` that matches.
fn find_after(calls: &[Call], from: usize, what: impl Fn(&Call) -> bool) -> Option<&Call> {
    calls.iter().filter(|c| c.line >= from).find(|c| what(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_changes_are_fsynced() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is needed (scripts/test.sh installs Debian's strace)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("trace.txt");
    let output = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync,unlink,unlinkat,rmdir",
            "-o",
        ])
        .arg(&log)
        .arg(std::env::current_exe().unwrap())
        .args(["durable_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(DIR, &data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("CHILD DONE"),
        "the child ran: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let trace = std::fs::read_to_string(&log).unwrap();
    let calls = parse_trace(&trace);
    let data = data.to_string_lossy().into_owned();
    let tables = format!("{data}/tables");
    let table = format!("{tables}/dur");
    let fsync_of = |path: &str| {
        let path = path.to_string();
        move |c: &Call| is_fsync(c) && c.paths.contains(&path)
    };

    // The table's directory entry, before the table's files are put in it.
    let mkdir = calls
        .iter()
        .find(|c| c.name.starts_with("mkdir") && c.paths.contains(&table))
        .unwrap_or_else(|| panic!("the table directory is made:\n{trace}"));
    let first_file = find_after(&calls, mkdir.line, |c| {
        c.name.starts_with("rename") && c.paths.iter().any(|p| p.starts_with(&format!("{table}/")))
    })
    .expect("a file is renamed into the table directory");
    let synced = find_after(&calls, mkdir.line, fsync_of(&tables)).expect("tables/ is fsynced");
    assert!(
        synced.line < first_file.line,
        "tables/ is fsynced after the mkdir and before the table's files:\n{trace}"
    );

    // The quarantine: the rename, then both directories fsynced; the new directory's entry too.
    let quarantine = format!("{table}/quarantine");
    let moved = calls
        .iter()
        .find(|c| {
            c.name.starts_with("rename") && c.paths.iter().any(|p| p.starts_with(&format!("{quarantine}/")))
        })
        .unwrap_or_else(|| panic!("the damaged segment is moved to quarantine/:\n{trace}"));
    assert!(find_after(&calls, moved.line, fsync_of(&quarantine)).is_some(), "quarantine/ fsynced:\n{trace}");
    assert!(
        find_after(&calls, moved.line, fsync_of(&format!("{table}/segments"))).is_some(),
        "segments/ fsynced:\n{trace}"
    );
    let made = calls
        .iter()
        .find(|c| c.name.starts_with("mkdir") && c.paths.contains(&quarantine))
        .expect("quarantine/ is made");
    let entry = find_after(&calls, made.line, fsync_of(&table)).expect("the table directory is fsynced");
    assert!(entry.line < moved.line, "quarantine/'s entry is durable before the file moves in:\n{trace}");

    // The drop: renamed away and fsynced before the first deletion inside it.
    let away = calls
        .iter()
        .find(|c| {
            c.name.starts_with("rename")
                && c.paths.contains(&table)
                && c.paths.iter().any(|p| p.starts_with(&format!("{tables}/.dropped-dur-")))
        })
        .unwrap_or_else(|| panic!("the dropped table is renamed away:\n{trace}"));
    let first_delete = calls
        .iter()
        .filter(|c| c.line > made.line)
        .find(|c| {
            matches!(c.name.as_str(), "unlink" | "unlinkat" | "rmdir")
                && c.paths.iter().any(|p| p.starts_with(&format!("{table}/")) || p.contains("/.dropped-dur-"))
        })
        .expect("the dropped table's files are deleted");
    assert!(away.line < first_delete.line, "renamed away before anything is deleted:\n{trace}");
    let synced = find_after(&calls, away.line, fsync_of(&tables)).expect("tables/ fsynced after the rename");
    assert!(synced.line < first_delete.line, "the rename is durable before the deletions:\n{trace}");
    assert!(!Path::new(&table).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_interrupted_by_a_crash_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table_config("gone", "gone", "http://unused", 100), &schema("gone")).await.unwrap();
    engine.shutdown().await;
    drop(engine);
    // A crash right after the drop's rename: the directory, whole, under its dropped name.
    let tables = dir.path().join("tables");
    std::fs::rename(tables.join("gone"), tables.join(".dropped-gone-1")).unwrap();
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert!(engine.tables().is_empty(), "a dropped table is not loaded");
    assert!(!tables.join(".dropped-gone-1").exists(), "and its leftover directory is deleted");
    engine.shutdown().await;
}
