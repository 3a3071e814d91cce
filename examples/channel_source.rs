//! A table fed by a source of the app's own: the app's events arrive on an in-process channel,
//! and a [`Source`] of twenty lines hands them to the table, which decodes, seals and commits
//! them as it would a Kinesis shard's.
//!
//! ```text
//! cargo run --example channel_source
//! ```
//!
//! What the source owes the engine (see `shoal::source`): one [`ShardReader`] per shard, whose
//! events carry records in order, each with a sequence number that grows, starting after the
//! checkpoint the engine resumes from. A channel cannot read anything again, so the records a
//! crash catches between their arrival and their segment's commit are gone with it; an app that
//! needs them kept uses a table fed by `Engine::append`, whose log keeps them.

use serde_json::{Value, json};
use shoal::source::{
    Record, ResumeState, SequenceNumber, ShardEvent, ShardReader, Source, SourceFactory, SourceHandle,
};
use shoal::{EngineOptions, TableDefinition};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, watch};

/// The one shard of the channel.
const SHARD: &str = "channel";

/// Reads the app's channel: every message is one record.
struct ChannelSource {
    /// Shared by the sources the factory makes (one per start, resume or re-read); the one
    /// running holds the lock.
    messages: Arc<Mutex<mpsc::Receiver<Vec<u8>>>>,
}

impl Source for ChannelSource {
    fn start(self: Box<Self>, resume: ResumeState) -> SourceHandle {
        let (readers_tx, readers_rx) = mpsc::channel(1);
        let (shutdown_tx, mut shutdown) = watch::channel(false);
        if resume.ended.contains(SHARD) {
            // Read to its end before (the app closed the channel once): nothing more comes
            // from it, even from a new channel; a new table (or shard name) would be needed.
            return SourceHandle::new(readers_rx, Arc::default(), shutdown_tx);
        }
        // Sequence numbers go on after the committed checkpoint.
        let mut next: u64 =
            resume.checkpoints.get(SHARD).map_or(1, |c| c.sequence.as_str().parse::<u64>().unwrap_or(0) + 1);
        tokio::spawn(async move {
            let mut messages = self.messages.lock().await;
            let (control_tx, mut control) = mpsc::unbounded_channel();
            loop {
                // One reader at a time. One the engine drops before the end (its ingest task
                // failed) is released with what was committed, and a new reader goes on from
                // the channel: the records the old one held and nobody committed are gone.
                let (events_tx, events_rx) = mpsc::channel(4);
                let reader = ShardReader::new(SHARD.to_string(), Vec::new(), events_rx, control_tx.clone());
                if readers_tx.send(reader).await.is_err() {
                    return;
                }
                loop {
                    let first = tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = events_tx.closed() => break,
                        m = messages.recv() => m,
                    };
                    let Some(first) = first else {
                        // The app closed the channel: the shard ends, and the table seals what
                        // is left.
                        let _ = events_tx.send(ShardEvent::End { children: Vec::new() }).await;
                        return;
                    };
                    // What else is waiting goes in the same event.
                    let mut batch = vec![first];
                    while batch.len() < 1000 {
                        let Ok(m) = messages.try_recv() else { break };
                        batch.push(m);
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let records = batch
                        .into_iter()
                        .map(|data| {
                            let sequence = SequenceNumber::parse(&next.to_string()).expect("digits");
                            next += 1;
                            Record {
                                shard_id: Arc::from(SHARD),
                                sequence_number: sequence,
                                sub_sequence: None,
                                arrival_ms: now,
                                partition_key: String::new(),
                                data: data.into(),
                            }
                        })
                        .collect();
                    let event = ShardEvent::Records { records, millis_behind_latest: Some(0) };
                    if events_tx.send(event).await.is_err() {
                        break;
                    }
                }
                // The engine's word that it let the reader go (Control::Released).
                tokio::select! {
                    _ = shutdown.changed() => return,
                    released = control.recv() => if released.is_none() { return },
                }
            }
        });
        SourceHandle::new(readers_rx, Arc::default(), shutdown_tx)
    }
}

/// Gives the table `events` the channel (every other table would read Kinesis).
struct ChannelSources {
    messages: Arc<Mutex<mpsc::Receiver<Vec<u8>>>>,
}

impl SourceFactory for ChannelSources {
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        if table.config.name != "events" {
            return shoal::source::KinesisSources.create(table);
        }
        let source = ChannelSource { messages: Arc::clone(&self.messages) };
        Box::pin(async move { Box::new(source) as Box<dyn Source> })
    }
}

/// The table's Pinot config: its stream settings name no real stream, since the app's factory
/// gives the source; they still set how segments seal.
fn table_config() -> Value {
    json!({
        "tableName": "events",
        "tableType": "REALTIME",
        "segmentsConfig": {"timeColumnName": "ts", "replicasPerPartition": "1"},
        "tableIndexConfig": {"streamConfigs": {
            "streamType": "kinesis",
            "stream.kinesis.topic.name": "in-process",
            "region": "us-east-1",
            "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
            "realtime.segment.flush.threshold.segment.rows": "250"
        }},
        "metadata": {}
    })
}

fn schema() -> Value {
    json!({
        "schemaName": "events",
        "dimensionFieldSpecs": [{"name": "page", "dataType": "STRING"}],
        "metricFieldSpecs": [{"name": "ms", "dataType": "LONG"}],
        "dateTimeFieldSpecs": [{"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"}]
    })
}

/// Opens an engine in `dir` whose table `events` reads `messages`.
async fn open(
    dir: &std::path::Path,
    messages: mpsc::Receiver<Vec<u8>>,
) -> Result<shoal::Engine, shoal::Error> {
    let sources = ChannelSources { messages: Arc::new(Mutex::new(messages)) };
    let engine =
        shoal::Engine::open_with(dir, EngineOptions::default().with_sources(Arc::new(sources))).await?;
    if engine.tables().is_empty() {
        engine.create_table(&table_config(), &schema()).await?;
    }
    Ok(engine)
}

fn event(i: usize) -> Vec<u8> {
    format!(r#"{{"page":"/p{}","ms":{},"ts":{}}}"#, i % 4, i % 100, 1_764_460_800_000i64 + i as i64)
        .into_bytes()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (app, messages) = mpsc::channel(1024);
    let engine = open(dir.path(), messages).await?;
    for i in 0..1000 {
        app.send(event(i)).await?;
    }
    drop(app); // the end of the app's events: the table seals the rest
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let batches = engine
        .sql("SELECT page, count(*) AS views, sum(ms) AS ms FROM events GROUP BY page ORDER BY page")
        .await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    let status = engine.table_status("events")?;
    println!("{} sealed segments, {} rows sealed", status.segments.len(), status.sealed_rows);
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use std::time::Duration;

    fn int(b: &[arrow::array::RecordBatch], column: usize) -> i64 {
        let c = arrow::compute::cast(b[0].column(column), &arrow::datatypes::DataType::Int64).unwrap();
        c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
    }

    async fn count(engine: &shoal::Engine) -> i64 {
        let b = engine.sql("SELECT count(*), count(DISTINCT ts) FROM events").await.unwrap();
        assert_eq!(int(&b, 0), int(&b, 1), "no row twice");
        int(&b, 0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_apps_channel_feeds_the_table_through_seal_commit_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (app, messages) = mpsc::channel(1024);
        let engine = open(dir.path(), messages).await.unwrap();
        for i in 0..600 {
            app.send(event(i)).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while count(&engine).await < 600 {
            assert!(tokio::time::Instant::now() < deadline, "the rows arrive");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // 250 rows a segment: two sealed and committed, 100 consuming. Seals run in the
        // background, so the rows can all be queryable before the second seal is done.
        let sealed = || {
            let status = engine.table_status("events").unwrap();
            (status.sealed_rows, status.consuming_rows)
        };
        while sealed() != (500, 100) {
            assert!(tokio::time::Instant::now() < deadline, "two seals of 250 rows: {:?}", sealed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        engine.shutdown().await;
        drop(engine);

        // A restart: the channel cannot give the 100 unsealed rows again (the source's own
        // promise), and numbering goes on after the committed checkpoint.
        let (app, messages) = mpsc::channel(1024);
        let engine = open(dir.path(), messages).await.unwrap();
        for i in 600..700 {
            app.send(event(i)).await.unwrap();
        }
        drop(app);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while engine.table_status("events").unwrap().sealed_rows < 600 {
            assert!(tokio::time::Instant::now() < deadline, "the end seals the rest");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&engine).await, 600);
        let b =
            engine.sql("SELECT min(ts) - 1764460800000 FROM events WHERE ts >= 1764460800500").await.unwrap();
        assert_eq!(int(&b, 0), 600);
        engine.shutdown().await;
    }
}
