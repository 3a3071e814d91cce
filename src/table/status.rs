//! What a table tells its operators: per shard, per sealed segment, per quarantined segment.

use parking_lot::Mutex;
use shoal_segment::DropStats;
use std::collections::BTreeMap;

/// What a shard's ingestion is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardState {
    /// Reading records into its consuming segment.
    #[default]
    Consuming,
    /// Nothing is read: sealing fails (a full disk, say) and is retried until it succeeds, or
    /// an operator paused the table's consumption; `error` says which.
    Paused,
    /// Read to its end, and the end committed.
    Ended,
}

/// Where the rows of a quarantined segment are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineState {
    /// Not being read again yet (the source cannot, or the table stopped first); the manifest
    /// keeps the segment as lost and the next start tries again.
    Pending,
    /// Being read again from the stream.
    Rereading,
    /// Every row is back, in a new segment.
    Restored,
    /// The stream proved that some rows are gone (they expired before they were read again);
    /// the ones it still held are back.
    Partial,
}

/// Per-shard progress, for the status.
#[derive(Debug, Clone, Default)]
pub struct ShardStatus {
    /// Shard id.
    pub shard: String,
    /// What its ingestion is doing.
    pub state: ShardState,
    /// Why the shard is paused.
    pub error: Option<String>,
    /// The committed checkpoint (sequence number, `:sub` inside a KPL aggregate).
    pub checkpoint: Option<String>,
    /// MillisBehindLatest of the last answer.
    pub millis_behind_latest: Option<i64>,
    /// Rows in the shard's consuming segment.
    pub consuming_rows: u64,
    /// Rows ingested from the shard since the engine opened.
    pub rows_ingested: u64,
    /// Times its ingestion task panicked and was started again (from the last commit).
    pub restarts: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// The last record consumed (appended or dropped), committed or not: where the shard's
    /// reading stands (Pinot's current offset).
    pub consumed: Option<String>,
    /// When records were last appended, epoch ms (Pinot's `lastConsumedTimestamp`).
    pub last_consumed_ms: Option<i64>,
    /// How long after their arrival in the stream the last records were appended, ms
    /// (Pinot's availability lag).
    pub availability_lag_ms: Option<i64>,
    /// The stream's newest record in the shard, when the reader has caught up with it (its
    /// last answer was 0 ms behind); None when unknown.
    pub latest_upstream: Option<String>,
}

/// One sealed segment, for the status.
#[derive(Debug, Clone)]
pub struct SegmentStatus {
    /// Segment name.
    pub name: String,
    /// Shard.
    pub shard: String,
    /// Rows.
    pub rows: u64,
    /// Time range, epoch ms.
    pub time_range: Option<(i64, i64)>,
    /// True once its row data has been read and found intact (by the scrub or a query).
    pub verified: bool,
    /// The file's size in bytes (0 for a cold segment, which has no local file).
    pub bytes: u64,
    /// True once its Parquet copy is in the deep store.
    pub uploaded: bool,
    /// True when its only copy is in the deep store (the cold tier).
    pub cold: bool,
}

/// A segment whose file was refused, and what became of its rows.
#[derive(Debug, Clone)]
pub struct QuarantinedSegment {
    /// The refused file (now in the table's `quarantine/` directory).
    pub file: String,
    /// Shard.
    pub shard: String,
    /// Why it was refused.
    pub reason: String,
    /// Rows it held.
    pub rows: u64,
    /// Where its rows are.
    pub state: QuarantineState,
    /// Rows read again so far.
    pub rows_restored: u64,
}

/// A table's state for operators.
#[derive(Debug, Clone)]
pub struct TableStatus {
    /// Table name.
    pub table: String,
    /// Per shard.
    pub shards: Vec<ShardStatus>,
    /// Sealed segments.
    pub segments: Vec<SegmentStatus>,
    /// Rows in sealed segments.
    pub sealed_rows: u64,
    /// Rows in consuming segments.
    pub consuming_rows: u64,
    /// Dropped records by reason, with samples.
    pub dropped: DropStats,
    /// Rows the ingestion filter dropped (not errors).
    pub filtered: u64,
    /// Rows kept with defaults where a transform or conversion failed (`continueOnError`).
    pub incomplete: u64,
    /// True while an operator has paused the table's consumption.
    pub paused: bool,
    /// Segments refused (at open, by the scrub or by a query), and what became of their rows.
    pub quarantined: Vec<QuarantinedSegment>,
    /// An upsert or dedup table's key map and what it decided.
    pub upsert: Option<UpsertStatus>,
    /// The table's deep store, when the engine has one.
    pub deep_store: Option<DeepStoreStatus>,
}

/// A table's copy in the deep store: how far uploads have come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeepStoreStatus {
    /// The store's URL, without credentials.
    pub url: String,
    /// Sealed segments uploaded.
    pub uploaded_segments: u64,
    /// Sealed segments not uploaded yet (the upload lag).
    pub pending_segments: u64,
    /// Bytes of the local files not uploaded yet.
    pub pending_bytes: u64,
    /// Segments the deep-store manifest names (what a restore would find).
    pub manifest_segments: u64,
    /// Segments whose only copy is in the deep store.
    pub cold_segments: u64,
    /// Why the last attempt failed, while uploads fail (retried with backoff).
    pub error: Option<String>,
}

/// An upsert or dedup table's key map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertStatus {
    /// Primary keys in the map.
    pub keys: u64,
    /// Bytes the map holds.
    pub key_map_bytes: u64,
    /// Bytes the segments' validity bitmaps hold.
    pub bitmap_bytes: u64,
    /// Records dedup dropped (their key was in the table).
    pub deduplicated: u64,
    /// Versions older than their key's current one.
    pub out_of_order: u64,
    /// Of those, the ones dropped (`dropOutOfOrderRecord`).
    pub out_of_order_dropped: u64,
    /// Keys taken out of the map by a TTL.
    pub keys_expired: u64,
}

impl TableStatus {
    /// Whether at least one shard is consuming: the table has found its stream's shards and
    /// reads one. False while the stream is missing or its endpoint does not answer, and when
    /// every shard is paused or ended.
    pub fn is_consuming(&self) -> bool {
        self.shards.iter().any(|s| s.state == ShardState::Consuming)
    }

    /// Whether the table does what it was told: it consumes, or an operator paused it.
    pub fn is_ready(&self) -> bool {
        self.paused || self.is_consuming()
    }
}

/// The parts of the status that are not the committed state: shard progress, quarantined
/// segments' recovery, the deep store's uploads.
#[derive(Debug, Default)]
pub(crate) struct StatusBoard {
    shards: Mutex<BTreeMap<String, ShardStatus>>,
    quarantined: Mutex<Vec<QuarantinedSegment>>,
    /// Segments the last deep-store manifest written named, and the last upload error.
    pub(crate) deep: Mutex<(u64, Option<String>)>,
}

impl StatusBoard {
    pub(crate) fn update_shard(&self, shard: &str, change: impl FnOnce(&mut ShardStatus)) {
        let mut shards = self.shards.lock();
        let s = shards
            .entry(shard.to_string())
            .or_insert_with(|| ShardStatus { shard: shard.to_string(), ..ShardStatus::default() });
        change(s);
    }

    pub(crate) fn shards(&self) -> BTreeMap<String, ShardStatus> {
        self.shards.lock().clone()
    }

    /// Adds a quarantined segment (once).
    pub(crate) fn quarantined(&self, segment: QuarantinedSegment) {
        let mut all = self.quarantined.lock();
        if !all.iter().any(|q| q.file == segment.file) {
            all.push(segment);
        }
    }

    pub(crate) fn set_quarantine_state(&self, file: &str, state: QuarantineState, rows_restored: u64) {
        if let Some(q) = self.quarantined.lock().iter_mut().find(|q| q.file == file) {
            q.state = state;
            q.rows_restored = rows_restored;
        }
    }

    pub(crate) fn quarantine_list(&self) -> Vec<QuarantinedSegment> {
        self.quarantined.lock().clone()
    }
}
