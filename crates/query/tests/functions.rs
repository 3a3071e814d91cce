//! Pinot's functions against hand-computed answers.

use serde_json::{Value, json};
use shoal_query::{QueryEngine, QueryOptions, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::{LayoutOptions, MutableSegment, RecordMeta, Schema, TableLayout};
use std::sync::Arc;

#[derive(Debug)]
struct OneSegment(Arc<MutableSegment>);

impl SnapshotSource for OneSegment {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot::new(vec![SegmentData::Consuming(self.0.snapshot())])
    }
}

fn engine() -> QueryEngine {
    let (schema, _) = Schema::from_json(&json!({
        "schemaName": "t",
        "dimensionFieldSpecs": [{"name": "name", "dataType": "STRING"}, {"name": "doc", "dataType": "JSON"}],
        "metricFieldSpecs": [{"name": "v", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    }))
    .unwrap();
    let layout = Arc::new(TableLayout::new(
        Arc::new(schema),
        &LayoutOptions { time_column: Some("ts".into()), ..Default::default() },
    ));
    let segment = Arc::new(MutableSegment::new(Arc::clone(&layout)));
    let rows = [
        r#"{"name": "a", "v": 1, "ts": 1706704496789, "doc": {"x": {"y": 1}, "s": "p"}}"#,
        r#"{"name": "b", "v": 2, "ts": 1706704500000, "doc": {"x": {"y": 2}}}"#,
        r#"{"name": "a", "v": 3, "ts": 1706790896789, "doc": {"x": {"y": 3}}}"#,
        r#"{"name": "c", "v": 4, "ts": 1706790896000, "doc": {"x": {"y": 4}}}"#,
        r#"{"name": "a", "v": 5, "ts": 1707000000000, "doc": {"x": {"y": 5}}}"#,
    ];
    segment.append(rows.iter().map(|r| (r.as_bytes(), RecordMeta::default())));
    let engine = QueryEngine::new(QueryOptions::default());
    engine.register("t", layout, Arc::new(OneSegment(segment)));
    engine
}

async fn one(engine: &QueryEngine, sql: &str) -> Value {
    let r = shoal_server::broker::answer_query(engine, sql).await;
    assert!(r.exceptions.is_empty(), "{sql}: {:?}", r.exceptions);
    r.result_table.unwrap().rows[0][0].clone()
}

#[tokio::test]
async fn pinot_functions_give_hand_computed_answers() {
    let e = engine();
    let cases: Vec<(&str, Value)> = vec![
        ("SELECT DISTINCTCOUNT(name) FROM t", json!(3)),
        ("SELECT DISTINCTCOUNTHLL(name) FROM t", json!(3)),
        // Pinot's PERCENTILE: the sorted value at index (int)(n * p / 100): n = 5.
        ("SELECT PERCENTILE(v, 50) FROM t", json!(3.0)),
        ("SELECT PERCENTILE(v, 90) FROM t", json!(5.0)),
        ("SELECT PERCENTILE95(v) FROM t", json!(5.0)),
        ("SELECT PERCENTILE(v, 0) FROM t", json!(1.0)),
        ("SELECT PERCENTILEEST(v, 50) FROM t", json!(3)),
        ("SELECT DATETRUNC('day', ts) FROM t WHERE v = 1", json!(1_706_659_200_000i64)),
        ("SELECT DATETRUNC('HOUR', ts) FROM t WHERE v = 1", json!(1_706_702_400_000i64)),
        ("SELECT DATETRUNC('month', ts) FROM t WHERE v = 5", json!(1_706_745_600_000i64)),
        (
            "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', '1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd', '1:DAYS') FROM t WHERE v = 1",
            json!("20240131"),
        ),
        (
            "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', '1:HOURS:EPOCH', '1:HOURS') FROM t WHERE v = 1",
            json!(474_084),
        ),
        (
            "SELECT DATETIMECONVERT(ts, '1:MILLISECONDS:EPOCH', '1:MILLISECONDS:EPOCH', '15:MINUTES') FROM t WHERE v = 1",
            json!(1_706_704_200_000i64),
        ),
        ("SELECT TODATETIME(ts, 'yyyy-MM-dd HH:mm:ss') FROM t WHERE v = 1", json!("2024-01-31 12:34:56")),
        (
            "SELECT FROMDATETIME('2024-01-31 12:34:56', 'yyyy-MM-dd HH:mm:ss') FROM t WHERE v = 1",
            json!(1_706_704_496_000i64),
        ),
        ("SELECT ToEpochSeconds(ts) FROM t WHERE v = 1", json!(1_706_704_496)),
        ("SELECT ToEpochMinutes(ts) FROM t WHERE v = 1", json!(28_445_074)),
        ("SELECT ToEpochHours(ts) FROM t WHERE v = 1", json!(474_084)),
        ("SELECT ToEpochDays(ts) FROM t WHERE v = 1", json!(19_753)),
        ("SELECT FromEpochDays(19753) FROM t WHERE v = 1", json!(1_706_659_200_000i64)),
        ("SELECT FromEpochSeconds(1706704496) FROM t WHERE v = 1", json!(1_706_704_496_000i64)),
        ("SELECT JSON_EXTRACT_SCALAR(doc, '$.x.y', 'INT') FROM t WHERE v = 3", json!(3)),
        ("SELECT JSON_EXTRACT_SCALAR(doc, '$.s', 'STRING') FROM t WHERE v = 1", json!("p")),
        ("SELECT JSON_EXTRACT_SCALAR(doc, '$.s', 'STRING', 'none') FROM t WHERE v = 2", json!("none")),
        ("SELECT sum(JSON_EXTRACT_SCALAR(doc, '$.x.y', 'LONG')) FROM t", json!(15)),
        ("SELECT LASTWITHTIME(v, ts, 'LONG') FROM t", json!(5)),
        ("SELECT FIRSTWITHTIME(name, ts, 'STRING') FROM t", json!("a")),
        ("SELECT LASTWITHTIME(name, ts, 'STRING') FROM t WHERE v < 5", json!("a")),
    ];
    for (sql, want) in cases {
        let got = one(&e, sql).await;
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => got == want,
        };
        assert!(same, "{sql}: got {got}, want {want}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let ago = one(&e, "SELECT ago('PT1H') FROM t LIMIT 1").await.as_i64().unwrap();
    assert!((ago - (now - 3_600_000)).abs() < 60_000, "{ago}");
    let n = one(&e, "SELECT now() FROM t LIMIT 1").await.as_i64().unwrap();
    assert!((n - now).abs() < 60_000);
    let bad = shoal_server::broker::answer_query(&e, "SELECT DATETRUNC('fortnight', ts) FROM t").await;
    assert_eq!(bad.exceptions[0].error_code, 200, "{bad:?}");
}
