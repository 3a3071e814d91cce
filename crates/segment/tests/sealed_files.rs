//! Sealed files: refused when truncated, bit-flipped or of another version; random bytes never
//! panic the loader, also with their checksums recomputed so that the parsers behind the checksums
//! see them; a loaded segment is memory-mapped.

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
    layout_with(&[])
}

/// The test table, with `dictionary` stored dictionary-encoded.
fn layout_with(dictionary: &[&str]) -> Arc<TableLayout> {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "country", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions {
            time_column: Some("ts".into()),
            dictionary: dictionary.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        },
    ))
}

fn sealed_file(dir: &Path, rows: usize, sort_by: Option<&str>) -> PathBuf {
    sealed_file_of(&layout(), dir, rows, sort_by)
}

fn sealed_file_of(layout: &Arc<TableLayout>, dir: &Path, rows: usize, sort_by: Option<&str>) -> PathBuf {
    let layout = Arc::clone(layout);
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
    // Another version: a newer one, and the older one this build reads but with metadata
    // that says otherwise.
    let v = good.len() - 56 + 8;
    for (version, found) in [(3u32, 3u32), (1, 2)] {
        let mut bytes = good.clone();
        bytes[v..v + 4].copy_from_slice(&version.to_le_bytes());
        // The metadata's checksum covers the trailer: made right, so the version is what differs.
        assert!(shoal_segment::sealed::restamp_checksums(&mut bytes));
        std::fs::write(&bad, &bytes).unwrap();
        let e = refused(&bad);
        assert!(matches!(e, SegmentError::UnknownVersion { found: f, .. } if f == found), "{e}");
    }
}

/// The strings of column 0 of every batch, read through whatever encoding it has.
fn countries(segment: &SealedSegment) -> Vec<String> {
    let mut out = Vec::new();
    for batch in segment.batches().unwrap() {
        let plain = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        out.extend(plain.as_string::<i32>().iter().map(|v| v.unwrap().to_string()));
    }
    out
}

#[test]
fn a_dictionary_column_is_stored_once_per_file_and_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let dictionary = layout_with(&["country"]);
    assert_eq!(dictionary.arrow.field(0).data_type(), &shoal_segment::columns::dictionary_type());
    for sort_by in [None, Some("country")] {
        let plain_dir = dir.path().join(format!("plain-{sort_by:?}"));
        let dict_dir = dir.path().join(format!("dictionary-{sort_by:?}"));
        std::fs::create_dir_all(&plain_dir).unwrap();
        std::fs::create_dir_all(&dict_dir).unwrap();
        let plain = SealedSegment::load(&sealed_file(&plain_dir, 20_000, sort_by)).unwrap();
        let encoded = SealedSegment::load(&sealed_file_of(&dictionary, &dict_dir, 20_000, sort_by)).unwrap();
        encoded.check_schema(&dictionary.arrow).unwrap();
        assert_eq!(countries(&encoded), countries(&plain), "sorted by {sort_by:?}");
        assert!(
            // Two bytes a row of strings saved (a key takes an offset's place), less the
            // dictionary's own buffers and padding.
            encoded.file_bytes() + 20_000 < plain.file_bytes(),
            "{} bytes encoded, {} plain",
            encoded.file_bytes(),
            plain.file_bytes()
        );
        // Every batch's keys point into one dictionary, inside the mapped file.
        let batches = encoded.batches().unwrap();
        assert!(batches.len() >= 3);
        let values: Vec<usize> = batches
            .iter()
            .map(|b| {
                let d = b.column(0).as_dictionary::<arrow::datatypes::Int32Type>();
                assert_eq!(d.values().len(), 4, "the four countries, each once");
                d.values().as_string::<i32>().values().as_ptr() as usize
            })
            .collect();
        assert!(values.windows(2).all(|w| w[0] == w[1]), "one dictionary for the file");
        let stats = &encoded.meta().columns[0].stats;
        assert_eq!(stats.min, Some(shoal_segment::StatValue::Str("BR".into())));
        assert_eq!(stats.max, Some(shoal_segment::StatValue::Str("US".into())));
    }
}

#[test]
fn a_file_opens_under_a_table_that_changed_its_strings_encoding_and_an_old_version_opens_too() {
    let dir = tempfile::tempdir().unwrap();
    let dictionary = layout_with(&["country"]);
    let plain_path = sealed_file(dir.path(), 10_000, None);
    let expected = countries(&SealedSegment::load(&plain_path).unwrap());

    // Written plain, read by a table that now encodes the column: converted when read.
    let segment = SealedSegment::open(&plain_path).unwrap();
    segment.check_schema(&dictionary.arrow).unwrap();
    let batches = segment.batches().unwrap();
    assert!(batches.iter().all(|b| b.schema().field(0).data_type() == dictionary.arrow.field(0).data_type()));
    assert_eq!(countries(&segment), expected);

    // Written encoded, read by a table that lists the column in noDictionaryColumns now.
    let encoded_dir = dir.path().join("encoded");
    std::fs::create_dir_all(&encoded_dir).unwrap();
    let encoded_path = sealed_file_of(&dictionary, &encoded_dir, 10_000, None);
    let segment = SealedSegment::open(&encoded_path).unwrap();
    segment.check_schema(&layout().arrow).unwrap();
    assert!(segment.batches().unwrap().iter().all(|b| b.column(0).as_string_opt::<i32>().is_some()));
    assert_eq!(countries(&segment), expected);

    // Any other difference is still refused.
    let (other, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "country", "dataType": "LONG"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    let other = TableLayout::new(Arc::new(other), &LayoutOptions::default());
    let e = SealedSegment::open(&plain_path).unwrap().check_schema(&other.arrow).unwrap_err();
    assert!(matches!(e, SegmentError::SchemaMismatch { .. }), "{e}");

    // A file of format version 1 (which never held dictionaries) still opens.
    let mut bytes = std::fs::read(&plain_path).unwrap();
    let v = bytes.len() - 56 + 8;
    bytes[v..v + 4].copy_from_slice(&1u32.to_le_bytes());
    let meta_at = bytes.windows(18).rposition(|w| w == b"\"format_version\":2").unwrap();
    bytes[meta_at + 17] = b'1';
    assert!(shoal_segment::sealed::restamp_checksums(&mut bytes));
    let old = dir.path().join("old.seg");
    std::fs::write(&old, &bytes).unwrap();
    let segment = SealedSegment::open(&old).unwrap();
    assert_eq!(segment.meta().format_version, 1);
    segment.check_schema(&dictionary.arrow).unwrap();
    assert_eq!(countries(&segment), expected);
}

/// A small deterministic generator: no extra dependency, the same cases every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A position in `range`.
    fn within(&mut self, range: std::ops::Range<usize>) -> usize {
        range.start + (self.next() as usize) % range.len()
    }
}

/// Random and mutated bytes as they are: the trailer, the IPC magic and footer length, or a
/// checksum refuses each before a parser reads the changed bytes (the next test recomputes the
/// checksums to get further).
#[test]
fn random_bytes_never_panic_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(sealed_file(dir.path(), 300, None)).unwrap();
    let bad = dir.path().join("fuzz.seg");
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let bytes: Vec<u8> = match round % 4 {
            0 => (0..(rng.next() % 4096) as usize).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut b = good.clone();
                for _ in 0..1 + rng.next() % 8 {
                    let at = rng.within(0..b.len());
                    b[at] = rng.next() as u8;
                }
                b
            }
            2 => good[..rng.within(0..good.len())].to_vec(),
            _ => {
                // Keep the trailer and metadata intact, scramble the IPC part.
                let mut b = good.clone();
                let end = b.len() - 600;
                for _ in 0..16 {
                    let at = rng.within(0..end);
                    b[at] = rng.next() as u8;
                }
                b
            }
        };
        std::fs::write(&bad, &bytes).unwrap();
        let step = SealedSegment::load(&bad).map_or_else(|e| refusing_step(&e), |_| "loaded");
        assert!(matches!(step, "trailer" | "IPC footer" | "checksum"), "round {round}: {step}");
    }
}

/// The loader's step that refused a file, from its error.
fn refusing_step(e: &SegmentError) -> &'static str {
    let SegmentError::Corrupt { reason, .. } = e else {
        return match e {
            SegmentError::UnknownVersion { .. } => "metadata",
            _ => "other",
        };
    };
    let has = |s: &str| reason.contains(s);
    if has("trailer") || has("too short") {
        "trailer"
    } else if has("checksum mismatch") {
        "checksum"
    } else if reason.starts_with("metadata: ") {
        "metadata"
    } else if has("IPC footer") || has("magic bytes") || has("IPC block lies outside") {
        "IPC footer"
    } else if has("IPC buffer") || has("IPC block's metadata") || has("IPC batch") || has("IPC block is not")
    {
        "buffer bounds"
    } else if has("rows, metadata says") {
        "row count"
    } else {
        // Arrow's reader: a message it cannot parse, an array that fails validation, or a panic
        // turned into a refusal.
        "Arrow"
    }
}

/// Mutations with their checksums recomputed (as the fuzz target does), so that they get past
/// the checksums to the metadata JSON, the IPC footer, the buffer bounds and Arrow's reader and
/// validation. Each image loads with the rows its metadata gives or is refused; never a panic.
#[test]
fn restamped_mutations_reach_the_parsers_behind_the_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(sealed_file(dir.path(), 300, None)).unwrap();
    let bad = dir.path().join("restamped.seg");
    // The file's parts, from its trailer: [IPC messages][IPC footer][padding][metadata][trailer].
    let trailer = good.len() - 56;
    let word =
        |at: usize| u64::from_le_bytes(good[trailer + at..trailer + at + 8].try_into().unwrap()) as usize;
    let (ipc_len, meta_len) = (word(16), word(24));
    let footer_len = u32::from_le_bytes(good[ipc_len - 10..ipc_len - 6].try_into().unwrap()) as usize;
    let footer = ipc_len - 10 - footer_len..ipc_len - 10;
    let metadata = trailer - meta_len..trailer;
    let digits: Vec<usize> = metadata.clone().filter(|&i| good[i].is_ascii_digit()).collect();

    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut steps = std::collections::BTreeMap::<&str, usize>::new();
    let rounds = 800;
    for round in 0..rounds {
        let mut b = good.clone();
        match round % 4 {
            // The IPC messages: the schema, the batches' headers and their bodies.
            0 => (0..1 + rng.next() % 8).for_each(|_| b[rng.within(8..footer.start)] = rng.next() as u8),
            1 => (0..1 + rng.next() % 4).for_each(|_| b[rng.within(footer.clone())] = rng.next() as u8),
            2 => (0..1 + rng.next() % 4).for_each(|_| b[rng.within(metadata.clone())] = rng.next() as u8),
            // A digit of the metadata: the JSON stays valid, a number in it changes.
            _ => {
                let at = digits[rng.within(0..digits.len())];
                b[at] = b'0' + ((b[at] - b'0') + 1 + (rng.next() % 9) as u8) % 10;
            }
        }
        assert!(shoal_segment::sealed::restamp_checksums(&mut b), "round {round}: the lengths are intact");
        std::fs::write(&bad, &b).unwrap();
        let step = match SealedSegment::load(&bad) {
            Ok(segment) => {
                let rows: usize = segment.batches().unwrap().iter().map(|b| b.num_rows()).sum();
                assert_eq!(rows as u64, segment.meta().rows, "round {round}: loaded with another row count");
                "loaded"
            }
            Err(e) => refusing_step(&e),
        };
        *steps.entry(step).or_default() += 1;
    }
    eprintln!("{rounds} restamped mutations: {steps:?}");
    // Every image has matching checksums, so none is refused at one: each got past them.
    assert_eq!(steps.get("checksum"), None, "{steps:?}");
    // And each step behind the checksums was reached, or this test does not exercise it.
    for step in ["metadata", "IPC footer", "buffer bounds", "Arrow", "row count", "loaded"] {
        assert!(steps.get(step).copied().unwrap_or(0) >= 5, "{step} reached fewer than 5 times: {steps:?}");
    }
}

/// Each batch of a mapped segment reports its own size as its memory, not the file's: DataFusion
/// accounts the batches a sort, a TopK or a result keeps by `get_array_memory_size`, and a
/// query that keeps one batch per partition would otherwise reserve the whole file each time.
#[test]
fn a_mapped_batch_reports_its_own_size_not_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed_file(dir.path(), 80_000, None);
    let file = std::fs::metadata(&path).unwrap().len() as usize;
    let segment = SealedSegment::load(&path).unwrap();
    let batches = segment.batches().unwrap();
    assert!(batches.len() >= 8, "{} batches", batches.len());
    for batch in batches {
        for column in batch.columns() {
            let reported = column.get_array_memory_size();
            // A few buffers of its batch's size at most (each reports its batch's buffer).
            assert!(reported < file / 2, "a column reports {reported} bytes of a {file}-byte file");
        }
    }
}
