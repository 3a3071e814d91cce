//! The engine plans every query in one session built for its tables: each query still counts
//! its own scans, has its own start time, and sees the tables registered before it began.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use common::*;
use datafusion::datasource::MemTable;
use shoal_query::{ErrorKind, QueryOptions, SnapshotSource};
use std::sync::Arc;
use std::time::Duration;

fn first_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let c = arrow::compute::cast(batch.column(0), &DataType::Int64).expect("a number");
    c.as_primitive::<Int64Type>().value(0)
}

/// Column `column` of `batches` as strings.
fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(column), &DataType::Utf8).expect("strings");
            c.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn queries_planned_together_each_count_their_own_scans() {
    let (engine, _t, events, _dir) = events_table(3, 10_000, 2_500, QueryOptions::default());
    let us = events.iter().filter(|e| e.contains("\"country\":\"US\"")).count() as u64;
    let all = "SELECT count(*) FROM events";
    let filtered = "SELECT count(*) FROM events WHERE country = 'US'";
    for _ in 0..3 {
        let (a, b) = tokio::join!(engine.execute(all), engine.execute(filtered));
        let (a, b) = (a.expect(all), b.expect(filtered));
        assert_eq!(first_i64(&a.batches), events.len() as i64);
        assert_eq!(first_i64(&b.batches), us as i64);
        // Pinot's numDocsScanned: every row for the count, the rows that pass for the filter.
        assert_eq!(a.stats.docs_scanned, events.len() as u64);
        assert_eq!(b.stats.docs_scanned, us);
        assert_eq!((a.stats.total_docs, b.stats.total_docs), (events.len() as u64, events.len() as u64));
    }
}

#[tokio::test]
async fn a_table_registered_or_removed_is_seen_by_the_next_query() {
    let (engine, _t, events, _dir) = events_table(1, 5_000, 100, QueryOptions::default());
    let count = |sql: &'static str| {
        let engine = &engine;
        async move { engine.execute(sql).await.map(|r| first_i64(&r.batches)) }
    };
    assert_eq!(count("SELECT count(*) FROM events").await.expect("events"), events.len() as i64);
    assert_eq!(
        count("SELECT count(*) FROM more").await.expect_err("no table yet").kind,
        ErrorKind::TableNotFound
    );

    // A second Shoal table, with rows of its own.
    let (_e, more, more_events, _more_dir) = events_table(2, 1_000, 10, QueryOptions::default());
    engine.register("more", events_layout(), Arc::clone(&more) as Arc<dyn SnapshotSource>);
    assert_eq!(count("SELECT count(*) FROM more").await.expect("more"), more_events.len() as i64);
    assert_eq!(count("SELECT count(*) FROM more_REALTIME").await.expect("more"), more_events.len() as i64);

    // An app's table, then its removal.
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..7))],
    )
    .expect("a batch");
    let table = MemTable::try_new(schema, vec![vec![batch]]).expect("a table");
    engine.register_external("app", Arc::new(table)).expect("registered");
    assert_eq!(count("SELECT count(*) FROM app").await.expect("app"), 7);
    assert!(engine.deregister_external("app"));
    assert_eq!(count("SELECT count(*) FROM app").await.expect_err("removed").kind, ErrorKind::TableNotFound);

    engine.deregister("events");
    assert_eq!(
        count("SELECT count(*) FROM events").await.expect_err("removed").kind,
        ErrorKind::TableNotFound
    );
    assert_eq!(count("SELECT count(*) FROM more").await.expect("more"), more_events.len() as i64);
    let listed = engine
        .execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")
        .await
        .expect("information_schema");
    assert_eq!(strings(&listed.batches, 0), ["more", "more_REALTIME"]);
}

#[tokio::test]
async fn each_query_folds_now_to_its_own_start() {
    let (engine, _t, _events, _dir) = events_table(1, 100, 10, QueryOptions::default());
    // Pinot's TIMESTAMP: milliseconds since the epoch.
    let sql = "SELECT now() FROM events LIMIT 1";
    let first = first_i64(&engine.execute(sql).await.expect(sql).batches);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = first_i64(&engine.execute(sql).await.expect(sql).batches);
    assert!(second > first, "now() {first} then {second}, 20 ms apart");
}

#[tokio::test]
async fn explain_and_table_functions_plan_as_before() {
    let (engine, _t, events, _dir) = events_table(2, 1_000, 10, QueryOptions::default());
    let r = engine.execute("SELECT count(*) FROM generate_series(1, 5)").await.expect("a table function");
    assert_eq!(first_i64(&r.batches), 5);
    // A table function's arguments fold now() (Pinot's: epoch milliseconds) as the query
    // starts (generate_series takes
    // literals only: a now() left unfolded is refused).
    let r = engine
        .execute("SELECT count(*) FROM generate_series(1, CASE WHEN now() > 946684800000 THEN 3 ELSE 1 END)")
        .await
        .expect("now() in a table function's arguments");
    assert_eq!(first_i64(&r.batches), 3);
    let r =
        engine.execute("EXPLAIN SELECT count(*) FROM events WHERE country = 'US'").await.expect("EXPLAIN");
    let text = strings(&r.batches, 1).concat();
    // The logical plan names the filter, the physical plan Shoal's scan of the three segments.
    assert!(text.contains("country") && text.contains("SegmentScanExec: segments=3"), "{text}");
    // And a query after them reads the table as before.
    assert_eq!(
        first_i64(&engine.execute("SELECT count(*) FROM events").await.expect("count").batches),
        events.len() as i64
    );
}

/// `sql`'s answer with Pinot's `trace`, and whether its plan came from the engine's cache.
async fn traced(engine: &shoal_query::QueryEngine, sql: &str) -> (shoal_query::QueryResult, bool) {
    let request = shoal_query::RequestOptions::default().with_trace(true);
    let r = engine.execute_with(sql, &request).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let trace: serde_json::Value = serde_json::from_str(r.trace.as_deref().expect("a trace")).unwrap();
    let cached = trace["planCached"].as_bool().expect("planCached");
    (r, cached)
}

#[tokio::test]
async fn a_statement_sent_again_reuses_its_plan_and_reads_the_rows_of_its_own_time() {
    let (engine, table, _events, _dir) = events_table(1, 1_000, 100, QueryOptions::default());
    let sql = "SELECT count(*), sum(duration_ms) FROM events WHERE duration_ms >= 0";
    let (first, cached) = traced(&engine, sql).await;
    assert!(!cached);
    assert_eq!((first_i64(&first.batches), first.stats.docs_scanned), (1_100, 1_100));
    // Rows arrive; the same statement (spelled alike after Pinot's dialect) plans from the
    // cache, and its scans see the new rows and count into its own answer.
    let more: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"event_id": "late-{i}", "timestamp": 1700000000000, "duration_ms": 5}}"#))
        .collect();
    let consuming = Arc::clone(&table.consuming.read().unwrap()[0]);
    consuming.append(more.iter().map(|e| (e.as_bytes(), shoal_segment::RecordMeta::default())));
    let (second, cached) = traced(&engine, sql).await;
    assert!(cached);
    assert_eq!((first_i64(&second.batches), second.stats.docs_scanned), (1_150, 1_150));
    let (_, cached) =
        traced(&engine, "select count(*), sum(duration_ms) from events where duration_ms >= 0").await;
    assert!(cached, "the same statement in other case is the same once canonicalised");
    // A query that reads the time is planned each time: now() is its own start.
    let now = "SELECT count(*) FROM events WHERE \"timestamp\" < now()";
    for _ in 0..2 {
        let (r, cached) = traced(&engine, now).await;
        assert!(!cached);
        assert_eq!(first_i64(&r.batches), 1_150);
    }
    // A change of tables drops the plans.
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    let app = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    engine.register_external("app", Arc::new(app)).unwrap();
    let (third, cached) = traced(&engine, sql).await;
    assert!(!cached);
    assert_eq!(first_i64(&third.batches), 1_150);
}
