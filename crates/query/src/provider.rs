//! The DataFusion TableProvider of a table: one snapshot of its sealed and consuming segments,
//! pruned by segment statistics, one partition per segment (large ones split), scanned with
//! the query's filters by `SegmentScanExec`, which counts what each segment gave.

use crate::scan::{BatchStatistics, ColdCountExec, Piece, ScanCounters, SegmentCount, SegmentScanExec};
use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array, new_null_array,
};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use shoal_segment::columns::{DECIMAL_PRECISION, DECIMAL_SCALE};
use shoal_segment::{ColumnStats, SealedSegment, SegmentError, SegmentSnapshot, StatValue, TableLayout};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A large scan's partitions per core: many more than the cores. DataFusion runs a scan's
/// partitions as tasks any worker thread may take, so a core slowed by other work hands some
/// of its share to the others; and a GROUP BY over a high-cardinality key (users, sessions)
/// fed by many small partitions was faster: DISTINCTCOUNT over 1M users in 10.5M rows 265 ms
/// with 32 a core against 333 ms with 4 (BENCHMARKS.md, "Partitions").
const PARTITIONS_PER_CORE: usize = 32;

/// The fewest rows a scan's partition is given (16 batches): each partition costs the
/// operators above the scan a stream and a state of their own, which a short scan (a time
/// range) would feel.
const MIN_PARTITION_ROWS: usize = 16 * 8192;

/// The pieces a scan reads, in order, cut into up to `PARTITIONS_PER_CORE * cores` partitions
/// of about the same number of visible rows, none under `MIN_PARTITION_ROWS` where there are
/// more partitions than cores (and no more than there are batches), a piece split between
/// batches where a partition ends. The count follows the rows read, not the segments: a
/// partition per segment (or per part of one) would cost a query more the more segments a
/// table has.
fn partitioned(pieces: Vec<Piece>, cores: usize) -> Vec<Vec<Piece>> {
    let batches: usize = pieces.iter().map(|p| p.range.len()).sum();
    let total: usize = pieces.iter().map(|p| p.rows).sum();
    let cores = cores.max(1);
    let count = (total / MIN_PARTITION_ROWS).max(cores).min(PARTITIONS_PER_CORE * cores).min(batches).max(1);
    let mut partitions: Vec<Vec<Piece>> = Vec::with_capacity(count);
    let mut current = Vec::new();
    let mut taken = 0;
    // Partition k ends once the rows taken reach k + 1 shares of the total.
    let full = |taken: usize, made: usize| made + 1 < count && taken * count >= (made + 1) * total;
    for mut piece in pieces {
        if piece.valid.is_some() || piece.range.len() <= 1 {
            taken += piece.rows;
            current.push(piece);
        } else {
            // Split the piece between its batches where partitions end (its rows are all
            // visible: a piece of several batches has no validity).
            let mut rows = 0;
            let mut at = piece.range.start;
            while at < piece.range.end {
                let n = piece.batches.get(at).map_or(0, RecordBatch::num_rows);
                rows += n;
                at += 1;
                if full(taken + rows, partitions.len()) && at < piece.range.end {
                    let mut head = piece.clone();
                    head.range.end = at;
                    head.rows = rows;
                    piece.range.start = at;
                    piece.rows -= rows;
                    taken += rows;
                    rows = 0;
                    current.push(head);
                    partitions.push(std::mem::take(&mut current));
                }
            }
            taken += piece.rows;
            current.push(piece);
        }
        if full(taken, partitions.len()) {
            partitions.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        partitions.push(current);
    }
    partitions
}

/// The pieces a scan reads, a partition per segment.
fn by_segment(pieces: Vec<Piece>) -> Vec<Vec<Piece>> {
    let mut partitions: Vec<Vec<Piece>> = Vec::new();
    for piece in pieces {
        match partitions.last_mut() {
            Some(last) if last.last().is_some_and(|p| p.segment == piece.segment) => last.push(piece),
            _ => partitions.push(vec![piece]),
        }
    }
    partitions
}

/// One segment of a table snapshot.
#[derive(Debug, Clone)]
pub enum SegmentData {
    /// A sealed, memory-mapped segment.
    Sealed(Arc<SealedSegment>),
    /// A snapshot of a consuming segment.
    Consuming(SegmentSnapshot),
    /// A sealed segment whose only copy is a Parquet object in the deep store (the cold tier):
    /// pruned by the statistics the manifest keeps, read by DataFusion's Parquet reader.
    Cold(Arc<ColdSegment>),
}

/// A cold segment: where its Parquet object is, and what the manifest knows of it.
#[derive(Clone)]
pub struct ColdSegment {
    /// The deep store.
    pub store: Arc<dyn object_store::ObjectStore>,
    /// The URL the store is registered under in a query's runtime (`scheme://host`, unique to
    /// the store in the process).
    pub store_url: String,
    /// The object's path in the store.
    pub path: object_store::path::Path,
    /// The object's size in bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: usize,
    /// Per-column statistics, in the table's column order.
    pub stats: Vec<ColumnStats>,
}

impl fmt::Debug for ColdSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdSegment").field("path", &self.path).field("rows", &self.rows).finish()
    }
}

impl SegmentData {
    /// Rows the segment (or the consuming segment's snapshot) holds.
    pub fn rows(&self) -> usize {
        match self {
            SegmentData::Sealed(s) => s.meta().rows as usize,
            SegmentData::Consuming(c) => c.rows,
            SegmentData::Cold(c) => c.rows,
        }
    }

    fn stats(&self, column: usize) -> Option<&ColumnStats> {
        match self {
            SegmentData::Sealed(s) => s.meta().columns.get(column).map(|c| &c.stats),
            SegmentData::Consuming(c) => c.stats.get(column),
            SegmentData::Cold(c) => c.stats.get(column),
        }
    }

    /// The segment's batches, shared by the pieces of a scan that read them.
    fn batches(&self) -> std::result::Result<Arc<[RecordBatch]>, (Arc<SealedSegment>, SegmentError)> {
        match self {
            SegmentData::Sealed(s) => s.shared_batches().map_err(|e| (Arc::clone(s), e)),
            SegmentData::Consuming(c) => Ok(Arc::from(c.batches.as_slice())),
            // Read by a Parquet scan of its own (`ShoalTable::cold_scan`).
            SegmentData::Cold(_) => Ok(Arc::from([])),
        }
    }
}

/// Which rows of one segment of an upsert table a query sees.
#[derive(Debug, Clone)]
pub struct RowValidity {
    /// Each primary key's latest row, delete markers included (Pinot's `validDocIds`); a bit per
    /// row of the segment's snapshot.
    pub valid: BooleanBuffer,
    /// `valid` without the delete markers (Pinot's `queryableDocIds`); None when the table has
    /// no `deleteRecordColumn`.
    pub queryable: Option<BooleanBuffer>,
}

/// Which rows of an upsert table a query reads (Pinot's query options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpsertView {
    /// Each key's latest row, deleted keys hidden: the default.
    #[default]
    Latest,
    /// Each key's latest row, delete markers included (`skipUpsertDelete=true`).
    WithDeletes,
    /// Every row ever ingested (`skipUpsert=true`).
    All,
}

impl UpsertView {
    /// The view Pinot's query options ask for.
    pub fn from_options(values: &std::collections::BTreeMap<String, String>) -> UpsertView {
        let on = |k: &str| values.get(k).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if on("skipUpsert") {
            UpsertView::All
        } else if on("skipUpsertDelete") {
            UpsertView::WithDeletes
        } else {
            UpsertView::Latest
        }
    }

    fn mask(self, validity: Option<&RowValidity>) -> Option<&BooleanBuffer> {
        let v = validity?;
        match self {
            UpsertView::All => None,
            UpsertView::WithDeletes => Some(&v.valid),
            UpsertView::Latest => Some(v.queryable.as_ref().unwrap_or(&v.valid)),
        }
    }
}

/// A consistent view of a table: what a query reads.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// The segments.
    pub segments: Vec<SegmentData>,
    /// For an upsert table, the rows each segment's snapshot shows (parallel to `segments`);
    /// empty for any other table.
    pub validity: Vec<Option<RowValidity>>,
}

impl TableSnapshot {
    /// A snapshot of `segments`, every row of which is visible.
    pub fn new(segments: Vec<SegmentData>) -> TableSnapshot {
        TableSnapshot { segments, validity: Vec::new() }
    }
}

/// Supplies snapshots of a table (the engine implements it).
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    /// The table's current segments, sealed and consuming, as one consistent set.
    fn snapshot(&self) -> TableSnapshot;

    /// A sealed segment of a snapshot could not be read (its data is damaged). The query goes
    /// on without it and says so; the source may take the segment out and restore its rows.
    fn unreadable(&self, segment: &Arc<SealedSegment>, error: &SegmentError) {
        let _ = (segment, error);
    }
}

/// What the scans of one query touched, for the Pinot response: the fields of pinot-common
/// `BrokerResponseNative.java` that Shoal can compute, each as pinot-core's combine operator
/// (`BaseCombineOperator.attachExecutionStats`) sums them over segments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows in every segment of the snapshots.
    pub total_docs: u64,
    /// Rows that passed the query's filters and were read on (Pinot's `numDocsScanned`): counted
    /// as the scans emit them, so a LIMIT that ends a scan early counts only what was read. A
    /// scan DataFusion answered from the segments' row counts alone (`count(*)` without a
    /// filter) counts every row of its segments, as Pinot's non-scan operators do.
    pub docs_scanned: u64,
    /// Values read to evaluate the filters (Pinot's `numEntriesScannedInFilter`): Shoal has no
    /// index, so every row a filtered scan reads is tested on every column its filters name.
    pub entries_scanned_in_filter: u64,
    /// Values read after filtering (Pinot's `numEntriesScannedPostFilter`): the rows that passed
    /// times the columns the scan hands on.
    pub entries_scanned_post_filter: u64,
    /// Segments in the snapshots.
    pub segments_queried: u64,
    /// Segments read after pruning.
    pub segments_processed: u64,
    /// Segments read that had at least one row pass the filters.
    pub segments_matched: u64,
    /// Consuming segments in the snapshots.
    pub consuming_queried: u64,
    /// Consuming segments read after pruning.
    pub consuming_processed: u64,
    /// Consuming segments read that had at least one row pass the filters.
    pub consuming_matched: u64,
    /// Oldest last-append time among the consuming segments queried, epoch ms.
    pub min_consuming_freshness_ms: Option<i64>,
    /// Sealed segments left out because their data could not be read, with why.
    pub unreadable: Vec<String>,
}

/// Where the scans of one query record what they read; [`ScanRecorder::stats`] sums it up.
#[derive(Debug, Default)]
pub struct ScanRecorder {
    inner: Mutex<RecorderInner>,
}

#[derive(Debug, Default)]
struct RecorderInner {
    /// What planning the scans found (snapshots, pruning, unreadable segments).
    planned: ScanStats,
    scans: Vec<Arc<ScanCounters>>,
}

impl ScanRecorder {
    /// The statistics so far; complete once the query's stream has ended.
    pub fn stats(&self) -> ScanStats {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = inner.planned.clone();
        for scan in &inner.scans {
            let executed = scan.executed.load(Ordering::Relaxed);
            for segment in &scan.segments {
                // Rows an aggregation took from batch statistics passed without being read:
                // documents scanned with no entry read, as pinot-core's
                // NonScanBasedAggregationOperator counts a segment it answers from metadata.
                let (passed, answered, evaluated) = if executed {
                    (
                        segment.passed.load(Ordering::Relaxed),
                        segment.answered.load(Ordering::Relaxed),
                        segment.evaluated.load(Ordering::Relaxed),
                    )
                } else {
                    // pinot-core NonScanBasedAggregationOperator.java: numDocsScanned is the
                    // segment's rows, no entries scanned.
                    (0, segment.rows, 0)
                };
                let docs = passed + answered;
                stats.docs_scanned += docs;
                stats.entries_scanned_in_filter += evaluated * scan.filter_columns;
                stats.entries_scanned_post_filter += passed * scan.output_columns;
                if docs > 0 {
                    stats.segments_matched += 1;
                    if segment.consuming {
                        stats.consuming_matched += 1;
                    }
                }
            }
        }
        stats
    }

    fn record(&self, planned: ScanStats, counters: Arc<ScanCounters>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let total = &mut inner.planned;
        total.total_docs += planned.total_docs;
        total.segments_queried += planned.segments_queried;
        total.segments_processed += planned.segments_processed;
        total.consuming_queried += planned.consuming_queried;
        total.consuming_processed += planned.consuming_processed;
        if let Some(t) = planned.min_consuming_freshness_ms {
            total.min_consuming_freshness_ms = Some(total.min_consuming_freshness_ms.map_or(t, |m| m.min(t)));
        }
        total.unreadable.extend(planned.unreadable);
        inner.scans.push(counters);
    }
}

/// A table as DataFusion sees it.
#[derive(Debug)]
pub struct ShoalTable {
    layout: Arc<TableLayout>,
    source: Arc<dyn SnapshotSource>,
    /// Where scans record what they touch (None: nowhere, for a provider that lives long).
    recorder: Option<Arc<ScanRecorder>>,
    prune: bool,
    /// The cores the scan is cut for ([`ShoalTable::with_scan_cores`]).
    scan_cores: Option<usize>,
    view: UpsertView,
}

impl ShoalTable {
    /// A provider over `source`, recording what its scans touch into `recorder`.
    pub fn new(
        layout: Arc<TableLayout>,
        source: Arc<dyn SnapshotSource>,
        recorder: Arc<ScanRecorder>,
    ) -> Self {
        ShoalTable {
            layout,
            source,
            recorder: Some(recorder),
            prune: true,
            view: UpsertView::Latest,
            scan_cores: None,
        }
    }

    /// A provider over `source` that records nothing: for a context that outlives one query
    /// (an app's own `SessionContext`).
    pub fn unrecorded(layout: Arc<TableLayout>, source: Arc<dyn SnapshotSource>) -> Self {
        ShoalTable { layout, source, recorder: None, prune: true, view: UpsertView::Latest, scan_cores: None }
    }

    /// Whether scans use statistics (on by default): skip segments and batches by them, and
    /// offer aggregations the statistics of the batches that pass whole. Off is for benchmarks
    /// and diagnosis: every row is read, and the filters still give the same rows.
    pub fn with_pruning(mut self, on: bool) -> Self {
        self.prune = on;
        self
    }

    /// The cores a scan is cut for: at least a partition each, up to 32 each for a large scan.
    /// Without it, the session's target partitions count as the cores (an app's own session);
    /// [`crate::QueryEngine`] plans more partitions than cores for its repartitioned operators,
    /// and sets its cores here.
    pub fn with_scan_cores(mut self, cores: usize) -> Self {
        self.scan_cores = Some(cores.max(1));
        self
    }

    /// Which rows of an upsert table the scans read (each key's latest by default).
    pub fn with_upsert_view(mut self, view: UpsertView) -> Self {
        self.view = view;
        self
    }

    /// The same table for one query: its scans record into `recorder` and read `view`.
    pub(crate) fn for_query(&self, recorder: Arc<ScanRecorder>, view: UpsertView) -> ShoalTable {
        ShoalTable {
            layout: Arc::clone(&self.layout),
            source: Arc::clone(&self.source),
            recorder: Some(recorder),
            prune: self.prune,
            scan_cores: self.scan_cores,
            view,
        }
    }
}

/// Whether the scan can evaluate `filter` itself: anything but subqueries, outer references,
/// placeholders and volatile functions, which DataFusion keeps above the scan.
fn evaluable(filter: &Expr) -> bool {
    !filter.is_volatile()
        && !filter
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::Placeholder(_)
                ))
            })
            .unwrap_or(true)
}

#[async_trait]
impl TableProvider for ShoalTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.layout.arrow)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // The scan applies the filters itself, segment by segment, so that it can count the rows
        // that pass in each (Pinot's numDocsScanned and numSegmentsMatched); they also prune
        // whole segments by their statistics.
        Ok(filters
            .iter()
            .map(|f| {
                if evaluable(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.source.snapshot();
        let filter = conjunction(filters.iter().cloned());
        let filter_columns = filter.as_ref().map_or(0, |f| f.column_refs().len() as u64);
        let predicate = match &filter {
            Some(f) => {
                let df = DFSchema::try_from(self.schema().as_ref().clone())?;
                Some(state.create_physical_expr(f.clone(), &df)?)
            }
            None => None,
        };
        let pruning = Pruning::new(predicate.as_ref(), &self.schema(), self.prune);
        let keep = pruning.may_match(&ContainerStatistics::segments(&self.layout, &snapshot.segments));
        let mut pieces: Vec<Piece> = Vec::new();
        let mut counted = Vec::new();
        let mut cold = Vec::new();
        let mut stats = ScanStats::default();
        let mut kept: Vec<Kept<'_>> = Vec::new();
        for (at, (segment, keep)) in snapshot.segments.iter().zip(&keep).enumerate() {
            let rows = segment.rows() as u64;
            let mask = self.view.mask(snapshot.validity.get(at).and_then(Option::as_ref));
            let consuming = matches!(segment, SegmentData::Consuming(_));
            stats.total_docs += rows;
            stats.segments_queried += 1;
            if let SegmentData::Consuming(c) = segment {
                stats.consuming_queried += 1;
                if let Some(t) = c.last_append_ms {
                    stats.min_consuming_freshness_ms =
                        Some(stats.min_consuming_freshness_ms.map_or(t, |m: i64| m.min(t)));
                }
            }
            let visible = mask.map(BooleanBuffer::count_set_bits);
            // A segment with no visible row is pruned, as Pinot prunes an upsert table's
            // segments by their valid documents.
            if !keep || visible == Some(0) {
                continue;
            }
            stats.segments_processed += 1;
            if consuming {
                stats.consuming_processed += 1;
            }
            if let SegmentData::Cold(c) = segment {
                cold.push((counted.len(), Arc::clone(c)));
                counted.push(SegmentCount {
                    consuming: false,
                    rows,
                    evaluated: AtomicU64::new(0),
                    passed: AtomicU64::new(0),
                    answered: AtomicU64::new(0),
                });
                continue;
            }
            let batches = if rows == 0 {
                Arc::from([])
            } else {
                match segment.batches() {
                    Ok(b) => b,
                    Err((sealed, e)) => {
                        // One damaged segment does not fail the query: it is left out and named.
                        tracing::error!(segment = %sealed.path().display(), error = %e, "a segment could not be read; the query goes on without it");
                        stats.unreadable.push(e.to_string());
                        self.source.unreadable(&sealed, &e);
                        continue;
                    }
                }
            };
            let index = counted.len();
            counted.push(SegmentCount {
                consuming,
                // The rows a `count(*)` answered from statistics counts: the visible ones.
                rows: visible.map_or(rows, |v| v as u64),
                evaluated: AtomicU64::new(0),
                passed: AtomicU64::new(0),
                answered: AtomicU64::new(0),
            });
            // Where aggregations may find the statistics of the batches that pass whole.
            let statistics = match segment {
                _ if !self.prune => None,
                SegmentData::Sealed(s) => Some(BatchStatistics::Sealed(Arc::clone(s))),
                SegmentData::Consuming(c) if c.batch_stats.len() == batches.len() => {
                    Some(BatchStatistics::Frozen(c.batch_stats.iter().cloned().collect()))
                }
                _ => None,
            };
            kept.push(Kept { segment, index, batches, mask, statistics });
        }
        // Inside the kept segments the filters are tried on each batch's statistics: a batch
        // none of whose rows can pass is not read, one whose rows all pass is not filtered. The
        // batches' statistics are computed from their own rows (not merged, nor read from a
        // file), so that "every row passes" rests on exact bounds. The batches of every kept
        // segment are tried together, once for each of the two questions.
        let containers: usize = kept.iter().map(|k| k.batches.len()).sum();
        let (batch_keep, batch_pass) = if predicate.is_some() {
            let statistics = ContainerStatistics::batches(
                &self.layout,
                kept.iter().map(|k| (k.segment, k.batches.len())).collect(),
            );
            (pruning.may_match(&statistics), pruning.passes_all(&statistics))
        } else {
            (vec![true; containers], vec![false; containers])
        };
        let mut decided = batch_keep.into_iter().zip(batch_pass);
        for Kept { index, batches, mask, statistics, .. } in kept {
            let mut read_visible = 0;
            let mut start = 0;
            for (at, (keep, pass_all)) in decided.by_ref().take(batches.len()).enumerate() {
                let Some(n) = batches.get(at).map(RecordBatch::num_rows) else { break };
                // A row past the validity's end was appended after it was taken: not visible.
                let piece_mask = mask.map(|m| {
                    if start + n <= m.len() {
                        return m.slice(start, n);
                    }
                    let have = m.len().saturating_sub(start).min(n);
                    let mut bits = arrow::array::BooleanBufferBuilder::new(n);
                    bits.append_buffer(&m.slice(start.min(m.len()), have));
                    bits.append_n(n - have, false);
                    bits.finish()
                });
                start += n;
                let visible = piece_mask.as_ref().map_or(n, BooleanBuffer::count_set_bits);
                if visible == 0 || !keep {
                    // No row of this batch is visible, or none can pass the filters: not read at all.
                    continue;
                }
                read_visible += visible as u64;
                let valid = piece_mask.filter(|_| visible < n);
                // The batch joins the piece before it when both are read alike.
                if let Some(last) = pieces.last_mut()
                    && valid.is_none()
                    && last.valid.is_none()
                    && last.segment == index
                    && last.pass_all == pass_all
                    && last.range.end == at
                {
                    last.range.end = at + 1;
                    last.rows += visible;
                    continue;
                }
                // Every row of the batch is read and passes: an aggregation may take it from its
                // statistics.
                let whole = valid.is_none() && (pass_all || predicate.is_none());
                pieces.push(Piece {
                    batches: Arc::clone(&batches),
                    range: at..at + 1,
                    segment: index,
                    valid,
                    pass_all,
                    rows: visible,
                    statistics: statistics.clone().filter(|_| whole),
                });
            }
            // A `count(*)` answered from statistics counts the rows of the batches read.
            counted[index].rows = read_visible;
        }
        let partitions = match limit {
            // Each partition stops at the LIMIT: one per segment, as Pinot's servers stop each
            // segment's scan there (numDocsScanned counts what they read).
            Some(_) => by_segment(pieces),
            None => {
                partitioned(pieces, self.scan_cores.unwrap_or_else(|| state.config().target_partitions()))
            }
        };
        let output_columns = projection.map_or(self.schema().fields().len(), Vec::len) as u64;
        let counters = Arc::new(ScanCounters {
            segments: counted,
            filter_columns,
            output_columns,
            executed: AtomicBool::new(false),
        });
        if let Some(recorder) = &self.recorder {
            recorder.record(stats, Arc::clone(&counters));
        }
        let local_scan = !partitions.is_empty() || cold.is_empty();
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if local_scan {
            plans.push(Arc::new(SegmentScanExec::new(
                self.schema(),
                partitions,
                projection.cloned(),
                predicate.clone(),
                limit,
                Arc::clone(&counters),
            )?));
        }
        for (index, segment) in cold {
            plans.push(self.cold_scan(state, &segment, index, projection, predicate.as_ref(), &counters)?);
        }
        match plans.len() {
            1 => Ok(plans.remove(0)),
            _ => Ok(datafusion::physical_plan::union::UnionExec::try_new(plans)?),
        }
    }
}

impl ShoalTable {
    /// The scan of one cold segment: DataFusion's Parquet reader over its object (row groups
    /// and pages pruned by the predicate with the file's statistics and page index), the
    /// filter, the projection, and the counts.
    fn cold_scan(
        &self,
        state: &dyn Session,
        segment: &ColdSegment,
        index: usize,
        projection: Option<&Vec<usize>>,
        predicate: Option<&Arc<dyn PhysicalExpr>>,
        counters: &Arc<ScanCounters>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::datasource::listing::PartitionedFile;
        use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
        use datafusion::datasource::source::DataSourceExec;
        use datafusion::execution::object_store::ObjectStoreUrl;
        use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
        use datafusion::physical_plan::filter::FilterExec;
        use datafusion::physical_plan::projection::ProjectionExec;
        let schema = self.schema();
        let url = ObjectStoreUrl::parse(&segment.store_url)?;
        state.runtime_env().register_object_store(url.as_ref(), Arc::clone(&segment.store));
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..schema.fields().len()).collect());
        // Read the projected columns and those the filter names.
        let mut read = wanted.clone();
        if let Some(p) = predicate {
            let mut named: Vec<usize> =
                collect_columns(p).iter().filter_map(|c| schema.index_of(c.name()).ok()).collect();
            named.sort_unstable();
            for i in named {
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let mut source = ParquetSource::new(Arc::clone(&schema)).with_enable_page_index(true);
        if let Some(p) = predicate {
            source = source.with_predicate(Arc::clone(p));
        }
        let file = PartitionedFile::new(segment.path.to_string(), segment.bytes);
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(vec![FileGroup::new(vec![file])])
            .with_projection_indices(Some(read.clone()))?
            .build();
        let mut plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        if let Some(p) = predicate {
            let p = reassign_expr_columns(Arc::clone(p), &plan.schema())?;
            plan = Arc::new(FilterExec::try_new(p, plan)?);
        }
        if read.len() != wanted.len() {
            let read_schema = plan.schema();
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = wanted
                .iter()
                .enumerate()
                .map(|(at, &i)| {
                    let name = schema.field(i).name().clone();
                    let column = datafusion::physical_expr::expressions::Column::new(&name, at);
                    debug_assert_eq!(read_schema.field(at).name(), &name);
                    (Arc::new(column) as Arc<dyn PhysicalExpr>, name)
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(Arc::new(ColdCountExec::new(plan, index, Arc::clone(counters), predicate.is_some())))
    }
}

/// A segment a scan keeps after pruning by the segments' statistics.
struct Kept<'a> {
    segment: &'a SegmentData,
    /// Its place in the scan's counts.
    index: usize,
    batches: Arc<[RecordBatch]>,
    /// The rows visible to the query (None: every row).
    mask: Option<&'a BooleanBuffer>,
    /// Its batches' statistics, for aggregations (None with pruning off).
    statistics: Option<BatchStatistics>,
}

/// A scan's filters as pruning reads them, built once per scan and tried on the statistics
/// of its segments, then of each kept segment's batches.
struct Pruning {
    /// Which containers may hold a row that passes (None: every one may).
    filter: Option<Arc<PruningPredicate>>,
    /// The filters' negation: which containers may hold a row that fails (None: every one may).
    negation: Option<Arc<PruningPredicate>>,
    /// The columns the filters read: every row passes only where none of them holds a null.
    columns: Vec<Column>,
}

impl Pruning {
    /// The pruning of `predicate` over `schema`; with `on` false it keeps every container and
    /// passes none whole.
    fn new(predicate: Option<&Arc<dyn PhysicalExpr>>, schema: &SchemaRef, on: bool) -> Pruning {
        let none = Pruning { filter: None, negation: None, columns: Vec::new() };
        let Some(expr) = predicate.filter(|_| on) else { return none };
        let build = |e: Arc<dyn PhysicalExpr>| {
            PruningPredicateBuilder::new().with_file_schema(Arc::clone(schema)).build(e)
        };
        Pruning {
            filter: build(Arc::clone(expr)),
            negation: negate(expr, schema).and_then(build),
            columns: datafusion::physical_expr::utils::collect_columns(expr)
                .iter()
                .map(|c| Column::new_unqualified(c.name()))
                .collect(),
        }
    }

    /// Which containers of `statistics` may hold rows that pass.
    fn may_match(&self, statistics: &ContainerStatistics<'_>) -> Vec<bool> {
        let all = vec![true; statistics.num_containers()];
        match &self.filter {
            Some(filter) => filter.prune(statistics).unwrap_or(all),
            None => all,
        }
    }

    /// Which containers of `statistics` every row of passes: no row has a null in a column the
    /// filters read, and their negation cannot hold for any row. The scan does not evaluate the
    /// filters there (as a database skips a zone map's "always true" filter, and Pinot a
    /// predicate its column's range answers for the whole segment).
    fn passes_all(&self, statistics: &ContainerStatistics<'_>) -> Vec<bool> {
        let none = vec![false; statistics.num_containers()];
        let Some(negation) = &self.negation else { return none };
        let Ok(mut passes) = negation.prune(statistics) else { return none };
        for p in &mut passes {
            *p = !*p;
        }
        for column in &self.columns {
            let nulls = statistics.null_counts(column);
            let Some(nulls) = nulls.as_ref().and_then(|n| n.as_any().downcast_ref::<UInt64Array>()) else {
                return none;
            };
            for (i, p) in passes.iter_mut().enumerate() {
                *p &= nulls.is_valid(i) && nulls.value(i) == 0;
            }
        }
        passes
    }
}

/// The negation of a filter made of comparisons, IN lists and LIKEs between a bare column and
/// non-null literals, joined by AND, OR and NOT (the forms pruning reads), with NOT pushed down
/// to them; None for anything else. Only such leaves are negated: with no null in the column,
/// each is true or false on every row, so the negation passes exactly the rows the filter
/// fails (a cast or a function of the column may give NULL where the column has none, and a
/// NULL literal makes both sides NULL).
fn negate(expr: &Arc<dyn PhysicalExpr>, schema: &arrow::datatypes::Schema) -> Option<Arc<dyn PhysicalExpr>> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, InListExpr, LikeExpr, NotExpr};
    if !simple(expr) {
        return None;
    }
    if let Some(not) = expr.downcast_ref::<NotExpr>() {
        return Some(Arc::clone(not.arg()));
    }
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        let op = match b.op() {
            Operator::And | Operator::Or => {
                let (l, r) = (negate(b.left(), schema)?, negate(b.right(), schema)?);
                let op = if *b.op() == Operator::And { Operator::Or } else { Operator::And };
                return Some(Arc::new(BinaryExpr::new(l, op, r)));
            }
            Operator::Eq => Operator::NotEq,
            Operator::NotEq => Operator::Eq,
            Operator::Lt => Operator::GtEq,
            Operator::LtEq => Operator::Gt,
            Operator::Gt => Operator::LtEq,
            Operator::GtEq => Operator::Lt,
            _ => return None,
        };
        return Some(Arc::new(BinaryExpr::new(Arc::clone(b.left()), op, Arc::clone(b.right()))));
    }
    if let Some(i) = expr.downcast_ref::<InListExpr>() {
        let list = i.list().to_vec();
        return datafusion::physical_expr::expressions::in_list(
            Arc::clone(i.expr()),
            list,
            &!i.negated(),
            schema,
        )
        .ok();
    }
    if let Some(l) = expr.downcast_ref::<LikeExpr>() {
        return Some(Arc::new(LikeExpr::new(
            !l.negated(),
            l.case_insensitive(),
            Arc::clone(l.expr()),
            Arc::clone(l.pattern()),
        )));
    }
    None
}

/// Whether `negate` may negate `expr`: comparisons, IN lists and LIKEs of a bare column with
/// non-null literals, under AND, OR and NOT.
fn simple(expr: &Arc<dyn PhysicalExpr>) -> bool {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, Column as ColumnExpr, InListExpr, LikeExpr, Literal, NotExpr,
    };
    let column = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<ColumnExpr>().is_some();
    let literal =
        |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null());
    if let Some(not) = expr.downcast_ref::<NotExpr>() {
        return simple(not.arg());
    }
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        return match b.op() {
            Operator::And | Operator::Or => simple(b.left()) && simple(b.right()),
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => {
                (column(b.left()) && literal(b.right())) || (literal(b.left()) && column(b.right()))
            }
            _ => false,
        };
    }
    if let Some(i) = expr.downcast_ref::<InListExpr>() {
        return column(i.expr()) && i.list().iter().all(literal);
    }
    if let Some(l) = expr.downcast_ref::<LikeExpr>() {
        return column(l.expr()) && literal(l.pattern());
    }
    false
}

/// Column statistics per container (a table's segments, or one segment's batches) as
/// DataFusion's pruning reads them.
struct ContainerStatistics<'a> {
    layout: &'a TableLayout,
    containers: usize,
    /// Column `index`'s statistics in each container (None: not known).
    column: Box<dyn Fn(usize) -> Vec<Option<&'a ColumnStats>> + 'a>,
    /// Rows per container, where known.
    rows: Option<Vec<u64>>,
}

impl<'a> ContainerStatistics<'a> {
    /// The segments of a snapshot, by the statistics they keep.
    fn segments(layout: &'a TableLayout, segments: &'a [SegmentData]) -> Self {
        ContainerStatistics {
            layout,
            containers: segments.len(),
            column: Box::new(move |index| segments.iter().map(|s| s.stats(index)).collect()),
            rows: Some(segments.iter().map(|s| s.rows() as u64).collect()),
        }
    }

    /// The batches of some segments, each given with its number of batches, one container
    /// per batch in order: a sealed segment's statistics are computed per column on first
    /// use, a consuming segment's kept as it freezes.
    fn batches(layout: &'a TableLayout, segments: Vec<(&'a SegmentData, usize)>) -> Self {
        let containers = segments.iter().map(|(_, n)| n).sum();
        let column = move |index: usize| {
            let mut all: Vec<Option<&ColumnStats>> = Vec::with_capacity(containers);
            for &(segment, batches) in &segments {
                match segment {
                    SegmentData::Sealed(s) => match s.batch_stats(index) {
                        Ok(b) if b.len() == batches => all.extend(b.iter().map(Some)),
                        _ => all.extend(std::iter::repeat_n(None, batches)),
                    },
                    SegmentData::Consuming(c) if c.batch_stats.len() == batches => {
                        all.extend(c.batch_stats.iter().map(|b| b.get(index)));
                    }
                    _ => all.extend(std::iter::repeat_n(None, batches)),
                }
            }
            all
        };
        ContainerStatistics { layout, containers, column: Box::new(column), rows: None }
    }

    /// A min or max per container (null where not known).
    fn values(&self, column: &Column, pick: impl Fn(&ColumnStats) -> Option<&StatValue>) -> Option<ArrayRef> {
        let index = self.layout.column_index(&column.name)?;
        // A dictionary column's bounds are its values' type; DataFusion casts them to the
        // column's.
        let data_type = match self.layout.arrow.field(index).data_type() {
            DataType::Dictionary(_, values) => values.as_ref().clone(),
            t => t.clone(),
        };
        let stats = (self.column)(index);
        let bounds = stats.iter().map(|s| s.and_then(&pick));
        let ints = || bounds.clone().map(|v| if let Some(StatValue::Int(i)) = v { Some(*i) } else { None });
        // The common types are built straight into their arrays; the others through scalars.
        let direct: Option<ArrayRef> = match &data_type {
            DataType::Int64 => Some(Arc::new(Int64Array::from_iter(ints()))),
            DataType::Timestamp(TimeUnit::Millisecond, tz) => {
                Some(Arc::new(TimestampMillisecondArray::from_iter(ints()).with_timezone_opt(tz.clone())))
            }
            DataType::Float64 => Some(Arc::new(Float64Array::from_iter(
                bounds.clone().map(|v| if let Some(StatValue::Float(f)) = v { Some(*f) } else { None }),
            ))),
            DataType::Utf8 => Some(Arc::new(StringArray::from_iter(
                bounds.clone().map(|v| if let Some(StatValue::Str(s)) = v { Some(s.as_str()) } else { None }),
            ))),
            _ => None,
        };
        if direct.is_some() {
            return direct;
        }
        let scalars: Vec<ScalarValue> = bounds
            .map(|v| {
                v.and_then(|v| to_scalar(v, &data_type))
                    .unwrap_or_else(|| ScalarValue::try_from(&data_type).unwrap_or(ScalarValue::Null))
            })
            .collect();
        if scalars.is_empty() {
            return Some(new_null_array(&data_type, 0));
        }
        ScalarValue::iter_to_array(scalars).ok()
    }
}

impl PruningStatistics for ContainerStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.containers
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let index = self.layout.column_index(&column.name)?;
        Some(Arc::new(UInt64Array::from_iter(
            (self.column)(index).into_iter().map(|c| c.map(|c| c.null_count)),
        )))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.rows.as_ref().map(|r| Arc::new(UInt64Array::from_iter_values(r.iter().copied())) as ArrayRef)
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &HashSet<ScalarValue>,
    ) -> Option<arrow::array::BooleanArray> {
        None
    }
}

pub(crate) fn to_scalar(v: &StatValue, t: &DataType) -> Option<ScalarValue> {
    Some(match (v, t) {
        (StatValue::Int(i), DataType::Int32) => ScalarValue::Int32(Some(i32::try_from(*i).ok()?)),
        (StatValue::Int(i), DataType::Int64) => ScalarValue::Int64(Some(*i)),
        (StatValue::Int(i), DataType::Timestamp(_, tz)) => {
            ScalarValue::TimestampMillisecond(Some(*i), tz.clone())
        }
        (StatValue::Float(f), DataType::Float32) => ScalarValue::Float32(Some(*f as f32)),
        (StatValue::Float(f), DataType::Float64) => ScalarValue::Float64(Some(*f)),
        (StatValue::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (StatValue::Str(s), DataType::Utf8) => ScalarValue::Utf8(Some(s.clone())),
        (StatValue::Decimal(d), DataType::Decimal128(_, _)) => {
            ScalarValue::Decimal128(Some(d.parse().ok()?), DECIMAL_PRECISION, DECIMAL_SCALE)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    /// `rows` rows as batches of `batch` rows (the last may be shorter).
    fn segment(rows: usize, batch: usize) -> Arc<[RecordBatch]> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        (0..rows)
            .step_by(batch)
            .map(|from| {
                let values: Int64Array =
                    (from as i64..(from + batch).min(rows) as i64).collect::<Vec<_>>().into();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()
            })
            .collect()
    }

    fn whole(batches: &Arc<[RecordBatch]>, segment: usize) -> Piece {
        Piece {
            batches: Arc::clone(batches),
            range: 0..batches.len(),
            segment,
            valid: None,
            pass_all: false,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            statistics: None,
        }
    }

    /// Every value the partitions read, in order, and each partition's rows.
    fn read(partitions: &[Vec<Piece>]) -> (Vec<i64>, Vec<usize>) {
        let mut values = Vec::new();
        let mut rows = Vec::new();
        for partition in partitions {
            let mut n = 0;
            for piece in partition {
                let counted: usize = piece.range.clone().map(|at| piece.batches[at].num_rows()).sum();
                assert_eq!(counted, piece.rows, "a piece's rows are its batches' rows");
                for at in piece.range.clone() {
                    let column = piece.batches[at].column(0).as_primitive::<arrow::datatypes::Int64Type>();
                    values.extend(column.values().iter());
                }
                n += piece.rows;
            }
            rows.push(n);
        }
        (values, rows)
    }

    #[test]
    fn a_scan_is_cut_into_partitions_per_core_of_even_rows_whatever_its_segments() {
        // Twelve segments of 100 batches: 64 partitions on two cores, not one per segment.
        let segments: Vec<_> = (0..12).map(|_| segment(100 * 8192, 8192)).collect();
        let pieces: Vec<Piece> = segments.iter().enumerate().map(|(i, s)| whole(s, i)).collect();
        let partitions = partitioned(pieces, 2);
        assert_eq!(partitions.len(), PARTITIONS_PER_CORE * 2);
        let (values, rows) = read(&partitions);
        assert_eq!(values.len(), 12 * 100 * 8192, "every row once");
        // 1,200 batches in 64 partitions: 18 or 19 batches each.
        assert!(rows.iter().all(|&r| r == 18 * 8192 || r == 19 * 8192), "even partitions: {rows:?}");
        // In each segment's order (each segment counts from 0).
        let mut expected = Vec::new();
        for _ in 0..12 {
            expected.extend(0..100 * 8192);
        }
        assert_eq!(values, expected);

        // Fewer rows than two partitions' least: a partition a core, however small.
        let small = segment(3 * 8192, 8192);
        let partitions = partitioned(vec![whole(&small, 0)], 2);
        assert_eq!(partitions.len(), 2);
        assert_eq!(read(&partitions).0, (0..3 * 8192).collect::<Vec<i64>>());
        // Rows for five partitions of the least: five, not the 64 two cores could take.
        let five = segment(5 * MIN_PARTITION_ROWS + 100, 8192);
        let partitions = partitioned(vec![whole(&five, 0)], 2);
        assert_eq!(partitions.len(), 5);
        let (values, rows) = read(&partitions);
        assert_eq!(values, (0..5 * MIN_PARTITION_ROWS as i64 + 100).collect::<Vec<i64>>());
        assert!(rows.iter().all(|&r| r >= MIN_PARTITION_ROWS - 8192), "{rows:?}");
        // Small batches: no more partitions than batches.
        let few = segment(3 * MIN_PARTITION_ROWS, 2 * MIN_PARTITION_ROWS);
        assert_eq!(partitioned(vec![whole(&few, 0)], 2).len(), 2);

        // Uneven pieces and a piece with a validity (an upsert table's): the validity's piece is
        // kept whole, every row is read once, in order.
        let a = segment(20 * 8192 + 100, 8192);
        let b = segment(8192, 8192);
        let mut masked = whole(&b, 1);
        masked.valid = Some(BooleanBuffer::from(vec![true; 8192]));
        let partitions = partitioned(vec![whole(&a, 0), masked, whole(&a, 2)], 1);
        assert_eq!(partitions.len(), 2, "336,072 rows: two partitions of the least");
        let (values, rows) = read(&partitions);
        let mut expected: Vec<i64> = (0..20 * 8192 + 100).collect();
        expected.extend(0..8192);
        expected.extend(0..20 * 8192 + 100);
        assert_eq!(values, expected);
        let total: usize = rows.iter().sum();
        assert!(rows.iter().all(|&r| r.abs_diff(total / rows.len()) <= 8192), "{rows:?}");

        // Nothing to read: no partition (the scan still shows DataFusion one, empty).
        assert!(partitioned(Vec::new(), 2).is_empty());
    }
}
