//! The key map through `publish`, `ingest` and `view`, without an engine.

use super::*;
use crate::config::TableDefinition;
use serde_json::json;
use shoal_segment::RecordMeta;

/// Table `u` keyed by `id`, with `ts` its time column (epoch milliseconds), its
/// `upsertConfig` and its dimensions.
fn definition(upsert_config: serde_json::Value, dimensions: serde_json::Value) -> TableDefinition {
    let table = json!({
        "tableName": "u",
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {"loadMode": "MMAP", "streamConfigs": {
            "streamType": "kinesis",
            "stream.kinesis.topic.name": "u",
            "region": "us-east-1",
            "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
            "realtime.segment.flush.threshold.segment.rows": "1000"
        }},
        "upsertConfig": upsert_config,
        "metadata": {}
    });
    let schema = json!({
        "schemaName": "u",
        "primaryKeyColumns": ["id"],
        "dimensionFieldSpecs": dimensions,
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    });
    TableDefinition::from_json(&table, &schema).expect("a valid definition")
}

/// An upsert table over `id` (key) and `ts` (time and comparison) with a `metadataTTL` of
/// 1,000 ms, and its layout.
fn upsert_with_ttl() -> (Upsert, Arc<TableLayout>) {
    let definition = definition(
        json!({"mode": "FULL", "metadataTTL": 1000}),
        json!([{"name": "id", "dataType": "STRING"}]),
    );
    let layout = crate::table::layout_of(&definition);
    let upsert = Upsert::of(&definition, &layout, Arc::default()).expect("an upsert table");
    (upsert, layout)
}

fn ingest(upsert: &Upsert, shard: &str, segment: &Arc<MutableSegment>, rows: &[(&str, i64)]) {
    let records: Vec<String> = rows.iter().map(|(id, ts)| json!({"id": id, "ts": ts}).to_string()).collect();
    let decoded = segment.decode(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    upsert.ingest(shard, segment, decoded);
}

/// Which rows of each segment a query sees.
fn visible(upsert: &Upsert, segments: &[&Arc<MutableSegment>]) -> Vec<Vec<bool>> {
    let mut view = upsert.view().expect("an upsert view");
    segments
        .iter()
        .map(|s| view.validity(SegmentRef::Consuming(s), s.rows()).valid.iter().collect())
        .collect()
}

#[test]
fn a_rebuild_while_a_segment_seals_purges_after_it_as_the_live_map_did() {
    let (upsert, layout) = upsert_with_ttl();
    let fresh = || Arc::new(MutableSegment::new(Arc::clone(&layout)));
    let order = |shard: &str, rank: u8| (shard.to_string(), rank, None, 0);
    // Another shard's segment, whose loss later makes the map rebuild.
    let other = fresh();
    let first = fresh();
    upsert.publish(
        None,
        None,
        Segments { sealed: vec![], consuming: vec![(&other, order("t", 2)), (&first, order("s", 2))] },
        || {},
    );
    ingest(&upsert, "t", &other, &[("z", 5)]);
    ingest(&upsert, "s", &first, &[("a", 10), ("g", 2000)]);
    // `first` is handed off to seal and `next` starts: the live map purges the keys past
    // metadataTTL (2000 - 1000), `a` among them.
    let next = fresh();
    upsert.publish(
        None,
        None,
        Segments {
            sealed: vec![],
            consuming: vec![(&other, order("t", 2)), (&first, order("s", 1)), (&next, order("s", 2))],
        },
        || {},
    );
    // A newer `a` is then a new key: both rows show (Pinot's documented TTL behaviour).
    ingest(&upsert, "s", &next, &[("a", 1990)]);
    let live = visible(&upsert, &[&first, &next]);
    assert_eq!(live, [vec![true, true], vec![true]]);
    // The other shard's segment goes (a quarantine, a panic): the map is rebuilt from the rows
    // while `first` is still sealing, and must decide as the live map did.
    upsert.publish(
        None,
        None,
        Segments { sealed: vec![], consuming: vec![(&first, order("s", 1)), (&next, order("s", 2))] },
        || {},
    );
    assert_eq!(visible(&upsert, &[&first, &next]), live);
}

/// A STRING key and a STRING delete column are dictionary-encoded (Pinot's default): the keys
/// hash as the plain strings do, whichever way a batch holds them, and "true", "TRUE" and "1"
/// still mark deletes.
#[test]
fn a_dictionary_key_and_delete_column_read_as_their_plain_strings() {
    let definition = definition(
        json!({"mode": "FULL", "deleteRecordColumn": "gone"}),
        json!([{"name": "id", "dataType": "STRING"}, {"name": "gone", "dataType": "STRING"}]),
    );
    let layout = crate::table::layout_of(&definition);
    assert!(layout.columns.iter().filter(|c| c.spec.name != "ts").all(|c| c.dictionary));
    let upsert = Upsert::of(&definition, &layout, Arc::default()).expect("an upsert table");
    let segment = MutableSegment::new(Arc::clone(&layout));
    let gone = [json!("true"), json!("TRUE"), json!("1"), json!("false"), json!(null), json!("yes")];
    let records: Vec<String> = gone
        .iter()
        .enumerate()
        .map(|(i, g)| json!({"id": format!("k{}", i % 4), "gone": g, "ts": i}).to_string())
        .collect();
    let decoded = segment.decode(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    let batch = &decoded.batches[0];
    assert!(matches!(batch.column(0).data_type(), DataType::Dictionary(..)));
    assert_eq!(upsert.deletes(batch), Some(vec![true, true, true, false, false, false]));
    // The same rows with plain strings: the same keys.
    let plain: Vec<ArrayRef> = batch.columns().iter().map(plain_strings).collect();
    let fields: Vec<arrow::datatypes::Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&plain)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let plain = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), plain).unwrap();
    assert_eq!(upsert.keys(batch), upsert.keys(&plain));
    let keys = upsert.keys(batch);
    assert_eq!(keys[0], keys[4], "k0 twice");
    assert_ne!(keys[0], keys[1]);
}
