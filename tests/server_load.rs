//! The server under load for a bounded time, all on loopback: clients asking good queries,
//! clients asking the abusive ones (huge values, deep expressions, a join past the time limit,
//! a join without a key over billions of pairs, a query over the memory pool), and clients
//! holding slow connections open. The server stays alive, its resident memory stays under its
//! query pool plus a stated overhead, and every good query keeps answering rightly; their p50
//! and p99 are printed (BENCHMARKS.md records a run). Small numbers, so that it fits the test
//! command.

mod common;
mod server;

use common::*;
use serde_json::Value;
use server::*;
use shoal_stream::emulator::Emulator;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the load runs.
const LOAD: Duration = Duration::from_secs(20);
/// The server's memory for all queries together, in MiB.
const POOL_MIB: u64 = 256;
/// What the process may hold beyond the query pool: the runtime, DataFusion's plans, the
/// consuming segment, mapped files and the allocator's slack.
const OVERHEAD_MIB: u64 = 384;

fn post(port: u16, sql: &str) -> std::io::Result<(u16, String)> {
    let body = serde_json::json!({"sql": sql}).to_string();
    request(port, "POST", "/query/sql", None, Some(body.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stays_up_bounded_and_answering_under_mixed_load() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("load", 2).await.unwrap();
    let t = now_ms();
    put_ids(&emulator, "load", 0..4000, t, |i| format!("k{i}"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("load", "load", &emulator.endpoint(), 1000);
    let report = tokio::task::spawn_blocking(move || {
        let pool = POOL_MIB.to_string();
        let flags = ["--memory-mib", pool.as_str(), "--query-memory-mib", "64", "--query-timeout-ms", "2000"];
        let mut server = Server::start(dir.path(), &table, &schema("load"), &flags);
        let port = server.port;
        let count = || -> Option<i64> {
            let (status, text) = post(port, "SELECT count(*) FROM load").ok()?;
            (status == 200).then_some(())?;
            serde_json::from_str::<Value>(&text).ok()?["resultTable"]["rows"][0][0].as_i64()
        };
        let started = Instant::now();
        while count() != Some(4000) {
            assert!(started.elapsed() < Duration::from_secs(60), "4,000 rows within a minute");
            std::thread::sleep(Duration::from_millis(200));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let abusive_answers = Arc::new(AtomicU64::new(0));
        let slow_held = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + LOAD;
        let (latencies, wrong) = std::thread::scope(|scope| {
            let good: Vec<_> = (0..3)
                .map(|c| {
                    scope.spawn(move || {
                        let mut latencies = Vec::new();
                        let mut wrong = Vec::new();
                        let queries = [
                            ("SELECT count(*) FROM load", serde_json::json!(4000)),
                            ("SELECT count(DISTINCT id) FROM load WHERE id < 1000", serde_json::json!(1000)),
                            // MAX is DOUBLE in Pinot (pinot-core MaxAggregationFunction.java).
                            ("SELECT max(id) FROM load", serde_json::json!(3999.0)),
                        ];
                        let mut n = c;
                        while Instant::now() < until {
                            let (sql, expected) = &queries[n % queries.len()];
                            n += 1;
                            let asked = Instant::now();
                            let answer = post(port, sql);
                            latencies.push(asked.elapsed());
                            match answer {
                                Ok((200, text)) => {
                                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                                    if v["resultTable"]["rows"][0][0] != *expected {
                                        wrong.push(format!("{sql}: {text}"));
                                    }
                                }
                                other => wrong.push(format!("{sql}: {other:?}")),
                            }
                        }
                        (latencies, wrong)
                    })
                })
                .collect();
            for abusive in [
                "SELECT repeat('x', 200000000)",
                "SELECT count(*) FROM load a CROSS JOIN load b CROSS JOIN load c WHERE a.id + b.id + c.id = -1",
                "SELECT count(*) FROM load a JOIN generate_series(1, 100000000000) g ON a.id = g.value",
                "SELECT id, key, count(*) FROM load a GROUP BY id, key ORDER BY 3 DESC",
            ] {
                let answers = Arc::clone(&abusive_answers);
                scope.spawn(move || {
                    while Instant::now() < until {
                        if let Ok((200, _)) = post(port, abusive) {
                            answers.fetch_add(1, Ordering::Relaxed);
                        }
                        let deep = format!("SELECT {}", vec!["1"; 20_000].join("+"));
                        let _ = post(port, &deep);
                    }
                });
            }
            {
                let (stop, held) = (Arc::clone(&stop), Arc::clone(&slow_held));
                scope.spawn(move || {
                    // Half a header each, renewed as the server cuts them.
                    let mut open: Vec<TcpStream> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        open.retain(|s| s.peer_addr().is_ok());
                        while open.len() < 100 {
                            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { break };
                            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
                            open.push(s);
                            held.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
            let mut latencies = Vec::new();
            let mut wrong = Vec::new();
            for g in good {
                let (l, w) = g.join().unwrap();
                latencies.extend(l);
                wrong.extend(w);
            }
            stop.store(true, Ordering::Relaxed);
            (latencies, wrong)
        });
        assert!(server.alive(), "the server is alive after the load: {}", server.log_text());
        assert!(wrong.is_empty(), "every good query answered rightly: {} wrong, first {:?}", wrong.len(), wrong.first());
        let (_, peak) = server.resident_bytes();
        let bound = (POOL_MIB + OVERHEAD_MIB) << 20;
        assert!(peak < bound, "peak resident {} MiB, over {POOL_MIB} MiB of pool + {OVERHEAD_MIB} MiB", peak >> 20);
        assert_eq!(server.get("/health", None).unwrap().0, 200);
        let mut sorted = latencies.clone();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
        format!(
            "load {LOAD:?}: {} good queries, p50 {:?}, p99 {:?}, max {:?}; {} abusive answers; {} slow connections opened; peak resident {} MiB (pool {POOL_MIB} MiB)",
            sorted.len(),
            at(0.5),
            at(0.99),
            sorted[sorted.len() - 1],
            abusive_answers.load(Ordering::Relaxed),
            slow_held.load(Ordering::Relaxed),
            peak >> 20
        )
    })
    .await
    .unwrap();
    eprintln!("{report}");
}
