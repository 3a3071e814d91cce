//! The peer comparison: the same NDJSON loaded into Shoal (through its ingest path: decode,
//! append, seal, map) and into DuckDB (`read_json`), the same query set on both in one run,
//! medians and ratios. Run it through `benches/compare/run.sh`.
//!
//! Every query's answer is checked against DuckDB's: the same rows (in the same order where the
//! query orders), integers exact, floats within 1e-9 relative, strings exact. A difference is
//! printed with both answers and the run exits with status 1. The time-range query is also timed
//! with pruning off (`QueryOptions::prune`), the same SQL reading every segment.
//!
//! ```text
//! cargo run --release --example compare -- --rows 1000000 --dir /tmp/shoal-compare [--repeat 5]
//! ```

use clap::Parser;
use serde_json::{Value, json};
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::events::{EVENTS_SCHEMA, EventGenerator};
use shoal_segment::{
    LayoutOptions, MutableSegment, RecordMeta, Schema, SealRequest, SealedSegment, TableLayout, write_segment,
};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per sealed segment (the rest stays in a consuming segment).
    #[arg(long, default_value_t = 1_000_000)]
    segment_rows: usize,
    /// Where the NDJSON and the segments go.
    #[arg(long, default_value = "/tmp/shoal-compare")]
    dir: PathBuf,
    /// Runs per query (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Shards the file is split into, each ingested on its own thread (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Runs only the named query of queries.json, `--times` times, prints its timings and
    /// stops (no DuckDB): for profiling one query with `perf record`.
    #[arg(long)]
    profile: Option<String>,
    /// Runs of the `--profile` query.
    #[arg(long, default_value_t = 1000)]
    times: usize,
    /// With `--profile`: runs this query of queries.json (untimed) before each run of the
    /// profiled one, as the comparison runs a short query after a long one.
    #[arg(long)]
    after: Option<String>,
    /// With `--profile`: the query runs with Pinot's `trace` option, and the medians of its
    /// planning and execution times are printed too.
    #[arg(long)]
    trace: bool,
    /// With `--profile`: milliseconds of sleep before each run, as a dashboard's queries come
    /// after idle time (every thread of the process is idle meanwhile).
    #[arg(long, default_value_t = 0)]
    pause: u64,
}

/// The smallest and largest time of a segment's rows (None without rows or a time column).
type TimeRange = Option<(i64, i64)>;

/// What one shard's ingest made: its sealed segments with their time ranges, and the rows left
/// consuming.
struct Part {
    /// Each sealed segment and its time range.
    sealed: Vec<(Arc<SealedSegment>, TimeRange)>,
    tail: Option<shoal_segment::SegmentSnapshot>,
}

/// Ingests the lines of `ndjson` that start inside `range` (bytes) as shard `shard`: decode,
/// append, and seal every `segment_rows` rows. As in the engine (`src/table/ingest.rs`), a full
/// segment seals on a thread of its own while the next one fills, with one seal in flight.
fn ingest_part(
    ndjson: &std::path::Path,
    range: std::ops::Range<u64>,
    shard: usize,
    layout: &Arc<TableLayout>,
    seg_dir: &std::path::Path,
    segment_rows: usize,
) -> Part {
    use std::io::{Seek, SeekFrom};
    let shard_id = format!("shardId-{shard:012}");
    let mut file = std::fs::File::open(ndjson).expect("open NDJSON");
    file.seek(SeekFrom::Start(range.start)).expect("seek");
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut at = range.start;
    // A chunk of lines in one buffer, each read straight into it: their bytes, and where each ends.
    let (mut data, mut ends) = (Vec::<u8>::with_capacity(4 << 20), Vec::<usize>::with_capacity(10_000));
    if at > 0 {
        // The line under way at the start belongs to the part before.
        at += reader.read_until(b'\n', &mut data).expect("read") as u64;
        data.clear();
    }
    let mut part = Part { sealed: Vec::new(), tail: None };
    let mut current = MutableSegment::new(Arc::clone(layout));
    std::thread::scope(|scope| {
        let mut in_flight: Option<std::thread::ScopedJoinHandle<'_, (Arc<SealedSegment>, TimeRange)>> = None;
        let mut flush = |data: &mut Vec<u8>, ends: &mut Vec<usize>, current: &mut MutableSegment| {
            let mut start = 0;
            current.append(ends.iter().map(|&end| {
                let record = &data[start..end];
                start = end;
                (record, RecordMeta::default())
            }));
            data.clear();
            ends.clear();
            if current.rows() >= segment_rows {
                // The seal before this one is done first: its number comes before this one's.
                if let Some(sealing) = in_flight.take() {
                    part.sealed.push(sealing.join().expect("a seal thread"));
                }
                let full = std::mem::replace(current, MutableSegment::new(Arc::clone(layout)));
                let sequence = part.sealed.len() as u64;
                let shard = shard_id.as_str();
                in_flight = Some(scope.spawn(move || {
                    let request =
                        SealRequest { table: "events", shard, sequence, created_ms: 0, sort_by: None };
                    let snapshot = full.snapshot();
                    let (path, _) = write_segment(seg_dir, layout, &snapshot, &request).expect("seal");
                    (Arc::new(SealedSegment::open(&path).expect("open sealed")), snapshot.time_range)
                }));
            }
        };
        // Rows the consuming segment takes before it is full (sealed segments hold exactly
        // `segment_rows` rows).
        let mut room = segment_rows;
        while at < range.end {
            let read = reader.read_until(b'\n', &mut data).expect("read line");
            if read == 0 {
                break;
            }
            at += read as u64;
            if data.last() == Some(&b'\n') {
                data.pop();
            }
            ends.push(data.len());
            if ends.len() == 10_000 || ends.len() == room {
                flush(&mut data, &mut ends, &mut current);
                room = segment_rows.saturating_sub(current.rows());
            }
        }
        flush(&mut data, &mut ends, &mut current);
        if let Some(sealing) = in_flight.take() {
            part.sealed.push(sealing.join().expect("a seal thread"));
        }
    });
    let tail = current.snapshot();
    if tail.rows > 0 {
        part.tail = Some(tail);
    }
    part
}

#[derive(Debug)]
struct Table(Vec<SegmentData>);

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot::new(self.0.clone())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Relative tolerance for floating-point cells: sums and averages add in different orders.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// Whether two cells of a column of Pinot type `pinot_type` are the same answer.
fn same_cell(pinot_type: &str, a: &Value, b: &Value) -> bool {
    let int = |v: &Value| v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from));
    match pinot_type {
        "INT" | "LONG" => matches!((int(a), int(b)), (Some(x), Some(y)) if x == y),
        "FLOAT" | "DOUBLE" => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs()),
            _ => a == b,
        },
        _ => a == b,
    }
}

fn same_row(types: &[String], a: &[Value], b: &[Value]) -> bool {
    a.len() == types.len()
        && b.len() == types.len()
        && types.iter().zip(a.iter().zip(b)).all(|(t, (x, y))| same_cell(t, x, y))
}

/// Compares Shoal's answer (with its column types) to DuckDB's. Without ORDER BY the rows are
/// compared as a set: both sides are sorted by their non-floating cells first. Returns a report
/// of the first differing rows of both, or None when the answers are the same.
fn answer_difference(
    sql: &str,
    types: &[String],
    shoal: &[Vec<Value>],
    duckdb: &[Vec<Value>],
) -> Option<String> {
    let (mut ours, mut theirs) = (shoal.to_vec(), duckdb.to_vec());
    if !sql.to_ascii_uppercase().contains("ORDER BY") {
        let key = |row: &Vec<Value>| -> String {
            row.iter()
                .zip(types)
                .filter(|(_, t)| !matches!(t.as_str(), "FLOAT" | "DOUBLE"))
                .map(|(v, _)| v.to_string())
                .collect::<Vec<_>>()
                .join("\u{1}")
        };
        ours.sort_by_cached_key(key);
        theirs.sort_by_cached_key(key);
    }
    let first = (0..ours.len().max(theirs.len())).find(|&i| match (ours.get(i), theirs.get(i)) {
        (Some(a), Some(b)) => !same_row(types, a, b),
        _ => true,
    })?;
    let show = |rows: &[Vec<Value>]| -> String {
        let shown: Vec<String> = rows.iter().skip(first).take(5).map(|r| json!(r).to_string()).collect();
        if shown.is_empty() { "(no row)".to_string() } else { shown.join("\n      ") }
    };
    Some(format!(
        "column types {types:?}; first difference at row {first}\n  shoal ({} rows):\n      {}\n  duckdb ({} rows):\n      {}",
        ours.len(),
        show(&ours),
        theirs.len(),
        show(&theirs)
    ))
}

/// The allocator the server ships with (crates/server/src/main.rs); DuckDB brings its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).expect("create the work dir");
    let ndjson = args.dir.join(format!("events-{}.ndjson", args.rows));
    if !ndjson.exists() {
        let started = Instant::now();
        let mut out = BufWriter::new(std::fs::File::create(&ndjson).expect("create the NDJSON file"));
        let mut g = EventGenerator::new(42, 1_700_000_000_000);
        let mut line = String::new();
        for _ in 0..args.rows {
            g.write_next(&mut line);
            out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).expect("write NDJSON");
        }
        out.flush().expect("flush NDJSON");
        eprintln!("generated {} rows in {:?}", args.rows, started.elapsed());
    }
    let bytes = std::fs::metadata(&ndjson).map(|m| m.len()).unwrap_or(0);
    // Both loads read the file from the page cache: the first to read it (Shoal's) would
    // otherwise pay for the disk reads that DuckDB's, after it, does not.
    std::io::copy(&mut std::fs::File::open(&ndjson).expect("open NDJSON"), &mut std::io::sink())
        .expect("read the NDJSON once");

    // Shoal's ingest path: read lines, decode+append into consuming segments, seal each full one.
    let (schema, _) = Schema::from_json_str(EVENTS_SCHEMA).expect("valid schema");
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions {
            time_column: Some("timestamp".into()),
            dictionary: shoal_segment::events::events_dictionary(),
            ..Default::default()
        },
    ));
    let seg_dir = args.dir.join(format!("segments-{}", args.rows));
    let _ = std::fs::remove_dir_all(&seg_dir);
    std::fs::create_dir_all(&seg_dir).expect("segment dir");
    let started = Instant::now();
    // One shard per core, each a contiguous part of the file decoded on its own thread, as a
    // table's shards are ingested in parallel.
    let parts =
        args.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let ingested: Vec<Part> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..parts)
            .map(|i| {
                let (from, to) = (bytes * i as u64 / parts as u64, bytes * (i + 1) as u64 / parts as u64);
                let (ndjson, layout, seg_dir) = (&ndjson, &layout, &seg_dir);
                scope.spawn(move || ingest_part(ndjson, from..to, i, layout, seg_dir, args.segment_rows))
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("an ingest thread")).collect()
    });
    let mut segments = Vec::new();
    let mut first_ts = Vec::new();
    let (mut sealed, mut tail_rows) = (0, 0);
    for part in &ingested {
        for (segment, range) in &part.sealed {
            segments.push(SegmentData::Sealed(Arc::clone(segment)));
            first_ts.push(*range);
        }
        sealed += part.sealed.len();
    }
    for part in ingested {
        if let Some(tail) = part.tail {
            tail_rows += tail.rows;
            segments.push(SegmentData::Consuming(tail));
        }
    }
    let ingest_s = started.elapsed().as_secs_f64();
    eprintln!(
        "shoal ingested {} rows in {parts} shards ({sealed} sealed segments + {tail_rows} rows consuming) in {ingest_s:.2}s",
        args.rows
    );
    let (sealed_rows, sealed_bytes) = segments.iter().fold((0u64, 0u64), |(rows, bytes), s| match s {
        SegmentData::Sealed(s) => (rows + s.meta().rows, bytes + s.file_bytes()),
        _ => (rows, bytes),
    });
    if sealed_rows > 0 {
        let ndjson_per_row = bytes as f64 / args.rows as f64;
        let per_row = sealed_bytes as f64 / sealed_rows as f64;
        eprintln!(
            "sealed segments: {per_row:.1} bytes a row against {ndjson_per_row:.1} of NDJSON: {:.3}x",
            per_row / ndjson_per_row
        );
    }

    // The time-range query touches the second segment only (or the first when there is one).
    let (t0, t1) = first_ts.get(1).or(first_ts.first()).copied().flatten().unwrap_or((0, i64::MAX));
    let queries: Vec<Value> =
        serde_json::from_str(include_str!("../benches/compare/queries.json")).expect("queries.json");
    let fill = |sql: &str| shoal_segment::events::fill_query(sql, t0, t1, args.rows);
    let options = QueryOptions::default().with_timeout(std::time::Duration::from_secs(600));
    let table = Arc::new(Table(segments));
    let engine = QueryEngine::new(options.clone());
    engine.register("events", Arc::clone(&layout), Arc::clone(&table) as Arc<dyn SnapshotSource>);
    // The same table with pruning off, to time the same time-range SQL reading every segment.
    let unpruned = QueryEngine::new(options.with_prune(false));
    unpruned.register("events", Arc::clone(&layout), table);
    if let Some(name) = &args.profile {
        // Shoal's SQL of the query of queries.json named by `flag`'s value.
        let named = |name: &str, flag: &str| {
            let q = queries
                .iter()
                .find(|q| q["name"] == name)
                .unwrap_or_else(|| panic!("{flag} names a query of queries.json"));
            fill(q["shoal"].as_str().unwrap_or_default())
        };
        let mut sql = named(name, "--profile");
        if args.trace {
            sql = format!("SET trace = true; {sql}");
        }
        let mut phases: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let before = args.after.as_deref().map(|name| named(name, "--after"));
        let mut runs = Vec::with_capacity(args.times);
        let mut scanned = (0, 0, 0);
        for _ in 0..args.times {
            if let Some(before) = &before {
                let r = shoal_server::broker::answer_query(&engine, before).await;
                assert!(r.exceptions.is_empty(), "{before}: {:?}", r.exceptions);
            }
            if args.pause > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(args.pause)).await;
            }
            let t = Instant::now();
            let r = shoal_server::broker::answer_query(&engine, &sql).await;
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
            scanned = (r.num_docs_scanned, r.num_entries_scanned_in_filter, r.num_segments_processed);
            for trace in r.trace_info.values() {
                let trace: Value = serde_json::from_str(trace).expect("a trace is JSON");
                for (times, key) in phases.iter_mut().zip(["planMs", "executeMs"]) {
                    times.push(trace[key].as_f64().unwrap_or(f64::NAN));
                }
            }
        }
        if let [plan, execute] = phases
            && !plan.is_empty()
        {
            println!("{name}: median planning {:.3} ms, execution {:.3} ms", median(plan), median(execute));
        }
        println!(
            "{name}: {} rows read, {} entries scanned in filter, {} segments processed",
            scanned.0, scanned.1, scanned.2
        );
        // In order as well: a query's first runs after the ingest are slower than the rest.
        let first: Vec<String> = runs.iter().take(10).map(|ms| format!("{ms:.3}")).collect();
        println!("{name}: the first runs in order (ms): {}", first.join(", "));
        runs.sort_by(f64::total_cmp);
        let at = |q: f64| runs[((runs.len() - 1) as f64 * q) as usize];
        println!(
            "{name}: {} runs, p10 {:.3} ms, median {:.3} ms, p90 {:.3} ms",
            runs.len(),
            at(0.1),
            at(0.5),
            at(0.9)
        );
        return;
    }
    let mut shoal_ms = Vec::new();
    // Per query: the column types and rows of Shoal's answer.
    let mut shoal_results: Vec<(Vec<String>, Vec<Vec<Value>>)> = Vec::new();
    let mut processed = Vec::new();
    for q in &queries {
        let sql = fill(q["shoal"].as_str().unwrap_or_default());
        let mut runs = Vec::new();
        let mut answer = (Vec::new(), Vec::new());
        for _ in 0..args.repeat {
            let t = Instant::now();
            let r = shoal_server::broker::answer_query(&engine, &sql).await;
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
            processed.push((r.num_segments_processed, r.num_segments_queried));
            let t = r.result_table.expect("a query without exceptions has a result table");
            answer = (t.data_schema.column_data_types, t.rows);
        }
        shoal_ms.push(median(runs));
        shoal_results.push(answer);
    }
    let range_index = queries.iter().position(|q| q["name"] == "time_range").expect("a time_range query");
    let range_sql = fill(queries[range_index]["shoal"].as_str().unwrap_or_default());
    let mut unpruned_runs = Vec::new();
    let mut unpruned_answer = Vec::new();
    let mut unpruned_processed = (0, 0);
    for _ in 0..args.repeat {
        let t = Instant::now();
        let r = shoal_server::broker::answer_query(&unpruned, &range_sql).await;
        unpruned_runs.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(r.exceptions.is_empty(), "{range_sql}: {:?}", r.exceptions);
        unpruned_processed = (r.num_segments_processed, r.num_segments_queried);
        unpruned_answer = r.result_table.expect("a query without exceptions has a result table").rows;
    }
    let range_processed = processed[range_index * args.repeat];

    // DuckDB on the same file, in the same run.
    let request = json!({
        "ndjson": ndjson,
        "queries": queries.iter().map(|q| fill(q["duckdb"].as_str().unwrap_or_default())).collect::<Vec<_>>(),
        "repeat": args.repeat,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/compare/duckdb_queries.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write request");
    let out = child.wait_with_output().expect("duckdb run");
    assert!(out.status.success(), "DuckDB failed");
    let duck: Value = serde_json::from_slice(&out.stdout).expect("DuckDB output");

    println!(
        "\n{} rows, {:.1} MB NDJSON, {} cores",
        args.rows,
        bytes as f64 / 1e6,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "load: shoal ingest {ingest_s:.2}s ({:.0} rows/s)  duckdb read_json {:.2}s  ratio {:.2}",
        args.rows as f64 / ingest_s,
        duck["load_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        ingest_s * 1000.0 / duck["load_ms"].as_f64().unwrap_or(1.0)
    );
    println!("{:<22} {:>12} {:>12} {:>8}", "query", "shoal ms", "duckdb ms", "ratio");
    // Shoal's answers against DuckDB's, query by query.
    let mut differences = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let theirs: Vec<Vec<Value>> = duck["results"][i]
            .as_array()
            .map(|rows| rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
            .unwrap_or_default();
        let (types, ours) = &shoal_results[i];
        if let Some(report) =
            answer_difference(&fill(q["shoal"].as_str().unwrap_or_default()), types, ours, &theirs)
        {
            differences.push((i, report));
        }
    }
    if let Some(report) = answer_difference(
        &range_sql,
        &shoal_results[range_index].0,
        &unpruned_answer,
        &shoal_results[range_index].1,
    ) {
        differences.push((range_index, format!("with pruning off against pruning on: {report}")));
    }
    let mut log_sum = 0.0;
    for (i, q) in queries.iter().enumerate() {
        let runs: Vec<f64> = duck["times_ms"][i]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let d = median(runs);
        let ratio = shoal_ms[i] / d;
        log_sum += ratio.ln();
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>8.2}{}",
            q["name"].as_str().unwrap_or("?"),
            shoal_ms[i],
            d,
            ratio,
            if differences.iter().any(|(j, _)| *j == i) { "  ANSWER DIFFERS" } else { "" }
        );
    }
    println!(
        "geometric mean of ratios (shoal/duckdb, lower is better): {:.2}",
        (log_sum / queries.len() as f64).exp()
    );
    let unpruned_ms = median(unpruned_runs);
    let (on_ms, (on_read, queried), (off_read, _)) =
        (shoal_ms[range_index], range_processed, unpruned_processed);
    if on_read < off_read {
        println!(
            "time_range, same SQL: pruning on {on_ms:.1} ms ({on_read} of {queried} segments read), off {unpruned_ms:.1} ms ({off_read} of {queried}): {:.1}x faster with pruning",
            unpruned_ms / on_ms
        );
    } else {
        // One segment (or all of them) in the range: nothing to prune, any difference is noise.
        println!(
            "time_range, same SQL: pruning on {on_ms:.1} ms, off {unpruned_ms:.1} ms: both read {on_read} of {queried} segments, so pruning saved nothing here (use more rows than --segment-rows)"
        );
    }
    if differences.is_empty() {
        println!(
            "answers: all {} queries equal to DuckDB's (integers exact, floats within {FLOAT_TOLERANCE:e} relative, strings exact), and time_range equal with pruning off",
            queries.len()
        );
    } else {
        for (i, report) in &differences {
            let q = &queries[*i];
            eprintln!(
                "\nANSWER DIFFERS: {}: {}\n{report}",
                q["name"].as_str().unwrap_or("?"),
                fill(q["shoal"].as_str().unwrap_or_default())
            );
        }
        eprintln!(
            "\nFAILED: {} answer check(s) failed; the timings above do not compare equal work",
            differences.len()
        );
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn integers_are_exact_floats_within_tolerance_strings_exact() {
        let t = types(&["STRING", "LONG", "DOUBLE"]);
        let ours = vec![vec![json!("a"), json!(10), json!(1.0)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &ours).is_none());
        let close = vec![vec![json!("a"), json!(10), json!(1.0 + 1e-12)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &close).is_none());
        let far = vec![vec![json!("a"), json!(10), json!(1.0 + 1e-8)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &far).is_some());
        let off_by_one = vec![vec![json!("a"), json!(11), json!(1.0)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &off_by_one).is_some());
        // An integer column answered as a float is a difference, not a match by value.
        let as_float = vec![vec![json!("a"), json!(10.0), json!(1.0)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &as_float).is_some());
        let other_string = vec![vec![json!("b"), json!(10), json!(1.0)]];
        assert!(answer_difference("SELECT 1", &t, &ours, &other_string).is_some());
    }

    #[test]
    fn order_counts_only_where_the_query_orders() {
        let t = types(&["STRING", "LONG"]);
        let a = vec![vec![json!("x"), json!(1)], vec![json!("y"), json!(2)]];
        let b = vec![vec![json!("y"), json!(2)], vec![json!("x"), json!(1)]];
        assert!(answer_difference("SELECT s, n FROM t GROUP BY s", &t, &a, &b).is_none());
        let report = answer_difference("SELECT s, n FROM t ORDER BY n", &t, &a, &b).expect("a difference");
        assert!(report.contains("row 0") && report.contains("\"x\"") && report.contains("\"y\""), "{report}");
        // A missing row is a difference.
        assert!(answer_difference("SELECT s, n FROM t ORDER BY n", &t, &a, &a[..1]).is_some());
    }
}
