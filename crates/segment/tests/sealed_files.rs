//! Sealed files: refused when truncated, bit-flipped or of another version; random bytes never
//! panic the loader; a loaded segment is memory-mapped.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use serde_json::json;
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, SegmentError, TableLayout,
    write_segment,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn layout() -> Arc<TableLayout> {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "country", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
    ))
}

fn sealed_file(dir: &Path, rows: usize, sort_by: Option<&str>) -> PathBuf {
    let layout = layout();
    let segment = MutableSegment::new(Arc::clone(&layout));
    let countries = ["US", "NZ", "DE", "BR"];
    let records: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                r#"{{"country": "{}", "id": {i}, "ts": {}}}"#,
                countries[i % 4],
                1_706_704_496_000 + i as i64
            )
        })
        .collect();
    segment.append(
        records.iter().map(|r| (r.as_bytes(), RecordMeta { sequence_number: "1", ..Default::default() })),
    );
    let request = SealRequest {
        table: "events",
        shard: "shardId-000000000001",
        sequence: 3,
        created_ms: 1_743_013_620_000,
        sort_by,
    };
    write_segment(dir, &layout, &segment.snapshot(), &request).unwrap().0
}

#[test]
fn a_sealed_segment_loads_with_its_metadata_and_is_memory_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed_file(dir.path(), 20_000, None);
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "events__shardId-000000000001__3__20250326T1827Z.seg"
    );
    let segment = SealedSegment::load(&path).unwrap();
    let meta = segment.meta();
    assert_eq!((meta.rows, meta.sequence, meta.shard.as_str()), (20_000, 3, "shardId-000000000001"));
    assert_eq!(meta.time_range, Some((1_706_704_496_000, 1_706_704_496_000 + 19_999)));
    let id = &meta.columns[1];
    assert_eq!((id.name.as_str(), id.data_type.as_str()), ("id", "LONG"));
    assert_eq!(id.stats.max, Some(shoal_segment::StatValue::Int(19_999)));
    segment.check_schema(&layout().arrow).unwrap();
    let total: usize = segment.batches().unwrap().iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 20_000);
    // The batches point into the mapped file: /proc/self/maps lists it.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let canonical = path.canonicalize().unwrap();
    assert!(maps.contains(canonical.to_str().unwrap()), "{} is not mapped", canonical.display());
    let first =
        segment.batches().unwrap()[0].column(1).as_primitive::<Int64Type>().values().as_ptr() as usize;
    let mapped = maps.lines().filter(|l| l.ends_with(canonical.to_str().unwrap())).any(|l| {
        let range = l.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        (usize::from_str_radix(a, 16).unwrap()..usize::from_str_radix(b, 16).unwrap()).contains(&first)
    });
    assert!(mapped, "the column's values live inside the file's mapping (zero-copy)");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn rows_can_be_sorted_by_the_sorted_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed_file(dir.path(), 10_000, Some("country"));
    let segment = SealedSegment::load(&path).unwrap();
    let mut previous = String::new();
    for batch in segment.batches().unwrap() {
        let c = batch.column(0).as_string::<i32>();
        for v in c.iter().flatten() {
            assert!(v >= previous.as_str());
            previous = v.to_string();
        }
    }
    assert_eq!(segment.meta().sorted_by.as_deref(), Some("country"));
}

fn refused(path: &Path) -> SegmentError {
    match SealedSegment::load(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_flipped_and_foreign_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed_file(dir.path(), 5_000, None);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.seg");

    for cut in [1, 55, 100, good.len() / 2, good.len() - 1] {
        std::fs::write(&bad, &good[..good.len() - cut]).unwrap();
        let e = refused(&bad);
        assert!(e.to_string().contains("bad.seg"), "the error names the file: {e}");
    }
    // A flipped bit anywhere: the data, the IPC footer, the metadata, the trailer.
    for at in [200, good.len() / 3, good.len() - 400, good.len() - 60, good.len() - 20, good.len() - 3] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&bad, &bytes).unwrap();
        refused(&bad);
    }
    // Another version.
    let mut bytes = good.clone();
    let v = good.len() - 56 + 8;
    bytes[v..v + 4].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&bad, &bytes).unwrap();
    assert!(matches!(refused(&bad), SegmentError::UnknownVersion { found: 2, .. }));
}

#[test]
fn random_bytes_never_panic_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(sealed_file(dir.path(), 300, None)).unwrap();
    let bad = dir.path().join("fuzz.seg");
    // A small deterministic generator: no extra dependency, the same cases every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let bytes: Vec<u8> = match round % 4 {
            0 => (0..(next() % 4096) as usize).map(|_| next() as u8).collect(),
            1 => {
                let mut b = good.clone();
                for _ in 0..1 + next() % 8 {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b
            }
            2 => good[..(next() as usize) % good.len()].to_vec(),
            _ => {
                // Keep the trailer and metadata intact, scramble the IPC part.
                let mut b = good.clone();
                let end = b.len() - 600;
                for _ in 0..16 {
                    let at = (next() as usize) % end;
                    b[at] = next() as u8;
                }
                b
            }
        };
        std::fs::write(&bad, &bytes).unwrap();
        let _ = SealedSegment::load(&bad);
    }
}
