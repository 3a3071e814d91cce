//! Helpers shared by the consumer tests.
#![allow(dead_code)]

use shoal_stream::emulator::Emulator;
use shoal_stream::{KinesisConfig, KinesisSource, Record, ResumeState, ShardEvent, Source};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Test settings: faster polling and discovery than the defaults.
pub fn fast(mut config: KinesisConfig) -> KinesisConfig {
    config.requests_per_second = 5.0;
    config.shard_discovery_interval = Duration::from_millis(500);
    config.fetch_timeout = Duration::from_secs(3);
    config
}

/// Reads from `source` until `want` records arrived (or `limit` passed), then `settle` more
/// to catch any duplicate. Records come in delivery order; each shard's end is confirmed to the
/// source at once, so children start.
pub async fn collect(
    source: Box<dyn Source>,
    resume: ResumeState,
    want: usize,
    limit: Duration,
) -> Vec<Record> {
    let mut handle = source.start(resume);
    let out = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let collector = {
        let out = Arc::clone(&out);
        tokio::spawn(async move {
            while let Some(mut reader) = handle.readers.recv().await {
                let out = Arc::clone(&out);
                let done = done_tx.clone();
                tokio::spawn(async move {
                    while let Some(event) = reader.next().await {
                        match event {
                            ShardEvent::Records { records, .. } => {
                                out.lock().unwrap().extend(records);
                                let _ = done.send(());
                            }
                            ShardEvent::End { .. } => {
                                reader.finished();
                                return;
                            }
                        }
                    }
                });
            }
        })
    };
    let deadline = tokio::time::Instant::now() + limit;
    while out.lock().unwrap().len() < want {
        if tokio::time::timeout_at(deadline, done_rx.recv()).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    collector.abort();
    out.lock().unwrap().clone()
}

/// A source reading `stream` on `emulator` with `config` changes applied.
pub async fn source(
    emulator: &Emulator,
    stream: &str,
    edit: impl FnOnce(&mut KinesisConfig),
) -> Box<dyn Source> {
    let mut config = fast(emulator.kinesis_config(stream));
    edit(&mut config);
    Box::new(KinesisSource::connect(config).await)
}

/// Puts records `ids` with partition key `key-{id % keys}` and body `{"id": id}` in batches.
pub async fn put_ids(emulator: &Emulator, stream: &str, ids: std::ops::Range<usize>, keys: usize) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let ids: Vec<usize> = ids.collect();
    for chunk in ids.chunks(250) {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{}", i % keys))
                    .data(Blob::new(format!("{{\"id\": {i}}}")))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = emulator
            .client()
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0), "every put succeeds");
    }
}

/// The `id` of a record written by `put_ids`.
pub fn id(record: &Record) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
    v["id"].as_u64().unwrap() as usize
}
