//! The deep store against a real S3 API: moto's S3 server (PyPI `moto[server]`, installed by
//! scripts/test.sh) on a free loopback port, and kinesis-local for the stream.
//! - sealed segments appear as Parquet objects under a Hive-style date partition, and DuckDB's
//!   `read_parquet` over them returns exactly the sealed rows;
//! - after a SIGKILL and a deleted data directory, a restart restores every row exactly once
//!   (segments from the store, the rest read again from the stream);
//! - an S3 outage of 30 s during ingest loses and duplicates nothing, and uploads catch up;
//! - queries over a table whose old segments live only in the store (the cold tier) equal the
//!   same queries over a table that keeps them local; a query over recent data reads no
//!   object; retention deletes from both tiers.

mod common;
mod server;

use common::*;
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions};
use shoal_stream::emulator::Emulator;
use std::time::Duration;

const DAY: i64 = 86_400_000;
/// What the child logs after each upload, and between writing a segment file and its commit.
const UPLOADED: &str = "deep store: segment uploaded";
const SEALING: &str = "segment file written; committing it";

fn engine_options(deep: shoal::DeepStoreOptions) -> EngineOptions {
    let mut deep = deep;
    deep.retry_max = Duration::from_secs(2);
    deep.delete_grace = Duration::from_secs(1);
    EngineOptions::default().with_deep_store(Some(deep)).with_retention_interval(Duration::from_millis(300))
}

/// `table_config` with a cold tier after `age`.
fn tiered(name: &str, stream: &str, endpoint: &str, rows: u64, age: Option<&str>) -> Value {
    let mut c = table_config(name, stream, endpoint, rows);
    if let Some(age) = age {
        c["tierConfigs"] = json!([{"name": "cold", "segmentSelectorType": "time", "segmentAge": age, "storageType": "deep_store"}]);
    }
    c
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every sealed segment of `table` is uploaded and the deep-store manifest names
/// them all.
async fn wait_uploaded(engine: &Engine, table: &str, limit: Duration) -> shoal::TableStatus {
    wait_until(&format!("{table} is uploaded"), limit, async || {
        let s = engine.table_status(table).unwrap();
        let d = s.deep_store.clone().unwrap();
        d.pending_segments == 0 && d.manifest_segments == s.segments.len() as u64 && d.error.is_none()
    })
    .await;
    engine.table_status(table).unwrap()
}

fn text(batches: &[arrow::array::RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_parquet_objects_that_duckdb_reads() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("lake", 2).await.unwrap();
    let moto = Moto::start("lake-bucket").await;
    let data = tempfile::tempdir().unwrap();
    let engine =
        Engine::open_with(data.path(), engine_options(moto.deep_store("lake-bucket", "warehouse/shoal")))
            .await
            .unwrap();
    engine
        .create_table(&table_config("lake", "lake", &emulator.endpoint(), 400), &schema("lake"))
        .await
        .unwrap();
    // 1,000 records on each of three days.
    let first_day = (now_ms() / DAY - 3) * DAY;
    for d in 0..3usize {
        let ts = first_day + d as i64 * DAY + 3_600_000;
        put_ids(&emulator, "lake", d * 1000..(d + 1) * 1000, ts, |i| format!("k{i}"), None).await;
    }
    assert_eq!(wait_for_rows(&engine, "lake", 3000, Duration::from_secs(120)).await, (3000, 3000));
    engine.force_commit("lake").await.unwrap();
    let status = wait_uploaded(&engine, "lake", Duration::from_secs(120)).await;
    assert_eq!(status.sealed_rows, 3000, "every row is sealed");
    let keys = moto.keys("lake-bucket", "warehouse/shoal/lake").await;
    for file in ["table.json", "schema.json", "manifest.json"] {
        assert!(keys.contains(&format!("warehouse/shoal/lake/{file}")), "{file} is stored: {keys:?}");
    }
    let parquet: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(parquet.len(), status.segments.len(), "one object per segment: {keys:?}");
    for k in &parquet {
        let rest = k.strip_prefix("warehouse/shoal/lake/dt=").expect("a Hive-style date partition");
        let (day, name) = rest.split_once('/').unwrap();
        assert!(day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-', "{k}");
        assert!(name.starts_with("lake__"), "{k}");
    }
    // The config is stored with its secrets masked.
    let store = moto.client("lake-bucket");
    let get = async |key: &str| -> bytes::Bytes {
        use object_store::ObjectStoreExt;
        store.get(&object_store::path::Path::from(key)).await.unwrap().bytes().await.unwrap()
    };
    let config = String::from_utf8(get("warehouse/shoal/lake/table.json").await.to_vec()).unwrap();
    assert!(!config.contains("shoal-test-secret") && config.contains("***"), "{config}");
    // DuckDB reads the lake with its ordinary Parquet reader.
    let lake = tempfile::tempdir().unwrap();
    for k in &parquet {
        let path = lake.path().join(k.strip_prefix("warehouse/shoal/").unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, get(k).await).unwrap();
    }
    let glob = format!("{}/lake/*/*.parquet", lake.path().display());
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
for row in con.execute("SELECT id, key, ts FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY id").fetchall():
    print("ROW", row[0], row[1], row[2])
print("DAYS", con.execute("SELECT count(DISTINCT dt) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0])
for row in con.execute("SELECT DISTINCT compression FROM parquet_metadata('{glob}')").fetchall():
    print("COMPRESSION", row[0])
print("NO_STATS", con.execute("SELECT count(*) FROM parquet_metadata('{glob}') WHERE stats_min IS NULL AND path_in_schema = 'id'").fetchone()[0])
"#
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ROW ")).collect();
    let expected: Vec<String> = (0..3000usize)
        .map(|i| format!("{i} key-{} {}", i % 37, first_day + (i / 1000) as i64 * DAY + 3_600_000))
        .collect();
    assert_eq!(rows, expected, "DuckDB reads exactly the sealed rows");
    assert!(out.lines().any(|l| l == "COMPRESSION ZSTD"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("COMPRESSION ") && l != "COMPRESSION ZSTD"), "{out}");
    assert!(out.lines().any(|l| l == "NO_STATS 0"), "column statistics in every row group: {out}");
    assert!(out.lines().any(|l| l.starts_with("DAYS ") && l != "DAYS 0"), "{out}");
    // Nothing shows the store's secret.
    assert!(!format!("{:?}", engine.table_status("lake").unwrap()).contains(MOTO_SECRET));
    assert!(!engine.metrics().prometheus().contains(MOTO_SECRET));
    engine.shutdown().await;
}

const CHILD_DIR: &str = "SHOAL_DEEP_DIR";
const CHILD_KINESIS: &str = "SHOAL_DEEP_KINESIS";
const CHILD_STORE: &str = "SHOAL_DEEP_URL";

/// The child: opens the engine on its data directory with the deep store (settings from the
/// AWS environment), creating the table when neither holds it, and logs its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by restores_every_row_once_after_a_sigkill_and_a_lost_data_dir as a child process"]
async fn deep_store_child() {
    let (Ok(dir), Ok(endpoint), Ok(url)) =
        (std::env::var(CHILD_DIR), std::env::var(CHILD_KINESIS), std::env::var(CHILD_STORE))
    else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter("shoal=debug")
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let engine = Engine::open_with(&dir, engine_options(shoal::DeepStoreOptions::new(url))).await.unwrap();
    if engine.tables().is_empty() {
        // No secrets in the config: Kinesis credentials come from the environment's chain.
        let mut config = table_config("phoenix", "phoenix", &endpoint, 300);
        let stream = config["tableIndexConfig"]["streamConfigs"].as_object_mut().unwrap();
        stream.remove("accessKey");
        stream.remove("secretKey");
        engine.create_table(&config, &schema("phoenix")).await.unwrap();
    }
    println!("CHILD STARTED");
    loop {
        let (rows, distinct) = counts(&engine, "phoenix").await;
        let s = engine.table_status("phoenix").unwrap();
        println!("ROWS {rows} DISTINCT {distinct} SEGMENTS {}", s.segments.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_every_row_once_after_a_sigkill_and_a_lost_data_dir() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("phoenix", 2).await.unwrap();
    let moto = Moto::start("phoenix-bucket").await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let exe = std::env::current_exe().unwrap();
    let mut env: Vec<(&str, String)> = moto.env();
    env.push((CHILD_DIR, dir.display().to_string()));
    env.push((CHILD_KINESIS, emulator.endpoint()));
    env.push((CHILD_STORE, "s3://phoenix-bucket/shoal".to_string()));
    let env_os: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let mut child = Child::start(&exe, "deep_store_child", &env_os);
    assert!(child.wait_for("CHILD STARTED", 0, Duration::from_secs(60)).await, "{}", child.tail());
    put_ids(&emulator, "phoenix", 0..1200, now_ms(), |i| format!("k{i}"), None).await;
    assert!(child.wait_for(UPLOADED, 1, Duration::from_secs(120)).await, "two uploads:\n{}", child.tail());
    // The store goes away: segments seal but are not uploaded.
    moto.pause();
    let sealed = child.count(SEALING);
    let uploaded = child.count(UPLOADED);
    put_ids(&emulator, "phoenix", 1200..2500, now_ms(), |i| format!("k{i}"), None).await;
    assert!(
        child.wait_for(SEALING, sealed + 1, Duration::from_secs(120)).await,
        "two seals while the store is away:\n{}",
        child.tail()
    );
    assert!(child.wait_for("ROWS 2500 ", 0, Duration::from_secs(120)).await, "{}", child.tail());
    assert_eq!(child.count(UPLOADED), uploaded, "nothing was uploaded while the store was stopped");
    assert!(child.kill(), "the child was alive when killed");
    moto.resume();
    std::fs::remove_dir_all(&dir).unwrap();
    // A new process on an empty data directory.
    let child = Child::start(&exe, "deep_store_child", &env_os);
    assert!(child.wait_for("CHILD STARTED", 0, Duration::from_secs(120)).await, "{}", child.tail());
    assert_eq!(child.count("table restored from the deep store"), 1, "{}", child.tail());
    assert!(
        child.wait_for("ROWS 2500 DISTINCT 2500 ", 0, Duration::from_secs(180)).await,
        "every row, once:\n{}",
        child.tail()
    );
    // And never more, nor twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = child.tail();
    for line in all.lines().filter(|l| l.starts_with("ROWS ")) {
        let n: Vec<i64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert_eq!(n[0], n[1], "no row twice: {line}");
        assert!(n[0] <= 2500, "no row twice: {line}");
    }
    assert_eq!(child.count(MOTO_SECRET), 0, "the store's secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_loses_and_duplicates_nothing() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("outage", 1).await.unwrap();
    let moto = Moto::start("outage-bucket").await;
    let data = tempfile::tempdir().unwrap();
    let config = table_config("outage", "outage", &emulator.endpoint(), 300);
    let engine =
        Engine::open_with(data.path(), engine_options(moto.deep_store("outage-bucket", "s"))).await.unwrap();
    engine.create_table(&config, &schema("outage")).await.unwrap();
    put_ids(&emulator, "outage", 0..600, now_ms(), |i| format!("k{i}"), None).await;
    assert_eq!(wait_for_rows(&engine, "outage", 600, Duration::from_secs(60)).await, (600, 600));
    wait_uploaded(&engine, "outage", Duration::from_secs(60)).await;
    // 30 s without the store, while records keep coming: ingestion and queries go on.
    moto.pause();
    let outage = tokio::time::Instant::now();
    for step in 0..6usize {
        let from = 600 + step * 300;
        put_ids(&emulator, "outage", from..from + 300, now_ms(), |i| format!("k{i}"), None).await;
        let want = (from + 300) as i64;
        assert_eq!(wait_for_rows(&engine, "outage", want, Duration::from_secs(20)).await, (want, want));
    }
    let during = engine.table_status("outage").unwrap();
    let deep = during.deep_store.clone().unwrap();
    assert!(deep.pending_segments >= 4, "segments sealed during the outage wait: {deep:?}");
    assert!(deep.pending_bytes > 0, "{deep:?}");
    let metrics = engine.metrics().prometheus();
    assert!(
        prometheus_sum(&metrics, "shoal_deep_store_pending_segments", "table", "outage").unwrap() >= 4.0,
        "{metrics}"
    );
    assert!(outage.elapsed() < Duration::from_secs(30), "the records went in during the outage");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    moto.resume();
    engine.force_commit("outage").await.unwrap();
    let status = wait_uploaded(&engine, "outage", Duration::from_secs(240)).await;
    assert_eq!(status.sealed_rows, 2400);
    engine.shutdown().await;
    // The deep-store manifest names every sealed row once.
    let manifest: shoal::manifest::Manifest = {
        use object_store::ObjectStoreExt;
        let bytes = moto
            .client("outage-bucket")
            .get(&object_store::path::Path::from("s/outage/manifest.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(manifest.segments.iter().map(|s| s.rows).sum::<u64>(), 2400, "{manifest:?}");
    let files: std::collections::BTreeSet<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files.len(), manifest.segments.len(), "no segment twice");
    // A restore from the store alone gives every row once.
    let elsewhere = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(elsewhere.path(), engine_options(moto.deep_store("outage-bucket", "s")))
        .await
        .unwrap();
    assert_eq!(engine.tables(), ["outage"], "restored at open");
    assert_eq!(wait_for_rows(&engine, "outage", 2400, Duration::from_secs(60)).await, (2400, 2400));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_tier_queries_equal_local_ones_and_retention_empties_both_tiers() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("tiers", 1).await.unwrap();
    let moto = Moto::start("tier-bucket").await;
    let data = tempfile::tempdir().unwrap();
    let deep = moto.deep_store("tier-bucket", "t");
    let engine = Engine::open_with(data.path(), engine_options(deep.clone())).await.unwrap();
    let endpoint = emulator.endpoint();
    engine.create_table(&tiered("local", "tiers", &endpoint, 250, None), &schema("local")).await.unwrap();
    engine.create_table(&tiered("cold", "tiers", &endpoint, 250, Some("1d")), &schema("cold")).await.unwrap();
    let now = now_ms();
    let old = now - 3 * DAY;
    put_ids(&emulator, "tiers", 0..1000, old, |i| format!("k{i}"), None).await;
    put_ids(&emulator, "tiers", 1000..2000, now, |i| format!("k{i}"), None).await;
    for t in ["local", "cold"] {
        assert_eq!(wait_for_rows(&engine, t, 2000, Duration::from_secs(60)).await, (2000, 2000));
        engine.force_commit(t).await.unwrap();
    }
    wait_until("the old segments are cold", Duration::from_secs(120), async || {
        let s = engine.table_status("cold").unwrap();
        s.deep_store.unwrap().cold_segments == 4
    })
    .await;
    let status = engine.table_status("cold").unwrap();
    for s in &status.segments {
        let is_old = s.time_range.unwrap().1 < now - DAY;
        assert_eq!(s.cold, is_old, "{s:?}");
        assert!(s.uploaded);
    }
    let local_files = std::fs::read_dir(data.path().join("tables/cold/segments")).unwrap().count();
    assert_eq!(local_files, status.segments.len() - 4, "the cold segments left local disk");
    let queries = [
        "SELECT count(*), sum(id), min(ts), max(ts) FROM {t}".to_string(),
        "SELECT key, count(*), sum(id) FROM {t} GROUP BY key ORDER BY key".into(),
        format!("SELECT count(*), avg(id) FROM {{t}} WHERE ts < {}", now - DAY),
        format!("SELECT count(*) FROM {{t}} WHERE ts >= {now}"),
        "SELECT id, key FROM {t} WHERE id BETWEEN 990 AND 1010 ORDER BY id".into(),
        "SELECT id FROM {t} WHERE key = 'key-5' ORDER BY id DESC LIMIT 7".into(),
        "SELECT key, max(id) FROM {t} WHERE id % 3 = 0 GROUP BY key ORDER BY 2 DESC LIMIT 5".into(),
        "SELECT * FROM {t} ORDER BY id LIMIT 3".into(),
    ];
    for q in &queries {
        let on = |t: &str| q.replace("{t}", t);
        let local = text(&engine.sql(&on("local")).await.unwrap());
        let cold = text(&engine.sql(&on("cold")).await.unwrap());
        assert_eq!(cold, local, "{q}");
    }
    // A query over recent data reads no object; one over old data does.
    let reads = || moto.requests("GET /tier-bucket/t/cold/dt=");
    let before = reads();
    let recent = engine
        .sql_result(&format!("SELECT count(*) FROM cold WHERE ts > {}", now - 3_600_000))
        .await
        .unwrap();
    assert_eq!(reads(), before, "pruned by the manifest's statistics");
    let all = engine.sql("SELECT count(*) FROM cold").await.unwrap();
    assert_eq!(text(&all), text(&engine.sql("SELECT count(*) FROM local").await.unwrap()));
    assert_eq!(reads(), before, "count(*) from the manifest's row counts");
    let sealed_read = recent.stats.segments_processed - recent.stats.consuming_processed;
    assert_eq!(
        sealed_read,
        (status.segments.len() - 4) as u64,
        "only the local segments: {:?}",
        recent.stats
    );
    engine.sql(&format!("SELECT count(*) FROM cold WHERE ts < {}", now - DAY)).await.unwrap();
    assert!(reads() > before, "the cold segments were read from the store:\n{}", moto.log_tail());
    engine.shutdown().await;
    // The same table, restored elsewhere under a retention of 2 days (set in the store's copy
    // of its config, which a restore at open uses): the old rows expire from both tiers.
    let keys = || moto.keys("tier-bucket", "t/cold/");
    assert_eq!(keys().await.iter().filter(|k| k.ends_with(".parquet")).count(), status.segments.len());
    {
        use object_store::ObjectStoreExt;
        let store = moto.client("tier-bucket");
        let path = object_store::path::Path::from("t/cold/table.json");
        let mut config: Value =
            serde_json::from_slice(&store.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
        config["segmentsConfig"]["retentionTimeUnit"] = json!("DAYS");
        config["segmentsConfig"]["retentionTimeValue"] = json!("2");
        store.put(&path, serde_json::to_vec(&config).unwrap().into()).await.unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(elsewhere.path(), engine_options(deep)).await.unwrap();
    assert_eq!(engine.tables(), ["cold", "local"], "restored at open");
    wait_until("retention empties both tiers", Duration::from_secs(120), async || {
        keys().await.iter().filter(|k| k.ends_with(".parquet")).count() == status.segments.len() - 4
    })
    .await;
    let (rows, distinct) = counts(&engine, "cold").await;
    assert_eq!((rows, distinct), (1000, 1000));
    let s = engine.table_status("cold").unwrap();
    assert_eq!(s.deep_store.unwrap().cold_segments, 0, "{:?}", s.segments);
    engine.shutdown().await;
}

/// `serve --deep-store file:///…`: the embedded default for trials, through the server; its
/// status shows the upload lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uploads_to_a_file_deep_store() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("trial", 1).await.unwrap();
    put_ids(&emulator, "trial", 0..250, now_ms(), |i| format!("k{i}"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let url = format!("file://{}/lake", lake.path().display());
    let table = table_config("trial", "trial", &emulator.endpoint(), 100);
    let server = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || server::Server::start(&dir, &table, &schema("trial"), &["--deep-store", &url])
    })
    .await
    .unwrap();
    let lake_dir = lake.path().join("lake/trial");
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            let (code, body) = server.get("/tables/trial/status", None).unwrap();
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let deep = &v["deepStore"];
            assert!(deep["url"].as_str().unwrap().starts_with("file://"), "{v}");
            if v["sealedRows"] == 200 && deep["pendingSegments"] == 0 && deep["manifestSegments"] == 2 {
                assert!(
                    v["segments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|s| s["uploaded"] == true && s["tier"] == "local"),
                    "{v}"
                );
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "two segments uploaded: {v}");
            std::thread::sleep(Duration::from_millis(300));
        }
        let metrics = server.get("/metrics", None).unwrap().1;
        assert_eq!(
            prometheus_sum(&metrics, "shoal_deep_store_uploads_total", "table", "trial"),
            Some(2.0),
            "{metrics}"
        );
        assert_eq!(
            prometheus_sum(&metrics, "shoal_deep_store_pending_segments", "table", "trial"),
            Some(0.0)
        );
    })
    .await
    .unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(lake_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["segments"].as_array().unwrap().len(), 2);
    let days: Vec<_> = std::fs::read_dir(&lake_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(days.iter().any(|d| d.starts_with("dt=")), "{days:?}");
}

/// A `file://` deep store in `dir`.
fn file_store(dir: &std::path::Path) -> shoal::DeepStoreOptions {
    shoal::DeepStoreOptions::new(format!("file://{}", dir.display()))
}

/// Review findings, on a `file://` store: a damaged local file whose copy is in the store is
/// replaced by that copy (not read again from the stream); a restore cut short is finished at
/// the next open; segments uploaded to another store are uploaded again, and cold ones refuse
/// the open; an unreadable deep-store manifest is never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_cut_restores_and_other_stores() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("keep", 1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let (data, lake, other) = (root.path().join("data"), root.path().join("lake"), root.path().join("other"));
    let config = table_config("keep", "keep", &emulator.endpoint(), 300);
    let engine = Engine::open_with(&data, engine_options(file_store(&lake))).await.unwrap();
    engine.create_table(&config, &schema("keep")).await.unwrap();
    // A second table, so that a data directory holding it is not empty.
    engine
        .create_table(&table_config("also", "keep", &emulator.endpoint(), 300), &schema("also"))
        .await
        .unwrap();
    put_ids(&emulator, "keep", 0..600, now_ms(), |i| format!("k{i}"), None).await;
    assert_eq!(wait_for_rows(&engine, "keep", 600, Duration::from_secs(60)).await, (600, 600));
    let status = wait_uploaded(&engine, "keep", Duration::from_secs(60)).await;
    assert_eq!(status.segments.len(), 2);
    assert_eq!(wait_for_rows(&engine, "also", 600, Duration::from_secs(60)).await, (600, 600));
    wait_uploaded(&engine, "also", Duration::from_secs(60)).await;
    engine.shutdown().await;

    // A damaged file (cut short): its deep-store copy replaces it.
    let segments = data.join("tables/keep/segments");
    let victim = segments.join(format!("{}.seg", status.segments[0].name));
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&victim).unwrap().set_len(len / 2).unwrap();
    let engine = Engine::open_with(&data, engine_options(file_store(&lake))).await.unwrap();
    let s = engine.table_status("keep").unwrap();
    assert!(s.quarantined.is_empty(), "not read again from the stream: {:?}", s.quarantined);
    let cold: Vec<_> = s.segments.iter().filter(|x| x.cold).map(|x| x.name.clone()).collect();
    assert_eq!(cold, [status.segments[0].name.clone()], "{:?}", s.segments);
    assert_eq!(counts(&engine, "keep").await, (600, 600));
    engine.shutdown().await;

    // A cold segment's file left behind (an eviction cut short) goes at the next open.
    std::fs::write(&victim, b"left behind").unwrap();
    let engine = Engine::open_with(&data, engine_options(file_store(&lake))).await.unwrap();
    assert!(!victim.exists(), "the file of a cold segment is removed at open");
    assert_eq!(counts(&engine, "keep").await, (600, 600));
    engine.shutdown().await;

    // A restore cut short (the config, written last, missing) is finished at the next open,
    // although the directory holds another table.
    let restored = root.path().join("restored");
    let engine = Engine::open_with(&restored, engine_options(file_store(&lake))).await.unwrap();
    assert_eq!(engine.tables(), ["also", "keep"]);
    engine.shutdown().await;
    std::fs::remove_file(restored.join("tables/keep/table.json")).unwrap();
    let engine = Engine::open_with(&restored, engine_options(file_store(&lake))).await.unwrap();
    assert_eq!(engine.tables(), ["also", "keep"], "restored again");
    assert_eq!(engine.table_status("keep").unwrap().sealed_rows, 600);
    engine.shutdown().await;

    // Another store: the cold segment's only copy is in the first one, so the open is refused.
    let err = Engine::open_with(&data, engine_options(file_store(&other))).await.unwrap_err().to_string();
    assert!(err.contains("live only in the deep store") && err.contains("lake"), "{err}");
    // An engine open on the new store before it holds the table.
    let fresh =
        Engine::open_with(root.path().join("fresh"), engine_options(file_store(&other))).await.unwrap();
    assert!(fresh.tables().is_empty());
    // A damaged file whose copy is in another store than the engine's is quarantined and read
    // again from the stream (it cannot be replaced by a copy this engine does not reach): a
    // copy of the first data directory with only `also` (its config has the stream's keys),
    // opened with the new store.
    let data2 = root.path().join("data2");
    let cp = std::process::Command::new("cp").arg("-r").arg(&data).arg(&data2).status().unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(data2.join("tables/keep")).unwrap();
    let also = engine_status_segments(&data2, "also");
    let damaged = data2.join("tables/also/segments").join(format!("{}.seg", also[0]));
    let len = std::fs::metadata(&damaged).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&damaged).unwrap().set_len(len / 2).unwrap();
    let engine = Engine::open_with(&data2, engine_options(file_store(&other))).await.unwrap();
    let s = engine.table_status("also").unwrap();
    assert_eq!(s.quarantined.len(), 1, "{:?}", s.quarantined);
    assert!(s.segments.iter().all(|x| !x.cold), "{:?}", s.segments);
    assert_eq!(wait_for_rows(&engine, "also", 600, Duration::from_secs(60)).await, (600, 600));
    engine.shutdown().await;
    // A table without cold segments is uploaded to the new store again.
    let engine = Engine::open_with(&restored, engine_options(file_store(&other))).await.unwrap();
    wait_uploaded(&engine, "keep", Duration::from_secs(60)).await;
    let m: Value = serde_json::from_slice(&std::fs::read(other.join("keep/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["segments"].as_array().unwrap().len(), 2, "{m}");
    for segment in m["segments"].as_array().unwrap() {
        let key = segment["deep"]["key"].as_str().unwrap();
        assert!(other.join(key).exists(), "{key} is in the new store");
    }
    engine.shutdown().await;
    // Now the store holds the table: `create_table` restores it, under the config given.
    fresh.create_table(&config, &schema("keep")).await.unwrap();
    assert_eq!(fresh.table_status("keep").unwrap().sealed_rows, 600, "restored, not consumed again");
    assert_eq!(wait_for_rows(&fresh, "keep", 600, Duration::from_secs(30)).await, (600, 600));
    fresh.shutdown().await;

    // A copy of the first store (a migrated bucket), with one table it cannot give back: the
    // other is restored, its segments recorded as the copy's (not uploaded again, and cold
    // ones read from it).
    let copy = root.path().join("copy");
    let cp = std::process::Command::new("cp").arg("-r").arg(&lake).arg(&copy).status().unwrap();
    assert!(cp.success());
    std::fs::write(copy.join("also/schema.json"), b"{broken").unwrap();
    let migrated = root.path().join("migrated");
    let engine = Engine::open_with(&migrated, engine_options(file_store(&copy))).await.unwrap();
    assert_eq!(engine.tables(), ["keep"], "the table with a broken schema is left for the next open");
    assert_eq!(counts(&engine, "keep").await, (600, 600));
    let m: Value =
        serde_json::from_slice(&std::fs::read(migrated.join("tables/keep/manifest.json")).unwrap()).unwrap();
    let copy_url = format!("file://{}", copy.display());
    for segment in m["segments"].as_array().unwrap() {
        assert_eq!(segment["deep"]["store"], copy_url.as_str(), "{segment}");
    }
    engine.shutdown().await;

    // An unreadable deep-store manifest is left as it is, with the error in the status.
    std::fs::write(other.join("keep/manifest.json"), b"{not json").unwrap();
    let engine = Engine::open_with(&restored, engine_options(file_store(&other))).await.unwrap();
    wait_until("the error shows", Duration::from_secs(30), async || {
        engine
            .table_status("keep")
            .unwrap()
            .deep_store
            .unwrap()
            .error
            .is_some_and(|e| e.contains("cannot be read"))
    })
    .await;
    assert_eq!(std::fs::read(other.join("keep/manifest.json")).unwrap(), b"{not json");
    engine.shutdown().await;
}

/// Dropping a table deletes its deep-store copy first; while the store cannot be reached the
/// drop fails and the table goes on; once dropped, a new engine does not bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_stays_dropped() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("gone", 1).await.unwrap();
    let moto = Moto::start("gone-bucket").await;
    let store = || moto.deep_store("gone-bucket", "p").with_option("timeout", "1s");
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(data.path(), engine_options(store())).await.unwrap();
    engine
        .create_table(&table_config("gone", "gone", &emulator.endpoint(), 100), &schema("gone"))
        .await
        .unwrap();
    put_ids(&emulator, "gone", 0..200, now_ms(), |i| format!("k{i}"), None).await;
    assert_eq!(wait_for_rows(&engine, "gone", 200, Duration::from_secs(60)).await, (200, 200));
    wait_uploaded(&engine, "gone", Duration::from_secs(60)).await;
    moto.pause();
    let err = engine.drop_table("gone").await.unwrap_err().to_string();
    assert!(err.contains("deep store"), "{err}");
    assert_eq!(engine.tables(), ["gone"], "the table goes on");
    assert_eq!(counts(&engine, "gone").await, (200, 200));
    moto.resume();
    engine.drop_table("gone").await.unwrap();
    engine.shutdown().await;
    assert!(moto.keys("gone-bucket", "p/gone/").await.is_empty());
    let elsewhere = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(elsewhere.path(), engine_options(store())).await.unwrap();
    assert!(engine.tables().is_empty(), "not restored: {:?}", engine.tables());
    engine.shutdown().await;
}

/// The names of a table's segments, from its manifest on disk.
fn engine_status_segments(data: &std::path::Path, table: &str) -> Vec<String> {
    let m: Value =
        serde_json::from_slice(&std::fs::read(data.join(format!("tables/{table}/manifest.json"))).unwrap())
            .unwrap();
    m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap().trim_end_matches(".seg").to_string())
        .collect()
}

/// An upsert table's damaged file is read again from the stream even when its copy is in the
/// deep store: its key map reads every segment's rows, so it never has cold segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_tables_damaged_file_is_read_again_not_made_cold() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("ups", 1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let (data, lake) = (root.path().join("data"), root.path().join("lake"));
    let mut config = table_config("ups", "ups", &emulator.endpoint(), 300);
    config["upsertConfig"] = json!({"mode": "FULL"});
    let mut schema = schema("ups");
    schema["primaryKeyColumns"] = json!(["key"]);
    let engine = Engine::open_with(&data, engine_options(file_store(&lake))).await.unwrap();
    engine.create_table(&config, &schema).await.unwrap();
    let t = now_ms();
    put_ids(&emulator, "ups", 0..600, t, |i| format!("k{i}"), None).await;
    let visible = async |engine: &Engine| {
        let b = engine.sql("SELECT count(*) FROM ups").await.unwrap();
        arrow::compute::cast(b[0].column(0), &arrow::datatypes::DataType::Int64)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    wait_until("600 versions of 37 keys", Duration::from_secs(60), async || {
        engine.table_status("ups").unwrap().sealed_rows == 600
    })
    .await;
    assert_eq!(visible(&engine).await, 37);
    let status = wait_uploaded(&engine, "ups", Duration::from_secs(60)).await;
    engine.shutdown().await;
    let damaged = data.join("tables/ups/segments").join(format!("{}.seg", status.segments[0].name));
    let len = std::fs::metadata(&damaged).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&damaged).unwrap().set_len(len / 2).unwrap();
    let engine = Engine::open_with(&data, engine_options(file_store(&lake))).await.unwrap();
    let s = engine.table_status("ups").unwrap();
    assert_eq!(s.quarantined.len(), 1, "{:?}", s.quarantined);
    assert!(s.segments.iter().all(|x| !x.cold), "{:?}", s.segments);
    wait_until("the rows read again", Duration::from_secs(60), async || {
        engine.table_status("ups").unwrap().sealed_rows == 600
    })
    .await;
    assert_eq!(visible(&engine).await, 37, "each key once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_on_a_port_taken_before_it_listens_is_started_again_on_another() {
    // Another process holds this port, as one can take it between the harness finding it free
    // and moto listening on it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let mut first = Some(taken);
    let moto = Moto::start_with_ports("retry-bucket", move || match first.take() {
        Some(port) => Ok(port),
        None => shoal_stream::emulator::free_port(),
    })
    .await;
    assert_ne!(moto.port, taken);
    assert!(moto.log_tail().contains("PUT /retry-bucket"), "{}", moto.log_tail());
}
