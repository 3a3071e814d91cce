//! The real `pinotdb` client (PyPI, pinned in tests/clients/requirements.txt, installed by
//! scripts/test.sh) against the server: a count, a group-by and string filters through
//! `pinotdb.connect(...)`, with the auth token as an extra header, with `preserve_types=True`
//! (an OPTION clause on every query) and `use_multistage_engine=True` (`queryOptions` in the
//! body), give the values computed here from the rows written. And, logged in with Basic
//! credentials (pinotdb's `username`/`password`; a wrong password is refused), Pinot's
//! functions (time in zones, SUBSTR, JSON, multi-value, MODE, SUMPRECISION, DISTINCTCOUNTHLL)
//! through `tests/clients/pinotdb_functions.py` give the values worked out by hand from a few
//! fixed rows.

mod common;
mod server;

use common::*;
use serde_json::{Value, json};
use server::*;
use shoal_stream::emulator::Emulator;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "pinotdb-token";
const ROWS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinotdb_queries_give_the_rows_written() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("clicks", 2).await.unwrap();
    let t = now_ms();
    for i in 0..ROWS {
        emulator.put("clicks", &format!("k{i}"), record(i, t).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let table = table_config("clicks", "clicks", &emulator.endpoint(), 100_000);
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table, &schema("clicks"), &["--auth-token", TOKEN]);
        let started = Instant::now();
        while count(&server, Some(TOKEN), "clicks") != ROWS as i64 {
            assert!(started.elapsed() < Duration::from_secs(60), "{ROWS} rows within a minute");
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = Command::new("python3")
            .arg("tests/clients/pinotdb_check.py")
            .args(["127.0.0.1", &server.port.to_string(), TOKEN, "clicks"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("python3 is needed (scripts/test.sh checks for it)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "pinotdb_check.py: {}\n{stdout}\n{stderr}", out.status);
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
    })
    .await
    .unwrap();

    // The version the requirements file pins is the one that ran.
    let pinned = include_str!("clients/requirements.txt")
        .lines()
        .find_map(|l| l.trim().strip_prefix("pinotdb=="))
        .expect("pinotdb==VERSION in tests/clients/requirements.txt");
    assert_eq!(out["version"], pinned, "{out}");

    // Expected values from the rows written: id i, key "key-{i % 37}".
    let rows: Vec<(usize, String)> = (0..ROWS).map(|i| (i, format!("key-{}", i % 37))).collect();
    let mut groups: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for (id, key) in &rows {
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += *id as f64;
    }
    assert_eq!(out["count"], json!({"columns": ["n"], "rows": [[ROWS]]}));
    assert_eq!(out["group_by"]["columns"], json!(["key", "n", "total"]));
    let got: Vec<(String, u64, f64)> = out["group_by"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap(), r[2].as_f64().unwrap()))
        .collect();
    let expected: Vec<(String, u64, f64)> =
        groups.iter().map(|(k, (n, s))| (k.to_string(), *n, *s)).collect();
    assert_eq!(got, expected, "{out}");
    let five: Vec<usize> = rows.iter().filter(|(_, k)| k == "key-5").map(|(i, _)| *i).collect();
    let lo_hi = &out["equals"]["rows"][0];
    assert_eq!(out["equals"]["columns"], json!(["n", "lo", "hi"]));
    assert_eq!(lo_hi[0].as_u64(), Some(five.len() as u64), "{out}");
    assert_eq!(lo_hi[1].as_f64(), Some(five[0] as f64), "{out}");
    assert_eq!(lo_hi[2].as_f64(), five.last().map(|&i| i as f64), "{out}");
    let like = rows.iter().filter(|(_, k)| k.starts_with("key-1")).count();
    assert_eq!(out["like"], json!({"columns": ["n"], "rows": [[like]]}));
    assert_eq!(out["unknown_table"], "DatabaseError", "{out}");
    // Pinot's default limit (pinot.broker.default.query.limit, 10) for a selection without one.
    assert_eq!(out["no_limit"], 10, "{out}");
    // preserve_types=True and use_multistage_engine=True: their OPTION(...) and queryOptions
    // are read. SUM is DOUBLE (pinot-core SumAggregationFunction.java): ids 0..199 sum to 19,900.
    assert_eq!(out["preserve_types"]["columns"], json!(["n", "total"]), "{out}");
    assert_eq!(out["preserve_types"]["rows"][0][0], ROWS, "{out}");
    assert_eq!(out["preserve_types"]["rows"][0][1].as_f64(), Some(19_900.0), "{out}");
    // COUNT is named count(*) (pinot-core CountAggregationFunction.java); key-0 has ids 0, 37,
    // ..., 185 (6 rows), key-1 ids 1, ..., 186 (6 rows).
    assert_eq!(
        out["preserve_types_group_by"],
        json!({"columns": ["key", "count(*)"], "rows": [["key-0", 6], ["key-1", 6]]}),
        "{out}"
    );
    assert_eq!(out["multistage"], json!({"columns": ["n"], "rows": [[ROWS]]}), "{out}");
}

const FN_TABLE: &str = "pinotfns";
const FN_USER: &str = "analyst";
const FN_PASSWORD: &str = "fns-pass-2024";

/// Seven rows, one per city (the key the queries pick a row by), written as text so that the
/// JSON documents keep their keys in this order (as Pinot's JSON column does). `ts` is epoch
/// ms; 2024-01-01T00:00Z is day 19,723 since 1970 (1,704,067,200 s), so a day-of-year `n` at
/// `hh:mm:ss` is ((19,723 + n - 1) × 86,400 + hh × 3,600 + mm × 60 + ss) × 1,000 ms:
/// - paris  2024-01-31T12:34:56.789Z, a Wednesday, day 31:   (19,753 × 86,400 + 45,296) s + 789 ms
/// - berlin 2024-02-29T00:00:00Z, a Thursday, day 60:        19,782 × 86,400 s
/// - quito  2024-03-10T12:00:00Z, a Sunday, day 70 (New York's first day of daylight saving
///   time, 23 hours long): 19,792 × 86,400 + 43,200 s
/// - tokyo  2024-06-15T23:59:59Z, a Saturday, day 167:       19,889 × 86,400 + 86,399 s
/// - cairo  2024-11-03T06:00:00Z, a Sunday, day 308 (New York's last day of daylight saving
///   time: 06:00Z is 01:00 EST, just after the clocks went back): 20,030 × 86,400 + 21,600 s
/// - lima   2024-12-31T23:30:00Z, a Tuesday, day 366 (2024 is a leap year): 20,088 × 86,400 + 84,600 s
/// - oslo   2024-07-04T08:15:30Z, a Thursday, day 186:       19,908 × 86,400 + 29,730 s
const FN_ROWS: [&str; 7] = [
    r#"{"city": "paris", "qty": 3, "price": 2.5, "tags": ["red", "blue"], "sizes": [1, 2, 3], "doc": {"user": {"name": "ann", "age": 31}, "items": [{"sku": "a1", "n": 2}, {"sku": "b2", "n": 1}], "vip": true}, "ts": 1706704496789}"#,
    r#"{"city": "berlin", "qty": 5, "price": 0.1, "tags": ["blue"], "sizes": [5], "doc": {"user": {"name": "bob", "age": 17}, "items": [{"sku": "a1", "n": 4}]}, "ts": 1709164800000}"#,
    r#"{"city": "quito", "qty": 3, "price": 0.2, "tags": ["green", "red", "red"], "sizes": [2, 2], "doc": {"user": {"name": "cy", "age": 45}, "score": 7.5}, "ts": 1710072000000}"#,
    r#"{"city": "tokyo", "qty": 7, "price": 10.25, "tags": ["red"], "sizes": [7, 1], "doc": {"user": {"name": "dee", "age": 28}, "items": [{"sku": "c3", "n": 1}], "score": 9.25}, "ts": 1718495999000}"#,
    r#"{"city": "cairo", "qty": 5, "price": 0.3, "tags": ["yellow"], "sizes": [4], "doc": {"user": {"name": "eve", "age": 52}}, "ts": 1730613600000}"#,
    r#"{"city": "lima", "qty": 1, "price": 1.05, "tags": ["blue", "green"], "sizes": [3, 3, 9], "doc": {"user": {"name": "fay", "age": 19}, "items": []}, "ts": 1735687800000}"#,
    r#"{"city": "oslo", "qty": 9, "price": 4.0, "tags": ["white"], "sizes": [10], "doc": {"user": {"name": "gus", "age": 64}, "items": [{"sku": "b2", "n": 3}]}, "ts": 1720080930000}"#,
];

fn functions_schema() -> Value {
    json!({
        "schemaName": FN_TABLE,
        "dimensionFieldSpecs": [
            {"name": "city", "dataType": "STRING"},
            {"name": "tags", "dataType": "STRING", "singleValueField": false},
            {"name": "sizes", "dataType": "INT", "singleValueField": false},
            {"name": "doc", "dataType": "JSON"}
        ],
        "metricFieldSpecs": [{"name": "qty", "dataType": "INT"}, {"name": "price", "dataType": "DOUBLE"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

/// Each query (one row, one column), the type Pinot's dataSchema gives that column, and the
/// value Pinot's semantics give on `FN_ROWS`, worked out by hand in the comment beside it.
fn function_cases() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        // Date parts (pinot-common DateTimeFunctions.java: Joda's ISO fields of
        // `new DateTime(millis, zone)`; weeks are ISO weeks, days of the week Monday 1..Sunday 7).
        ("year", "SELECT YEAR(ts) FROM pinotfns WHERE city = 'lima'", "INT", json!(2024)),
        // 23:30Z on 31 December is 08:30 on 1 January 2025 in Tokyo (+09:00).
        ("year_tokyo", "SELECT YEAR(ts, 'Asia/Tokyo') FROM pinotfns WHERE city = 'lima'", "INT", json!(2025)),
        ("quarter", "SELECT QUARTER(ts) FROM pinotfns WHERE city = 'tokyo'", "INT", json!(2)), // June
        (
            "quarter_tokyo",
            "SELECT QUARTER(ts, 'Asia/Tokyo') FROM pinotfns WHERE city = 'lima'",
            "INT",
            json!(1),
        ),
        ("month", "SELECT MONTH(ts) FROM pinotfns WHERE city = 'berlin'", "INT", json!(2)),
        ("week", "SELECT WEEK(ts) FROM pinotfns WHERE city = 'tokyo'", "INT", json!(24)),
        // Tuesday 31 December 2024 is in ISO week 1 of 2025 (Monday 30 December to Sunday
        // 5 January, which holds Thursday 2 January).
        ("week_of_new_year", "SELECT WEEK(ts) FROM pinotfns WHERE city = 'lima'", "INT", json!(1)),
        ("dayofweek", "SELECT DAYOFWEEK(ts) FROM pinotfns WHERE city = 'tokyo'", "INT", json!(6)), // Saturday
        // 23:59:59Z on Saturday is 08:59:59 on Sunday in Tokyo.
        (
            "dayofweek_tokyo",
            "SELECT DAYOFWEEK(ts, 'Asia/Tokyo') FROM pinotfns WHERE city = 'tokyo'",
            "INT",
            json!(7),
        ),
        ("dayofyear", "SELECT DAYOFYEAR(ts) FROM pinotfns WHERE city = 'lima'", "INT", json!(366)), // 2024 is leap
        // 00:00Z on 29 February is 19:00 on the 28th in Lima (-05:00): day 31 + 28 = 59.
        (
            "dayofyear_lima",
            "SELECT DAYOFYEAR(ts, 'America/Lima') FROM pinotfns WHERE city = 'berlin'",
            "INT",
            json!(59),
        ),
        ("hour", "SELECT HOUR(ts) FROM pinotfns WHERE city = 'tokyo'", "INT", json!(23)),
        ("hour_tokyo", "SELECT HOUR(ts, 'Asia/Tokyo') FROM pinotfns WHERE city = 'tokyo'", "INT", json!(8)), // 23 + 9 - 24
        ("minute", "SELECT MINUTE(ts) FROM pinotfns WHERE city = 'oslo'", "INT", json!(15)),
        // 08:15:30Z + 05:30 = 13:45:30 in Kolkata.
        (
            "minute_kolkata",
            "SELECT MINUTE(ts, 'Asia/Kolkata') FROM pinotfns WHERE city = 'oslo'",
            "INT",
            json!(45),
        ),
        ("second", "SELECT SECOND(ts) FROM pinotfns WHERE city = 'oslo'", "INT", json!(30)),
        // toEpoch*Rounded(millis, n) = toEpoch*(millis) / n × n and toEpoch*Bucket(millis, n) =
        // toEpoch*(millis) / n, Java's long division (DateTimeFunctions.java). oslo's ts is
        // 1,720,080,930 s = 28,668,015 min (+ 30 s) = 477,800 h (+ 930 s) = 19,908 days.
        (
            "to_epoch_seconds",
            "SELECT toEpochSeconds(ts) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(1_720_080_930i64),
        ),
        // 1,720,080,930 / 60 = 28,668,015 (rest 30); × 60 = 1,720,080,900.
        (
            "seconds_rounded",
            "SELECT toEpochSecondsRounded(ts, 60) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(1_720_080_900i64),
        ),
        // 28,668,015 / 10 = 2,866,801; × 10 = 28,668,010.
        (
            "minutes_rounded",
            "SELECT toEpochMinutesRounded(ts, 10) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(28_668_010),
        ),
        // 19,908 / 30 = 663 (rest 18); × 30 = 19,890.
        (
            "days_rounded",
            "SELECT toEpochDaysRounded(ts, 30) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(19_890),
        ),
        // 28,668,015 / 30 = 955,600 (rest 15).
        (
            "minutes_bucket",
            "SELECT toEpochMinutesBucket(ts, 30) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(955_600),
        ),
        // 477,800 / 6 = 79,633 (rest 2).
        (
            "hours_bucket",
            "SELECT toEpochHoursBucket(ts, 6) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(79_633),
        ),
        // 19,908 / 7 = 2,844 (no rest).
        (
            "days_bucket",
            "SELECT toEpochDaysBucket(ts, 7) FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(2_844),
        ),
        // DATETRUNC(unit, value, inputUnit, zone, outputUnit) (pinot-core
        // DateTruncTransformFunction.java): floored in the zone's calendar, given in the output
        // unit. quito's 12:00Z is 08:00 EDT; that day began at 00:00 EST (-05:00) = 05:00Z:
        // 1,710,028,800 + 18,000 s.
        (
            "datetrunc_day_new_york",
            "SELECT DATETRUNC('day', ts, 'MILLISECONDS', 'America/New_York', 'SECONDS') FROM pinotfns WHERE city = 'quito'",
            "LONG",
            json!(1_710_046_800i64),
        ),
        // lima's ts is 2025-01-01T08:30 in Tokyo; that month began 2025-01-01T00:00+09:00 =
        // 2024-12-31T15:00Z: 20,088 × 24 + 15 hours.
        (
            "datetrunc_month_tokyo",
            "SELECT DATETRUNC('month', ts, 'MILLISECONDS', 'Asia/Tokyo', 'HOURS') FROM pinotfns WHERE city = 'lima'",
            "LONG",
            json!(482_127),
        ),
        // oslo's 13:45:30 in Kolkata: the hour began 13:00 IST = 07:30Z: 19,908 × 1,440 + 450 min.
        (
            "datetrunc_hour_kolkata",
            "SELECT DATETRUNC('hour', ts, 'MILLISECONDS', 'Asia/Kolkata', 'MINUTES') FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(28_667_970),
        ),
        // Thursday 4 July: its week began on Monday 1 July, day 19,908 - 3.
        (
            "datetrunc_week_utc",
            "SELECT DATETRUNC('week', ts, 'MILLISECONDS', 'UTC', 'DAYS') FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(19_905),
        ),
        // TODATETIME / FROMDATETIME with a zone (DateTimeFunctions.java, DateTimePatternHandler.java).
        (
            "todatetime_tokyo",
            "SELECT TODATETIME(ts, 'yyyy-MM-dd HH:mm:ss', 'Asia/Tokyo') FROM pinotfns WHERE city = 'lima'",
            "STRING",
            json!("2025-01-01 08:30:00"),
        ),
        (
            "todatetime_new_york",
            "SELECT TODATETIME(ts, 'yyyy-MM-dd HH:mm', 'America/New_York') FROM pinotfns WHERE city = 'cairo'",
            "STRING",
            json!("2024-11-03 01:00"),
        ),
        // 08:30 in Tokyo is 23:30Z the day before: lima's ts.
        (
            "fromdatetime_tokyo",
            "SELECT FROMDATETIME('2025-01-01 08:30:00', 'yyyy-MM-dd HH:mm:ss', 'Asia/Tokyo') FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(1_735_687_800_000i64),
        ),
        // 10:15:30 CEST (+02:00) is 08:15:30Z: oslo's ts.
        (
            "fromdatetime_oslo",
            "SELECT FROMDATETIME('2024-07-04 10:15:30', 'yyyy-MM-dd HH:mm:ss', 'Europe/Oslo') FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(1_720_080_930_000i64),
        ),
        // SIMPLE_DATE_FORMAT with zones, both spellings (pinot-spi DateTimeFormatSpec.java), in
        // DATETIMECONVERT (pinot-core BaseDateTimeTransformer.java: the wall clock of the output
        // zone, truncated to the granularity). lima's ts is 1 January 2025 in Tokyo.
        (
            "sdf_days_tokyo",
            "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', '1:DAYS:SIMPLE_DATE_FORMAT:yyyy-MM-dd tz(Asia/Tokyo)', '1:DAYS') FROM pinotfns WHERE city = 'lima'",
            "STRING",
            json!("2025-01-01"),
        ),
        // paris's 12:34:56.789Z is 07:34:56.789 EST (-05:00): its hour is 07:00.
        (
            "sdf_hours_new_york",
            "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', 'SIMPLE_DATE_FORMAT|yyyy-MM-dd HH:mm|America/New_York', '1:HOURS') FROM pinotfns WHERE city = 'paris'",
            "STRING",
            json!("2024-01-31 07:00"),
        ),
        // 10:15 CEST is 08:15:00Z: oslo's ts less its 30 seconds.
        (
            "sdf_to_epoch_oslo",
            "SELECT DATETIMECONVERT('2024-07-04 10:15', 'SIMPLE_DATE_FORMAT|yyyy-MM-dd HH:mm|Europe/Oslo', '1:MILLISECONDS:EPOCH', '1:MILLISECONDS') FROM pinotfns WHERE city = 'oslo'",
            "LONG",
            json!(1_720_080_900_000i64),
        ),
        // SUBSTR (pinot-common StringFunctions.java): 0-based begin, exclusive end: "berlin"
        // [1, 4) = "erl" (DataFusion's 1-based substr would give "berl").
        ("substr", "SELECT SUBSTR(city, 1, 4) FROM pinotfns WHERE city = 'berlin'", "STRING", json!("erl")),
        (
            "substr_to_end",
            "SELECT SUBSTR(city, 2) FROM pinotfns WHERE city = 'tokyo'",
            "STRING",
            json!("kyo"),
        ),
        // REGEXP_EXTRACT (RegexpExtractTransformFunction.java): group 2 of the first match,
        // "berl" + "i" + "n"; the default when nothing matches.
        (
            "regexp_extract",
            "SELECT REGEXP_EXTRACT(city, '([a-z]+)i([a-z]+)', 2) FROM pinotfns WHERE city = 'berlin'",
            "STRING",
            json!("n"),
        ),
        (
            "regexp_extract_default",
            "SELECT REGEXP_EXTRACT(city, '[0-9]+', 0, 'none') FROM pinotfns WHERE city = 'oslo'",
            "STRING",
            json!("none"),
        ),
        // JSON (pinot-common JsonFunctions.java): jsonExtractKey lists the keys' paths as
        // Jayway's AS_PATH_LIST writes them, in the document's order.
        (
            "json_extract_key",
            "SELECT jsonExtractKey(doc, '$.*') FROM pinotfns WHERE city = 'paris'",
            "STRING_ARRAY",
            json!(["$['user']", "$['items']", "$['vip']"]),
        ),
        (
            "json_path_string",
            "SELECT jsonPathString(doc, '$.user.name') FROM pinotfns WHERE city = 'tokyo'",
            "STRING",
            json!("dee"),
        ),
        (
            "json_path_string_index",
            "SELECT jsonPathString(doc, '$.items[1].sku') FROM pinotfns WHERE city = 'paris'",
            "STRING",
            json!("b2"),
        ),
        (
            "json_path_long",
            "SELECT jsonPathLong(doc, '$.user.age') FROM pinotfns WHERE city = 'cairo'",
            "LONG",
            json!(52),
        ),
        // cairo has no items: the default.
        (
            "json_path_long_default",
            "SELECT jsonPathLong(doc, '$.items[0].n', -1) FROM pinotfns WHERE city = 'cairo'",
            "LONG",
            json!(-1),
        ),
        (
            "json_path_double",
            "SELECT jsonPathDouble(doc, '$.score') FROM pinotfns WHERE city = 'tokyo'",
            "DOUBLE",
            json!(9.25),
        ),
        // JSON_MATCH in WHERE (pinot-core JsonMatchFilterOperator): ages 31, 45, 52, 64 > 30
        // (17, 28, 19 are not).
        (
            "json_match_age",
            r#"SELECT COUNT(*) FROM pinotfns WHERE JSON_MATCH(doc, '"$.user.age" > 30')"#,
            "LONG",
            json!(4),
        ),
        // sku a1: paris and berlin.
        (
            "json_match_array",
            r#"SELECT COUNT(*) FROM pinotfns WHERE JSON_MATCH(doc, '"$.items[*].sku" = ''a1''')"#,
            "LONG",
            json!(2),
        ),
        // Multi-value columns. tags: [red, blue], [blue], [green, red, red], [red], [yellow],
        // [blue, green], [white]; sizes: [1, 2, 3], [5], [2, 2], [7, 1], [4], [3, 3, 9], [10].
        ("array_length", "SELECT arrayLength(tags) FROM pinotfns WHERE city = 'quito'", "INT", json!(3)),
        ("array_length_int", "SELECT arrayLength(sizes) FROM pinotfns WHERE city = 'lima'", "INT", json!(3)),
        // VALUEIN keeps the row's values among the literals, in order, repeats too.
        (
            "valuein",
            "SELECT VALUEIN(tags, 'red', 'white') FROM pinotfns WHERE city = 'quito'",
            "STRING_ARRAY",
            json!(["red", "red"]),
        ),
        // 2 + 1 + 3 + 1 + 1 + 2 + 1 values.
        ("countmv", "SELECT COUNTMV(tags) FROM pinotfns", "LONG", json!(11)),
        // 6 + 5 + 4 + 8 + 4 + 15 + 10.
        ("summv", "SELECT SUMMV(sizes) FROM pinotfns", "DOUBLE", json!(52.0)),
        ("minmv", "SELECT MINMV(sizes) FROM pinotfns", "DOUBLE", json!(1.0)),
        ("maxmv", "SELECT MAXMV(sizes) FROM pinotfns", "DOUBLE", json!(10.0)),
        // 52 / (3 + 1 + 2 + 2 + 1 + 3 + 1) = 52 / 13.
        ("avgmv", "SELECT AVGMV(sizes) FROM pinotfns", "DOUBLE", json!(4.0)),
        // red, blue, green, yellow, white.
        ("distinctcountmv", "SELECT DISTINCTCOUNTMV(tags) FROM pinotfns", "INT", json!(5)),
        // A filter on a multi-value column matches a row when one of its values does:
        // paris, quito, tokyo hold red.
        ("mv_equals", "SELECT COUNT(*) FROM pinotfns WHERE tags = 'red'", "LONG", json!(3)),
        // paris [1, 2, 3] and lima [3, 3, 9] hold 3.
        ("mv_int_equals", "SELECT COUNT(*) FROM pinotfns WHERE sizes = 3", "LONG", json!(2)),
        // green: quito (2 + 2) and lima (3 + 3 + 9).
        ("summv_where_mv", "SELECT SUMMV(sizes) FROM pinotfns WHERE tags = 'green'", "DOUBLE", json!(19.0)),
        // MODE (pinot-core ModeAggregationFunction.java, DOUBLE, reducer MIN by default):
        // qty 3, 5, 3, 7, 5, 1, 9: 3 and 5 twice each, the smallest is 3.
        ("mode", "SELECT MODE(qty) FROM pinotfns", "DOUBLE", json!(3.0)),
        // Every price once: the smallest, 0.1.
        ("mode_all_ties", "SELECT MODE(price) FROM pinotfns", "DOUBLE", json!(0.1)),
        // SUMPRECISION (SumPrecisionAggregationFunction.java: a BigDecimal sum, its final
        // column type STRING; DOUBLE values are read as Double.toString text): 2.5 + 0.1 + 0.2
        // + 10.25 + 0.3 + 1.05 + 4.0 = 18.40, scale 2 (the largest of the addends'), where a
        // double sum would not be exact.
        ("sumprecision", "SELECT SUMPRECISION(price) FROM pinotfns", "STRING", json!("18.40")),
        // INT values as BigDecimal.valueOf(int), scale 0: 3 + 5 + 3 + 7 + 5 + 1 + 9.
        ("sumprecision_int", "SELECT SUMPRECISION(qty) FROM pinotfns", "STRING", json!("33")),
        // DISTINCTCOUNTHLL(x, log2m) (DistinctCountHLLAggregationFunction.java, LONG): on a
        // handful of values HyperLogLog's small-range (linear counting) estimate is the count:
        // qty's distinct values 1, 3, 5, 7, 9; seven cities.
        ("distinctcounthll_8", "SELECT DISTINCTCOUNTHLL(qty, 8) FROM pinotfns", "LONG", json!(5)),
        ("distinctcounthll_12", "SELECT DISTINCTCOUNTHLL(qty, 12) FROM pinotfns", "LONG", json!(5)),
        ("distinctcounthll_city", "SELECT DISTINCTCOUNTHLL(city, 12) FROM pinotfns", "LONG", json!(7)),
    ]
}

/// `count(*)` of the functions table, asked with Basic credentials.
fn basic_count(server: &Server) -> i64 {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{FN_USER}:{FN_PASSWORD}"));
    let body = json!({"sql": format!("SELECT count(*) FROM {FN_TABLE}")}).to_string();
    let raw = format!(
        "POST /query/sql HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.port,
        body.len()
    );
    let (status, _, text) = raw_request(server.port, raw.as_bytes()).unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["resultTable"]["rows"][0][0].as_i64())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinotdb_runs_pinots_functions_with_hand_computed_answers() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream(FN_TABLE, 2).await.unwrap();
    for row in FN_ROWS {
        let city = serde_json::from_str::<Value>(row).unwrap()["city"].as_str().unwrap().to_string();
        emulator.put(FN_TABLE, &city, row.as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let table = table_config(FN_TABLE, FN_TABLE, &emulator.endpoint(), 100_000);
    let cases = function_cases();
    let queries = json!(cases.iter().map(|(name, sql, _, _)| [name, sql]).collect::<Vec<_>>()).to_string();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let credentials = format!("{FN_USER}:{FN_PASSWORD}");
        let server = Server::start(&path, &table, &functions_schema(), &["--basic-auth", &credentials]);
        let started = Instant::now();
        while basic_count(&server) != FN_ROWS.len() as i64 {
            assert!(started.elapsed() < Duration::from_secs(60), "{} rows within a minute", FN_ROWS.len());
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut child = Command::new("python3")
            .arg("tests/clients/pinotdb_functions.py")
            .args(["127.0.0.1", &server.port.to_string(), FN_USER, FN_PASSWORD])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is needed (scripts/test.sh checks for it)");
        child.stdin.take().unwrap().write_all(queries.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "pinotdb_functions.py: {}\n{stdout}\n{stderr}", out.status);
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
    })
    .await
    .unwrap();

    // Basic credentials as pinotdb's username/password send them: a wrong password, or none,
    // is refused with an HTTP error status (401, or 403 as Pinot's broker denies access), which
    // pinotdb 9.2.2 raises as DatabaseError (its check of numServersResponded comes first).
    for refused in ["wrong_password", "no_credentials"] {
        assert_eq!(out[refused]["error"], "DatabaseError", "{refused}: {out}");
        let status = out[refused]["status"].as_u64();
        assert!(matches!(status, Some(401 | 403)), "{refused}: {out}");
    }

    // Every answer, then every difference at once.
    let mut differences = Vec::new();
    for (name, sql, pinot_type, want) in &cases {
        let answer = &out["answers"][name];
        if let Some(error) = answer.get("error") {
            differences.push(format!("{name}: {sql}\n    want {want} ({pinot_type}), got an error: {error}"));
            continue;
        }
        let rows = answer["rows"].as_array().cloned().unwrap_or_default();
        let got = match rows.as_slice() {
            [row] if row.as_array().is_some_and(|r| r.len() == 1) => row[0].clone(),
            _ => {
                differences.push(format!("{name}: {sql}\n    want one row of one column, got {answer}"));
                continue;
            }
        };
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => got == *want,
        };
        if !same {
            differences.push(format!(
                "{name}: {sql}\n    want {want}, got {got} (as sent: {})",
                answer["wire"][0][0]
            ));
        }
        if answer["types"][0] != *pinot_type {
            differences
                .push(format!("{name}: {sql}\n    want type {pinot_type}, got {}", answer["types"][0]));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences from Pinot's semantics in {} queries:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}
