//! The scan of one table snapshot: its segments' batches, one partition per segment (large ones
//! split), filtered by the query's filters and cut at its LIMIT partition by partition, counting
//! per segment the rows the filters were evaluated on and the rows that passed. The counts are
//! Pinot's numDocsScanned, numEntriesScannedInFilter/PostFilter and numSegmentsMatched.

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
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
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A batch of a segment and, for an upsert table, which of its rows are visible (None: all).
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub batch: RecordBatch,
    pub valid: Option<BooleanBuffer>,
    /// Statistics show that every row passes the scan's filters: they are not evaluated.
    pub pass_all: bool,
}

impl Piece {
    fn visible(&self) -> usize {
        self.valid.as_ref().map_or(self.batch.num_rows(), BooleanBuffer::count_set_bits)
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
    /// Per partition, the batches of one segment (or part of a large one).
    partitions: Vec<Vec<Piece>>,
    /// Per partition, its segment's index in `counters.segments`.
    partition_segment: Vec<usize>,
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
        partition_segment: Vec<usize>,
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
            partition_segment,
            projection,
            predicate,
            limit,
            counters,
            properties: Arc::new(properties),
        })
    }

    fn partition_rows(&self, partition: usize) -> usize {
        let rows: usize = self.partitions.get(partition).map_or(0, |p| p.iter().map(Piece::visible).sum());
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
            offset: 0,
            batch_size,
            projection: self.projection.clone(),
            predicate: self.predicate.as_ref().map(narrow).transpose()?,
            remaining: self.limit.unwrap_or(usize::MAX),
            counters: Arc::clone(&self.counters),
            segment: self.partition_segment.get(partition).copied(),
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
    /// Rows of the first batch already taken.
    offset: usize,
    batch_size: usize,
    projection: Option<Vec<usize>>,
    /// The filters, over just the columns they read (and those columns).
    predicate: Option<Narrowed>,
    remaining: usize,
    counters: Arc<ScanCounters>,
    segment: Option<usize>,
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
    fn next_slice(&mut self) -> Option<(RecordBatch, Option<BooleanBuffer>, bool)> {
        loop {
            let piece = self.batches.front()?;
            let batch = &piece.batch;
            if self.offset >= batch.num_rows() {
                self.batches.pop_front();
                self.offset = 0;
                continue;
            }
            let len = self.batch_size.min(batch.num_rows() - self.offset);
            let slice = batch.slice(self.offset, len);
            let valid = piece.valid.as_ref().map(|v| v.slice(self.offset, len));
            self.offset += len;
            return Some((slice, valid, piece.pass_all));
        }
    }

    fn record(&self, evaluated: usize, passed: usize) {
        if let Some(s) = self.segment.and_then(|s| self.counters.segments.get(s)) {
            s.evaluated.fetch_add(evaluated as u64, Ordering::Relaxed);
            s.passed.fetch_add(passed as u64, Ordering::Relaxed);
        }
    }

    /// The projected columns of `slice` and which of its rows are visible (`valid`, for an
    /// upsert table) and pass the filters (None: all). The mask is computed on the whole slice;
    /// only the projected columns of the rows that pass are copied, later.
    fn filtered(
        &self,
        slice: RecordBatch,
        valid: Option<BooleanBuffer>,
        pass_all: bool,
    ) -> Result<(RecordBatch, Option<BooleanArray>)> {
        let mask = match &self.predicate {
            Some(_) if pass_all => valid.map(|v| BooleanArray::new(v, None)),
            None => valid.map(|v| BooleanArray::new(v, None)),
            Some((columns, predicate)) => {
                // Evaluated on the columns it reads only: DataFusion's AND evaluates its right
                // side on the rows its left side kept, copying every column of its input to
                // do so (a segment's strings and lists with them).
                let input = slice.project(columns)?;
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
        let projected = match &self.projection {
            Some(p) => slice.project(p)?,
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
            if self.remaining == 0 {
                return None;
            }
            let Some((slice, valid, pass_all)) = self.next_slice() else {
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
                self.record(evaluated, passed);
            }
            if let Some(c) = &mut self.coalescer {
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
            self.record(evaluated, passed.num_rows());
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
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("ColdSegmentExec takes one child".into()))?;
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
}
