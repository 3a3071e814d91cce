//! Upsert (#17). Run: `cargo bench --bench upsert` (SHOAL_UPSERT_ROWS sets the rows, 10,000,000
//! by default, over a tenth as many keys).
//!
//! Through the whole engine, from an in-memory stream of two shards (records of ~70 bytes,
//! versions of a key spread over both shards), a segment sealed every 1,000,000 rows:
//! - `ingest/append` and `ingest/upsert`: the same records into a table without and with
//!   `upsertConfig` (FULL, on the time column), until every row is in. Goal: upsert at least
//!   0.7x the append-only throughput.
//! - `reopen/upsert`: opening the engine on the upsert table's directory, which rebuilds the key
//!   map from the sealed rows.
//! - `query/*`: the same queries on the upsert table (each key's latest of ten versions visible)
//!   and on an append-only table that holds just those latest rows. Goal: at most 1.2x. There,
//!   the older segments hold no visible row and are pruned; `scattered` is the harder case: key
//!   k has 1 + k % 10 versions, so every segment keeps visible rows (1M of 5.5M), against
//!   `scattered_latest`. The `query_uncompacted` group reads the upsert tables as ingested; the
//!   `query` group after every table's rows are sealed and the upsert tables compacted
//!   (UpsertCompactionTask: 30% superseded, no buffer).
//! - printed once: the key map's bytes per key (goal: at most 64).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions, SourceFactory, TableDefinition};
use shoal_stream::Source;
use shoal_stream::memory::MemoryStream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stream per table name.
#[derive(Clone)]
struct Streams(Arc<Vec<(String, MemoryStream)>>);

impl SourceFactory for Streams {
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let stream =
            self.0.iter().find(|(n, _)| n == &table.config.name).map(|(_, s)| s.clone()).expect("a stream");
        Box::pin(async move { Box::new(stream.source()) as Box<dyn Source> })
    }
}

fn table(name: &str, upsert: bool) -> (Value, Value) {
    let mut t = json!({
        "tableName": name,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            // A key of a million values gains nothing from a dictionary (Pinot's advice too);
            // `city` is encoded.
            "noDictionaryColumns": ["id"],
            "streamConfigs": {
                "streamType": "kinesis",
                "stream.kinesis.topic.name": name,
                "region": "us-east-1",
                "shardIteratorType": "TRIM_HORIZON",
                "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
                "realtime.segment.flush.threshold.rows": "2000000",
                "realtime.segment.flush.threshold.time": "1h"
            }
        },
        "metadata": {"customConfigs": {}}
    });
    let mut schema = json!({
        "schemaName": name,
        "dimensionFieldSpecs": [{"name": "id", "dataType": "STRING"}, {"name": "city", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "v", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    });
    if upsert {
        t["upsertConfig"] = json!({"mode": "FULL"});
        schema["primaryKeyColumns"] = json!(["id"]);
        // Compaction runs when the bench calls it (the engine's own pass waits 5 minutes).
        t["task"] = json!({"taskTypeConfigsMap": {"UpsertCompactionTask": {
            "bufferTimePeriod": "0d", "invalidRecordsThresholdPercent": "30"
        }}});
    }
    (t, schema)
}

/// Record number `i`: a version of key `key`.
fn record_of(i: usize, key: usize) -> String {
    let cities = ["lima", "oslo", "kyoto", "accra", "quito"];
    format!(
        r#"{{"id":"k{key}","ts":{},"city":"{}","v":{}}}"#,
        1_700_000_000_000i64 + i as i64,
        cities[i % 5],
        i % 1000
    )
}

fn record(i: usize, keys: usize) -> String {
    record_of(i, i % keys)
}

/// A stream of two shards holding records `ids` (each on the shard its number picks).
fn stream_of(ids: impl Iterator<Item = usize>, keys: usize) -> MemoryStream {
    records_stream(ids.map(|i| (i, record(i, keys))))
}

/// A stream of two shards holding numbered records (each on the shard its number picks).
fn records_stream(records: impl Iterator<Item = (usize, String)>) -> MemoryStream {
    let stream = MemoryStream::new(2);
    let shards = stream.open_shards();
    let mut batch: [Vec<bytes::Bytes>; 2] = [Vec::new(), Vec::new()];
    for (i, record) in records {
        batch[i % 2].push(bytes::Bytes::from(record));
        if batch[i % 2].len() == 100_000 {
            stream.put_many(&shards[i % 2], batch[i % 2].drain(..).map(|b| ("p", b)));
        }
    }
    for (s, b) in batch.into_iter().enumerate() {
        stream.put_many(&shards[s], b.into_iter().map(|b| ("p", b)));
    }
    stream
}

/// Opens an engine on `dir` over `streams`.
async fn open(dir: &std::path::Path, streams: &Streams) -> Engine {
    let options = EngineOptions::default().with_sources(Arc::new(streams.clone()));
    Engine::open_with(dir, options).await.unwrap()
}

/// Creates `name` in a fresh engine on `dir` and waits until it holds `rows` rows.
async fn ingest(
    dir: &std::path::Path,
    streams: &Streams,
    name: &str,
    upsert: bool,
    rows: u64,
) -> (Engine, Duration) {
    let engine = open(dir, streams).await;
    let (t, s) = table(name, upsert);
    let started = Instant::now();
    engine.create_table(&t, &s).await.unwrap();
    loop {
        let status = engine.table_status(name).unwrap();
        if status.sealed_rows + status.consuming_rows >= rows {
            return (engine, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn bench(c: &mut Criterion) {
    let rows: usize =
        std::env::var("SHOAL_UPSERT_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(10_000_000);
    let keys = rows / 10;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Scattered: key k has 1 + k % 10 versions, written round by round, so that each segment
    // keeps some visible rows (each key's last version is in round k % 10).
    let scattered: Vec<(usize, (usize, usize))> = (0..10)
        .flat_map(|r| (0..keys).filter(move |k| k % 10 >= r).map(move |k| (r, k)))
        .enumerate()
        .collect();
    let last_of =
        scattered.iter().filter(|(_, (r, k))| *r == k % 10).map(|(i, (_, k))| (*i, record_of(*i, *k)));
    let streams = Streams(Arc::new(vec![
        ("plain".to_string(), stream_of(0..rows, keys)),
        ("upserted".to_string(), stream_of(0..rows, keys)),
        // The latest version of each key: the rows the upsert table shows.
        ("latest".to_string(), stream_of(rows - keys..rows, keys)),
        (
            "scattered".to_string(),
            records_stream(scattered.iter().map(|(i, (_, k))| (*i, record_of(*i, *k)))),
        ),
        ("scattered_latest".to_string(), records_stream(last_of)),
    ]));

    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(rows as u64));
    for (case, upsert) in [("append", false), ("upsert", true)] {
        let name = if upsert { "upserted" } else { "plain" };
        group.bench_function(case, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let (engine, took) =
                        runtime.block_on(ingest(dir.path(), &streams, name, upsert, rows as u64));
                    total += took;
                    runtime.block_on(engine.shutdown());
                }
                total
            })
        });
    }
    group.finish();

    // One table of each kind, kept for reopening and queries.
    let upsert_dir = tempfile::tempdir().unwrap();
    let latest_dir = tempfile::tempdir().unwrap();
    let (upserted, _) = runtime.block_on(ingest(upsert_dir.path(), &streams, "upserted", true, rows as u64));
    let (latest, _) = runtime.block_on(ingest(latest_dir.path(), &streams, "latest", false, keys as u64));
    let (scattered_dir, scattered_latest_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (scattered_engine, _) =
        runtime.block_on(ingest(scattered_dir.path(), &streams, "scattered", true, scattered.len() as u64));
    let (scattered_latest, _) = runtime.block_on(ingest(
        scattered_latest_dir.path(),
        &streams,
        "scattered_latest",
        false,
        keys as u64,
    ));
    // Compaction rewrites the segments whose rows are mostly superseded; the `*_uncompacted`
    // runs above it measure the tables as ingested.
    let mut group = c.benchmark_group("query_uncompacted");
    for (engine, t) in [(&upserted, "upserted"), (&scattered_engine, "scattered")] {
        let sql = format!("SELECT count(*) FROM {t} WHERE v > 500");
        group.bench_function(format!("filtered_count/{t}"), |b| {
            b.iter(|| runtime.block_on(engine.sql(&sql)).unwrap())
        });
    }
    group.finish();
    // Every table's rows sealed (force commit), as in a table that has run a while, where the
    // consuming segments hold a small part of the rows; then compaction.
    for (engine, t) in [
        (&upserted, "upserted"),
        (&latest, "latest"),
        (&scattered_engine, "scattered"),
        (&scattered_latest, "scattered_latest"),
    ] {
        runtime.block_on(engine.force_commit(t)).unwrap();
    }
    for (engine, t) in [(&upserted, "upserted"), (&scattered_engine, "scattered")] {
        let before = engine.table_status(t).unwrap().sealed_rows;
        let started = Instant::now();
        let compacted = engine.compact().unwrap();
        let after = engine.table_status(t).unwrap().sealed_rows;
        println!(
            "compaction of {t}: {compacted} segments, {before} to {after} sealed rows, {:?}",
            started.elapsed()
        );
    }
    let status = upserted.table_status("upserted").unwrap().upsert.unwrap();
    println!(
        "key map: {} keys, {} bytes, {:.1} bytes a key; validity bitmaps {} bytes for {rows} rows",
        status.keys,
        status.key_map_bytes,
        status.key_map_bytes as f64 / status.keys as f64,
        status.bitmap_bytes
    );

    let mut group = c.benchmark_group("query");
    for (case, sql) in [
        ("count", "SELECT count(*) FROM {t}"),
        ("filtered_count", "SELECT count(*) FROM {t} WHERE v > 500"),
        ("group_by", "SELECT city, count(*), sum(v) FROM {t} GROUP BY city"),
    ] {
        for (engine, t) in [
            (&upserted, "upserted"),
            (&latest, "latest"),
            (&scattered_engine, "scattered"),
            (&scattered_latest, "scattered_latest"),
        ] {
            let sql = sql.replace("{t}", t);
            let want = runtime.block_on(engine.sql(&sql)).unwrap();
            assert!(!want.is_empty());
            group.bench_function(format!("{case}/{t}"), |b| {
                b.iter(|| runtime.block_on(engine.sql(&sql)).unwrap())
            });
        }
    }
    group.finish();
    let same = |a: &Engine, at: &str, b: &Engine, bt: &str| {
        let sql = "SELECT city, count(*), sum(v) FROM {t} GROUP BY city ORDER BY city";
        let a = runtime.block_on(a.sql(&sql.replace("{t}", at))).unwrap();
        let b = runtime.block_on(b.sql(&sql.replace("{t}", bt))).unwrap();
        arrow::util::pretty::pretty_format_batches(&a).unwrap().to_string()
            == arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string()
    };
    assert!(same(&upserted, "upserted", &latest, "latest"), "the same answers");
    assert!(same(&scattered_engine, "scattered", &scattered_latest, "scattered_latest"), "the same answers");
    let s = scattered_engine.table_status("scattered").unwrap();
    println!("scattered: {} rows in {} sealed segments, {} visible", scattered.len(), s.segments.len(), keys);

    runtime.block_on(upserted.shutdown());
    drop(upserted);
    let mut group = c.benchmark_group("reopen");
    group.sample_size(10).warm_up_time(Duration::from_millis(1));
    group.bench_function("upsert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let engine = runtime.block_on(open(upsert_dir.path(), &streams));
                total += started.elapsed();
                runtime.block_on(engine.shutdown());
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
