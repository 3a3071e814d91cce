//! Aggregations grouped by dictionary-encoded columns, by their keys. DataFusion groups rows of
//! dictionary columns by their values, encoding each row's strings into a row format and
//! hashing them; Pinot groups such columns by their dictionary ids. Here a partial aggregation
//! of `count`, `sum` and `avg` by one or two dictionary columns keeps its state per key pair in
//! tables as large as the dictionaries' product, and hands on one row per pair seen (the
//! dictionary's values are shared, not copied) each time the dictionaries change (a new
//! segment) and at the end; the final aggregation merges them by value as before.

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
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

/// Most cells of a dense table (the product of the dictionaries' sizes, each with a slot for
/// null): beyond it a batch's rows go on one by one, each a group of its own.
const MAX_CELLS: usize = 1 << 16;

/// Replaces a partial aggregation of only `count`, `sum` and `avg` (see [`Measure`]) grouped
/// by one or two dictionary-encoded string columns by [`DictionaryGroupExec`].
#[derive(Debug, Default)]
pub(crate) struct DictionaryGroup;

impl PhysicalOptimizerRule for DictionaryGroup {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((columns, measures)) = grouped_by_dictionaries(aggregate) else {
                return Ok(Transformed::no(node));
            };
            let exec = DictionaryGroupExec::new(
                Arc::clone(aggregate.input()),
                aggregate.schema(),
                columns,
                measures,
            );
            Ok(Transformed::new(Arc::new(exec) as Arc<dyn ExecutionPlan>, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "shoal_dictionary_group"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What the partial aggregation keeps per group for one aggregate: its state, as DataFusion's
/// own accumulators state it, so that the final aggregation merges it unchanged.
#[derive(Debug, Clone)]
enum Measure {
    /// `count` of a non-null literal (`count(*)`): the rows, as Int64.
    Rows,
    /// `count(x)`: the rows where `x` is not null, as Int64.
    Valid(Arc<dyn PhysicalExpr>),
    /// `sum(x)` of an Int64 `x`: the wrapping sum, null where no value was seen.
    SumLong(Arc<dyn PhysicalExpr>),
    /// `sum(x)` of a Float64 `x`: the sum, null where no value was seen.
    SumDouble(Arc<dyn PhysicalExpr>),
    /// `avg(x)` of a Float64 `x`: the count of values (UInt64) and their sum (Float64), both
    /// null where no value was seen.
    Avg(Arc<dyn PhysicalExpr>),
}

impl Measure {
    /// The measure of `e`, where its state is one this module keeps.
    fn of(e: &AggregateFunctionExpr, input: &Schema) -> Option<Measure> {
        if e.is_distinct() || !e.order_bys().is_empty() {
            return None;
        }
        let [arg] = e.expressions().try_into().ok()?;
        let state = e.state_fields().ok()?;
        let state: Vec<&DataType> = state.iter().map(|f| f.data_type()).collect();
        let arg_type = arg.data_type(input).ok()?;
        use DataType::{Float64, Int64, UInt64};
        Some(match (e.fun().name(), &arg_type, state.as_slice()) {
            ("count", _, [Int64]) if arg.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null()) => {
                Measure::Rows
            }
            ("count", _, [Int64]) => Measure::Valid(arg),
            ("sum", Int64, [Int64]) => Measure::SumLong(arg),
            ("sum", Float64, [Float64]) => Measure::SumDouble(arg),
            ("avg", Float64, [UInt64, Float64]) => Measure::Avg(arg),
            _ => return None,
        })
    }

    /// The argument it reads, if any.
    fn arg(&self) -> Option<&Arc<dyn PhysicalExpr>> {
        match self {
            Measure::Rows => None,
            Measure::Valid(e) | Measure::SumLong(e) | Measure::SumDouble(e) | Measure::Avg(e) => Some(e),
        }
    }

    /// The columns of its state.
    fn width(&self) -> usize {
        if matches!(self, Measure::Avg(_)) { 2 } else { 1 }
    }
}

/// The input columns `aggregate` groups by and its measures, where it is a partial
/// aggregation that this rule can replace.
fn grouped_by_dictionaries(aggregate: &AggregateExec) -> Option<(Vec<usize>, Vec<Measure>)> {
    if *aggregate.mode() != AggregateMode::Partial
        || aggregate.group_expr().has_grouping_set()
        || aggregate.limit_options().is_some()
        || *aggregate.input_order_mode() != InputOrderMode::Linear
        || aggregate.filter_expr().iter().any(Option::is_some)
        || aggregate.aggr_expr().is_empty()
    {
        return None;
    }
    let input = aggregate.input().schema();
    let measures: Vec<Measure> =
        aggregate.aggr_expr().iter().map(|e| Measure::of(e, &input)).collect::<Option<_>>()?;
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
    // The output: the group columns, then each measure's state.
    let width: usize = measures.iter().map(Measure::width).sum();
    if output.fields().len() != columns.len() + width {
        return None;
    }
    Some((columns, measures))
}

/// A partial aggregation grouped by dictionary columns, kept by their keys.
#[derive(Debug)]
pub(crate) struct DictionaryGroupExec {
    input: Arc<dyn ExecutionPlan>,
    /// The partial aggregation's output: the group columns, then each measure's state.
    schema: SchemaRef,
    /// The group columns, in the input.
    columns: Vec<usize>,
    measures: Vec<Measure>,
    properties: Arc<PlanProperties>,
}

impl DictionaryGroupExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        columns: Vec<usize>,
        measures: Vec<Measure>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        DictionaryGroupExec { input, schema, columns, measures, properties: Arc::new(properties) }
    }
}

impl DisplayAs for DictionaryGroupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> =
            (0..self.columns.len()).map(|i| self.schema.field(i).name().as_str()).collect();
        let mut at = self.columns.len();
        let mut states = Vec::with_capacity(self.measures.len());
        for m in &self.measures {
            states.push(self.schema.field(at).name().as_str());
            at += m.width();
        }
        write!(f, "DictionaryGroupExec: gby=[{}], aggr=[{}]", names.join(", "), states.join(", "))
    }
}

impl ExecutionPlan for DictionaryGroupExec {
    fn name(&self) -> &str {
        "DictionaryGroupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for arg in self.measures.iter().filter_map(Measure::arg) {
            if f(arg)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = crate::scan::only_child(children, "DictionaryGroupExec")?;
        Ok(Arc::new(DictionaryGroupExec::new(
            input,
            Arc::clone(&self.schema),
            self.columns.clone(),
            self.measures.clone(),
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
        let groups = Groups::new(Arc::clone(&self.schema), self.columns.clone(), self.measures.clone());
        let rows = futures::stream::unfold(Some((input, groups)), |state| async move {
            let (mut input, mut groups) = state?;
            loop {
                let out = match input.next().await {
                    Some(Ok(batch)) => match groups.add(&batch) {
                        Ok(None) => continue,
                        Ok(Some(out)) => Ok(out),
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => return groups.flush().transpose().map(|r| (r, None)),
                };
                return Some((out, Some((input, groups))));
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

/// The groups of one partition, for the dictionaries of the batches last read.
struct Groups {
    schema: SchemaRef,
    columns: Vec<usize>,
    /// The dictionaries' values the tables are kept by keys of (empty before the first batch
    /// and after a flush).
    values: Vec<ArrayRef>,
    /// Rows per cell: the keys of the columns, each with its null slot at its dictionary's size,
    /// the first column's the slower.
    rows: Vec<u64>,
    tallies: Vec<Tally>,
    /// The cell of each row of the batch being added (kept to reuse its allocation).
    cells: Vec<u32>,
}

impl Groups {
    fn new(schema: SchemaRef, columns: Vec<usize>, measures: Vec<Measure>) -> Groups {
        let tallies = measures.into_iter().map(Tally::new).collect();
        Groups { schema, columns, values: Vec::new(), rows: Vec::new(), tallies, cells: Vec::new() }
    }

    /// Adds `batch`; returns the groups of the dictionaries before it when its are others.
    fn add(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let mut keys: Vec<&DictionaryArray<Int32Type>> = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            let column = batch.columns().get(c).and_then(|a| a.as_dictionary_opt::<Int32Type>());
            keys.push(column.ok_or_else(|| internal(format!("column {c} is not a dictionary")))?);
        }
        let same = self.values.len() == keys.len()
            && self.values.iter().zip(&keys).all(|(v, k)| {
                // Slices of one batch share its values; other batches of a segment may hold
                // their own handle to the same buffers.
                Arc::ptr_eq(v, k.values()) || v.to_data().ptr_eq(&k.values().to_data())
            });
        let mut out = None;
        if !same {
            out = self.flush()?;
            self.values = keys.iter().map(|k| Arc::clone(k.values())).collect();
            match self.values.iter().try_fold(1usize, |n, v| n.checked_mul(v.len() + 1)) {
                Some(n) if n <= MAX_CELLS => {
                    self.rows = vec![0; n];
                    self.tallies.iter_mut().for_each(|t| t.reset(n));
                }
                // Too many pairs to keep densely: this batch's rows go on as they are.
                _ => {
                    let rows = self.each_row(batch, &keys)?;
                    self.values.clear();
                    return match out {
                        Some(before) => {
                            Ok(Some(arrow::compute::concat_batches(&self.schema, [&before, &rows])?))
                        }
                        None => Ok(Some(rows)),
                    };
                }
            }
        }
        // Each row counted in its cell, and its cell kept for the aggregates that read values.
        let (rows, cells) = (&mut self.rows, &mut self.cells);
        cells.clear();
        if self.tallies.iter().any(|t| t.measure.arg().is_some()) {
            cells.reserve(batch.num_rows());
            cells_of(&keys, |c| match rows.get_mut(c) {
                Some(n) => {
                    *n += 1;
                    cells.push(c as u32);
                    true
                }
                None => false,
            })?;
        } else {
            cells_of(&keys, |c| rows.get_mut(c).map(|n| *n += 1).is_some())?;
        }
        for tally in &mut self.tallies {
            tally.add(batch, &self.cells)?;
        }
        Ok(out)
    }

    /// One row per cell kept since the dictionaries last changed; the tables and the
    /// dictionaries are let go, so the next batch starts new ones.
    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let values = std::mem::take(&mut self.values);
        let rows = std::mem::take(&mut self.rows);
        if values.is_empty() || rows.iter().all(|&n| n == 0) {
            return Ok(None);
        }
        let sizes: Vec<usize> = values.iter().map(|v| v.len() + 1).collect();
        let mut keys: Vec<Vec<Option<i32>>> = vec![Vec::new(); sizes.len()];
        let mut taken = Vec::new();
        for (cell, n) in rows.iter().enumerate() {
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
            taken.push(cell);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (k, values) in keys.into_iter().zip(values) {
            let keys = Int32Array::from(k);
            columns.push(Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values)?));
        }
        for tally in &mut self.tallies {
            tally.take(&taken, &rows, &mut columns);
        }
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?))
    }

    /// The rows of `batch` as they are, each a group of its own.
    fn each_row(&self, batch: &RecordBatch, keys: &[&DictionaryArray<Int32Type>]) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = keys.iter().map(|k| Arc::new((*k).clone()) as ArrayRef).collect();
        for tally in &self.tallies {
            tally.each_row(batch, &mut columns)?;
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Hands `each` the cell of each row of `keys` in turn, which says whether the cell is within
/// its table. Arrow keeps the keys of non-null rows within their dictionaries (a dictionary
/// array is checked when made), so a cell past the table is an error, not a panic.
fn cells_of(keys: &[&DictionaryArray<Int32Type>], mut each: impl FnMut(usize) -> bool) -> Result<()> {
    let past = || internal("a key past its dictionary".to_string());
    // A row's slot in one column: its key, or the dictionary's size for null.
    let slot = |k: &DictionaryArray<Int32Type>, i: usize| -> Result<usize> {
        let size = k.values().len();
        if k.is_null(i) {
            return Ok(size);
        }
        usize::try_from(k.keys().value(i)).ok().filter(|&s| s < size).ok_or_else(past)
    };
    // Without nulls the keys are read as they are, and an error raised after the batch.
    let mut within = true;
    match keys {
        [a] if a.null_count() == 0 => {
            for &k in a.keys().values() {
                within &= each(k as u32 as usize);
            }
        }
        [a, b] if a.null_count() == 0 && b.null_count() == 0 => {
            let stride = b.values().len() + 1;
            for (&x, &y) in a.keys().values().iter().zip(b.keys().values()) {
                within &= each(x as u32 as usize * stride + y as u32 as usize);
            }
        }
        [a] => {
            for i in 0..a.len() {
                within &= each(slot(a, i)?);
            }
        }
        [a, b] => {
            let stride = b.values().len() + 1;
            for i in 0..a.len() {
                within &= each(slot(a, i)? * stride + slot(b, i)?);
            }
        }
        _ => return Err(internal(format!("{} group columns", keys.len()))),
    }
    if within { Ok(()) } else { Err(past()) }
}

fn internal(message: String) -> DataFusionError {
    DataFusionError::Internal(format!("DictionaryGroupExec: {message}"))
}

/// One measure's state per cell.
struct Tally {
    measure: Measure,
    /// The values seen per cell (empty for [`Measure::Rows`], which is the cells' rows).
    seen: Vec<u64>,
    /// The sums per cell of [`Measure::SumLong`].
    long: Vec<i64>,
    /// The sums per cell of [`Measure::SumDouble`] and [`Measure::Avg`].
    double: Vec<f64>,
}

impl Tally {
    fn new(measure: Measure) -> Tally {
        Tally { measure, seen: Vec::new(), long: Vec::new(), double: Vec::new() }
    }

    /// Empty tables of `cells` cells.
    fn reset(&mut self, cells: usize) {
        let len = |used: bool| if used { cells } else { 0 };
        let m = &self.measure;
        self.seen = vec![0; len(!matches!(m, Measure::Rows))];
        self.long = vec![0; len(matches!(m, Measure::SumLong(_)))];
        self.double = vec![0.0; len(matches!(m, Measure::SumDouble(_) | Measure::Avg(_)))];
    }

    /// Adds the rows of `batch`, each at its cell in `cells`.
    fn add(&mut self, batch: &RecordBatch, cells: &[u32]) -> Result<()> {
        let Some(arg) = self.measure.arg() else { return Ok(()) };
        let values = arg.evaluate(batch)?.into_array(batch.num_rows())?;
        let nulls = values.logical_nulls();
        match &self.measure {
            Measure::Rows => {}
            Measure::Valid(_) => match &nulls {
                None => cells.iter().for_each(|&c| self.seen[c as usize] += 1),
                Some(nulls) => {
                    for (&c, valid) in cells.iter().zip(nulls.iter()) {
                        self.seen[c as usize] += u64::from(valid);
                    }
                }
            },
            Measure::SumLong(_) => {
                let values = primitive::<Int64Type>(&values)?;
                sum_into(cells, values, nulls.as_ref(), &mut self.seen, &mut self.long, |s, x| {
                    *s = s.wrapping_add(x)
                });
            }
            Measure::SumDouble(_) | Measure::Avg(_) => {
                let values = primitive::<Float64Type>(&values)?;
                sum_into(cells, values, nulls.as_ref(), &mut self.seen, &mut self.double, |s, x| *s += x);
            }
        }
        Ok(())
    }

    /// The state of each cell of `taken` onto `columns`; the tables are let go.
    fn take(&mut self, taken: &[usize], rows: &[u64], columns: &mut Vec<ArrayRef>) {
        let seen = std::mem::take(&mut self.seen);
        let (long, double) = (std::mem::take(&mut self.long), std::mem::take(&mut self.double));
        let counts = |of: &[u64]| Int64Array::from_iter_values(taken.iter().map(|&c| of[c] as i64));
        // Sums are null where no value was seen, as in DataFusion's own state.
        let doubles = || taken.iter().map(|&c| (seen[c] > 0).then_some(double[c])).collect::<Float64Array>();
        let state: Vec<ArrayRef> = match &self.measure {
            Measure::Rows => vec![Arc::new(counts(rows))],
            Measure::Valid(_) => vec![Arc::new(counts(&seen))],
            Measure::SumLong(_) => {
                let sums = taken.iter().map(|&c| (seen[c] > 0).then_some(long[c]));
                vec![Arc::new(sums.collect::<Int64Array>())]
            }
            Measure::SumDouble(_) => vec![Arc::new(doubles())],
            Measure::Avg(_) => {
                // The count too: a count of 0 would make the final mean 0/0.
                let counts: UInt64Array = taken.iter().map(|&c| (seen[c] > 0).then_some(seen[c])).collect();
                vec![Arc::new(counts), Arc::new(doubles())]
            }
        };
        columns.extend(state);
    }

    /// The state of each row of `batch` as a group of its own onto `columns`.
    fn each_row(&self, batch: &RecordBatch, columns: &mut Vec<ArrayRef>) -> Result<()> {
        let rows = batch.num_rows();
        let Some(arg) = self.measure.arg() else {
            columns.push(Arc::new(Int64Array::from(vec![1i64; rows])));
            return Ok(());
        };
        let values = arg.evaluate(batch)?.into_array(rows)?;
        let nulls = values.logical_nulls();
        let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        match &self.measure {
            Measure::Rows => {}
            Measure::Valid(_) => {
                columns.push(Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i64::from(valid(i))))));
            }
            Measure::SumLong(_) => {
                primitive::<Int64Type>(&values)?;
                columns.push(values);
            }
            Measure::SumDouble(_) => {
                primitive::<Float64Type>(&values)?;
                columns.push(values);
            }
            Measure::Avg(_) => {
                primitive::<Float64Type>(&values)?;
                columns.push(Arc::new((0..rows).map(|i| valid(i).then_some(1u64)).collect::<UInt64Array>()));
                columns.push(values);
            }
        }
        Ok(())
    }
}

/// The values of `array`, which must be of `T`.
fn primitive<T: arrow::datatypes::ArrowPrimitiveType>(array: &ArrayRef) -> Result<&[T::Native]> {
    let array = array.as_primitive_opt::<T>();
    array.map(|a| a.values().as_ref()).ok_or_else(|| internal(format!("an argument not of {}", T::DATA_TYPE)))
}

/// Adds each of `values` not null in `nulls` to `sums` at its row's cell, and counts it in `seen`.
fn sum_into<T: Copy, S>(
    cells: &[u32],
    values: &[T],
    nulls: Option<&NullBuffer>,
    seen: &mut [u64],
    sums: &mut [S],
    add: impl Fn(&mut S, T),
) {
    match nulls {
        None => {
            for (&c, &x) in cells.iter().zip(values) {
                seen[c as usize] += 1;
                add(&mut sums[c as usize], x);
            }
        }
        Some(nulls) => {
            for ((&c, &x), valid) in cells.iter().zip(values).zip(nulls.iter()) {
                if valid {
                    seen[c as usize] += 1;
                    add(&mut sums[c as usize], x);
                }
            }
        }
    }
}
