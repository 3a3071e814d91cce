//! Pinot's functions and rules through SQL, on a small table with multi-value columns. Every
//! expected value is computed by hand (the arithmetic is in the comments) or taken from
//! Pinot's docs and source, named beside it.

mod common;

use serde_json::{Value, json};
use shoal_query::QueryEngine;

fn schema() -> Value {
    json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [
            {"name": "name", "dataType": "STRING"},
            {"name": "tags", "dataType": "STRING", "singleValueField": false},
            {"name": "nums", "dataType": "INT", "singleValueField": false},
            {"name": "doc", "dataType": "JSON"},
            {"name": "created", "dataType": "TIMESTAMP"}
        ],
        "metricFieldSpecs": [{"name": "v", "dataType": "LONG"}, {"name": "d", "dataType": "DOUBLE"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

/// Four rows. ts: 2024-01-31T12:34:56.789Z (a Wednesday), 2024-01-31T12:35:00Z,
/// 2024-03-10T12:00:00Z (New York's first day of daylight saving time), 2024-11-03T06:00:00Z.
fn engine() -> QueryEngine {
    let rows = [
        json!({"name": "a", "tags": ["x", "y"], "nums": [1, 2, 3], "v": 1, "d": 0.1, "ts": 1_706_704_496_789i64,
               "created": 1_706_704_496_789i64,
               "doc": {"addresses": [{"country": "us", "number": 1}, {"country": "ca", "number": 2}], "age": 30, "name": "adam"}}),
        json!({"name": "b", "tags": ["y"], "nums": [5], "v": 2, "d": 0.2, "ts": 1_706_704_500_000i64,
               "created": 1_706_704_500_000i64,
               "doc": {"addresses": [{"country": "us", "number": 3}], "age": 17, "name": "bob"}}),
        json!({"name": "c", "tags": ["z", "x", "x"], "nums": [2, 2], "v": 2, "d": 0.3, "ts": 1_710_072_000_000i64,
               "created": 1_710_072_000_000i64, "doc": {"name": "carl", "phone": "123"}}),
        json!({"name": "d", "tags": ["w"], "nums": [7, 1], "v": 3, "d": 0.4, "ts": 1_730_613_600_000i64,
               "created": 1_730_613_600_000i64, "doc": {"x": {"y": 4}}}),
    ];
    let rows: Vec<String> = rows.iter().map(Value::to_string).collect();
    common::table_of("t", schema(), "ts", &rows)
}

async fn one(engine: &QueryEngine, sql: &str) -> Value {
    let r = shoal_server::broker::answer_query(engine, sql).await;
    assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
    r.result_table.unwrap().rows[0][0].clone()
}

async fn check(engine: &QueryEngine, cases: &[(&str, Value)]) {
    for (sql, want) in cases {
        let got = one(engine, sql).await;
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => got == *want,
        };
        assert!(same, "{sql}: got {got}, want {want}");
    }
}

/// The Pinot error code and message of a query that must fail.
async fn refused(engine: &QueryEngine, sql: &str, words: &str) -> i32 {
    let r = shoal_server::broker::answer_query(engine, sql).await;
    let e = r.exceptions.first().unwrap_or_else(|| panic!("{sql} was not refused"));
    assert!(e.message.contains(words), "{sql}: {}", e.message);
    e.error_code
}

#[tokio::test]
async fn multi_value_predicates_match_when_any_value_matches() {
    let e = engine();
    // Pinot (BaseDictionaryBasedPredicateEvaluator.applyMV): =, IN, ranges, LIKE match a row
    // when one value does; != and NOT IN when every value differs.
    check(
        &e,
        &[
            ("SELECT COUNT(*) FROM t WHERE tags = 'x'", json!(2)), // a, c
            ("SELECT COUNT(*) FROM t WHERE 'x' = tags", json!(2)),
            ("SELECT COUNT(*) FROM t WHERE tags != 'x'", json!(2)), // b, d
            ("SELECT COUNT(*) FROM t WHERE tags <> 'y'", json!(2)), // c, d
            ("SELECT COUNT(*) FROM t WHERE tags IN ('y', 'w')", json!(3)), // a, b, d
            ("SELECT COUNT(*) FROM t WHERE tags NOT IN ('x', 'y')", json!(1)), // d
            ("SELECT COUNT(*) FROM t WHERE nums > 4", json!(2)),    // b (5), d (7)
            ("SELECT COUNT(*) FROM t WHERE nums BETWEEN 3 AND 4", json!(1)), // a (3)
            ("SELECT COUNT(*) FROM t WHERE tags LIKE 'z%'", json!(1)), // c
            ("SELECT COUNT(*) FROM t WHERE REGEXP_LIKE(tags, '^[wz]')", json!(2)), // c, d
            ("SELECT COUNT(*) FROM t WHERE nums = 2 AND tags = 'x'", json!(2)), // a, c
            ("SELECT name FROM t WHERE nums = 7", json!("d")),
        ],
    )
    .await;
}

#[tokio::test]
async fn multi_value_functions_and_aggregations() {
    let e = engine();
    check(
        &e,
        &[
            ("SELECT arrayLength(tags) FROM t WHERE name = 'c'", json!(3)),
            ("SELECT VALUEIN(tags, 'x', 'w') FROM t WHERE name = 'c'", json!(["x", "x"])),
            ("SELECT arrayLength(VALUEIN(nums, 2)) FROM t WHERE name = 'a'", json!(1)),
            // Values: tags 2 + 1 + 3 + 1; nums 1+2+3, 5, 2+2, 7+1.
            ("SELECT COUNTMV(tags) FROM t", json!(7)),
            ("SELECT SUMMV(nums) FROM t", json!(23.0)),
            ("SELECT MINMV(nums) FROM t", json!(1.0)),
            ("SELECT MAXMV(nums) FROM t", json!(7.0)),
            ("SELECT AVGMV(nums) FROM t", json!(2.875)), // 23 / 8
            ("SELECT DISTINCTCOUNTMV(tags) FROM t", json!(4)), // x, y, z, w
            ("SELECT SUMMV(nums) FROM t WHERE tags = 'x'", json!(10.0)), // a 6 + c 4
            // pinot-common ArrayFunctions over multi-value columns.
            ("SELECT arrayContainsString(tags, 'z') FROM t WHERE name = 'c'", json!(true)),
            ("SELECT COUNT(*) FROM t WHERE arrayContainsInt(nums, 2)", json!(2)), // a, c
            ("SELECT arrayElementAtInt(nums, 2) FROM t WHERE name = 'd'", json!(1)), // from 1
            ("SELECT arraySumInt(nums) FROM t WHERE name = 'a'", json!(6)),
            ("SELECT arrayToString(arrayDistinctString(tags), '/') FROM t WHERE name = 'c'", json!("z/x")),
            ("SELECT arrayIndexOfString(tags, 'x') FROM t WHERE name = 'c'", json!(1)), // from 0
            ("SELECT cardinality(tags) FROM t WHERE name = 'c'", json!(3)),
        ],
    )
    .await;
}

#[tokio::test]
async fn time_functions_in_time_zones() {
    let e = engine();
    check(
        &e,
        &[
            // 2024-01-31T12:34:56.789Z: Wednesday (3), ISO week 5, day 31, Q1.
            ("SELECT YEAR(ts) FROM t WHERE name = 'a'", json!(2024)),
            ("SELECT QUARTER(ts) FROM t WHERE name = 'a'", json!(1)),
            ("SELECT MONTH(ts) FROM t WHERE name = 'a'", json!(1)),
            ("SELECT WEEK(ts) FROM t WHERE name = 'a'", json!(5)),
            ("SELECT DAYOFWEEK(ts) FROM t WHERE name = 'a'", json!(3)),
            ("SELECT DAYOFYEAR(ts) FROM t WHERE name = 'a'", json!(31)),
            ("SELECT HOUR(ts) FROM t WHERE name = 'a'", json!(12)),
            ("SELECT MINUTE(ts) FROM t WHERE name = 'a'", json!(34)),
            ("SELECT SECOND(ts) FROM t WHERE name = 'a'", json!(56)),
            // On a TIMESTAMP column, and in a zone: 18:04 in Kolkata (+05:30).
            ("SELECT HOUR(created) FROM t WHERE name = 'a'", json!(12)),
            ("SELECT HOUR(created, 'Asia/Kolkata') FROM t WHERE name = 'a'", json!(18)),
            ("SELECT MINUTE(ts, 'Asia/Kolkata') FROM t WHERE name = 'a'", json!(4)),
            // 2024-03-10T12:00Z is 08:00 EDT (-04:00); 2024-11-03T06:00Z is 01:00 EST (-05:00).
            ("SELECT HOUR(ts, 'America/New_York') FROM t WHERE name = 'c'", json!(8)),
            ("SELECT HOUR(ts, 'America/New_York') FROM t WHERE name = 'd'", json!(1)),
            ("SELECT DAYOFWEEK(ts, '-14:00') FROM t WHERE name = 'c'", json!(6)), // Sat 22:00
            // toEpoch*Rounded / *Bucket (DateTimeFunctions.java): 1706704496 s, 28445074 min,
            // 474084 h, 19753 d.
            ("SELECT toEpochSecondsRounded(ts, 10) FROM t WHERE name = 'a'", json!(1_706_704_490i64)),
            ("SELECT toEpochMinutesRounded(ts, 15) FROM t WHERE name = 'a'", json!(28_445_070)),
            ("SELECT toEpochHoursRounded(ts, 6) FROM t WHERE name = 'a'", json!(474_084)),
            ("SELECT toEpochDaysRounded(ts, 7) FROM t WHERE name = 'a'", json!(19_747)),
            ("SELECT toEpochSecondsBucket(ts, 10) FROM t WHERE name = 'a'", json!(170_670_449)),
            ("SELECT toEpochMinutesBucket(ts, 5) FROM t WHERE name = 'a'", json!(5_689_014)),
            ("SELECT toEpochHoursBucket(ts, 24) FROM t WHERE name = 'a'", json!(19_753)),
            ("SELECT toEpochDaysBucket(ts, 7) FROM t WHERE name = 'a'", json!(2_821)),
            ("SELECT fromEpochMinutesBucket(5689014, 5) FROM t WHERE name = 'a'", json!(1_706_704_200_000i64)),
            // DATETRUNC in a zone: Kolkata's day began 2024-01-30T18:30Z; New York's 10 March,
            // 23 hours long, at 05:00Z (hour 475013 since 1970).
            (
                "SELECT DATETRUNC('day', ts, 'MILLISECONDS', 'Asia/Kolkata') FROM t WHERE name = 'a'",
                json!(1_706_639_400_000i64),
            ),
            (
                "SELECT DATETRUNC('day', ts, 'MILLISECONDS', 'America/New_York', 'HOURS') FROM t WHERE name = 'c'",
                json!(475_013),
            ),
            ("SELECT DATETRUNC('hour', ts, 'MILLISECONDS', 'UTC', 'SECONDS') FROM t WHERE name = 'a'", json!(1_706_702_400)),
            ("SELECT DATETRUNC('week', ts, 'MILLISECONDS', '+05:30') FROM t WHERE name = 'a'", json!(1_706_466_600_000i64)),
            // TODATETIME / FROMDATETIME with zones (DateTimePatternHandler.java).
            ("SELECT TODATETIME(ts, 'yyyy-MM-dd HH:mm', 'Asia/Kolkata') FROM t WHERE name = 'a'", json!("2024-01-31 18:04")),
            (
                "SELECT TODATETIME(ts, 'yyyy-MM-dd HH:mm Z', 'America/New_York') FROM t WHERE name = 'c'",
                json!("2024-03-10 08:00 -0400"),
            ),
            (
                "SELECT FROMDATETIME('2024-01-31 18:04', 'yyyy-MM-dd HH:mm', 'Asia/Kolkata') FROM t WHERE name = 'a'",
                json!(1_706_704_440_000i64),
            ),
            // 02:30 on 10 March does not exist in New York: moved forward to 03:30 EDT, 07:30Z.
            (
                "SELECT FROMDATETIME('2024-03-10 02:30', 'yyyy-MM-dd HH:mm', 'America/New_York') FROM t WHERE name = 'a'",
                json!(1_710_055_800_000i64),
            ),
            ("SELECT FROMDATETIME('nope', 'yyyy-MM-dd', 'UTC', -1) FROM t WHERE name = 'a'", json!(-1)),
            // SIMPLE_DATE_FORMAT with zones, both spellings (DateTimeFormatSpec.java): 00:00Z on the
            // 31st is still the 30th in New York; 12:34Z is hour 18 in Kolkata.
            (
                "SELECT DATETIMECONVERT(1706659200000, '1:MILLISECONDS:EPOCH', '1:DAYS:SIMPLE_DATE_FORMAT:yyyy-MM-dd tz(America/New_York)', '1:DAYS') FROM t WHERE name = 'a'",
                json!("2024-01-30"),
            ),
            (
                "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', 'SIMPLE_DATE_FORMAT|yyyy-MM-dd HH|Asia/Kolkata', '1:HOURS') FROM t WHERE name = 'a'",
                json!("2024-01-31 18"),
            ),
            (
                "SELECT DATETIMECONVERT('2024-01-31 18', 'SIMPLE_DATE_FORMAT|yyyy-MM-dd HH|Asia/Kolkata', '1:MILLISECONDS:EPOCH', '1:MILLISECONDS') FROM t WHERE name = 'a'",
                json!(1_706_704_200_000i64),
            ),
        ],
    )
    .await;
    assert_eq!(refused(&e, "SELECT HOUR(ts, 'Mars/Olympus') FROM t", "unknown time zone").await, 200);
}

#[tokio::test]
async fn pinot_substr_is_zero_based() {
    let e = engine();
    check(
        &e,
        &[
            // StringFunctions.substr: 0-based begin, exclusive end; -1 means to the end.
            // DataFusion's own substr would give "pin".
            ("SELECT SUBSTR('pinot', 1, 3) FROM t WHERE name = 'a'", json!("in")),
            ("SELECT substr('pinot', 2) FROM t WHERE name = 'a'", json!("not")),
            ("SELECT SUBSTR('pinot', 1, -1) FROM t WHERE name = 'a'", json!("inot")),
            ("SELECT SUBSTR('pinot', -3, 5) FROM t WHERE name = 'a'", json!("not")),
            ("SELECT SUBSTR(name, 0, 1) FROM t WHERE v = 3", json!("d")),
            // StringFunctions.substring: 1-based, with a length.
            ("SELECT SUBSTRING('pinot', 2, 3) FROM t WHERE name = 'a'", json!("ino")),
            ("SELECT SUBSTRING('pinot' FROM 2 FOR 3) FROM t WHERE name = 'a'", json!("ino")),
            // REGEXP_EXTRACT (RegexpExtractTransformFunction.java): group 0 by default, "" or the
            // default when nothing matches.
            ("SELECT REGEXP_EXTRACT('foo123bar', '[0-9]+') FROM t WHERE name = 'a'", json!("123")),
            (
                "SELECT REGEXP_EXTRACT('foo123bar', '([a-z]+)([0-9]+)', 2) FROM t WHERE name = 'a'",
                json!("123"),
            ),
            ("SELECT REGEXP_EXTRACT('foo', '[0-9]+') FROM t WHERE name = 'a'", json!("")),
            ("SELECT REGEXP_EXTRACT('foo', '[0-9]+', 0, 'none') FROM t WHERE name = 'a'", json!("none")),
        ],
    )
    .await;
}

#[tokio::test]
async fn json_functions_and_json_match() {
    let e = engine();
    check(
        &e,
        &[
            ("SELECT jsonPathString(doc, '$.name') FROM t WHERE name = 'a'", json!("adam")),
            ("SELECT jsonPathString(doc, '$.missing', 'none') FROM t WHERE name = 'a'", json!("none")),
            ("SELECT jsonPathString(doc, '$.addresses[*].country') FROM t WHERE name = 'a'", json!("[\"us\",\"ca\"]")),
            ("SELECT jsonPathLong(doc, '$.age') FROM t WHERE name = 'a'", json!(30)),
            // Long.MIN_VALUE when missing and no default; the default when not a number.
            ("SELECT jsonPathLong(doc, '$.missing') FROM t WHERE name = 'a'", json!(i64::MIN)),
            ("SELECT jsonPathLong(doc, '$.name', 7) FROM t WHERE name = 'a'", json!(7)),
            ("SELECT jsonPathDouble(doc, '$.addresses[1].number') FROM t WHERE name = 'a'", json!(2.0)),
            ("SELECT jsonPathDouble(doc, '$.missing', 1.5) FROM t WHERE name = 'a'", json!(1.5)),
            // JsonFunctions.java's examples: '$.*' lists the top keys, '$..**' every key.
            ("SELECT jsonExtractKey(doc, '$.*') FROM t WHERE name = 'd'", json!(["$['x']"])),
            ("SELECT jsonExtractKey(doc, '$..**') FROM t WHERE name = 'd'", json!(["$['x']", "$['x']['y']"])),
            ("SELECT jsonExtractKey(doc, '$..**', 'maxDepth=1;dotNotation=true') FROM t WHERE name = 'd'", json!(["x"])),
            // JSON_MATCH's predicates as Pinot's docs write them.
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.name\" = ''adam''')", json!(1)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.addresses[*].country\" = ''us''')", json!(2)),
            // Both conditions on one array element: a's "ca" address has number 2.
            (
                "SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.addresses[*].country\" = ''ca'' AND \"$.addresses[*].number\" = 1')",
                json!(0),
            ),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.addresses[0].number\" = 3')", json!(1)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.age\" > 18')", json!(1)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.name\" IN (''bob'', ''carl'')')", json!(2)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.phone\" IS NULL')", json!(3)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, 'REGEXP_LIKE(\"$.name\", ''a.*'')')", json!(1)),
            ("SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, '\"$.x.y\" BETWEEN 3 AND 5')", json!(1)),
        ],
    )
    .await;
    refused(
        &e,
        "SELECT COUNT(*) FROM t WHERE JSON_MATCH(doc, 'NOT \"$.age\" = 1')",
        "JSON_MATCH does not support",
    )
    .await;
}

#[tokio::test]
async fn mode_sumprecision_and_distinctcounthll_with_log2m() {
    let e = engine();
    check(
        &e,
        &[
            // v: 1, 2, 2, 3 → 2 twice. nums' rows as numbers are lists: MODE is over v and d.
            ("SELECT MODE(v) FROM t", json!(2.0)),
            // d: 0.1, 0.2, 0.3, 0.4 all once: MIN (the default) 0.1, MAX 0.4.
            ("SELECT MODE(d) FROM t", json!(0.1)),
            ("SELECT MODE(d, 'MAX') FROM t", json!(0.4)),
            // v of a and d: 1 and 3 once each: MIN 1, MAX 3, AVG 2.
            ("SELECT MODE(v) FROM t WHERE name IN ('a', 'd')", json!(1.0)),
            ("SELECT MODE(v, 'MAX') FROM t WHERE name IN ('a', 'd')", json!(3.0)),
            ("SELECT MODE(v, 'AVG') FROM t WHERE name IN ('a', 'd')", json!(2.0)),
            ("SELECT MODE(v) FROM t WHERE name = 'nobody'", json!("-Infinity")),
            // Exact decimals: 1 + 2 + 2 + 3 = 8; 0.1 + 0.2 + 0.3 + 0.4 = 1.0 (not 1.0000000000000002).
            ("SELECT SUMPRECISION(v) FROM t", json!("8")),
            ("SELECT SUMPRECISION(d) FROM t", json!("1.0")),
            // 0.1 + 0.2 = 0.3; precision 1 of 0.3 is 0.3, with scale 3 → 0.300.
            ("SELECT SUMPRECISION(d, 1, 3) FROM t WHERE name IN ('a', 'b')", json!("0.300")),
            // 1 + 2 + 2 + 3 = 8 at precision 1 stays 8; 8 with scale 2 → 8.00.
            ("SELECT SUMPRECISION(v, 1, 2) FROM t", json!("8.00")),
            ("SELECT SUMPRECISION(v) FROM t WHERE name = 'nobody'", json!("0")),
            // Names a, b, c, d and v's 1, 2, 3: linear counting on 2^log2m registers gives
            // m ln(m / (m - n)), 256 ln(256/252) = 4.03 → 4, 1024 ln(1024/1020) = 4.01 → 4.
            ("SELECT DISTINCTCOUNTHLL(name) FROM t", json!(4)),
            ("SELECT DISTINCTCOUNTHLL(name, 10) FROM t", json!(4)),
            ("SELECT DISTINCTCOUNTHLL(v, 12) FROM t", json!(3)),
        ],
    )
    .await;
    // Pinot's types and names: MODE DOUBLE, SUMPRECISION STRING, DISTINCTCOUNTHLL LONG.
    let r = shoal_server::broker::answer_query(
        &e,
        "SELECT MODE(v), SUMPRECISION(v), DISTINCTCOUNTHLL(v, 12) FROM t",
    )
    .await;
    let schema = r.result_table.unwrap().data_schema;
    assert_eq!(schema.column_names, ["mode(v)", "sumprecision(v)", "distinctcounthll(v)"]);
    assert_eq!(schema.column_data_types, ["DOUBLE", "STRING", "LONG"]);
    // Arguments Shoal cannot honour are errors, never ignored.
    refused(&e, "SELECT DISTINCTCOUNTHLL(v, 40) FROM t", "between 1 and 20").await;
    refused(&e, "SELECT DISTINCTCOUNTHLL(v, v) FROM t", "must be a literal").await;
    refused(&e, "SELECT DISTINCTCOUNTHLLPLUS(v, 12) FROM t", "one argument").await;
    refused(&e, "SELECT MODE(v, 'MEDIAN') FROM t", "MIN, MAX or AVG").await;
}

#[tokio::test]
async fn hll_estimates_follow_log2m() {
    // 5,000 distinct values: HyperLogLog's standard error is 1.04 / sqrt(2^log2m), 6.5% at
    // log2m 8 and 1.6% at 12; each estimate must be within three of those.
    let rows: Vec<String> = (0..5_000)
        .map(|i| json!({"name": format!("n{i}"), "v": i, "ts": 1_706_704_496_789i64 + i}).to_string())
        .collect();
    let e = common::table_of("t", schema(), "ts", &rows);
    for (log2m, error) in [(8, 0.065), (12, 0.0163)] {
        let got = one(&e, &format!("SELECT DISTINCTCOUNTHLL(name, {log2m}) FROM t")).await.as_i64().unwrap();
        let off = (got - 5_000).abs() as f64 / 5_000.0;
        assert!(off < 3.0 * error, "log2m {log2m}: {got}");
    }
}
