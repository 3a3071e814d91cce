//! A table of generated events for the query tests.
#![allow(dead_code)]

use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::events::{EVENTS_SCHEMA, EventGenerator};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::sync::{Arc, RwLock};

/// A table whose segments a test controls.
#[derive(Debug, Default)]
pub struct TestTable {
    pub sealed: RwLock<Vec<Arc<SealedSegment>>>,
    pub consuming: RwLock<Vec<Arc<MutableSegment>>>,
}

impl SnapshotSource for TestTable {
    fn snapshot(&self) -> TableSnapshot {
        let sealed = self.sealed.read().unwrap();
        let consuming = self.consuming.read().unwrap();
        let mut segments: Vec<SegmentData> =
            sealed.iter().map(|s| SegmentData::Sealed(Arc::clone(s))).collect();
        segments.extend(consuming.iter().map(|c| SegmentData::Consuming(c.snapshot())));
        TableSnapshot::new(segments)
    }
}

/// The events' layout, with the low-cardinality strings dictionary-encoded as the comparison
/// with DuckDB has them.
pub fn events_layout() -> Arc<TableLayout> {
    let (schema, _) = Schema::from_json_str(EVENTS_SCHEMA).unwrap();
    Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions {
            time_column: Some("timestamp".into()),
            dictionary: shoal_segment::events::events_dictionary(),
            ..Default::default()
        },
    ))
}

/// `segments` sealed segments of `rows_each` events plus a consuming one of `tail` events.
/// Returns the engine, the table, the events as JSON lines, and the temp dir holding the files.
pub fn events_table(
    segments: usize,
    rows_each: usize,
    tail: usize,
    options: QueryOptions,
) -> (QueryEngine, Arc<TestTable>, Vec<String>, tempfile::TempDir) {
    let layout = events_layout();
    let dir = tempfile::tempdir().unwrap();
    let mut generator = EventGenerator::new(11, 1_700_000_000_000);
    let table = Arc::new(TestTable::default());
    let mut all = Vec::new();
    for s in 0..segments {
        let events: Vec<String> = (0..rows_each).map(|_| generator.next_event()).collect();
        let segment = MutableSegment::new(Arc::clone(&layout));
        segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
        let request = SealRequest {
            table: "events",
            shard: "shardId-000000000000",
            sequence: s as u64,
            created_ms: 0,
            sort_by: None,
        };
        let (path, _) = write_segment(dir.path(), &layout, &segment.snapshot(), &request).unwrap();
        table.sealed.write().unwrap().push(Arc::new(SealedSegment::open(&path).unwrap()));
        all.extend(events);
    }
    let events: Vec<String> = (0..tail).map(|_| generator.next_event()).collect();
    let segment = MutableSegment::new(Arc::clone(&layout));
    segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
    table.consuming.write().unwrap().push(Arc::new(segment));
    all.extend(events);
    let engine = QueryEngine::new(options);
    engine.register("events", layout, Arc::clone(&table) as Arc<dyn SnapshotSource>);
    (engine, table, all, dir)
}

/// A table `name` of one consuming segment holding `rows` (JSON records) under the Pinot schema
/// `schema`, with `time_column` as its time column.
pub fn table_of(name: &str, schema: serde_json::Value, time_column: &str, rows: &[String]) -> QueryEngine {
    let (schema, _) = Schema::from_json(&schema).unwrap();
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some(time_column.into()), ..Default::default() },
    ));
    let segment = MutableSegment::new(Arc::clone(&layout));
    segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    let table = Arc::new(TestTable::default());
    table.consuming.write().unwrap().push(Arc::new(segment));
    let engine = QueryEngine::new(QueryOptions::default());
    engine.register(name, layout, table as Arc<dyn SnapshotSource>);
    engine
}
