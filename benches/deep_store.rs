//! The deep store (#18). Run: `cargo bench --bench deep_store` (SHOAL_DEEP_ROWS sets the rows,
//! 10,000,000 by default; needs moto's S3 server, which scripts/test.sh installs).
//!
//! The comparison's 10-field events (benches/compare), from an in-memory stream of two shards,
//! a segment sealed every 1,000,000 rows, into two tables: `events` and `events_cold`, whose
//! `tierConfigs` sends every segment to the cold tier once uploaded. Against moto's S3 server
//! on loopback (a Python process: a real S3 API, not a fast one), it prints:
//! - upload throughput: the engine reopened with the deep store on the sealed tables uploads
//!   every segment (Parquet encoding and PUT), timed until nothing is pending;
//! - bytes per row: NDJSON, the local segment files, the Parquet objects;
//! - restore: `Engine::open` on an empty data directory, until `events` is back;
//! - the comparison's query set on `events_cold` (every segment read from the store by
//!   DataFusion's Parquet reader) against `events` (local), medians of 5 runs, answers checked
//!   equal.
//!
//! With `SHOAL_DEEP_FILE=1` the store is a `file://` directory on local disk instead.

#[path = "../tests/common.rs"]
#[allow(unused_imports)]
mod common;

use serde_json::{Value, json};
use shoal::{Engine, EngineOptions, SourceFactory, TableDefinition};
use shoal_segment::events::{EVENTS_SCHEMA, EventGenerator};
use shoal_stream::Source;
use shoal_stream::memory::MemoryStream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every table reads the same stream.
#[derive(Clone)]
struct Shared(MemoryStream);

impl SourceFactory for Shared {
    fn create(&self, _table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let stream = self.0.clone();
        Box::pin(async move { Box::new(stream.source()) as Box<dyn Source> })
    }
}

fn table(name: &str, cold: bool) -> Value {
    let mut t = json!({
        "tableName": name,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "timestamp", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "kinesis",
                "stream.kinesis.topic.name": "events",
                "region": "us-east-1",
                "shardIteratorType": "TRIM_HORIZON",
                "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
                "realtime.segment.flush.threshold.rows": "2000000",
                "realtime.segment.flush.threshold.time": "1h"
            }
        },
        "metadata": {"customConfigs": {}}
    });
    if cold {
        t["tierConfigs"] = json!([{"name": "cold", "segmentSelectorType": "time", "segmentAge": "1ms", "storageType": "deep_store"}]);
    }
    t
}

fn options(stream: &MemoryStream, deep: Option<shoal::DeepStoreOptions>) -> EngineOptions {
    EngineOptions::default()
        .with_sources(Arc::new(Shared(stream.clone())))
        .with_deep_store(deep)
        .with_retention_interval(Duration::from_millis(200))
}

async fn wait(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A printed answer with every decimal cell to 9 significant digits (sums add in different
/// orders).
fn rounded(answer: &str) -> String {
    answer
        .split('|')
        .map(|cell| match cell.trim().parse::<f64>() {
            Ok(v) if cell.contains('.') => format!("{v:.8e}"),
            _ => cell.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: usize =
        std::env::var("SHOAL_DEEP_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(10_000_000);
    let root = tempfile::tempdir().unwrap();
    // SHOAL_DEEP_FILE=1: a file:// store on local disk instead (the format's cost without
    // moto's).
    let moto = common::Moto::start("bench").await;
    let on_disk = std::env::var_os("SHOAL_DEEP_FILE").is_some();
    let deep = if on_disk {
        shoal::DeepStoreOptions::new(format!("file://{}/lake", root.path().display()))
    } else {
        moto.deep_store("bench", "lake")
    };
    println!(
        "deep store: {}",
        if on_disk { "file:// on local disk" } else { "moto's S3 server on loopback" }
    );

    // The events, on two shards.
    let stream = MemoryStream::new(2);
    let shards = stream.open_shards();
    let mut generator = EventGenerator::new(42, 1_700_000_000_000);
    let mut ndjson_bytes = 0u64;
    let mut batch: Vec<bytes::Bytes> = Vec::new();
    for i in 0..rows {
        let e = generator.next_event();
        ndjson_bytes += e.len() as u64 + 1;
        batch.push(bytes::Bytes::from(e));
        if batch.len() == 100_000 || i + 1 == rows {
            let shard = &shards[(i / 100_000) % 2];
            stream.put_many(shard, batch.drain(..).map(|b| ("p", b)));
        }
    }
    let schema: Value = serde_json::from_str(EVENTS_SCHEMA).unwrap();

    // Ingest, sealed, without the deep store.
    let dir = root.path().join("data");
    let engine = Engine::open_with(&dir, options(&stream, None)).await.unwrap();
    for (name, cold) in [("events", false), ("events_cold", true)] {
        let mut s = schema.clone();
        s["schemaName"] = json!(name);
        engine.create_table(&table(name, cold), &s).await.unwrap();
    }
    for name in ["events", "events_cold"] {
        wait("ingest", async || {
            let s = engine.table_status(name).unwrap();
            s.sealed_rows + s.consuming_rows >= rows as u64
        })
        .await;
        engine.force_commit(name).await.unwrap();
    }
    let local_bytes: u64 = engine.table_status("events").unwrap().segments.iter().map(|s| s.bytes).sum();
    engine.shutdown().await;
    drop(engine);

    // Upload: the same directory, reopened with the deep store.
    let started = Instant::now();
    let engine = Engine::open_with(&dir, options(&stream, Some(deep.clone()))).await.unwrap();
    wait("uploads", async || {
        ["events", "events_cold"].iter().all(|t| {
            let s = engine.table_status(t).unwrap();
            let d = s.deep_store.unwrap();
            d.pending_segments == 0 && d.manifest_segments == s.segments.len() as u64
        })
    })
    .await;
    let upload_s = started.elapsed().as_secs_f64();
    let metrics = engine.metrics().prometheus();
    let uploaded: f64 = ["events", "events_cold"]
        .iter()
        .map(|t| common::prometheus_sum(&metrics, "shoal_deep_store_upload_bytes_total", "table", t).unwrap())
        .sum();
    let parquet_bytes =
        common::prometheus_sum(&metrics, "shoal_deep_store_upload_bytes_total", "table", "events").unwrap();
    let segments = engine.table_status("events").unwrap().segments.len();
    println!(
        "rows: {rows} in {segments} segments per table; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "upload: {:.1} MB of Parquet (2 tables, {} rows) in {upload_s:.2} s = {:.1} MB/s, {:.2} M rows/s",
        uploaded / 1e6,
        2 * rows,
        uploaded / 1e6 / upload_s,
        2.0 * rows as f64 / 1e6 / upload_s
    );
    let per_row = |b: f64| b / rows as f64;
    println!(
        "bytes per row: NDJSON {:.1}, local segments {:.1} ({:.2}x NDJSON), Parquet {:.1} ({:.2}x NDJSON, {:.2}x local)",
        per_row(ndjson_bytes as f64),
        per_row(local_bytes as f64),
        local_bytes as f64 / ndjson_bytes as f64,
        per_row(parquet_bytes),
        parquet_bytes / ndjson_bytes as f64,
        parquet_bytes / local_bytes as f64
    );
    wait("the cold tier", async || {
        engine.table_status("events_cold").unwrap().deep_store.unwrap().cold_segments == segments as u64
    })
    .await;

    // The query set, cold against local.
    let (t0, t1) = {
        let b = engine.sql("SELECT min(\"timestamp\"), max(\"timestamp\") FROM events").await.unwrap();
        let v = |i: usize| {
            arrow::compute::cast(b[0].column(i), &arrow::datatypes::DataType::Int64)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0)
        };
        let (lo, hi) = (v(0), v(1));
        (lo + (hi - lo) * 4 / 10, lo + (hi - lo) * 5 / 10)
    };
    let queries: Vec<Value> = serde_json::from_str(include_str!("compare/queries.json")).unwrap();
    println!("query set, median of 5 (cold: every segment from the deep store; local: mapped files):");
    let mut ratios = Vec::new();
    for q in &queries {
        let sql =
            q["shoal"].as_str().unwrap().replace("{t0}", &t0.to_string()).replace("{t1}", &t1.to_string());
        let run = async |table: &str| {
            let sql = sql.replace("FROM events", &format!("FROM {table}"));
            let mut times = Vec::new();
            let mut answer = String::new();
            for _ in 0..5 {
                let started = Instant::now();
                let b = engine.sql(&sql).await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1e3);
                answer = arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
            }
            (median(times), answer)
        };
        let (local_ms, local) = run("events").await;
        let (cold_ms, cold) = run("events_cold").await;
        assert_eq!(
            rounded(&cold.replace("events_cold", "events")),
            rounded(&local),
            "{}: the same answer",
            q["name"]
        );
        ratios.push(cold_ms / local_ms);
        println!(
            "  {:<20} local {local_ms:>9.1} ms   cold {cold_ms:>9.1} ms   {:.2}x",
            q["name"].as_str().unwrap(),
            cold_ms / local_ms
        );
    }
    let geomean = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!("  geometric mean cold/local: {geomean:.2}x");
    engine.shutdown().await;
    drop(engine);

    // Restore: an empty data directory, the same deep store.
    let elsewhere = root.path().join("restored");
    let started = Instant::now();
    let engine = Engine::open_with(&elsewhere, options(&MemoryStream::new(2), Some(deep))).await.unwrap();
    let restore_s = started.elapsed().as_secs_f64();
    let status = engine.table_status("events").unwrap();
    assert_eq!(status.sealed_rows, rows as u64, "every row restored");
    println!(
        "restore: {} rows of events ({} local segments) and events_cold (left cold) in {restore_s:.2} s ({:.2} M rows/s)",
        status.sealed_rows,
        status.segments.len(),
        rows as f64 / 1e6 / restore_s
    );
    engine.shutdown().await;
}
