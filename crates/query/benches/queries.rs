//! The query set (benches/compare/queries.json, the same queries the DuckDB comparison runs)
//! over 10 sealed segments of 100,000 generated events and a consuming segment of 50,000.
//! `time_range_prune_off` is the `time_range` query again with pruning off
//! (`QueryOptions::prune`), so every segment is read: the pair shows what pruning saves on the
//! same SQL (it prints how many segments each reads). A good number: `time_range` near the cost
//! of scanning the segments it reads, several times less than `time_range_prune_off`.
//! Run: `cargo bench -p shoal-query --bench queries`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::events::{EVENTS_SCHEMA, EventGenerator};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::sync::Arc;

const SEALED: usize = 10;
const ROWS_EACH: usize = 100_000;
const CONSUMING: usize = 50_000;

#[derive(Debug)]
struct Table {
    sealed: Vec<Arc<SealedSegment>>,
    consuming: Arc<MutableSegment>,
}

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        let mut segments: Vec<SegmentData> =
            self.sealed.iter().map(|s| SegmentData::Sealed(Arc::clone(s))).collect();
        segments.push(SegmentData::Consuming(self.consuming.snapshot()));
        TableSnapshot::new(segments)
    }
}

fn queries(c: &mut Criterion) {
    let (schema, _) = Schema::from_json_str(EVENTS_SCHEMA).expect("valid schema");
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("timestamp".into()), ..Default::default() },
    ));
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut generator = EventGenerator::new(5, 1_700_000_000_000);
    let mut fill = |rows: usize| {
        let segment = MutableSegment::new(Arc::clone(&layout));
        let events: Vec<String> = (0..rows).map(|_| generator.next_event()).collect();
        segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
        segment
    };
    let mut sealed = Vec::new();
    let mut ranges = Vec::new();
    for sequence in 0..SEALED {
        let snapshot = fill(ROWS_EACH).snapshot();
        ranges.push(snapshot.time_range);
        let request = SealRequest {
            table: "events",
            shard: "s",
            sequence: sequence as u64,
            created_ms: 0,
            sort_by: None,
        };
        let (path, _) = write_segment(dir.path(), &layout, &snapshot, &request).expect("seal");
        sealed.push(Arc::new(SealedSegment::open(&path).expect("open")));
    }
    let consuming = Arc::new(fill(CONSUMING));
    // As in the comparison: the time range of the second segment.
    let (t0, t1) = ranges[1].expect("a time range");

    let table = Arc::new(Table { sealed, consuming });
    let engine = QueryEngine::new(QueryOptions::default());
    engine.register("events", Arc::clone(&layout), Arc::clone(&table) as Arc<dyn SnapshotSource>);
    let unpruned = QueryEngine::new(QueryOptions::default().with_prune(false));
    unpruned.register("events", Arc::clone(&layout), table);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let set: Vec<Value> =
        serde_json::from_str(include_str!("../../../benches/compare/queries.json")).expect("queries.json");
    let mut group = c.benchmark_group("queries_1.05M_rows");
    group.sample_size(20);
    for q in &set {
        let name = q["name"].as_str().expect("a name");
        let rows = SEALED * ROWS_EACH + CONSUMING;
        let sql = shoal_segment::events::fill_query(q["shoal"].as_str().expect("a query"), t0, t1, rows);
        group.bench_function(name, |b| {
            b.iter(|| {
                let result = runtime.block_on(engine.execute(&sql)).expect("the query runs");
                assert!(!result.batches.is_empty());
                result
            })
        });
        if name == "time_range" {
            // The same SQL with pruning off: same answer, every segment read.
            let on = runtime.block_on(engine.execute(&sql)).expect("the query runs");
            let off = runtime.block_on(unpruned.execute(&sql)).expect("the query runs");
            assert_eq!(on.batches, off.batches, "pruning changed the answer of {sql}");
            assert_eq!(off.stats.segments_processed, off.stats.segments_queried);
            assert!(on.stats.segments_processed < off.stats.segments_processed);
            // A neighbour whose first or last timestamp equals the range's end is read as well.
            eprintln!(
                "time_range reads {} of {} segments with pruning on, {} with it off",
                on.stats.segments_processed, on.stats.segments_queried, off.stats.segments_processed
            );
            group.bench_function("time_range_prune_off", |b| {
                b.iter(|| runtime.block_on(unpruned.execute(&sql)).expect("the query runs"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
