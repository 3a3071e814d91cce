//! Pinot's functions at their edges: values that overflow, units and sizes that make no sense,
//! patterns, zones and JSON paths that do not parse. Each is an error answer naming the function,
//! never a panic and never a wrapped number; both with literal arguments (folded while the query
//! is planned) and with the same values read from a column (evaluated while it runs).

use arrow::array::Array;
use serde_json::json;
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, TableLayout};
use std::sync::Arc;

#[derive(Debug)]
struct OneSegment(Arc<MutableSegment>);

impl SnapshotSource for OneSegment {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot::new(vec![SegmentData::Consuming(self.0.snapshot())])
    }
}

/// One row per extreme, picked by `k`: `n` is the number, `s` a text, `doc` a JSON document.
fn engine() -> QueryEngine {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "x",
        "dimensionFieldSpecs": [
            {"name": "k", "dataType": "STRING"},
            {"name": "s", "dataType": "STRING"},
            {"name": "doc", "dataType": "JSON"}
        ],
        "metricFieldSpecs": [{"name": "n", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
    ));
    let segment = Arc::new(MutableSegment::new(Arc::clone(&layout)));
    let rows = [
        json!({"k": "max", "n": i64::MAX, "ts": 1_706_704_496_789i64}),
        json!({"k": "min", "n": i64::MIN, "ts": 1_706_704_496_789i64}),
        json!({"k": "big", "n": 1_000_000_000_000_000i64, "ts": 1_706_704_496_789i64}),
        json!({"k": "day", "n": 1_706_704_496_789i64, "ts": 1_706_704_496_789i64}),
        json!({"k": "huge-year", "s": "99999999999999999901", "ts": 1_706_704_496_789i64}),
        json!({"k": "fraction", "s": "202412345678901201", "ts": 1_706_704_496_789i64}),
        json!({"k": "doc", "doc": {"n": 3_000_000_000i64, "t": "x"}, "ts": 1_706_704_496_789i64}),
    ];
    let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let outcome = segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    assert_eq!(outcome.rows, rows.len(), "every row decodes");
    let engine = QueryEngine::new(QueryOptions::default().with_target_partitions(1));
    engine.register("x", layout, Arc::new(OneSegment(segment)));
    engine
}

/// `sql` is answered with an error whose message holds each of `words`.
async fn refused(engine: &QueryEngine, sql: &str, words: &[&str]) {
    match engine.execute(sql).await {
        Ok(r) => panic!("{sql}: answered {:?}", r.batches),
        Err(e) => {
            assert!(!e.message.contains("panicked"), "{sql}: {}", e.message);
            for word in words {
                assert!(e.message.contains(word), "{sql}: {:?} does not say {word:?}", e.message);
            }
        }
    }
}

/// The first value of `sql`'s answer as text; None for NULL.
async fn answer(engine: &QueryEngine, sql: &str) -> Option<String> {
    let r = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column = arrow::compute::cast(r.batches[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
    let text = column.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    (!text.is_null(0)).then(|| text.value(0).to_string())
}

/// The same call with literal arguments and with the value read from row `k`'s column `n`/`s`.
/// `call` holds `{}` where the value goes.
async fn refused_both(
    engine: &QueryEngine,
    call: &str,
    literal: &str,
    k: &str,
    column: &str,
    words: &[&str],
) {
    refused(engine, &format!("SELECT {}", call.replace("{}", literal)), words).await;
    refused(engine, &format!("SELECT {} FROM x WHERE k = '{k}'", call.replace("{}", column)), words).await;
}

const MAX: &str = "9223372036854775807";
const MIN: &str = "(-9223372036854775807 - 1)";

#[tokio::test]
async fn datetrunc_refuses_what_overflows() {
    let e = engine();
    // The finding: the input unit's millis do not fit (i64::MAX days).
    refused_both(&e, "DATETRUNC('day', {}, 'DAYS')", MAX, "max", "n", &["DATETRUNC", "timeValue"]).await;
    refused_both(&e, "DATETRUNC('day', {}, 'HOURS')", MIN, "min", "n", &["DATETRUNC", "timeValue"]).await;
    // The start of the day, week, month, quarter or year before i64::MIN ms.
    for unit in ["second", "day", "week", "month", "quarter", "year"] {
        let call = format!("DATETRUNC('{unit}', {{}})");
        refused_both(&e, &call, MIN, "min", "n", &["DATETRUNC", "out of range"]).await;
    }
    // The start of the day converted to the output unit.
    refused_both(
        &e,
        "DATETRUNC('day', {}, 'MILLISECONDS', 'UTC', 'NANOSECONDS')",
        MAX,
        "max",
        "n",
        &["DATETRUNC", "outputTimeUnit"],
    )
    .await;
    // Truncated toward zero into millis, then floored to the day: before i64::MIN ns.
    refused_both(&e, "DATETRUNC('day', {}, 'NANOSECONDS')", MIN, "min", "n", &["DATETRUNC", "out of range"])
        .await;
    // Units and zones that make no sense.
    refused(&e, "SELECT DATETRUNC('fortnight', 1)", &["DATETRUNC", "fortnight"]).await;
    refused(&e, "SELECT DATETRUNC('day', 1, 'FORTNIGHTS')", &["DATETRUNC", "FORTNIGHTS"]).await;
    refused(&e, "SELECT DATETRUNC('day', 1, 'MILLISECONDS', 'Mars/Olympus')", &["DATETRUNC", "Mars/Olympus"])
        .await;
    // Real zones are read: 1 ms after 1970 is 19:00 on 31 December in New York, whose day began
    // at 05:00Z, 19 hours before 1970.
    assert_eq!(
        answer(&e, "SELECT DATETRUNC('day', 1, 'MILLISECONDS', 'America/New_York')").await,
        Some("-68400000".into())
    );
    refused(&e, "SELECT DATETRUNC('day', 1, 'MILLISECONDS', 'UTC', 'WEEKS')", &["DATETRUNC", "WEEKS"]).await;
    refused(&e, "SELECT DATETRUNC(k, n) FROM x", &["DATETRUNC", "literal"]).await;
}

#[tokio::test]
async fn datetrunc_at_the_edges_answers_as_pinot() {
    let e = engine();
    // i64::MAX ms is 292278994-08-17T07:12:55.807Z: its day starts 25,975,807 ms earlier.
    assert_eq!(
        answer(&e, &format!("SELECT DATETRUNC('day', {MAX})")).await,
        Some("9223372036828800000".into())
    );
    // Pinot's five-argument form: ms in, the day's start out in seconds (2024-01-31).
    assert_eq!(
        answer(&e, "SELECT DATETRUNC('day', n, 'MILLISECONDS', 'UTC', 'SECONDS') FROM x WHERE k = 'day'")
            .await,
        Some("1706659200".into())
    );
    // Sub-millisecond input is truncated toward zero into millis first (TimeUnit.convert).
    assert_eq!(
        answer(&e, "SELECT DATETRUNC('second', 1706704496789123456, 'NANOSECONDS')").await,
        Some("1706704496000000000".into())
    );
}

#[tokio::test]
async fn epoch_conversions_refuse_what_overflows() {
    let e = engine();
    for (f, value, k) in [
        ("FromEpochSeconds", MAX, "max"),
        ("FromEpochMinutes", MIN, "min"),
        ("FromEpochHours", MAX, "max"),
        ("FromEpochDays", "1000000000000000", "big"),
    ] {
        refused_both(&e, &format!("{f}({{}})"), value, k, "n", &[f, "out of range"]).await;
    }
    // Division never overflows: Java's truncation toward zero, 9223372036854775808 / 86400000.
    assert_eq!(answer(&e, &format!("SELECT ToEpochDays({MIN})")).await, Some("-106751991167".into()));
}

#[tokio::test]
async fn datetimeconvert_refuses_what_overflows() {
    let e = engine();
    // Input: i64::MAX days are no millis.
    refused_both(
        &e,
        "DATETIMECONVERT({}, '1:DAYS:EPOCH', '1:MILLISECONDS:EPOCH', '1:MILLISECONDS')",
        MAX,
        "max",
        "n",
        &["DATETIMECONVERT", "input"],
    )
    .await;
    refused_both(
        &e,
        "DATETIMECONVERT({}, '5:HOURS:EPOCH', '1:MILLISECONDS:EPOCH', '1:MILLISECONDS')",
        MIN,
        "min",
        "n",
        &["DATETIMECONVERT", "input"],
    )
    .await;
    // Output: i64::MAX ms are no nanoseconds (this wrapped silently before).
    refused_both(
        &e,
        "DATETIMECONVERT({}, '1:MILLISECONDS:EPOCH', '1:NANOSECONDS:EPOCH', '1:MILLISECONDS')",
        MAX,
        "max",
        "n",
        &["DATETIMECONVERT", "output"],
    )
    .await;
    // Bucketing: the 15-minute bucket of i64::MIN ms starts before it.
    refused_both(
        &e,
        "DATETIMECONVERT({}, '1:MILLISECONDS:EPOCH', '1:MILLISECONDS:EPOCH', '15:MINUTES')",
        MIN,
        "min",
        "n",
        &["DATETIMECONVERT", "granularity"],
    )
    .await;
    // Sizes that make no sense.
    for (input, output, granularity, word) in [
        ("0:MILLISECONDS:EPOCH", "1:MILLISECONDS:EPOCH", "1:MILLISECONDS", "input"),
        ("1:MILLISECONDS:EPOCH", "-1:MILLISECONDS:EPOCH", "1:MILLISECONDS", "output"),
        ("1:MILLISECONDS:EPOCH", "1:MILLISECONDS:EPOCH", "0:DAYS", "granularity"),
        ("1:MILLISECONDS:EPOCH", "1:MILLISECONDS:EPOCH", "99999999999:DAYS", "granularity"),
        ("1:MILLISECONDS:EPOCH", "1:MILLISECONDS:EPOCH", "1:FORTNIGHTS", "granularity"),
        ("1:MILLISECONDS:EPOCH", "1:DAYS:SIMPLE_DATE_FORMAT:yyyySSSSSSSSSSSS", "1:DAYS", "output"),
    ] {
        let sql = format!("SELECT DATETIMECONVERT(1, '{input}', '{output}', '{granularity}')");
        refused(&e, &sql, &["DATETIMECONVERT", word]).await;
    }
    // The largest granularity (4294967295 days) fits: 0 is in the bucket that starts at 0.
    assert_eq!(
        answer(
            &e,
            "SELECT DATETIMECONVERT(0, '1:MILLISECONDS:EPOCH', '1:MILLISECONDS:EPOCH', '4294967295:DAYS')"
        )
        .await,
        Some("0".into())
    );
    // A granularity under a millisecond leaves millis as they are (Pinot's BaseDateTimeTransformer).
    assert_eq!(
        answer(
            &e,
            "SELECT DATETIMECONVERT(n, '1:MILLISECONDS:EPOCH', '1:MILLISECONDS:EPOCH', '5000000:NANOSECONDS') FROM x WHERE k = 'day'"
        )
        .await,
        Some("1706704496789".into())
    );
}

#[tokio::test]
async fn date_patterns_refuse_what_they_cannot_read() {
    let e = engine();
    // A year of 18 digits: no epoch millis (this panicked in the calendar arithmetic).
    refused_both(
        &e,
        "FROMDATETIME({}, 'yyyyyyyyyyyyyyyyyyMM')",
        "'99999999999999999901'",
        "huge-year",
        "s",
        &["FROMDATETIME", "out of range"],
    )
    .await;
    // More than nine fraction digits (this panicked computing the scale).
    refused_both(
        &e,
        "FROMDATETIME({}, 'yyyySSSSSSSSSSSSMM')",
        "'202412345678901201'",
        "fraction",
        "s",
        &["FROMDATETIME", "SSSSSSSSSSSS"],
    )
    .await;
    refused(&e, "SELECT TODATETIME(1, 'yyyySSSSSSSSSS')", &["TODATETIME", "S"]).await;
    refused(&e, "SELECT TODATETIME(1, 'yyyy''')", &["TODATETIME", "quote"]).await;
    refused(&e, "SELECT TODATETIME(1, 'QQ')", &["TODATETIME", "Q"]).await;
    refused(&e, "SELECT TODATETIME(1, 'yyyy', 'Asia/Kolkatta')", &["TODATETIME", "Asia/Kolkatta"]).await;
    refused(&e, "SELECT FROMDATETIME('2024', 'yyyy', 'XYZ')", &["FROMDATETIME", "XYZ"]).await;
    // Any i64 formats: i64::MIN ms is in the year -292275055.
    assert_eq!(
        answer(&e, &format!("SELECT TODATETIME({MIN}, 'yyyy-MM-dd')")).await,
        Some("-292275055-05-16".into())
    );
    // Text that does not match is NULL, as before; also a month name cut inside a character
    // (this panicked slicing the text).
    assert_eq!(answer(&e, "SELECT FROMDATETIME('soon', 'yyyy-MM-dd')").await, None);
    assert_eq!(answer(&e, "SELECT FROMDATETIME('2024 Ma\u{e9}', 'yyyy MMM')").await, None);
}

#[tokio::test]
async fn ago_refuses_what_overflows() {
    let e = engine();
    refused(&e, "SELECT ago('P99999999999999999999D')", &["ago", "out of range"]).await;
    refused(&e, "SELECT ago('PT9223372036854775807S')", &["ago", "out of range"]).await;
    for bad in ["PT", "P", "1H", "P1é", "PT1.2.3S", ""] {
        refused(&e, &format!("SELECT ago('{bad}')"), &["ago", "ISO-8601"]).await;
    }
    refused(&e, "SELECT ago(s) FROM x", &["ago", "literal"]).await;
}

#[tokio::test]
async fn json_extract_scalar_refuses_bad_paths_and_values() {
    let e = engine();
    for path in ["$[", "$.", "$['a", "$[99999999999999999999999]", "a.b", "$..a", "$.a[x]", "$[0:2]"] {
        let sql =
            format!("SELECT JSON_EXTRACT_SCALAR('{{}}', '{}', 'STRING', 'd')", path.replace('\'', "''"));
        refused(&e, &sql, &["JSON_EXTRACT_SCALAR", "JSON path"]).await;
    }
    // 3000000000 is no INT: an error, not a wrapped number.
    let call = "JSON_EXTRACT_SCALAR({}, '$.n', 'INT')";
    refused_both(&e, call, "'{\"n\": 3000000000}'", "doc", "doc", &["JSON_EXTRACT_SCALAR", "INT"]).await;
    refused(
        &e,
        "SELECT JSON_EXTRACT_SCALAR(doc, '$.n', 'INT', 'none') FROM x WHERE k = 'doc'",
        &["JSON_EXTRACT_SCALAR", "default"],
    )
    .await;
    refused(&e, "SELECT JSON_EXTRACT_SCALAR(doc, '$.n', 'NOPE') FROM x", &["JSON_EXTRACT_SCALAR", "NOPE"])
        .await;
    assert_eq!(
        answer(&e, "SELECT JSON_EXTRACT_SCALAR(doc, '$.n', 'LONG') FROM x WHERE k = 'doc'").await,
        Some("3000000000".into())
    );
}

#[tokio::test]
async fn percentile_refuses_what_is_not_a_percentile() {
    let e = engine();
    for p in ["101", "-1", "'NaN'", "1e400"] {
        refused(&e, &format!("SELECT PERCENTILE(n, {p}) FROM x"), &["PERCENTILE"]).await;
        refused(&e, &format!("SELECT PERCENTILE(5, {p})"), &["PERCENTILE"]).await;
    }
    // Only digits follow PERCENTILE in the one-argument spelling (Pinot's AggregationFunctionFactory).
    for name in ["PERCENTILENAN", "PERCENTILEINF", "PERCENTILE1E2"] {
        refused(&e, &format!("SELECT {name}(n) FROM x"), &[]).await;
    }
    // The largest and smallest values are read as they are.
    let top = answer(&e, "SELECT PERCENTILE(n, 100) FROM x").await.unwrap();
    assert_eq!(top.parse::<f64>().unwrap(), i64::MAX as f64);
    let bottom = answer(&e, "SELECT PERCENTILE(n, 0) FROM x").await.unwrap();
    assert_eq!(bottom.parse::<f64>().unwrap(), i64::MIN as f64);
}
