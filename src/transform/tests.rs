//! The ingestion transforms through a consuming segment, on Pinot's documented examples
//! ("Ingestion Transformations" and the pinot-segment-local transformer tests), every expected
//! row worked out by hand.

use crate::config::TableDefinition;
use crate::table::layout_of;
use serde_json::{Value, json};
use shoal_segment::{MutableSegment, RecordMeta};

/// The seed page's table config (time column `timestamp`) with `ingestion` as its
/// ingestionConfig.
fn table(ingestion: Value) -> Value {
    let mut t: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.table.json")).unwrap();
    t["ingestionConfig"] = ingestion;
    t
}

fn schema(dimensions: Value, metrics: Value, time_type: &str) -> Value {
    json!({
        "schemaName": "kinesisTable",
        "dimensionFieldSpecs": dimensions,
        "metricFieldSpecs": metrics,
        "dateTimeFieldSpecs": [
            {"name": "timestamp", "dataType": time_type, "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
        ]
    })
}

fn definition(table: Value, schema: Value) -> TableDefinition {
    TableDefinition::from_json(&table, &schema).unwrap_or_else(|e| panic!("{e}"))
}

/// The rows `records` become, each as JSON of the schema's columns, and the append's counts.
fn ingest(def: &TableDefinition, records: &[Value]) -> (Vec<Value>, shoal_segment::mutable::AppendOutcome) {
    let segment = MutableSegment::new(layout_of(def));
    let texts: Vec<String> = records.iter().map(Value::to_string).collect();
    let outcome = segment.append(texts.iter().enumerate().map(|(i, t)| {
        (
            t.as_bytes(),
            RecordMeta {
                partition_key: "k",
                sequence_number: if i == 0 { "1" } else { "2" },
                arrival_millis: 1_700_000_000_000,
            },
        )
    }));
    let snapshot = segment.snapshot();
    let mut rows = Vec::new();
    for batch in &snapshot.batches {
        for row in 0..batch.num_rows() {
            let mut out = serde_json::Map::new();
            for (i, field) in batch.schema().fields().iter().enumerate() {
                out.insert(field.name().clone(), super::expr::json_value(batch.column(i), row));
            }
            rows.push(Value::Object(out));
        }
    }
    (rows, outcome)
}

const TS: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

#[test]
fn the_time_column_comes_from_epoch_seconds_and_chains() {
    // Pinot's docs: "timestamp" from fromEpochSeconds(tsSec); hoursSinceEpoch from it.
    let def = definition(
        table(json!({"transformConfigs": [
            {"columnName": "timestamp", "transformFunction": "fromEpochSeconds(tsSec)"},
            {"columnName": "hours", "transformFunction": "toEpochHours(\"timestamp\")"},
            {"columnName": "city", "transformFunction": "upper(rawCity)"},
            {"columnName": "user", "transformFunction": "jsonPathString(payload, '$.user.id')"}
        ]})),
        schema(
            json!([{"name": "user", "dataType": "STRING"}, {"name": "city", "dataType": "STRING"}]),
            json!([{"name": "hours", "dataType": "LONG"}]),
            "LONG",
        ),
    );
    assert!(def.warnings.iter().all(|w| !w.message.contains("not applied")), "{:?}", def.warnings);
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"tsSec": 1_700_000_000, "rawCity": "paris", "payload": {"user": {"id": "u-7"}}}),
            // A value already in the record is kept: "city" is not recomputed.
            json!({"tsSec": 1_700_003_600, "rawCity": "lima", "city": "Cusco", "payload": {"user": {"id": 42}}}),
        ],
    );
    assert_eq!(outcome.rows, 2, "{outcome:?}");
    // 1,700,000,000 s = 1,700,000,000,000 ms; / 3,600,000 = 472,222 hours (472,222.2 floored).
    assert_eq!(rows[0]["timestamp"], json!(TS));
    assert_eq!(rows[0]["hours"], json!(472_222));
    assert_eq!(rows[0]["city"], json!("PARIS"));
    assert_eq!(rows[0]["user"], json!("u-7"));
    // 1,700,003,600 s is one hour later: 472,223.
    assert_eq!(rows[1]["hours"], json!(472_223));
    assert_eq!(rows[1]["city"], json!("Cusco"));
    assert_eq!(rows[1]["user"], json!("42"));
}

#[test]
fn the_filter_drops_bots_and_counts_them_apart() {
    let def = definition(
        table(
            json!({"filterConfig": {"filterFunction": "strcmp(kind, 'bot') = 0 OR (clicks > 100 AND kind <> 'human')"}}),
        ),
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap(),
    );
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"user": "a", "kind": "bot", "clicks": 1, "timestamp": TS}),
            json!({"user": "b", "kind": "human", "clicks": 500, "timestamp": TS}),
            json!({"user": "c", "kind": "crawler", "clicks": 101, "timestamp": TS}),
            json!({"user": "d", "kind": "crawler", "clicks": 100, "timestamp": TS}),
            // No kind: strcmp(null, 'bot') is null, the filter is not true, the row stays.
            json!({"user": "e", "clicks": 7, "timestamp": TS}),
        ],
    );
    // a: bot → dropped; b: human → kept; c: 101 > 100 and not human → dropped; d: 100 → kept.
    let users: Vec<&Value> = rows.iter().map(|r| &r["user"]).collect();
    assert_eq!(users, [&json!("b"), &json!("d"), &json!("e")]);
    assert_eq!((outcome.filtered, outcome.dropped), (2, 0));
}

#[test]
fn arrays_of_objects_unnest_into_rows() {
    let def = definition(
        table(json!({"complexTypeConfig": {"fieldsToUnnest": ["items"], "delimiter": "."}})),
        schema(
            json!([{"name": "order", "dataType": "STRING"}, {"name": "items.sku", "dataType": "STRING"}]),
            json!([{"name": "items.qty", "dataType": "INT"}]),
            "LONG",
        ),
    );
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"order": "o1", "timestamp": TS, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 5}]}),
            json!({"order": "o2", "timestamp": TS, "items": []}),
        ],
    );
    assert_eq!(outcome.rows, 3);
    assert_eq!(rows[0], json!({"order": "o1", "items.sku": "a", "items.qty": 2, "timestamp": TS}));
    assert_eq!(rows[1], json!({"order": "o1", "items.sku": "b", "items.qty": 5, "timestamp": TS}));
    // An empty array leaves one row, its element columns at their defaults ("null", 0).
    assert_eq!(rows[2], json!({"order": "o2", "items.sku": "null", "items.qty": 0, "timestamp": TS}));
}

#[test]
fn continue_on_error_keeps_the_row_with_defaults() {
    let ingestion = |on: bool| {
        json!({"continueOnError": on, "transformConfigs": [
            {"columnName": "clicks", "transformFunction": "fromEpochSeconds(secs)"}
        ]})
    };
    let records = [
        json!({"user": "ok", "secs": 86_400, "timestamp": TS}),
        // 9.3e15 s in ms is past i64: fromEpochSeconds fails on it (Shoal refuses the overflow
        // Java would wrap). A clicks of "many" cannot be a LONG.
        json!({"user": "overflow", "secs": 9_300_000_000_000_000i64, "timestamp": TS}),
        json!({"user": "bad-type", "clicks": "many", "timestamp": TS}),
    ];
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let (rows, outcome) = ingest(&definition(table(ingestion(false)), schema.clone()), &records);
    assert_eq!(rows.len(), 1, "{rows:?}");
    // 86,400 s is 86,400,000 ms.
    assert_eq!(rows[0]["clicks"], json!(86_400_000));
    assert_eq!(outcome.dropped, 2, "{outcome:?}");
    let (rows, outcome) = ingest(&definition(table(ingestion(true)), schema), &records);
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Both bad values become LONG's default null value, 0.
    assert_eq!(rows[1]["clicks"], json!(0));
    assert_eq!(rows[2]["clicks"], json!(0));
    assert_eq!((outcome.dropped, outcome.incomplete), (0, 2), "{outcome:?}");
}

#[test]
fn the_time_range_is_checked_only_when_asked() {
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    // 1960 and 2100, outside 1971..2071; 2071-01-01T00:00:00Z exactly is inside (Pinot's
    // TimeUtils.timeValueInValidRange includes both ends).
    let records = [
        json!({"user": "old", "timestamp": -315_619_200_000i64}),
        json!({"user": "far", "timestamp": 4_102_444_800_000i64}),
        json!({"user": "edge", "timestamp": 3_187_296_000_000i64}),
    ];
    let (rows, _) = ingest(&definition(table(json!({})), schema.clone()), &records);
    assert_eq!(rows.len(), 3);
    let (rows, outcome) = ingest(&definition(table(json!({"rowTimeValueCheck": true})), schema), &records);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user"], json!("edge"));
    assert_eq!(outcome.drops.counts.get(&shoal_segment::DropReason::TimeOutOfRange), Some(&2));
}

#[test]
fn bad_transforms_are_refused_with_their_key_paths() {
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let refused = |ingestion: Value| -> Vec<String> {
        let e = TableDefinition::from_json(&table(ingestion), &schema).unwrap_err();
        e.table.iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    };
    let problems = refused(json!({"transformConfigs": [
        {"columnName": "user", "transformFunction": "noSuchFunction(a)"},
        {"columnName": "clicks", "transformFunction": "Groovy({a + 1}, a)"},
        {"columnName": "tags", "transformFunction": "fromEpochSeconds(a, b, c)"}
    ], "filterConfig": {"filterFunction": "a = "}}));
    let text = problems.join("\n");
    assert!(
        text.contains("ingestionConfig.transformConfigs[0].transformFunction: noSuchFunction(a)"),
        "{text}"
    );
    assert!(text.contains("ingestionConfig.transformConfigs[1].transformFunction: Groovy"), "{text}");
    assert!(
        text.contains("ingestionConfig.transformConfigs[2].transformFunction") && text.contains("argument"),
        "{text}"
    );
    assert!(text.contains("ingestionConfig.filterConfig.filterFunction"), "{text}");
    // An unknown destination no transform reads, a cycle, a type the column cannot hold.
    let text =
        refused(json!({"transformConfigs": [{"columnName": "nowhere", "transformFunction": "upper(a)"}]}))
            .join("\n");
    assert!(text.contains("transformConfigs[0].columnName") && text.contains("not in the schema"), "{text}");
    let text = refused(json!({"transformConfigs": [
        {"columnName": "user", "transformFunction": "upper(x)"},
        {"columnName": "x", "transformFunction": "lower(\"user\")"}
    ]}))
    .join("\n");
    assert!(text.contains("cycle"), "{text}");
    let text = refused(
        json!({"transformConfigs": [{"columnName": "clicks", "transformFunction": "make_array(1, 2)"}]}),
    )
    .join("\n");
    assert!(text.contains("cannot hold"), "{text}");
}

#[test]
fn the_schemas_own_transform_function_works_and_the_table_config_wins() {
    let schema = schema(
        json!([
            {"name": "user", "dataType": "STRING", "transformFunction": "lower(name)"},
            {"name": "city", "dataType": "STRING", "transformFunction": "lower(rawCity)"}
        ]),
        json!([]),
        "LONG",
    );
    let def = definition(
        table(json!({"transformConfigs": [{"columnName": "city", "transformFunction": "upper(rawCity)"}]})),
        schema,
    );
    let (rows, _) = ingest(&def, &[json!({"name": "ADA", "rawCity": "Oslo", "timestamp": TS})]);
    assert_eq!(rows[0]["user"], json!("ada"));
    assert_eq!(rows[0]["city"], json!("OSLO"));
}

/// One of Pinot's example tables (tests/fixtures/pinot-examples), its config as written but
/// for the stream: Kafka's settings give way to a Kinesis stream's.
fn pinot_example(name: &str) -> TableDefinition {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pinot-examples");
    let read = |kind: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.{kind}.json")).unwrap()).unwrap()
    };
    let mut table = read("table");
    table["ingestionConfig"]["streamIngestionConfig"]["streamConfigMaps"] = json!([{
        "streamType": "kinesis",
        "stream.kinesis.topic.name": name,
        "region": "us-east-1",
        "shardIteratorType": "TRIM_HORIZON",
        "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder"
    }]);
    definition(table, read("schema"))
}

#[test]
fn pinots_example_tables_run_with_their_transforms_as_written() {
    // githubEvents: created_at_timestamp = fromDateTime(created_at, 'yyyy-MM-dd''T''HH:mm:ssZ').
    // The first event of Pinot's own sample data (rawdata/2021-07-21-few-hours.json), cut short.
    let (rows, outcome) = ingest(
        &pinot_example("githubEvents"),
        &[json!({"id": "17244207336", "type": "DeleteEvent", "actor": {"id": 71354125},
                 "payload": {"ref": "cicd-e2e-g1szrn"}, "public": true, "created_at": "2021-07-21T06:00:00Z"})],
    );
    assert_eq!(outcome.rows, 1, "{outcome:?}");
    // 2021-07-21T06:00:00Z: 18,829 days after 1970-01-01, plus 6 hours: 1,626,847,200,000 ms.
    assert_eq!(rows[0]["created_at_timestamp"], json!(1_626_847_200_000i64));
    assert_eq!(rows[0]["type"], json!("DeleteEvent"));

    // meetupRsvpComplexType: fieldsToUnnest ["group.group_topics"], the default delimiter.
    let (rows, _) = ingest(
        &pinot_example("meetupRsvpComplexType"),
        &[json!({"rsvp_id": 1, "guests": 2, "mtime": TS,
                 "group": {"group_city": "Oslo", "group_id": 7, "group_lat": 59.9, "group_lon": 10.7,
                           "group_topics": [{"urlkey": "rust", "topic_name": "Rust"}, {"urlkey": "olap", "topic_name": "OLAP"}]}})],
    );
    assert_eq!(rows.len(), 2, "one row per topic");
    for (row, (key, name)) in rows.iter().zip([("rust", "Rust"), ("olap", "OLAP")]) {
        assert_eq!(row["group.group_topics.urlkey"], json!(key));
        assert_eq!(row["group.group_topics.topic_name"], json!(name));
        assert_eq!(
            (row["group.group_city"].clone(), row["group.group_id"].clone()),
            (json!("Oslo"), json!(7))
        );
        assert_eq!(
            (row["rsvp_id"].clone(), row["guests"].clone(), row["mtime"].clone()),
            (json!(1), json!(2), json!(TS))
        );
    }

    // meetupRsvpJson: event_json = jsonFormat(event), group_json = jsonFormat("group"), ...
    let (rows, _) = ingest(
        &pinot_example("meetupRsvpJson"),
        &[json!({"rsvp_id": 3, "mtime": TS, "response": "yes",
                 "event": {"event_id": "e1", "time": 5}, "group": {"group_city": "Lima"}, "member": {"member_id": 9}})],
    );
    assert_eq!(rows[0]["event_json"], json!(r#"{"event_id":"e1","time":5}"#));
    assert_eq!(rows[0]["group_json"], json!(r#"{"group_city":"Lima"}"#));
    assert_eq!(rows[0]["member_json"], json!(r#"{"member_id":9}"#));
    // No venue: jsonFormat(null) is null, and a JSON column's default is "null".
    assert_eq!(rows[0]["venue_json"], json!("null"));
}

#[test]
fn each_row_is_typed_by_its_own_values() {
    // Pinot converts a function's arguments to its parameter types: "12" is 12 for an
    // arithmetic; a missing price gives null, then the column's default (0), and the row stays.
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let def = definition(
        table(json!({"transformConfigs": [{"columnName": "clicks", "transformFunction": "price * qty"}]})),
        schema,
    );
    let a = json!({"user": "text", "price": "12", "qty": 3, "timestamp": TS});
    let b = json!({"user": "none", "qty": 3, "timestamp": TS});
    let c = json!({"user": "int", "price": 5, "qty": 3, "timestamp": TS});
    let (rows, outcome) = ingest(&def, &[a.clone(), b.clone(), c.clone()]);
    assert_eq!((outcome.rows, outcome.dropped), (3, 0), "{outcome:?}");
    // 12 * 3 = 36; 5 * 3 = 15.
    let clicks: Vec<&Value> = rows.iter().map(|r| &r["clicks"]).collect();
    assert_eq!(clicks, [&json!(36), &json!(0), &json!(15)]);
    // The same record alone makes the same row: what shares its chunk does not matter.
    for (record, want) in [(a, 36), (b, 0), (c, 15)] {
        let (rows, _) = ingest(&def, &[record]);
        assert_eq!(rows[0]["clicks"], json!(want));
    }
}

#[test]
fn a_record_the_transforms_cannot_read_is_dropped_not_passed_on() {
    // 1e400 is past f64: serde_json refuses the record. It must not reach the decoder around
    // the filter and the unnesting (the decoder would skip the unknown field and keep the row).
    let def = definition(
        table(json!({"filterConfig": {"filterFunction": "strcmp(kind, 'bot') = 0"},
                     "complexTypeConfig": {"fieldsToUnnest": ["items"]}})),
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap(),
    );
    let records =
        [r#"{"user": "bot", "kind": "bot", "x": 1e400, "timestamp": 1700000000000}"#, r#"[1]"#, "{not json"];
    let segment = MutableSegment::new(layout_of(&def));
    let outcome = segment.append(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    assert_eq!((outcome.rows, outcome.dropped, outcome.filtered), (0, 3, 0), "{outcome:?}");
    let reasons: Vec<&str> = outcome.drops.counts.keys().map(|r| r.name()).collect();
    assert_eq!(reasons, ["malformed_json", "not_an_object"], "{outcome:?}");
}

#[test]
fn a_record_whose_unnested_row_fails_is_dropped_whole() {
    let def = definition(
        table(json!({"complexTypeConfig": {"fieldsToUnnest": ["items"]}})),
        schema(
            json!([{"name": "items.sku", "dataType": "STRING"}]),
            json!([{"name": "items.qty", "dataType": "INT"}]),
            "LONG",
        ),
    );
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"timestamp": TS, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "many"}]}),
            json!({"timestamp": TS, "items": [{"sku": "c", "qty": 2}]}),
        ],
    );
    // The first record's "b" cannot be an INT: none of its rows is kept, one record is counted.
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["items.sku"], json!("c"));
    assert_eq!(outcome.dropped, 1, "{outcome:?}");
}

#[test]
fn filters_must_be_conditions_and_transforms_must_not_change_between_reads() {
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let problems = |ingestion: Value| -> String {
        let e = TableDefinition::from_json(&table(ingestion), &schema).unwrap_err();
        e.table.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("\n")
    };
    // strcmp alone is an INT: as a filter it would drop every row that is not a bot's.
    let text = problems(json!({"filterConfig": {"filterFunction": "strcmp(kind, 'bot')"}}));
    assert!(text.contains("filterFunction") && text.contains("not a condition"), "{text}");
    for function in ["now()", "ago('PT1H')", "random()"] {
        let text =
            problems(json!({"transformConfigs": [{"columnName": "clicks", "transformFunction": function}]}));
        assert!(text.contains("another value each time"), "{function}: {text}");
    }
}

#[test]
fn json_format_writes_values_as_json() {
    let schema = schema(
        json!([{"name": "n", "dataType": "STRING"}, {"name": "o", "dataType": "STRING"}]),
        json!([]),
        "LONG",
    );
    let def = definition(
        table(json!({"transformConfigs": [
            {"columnName": "n", "transformFunction": "jsonFormat(num)"},
            {"columnName": "o", "transformFunction": "json_format(obj)"}
        ]})),
        schema,
    );
    let (rows, _) = ingest(&def, &[json!({"num": 5, "obj": {"k": [1, "x"]}, "timestamp": TS})]);
    // Pinot's JsonFunctions.jsonFormat: 5 is 5, an object its compact JSON.
    assert_eq!(rows[0]["n"], json!("5"));
    assert_eq!(rows[0]["o"], json!(r#"{"k":[1,"x"]}"#));
}

#[test]
fn json_path_array_fills_a_multi_value_column() {
    // The seed schema's tags is a multi-value STRING column.
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let def = definition(
        table(
            json!({"transformConfigs": [{"columnName": "tags", "transformFunction": "jsonPathArray(payload, '$.labels[*].name')"}]}),
        ),
        schema,
    );
    let (rows, _) = ingest(
        &def,
        &[
            json!({"payload": {"labels": [{"name": "bug"}, {"name": "p1"}]}, "timestamp": TS}),
            json!({"payload": {"labels": []}, "timestamp": TS}),
        ],
    );
    assert_eq!(rows[0]["tags"], json!(["bug", "p1"]));
    // No label: an empty array, then the multi-value default ["null"].
    assert_eq!(rows[1]["tags"], json!(["null"]));
}

#[test]
fn aggregation_configs_are_named_as_not_applied() {
    // Pinot's dailySales example rolls rows up with aggregationConfigs; Shoal says it does not.
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).unwrap();
    let def = definition(
        table(
            json!({"aggregationConfigs": [{"columnName": "clicks", "aggregationFunction": "SUM(clicks)"}]}),
        ),
        schema,
    );
    assert!(
        def.warnings
            .iter()
            .any(|w| w.path == "ingestionConfig.aggregationConfigs" && w.message.contains("not applied")),
        "{:?}",
        def.warnings
    );
}

/// The transforms over whole records, as tables that unnest run them: the reference for the
/// path that reads each record once.
#[derive(Debug)]
struct WholeRecords(std::sync::Arc<super::IngestTransform>);

impl shoal_segment::RecordTransform for WholeRecords {
    fn apply(&self, records: &[(&[u8], RecordMeta<'_>)]) -> shoal_segment::Transformed {
        shoal_segment::RecordTransform::apply(self.0.as_ref(), records)
    }
}

#[test]
fn reading_each_record_once_makes_the_rows_whole_records_make() {
    use shoal_segment::{LayoutOptions, TableLayout};
    let schema = schema(
        json!([{"name": "user", "dataType": "STRING"}, {"name": "city", "dataType": "STRING"},
               {"name": "label", "dataType": "STRING"}, {"name": "kind", "dataType": "STRING"},
               {"name": "tags", "dataType": "STRING", "singleValueField": false},
               {"name": "flag", "dataType": "BOOLEAN"}, {"name": "qtext", "dataType": "STRING"},
               {"name": "payload.user.id", "dataType": "STRING"}, {"name": "doc", "dataType": "JSON"},
               {"name": "dtext", "dataType": "STRING"}]),
        json!([{"name": "clicks", "dataType": "LONG"}, {"name": "ratio", "dataType": "DOUBLE"},
               {"name": "qty", "dataType": "LONG"}]),
        "LONG",
    );
    let records: Vec<&str> = vec![
        r#"{"tsSec": 1700000000, "doc": 5, "rawCity": "lima", "kind": "human", "price": 2, "qty": 3, "payload": {"user": {"id": "u1"}, "labels": ["a", "b"]}, "first": "a", "second": 1}"#,
        // A value in the record is kept; text read as numbers; spaces inside the nested object.
        r#"{"tsSec": "1700000001", "rawCity": "oslo", "city": "Given", "price": "12", "qty": 3, "payload": { "user" : { "id" : "u 2" } , "labels" : [ ] }, "first": "x", "second": "y"}"#,
        // Missing qty; a float price; the payload as JSON text in a string.
        r#"{"tsSec": 1700000002, "rawCity": "kyoto", "price": 1.5, "payload": "{\"user\":{\"id\":\"s\"}}", "first": null}"#,
        // Filtered: a bot, and a huge order.
        r#"{"tsSec": 1700000003, "rawCity": "accra", "kind": "bot", "price": 1, "qty": 1}"#,
        r#"{"tsSec": 1700000004, "rawCity": "accra", "kind": "human", "price": 1, "qty": 500}"#,
        // A time that is no number; an integer past i64; a boolean where text is wanted.
        r#"{"tsSec": "soon", "rawCity": "x", "price": 18446744073709551615, "qty": 1, "kind": true}"#,
        // The time column given; nulls everywhere else; escapes in strings.
        r#"{"timestamp": 1700000005000, "tsSec": null, "rawCity": "caf\u00e9 \"q\"", "price": null, "payload": {"user": {"id": 7}}}"#,
        // Not a record.
        r#"{"tsSec": 1, "rawCity": "#,
        r#"[1, 2]"#,
        r#"{"tsSec": 1700000006, "rawCity": "lima", "price": 1e400}"#,
        r#"{"tsSec": 1700000007, "rawCity": "lima", "flagText": "true", "price": -0, "qty": 2.5e1}"#,
        // Nested values in computed columns: an array kept for an array, an object replaced.
        r#"{"tsSec": 1700000008, "rawCity": "lima", "city": {"a": 1}, "tags": ["keep"], "payload": {"labels": ["p"]}}"#,
        r#"{"tsSec": 1700000009, "city": ["a", "b"], "tags": ["x", "y"], "payload": {"labels": []}}"#,
        r#"{"tsSec": 1700000010, "rawCity": "rome", "city": ["one"], "label": ["kept?"], "first": "f"}"#,
    ];
    for continue_on_error in [false, true] {
        let def = definition(
            table(json!({
                "continueOnError": continue_on_error,
                "transformConfigs": [
                    {"columnName": "timestamp", "transformFunction": "fromEpochSeconds(tsSec)"},
                    {"columnName": "city", "transformFunction": "upper(rawCity)"},
                    {"columnName": "user", "transformFunction": "jsonPathString(payload, '$.user.id')"},
                    {"columnName": "tags", "transformFunction": "jsonPathArray(payload, '$.labels[*]')"},
                    {"columnName": "clicks", "transformFunction": "price * qty"},
                    {"columnName": "ratio", "transformFunction": "price / 4"},
                    {"columnName": "label", "transformFunction": "concat(first, '-', second)"},
                    {"columnName": "flag", "transformFunction": "flagText"},
                    // qty is a schema column: an integer stays one ("3", not "3.0").
                    {"columnName": "qtext", "transformFunction": "concat(qty, '')"},
                    // doc is a JSON column holding a number.
                    {"columnName": "dtext", "transformFunction": "concat(doc, '')"}
                ],
                // Flattening on: payload is read whole by a transform and flattened into
                // payload.user.id too.
                "complexTypeConfig": {"delimiter": "."},
                "filterConfig": {"filterFunction": "strcmp(kind, 'bot') = 0 OR qty > 100"}
            })),
            schema.clone(),
        );
        let transform = def.transform.clone().expect("transforms");
        assert!(shoal_segment::RecordTransform::values(transform.as_ref()).is_some());
        let once = layout_of(&def);
        let mut options = LayoutOptions {
            time_column: Some("timestamp".into()),
            flatten_delimiter: Some(".".into()),
            continue_on_error,
            ..Default::default()
        };
        options.transform = Some(std::sync::Arc::new(WholeRecords(transform)));
        let whole = std::sync::Arc::new(TableLayout::new(std::sync::Arc::clone(&def.schema), &options));
        let run = |layout| {
            let segment = MutableSegment::new(layout);
            let outcome = segment.append(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
            let snapshot = segment.snapshot();
            let mut rows = Vec::new();
            for batch in &snapshot.batches {
                for row in 0..batch.num_rows() {
                    let cells: Vec<Value> =
                        batch.columns().iter().map(|c| super::expr::json_value(c, row)).collect();
                    rows.push(cells);
                }
            }
            (rows, outcome)
        };
        let (rows_once, outcome_once) = run(once);
        let (rows_whole, outcome_whole) = run(whole);
        assert_eq!(rows_once, rows_whole, "continueOnError {continue_on_error}");
        assert_eq!(
            (outcome_once.rows, outcome_once.dropped, outcome_once.filtered, outcome_once.incomplete),
            (outcome_whole.rows, outcome_whole.dropped, outcome_whole.filtered, outcome_whole.incomplete),
            "continueOnError {continue_on_error}: {outcome_once:?} / {outcome_whole:?}"
        );
        assert_eq!(outcome_once.drops.counts, outcome_whole.drops.counts);
        // Kept: the first three, the one with its own time and the last three; with continueOnError
        // also "soon" (its clicks past LONG become the default). Dropped: that one without it,
        // the truncated record, the array and 1e400.
        let (rows, dropped) = if continue_on_error { (9, 3) } else { (8, 4) };
        assert_eq!((outcome_once.rows, outcome_once.dropped, outcome_once.filtered), (rows, dropped, 2));
        let names: Vec<String> = def.schema.fields.iter().map(|f| f.name.clone()).collect();
        let column = |name: &str| names.iter().position(|n| n == name).unwrap();
        assert_eq!(rows_once[0][column("qtext")], json!("3"));
        assert_eq!(rows_once[0][column("dtext")], json!("5"));
        assert_eq!(rows_once[0][column("payload.user.id")], json!("u1"));
    }
}

#[test]
fn pinots_array_functions_take_a_records_arrays() {
    // Pinot's ArrayFunctions on a record's arrays (they reach the functions as JSON text).
    let def = definition(
        table(json!({"transformConfigs": [
            {"columnName": "label", "transformFunction": "arrayToString(arrayDistinctString(rawTags), ',')"},
            {"columnName": "has", "transformFunction": "arrayContainsString(rawTags, 'b')"},
            {"columnName": "first", "transformFunction": "arrayElementAtInt(nums, 1)"},
            {"columnName": "beyond", "transformFunction": "arrayElementAtInt(nums, 9)"},
            {"columnName": "total", "transformFunction": "arraySumInt(nums)"},
            {"columnName": "tags", "transformFunction": "arraySortInt(nums)"},
            {"columnName": "count", "transformFunction": "cardinality(rawTags)"},
            {"columnName": "sliced", "transformFunction": "arrayToString(arraySliceString(rawTags, 1, 4), '|')"},
            {"columnName": "parts", "transformFunction": "arrayToString(split(csv, ','), '+')"},
            {"columnName": "floats", "transformFunction": "arrayToString(vals, ',')"}
        ]})),
        schema(
            json!([{"name": "label", "dataType": "STRING"}, {"name": "has", "dataType": "BOOLEAN"},
                   {"name": "tags", "dataType": "STRING", "singleValueField": false},
                   {"name": "sliced", "dataType": "STRING"}, {"name": "parts", "dataType": "STRING"},
                   {"name": "floats", "dataType": "STRING"}]),
            json!([{"name": "first", "dataType": "INT"}, {"name": "beyond", "dataType": "INT"},
                   {"name": "total", "dataType": "INT"}, {"name": "count", "dataType": "INT"}]),
            "LONG",
        ),
    );
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"rawTags": ["a", "b", "a"], "nums": [3, 1, " 2 "], "csv": "x,,y", "vals": [1.5, 2.0, 1e21], "timestamp": TS}),
            // "x" is no INT: the record is dropped (Pinot fails the call).
            json!({"rawTags": ["c"], "nums": ["x"], "csv": "z", "timestamp": TS}),
        ],
    );
    assert_eq!((outcome.rows, outcome.dropped), (1, 1), "{outcome:?}");
    let reasons: Vec<&str> = outcome.drops.counts.keys().map(|r| r.name()).collect();
    assert_eq!(reasons, ["transform_failed"]);
    let row = &rows[0];
    assert_eq!(row["label"], json!("a,b"));
    assert_eq!(row["has"], json!(true));
    assert_eq!(row["first"], json!(3));
    // Past the end: Pinot's placeholder, 0.
    assert_eq!(row["beyond"], json!(0));
    assert_eq!(row["total"], json!(6));
    assert_eq!(row["tags"], json!(["1", "2", "3"]));
    assert_eq!(row["count"], json!(3));
    // From 0, end excluded, padded with null past the end; null joins as "null".
    assert_eq!(row["sliced"], json!("b|a|null"));
    // commons-lang splitByWholeSeparator: no empty tokens.
    assert_eq!(row["parts"], json!("x+y"));
    // Numbers as Java's Double.toString writes them.
    assert_eq!(row["floats"], json!("1.5,2.0,1.0E21"));
}

#[test]
fn a_nested_value_in_a_computed_column_gives_way_as_in_pinot() {
    // pinot-segment-local ExpressionTransformer: a column already holding an array or an object
    // is computed anyway; the result replaces it (null too) unless it is of the same kind (an
    // array for an array); a failure there keeps the value and does not fail the row. A scalar
    // already there is kept.
    let def = definition(
        table(json!({"transformConfigs": [
            {"columnName": "tags", "transformFunction": "jsonPathArray(payload, '$.labels[*]')"},
            {"columnName": "city", "transformFunction": "upper(rawCity)"}
        ]})),
        schema(
            json!([{"name": "tags", "dataType": "STRING", "singleValueField": false},
                   {"name": "city", "dataType": "STRING"}]),
            json!([]),
            "LONG",
        ),
    );
    let (rows, outcome) = ingest(
        &def,
        &[
            json!({"tags": ["x"], "city": {"a": 1}, "rawCity": "lima", "payload": {"labels": ["p", "q"]}, "timestamp": TS}),
            json!({"tags": ["x", "y"], "city": ["a", "b"], "payload": {"labels": []}, "timestamp": TS}),
            json!({"tags": "solo", "city": "Given", "rawCity": "oslo", "payload": {"labels": ["r"]}, "timestamp": TS}),
            json!({"city": {"a": 1}, "rawCity": [1], "timestamp": TS}),
            json!({"city": ["x"], "rawCity": "rome", "timestamp": TS}),
        ],
    );
    assert_eq!((outcome.rows, outcome.dropped, outcome.incomplete), (5, 0, 0), "{outcome:?}");
    // An array for an array: the record's kept. An object and an array give way to text.
    assert_eq!(rows[0]["tags"], json!(["x"]));
    assert_eq!(rows[0]["city"], json!("LIMA"));
    // Kept again; no rawCity: upper(null) is null, which replaces the array (then the default).
    assert_eq!(rows[1]["tags"], json!(["x", "y"]));
    assert_eq!(rows[1]["city"], json!("null"));
    // Scalars are kept (a one-value multi-value field is one).
    assert_eq!(rows[2]["tags"], json!(["solo"]));
    assert_eq!(rows[2]["city"], json!("Given"));
    // A one-item array in a single-value column is an array too: it gives way.
    assert_eq!(rows[4]["city"], json!("ROME"));
    // upper of an array's text: the object gives way to it.
    assert_eq!(rows[3]["city"], json!("[1]"));
}

#[test]
fn a_json_path_read_while_reading_fails_as_the_function_does() {
    // jsonPathString(payload, '$.user.id') is computed while the chunk is read; text that is
    // not JSON fails it as it fails Pinot's function: the record is dropped, or kept
    // incomplete with continueOnError.
    for continue_on_error in [false, true] {
        let def = definition(
            table(json!({"continueOnError": continue_on_error, "transformConfigs": [
                {"columnName": "user", "transformFunction": "jsonPathString(payload, '$.user.id')"}
            ]})),
            schema(json!([{"name": "user", "dataType": "STRING"}]), json!([]), "LONG"),
        );
        let (rows, outcome) = ingest(
            &def,
            &[
                json!({"payload": "{not json", "timestamp": TS}),
                json!({"payload": "{\"user\": {\"id\": 7}}", "timestamp": TS}),
                json!({"payload": {"user": {"id": 1.50}}, "timestamp": TS}),
                json!({"payload": 5, "timestamp": TS}),
            ],
        );
        let users: Vec<&Value> = rows.iter().map(|r| &r["user"]).collect();
        if continue_on_error {
            assert_eq!((outcome.rows, outcome.incomplete), (4, 1), "{outcome:?}");
            assert_eq!(users, [&json!("null"), &json!("7"), &json!("1.5"), &json!("null")]);
        } else {
            assert_eq!((outcome.rows, outcome.dropped), (3, 1), "{outcome:?}");
            let sample = &outcome.drops.samples.values().next().unwrap()[0].message;
            assert!(sample.contains("is not JSON"), "{sample}");
            // JSON text in a string is read; a number has no fields; 1.50 is Java's 1.5.
            assert_eq!(users, [&json!("7"), &json!("1.5"), &json!("null")]);
        }
    }
}

#[test]
fn a_json_path_over_a_computed_field_reads_the_computed_value() {
    // doc is made by a transform: jsonPathString(doc, ...) reads the made value, not the record.
    let def = definition(
        table(json!({"transformConfigs": [
            {"columnName": "doc", "transformFunction": "lower(raw)"},
            {"columnName": "user", "transformFunction": "jsonPathString(doc, '$.a')"}
        ]})),
        schema(
            json!([{"name": "user", "dataType": "STRING"}, {"name": "doc", "dataType": "STRING"}]),
            json!([]),
            "LONG",
        ),
    );
    let (rows, outcome) = ingest(&def, &[json!({"raw": "{\"A\": \"X\"}", "timestamp": TS})]);
    assert_eq!(outcome.rows, 1, "{outcome:?}");
    assert_eq!(rows[0]["user"], json!("x"));
}
