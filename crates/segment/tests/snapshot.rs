//! Snapshots taken while another thread appends see a prefix of the rows, never a torn row.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use serde_json::json;
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, TableLayout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn snapshots_during_appends_see_a_prefix_of_whole_rows() {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "tag", "dataType": "STRING"}, {"name": "list", "dataType": "LONG", "singleValueField": false}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}, {"name": "twice", "dataType": "LONG"}]
    }))
    .unwrap();
    let layout = Arc::new(TableLayout::new(Arc::new(schema), &LayoutOptions::default()));
    let segment = Arc::new(MutableSegment::new(layout));
    const ROWS: i64 = 60_000;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let segment = Arc::clone(&segment);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for chunk in (0..ROWS).collect::<Vec<_>>().chunks(777) {
                let records: Vec<String> = chunk
                    .iter()
                    .map(|i| {
                        format!(r#"{{"id": {i}, "twice": {}, "tag": "t{i}", "list": [{i}, {i}]}}"#, i * 2)
                    })
                    .collect();
                segment.append(records.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut snapshots = 0;
    let mut last_rows = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let snapshot = segment.snapshot();
        let mut expected = 0i64;
        for batch in &snapshot.batches {
            let id = batch.column(2).as_primitive::<Int64Type>();
            let twice = batch.column(3).as_primitive::<Int64Type>();
            let tag = batch.column(0).as_string::<i32>();
            let list = batch.column(1).as_list::<i32>();
            for r in 0..batch.num_rows() {
                assert_eq!(id.value(r), expected, "rows are a prefix, in order, none missing or repeated");
                assert_eq!(twice.value(r), expected * 2, "no torn row");
                assert_eq!(tag.value(r), format!("t{expected}"));
                assert_eq!(list.value(r).as_primitive::<Int64Type>().values(), &[expected, expected]);
                expected += 1;
            }
        }
        assert_eq!(expected as usize, snapshot.rows);
        assert!(snapshot.rows >= last_rows, "snapshots never go back");
        last_rows = snapshot.rows;
        snapshots += 1;
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(last_rows, ROWS as usize);
    assert!(snapshots > 1);
}
