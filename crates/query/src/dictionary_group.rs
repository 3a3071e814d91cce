//! `count(*)` grouped by dictionary-encoded columns, counted by their keys. DataFusion groups
//! rows of dictionary columns by their values, encoding each row's strings into a row format
//! and hashing them; Pinot groups such columns by their dictionary ids. Here a partial
//! aggregation of `count(*)` by one or two dictionary columns counts each batch's key pairs in
//! a table as large as the dictionaries' product, and hands on one row per pair seen (the
//! dictionary's values are shared, not copied) each time the dictionaries change (a new
//! segment) and at the end; the final aggregation merges them by value as before.

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputOrderMode, PhysicalExpr, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use std::fmt;
use std::sync::Arc;

/// Most cells of a dense count table (the product of the dictionaries' sizes, each with a
/// slot for null): beyond it a batch's rows go on one by one, each counted once.
const MAX_CELLS: usize = 1 << 16;

/// Replaces a partial aggregation of only `count`s of non-null literals (`count(*)`) grouped
/// by one or two dictionary-encoded string columns by [`DictionaryCountExec`].
#[derive(Debug, Default)]
pub(crate) struct DictionaryGroupCount;

impl PhysicalOptimizerRule for DictionaryGroupCount {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(columns) = counted_by_dictionaries(aggregate) else { return Ok(Transformed::no(node)) };
            let exec = DictionaryCountExec::new(
                Arc::clone(aggregate.input()),
                aggregate.schema(),
                columns,
                aggregate.aggr_expr().len(),
            );
            Ok(Transformed::new(Arc::new(exec) as Arc<dyn ExecutionPlan>, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "shoal_dictionary_group_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The input columns `aggregate` groups by, where it is a partial aggregation that this rule
/// can replace.
fn counted_by_dictionaries(aggregate: &AggregateExec) -> Option<Vec<usize>> {
    if *aggregate.mode() != AggregateMode::Partial
        || aggregate.group_expr().has_grouping_set()
        || aggregate.limit_options().is_some()
        || *aggregate.input_order_mode() != InputOrderMode::Linear
        || aggregate.filter_expr().iter().any(Option::is_some)
        || aggregate.aggr_expr().is_empty()
    {
        return None;
    }
    let counts_rows = |e: &Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>| {
        let args = e.expressions();
        e.fun().name() == "count"
            && !e.is_distinct()
            && !args.is_empty()
            && args.iter().all(|a| a.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null()))
    };
    if !aggregate.aggr_expr().iter().all(counts_rows) {
        return None;
    }
    let input = aggregate.input().schema();
    let groups = aggregate.group_expr().expr();
    if groups.is_empty() || groups.len() > 2 {
        return None;
    }
    let output = aggregate.schema();
    let mut columns = Vec::with_capacity(groups.len());
    for (at, (expr, _)) in groups.iter().enumerate() {
        let column = expr.downcast_ref::<Column>()?;
        let data_type = input.fields().get(column.index())?.data_type();
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        if *data_type != dictionary || output.field(at).data_type() != data_type {
            return None;
        }
        columns.push(column.index());
    }
    // The output: the group columns, then one Int64 count per aggregate.
    let counts = output.fields().iter().skip(columns.len());
    if output.fields().len() != columns.len() + aggregate.aggr_expr().len()
        || !counts.into_iter().all(|f| *f.data_type() == DataType::Int64)
    {
        return None;
    }
    Some(columns)
}

/// A partial `count(*)` grouped by dictionary columns, counted by their keys.
#[derive(Debug)]
pub(crate) struct DictionaryCountExec {
    input: Arc<dyn ExecutionPlan>,
    /// The partial aggregation's output: the group columns, then the counts.
    schema: SchemaRef,
    /// The group columns, in the input.
    columns: Vec<usize>,
    /// How many counts each row carries (all the same).
    counts: usize,
    properties: Arc<PlanProperties>,
}

impl DictionaryCountExec {
    fn new(input: Arc<dyn ExecutionPlan>, schema: SchemaRef, columns: Vec<usize>, counts: usize) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        DictionaryCountExec { input, schema, columns, counts, properties: Arc::new(properties) }
    }
}

impl DisplayAs for DictionaryCountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> =
            (0..self.columns.len()).map(|i| self.schema.field(i).name().as_str()).collect();
        write!(f, "DictionaryCountExec: gby=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for DictionaryCountExec {
    fn name(&self) -> &str {
        "DictionaryCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
        let input = crate::scan::only_child(children, "DictionaryCountExec")?;
        Ok(Arc::new(DictionaryCountExec::new(
            input,
            Arc::clone(&self.schema),
            self.columns.clone(),
            self.counts,
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        use futures::StreamExt;
        let input = self.input.execute(partition, context)?;
        let counter = Counter::new(Arc::clone(&self.schema), self.columns.clone(), self.counts);
        let rows = futures::stream::unfold(Some((input, counter)), |state| async move {
            let (mut input, mut counter) = state?;
            loop {
                let out = match input.next().await {
                    Some(Ok(batch)) => match counter.add(&batch) {
                        Ok(None) => continue,
                        Ok(Some(out)) => Ok(out),
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => return counter.flush().transpose().map(|r| (r, None)),
                };
                return Some((out, Some((input, counter))));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), rows)))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &datafusion::physical_plan::StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema)))
    }
}

/// The counts of one partition, for the dictionaries of the batches last read.
struct Counter {
    schema: SchemaRef,
    columns: Vec<usize>,
    counts: usize,
    /// The dictionaries' values the table counts keys of (empty before the first batch).
    values: Vec<ArrayRef>,
    /// Rows per cell: the keys of the columns, each with its null slot at its dictionary's size,
    /// the first column's the slower.
    table: Vec<u64>,
}

impl Counter {
    fn new(schema: SchemaRef, columns: Vec<usize>, counts: usize) -> Counter {
        Counter { schema, columns, counts, values: Vec::new(), table: Vec::new() }
    }

    /// Counts `batch`; returns the rows of the dictionaries before it when its are others.
    fn add(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let mut keys: Vec<&DictionaryArray<Int32Type>> = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            let column = batch.columns().get(c).and_then(|a| a.as_dictionary_opt::<Int32Type>());
            keys.push(column.ok_or_else(|| {
                DataFusionError::Internal(format!("DictionaryCountExec: column {c} is not a dictionary"))
            })?);
        }
        let same = self.values.len() == keys.len()
            && self.values.iter().zip(&keys).all(|(v, k)| v.to_data().ptr_eq(&k.values().to_data()));
        let mut out = None;
        if !same {
            out = self.flush()?;
            self.values = keys.iter().map(|k| Arc::clone(k.values())).collect();
            let cells = self.values.iter().try_fold(1usize, |n, v| n.checked_mul(v.len() + 1));
            self.table = match cells {
                Some(n) if n <= MAX_CELLS => vec![0; n],
                // Too many pairs to count densely: this batch's rows go on as they are.
                _ => {
                    let rows = self.rows(&keys, (0..batch.num_rows()).map(|_| 1).collect())?;
                    self.values.clear();
                    return match out {
                        Some(before) => {
                            Ok(Some(arrow::compute::concat_batches(&self.schema, [&before, &rows])?))
                        }
                        None => Ok(Some(rows)),
                    };
                }
            };
        }
        let slot = |k: &DictionaryArray<Int32Type>, i: usize| -> usize {
            if k.is_null(i) { k.values().len() } else { k.keys().value(i) as usize }
        };
        let out_of_range =
            || DataFusionError::Internal("DictionaryCountExec: a key past its dictionary".into());
        match keys.as_slice() {
            [a] if a.null_count() == 0 => {
                for &k in a.keys().values() {
                    *self.table.get_mut(k as usize).ok_or_else(out_of_range)? += 1;
                }
            }
            [a, b] if a.null_count() == 0 && b.null_count() == 0 => {
                let stride = b.values().len() + 1;
                for (&x, &y) in a.keys().values().iter().zip(b.keys().values()) {
                    let cell = (x as usize) * stride + y as usize;
                    *self.table.get_mut(cell).ok_or_else(out_of_range)? += 1;
                }
            }
            _ => {
                for i in 0..batch.num_rows() {
                    let mut cell = 0;
                    for k in &keys {
                        cell = cell * (k.values().len() + 1) + slot(k, i);
                    }
                    *self.table.get_mut(cell).ok_or_else(out_of_range)? += 1;
                }
            }
        }
        Ok(out)
    }

    /// One row per cell counted since the dictionaries last changed, and the table emptied.
    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        if self.values.is_empty() || self.table.iter().all(|&n| n == 0) {
            return Ok(None);
        }
        let sizes: Vec<usize> = self.values.iter().map(|v| v.len() + 1).collect();
        let mut keys: Vec<Vec<Option<i32>>> = vec![Vec::new(); sizes.len()];
        let mut counts = Vec::new();
        for (cell, n) in self.table.iter_mut().enumerate() {
            if *n == 0 {
                continue;
            }
            let mut rest = cell;
            for (column, size) in sizes.iter().enumerate().rev() {
                let slot = rest % size;
                rest /= size;
                // The null slot is the last.
                keys[column].push((slot + 1 < *size).then_some(slot as i32));
            }
            counts.push(*n);
            *n = 0;
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(sizes.len() + self.counts);
        for (k, values) in keys.into_iter().zip(&self.values) {
            let keys = Int32Array::from(k);
            columns.push(Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(values))?));
        }
        let counts: ArrayRef = Arc::new(Int64Array::from_iter_values(counts.into_iter().map(|n| n as i64)));
        columns.extend(std::iter::repeat_n(counts, self.counts));
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?))
    }

    /// The rows of `keys` as they are, each with its count.
    fn rows(&self, keys: &[&DictionaryArray<Int32Type>], counts: Vec<i64>) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = keys.iter().map(|k| Arc::new((*k).clone()) as ArrayRef).collect();
        let counts: ArrayRef = Arc::new(Int64Array::from(counts));
        columns.extend(std::iter::repeat_n(counts, self.counts));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
