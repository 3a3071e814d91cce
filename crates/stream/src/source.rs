//! The source trait: what the engine reads records from. The Kinesis consumer implements it,
//! and so does an in-memory source for tests and benchmarks.
//!
//! A source hands out one [`ShardReader`] per shard as the shard becomes readable (after its
//! parents have ended). The engine consumes the reader's events; when the shard has ended and
//! the engine has committed that, it calls [`ShardReader::finished`], and the shard's children
//! become readable.

use crate::metrics::StreamMetrics;
use crate::record::{Checkpoint, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Where a table got to: checkpoints of the shards it has read part of, and the shards it has
/// read to their end.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// The last record consumed per shard.
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// Shards read to their end (and committed as such).
    pub ended: BTreeSet<String>,
    /// When the table was created, epoch ms. A shard without a checkpoint whose start is
    /// `LATEST` starts at this time (AT_TIMESTAMP) instead, on the first start and on every
    /// restart, so that nothing that arrived after the table was created is skipped, however
    /// often the process stops before the shard commits. None: `LATEST` as the service means it.
    pub created_ms: Option<i64>,
}

/// What a shard reader yields.
#[derive(Debug)]
pub enum ShardEvent {
    /// Records, in shard order, none before the checkpoint, none twice.
    Records {
        /// The records.
        records: Vec<Record>,
        /// MillisBehindLatest of the answer they came in.
        millis_behind_latest: Option<i64>,
    },
    /// The shard has been read to its end. Nothing follows.
    End {
        /// Its children (from ChildShards, when the service says).
        children: Vec<String>,
    },
}

/// Messages from readers to their source's coordinator.
#[derive(Debug)]
pub enum Control {
    /// The engine committed the end of this shard.
    Finished(String),
    /// The engine dropped this shard's reader (and every clone of its [`CommittedSlot`])
    /// before its end, having committed up to the checkpoint (if any): a reader handed out
    /// again for the shard resumes after it.
    Released(String, Option<Checkpoint>),
}

/// Where a reader keeps what the engine committed of its shard. A clone records it from
/// elsewhere (a seal committing on another thread) and keeps the reader's shard from being
/// handed out again: the shard goes back to its source, to resume after the checkpoint set
/// last, only when the reader and every clone of its slot are dropped.
#[derive(Debug, Clone)]
pub struct CommittedSlot(Arc<Slot>);

#[derive(Debug)]
struct Slot {
    shard_id: String,
    checkpoint: std::sync::Mutex<Option<Checkpoint>>,
    /// Taken when the shard's end is committed (nothing to hand back then).
    control: std::sync::Mutex<Option<mpsc::UnboundedSender<Control>>>,
}

impl CommittedSlot {
    /// Records that the engine committed the shard up to `checkpoint`.
    pub fn set(&self, checkpoint: Checkpoint) {
        *lock(&self.0.checkpoint) = Some(checkpoint);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(control) = lock(&self.control).take() {
            let committed = lock(&self.checkpoint).take();
            let _ = control.send(Control::Released(std::mem::take(&mut self.shard_id), committed));
        }
    }
}

/// One shard's records, in order.
pub struct ShardReader {
    /// The shard id.
    pub shard_id: String,
    /// The shard's parents, for the record.
    pub parents: Vec<String>,
    events: mpsc::Receiver<ShardEvent>,
    control: mpsc::UnboundedSender<Control>,
    committed: CommittedSlot,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader").field("shard_id", &self.shard_id).finish()
    }
}

impl ShardReader {
    /// A reader over `events` (for source implementations).
    pub fn new(
        shard_id: String,
        parents: Vec<String>,
        events: mpsc::Receiver<ShardEvent>,
        control: mpsc::UnboundedSender<Control>,
    ) -> ShardReader {
        let committed = CommittedSlot(Arc::new(Slot {
            shard_id: shard_id.clone(),
            checkpoint: std::sync::Mutex::new(None),
            control: std::sync::Mutex::new(Some(control.clone())),
        }));
        ShardReader { shard_id, parents, events, control, committed }
    }

    /// Tells the reader what the engine has committed of the shard, so that a reader handed
    /// out again after this one is dropped (a stop, a panic) resumes after it, not from where
    /// the source started.
    pub fn committed(&mut self, checkpoint: Checkpoint) {
        self.committed.set(checkpoint);
    }

    /// The reader's record of what the engine committed, for a commit made elsewhere (as
    /// [`ShardReader::committed`]); the shard is not handed out again while a clone lives.
    pub fn committed_slot(&self) -> CommittedSlot {
        self.committed.clone()
    }

    /// The next event; None when the source stopped.
    pub async fn next(&mut self) -> Option<ShardEvent> {
        self.events.recv().await
    }

    /// Tells the source that the shard's end is committed: its children may start.
    pub fn finished(self) {
        lock(&self.committed.0.control).take();
        let _ = self.control.send(Control::Finished(self.shard_id.clone()));
    }
}

/// A running source.
pub struct SourceHandle {
    /// Readers, one per shard as it becomes readable.
    pub readers: mpsc::Receiver<ShardReader>,
    /// The consumer's metrics.
    pub metrics: Arc<StreamMetrics>,
    shutdown: watch::Sender<bool>,
}

impl SourceHandle {
    /// A handle (for source implementations).
    pub fn new(
        readers: mpsc::Receiver<ShardReader>,
        metrics: Arc<StreamMetrics>,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        SourceHandle { readers, metrics, shutdown }
    }

    /// Stops every reader and the coordinator.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Something records can be read from: Kinesis ([`crate::KinesisSource`]), an in-memory stream
/// ([`crate::MemorySource`]), or a source of an app's own (the shoal crate's
/// `examples/channel_source.rs` feeds a table from an in-process channel).
///
/// The contract:
/// - `start` hands out one [`ShardReader`] per shard on [`SourceHandle::readers`], a child
///   shard only after its parents' readers were [`ShardReader::finished`] (none for a shard in
///   [`ResumeState::ended`]);
/// - each reader yields [`ShardEvent::Records`] in shard order, starting right after the
///   shard's checkpoint in [`ResumeState::checkpoints`] (from the shard's start without one),
///   none twice, with sequence numbers that grow; then, if the shard ends,
///   [`ShardEvent::End`];
/// - a reader dropped before its end sends [`Control::Released`] with what the engine
///   committed (once every clone of its [`CommittedSlot`] is dropped too), and a source hands
///   the shard out again from there;
/// - [`SourceHandle::stop`] (or dropping the handle) ends every reader.
///
/// Rows reach a table's segments when its ingest loop takes them, and are durable when their
/// segment commits; what was read but not committed is read again after a restart, from the
/// checkpoint. A source that cannot read again (a channel) loses those records at a crash.
pub trait Source: Send + 'static {
    /// Starts reading from where `resume` says, on the current tokio runtime.
    fn start(self: Box<Self>, resume: ResumeState) -> SourceHandle;

    /// Reads one shard again, from just after `after` (from its oldest retained record when
    /// None), on the current tokio runtime: for re-reading the rows of a segment that was lost.
    /// The handle yields that shard's reader only; it reads until the shard's end or until
    /// dropped, and needs no `finished()`. None when the source cannot read a shard again.
    fn replay(self: Box<Self>, shard: &str, after: Option<Checkpoint>) -> Option<SourceHandle> {
        let _ = (shard, after);
        None
    }
}

/// The handle of a replay: one reader, for `shard`, fed by `spawn_reader(events, shutdown)`.
pub(crate) fn replay_handle(
    shard: &str,
    metrics: Arc<StreamMetrics>,
    spawn_reader: impl FnOnce(mpsc::Sender<ShardEvent>, watch::Receiver<bool>),
) -> SourceHandle {
    let (events_tx, events_rx) = mpsc::channel(4);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    spawn_reader(events_tx, shutdown_rx);
    // Nobody coordinates a replay: what the reader says about its end goes nowhere.
    let (control_tx, _) = mpsc::unbounded_channel();
    let (readers_tx, readers_rx) = mpsc::channel(1);
    let reader = ShardReader::new(shard.to_string(), Vec::new(), events_rx, control_tx);
    readers_tx.try_send(reader).expect("an empty channel of one takes one reader");
    SourceHandle::new(readers_rx, metrics, shutdown_tx)
}
