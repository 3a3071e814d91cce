//! Faults between the engine and kinesis-local, under load and during a split: a proxy resets
//! connections, delays answers past the fetch timeout, returns ProvisionedThroughputExceeded
//! and ExpiredIterator (each at least once: the proxy's fault script guarantees it), and closes
//! its port for 30 s. 0 records lost, 0 duplicated, the lag recovers afterwards, and the
//! engine's metrics count the throttles, iterator renewals and retries its readers met.

mod common;

use common::*;
use shoal::{Engine, EngineOptions, ShardState};
use shoal_stream::emulator::{Emulator, FaultProxy, Faults};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_loses_and_repeats_nothing_through_faults_and_downtime() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("rough", 2).await.unwrap();
    let proxy = FaultProxy::start(emulator.port()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    let mut config = table_config("rough", "rough", &proxy.endpoint(), 500);
    config["tableIndexConfig"]["streamConfigs"]["stream.kinesis.fetch.timeout.millis"] = "1500".into();
    config["tableIndexConfig"]["streamConfigs"]["maxRecordsToFetch"] = "200".into();
    proxy.set(Faults {
        throttle: 0.3,
        expire: 0.15,
        delay: 0.1,
        delay_by: Duration::from_secs(3),
        reset: 0.2,
        seed: 1,
        slow_body: None,
    });
    engine.create_table(&config, &schema("rough")).await.unwrap();

    // Load with a split in the middle (written straight to the emulator).
    write_with_reshards(&emulator, "rough", 3000).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The port closes for 30 s while more records arrive.
    proxy.close_port().await.unwrap();
    let t = now_ms();
    for i in 3000..3500 {
        emulator.put("rough", &format!("key-{}", i % 37), record(i, t).as_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set(Faults { throttle: 0.25, reset: 0.11, seed: 2, ..Faults::default() });
    proxy.reopen_port().await.unwrap();

    let (rows, distinct) = wait_for_rows(&engine, "rough", 3500, Duration::from_secs(90)).await;
    if rows != 3500 {
        let batches = engine.sql("SELECT id FROM rough ORDER BY id").await.unwrap();
        let mut have = std::collections::BTreeSet::new();
        for b in &batches {
            let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
            have.extend(
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c)
                    .values()
                    .iter()
                    .copied(),
            );
        }
        let missing: Vec<i64> = (0..3500).filter(|i| !have.contains(i)).collect();
        eprintln!("missing {} ids, from {:?} to {:?}", missing.len(), missing.first(), missing.last());
        eprintln!("shards: {:?}", engine.table_status("rough").unwrap().shards);
    }
    assert_eq!((rows, distinct), (3500, 3500), "0 lost, 0 duplicated");
    // The lag recovers: every consuming shard reports 0 ms behind.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = engine.table_status("rough").unwrap();
        let lagging: Vec<_> = status
            .shards
            .iter()
            .filter(|s| s.state == ShardState::Consuming && s.millis_behind_latest != Some(0))
            .collect();
        if lagging.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "lag did not recover: {lagging:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counts = proxy.counts();
    assert!(
        counts.throttled > 0 && counts.expired > 0 && counts.resets > 0 && counts.delayed > 0,
        "{counts:?}"
    );
    // The scripted throttle, expired iterator and delay (past the fetch timeout) each reached
    // a reader, which counted them (the SDK's own retries are off).
    let m = engine.metrics().prometheus();
    let sum = |family: &str| prometheus_sum(&m, family, "table", "rough").unwrap_or(0.0);
    assert!(sum("shoal_shard_throttles_total") >= 1.0, "{m}");
    assert!(sum("shoal_shard_iterator_renewals_total") >= 1.0, "{m}");
    assert!(sum("shoal_shard_retries_total") >= 1.0, "{m}");
    engine.shutdown().await;
}

#[test]
fn prometheus_sums_count_samples_not_help_lines() {
    let text = "# HELP shoal_shard_throttles_total Throttling answers.\n\
                # TYPE shoal_shard_throttles_total counter\n\
                shoal_shard_throttles_total{table=\"rough\",shard=\"shardId-0\"} 2\n\
                shoal_shard_throttles_total{table=\"rough\",shard=\"shardId-1\"} 3 1700000000000\n\
                shoal_shard_throttles_total{table=\"other\",shard=\"shardId-0\"} 7\n\
                shoal_shard_throttles_total{table=\"r\\\"}ough\",shard=\"shardId-0\"} 11\n\
                shoal_shard_retries_total{table=\"rough\",shard=\"shardId-0\"} 0\n\
                shoal_queries_total 4\n";
    assert_eq!(prometheus_sum(text, "shoal_shard_throttles_total", "table", "rough"), Some(5.0));
    assert_eq!(prometheus_sum(text, "shoal_shard_throttles_total", "table", "r\"}ough"), Some(11.0));
    assert_eq!(prometheus_sum(text, "shoal_shard_retries_total", "table", "rough"), Some(0.0));
    assert_eq!(prometheus_sum(text, "shoal_shard_iterator_renewals_total", "table", "rough"), None);
    assert_eq!(prometheus_sum("# HELP x y\n# TYPE x counter\n", "x", "table", "rough"), None);
}
