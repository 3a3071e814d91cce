//! Bad records through the engine: a corpus mixing good records with malformed JSON,
//! truncated records, non-UTF-8 bytes, records near Kinesis's 1 MB limit, 10,000-deep
//! nesting, huge numbers, NaN and Infinity strings, the wrong type for every data type, a
//! missing time column and timestamps out of range. The engine keeps running, every good row
//! is present, and each bad one is counted under its reason in the status and the metrics.

mod common;

use common::*;
use serde_json::json;
use shoal::Engine;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn all_types_schema() -> serde_json::Value {
    json!({
        "schemaName": "corpus",
        "dimensionFieldSpecs": [
            {"name": "key", "dataType": "STRING"},
            {"name": "i", "dataType": "INT"},
            {"name": "f", "dataType": "FLOAT"},
            {"name": "b", "dataType": "BOOLEAN"},
            {"name": "bd", "dataType": "BIG_DECIMAL"},
            {"name": "stamp", "dataType": "TIMESTAMP"},
            {"name": "raw", "dataType": "BYTES"},
            {"name": "doc", "dataType": "JSON"}
        ],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}, {"name": "d", "dataType": "DOUBLE"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_corpus_is_counted_by_reason_and_good_rows_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("corpus", 1);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    // rowTimeValueCheck on: times outside 1971..2071 are dropped (Pinot's default is off).
    let mut config = table_config("corpus", "corpus", "http://unused", 1000);
    config["ingestionConfig"]["rowTimeValueCheck"] = json!(true);
    engine.create_table(&config, &all_types_schema()).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let t = now_ms();
    let deep = format!(r#"{{"id": 1, "ts": {t}, "key": {}"x"{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let big_ok = format!(r#"{{"id": 1, "ts": {t}, "key": "{}"}}"#, "y".repeat(1_000_000 - 60));
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"id\": 1, \"ts\": ".to_vec(), "truncated"),
        (b"{id: 1}".to_vec(), "malformed_json"),
        (b"\xff\xfe{\"id\": 1}".to_vec(), "not_utf8"),
        (deep.into_bytes(), "too_deep"),
        (format!(r#"{{"id": 123456789012345678901234567890, "ts": {t}}}"#).into_bytes(), "out_of_range"),
        (format!(r#"{{"id": 1, "d": "NaN", "ts": {t}}}"#).into_bytes(), "not_finite"),
        (format!(r#"{{"id": 1, "d": "Infinity", "ts": {t}}}"#).into_bytes(), "not_finite"),
        (format!(r#"{{"id": 1, "f": 1e300, "ts": {t}}}"#).into_bytes(), "out_of_range"),
        (format!(r#"{{"id": "one", "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (format!(r#"{{"id": 1, "i": [1, 2], "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (format!(r#"{{"id": 1, "b": "perhaps", "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (format!(r#"{{"id": 1, "bd": "12x", "ts": {t}}}"#).into_bytes(), "out_of_range"),
        (format!(r#"{{"id": 1, "stamp": "yesterday", "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (format!(r#"{{"id": 1, "raw": "not hex", "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (format!(r#"{{"id": 1, "d": {{"a": 1}}, "ts": {t}}}"#).into_bytes(), "type_mismatch"),
        (br#"{"id": 1, "key": "no time"}"#.to_vec(), "missing_time"),
        (br#"{"id": 1, "ts": 5}"#.to_vec(), "time_out_of_range"),
        (br#"{"id": 1, "ts": 99999999999999}"#.to_vec(), "time_out_of_range"),
        (b"[1, 2, 3]".to_vec(), "not_an_object"),
        (b"".to_vec(), "truncated"),
    ];
    let mut good = 0;
    for (i, (bytes, _)) in bad.iter().enumerate() {
        stream.put(&shard, "k", record(i, t));
        good += 1;
        stream.put(&shard, "k", bytes.clone());
    }
    stream.put(&shard, "k", big_ok);
    good += 1;
    stream.put(&shard, "k", format!(r#"{{"id": 777, "i": "42", "f": "2.5", "b": 1, "bd": 3.25, "stamp": "2024-01-31 12:34:56", "raw": "00ff", "doc": {{"a": [1]}}, "d": "1e3", "ts": {t}}}"#));
    good += 1;

    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.table_status("corpus").unwrap().dropped.total() < bad.len() as u64
        || counts(&engine, "corpus").await.0 < good
    {
        assert!(Instant::now() < deadline, "{:?}", engine.table_status("corpus").unwrap().dropped.counts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counts(&engine, "corpus").await.0, good, "every good row is present");
    let status = engine.table_status("corpus").unwrap();
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, reason) in &bad {
        *want.entry(reason).or_default() += 1;
    }
    let got: BTreeMap<&str, u64> = status.dropped.counts.iter().map(|(r, n)| (r.name(), *n)).collect();
    assert_eq!(got, want);
    let metrics = engine.metrics().prometheus();
    for (reason, n) in &want {
        let line = format!("shoal_rows_dropped_total{{table=\"corpus\",reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    // The coerced record reads back as its column types.
    let result = engine.sql_result("SELECT i, f, b, bd, raw, d FROM corpus WHERE id = 777").await.unwrap();
    let r = shoal_server::broker::BrokerResponse::from_result(&result, Duration::ZERO);
    assert_eq!(
        r.result_table.unwrap().rows[0],
        vec![json!(42), json!(2.5), json!(true), json!("3.250000000000000000"), json!("00ff"), json!(1000.0)]
    );
    engine.shutdown().await;
}
