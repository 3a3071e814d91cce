//! An in-memory stream and its source, with the same lineage rules as Kinesis: for unit tests
//! of the engine and for benchmarks that need more throughput than an emulator gives.

use crate::lineage::{Lineage, ShardInfo};
use crate::metrics::StreamMetrics;
use crate::record::{Checkpoint, Record};
use crate::sequence::SequenceNumber;
use crate::source::{Control, ResumeState, ShardEvent, ShardReader, Source, SourceHandle};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

struct MemoryShard {
    info: ShardInfo,
    records: Vec<Record>,
    closed: bool,
    /// Wakes the shard's reader: on new records and when the shard closes.
    notify: Arc<Notify>,
}

#[derive(Default)]
struct State {
    shards: BTreeMap<String, MemoryShard>,
    next_sequence: u64,
    next_shard: u64,
}

/// An in-memory stream: shards of records, which can be split and merged.
#[derive(Clone, Default)]
pub struct MemoryStream {
    state: Arc<Mutex<State>>,
    /// Wakes the source's coordinator when shards change.
    notify: Arc<Notify>,
}

impl MemoryStream {
    /// A stream with `shards` open shards.
    pub fn new(shards: usize) -> MemoryStream {
        let stream = MemoryStream::default();
        {
            let mut s = stream.lock();
            for _ in 0..shards {
                Self::add_shard(&mut s, None, None);
            }
        }
        stream
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_shard(s: &mut State, parent: Option<String>, adjacent: Option<String>) -> String {
        let id = format!("shardId-{:012}", s.next_shard);
        s.next_shard += 1;
        let info = ShardInfo {
            id: id.clone(),
            parent,
            adjacent_parent: adjacent,
            ending_sequence: None,
            hash_range: None,
        };
        s.shards.insert(
            id.clone(),
            MemoryShard { info, records: Vec::new(), closed: false, notify: Arc::new(Notify::new()) },
        );
        id
    }

    /// Open shard ids.
    pub fn open_shards(&self) -> Vec<String> {
        self.lock().shards.values().filter(|s| !s.closed).map(|s| s.info.id.clone()).collect()
    }

    /// Appends a record to `shard`; returns its sequence number.
    pub fn put(&self, shard: &str, partition_key: &str, data: impl Into<Bytes>) -> Option<SequenceNumber> {
        self.put_many(shard, [(partition_key, data.into())])
    }

    /// Appends records to `shard` under one lock, waking its reader once (what a producer at
    /// a high rate wants); returns the last sequence number, None when the shard is not open.
    pub fn put_many<'a>(
        &self,
        shard: &str,
        records: impl IntoIterator<Item = (&'a str, Bytes)>,
    ) -> Option<SequenceNumber> {
        let mut s = self.lock();
        let s = &mut *s;
        let shard = s.shards.get_mut(shard).filter(|sh| !sh.closed)?;
        let shard_id: Arc<str> = Arc::from(shard.info.id.as_str());
        let arrival_ms = crate::now_ms();
        let mut last = None;
        for (partition_key, data) in records {
            s.next_sequence += 1;
            let sequence = SequenceNumber::parse(&(1_000_000_000 + s.next_sequence).to_string())
                .expect("a decimal number is a sequence number");
            shard.records.push(Record {
                shard_id: Arc::clone(&shard_id),
                sequence_number: sequence.clone(),
                sub_sequence: None,
                arrival_ms,
                partition_key: partition_key.to_string(),
                data,
            });
            last = Some(sequence);
        }
        shard.notify.notify_waiters();
        last
    }

    /// Appends a record to the open shard that `partition_key` hashes to.
    pub fn put_by_key(&self, partition_key: &str, data: impl Into<Bytes>) -> SequenceNumber {
        let open = self.open_shards();
        let hash = partition_key
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        let shard = &open[(hash % open.len() as u64) as usize];
        self.put(shard, partition_key, data).expect("an open shard takes records")
    }

    fn close(s: &mut State, shard: &str) -> bool {
        let last = s.shards.get(shard).and_then(|sh| sh.records.last().map(|r| r.sequence_number.clone()));
        match s.shards.get_mut(shard) {
            Some(sh) if !sh.closed => {
                sh.closed = true;
                sh.notify.notify_waiters();
                sh.info.ending_sequence =
                    Some(last.unwrap_or_else(|| SequenceNumber::parse("0").expect("0 is a number")));
                true
            }
            _ => false,
        }
    }

    /// Closes `shard` and opens two children.
    pub fn split(&self, shard: &str) -> Option<(String, String)> {
        let mut s = self.lock();
        if !Self::close(&mut s, shard) {
            return None;
        }
        let a = Self::add_shard(&mut s, Some(shard.to_string()), None);
        let b = Self::add_shard(&mut s, Some(shard.to_string()), None);
        drop(s);
        self.notify.notify_waiters();
        Some((a, b))
    }

    /// Closes two shards and opens their merged child.
    pub fn merge(&self, shard: &str, adjacent: &str) -> Option<String> {
        let mut s = self.lock();
        if s.shards.get(shard).is_none_or(|x| x.closed) || s.shards.get(adjacent).is_none_or(|x| x.closed) {
            return None;
        }
        Self::close(&mut s, shard);
        Self::close(&mut s, adjacent);
        let c = Self::add_shard(&mut s, Some(shard.to_string()), Some(adjacent.to_string()));
        drop(s);
        self.notify.notify_waiters();
        Some(c)
    }

    /// A source reading this stream from TRIM_HORIZON (or its checkpoints).
    pub fn source(&self) -> MemorySource {
        MemorySource { stream: self.clone(), batch: 10_000 }
    }
}

/// A [`Source`] over a [`MemoryStream`].
pub struct MemorySource {
    stream: MemoryStream,
    batch: usize,
}

impl Source for MemorySource {
    fn start(self: Box<Self>, resume: ResumeState) -> SourceHandle {
        let (readers_tx, readers_rx) = mpsc::channel(64);
        let (shutdown_tx, mut shutdown) = watch::channel(false);
        let metrics = Arc::new(StreamMetrics::default());
        let task_metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut resume = resume;
            let mut lineage = Lineage::new(resume.ended.iter().cloned(), resume.checkpoints.keys().cloned());
            let (control_tx, mut control_rx) = mpsc::unbounded_channel();
            loop {
                let listing: Vec<ShardInfo> =
                    self.stream.lock().shards.values().map(|s| s.info.clone()).collect();
                lineage.update(listing);
                for (shard, _) in lineage.ready() {
                    let (tx, rx) = mpsc::channel(4);
                    let reader = MemoryReader {
                        stream: self.stream.clone(),
                        shard: shard.id.clone(),
                        last: resume.checkpoints.get(&shard.id).cloned(),
                        batch: self.batch,
                        events: tx,
                        shutdown: shutdown.clone(),
                        metrics: task_metrics.shard(&shard.id),
                    };
                    tokio::spawn(reader.run());
                    let parents = shard.parents().map(str::to_string).collect();
                    if readers_tx
                        .send(ShardReader::new(shard.id, parents, rx, control_tx.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = self.stream.notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    msg = control_rx.recv() => match msg {
                        Some(Control::Finished(s)) => lineage.finish(&s),
                        Some(Control::Released(s, committed)) => {
                            if let Some(c) = committed {
                                resume.checkpoints.insert(s.clone(), c);
                            }
                            lineage.release(&s);
                        }
                        None => return,
                    },
                }
            }
        });
        SourceHandle::new(readers_rx, metrics, shutdown_tx)
    }

    fn replay(self: Box<Self>, shard: &str, after: Option<Checkpoint>) -> Option<SourceHandle> {
        if !self.stream.lock().shards.contains_key(shard) {
            return None;
        }
        let metrics = Arc::new(StreamMetrics::default());
        let shard_metrics = metrics.shard(shard);
        Some(crate::source::replay_handle(shard, metrics, |events, shutdown| {
            let reader = MemoryReader {
                stream: self.stream.clone(),
                shard: shard.to_string(),
                last: after,
                batch: self.batch,
                events,
                shutdown,
                metrics: shard_metrics,
            };
            tokio::spawn(reader.run());
        }))
    }
}

struct MemoryReader {
    stream: MemoryStream,
    shard: String,
    last: Option<Checkpoint>,
    batch: usize,
    events: mpsc::Sender<ShardEvent>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::ShardMetrics>,
}

impl MemoryReader {
    async fn run(mut self) {
        let Some(notify) = self.stream.lock().shards.get(&self.shard).map(|s| Arc::clone(&s.notify)) else {
            return;
        };
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            // Created before the look, so that a put in between still wakes the wait below.
            let notified = notify.notified();
            let (records, closed, behind) = {
                let s = self.stream.lock();
                let Some(shard) = s.shards.get(&self.shard) else { return };
                let start = match &self.last {
                    None => 0,
                    Some(c) => shard.records.partition_point(|r| !c.is_before(r)),
                };
                let end = (start + self.batch).min(shard.records.len());
                let behind = shard.records.get(end).map(|r| crate::now_ms() - r.arrival_ms).unwrap_or(0);
                (shard.records[start..end].to_vec(), shard.closed && end == shard.records.len(), behind)
            };
            self.metrics.millis_behind_latest.store(behind, Ordering::Relaxed);
            self.metrics.last_fetch_ms.store(crate::now_ms(), Ordering::Relaxed);
            if let Some(r) = records.last() {
                self.last = Some(r.position());
                self.metrics.records.fetch_add(records.len() as u64, Ordering::Relaxed);
                if self
                    .events
                    .send(ShardEvent::Records { records, millis_behind_latest: Some(behind) })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            if closed {
                let _ = self.events.send(ShardEvent::End { children: Vec::new() }).await;
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = self.shutdown.changed() => return,
            }
        }
    }
}
