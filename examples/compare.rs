//! The peer comparison: the same NDJSON loaded into Shoal (through its ingest path: decode,
//! append, seal, map) and into DuckDB (`read_json`), the same query set on both in one run,
//! medians and ratios. Run it through `benches/compare/run.sh`.
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
}

#[derive(Debug)]
struct Table(Vec<SegmentData>);

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot { segments: self.0.clone() }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

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

    // Shoal's ingest path: read lines, decode+append into consuming segments, seal each full one.
    let (schema, _) = Schema::from_json_str(EVENTS_SCHEMA).expect("valid schema");
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("timestamp".into()), ..Default::default() },
    ));
    let seg_dir = args.dir.join(format!("segments-{}", args.rows));
    let _ = std::fs::remove_dir_all(&seg_dir);
    std::fs::create_dir_all(&seg_dir).expect("segment dir");
    let started = Instant::now();
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&ndjson).expect("open NDJSON"));
    let mut segments = Vec::new();
    let mut current = MutableSegment::new(Arc::clone(&layout));
    let mut batch: Vec<String> = Vec::with_capacity(10_000);
    let mut first_ts = Vec::new();
    let mut flush = |batch: &mut Vec<String>,
                     current: &mut MutableSegment,
                     segments: &mut Vec<SegmentData>| {
        current.append(batch.iter().map(|l| (l.as_bytes(), RecordMeta::default())));
        batch.clear();
        if current.rows() >= args.segment_rows {
            let request = SealRequest {
                table: "events",
                shard: "shardId-000000000000",
                sequence: segments.len() as u64,
                created_ms: 0,
                sort_by: None,
            };
            let snapshot = current.snapshot();
            first_ts.push(snapshot.time_range);
            let (path, _) = write_segment(&seg_dir, &layout, &snapshot, &request).expect("seal");
            segments.push(SegmentData::Sealed(Arc::new(SealedSegment::open(&path).expect("open sealed"))));
            *current = MutableSegment::new(Arc::clone(&layout));
        }
    };
    for line in file.lines() {
        batch.push(line.expect("read line"));
        if batch.len() == 10_000 {
            flush(&mut batch, &mut current, &mut segments);
        }
    }
    flush(&mut batch, &mut current, &mut segments);
    let tail = current.snapshot();
    if tail.rows > 0 {
        segments.push(SegmentData::Consuming(tail));
    }
    let ingest_s = started.elapsed().as_secs_f64();
    eprintln!(
        "shoal ingested {} rows ({} sealed segments + consuming) in {ingest_s:.2}s",
        args.rows,
        segments.len()
    );

    // The time-range query touches the second segment only (or the first when there is one).
    let (t0, t1) = first_ts.get(1).or(first_ts.first()).copied().flatten().unwrap_or((0, i64::MAX));
    let queries: Vec<Value> =
        serde_json::from_str(include_str!("../benches/compare/queries.json")).expect("queries.json");
    let fill = |sql: &str| sql.replace("{t0}", &t0.to_string()).replace("{t1}", &t1.to_string());
    let engine = QueryEngine::new(QueryOptions {
        timeout: std::time::Duration::from_secs(600),
        ..QueryOptions::default()
    });
    engine.register("events", Arc::clone(&layout), Arc::new(Table(segments)));
    let mut shoal_ms = Vec::new();
    let mut shoal_results = Vec::new();
    for q in &queries {
        let sql = fill(q["shoal"].as_str().unwrap_or_default());
        let mut runs = Vec::new();
        let mut rows = Value::Null;
        for _ in 0..args.repeat {
            let t = Instant::now();
            let r = engine.pinot(&sql).await;
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
            rows = json!(r.result_table.map(|t| t.rows));
        }
        shoal_ms.push(median(runs));
        shoal_results.push(rows);
    }

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
            "{:<22} {:>12.1} {:>12.1} {:>8.2}",
            q["name"].as_str().unwrap_or("?"),
            shoal_ms[i],
            d,
            ratio
        );
    }
    println!(
        "geometric mean of ratios (shoal/duckdb, lower is better): {:.2}",
        (log_sum / queries.len() as f64).exp()
    );
    let full = shoal_ms[1];
    let range = shoal_ms[4];
    println!("time-range query vs filtered full scan: {:.1}x faster", full / range);
}
