//! The embedding API (#21) against kinesis-local: a realtime table in an app's own DataFusion
//! context (joined with the app's table, Pinot's functions registered there, through seals and a
//! drop), and an app's table inside Shoal's SQL.

mod common;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use shoal::Engine;
use shoal_stream::emulator::Emulator;
use std::sync::Arc;
use std::time::Duration;

/// The app's own table: `key-0`…`key-36` → a region (`key-n` is in region n % 3).
fn regions() -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
    ]));
    let keys: Vec<String> = (0..37).map(|k| format!("key-{k}")).collect();
    let names: Vec<String> = (0..37).map(|k| ["north", "south", "west"][k % 3].to_string()).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(keys)) as ArrayRef, Arc::new(StringArray::from(names))],
    )
    .unwrap();
    MemTable::try_new(schema, vec![vec![batch]]).unwrap()
}

/// Rows per region for ids `0..n` (`record(id)` has key `key-{id % 37}`), by hand.
fn expected_regions(n: usize) -> Vec<(String, i64)> {
    let mut counts = [0i64; 3];
    for id in 0..n {
        counts[(id % 37) % 3] += 1;
    }
    ["north", "south", "west"].iter().zip(counts).map(|(r, c)| (r.to_string(), c)).collect()
}

fn pairs(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let names = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let names = names.as_any().downcast_ref::<StringArray>().unwrap();
        let counts = arrow::compute::cast(b.column(1), &DataType::Int64).unwrap();
        let counts = counts.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((names.value(i).to_string(), counts.value(i)));
        }
    }
    out
}

async fn count_in(ctx: &SessionContext, sql: &str) -> i64 {
    let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let c = arrow::compute::cast(b[0].column(0), &DataType::Int64).unwrap();
    c.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shoal_table_in_an_apps_datafusion() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("app", 2).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .create_table(&table_config("app", "app", &emulator.endpoint(), 100), &schema("app"))
        .await
        .unwrap();

    let ctx = SessionContext::new();
    ctx.register_table("events", engine.table_provider("app").unwrap()).unwrap();
    ctx.register_table("regions", Arc::new(regions())).unwrap();
    shoal::register_functions(&ctx);

    // Queried all along while 1,500 records arrive and seal every 100 rows: never a row twice,
    // never fewer than before.
    let t = now_ms();
    let writer = async {
        for from in (0..1500).step_by(250) {
            put_ids(&emulator, "app", from..from + 250, t, |i| format!("p{i}"), None).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let reader = async {
        let mut last = 0;
        loop {
            let b = ctx
                .sql("SELECT count(*), count(DISTINCT id) FROM events")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let get = |i: usize| {
                let c = arrow::compute::cast(b[0].column(i), &DataType::Int64).unwrap();
                c.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
            };
            let (rows, distinct) = (get(0), get(1));
            assert_eq!(rows, distinct, "a row twice");
            assert!(rows >= last && rows <= 1500, "{rows} after {last}");
            last = rows;
            if rows == 1500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(writer, reader);
    assert!(engine.table_status("app").unwrap().segments.len() >= 10, "the scans ran through seals");

    // A join with the app's table, checked by hand.
    let b = ctx
        .sql("SELECT r.region, count(*) FROM events e JOIN regions r ON e.key = r.key GROUP BY r.region ORDER BY r.region")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(pairs(&b), expected_regions(1500));
    // Pinot's functions in the app's context: DATETRUNC to the day, PERCENTILE.
    let day = t - t.rem_euclid(86_400_000);
    assert_eq!(
        count_in(&ctx, &format!("SELECT count(*) FROM events WHERE DATETRUNC('DAY', ts) = {day}")).await,
        1500
    );
    let b = ctx.sql("SELECT PERCENTILE(id, 50) FROM events").await.unwrap().collect().await.unwrap();
    let p = arrow::compute::cast(b[0].column(0), &DataType::Float64).unwrap();
    let p = p.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().value(0);
    assert!((749.0..=750.0).contains(&p), "{p}");

    // Dropped: the provider says so instead of serving old rows.
    engine.drop_table("app").await.unwrap();
    let err = ctx.sql("SELECT count(*) FROM events").await.unwrap().collect().await.unwrap_err().to_string();
    assert!(err.contains("was dropped"), "{err}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_table_in_shoals_sql() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("joined", 1).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(data.path()).await.unwrap();
    engine
        .create_table(&table_config("joined", "joined", &emulator.endpoint(), 1000), &schema("joined"))
        .await
        .unwrap();
    engine.register_table("regions", Arc::new(regions())).unwrap();
    // Names are the tables' own.
    assert!(matches!(
        engine.register_table("joined", Arc::new(regions())),
        Err(shoal::Error::TableExists(_))
    ));
    assert!(engine.register_table("joined_REALTIME", Arc::new(regions())).is_err());
    assert!(engine.register_table("regions", Arc::new(regions())).is_err());
    put_ids(&emulator, "joined", 0..400, now_ms(), |i| format!("p{i}"), None).await;
    assert_eq!(wait_for_rows(&engine, "joined", 400, Duration::from_secs(60)).await, (400, 400));
    let sql = "SELECT r.region, count(*) FROM joined j JOIN regions r ON j.key = r.key GROUP BY r.region ORDER BY r.region";
    assert_eq!(pairs(&engine.sql(sql).await.unwrap()), expected_regions(400));
    // Through the Pinot request path the server uses, with the table's Pinot name.
    let result = engine
        .sql_with(&sql.replace("FROM joined j", "FROM joined_REALTIME j"), &shoal::RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(pairs(&result.batches), expected_regions(400));
    assert_eq!(result.tables, ["joined"]);
    engine.deregister_table("regions").unwrap();
    assert!(engine.sql(sql).await.is_err(), "gone once deregistered");
    assert!(matches!(engine.deregister_table("regions"), Err(shoal::Error::NoSuchTable(_))));
    engine.shutdown().await;
}

/// A scan planned in the app's context before a segment expires reads the segment it took
/// (its file stays mapped until the scan ends); the next scan no longer sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_keeps_the_segments_it_took_while_they_expire() {
    use datafusion::physical_plan::collect;
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("old", 1);
    let shard = stream.open_shards()[0].clone();
    // Retention runs only when called here.
    let options = options(sources.clone()).with_retention_interval(Duration::from_secs(3600));
    let engine = Engine::open_with(dir.path(), options).await.unwrap();
    let mut config = table_config("old", "old", "http://unused", 100);
    config["segmentsConfig"]["retentionTimeUnit"] = serde_json::json!("DAYS");
    config["segmentsConfig"]["retentionTimeValue"] = serde_json::json!("1");
    engine.create_table(&config, &schema("old")).await.unwrap();
    let (old, new) = (now_ms() - 3 * 86_400_000, now_ms());
    for i in 0..100 {
        stream.put(&shard, "k", record(i, old));
    }
    for i in 100..210 {
        stream.put(&shard, "k", record(i, new));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.table_status("old").unwrap().segments.len() < 2 || counts(&engine, "old").await.0 < 210 {
        assert!(tokio::time::Instant::now() < deadline, "two segments sealed, 210 rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ctx = SessionContext::new();
    ctx.register_table("events", engine.table_provider("old").unwrap()).unwrap();
    // Planned (the snapshot taken) before the expiry, run after it.
    let plan = ctx.sql("SELECT count(*) FROM events").await.unwrap().create_physical_plan().await.unwrap();
    assert_eq!(engine.apply_retention().unwrap(), 1, "the old segment expires");
    let before = collect(plan, ctx.task_ctx()).await.unwrap();
    let rows = arrow::compute::cast(before[0].column(0), &DataType::Int64).unwrap();
    assert_eq!(
        rows.as_any().downcast_ref::<Int64Array>().unwrap().value(0),
        210,
        "the scan reads what it took"
    );
    assert_eq!(count_in(&ctx, "SELECT count(*) FROM events").await, 110, "the next scan sees the expiry");
    engine.shutdown().await;
}
