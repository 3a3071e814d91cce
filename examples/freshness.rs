//! Freshness, end to end: records put into kinesis-local with their put time, polled through the
//! engine until visible (`requests_per_second_limit` 5), and in the same run the floor: a bare
//! aws-sdk-kinesis poller at the same rate on the same stream, recording when each record first
//! comes back. Prints p50 and p99 put-to-visible latency of both.
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
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

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
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(r.data().as_ref()) {
                        seen.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(v["id"].as_i64().unwrap_or(-1))
                            .or_insert(now);
                    }
                }
                if let Some(next) = out.next_shard_iterator() {
                    it = next.to_string();
                }
            }
        })
    };
    // Shoal: poll the table until each id is visible.
    let watcher = {
        let (engine, seen) = (engine.clone(), Arc::clone(&shoal_seen));
        tokio::spawn(async move {
            let mut visible = -1i64;
            while visible < total - 1 {
                if let Ok(b) = engine.sql("SELECT max(id) FROM fresh").await
                    && let Some(batch) = b.first()
                    && batch.num_rows() > 0
                    && !batch.column(0).is_null(0)
                {
                    let max = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0);
                    let now = start.elapsed();
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    for id in visible + 1..=max {
                        s.insert(id, now);
                    }
                    visible = visible.max(max);
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
    let _ = tokio::time::timeout(Duration::from_secs(60), watcher).await;
    let _ = tokio::time::timeout(Duration::from_secs(60), floor).await;
    let put = put_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let lat = |seen: &BTreeMap<i64, Duration>| -> Vec<f64> {
        put.iter()
            .filter_map(|(id, p)| seen.get(id).map(|s| s.saturating_sub(*p).as_secs_f64() * 1000.0))
            .collect()
    };
    let shoal = lat(&shoal_seen.lock().unwrap_or_else(|p| p.into_inner()));
    let floor = lat(&floor_seen.lock().unwrap_or_else(|p| p.into_inner()));
    println!("{} records, one every {} ms, requests_per_second_limit 5", total, args.interval_ms);
    println!(
        "shoal put-to-visible: p50 {:.0} ms, p99 {:.0} ms ({} seen)",
        percentile(shoal.clone(), 0.5),
        percentile(shoal.clone(), 0.99),
        shoal.len()
    );
    println!(
        "floor (bare poller):  p50 {:.0} ms, p99 {:.0} ms ({} seen)",
        percentile(floor.clone(), 0.5),
        percentile(floor.clone(), 0.99),
        floor.len()
    );
    println!(
        "p99 difference: {:.0} ms (goal: within 50 ms)",
        percentile(shoal, 0.99) - percentile(floor, 0.99)
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
