//! Decoding, consuming and sealing, end to end: every data type, multi-value fields, nulls and
//! defaults, Pinot's coercions, every dateTime format, flattening, metadata columns.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use serde_json::json;
use shoal_segment::decode::DropReason;
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::sync::Arc;

fn layout(schema: serde_json::Value, options: LayoutOptions) -> Arc<TableLayout> {
    let (schema, _) = Schema::from_json(&schema).expect("valid schema");
    Arc::new(TableLayout::new(Arc::new(schema), &options))
}

fn meta(seq: &str) -> RecordMeta<'_> {
    RecordMeta { partition_key: "pk", sequence_number: seq, arrival_millis: 1_700_000_000_000 }
}

/// Appends the records, seals, loads the file back, and returns its one concatenated batch.
fn round_trip(layout: &Arc<TableLayout>, records: &[&str]) -> (RecordBatch, shoal_segment::DropStats) {
    let segment = MutableSegment::new(Arc::clone(layout));
    let seqs: Vec<String> = (0..records.len()).map(|i| (i + 1).to_string()).collect();
    segment.append(records.iter().zip(&seqs).map(|(r, s)| (r.as_bytes(), meta(s))));
    let snapshot = segment.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let request = SealRequest {
        table: "t",
        shard: "shardId-000000000000",
        sequence: 0,
        created_ms: segment.created_ms(),
        sort_by: None,
    };
    let (path, written) = write_segment(dir.path(), layout, &snapshot, &request).unwrap();
    let sealed = SealedSegment::load(&path).unwrap();
    assert_eq!(sealed.meta(), &written);
    let batch = arrow::compute::concat_batches(&layout.arrow, sealed.batches().unwrap()).unwrap();
    let live = arrow::compute::concat_batches(&layout.arrow, &snapshot.batches).unwrap();
    assert_eq!(batch, live, "the sealed rows are the consuming rows");
    (batch, segment.drops())
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> &'a arrow::array::ArrayRef {
    batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn every_data_type_round_trips() {
    let layout = layout(
        json!({
            "schemaName": "t",
            "dimensionFieldSpecs": [
                {"name": "i", "dataType": "INT"},
                {"name": "l", "dataType": "LONG"},
                {"name": "f", "dataType": "FLOAT"},
                {"name": "d", "dataType": "DOUBLE"},
                {"name": "bd", "dataType": "BIG_DECIMAL"},
                {"name": "b", "dataType": "BOOLEAN"},
                {"name": "ts", "dataType": "TIMESTAMP"},
                {"name": "s", "dataType": "STRING"},
                {"name": "j", "dataType": "JSON"},
                {"name": "by", "dataType": "BYTES"}
            ]
        }),
        LayoutOptions::default(),
    );
    let (batch, drops) = round_trip(
        &layout,
        &[
            r#"{"i": 7, "l": 9007199254740993, "f": 1.5, "d": -2.25, "bd": "12345.678901", "b": true,
                "ts": 1700000000123, "s": "héllo \"x\"", "j": {"a": [1, 2]}, "by": "00ff10"}"#,
            // Pinot's coercions: numeric strings into numbers, numbers into strings,
            // booleans from strings and numbers, timestamps from text, floats truncated to ints.
            r#"{"i": "42", "l": 3.9, "f": "2.5", "d": "1e3", "bd": 0.1, "b": "FALSE",
                "ts": "2024-01-31 12:34:56", "s": 12.5, "j": "{\"k\":1}", "by": "ABCD"}"#,
            r#"{"b": 1, "s": true, "j": 5, "ts": "2024-01-31T12:34:56.5Z"}"#,
        ],
    );
    assert_eq!(drops.total(), 0, "{drops:?}");
    assert_eq!(batch.num_rows(), 3);
    let i = col(&batch, "i").as_primitive::<Int32Type>();
    assert_eq!((i.value(0), i.value(1), i.value(2)), (7, 42, i32::MIN));
    let l = col(&batch, "l").as_primitive::<Int64Type>();
    assert_eq!((l.value(0), l.value(1), l.value(2)), (9007199254740993, 3, i64::MIN));
    let f = col(&batch, "f").as_primitive::<Float32Type>();
    assert_eq!((f.value(0), f.value(1), f.value(2)), (1.5, 2.5, f32::NEG_INFINITY));
    let d = col(&batch, "d").as_primitive::<Float64Type>();
    assert_eq!((d.value(0), d.value(1)), (-2.25, 1000.0));
    let bd = col(&batch, "bd").as_primitive::<Decimal128Type>();
    assert_eq!(bd.value(0), 12_345_678_901_000_000_000_000);
    assert_eq!(bd.value(1), 100_000_000_000_000_000);
    assert_eq!(bd.value(2), 0);
    let b = col(&batch, "b").as_boolean();
    assert_eq!((b.value(0), b.value(1), b.value(2)), (true, false, true));
    let ts = col(&batch, "ts").as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        (ts.value(0), ts.value(1), ts.value(2)),
        (1_700_000_000_123, 1_706_704_496_000, 1_706_704_496_500)
    );
    let s = col(&batch, "s").as_string::<i32>();
    assert_eq!((s.value(0), s.value(1), s.value(2)), ("héllo \"x\"", "12.5", "true"));
    let j = col(&batch, "j").as_string::<i32>();
    assert_eq!((j.value(0), j.value(1), j.value(2)), (r#"{"a": [1, 2]}"#, r#"{"k":1}"#, "5"));
    let by = col(&batch, "by").as_binary::<i32>();
    assert_eq!((by.value(0), by.value(1), by.value(2)), (&[0, 255, 16][..], &[0xab, 0xcd][..], &[][..]));
}

#[test]
fn multi_value_fields_nulls_and_defaults() {
    let schema = json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [
            {"name": "tags", "dataType": "STRING", "singleValueField": false},
            {"name": "nums", "dataType": "INT", "singleValueField": false, "defaultNullValue": -1},
            {"name": "s", "dataType": "STRING", "defaultNullValue": "none"},
            {"name": "short", "dataType": "STRING", "maxLength": 3}
        ],
        "metricFieldSpecs": [{"name": "m", "dataType": "LONG"}]
    });
    let records = [
        r#"{"tags": ["a", "b"], "nums": [1, "2", 3.0], "s": "x", "m": 5, "short": "abcdef"}"#,
        r#"{"tags": "solo", "nums": [], "s": null}"#,
        r#"{"tags": null}"#,
    ];
    let (batch, drops) = round_trip(&layout(schema.clone(), LayoutOptions::default()), &records);
    assert_eq!(drops.total(), 0);
    let tags = col(&batch, "tags").as_list::<i32>();
    let strings = |i: usize| {
        let v = tags.value(i);
        let v = v.as_string::<i32>();
        (0..v.len()).map(|k| v.value(k).to_string()).collect::<Vec<_>>()
    };
    assert_eq!(strings(0), ["a", "b"]);
    assert_eq!(strings(1), ["solo"]);
    assert_eq!(strings(2), ["null"], "a missing multi-value field holds the default, as in Pinot");
    let nums = col(&batch, "nums").as_list::<i32>();
    let n0 = nums.value(0);
    assert_eq!(n0.as_primitive::<Int32Type>().values(), &[1, 2, 3]);
    assert_eq!(nums.value(1).as_primitive::<Int32Type>().values(), &[-1]);
    let s = col(&batch, "s").as_string::<i32>();
    assert_eq!((s.value(0), s.value(1), s.value(2)), ("x", "none", "none"));
    assert_eq!(col(&batch, "short").as_string::<i32>().value(0), "abc", "cut to maxLength");
    let m = col(&batch, "m").as_primitive::<Int64Type>();
    assert_eq!((m.value(0), m.value(1)), (5, 0), "a metric's default is 0");

    // With column-based null handling, missing values are real nulls.
    let mut with_nulls = schema;
    with_nulls["enableColumnBasedNullHandling"] = json!(true);
    let (batch, _) = round_trip(&layout(with_nulls, LayoutOptions::default()), &records);
    assert!(col(&batch, "s").is_null(1) && col(&batch, "s").is_null(2));
    assert!(col(&batch, "m").is_null(1));
    assert!(col(&batch, "tags").is_null(2));
    assert!(col(&batch, "nums").is_null(1), "an empty multi-value field is null");
}

#[test]
fn every_date_time_format() {
    let layout = layout(
        json!({
            "schemaName": "t",
            "dateTimeFieldSpecs": [
                {"name": "ms", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"},
                {"name": "secs", "dataType": "LONG", "format": "EPOCH|SECONDS", "granularity": "1:SECONDS"},
                {"name": "five_min", "dataType": "INT", "format": "5:MINUTES:EPOCH", "granularity": "5:MINUTES"},
                {"name": "days", "dataType": "INT", "format": "1:DAYS:EPOCH", "granularity": "1:DAYS"},
                {"name": "stamp", "dataType": "TIMESTAMP", "format": "1:MILLISECONDS:TIMESTAMP", "granularity": "1:SECONDS"},
                {"name": "ymd", "dataType": "STRING", "format": "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd", "granularity": "1:DAYS"},
                {"name": "ymd_int", "dataType": "INT", "format": "SIMPLE_DATE_FORMAT|yyyyMMdd", "granularity": "1:DAYS"},
                {"name": "full", "dataType": "STRING", "format": "1:SECONDS:SIMPLE_DATE_FORMAT:yyyy-MM-dd HH:mm:ss", "granularity": "1:SECONDS"}
            ]
        }),
        LayoutOptions::default(),
    );
    let record = r#"{"ms": 1706704496000, "secs": "1706704496", "five_min": 5689014, "days": 19753,
        "stamp": "2024-01-31 12:34:56", "ymd": "20240131", "ymd_int": 20240131, "full": "2024-01-31 12:34:56"}"#;
    for time_column in ["ms", "secs", "five_min", "days", "stamp", "ymd", "ymd_int", "full"] {
        let mut l = (*layout).clone();
        l.time_column = l.column_index(time_column);
        let l = Arc::new(l);
        let segment = MutableSegment::new(Arc::clone(&l));
        let outcome = segment.append([(record.as_bytes(), meta("1"))]);
        assert_eq!(outcome.rows, 1, "{time_column}: {:?}", segment.drops());
        let (lo, _) = segment.snapshot().time_range.unwrap();
        let day = 1_706_659_200_000;
        let expected = match time_column {
            "days" | "ymd" | "ymd_int" => day,
            "five_min" => 1_706_704_200_000,
            _ => 1_706_704_496_000,
        };
        assert_eq!(lo, expected, "time range from {time_column}");
    }
    // Values that do not match the time column's format are dropped as bad_time.
    let mut l = (*layout).clone();
    l.time_column = l.column_index("full");
    let segment = MutableSegment::new(Arc::new(l));
    segment.append([
        (r#"{"full": "31/01/2024"}"#.as_bytes(), meta("1")),
        (r#"{"ms": 1}"#.as_bytes(), meta("2")),
    ]);
    let drops = segment.drops();
    assert_eq!(drops.counts[&DropReason::BadTime], 1);
    assert_eq!(drops.counts[&DropReason::MissingTime], 1);
}

#[test]
fn nested_objects_flatten_with_complex_type_config() {
    let schema = json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [
            {"name": "user.id", "dataType": "STRING"},
            {"name": "user.geo.country", "dataType": "STRING"},
            {"name": "user.tags", "dataType": "STRING", "singleValueField": false},
            {"name": "payload", "dataType": "JSON"},
            {"name": "ctx", "dataType": "STRING"}
        ]
    });
    let record = r#"{"user": {"id": "u1", "geo": {"country": "NZ", "city": "x"}, "tags": ["p", "q"]},
                     "payload": {"deep": {"x": 1}}, "ctx": {"a": 1}}"#;
    let flat =
        layout(schema.clone(), LayoutOptions { flatten_delimiter: Some(".".into()), ..Default::default() });
    let (batch, drops) = round_trip(&flat, &[record]);
    assert_eq!(drops.total(), 0);
    assert_eq!(col(&batch, "user.id").as_string::<i32>().value(0), "u1");
    assert_eq!(col(&batch, "user.geo.country").as_string::<i32>().value(0), "NZ");
    assert_eq!(col(&batch, "user.tags").as_list::<i32>().value(0).as_string::<i32>().value(1), "q");
    assert_eq!(col(&batch, "payload").as_string::<i32>().value(0), r#"{"deep": {"x": 1}}"#);
    assert_eq!(
        col(&batch, "ctx").as_string::<i32>().value(0),
        r#"{"a":1}"#,
        "an object in a STRING column is its JSON"
    );
    // Without complexTypeConfig nothing is flattened.
    let (batch, _) = round_trip(&layout(schema, LayoutOptions::default()), &[record]);
    assert_eq!(col(&batch, "user.id").as_string::<i32>().value(0), "null");
}

#[test]
fn metadata_columns_are_populated() {
    let l = layout(
        json!({"schemaName": "t", "dimensionFieldSpecs": [{"name": "a", "dataType": "STRING"}]}),
        LayoutOptions { populate_metadata: true, ..Default::default() },
    );
    let (batch, _) = round_trip(&l, &[r#"{"a": "x"}"#]);
    assert_eq!(col(&batch, "__key").as_string::<i32>().value(0), "pk");
    assert_eq!(col(&batch, "__metadata$sequenceNumber").as_string::<i32>().value(0), "1");
    assert_eq!(
        col(&batch, "__metadata$apprxArrivalTimestamp").as_primitive::<Int64Type>().value(0),
        1_700_000_000_000
    );
}

#[test]
fn bad_records_are_counted_by_reason_and_never_half_appended() {
    let l = layout(
        json!({
            "schemaName": "t",
            "dimensionFieldSpecs": [{"name": "s", "dataType": "STRING"}, {"name": "i", "dataType": "INT"}, {"name": "b", "dataType": "BOOLEAN"}],
            "metricFieldSpecs": [{"name": "d", "dataType": "DOUBLE"}],
            "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
        }),
        // rowTimeValueCheck on: times outside 1971..2071 are dropped.
        LayoutOptions { time_column: Some("ts".into()), row_time_check: true, ..Default::default() },
    );
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_field =
        format!(r#"{{"ts": 1706704496000, "s": {}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (b"{not json".to_vec(), DropReason::MalformedJson),
        (br#"{"s": "x", "ts": 17067"#.to_vec(), DropReason::Truncated),
        (b"{\"s\": \"\xff\xfe\", \"ts\": 1706704496000}".to_vec(), DropReason::NotUtf8),
        (deep.into_bytes(), DropReason::NotAnObject),
        (deep_field.into_bytes(), DropReason::TooDeep),
        (b"[1, 2]".to_vec(), DropReason::NotAnObject),
        (b"42".to_vec(), DropReason::NotAnObject),
        (br#"{"i": "seven", "ts": 1706704496000}"#.to_vec(), DropReason::TypeMismatch),
        (br#"{"i": 3000000000, "ts": 1706704496000}"#.to_vec(), DropReason::OutOfRange),
        (br#"{"i": 1e300, "ts": 1706704496000}"#.to_vec(), DropReason::OutOfRange),
        (br#"{"d": "NaN", "ts": 1706704496000}"#.to_vec(), DropReason::NotFinite),
        (br#"{"d": "-Infinity", "ts": 1706704496000}"#.to_vec(), DropReason::NotFinite),
        (br#"{"b": "maybe", "ts": 1706704496000}"#.to_vec(), DropReason::TypeMismatch),
        (br#"{"s": "no time"}"#.to_vec(), DropReason::MissingTime),
        (br#"{"ts": 99999999999999999}"#.to_vec(), DropReason::TimeOutOfRange),
        (br#"{"ts": 5}"#.to_vec(), DropReason::TimeOutOfRange),
    ];
    // Deep nesting in a field no column reads is skipped without recursion: the row is good.
    let deep_ignored = format!(
        r#"{{"s": "good", "ts": 1706704496000, "z": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let segment = MutableSegment::new(Arc::clone(&l));
    assert_eq!(segment.append([(deep_ignored.as_bytes(), meta("0"))]).rows, 1);
    let good = br#"{"s": "good", "i": 1, "ts": 1706704496000}"#;
    let mut input: Vec<&[u8]> = Vec::new();
    for (bytes, _) in &cases {
        input.push(good);
        input.push(bytes);
    }
    let outcome = segment.append(input.iter().map(|b| (*b, meta("1"))));
    assert_eq!(outcome.rows, cases.len(), "every good row is present");
    assert_eq!(segment.rows(), cases.len() + 1);
    let drops = segment.drops();
    let mut expected = std::collections::BTreeMap::new();
    for (_, reason) in &cases {
        *expected.entry(*reason).or_insert(0u64) += 1;
    }
    assert_eq!(drops.counts, expected);
    assert!(
        drops.samples[&DropReason::TypeMismatch][0].message.contains("\"i\""),
        "the message names the column"
    );
    let snapshot = segment.snapshot();
    let batch = arrow::compute::concat_batches(&l.arrow, &snapshot.batches).unwrap();
    let s = batch.column_by_name("s").unwrap().as_string::<i32>();
    assert!((0..batch.num_rows()).all(|r| s.value(r) == "good"), "no half-appended bad row");
}
