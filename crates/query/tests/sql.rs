//! SQL over sealed and consuming segments: results, pruning, refusals, limits, the Pinot response.

mod common;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::*;
use shoal_query::{ErrorKind, QueryOptions};
use std::time::Duration;

async fn scalar_i64(engine: &shoal_query::QueryEngine, sql: &str) -> i64 {
    let r = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = r.batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let c = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).unwrap();
    c.as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn counts_cover_sealed_and_consuming_segments_under_both_names() {
    let (engine, _t, events, _dir) = events_table(3, 10_000, 2_500, QueryOptions::default());
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM events").await, events.len() as i64);
    assert_eq!(scalar_i64(&engine, "SELECT COUNT(*) FROM events_REALTIME").await, events.len() as i64);
    let purchases = events.iter().filter(|e| e.contains("\"event_type\":\"purchase\"")).count() as i64;
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM events WHERE event_type = 'purchase'").await,
        purchases
    );
}

#[tokio::test]
async fn time_filters_prune_segments() {
    let (engine, _t, events, _dir) = events_table(4, 5_000, 100, QueryOptions::default());
    let stamps: Vec<i64> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["timestamp"].as_i64().unwrap())
        .collect();
    // Written: 4 sealed segments of 5,000 rows, then a consuming one of 100. The generator's
    // clock never goes back, and event 5,000 (the second segment's first) is later than event
    // 4,999: the first segment's time range holds exactly its own 5,000 rows and overlaps no
    // other segment's.
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(stamps[5_000] > stamps[4_999]);
    let (first_ts, end_of_first) = (stamps[0], stamps[4_999]);
    let sql =
        format!("SELECT count(*) FROM events WHERE \"timestamp\" BETWEEN {first_ts} AND {end_of_first}");
    let response = shoal_server::broker::answer_query(&engine, &sql).await;
    assert!(response.exceptions.is_empty(), "{:?}", response.exceptions);
    assert_eq!(response.result_table.unwrap().rows[0][0].as_i64().unwrap(), 5_000);
    assert_eq!((response.num_segments_queried, response.num_consuming_segments_queried), (5, 1));
    assert_eq!(response.total_docs, 20_100);
    // Pruned to the first segment: the other three sealed ones and the consuming one are skipped.
    assert_eq!((response.num_segments_processed, response.num_segments_matched), (1, 1));
    assert_eq!(response.num_docs_scanned, 5_000);
}

/// A dictionary-encoded column prunes by its statistics as a plain one does: no country sorts
/// after "US", the largest the generator writes.
#[tokio::test]
async fn a_filter_on_a_dictionary_column_prunes_by_its_statistics() {
    let (engine, _t, _events, _dir) = events_table(4, 5_000, 100, QueryOptions::default());
    assert!(matches!(
        events_layout().arrow.field_with_name("country").unwrap().data_type(),
        arrow::datatypes::DataType::Dictionary(..)
    ));
    for sql in [
        "SELECT count(*) FROM events WHERE country = 'ZZ'",
        "SELECT count(*) FROM events WHERE country > 'US'",
    ] {
        let response = shoal_server::broker::answer_query(&engine, sql).await;
        assert!(response.exceptions.is_empty(), "{:?}", response.exceptions);
        assert_eq!(response.result_table.unwrap().rows[0][0].as_i64().unwrap(), 0);
        assert_eq!(response.num_segments_queried, 5);
        assert!(
            response.num_segments_processed <= 1 && response.num_docs_scanned <= 100,
            "{sql}: {} segments processed, {} rows read",
            response.num_segments_processed,
            response.num_docs_scanned
        );
    }
}

#[tokio::test]
async fn a_limit_stops_each_segment_at_the_limit() {
    // Two sealed segments of three batches each.
    let (engine, _t, _events, _dir) = events_table(2, 20_000, 0, QueryOptions::default());
    let response = shoal_server::broker::answer_query(&engine, "SELECT event_id FROM events LIMIT 10").await;
    assert!(response.exceptions.is_empty(), "{:?}", response.exceptions);
    assert_eq!(response.result_table.unwrap().rows.len(), 10);
    // Each segment's scan stops at the LIMIT, as Pinot's servers stop each segment's: at most
    // 10 rows read of each (a scan cut into partitions inside a segment would read 10 of each
    // partition).
    assert!(response.num_docs_scanned <= 20, "{} rows read", response.num_docs_scanned);
}

#[tokio::test]
async fn with_pruning_off_every_segment_is_read_and_the_answers_are_the_same() {
    // The same generated rows (the generator is seeded) in two engines, one with pruning off.
    let (pruned, _t, events, _dir) = events_table(4, 5_000, 100, QueryOptions::default());
    let (unpruned, _u, same, _dir2) = events_table(4, 5_000, 100, QueryOptions::default().with_prune(false));
    assert_eq!(events, same);
    let ts = |i: usize| {
        serde_json::from_str::<serde_json::Value>(&events[i]).unwrap()["timestamp"].as_i64().unwrap()
    };
    // The second segment's range (as in the comparison), and a range inside the consuming one.
    for (t0, t1) in [(ts(5_000), ts(9_999)), (ts(20_010), ts(20_050))] {
        let sql = format!(
            "SELECT count(*), sum(duration_ms), avg(revenue) FROM events WHERE \"timestamp\" BETWEEN {t0} AND {t1}"
        );
        let (on, off) = answered_alike(&pruned, &unpruned, &sql).await;
        assert_eq!((on.num_segments_queried, off.num_segments_queried), (5, 5));
        // On: only the segment whose range overlaps. Off: all five, every row.
        assert_eq!(on.num_segments_processed, 1, "{sql}");
        assert_eq!(off.num_segments_processed, off.num_segments_queried, "{sql}");
        // Both count the rows that passed the filter (Pinot's numDocsScanned), pruned or not.
        let counted = on.result_table.as_ref().unwrap().rows[0][0].as_u64().unwrap();
        assert_eq!((on.num_docs_scanned, off.num_docs_scanned), (counted, counted), "{sql}");
    }
}

#[tokio::test]
async fn refused_statements() {
    let (engine, _t, _events, _dir) = events_table(1, 100, 10, QueryOptions::default());
    for sql in [
        "CREATE TABLE x (a INT)",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE events",
        "INSERT INTO events SELECT * FROM events",
        "DELETE FROM events",
        "UPDATE events SET country = 'x'",
        "COPY events TO '/tmp/out.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'https://example.com/data.csv'",
        "CREATE VIEW v AS SELECT 1",
        "SELECT 1; SELECT 2",
    ] {
        let err = engine.execute(sql).await.err().unwrap_or_else(|| panic!("{sql} was allowed"));
        assert_eq!(err.kind, ErrorKind::Validation, "{sql}: {err}");
        let response = shoal_server::broker::answer_query(&engine, sql).await;
        assert_eq!(response.exceptions[0].error_code, 150, "{sql}");
    }
    for sql in [
        "SHOW TABLES",
        "DESCRIBE events",
        "EXPLAIN SELECT count(*) FROM events",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    ] {
        engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_time_limit_ends_with_code_250() {
    let options = QueryOptions::default().with_timeout(Duration::from_millis(300));
    let (engine, _t, _events, _dir) = events_table(1, 20_000, 0, options);
    let response = shoal_server::broker::answer_query(
        &engine,
        "SELECT count(*) FROM events a CROSS JOIN events b WHERE a.duration_ms + b.duration_ms = 7",
    )
    .await;
    assert_eq!(response.exceptions.len(), 1, "{response:?}");
    assert_eq!(response.exceptions[0].error_code, 250);
}

#[tokio::test]
async fn a_query_past_its_memory_limit_fails_cleanly() {
    let options = QueryOptions::default().with_memory_limit(1 << 20);
    let (engine, _t, _events, _dir) = events_table(1, 20_000, 0, options);
    let err = engine
        .execute("SELECT event_id, count(*) FROM events GROUP BY event_id ORDER BY 2 DESC")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResourceLimit, "{err}");
    assert!(
        err.message.to_lowercase().contains("resources exhausted") || err.message.contains("memory"),
        "{err}"
    );
}

#[tokio::test]
async fn results_are_cut_at_the_row_limit() {
    let options = QueryOptions::default().with_max_result_rows(1000);
    let (engine, _t, _events, _dir) = events_table(1, 5_000, 0, options);
    let response = shoal_server::broker::answer_query(&engine, "SELECT event_id FROM events").await;
    assert!(response.partial_result);
    assert_eq!(response.num_rows_result_set, 1000);
}

#[tokio::test]
async fn the_pinot_response_has_every_field() {
    let (engine, _t, events, _dir) = events_table(2, 1_000, 500, QueryOptions::default());
    let response = shoal_server::broker::answer_query(&engine, "SELECT country, count(*) AS n, sum(revenue) AS r, max(tags) AS t FROM events GROUP BY country ORDER BY n DESC LIMIT 3").await;
    let json = serde_json::to_value(&response).unwrap();
    for key in [
        "resultTable",
        "exceptions",
        "numDocsScanned",
        "totalDocs",
        "numSegmentsQueried",
        "numSegmentsProcessed",
        "numSegmentsMatched",
        "numConsumingSegmentsQueried",
        "minConsumingFreshnessTimeMs",
        "numRowsResultSet",
        "timeUsedMs",
        "partialResult",
        "numServersQueried",
        "numServersResponded",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(
        json["resultTable"]["dataSchema"]["columnNames"],
        serde_json::json!(["country", "n", "r", "t"])
    );
    assert_eq!(
        json["resultTable"]["dataSchema"]["columnDataTypes"],
        serde_json::json!(["STRING", "LONG", "DOUBLE", "STRING_ARRAY"])
    );
    assert_eq!(json["totalDocs"], serde_json::json!(events.len()));
    assert_eq!(json["numSegmentsQueried"], 3);
    assert_eq!(json["numConsumingSegmentsQueried"], 1);
    assert_eq!(json["numServersQueried"], 1);
    assert_eq!(json["numServersResponded"], 1);
    assert!(json["minConsumingFreshnessTimeMs"].as_i64().unwrap() > 0);
    let bad =
        serde_json::to_value(shoal_server::broker::answer_query(&engine, "SELECT nope FROM events").await)
            .unwrap();
    // Pinot's UNKNOWN_COLUMN.
    assert_eq!(bad["exceptions"][0]["errorCode"], 710);
    assert!(bad.get("resultTable").is_none());
}

#[tokio::test]
async fn table_and_column_names_match_without_regard_to_case() {
    let (engine, _t, events, _dir) = events_table(1, 500, 10, QueryOptions::default());
    let n = events.len() as i64;
    assert_eq!(scalar_i64(&engine, "SELECT COUNT(*) FROM EVENTS").await, n);
    assert_eq!(scalar_i64(&engine, "select count(Country) from Events_Realtime").await, n);
    let r = shoal_server::broker::answer_query(
        &engine,
        "SELECT Event_Type, COUNT(*) AS N FROM events GROUP BY Event_Type ORDER BY N DESC LIMIT 1",
    )
    .await;
    assert!(r.exceptions.is_empty(), "{:?}", r.exceptions);
    assert_eq!(r.result_table.unwrap().data_schema.column_names, ["event_type", "N"]);
}

/// Segments `(sequence, rows)` sealed under `schema` (the last one left consuming), in engines
/// with pruning on and off.
fn segments_of(
    schema: serde_json::Value,
    segments: &[Vec<String>],
) -> [(shoal_query::QueryEngine, tempfile::TempDir); 2] {
    segments_with(schema, segments, &[])
}

/// [`segments_of`] with the columns `dictionary` dictionary-encoded.
fn segments_with(
    schema: serde_json::Value,
    segments: &[Vec<String>],
    dictionary: &[&str],
) -> [(shoal_query::QueryEngine, tempfile::TempDir); 2] {
    use shoal_segment::{
        LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout,
    };
    use std::sync::Arc;
    [QueryOptions::default(), QueryOptions::default().with_prune(false)].map(|options| {
        let (schema, _) = Schema::from_json(&schema).unwrap();
        let layout_options = LayoutOptions {
            dictionary: dictionary.iter().map(|c| c.to_string()).collect(),
            ..LayoutOptions::default()
        };
        let layout = Arc::new(TableLayout::new(Arc::new(schema), &layout_options));
        let dir = tempfile::tempdir().unwrap();
        let table = Arc::new(TestTable::default());
        for (sequence, rows) in segments.iter().enumerate() {
            let segment = MutableSegment::new(Arc::clone(&layout));
            segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
            if sequence + 1 == segments.len() {
                table.consuming.write().unwrap().push(Arc::new(segment));
                continue;
            }
            let request = SealRequest {
                table: "t",
                shard: "shardId-000000000000",
                sequence: sequence as u64,
                created_ms: 0,
                sort_by: None,
            };
            let (path, _) =
                shoal_segment::write_segment(dir.path(), &layout, &segment.snapshot(), &request).unwrap();
            table.sealed.write().unwrap().push(Arc::new(SealedSegment::open(&path).unwrap()));
        }
        let engine = shoal_query::QueryEngine::new(options);
        engine.register("t", layout, table as Arc<dyn shoal_query::SnapshotSource>);
        (engine, dir)
    })
}

#[tokio::test]
async fn filters_that_statistics_show_every_row_passes_are_not_evaluated_and_answer_the_same() {
    let schema = serde_json::json!({
        "schemaName": "t",
        "enableColumnBasedNullHandling": true,
        "dimensionFieldSpecs": [{"name": "s", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "v", "dataType": "LONG"}, {"name": "d", "dataType": "DOUBLE"}]
    });
    let row = |v: Option<i64>, s: &str, d: f64| match v {
        Some(v) => format!(r#"{{"v": {v}, "s": "{s}", "d": {d}}}"#),
        None => format!(r#"{{"s": "{s}", "d": {d}}}"#),
    };
    // Sealed: v 1..=4 (no null), v 5..=8 with a null; consuming: v 9..=12.
    let segments = vec![
        (1..=4).map(|v| row(Some(v), "a", 0.5)).collect(),
        vec![row(Some(5), "b", 1.0), row(None, "b", 2.0), row(Some(7), "b", 3.0), row(Some(8), "c", 4.0)],
        (9..=12).map(|v| row(Some(v), "c", 5.0)).collect::<Vec<_>>(),
    ];
    let [(on, _d1), (off, _d2)] = segments_of(schema, &segments);
    // (filter, rows that pass, values read to evaluate the filters with pruning on: rows
    // evaluated times the columns the filters read)
    let cases = [
        // Every row of segments 1 and 3 passes; segment 2 holds a null, so it is evaluated.
        ("v >= 1", 11, 4),
        ("v BETWEEN 1 AND 12", 11, 4),
        ("NOT (v < 1)", 11, 4),
        ("v <> 5", 10, 4),
        // Segment 1 passes whole, segment 3 cannot pass, segment 2 is evaluated.
        ("v <= 4 OR v = 7", 5, 4),
        // Segment 1 passes by s alone (no null in s or v), the others cannot pass.
        ("v < 3 OR s = 'a'", 4, 0),
        // The same, but DataFusion's LIKE pruning keeps a segment whose smallest s is 'b' (the
        // prefix's successor, an inclusive bound): segment 2 is evaluated on both columns.
        ("s LIKE 'a%' AND v < 100", 4, 8),
        // Segment 1 passes whole, segment 3 cannot pass, segment 2 (a null in v) is evaluated
        // on its 4 rows and both columns.
        ("s IN ('a', 'b') AND v > 0", 6, 8),
        // s has no null: segment 2 is evaluated because one of its rows has s = 'c'.
        ("s <> 'c'", 7, 4),
        // No statistic proves this for a whole segment.
        ("v % 2 = 0", 5, 12),
        // Comparisons with NULL pass no row.
        ("v <> NULL", 0, 0),
        ("NOT (v = NULL)", 0, 0),
        // Every row passes.
        ("d >= 0.5 AND d <= 5", 12, 0),
    ];
    for (filter, passing, evaluated) in cases {
        for sql in [
            format!("SELECT count(*) FROM t WHERE {filter}"),
            format!("SELECT count(*), sum(v), min(s), max(d) FROM t WHERE {filter}"),
            format!("SELECT v, s FROM t WHERE {filter} ORDER BY v, s"),
        ] {
            let a = shoal_server::broker::answer_query(&on, &sql).await;
            let b = shoal_server::broker::answer_query(&off, &sql).await;
            assert!(
                a.exceptions.is_empty() && b.exceptions.is_empty(),
                "{sql}: {:?} {:?}",
                a.exceptions,
                b.exceptions
            );
            assert_eq!(a.result_table.as_ref().unwrap().rows, b.result_table.as_ref().unwrap().rows, "{sql}");
            assert_eq!((a.num_docs_scanned, b.num_docs_scanned), (passing, passing), "{sql}");
            if sql.starts_with("SELECT v, s") {
                // count(*) may be answered from exact row counts; a scan that hands on rows
                // evaluates the filters where statistics do not prove them.
                assert_eq!(a.num_entries_scanned_in_filter, evaluated, "{sql}");
            }
        }
    }
}

#[tokio::test]
async fn inside_a_segment_batches_are_skipped_or_passed_whole_by_their_statistics() {
    // One sealed segment of 40,000 rows and a consuming one of 20,000, both held in batches
    // (8,192 rows each but the last), in engines with pruning on and off.
    let (on, table, events, _d1) = events_table(1, 40_000, 20_000, QueryOptions::default());
    let (off, _u, _, _d2) = events_table(1, 40_000, 20_000, QueryOptions::default().with_prune(false));
    let ts: Vec<i64> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["timestamp"].as_i64().unwrap())
        .collect();
    let mut lengths: Vec<usize> =
        table.sealed.read().unwrap()[0].batches().unwrap().iter().map(|b| b.num_rows()).collect();
    lengths.extend(table.consuming.read().unwrap()[0].snapshot().batches.iter().map(|b| b.num_rows()));
    assert!(lengths.len() >= 7, "{lengths:?}");
    let mut batches = Vec::new();
    let mut start = 0;
    for n in lengths {
        batches.push(start..start + n);
        start += n;
    }
    assert_eq!(start, ts.len());
    // Ranges (exclusive bounds) from the data: across batch edges, inside one batch, across
    // the sealed and the consuming segment, and all rows.
    let ranges = [
        (ts[8_191], ts[24_576]),
        (ts[9_000], ts[9_500]),
        (ts[30_000], ts[50_000]),
        (ts[0] - 1, ts[59_999] + 1),
        (ts[45_000], i64::MAX),
    ];
    for (a, b) in ranges {
        let filter = format!("\"timestamp\" > {a} AND \"timestamp\" < {b}");
        // What statistics per batch decide: a batch whose range lies inside passes whole, one
        // whose range misses is skipped, the others are evaluated row by row.
        let passing = ts.iter().filter(|&&t| t > a && t < b).count() as u64;
        let evaluated: usize = batches
            .iter()
            .map(|r| {
                let (min, max) = (ts[r.clone()].iter().min().unwrap(), ts[r.clone()].iter().max().unwrap());
                let may = *max > a && *min < b;
                let all = *min > a && *max < b;
                if may && !all { r.len() } else { 0 }
            })
            .sum();
        let whole: usize = batches
            .iter()
            .filter(|r| {
                let (min, max) =
                    (ts[(*r).clone()].iter().min().unwrap(), ts[(*r).clone()].iter().max().unwrap());
                *min > a && *max < b
            })
            .map(|r| r.len())
            .sum();
        for sql in [
            format!("SELECT count(*), sum(duration_ms), min(user_id) FROM events WHERE {filter}"),
            format!("SELECT event_id FROM events WHERE {filter} ORDER BY event_id LIMIT 5"),
            format!("SELECT count(*) FROM events WHERE {filter}"),
        ] {
            let (x, y) = answered_alike(&on, &off, &sql).await;
            if sql.contains("sum(duration_ms)") {
                assert_eq!(x.result_table.as_ref().unwrap().rows[0][0].as_u64().unwrap(), passing, "{sql}");
                assert_eq!(x.num_entries_scanned_in_filter, evaluated as u64, "{sql}");
                assert_eq!((x.num_docs_scanned, y.num_docs_scanned), (passing, passing), "{sql}");
                // Two columns are read of the rows that pass, but of the batches that pass
                // whole: the aggregation takes those from their statistics.
                let read = passing - whole as u64;
                assert_eq!(x.num_entries_scanned_post_filter, 2 * read, "{sql}");
                assert_eq!(y.num_entries_scanned_post_filter, 2 * passing, "{sql}");
            }
            if sql.starts_with("SELECT count(*) FROM") {
                // Answered from exact row counts or by a scan: either way the rows that pass.
                assert_eq!(x.num_docs_scanned, passing, "{sql}");
            }
        }
    }
}

/// The answers of two engines to `sql`, both without exceptions and with the same rows.
async fn answered_alike(
    on: &shoal_query::QueryEngine,
    off: &shoal_query::QueryEngine,
    sql: &str,
) -> (shoal_server::broker::BrokerResponse, shoal_server::broker::BrokerResponse) {
    let x = shoal_server::broker::answer_query(on, sql).await;
    let y = shoal_server::broker::answer_query(off, sql).await;
    assert!(
        x.exceptions.is_empty() && y.exceptions.is_empty(),
        "{sql}: {:?} {:?}",
        x.exceptions,
        y.exceptions
    );
    assert_eq!(x.result_table.as_ref().unwrap().rows, y.result_table.as_ref().unwrap().rows, "{sql}");
    (x, y)
}

#[tokio::test]
async fn ungrouped_aggregates_take_batches_that_pass_whole_from_their_statistics() {
    // Column-based null handling: `i` is null in every 7th row, `n` in every row. Two sealed
    // segments of 20,000 rows and a consuming one of 10,000 (batches of 8,192 rows but the
    // last of each); `k` counts from 0 over all of them, `l` is near LONG's largest value so
    // that its sum wraps.
    let schema = serde_json::json!({
        "schemaName": "t",
        "enableColumnBasedNullHandling": true,
        "dimensionFieldSpecs": [{"name": "s", "dataType": "STRING"}, {"name": "d", "dataType": "DOUBLE"}],
        "metricFieldSpecs": [
            {"name": "k", "dataType": "LONG"}, {"name": "i", "dataType": "INT"},
            {"name": "l", "dataType": "LONG"}, {"name": "n", "dataType": "INT"}
        ]
    });
    let rows = |from: i64, count: i64| -> Vec<String> {
        (from..from + count)
            .map(|k| {
                let i = if k % 7 == 0 {
                    "null".to_string()
                } else {
                    ((k * 7_919) % 100_003 - 50_000).to_string()
                };
                let l = i64::MAX - 1_000_000 + k % 1_000;
                format!(
                    r#"{{"k": {k}, "i": {i}, "l": {l}, "s": "u{:05}", "d": {}, "n": null}}"#,
                    (k * 31) % 99_991,
                    (k % 13) as f64 / 4.0
                )
            })
            .collect()
    };
    let segments = vec![rows(0, 20_000), rows(20_000, 20_000), rows(40_000, 10_000)];
    let [(on, _d1), (off, _d2)] = segments_of(schema.clone(), &segments);
    let aggregates = "count(*), count(i), sum(i), sum(l), min(i), max(i), min(k), max(k), min(s), max(s), \
                      min(d), max(d), sum(n), min(n), count(n)";
    // Filters on `k` pass whole batches (k >= 8192 starts one), skip others and cut others;
    // with no filter every batch passes whole.
    for filter in
        ["", "WHERE k >= 8192", "WHERE k >= 5000 AND k < 45000", "WHERE k >= 100 AND k < 200", "WHERE k < 0"]
    {
        let sql = format!("SELECT {aggregates} FROM t {filter}");
        let (x, y) = answered_alike(&on, &off, &sql).await;
        assert_eq!(x.num_docs_scanned, y.num_docs_scanned, "{sql}");
    }
    // No filter: every batch is taken from statistics, none is read.
    let sql = format!("SELECT {aggregates} FROM t");
    let x = shoal_server::broker::answer_query(&on, &sql).await;
    let row = &x.result_table.as_ref().unwrap().rows[0];
    assert_eq!(row[0].as_i64(), Some(50_000), "{row:?}");
    assert_eq!(row[1].as_i64(), Some(50_000 - 50_000 / 7 - 1), "{row:?}");
    assert_eq!(row[12], serde_json::Value::Null, "a sum of nulls only is NULL: {row:?}");
    assert_eq!(row[14].as_i64(), Some(0), "{row:?}");
    assert_eq!((x.num_docs_scanned, x.num_entries_scanned_post_filter), (50_000, 0), "{sql}");
    // `k >= 8192`: the first batch of the first segment is skipped, every other passes whole.
    let x = shoal_server::broker::answer_query(&on, "SELECT count(*), sum(l) FROM t WHERE k >= 8192").await;
    assert_eq!((x.num_docs_scanned, x.num_entries_scanned_post_filter), (50_000 - 8_192, 0));
    // A cut: the batches the range only partly covers are read, the rows that pass counted.
    let x = shoal_server::broker::answer_query(
        &on,
        "SELECT count(*), sum(i) FROM t WHERE k >= 5000 AND k < 45000",
    )
    .await;
    assert_eq!(x.result_table.as_ref().unwrap().rows[0][0].as_i64(), Some(40_000));
    assert_eq!(x.num_docs_scanned, 40_000);
    // Read: 5,000..8,192 of the first segment's first batch and 40,000..45,000 of the consuming
    // segment's first batch, one column each.
    assert_eq!(x.num_entries_scanned_post_filter, (8_192 - 5_000) + 5_000);
    // One segment (a single aggregation, one partition): the same.
    let small = vec![rows(0, 300), rows(300, 0)];
    let [(on, _d3), (off, _d4)] = segments_of(schema, &small);
    let sql = format!("SELECT {aggregates} FROM t");
    let (x, y) = answered_alike(&on, &off, &sql).await;
    assert_eq!((x.num_docs_scanned, x.num_entries_scanned_post_filter), (300, 0), "{sql}");
    assert_eq!(y.num_entries_scanned_post_filter, 300 * 6, "{sql}");
}

/// The rows of `sql`'s answer, each column as text ("NULL" for a null).
async fn rows_as_text(engine: &shoal_query::QueryEngine, sql: &str) -> Vec<Vec<String>> {
    let r = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for batch in &r.batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        if arrow::array::Array::is_null(c, i) {
                            "NULL".to_string()
                        } else {
                            c.value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

/// The plan `engine` makes of `sql`, as EXPLAIN shows it.
async fn explain(engine: &shoal_query::QueryEngine, sql: &str) -> String {
    rows_as_text(engine, &format!("EXPLAIN {sql}")).await.concat().join("\n")
}

/// Two STRING dimensions `a` and `b`, a LONG `k` and a DOUBLE `v`, nulls kept.
fn two_strings_and_metrics() -> serde_json::Value {
    serde_json::json!({
        "schemaName": "t",
        "enableColumnBasedNullHandling": true,
        "dimensionFieldSpecs": [{"name": "a", "dataType": "STRING"}, {"name": "b", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "k", "dataType": "LONG"}, {"name": "v", "dataType": "DOUBLE"}]
    })
}

#[tokio::test]
async fn aggregations_grouped_by_dictionary_columns_are_kept_by_their_keys() {
    // Nulls in both dictionary columns and in the DOUBLE `v`; two sealed segments and a
    // consuming one, each with dictionaries of its own (the third's `b` values are new).
    let schema = two_strings_and_metrics();
    let value = |k: i64, modulo: i64, prefix: &str| match k % modulo {
        0 => "null".to_string(),
        m => format!("\"{prefix}{m}\""),
    };
    // Halves: their sums are exact in any order.
    let v = |k: i64| if k % 7 == 0 { "null".to_string() } else { format!("{}", (k % 11) as f64 * 0.5) };
    let rows = |from: i64, count: i64, prefix: &'static str| -> Vec<String> {
        (from..from + count)
            .map(|k| {
                let (a, b) = (value(k, 5, "a"), value(k / 3, 4, prefix));
                format!(r#"{{"k": {k}, "a": {a}, "b": {b}, "v": {}}}"#, v(k))
            })
            .collect()
    };
    let segments = vec![rows(0, 20_000, "b"), rows(20_000, 9_000, "b"), rows(29_000, 10_000, "c")];
    struct Row {
        k: i64,
        a: String,
        b: String,
        v: Option<f64>,
    }
    type Keep = fn(&Row) -> bool;
    let all: Vec<Row> = segments
        .iter()
        .flatten()
        .map(|r| {
            let j: serde_json::Value = serde_json::from_str(r).unwrap();
            let text = |c: &str| j[c].as_str().map_or("NULL".to_string(), str::to_string);
            Row { k: j["k"].as_i64().unwrap(), a: text("a"), b: text("b"), v: j["v"].as_f64() }
        })
        .collect();
    let [(engine, _d1), _] = segments_with(schema.clone(), &segments, &["a", "b"]);
    // A double as the engine's text shows it.
    let double = |x: Option<f64>| {
        let array = arrow::array::Float64Array::from(vec![x]);
        let text = arrow::compute::cast(&array, &arrow::datatypes::DataType::Utf8).unwrap();
        let text = text.as_string::<i32>();
        if arrow::array::Array::is_null(text, 0) { "NULL".to_string() } else { text.value(0).to_string() }
    };
    #[derive(Clone, Copy)]
    enum M {
        Rows,
        SumK,
        AvgK,
        CountV,
        SumV,
        AvgV,
    }
    let expected = |keep: Keep, two: bool, measures: &[M]| {
        let mut groups = std::collections::BTreeMap::<Vec<String>, Vec<&Row>>::new();
        for row in all.iter().filter(|r| keep(r)) {
            let key = if two { vec![row.a.clone(), row.b.clone()] } else { vec![row.a.clone()] };
            groups.entry(key).or_default().push(row);
        }
        let mut out: Vec<Vec<String>> = groups
            .into_iter()
            .map(|(mut key, rows)| {
                let vs: Vec<f64> = rows.iter().filter_map(|r| r.v).collect();
                let mean = |sum: f64, n: usize| (n > 0).then(|| sum / n as f64);
                let k_sum: i64 = rows.iter().map(|r| r.k).sum();
                for m in measures {
                    key.push(match m {
                        M::Rows => rows.len().to_string(),
                        // Pinot's SUM is a DOUBLE: the LONG sum, cast.
                        M::SumK => double(Some(k_sum as f64)),
                        M::AvgK => double(mean(k_sum as f64, rows.len())),
                        M::CountV => vs.len().to_string(),
                        M::SumV => double((!vs.is_empty()).then(|| vs.iter().sum())),
                        M::AvgV => double(mean(vs.iter().sum(), vs.len())),
                    });
                }
                key
            })
            .collect();
        out.sort();
        out
    };
    use M::*;
    let cases: [(&str, Keep, bool, &[M]); 4] = [
        (
            "SELECT a, b, count(*), sum(k), count(v), sum(v), avg(v) FROM t GROUP BY a, b",
            |_| true,
            true,
            &[Rows, SumK, CountV, SumV, AvgV],
        ),
        ("SELECT a, b, count(*) FROM t WHERE k % 2 = 1 GROUP BY a, b", |r| r.k % 2 == 1, true, &[Rows]),
        (
            "SELECT a, count(*), count(1), avg(k), sum(v) FROM t WHERE k >= 15000 GROUP BY a",
            |r| r.k >= 15_000,
            false,
            &[Rows, Rows, AvgK, SumV],
        ),
        // Every `v` of these rows is null: their sums and means are null, their count 0.
        (
            "SELECT a, sum(v), avg(v), count(v), sum(k) FROM t WHERE k % 7 = 0 GROUP BY a",
            |r| r.k % 7 == 0,
            false,
            &[SumV, AvgV, CountV, SumK],
        ),
    ];
    for (sql, keep, two, measures) in cases {
        let plan = explain(&engine, sql).await;
        assert!(plan.contains("DictionaryGroupExec"), "{sql}: {plan}");
        assert_eq!(rows_as_text(&engine, sql).await, expected(keep, two, measures), "{sql}");
    }
    // Aggregates whose state it does not keep are grouped as before, and so are columns that
    // are not dictionaries.
    let sql = "SELECT a, min(k) FROM t GROUP BY a";
    let plan = explain(&engine, sql).await;
    assert!(!plan.contains("DictionaryGroupExec"), "{plan}");
    let [(plain, _d3), _] = segments_with(schema, &segments, &[]);
    let sql = "SELECT a, b, count(*), sum(k), count(v), sum(v), avg(v) FROM t GROUP BY a, b";
    let plan = explain(&plain, sql).await;
    assert!(!plan.contains("DictionaryGroupExec"), "{plan}");
    assert_eq!(rows_as_text(&plain, sql).await, expected(|_| true, true, &[Rows, SumK, CountV, SumV, AvgV]));
}

#[tokio::test]
async fn groups_of_dictionaries_too_large_for_a_table_go_on_row_by_row() {
    // 301 values and null in one column, 263 in the other: 302 * 264 cells is past the dense
    // table's 65,536, so each row goes on as a group of its own; the answers are those of the
    // same rows with no column dictionary-encoded.
    let schema = two_strings_and_metrics();
    let rows = |from: i64| -> Vec<String> {
        (from..from + 12_000)
            .map(|k| {
                let a = if k % 13 == 0 { "null".to_string() } else { format!("\"a{}\"", k % 301) };
                let v = if k % 5 == 0 { "null".to_string() } else { format!("{}", (k % 9) as f64 * 0.25) };
                format!(r#"{{"k": {k}, "a": {a}, "b": "b{}", "v": {v}}}"#, (k / 7) % 263)
            })
            .collect()
    };
    let segments = vec![rows(0), rows(12_000)];
    let [(encoded, _d1), _] = segments_with(schema.clone(), &segments, &["a", "b"]);
    let [(plain, _d2), _] = segments_with(schema, &segments, &[]);
    for sql in [
        "SELECT a, b, count(*), sum(k), count(v), sum(v), avg(v) FROM t GROUP BY a, b",
        "SELECT a, b, avg(v) FROM t WHERE k % 5 = 0 GROUP BY a, b",
    ] {
        let plan = explain(&encoded, sql).await;
        assert!(plan.contains("DictionaryGroupExec"), "{sql}: {plan}");
        let answer = rows_as_text(&encoded, sql).await;
        assert!(answer.len() > 4_000, "{sql}: {} groups", answer.len());
        assert_eq!(answer, rows_as_text(&plain, sql).await, "{sql}");
    }
}

#[tokio::test]
async fn bounds_hold_every_value_and_casts_are_not_taken_for_the_column() {
    // Null handling off (Pinot's default): a missing DOUBLE dimension is -Infinity, which no
    // min can state. Segments of 9,000 rows (two batches each), the -Infinity rows in the
    // first batch only: the segment's bounds must not be the second batch's.
    let schema = serde_json::json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "d", "dataType": "DOUBLE"}, {"name": "s", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "v", "dataType": "LONG"}]
    });
    let segment = |offset: i64| -> Vec<String> {
        (0..9_000)
            .map(|i| match i {
                0..10 => format!(r#"{{"v": {}, "s": "{}"}}"#, offset + i, "x".repeat(300)),
                _ => format!(r#"{{"v": {}, "d": {}, "s": "m"}}"#, offset + i, 1.0 + (i % 7) as f64),
            })
            .collect()
    };
    let segments = vec![segment(0), segment(9_000)];
    let [(on, _d1), (off, _d2)] = segments_of(schema.clone(), &segments);
    for (sql, expected) in [
        // The ten -Infinity rows of each segment.
        ("SELECT count(*) FROM t WHERE d < 0", 20),
        ("SELECT count(*) FROM t WHERE d > 0", 17_980),
        ("SELECT count(*) FROM t WHERE d >= 1 AND d <= 7", 17_980),
        // The ten long strings of each segment sort after 'm'... and 'x' > 'n'.
        ("SELECT count(*) FROM t WHERE s < 'n'", 17_980),
        ("SELECT count(*) FROM t WHERE s > 'n'", 20),
    ] {
        for engine in [&on, &off] {
            let r = shoal_server::broker::answer_query(engine, sql).await;
            assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
            assert_eq!(r.result_table.unwrap().rows[0][0].as_i64().unwrap(), expected, "{sql}");
        }
    }
    // A cast can be NULL where the column is not: TRY_CAST(1e20 AS INT) is NULL, so that row
    // fails `> 0` and must not be passed whole by the column's bounds.
    let rows = vec![
        vec![r#"{"v": 1, "d": 1.5, "s": "a"}"#.to_string(), r#"{"v": 2, "d": 1e20, "s": "a"}"#.to_string()],
        vec![],
    ];
    let [(on, _d3), (off, _d4)] = segments_of(schema, &rows);
    for engine in [&on, &off] {
        let sql = "SELECT count(*), sum(v) FROM t WHERE TRY_CAST(d AS INT) > 0";
        let r = shoal_server::broker::answer_query(engine, sql).await;
        assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
        let row = &r.result_table.unwrap().rows[0];
        assert_eq!((row[0].as_i64(), row[1].as_f64()), (Some(1), Some(1.0)), "{sql}");
    }
}

#[tokio::test]
async fn the_query_start_time_is_set_for_current_date_and_timestamp() {
    let (engine, _t, _events, _dir) = events_table(1, 100, 10, QueryOptions::default());
    let r = engine
        .execute("SELECT current_date IS NOT NULL, to_unixtime(current_timestamp) > 1700000000, count(*) FROM events")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = &r.batches[0];
    assert!(b.column(0).as_boolean().value(0) && b.column(1).as_boolean().value(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tables_that_are_not_shoals_are_spread_by_round_robin() {
    // Shoal's scans cut themselves into partitions by their rows; an app's table of one
    // partition is spread over the hash partitions by DataFusion's round robin, as in an app's
    // own session.
    let (engine, _t, _events, _dir) = events_table(2, 1000, 0, QueryOptions::default());
    let ids = arrow::array::Int64Array::from((0..1000).collect::<Vec<i64>>());
    let batch =
        arrow::record_batch::RecordBatch::try_from_iter([("id", std::sync::Arc::new(ids) as _)]).unwrap();
    let app = datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    engine.register_external("app", std::sync::Arc::new(app)).unwrap();
    let plan = |sql: &'static str| {
        let engine = &engine;
        async move {
            let r = engine.execute(&format!("EXPLAIN {sql}")).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            arrow::util::pretty::pretty_format_batches(&r.batches).unwrap().to_string()
        }
    };
    let ours = plan("SELECT country, count(*) FROM events WHERE duration_ms > 10 GROUP BY country").await;
    assert!(!ours.contains("RoundRobinBatch"), "{ours}");
    let theirs = plan("SELECT id % 7, count(*) FROM app WHERE id > 10 GROUP BY id % 7").await;
    assert!(theirs.contains("RoundRobinBatch"), "{theirs}");
    // Both in one query: the app's table is spread.
    let both = plan("SELECT count(*) FROM events e JOIN app a ON e.duration_ms = a.id").await;
    assert!(both.contains("RoundRobinBatch"), "{both}");
    // And the answers are the same as the rows say.
    let r = engine.execute("SELECT count(*) FROM app WHERE id > 10").await.unwrap();
    assert_eq!(r.batches[0].column(0).as_primitive::<Int64Type>().value(0), 989);
}
