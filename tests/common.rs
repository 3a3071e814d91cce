//! Helpers for the engine's integration tests.
#![allow(dead_code)]

use arrow::array::AsArray;
use serde_json::{Value, json};
use shoal::{Engine, EngineOptions, SourceFactory, TableDefinition};
use shoal_stream::Source;
use shoal_stream::memory::MemoryStream;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// In-memory streams, one per table name.
#[derive(Default, Clone)]
pub struct MemorySources(pub Arc<Mutex<HashMap<String, MemoryStream>>>);

impl MemorySources {
    pub fn stream(&self, table: &str, shards: usize) -> MemoryStream {
        self.0.lock().unwrap().entry(table.to_string()).or_insert_with(|| MemoryStream::new(shards)).clone()
    }
}

impl SourceFactory for MemorySources {
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let stream = self.stream(&table.config.name, 1);
        Box::pin(async move { Box::new(stream.source()) as Box<dyn Source> })
    }
}

pub fn options(sources: impl SourceFactory + 'static) -> EngineOptions {
    EngineOptions {
        sources: Arc::new(sources),
        retention_interval: Duration::from_millis(200),
        ..EngineOptions::default()
    }
}

/// A table config for `name` reading `stream` at `endpoint`, sealing every `rows` rows.
pub fn table_config(name: &str, stream: &str, endpoint: &str, rows: u64) -> Value {
    json!({
        "tableName": name,
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {
            "loadMode": "MMAP",
            "streamConfigs": {
                "streamType": "kinesis",
                "stream.kinesis.topic.name": stream,
                "region": "us-east-1",
                "endpoint": endpoint,
                "accessKey": "shoal-test",
                "secretKey": "shoal-test-secret",
                "shardIteratorType": "TRIM_HORIZON",
                "requests_per_second_limit": "5",
                "shardDiscoveryInterval": "1s",
                "stream.kinesis.fetch.timeout.millis": "3000",
                "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
                "realtime.segment.flush.threshold.segment.rows": rows.to_string(),
                "realtime.segment.flush.threshold.time": "1h"
            }
        },
        "metadata": {"customConfigs": {}}
    })
}

pub fn schema(name: &str) -> Value {
    json!({
        "schemaName": name,
        "dimensionFieldSpecs": [{"name": "key", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "id", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

pub fn record(id: usize, ts: i64) -> String {
    format!(r#"{{"id": {id}, "key": "key-{}", "ts": {ts}}}"#, id % 37)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `count(*)` and `count(DISTINCT id)` of `table`.
pub async fn counts(engine: &Engine, table: &str) -> (i64, i64) {
    let batches = engine.sql(&format!("SELECT count(*), count(DISTINCT id) FROM {table}")).await.unwrap();
    let b = &batches[0];
    let get = |i: usize| {
        arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64)
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    (get(0), get(1))
}

/// Waits until `table` holds `want` rows (checking that it never holds more, nor duplicates).
pub async fn wait_for_rows(engine: &Engine, table: &str, want: i64, limit: Duration) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (rows, distinct) = counts(engine, table).await;
        assert_eq!(rows, distinct, "a row counted twice");
        assert!(rows <= want, "more rows than written: {rows}");
        if rows == want || tokio::time::Instant::now() > deadline {
            return (rows, distinct);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
