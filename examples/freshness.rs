//! Freshness, end to end: records put into kinesis-local with their put time, polled through the
//! engine until visible (`requests_per_second_limit` 5), and in the same run the floor: a bare
//! aws-sdk-kinesis poller at the same rate on the same stream, recording when each record first
//! comes back. Prints p50 and p99 put-to-visible latency of both, and how many records each
//! side saw: a record either side never saw within a minute of the last put fails the run
//! (exit status 1), since percentiles over the records seen would hide it.
//!
//! ```text
//! npm ci --prefix tools/kinesis-local && cargo run --release --example freshness -- --records 300
//! ```

use arrow::array::AsArray;
use aws_sdk_kinesis::types::ShardIteratorType;
use clap::Parser;
use serde_json::json;
use shoal::{Engine, EngineOptions};
use shoal_stream::emulator::Emulator;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Records to put, one every `--interval-ms`.
    #[arg(long, default_value_t = 300)]
    records: usize,
    /// Time between puts.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// How long the watchers keep looking after the last put.
const WAIT_AFTER_LAST_PUT: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let emulator = Emulator::start().await.expect("kinesis-local (npm ci --prefix tools/kinesis-local)");
    emulator.create_stream("fresh", 1).await.expect("create stream");
    let dir = std::env::temp_dir().join(format!("shoal-freshness-{}", std::process::id()));
    let engine = Engine::open_with(&dir, EngineOptions::default()).await.expect("engine");
    let table = json!({
        "tableName": "fresh", "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts"},
        "tableIndexConfig": {"streamConfigs": {
            "streamType": "kinesis", "stream.kinesis.topic.name": "fresh", "region": "us-east-1",
            "endpoint": emulator.endpoint(), "accessKey": "x", "secretKey": "y",
            "shardIteratorType": "TRIM_HORIZON", "requests_per_second_limit": "5",
            "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder"
        }}
    });
    let schema = json!({"schemaName": "fresh", "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]});
    engine.create_table(&table, &schema).await.expect("table");

    let start = Instant::now();
    let put_at: Arc<Mutex<BTreeMap<i64, Duration>>> = Arc::default();
    let floor_seen: Arc<Mutex<BTreeMap<i64, Duration>>> = Arc::default();
    let shoal_seen: Arc<Mutex<BTreeMap<i64, Duration>>> = Arc::default();
    let total = args.records as i64;

    // The floor: a bare poller at 5 GetRecords per second.
    let floor = {
        let (client, seen) = (emulator.client().clone(), Arc::clone(&floor_seen));
        tokio::spawn(async move {
            let shard = client.list_shards().stream_name("fresh").send().await.expect("list").shards()[0]
                .shard_id()
                .to_string();
            let mut it = client
                .get_shard_iterator()
                .stream_name("fresh")
                .shard_id(shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("iterator")
                .shard_iterator
                .expect("an open shard has an iterator");
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while seen.lock().unwrap_or_else(|p| p.into_inner()).len() < total as usize {
                tick.tick().await;
                let Ok(out) = client.get_records().shard_iterator(&it).send().await else { continue };
                let now = start.elapsed();
                for r in out.records() {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(r.data().as_ref())
                        && let Some(id) = v["id"].as_i64()
                    {
                        seen.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert(now);
                    }
                }
                if let Some(next) = out.next_shard_iterator() {
                    it = next.to_string();
                }
            }
        })
    };
    // Shoal: poll the table and note when each id is first returned. Each id counts only when
    // its own row comes back (a larger max(id) would not prove that a smaller one arrived).
    let watcher = {
        let (engine, seen) = (engine.clone(), Arc::clone(&shoal_seen));
        tokio::spawn(async move {
            let mut first_unseen = 0i64;
            while first_unseen < total {
                if let Ok(batches) =
                    engine.sql(&format!("SELECT id FROM fresh WHERE id >= {first_unseen}")).await
                {
                    let now = start.elapsed();
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    for batch in &batches {
                        let ids = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                        for id in ids.iter().flatten() {
                            s.entry(id).or_insert(now);
                        }
                    }
                    while s.contains_key(&first_unseen) {
                        first_unseen += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for id in 0..total {
        let body = json!({"id": id, "ts": shoal_stream::now_ms()}).to_string();
        put_at.lock().unwrap_or_else(|p| p.into_inner()).insert(id, start.elapsed());
        emulator.put("fresh", &format!("k{id}"), body.as_bytes()).await.expect("put");
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    // Both watchers stop by themselves once they saw every record; the deadline bounds the wait.
    let deadline = tokio::time::Instant::now() + WAIT_AFTER_LAST_PUT;
    for task in [watcher, floor] {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
    let put = put_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Latencies of the records seen, and the ids never seen.
    let lat = |seen: &BTreeMap<i64, Duration>| -> (Vec<f64>, Vec<i64>) {
        let mut latencies = Vec::new();
        let mut unseen = Vec::new();
        for (id, p) in &put {
            match seen.get(id) {
                Some(s) => latencies.push(s.saturating_sub(*p).as_secs_f64() * 1000.0),
                None => unseen.push(*id),
            }
        }
        (latencies, unseen)
    };
    let (shoal, shoal_unseen) = lat(&shoal_seen.lock().unwrap_or_else(|p| p.into_inner()));
    let (floor, floor_unseen) = lat(&floor_seen.lock().unwrap_or_else(|p| p.into_inner()));
    println!("{} records, one every {} ms, requests_per_second_limit 5", total, args.interval_ms);
    println!(
        "shoal put-to-visible: p50 {:.0} ms, p99 {:.0} ms ({} of {} seen)",
        percentile(shoal.clone(), 0.5),
        percentile(shoal.clone(), 0.99),
        shoal.len(),
        put.len()
    );
    println!(
        "floor (bare poller):  p50 {:.0} ms, p99 {:.0} ms ({} of {} seen)",
        percentile(floor.clone(), 0.5),
        percentile(floor.clone(), 0.99),
        floor.len(),
        put.len()
    );
    println!(
        "p99 difference: {:.0} ms (goal: within 50 ms)",
        percentile(shoal, 0.99) - percentile(floor, 0.99)
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut failed = false;
    for (side, unseen) in [("shoal", &shoal_unseen), ("floor (bare poller)", &floor_unseen)] {
        if !unseen.is_empty() {
            failed = true;
            let shown: Vec<String> = unseen.iter().take(20).map(i64::to_string).collect();
            eprintln!(
                "FAILED: {side} never saw {} of {} records within {WAIT_AFTER_LAST_PUT:?} of the last put (ids {}{}); the percentiles above leave them out",
                unseen.len(),
                put.len(),
                shown.join(", "),
                if unseen.len() > shown.len() { ", ..." } else { "" }
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}
