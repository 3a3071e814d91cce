//! The Kinesis source: lists shards (following NextToken), orders them by lineage, runs one
//! reader per readable shard, and lists again periodically and as soon as a shard ends.

use crate::client::kinesis_client;
use crate::config::{KinesisConfig, StartPosition};
use crate::kpl::HashKeyRange;
use crate::lineage::{Lineage, LineageEvent, ShardInfo, StartKind};
use crate::metrics::StreamMetrics;
use crate::reader::{ReadSettings, ShardTask, StartAt};
use crate::record::Checkpoint;
use crate::sequence::SequenceNumber;
use crate::source::{Control, ResumeState, ShardEvent, ShardReader, Source, SourceHandle};
use aws_sdk_kinesis::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events buffered per shard: a reader stops fetching while the engine is this far behind.
const EVENTS_PER_SHARD: usize = 4;

/// Reads a Kinesis stream.
pub struct KinesisSource {
    config: KinesisConfig,
    client: Client,
}

impl KinesisSource {
    /// A source for `config`, with its own client.
    pub async fn connect(config: KinesisConfig) -> KinesisSource {
        let client = kinesis_client(&config).await;
        KinesisSource { config, client }
    }

    /// A source for `config` over an existing client.
    pub fn with_client(config: KinesisConfig, client: Client) -> KinesisSource {
        KinesisSource { config, client }
    }
}

impl Source for KinesisSource {
    fn start(self: Box<Self>, resume: ResumeState) -> SourceHandle {
        let (readers_tx, readers_rx) = mpsc::channel(64);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(StreamMetrics::default());
        let coordinator = Coordinator {
            config: self.config,
            client: self.client,
            lineage: Lineage::new(resume.ended.iter().cloned(), resume.checkpoints.keys().cloned()),
            resume,
            readers: readers_tx,
            metrics: Arc::clone(&metrics),
            shutdown: shutdown_rx,
            endings: BTreeMap::new(),
        };
        tokio::spawn(coordinator.run());
        SourceHandle::new(readers_rx, metrics, shutdown_tx)
    }

    fn replay(self: Box<Self>, shard: &str, after: Option<Checkpoint>) -> Option<SourceHandle> {
        let metrics = Arc::new(StreamMetrics::default());
        let shard_metrics = metrics.shard(shard);
        let start = match after {
            Some(c) => StartAt::After(c),
            None => StartAt::TrimHorizon,
        };
        tracing::info!(stream = %self.config.stream_name, shard, ?start, "reading a shard again");
        let id = shard.to_string();
        let shard: Arc<str> = Arc::from(shard);
        Some(crate::source::replay_handle(&id, metrics, move |events, mut shutdown| {
            tokio::spawn(async move {
                // The shard's hash key range first, so that KPL records are kept or dropped as
                // when they were first read.
                let listed = loop {
                    match list_shards(&self.client, &self.config.stream_name).await {
                        Ok(listing) => break listing.into_iter().find(|s| *s.id == *shard),
                        Err(e) => {
                            tracing::warn!(stream = %self.config.stream_name, error = %e, "ListShards failed; retrying before the re-read");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                };
                // A shard no longer listed has expired with all its records: it has ended.
                let Some(listed) = listed else {
                    tracing::warn!(stream = %self.config.stream_name, shard = %shard, "the shard is no longer listed: its records expired");
                    let _ = events.send(ShardEvent::End { children: Vec::new() }).await;
                    return;
                };
                let hash_range = listed.hash_range;
                // The end is taken from a null iterator or ChildShards; a data loss (the
                // records expired) is logged by the reader, which reads on from the oldest.
                let (_ending_tx, ending) = watch::channel(None);
                let (data_loss, _) = mpsc::unbounded_channel();
                let task = ShardTask {
                    client: self.client.clone(),
                    stream: self.config.stream_name.clone(),
                    shard,
                    start,
                    settings: ReadSettings {
                        limit: self.config.max_records_to_fetch,
                        min_interval: Duration::from_secs_f64(1.0 / self.config.requests_per_second),
                        fetch_timeout: self.config.fetch_timeout,
                    },
                    hash_range,
                    ending,
                    events,
                    metrics: shard_metrics,
                    shutdown,
                    data_loss,
                };
                task.run().await;
            });
        }))
    }
}

struct Coordinator {
    config: KinesisConfig,
    client: Client,
    lineage: Lineage,
    resume: ResumeState,
    readers: mpsc::Sender<ShardReader>,
    metrics: Arc<StreamMetrics>,
    shutdown: watch::Receiver<bool>,
    endings: BTreeMap<String, watch::Sender<Option<SequenceNumber>>>,
}

impl Coordinator {
    async fn run(mut self) {
        let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
        let (loss_tx, mut loss_rx) = mpsc::unbounded_channel::<String>();
        let mut failures = 0u32;
        loop {
            match list_shards(&self.client, &self.config.stream_name).await {
                Ok(listing) => {
                    failures = 0;
                    for event in self.lineage.update(listing) {
                        let LineageEvent::DataLoss { shard } = event;
                        self.report_loss(&shard);
                    }
                    for id in self.lineage.running().cloned().collect::<Vec<_>>() {
                        if let (Some(tx), Some(info)) = (self.endings.get(&id), self.lineage.shard(&id)) {
                            tx.send_if_modified(|e| {
                                let changed = *e != info.ending_sequence;
                                *e = info.ending_sequence.clone();
                                changed
                            });
                        }
                    }
                    for (shard, kind) in self.lineage.ready() {
                        let reader = self.spawn_reader(shard, kind, &control_tx, &loss_tx);
                        if self.readers.send(reader).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(stream = %self.config.stream_name, error = %e, "ListShards failed; retrying");
                }
            }
            let wait = if failures > 0 {
                Duration::from_millis(200 * u64::from(failures.min(50)))
            } else {
                self.config.shard_discovery_interval
            };
            let deadline = tokio::time::Instant::now() + wait;
            // Wait for the next listing, handling messages; a finished shard lists at once.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.shutdown.changed() => return,
                    Some(shard) = loss_rx.recv() => self.report_loss(&shard),
                    msg = control_rx.recv() => match msg {
                        Some(Control::Finished(shard)) => {
                            self.lineage.finish(&shard);
                            self.endings.remove(&shard);
                            break;
                        }
                        Some(Control::Released(shard, committed)) => {
                            // Handed out again at once, after what the engine committed.
                            if let Some(c) = committed {
                                self.resume.checkpoints.insert(shard.clone(), c);
                            }
                            self.lineage.release(&shard);
                            self.endings.remove(&shard);
                            break;
                        }
                        None => return,
                    },
                }
            }
            if *self.shutdown.borrow() || self.readers.is_closed() {
                return;
            }
        }
    }

    fn report_loss(&self, shard: &str) {
        self.metrics.data_loss_events.fetch_add(1, Ordering::Relaxed);
        tracing::error!(stream = %self.config.stream_name, shard,
            "data loss: records of this shard expired from the stream before they were read");
    }

    fn start_for(&self, shard: &ShardInfo, kind: StartKind) -> StartAt {
        if let Some(c) = self.resume.checkpoints.get(&shard.id) {
            return StartAt::After(c.clone());
        }
        if kind == StartKind::FirstRecord {
            // A child of a shard the table read starts at its first record; with a start in
            // time (LATEST pinned to the creation, a timestamp, a period), at that time: the
            // same for every record made after it, and the same whether a restart sees the
            // parent as read or not.
            return self.start_time().map_or(StartAt::TrimHorizon, StartAt::AtTimestamp);
        }
        match &self.config.start {
            // LATEST means "what arrives after the table was created": pinned to that moment,
            // so that a restart before the shard's first commit skips nothing.
            StartPosition::Latest => match self.resume.created_ms {
                Some(created) => StartAt::AtTimestamp(created),
                None => StartAt::Latest,
            },
            StartPosition::TrimHorizon => StartAt::TrimHorizon,
            StartPosition::AtTimestamp { millis } => StartAt::AtTimestamp(*millis),
            StartPosition::AtSequenceNumber { shards } => {
                shards.get(&shard.id).map(|s| StartAt::AtSequence(s.clone())).unwrap_or(StartAt::TrimHorizon)
            }
            StartPosition::AfterSequenceNumber { shards } => shards
                .get(&shard.id)
                .map(|s| {
                    StartAt::After(crate::record::Checkpoint { sequence: s.clone(), sub_sequence: None })
                })
                .unwrap_or(StartAt::TrimHorizon),
            // A period before the table's creation (Pinot's PERIOD offset criteria), fixed at
            // creation so that a restart does not move it; with no creation time, before now.
            StartPosition::Period { millis } => {
                StartAt::AtTimestamp(self.resume.created_ms.unwrap_or_else(crate::now_ms) - millis)
            }
        }
    }

    /// The configured start as a time, when it is one (LATEST only once pinned).
    fn start_time(&self) -> Option<i64> {
        match &self.config.start {
            StartPosition::Latest => self.resume.created_ms,
            StartPosition::AtTimestamp { millis } => Some(*millis),
            StartPosition::Period { millis } => {
                Some(self.resume.created_ms.unwrap_or_else(crate::now_ms) - millis)
            }
            _ => None,
        }
    }

    fn spawn_reader(
        &mut self,
        shard: ShardInfo,
        kind: StartKind,
        control: &mpsc::UnboundedSender<Control>,
        loss: &mpsc::UnboundedSender<String>,
    ) -> ShardReader {
        let start = self.start_for(&shard, kind);
        tracing::info!(stream = %self.config.stream_name, shard = %shard.id, ?start, "starting shard reader");
        let (events_tx, events_rx) = mpsc::channel(EVENTS_PER_SHARD);
        let (ending_tx, ending_rx) = watch::channel(shard.ending_sequence.clone());
        self.endings.insert(shard.id.clone(), ending_tx);
        let interval = Duration::from_secs_f64(1.0 / self.config.requests_per_second);
        let task = ShardTask {
            client: self.client.clone(),
            stream: self.config.stream_name.clone(),
            shard: Arc::from(shard.id.as_str()),
            start,
            settings: ReadSettings {
                limit: self.config.max_records_to_fetch,
                min_interval: interval,
                fetch_timeout: self.config.fetch_timeout,
            },
            hash_range: shard.hash_range,
            ending: ending_rx,
            events: events_tx,
            metrics: self.metrics.shard(&shard.id),
            shutdown: self.shutdown.clone(),
            data_loss: loss.clone(),
        };
        tokio::spawn(task.run());
        let parents = shard.parents().map(str::to_string).collect();
        ShardReader::new(shard.id, parents, events_rx, control.clone())
    }
}

/// Lists every shard of a stream, following NextToken.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // NextToken cannot be sent together with StreamName.
        let request = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = request.send().await.map_err(|e| {
            use aws_sdk_kinesis::error::ProvideErrorMetadata;
            match e.as_service_error() {
                Some(s) => format!("{}: {}", s.code().unwrap_or("error"), s.message().unwrap_or("")),
                None => e.to_string(),
            }
        })?;
        for s in out.shards() {
            shards.push(ShardInfo {
                id: s.shard_id().to_string(),
                parent: s.parent_shard_id().map(str::to_string),
                adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                ending_sequence: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .and_then(SequenceNumber::parse),
                hash_range: s.hash_key_range().and_then(|r| {
                    HashKeyRange::parse(r.starting_hash_key(), r.ending_hash_key())
                        .map_err(|e| tracing::warn!(shard = s.shard_id(), error = %e, "unreadable hash key range; KPL records are not checked against it"))
                        .ok()
                }),
            });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(shards),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(start: StartPosition, resume: ResumeState) -> Coordinator {
        let config = KinesisConfig {
            stream_name: "s".into(),
            region: "us-east-1".into(),
            endpoint: None,
            credentials: None,
            assume_role: None,
            start,
            max_records_to_fetch: 100,
            requests_per_second: 1.0,
            fetch_timeout: Duration::from_secs(1),
            shard_discovery_interval: Duration::from_secs(1),
        };
        Coordinator {
            client: crate::local_client("http://127.0.0.1:9"),
            config,
            lineage: Lineage::default(),
            resume,
            readers: mpsc::channel(1).0,
            metrics: Arc::new(StreamMetrics::default()),
            shutdown: watch::channel(false).1,
            endings: BTreeMap::new(),
        }
    }

    fn shard(id: &str) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parent: None,
            adjacent_parent: None,
            ending_sequence: None,
            hash_range: None,
        }
    }

    #[tokio::test]
    async fn latest_and_periods_are_pinned_to_the_tables_creation() {
        let created = ResumeState { created_ms: Some(1_000_000), ..ResumeState::default() };
        let c = coordinator(StartPosition::Latest, created.clone());
        assert_eq!(c.start_for(&shard("a"), StartKind::Configured), StartAt::AtTimestamp(1_000_000));
        // A child takes the same time: a restart that sees its parent as read changes nothing.
        assert_eq!(c.start_for(&shard("a"), StartKind::FirstRecord), StartAt::AtTimestamp(1_000_000));
        let c = coordinator(StartPosition::TrimHorizon, created.clone());
        assert_eq!(c.start_for(&shard("a"), StartKind::FirstRecord), StartAt::TrimHorizon);
        let c = coordinator(StartPosition::Period { millis: 60_000 }, created.clone());
        assert_eq!(c.start_for(&shard("a"), StartKind::Configured), StartAt::AtTimestamp(940_000));
        // A checkpoint wins over any start.
        let mut resumed = created;
        let at = Checkpoint { sequence: SequenceNumber::parse("42").unwrap(), sub_sequence: None };
        resumed.checkpoints.insert("a".into(), at.clone());
        let c = coordinator(StartPosition::Latest, resumed);
        assert_eq!(c.start_for(&shard("a"), StartKind::Configured), StartAt::After(at));
        // Without a creation time (a source used on its own), LATEST is the service's.
        let c = coordinator(StartPosition::Latest, ResumeState::default());
        assert_eq!(c.start_for(&shard("a"), StartKind::Configured), StartAt::Latest);
    }
}
