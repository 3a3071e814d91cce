//! The engine fed from memory: resharding, sealing, reopening, retention, bad records.

mod common;

use arrow::array::AsArray;
use common::*;
use serde_json::json;
use shoal::{Engine, Error, ShardState};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_through_splits_merges_seals_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("mem", 2);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table_config("mem", "mem", "http://unused", 500), &schema("mem")).await.unwrap();
    let t = now_ms();
    for i in 0..3000 {
        stream.put_by_key(&format!("k{}", i % 37), record(i, t));
    }
    let open = stream.open_shards();
    let (a, _b) = stream.split(&open[0]).unwrap();
    for i in 3000..6000 {
        stream.put_by_key(&format!("k{}", i % 37), record(i, t));
    }
    let c = stream.merge(&a, &open[1]);
    assert!(c.is_some());
    for i in 6000..9000 {
        stream.put_by_key(&format!("k{}", i % 37), record(i, t));
    }
    assert_eq!(wait_for_rows(&engine, "mem", 9000, Duration::from_secs(60)).await, (9000, 9000));
    let status = engine.table_status("mem").unwrap();
    assert!(status.segments.len() >= 10, "sealed every 500 rows: {}", status.segments.len());
    assert_eq!(
        status.shards.iter().filter(|s| s.state == ShardState::Ended).count(),
        3,
        "{:?}",
        status.shards
    );
    engine.shutdown().await;
    drop(engine);

    // Reopen: the committed segments come back, the rest is read again, nothing twice.
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    for i in 9000..9500 {
        stream.put_by_key(&format!("k{}", i % 37), record(i, t));
    }
    assert_eq!(wait_for_rows(&engine, "mem", 9500, Duration::from_secs(60)).await, (9500, 9500));
    assert_eq!(engine.tables(), ["mem"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_100_segments_does_not_read_them() {
    let mut report = Vec::new();
    for rows_each in [100usize, 5_000] {
        let dir = tempfile::tempdir().unwrap();
        let sources = MemorySources::default();
        let stream = sources.stream("big", 1);
        let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
        engine
            .create_table(&table_config("big", "big", "http://unused", rows_each as u64), &schema("big"))
            .await
            .unwrap();
        let t = now_ms();
        let shard = stream.open_shards()[0].clone();
        for i in 0..rows_each * 100 {
            stream.put(&shard, "k", record(i, t));
        }
        let total = (rows_each * 100) as i64;
        wait_for_rows(&engine, "big", total, Duration::from_secs(120)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while engine.table_status("big").unwrap().segments.len() < 100 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(engine.table_status("big").unwrap().segments.len(), 100);
        engine.shutdown().await;
        drop(engine);
        // Without the background scrub, which reads every segment after open on purpose.
        let reopen = options(sources.clone()).with_scrub(None);
        let started = Instant::now();
        let engine = Engine::open_with(dir.path(), reopen).await.unwrap();
        let took = started.elapsed();
        report.push((rows_each * 100, took));
        let status = engine.table_status("big").unwrap();
        assert_eq!(status.sealed_rows, total as u64);
        assert_eq!(status.segments.len(), 100);
        assert!(status.segments.iter().all(|s| !s.verified), "opening read no segment's data");
        // The first query reads them.
        assert_eq!(counts(&engine, "big").await, (total, total));
        assert!(engine.table_status("big").unwrap().segments.iter().all(|s| s.verified));
        engine.shutdown().await;
    }
    // Reported, not asserted: timings on a shared machine are noise (see BENCHMARKS.md).
    for (rows, took) in report {
        eprintln!("reopen with 100 sealed segments, {rows} rows: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_segments_and_queries_stop_seeing_them() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("ret", 1);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    let mut config = table_config("ret", "ret", "http://unused", 100);
    config["segmentsConfig"]["retentionTimeUnit"] = json!("DAYS");
    config["segmentsConfig"]["retentionTimeValue"] = json!("7");
    engine.create_table(&config, &schema("ret")).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let old = now_ms() - 10 * 86_400_000;
    for i in 0..300 {
        stream.put(&shard, "k", record(i, old));
    }
    let new = now_ms();
    for i in 300..500 {
        stream.put(&shard, "k", record(i, new));
    }
    // The old rows are sealed (3 segments of 100), then expire; the new ones stay. The count
    // and the smallest id are taken by one query, after every record is ingested: a count
    // taken when only 200 rows had arrived (none expired yet), with the ingested total read
    // after it, once matched, and the next query still saw ids 0..99.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ingested: u64 = engine.table_status("ret").unwrap().shards.iter().map(|s| s.rows_ingested).sum();
        let batches = engine.sql("SELECT count(*), min(id) FROM ret").await.unwrap();
        let value = |i: usize| {
            let v = arrow::compute::cast(batches[0].column(i), &arrow::datatypes::DataType::Int64).unwrap();
            let v = v.as_primitive::<arrow::datatypes::Int64Type>();
            (!arrow::array::Array::is_null(v, 0)).then(|| v.value(0))
        };
        let (rows, min) = (value(0), value(1));
        if (ingested == 500 && rows == Some(200) && min == Some(300)) || Instant::now() > deadline {
            assert_eq!(ingested, 500);
            assert_eq!((rows, min), (Some(200), Some(300)), "only the rows within retention are seen");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let files = std::fs::read_dir(dir.path().join("tables/ret/segments")).unwrap().count();
    assert_eq!(files, engine.table_status("ret").unwrap().segments.len(), "expired files are deleted");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_counted_and_good_rows_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("bad", 1);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table_config("bad", "bad", "http://unused", 1000), &schema("bad")).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let t = now_ms();
    for i in 0..100 {
        stream.put(&shard, "k", record(i, t));
        stream.put(&shard, "k", "{broken");
        stream.put(&shard, "k", format!(r#"{{"id": "x{i}", "ts": {t}}}"#));
    }
    assert_eq!(
        wait_for_rows(&engine, "bad", 100, Duration::from_secs(30)).await,
        (100, 100),
        "every good row"
    );
    let status = engine.table_status("bad").unwrap();
    assert_eq!(status.dropped.total(), 200);
    let metrics = engine.metrics().prometheus();
    assert!(
        metrics.contains("shoal_rows_dropped_total{table=\"bad\",reason=\"malformed_json\"} 100"),
        "{metrics}"
    );
    assert!(metrics.contains("shoal_rows_dropped_total{table=\"bad\",reason=\"type_mismatch\"} 100"));
    assert!(matches!(
        engine.create_table(&table_config("bad", "bad", "http://unused", 10), &schema("bad")).await,
        Err(Error::TableExists(_))
    ));
    let mut broken = table_config("x", "x", "http://unused", 10);
    broken["tableIndexConfig"]["streamConfigs"]["region"] = json!(null);
    let err = engine.create_table(&broken, &schema("x")).await.unwrap_err();
    assert!(err.to_string().contains("tableIndexConfig.streamConfigs.region"), "{err}");
    engine.drop_table("bad").await.unwrap();
    assert!(engine.tables().is_empty());
    assert!(!dir.path().join("tables/bad").exists());
}

/// Every `.seg` file under `dir`.
fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(segment_files(&path));
        } else if path.extension().is_some_and(|e| e == "seg") {
            out.push(path);
        }
    }
    out
}

/// STRING dimensions are dictionary-encoded as in Pinot (all but `noDictionaryColumns`), in the
/// consuming segment and on disk; filters, group-bys, distinct counts and Shoal's functions
/// answer over them as over plain strings, results carry plain strings, and a restart reads
/// the files back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_are_dictionary_encoded_on_disk_and_answer_as_values_through_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("dict", 1);
    let mut config = table_config("dict", "dict", "http://unused", 500);
    config["tableIndexConfig"]["noDictionaryColumns"] = json!(["name"]);
    let mut schema = schema("dict");
    schema["dimensionFieldSpecs"] = json!([
        {"name": "key", "dataType": "STRING"},
        {"name": "name", "dataType": "STRING"}
    ]);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&config, &schema).await.unwrap();
    let shard = stream.open_shards()[0].clone();
    let t = now_ms();
    let total = 2_100;
    for i in 0..total {
        stream.put(
            &shard,
            "k",
            format!(r#"{{"id": {i}, "key": "key-{}", "name": "n-{i}", "ts": {t}}}"#, i % 37),
        );
    }
    assert_eq!(wait_for_rows(&engine, "dict", total as i64, Duration::from_secs(60)).await.0, total as i64);
    let deadline = Instant::now() + Duration::from_secs(30);
    while segment_files(dir.path()).len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 4, "sealed every 500 rows, 100 consuming");
    for file in &files {
        let segment = shoal_segment::SealedSegment::open(file).unwrap();
        let types: Vec<_> = segment.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types[0], shoal_segment::columns::dictionary_type(), "key: {types:?}");
        assert_eq!(types[1], arrow::datatypes::DataType::Utf8, "name is in noDictionaryColumns");
    }

    let key_of = |i: usize| format!("key-{}", i % 37);
    let count_where = |f: &dyn Fn(&str) -> bool| (0..total).filter(|&i| f(&key_of(i))).count() as i64;
    let expected = [
        count_where(&|k| k == "key-5"),
        count_where(&|k| k == "key-1" || k == "key-2"),
        count_where(&|k| k.starts_with("key-1")),
        count_where(&|k| k > "key-30"),
    ];
    let answers = |engine: Engine| async move {
        let one = |sql: String| {
            let engine = engine.clone();
            async move {
                let result = engine.sql_result(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let batch = arrow::compute::concat_batches(&result.schema, &result.batches).unwrap();
                (result.schema, batch)
            }
        };
        let mut counts = Vec::new();
        for filter in ["key = 'key-5'", "key IN ('key-1', 'key-2')", "key LIKE 'key-1%'", "key > 'key-30'"] {
            let (_, b) = one(format!("SELECT count(*) FROM dict WHERE {filter}")).await;
            counts.push(b.column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0));
        }
        let (schema, groups) =
            one("SELECT key, count(*) AS n FROM dict GROUP BY key ORDER BY key".into()).await;
        assert_eq!(schema.field(0).data_type(), &arrow::datatypes::DataType::Utf8, "results hold values");
        let keys: Vec<String> =
            groups.column(0).as_string::<i32>().iter().map(|k| k.unwrap().to_string()).collect();
        let (_, distinct) =
            one("SELECT DISTINCTCOUNT(key), DISTINCTCOUNTHLLPLUS(key), DISTINCTCOUNTHLL(key) FROM dict"
                .into())
            .await;
        let distinct: Vec<i64> = (0..3)
            .map(|c| {
                let c = arrow::compute::cast(distinct.column(c), &arrow::datatypes::DataType::Int64).unwrap();
                c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
            })
            .collect();
        let (_, f) = one("SELECT jsonFormat(key), upper(key) FROM dict WHERE id = 5".into()).await;
        let texts: Vec<String> =
            (0..2).map(|c| f.column(c).as_string::<i32>().value(0).to_string()).collect();
        (counts, keys, distinct, texts)
    };
    let before = answers(engine.clone()).await;
    let (counts, keys, distinct, texts) = &before;
    assert_eq!(counts, &expected.to_vec());
    let mut want_keys: Vec<String> = (0..37).map(|i| format!("key-{i}")).collect();
    want_keys.sort();
    assert_eq!(keys, &want_keys);
    assert_eq!(distinct[0], 37);
    assert!((35..=39).contains(&distinct[1]) && (35..=39).contains(&distinct[2]), "{distinct:?}");
    assert_eq!(texts, &["\"key-5\"".to_string(), "KEY-5".to_string()]);

    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert_eq!(wait_for_rows(&engine, "dict", total as i64, Duration::from_secs(60)).await.0, total as i64);
    assert_eq!(answers(engine.clone()).await, before, "the same answers after a restart");
    engine.shutdown().await;
}
