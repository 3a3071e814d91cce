//! The server against kinesis-local: the Pinot broker API and its JSON field by field, the
//! controller paths, metrics, auth, body limits, bad requests, and no secret in any output.

mod common;
mod server;

use common::*;
use serde_json::Value;
use server::*;
use shoal_stream::emulator::Emulator;
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ps3cret-token";
const ACCESS_KEY: &str = "AKIAEXAMPLEACCESS";
const SECRET_KEY: &str = "wJalrXUtnFEMISECRETVALUE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_api_answers_as_pinot_does() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("web", 2).await.unwrap();
    let t = now_ms();
    for i in 0..300 {
        emulator.put("web", &format!("k{i}"), record(i, t).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut table = table_config("web", "web", &emulator.endpoint(), 100_000);
    table["tableIndexConfig"]["streamConfigs"]["accessKey"] = ACCESS_KEY.into();
    table["tableIndexConfig"]["streamConfigs"]["secretKey"] = SECRET_KEY.into();
    let server = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || Server::start(&dir, &table, &schema("web"), &["--auth-token", TOKEN])
    })
    .await
    .unwrap();

    let server = std::sync::Arc::new(server);
    let s = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || {
        let server = &*s;
        // Auth: everything but /health/* needs the token.
        let (status, body) = server.get("/query/sql?sql=SELECT%201", None).unwrap();
        assert_eq!(status, 401);
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        assert_eq!(server.get("/tables", Some("wrong")).unwrap().0, 401);
        assert_eq!(server.get("/health", None).unwrap().0, 200);
        assert_eq!(server.get("/health/readiness", None).unwrap().0, 200);
        assert_eq!(server.get("/health/liveness", None).unwrap().0, 200);

        // Records put are counted through /query/sql.
        let started = Instant::now();
        while count(server, Some(TOKEN), "web") != 300 {
            assert!(started.elapsed() < Duration::from_secs(60), "300 rows within a minute");
            std::thread::sleep(Duration::from_millis(300));
        }
        let (status, body) = server.post("/query/sql", Some(TOKEN), br#"{"sql": "SELECT key, count(*) AS n, max(id) FROM web_REALTIME GROUP BY key ORDER BY key LIMIT 2"}"#).unwrap();
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "brokerId", "exceptions", "minConsumingFreshnessTimeMs", "numConsumingSegmentsMatched",
            "numConsumingSegmentsProcessed", "numConsumingSegmentsQueried", "numDocsScanned", "numEntriesScannedInFilter",
            "numEntriesScannedPostFilter", "numGroupsLimitReached", "numRowsResultSet", "numSegmentsMatched",
            "numSegmentsProcessed", "numSegmentsQueried", "numServersQueried", "numServersResponded", "partialResult",
            "requestId", "resultTable", "tablesQueried", "timeUsedMs", "totalDocs", "traceInfo",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        // Pinot's name and type for MAX (pinot-core BaseSingleInputAggregationFunction.java,
        // MaxAggregationFunction.java: DOUBLE).
        assert_eq!(v["resultTable"]["dataSchema"]["columnNames"], serde_json::json!(["key", "n", "max(id)"]));
        assert_eq!(v["resultTable"]["dataSchema"]["columnDataTypes"], serde_json::json!(["STRING", "LONG", "DOUBLE"]));
        assert_eq!(v["resultTable"]["rows"][0], serde_json::json!(["key-0", 9, 296.0]));
        assert_eq!(v["numRowsResultSet"], 2);
        assert_eq!(v["totalDocs"], 300);
        assert_eq!(v["numServersQueried"], 1);
        assert_eq!(v["numServersResponded"], 1);
        assert_eq!(v["exceptions"], serde_json::json!([]));
        assert!(v["numConsumingSegmentsQueried"].as_u64().unwrap() >= 1);
        // GET works the same.
        let (status, body) = server.get("/query/sql?sql=SELECT%20count(*)%20FROM%20web", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["resultTable"]["rows"][0][0], 300);
        // The body's queryOptions and trace (pinot-common RequestUtils.setOptions); the
        // server's default limit of 10 for a selection without LIMIT.
        let request = br#"{"sql": "SELECT id FROM web WHERE id < 100", "queryOptions": "timeoutMs=5000;useMultistageEngine=true", "trace": true}"#;
        let (status, body) = server.post("/query/sql", Some(TOKEN), request).unwrap();
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["exceptions"], serde_json::json!([]), "{v}");
        assert_eq!(v["resultTable"]["rows"].as_array().unwrap().len(), 10, "{v}");
        assert_eq!(v["tablesQueried"], serde_json::json!(["web"]));
        assert_eq!(v["traceInfo"].as_object().unwrap().len(), 1, "{v}");
        let (_, body) = server.get("/query/sql?sql=SELECT%201&trace=true", Some(TOKEN)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["traceInfo"].as_object().unwrap().len(), 1);
        let request = br#"{"sql": "SELECT 1", "queryOptions": "timeoutMs"}"#;
        let (_, body) = server.post("/query/sql", Some(TOKEN), request).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["exceptions"][0]["errorCode"], 150, "{body}");

        // Bad requests: JSON errors with a message.
        for (status, body) in [
            server.post("/query/sql", Some(TOKEN), b"{\"query\": \"SELECT 1\"}").unwrap(),
            server.post("/query/sql", Some(TOKEN), b"{not json").unwrap(),
            server.get("/query/sql", Some(TOKEN)).unwrap(),
        ] {
            assert_eq!(status, 400, "{body}");
            assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().len() > 5);
        }
        let big = vec![b'x'; 2 << 20];
        let (status, body) = server.post("/query/sql", Some(TOKEN), &big).unwrap();
        assert_eq!(status, 413, "{body}");
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
        let (status, body) = server.get("/no/such/path", Some(TOKEN)).unwrap();
        assert_eq!(status, 404);
        assert!(serde_json::from_str::<Value>(&body).is_ok());

        // An unknown table is Pinot's TABLE_DOES_NOT_EXIST; an unknown table path a 404.
        let (_, body) = server.post("/query/sql", Some(TOKEN), br#"{"sql": "SELECT count(*) FROM nope"}"#).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["exceptions"][0]["errorCode"], 190);
        assert_eq!(server.get("/tables/nope", Some(TOKEN)).unwrap().0, 404);

        // Controller paths; secrets as ***.
        let (_, body) = server.get("/tables", Some(TOKEN)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["tables"], serde_json::json!(["web"]));
        let (status, body) = server.get("/tables/web", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["REALTIME"]["tableIndexConfig"]["streamConfigs"]["secretKey"], "***");
        assert_eq!(v["REALTIME"]["tableIndexConfig"]["streamConfigs"]["accessKey"], "***");
        let (status, body) = server.get("/schemas/web", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["schemaName"], "web");
        let (status, body) = server.get("/tables/web/consumingSegmentsInfo", Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "{body}");
        let info: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(info["_segmentToConsumingInfoMap"].as_object().unwrap().len(), 2);
        let (status, metrics) = server.get("/metrics", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        assert!(metrics.contains("shoal_rows_ingested_total{table=\"web\"} 300"), "{metrics}");
        assert!(metrics.contains("shoal_shard_millis_behind_latest{table=\"web\""));
        let (status, page) = server.get("/", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        assert!(page.contains("<textarea id=\"sql\""));
        let (status, body) = server.get("/tables/web/status", Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["shards"].as_array().unwrap().len(), 2, "{body}");
        assert_eq!(v["sealedRows"].as_u64().unwrap() + v["consumingRows"].as_u64().unwrap(), 300);
        // Error answers, which could echo what they were given: an unknown column, bad SQL,
        // statements that are refused, a path under an unknown table.
        for sql in ["SELECT nope FROM web", "SELEC 1", "DROP TABLE web", "SELECT * FROM '/etc/passwd'"] {
            let body = serde_json::json!({"sql": sql}).to_string();
            let (status, text) = server.post("/query/sql", Some(TOKEN), body.as_bytes()).unwrap();
            assert_eq!(status, 200);
            assert!(!serde_json::from_str::<Value>(&text).unwrap()["exceptions"].as_array().unwrap().is_empty(), "{sql}: {text}");
        }
        for path in ["/tables/nope/status", "/tables/nope/consumingSegmentsInfo", "/schemas/nope"] {
            assert_eq!(server.get(path, Some(TOKEN)).unwrap().0, 404, "{path}");
        }
    })
    .await
    .unwrap();

    // SIGTERM shuts it down gracefully.
    let mut server = std::sync::Arc::into_inner(server).unwrap();
    let status = server.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", server.log_text());

    // No secret in any answer (every endpoint, error answers included), in the whole log, or in
    // what `serve --validate` prints for the same files.
    let answers = server.answers();
    let mut asked: Vec<String> =
        answers.iter().map(|a| a.path.split('?').next().unwrap().to_string()).collect();
    asked.sort();
    asked.dedup();
    for path in [
        "/",
        "/health",
        "/metrics",
        "/query/sql",
        "/schemas/web",
        "/tables",
        "/tables/web",
        "/tables/web/consumingSegmentsInfo",
        "/tables/web/status",
        "/no/such/path",
    ] {
        assert!(asked.iter().any(|p| p == path), "{path} was not asked: {asked:?}");
    }
    assert!(answers.iter().any(|a| a.status == 401) && answers.iter().any(|a| a.status == 413));
    let log = server.log_text();
    assert!(log.contains("serving") && log.contains("shutting down"), "{log}");
    // The token came on the command line, where `ps` shows it: the log says so, and where to
    // put it instead.
    assert!(log.contains("--auth-token on the command line") && log.contains("SHOAL_AUTH_TOKEN"), "{log}");
    let table_path = dir.path().join("table.json");
    let validate = std::process::Command::new(serve_binary())
        .arg("--validate")
        .arg("--table-config")
        .arg(&table_path)
        .arg("--schema")
        .arg(dir.path().join("schema.json"))
        .args(["--auth-token", TOKEN])
        .output()
        .unwrap();
    assert!(validate.status.success(), "{validate:?}");
    let validate =
        format!("{}{}", String::from_utf8_lossy(&validate.stdout), String::from_utf8_lossy(&validate.stderr));
    assert!(validate.contains("\"***\""), "{validate}");
    // The secrets are in the config the server was given.
    let given = std::fs::read_to_string(&table_path).unwrap();
    for secret in [ACCESS_KEY, SECRET_KEY, TOKEN] {
        assert!(secret == TOKEN || given.contains(secret));
        for a in &answers {
            assert!(
                !a.body.contains(secret),
                "{secret} in the answer to {} {}: {}",
                a.method,
                a.path,
                a.body
            );
        }
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!validate.contains(secret), "{secret} in serve --validate: {validate}");
    }
}

/// `/health` is readiness, as in Pinot: 503 while a table has no shard consuming (here its
/// stream does not exist yet), 200 once it has; `/health/liveness` is 200 as soon as the server
/// answers. None of them needs the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ready_once_every_table_consumes_and_live_before() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("late", "late", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || {
        let server =
            Server::start_until(&path, &table, &schema("late"), &["--auth-token", TOKEN], "/health/liveness");
        // The table has tried its stream and found none.
        let started = Instant::now();
        while !server.log_text().contains("ListShards failed") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no ListShards failure: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = server.get("/tables/late/status", Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "{body}");
        let shards = serde_json::from_str::<Value>(&body).unwrap()["shards"].clone();
        assert!(!shards.as_array().unwrap().iter().any(|s| s["state"] == "CONSUMING"), "{body}");
        for path in ["/health", "/health/readiness"] {
            let (status, body) = server.get(path, None).unwrap();
            assert_eq!(status, 503, "{path}: {body}");
            let message =
                serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().to_string();
            assert!(message.contains("1 of 1 table(s)"), "{path}: {message}");
            assert!(!message.contains("late"), "an answer without the token names no table: {message}");
        }
        assert_eq!(server.get("/health/liveness", None).unwrap(), (200, "OK".to_string()));
        server
    })
    .await
    .unwrap();

    emulator.create_stream("late", 2).await.unwrap();
    put_ids(&emulator, "late", 0..10, now_ms(), |i| format!("k{i}"), None).await;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while server.get("/health", None).unwrap().0 != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready a minute after the stream was made"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(server.get("/health/readiness", None).unwrap(), (200, "OK".to_string()));
        assert_eq!(server.get("/health/liveness", None).unwrap(), (200, "OK".to_string()));
        let (_, body) = server.get("/tables/late/status", Some(TOKEN)).unwrap();
        let shards = serde_json::from_str::<Value>(&body).unwrap()["shards"].clone();
        assert!(shards.as_array().unwrap().iter().any(|s| s["state"] == "CONSUMING"), "{body}");
        let started = Instant::now();
        while count(&server, Some(TOKEN), "late") != 10 {
            assert!(started.elapsed() < Duration::from_secs(60), "10 rows within a minute");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
}

/// SIGINT (Ctrl+C) and SIGTERM stop the server gracefully: exit code 0, the log says which
/// signal came and that it stopped, and a restart on the same data directory finds the
/// committed segments and reads only the uncommitted rows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_gracefully_and_committed_rows_survive_a_restart() {
    stop_and_restart(libc::SIGINT, "SIGINT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_committed_rows_survive_a_restart() {
    stop_and_restart(libc::SIGTERM, "SIGTERM").await;
}

async fn stop_and_restart(signal: i32, name: &'static str) {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    let stream = name.to_ascii_lowercase();
    emulator.create_stream(&stream, 1).await.unwrap();
    put_ids(&emulator, &stream, 0..250, now_ms(), |i| format!("k{i}"), None).await;
    let dir = tempfile::tempdir().unwrap();
    // A segment seals every 100 rows: 200 rows committed, 50 only in memory.
    let table = table_config(&stream, &stream, &emulator.endpoint(), 100);
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let status_of = |server: &Server| {
            let (code, body) = server.get(&format!("/tables/{stream}/status"), None).unwrap();
            assert_eq!(code, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        };
        let segment_names = |status: &Value| {
            let mut names: Vec<String> = status["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        let mut server = Server::start(&path, &table, &schema(&stream), &[]);
        let started = Instant::now();
        while count(&server, None, &stream) != 250 || status_of(&server)["sealedRows"] != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "250 rows, 200 sealed: {}",
                status_of(&server)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let committed = segment_names(&status_of(&server));
        assert_eq!(committed.len(), 2, "{committed:?}");
        let exit = server.stop_with(signal);
        let log = server.log_text();
        assert!(exit.success(), "{name}: {exit}: {log}");
        let received = log.find(name).unwrap_or_else(|| panic!("no {name} in the log: {log}"));
        let stopped = log.rfind("stopped").unwrap_or_else(|| panic!("no 'stopped' in the log: {log}"));
        assert!(received < stopped, "{log}");
        drop(server);

        let server = Server::start(&path, &table, &schema(&stream), &[]);
        let status = status_of(&server);
        assert_eq!(segment_names(&status), committed, "the committed segments are reopened: {status}");
        assert_eq!(status["sealedRows"], 200);
        assert!(server.log_text().contains("table reopened"), "{}", server.log_text());
        let started = Instant::now();
        while count(&server, None, &stream) != 250 {
            assert!(started.elapsed() < Duration::from_secs(60), "250 rows again: {}", status_of(&server));
            std::thread::sleep(Duration::from_millis(200));
        }
        let status = status_of(&server);
        assert_eq!(
            (status["sealedRows"].as_u64(), status["consumingRows"].as_u64()),
            (Some(200), Some(50)),
            "{status}"
        );
    })
    .await
    .unwrap();
}

/// SQL abuse through /query/sql: DDL, DML, COPY, file and URL tables are refused; a cross join
/// of the table with itself ends at the time limit with an error while other queries answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_abuse_is_refused_or_stopped_and_the_server_keeps_answering() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("abuse", 1).await.unwrap();
    let t = now_ms();
    put_ids(&emulator, "abuse", 0..4000, t, |i| format!("k{i}"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("abuse", "abuse", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // A time limit far above what a count takes even on a loaded machine: the join is
        // still running when the count answers.
        let server = Server::start(&path, &table, &schema("abuse"), &["--query-timeout-ms", "20000"]);
        let started = Instant::now();
        while count(&server, None, "abuse") != 4000 {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(200));
        }
        for sql in [
            "CREATE TABLE x (a INT)",
            "DROP TABLE abuse",
            "INSERT INTO abuse SELECT * FROM abuse",
            "DELETE FROM abuse",
            "COPY abuse TO '/tmp/stolen.csv'",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM 'http://127.0.0.1:1/x.csv'",
            "SET datafusion.execution.target_partitions = 1",
        ] {
            let body = serde_json::json!({"sql": sql}).to_string();
            let (status, text) = server.post("/query/sql", None, body.as_bytes()).unwrap();
            assert_eq!(status, 200);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["exceptions"][0]["errorCode"], 150, "{sql}: {text}");
        }
        assert!(!std::path::Path::new("/tmp/stolen.csv").exists());
        // A join over a hundred billion generated rows runs into the time limit; meanwhile the
        // server answers other queries.
        // Shown by the order of events, not by durations: the join has taken its snapshot of
        // the table (the table's scan counter moved) before the count is sent; the count
        // answers; only then does the join answer, with the time-limit error, so it was still
        // running when the count answered.
        let before = table_scans(&server, "abuse");
        let events = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let join = scope.spawn(|| {
                let body = br#"{"sql": "SELECT count(*) FROM abuse a JOIN generate_series(1, 100000000000) g ON a.id = g.value"}"#;
                let answer = server.post("/query/sql", None, body).unwrap();
                events.lock().unwrap().push("join answered");
                answer
            });
            let started = Instant::now();
            while table_scans(&server, "abuse") == before {
                assert!(!join.is_finished(), "the join answered before it read the table");
                assert!(started.elapsed() < Duration::from_secs(60), "the join did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(count(&server, None, "abuse"), 4000, "answered while the join runs");
            assert!(!join.is_finished(), "the join was still running when the count answered");
            events.lock().unwrap().push("count answered");
            let (status, text) = join.join().unwrap();
            assert_eq!(status, 200);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["exceptions"][0]["errorCode"], 250, "{text}");
        });
        assert_eq!(*events.lock().unwrap(), ["count answered", "join answered"]);
        assert_eq!(count(&server, None, "abuse"), 4000, "still answering after");
    })
    .await
    .unwrap();
}

/// How many times queries have read `table` so far (`shoal_table_queries_total`).
fn table_scans(server: &Server, table: &str) -> u64 {
    let (status, metrics) = server.get("/metrics", None).unwrap();
    assert_eq!(status, 200, "{metrics}");
    let prefix = format!("shoal_table_queries_total{{table=\"{table}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
}
