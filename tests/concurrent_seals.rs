//! Queries running through the engine while its table seals segments (a seal every 1,000 rows,
//! 150 seals) never see a row twice and never miss one: the rows are always a prefix of the
//! ids written, in one shard's order, whatever the moment of the seal the snapshot falls on.

mod common;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::*;
use shoal::Engine;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_seals_see_every_row_once() {
    const ROWS: usize = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("sealing", 1);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine
        .create_table(&table_config("sealing", "sealing", "http://unused", 1000), &schema("sealing"))
        .await
        .unwrap();
    let shard = stream.open_shards()[0].clone();
    let writer = std::thread::spawn(move || {
        let t = now_ms();
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(500) {
            stream.put_many(&shard, chunk.iter().map(|i| ("k", bytes::Bytes::from(record(*i, t)))));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut queries = 0;
    let mut seals_seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let batches =
            engine.sql("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM sealing").await.unwrap();
        let b = &batches[0];
        let get = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0)
        };
        let (count, distinct) = (get(0), get(1));
        assert_eq!(count, distinct, "a row seen twice");
        if count > 0 {
            assert_eq!((get(2), get(3)), (0, count - 1), "a row missed");
        }
        queries += 1;
        let sealed = engine.table_status("sealing").unwrap().segments.len();
        seals_seen.insert(sealed);
        if count == ROWS as i64 && sealed == ROWS / 1000 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{count} rows, {sealed} segments");
    }
    writer.join().unwrap();
    // The queries ran while the table sealed, not before or after it all.
    assert!(
        seals_seen.len() >= 20,
        "queries saw {} different seal counts in {queries} queries",
        seals_seen.len()
    );
    engine.shutdown().await;
}
