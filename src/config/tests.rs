use super::*;
use serde_json::json;
use shoal_segment::FlushLimit;
use shoal_stream::StartPosition;

/// The table config of pinot-import-from-kinesis.md, exactly as written there, filled in.
fn seed_config() -> Value {
    json!({
      "tableName": "kinesisTable",
      "tableType": "REALTIME",
      "segmentsConfig": {
        "timeColumnName": "timestamp",
        "replicasPerPartition": "1"
      },
      "tenants": {},
      "tableIndexConfig": {
        "loadMode": "MMAP",
        "streamConfigs": {
          "streamType": "kinesis",
          "stream.kinesis.topic.name": "clickstream",
          "region": "us-west-1",
          "accessKey": "AKIAIOSFODNN7EXAMPLE",
          "secretKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
          "shardIteratorType": "AFTER_SEQUENCE_NUMBER",
          "shardIteratorSequenceNumbers": "shardId-000000000000=49590338271490256608559692538361571095921575989136588898",
          "stream.kinesis.consumer.type": "lowlevel",
          "stream.kinesis.fetch.timeout.millis": "30000",
          "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.stream.kafka.KafkaJSONMessageDecoder",
          "stream.kinesis.consumer.factory.class.name": "org.apache.pinot.plugin.stream.kinesis.KinesisConsumerFactory",
          "realtime.segment.flush.threshold.rows": "1000000",
          "realtime.segment.flush.threshold.time": "6h"
        }
      },
      "metadata": {
        "customConfigs": {}
      }
    })
}

fn seed_schema() -> Value {
    json!({
      "schemaName": "kinesisTable",
      "dimensionFieldSpecs": [
        {"name": "user", "dataType": "STRING"},
        {"name": "tags", "dataType": "STRING", "singleValueField": false}
      ],
      "metricFieldSpecs": [{"name": "clicks", "dataType": "LONG"}],
      "dateTimeFieldSpecs": [
        {"name": "timestamp", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}
      ]
    })
}

#[test]
fn the_seed_config_parses_as_written() {
    let def = TableDefinition::from_json(&seed_config(), &seed_schema()).unwrap();
    let c = &def.config;
    assert_eq!(c.name, "kinesisTable");
    assert_eq!(c.segments.time_column, "timestamp");
    assert_eq!(c.stream.path, "tableIndexConfig.streamConfigs");
    assert_eq!(c.stream.kinesis.stream_name, "clickstream");
    assert_eq!(c.stream.kinesis.region, "us-west-1");
    assert_eq!(c.stream.kinesis.fetch_timeout, Duration::from_secs(30));
    assert_eq!(c.stream.kinesis.max_records_to_fetch, 10_000);
    assert!(matches!(c.stream.kinesis.start, StartPosition::AfterSequenceNumber { .. }));
    assert_eq!(c.stream.flush.limit, FlushLimit::TableRows(1_000_000));
    assert_eq!(c.stream.flush.time, Duration::from_secs(6 * 3600));
    assert_eq!(c.metadata["customConfigs"], json!({}));
    // Unknown keys (tenants, loadMode) are kept.
    let out = c.normalised_json();
    assert_eq!(out["tenants"], json!({}));
    assert_eq!(out["tableIndexConfig"]["loadMode"], json!("MMAP"));
    assert_eq!(out["tableIndexConfig"]["streamConfigs"]["maxRecordsToFetch"], json!("10000"));
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
    assert_eq!(c.stream.kinesis.max_records_to_fetch, 5000);
    assert_eq!(c.stream.kinesis.requests_per_second, 2.0);
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
    let mut table = seed_config();
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

/// Applies `edit` to the seed config and schema and returns the reported paths.
fn problems_after(edit: impl FnOnce(&mut Value, &mut Value)) -> Vec<String> {
    let (mut table, mut schema) = (seed_config(), seed_schema());
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
            vec!["tableIndexConfig.streamConfigs.region", "tableIndexConfig.streamConfigs.region"],
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

/// Every key of the seed config and its schema, removed or given the wrong type, gives either a
/// valid definition (optional keys) or problems that each name a key path; never a panic.
#[test]
fn every_field_missing_or_of_the_wrong_type_is_reported_with_its_path() {
    fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                out.push(p.clone());
                paths(child, p, out);
            }
        } else if let Value::Array(items) = v {
            for (i, child) in items.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                paths(child, p, out);
            }
        }
    }
    fn edit(doc: &mut Value, path: &[String], change: &dyn Fn(&mut Map<String, Value>, &str)) {
        let mut at = doc;
        for key in &path[..path.len() - 1] {
            at = match at {
                Value::Object(m) => m.get_mut(key).unwrap(),
                Value::Array(a) => &mut a[key.parse::<usize>().unwrap()],
                _ => unreachable!(),
            };
        }
        if let Value::Object(m) = at {
            change(m, &path[path.len() - 1]);
        }
    }
    let wrong_values = [json!(null), json!([1, 2]), json!({"x": 1}), json!(-1.5), json!(true), json!("")];
    let mut checked = 0;
    for target in ["table", "schema"] {
        let base = if target == "table" { seed_config() } else { seed_schema() };
        let mut all = Vec::new();
        paths(&base, Vec::new(), &mut all);
        for path in all {
            let mut variants: Vec<Value> = Vec::new();
            let mut removed = base.clone();
            edit(&mut removed, &path, &|m, k| {
                m.remove(k);
            });
            variants.push(removed);
            for wrong in &wrong_values {
                let mut changed = base.clone();
                edit(&mut changed, &path, &|m, k| {
                    m.insert(k.to_string(), wrong.clone());
                });
                variants.push(changed);
            }
            for v in variants {
                let (t, s) = if target == "table" { (v, seed_schema()) } else { (seed_config(), v) };
                let result = std::panic::catch_unwind(|| TableDefinition::from_json(&t, &s));
                let result = result.unwrap_or_else(|_| panic!("panic with {path:?} changed"));
                if let Err(e) = result {
                    for p in e.table.iter().chain(&e.schema) {
                        assert!(!p.path.is_empty() && !p.message.is_empty(), "{path:?}: {p:?}");
                    }
                    assert!(!e.table.is_empty() || !e.schema.is_empty());
                    assert!(!e.to_string().contains("wJalrXUtnFEMI"), "a secret in an error");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}
