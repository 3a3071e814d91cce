//! The consuming segment: frozen Arrow record batches plus one small active builder.
//!
//! One ingestion task appends; any number of queries take snapshots. A snapshot clones the
//! frozen batches' Arcs and copies only the active tail (at most [`BATCH_ROWS`] rows), under a
//! lock that the writer takes once per chunk of records, so a snapshot always sees whole rows,
//! a prefix of what was appended.

use crate::builder::ColumnBuilder;
use crate::columns::TableLayout;
use crate::decode::{Decoder, DropReason, DropStats, Dropped, RecordMeta};
use crate::stats::{ColumnStats, merge_all};
use crate::threshold::{FlushLimit, FlushThresholds};
use crate::transform::{RowResult, ValueTransform};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Rows of one frozen batch.
pub const BATCH_ROWS: usize = 8192;
/// Records decoded per lock acquisition, which bounds how long a snapshot can wait.
const CHUNK: usize = 1024;

/// Why a consuming segment should seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealReason {
    /// The row limit is reached.
    Rows,
    /// The estimated sealed size is reached.
    Size,
    /// The time limit has passed.
    Time,
}

/// Counts from one append call.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    /// Rows added.
    pub rows: usize,
    /// Records dropped.
    pub dropped: usize,
    /// Bytes of the records offered.
    pub bytes: usize,
    /// The records this call dropped, by reason.
    pub drops: DropStats,
    /// Records the table's filter dropped (not errors: Pinot's `REALTIME_ROWS_FILTERED`).
    pub filtered: usize,
    /// Rows kept with defaults in place of values that failed (`continueOnError`; Pinot's
    /// `INCOMPLETE_REALTIME_ROWS_CONSUMED`).
    pub incomplete: usize,
}

struct Inner {
    /// Records the filter dropped.
    filtered: u64,
    decoder: Decoder,
    builders: Vec<ColumnBuilder>,
    frozen: Vec<RecordBatch>,
    frozen_stats: Vec<ColumnStats>,
    /// Per frozen batch, its own statistics.
    frozen_batch_stats: Vec<Arc<[ColumnStats]>>,
    frozen_rows: usize,
    frozen_bytes: usize,
    /// Whole batches appended by [`MutableSegment::append_decoded`] since the last freeze,
    /// after the builders' rows (a table uses one way of appending or the other).
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    active_rows: usize,
    active_record_bytes: usize,
    time_range: Option<(i64, i64)>,
    drops: DropStats,
    first_sequence: Option<String>,
    last_sequence: Option<String>,
    last_append_ms: Option<i64>,
}

/// A mutable, consuming segment.
pub struct MutableSegment {
    layout: Arc<TableLayout>,
    created: Instant,
    created_ms: i64,
    /// Reads chunks for the value transforms outside `inner`'s lock.
    parser: Mutex<Decoder>,
    inner: Mutex<Inner>,
}

/// What a query reads of a consuming segment at one moment.
#[derive(Debug, Clone)]
pub struct SegmentSnapshot {
    /// The rows, as record batches (frozen ones shared, the tail copied).
    pub batches: Vec<RecordBatch>,
    /// Row count.
    pub rows: usize,
    /// Per-column statistics, in layout order.
    pub stats: Vec<ColumnStats>,
    /// Per batch of `batches`, its per-column statistics (empty when not known), for pruning
    /// inside the segment.
    pub batch_stats: Vec<Arc<[ColumnStats]>>,
    /// Smallest and largest time column value (epoch ms).
    pub time_range: Option<(i64, i64)>,
    /// Sequence number of the first record offered.
    pub first_sequence: Option<String>,
    /// Sequence number of the last record offered.
    pub last_sequence: Option<String>,
    /// When the last record arrived, epoch ms.
    pub last_append_ms: Option<i64>,
}

/// Rows decoded by [`MutableSegment::decode`] and not appended yet.
#[derive(Debug)]
pub struct Decoded {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What decoding counted (rows, drops, filtered, bytes).
    pub outcome: AppendOutcome,
    /// Smallest and largest time of the rows (epoch ms).
    pub time_range: Option<(i64, i64)>,
    /// Sequence number of the first record offered.
    pub first_sequence: Option<String>,
    /// Sequence number of the last record offered.
    pub last_sequence: Option<String>,
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl std::fmt::Debug for MutableSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableSegment").field("rows", &self.rows()).finish()
    }
}

impl MutableSegment {
    /// An empty consuming segment of `layout`.
    pub fn new(layout: Arc<TableLayout>) -> MutableSegment {
        let builders = layout.columns.iter().map(|c| ColumnBuilder::new(c, BATCH_ROWS)).collect();
        MutableSegment {
            created: Instant::now(),
            created_ms: now_ms(),
            parser: Mutex::new(Decoder::new(Arc::clone(&layout))),
            inner: Mutex::new(Inner {
                decoder: Decoder::new(Arc::clone(&layout)),
                builders,
                frozen: Vec::new(),
                frozen_stats: Vec::new(),
                frozen_batch_stats: Vec::new(),
                frozen_rows: 0,
                frozen_bytes: 0,
                pending: Vec::new(),
                pending_rows: 0,
                active_rows: 0,
                active_record_bytes: 0,
                time_range: None,
                drops: DropStats::default(),
                filtered: 0,
                first_sequence: None,
                last_sequence: None,
                last_append_ms: None,
            }),
            layout,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<TableLayout> {
        &self.layout
    }

    /// When the segment started consuming, epoch ms.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a torn row (rows are appended only after
        // every column converted), so the data is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decodes and appends records, through the table's transforms when it has them (each
    /// record's rows are appended together, under one lock). Bad records are counted by
    /// reason and skipped; records the filter drops are counted apart.
    pub fn append<'a, I>(&self, records: I) -> AppendOutcome
    where
        I: IntoIterator<Item = (&'a [u8], RecordMeta<'a>)>,
    {
        let mut outcome = AppendOutcome::default();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<(&[u8], RecordMeta<'_>)> = records.by_ref().take(CHUNK).collect();
            if let Some(values) = self.layout.transform.as_ref().and_then(|t| t.values()) {
                self.append_values(values, &chunk, &mut outcome);
                continue;
            }
            // Transforms run outside the lock: snapshots do not wait for them.
            let transformed = self.layout.transform.as_ref().map(|t| t.apply(&chunk));
            let mut guard = self.lock();
            let inner = &mut *guard;
            inner.start_chunk(&chunk, &mut outcome);
            match transformed {
                None => {
                    for (bytes, meta) in &chunk {
                        inner.decode_row(&self.layout, bytes, bytes, meta, &mut outcome);
                    }
                }
                Some(t) => {
                    outcome.filtered += t.filtered;
                    inner.filtered += t.filtered as u64;
                    for (record, dropped) in &t.failed {
                        outcome.dropped += 1;
                        inner.drops.record(dropped, chunk[*record].0);
                        outcome.drops.record(dropped, chunk[*record].0);
                    }
                    // A record's rows are appended all or none: when it makes more than one, each
                    // is checked before any is appended.
                    let mut start = 0;
                    while start < t.rows.len() {
                        let record = t.rows[start].record;
                        let end = start + t.rows[start..].iter().take_while(|r| r.record == record).count();
                        let (original, meta) = &chunk[record];
                        let rows = &t.rows[start..end];
                        let bad = if rows.len() > 1 {
                            rows.iter().find_map(|r| {
                                inner.decoder.check(r.json.as_deref().unwrap_or(original), meta).err()
                            })
                        } else {
                            None
                        };
                        match bad {
                            Some(dropped) => {
                                outcome.dropped += 1;
                                inner.drops.record(&dropped, original);
                                outcome.drops.record(&dropped, original);
                            }
                            None => {
                                for row in rows {
                                    let bytes = row.json.as_deref().unwrap_or(original);
                                    let (rows_before, incomplete_before) = (outcome.rows, outcome.incomplete);
                                    inner.decode_row(&self.layout, bytes, original, meta, &mut outcome);
                                    // Counted once, whether the transforms or the decoder kept it.
                                    let appended = outcome.rows > rows_before;
                                    if row.incomplete && appended && outcome.incomplete == incomplete_before {
                                        outcome.incomplete += 1;
                                    }
                                }
                            }
                        }
                        start = end;
                    }
                }
            }
            inner.finish_chunk(&chunk, &outcome);
        }
        outcome
    }

    /// Appends a chunk through value transforms: each record read once (columns and the
    /// fields the transforms need), the transforms computed over the whole chunk, and each
    /// row appended with their values, all outside the lock but the appending.
    fn append_values(
        &self,
        values: &dyn ValueTransform,
        chunk: &[(&[u8], RecordMeta<'_>)],
        outcome: &mut AppendOutcome,
    ) {
        let mut parsed = self.parser.lock().unwrap_or_else(|p| p.into_inner()).parse_chunk(chunk);
        let computed = values.apply(&parsed);
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.start_chunk(chunk, outcome);
        let mut writes = computed.writes.as_slice();
        for (row, (original, meta)) in chunk.iter().enumerate() {
            let end = writes.iter().take_while(|w| w.row == row).count();
            let (mine, rest) = writes.split_at(end);
            writes = rest;
            let result = match parsed.dropped(row) {
                Some(dropped) => Err(dropped.clone()),
                None => match &computed.rows[row] {
                    RowResult::Filtered => {
                        outcome.filtered += 1;
                        inner.filtered += 1;
                        continue;
                    }
                    RowResult::Failed(message) => {
                        Err(Dropped { reason: DropReason::TransformFailed, message: message.clone() })
                    }
                    RowResult::Keep { incomplete } => inner
                        .decoder
                        .append_parsed(&mut parsed, row, mine, &computed.arrays, meta, &mut inner.builders)
                        .map(|time| (time, *incomplete || inner.decoder.last_was_incomplete())),
                },
            };
            match result {
                Ok((time, incomplete)) => {
                    outcome.incomplete += usize::from(incomplete);
                    inner.appended(&self.layout, original.len(), time, outcome);
                }
                Err(dropped) => {
                    outcome.dropped += 1;
                    inner.drops.record(&dropped, original);
                    outcome.drops.record(&dropped, original);
                }
            }
        }
        inner.finish_chunk(chunk, outcome);
    }

    /// A consistent view of the rows appended so far.
    pub fn snapshot(&self) -> SegmentSnapshot {
        let inner = self.lock();
        let mut batches = inner.frozen.clone();
        let mut stats = inner.frozen_stats.clone();
        let mut batch_stats = inner.frozen_batch_stats.clone();
        let mut before = inner.frozen_rows;
        for tail in &inner.pending {
            let tail_stats: Vec<ColumnStats> = tail.columns().iter().map(ColumnStats::of).collect();
            merge_all(&mut stats, &tail_stats, before);
            before += tail.num_rows();
            batches.push(tail.clone());
            batch_stats.push(tail_stats.into());
        }
        if inner.active_rows > 0 {
            let columns: Vec<ArrayRef> = inner.builders.iter().map(|b| b.finish_cloned()).collect();
            let tail = batch(&self.layout, columns);
            let tail_stats: Vec<ColumnStats> = tail.columns().iter().map(ColumnStats::of).collect();
            merge_all(&mut stats, &tail_stats, before);
            batches.push(tail);
            batch_stats.push(tail_stats.into());
        }
        SegmentSnapshot {
            batches,
            rows: inner.rows(),
            stats,
            batch_stats,
            time_range: inner.time_range,
            first_sequence: inner.first_sequence.clone(),
            last_sequence: inner.last_sequence.clone(),
            last_append_ms: inner.last_append_ms,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.lock().rows()
    }

    /// Decodes records as [`MutableSegment::append`] does, without appending them: the rows
    /// come back as the decoder's batches, to be looked at (a primary key's table decides which
    /// rows stay) and appended with [`MutableSegment::append_decoded`] or
    /// [`MutableSegment::append_batch`].
    pub fn decode<'a, I>(&self, records: I) -> Decoded
    where
        I: IntoIterator<Item = (&'a [u8], RecordMeta<'a>)>,
    {
        let scratch = MutableSegment::new(Arc::clone(&self.layout));
        let outcome = scratch.append(records);
        let mut inner = scratch.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        if inner.active_rows > 0 {
            inner.freeze(&self.layout);
        }
        Decoded {
            batches: std::mem::take(&mut inner.frozen),
            outcome,
            time_range: inner.time_range,
            first_sequence: inner.first_sequence,
            last_sequence: inner.last_sequence,
        }
    }

    /// Appends rows [`MutableSegment::decode`] made (`batches`, which may be fewer rows than
    /// `decoded.batches` or changed values of them), with its counts of drops and filtered
    /// records. A large batch is kept as it is; small ones are gathered first.
    pub fn append_decoded(&self, decoded: &Decoded, batches: Vec<RecordBatch>) {
        self.note_decoded(decoded, batches.iter().any(|b| b.num_rows() > 0));
        for batch in batches {
            self.append_batch(batch);
        }
    }

    /// Counts what decoding `decoded` found (drops, filtered records, sequence numbers; its
    /// time range and bytes when `appended`, some of its rows were appended).
    pub fn note_decoded(&self, decoded: &Decoded, appended: bool) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.drops.merge(&decoded.outcome.drops);
        inner.filtered += decoded.outcome.filtered as u64;
        if inner.first_sequence.is_none() {
            inner.first_sequence.clone_from(&decoded.first_sequence);
        }
        if decoded.last_sequence.is_some() {
            inner.last_sequence.clone_from(&decoded.last_sequence);
        }
        if !appended {
            return;
        }
        if let Some((lo, hi)) = decoded.time_range {
            inner.time_range = Some(match inner.time_range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        inner.active_record_bytes += decoded.outcome.bytes;
        inner.last_append_ms = Some(now_ms());
    }

    /// Widens the segment's time range (epoch ms) to hold `range`: for rows appended as
    /// batches ([`MutableSegment::append_batch`]) whose times are known.
    pub fn widen_time_range(&self, range: Option<(i64, i64)>) {
        let Some((lo, hi)) = range else { return };
        let mut inner = self.lock();
        inner.time_range = Some(match inner.time_range {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }

    /// Appends a batch of decoded rows: kept as it is when large, gathered with the next ones
    /// when small.
    pub fn append_batch(&self, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.active_rows > 0 {
            inner.freeze(&self.layout);
        }
        if inner.pending.is_empty() && batch.num_rows() >= BATCH_ROWS / 2 {
            inner.push_frozen(batch);
            return;
        }
        inner.pending_rows += batch.num_rows();
        inner.pending.push(batch);
        if inner.pending_rows >= BATCH_ROWS {
            inner.freeze(&self.layout);
        }
    }

    /// Row `row` as a batch of one row, if it exists.
    pub fn row(&self, row: usize) -> Option<RecordBatch> {
        let inner = self.lock();
        let batches = inner.frozen.iter().chain(&inner.pending);
        if let Some(found) = row_of(batches.clone(), row) {
            return Some(found);
        }
        let start: usize = batches.map(RecordBatch::num_rows).sum();
        if row < start + inner.active_rows {
            let columns: Vec<ArrayRef> = inner.builders.iter().map(|b| b.finish_cloned()).collect();
            return Some(batch(&self.layout, columns).slice(row - start, 1));
        }
        None
    }

    /// Dropped records so far, by reason.
    pub fn drops(&self) -> DropStats {
        self.lock().drops.clone()
    }

    /// Records the table's filter dropped so far.
    pub fn filtered(&self) -> u64 {
        self.lock().filtered
    }

    /// Estimated bytes of the sealed file: the frozen batches' exact data bytes plus the tail
    /// at the frozen batches' bytes per row (or half its JSON bytes before anything froze).
    pub fn estimated_bytes(&self) -> usize {
        let inner = self.lock();
        let tail = ((inner.active_rows + inner.pending_rows) * inner.frozen_bytes)
            .checked_div(inner.frozen_rows)
            .unwrap_or(inner.active_record_bytes / 2);
        inner.frozen_bytes + tail
    }

    /// Whether a flush threshold is reached, for a table consuming `shards` shards.
    pub fn should_seal(&self, thresholds: &FlushThresholds, shards: usize) -> Option<SealReason> {
        let rows = self.rows();
        if rows == 0 {
            return None;
        }
        if let Some(limit) = thresholds.rows_per_segment(shards)
            && rows as u64 >= limit
        {
            return Some(SealReason::Rows);
        }
        if let FlushLimit::SegmentSize(target) = thresholds.limit
            && self.estimated_bytes() as u64 >= target
        {
            return Some(SealReason::Size);
        }
        if self.age() >= thresholds.time {
            return Some(SealReason::Time);
        }
        None
    }

    /// How long the segment has been consuming.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

impl Inner {
    fn rows(&self) -> usize {
        self.frozen_rows + self.pending_rows + self.active_rows
    }

    /// Decodes one row (`bytes`, made from the record `original`) and appends it.
    fn decode_row(
        &mut self,
        layout: &TableLayout,
        bytes: &[u8],
        original: &[u8],
        meta: &RecordMeta<'_>,
        outcome: &mut AppendOutcome,
    ) {
        match self.decoder.decode(bytes, meta, &mut self.builders) {
            Ok(time) => {
                if self.decoder.last_was_incomplete() {
                    outcome.incomplete += 1;
                }
                self.appended(layout, bytes.len(), time, outcome);
            }
            Err(dropped) => {
                outcome.dropped += 1;
                self.drops.record(&dropped, original);
                outcome.drops.record(&dropped, original);
            }
        }
    }

    /// Counts a row just appended.
    fn appended(
        &mut self,
        layout: &TableLayout,
        bytes: usize,
        time: Option<i64>,
        outcome: &mut AppendOutcome,
    ) {
        outcome.rows += 1;
        self.active_rows += 1;
        self.active_record_bytes += bytes;
        if let Some(t) = time {
            self.time_range = Some(match self.time_range {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
        if self.active_rows >= BATCH_ROWS {
            self.freeze(layout);
        }
    }

    /// Notes a chunk's records before its rows are appended.
    fn start_chunk(&mut self, chunk: &[(&[u8], RecordMeta<'_>)], outcome: &mut AppendOutcome) {
        for (bytes, meta) in chunk {
            outcome.bytes += bytes.len();
            if self.first_sequence.is_none() {
                self.first_sequence = Some(meta.sequence_number.to_string());
            }
        }
    }

    /// Notes a chunk's last record once its rows are appended.
    fn finish_chunk(&mut self, chunk: &[(&[u8], RecordMeta<'_>)], outcome: &AppendOutcome) {
        if let Some(s) = chunk.iter().rev().map(|(_, m)| m.sequence_number).find(|s| !s.is_empty()) {
            self.last_sequence = Some(s.to_string());
        }
        if outcome.rows > 0 {
            self.last_append_ms = Some(now_ms());
        }
    }

    fn freeze(&mut self, layout: &TableLayout) {
        let frozen = if self.pending.is_empty() {
            let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
            batch(layout, columns)
        } else {
            // Whole batches come after the builders' rows (append_decoded freezes those first).
            let mut pending = std::mem::take(&mut self.pending);
            if self.active_rows > 0 {
                let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
                pending.push(batch(layout, columns));
            }
            self.pending_rows = 0;
            arrow::compute::concat_batches(&layout.arrow, &pending)
                .expect("batches of one layout concatenate")
        };
        self.push_frozen(frozen);
        self.active_rows = 0;
        self.active_record_bytes = 0;
    }

    fn push_frozen(&mut self, frozen: RecordBatch) {
        let stats: Vec<ColumnStats> = frozen.columns().iter().map(ColumnStats::of).collect();
        merge_all(&mut self.frozen_stats, &stats, self.frozen_rows);
        self.frozen_batch_stats.push(stats.into());
        self.frozen_bytes += batch_bytes(&frozen);
        self.frozen_rows += frozen.num_rows();
        self.frozen.push(frozen);
    }
}

fn batch(layout: &TableLayout, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::clone(&layout.arrow), columns)
        .expect("builders are made from the layout's own types and append whole rows")
}

/// Row `row` of the rows of `batches`, in order, as a batch of one row.
pub fn row_of<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>, row: usize) -> Option<RecordBatch> {
    let mut start = 0;
    for b in batches {
        if row < start + b.num_rows() {
            return Some(b.slice(row - start, 1));
        }
        start += b.num_rows();
    }
    None
}

/// Data bytes of a batch (values, offsets, validity), as written to a sealed file: exact for
/// plain columns. A dictionary column counts its keys and its dictionary, but no more of the
/// dictionary than its share when the batch has fewer rows than the dictionary has values (a
/// slice or a filter of a sealed file's batch, whose dictionary is the whole file's).
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| match c.as_any_dictionary_opt() {
            Some(d) => {
                let keys = d.keys().to_data().get_slice_memory_size().unwrap_or(0);
                let values = d.values().to_data().get_slice_memory_size().unwrap_or(0);
                keys + values.min(values * c.len() / d.values().len().max(1))
            }
            None => c.to_data().get_slice_memory_size().unwrap_or(0),
        })
        .sum()
}
