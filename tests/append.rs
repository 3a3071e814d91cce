//! Tables an app feeds (`"streamType": "append"`, `Engine::append`): the records take the
//! stream's path (decode, transforms, seal, commit), are durable when `append` returns, and
//! come back after a restart and after a SIGKILL exactly as the docs promise: every
//! acknowledged batch whole, any batch whole or not at all, no record twice.

mod common;

use arrow::array::{Array, AsArray};
use common::*;
use serde_json::{Value, json};
use shoal::{Engine, Error};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn append_config(name: &str, rows: u64) -> Value {
    json!({
        "tableName": name,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "append",
                "realtime.segment.flush.threshold.segment.rows": rows.to_string(),
                "realtime.segment.flush.threshold.time": "1h"
            }
        },
        "ingestionConfig": {
            "transformConfigs": [{"columnName": "shout", "transformFunction": "upper(key)"}]
        },
        "metadata": {}
    })
}

fn append_schema(name: &str) -> Value {
    json!({
        "schemaName": name,
        "dimensionFieldSpecs": [{"name": "key", "dataType": "STRING"}, {"name": "shout", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

async fn strings(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine.sql(sql).await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_records_are_decoded_transformed_sealed_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&append_config("clicks", 4), &append_schema("clicks")).await.unwrap();
    let ts = now_ms();
    let mut records: Vec<String> = (1..=9).map(|i| record(i, ts)).collect();
    records.insert(4, "{not json".to_string());
    let appended = engine.append("clicks", &records).await.unwrap();
    assert_eq!((appended.records, appended.first, appended.last), (10, Some(1), Some(10)));
    appended.queryable().await.unwrap();
    // Every good record is a row at once; the bad one is counted and skipped.
    assert_eq!(counts(&engine, "clicks").await, (9, 9));
    assert_eq!(strings(&engine, "SELECT shout FROM clicks WHERE id = 3").await, vec!["KEY-3"]);
    let status = engine.table_status("clicks").unwrap();
    assert_eq!(status.segments.len(), 2, "4 rows a segment: two sealed, one row consuming: {status:?}");
    assert_eq!((status.sealed_rows, status.consuming_rows), (8, 1));
    let dropped: u64 = engine.metrics().table("clicks").dropped.lock().unwrap().counts.values().sum();
    assert_eq!(dropped, 1, "the bad record is counted");

    // A second call continues the numbering; an empty call writes nothing.
    let more = engine.append("clicks", [record(10, ts)]).await.unwrap();
    assert_eq!((more.first, more.last), (Some(11), Some(11)));
    more.queryable().await.unwrap();
    assert_eq!(counts(&engine, "clicks").await, (10, 10));
    let none = engine.append("clicks", Vec::<String>::new()).await.unwrap();
    assert_eq!((none.records, none.first), (0, None));
    none.queryable().await.unwrap();

    // A Kinesis table takes no appends, an unknown one is named.
    sources.stream("kin", 1);
    engine.create_table(&table_config("kin", "kin", "http://127.0.0.1:1", 10), &schema("kin")).await.unwrap();
    let e = engine.append("kin", [record(1, ts)]).await.unwrap_err();
    assert!(matches!(e, Error::NotAppendable(ref t) if t == "kin"), "{e}");
    assert!(matches!(engine.append("nope", [record(1, ts)]).await.unwrap_err(), Error::NoSuchTable(_)));
    // Errors are matched by kind too.
    assert_eq!(engine.append("nope", [record(1, ts)]).await.unwrap_err().kind(), shoal::ErrorKind::NotFound);
    assert_eq!(e.kind(), shoal::ErrorKind::InvalidInput);
    let e = engine.sql("SELECT count(*) FROM nope").await.unwrap_err();
    assert_eq!(e.kind(), shoal::ErrorKind::Query(shoal::QueryErrorKind::TableNotFound), "{e}");
    let e = engine.create_table(&append_config("clicks", 4), &append_schema("clicks")).await.unwrap_err();
    assert_eq!(e.kind(), shoal::ErrorKind::AlreadyExists);

    // A paused table takes appends and reads them at its resume.
    engine.pause_consumption("clicks", None).await.unwrap();
    let paused = engine.append("clicks", [record(11, ts)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&engine, "clicks").await, (10, 10));
    engine.resume_consumption("clicks").await.unwrap();
    paused.queryable().await.unwrap();
    assert_eq!(counts(&engine, "clicks").await, (11, 11));
    engine.shutdown().await;
}

#[tokio::test]
async fn an_append_table_refuses_kinesis_settings_by_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
    let mut config = append_config("clicks", 4);
    config["tableIndexConfig"]["streamConfigs"]["region"] = json!("us-east-1");
    let e = engine.create_table(&config, &append_schema("clicks")).await.unwrap_err().to_string();
    assert!(e.contains("tableIndexConfig.streamConfigs.region") && e.contains("Kinesis setting"), "{e}");
    let mut config = append_config("clicks", 4);
    config["tableIndexConfig"]["streamConfigs"]["streamType"] = json!("kafka");
    let e = engine.create_table(&config, &append_schema("clicks")).await.unwrap_err().to_string();
    assert!(e.contains("streamType") && e.contains("\"append\""), "{e}");
    // The config reads back as it was given (its effective settings).
    engine.create_table(&append_config("clicks", 4), &append_schema("clicks")).await.unwrap();
    let def = engine.definition("clicks").unwrap();
    assert!(def.config.stream.is_append());
    let again =
        shoal::TableDefinition::from_json(&def.config.normalised_json(), &append_schema("clicks")).unwrap();
    assert!(again.config.stream.is_append());
    assert_eq!(again.config.normalised_json(), def.config.normalised_json());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_the_unsealed_rows_from_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms();
    {
        let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
        engine.create_table(&append_config("clicks", 4), &append_schema("clicks")).await.unwrap();
        for batch in 0..5 {
            let records: Vec<String> = (0..3).map(|i| record(batch * 3 + i, ts)).collect();
            engine.append("clicks", &records).await.unwrap();
        }
        // Not waited for: 15 records acknowledged, some sealed, some consuming, some maybe
        // not yet read from the log.
        engine.shutdown().await;
    }
    let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
    let next = engine.append("clicks", [record(15, ts)]).await.unwrap();
    assert_eq!(next.first, Some(16), "numbering goes on after the log");
    next.queryable().await.unwrap();
    assert_eq!(counts(&engine, "clicks").await, (16, 16));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_of_an_append_table_is_read_again_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms();
    let segments = {
        let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
        engine.create_table(&append_config("clicks", 4), &append_schema("clicks")).await.unwrap();
        let records: Vec<String> = (0..10).map(|i| record(i, ts)).collect();
        engine.append("clicks", &records).await.unwrap().queryable().await.unwrap();
        // Segments seal in the background: wait for both commits (8 rows sealed).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while engine.table_status("clicks").unwrap().sealed_rows < 8 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let segments = engine.table_status("clicks").unwrap().segments;
        engine.shutdown().await;
        segments
    };
    assert_eq!(segments.len(), 2);
    // The first segment (records 1..=4) cut short.
    let file = dir.path().join("tables/clicks/segments").join(format!("{}.seg", segments[0].name));
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
    assert_eq!(engine.table_status("clicks").unwrap().quarantined.len(), 1);
    // Its rows come back from the append log, none twice.
    assert_eq!(wait_for_rows(&engine, "clicks", 10, Duration::from_secs(60)).await, (10, 10));
    engine.shutdown().await;
}

const DIR: &str = "SHOAL_APPEND_DIR";
const RUN: &str = "SHOAL_APPEND_RUN";
const BATCH: usize = 40;

/// The child: appends batches of BATCH records as fast as it can, logging each one that
/// `append` acknowledged, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by appends_survive_sigkill as a child process"]
async fn append_child() {
    let (Ok(dir), Ok(run)) = (std::env::var(DIR), std::env::var(RUN)) else { return };
    let run: usize = run.parse().unwrap();
    let engine = Engine::open_with(&dir, options(MemorySources::default())).await.unwrap();
    if engine.tables().is_empty() {
        engine.create_table(&append_config("clicks", 100), &append_schema("clicks")).await.unwrap();
    }
    println!("CHILD STARTED");
    let ts = now_ms();
    for batch in 0.. {
        let records: Vec<String> =
            (0..BATCH).map(|i| record(run * 1_000_000 + batch * 100 + i, ts)).collect();
        engine.append("clicks", &records).await.unwrap();
        println!("ACKED {run} {batch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut seed = now_ms() as u64 | 1;
    for run in 0..4 {
        let run_text = run.to_string();
        let mut child = Child::start(
            &exe,
            "append_child",
            &[(DIR, dir.path().as_os_str()), (RUN, std::ffi::OsStr::new(&run_text))],
        );
        assert!(child.wait_for("CHILD STARTED", 0, Duration::from_secs(60)).await, "{}", child.tail());
        assert!(
            child.wait_for("ACKED", 20, Duration::from_secs(60)).await,
            "appends go on:\n{}",
            child.tail()
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 700)).await;
        assert!(child.kill(), "run {run}: the child was alive when killed:\n{}", child.tail());
        // What the child printed was acknowledged before the kill.
        for line in child.lines() {
            if let Some(rest) = line.strip_prefix("ACKED ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<usize>().unwrap());
                acked.insert((parts.next().unwrap(), parts.next().unwrap()));
            }
        }
    }
    let engine = Engine::open_with(dir.path(), options(MemorySources::default())).await.unwrap();
    // The log is read in order: once this marker is queryable, everything before it is too.
    let marker = engine.append("clicks", [record(999_999_999, now_ms())]).await.unwrap();
    marker.queryable().await.unwrap();
    // Per batch (id / 100): its rows and its distinct ids.
    let batches = engine
        .sql("SELECT id / 100, count(*), count(DISTINCT id) FROM clicks WHERE id <> 999999999 GROUP BY 1 LIMIT 1000000")
        .await
        .unwrap();
    let mut per_batch: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for b in &batches {
        let col = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64)
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone()
        };
        let (key, rows, distinct) = (col(0), col(1), col(2));
        for i in 0..b.num_rows() {
            let key = key.value(i) as usize;
            assert_eq!(rows.value(i), distinct.value(i), "a record of batch {key} is in the table twice");
            per_batch.insert((key / 10_000, key % 10_000), rows.value(i) as usize);
        }
    }
    for batch in &acked {
        assert_eq!(per_batch.get(batch), Some(&BATCH), "acknowledged batch {batch:?} is whole");
    }
    for (batch, rows) in &per_batch {
        assert_eq!(*rows, BATCH, "batch {batch:?} is whole or absent");
    }
    let unacked = per_batch.keys().filter(|b| !acked.contains(b)).count();
    assert!(unacked <= 4, "at most the one batch in flight at each kill is kept unacknowledged: {unacked}");
    assert!(acked.len() >= 4 * 20, "the runs appended: {}", acked.len());
    let status = engine.table_status("clicks").unwrap();
    assert!(status.segments.len() >= 4, "segments sealed between the kills: {}", status.segments.len());
    engine.shutdown().await;
}
