//! Ingestion transforms (#16). Run: `cargo bench --bench ingest`.
//!
//! 50,000 records of ~170 bytes are decoded and appended to a consuming segment twice: by a
//! table without an ingestionConfig, whose records already hold the columns, and by a table
//! with four transforms and a filter that derive the same columns from raw fields
//! (`fromEpochSeconds`, `upper`, `jsonPathString` from a nested object, `concat`, and
//! `strcmp(kind, 'bot') = 0`, which drops none of these records); and, as the baseline of
//! what decoding those same raw records costs, a table whose columns are the raw fields, with
//! no transforms. Goal: the transformed ingest costs at most 1.3x plain decoding.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use shoal::config::TableDefinition;
use shoal::table::layout_of;
use shoal_segment::{MutableSegment, RecordMeta};
use std::sync::Arc;

const RECORDS: usize = 50_000;

/// The seed page's table with `ingestion`, its time column `time_column`, and `schema`.
fn table_of(ingestion: serde_json::Value, time_column: &str, schema: serde_json::Value) -> TableDefinition {
    let mut table: serde_json::Value =
        serde_json::from_str(include_str!("../examples/config/kinesisTable.table.json")).unwrap();
    table["ingestionConfig"] = ingestion;
    table["segmentsConfig"]["timeColumnName"] = json!(time_column);
    TableDefinition::from_json(&table, &schema).expect("valid")
}

fn definition(ingestion: serde_json::Value) -> TableDefinition {
    let schema = json!({
        "schemaName": "kinesisTable",
        "dimensionFieldSpecs": [
            {"name": "city", "dataType": "STRING"},
            {"name": "user", "dataType": "STRING"},
            {"name": "label", "dataType": "STRING"},
            {"name": "kind", "dataType": "STRING"}
        ],
        "metricFieldSpecs": [{"name": "clicks", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "timestamp", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    });
    table_of(ingestion, "timestamp", schema)
}

fn bench(c: &mut Criterion) {
    let cities = ["lima", "oslo", "kyoto", "accra"];
    let raw: Vec<String> = (0..RECORDS)
        .map(|i| {
            json!({"tsSec": 1_700_000_000 + i as i64, "rawCity": cities[i % 4], "kind": "human", "clicks": i % 50,
                   "payload": {"user": {"id": format!("u{}", i % 997)}}, "first": "a", "second": format!("{i}")})
            .to_string()
        })
        .collect();
    let plain: Vec<String> = (0..RECORDS)
        .map(|i| {
            json!({"timestamp": (1_700_000_000 + i as i64) * 1000, "city": cities[i % 4].to_uppercase(), "kind": "human",
                   "clicks": i % 50, "user": format!("u{}", i % 997), "label": format!("a-{i}")})
            .to_string()
        })
        .collect();
    let plain_def = definition(json!({}));
    // The raw records decoded as they are: their own fields as columns, no transforms.
    let raw_def = table_of(
        json!({}),
        "tsSec",
        json!({
            "schemaName": "kinesisTable",
            "dimensionFieldSpecs": [
                {"name": "rawCity", "dataType": "STRING"},
                {"name": "kind", "dataType": "STRING"},
                {"name": "payload", "dataType": "JSON"},
                {"name": "first", "dataType": "STRING"},
                {"name": "second", "dataType": "STRING"}
            ],
            "metricFieldSpecs": [{"name": "clicks", "dataType": "LONG"}],
            "dateTimeFieldSpecs": [{"name": "tsSec", "dataType": "LONG", "format": "1:SECONDS:EPOCH", "granularity": "1:SECONDS"}]
        }),
    );
    let transformed_def = definition(json!({
        "transformConfigs": [
            {"columnName": "timestamp", "transformFunction": "fromEpochSeconds(tsSec)"},
            {"columnName": "city", "transformFunction": "upper(rawCity)"},
            {"columnName": "user", "transformFunction": "jsonPathString(payload, '$.user.id')"},
            {"columnName": "label", "transformFunction": "concat(first, '-', second)"}
        ],
        "filterConfig": {"filterFunction": "strcmp(kind, 'bot') = 0"}
    }));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (name, def, records) in [
        ("plain", &plain_def, &plain),
        ("raw_records_no_transforms", &raw_def, &raw),
        ("four_transforms_and_a_filter", &transformed_def, &raw),
    ] {
        let layout = layout_of(def);
        group.bench_function(name, |b| {
            b.iter_batched(
                || MutableSegment::new(Arc::clone(&layout)),
                |segment| {
                    let outcome =
                        segment.append(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
                    assert_eq!(outcome.rows, RECORDS, "{outcome:?}");
                    segment
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
