//! The checks behind Shoal's fuzz targets. Each takes arbitrary bytes, feeds them to one of
//! Shoal's parsers and asserts what must hold whatever the input: no panic, and a property of
//! the answer. The libFuzzer binaries in `fuzz_targets/` call these (`scripts/fuzz.sh`), and
//! `tests/corpus.rs` replays the kept corpora through them in the ordinary test command.

use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::Value;
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, SealedSegment, TableLayout};
use shoal_stream::kpl::{Deaggregated, aggregate_records, deaggregate};
use std::io::Write;
use std::sync::{Arc, OnceLock};

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
