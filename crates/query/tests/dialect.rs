//! Pinot's dialect, one case per behaviour a Pinot client relies on: query options from SET,
//! OPTION(...) and the request; the default LIMIT; result names and types; error codes; the
//! response's statistics. Expected values come from Pinot's source (named at each case) or are
//! counted by hand from the rows below.

mod common;

use serde_json::{Value, json};
use shoal_query::{
    ErrorKind, QueryEngine, QueryOptions, RequestOptions, SegmentData, SnapshotSource, TableSnapshot,
};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use shoal_server::broker::{BrokerResponse, answer_query, answer_query_with};
use std::sync::Arc;
use std::time::Duration;

/// Two sealed segments and a consuming one, four rows each: row n (1..=12) has i = n,
/// l = 10 n, f = n + 0.5, d = 1.25 n, and s as listed.
#[derive(Debug)]
struct ThreeSegments {
    sealed: Vec<Arc<SealedSegment>>,
    consuming: Arc<MutableSegment>,
}

impl SnapshotSource for ThreeSegments {
    fn snapshot(&self) -> TableSnapshot {
        let mut segments: Vec<SegmentData> =
            self.sealed.iter().map(|s| SegmentData::Sealed(Arc::clone(s))).collect();
        segments.push(SegmentData::Consuming(self.consuming.snapshot()));
        TableSnapshot::new(segments)
    }
}

const S: [&str; 12] = ["a", "b", "a", "c", "b", "b", "d", "e", "f", "a", "g", "h"];

fn row(n: i64) -> String {
    json!({
        "i": n, "l": n * 10, "f": n as f64 + 0.5, "d": n as f64 * 1.25, "bd": format!("{n}.5"),
        "b": n % 2 == 0, "ts": 1_706_704_496_000i64 + n, "s": S[(n - 1) as usize],
        "j": {"n": n}, "by": "0a0b", "tags": ["x", "y"], "nums": [n, n + 1]
    })
    .to_string()
}

fn table(options: QueryOptions) -> (QueryEngine, tempfile::TempDir) {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [
            {"name": "i", "dataType": "INT"}, {"name": "f", "dataType": "FLOAT"},
            {"name": "bd", "dataType": "BIG_DECIMAL"}, {"name": "b", "dataType": "BOOLEAN"},
            {"name": "s", "dataType": "STRING"}, {"name": "j", "dataType": "JSON"}, {"name": "by", "dataType": "BYTES"},
            {"name": "tags", "dataType": "STRING", "singleValueField": false},
            {"name": "nums", "dataType": "INT", "singleValueField": false}
        ],
        "metricFieldSpecs": [{"name": "l", "dataType": "LONG"}, {"name": "d", "dataType": "DOUBLE"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "TIMESTAMP", "format": "1:MILLISECONDS:TIMESTAMP", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
    ));
    let dir = tempfile::tempdir().unwrap();
    let segment = |rows: std::ops::RangeInclusive<i64>| {
        let segment = MutableSegment::new(Arc::clone(&layout));
        let rows: Vec<String> = rows.map(row).collect();
        segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
        segment
    };
    let mut sealed = Vec::new();
    for (sequence, rows) in [(0, 1..=4), (1, 5..=8)] {
        let request =
            SealRequest { table: "t", shard: "shardId-000000000000", sequence, created_ms: 0, sort_by: None };
        let (path, _) = write_segment(dir.path(), &layout, &segment(rows).snapshot(), &request).unwrap();
        sealed.push(Arc::new(SealedSegment::open(&path).unwrap()));
    }
    let source = ThreeSegments { sealed, consuming: Arc::new(segment(9..=12)) };
    let engine = QueryEngine::new(options);
    engine.register("t", layout, Arc::new(source));
    (engine, dir)
}

fn pinot_limit() -> QueryOptions {
    QueryOptions::default().with_default_limit(Some(10))
}

async fn ok(engine: &QueryEngine, sql: &str) -> BrokerResponse {
    let r = answer_query(engine, sql).await;
    assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
    r
}

fn rows(r: &BrokerResponse) -> &Vec<Vec<Value>> {
    &r.result_table.as_ref().expect("a result").rows
}

fn schema(r: &BrokerResponse) -> (Vec<String>, Vec<String>) {
    let s = &r.result_table.as_ref().expect("a result").data_schema;
    (s.column_names.clone(), s.column_data_types.clone())
}

fn request(query_options: &str) -> RequestOptions {
    RequestOptions::default().with_query_options(Some(query_options.to_string())).with_trace(false)
}

// 1. Query options: SET statements, a trailing OPTION(...), the request's queryOptions
// (pinot-common CalciteSqlParser.java, RequestUtils.java).
#[tokio::test]
async fn query_options_are_read_from_set_option_and_the_request() {
    let (engine, _dir) = table(QueryOptions::default());
    for sql in [
        "SET timeoutMs = 5000; SELECT count(*) FROM t",
        "SET timeoutMs = 5000; SET useMultistageEngine = true; SELECT count(*) FROM t;",
        "SELECT count(*) FROM t OPTION(timeoutMs=5000)",
        "SELECT count(*) FROM t option(timeoutMs = 5000, useMultistageEngine = true);",
        // What pinotdb's preserve_types=True appends.
        "SELECT count(*) FROM t OPTION(preserveType='true')",
    ] {
        let r = ok(&engine, sql).await;
        assert_eq!(rows(&r)[0][0], json!(12), "{sql}");
    }
    let result =
        engine.execute("SET timeoutMs = 5000; SELECT count(*) FROM t OPTION(timeoutMs=7000)").await.unwrap();
    // SET wins over OPTION (SqlNodeAndOptions.setExtraOptions keeps what is set).
    assert_eq!(result.options.timeout, Some(Duration::from_millis(5000)));
    // pinotdb's use_multistage_engine=True sends this body field.
    let result = engine
        .execute_with("SELECT count(*) FROM t", &request("useMultistageEngine=true;timeoutMs=4000"))
        .await
        .unwrap();
    assert_eq!(result.options.values["useMultistageEngine"], "true");
    assert_eq!(result.options.timeout, Some(Duration::from_millis(4000)));
    // An unknown option is ignored and the answer has no exception (Pinot logs it, in its
    // WARN mode: QueryOptionsUtils.validateSqlQueryOptions).
    let sql = "SET colour = 'blue'; SELECT count(*) FROM t";
    let result = engine.execute(sql).await.unwrap();
    assert_eq!(result.options.ignored, ["colour"]);
    // Pinot only logs it; Shoal also tells the client, in a `warnings` field of its own that
    // is left out when nothing was ignored.
    let r = ok(&engine, sql).await;
    assert_eq!(r.warnings, ["Unsupported query option 'colour': ignored"]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["warnings"], serde_json::json!(["Unsupported query option 'colour': ignored"]));
    let plain =
        serde_json::to_value(ok(&engine, "SET timeoutMs = 5000; SELECT count(*) FROM t").await).unwrap();
    assert!(plain.get("warnings").is_none(), "{plain}");
    // Malformed options are SQL errors (150).
    for sql in ["SELECT 1 OPTION(timeoutMs)", "SET timeoutMs = 'soon'; SELECT 1", "SET timeoutMs = 5"] {
        let r = answer_query(&engine, sql).await;
        assert_eq!(r.exceptions[0].error_code, 150, "{sql}: {r:?}");
    }
    let r = answer_query_with(&engine, "SELECT 1", &request("timeoutMs")).await;
    assert_eq!(r.exceptions[0].error_code, 150, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_ms_is_honoured_up_to_the_engines_limit() {
    // The answer names the limit that ended the query. (How soon it comes depends on when a
    // worker busy with the join next yields, so the time is not what is checked.)
    let slow = "SELECT count(*) FROM events a CROSS JOIN events b WHERE a.duration_ms + b.duration_ms = 7";
    // Shorter than the engine's 30 s: the query's own limit holds.
    let (engine, _t, _events, _dir) = common::events_table(1, 20_000, 0, QueryOptions::default());
    let r = answer_query(&engine, &format!("SET timeoutMs = 300; {slow}")).await;
    assert_eq!(r.exceptions[0].error_code, 250, "{r:?}");
    assert!(r.exceptions[0].message.contains("within 300ms"), "{r:?}");
    // Longer than the engine's limit: the engine's holds.
    let capped = QueryOptions::default().with_timeout(Duration::from_millis(400));
    let (engine, _t, _events, _dir) = common::events_table(1, 20_000, 0, capped);
    let r = answer_query_with(&engine, slow, &request("timeoutMs=600000")).await;
    assert_eq!(r.exceptions[0].error_code, 250, "{r:?}");
    assert!(r.exceptions[0].message.contains("within 400ms"), "{r:?}");
}

// 2. Default limit: 10 rows for a query without LIMIT, selection and group-by alike
// (pinot-broker BaseSingleStageBrokerRequestHandler.java, pinot.broker.default.query.limit).
#[tokio::test]
async fn a_query_without_limit_gets_the_default_limit() {
    let (engine, _dir) = table(pinot_limit());
    assert_eq!(rows(&ok(&engine, "SELECT * FROM t").await).len(), 10);
    assert_eq!(rows(&ok(&engine, "SELECT i, count(*) FROM t GROUP BY i").await).len(), 10);
    assert_eq!(rows(&ok(&engine, "SELECT DISTINCT i FROM t").await).len(), 10);
    assert_eq!(rows(&ok(&engine, "SELECT i FROM t LIMIT 12").await).len(), 12);
    // OFFSET 5 without LIMIT: rows 6 to 12 of 12.
    assert_eq!(rows(&ok(&engine, "SELECT i FROM t ORDER BY i OFFSET 5").await).len(), 7);
    // An aggregation without GROUP BY is one row anyway.
    assert_eq!(rows(&ok(&engine, "SELECT count(*) FROM t").await), &[vec![json!(12)]]);
    // Without a default (an embedding application's engine) every row comes back.
    let (engine, _dir) = table(QueryOptions::default());
    assert_eq!(rows(&ok(&engine, "SELECT * FROM t").await).len(), 12);
}

// 3. Result types and names as Pinot's single-stage engine gives them.
#[tokio::test]
async fn aggregations_are_typed_and_named_as_pinot_does() {
    let (engine, _dir) = table(QueryOptions::default());
    let r = ok(
        &engine,
        "SELECT sum(i), avg(l), min(f), max(d), count(*), DISTINCTCOUNT(s), PERCENTILEEST(l, 50), sum(bd) FROM t",
    )
    .await;
    // Names: pinot-core BaseSingleInputAggregationFunction.getResultColumnName,
    // CountAggregationFunction (count(*)), PercentileEstAggregationFunction (`, 50.0`).
    // Types: each function's getFinalResultColumnType.
    assert_eq!(
        schema(&r),
        (
            [
                "sum(i)",
                "avg(l)",
                "min(f)",
                "max(d)",
                "count(*)",
                "distinctcount(s)",
                "percentileest(l, 50.0)",
                "sum(bd)"
            ]
            .map(String::from)
            .to_vec(),
            ["DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE", "LONG", "INT", "LONG", "DOUBLE"]
                .map(String::from)
                .to_vec()
        )
    );
    // By hand: i = 1..12 sums to 78; l = 10..120 averages 65; f's least is 1.5; d's greatest
    // 15; 12 rows; s has 8 values; bd = n + 0.5 sums to 84.
    let row = &rows(&r)[0];
    assert_eq!(row[..6], [json!(78.0), json!(65.0), json!(1.5), json!(15.0), json!(12), json!(8)]);
    assert_eq!(row[7], json!(84.0));
    // COUNT of a column is count(*) (null handling off), COUNT(DISTINCT) is DISTINCTCOUNT
    // (CalciteSqlParser.compileFunctionExpression), an expression is its function form
    // (FunctionContext.toString), an alias is kept and the type still Pinot's.
    let r = ok(&engine, "SELECT count(i), count(DISTINCT s), max(i + l), sum(i) AS total FROM t").await;
    assert_eq!(
        schema(&r),
        (
            ["count(*)", "distinctcount(s)", "max(plus(i,l))", "total"].map(String::from).to_vec(),
            ["LONG", "INT", "DOUBLE", "DOUBLE"].map(String::from).to_vec()
        )
    );
    assert_eq!(rows(&r)[0], [json!(12), json!(8), json!(132.0), json!(78.0)]);
    let r = ok(&engine, "SELECT upper(s), i * 2, s FROM t WHERE i = 1").await;
    assert_eq!(schema(&r).0, ["upper(s)", "times(i,'2')", "s"]);
    // GROUP BY keys keep the schema's types; SUM is DOUBLE.
    let r = ok(&engine, "SELECT s, sum(l) FROM t GROUP BY s ORDER BY s LIMIT 1").await;
    assert_eq!(schema(&r), (vec!["s".into(), "sum(l)".into()], vec!["STRING".into(), "DOUBLE".into()]));
    // s = 'a' at rows 1, 3 and 10: 10 + 30 + 100.
    assert_eq!(rows(&r)[0], [json!("a"), json!(140.0)]);
}

#[tokio::test]
async fn selected_columns_are_typed_from_the_schema() {
    let (engine, _dir) = table(QueryOptions::default());
    let r = ok(&engine, "SELECT i, l, f, d, bd, b, ts, s, j, by, tags, nums FROM t WHERE i = 1").await;
    assert_eq!(
        schema(&r).1,
        [
            "INT",
            "LONG",
            "FLOAT",
            "DOUBLE",
            "BIG_DECIMAL",
            "BOOLEAN",
            "TIMESTAMP",
            "STRING",
            "JSON",
            "BYTES",
            "STRING_ARRAY",
            "INT_ARRAY"
        ]
    );
}

// 4. Error codes and message shapes (pinot-spi QueryErrorCode.java; pinot-common
// BrokerResponseNative.java writes `Name: detail`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_pinots_codes_and_names() {
    let (engine, _dir) = table(QueryOptions::default());
    for (sql, code, name) in [
        ("SELEC 1", 150, "SQLParsingError"),
        ("SELECT count(*) FROM nope", 190, "TableDoesNotExistError"),
        ("SELECT nope FROM t", 710, "UnknownColumnError: Unknown columnName 'nope' found in the query"),
        // QueryErrorCode.java's own example of QUERY_EXECUTION: a string cast to an int.
        ("SELECT CAST(s AS INT) FROM t", 200, "QueryExecutionError"),
    ] {
        let r = answer_query(&engine, sql).await;
        assert_eq!(r.exceptions.len(), 1, "{sql}: {r:?}");
        assert_eq!(r.exceptions[0].error_code, code, "{sql}: {r:?}");
        assert!(r.exceptions[0].message.starts_with(name), "{sql}: {r:?}");
        // BrokerResponseNative.isPartialResult: any exception.
        assert!(r.partial_result && r.result_table.is_none(), "{sql}");
    }
    // A query that waits for a place to run for all its time: QUERY_SCHEDULING_TIMEOUT
    // (pinot-core ServerQueryExecutorV1Impl.java).
    let options = QueryOptions::default().with_max_concurrent_queries(1).with_timeout(Duration::from_secs(4));
    let (engine, _t, _events, _dir) = common::events_table(1, 20_000, 0, options);
    let engine = Arc::new(engine);
    let running = tokio::spawn({
        let e = Arc::clone(&engine);
        async move {
            answer_query(
                &e,
                "SELECT count(*) FROM events a CROSS JOIN events b WHERE a.duration_ms + b.duration_ms = 7",
            )
            .await
        }
    });
    while engine.running_queries() < 1 {
        tokio::task::yield_now().await;
    }
    let r = answer_query(&engine, "SET timeoutMs = 200; SELECT count(*) FROM events").await;
    assert_eq!(r.exceptions[0].error_code, 240, "{r:?}");
    assert!(r.exceptions[0].message.starts_with("QuerySchedulingTimeoutError"), "{r:?}");
    let r = running.await.unwrap();
    assert_eq!(r.exceptions[0].error_code, 250, "{r:?}");
    assert!(r.exceptions[0].message.starts_with("ExecutionTimeoutError"), "{r:?}");
    assert_eq!(ErrorKind::Overloaded.pinot_code(), 211);
}

// 5. The response's statistics (pinot-common BrokerResponseNative.java; pinot-core
// BaseCombineOperator.attachExecutionStats sums them over segments).
#[tokio::test]
async fn scan_statistics_count_what_passed_the_filters() {
    let (engine, _dir) = table(QueryOptions::default());
    // i % 4 = 1 prunes nothing: 12 rows tested on 1 column; rows 1, 5 and 9 pass, one per
    // segment; 2 columns handed on.
    let r = ok(&engine, "SELECT i, s FROM t WHERE i % 4 = 1").await;
    assert_eq!(rows(&r).len(), 3);
    assert_eq!(
        (r.num_docs_scanned, r.num_entries_scanned_in_filter, r.num_entries_scanned_post_filter),
        (3, 12, 6)
    );
    assert_eq!((r.num_segments_queried, r.num_segments_processed, r.num_segments_matched), (3, 3, 3));
    assert_eq!(
        (
            r.num_consuming_segments_queried,
            r.num_consuming_segments_processed,
            r.num_consuming_segments_matched
        ),
        (1, 1, 1)
    );
    assert_eq!(r.total_docs, 12);
    // i <= 2: the segments of rows 5-8 and 9-12 are pruned by their i range; 4 rows tested,
    // 2 pass; count(*) hands on no column.
    let r = ok(&engine, "SELECT count(*) FROM t WHERE i <= 2").await;
    assert_eq!(rows(&r)[0][0], json!(2));
    assert_eq!(
        (r.num_docs_scanned, r.num_entries_scanned_in_filter, r.num_entries_scanned_post_filter),
        (2, 4, 0)
    );
    assert_eq!((r.num_segments_processed, r.num_segments_matched), (1, 1));
    assert_eq!((r.num_consuming_segments_processed, r.num_consuming_segments_matched), (0, 0));
    // No row has s = 'zzz': nothing is scanned on, no segment matches.
    let r = ok(&engine, "SELECT count(*) FROM t WHERE s = 'zzz'").await;
    assert_eq!((r.num_docs_scanned, r.num_segments_matched), (0, 0));
    // count(*) without a filter is answered from row counts: Pinot then counts every row
    // as scanned and no entries (pinot-core NonScanBasedAggregationOperator.java).
    let r = ok(&engine, "SELECT count(*) FROM t").await;
    assert_eq!(
        (r.num_docs_scanned, r.num_entries_scanned_in_filter, r.num_entries_scanned_post_filter),
        (12, 0, 0)
    );
    assert_eq!(r.num_segments_matched, 3);
    // Identity, tables and flags.
    assert_eq!(r.tables_queried, ["t"]);
    assert!(r.broker_id.starts_with("Broker_"), "{}", r.broker_id);
    let next = ok(&engine, "SELECT count(*) FROM t_REALTIME").await;
    assert_eq!(next.tables_queried, ["t"]);
    let (a, b): (u64, u64) = (r.request_id.parse().unwrap(), next.request_id.parse().unwrap());
    assert!(b > a, "{a} {b}");
    assert!(!r.num_groups_limit_reached && !r.partial_result);
    assert!(r.trace_info.is_empty());
    // trace=true: one entry, the phases and the plan with its operators' metrics.
    for (sql, request) in [
        (
            "SELECT count(*) FROM t WHERE i > 3",
            RequestOptions::default().with_query_options(None).with_trace(true),
        ),
        ("SET trace = true; SELECT count(*) FROM t WHERE i > 3", RequestOptions::default()),
    ] {
        let r = answer_query_with(&engine, sql, &request).await;
        assert!(r.exceptions.is_empty(), "{r:?}");
        assert_eq!(r.trace_info.len(), 1, "{r:?}");
        let trace: Value = serde_json::from_str(r.trace_info.values().next().unwrap()).unwrap();
        assert!(trace["plan"].to_string().contains("SegmentScanExec"), "{trace}");
        assert!(trace["executeMs"].is_number(), "{trace}");
    }
    // The wire form holds every field a Pinot client reads.
    let wire = serde_json::to_value(&r).unwrap();
    for key in [
        "requestId",
        "brokerId",
        "tablesQueried",
        "numDocsScanned",
        "numEntriesScannedInFilter",
        "numEntriesScannedPostFilter",
        "numSegmentsProcessed",
        "numSegmentsMatched",
        "numConsumingSegmentsProcessed",
        "numConsumingSegmentsMatched",
        "minConsumingFreshnessTimeMs",
        "numGroupsLimitReached",
        "partialResult",
        "traceInfo",
    ] {
        assert!(wire.get(key).is_some(), "{key} missing from {wire}");
    }
    assert!(wire["requestId"].is_string(), "{wire}");
}
