//! The engine against kinesis-local: 20,000 records with unique ids, a flush every 1,000 rows,
//! a split and a merge during ingestion; exactly 20,000 rows, counts queryable all along.

mod common;

use common::*;
use shoal::{Engine, EngineOptions, ShardState};
use shoal_stream::emulator::Emulator;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_records_through_a_split_and_a_merge() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("clicks", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), EngineOptions::default()).await.unwrap();
    engine
        .create_table(&table_config("clicks", "clicks", &emulator.endpoint(), 1000), &schema("clicks"))
        .await
        .unwrap();
    let writer = {
        let emulator = &emulator;
        async move { write_with_reshards(emulator, "clicks", 20_000).await }
    };
    // Counts are queryable all along: never a duplicate, never going back.
    let watcher = async {
        let mut last = 0;
        let mut seen = 0;
        loop {
            let (rows, distinct) = counts(&engine, "clicks").await;
            assert_eq!(rows, distinct, "a row counted twice");
            assert!(rows >= last, "the count went back from {last} to {rows}");
            last = rows;
            seen += 1;
            if rows == 20_000 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (_, seen) = tokio::join!(writer, tokio::time::timeout(Duration::from_secs(240), watcher));
    let seen = seen.expect("all 20,000 rows within 4 minutes");
    assert!(seen > 3);
    assert_eq!(counts(&engine, "clicks").await, (20_000, 20_000));
    let status = engine.table_status("clicks").unwrap();
    assert!(status.segments.len() >= 15, "flushed every 1,000 rows: {} segments", status.segments.len());
    assert_eq!(
        status.shards.iter().filter(|s| s.state == ShardState::Ended).count(),
        3,
        "{:?}",
        status.shards
    );
    let m = engine.metrics().prometheus();
    assert!(m.contains("shoal_rows_ingested_total{table=\"clicks\"} 20000"), "{m}");
    engine.shutdown().await;
}
