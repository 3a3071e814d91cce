//! Sustained ingest from the in-memory source: 64 shards at Kinesis's per-shard maximum (1,000
//! records/s each) for a minute, sealing as thresholds are reached. Every second it prints the
//! records put and ingested, the lag (records put but not yet ingested: the largest of the
//! second's samples, taken every 50 ms, and the largest MillisBehindLatest of a shard), the CPU
//! the engine used and the process's resident memory;
//! at the end, the lag's trend (a least-squares slope) and whether every record is queryable.
//!
//! ```text
//! cargo run --release --example sustained -- --shards 64 --rate 1000 --seconds 60
//! ```
//!
//! The producer runs on its own thread and its CPU is measured apart (RUSAGE_THREAD), so that
//! the engine's share is the process's CPU minus the producer's.

use clap::Parser;
use serde_json::json;
use shoal::{Engine, EngineOptions, SourceFactory, TableDefinition};
use shoal_segment::events::EventGenerator;
use shoal_stream::Source;
use shoal_stream::memory::MemoryStream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Shards.
    #[arg(long, default_value_t = 64)]
    shards: usize,
    /// Records per second per shard (Kinesis's write maximum is 1,000).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to produce.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Rows per sealed segment (each shard seals every rows / rate seconds).
    #[arg(long, default_value_t = 20_000)]
    segment_rows: u64,
}

struct OneStream(MemoryStream);

impl SourceFactory for OneStream {
    fn create(&self, _: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let source = self.0.source();
        Box::pin(async move { Box::new(source) as Box<dyn Source> })
    }
}

/// CPU time (user + system) of the process or of the calling thread.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let stream = MemoryStream::new(args.shards);
    let shards = stream.open_shards();
    let dir = std::env::temp_dir().join(format!("shoal-sustained-{}", std::process::id()));
    let options = EngineOptions::default().with_sources(Arc::new(OneStream(stream.clone())));
    let engine = Engine::open_with(&dir, options).await.expect("open the engine");
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("config/events.schema.json")).expect("the events schema");
    let config = json!({
        "tableName": "events",
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "timestamp", "replicasPerPartition": "1"},
        "tableIndexConfig": {"loadMode": "MMAP", "streamConfigs": {
            "streamType": "kinesis",
            "stream.kinesis.topic.name": "events",
            "region": "us-east-1",
            "shardIteratorType": "TRIM_HORIZON",
            "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
            "realtime.segment.flush.threshold.segment.rows": args.segment_rows.to_string(),
            "realtime.segment.flush.threshold.time": "1h"
        }},
        "metadata": {}
    });
    engine.create_table(&config, &schema).await.expect("create the table");

    // One second's worth of distinct events, put again and again.
    let per_second = args.rate as usize * args.shards;
    let mut generator = EventGenerator::new(7, shoal_stream::now_ms());
    let pool: Arc<Vec<bytes::Bytes>> =
        Arc::new((0..per_second).map(|_| bytes::Bytes::from(generator.next_event())).collect());
    let put = Arc::new(AtomicU64::new(0));
    let producer_cpu = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stream, put, producer_cpu, done, pool) = (
            stream.clone(),
            Arc::clone(&put),
            Arc::clone(&producer_cpu),
            Arc::clone(&done),
            Arc::clone(&pool),
        );
        let (rate, seconds) = (args.rate, args.seconds);
        std::thread::spawn(move || {
            // Ten puts a second per shard, as a Kinesis producer batching with PutRecords.
            let tick = Duration::from_millis(100);
            let per_tick = (rate / 10) as usize;
            let started = Instant::now();
            let mut next = 0usize;
            for n in 0..seconds * 10 {
                for shard in &shards {
                    let batch = (0..per_tick).map(|i| ("k", pool[(next + i) % pool.len()].clone()));
                    stream.put_many(shard, batch).expect("an open shard");
                    next = (next + per_tick) % pool.len();
                    put.fetch_add(per_tick as u64, Ordering::Relaxed);
                }
                producer_cpu.store(cpu(libc::RUSAGE_THREAD).as_micros() as u64, Ordering::Relaxed);
                let due = started + tick * (n as u32 + 1);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    println!(
        "{:>4} {:>10} {:>10} {:>9} {:>8} {:>10} {:>8} {:>9}",
        "t_s", "put", "ingested", "lag_rows", "lag_ms", "engine_cpu", "rss_mib", "segments"
    );
    let started = Instant::now();
    let (mut last_cpu, mut last_at) = (Duration::ZERO, Instant::now());
    let (mut lags, mut cpus) = (Vec::new(), Vec::new());
    let mut t = 0u64;
    loop {
        // The largest lag of the second, sampled every 50 ms (a seal's pause is shorter than a
        // second).
        let mut lag = 0;
        for sample in 1..=20u32 {
            tokio::time::sleep_until(
                (started + Duration::from_secs(t) + Duration::from_millis(50) * sample).into(),
            )
            .await;
            let ingested: u64 = engine
                .table_status("events")
                .expect("the table")
                .shards
                .iter()
                .map(|s| s.rows_ingested)
                .sum();
            lag = lag.max(put.load(Ordering::Relaxed).saturating_sub(ingested));
        }
        t += 1;
        let status = engine.table_status("events").expect("the table");
        let ingested: u64 = status.shards.iter().map(|s| s.rows_ingested).sum();
        let behind = status.shards.iter().filter_map(|s| s.millis_behind_latest).max().unwrap_or(0);
        let put_now = put.load(Ordering::Relaxed);
        let lag = if done.load(Ordering::Relaxed) { put_now.saturating_sub(ingested) } else { lag };
        let engine_cpu = cpu(libc::RUSAGE_SELF)
            .saturating_sub(Duration::from_micros(producer_cpu.load(Ordering::Relaxed)));
        let now = Instant::now();
        let share = (engine_cpu.saturating_sub(last_cpu)).as_secs_f64() / (now - last_at).as_secs_f64();
        (last_cpu, last_at) = (engine_cpu, now);
        println!(
            "{t:>4} {put_now:>10} {ingested:>10} {lag:>9} {behind:>8} {:>9.0}% {:>8.0} {:>9}",
            share * 100.0,
            rss_mib(),
            status.segments.len()
        );
        if !done.load(Ordering::Relaxed) {
            lags.push((t as f64, lag as f64));
            cpus.push(share);
        } else if lag == 0 || t > args.seconds + 60 {
            break;
        }
    }
    producer.join().expect("the producer");
    let total = put.load(Ordering::Relaxed);
    let rows = engine.sql("SELECT count(*) FROM events").await.expect("count");
    let counted = arrow::compute::cast(rows[0].column(0), &arrow::datatypes::DataType::Int64)
        .expect("a count")
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("Int64")
        .value(0);
    // The first seconds include the readers' start; the trend is taken after them.
    let steady: Vec<(f64, f64)> = lags.iter().copied().filter(|(t, _)| *t > 5.0).collect();
    let trend = slope(&steady);
    let max_lag = steady.iter().map(|p| p.1).fold(0.0, f64::max);
    let mean_cpu = cpus.iter().sum::<f64>() / cpus.len().max(1) as f64;
    println!();
    println!(
        "{} shards x {} records/s for {} s: {total} records put, {counted} queryable after the drain",
        args.shards, args.rate, args.seconds
    );
    println!("engine CPU: {:.0}% of one core on average (of {} cores)", mean_cpu * 100.0, num_cpus());
    println!(
        "lag after the first 5 s: max {max_lag:.0} records ({:.2} s of input), trend {trend:+.1} records/s ({})",
        max_lag / per_second as f64,
        if trend.abs() < per_second as f64 / 100.0 { "flat" } else { "GROWING" }
    );
    println!(
        "{}",
        if counted as u64 == total { "every record queryable: yes" } else { "every record queryable: NO" }
    );
    engine.shutdown().await;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
