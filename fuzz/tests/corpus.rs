//! Replays every kept input of every fuzz target through its check: the seed corpora in
//! `fuzz/corpus/<target>/` and the inputs that once failed, in `fuzz/regressions/<target>/`.
//! `cargo test -p shoal-fuzz -- --ignored write_seeds` regenerates the seeds.

use std::path::{Path, PathBuf};

/// A fuzz target's check.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("json_decoder", |data| {
        shoal_fuzz::json_decoder(data);
    }),
    ("kpl", shoal_fuzz::kpl),
    ("segment_loader", shoal_fuzz::segment_loader),
    ("config", shoal_fuzz::config),
    ("functions", shoal_fuzz::functions),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => {
            entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect()
        }
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_check() {
    for (target, check) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(target));
        assert!(seeds.len() >= 3, "{target}: the seed corpus is missing");
        let regressions = inputs(&fuzz_dir().join("regressions").join(target));
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails its check", file.display());
        }
    }
}

#[test]
fn the_seeds_reach_past_the_first_checks() {
    // A seed corpus that only ever hits the first refusal would fuzz nothing: the valid seeds
    // must parse.
    let full = std::fs::read(fuzz_dir().join("corpus/json_decoder/full")).unwrap();
    assert_eq!(shoal_fuzz::json_decoder(&full), 1, "the full record is a row");

    let segment = std::fs::read(fuzz_dir().join("corpus/segment_loader/valid.seg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valid.seg");
    std::fs::write(&path, &segment).unwrap();
    let loaded = shoal_segment::SealedSegment::load(&path).expect("the seed segment opens");
    assert_eq!(loaded.meta().rows, 10);

    let config = std::fs::read_to_string(fuzz_dir().join("corpus/config/seed")).unwrap();
    let (table, schema) = config.split_once('\0').unwrap();
    shoal::TableDefinition::from_json_str(table, schema).expect("the seed config is valid");

    let aggregate = std::fs::read(fuzz_dir().join("corpus/kpl/aggregate-body")).unwrap();
    let mut framed = vec![0xF3, 0x89, 0x9A, 0xC2];
    framed.extend_from_slice(&aggregate);
    use md5::Digest;
    framed.extend_from_slice(&md5::Md5::digest(&aggregate));
    assert!(matches!(
        shoal_stream::kpl::deaggregate(&bytes::Bytes::from(framed)),
        shoal_stream::kpl::Deaggregated::Aggregate(r) if r.len() == 3
    ));

    // The function seeds decode to the calls they were written from: the security review's
    // finding, folded while planning, and a valid call over a column, which is answered.
    let finding = std::fs::read(fuzz_dir().join("corpus/functions/datetrunc-max-days")).unwrap();
    assert_eq!(
        shoal_fuzz::function_queries(&finding),
        [
            "SELECT DATETRUNC('day', 9223372036854775807, 'DAYS')",
            "SELECT DATETRUNC('day', 9223372036854775807, 'DAYS') FROM t",
        ]
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let engine = shoal_query::QueryEngine::new(Default::default());
    let refused = runtime.block_on(engine.execute(&shoal_fuzz::function_queries(&finding)[0])).unwrap_err();
    assert!(refused.message.contains("DATETRUNC: timeValue 9223372036854775807 DAYS"), "{refused}");
    let valid = std::fs::read(fuzz_dir().join("corpus/functions/datetrunc-week-column")).unwrap();
    assert_eq!(shoal_fuzz::function_queries(&valid), ["SELECT DATETRUNC('week', n) FROM t"]);
}

/// The calls the `functions` seeds hold: one per function, valid ones and the edges.
fn function_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use shoal_fuzz::{Arg, encode_call};
    let text = |t: &str| Arg::Text(t.to_string());
    let column = |c: &str| Arg::Column(shoal_fuzz::COLUMNS.iter().position(|x| *x == c).unwrap());
    let other = |o: &str| Arg::Other(shoal_fuzz::OTHERS.iter().position(|x| *x == o).unwrap());
    vec![
        ("datetrunc-max-days", encode_call("DATETRUNC", &[text("day"), Arg::Int(i64::MAX), text("DAYS")])),
        ("datetrunc-week-column", encode_call("DATETRUNC", &[text("week"), column("n")])),
        (
            "datetrunc-five-arguments",
            encode_call(
                "DATETRUNC",
                &[
                    text("day"),
                    Arg::Int(1_706_704_496_789),
                    text("MILLISECONDS"),
                    text("UTC"),
                    text("SECONDS"),
                ],
            ),
        ),
        (
            "datetimeconvert-nanoseconds",
            encode_call(
                "DATETIMECONVERT",
                &[column("n"), text("1:MILLISECONDS:EPOCH"), text("1:NANOSECONDS:EPOCH"), text("15:MINUTES")],
            ),
        ),
        (
            "datetimeconvert-simple-date",
            encode_call(
                "DATETIMECONVERT",
                &[
                    column("s"),
                    text("1:DAYS:SIMPLE_DATE_FORMAT:yyyy-MM-dd HH:mm:ss"),
                    text("1:DAYS:EPOCH"),
                    text("1:DAYS"),
                ],
            ),
        ),
        ("todatetime-min", encode_call("TODATETIME", &[Arg::Int(i64::MIN), text("yyyy-MM-dd")])),
        ("fromdatetime-long-year", encode_call("FROMDATETIME", &[column("s"), text("yyyyyyyyyyyyyyyyyyMM")])),
        ("fromdatetime-month-name", encode_call("FROMDATETIME", &[column("s"), text("yyyy MMM")])),
        ("ago-too-long", encode_call("ago", &[text("P99999999999999999999D")])),
        ("now", encode_call("now", &[])),
        (
            "json-extract-scalar",
            encode_call("JSON_EXTRACT_SCALAR", &[column("doc"), text("$.n"), text("INT"), other("NULL")]),
        ),
        ("fromepochdays-column", encode_call("FromEpochDays", &[column("n")])),
        ("toepochseconds-timestamp", encode_call("ToEpochSeconds", &[column("CAST(n AS TIMESTAMP)")])),
        ("percentile-101", encode_call("PERCENTILE", &[column("n"), Arg::Int(101)])),
        ("lastwithtime", encode_call("LASTWITHTIME", &[column("n"), column("ts"), text("LONG")])),
        ("empty", Vec::new()),
    ]
}

#[test]
#[ignore = "writes the seed corpora into the source tree"]
fn write_seeds() {
    let corpus = fuzz_dir().join("corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };

    let full = r#"{"s":"a","tags":["x","y"],"i":7,"ints":[1,2,3],"f":1.5,"b":true,"bd":"12.34","stamp":"2024-01-02T03:04:05Z","raw":"00ff","doc":{"k":[1,{"z":null}]},"nested":{"leaf":"n"},"l":9007199254740993,"d":-0.25,"ts":1700000000000,"day":"2024-01-02 00:00:00"}"#;
    put("json_decoder", "full", full.as_bytes());
    put("json_decoder", "minimal", br#"{"ts": 1700000000000}"#);
    put("json_decoder", "wrong-types", br#"{"i":"x","b":"perhaps","ints":{"a":1},"ts":"soon","d":"NaN"}"#);
    put("json_decoder", "escapes", "{\"s\":\"\\u00e9\\ud83d\\ude00\\n\",\"ts\":1e12}".as_bytes());
    put("json_decoder", "truncated", br#"{"s":"a","ts":17000"#);

    let body = |records: &[(&str, &[u8])]| {
        let blob = shoal_stream::kpl::aggregate(records);
        blob[4..blob.len() - 16].to_vec()
    };
    put("kpl", "aggregate-body", &body(&[("k1", b"{\"a\":1}"), ("k2", b""), ("k1", b"xyz")]));
    put("kpl", "one-record-body", &body(&[("key", b"{\"ts\":1}")]));
    put("kpl", "empty-body", &body(&[]));
    put("kpl", "plain", b"{\"not\":\"aggregated\"}");

    let (schema, _) = shoal_segment::Schema::from_json_str(shoal_fuzz::DECODER_SCHEMA).unwrap();
    let layout = std::sync::Arc::new(shoal_segment::TableLayout::new(
        std::sync::Arc::new(schema),
        &shoal_segment::LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
    ));
    let segment = shoal_segment::MutableSegment::new(std::sync::Arc::clone(&layout));
    let records: Vec<String> = (0..10)
        .map(|i| full.replace("\"i\":7", &format!("\"i\":{i}")).replace("\"s\":\"a\"", "\"s\":null"))
        .collect();
    let outcome =
        segment.append(records.iter().map(|r| (r.as_bytes(), shoal_segment::RecordMeta::default())));
    assert_eq!(outcome.rows, 10);
    let dir = tempfile::tempdir().unwrap();
    let request = shoal_segment::SealRequest {
        table: "fuzz",
        shard: "shardId-000000000000",
        sequence: 0,
        created_ms: 1_700_000_000_000,
        sort_by: Some("i"),
    };
    let (path, _) = shoal_segment::write_segment(dir.path(), &layout, &segment.snapshot(), &request).unwrap();
    let image = std::fs::read(&path).unwrap();
    put("segment_loader", "valid.seg", &image);
    put("segment_loader", "truncated.seg", &image[..image.len() / 2]);
    put("segment_loader", "empty", b"");

    let examples = fuzz_dir().join("../examples/config");
    let read = |name: &str| std::fs::read_to_string(examples.join(name)).unwrap();
    put(
        "config",
        "seed",
        format!("{}\0{}", read("events.table.json"), read("events.schema.json")).as_bytes(),
    );
    put(
        "config",
        "stream-config-maps",
        format!("{}\0{}", read("events.streamConfigMaps.table.json"), read("events.schema.json")).as_bytes(),
    );
    put("config", "empty-objects", b"{}\0{}");
    put("config", "not-json", b"tableName: x\0schemaName: y");

    for (name, data) in function_seeds() {
        put("functions", name, &data);
    }
}
