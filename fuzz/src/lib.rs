//! The checks behind Shoal's fuzz targets. Each takes arbitrary bytes, feeds them to one of
//! Shoal's parsers (or builds a SQL call of one of its Pinot functions from them) and asserts
//! what must hold whatever the input: no panic, and a property of the answer. The libFuzzer binaries in `fuzz_targets/` call these (`scripts/fuzz.sh`), and
//! `tests/corpus.rs` replays the kept corpora through them in the ordinary test command.

use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::Value;
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, SealedSegment, TableLayout};
use shoal_stream::kpl::{Deaggregated, aggregate_records, deaggregate};
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A schema with every Pinot data type, multi-value fields and a formatted time column.
pub const DECODER_SCHEMA: &str = r#"{
  "schemaName": "fuzz",
  "dimensionFieldSpecs": [
    {"name": "s", "dataType": "STRING"},
    {"name": "tags", "dataType": "STRING", "singleValueField": false},
    {"name": "i", "dataType": "INT"},
    {"name": "ints", "dataType": "INT", "singleValueField": false},
    {"name": "f", "dataType": "FLOAT"},
    {"name": "b", "dataType": "BOOLEAN"},
    {"name": "bd", "dataType": "BIG_DECIMAL"},
    {"name": "stamp", "dataType": "TIMESTAMP"},
    {"name": "raw", "dataType": "BYTES"},
    {"name": "doc", "dataType": "JSON"},
    {"name": "nested.leaf", "dataType": "STRING"}
  ],
  "metricFieldSpecs": [
    {"name": "l", "dataType": "LONG"},
    {"name": "d", "dataType": "DOUBLE"}
  ],
  "dateTimeFieldSpecs": [
    {"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"},
    {"name": "day", "dataType": "STRING", "format": "1:DAYS:SIMPLE_DATE_FORMAT:yyyy-MM-dd HH:mm:ss", "granularity": "1:DAYS"}
  ]
}"#;

fn decoder_layout() -> &'static Arc<TableLayout> {
    static LAYOUT: OnceLock<Arc<TableLayout>> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let (schema, _) = Schema::from_json_str(DECODER_SCHEMA).expect("the fuzz schema is valid");
        Arc::new(TableLayout::new(
            Arc::new(schema),
            &LayoutOptions {
                time_column: Some("ts".into()),
                flatten_delimiter: Some(".".into()),
                populate_metadata: true,
                row_time_check: true,
                ..Default::default()
            },
        ))
    })
}

/// The JSON decoder: one record is either a row or a counted drop, and a row reads back.
/// Returns the rows added (0 or 1).
pub fn json_decoder(data: &[u8]) -> usize {
    let segment = MutableSegment::new(Arc::clone(decoder_layout()));
    let meta = RecordMeta { partition_key: "k", sequence_number: "1", arrival_millis: 1 };
    let outcome = segment.append([(data, meta)]);
    assert_eq!(outcome.rows + outcome.dropped, 1, "a record is a row or a drop");
    assert_eq!(outcome.drops.total(), outcome.dropped as u64);
    let snapshot = segment.snapshot();
    assert_eq!(snapshot.rows, outcome.rows);
    let rows: usize = snapshot.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, outcome.rows);
    outcome.rows
}

/// The KPL aggregate magic.
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The KPL de-aggregator, on the bytes as they are and framed as an aggregate (magic, body,
/// correct MD5) so that the protobuf decoder is reached. What comes out, aggregated again,
/// de-aggregates to the same records.
pub fn kpl(data: &[u8]) {
    check_deaggregated(&Bytes::copy_from_slice(data));
    let mut framed = KPL_MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&Md5::digest(data));
    check_deaggregated(&Bytes::from(framed));
}

fn check_deaggregated(blob: &Bytes) {
    if let Deaggregated::Aggregate(records) = deaggregate(blob) {
        let again = Bytes::from(aggregate_records(&records));
        assert_eq!(deaggregate(&again), Deaggregated::Aggregate(records));
    }
}

/// The sealed-segment loader, on the bytes as they are and with their checksums recomputed
/// (so that the metadata and Arrow IPC parsers behind them are reached): a segment is opened
/// and read, or refused with an error; never a panic.
pub fn segment_loader(data: &[u8]) {
    load(data);
    let mut restamped = data.to_vec();
    if shoal_segment::sealed::restamp_checksums(&mut restamped) {
        load(&restamped);
    }
}

fn load(image: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(image).expect("write the temporary file");
    file.flush().expect("flush the temporary file");
    // Opened, then read: each step refuses what it cannot trust with an error.
    if let Ok(segment) = SealedSegment::open(file.path()) {
        let _ = segment.batches();
    }
}

/// Keys whose values are secrets.
const SECRET_KEYS: [&str; 4] = ["accessKey", "secretKey", "sessionToken", "externalId"];

/// The config parser: the input is a table config and a schema separated by a NUL byte. It
/// gives a definition or problems with key paths; never a panic; and no secret value from the
/// input appears in the problems, the normalised config or the Debug output. A value counts as
/// shown only if it disappears from the output when the secret is changed: the output may hold
/// the same text for other reasons ("REALTIME" in a message about the table type).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let shown = show_config(&text);
    let table = text.split_once('\0').map_or(&*text, |(t, _)| t);
    let mut secrets = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(table) {
        collect_secrets(&value, &mut secrets);
    }
    for secret in secrets {
        // Only values that cannot be confused with other text of the input.
        if secret.len() >= 8 && text.matches(secret.as_str()).count() == 1 && shown.contains(&secret) {
            let changed = text.replacen(secret.as_str(), &"Z".repeat(secret.chars().count()), 1);
            assert!(show_config(&changed).contains(&secret), "a secret value is shown");
        }
    }
}

/// Everything the config parser shows of `text`: the normalised config and the Debug output,
/// or the problems.
fn show_config(text: &str) -> String {
    let (table, schema) = text.split_once('\0').unwrap_or((text, "{}"));
    match shoal::TableDefinition::from_json_str(table, schema) {
        Ok(definition) => format!("{}\n{definition:?}", definition.config.normalised_json()),
        Err(e) => {
            assert!(!e.table.is_empty() || !e.schema.is_empty(), "an error names its problems");
            for p in e.table.iter().chain(&e.schema) {
                assert!(!p.message.is_empty(), "a problem says what is wrong: {p:?}");
            }
            format!("{e}\n{e:?}")
        }
    }
}

fn collect_secrets(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if SECRET_KEYS.iter().any(|key| k.ends_with(key)) => out.push(s.clone()),
                    _ => collect_secrets(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secrets(v, out)),
        _ => {}
    }
}

/// The functions the `functions` target calls: Shoal's Pinot functions, and the Pinot
/// spellings `shoal_query::rewrite` turns into DataFusion's.
pub const FUNCTIONS: [&str; 23] = [
    "DATETRUNC",
    "DATETIMECONVERT",
    "TODATETIME",
    "FROMDATETIME",
    "ago",
    "now",
    "JSON_EXTRACT_SCALAR",
    "ToEpochSeconds",
    "ToEpochMinutes",
    "ToEpochHours",
    "ToEpochDays",
    "FromEpochSeconds",
    "FromEpochMinutes",
    "FromEpochHours",
    "FromEpochDays",
    "PERCENTILE",
    "PERCENTILE95",
    "PERCENTILEEST",
    "PERCENTILETDIGEST99",
    "DISTINCTCOUNT",
    "DISTINCTCOUNTHLL",
    "LASTWITHTIME",
    "FIRSTWITHTIME",
];

/// Integer arguments: the extremes, and values that are valid times in some unit.
pub const INTEGERS: [i64; 17] = [
    i64::MAX,
    i64::MIN,
    0,
    -1,
    1,
    i64::MAX - 1,
    i64::MIN + 1,
    i32::MAX as i64,
    i32::MIN as i64,
    86_400_000,
    1_706_704_496_789,
    19_753,
    20_240_131,
    1_000_000_000_000_000,
    -86_400_001,
    101,
    50,
];

/// Text arguments: units, zones, formats, granularities, Java date patterns, dates, ISO
/// durations, JSON documents and paths, type names; valid ones and odd ones.
pub const TEXTS: [&str; 64] = [
    "day",
    "week",
    "quarter",
    "year",
    "millisecond",
    "fortnight",
    "",
    "MILLISECONDS",
    "NANOSECONDS",
    "MICROSECONDS",
    "SECONDS",
    "DAYS",
    "UTC",
    "America/New_York",
    "1:MILLISECONDS:EPOCH",
    "1:DAYS:EPOCH",
    "1:NANOSECONDS:EPOCH",
    "5:MINUTES:EPOCH",
    "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd",
    "EPOCH|SECONDS|5",
    "SIMPLE_DATE_FORMAT|yyyy-MM-dd|UTC",
    "TIMESTAMP",
    "0:DAYS:EPOCH",
    "4294967295:DAYS:EPOCH",
    "1:MILLISECONDS",
    "15:MINUTES",
    "1000:NANOSECONDS",
    "0:DAYS",
    "4294967295:DAYS",
    "-1:HOURS",
    "yyyy-MM-dd HH:mm:ss",
    "yyyyMMdd",
    "yyyyyyyyyyyyyyyyyyMM",
    "yyyySSSSSSSSSSSSMM",
    "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "dd/MMM/yyyy hh:mm a",
    "yyyy MMM",
    "''",
    "'unclosed",
    "2024-01-31 12:34:56",
    "99999999999999999901",
    "202412345678901201",
    "2024 Ma\u{e9}",
    "292278994-08-17 07:12:55.808",
    "PT1H",
    "P1DT12H",
    "PT0.5S",
    "P99999999999999999999D",
    "PT",
    "P1\u{e9}",
    "{\"n\": 3000000000, \"a\": {\"b\": [1, {\"c\": \"x\"}]}}",
    "[1, 2",
    "$.a.b[1].c",
    "$.n",
    "$[",
    "$['a",
    "$[99999999999999999999]",
    "INT",
    "LONG",
    "DOUBLE",
    "BOOLEAN",
    "STRING",
    "TIMESTAMP_NTZ",
    "NaN",
];

/// Column arguments, from the table `t` (`FUNCTIONS_SCHEMA`), and expressions over them.
pub const COLUMNS: [&str; 7] = ["n", "s", "ts", "doc", "d", "CAST(n AS TIMESTAMP)", "CAST(s AS DOUBLE)"];

/// Other literal arguments.
pub const OTHERS: [&str; 6] =
    ["NULL", "1.5", "-1e308", "TRUE", "CAST('NaN' AS DOUBLE)", "CAST(1 AS TIMESTAMP)"];

/// The table the `functions` target reads.
pub const FUNCTIONS_SCHEMA: &str = r#"{
  "schemaName": "t",
  "dimensionFieldSpecs": [
    {"name": "s", "dataType": "STRING"},
    {"name": "doc", "dataType": "JSON"}
  ],
  "metricFieldSpecs": [
    {"name": "n", "dataType": "LONG"},
    {"name": "d", "dataType": "DOUBLE"}
  ],
  "dateTimeFieldSpecs": [
    {"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
  ]
}"#;

/// One argument of a function call, as the `functions` target's input encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer literal.
    Int(i64),
    /// A text literal.
    Text(String),
    /// An entry of `COLUMNS`.
    Column(usize),
    /// An entry of `OTHERS`.
    Other(usize),
}

/// Encodes a call for the `functions` target (for seeds): the function's index in `FUNCTIONS`,
/// the number of arguments, then per argument a tag byte (0 integer, 1 text, 2 column, 3 other)
/// and its value. An integer or text given in full follows a 0xFF byte (8 bytes little-endian;
/// a length byte and UTF-8); any other byte picks an entry of `INTEGERS` or `TEXTS`.
pub fn encode_call(function: &str, args: &[Arg]) -> Vec<u8> {
    let index = FUNCTIONS.iter().position(|f| *f == function).expect("a function of FUNCTIONS");
    let mut out = vec![index as u8, args.len() as u8];
    for arg in args {
        match arg {
            Arg::Int(v) => {
                out.extend([0, 0xFF]);
                out.extend(v.to_le_bytes());
            }
            Arg::Text(t) => {
                out.extend([1, 0xFF, u8::try_from(t.len()).expect("a seed text under 256 bytes")]);
                out.extend(t.as_bytes());
            }
            Arg::Column(i) => out.extend([2, *i as u8]),
            Arg::Other(i) => out.extend([3, *i as u8]),
        }
    }
    out
}

/// Decodes the `functions` target's input into a function and its arguments (see
/// `encode_call`); bytes past the end read as zero, so every input is a call.
pub fn decode_call(data: &[u8]) -> (&'static str, Vec<Arg>) {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next().unwrap_or(0);
    let function = FUNCTIONS[usize::from(next()) % FUNCTIONS.len()];
    let count = usize::from(next()) % 6;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = next() % 4;
        let pick = next();
        args.push(match (tag, pick) {
            (0, 0xFF) => Arg::Int(i64::from_le_bytes(std::array::from_fn(|_| next()))),
            (0, i) => Arg::Int(INTEGERS[usize::from(i) % INTEGERS.len()]),
            (1, 0xFF) => {
                let text: Vec<u8> = (0..next()).map(|_| next()).collect();
                Arg::Text(String::from_utf8_lossy(&text).into_owned())
            }
            (1, i) => Arg::Text(TEXTS[usize::from(i) % TEXTS.len()].to_string()),
            (2, i) => Arg::Column(usize::from(i) % COLUMNS.len()),
            (_, i) => Arg::Other(usize::from(i) % OTHERS.len()),
        });
    }
    (function, args)
}

/// The SQL the `functions` target runs for its input: the call with only literal arguments
/// alone (DataFusion folds it while planning), and the call over the table `t` (columns are
/// read while the query runs).
pub fn function_queries(data: &[u8]) -> Vec<String> {
    let (function, args) = decode_call(data);
    let rendered: Vec<String> = args
        .iter()
        .map(|arg| match arg {
            // i64::MIN has no literal: its digits alone are past i64.
            Arg::Int(i64::MIN) => "(-9223372036854775807 - 1)".to_string(),
            Arg::Int(v) if *v < 0 => format!("({v})"),
            Arg::Int(v) => v.to_string(),
            Arg::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Arg::Column(i) => COLUMNS[*i].to_string(),
            Arg::Other(i) => OTHERS[*i].to_string(),
        })
        .collect();
    let call = format!("{function}({})", rendered.join(", "));
    let mut queries = Vec::new();
    if !args.iter().any(|a| matches!(a, Arg::Column(_))) {
        queries.push(format!("SELECT {call}"));
    }
    queries.push(format!("SELECT {call} FROM t"));
    queries
}

#[derive(Debug)]
struct FixedRows(Arc<MutableSegment>);

impl SnapshotSource for FixedRows {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot::new(vec![SegmentData::Consuming(self.0.snapshot())])
    }
}

/// A current-thread runtime and an engine with the table `t`: a row per extreme.
fn functions_engine() -> &'static (tokio::runtime::Runtime, QueryEngine) {
    static ENGINE: OnceLock<(tokio::runtime::Runtime, QueryEngine)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let (schema, _) = Schema::from_json_str(FUNCTIONS_SCHEMA).expect("the fuzz schema is valid");
        let layout = Arc::new(TableLayout::new(
            Arc::new(schema),
            &LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
        ));
        let segment = Arc::new(MutableSegment::new(Arc::clone(&layout)));
        let ts = 1_706_704_496_789i64;
        let rows = [
            serde_json::json!({"n": i64::MAX, "s": "2024-01-31 12:34:56", "d": 1.5, "ts": ts,
                "doc": {"n": 3_000_000_000i64, "a": {"b": [1, {"c": "x"}]}}}),
            serde_json::json!({"n": i64::MIN, "s": "99999999999999999901", "d": -1e308, "ts": ts, "doc": [1, 2]}),
            serde_json::json!({"n": 0, "s": "2024 Ma\u{e9}", "d": -0.0, "ts": ts, "doc": "text"}),
            serde_json::json!({"n": -1, "s": "", "ts": ts}),
            serde_json::json!({"n": ts, "s": "PT1H", "d": 1e308, "ts": ts, "doc": {"n": null}}),
        ];
        let rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        let outcome = segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
        assert_eq!(outcome.rows, rows.len(), "every row of the fuzz table decodes");
        let engine = QueryEngine::new(QueryOptions::default().with_timeout(Duration::from_secs(10)).with_memory_limit(256 << 20).with_max_result_rows(100).with_target_partitions(1));
        engine.register("t", layout, Arc::new(FixedRows(segment)));
        (runtime, engine)
    })
}

/// Shoal's Pinot functions: a call built from the input (see `decode_call`) with literal and
/// column arguments is answered or refused with an error; never a panic, whether it is folded
/// while planning or evaluated while running (a panic in the task that gathers the rows would
/// come back as an error saying it panicked).
pub fn functions(data: &[u8]) {
    let (runtime, engine) = functions_engine();
    for sql in function_queries(data) {
        match runtime.block_on(engine.execute(&sql)) {
            Ok(result) => assert_eq!(result.schema.fields().len(), 1, "{sql}: one column"),
            Err(e) => {
                assert!(!e.message.is_empty(), "{sql}: an error says what is wrong");
                assert!(!e.message.contains("panicked"), "{sql}: {}", e.message);
            }
        }
    }
}
