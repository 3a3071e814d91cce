//! Upsert and dedup through the engine: each case's expected rows are worked out by hand from
//! Pinot's rules (docs/notes/pinot-upsert.md), and checked again after seals and restarts.
//! PARTIAL strategies, deletes and dedup read from kinesis-local; the rest from an in-memory
//! stream (`upsert_kinesis.rs` has the split, merge and SIGKILL cases on kinesis-local).

mod common;

use common::*;
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions};
use shoal_stream::emulator::Emulator;
use std::time::Duration;

/// A kinesis-local stream of one shard that a test's records go to.
struct Feed {
    emulator: Emulator,
    stream: String,
}

impl Feed {
    /// A kinesis-local stream `name`, and an engine on `dir`.
    async fn kinesis(name: &str, dir: &std::path::Path) -> (Feed, Engine) {
        let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
        emulator.create_stream(name, 1).await.unwrap();
        let engine = Engine::open_with(dir, EngineOptions::default()).await.unwrap();
        (Feed { emulator, stream: name.to_string() }, engine)
    }

    fn endpoint(&self) -> String {
        self.emulator.endpoint()
    }

    async fn put(&self, record: &Value) {
        self.emulator.put(&self.stream, "p", record.to_string().as_bytes()).await.unwrap();
    }

    /// Reopens the engine on `dir` (after a shutdown).
    async fn reopen(&self, dir: &std::path::Path) -> Engine {
        Engine::open_with(dir, EngineOptions::default()).await.unwrap()
    }
}

/// A table `name` over columns id (key), ts (time), and `extra` fields, with `upsert` merged
/// into its config and `pk` as primary key.
fn definition(name: &str, rows: u64, config: Value, extra: Value) -> (Value, Value) {
    definition_at(name, "http://unused", rows, config, extra)
}

fn definition_at(name: &str, endpoint: &str, rows: u64, config: Value, extra: Value) -> (Value, Value) {
    let mut table = table_config(name, name, endpoint, rows);
    for (k, v) in config.as_object().unwrap() {
        table[k] = v.clone();
    }
    let mut dims = vec![json!({"name": "id", "dataType": "STRING"})];
    dims.extend(extra.as_array().unwrap().iter().cloned());
    let schema = json!({
        "schemaName": name,
        "primaryKeyColumns": ["id"],
        "enableColumnBasedNullHandling": true,
        "dimensionFieldSpecs": dims,
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    });
    (table, schema)
}

/// The rows of `sql`, each as its values' text joined by `|`.
async fn rows(engine: &Engine, sql: &str) -> Vec<String> {
    let batches = engine.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let values: Vec<String> = b
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(r) {
                        "null".to_string()
                    } else {
                        arrow::util::display::array_value_to_string(c, r).unwrap()
                    }
                })
                .collect();
            out.push(values.join("|"));
        }
    }
    out
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    rows(engine, sql).await[0].parse().unwrap()
}

/// Waits until the table has taken `records` records (rows, drops and dedup drops).
async fn wait_consumed(engine: &Engine, table: &str, records: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = engine.table_status(table).unwrap();
        let u = s.upsert.clone().unwrap_or_default();
        let taken = s.sealed_rows
            + s.consuming_rows
            + s.dropped.counts.values().sum::<u64>()
            + u.deduplicated
            + u.out_of_order_dropped;
        if taken >= records {
            assert_eq!(taken, records, "{s:?}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "consumed {taken} of {records}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the table holds `stored` rows (after a restart, which reads again only what
/// was not sealed).
async fn wait_stored(engine: &Engine, table: &str, stored: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = engine.table_status(table).unwrap();
        if s.sealed_rows + s.consuming_rows >= stored {
            assert_eq!(s.sealed_rows + s.consuming_rows, stored, "{s:?}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_upsert_shows_the_latest_version_of_each_key_across_seals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    // Two shards, keys on either: the key map is table-wide.
    let stream = sources.stream("orders", 2);
    let (table, schema) = definition(
        "orders",
        200,
        json!({"upsertConfig": {}}),
        json!([{"name": "status", "dataType": "STRING"}, {"name": "version", "dataType": "INT"}]),
    );
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table, &schema).await.unwrap();
    // 3 versions of each of 400 keys, put by a partition key unrelated to the primary key,
    // then one version older than all the others, arriving last.
    let mut records = 0;
    for version in 1..=3 {
        for k in 0..400 {
            let r = json!({"id": format!("k{k}"), "ts": 1_700_000_000_000i64 + version * 1000, "status": format!("s{version}"), "version": version});
            stream.put_by_key(&format!("p{}", (k + version) % 7), r.to_string());
            records += 1;
        }
    }
    stream.put_by_key(
        "p0",
        json!({"id": "k7", "ts": 1_600_000_000_000i64, "status": "late", "version": 0}).to_string(),
    );
    records += 1;
    wait_consumed(&engine, "orders", records).await;

    let check = |engine: Engine| async move {
        assert_eq!(count(&engine, "SELECT count(*) FROM orders").await, 400);
        assert_eq!(count(&engine, "SELECT count(*) FROM orders WHERE version = 3").await, 400);
        assert_eq!(
            rows(&engine, "SELECT status, ts FROM orders WHERE id = 'k7'").await,
            ["s3|1700000003000"]
        );
        assert_eq!(count(&engine, "SELECT count(*) FROM orders WHERE status = 'late'").await, 0);
        // skipUpsert shows every version, the late one too.
        assert_eq!(count(&engine, "SET skipUpsert = true; SELECT count(*) FROM orders").await, 1201);
        assert_eq!(
            count(&engine, "SELECT count(*) FROM orders WHERE status = 'late' OPTION(skipUpsert=true)").await,
            1
        );
        // A filter sees only the visible rows.
        assert_eq!(count(&engine, "SELECT count(*) FROM orders WHERE status <> 's3'").await, 0);
        assert_eq!(rows(&engine, "SELECT max(version), min(version) FROM orders").await, ["3.0|3.0"]);
        engine
    };
    let engine = check(engine).await;
    let status = engine.table_status("orders").unwrap();
    let upsert = status.upsert.clone().unwrap();
    assert_eq!(upsert.keys, 400);
    // Versions of a key on two shards are consumed in no set order: the comparison value
    // decides, and every version that came after a newer one counts as out of order.
    assert!(upsert.out_of_order >= 1, "{upsert:?}");
    assert!(status.segments.len() >= 4, "several seals: {:?}", status.segments);

    // A graceful restart rebuilds the map from the sealed rows; the consuming rows come back
    // from the stream.
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    wait_stored(&engine, "orders", records).await;
    let engine = check(engine).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_go_to_the_later_version_and_late_ones_are_dropped_or_marked() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    let extra = json!([{"name": "v", "dataType": "STRING"}, {"name": "late", "dataType": "BOOLEAN"}]);
    let (marked, schema_m) = definition(
        "marked",
        1000,
        json!({"upsertConfig": {"mode": "FULL", "comparisonColumns": ["ts"], "outOfOrderRecordColumn": "late"}}),
        extra.clone(),
    );
    let (dropped, schema_d) =
        definition("dropped", 1000, json!({"upsertConfig": {"dropOutOfOrderRecord": true}}), extra);
    engine.create_table(&marked, &schema_m).await.unwrap();
    engine.create_table(&dropped, &schema_d).await.unwrap();
    for name in ["marked", "dropped"] {
        let s = sources.stream(name, 1);
        for (id, ts, v) in
            [("a", 10, "a1"), ("a", 10, "a2"), ("a", 5, "a-late"), ("b", 7, "b1"), ("b", 8, "b2")]
        {
            s.put_by_key("p", json!({"id": id, "ts": ts, "v": v}).to_string());
        }
        wait_consumed(&engine, name, 5).await;
    }
    // A tie goes to the version consumed later; a late version is hidden.
    assert_eq!(
        rows(&engine, "SELECT id, v, late FROM marked ORDER BY id").await,
        ["a|a2|false", "b|b2|false"]
    );
    assert_eq!(
        rows(&engine, "SELECT v, late FROM marked ORDER BY v OPTION(skipUpsert=true)").await,
        ["a-late|true", "a1|false", "a2|false", "b1|false", "b2|false"]
    );
    assert_eq!(rows(&engine, "SELECT id, v FROM dropped ORDER BY id").await, ["a|a2", "b|b2"]);
    assert_eq!(count(&engine, "SET skipUpsert=true; SELECT count(*) FROM dropped").await, 4);
    let u = engine.table_status("dropped").unwrap().upsert.unwrap();
    assert_eq!((u.out_of_order, u.out_of_order_dropped), (1, 1));
    let m = engine.table_status("marked").unwrap().upsert.unwrap();
    assert_eq!((m.out_of_order, m.out_of_order_dropped), (1, 0));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_upsert_merges_each_column_by_its_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, engine) = Feed::kinesis("profiles", dir.path()).await;
    let (table, schema) = definition_at(
        "profiles",
        &feed.endpoint(),
        3,
        json!({"upsertConfig": {
            "mode": "PARTIAL",
            "defaultPartialUpsertStrategy": "OVERWRITE",
            "partialUpsertStrategies": {
                "visits": "INCREMENT", "tags": "UNION", "events": "APPEND", "first_name": "IGNORE",
                "best": "MAX", "worst": "MIN", "note": "FORCE_OVERWRITE"
            }
        }}),
        json!([
            {"name": "visits", "dataType": "LONG"},
            {"name": "tags", "dataType": "STRING", "singleValueField": false},
            {"name": "events", "dataType": "INT", "singleValueField": false},
            {"name": "first_name", "dataType": "STRING"},
            {"name": "best", "dataType": "DOUBLE"},
            {"name": "worst", "dataType": "DOUBLE"},
            {"name": "note", "dataType": "STRING"},
            {"name": "city", "dataType": "STRING"}
        ]),
    );
    engine.create_table(&table, &schema).await.unwrap();
    let versions = [
        json!({"id": "u1", "ts": 1, "visits": 2, "tags": ["b", "a"], "events": [1], "first_name": "Ann", "best": 5.0, "worst": 5.0, "note": "n1", "city": "Oslo"}),
        json!({"id": "u2", "ts": 1, "visits": 10, "city": "Rome"}),
        // u1: every strategy with both values; first_name IGNORE keeps Ann; city OVERWRITE takes Bergen.
        json!({"id": "u1", "ts": 2, "visits": 3, "tags": ["c", "a"], "events": [1, 2], "first_name": "Bob", "best": 7.5, "worst": 9.0, "note": "n2", "city": "Bergen"}),
        // u1: nulls: OVERWRITE keeps Bergen, FORCE_OVERWRITE makes note null, INCREMENT keeps 5.
        json!({"id": "u1", "ts": 3, "best": 6.0, "worst": 1.0}),
        // u1: late: not merged, not visible.
        json!({"id": "u1", "ts": 0, "visits": 100, "city": "Late"}),
        // u2: IGNORE holds only once set: first_name was null, so it takes Cy.
        json!({"id": "u2", "ts": 5, "visits": 1, "first_name": "Cy"}),
    ];
    for v in &versions {
        feed.put(v).await;
    }
    wait_consumed(&engine, "profiles", versions.len() as u64).await;
    let sql =
        "SELECT id, ts, visits, tags, events, first_name, best, worst, note, city FROM profiles ORDER BY id";
    let expected =
        ["u1|3|5|[a, b, c]|[1, 1, 2]|Ann|7.5|1.0|null|Bergen", "u2|5|11|null|null|Cy|null|null|null|Rome"];
    assert_eq!(rows(&engine, sql).await, expected);
    // The rows sealed (a seal every 3 rows): a restart rebuilds the same view.
    engine.shutdown().await;
    drop(engine);
    let engine = feed.reopen(dir.path()).await;
    wait_stored(&engine, "profiles", versions.len() as u64).await;
    assert_eq!(rows(&engine, sql).await, expected);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_hide_keys_and_the_ttls_bound_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, engine) = Feed::kinesis("d", dir.path()).await;
    let (table, schema) = definition_at(
        "d",
        &feed.endpoint(),
        4,
        json!({"upsertConfig": {"deleteRecordColumn": "gone", "deletedKeysTTL": 100, "metadataTTL": 1000, "snapshot": "ENABLE"}}),
        json!([{"name": "gone", "dataType": "BOOLEAN"}, {"name": "v", "dataType": "STRING"}]),
    );
    engine.create_table(&table, &schema).await.unwrap();
    let versions = [
        json!({"id": "a", "ts": 10, "v": "a1"}),
        json!({"id": "b", "ts": 10, "v": "b1"}),
        json!({"id": "c", "ts": 10, "v": "c1"}),
        // a deleted; b deleted, then back with a newer version; a late c is ignored.
        json!({"id": "a", "ts": 20, "gone": true}),
        json!({"id": "b", "ts": 20, "gone": true}),
        json!({"id": "b", "ts": 30, "v": "b2"}),
        // An older version of the deleted a stays late: the marker keeps its value.
        json!({"id": "a", "ts": 15, "v": "a-old"}),
    ];
    for v in &versions {
        feed.put(v).await;
    }
    wait_consumed(&engine, "d", versions.len() as u64).await;
    assert_eq!(rows(&engine, "SELECT id, v FROM d ORDER BY id").await, ["b|b2", "c|c1"]);
    // skipUpsertDelete shows each key's latest row, delete markers too.
    assert_eq!(
        rows(&engine, "SELECT id, ts, gone FROM d ORDER BY id OPTION(skipUpsertDelete=true)").await,
        ["a|20|true", "b|30|null", "c|10|null"]
    );
    assert_eq!(engine.table_status("d").unwrap().upsert.unwrap().keys, 3);

    // Time moves on to 200: a's marker (20) is past deletedKeysTTL (200 - 100) and leaves the
    // map and the valid rows; c (10) stays valid though past nothing yet (metadataTTL 1000).
    feed.put(&json!({"id": "e", "ts": 200, "v": "e1"})).await;
    // A new consuming segment purges; the flush every 4 rows makes one.
    for i in 0..4 {
        feed.put(&json!({"id": format!("f{i}"), "ts": 200, "v": "f"})).await;
    }
    wait_consumed(&engine, "d", versions.len() as u64 + 5).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.table_status("d").unwrap().upsert.unwrap().keys_expired < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the marker expires");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows(&engine, "SELECT id FROM d WHERE gone = true OPTION(skipUpsertDelete=true)").await,
        Vec::<String>::new()
    );
    // a comes back as a new key: the older a-old is not late any more after its key left.
    feed.put(&json!({"id": "a", "ts": 12, "v": "a3"})).await;
    wait_consumed(&engine, "d", versions.len() as u64 + 6).await;
    assert_eq!(rows(&engine, "SELECT v FROM d WHERE id = 'a'").await, ["a3"]);

    // metadataTTL: at 2000, c (10) and b (30) are past 2000 - 1000 and leave the map, but
    // their rows stay visible; a new version of c is then a new key, and both show (Pinot's
    // documented TTL behaviour).
    for i in 0..4 {
        feed.put(&json!({"id": format!("g{i}"), "ts": 2000, "v": "g"})).await;
    }
    wait_consumed(&engine, "d", versions.len() as u64 + 10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.table_status("d").unwrap().upsert.unwrap().keys_expired < 3 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", engine.table_status("d").unwrap().upsert);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    feed.put(&json!({"id": "c", "ts": 1990, "v": "c2"})).await;
    wait_consumed(&engine, "d", versions.len() as u64 + 11).await;
    assert_eq!(rows(&engine, "SELECT v FROM d WHERE id = 'c' ORDER BY v").await, ["c1", "c2"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keeps_the_first_row_of_a_key_within_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, engine) = Feed::kinesis("events", dir.path()).await;
    let (table, schema) = definition_at(
        "events",
        &feed.endpoint(),
        3,
        json!({"dedupConfig": {"dedupEnabled": true, "metadataTTL": 100, "dedupTimeColumn": "ts"}}),
        json!([{"name": "v", "dataType": "STRING"}]),
    );
    engine.create_table(&table, &schema).await.unwrap();
    let versions = [
        json!({"id": "a", "ts": 10, "v": "a1"}),
        json!({"id": "a", "ts": 50, "v": "a2"}),
        json!({"id": "b", "ts": 60, "v": "b1"}),
        json!({"id": "a", "ts": 5, "v": "a0"}),
        json!({"id": "b", "ts": 60, "v": "b2"}),
        // At 300, a's entry (10) is past the TTL (300 - 100): a is new again.
        json!({"id": "c", "ts": 300, "v": "c1"}),
        json!({"id": "a", "ts": 300, "v": "a3"}),
    ];
    for v in &versions {
        feed.put(v).await;
    }
    wait_consumed(&engine, "events", versions.len() as u64).await;
    let expected = ["a1", "a3", "b1", "c1"];
    assert_eq!(rows(&engine, "SELECT v FROM events ORDER BY v").await, expected);
    let status = engine.table_status("events").unwrap();
    assert_eq!(status.upsert.unwrap().deduplicated, 3);
    assert_eq!(status.sealed_rows + status.consuming_rows, 4, "duplicates are not stored");
    let metrics = engine.metrics().prometheus();
    assert!(metrics.contains("shoal_rows_deduplicated_total{table=\"events\"} 3"), "{metrics}");
    engine.shutdown().await;
    drop(engine);
    let engine = feed.reopen(dir.path()).await;
    wait_stored(&engine, "events", 4).await;
    assert_eq!(rows(&engine, "SELECT v FROM events ORDER BY v").await, expected);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_comparison_columns_compare_the_one_each_version_sets() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("multi", 1);
    let (table, schema) = definition(
        "multi",
        1000,
        json!({"upsertConfig": {"comparisonColumns": ["seq_a", "seq_b"]}}),
        json!([{"name": "seq_a", "dataType": "LONG"}, {"name": "seq_b", "dataType": "STRING"}, {"name": "v", "dataType": "STRING"}]),
    );
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table, &schema).await.unwrap();
    let versions = [
        json!({"id": "k", "ts": 1, "seq_a": 5, "v": "a5"}),
        // Only seq_b set: the stored version has no seq_b, so this one wins.
        json!({"id": "k", "ts": 1, "seq_b": "m", "v": "bm"}),
        // seq_a 3 < 5 (kept from the first version): late.
        json!({"id": "k", "ts": 1, "seq_a": 3, "v": "a3"}),
        json!({"id": "k", "ts": 1, "seq_b": "z", "v": "bz"}),
        // Both set, or neither: refused, counted as bad_comparison.
        json!({"id": "k", "ts": 1, "seq_a": 9, "seq_b": "zz", "v": "both"}),
        json!({"id": "k", "ts": 1, "v": "none"}),
    ];
    for v in &versions {
        stream.put_by_key("p", v.to_string());
    }
    wait_consumed(&engine, "multi", versions.len() as u64).await;
    assert_eq!(rows(&engine, "SELECT v FROM multi").await, ["bz"]);
    let status = engine.table_status("multi").unwrap();
    assert_eq!(status.dropped.counts.get(&shoal_segment::DropReason::BadComparison), Some(&2));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_segment_and_its_reread_leave_the_key_map_right() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("q", 1);
    // PARTIAL, so that rows read again must be merged again: visits add up.
    let (table, schema) = definition(
        "q",
        100,
        json!({"upsertConfig": {"mode": "PARTIAL", "partialUpsertStrategies": {"visits": "INCREMENT"}}}),
        json!([{"name": "version", "dataType": "INT"}, {"name": "visits", "dataType": "LONG"}]),
    );
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table, &schema).await.unwrap();
    // 6 versions of 50 keys, a version after another: 3 sealed segments of 100 rows.
    for version in 1..=6 {
        for k in 0..50 {
            stream.put_by_key(
                "p",
                json!({"id": format!("k{k}"), "ts": version, "version": version, "visits": 1}).to_string(),
            );
        }
    }
    wait_consumed(&engine, "q", 300).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.table_status("q").unwrap().sealed_rows < 300 {
        assert!(tokio::time::Instant::now() < deadline, "three seals");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latest = rows(&engine, "SELECT id, version, visits FROM q ORDER BY id").await;
    assert_eq!(latest.len(), 50);
    assert!(latest.iter().all(|r| r.ends_with("|6|6")), "{latest:?}");
    let segments = engine.table_status("q").unwrap().segments;
    engine.shutdown().await;
    drop(engine);
    // Damage the segment with versions 5 and 6.
    let last = segments.iter().max_by_key(|s| s.time_range.map(|(_, hi)| hi)).unwrap();
    let file = dir.path().join("tables/q/segments").join(format!("{}.seg", last.name));
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert_eq!(engine.table_status("q").unwrap().quarantined.len(), 1);
    // Quarantined at open: the map is built from what is left (version 4 the latest) until the
    // rows come back from the stream; a key is never seen twice on the way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = rows(&engine, "SELECT id, version FROM q ORDER BY id").await;
        let mut ids: Vec<&str> = now.iter().map(|r| r.split('|').next().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), now.len(), "a key seen twice: {now:?}");
        let status = engine.table_status("q").unwrap();
        if status.quarantined.iter().all(|q| q.state == shoal::QuarantineState::Restored) {
            break;
        }
        assert!(now.is_empty() || now.len() == 50, "every key shown: {now:?}");
        assert!(tokio::time::Instant::now() < deadline, "re-read: {:?}", status.quarantined);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = engine.table_status("q").unwrap();
    assert_eq!(status.quarantined[0].rows_restored, 100, "{:?}", status.quarantined);
    // Read again and merged again: every key's sixth version, six visits.
    assert_eq!(rows(&engine, "SELECT id, version, visits FROM q ORDER BY id").await, latest);
    assert_eq!(count(&engine, "SET skipUpsert = true; SELECT count(*) FROM q").await, 300);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rewrites_superseded_segments_and_keeps_what_queries_see() {
    let dir = tempfile::tempdir().unwrap();
    let sources = MemorySources::default();
    let stream = sources.stream("c", 1);
    let (mut table, schema) =
        definition("c", 100, json!({"upsertConfig": {}}), json!([{"name": "version", "dataType": "INT"}]));
    table["task"] = json!({"taskTypeConfigsMap": {"UpsertCompactionTask": {
        "bufferTimePeriod": "0d", "invalidRecordsThresholdPercent": "30"
    }}});
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    engine.create_table(&table, &schema).await.unwrap();
    let put = |id: String, version: i64| {
        stream.put_by_key("p", json!({"id": id, "ts": version, "version": version}).to_string());
    };
    // Segment A: versions 1 and 2 of 50 keys; B: versions 3 and 4; C: versions 5 and 6 of the
    // 25 even keys and 50 other keys. A ends with no visible row (dropped), B with 25 of 100
    // (75% superseded: rewritten), C with 75 of 100 (25%: under the threshold, kept).
    for version in 1..=4 {
        for k in 0..50 {
            put(format!("k{k}"), version);
        }
    }
    for version in 5..=6 {
        for k in (0..50).step_by(2) {
            put(format!("k{k}"), version);
        }
    }
    for f in 0..50 {
        put(format!("f{f}"), 7);
    }
    let expected: Vec<String> = {
        let mut v: Vec<String> =
            (0..50).map(|k| format!("k{k}|{}", if k % 2 == 0 { 6 } else { 4 })).collect();
        v.extend((0..50).map(|f| format!("f{f}|7")));
        // In the order of `ORDER BY id`.
        v.sort_by(|a, b| a.split('|').next().cmp(&b.split('|').next()));
        v
    };
    let sql = "SELECT id, version FROM c ORDER BY id";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = false;
    loop {
        // Once every record is in, the view never changes while segments are rewritten.
        let now = rows(&engine, sql).await;
        seen |= now == expected;
        if seen {
            assert_eq!(now, expected);
        }
        let s = engine.table_status("c").unwrap();
        if seen && s.sealed_rows == 125 && s.consuming_rows == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "compacted: {s:?}\n{now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows(&engine, sql).await, expected);
    assert_eq!(count(&engine, "SET skipUpsert = true; SELECT count(*) FROM c").await, 125);
    let metrics = engine.metrics().prometheus();
    assert!(metrics.contains("shoal_segments_compacted_total{table=\"c\"} 2"), "{metrics}");
    assert_eq!(engine.table_status("c").unwrap().segments.len(), 2);
    engine.shutdown().await;
    drop(engine);
    // The rewritten segment and the map rebuilt from it at open.
    let engine = Engine::open_with(dir.path(), options(sources.clone())).await.unwrap();
    assert_eq!(rows(&engine, sql).await, expected);
    assert_eq!(count(&engine, "SET skipUpsert = true; SELECT count(*) FROM c").await, 125);
    engine.shutdown().await;
}
