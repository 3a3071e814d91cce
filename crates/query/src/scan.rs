//! The scan of one table snapshot: its segments' batches, one partition per segment (large ones
//! split), filtered by the query's filters and cut at its LIMIT partition by partition, counting
//! per segment the rows the filters were evaluated on and the rows that passed. The counts are
//! Pinot's numDocsScanned, numEntriesScannedInFilter/PostFilter and numSegmentsMatched.

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::buffer::BooleanBuffer;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::coalesce::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coop::cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream, StatisticsArgs,
};
use shoal_segment::{ColumnStats, SealedSegment};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Consecutive batches of one segment that a scan reads alike: all with the filters evaluated,
/// or all passing by statistics. The batches are held as their segment's batches (shared by
/// all the segment's pieces) and a range of them, so a scan over many segments costs a
/// reference count per piece, not a clone of each batch's columns. For an upsert table a piece
/// is one batch with which of its rows are visible.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub batches: Arc<[RecordBatch]>,
    /// The batches read, as indices into `batches`.
    pub range: std::ops::Range<usize>,
    /// The segment's index in the scan's counters.
    pub segment: usize,
    /// Which rows of the piece's one batch are visible (None: all).
    pub valid: Option<BooleanBuffer>,
    /// Statistics show that every row passes the scan's filters: they are not evaluated.
    pub pass_all: bool,
    /// Visible rows.
    pub rows: usize,
    /// The statistics of the batches, where every row of them is read and passes (no
    /// validity, and no filter or one that passes them whole): an aggregation may take the
    /// batches from their statistics instead of reading them (`crate::from_statistics`).
    pub statistics: Option<BatchStatistics>,
}

/// Where the exact statistics of a segment's batches are, by batch and column.
#[derive(Debug, Clone)]
pub(crate) enum BatchStatistics {
    /// A sealed segment's, computed per column on first use and kept.
    Sealed(Arc<SealedSegment>),
    /// A consuming segment's, kept as its batches freeze (and computed for its tail).
    Frozen(Arc<[Arc<[ColumnStats]>]>),
}

impl BatchStatistics {
    /// The statistics of column `column` in batch `batch` (None where not known).
    pub(crate) fn get(&self, batch: usize, column: usize) -> Option<&ColumnStats> {
        match self {
            BatchStatistics::Sealed(s) => s.batch_stats(column).ok()?.get(batch),
            BatchStatistics::Frozen(f) => f.get(batch)?.get(column),
        }
    }
}

/// One segment a scan reads, and what the scan found in it while it ran.
#[derive(Debug)]
pub(crate) struct SegmentCount {
    pub consuming: bool,
    pub rows: u64,
    /// Rows the filters were evaluated on.
    pub evaluated: AtomicU64,
    /// Rows that passed the filters and were emitted.
    pub passed: AtomicU64,
    /// Rows an aggregation took from their batches' statistics: they passed, and were not read.
    pub answered: AtomicU64,
}

/// What one scan reads, counted while it runs.
#[derive(Debug)]
pub(crate) struct ScanCounters {
    pub segments: Vec<SegmentCount>,
    /// Columns the scan's filters name (0 without filters).
    pub filter_columns: u64,
    /// Columns the scan emits.
    pub output_columns: u64,
    /// Set when any partition of the scan ran; a scan that never ran was answered from
    /// statistics (DataFusion's `count(*)` from row counts) or was not needed.
    pub executed: AtomicBool,
}

/// The leaf operator of a table scan.
#[derive(Debug)]
pub(crate) struct SegmentScanExec {
    /// The table's schema: the batches' and the predicate's.
    table_schema: SchemaRef,
    /// Per partition, the batches it reads, in order.
    partitions: Vec<Vec<Piece>>,
    projection: Option<Vec<usize>>,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Most rows each partition emits.
    limit: Option<usize>,
    counters: Arc<ScanCounters>,
    properties: Arc<PlanProperties>,
}

impl SegmentScanExec {
    pub(crate) fn new(
        table_schema: SchemaRef,
        partitions: Vec<Vec<Piece>>,
        projection: Option<Vec<usize>>,
        predicate: Option<Arc<dyn PhysicalExpr>>,
        limit: Option<usize>,
        counters: Arc<ScanCounters>,
    ) -> Result<SegmentScanExec> {
        let schema = match &projection {
            Some(p) => Arc::new(table_schema.project(p)?),
            None => Arc::clone(&table_schema),
        };
        // DataFusion expects at least one partition, even of nothing.
        let count = partitions.len().max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(count),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(SegmentScanExec {
            table_schema,
            partitions,
            projection,
            predicate,
            limit,
            counters,
            properties: Arc::new(properties),
        })
    }

    /// Per partition, the pieces it reads.
    pub(crate) fn partitions(&self) -> &[Vec<Piece>] {
        &self.partitions
    }

    pub(crate) fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }

    pub(crate) fn counters(&self) -> &Arc<ScanCounters> {
        &self.counters
    }

    /// The same scan over other pieces (some of this one's), in as many partitions.
    pub(crate) fn with_partitions(&self, partitions: Vec<Vec<Piece>>) -> Result<SegmentScanExec> {
        SegmentScanExec::new(
            Arc::clone(&self.table_schema),
            partitions,
            self.projection.clone(),
            self.predicate.clone(),
            self.limit,
            Arc::clone(&self.counters),
        )
    }

    fn partition_rows(&self, partition: usize) -> usize {
        let rows: usize =
            self.partitions.get(partition).map_or(0, |p| p.iter().map(|piece| piece.rows).sum());
        self.limit.map_or(rows, |l| rows.min(l))
    }
}

impl DisplayAs for SegmentScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SegmentScanExec: segments={}, partitions={}",
            self.counters.segments.len(),
            self.partitions.len()
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p.iter().map(|&i| self.table_schema.field(i).name().as_str()).collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        if let Some(p) = &self.predicate {
            write!(f, ", predicate={p}")?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SegmentScanExec {
    fn name(&self) -> &str {
        "SegmentScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.predicate {
            Some(p) => f(p),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.counters.executed.store(true, Ordering::Relaxed);
        let schema = self.schema();
        let batch_size = context.session_config().batch_size().max(1);
        let batches: VecDeque<Piece> = match self.partitions.get(partition) {
            Some(p) => p.iter().cloned().collect(),
            None if partition == 0 => VecDeque::new(),
            None => {
                return Err(DataFusionError::Internal(format!(
                    "SegmentScanExec has {} partitions, not {partition}",
                    self.partitions.len()
                )));
            }
        };
        // Without a LIMIT, the rows that pass are gathered into full batches (a filter that
        // keeps few rows would otherwise hand on many small ones).
        let coalescer = self.limit.is_none().then(|| BatchCoalescer::new(Arc::clone(&schema), batch_size));
        let rows = PartitionRows {
            batches,
            coalescer,
            pending: None,
            offset: 0,
            batch_size,
            projection: self.projection.clone().map(Projector::new),
            predicate: match &self.predicate {
                Some(p) => narrow(p).map(|(columns, p)| Some((Projector::new(columns), p)))?,
                None => None,
            },
            remaining: self.limit.unwrap_or(usize::MAX),
            counters: Arc::clone(&self.counters),
        };
        Ok(Box::pin(cooperative(RecordBatchStreamAdapter::new(schema, futures::stream::iter(rows)))))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let rows = match args.partition() {
            Some(p) => self.partition_rows(p),
            None => (0..self.partitions.len()).map(|p| self.partition_rows(p)).sum(),
        };
        // Without a filter, or where statistics show that every row read passes it (the
        // segments that none could pass are not read), the count is exact and DataFusion may
        // answer `count(*)` from it; otherwise it is what the filter may let through at most.
        let pass_all = self.partitions.iter().flatten().all(|p| p.pass_all);
        let rows = if self.predicate.is_none() || pass_all {
            Precision::Exact(rows)
        } else {
            Precision::Inexact(rows)
        };
        Ok(Arc::new(Statistics::new_unknown(&self.schema()).with_num_rows(rows)))
    }
}

/// The rows of one partition: its batches in slices of the session's batch size, filtered,
/// projected and cut at the limit, counted into the segment's counters.
struct PartitionRows {
    batches: VecDeque<Piece>,
    /// Gathers the rows that pass into batches of `batch_size` (None with a LIMIT).
    coalescer: Option<BatchCoalescer>,
    /// A slice that passed whole, handed on as it is once the coalescer's rows before it are out.
    pending: Option<RecordBatch>,
    /// Rows of the first batch already taken.
    offset: usize,
    batch_size: usize,
    projection: Option<Projector>,
    /// The filters, over just the columns they read (and the projection to those columns).
    predicate: Option<(Projector, Arc<dyn PhysicalExpr>)>,
    remaining: usize,
    counters: Arc<ScanCounters>,
}

/// Picks some columns of batches. The batches of one segment share a schema: its projection
/// is made once, not for every batch (a new schema each time, its fields and metadata copied).
struct Projector {
    columns: Vec<usize>,
    /// The last schema seen and its projection.
    schemas: Option<(SchemaRef, SchemaRef)>,
}

impl Projector {
    fn new(columns: Vec<usize>) -> Projector {
        Projector { columns, schemas: None }
    }

    fn project(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let projected = match &self.schemas {
            Some((from, to)) if Arc::ptr_eq(from, batch.schema_ref()) => Arc::clone(to),
            _ => {
                let to = Arc::new(batch.schema_ref().project(&self.columns)?);
                self.schemas = Some((batch.schema(), Arc::clone(&to)));
                to
            }
        };
        let columns = self.columns.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(projected, columns, &options)?)
    }
}

/// A predicate with the columns it reads: their indices in the segment's batches, and the
/// predicate rewritten over a batch of just those columns, in that order.
type Narrowed = (Vec<usize>, Arc<dyn PhysicalExpr>);

fn narrow(predicate: &Arc<dyn PhysicalExpr>) -> Result<Narrowed> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_expr::expressions::Column;
    let mut columns: Vec<usize> =
        datafusion::physical_expr::utils::collect_columns(predicate).iter().map(Column::index).collect();
    columns.sort_unstable();
    columns.dedup();
    let rewritten = Arc::clone(predicate)
        .transform(|e| {
            let Some(c) = e.downcast_ref::<Column>() else { return Ok(Transformed::no(e)) };
            let index = columns.binary_search(&c.index()).map_err(|_| {
                DataFusionError::Internal(format!("column {} of a filter was not collected", c.name()))
            })?;
            Ok(Transformed::yes(Arc::new(Column::new(c.name(), index)) as Arc<dyn PhysicalExpr>))
        })?
        .data;
    Ok((columns, rewritten))
}

impl PartitionRows {
    /// The next slice to read: its rows, which are visible, whether they all pass by
    /// statistics, and its segment's index in the counters.
    fn next_slice(&mut self) -> Option<(RecordBatch, Option<BooleanBuffer>, bool, usize)> {
        loop {
            let piece = self.batches.front_mut()?;
            let Some(batch) = piece.range.clone().next().and_then(|at| piece.batches.get(at)) else {
                self.batches.pop_front();
                self.offset = 0;
                continue;
            };
            if self.offset >= batch.num_rows() {
                piece.range.start += 1;
                self.offset = 0;
                continue;
            }
            let len = self.batch_size.min(batch.num_rows() - self.offset);
            // The whole batch needs no slice (a slice of each column).
            let slice = if self.offset == 0 && len == batch.num_rows() {
                batch.clone()
            } else {
                batch.slice(self.offset, len)
            };
            let valid = piece.valid.as_ref().map(|v| v.slice(self.offset, len));
            self.offset += len;
            return Some((slice, valid, piece.pass_all, piece.segment));
        }
    }

    fn record(&self, segment: usize, evaluated: usize, passed: usize) {
        if let Some(s) = self.counters.segments.get(segment) {
            s.evaluated.fetch_add(evaluated as u64, Ordering::Relaxed);
            s.passed.fetch_add(passed as u64, Ordering::Relaxed);
        }
    }

    /// The projected columns of `slice` and which of its rows are visible (`valid`, for an
    /// upsert table) and pass the filters (None: all). The mask is computed on the whole slice;
    /// only the projected columns of the rows that pass are copied, later.
    fn filtered(
        &mut self,
        slice: RecordBatch,
        valid: Option<BooleanBuffer>,
        pass_all: bool,
    ) -> Result<(RecordBatch, Option<BooleanArray>)> {
        let mask = match &mut self.predicate {
            Some(_) if pass_all => valid.map(|v| BooleanArray::new(v, None)),
            None => valid.map(|v| BooleanArray::new(v, None)),
            Some((columns, predicate)) => {
                // Evaluated on the columns it reads only: DataFusion's AND evaluates its right
                // side on the rows its left side kept, copying every column of its input to
                // do so (a segment's strings and lists with them).
                let input = columns.project(&slice)?;
                let mask = predicate.evaluate(&input)?.into_array(slice.num_rows())?;
                let Some(mask) = mask.as_boolean_opt() else {
                    return Err(DataFusionError::Internal(format!(
                        "a filter gave {} values, not booleans",
                        mask.data_type()
                    )));
                };
                // Nulls do not pass, as in DataFusion's FilterExec.
                let passes = match mask.nulls() {
                    Some(n) => mask.values() & n.inner(),
                    None => mask.values().clone(),
                };
                Some(BooleanArray::new(
                    match valid {
                        Some(v) => &passes & &v,
                        None => passes,
                    },
                    None,
                ))
            }
        };
        let projected = match &mut self.projection {
            Some(p) => p.project(&slice)?,
            None => slice,
        };
        Ok((projected, mask))
    }
}

impl Iterator for PartitionRows {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = &mut self.coalescer
                && let Some(done) = c.next_completed_batch()
            {
                return Some(Ok(done));
            }
            if let Some(whole) = self.pending.take() {
                return Some(Ok(whole));
            }
            if self.remaining == 0 {
                return None;
            }
            let Some((slice, valid, pass_all, segment)) = self.next_slice() else {
                // The input is over: what the coalescer holds goes out last.
                let mut c = self.coalescer.take()?;
                if let Err(e) = c.finish_buffered_batch() {
                    return Some(Err(e.into()));
                }
                return c.next_completed_batch().map(Ok);
            };
            // Pinot evaluates filters on the valid rows only.
            let evaluated = match (&self.predicate, &valid) {
                (None, _) => 0,
                (Some(_), _) if pass_all => 0,
                (Some(_), Some(v)) => v.count_set_bits(),
                (Some(_), None) => slice.num_rows(),
            };
            let (projected, mask) = match self.filtered(slice, valid, pass_all) {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let passed = mask.as_ref().map_or(projected.num_rows(), |m| m.true_count());
            if self.coalescer.is_some() {
                self.record(segment, evaluated, passed);
            }
            if let Some(c) = &mut self.coalescer {
                // A slice of at least half a batch whose rows all pass goes on as it is (after
                // the rows gathered before it): copying it into the coalescer's buffers would
                // only cost a copy of every value read, where the filter removed nothing.
                if passed == projected.num_rows() && 2 * passed >= self.batch_size {
                    if let Err(e) = c.finish_buffered_batch() {
                        return Some(Err(e.into()));
                    }
                    self.pending = Some(projected);
                    continue;
                }
                let pushed = match mask {
                    Some(m) => c.push_batch_with_filter(projected, &m),
                    None => c.push_batch(projected),
                };
                if let Err(e) = pushed {
                    return Some(Err(e.into()));
                }
                continue;
            }
            let passed = match mask {
                Some(m) => match filter_record_batch(&projected, &m) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e.into())),
                },
                None => projected,
            };
            let passed =
                if passed.num_rows() > self.remaining { passed.slice(0, self.remaining) } else { passed };
            self.remaining -= passed.num_rows();
            self.record(segment, evaluated, passed.num_rows());
            if passed.num_rows() == 0 {
                continue;
            }
            return Some(Ok(passed));
        }
    }
}

/// The scan of one cold segment (DataFusion's Parquet reader, the query's filter and projection
/// under it), counting into the segment's counters the rows that pass.
#[derive(Debug)]
pub(crate) struct ColdCountExec {
    input: Arc<dyn ExecutionPlan>,
    segment: usize,
    counters: Arc<ScanCounters>,
    filtered: bool,
}

impl ColdCountExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        segment: usize,
        counters: Arc<ScanCounters>,
        filtered: bool,
    ) -> ColdCountExec {
        ColdCountExec { input, segment, counters, filtered }
    }
}

impl DisplayAs for ColdCountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ColdSegmentExec: segment={}", self.segment)
    }
}

impl ExecutionPlan for ColdCountExec {
    fn name(&self) -> &str {
        "ColdSegmentExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "ColdSegmentExec")?;
        Ok(Arc::new(ColdCountExec::new(input, self.segment, Arc::clone(&self.counters), self.filtered)))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        use futures::StreamExt;
        self.counters.executed.store(true, Ordering::Relaxed);
        let counters = Arc::clone(&self.counters);
        let segment = self.segment;
        if partition == 0
            && self.filtered
            && let Some(s) = counters.segments.get(segment)
        {
            // No index: the filter is evaluated on every row of the segment.
            s.evaluated.fetch_add(s.rows, Ordering::Relaxed);
        }
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let counted = stream.inspect(move |b| {
            if let (Ok(b), Some(s)) = (b, counters.segments.get(segment)) {
                s.passed.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        // The manifest's row count: exact without a filter (DataFusion may answer `count(*)`
        // from it, reading no object), at most that with one. Per partition it is not known
        // (the reader may split the file).
        let rows = self.counters.segments.get(self.segment).map_or(0, |s| s.rows as usize);
        let rows = match (args.partition(), self.filtered) {
            (Some(_), _) => Precision::Absent,
            (None, false) => Precision::Exact(rows),
            (None, true) => Precision::Inexact(rows),
        };
        Ok(Arc::new(Statistics::new_unknown(&self.schema()).with_num_rows(rows)))
    }
}

/// The one child of an operator that takes one, from `replace_children`'s list.
pub(crate) fn only_child(
    children: Vec<Arc<dyn ExecutionPlan>>,
    name: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut children = children.into_iter();
    match (children.next(), children.next()) {
        (Some(child), None) => Ok(child),
        _ => Err(DataFusionError::Internal(format!("{name} takes one child"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::scalar::ScalarValue;

    #[test]
    fn a_filter_is_evaluated_over_just_the_columns_it_reads() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("ms", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["x", "y", "z", "w"])),
                Arc::new(StringArray::from(vec!["US", "DE", "US", "US"])),
                Arc::new(StringArray::from(vec!["p", "q", "r", "s"])),
                Arc::new(Int64Array::from(vec![5, 2000, 2000, 999])),
            ],
        )
        .unwrap();
        let country: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("country", 1)),
            Operator::Eq,
            Arc::new(Literal::new(ScalarValue::Utf8(Some("US".into())))),
        ));
        let ms: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("ms", 3)),
            Operator::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(1000)))),
        ));
        let predicate: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(country, Operator::And, ms));
        let (columns, narrowed) = narrow(&predicate).unwrap();
        assert_eq!(columns, [1, 3], "only the columns the filter reads");
        let whole = predicate.evaluate(&batch).unwrap().into_array(4).unwrap();
        let narrow = narrowed.evaluate(&batch.project(&columns).unwrap()).unwrap().into_array(4).unwrap();
        assert_eq!(whole.as_boolean(), narrow.as_boolean());
        assert_eq!(
            narrow.as_boolean().iter().collect::<Vec<_>>(),
            [Some(false), Some(false), Some(true), Some(false)]
        );
    }

    /// Runs every partition of `scan` and gathers its batches, in order.
    #[test]
    fn a_projection_made_once_follows_each_batch_s_own_schema() {
        // Two segments' batches: the same columns, the second schema with metadata and a
        // nullable field (a segment written under an older schema version, say).
        let first = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Int64, false),
        ]));
        let second = Arc::new(
            Schema::new(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("b", DataType::Utf8, false),
                Field::new("c", DataType::Int64, true),
            ])
            .with_metadata([("written".to_string(), "v2".to_string())].into()),
        );
        let batch = |schema: &SchemaRef, a: i64| {
            RecordBatch::try_new(
                Arc::clone(schema),
                vec![
                    Arc::new(Int64Array::from(vec![a, a + 1])),
                    Arc::new(StringArray::from(vec!["x", "y"])),
                    Arc::new(Int64Array::from(vec![10 * a, 10 * a + 1])),
                ],
            )
            .unwrap()
        };
        let mut projector = Projector::new(vec![2, 0]);
        for (schema, a) in [(&first, 1), (&first, 3), (&second, 5), (&first, 7)] {
            let b = batch(schema, a);
            let projected = projector.project(&b).unwrap();
            assert_eq!(projected, b.project(&[2, 0]).unwrap());
            assert_eq!(projected.schema(), Arc::new(schema.project(&[2, 0]).unwrap()));
        }
    }

    fn run(scan: &SegmentScanExec) -> Vec<RecordBatch> {
        use futures::StreamExt;
        let context = Arc::new(TaskContext::default());
        let mut out = Vec::new();
        for p in 0..scan.partitions.len() {
            let stream = scan.execute(p, Arc::clone(&context)).unwrap();
            let batches = futures::executor::block_on(stream.collect::<Vec<_>>());
            out.extend(batches.into_iter().map(Result::unwrap));
        }
        out
    }

    #[test]
    fn slices_whose_rows_all_pass_are_handed_on_without_a_copy_and_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("ms", DataType::Int64, false)]));
        let batch_of = |from: i64| {
            let values: Int64Array = (from..from + 8192).collect::<Vec<_>>().into();
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()
        };
        let (first, second, third) = (batch_of(0), batch_of(8192), batch_of(16384));
        let counters = || {
            Arc::new(ScanCounters {
                segments: vec![SegmentCount {
                    consuming: false,
                    rows: 3 * 8192,
                    evaluated: AtomicU64::new(0),
                    passed: AtomicU64::new(0),
                    answered: AtomicU64::new(0),
                }],
                filter_columns: 1,
                output_columns: 1,
                executed: AtomicBool::new(false),
            })
        };
        let segment: Arc<[RecordBatch]> = Arc::from(vec![first.clone(), second.clone(), third.clone()]);
        let piece = |index: usize, pass_all| Piece {
            batches: Arc::clone(&segment),
            range: index..index + 1,
            segment: 0,
            valid: None,
            pass_all,
            rows: 8192,
            statistics: None,
        };
        let buffer = |b: &RecordBatch| b.column(0).to_data().buffers()[0].as_ptr();

        // Without a filter every batch is the segment's own: no value is copied.
        let pieces = vec![Piece { range: 0..2, rows: 2 * 8192, ..piece(0, false) }];
        let scan =
            SegmentScanExec::new(Arc::clone(&schema), vec![pieces], None, None, None, counters()).unwrap();
        let out = run(&scan);
        assert_eq!(out.len(), 2);
        assert_eq!(buffer(&out[0]), buffer(&first));
        assert_eq!(buffer(&out[1]), buffer(&second));

        // ms % 2 = 0 OR ms >= 8192: half of the first batch passes and is gathered; the second
        // batch passes whole and goes on as it is, after the first's rows; the third passes by
        // its statistics.
        let even: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(BinaryExpr::new(
                Arc::new(Column::new("ms", 0)),
                Operator::Modulo,
                Arc::new(Literal::new(ScalarValue::Int64(Some(2)))),
            )),
            Operator::Eq,
            Arc::new(Literal::new(ScalarValue::Int64(Some(0)))),
        ));
        let late: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("ms", 0)),
            Operator::GtEq,
            Arc::new(Literal::new(ScalarValue::Int64(Some(8192)))),
        ));
        let predicate: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(even, Operator::Or, late));
        let pieces = vec![piece(0, false), piece(1, false), piece(2, true)];
        let counted = counters();
        let scan = SegmentScanExec::new(
            Arc::clone(&schema),
            vec![pieces],
            None,
            Some(predicate),
            None,
            Arc::clone(&counted),
        )
        .unwrap();
        let out = run(&scan);
        let values: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec())
            .collect();
        let expected: Vec<i64> = (0..8192).step_by(2).chain(8192..3 * 8192).collect();
        assert_eq!(values, expected, "the rows that pass, in the segment's order");
        assert_eq!(out.len(), 3, "the gathered half batch, then the two whole ones");
        assert_eq!(buffer(&out[1]), buffer(&second));
        assert_eq!(buffer(&out[2]), buffer(&third));
        let segment = &counted.segments[0];
        assert_eq!(segment.evaluated.load(Ordering::Relaxed), 2 * 8192, "the third batch is not evaluated");
        assert_eq!(segment.passed.load(Ordering::Relaxed), expected.len() as u64);
    }
}
