//! Segment benchmarks (#4). Run: `cargo bench -p shoal-segment --bench segment`.
//!
//! - `decode_append`: decode+append of ~200-byte, 10-field JSON events on one core, beside
//!   serde_json parsing the same bytes into `IgnoredAny` (the parse-only ceiling). Goal: at
//!   least 1.5M rows/s and at least 0.5x the parse-only speed.
//! - `seal`: writing 1M rows as a sealed file (rows/s); the bytes per row on disk against the
//!   NDJSON bytes per row are printed (goal <= 0.5x).
//! - `open`: mapping and opening a sealed segment of 100k and 1M rows: the time must not grow
//!   with the size. `open_and_read` adds the first read: the data checksum, the buffer bounds,
//!   and decoding and validating every batch (it grows with the rows).
//! - `snapshot`: what a query pays to see a consuming segment of 10k, 100k and 1M rows, idle
//!   and, starting from those sizes, while another thread appends 100 rows every millisecond
//!   (the appender and the snapshot contend for the segment's lock). The segment grows during
//!   warm-up and measurement: the rows the first and last timed snapshot saw are printed, with
//!   the rate the appender reached.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;
use shoal_segment::events::{EVENTS_SCHEMA, EventGenerator};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::hint::black_box;
use std::sync::Arc;

fn layout() -> Arc<TableLayout> {
    let (schema, _) = Schema::from_json_str(EVENTS_SCHEMA).expect("valid schema");
    Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions {
            time_column: Some("timestamp".into()),
            dictionary: shoal_segment::events::events_dictionary(),
            ..Default::default()
        },
    ))
}

fn events(n: usize) -> Vec<String> {
    let mut g = EventGenerator::new(42, 1_700_000_000_000);
    (0..n).map(|_| g.next_event()).collect()
}

fn filled(layout: &Arc<TableLayout>, events: &[String]) -> MutableSegment {
    let segment = MutableSegment::new(Arc::clone(layout));
    segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
    segment
}

fn decode_append(c: &mut Criterion) {
    let layout = layout();
    let events = events(100_000);
    let bytes: usize = events.iter().map(String::len).sum();
    let mut group = c.benchmark_group("decode_append");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    group.bench_function("shoal_decode_append", |b| {
        b.iter_batched(
            || MutableSegment::new(Arc::clone(&layout)),
            |segment| {
                let outcome = segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
                assert_eq!(outcome.rows, events.len());
                segment
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| {
            for e in &events {
                black_box(serde_json::from_slice::<IgnoredAny>(e.as_bytes()).expect("valid JSON"));
            }
        })
    });
    group.finish();
    eprintln!(
        "decode_append: {} events, {:.1} bytes/event",
        events.len(),
        bytes as f64 / events.len() as f64
    );
}

fn seal(c: &mut Criterion) {
    let layout = layout();
    let events = events(1_000_000);
    let ndjson_bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let segment = filled(&layout, &events);
    let snapshot = segment.snapshot();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    let mut sequence = 0;
    group.bench_function("seal_1m_rows", |b| {
        b.iter(|| {
            sequence += 1;
            let request =
                SealRequest { table: "events", shard: "shard-0", sequence, created_ms: 0, sort_by: None };
            let (path, _) = write_segment(dir.path(), &layout, &snapshot, &request).expect("seal");
            std::fs::remove_file(path).expect("remove");
        })
    });
    group.finish();
    let request =
        SealRequest { table: "events", shard: "shard-0", sequence: 0, created_ms: 0, sort_by: None };
    let (path, _) = write_segment(dir.path(), &layout, &snapshot, &request).expect("seal");
    let file_bytes = std::fs::metadata(&path).expect("metadata").len() as f64;
    let rows = events.len() as f64;
    eprintln!(
        "seal: {:.1} bytes/row on disk vs {:.1} NDJSON bytes/row: ratio {:.3}",
        file_bytes / rows,
        ndjson_bytes as f64 / rows,
        file_bytes / ndjson_bytes as f64
    );
}

fn open(c: &mut Criterion) {
    let layout = layout();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("open");
    for rows in [100_000usize, 1_000_000] {
        let segment = filled(&layout, &events(rows));
        let request = SealRequest {
            table: "events",
            shard: "shard-0",
            sequence: rows as u64,
            created_ms: 0,
            sort_by: None,
        };
        let (path, _) = write_segment(dir.path(), &layout, &segment.snapshot(), &request).expect("seal");
        group.bench_function(format!("open_{rows}_rows"), |b| {
            b.iter(|| black_box(SealedSegment::open(&path).expect("open")))
        });
        group.sample_size(10);
        group.bench_function(format!("open_and_read_{rows}_rows"), |b| {
            b.iter(|| {
                let s = SealedSegment::open(&path).expect("open");
                black_box(s.batches().expect("batches").len())
            })
        });
    }
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let layout = layout();
    let events = events(100_000);
    let mut group = c.benchmark_group("snapshot");
    for rows in [10_000usize, 100_000, 1_000_000] {
        let segment = Arc::new(MutableSegment::new(Arc::clone(&layout)));
        for chunk in events.iter().cycle().take(rows).collect::<Vec<_>>().chunks(10_000) {
            segment.append(chunk.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
        }
        group.bench_function(format!("idle_{rows}_rows"), |b| b.iter(|| black_box(segment.snapshot())));
        // 100 rows every millisecond from another thread.
        let stop = Arc::new(AtomicBool::new(false));
        let appender = {
            let (segment, stop, events) = (Arc::clone(&segment), Arc::clone(&stop), events[..100].to_vec());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    segment.append(events.iter().map(|e| (e.as_bytes(), RecordMeta::default())));
                    n += 1;
                    let due = started + std::time::Duration::from_millis(u64::from(n));
                    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                }
            })
        };
        // Rows seen by the first and the last timed snapshot (rows only grow).
        let (mut first, mut last) = (None, 0);
        let started = std::time::Instant::now();
        group.bench_function(format!("appending_from_{rows}_rows"), |b| {
            b.iter(|| {
                let s = segment.snapshot();
                first.get_or_insert(s.rows);
                last = s.rows;
                black_box(s)
            })
        });
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        appender.join().expect("the appender");
        let first = first.unwrap_or(rows);
        eprintln!(
            "snapshot/appending_from_{rows}_rows: the timed snapshots saw {first} to {last} rows \
             ({:.1} s of warm-up and measurement, {:.0} rows/s appended)",
            seconds,
            (last - first) as f64 / seconds
        );
    }
    group.finish();
}

criterion_group!(benches, decode_append, seal, open, snapshot);
criterion_main!(benches);
