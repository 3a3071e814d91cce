//! Ingestion transforms end to end: records put into kinesis-local go through a table whose
//! ingestionConfig derives the time column from epoch seconds, upper-cases a city, filters bot
//! traffic and unnests each order's items into rows, across seals and a SIGKILL of the server.
//! The rows that come out are counted exactly against the rows the records must make.

mod common;
mod server;

use common::*;
use serde_json::{Value, json};
use server::*;
use shoal_stream::emulator::Emulator;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const ORDERS: usize = 400;
/// 2023-11-14T22:13:20Z, in seconds.
const BASE_SECONDS: i64 = 1_700_000_000;
const CITIES: [&str; 3] = ["lima", "oslo", "kyoto"];

/// Order `i`: every tenth is a bot's; it has `i % 3 + 1` items.
fn order(i: usize) -> String {
    let items: Vec<Value> =
        (0..i % 3 + 1).map(|k| json!({"sku": format!("o{i}-{k}"), "qty": k + 1})).collect();
    json!({
        "order": format!("o{i}"),
        "tsSec": BASE_SECONDS + i as i64,
        "rawCity": CITIES[i % 3],
        "kind": if i.is_multiple_of(10) { "bot" } else { "human" },
        "items": items,
    })
    .to_string()
}

/// Rows orders `range` make: the items of every order that is not a bot's.
fn rows_of(range: std::ops::Range<usize>) -> i64 {
    range.filter(|i| !i.is_multiple_of(10)).map(|i| (i % 3 + 1) as i64).sum()
}

fn query(server: &Server, sql: &str) -> Value {
    let (status, body) = server.post("/query/sql", None, json!({"sql": sql}).to_string().as_bytes()).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["exceptions"], json!([]), "{sql}: {v}");
    v["resultTable"]["rows"][0][0].clone()
}

fn wait_for(server: &Server, want: i64) {
    let started = Instant::now();
    loop {
        let n = count(server, None, "orders");
        if n == want {
            return;
        }
        assert!(n < want, "{n} rows, more than the {want} the records make");
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{n} of {want} rows within 90 s:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_filter_and_unnest_hold_across_seals_and_a_kill() {
    let emulator = Emulator::start().await.expect("kinesis-local must be installed and start");
    emulator.create_stream("orders", 2).await.unwrap();
    let mut table = table_config("orders", "orders", &emulator.endpoint(), 60);
    table["ingestionConfig"] = json!({
        "transformConfigs": [
            {"columnName": "ts", "transformFunction": "fromEpochSeconds(tsSec)"},
            {"columnName": "city", "transformFunction": "upper(rawCity)"}
        ],
        "filterConfig": {"filterFunction": "strcmp(kind, 'bot') = 0"},
        "complexTypeConfig": {"fieldsToUnnest": ["items"], "delimiter": "."}
    });
    let schema = json!({
        "schemaName": "orders",
        "dimensionFieldSpecs": [
            {"name": "order", "dataType": "STRING"},
            {"name": "city", "dataType": "STRING"},
            {"name": "items.sku", "dataType": "STRING"}
        ],
        "metricFieldSpecs": [{"name": "items.qty", "dataType": "INT"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    });
    let half = ORDERS / 2;
    for i in 0..half {
        emulator.put("orders", &format!("p{i}"), order(i).as_bytes()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (table2, schema2) = (table.clone(), schema.clone());
    let mut server = tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table2, &schema2, &[]);
        wait_for(&server, rows_of(0..half));
        server
    })
    .await
    .unwrap();
    // 60-row segments: the first half's rows sealed several times.
    let (_, segments) = server.get("/segments/orders", None).unwrap();
    let names: Value = serde_json::from_str(&segments).unwrap();
    let sealed = names[0]["REALTIME"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !n.as_str().unwrap().ends_with("__CONSUMING"))
        .count();
    assert!(sealed >= 2, "{segments}");
    assert_eq!(server.stop_with(libc::SIGKILL).signal(), Some(libc::SIGKILL));
    for i in half..ORDERS {
        emulator.put("orders", &format!("p{i}"), order(i).as_bytes()).await.unwrap();
    }
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let server = Server::start(&path, &table, &schema, &[]);
        let total = rows_of(0..ORDERS);
        wait_for(&server, total);
        // Each item once: no row lost or repeated through the kill.
        assert_eq!(query(&server, "SELECT COUNT(DISTINCT \"items.sku\") FROM orders"), json!(total));
        // No bot order made a row: order 10's items would be o10-0 and o10-1.
        assert_eq!(query(&server, "SELECT COUNT(*) FROM orders WHERE \"order\" = 'o10'"), json!(0));
        // Order 7 (Oslo, 2 items, 1,700,000,007 s): its rows carry the derived columns.
        assert_eq!(
            query(
                &server,
                "SELECT COUNT(*) FROM orders WHERE \"order\" = 'o7' AND city = 'OSLO' AND ts = 1700000007000"
            ),
            json!(2)
        );
        // Quantities: an order with n items has quantities 1..n.
        let qty: i64 = (0..ORDERS)
            .filter(|i| !i.is_multiple_of(10))
            .map(|i| (1..=(i % 3 + 1) as i64).sum::<i64>())
            .sum();
        assert_eq!(query(&server, "SELECT SUM(\"items.qty\") FROM orders").as_f64(), Some(qty as f64));
        let (_, metrics) = server.get("/metrics", None).unwrap();
        let filtered =
            prometheus_sum(&metrics, "shoal_rows_filtered_total", "table", "orders").unwrap_or(0.0);
        // At least the second half's bot orders went through the filter since the restart.
        assert!(filtered >= (half..ORDERS).filter(|i| i.is_multiple_of(10)).count() as f64, "{filtered}");
    })
    .await
    .unwrap();
}
