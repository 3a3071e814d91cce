//! A query running while segments seal never sees a row twice or misses one.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use serde_json::json;
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

struct State {
    sealed: Vec<Arc<SealedSegment>>,
    consuming: Arc<MutableSegment>,
}

/// The table state is swapped whole when a segment seals, as the engine does.
struct Table {
    state: RwLock<Arc<State>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        let state = Arc::clone(&self.state.read().unwrap());
        let mut segments: Vec<SegmentData> =
            state.sealed.iter().map(|s| SegmentData::Sealed(Arc::clone(s))).collect();
        segments.push(SegmentData::Consuming(state.consuming.snapshot()));
        TableSnapshot { segments }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_seals_see_every_row_once() {
    let (schema, _) = Schema::from_json(
        &json!({"schemaName": "t", "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}]}),
    )
    .unwrap();
    let layout = Arc::new(TableLayout::new(Arc::new(schema), &LayoutOptions::default()));
    let table = Arc::new(Table {
        state: RwLock::new(Arc::new(State {
            sealed: Vec::new(),
            consuming: Arc::new(MutableSegment::new(Arc::clone(&layout))),
        })),
    });
    let engine = Arc::new(QueryEngine::new(QueryOptions::default()));
    engine.register("t", Arc::clone(&layout), Arc::clone(&table) as Arc<dyn SnapshotSource>);
    let dir = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    const ROWS: i64 = 150_000;
    let writer = {
        let (table, layout, done, path) =
            (Arc::clone(&table), Arc::clone(&layout), Arc::clone(&done), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut sequence = 0;
            for chunk in (0..ROWS).collect::<Vec<_>>().chunks(500) {
                let records: Vec<String> = chunk.iter().map(|i| format!(r#"{{"id": {i}}}"#)).collect();
                let state = Arc::clone(&table.state.read().unwrap());
                state.consuming.append(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
                if state.consuming.rows() >= 3_000 {
                    let request =
                        SealRequest { table: "t", shard: "s", sequence, created_ms: 0, sort_by: None };
                    sequence += 1;
                    let (file, _) =
                        write_segment(&path, &layout, &state.consuming.snapshot(), &request).unwrap();
                    let sealed = Arc::new(SealedSegment::open(&file).unwrap());
                    let mut all = state.sealed.clone();
                    all.push(sealed);
                    *table.state.write().unwrap() = Arc::new(State {
                        sealed: all,
                        consuming: Arc::new(MutableSegment::new(Arc::clone(&layout))),
                    });
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut queries = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let r = engine.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t").await.unwrap();
        let b = &r.batches[0];
        let get = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0)
        };
        let (count, distinct) = (get(0), get(1));
        assert_eq!(count, distinct, "a row seen twice");
        if count > 0 {
            assert_eq!((get(2), get(3)), (0, count - 1), "a row missed");
        }
        queries += 1;
        if finished {
            assert_eq!(count, ROWS);
            break;
        }
    }
    writer.join().unwrap();
    assert!(queries > 1);
}
