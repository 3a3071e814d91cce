use super::*;
use serde_json::json;
use shoal_segment::FlushLimit;
use shoal_stream::StartPosition;

/// The table config of Pinot's "Import from Amazon Kinesis" page (pinot-import-from-kinesis.md),
/// copied verbatim into the file, placeholders and all.
const SEED_CONFIG: &str = include_str!("../../examples/config/kinesisTable.table.json");

/// The seed's `secretKey`, which must never show.
const SEED_SECRET: &str = "<your secret key>";

fn seed_config() -> Value {
    serde_json::from_str(SEED_CONFIG).expect("the seed page's config is JSON")
}

/// The seed config with real-looking credentials, for the tests about masking.
fn seed_config_with_credentials() -> Value {
    let mut t = seed_config();
    t["tableIndexConfig"]["streamConfigs"]["accessKey"] = json!("AKIAIOSFODNN7EXAMPLE");
    t["tableIndexConfig"]["streamConfigs"]["secretKey"] = json!("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    t
}

/// A schema for the seed config (the page gives none).
fn seed_schema() -> Value {
    serde_json::from_str(include_str!("../../examples/config/kinesisTable.schema.json")).expect("JSON")
}

const STREAMS: &str = "tableIndexConfig.streamConfigs";

fn warning_paths(def: &TableDefinition) -> Vec<&str> {
    def.warnings.iter().map(|w| w.path.as_str()).collect()
}

/// The seed page's config runs as written: its AFTER_SEQUENCE_NUMBER without sequence numbers
/// starts where Pinot starts a new table (KinesisStreamMetadataProvider: each shard's oldest
/// retained record), with a warning; its placeholders are accepted as strings, with warnings.
#[test]
fn the_seed_config_runs_as_written() {
    let def = TableDefinition::from_json(&seed_config(), &seed_schema()).unwrap();
    let c = &def.config;
    assert_eq!(c.name, "kinesisTable");
    assert_eq!(c.segments.time_column, "timestamp");
    assert_eq!(c.stream.path, STREAMS);
    assert_eq!(c.stream.kinesis.as_ref().unwrap().stream_name, "<your kinesis stream name>");
    assert_eq!(c.stream.kinesis.as_ref().unwrap().region, "<your region>");
    assert_eq!(
        c.stream.kinesis.as_ref().unwrap().credentials.as_ref().unwrap().secret_key.expose(),
        SEED_SECRET
    );
    assert_eq!(c.stream.kinesis.as_ref().unwrap().fetch_timeout, Duration::from_secs(30));
    assert_eq!(c.stream.kinesis.as_ref().unwrap().max_records_to_fetch, 10_000);
    assert_eq!(c.stream.kinesis.as_ref().unwrap().start, StartPosition::TrimHorizon);
    assert_eq!(c.stream.flush.limit, FlushLimit::TableRows(1_000_000));
    assert_eq!(c.stream.flush.time, Duration::from_secs(6 * 3600));
    assert_eq!(c.metadata["customConfigs"], json!({}));
    let start_warning = def
        .warnings
        .iter()
        .find(|w| w.path == format!("{STREAMS}.shardIteratorType"))
        .expect("a warning about the start");
    assert!(start_warning.message.contains("TRIM_HORIZON"), "{start_warning}");
    assert!(start_warning.message.contains("shardIteratorSequenceNumbers"), "{start_warning}");
    let placeholders =
        ["stream.kinesis.topic.name", "region", "accessKey", "secretKey"].map(|k| format!("{STREAMS}.{k}"));
    for p in &placeholders {
        assert!(
            warning_paths(&def).contains(&p.as_str()),
            "no placeholder warning at {p}: {:?}",
            def.warnings
        );
    }
    assert_eq!(def.warnings.len(), 1 + placeholders.len(), "{:?}", def.warnings);
    assert!(!format!("{:?}", def.warnings).contains(SEED_SECRET));
    // The normalised config shows the effective start; unknown keys (tenants, loadMode) are kept.
    let out = c.normalised_json();
    assert_eq!(out["tableIndexConfig"]["streamConfigs"]["shardIteratorType"], json!("TRIM_HORIZON"));
    assert_eq!(out["tenants"], json!({}));
    assert_eq!(out["tableIndexConfig"]["loadMode"], json!("MMAP"));
    assert_eq!(out["tableIndexConfig"]["streamConfigs"]["maxRecordsToFetch"], json!("10000"));
}

/// Validates the seed with its stream settings changed (None removes a key).
fn seed_with(settings: &[(&str, Option<&str>)]) -> Result<TableDefinition, ConfigError> {
    let mut table = seed_config();
    let m = streams(&mut table);
    for (key, value) in settings {
        match value {
            Some(v) => m.insert(key.to_string(), json!(v)),
            None => m.remove(*key),
        };
    }
    TableDefinition::from_json(&table, &seed_schema())
}

const RESET: &str = "stream.kinesis.consumer.prop.auto.offset.reset";
const ITERATOR: &str = "shardIteratorType";

/// Pinot's offset criteria (pinot-spi OffsetCriteria.withOffsetString), each form; expected
/// times computed by hand.
#[test]
fn auto_offset_reset_decides_when_shard_iterator_type_is_unset() {
    let cases = [
        ("smallest", StartPosition::TrimHorizon),
        ("SMALLEST", StartPosition::TrimHorizon),
        ("largest", StartPosition::Latest),
        ("Largest", StartPosition::Latest),
        ("10d", StartPosition::Period { millis: 10 * 86_400_000 }),
        ("4h30m", StartPosition::Period { millis: (4 * 60 + 30) * 60_000 }),
        ("2022-08-09T12:31:38.222Z", StartPosition::AtTimestamp { millis: 1_660_048_298_222 }),
        // Pinot's own pattern yyyy-MM-dd'T'HH:mm:ss.SSSZ writes the zone as +0000.
        ("2022-08-09T12:31:38.222+0000", StartPosition::AtTimestamp { millis: 1_660_048_298_222 }),
        ("2022-08-09T14:31:38.222+02:00", StartPosition::AtTimestamp { millis: 1_660_048_298_222 }),
    ];
    for (reset, expected) in cases {
        let def = seed_with(&[(ITERATOR, None), (RESET, Some(reset))]).unwrap();
        assert_eq!(def.config.stream.kinesis.as_ref().unwrap().start, expected, "{reset}");
        assert!(
            def.warnings
                .iter()
                .all(|w| w.path != format!("{STREAMS}.{RESET}") && w.path != format!("{STREAMS}.{ITERATOR}")),
            "{reset}: {:?}",
            def.warnings
        );
        // The normalised config reads back to the same start.
        let out = def.config.normalised_json();
        let again = TableDefinition::from_json(&out, &seed_schema()).unwrap();
        assert_eq!(
            again.config.stream.kinesis.as_ref().unwrap().start,
            expected,
            "{reset} normalised: {out}"
        );
    }
    let periodic = seed_with(&[(ITERATOR, None), (RESET, Some("4h30m"))]).unwrap().config.normalised_json();
    assert_eq!(periodic["tableIndexConfig"]["streamConfigs"][RESET], json!("270m"));
    // Neither key: LATEST, Shoal's documented default.
    let def = seed_with(&[(ITERATOR, None)]).unwrap();
    assert_eq!(def.config.stream.kinesis.as_ref().unwrap().start, StartPosition::Latest);
    assert_eq!(def.config.normalised_json()["tableIndexConfig"]["streamConfigs"][ITERATOR], json!("LATEST"));
}

#[test]
fn a_bad_auto_offset_reset_names_its_key_and_the_accepted_forms() {
    for bad in ["earliest", "30000", "-1d", "10 days", "2022-13-09T12:31:38.222Z", "none"] {
        for iterator in [None, Some("LATEST")] {
            let err = seed_with(&[(ITERATOR, iterator), (RESET, Some(bad))]).unwrap_err();
            let paths: Vec<_> = err.table.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(paths, [format!("{STREAMS}.{RESET}")], "{bad}");
            let message = &err.table[0].message;
            for form in ["smallest", "largest", "10d", "2022-08-09T12:31:38.222Z"] {
                assert!(message.contains(form), "{bad}: {message}");
            }
        }
    }
}

/// An explicit shardIteratorType (AT_/AFTER_SEQUENCE_NUMBER only with numbers) wins over
/// auto.offset.reset; when they disagree a warning names both keys.
#[test]
fn an_explicit_shard_iterator_type_wins_and_a_disagreement_is_a_warning() {
    const NUMBERS: &str = "shardIteratorSequenceNumbers";
    let seq = "49590338271490256608559692538361571095921575989136588898";
    let numbers = format!("shardId-000000000000={seq}");
    let after = |shards: &str| {
        let (shard, n) = shards.split_once('=').unwrap();
        StartPosition::AfterSequenceNumber {
            shards: [(shard.to_string(), shoal_stream::SequenceNumber::parse(n).unwrap())].into(),
        }
    };
    /// (shardIteratorType, its extra key and value, auto.offset.reset, expected start, warned)
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str, StartPosition, bool);
    let cases: Vec<Case> = vec![
        ("LATEST", None, "largest", StartPosition::Latest, false),
        ("LATEST", None, "smallest", StartPosition::Latest, true),
        ("TRIM_HORIZON", None, "largest", StartPosition::TrimHorizon, true),
        ("TRIM_HORIZON", None, "smallest", StartPosition::TrimHorizon, false),
        ("TRIM_HORIZON", None, "1d", StartPosition::TrimHorizon, true),
        (
            "AT_TIMESTAMP",
            Some(("shardIteratorTimestamp", "2022-08-09T12:31:38.222Z")),
            "2022-08-09T12:31:38.222Z",
            StartPosition::AtTimestamp { millis: 1_660_048_298_222 },
            false,
        ),
        (
            "AT_TIMESTAMP",
            Some(("shardIteratorTimestamp", "1660048298222")),
            "smallest",
            StartPosition::AtTimestamp { millis: 1_660_048_298_222 },
            true,
        ),
        ("AFTER_SEQUENCE_NUMBER", Some((NUMBERS, &numbers)), "smallest", after(&numbers), true),
    ];
    for (iterator, extra, reset, expected, disagree) in cases {
        let mut settings = vec![(ITERATOR, Some(iterator)), (RESET, Some(reset))];
        settings.extend(extra.map(|(k, v)| (k, Some(v))));
        let def = seed_with(&settings).unwrap();
        assert_eq!(def.config.stream.kinesis.as_ref().unwrap().start, expected, "{iterator} with {reset}");
        let warned: Vec<_> = def.warnings.iter().filter(|w| w.path == format!("{STREAMS}.{RESET}")).collect();
        assert_eq!(warned.len(), usize::from(disagree), "{iterator} with {reset}: {:?}", def.warnings);
        for w in warned {
            assert!(w.message.contains(ITERATOR) && w.message.contains(RESET), "{w}");
        }
        assert!(
            !warning_paths(&def).contains(&format!("{STREAMS}.{ITERATOR}").as_str()),
            "{:?}",
            def.warnings
        );
    }
    // Without sequence numbers, AT_/AFTER_SEQUENCE_NUMBER gives way to auto.offset.reset,
    // still with the warning about the missing numbers.
    for iterator in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"] {
        for (reset, expected) in [
            (None, StartPosition::TrimHorizon),
            (Some("largest"), StartPosition::Latest),
            (Some("2d"), StartPosition::Period { millis: 2 * 86_400_000 }),
        ] {
            let def = seed_with(&[(ITERATOR, Some(iterator)), (RESET, reset)]).unwrap();
            assert_eq!(
                def.config.stream.kinesis.as_ref().unwrap().start,
                expected,
                "{iterator} with {reset:?}"
            );
            let warning = def.warnings.iter().find(|w| w.path == format!("{STREAMS}.{ITERATOR}"));
            let warning = warning.unwrap_or_else(|| panic!("{iterator} with {reset:?}: {:?}", def.warnings));
            assert!(warning.message.contains(NUMBERS), "{warning}");
            if reset.is_some() {
                assert!(warning.message.contains(RESET), "{warning}");
            }
        }
    }
}

#[test]
fn the_stream_config_maps_form_parses() {
    let table: Value =
        serde_json::from_str(include_str!("../../examples/config/events.streamConfigMaps.table.json"))
            .unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("../../examples/config/events.schema.json")).unwrap();
    let def = TableDefinition::from_json(&table, &schema).unwrap();
    let c = &def.config;
    assert_eq!(c.name, "events");
    assert_eq!(c.stream.path, "ingestionConfig.streamIngestionConfig.streamConfigMaps[0]");
    assert_eq!(c.stream.kinesis.as_ref().unwrap().max_records_to_fetch, 5000);
    assert_eq!(c.stream.kinesis.as_ref().unwrap().requests_per_second, 2.0);
    assert_eq!(c.stream.flush.limit, FlushLimit::SegmentSize(100 << 20));
    assert_eq!(c.stream.flush.time, Duration::from_secs(1800));
    assert_eq!(c.sorted_column.as_deref(), Some("country"));
    assert!(c.ingestion.continue_on_error);
    assert_eq!(c.ingestion.complex_type.as_ref().unwrap().delimiter, ".");
    let out = c.normalised_json();
    assert_eq!(
        out["ingestionConfig"]["streamIngestionConfig"]["streamConfigMaps"][0]["realtime.segment.flush.threshold.segment.size"],
        json!("100M")
    );
}

#[test]
fn the_shipped_example_validates() {
    let table = include_str!("../../examples/config/events.table.json");
    let schema = include_str!("../../examples/config/events.schema.json");
    let def = TableDefinition::from_json_str(table, schema).unwrap();
    assert_eq!(def.config.segments.retention, Some(Duration::from_secs(7 * 86_400)));
}

#[test]
fn secrets_never_show() {
    let mut table = seed_config_with_credentials();
    table["tableIndexConfig"]["streamConfigs"]["sessionToken"] = json!("FwoGZXIvYXdzTOKEN");
    table["metadata"]["customConfigs"]["db.password"] = json!("hunter2");
    let def = TableDefinition::from_json(&table, &seed_schema()).unwrap();
    let shown = format!("{def:?}\n{}\n{:#?}", def.config.normalised_json(), def.config);
    for secret in ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdzTOKEN", "hunter2"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(shown.contains("***"));
    // The original is kept for persistence.
    assert_eq!(def.config.original_json()["metadata"]["customConfigs"]["db.password"], json!("hunter2"));
}

/// Secret values placed off the stream map, each where a review found one shown in clear.
const SCATTERED_SECRETS: [&str; 9] = [
    "cc-apikey-5d1e",
    "cc-smtp-pwd-7a20",
    "cc-bearer-9c44",
    "nested-user-31f0",
    "nested-pass-4be2",
    "nested-port-5521",
    "array-apikey-8e6d",
    "array-sas-0f93",
    "top-apikey-66ab",
];

/// The seed config with secrets in `metadata.customConfigs`, in a nested credentials object,
/// in a list of objects and at the top, beside look-alike keys that are no secret.
fn config_with_scattered_secrets() -> Value {
    let mut t = seed_config_with_credentials();
    t["tableIndexConfig"]["sortedColumn"] = json!(["country"]);
    t["metadata"]["customConfigs"] = json!({
        "apiKey": "cc-apikey-5d1e",
        "smtp_password": "cc-smtp-pwd-7a20",
        "auth.header": "cc-bearer-9c44",
        "partitionKey": "visible-partition-key",
        "owner": "visible-owner",
    });
    t["exports"] = json!({
        "db.credentials": {"user": "nested-user-31f0", "pass": "nested-pass-4be2", "port": "nested-port-5521"},
        "targets": [
            {"name": "visible-warehouse", "apiKey": "array-apikey-8e6d"},
            {"name": "visible-lake", "sasToken": "array-sas-0f93"},
        ],
        "keyColumn": "visible-key-column",
    });
    t["apiKey"] = json!("top-apikey-66ab");
    t
}

/// A schema for [`config_with_scattered_secrets`]: the seed's, with a `country` column to sort on.
fn schema_with_country() -> Value {
    let mut s = seed_schema();
    s["dimensionFieldSpecs"].as_array_mut().unwrap().push(json!({"name": "country", "dataType": "STRING"}));
    s
}

#[test]
fn secrets_anywhere_in_the_config_never_show() {
    let table = config_with_scattered_secrets();
    let def = TableDefinition::from_json(&table, &schema_with_country()).unwrap();
    let out = def.config.normalised_json();
    let shown = format!("{out}\n{def:?}\n{def:#?}\n{:?}", def.warnings);
    for secret in SCATTERED_SECRETS.iter().chain(&["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI"]) {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    // Look-alikes stay readable, in the output and in the typed config.
    for visible in [
        "visible-partition-key",
        "visible-owner",
        "visible-warehouse",
        "visible-lake",
        "visible-key-column",
        "<your kinesis stream name>",
        "org.apache.pinot.plugin.stream.kinesis.KinesisConsumerFactory",
    ] {
        assert!(out.to_string().contains(visible), "{visible} masked: {out}");
    }
    assert_eq!(out["tableIndexConfig"]["sortedColumn"], json!(["country"]));
    assert_eq!(out["exports"]["db.credentials"], json!({"user": "***", "pass": "***", "port": "***"}));
    assert_eq!(out["exports"]["targets"][1], json!({"name": "visible-lake", "sasToken": "***"}));
    assert_eq!(def.config.sorted_column.as_deref(), Some("country"));
    assert_eq!(def.config.metadata["customConfigs"]["partitionKey"], json!("visible-partition-key"));
    // The persisted document keeps every value, so that the table can reconnect.
    assert_eq!(def.config.original_json(), &table);

    // A refused config does not show them either.
    let mut broken = config_with_scattered_secrets();
    streams(&mut broken).remove("region");
    let err = TableDefinition::from_json(&broken, &schema_with_country()).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    for secret in SCATTERED_SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

/// Applies `edit` to the seed config and schema and returns the reported paths.
fn problems_after(edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<String> {
    let (mut table, mut schema) = (seed_config_with_credentials(), seed_schema());
    edit(&mut table, &mut schema);
    let err = TableDefinition::from_json(&table, &schema).expect_err("should be refused");
    assert!(!err.to_string().contains("wJalrXUtnFEMI"));
    err.table
        .iter()
        .map(|p| p.path.clone())
        .chain(err.schema.iter().map(|p| format!("schema:{}", p.path)))
        .collect()
}

fn streams(t: &mut Value) -> &mut Map<String, Value> {
    t["tableIndexConfig"]["streamConfigs"].as_object_mut().unwrap()
}

#[test]
fn broken_configs_name_their_key_paths() {
    type Edit = Box<dyn FnOnce(&mut Value, &mut Value)>;
    let cases: Vec<(Edit, Vec<&str>)> = vec![
        (
            Box::new(|t, _| {
                streams(t).remove("region");
            }),
            vec!["tableIndexConfig.streamConfigs.region"],
        ),
        (
            Box::new(|t, _| {
                streams(t).remove("stream.kinesis.topic.name");
            }),
            vec!["tableIndexConfig.streamConfigs.stream.kinesis.topic.name"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("streamType".into(), json!("kafka"));
            }),
            vec!["tableIndexConfig.streamConfigs.streamType"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("shardIteratorType".into(), json!("EARLIEST"));
            }),
            vec!["tableIndexConfig.streamConfigs.shardIteratorType"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("realtime.segment.flush.threshold.time".into(), json!("6 hours"));
            }),
            vec!["tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.time"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("realtime.segment.flush.threshold.segment.size".into(), json!("lots"));
            }),
            vec!["tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.segment.size"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("maxRecordsToFetch".into(), json!("20000"));
            }),
            vec!["tableIndexConfig.streamConfigs.maxRecordsToFetch"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("requests_per_second_limit".into(), json!("-1"));
            }),
            vec!["tableIndexConfig.streamConfigs.requests_per_second_limit"],
        ),
        (
            Box::new(|t, _| {
                streams(t).remove("secretKey");
            }),
            vec!["tableIndexConfig.streamConfigs.secretKey"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert(
                    "stream.kinesis.decoder.class.name".into(),
                    json!("org.apache.pinot.plugin.inputformat.avro.AvroMessageDecoder"),
                );
            }),
            vec!["tableIndexConfig.streamConfigs.stream.kinesis.decoder.class.name"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("iamRoleBasedAccessEnabled".into(), json!("true"));
            }),
            vec!["tableIndexConfig.streamConfigs.roleArn"],
        ),
        (
            Box::new(|t, _| {
                t["tableType"] = json!("OFFLINE");
            }),
            vec!["tableType"],
        ),
        (
            Box::new(|t, _| {
                t.as_object_mut().unwrap().remove("tableName");
            }),
            vec!["tableName"],
        ),
        (
            Box::new(|t, _| {
                t["segmentsConfig"]["timeColumnName"] = json!("ts");
            }),
            vec!["segmentsConfig.timeColumnName"],
        ),
        (
            Box::new(|t, _| {
                t["segmentsConfig"]["timeColumnName"] = json!("user");
            }),
            vec!["segmentsConfig.timeColumnName"],
        ),
        (
            Box::new(|t, _| {
                t["segmentsConfig"]["retentionTimeUnit"] = json!("WEEKS");
                t["segmentsConfig"]["retentionTimeValue"] = json!("2");
            }),
            vec!["segmentsConfig.retentionTimeUnit"],
        ),
        (
            Box::new(|t, _| {
                t["tableIndexConfig"]["sortedColumn"] = json!(["nope"]);
            }),
            vec!["tableIndexConfig.sortedColumn"],
        ),
        (
            Box::new(|t, _| {
                t["tableIndexConfig"]["sortedColumn"] = json!([5]);
            }),
            vec!["tableIndexConfig.sortedColumn[0]"],
        ),
        (
            Box::new(|_, s| {
                s["schemaName"] = json!("other");
            }),
            vec!["tableName"],
        ),
        (
            Box::new(|_, s| {
                s["primaryKeyColumns"] = json!(["missing"]);
            }),
            vec!["schema:primaryKeyColumns[0]"],
        ),
        (
            Box::new(|_, s| {
                s["dimensionFieldSpecs"][0]["dataType"] = json!("TEXT");
            }),
            vec!["schema:dimensionFieldSpecs[0].dataType"],
        ),
        (
            Box::new(|_, s| {
                s["dateTimeFieldSpecs"][0]["format"] = json!("1:MILLISECONDS:EPOCHS");
            }),
            vec!["schema:dateTimeFieldSpecs[0].format"],
        ),
        (
            Box::new(|t, _| {
                t["ingestionConfig"] =
                    json!({"streamIngestionConfig": {"streamConfigMaps": [{"streamType": "kinesis"}]}});
            }),
            vec![
                "tableIndexConfig.streamConfigs",
                "ingestionConfig.streamIngestionConfig.streamConfigMaps[0].stream.kinesis.topic.name",
                "ingestionConfig.streamIngestionConfig.streamConfigMaps[0].region",
                "ingestionConfig.streamIngestionConfig.streamConfigMaps[0].stream.kinesis.decoder.class.name",
            ],
        ),
        (
            Box::new(|t, _| {
                t["segmentsConfig"] = json!("timestamp");
            }),
            vec!["segmentsConfig"],
        ),
        (
            Box::new(|t, _| {
                streams(t).insert("region".into(), json!(["us-east-1"]));
            }),
            // Reported once: as the wrong type, not again as missing.
            vec!["tableIndexConfig.streamConfigs.region"],
        ),
    ];
    assert!(cases.len() >= 12);
    for (i, (edit, expected)) in cases.into_iter().enumerate() {
        let got = problems_after(edit);
        assert_eq!(got, expected, "case {i}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = problems_after(|t, s| {
        let m = streams(t);
        m.remove("region");
        m.insert("maxRecordsToFetch".into(), json!("lots"));
        m.insert("realtime.segment.flush.threshold.time".into(), json!("soon"));
        t["tableType"] = json!("HYBRID");
        s["metricFieldSpecs"][0]["dataType"] = json!("STRING");
    });
    assert_eq!(got.len(), 5, "{got:?}");
}

#[test]
fn not_json_is_reported_per_file() {
    let err = TableDefinition::from_json_str("{", "[]").unwrap_err();
    assert_eq!(err.table[0].path, "(document)");
    assert_eq!(err.schema[0].path, "(document)");
}

/// Which document a key path is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    Table,
    Schema,
}

/// One step of a key path.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every key path in `v`, parents before children.
fn key_paths(v: &Value, prefix: &[Step], out: &mut Vec<Vec<Step>>) {
    let children: Vec<(Step, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (Step::Key(k.clone()), c)).collect(),
        Value::Array(items) => items.iter().enumerate().map(|(i, c)| (Step::Index(i), c)).collect(),
        _ => Vec::new(),
    };
    for (step, child) in children {
        let mut path = prefix.to_vec();
        path.push(step);
        out.push(path.clone());
        key_paths(child, &path, out);
    }
}

/// The path as validation writes it: `a.b[0].c`, prefixed with its document.
fn dotted(doc: Doc, path: &[Step]) -> String {
    let mut s = qualified(doc, "");
    for (i, step) in path.iter().enumerate() {
        match step {
            Step::Key(k) if i == 0 => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(n) => s.push_str(&format!("[{n}]")),
        }
    }
    s
}

fn qualified(doc: Doc, path: &str) -> String {
    format!("{}:{path}", if doc == Doc::Table { "table" } else { "schema" })
}

fn value_at<'a>(doc: &'a Value, path: &[Step]) -> &'a Value {
    path.iter().fold(doc, |at, step| match step {
        Step::Key(k) => &at[k.as_str()],
        Step::Index(i) => &at[*i],
    })
}

/// A copy of `doc` with the value at `path` replaced, or removed when `value` is None.
fn changed(doc: &Value, path: &[Step], value: Option<Value>) -> Value {
    let mut out = doc.clone();
    let (last, parent) = path.split_last().expect("a key path is never empty");
    let mut at = &mut out;
    for step in parent {
        at = match step {
            Step::Key(k) => &mut at[k.as_str()],
            Step::Index(i) => &mut at[*i],
        };
    }
    match (last, value) {
        (Step::Key(k), Some(v)) => at[k.as_str()] = v,
        (Step::Key(k), None) => {
            at.as_object_mut().expect("a key's parent is an object").remove(k);
        }
        (Step::Index(i), Some(v)) => at[*i] = v,
        (Step::Index(_), None) => unreachable!("array elements are never removed"),
    }
    out
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a parsed definition means: its typed settings, without the raw JSON it keeps.
fn meaning(d: &TableDefinition) -> String {
    let c = &d.config;
    format!(
        "{} {} {:?} {:?} {:?} {:?} {:?} | {} {:?} {:?} {}",
        c.name,
        Value::Object(c.stream.normalised()),
        c.segments,
        c.sorted_column,
        c.ingestion,
        c.upsert,
        c.metadata,
        d.schema.name,
        d.schema.fields,
        d.schema.primary_key_columns,
        d.schema.null_handling
    )
}

/// Validates, never panicking; a refusal comes back as its problem paths (`table:`/`schema:`).
fn outcome(what: &str, table: &Value, schema: &Value) -> Result<TableDefinition, Vec<String>> {
    let result = std::panic::catch_unwind(|| TableDefinition::from_json(table, schema))
        .unwrap_or_else(|_| panic!("validation panicked with {what}"));
    result.map_err(|e| {
        let text = e.to_string();
        assert!(!text.contains(SEED_SECRET), "a secret in an error ({what}): {text}");
        for p in e.table.iter().chain(&e.schema) {
            assert!(!p.message.is_empty(), "{what}: {p:?}");
        }
        e.table
            .iter()
            .map(|p| format!("table:{}", p.path))
            .chain(e.schema.iter().map(|p| format!("schema:{}", p.path)))
            .collect()
    })
}

/// A key of the seed written in another JSON type that Pinot reads the same way: Shoal must
/// accept it and read the same setting. (document, key path, value, why Pinot accepts it)
fn same_meaning_in_another_type() -> Vec<(Doc, &'static str, Value, &'static str)> {
    const MAP: &str =
        "streamConfigs is Map<String, String> in Pinot: Jackson reads a JSON number as its text";
    vec![
        (
            Doc::Table,
            "segmentsConfig.replicasPerPartition",
            json!(1),
            "Pinot keeps it as text and reads it with Integer.parseInt",
        ),
        (Doc::Table, "tableIndexConfig.streamConfigs.stream.kinesis.fetch.timeout.millis", json!(30000), MAP),
        (
            Doc::Table,
            "tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.rows",
            json!(1_000_000),
            MAP,
        ),
        (
            Doc::Table,
            "tableIndexConfig.streamConfigs.realtime.segment.flush.threshold.time",
            json!(21_600_000),
            "a bare number is milliseconds (StreamConfig.extractFlushThresholdTimeMillis); 6h is 21600000",
        ),
        (
            Doc::Schema,
            "dimensionFieldSpecs[1].singleValueField",
            json!("false"),
            "Jackson coerces the text \"false\" into a boolean field",
        ),
    ]
}

/// Removals reported where the removed thing is referred to, not at the removed key.
/// (document, removed key path, reported path, why)
const REPORTED_WHERE_REFERRED_TO: &[(Doc, &str, &str, &str)] = &[(
    Doc::Schema,
    "dateTimeFieldSpecs",
    "table:segmentsConfig.timeColumnName",
    "the table config names a time column the schema no longer defines: either side may be the one to fix",
)];

/// Every key of the seed config and its schema, removed or given a value of another JSON type:
/// a removal is accepted (optional key) or refused with exactly that key's path; null is read as
/// absent, as Jackson reads it; another type is refused with problems at or under the changed
/// key, unless it is on the list of types Pinot reads the same way, and then it must be accepted
/// and mean the same. Never a panic.
#[test]
fn every_key_removed_or_of_another_type_is_refused_at_its_path_or_means_the_same() {
    let seed = TableDefinition::from_json(&seed_config(), &seed_schema()).expect("the seed validates");
    let seed_meaning = meaning(&seed);
    let allowed = same_meaning_in_another_type();
    let mut used = vec![false; allowed.len()];
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in [Doc::Table, Doc::Schema] {
        let base = if doc == Doc::Table { seed_config() } else { seed_schema() };
        let validate = |what: &str, v: Value| match doc {
            Doc::Table => outcome(what, &v, &seed_schema()),
            Doc::Schema => outcome(what, &seed_config(), &v),
        };
        let mut paths = Vec::new();
        key_paths(&base, &[], &mut paths);
        for path in paths {
            let at = dotted(doc, &path);
            let under =
                |p: &String| p == &at || p.starts_with(&format!("{at}.")) || p.starts_with(&format!("{at}["));
            let original = value_at(&base, &path);
            let mut others: Vec<(&str, Value)> = vec![
                ("number", json!(7)),
                ("string", json!("x")),
                ("bool", json!(true)),
                ("array", json!([original])),
                ("object", json!({ "value": original })),
            ];
            others.retain(|(t, _)| *t != json_type(original));

            if matches!(path.last(), Some(Step::Key(_))) {
                // (a) Removed: accepted, or refused at exactly this key.
                let removed = validate(&format!("{at} removed"), changed(&base, &path, None));
                if let Err(got) = &removed {
                    let elsewhere = REPORTED_WHERE_REFERRED_TO
                        .iter()
                        .find(|(d, p, _, _)| *d == doc && qualified(doc, p) == at);
                    let expected = elsewhere.map_or(at.clone(), |(_, _, reported, _)| reported.to_string());
                    if got != &vec![expected.clone()] {
                        failures.push(format!("{at} removed: problems at {got:?}, expected only {expected}"));
                    }
                }
                // Null is absent, as Jackson reads it: the same outcome as the removal.
                let nulled = validate(&format!("{at} = null"), changed(&base, &path, Some(Value::Null)));
                let same = match (&removed, &nulled) {
                    (Ok(a), Ok(b)) => meaning(a) == meaning(b),
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                };
                if !same {
                    failures.push(format!(
                        "{at} = null: {:?}, but removed: {:?}",
                        nulled.as_ref().map(meaning),
                        removed.as_ref().map(meaning)
                    ));
                }
                checked += 2;
            } else {
                // An element of a list set to null is a wrong type like any other.
                others.push(("null", Value::Null));
            }

            // (b) Another JSON type.
            for (kind, wrong) in others {
                let listed = allowed
                    .iter()
                    .position(|(d, p, v, _)| *d == doc && qualified(*d, p) == at && json_type(v) == kind);
                let value = listed.map_or(wrong, |i| allowed[i].2.clone());
                let what = format!("{at} = {value}");
                match (listed, validate(&what, changed(&base, &path, Some(value.clone())))) {
                    (Some(i), Ok(def)) => {
                        used[i] = true;
                        if meaning(&def) != seed_meaning {
                            failures
                                .push(format!("{what} was accepted but does not mean what the seed means"));
                        }
                    }
                    (Some(i), Err(got)) => {
                        failures.push(format!("{what} must be accepted ({}), got {got:?}", allowed[i].3))
                    }
                    (None, Ok(_)) => {
                        failures.push(format!("{what} was accepted: another type must be refused"))
                    }
                    (None, Err(got)) => {
                        if got.is_empty() || !got.iter().all(under) {
                            failures.push(format!("{what}: problems at {got:?}, not at or under the key"));
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(used.iter().all(|u| *u), "an accepted case was never tried: {used:?}");
    assert!(checked > 150, "{checked}");
}

/// Upsert and dedup configs are read as Pinot reads them (pinot-spi UpsertConfig, DedupConfig)
/// and checked as TableConfigUtils.validateUpsertAndDedupConfig checks them, with key paths.
#[test]
fn upsert_and_dedup_configs_are_read_and_checked() {
    let schema = || {
        let mut s = seed_schema();
        s["primaryKeyColumns"] = json!(["user"]);
        s["dimensionFieldSpecs"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "deleted", "dataType": "BOOLEAN"}));
        s
    };
    let table = |key: &str, config: Value| {
        let mut t = seed_config();
        t[key] = config;
        t
    };
    // An upsertConfig without a mode is FULL, compared on the time column, applied: no warning.
    let def = TableDefinition::from_json(&table("upsertConfig", json!({})), &schema()).unwrap();
    let u = def.config.upsert.as_ref().expect("upsert");
    assert_eq!((u.mode.as_str(), u.default_partial_strategy.as_str()), ("FULL", "OVERWRITE"));
    assert!(!warning_paths(&def).iter().any(|p| p.starts_with("upsertConfig")), "{:?}", def.warnings);
    // A sorted column is not applied to an upsert table, with a warning.
    let mut sorted = table("upsertConfig", json!({}));
    sorted["tableIndexConfig"]["sortedColumn"] = json!(["user"]);
    let def = TableDefinition::from_json(&sorted, &schema()).unwrap();
    assert!(warning_paths(&def).contains(&"tableIndexConfig.sortedColumn"), "{:?}", def.warnings);
    let def = TableDefinition::from_json(&table("upsertConfig", json!({"mode": "NONE"})), &schema()).unwrap();
    assert!(def.config.upsert.is_none());
    // Every problem names its key path.
    let problems = |key: &str, config: Value, schema: Value| -> Vec<String> {
        let e = TableDefinition::from_json(&table(key, config), &schema).unwrap_err();
        e.table.iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    };
    let found = problems(
        "upsertConfig",
        json!({"mode": "PARTIAL", "comparisonColumns": ["nope", "tags"],
               "partialUpsertStrategies": {"clicks": "SUM", "user": "OVERWRITE", "tags": "APPEND", "deleted": "INCREMENT"},
               "defaultPartialUpsertStrategy": "LATEST", "hashFunction": "SHA1",
               "deleteRecordColumn": "gone", "outOfOrderRecordColumn": "clicks", "dropOutOfOrderRecord": true,
               "metadataTTL": -1}),
        schema(),
    );
    for want in [
        "upsertConfig.comparisonColumns[0]: column \"nope\" is not in the schema",
        "upsertConfig.comparisonColumns[1]: column \"tags\" cannot order versions",
        "upsertConfig.partialUpsertStrategies.clicks: \"SUM\" is not a partial-upsert strategy",
        "upsertConfig.partialUpsertStrategies.user: column \"user\" is a primary key or comparison column",
        "upsertConfig.partialUpsertStrategies.tags: column \"tags\" is a primary key or comparison column",
        "upsertConfig.partialUpsertStrategies.deleted: INCREMENT needs a single-value number column",
        "upsertConfig.defaultPartialUpsertStrategy: \"LATEST\" is not one of",
        "upsertConfig.hashFunction: \"SHA1\" is not one of",
        "upsertConfig.deleteRecordColumn: column \"gone\" is not in the schema",
        "upsertConfig.outOfOrderRecordColumn: column \"clicks\" must be a single-value BOOLEAN",
        "upsertConfig.dropOutOfOrderRecord: dropOutOfOrderRecord and outOfOrderRecordColumn cannot both be set",
        "upsertConfig.metadataTTL: -1 is not a duration",
    ] {
        assert!(found.iter().any(|f| f.starts_with(want)), "{want}\n{found:#?}");
    }
    let found = problems("upsertConfig", json!({"mode": "SOMETIMES"}), schema());
    assert!(
        found.iter().any(|f| f.starts_with("upsertConfig.mode: \"SOMETIMES\" is not one of")),
        "{found:?}"
    );
    // A TTL needs one numeric comparison column; deletedKeysTTL needs a delete column.
    let found = problems(
        "upsertConfig",
        json!({"comparisonColumns": ["user", "clicks"], "deletedKeysTTL": 10}),
        schema(),
    );
    assert!(
        found.iter().any(|f| f.starts_with("upsertConfig.deletedKeysTTL: a TTL needs exactly one")),
        "{found:?}"
    );
    // Dedup: read when enabled, needs a primary key, never with upsert.
    let def = TableDefinition::from_json(
        &table(
            "dedupConfig",
            json!({"dedupEnabled": true, "metadataTTL": 3600000, "dedupTimeColumn": "timestamp"}),
        ),
        &schema(),
    )
    .unwrap();
    assert_eq!(def.config.dedup.as_ref().map(|d| d.metadata_ttl), Some(3_600_000.0));
    assert!(!warning_paths(&def).iter().any(|p| p.starts_with("dedupConfig")), "{:?}", def.warnings);
    let found =
        problems("dedupConfig", json!({"dedupEnabled": true, "dedupTimeColumn": "tags"}), seed_schema());
    assert!(found.iter().any(|f| f.starts_with("dedupConfig: dedup needs primaryKeyColumns")), "{found:?}");
    assert!(
        found.iter().any(|f| f.starts_with("dedupConfig.dedupTimeColumn: column \"tags\" must be")),
        "{found:?}"
    );
    // dedupEnabled is true unless the config says false (pinot-spi DedupConfig).
    let def = TableDefinition::from_json(&table("dedupConfig", json!({})), &schema()).unwrap();
    assert!(def.config.dedup.is_some());
    let def =
        TableDefinition::from_json(&table("dedupConfig", json!({"dedupEnabled": false})), &schema()).unwrap();
    assert!(def.config.dedup.is_none());
    // A TTL counts in the column's numbers: not a BIG_DECIMAL's.
    let mut decimal = schema();
    decimal["metricFieldSpecs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "amount", "dataType": "BIG_DECIMAL"}));
    let found =
        problems("upsertConfig", json!({"comparisonColumns": ["amount"], "metadataTTL": 10}), decimal);
    assert!(found.iter().any(|f| f.starts_with("upsertConfig.metadataTTL: a TTL needs")), "{found:?}");
    let mut both = table("upsertConfig", json!({"mode": "FULL"}));
    both["dedupConfig"] = json!({"dedupEnabled": true});
    let e = TableDefinition::from_json(&both, &schema()).unwrap_err();
    assert!(e.table.iter().any(|p| p.path == "dedupConfig" && p.message.contains("not both")), "{e:?}");
}

/// `tierConfigs` with Shoal's `deep_store` storage type sets the cold tier's age; other
/// storage types are warned about and not applied; bad ages and selectors name their paths;
/// upsert tables refuse a cold tier.
#[test]
fn tier_configs_set_the_cold_tier() {
    let with_tiers = |tiers: Value| {
        let mut t = seed_config();
        t["tierConfigs"] = tiers;
        TableDefinition::from_json(&t, &seed_schema())
    };
    let def = with_tiers(json!([{"name": "cold", "segmentSelectorType": "time", "segmentAge": "7d", "storageType": "deep_store"}]))
        .unwrap();
    assert_eq!(def.config.cold_after, Some(Duration::from_secs(7 * 86_400)));
    let def = with_tiers(json!([{"name": "t", "segmentSelectorType": "time", "segmentAge": "1d", "storageType": "pinot_server", "serverTag": "x"}]))
        .unwrap();
    assert_eq!(def.config.cold_after, None);
    assert!(warning_paths(&def).contains(&"tierConfigs[0].storageType"), "{:?}", def.warnings);
    assert_eq!(TableDefinition::from_json(&seed_config(), &seed_schema()).unwrap().config.cold_after, None);
    for (tiers, path) in [
        (json!([{"segmentAge": "soon", "storageType": "deep_store"}]), "tierConfigs[0].segmentAge"),
        (json!([{"segmentAge": "0d", "storageType": "deep_store"}]), "tierConfigs[0].segmentAge"),
        (json!([{"storageType": "deep_store"}]), "tierConfigs[0].segmentAge"),
        (
            json!([{"segmentSelectorType": "fixed", "segmentAge": "1d", "storageType": "deep_store"}]),
            "tierConfigs[0].segmentSelectorType",
        ),
        (
            json!([{"segmentAge": "1d", "storageType": "deep_store"}, {"segmentAge": "2d", "storageType": "deep_store"}]),
            "tierConfigs",
        ),
        (json!({"segmentAge": "1d"}), "tierConfigs"),
    ] {
        let err = with_tiers(tiers.clone()).unwrap_err();
        assert!(err.table.iter().any(|p| p.path == path), "{tiers}: {err}");
    }
}

/// Dictionary encoding as Pinot decides it: every single-value STRING dimension, except those in
/// `tableIndexConfig.noDictionaryColumns` or in a `fieldConfigList` entry encoded RAW (an entry
/// encoded DICTIONARY takes its column back); a column the schema lacks or an encoding Pinot
/// lacks is refused with its key path.
#[test]
fn no_dictionary_columns_and_field_encodings_decide_which_strings_get_a_dictionary() {
    let schema = json!({
        "schemaName": "kinesisTable",
        "dimensionFieldSpecs": [
            {"name": "user", "dataType": "STRING"},
            {"name": "country", "dataType": "STRING"},
            {"name": "device", "dataType": "STRING"},
            {"name": "doc", "dataType": "JSON"},
            {"name": "tags", "dataType": "STRING", "singleValueField": false}
        ],
        "metricFieldSpecs": [{"name": "clicks", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [
            {"name": "timestamp", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
        ]
    });
    let encoded = |config: &Value| {
        let def = TableDefinition::from_json(config, &schema).unwrap();
        let layout = crate::table::layout_of(&def);
        let mut names: Vec<String> =
            layout.columns.iter().filter(|c| c.dictionary).map(|c| c.spec.name.clone()).collect();
        names.sort();
        names
    };
    let mut config = seed_config();
    assert_eq!(encoded(&config), ["country", "device", "user"]);
    config["tableIndexConfig"]["noDictionaryColumns"] = json!(["user", "device"]);
    assert_eq!(encoded(&config), ["country"]);
    config["fieldConfigList"] = json!([
        {"name": "device", "encodingType": "DICTIONARY"},
        {"name": "country", "encodingType": "RAW", "indexTypes": []},
        {"name": "clicks", "indexTypes": []}
    ]);
    assert_eq!(encoded(&config), ["device"]);

    config["tableIndexConfig"]["noDictionaryColumns"] = json!(["user", "nope"]);
    config["fieldConfigList"] = json!([{"name": "device", "encodingType": "SNAPPY"}]);
    let err = TableDefinition::from_json(&config, &schema).unwrap_err();
    let mut paths: Vec<_> = err.table.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["fieldConfigList[0].encodingType", "tableIndexConfig.noDictionaryColumns[1]"],
        "{err:?}"
    );
}
