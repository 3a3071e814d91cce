//! The controller paths Pinot tools call, against a server over kinesis-local: forceCommit,
//! pauseConsumption / resumeConsumption / pauseStatus (a pause lasts across a restart), the
//! table's size and segment list, its schema, consumingSegmentsInfo's lag maps, and Basic
//! credentials (pinotdb's username/password) beside the bearer token.

mod common;
mod server;

use base64::Engine as _;
use common::*;
use serde_json::Value;
use server::*;
use shoal_stream::emulator::Emulator;
use std::time::{Duration, Instant};

const TOKEN: &str = "controller-token";
const USER: &str = "ops";
const PASSWORD: &str = "s3cret-pass";
const CREDENTIALS: &str = "ops:s3cret-pass";

fn basic() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// A request with Basic credentials; returns the status and the body as JSON (Null if not).
fn call(server: &Server, method: &str, path: &str) -> (u16, Value) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.port,
        basic()
    );
    let (status, _, body) = raw_request(server.port, raw.as_bytes()).unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn rows(server: &Server) -> i64 {
    let body = serde_json::json!({"sql": "SELECT count(*) FROM ops"}).to_string();
    let (_, text) = server.post("/query/sql", Some(TOKEN), body.as_bytes()).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["resultTable"]["rows"][0][0].as_i64().unwrap_or(-1)
}

fn wait_rows(server: &Server, want: i64) {
    let started = Instant::now();
    while rows(server) != want {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{want} rows within a minute, have {}",
            rows(server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinot_controller_paths_work_and_a_pause_lasts_across_a_restart() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("ops", 2).await.unwrap();
    let t = now_ms();
    put_ids(&emulator, "ops", 0..300, t, |i| format!("k{i}"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("ops", "ops", &emulator.endpoint(), 1_000_000);
    let extra = ["--auth-token", TOKEN, "--basic-auth", CREDENTIALS];
    let (dir_path, table_c) = (dir.path().to_path_buf(), table.clone());
    let mut server = tokio::task::spawn_blocking(move || {
        let server = Server::start(&dir_path, &table_c, &schema("ops"), &extra);
        wait_rows(&server, 300);
        server
    })
    .await
    .unwrap();

    // Basic credentials as pinotdb sends them; wrong ones are refused; the token still works.
    let (status, _) = call(&server, "GET", "/tables");
    assert_eq!(status, 200);
    let wrong = format!(
        "GET /tables HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
        server.port,
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"))
    );
    assert_eq!(raw_request(server.port, wrong.as_bytes()).unwrap().0, 401);
    assert_eq!(server.get("/tables", Some(TOKEN)).unwrap().0, 200);

    // consumingSegmentsInfo's maps, filled as far as Kinesis tells.
    let (status, info) = call(&server, "GET", "/tables/ops/consumingSegmentsInfo");
    assert_eq!(status, 200, "{info}");
    let segments = info["_segmentToConsumingInfoMap"].as_object().unwrap();
    assert_eq!(segments.len(), 2, "{info}");
    for (name, entries) in segments {
        let e = &entries[0];
        assert!(e["lastConsumedTimestamp"].as_i64().unwrap() >= t, "{name}: {e}");
        let offsets = &e["partitionOffsetInfo"];
        let shard = e["shard"].as_str().unwrap();
        for map in ["currentOffsetsMap", "latestUpstreamOffsetMap", "recordsLagMap", "availabilityLagMsMap"] {
            assert!(offsets[map][shard].is_string(), "{map} of {shard}: {e}");
        }
        // Caught up: no records behind, and the newest upstream record is the last consumed.
        if e["millisBehindLatest"] == 0 {
            assert_eq!(offsets["recordsLagMap"][shard], "0", "{e}");
            assert_eq!(offsets["latestUpstreamOffsetMap"][shard], offsets["currentOffsetsMap"][shard], "{e}");
        }
        assert!(offsets["availabilityLagMsMap"][shard].as_str().unwrap().parse::<i64>().is_ok(), "{e}");
    }

    // forceCommit: the consuming rows are sealed now, none lost or doubled.
    let (status, answer) = call(&server, "POST", "/tables/ops/forceCommit");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["forceCommitStatus"], "SUCCESS");
    let committed = answer["segmentsCommitted"].as_array().unwrap().len();
    assert_eq!(committed, 2, "one segment per shard: {answer}");
    let (_, status_json) = call(&server, "GET", "/tables/ops/status");
    assert_eq!(status_json["sealedRows"], 300, "{status_json}");
    assert_eq!(status_json["consumingRows"], 0, "{status_json}");
    assert_eq!(rows(&server), 300);

    // Size and segments.
    let (_, size) = call(&server, "GET", "/tables/ops/size");
    let total = size["reportedSizeInBytes"].as_u64().unwrap();
    let each: u64 = size["realtimeSegments"]["segments"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["reportedSizeInBytes"].as_u64().unwrap())
        .sum();
    assert!(total > 0 && total == each, "{size}");
    let (_, list) = call(&server, "GET", "/segments/ops");
    let names = list[0]["REALTIME"].as_array().unwrap();
    assert_eq!(names.iter().filter(|n| !n.as_str().unwrap().ends_with("__CONSUMING")).count(), 2, "{list}");
    let (_, schema_a) = call(&server, "GET", "/tables/ops/schema");
    let (_, schema_b) = call(&server, "GET", "/schemas/ops");
    assert_eq!(schema_a, schema_b);
    assert_eq!(schema_a["schemaName"], "ops");

    // Pause: nothing more is read, even after a restart.
    let (status, paused) = call(&server, "POST", "/tables/ops/pauseConsumption?comment=maintenance");
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["pauseFlag"], true);
    assert_eq!(paused["comment"], "maintenance");
    assert_eq!(paused["reasonCode"], "ADMINISTRATIVE");
    put_ids(&emulator, "ops", 300..400, t, |i| format!("k{i}"), None).await;
    let (dir_path, table_c) = (dir.path().to_path_buf(), table.clone());
    server = tokio::task::spawn_blocking(move || {
        // Three seconds of a paused table and then a restart: still 300 rows.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(rows(&server), 300, "nothing is read while paused");
        let status = server.stop_with(libc::SIGTERM);
        assert!(status.success());
        drop(server);
        // A paused table is ready: it does what it was told.
        let server = Server::start(&dir_path, &table_c, &schema("ops"), &extra);
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(rows(&server), 300, "still paused after a restart");
        server
    })
    .await
    .unwrap();
    let (_, status) = call(&server, "GET", "/tables/ops/pauseStatus");
    assert_eq!(status["pauseFlag"], true, "{status}");
    let (_, table_status) = call(&server, "GET", "/tables/ops/status");
    assert_eq!(table_status["paused"], true, "{table_status}");
    assert!(
        table_status["shards"].as_array().unwrap().iter().all(|s| s["state"] == "PAUSED"),
        "{table_status}"
    );

    // Resuming from elsewhere than the last commit is refused; from it, the rest comes.
    let (status, answer) = call(&server, "POST", "/tables/ops/resumeConsumption?consumeFrom=smallest");
    assert_eq!(status, 400, "{answer}");
    let (status, resumed) = call(&server, "POST", "/tables/ops/resumeConsumption");
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["pauseFlag"], false);
    tokio::task::spawn_blocking(move || {
        wait_rows(&server, 400);
        let body = serde_json::json!({"sql": "SELECT count(DISTINCT id) FROM ops"}).to_string();
        let (_, text) = server.post("/query/sql", Some(TOKEN), body.as_bytes()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["resultTable"]["rows"][0][0], 400);
        // No credential ever shows in the log.
        let log = server.log_text();
        assert!(!log.contains(PASSWORD) && !log.contains(&basic()), "a credential in the log");
    })
    .await
    .unwrap();
}
