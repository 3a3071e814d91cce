//! Upsert and dedup (Pinot's `upsertConfig` and `dedupConfig`): one table-wide map from each
//! primary key to the row that holds its latest version, and per segment a bitmap of the rows
//! queries see.
//!
//! - Every row goes through [`Upsert::ingest`] under one lock, which decides its fate (a new
//!   key, a newer version, a late one, a duplicate), merges PARTIAL columns, appends the rows that
//!   stay to the consuming segment and flips the bits, so that a query's snapshot (taken under
//!   the same lock, [`Upsert::validity`]) never sees a key twice or not at all.
//! - A segment keeps its id from consuming to sealed (the sealed file holds the same rows in the
//!   same order), so a seal changes no bit.
//! - Anything else that changes which rows exist (a quarantine, a restored segment, retention,
//!   a consuming segment dropped after a panic) and the table's open rebuild the map from the
//!   rows themselves: per shard in stream order, shards in id order (Kinesis numbers a split's
//!   or merge's children after their parents).
//!
//! Pinot's rules, from its `ConcurrentMapPartitionUpsertMetadataManager`, `PartialUpsertHandler`
//! and `ConcurrentMapPartitionDedupMetadataManager` (see docs/notes/pinot-upsert.md):
//! - a version wins when its comparison value is greater or equal (the later one wins a tie);
//! - a late version is kept, not visible (`dropOutOfOrderRecord` drops it,
//!   `outOfOrderRecordColumn` marks it);
//! - a delete marker wins like any version, and hides its key;
//! - `metadataTTL` and `deletedKeysTTL` are measured back from the largest comparison value
//!   seen, not the clock; a key past `metadataTTL` leaves the map (its row stays visible);
//! - dedup keeps the first row of a key and drops the later ones while the key is in the map.

mod bits;
mod keymap;
mod partial;
#[cfg(test)]
mod tests;

use crate::config::{DedupConfig, TableDefinition, UpsertConfig};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use bits::Bits;
use keymap::{Key, KeyMap, Loc};
use parking_lot::{Mutex, MutexGuard};
use partial::{Merger, Prev};
use shoal_query::RowValidity;
use shoal_segment::{Decoded, DropReason, Dropped, MutableSegment, SealedSegment, TableLayout};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A dictionary-encoded string column as plain strings (other columns as they are), so that a
/// value reads, encodes and compares the same whichever way its segment stores it.
fn plain_strings(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Dictionary(_, v) if **v == DataType::Utf8 => {
            // Casting a dictionary of strings to its value type cannot fail.
            cast(column, &DataType::Utf8).unwrap_or_else(|_| Arc::clone(column))
        }
        _ => Arc::clone(column),
    }
}

/// What a table with a primary key does with versions of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Partial,
    Dedup,
}

/// Counters of upsert and dedup, for metrics and status.
#[derive(Debug, Default)]
pub struct UpsertCounters {
    /// Records dedup dropped: their key was already in the table (Pinot's
    /// `REALTIME_DEDUP_DROPPED`).
    pub deduplicated: AtomicU64,
    /// Versions that arrived after a newer one of their key (Pinot's `UPSERT_OUT_OF_ORDER`).
    pub out_of_order: AtomicU64,
    /// Of those, the ones dropped (`dropOutOfOrderRecord`).
    pub out_of_order_dropped: AtomicU64,
    /// Keys taken out of the map by `metadataTTL` or `deletedKeysTTL`.
    pub keys_expired: AtomicU64,
}

/// How a comparison value is kept in the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpKind {
    /// One integer or timestamp column: order-preserving bits of an i64.
    Int,
    /// One FLOAT or DOUBLE column: order-preserving bits of an f64.
    Float,
    /// Anything else (strings, decimals, several columns): a slot in `State::values`.
    General,
}

/// A table's upsert or dedup.
pub(crate) struct Upsert {
    mode: Mode,
    layout: Arc<TableLayout>,
    pk: Vec<usize>,
    /// Comparison columns (the time column when none are named); for dedup, its time column.
    cmp: Vec<usize>,
    cmp_kind: CmpKind,
    delete: Option<usize>,
    out_of_order_column: Option<usize>,
    drop_out_of_order: bool,
    metadata_ttl: f64,
    deleted_keys_ttl: f64,
    merger: Option<Merger>,
    state: Mutex<State>,
    pub(crate) counters: Arc<UpsertCounters>,
}

impl std::fmt::Debug for Upsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upsert").field("mode", &self.mode).finish()
    }
}

/// A segment as the map knows it.
struct SegmentRows {
    /// The shard the segment's rows came from.
    shard: Arc<str>,
    valid: Bits,
    /// Valid rows that are no delete marker; only with a delete column.
    queryable: Option<Bits>,
    source: RowSource,
}

/// Where a segment's rows are read (a PARTIAL merge reads a key's previous row).
#[derive(Clone)]
pub(crate) enum RowSource {
    Consuming(Arc<MutableSegment>),
    Sealed(Arc<SealedSegment>),
}

impl RowSource {
    fn batches(&self) -> Vec<RecordBatch> {
        match self {
            RowSource::Consuming(c) => c.snapshot().batches,
            RowSource::Sealed(s) => s.batches().map(<[RecordBatch]>::to_vec).unwrap_or_else(|e| {
                tracing::error!(segment = %s.path().display(), error = %e, "a segment's rows cannot be read for the key map");
                Vec::new()
            }),
        }
    }

    fn row(&self, row: usize) -> Option<RecordBatch> {
        match self {
            RowSource::Consuming(c) => c.row(row),
            RowSource::Sealed(s) => shoal_segment::mutable::row_of(s.batches().ok()?, row),
        }
    }
}

/// What the lock guards.
#[derive(Default)]
struct State {
    keys: KeyMap,
    /// Comparison values that are no single number, by slot.
    values: Vec<Option<Values>>,
    free_values: Vec<u64>,
    segments: HashMap<u32, SegmentRows>,
    by_file: HashMap<String, u32>,
    by_consuming: HashMap<usize, u32>,
    next_id: u32,
    /// Per shard, the largest comparison (dedup: time) value seen, for the TTLs (Pinot keeps
    /// one per partition).
    watermarks: HashMap<Arc<str>, f64>,
}

/// The segments of a table state, in the order a rebuild reads them.
pub(crate) struct Segments<'a> {
    pub sealed: Vec<(&'a str, &'a Arc<SealedSegment>, RebuildOrder)>,
    pub consuming: Vec<(&'a Arc<MutableSegment>, RebuildOrder)>,
}

/// Where a segment's rows lie in the table's streams: shard, then rank (0 sealed, 1 sealing,
/// 2 consuming), then position in it.
pub(crate) type RebuildOrder = (String, u8, Option<shoal_stream::Checkpoint>, u64);

/// What deciding a batch's rows reads from it: each row's key, comparison value (or why it has
/// none) and whether it is a delete marker.
struct Read {
    keys: Vec<Key>,
    cmps: Vec<Result<Cmp, String>>,
    deletes: Option<Vec<bool>>,
}

/// Where a batch's kept rows go: segment `id` of `shard`, from row `start`.
struct Target<'a> {
    id: u32,
    shard: &'a Arc<str>,
    start: usize,
}

/// One row's verdict.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// The key is not in the map (or its entry is past a TTL).
    New { expired: Option<u32> },
    /// A version at least as new as the key's current one: it wins.
    Wins { slot: u32 },
    /// Older than the key's current version.
    Late,
    /// Dedup: the key is in the table.
    Duplicate,
}

fn ptr(segment: &Arc<MutableSegment>) -> usize {
    Arc::as_ptr(segment) as usize
}

impl Upsert {
    /// The upsert or dedup of `definition`, if it has one.
    pub(crate) fn of(
        definition: &TableDefinition,
        layout: &Arc<TableLayout>,
        counters: Arc<UpsertCounters>,
    ) -> Option<Upsert> {
        let config = &definition.config;
        let column = |name: &str| layout.column_index(name);
        let time = config.segments.time_column.as_str();
        let (mode, upsert, dedup): (Mode, Option<&UpsertConfig>, Option<&DedupConfig>) =
            match (&config.upsert, &config.dedup) {
                (Some(u), _) if u.mode == "PARTIAL" => (Mode::Partial, Some(u), None),
                (Some(u), _) => (Mode::Full, Some(u), None),
                (None, Some(d)) => (Mode::Dedup, None, Some(d)),
                (None, None) => return None,
            };
        let pk: Vec<usize> = definition.schema.primary_key_columns.iter().filter_map(|c| column(c)).collect();
        let cmp_names: Vec<String> = match (upsert, dedup) {
            (Some(u), _) if !u.comparison_columns.is_empty() => u.comparison_columns.clone(),
            (_, Some(DedupConfig { time_column: Some(t), .. })) => vec![t.clone()],
            _ => vec![time.to_string()],
        };
        let cmp: Vec<usize> = cmp_names.iter().filter_map(|c| column(c)).collect();
        let arrow = &layout.arrow;
        let cmp_kind = match cmp.as_slice() {
            [c] => match arrow.field(*c).data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Boolean => CmpKind::Int,
                DataType::Float32 | DataType::Float64 => CmpKind::Float,
                _ => CmpKind::General,
            },
            _ => CmpKind::General,
        };
        let merger =
            (mode == Mode::Partial).then(|| upsert.map(|u| Merger::new(u, layout, &pk, &cmp))).flatten();
        Some(Upsert {
            mode,
            layout: Arc::clone(layout),
            pk,
            cmp,
            cmp_kind,
            delete: upsert.and_then(|u| u.delete_record_column.as_deref()).and_then(column),
            out_of_order_column: upsert
                .and_then(|u| u.out_of_order_record_column.as_deref())
                .and_then(column),
            drop_out_of_order: upsert.is_some_and(|u| u.drop_out_of_order),
            metadata_ttl: upsert.map_or_else(|| dedup.map_or(0.0, |d| d.metadata_ttl), |u| u.metadata_ttl),
            deleted_keys_ttl: upsert.map_or(0.0, |u| u.deleted_keys_ttl),
            merger,
            state: Mutex::new(State::default()),
            counters,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Decides the fate of decoded rows, appends the ones that stay to `segment` and makes the
    /// latest version of each key the visible one, all under the map's lock.
    pub(crate) fn ingest(&self, shard: &str, segment: &Arc<MutableSegment>, decoded: Decoded) -> Decoded {
        // Keys and comparison values are read before the lock: shards overlap on that part.
        let read: Vec<Read> = decoded.batches.iter().map(|b| self.read(b)).collect();
        let mut state = self.lock();
        self.ingest_into(&mut state, shard, segment, decoded, read, true)
    }

    /// What deciding a batch's rows reads from it.
    fn read(&self, batch: &RecordBatch) -> Read {
        Read { keys: self.keys(batch), cmps: self.comparison_values(batch), deletes: self.deletes(batch) }
    }

    fn ingest_into(
        &self,
        state: &mut State,
        shard: &str,
        segment: &Arc<MutableSegment>,
        mut decoded: Decoded,
        read: Vec<Read>,
        count: bool,
    ) -> Decoded {
        let shard = state.shard(shard);
        let id = state.consuming_id(segment, &shard, self.delete.is_some());
        let mut start = segment.rows();
        let mut kept = 0;
        // Each batch is appended before the next is decided: a PARTIAL merge may read its rows.
        for (batch, read) in std::mem::take(&mut decoded.batches).into_iter().zip(read) {
            let (rows, drops) = self.admit(state, Target { id, shard: &shard, start }, &batch, read, count);
            for (row, dropped) in drops {
                let sample = self.describe(&batch, row);
                decoded.outcome.dropped += 1;
                decoded.outcome.drops.record(&dropped, sample.as_bytes());
            }
            start += rows.num_rows();
            kept += rows.num_rows();
            segment.append_batch(rows);
        }
        decoded.outcome.rows = kept;
        segment.note_decoded(&decoded, kept > 0);
        decoded
    }

    /// The key's columns of `row`, to show with a dropped row.
    fn describe(&self, batch: &RecordBatch, row: usize) -> String {
        let names = self.layout.arrow.fields();
        self.pk
            .iter()
            .map(|&c| {
                let value =
                    arrow::util::display::array_value_to_string(batch.column(c), row).unwrap_or_default();
                format!("{}={value}", names[c].name())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The rows of `batch` that stay (values merged and marked), and the rows dropped as bad;
    /// the kept rows become rows `start..` of segment `id`.
    fn admit(
        &self,
        state: &mut State,
        target: Target<'_>,
        batch: &RecordBatch,
        read: Read,
        count: bool,
    ) -> (RecordBatch, Vec<(usize, Dropped)>) {
        let Target { id, shard, start } = target;
        let counted = |c: &AtomicU64| {
            if count {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return (batch.clone(), Vec::new());
        }
        let Read { keys, cmps, deletes } = read;
        let mut keep = Vec::with_capacity(rows);
        // Filled only for an `outOfOrderRecordColumn`.
        let mut out_of_order: Option<Vec<bool>> = self.out_of_order_column.map(|_| Vec::with_capacity(rows));
        let mark = |o: &mut Option<Vec<bool>>, late: bool| {
            if let Some(o) = o {
                o.push(late);
            }
        };
        let mut bad = Vec::new();
        let mut merges = Vec::new();
        // The batch row of each row kept so far (kept rows become rows start.. of the segment).
        let mut kept_rows: Vec<usize> = Vec::new();
        let mut doc = start;
        for row in 0..rows {
            let cmp = match &cmps[row] {
                Ok(c) => c,
                Err(message) => {
                    bad.push((row, Dropped { reason: DropReason::BadComparison, message: message.clone() }));
                    keep.push(false);
                    mark(&mut out_of_order, false);
                    continue;
                }
            };
            let delete = deletes.as_ref().is_some_and(|d| d[row]);
            let verdict = self.verdict(state, shard, keys[row], cmp);
            let late = matches!(verdict, Verdict::Late);
            match verdict {
                Verdict::Duplicate => {
                    counted(&self.counters.deduplicated);
                    keep.push(false);
                    mark(&mut out_of_order, false);
                    continue;
                }
                Verdict::Late => {
                    counted(&self.counters.out_of_order);
                    if self.drop_out_of_order {
                        counted(&self.counters.out_of_order_dropped);
                        keep.push(false);
                        mark(&mut out_of_order, false);
                        continue;
                    }
                }
                Verdict::Wins { slot } if self.merger.is_some() && !delete => {
                    // PARTIAL: merge with the key's current row while it is visible.
                    let prev = Loc(state.keys.entry_mut(slot).loc);
                    if state.queryable(prev) {
                        let prev = if prev.segment() == id && prev.row() >= start {
                            kept_rows.get(prev.row() - start).map(|r| Prev::InBatch(*r))
                        } else {
                            state
                                .segments
                                .get(&prev.segment())
                                .and_then(|s| s.source.row(prev.row()))
                                .map(Prev::Stored)
                        };
                        merges.extend(prev.map(|p| (row, p)));
                    }
                }
                _ => {}
            }
            let loc = Loc::new(id, doc as u32);
            state.grow(id, doc + 1);
            if !late {
                self.take(state, verdict, keys[row], loc, cmp, delete);
            }
            keep.push(true);
            kept_rows.push(row);
            mark(&mut out_of_order, late);
            doc += 1;
        }
        let mut batch = batch.clone();
        if let Some(merger) = &self.merger
            && !merges.is_empty()
        {
            batch = merger.merge(&batch, merges);
        }
        if let (Some(c), Some(out_of_order)) = (self.out_of_order_column, out_of_order) {
            let mut columns = batch.columns().to_vec();
            columns[c] = Arc::new(BooleanArray::from(out_of_order));
            batch = RecordBatch::try_new(batch.schema(), columns).expect("same schema and length");
        }
        let kept = if keep.iter().all(|k| *k) {
            batch
        } else {
            filter_record_batch(&batch, &BooleanArray::from(keep)).expect("a mask of the batch's length")
        };
        (kept, bad)
    }

    /// The verdict on a version of `key` with comparison value `cmp`.
    fn verdict(&self, state: &mut State, shard: &Arc<str>, key: Key, cmp: &Cmp) -> Verdict {
        let ttl = self.metadata_ttl > 0.0 || self.deleted_keys_ttl > 0.0;
        if ttl && let Some(v) = self.numeric(cmp) {
            let w = state.watermarks.entry(Arc::clone(shard)).or_insert(v);
            *w = w.max(v);
        }
        let Some((slot, entry)) = state.keys.get(key) else { return Verdict::New { expired: None } };
        if self.mode == Mode::Dedup {
            // Dedup looks at the TTL as it reads (ConcurrentMapPartitionDedupMetadataManager's
            // isOutOfMetadataTTL); upsert only when a consuming segment starts (purge).
            let watermark = state.watermarks.get(shard).copied();
            if watermark.is_some_and(|w| self.expired(state, entry.cmp, Loc(entry.loc), w)) {
                return Verdict::New { expired: Some(slot) };
            }
            return Verdict::Duplicate;
        }
        if self.newer_or_equal(state, cmp, entry.cmp) { Verdict::Wins { slot } } else { Verdict::Late }
    }

    /// Makes row `loc` the key's latest version.
    fn take(&self, state: &mut State, verdict: Verdict, key: Key, loc: Loc, cmp: &Cmp, delete: bool) {
        let visible = !delete;
        match verdict {
            Verdict::New { expired } => {
                if let Some(slot) = expired {
                    self.forget(state, slot);
                }
                let stored = state.store(cmp);
                state.keys.insert(key, loc, stored);
            }
            Verdict::Wins { slot } => {
                let entry = *state.keys.entry_mut(slot);
                let old = Loc(entry.loc);
                state.set(old, false, false);
                let stored = match (cmp, self.cmp_kind) {
                    (Cmp::Bits(b), _) => *b,
                    (Cmp::Values(v), _) => {
                        // Pinot's ComparisonColumns: the columns the new version leaves null keep
                        // the current version's values.
                        let slotted = state.values[entry.cmp as usize].take();
                        let merged: Values = match slotted {
                            Some(current) => v
                                .iter()
                                .zip(current.iter())
                                .map(|(n, c)| n.clone().or_else(|| c.clone()))
                                .collect(),
                            None => v.clone(),
                        };
                        state.values[entry.cmp as usize] = Some(merged);
                        entry.cmp
                    }
                };
                let e = state.keys.entry_mut(slot);
                e.loc = loc.0;
                e.cmp = stored;
            }
            Verdict::Late | Verdict::Duplicate => return,
        }
        state.set(loc, true, visible);
    }

    /// Takes a key out of the map: an expired entry. A delete marker past `deletedKeysTTL` is
    /// no longer valid either (Pinot's removeDocId); a live row past `metadataTTL` stays visible.
    fn forget(&self, state: &mut State, slot: u32) {
        let entry = *state.keys.entry_mut(slot);
        let loc = Loc(entry.loc);
        if self.is_marker(state, loc) {
            state.set(loc, false, false);
        }
        if self.cmp_kind == CmpKind::General {
            state.values[entry.cmp as usize] = None;
            state.free_values.push(entry.cmp);
        }
        state.keys.remove(slot);
        self.counters.keys_expired.fetch_add(1, Ordering::Relaxed);
    }

    fn is_marker(&self, state: &State, loc: Loc) -> bool {
        self.delete.is_some() && state.valid(loc) && !state.queryable(loc)
    }

    /// Whether an entry is past a TTL (relative to the largest value its shard has seen).
    fn expired(&self, state: &State, cmp: u64, loc: Loc, watermark: f64) -> bool {
        let Some(value) = self.decode(cmp) else { return false };
        if self.metadata_ttl > 0.0 && value < watermark - self.metadata_ttl {
            return true;
        }
        self.deleted_keys_ttl > 0.0 && value < watermark - self.deleted_keys_ttl && self.is_marker(state, loc)
    }

    /// Removes the entries of `shard`'s rows that are past a TTL (Pinot does it for a
    /// partition as each of its consuming segments starts).
    fn purge(&self, state: &mut State, shard: &str) {
        if self.metadata_ttl <= 0.0 && self.deleted_keys_ttl <= 0.0 {
            return;
        }
        let Some(&watermark) = state.watermarks.get(shard) else { return };
        let of_shard = |loc: Loc| state.segments.get(&loc.segment()).is_some_and(|s| &*s.shard == shard);
        let expired: Vec<u32> = state
            .keys
            .iter()
            .filter(|(_, e)| of_shard(Loc(e.loc)) && self.expired(state, e.cmp, Loc(e.loc), watermark))
            .map(|(s, _)| s)
            .collect();
        for slot in expired {
            self.forget(state, slot);
        }
    }

    fn newer_or_equal(&self, state: &State, new: &Cmp, current: u64) -> bool {
        match new {
            Cmp::Bits(b) => *b >= current,
            Cmp::Values(v) => {
                let Some(Some(stored)) = state.values.get(current as usize) else { return true };
                if v.len() == 1 {
                    return v[0] >= stored[0];
                }
                // Several columns: only the one the new version sets is compared; a current
                // version without it loses.
                match v.iter().position(Option::is_some) {
                    Some(i) => match &stored[i] {
                        Some(s) => v[i].as_deref() >= Some(&**s),
                        None => true,
                    },
                    None => true,
                }
            }
        }
    }

    fn numeric(&self, cmp: &Cmp) -> Option<f64> {
        match cmp {
            Cmp::Bits(b) => self.decode(*b),
            Cmp::Values(_) => None,
        }
    }

    fn decode(&self, bits: u64) -> Option<f64> {
        match self.cmp_kind {
            CmpKind::Int => Some(((bits ^ (1 << 63)) as i64) as f64),
            CmpKind::Float => {
                let raw = if bits & (1 << 63) != 0 { bits ^ (1 << 63) } else { !bits };
                Some(f64::from_bits(raw))
            }
            CmpKind::General => None,
        }
    }

    /// Each row's primary key, hashed.
    fn keys(&self, batch: &RecordBatch) -> Vec<Key> {
        use xxhash_rust::xxh3::xxh3_128;
        // One string or integer column: its bytes, without the row encoding.
        if let [c] = self.pk.as_slice() {
            let column = batch.column(*c);
            let null = |r: usize| column.is_null(r).then(|| xxh3_128(b"\xffnull"));
            match column.data_type() {
                DataType::Utf8 => {
                    let s = column.as_string::<i32>();
                    return (0..s.len())
                        .map(|r| null(r).unwrap_or_else(|| xxh3_128(s.value(r).as_bytes())))
                        .collect();
                }
                // A dictionary-encoded string: the same hash as the plain string's, each
                // dictionary value hashed once where the rows outnumber them.
                DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                    let d = column.as_dictionary::<Int32Type>();
                    let s = d.values().as_string::<i32>();
                    let hash = |i: usize| {
                        if s.is_valid(i) { xxh3_128(s.value(i).as_bytes()) } else { xxh3_128(b"\xffnull") }
                    };
                    let hashed: Option<Vec<Key>> =
                        (s.len() <= d.len()).then(|| (0..s.len()).map(hash).collect());
                    return (0..d.len())
                        .map(|r| {
                            null(r).unwrap_or_else(|| {
                                // Keys of a valid DictionaryArray index its values.
                                let k = d.keys().value(r) as usize;
                                hashed.as_ref().map_or_else(|| hash(k), |h| h[k])
                            })
                        })
                        .collect();
                }
                DataType::Int64 => {
                    let v = column.as_primitive::<Int64Type>();
                    return (0..v.len())
                        .map(|r| null(r).unwrap_or_else(|| xxh3_128(&v.value(r).to_le_bytes())))
                        .collect();
                }
                _ => {}
            }
        }
        let columns: Vec<ArrayRef> = self.pk.iter().map(|&c| plain_strings(batch.column(c))).collect();
        let fields = columns.iter().map(|c| SortField::new(c.data_type().clone())).collect();
        let converter = RowConverter::new(fields).expect("primary key columns are single-value");
        let rows = converter.convert_columns(&columns).expect("columns of the converter's types");
        rows.iter().map(|r| xxhash_rust::xxh3::xxh3_128(r.as_ref())).collect()
    }

    /// Each row's comparison value, or why it has none.
    fn comparison_values(&self, batch: &RecordBatch) -> Vec<Result<Cmp, String>> {
        let rows = batch.num_rows();
        match self.cmp_kind {
            CmpKind::Int => {
                let column = cast(batch.column(self.cmp[0]), &DataType::Int64)
                    .expect("an integer column casts to Int64");
                let values = column.as_primitive::<Int64Type>();
                (0..rows)
                    .map(|r| {
                        Ok(Cmp::Bits(if values.is_null(r) {
                            0
                        } else {
                            (values.value(r) as u64) ^ (1 << 63)
                        }))
                    })
                    .collect()
            }
            CmpKind::Float => {
                let column = cast(batch.column(self.cmp[0]), &DataType::Float64)
                    .expect("a float column casts to Float64");
                let values = column.as_primitive::<Float64Type>();
                (0..rows)
                    .map(|r| {
                        Ok(Cmp::Bits(if values.is_null(r) {
                            0
                        } else {
                            let bits = values.value(r).to_bits();
                            if bits & (1 << 63) != 0 { !bits } else { bits | (1 << 63) }
                        }))
                    })
                    .collect()
            }
            CmpKind::General => {
                let encoded: Vec<(ArrayRef, arrow::row::Rows)> = self
                    .cmp
                    .iter()
                    .map(|&c| {
                        let column = plain_strings(batch.column(c));
                        let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())])
                            .expect("comparison columns are single-value");
                        let rows =
                            converter.convert_columns(&[Arc::clone(&column)]).expect("the converter's type");
                        (column, rows)
                    })
                    .collect();
                (0..rows)
                    .map(|r| {
                        let values: Values = encoded
                            .iter()
                            .map(|(c, rows)| (!c.is_null(r)).then(|| Box::from(rows.row(r).as_ref())))
                            .collect();
                        let set = values.iter().filter(|v| v.is_some()).count();
                        if values.len() > 1 && set != 1 {
                            let names: Vec<&str> =
                                self.cmp.iter().map(|&c| self.layout.arrow.field(c).name().as_str()).collect();
                            return Err(format!(
                                "{set} of the comparison columns {} have a value: a version must set exactly one",
                                names.join(", ")
                            ));
                        }
                        Ok(Cmp::Values(values))
                    })
                    .collect()
            }
        }
    }

    /// Which rows are delete markers (Pinot's BooleanUtils.toBoolean of the delete column).
    fn deletes(&self, batch: &RecordBatch) -> Option<Vec<bool>> {
        let column = &plain_strings(batch.column(self.delete?));
        let rows = batch.num_rows();
        Some(match column.data_type() {
            DataType::Boolean => {
                let b = column.as_boolean();
                (0..rows).map(|r| b.is_valid(r) && b.value(r)).collect()
            }
            DataType::Utf8 => {
                let s = column.as_string::<i32>();
                (0..rows)
                    .map(|r| s.is_valid(r) && (s.value(r).eq_ignore_ascii_case("true") || s.value(r) == "1"))
                    .collect()
            }
            _ => match cast(column, &DataType::Float64) {
                // A number's int value is 1 (Java's Number.intValue truncates).
                Ok(c) => {
                    let f = c.as_primitive::<Float64Type>();
                    (0..rows).map(|r| f.is_valid(r) && f.value(r).trunc() == 1.0).collect()
                }
                Err(_) => vec![false; rows],
            },
        })
    }

    /// The map's lock, for a query's snapshot: the segments' snapshots and their validity are
    /// taken while it is held, so that no ingest call is half seen.
    /// None for dedup, which drops rows at ingest and hides none (as Pinot).
    pub(crate) fn view(&self) -> Option<View<'_>> {
        (self.mode != Mode::Dedup).then(|| View { state: self.lock(), deletes: self.delete.is_some() })
    }

    /// Brings the map in line with a table state about to be published (the caller swaps the
    /// state before `publish` returns, under the map's lock): a sealed segment takes over its
    /// consuming segment's id; new and vanished segments with rows rebuild the map.
    pub(crate) fn publish(
        &self,
        sealed_from: Option<(&Arc<MutableSegment>, &str)>,
        compaction: Option<Compaction<'_>>,
        segments: Segments<'_>,
        swap: impl FnOnce(),
    ) {
        let mut state = self.lock();
        if let Some(c) = compaction {
            Self::compacted(&mut state, c);
        }
        if let Some((consuming, file)) = sealed_from
            && let Some(id) = state.by_consuming.remove(&ptr(consuming))
        {
            state.by_file.insert(file.to_string(), id);
            if let Some((_, s, _)) = segments.sealed.iter().find(|(f, _, _)| *f == file)
                && let Some(rows) = state.segments.get_mut(&id)
            {
                rows.source = RowSource::Sealed(Arc::clone(s));
            }
        }
        let mut live = std::collections::HashSet::new();
        let mut rebuild = false;
        for (file, segment, _) in &segments.sealed {
            match state.by_file.get(*file) {
                Some(id) => {
                    live.insert(*id);
                }
                None => rebuild |= segment.meta().rows > 0,
            }
        }
        let mut fresh = Vec::new();
        for (segment, (shard, ..)) in &segments.consuming {
            match state.by_consuming.get(&ptr(segment)) {
                Some(id) => {
                    live.insert(*id);
                }
                None => {
                    rebuild |= segment.rows() > 0;
                    fresh.push(shard.as_str());
                }
            }
        }
        let gone: Vec<u32> = state.segments.keys().filter(|id| !live.contains(id)).copied().collect();
        for id in gone {
            if let Some(s) = state.segments.remove(&id) {
                rebuild |= s.valid.len() > 0;
            }
        }
        state.by_file.retain(|_, id| live.contains(id));
        state.by_consuming.retain(|_, id| live.contains(id));
        if rebuild {
            self.rebuild(&mut state, &segments);
        } else {
            for (segment, (shard, ..)) in &segments.consuming {
                let shard = state.shard(shard);
                state.consuming_id(segment, &shard, self.delete.is_some());
            }
            for shard in fresh {
                self.purge(&mut state, shard);
            }
        }
        swap();
    }

    /// A sealed segment `old` was rewritten as `new` with only its rows `kept` (sorted), or
    /// dropped (None): its bits and the keys that point into it follow the rows, with no
    /// rebuild. (A row not kept was not visible when the rewrite read the bits, and a row
    /// never becomes visible again but through a rebuild.)
    fn compacted(state: &mut State, compaction: Compaction<'_>) {
        let Compaction { old, new, kept } = compaction;
        let Some(id) = state.by_file.remove(old) else { return };
        let Some((file, segment)) = new else {
            state.segments.remove(&id);
            return;
        };
        state.by_file.insert(file.to_string(), id);
        if let Some(rows) = state.segments.get_mut(&id) {
            let mut valid = Bits::default();
            valid.grow(kept.len());
            let mut queryable = rows.queryable.as_ref().map(|_| {
                let mut q = Bits::default();
                q.grow(kept.len());
                q
            });
            for (new_row, &old_row) in kept.iter().enumerate() {
                valid.set(new_row, rows.valid.get(old_row as usize));
                if let (Some(q), Some(old_q)) = (&mut queryable, &rows.queryable) {
                    q.set(new_row, old_q.get(old_row as usize));
                }
            }
            rows.valid = valid;
            rows.queryable = queryable;
            rows.source = RowSource::Sealed(Arc::clone(segment));
        }
        // Every key's row is a valid one, and every valid row was kept (`only_kept_valid`,
        // checked under the commit lock that every rebuild also holds).
        let moved: Vec<(u32, u64)> = state
            .keys
            .iter()
            .filter(|(_, e)| Loc(e.loc).segment() == id)
            .filter_map(|(slot, e)| {
                let row = kept.binary_search(&(Loc(e.loc).row() as u32)).ok()?;
                Some((slot, Loc::new(id, row as u32).0))
            })
            .collect();
        for (slot, loc) in moved {
            state.keys.entry_mut(slot).loc = loc;
        }
    }

    /// Whether every valid row of sealed segment `file` is among `kept` (sorted): true unless a
    /// rebuild made other rows valid since `kept` was read. Asked under the commit lock, which
    /// every rebuild holds; ingest only clears a sealed segment's bits.
    pub(crate) fn only_kept_valid(&self, file: &str, kept: &[u32]) -> bool {
        let state = self.lock();
        let Some(rows) = state.by_file.get(file).and_then(|id| state.segments.get(id)) else { return false };
        (0..rows.valid.len()).all(|r| !rows.valid.get(r) || kept.binary_search(&(r as u32)).is_ok())
    }

    /// The visible rows of sealed segment `file` (of its `rows`), for a compaction.
    pub(crate) fn valid_rows(&self, file: &str, rows: usize) -> Option<arrow::buffer::BooleanBuffer> {
        let mut state = self.lock();
        let id = *state.by_file.get(file)?;
        state.segments.get_mut(&id).map(|s| s.valid.buffer(rows))
    }

    /// Rebuilds the map from the rows of `segments`, in stream order.
    fn rebuild(&self, state: &mut State, segments: &Segments<'_>) {
        let started = std::time::Instant::now();
        *state = State { next_id: state.next_id, ..State::default() };
        let rows = self.replay_all(state, segments);
        tracing::info!(
            keys = state.keys.len(),
            rows,
            millis = started.elapsed().as_millis() as u64,
            "key map rebuilt from the table's rows"
        );
    }

    /// Replays the rows of `segments` into `state` in stream order, purging a shard's
    /// expired keys after each of its sealed segments as its next consuming segment did; returns
    /// the rows read.
    fn replay_all(&self, state: &mut State, segments: &Segments<'_>) -> usize {
        enum Source<'a> {
            Sealed(&'a str, &'a Arc<SealedSegment>),
            Consuming(&'a Arc<MutableSegment>),
        }
        let mut all: Vec<(&RebuildOrder, Source<'_>)> = segments
            .sealed
            .iter()
            .map(|(f, s, o)| (o, Source::Sealed(f, s)))
            .chain(segments.consuming.iter().map(|(c, o)| (o, Source::Consuming(c))))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        let mut rows = 0;
        for ((shard, rank, ..), source) in all {
            let shard = state.shard(shard);
            let (id, source, sealed) = match source {
                Source::Sealed(file, s) => {
                    let id = state.register(RowSource::Sealed(Arc::clone(s)), &shard, self.delete.is_some());
                    state.by_file.insert(file.to_string(), id);
                    (id, RowSource::Sealed(Arc::clone(s)), true)
                }
                Source::Consuming(c) => (
                    state.consuming_id(c, &shard, self.delete.is_some()),
                    RowSource::Consuming(Arc::clone(c)),
                    false,
                ),
            };
            let mut doc = 0;
            for batch in source.batches() {
                self.replay(state, id, &shard, doc, &batch);
                doc += batch.num_rows();
            }
            state.grow(id, doc);
            rows += doc;
            // The live map purges as a shard's next consuming segment starts: after each
            // sealed segment, and after a sealing one (its successor has started).
            if sealed || *rank == 1 {
                self.purge(state, &shard);
            }
        }
        rows
    }

    /// For re-reading lost segment `order` of `shard` into `segment`: a key map as it stood
    /// before that segment's rows (the rows of `preceding`, the segments before it in stream
    /// order), so that the rows read again are decided as they were the first time (the same
    /// merges, drops and marks).
    pub(crate) fn restorer(
        &self,
        preceding: &Segments<'_>,
        shard: &str,
        segment: &Arc<MutableSegment>,
    ) -> Restorer<'_> {
        let mut state = State::default();
        self.replay_all(&mut state, preceding);
        let shard = state.shard(shard);
        state.consuming_id(segment, &shard, self.delete.is_some());
        Restorer { upsert: self, state, shard }
    }

    /// Resolves rows already in a segment (no merge, no drop: they were decided at ingest).
    fn replay(&self, state: &mut State, id: u32, shard: &Arc<str>, start: usize, batch: &RecordBatch) {
        let keys = self.keys(batch);
        let cmps = self.comparison_values(batch);
        let deletes = self.deletes(batch);
        state.grow(id, start + batch.num_rows());
        for (row, cmp) in cmps.iter().enumerate() {
            let Ok(cmp) = cmp else { continue };
            let verdict = self.verdict(state, shard, keys[row], cmp);
            let delete = deletes.as_ref().is_some_and(|d| d[row]);
            self.take(state, verdict, keys[row], Loc::new(id, (start + row) as u32), cmp, delete);
        }
    }

    /// The map's size and what it decided.
    pub(crate) fn status(&self) -> crate::table::UpsertStatus {
        let state = self.lock();
        let bitmaps: usize = state
            .segments
            .values()
            .map(|s| s.valid.memory_bytes() + s.queryable.as_ref().map_or(0, Bits::memory_bytes))
            .sum();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        crate::table::UpsertStatus {
            keys: state.keys.len() as u64,
            key_map_bytes: state.keys.memory_bytes() as u64,
            bitmap_bytes: bitmaps as u64,
            deduplicated: load(&c.deduplicated),
            out_of_order: load(&c.out_of_order),
            out_of_order_dropped: load(&c.out_of_order_dropped),
            keys_expired: load(&c.keys_expired),
        }
    }
}

/// A key map for re-reading one lost segment (see [`Upsert::restorer`]).
pub(crate) struct Restorer<'a> {
    upsert: &'a Upsert,
    state: State,
    shard: Arc<str>,
}

impl Restorer<'_> {
    /// Decides decoded rows read again as they were decided the first time and appends the
    /// ones that stay to the re-read segment (nothing is counted again).
    pub(crate) fn append(&mut self, segment: &Arc<MutableSegment>, decoded: Decoded) {
        let shard = Arc::clone(&self.shard);
        let read = decoded.batches.iter().map(|b| self.upsert.read(b)).collect();
        self.upsert.ingest_into(&mut self.state, &shard, segment, decoded, read, false);
    }
}

/// The map held for a query's snapshot.
pub(crate) struct View<'a> {
    state: MutexGuard<'a, State>,
    deletes: bool,
}

impl View<'_> {
    /// The rows of `segment` a query sees, of the `rows` its snapshot holds.
    pub(crate) fn validity(&mut self, segment: SegmentRef<'_>, rows: usize) -> RowValidity {
        let id = match segment {
            SegmentRef::Sealed(file) => self.state.by_file.get(file).copied(),
            SegmentRef::Consuming(c) => self.state.by_consuming.get(&ptr(c)).copied(),
        };
        match id.and_then(|id| self.state.segments.get_mut(&id)) {
            Some(s) => RowValidity {
                valid: s.valid.buffer(rows),
                queryable: s.queryable.as_mut().map(|q| q.buffer(rows)),
            },
            // A segment the map does not know yet (a consuming segment before its first
            // rows) has no visible row.
            None => {
                let none = arrow::buffer::BooleanBuffer::new_unset(rows);
                RowValidity { valid: none.clone(), queryable: self.deletes.then_some(none) }
            }
        }
    }
}

/// A sealed segment `old` rewritten as `new` (file and segment; None: dropped) with only its
/// rows `kept` (sorted).
pub(crate) struct Compaction<'a> {
    pub old: &'a str,
    pub new: Option<(&'a str, &'a Arc<SealedSegment>)>,
    pub kept: &'a [u32],
}

/// A segment of a table state, as a snapshot names it.
pub(crate) enum SegmentRef<'a> {
    Sealed(&'a str),
    Consuming(&'a Arc<MutableSegment>),
}

/// Values of the comparison columns, each in Arrow's order-preserving row encoding (None: null).
type Values = Box<[Option<Box<[u8]>>]>;

/// A comparison value read from a row.
enum Cmp {
    Bits(u64),
    Values(Values),
}

impl State {
    /// The shard's name, shared.
    fn shard(&mut self, shard: &str) -> Arc<str> {
        match self.watermarks.get_key_value(shard) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(shard),
        }
    }

    fn register(&mut self, source: RowSource, shard: &Arc<str>, deletes: bool) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.segments.insert(
            id,
            SegmentRows {
                shard: Arc::clone(shard),
                valid: Bits::default(),
                queryable: deletes.then(Bits::default),
                source,
            },
        );
        id
    }

    fn consuming_id(&mut self, segment: &Arc<MutableSegment>, shard: &Arc<str>, deletes: bool) -> u32 {
        if let Some(id) = self.by_consuming.get(&ptr(segment)) {
            return *id;
        }
        let id = self.register(RowSource::Consuming(Arc::clone(segment)), shard, deletes);
        self.by_consuming.insert(ptr(segment), id);
        id
    }

    fn grow(&mut self, id: u32, rows: usize) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.valid.grow(rows);
            if let Some(q) = &mut s.queryable {
                q.grow(rows);
            }
        }
    }

    fn set(&mut self, loc: Loc, valid: bool, queryable: bool) {
        if let Some(s) = self.segments.get_mut(&loc.segment()) {
            s.valid.set(loc.row(), valid);
            if let Some(q) = &mut s.queryable {
                q.set(loc.row(), queryable);
            }
        }
    }

    fn valid(&self, loc: Loc) -> bool {
        self.segments.get(&loc.segment()).is_some_and(|s| s.valid.get(loc.row()))
    }

    fn queryable(&self, loc: Loc) -> bool {
        self.segments.get(&loc.segment()).is_some_and(|s| {
            s.queryable.as_ref().map_or_else(|| s.valid.get(loc.row()), |q| q.get(loc.row()))
        })
    }

    /// The map's form of a comparison value.
    fn store(&mut self, cmp: &Cmp) -> u64 {
        match cmp {
            Cmp::Bits(b) => *b,
            Cmp::Values(v) => match self.free_values.pop() {
                Some(slot) => {
                    self.values[slot as usize] = Some(v.clone());
                    slot
                }
                None => {
                    self.values.push(Some(v.clone()));
                    (self.values.len() - 1) as u64
                }
            },
        }
    }
}
