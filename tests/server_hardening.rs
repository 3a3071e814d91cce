//! The server against hostile requests, each a finding of a security review: it answers them
//! with Pinot's error JSON and stays up, within its limits.
//! - expressions of 50,000 terms and 3,000 nested parentheses (once, 100 terms overflowed the
//!   stack and killed the process);
//! - `repeat('x', 200000000)` twice at once (once: 21 s, 200 MB each, 2.7 GB resident, `/health`
//!   30 s late);
//! - one memory pool for all queries, admission with a bounded queue, results capped in bytes;
//! - 250 connections that send half a header, a connection cap, a header time limit;
//! - web pages: a foreign `Host` (DNS rebinding), a `text/plain` POST, framing and sniffing.

mod common;
mod server;

use common::*;
use serde_json::Value;
use server::*;
use shoal_stream::emulator::Emulator;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A server over a table of 2,000 rows, with `extra` flags; waits until every row is there.
async fn server_with_rows(
    name: &str,
    extra: &[&str],
) -> (Emulator, tempfile::TempDir, std::sync::Arc<Server>) {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream(name, 1).await.unwrap();
    let t = now_ms();
    put_ids(&emulator, name, 0..2000, t, |_| "k".to_string(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let table = table_config(name, name, &emulator.endpoint(), 1_000_000);
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let server = tokio::task::spawn_blocking({
        let (dir, name) = (dir.path().to_path_buf(), name.to_string());
        move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let server = Server::start(&dir, &table, &schema(&name), &extra);
            let started = Instant::now();
            while query(&server, &format!("SELECT count(*) FROM {name}"))["resultTable"]["rows"][0][0] != 2000
            {
                assert!(started.elapsed() < Duration::from_secs(60), "2,000 rows within a minute");
                std::thread::sleep(Duration::from_millis(200));
            }
            server
        }
    })
    .await
    .unwrap();
    (emulator, dir, std::sync::Arc::new(server))
}

fn query(server: &Server, sql: &str) -> Value {
    let body = serde_json::json!({"sql": sql}).to_string();
    let (status, text) = server.post("/query/sql", None, body.as_bytes()).unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn error_code(answer: &Value) -> i64 {
    answer["exceptions"][0]["errorCode"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_get_an_error_answer_and_the_server_stays_up() {
    let (_e, _dir, server) = server_with_rows("deep", &[]).await;
    tokio::task::spawn_blocking(move || {
        let chain = |n: usize| format!("SELECT {} AS s", vec!["1"; n].join("+"));
        assert_eq!(query(&server, &chain(100))["resultTable"]["rows"][0][0], 100);
        for sql in [chain(50_000), format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000))] {
            let answer = query(&server, &sql);
            assert_eq!(error_code(&answer), 150, "{answer}");
            assert!(answer["exceptions"][0]["message"].as_str().unwrap().contains("deep"), "{answer}");
        }
        assert_eq!(server.get("/health/liveness", None).unwrap().0, 200);
        assert_eq!(query(&server, "SELECT count(*) FROM deep")["resultTable"]["rows"][0][0], 2000);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_are_refused_memory_stays_bounded_and_health_answers() {
    let flags = ["--query-memory-mib", "64", "--query-timeout-ms", "3000"];
    let (_e, _dir, server) = server_with_rows("huge", &flags).await;
    tokio::task::spawn_blocking(move || {
        let (_, peak_before) = server.resident_bytes();
        std::thread::scope(|scope| {
            let runs: Vec<_> =
                (0..2).map(|_| scope.spawn(|| query(&server, "SELECT repeat('x', 200000000)"))).collect();
            // While they run, health answers.
            let (status, _) = server.get("/health", None).unwrap();
            assert_eq!(status, 200);
            for r in runs {
                let answer = r.join().unwrap();
                assert!(!answer["exceptions"].as_array().unwrap().is_empty(), "{answer}");
                let message = answer["exceptions"][0]["message"].as_str().unwrap_or_default();
                assert!(message.contains("repeat") && message.contains("limit"), "{answer}");
            }
        });
        let (_, peak) = server.resident_bytes();
        assert!(
            peak < peak_before + (100 << 20),
            "no 200 MB value was made: peak {peak} bytes, {peak_before} before"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_memory_pool_admission_and_result_bytes_hold_for_the_whole_server() {
    let flags = [
        "--memory-mib",
        "1",
        "--max-concurrent-queries",
        "1",
        "--max-queued-queries",
        "0",
        "--max-result-bytes",
        "20000",
        "--query-timeout-ms",
        "20000",
        // No default LIMIT: the queries below are meant to need their whole results.
        "--default-limit",
        "-1",
    ];
    let (_e, _dir, server) = server_with_rows("pool", &flags).await;
    tokio::task::spawn_blocking(move || {
        // A query that needs more than the server's whole pool: Pinot's 245.
        let answer = query(&server, "SELECT id, count(*) FROM pool GROUP BY id ORDER BY 2 DESC");
        assert_eq!(error_code(&answer), 245, "{answer}");
        // Results are cut in bytes.
        let answer = query(&server, "SELECT * FROM pool");
        assert_eq!(answer["partialResult"], true, "{answer}");
        let rows = answer["resultTable"]["rows"].as_array().unwrap().len();
        assert!(rows < 2000, "{rows} rows");
        // One place to run, no queue: while a long join runs, another query is refused at once.
        // (A join without a key over 8 billion pairs is refused before it runs: Pinot's 245.)
        let answer = query(
            &server,
            "SELECT count(*) FROM pool a CROSS JOIN pool b CROSS JOIN pool c WHERE a.id + b.id + c.id = -1",
        );
        assert_eq!(error_code(&answer), 245, "{answer}");
        std::thread::scope(|scope| {
            let before = scans(&server, "pool");
            let join = scope.spawn(|| {
                query(
                    &server,
                    "SELECT count(*) FROM pool a JOIN generate_series(1, 100000000000) g ON a.id = g.value",
                )
            });
            while scans(&server, "pool") == before {
                assert!(!join.is_finished(), "the join answered before it read the table");
                std::thread::sleep(Duration::from_millis(20));
            }
            let refused = query(&server, "SELECT count(*) FROM pool");
            // Pinot's SERVER_OUT_OF_CAPACITY, a full scheduler queue.
            assert_eq!(error_code(&refused), 211, "{refused}");
            assert!(!join.is_finished(), "refused while the join was still running");
            assert_eq!(error_code(&join.join().unwrap()), 250);
        });
    })
    .await
    .unwrap();
}

/// How many times queries have read `table` (`shoal_table_queries_total`).
fn scans(server: &Server, table: &str) -> u64 {
    let (_, metrics) = server.get("/metrics", None).unwrap();
    let prefix = format!("shoal_table_queries_total{{table=\"{table}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_cut_and_health_still_answers() {
    let flags = ["--header-timeout-ms", "2000"];
    let (_e, _dir, server) = server_with_rows("slow", &flags).await;
    tokio::task::spawn_blocking(move || {
        let port = server.port;
        // 250 connections that send half a header and then nothing.
        let mut slow: Vec<TcpStream> = (0..250)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
                s
            })
            .collect();
        // Health still answers (this client's own read limit is 60 s; it answers at once).
        assert_eq!(server.get("/health", None).unwrap().0, 200);
        // After the header time limit the server has cut them: they read the end.
        std::thread::sleep(Duration::from_millis(3000));
        for s in &mut slow {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 1024];
            let n = loop {
                match s.read(&mut buf) {
                    Ok(0) => break 0,
                    Ok(_) => continue, // a 408 answer, then the end
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break 0,
                    Err(e) => panic!("a slow connection was not cut: {e}"),
                }
            };
            assert_eq!(n, 0);
        }
        drop(slow);
        assert_eq!(server.get("/health", None).unwrap().0, 200);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_unanswered() {
    // Idle connections are not cut for a minute here: only the cap is at work.
    let flags = ["--max-connections", "20", "--header-timeout-ms", "60000"];
    let (_e, _dir, server) = server_with_rows("capped", &flags).await;
    tokio::task::spawn_blocking(move || {
        let port = server.port;
        let idle: Vec<TcpStream> =
            (0..20).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
        // Accepted after the 20 (the kernel hands connections over in order): over the cap.
        let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = extra.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let mut buf = Vec::new();
        let _ = extra.read_to_end(&mut buf);
        assert!(
            buf.is_empty(),
            "over the cap, a connection is closed unanswered: {:?}",
            String::from_utf8_lossy(&buf)
        );
        drop(idle);
        // Below the cap again, it answers (once it has seen the idle ones go).
        let started = Instant::now();
        while server.get("/health/liveness", None).map(|r| r.0).unwrap_or(0) != 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "answers again below the cap");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_cannot_use_a_local_shoal() {
    let (_e, _dir, server) = server_with_rows("pages", &[]).await;
    tokio::task::spawn_blocking(move || {
        let port = server.port;
        // DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1.
        let (status, _, body) =
            raw_request(port, b"GET /tables HTTP/1.1\r\nHost: evil.example:8099\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let request = format!("GET /health/liveness HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
            assert_eq!(raw_request(port, request.as_bytes()).unwrap().0, 200, "{host}");
        }
        // A cross-origin form or fetch without a preflight can send text/plain, not JSON.
        let sql = br#"{"sql": "SELECT count(*) FROM pages"}"#;
        let request = format!(
            "POST /query/sql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            sql.len()
        );
        let mut raw = request.into_bytes();
        raw.extend_from_slice(sql);
        let (status, _, body) = raw_request(port, &raw).unwrap();
        assert_eq!(status, 415, "{body}");
        // Every answer: no sniffing, no framing, nothing loaded.
        let (_, head, _) =
            raw_request(port, format!("GET /tables HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes())
                .unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(head.contains("x-frame-options: deny"), "{head}");
        assert!(head.contains("content-security-policy: default-src 'none'; frame-ancestors 'none'"), "{head}");
    })
    .await
    .unwrap();
}
