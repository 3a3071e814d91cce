//! Aggregations that take whole batches from their statistics. A `count`, `sum`, `min` or
//! `max` without a GROUP BY over a scan needs, of a batch every row of which passes the
//! scan's filters (no filter, or one its statistics show every row passes), only the
//! batch's row count, null counts, sums and bounds: the statistics the scan prunes with. Here
//! such batches leave the scan, and the aggregation's partial state for all of them is one
//! row added to the partial aggregation's output, made from their statistics; the batches
//! the filters must be evaluated on are read as before. Pinot answers such aggregations from
//! segment metadata where the filter matches the whole segment
//! (`NonScanBasedAggregationOperator`); this does it batch by batch, inside segments too.

use crate::provider::to_scalar;
use crate::scan::{Piece, ScanCounters, SegmentScanExec};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ColumnStatistics, Result, ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::StatisticsArgs;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PhysicalExpr, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use shoal_segment::ColumnStats;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The aggregate functions whose partial state a batch's statistics give.
const FROM_STATISTICS: [&str; 4] = ["count", "sum", "min", "max"];

/// Replaces a partial (or single) aggregation without GROUP BY over a Shoal scan by the same
/// aggregation over the batches that cannot be taken from statistics, with one more partial
/// row from the statistics of those that can.
#[derive(Debug, Default)]
pub(crate) struct AggregateFromStatistics;

impl PhysicalOptimizerRule for AggregateFromStatistics {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match from_statistics(&node, aggregate)? {
                Some(new) => Ok(Transformed::new(new, true, TreeNodeRecursion::Jump)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "shoal_aggregate_from_statistics"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The plan that takes some of `aggregate`'s batches from their statistics, or None where it
/// cannot take any.
fn from_statistics(
    node: &Arc<dyn ExecutionPlan>,
    aggregate: &AggregateExec,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mode = *aggregate.mode();
    if !matches!(mode, AggregateMode::Partial | AggregateMode::Single)
        || !aggregate.group_expr().is_empty()
        || aggregate.filter_expr().iter().any(Option::is_some)
    {
        return Ok(None);
    }
    let Some(scan) = aggregate.input().downcast_ref::<SegmentScanExec>() else { return Ok(None) };
    if scan.limit().is_some() {
        return Ok(None);
    }
    // Each aggregate: one of the four, not DISTINCT, its partial state one value of its own
    // result's type.
    let mut state_fields = Vec::new();
    for e in aggregate.aggr_expr() {
        if !FROM_STATISTICS.contains(&e.fun().name()) || e.is_distinct() {
            return Ok(None);
        }
        let fields = e.state_fields()?;
        match fields.as_slice() {
            [f] if f.data_type() == e.field().data_type() => state_fields.push(Arc::clone(f)),
            _ => return Ok(None),
        }
    }
    // The batches whose statistics are known, and the others.
    let mut taken: Vec<&Piece> = Vec::new();
    let mut left: Vec<Vec<Piece>> = Vec::new();
    for partition in scan.partitions() {
        let (with, without): (Vec<&Piece>, Vec<&Piece>) =
            partition.iter().partition(|p| p.statistics.is_some());
        taken.extend(with);
        left.push(without.into_iter().cloned().collect());
    }
    let rows: usize = taken.iter().map(|p| p.rows).sum();
    if rows == 0 {
        return Ok(None);
    }
    let input_schema = scan.schema();
    let statistics = merged(&taken, &input_schema, scan.projection(), aggregate.aggr_expr());
    // The partial state of each aggregate over the batches taken.
    let mut row: Vec<ArrayRef> = Vec::with_capacity(state_fields.len());
    for (e, field) in aggregate.aggr_expr().iter().zip(&state_fields) {
        let Some(value) = value(e, &statistics, field.data_type()) else { return Ok(None) };
        row.push(value.to_array_of_size(1)?);
    }
    let answered = answered(&taken);
    let scan: Arc<dyn ExecutionPlan> = Arc::new(scan.with_partitions(left)?);
    let new: Arc<dyn ExecutionPlan> = match mode {
        AggregateMode::Partial => {
            let partial = Arc::clone(node).replace_children(vec![scan], recompute())?;
            let row = RecordBatch::try_new(partial.schema(), row)?;
            Arc::new(StatisticsRowExec::new(partial, row, answered))
        }
        _ => {
            // A single aggregation becomes a partial one with the row, and a final one.
            let partial: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
                AggregateMode::Partial,
                aggregate.group_expr().clone(),
                aggregate.aggr_expr().to_vec(),
                aggregate.filter_expr().to_vec(),
                scan,
                Arc::clone(&input_schema),
            )?);
            let row = RecordBatch::try_new(partial.schema(), row)?;
            let mut with_row: Arc<dyn ExecutionPlan> =
                Arc::new(StatisticsRowExec::new(partial, row, answered));
            if with_row.output_partitioning().partition_count() > 1 {
                with_row = Arc::new(CoalescePartitionsExec::new(with_row));
            }
            Arc::new(AggregateExec::try_new(
                AggregateMode::Final,
                aggregate.group_expr().as_final(),
                aggregate.aggr_expr().to_vec(),
                aggregate.filter_expr().to_vec(),
                with_row,
                input_schema,
            )?)
        }
    };
    Ok(Some(new))
}

/// The options that rebuild a node's properties from its new children.
fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}

/// The rows taken from each segment's statistics.
fn answered(taken: &[&Piece]) -> Vec<(usize, u64)> {
    let mut per_segment: Vec<(usize, u64)> = Vec::new();
    for p in taken {
        match per_segment.last_mut() {
            Some((segment, rows)) if *segment == p.segment => *rows += p.rows as u64,
            _ => per_segment.push((p.segment, p.rows as u64)),
        }
    }
    per_segment
}

/// DataFusion's statistics of the batches `taken`, for the columns the aggregates read (the
/// others unknown), in the scan's output columns.
fn merged(
    taken: &[&Piece],
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Statistics {
    let rows: usize = taken.iter().map(|p| p.rows).sum();
    let mut statistics = Statistics::new_unknown(schema).with_num_rows(Precision::Exact(rows));
    let mut read: Vec<usize> =
        aggregates.iter().flat_map(|e| e.expressions()).filter_map(|arg| column_of(&arg)).collect();
    read.sort_unstable();
    read.dedup();
    for at in read {
        let table_column = projection.map_or(Some(at), |p| p.get(at).copied());
        let Some(table_column) = table_column else { continue };
        let Some(merged) = piece_statistics(taken, table_column) else { continue };
        let Some(column) = statistics.column_statistics.get_mut(at) else { continue };
        let data_type = match schema.field(at).data_type() {
            DataType::Dictionary(_, values) => values.as_ref().clone(),
            t => t.clone(),
        };
        let scalar = |v: &Option<shoal_segment::StatValue>| match v {
            Some(v) => to_scalar(v, &data_type).map_or(Precision::Absent, Precision::Exact),
            None => Precision::Absent,
        };
        *column = ColumnStatistics {
            null_count: Precision::Exact(merged.null_count as usize),
            min_value: scalar(&merged.min),
            max_value: scalar(&merged.max),
            sum_value: merged
                .sum
                .map_or(Precision::Absent, |s| Precision::Exact(ScalarValue::Int64(Some(s)))),
            ..ColumnStatistics::new_unknown()
        };
    }
    statistics
}

/// The column an aggregate's argument reads: a column, or a column cast (`sum` of an INT).
fn column_of(arg: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    if let Some(c) = arg.downcast_ref::<Column>() {
        return Some(c.index());
    }
    arg.downcast_ref::<CastExpr>()?.expr().downcast_ref::<Column>().map(Column::index)
}

/// A table column's statistics over the batches `taken`, merged (None where a batch's are not
/// known).
fn piece_statistics(taken: &[&Piece], column: usize) -> Option<ColumnStats> {
    let mut merged: Option<ColumnStats> = None;
    for piece in taken {
        let statistics = piece.statistics.as_ref()?;
        for batch in piece.range.clone() {
            let s = statistics.get(batch, column)?;
            match &mut merged {
                Some(m) => m.merge(s),
                None => merged = Some(s.clone()),
            }
        }
    }
    merged
}

/// The partial state of `e` over rows with `statistics`, of type `state`; None where the
/// statistics do not give it.
fn value(e: &AggregateFunctionExpr, statistics: &Statistics, state: &DataType) -> Option<ScalarValue> {
    let args = e.expressions();
    // Of a column without a value, `sum`, `min` and `max` are NULL (DataFusion's statistics
    // give a sum of 0 and no bounds).
    if e.fun().name() != "count"
        && let [arg] = args.as_slice()
        && let Some(at) = column_of(arg)
        && let (Precision::Exact(rows), Some(Precision::Exact(nulls))) =
            (statistics.num_rows, statistics.column_statistics.get(at).map(|c| c.null_count))
        && nulls == rows
    {
        return ScalarValue::try_from(state).ok();
    }
    let return_type = e.field().data_type().clone();
    let value = e.fun().value_from_stats(&StatisticsArgs {
        statistics,
        return_type: &return_type,
        is_distinct: e.is_distinct(),
        exprs: &args,
    })?;
    (value.data_type() == *state && !value.is_null()).then_some(value)
}

/// A partial aggregation with one more row in its first partition: the partial state of the
/// batches taken from statistics.
#[derive(Debug)]
pub(crate) struct StatisticsRowExec {
    input: Arc<dyn ExecutionPlan>,
    row: RecordBatch,
    /// Per segment, in the input scan's counters, the rows the row stands for.
    answered: Vec<(usize, u64)>,
    counters: Option<Arc<ScanCounters>>,
}

impl StatisticsRowExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        row: RecordBatch,
        answered: Vec<(usize, u64)>,
    ) -> StatisticsRowExec {
        let counters = scan_counters(&input);
        StatisticsRowExec { input, row, answered, counters }
    }
}

/// The counters of the scan under `plan`.
fn scan_counters(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<ScanCounters>> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<SegmentScanExec>() {
            found = Some(Arc::clone(scan.counters()));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

impl DisplayAs for StatisticsRowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let rows: u64 = self.answered.iter().map(|(_, r)| r).sum();
        write!(f, "StatisticsRowExec: rows={rows}")
    }
}

impl ExecutionPlan for StatisticsRowExec {
    fn name(&self) -> &str {
        "StatisticsRowExec"
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
        let input = crate::scan::only_child(children, "StatisticsRowExec")?;
        Ok(Arc::new(StatisticsRowExec::new(input, self.row.clone(), self.answered.clone())))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, recompute())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        use futures::StreamExt;
        let stream = self.input.execute(partition, context)?;
        if partition != 0 {
            return Ok(stream);
        }
        if let Some(counters) = &self.counters {
            for &(segment, rows) in &self.answered {
                if let Some(s) = counters.segments.get(segment) {
                    s.answered.fetch_add(rows, Ordering::Relaxed);
                }
            }
        }
        let schema = stream.schema();
        let row = futures::stream::once(futures::future::ready(Ok(self.row.clone())));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, row.chain(stream))))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &datafusion::physical_plan::StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema())))
    }
}
