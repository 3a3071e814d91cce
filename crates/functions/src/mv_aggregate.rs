//! Pinot's aggregations over every value of a multi-value column: COUNTMV, SUMMV, MINMV, MAXMV,
//! AVGMV and DISTINCTCOUNTMV (pinot-core CountMVAggregationFunction.java,
//! SumMVAggregationFunction.java, MinMVAggregationFunction.java, MaxMVAggregationFunction.java,
//! AvgMVAggregationFunction.java, DistinctCountMVAggregationFunction.java).
//!
//! Values are read as doubles for SUM/MIN/MAX/AVG, as Pinot reads them; on no values the
//! results are Pinot's without null handling: COUNTMV 0, SUMMV 0.0, MINMV +Infinity, MAXMV and
//! AVGMV -Infinity, DISTINCTCOUNTMV 0.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use std::collections::HashSet;
use std::sync::Arc;

/// Which aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MvOp {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    DistinctCount,
}

/// One multi-value aggregation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct MvAggregate {
    name: String,
    op: MvOp,
    signature: Signature,
}

impl MvAggregate {
    pub(crate) fn new(op: MvOp) -> MvAggregate {
        let name = match op {
            MvOp::Count => "countmv",
            MvOp::Sum => "summv",
            MvOp::Min => "minmv",
            MvOp::Max => "maxmv",
            MvOp::Avg => "avgmv",
            MvOp::DistinctCount => "distinctcountmv",
        };
        MvAggregate { name: name.into(), op, signature: Signature::any(1, Volatility::Immutable) }
    }
}

/// The values of every row of a list column, flattened (nulls kept out).
fn flat_values(list: &ArrayRef) -> Result<ArrayRef> {
    let list = match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().clone(),
        DataType::LargeList(f) => cast(list, &DataType::List(Arc::clone(f)))?.as_list::<i32>().clone(),
        other => return plan_err!("{other} is not a multi-value column"),
    };
    let first = list.value_offsets()[0] as usize;
    let last = list.value_offsets()[list.len()] as usize;
    let mut values = list.values().slice(first, last - first);
    // Values of null rows are not counted.
    if list.null_count() > 0 {
        let keep: arrow::array::BooleanArray = (0..list.len())
            .flat_map(|row| std::iter::repeat_n(Some(list.is_valid(row)), list.value_length(row) as usize))
            .collect();
        values = arrow::compute::filter(&values, &keep)?;
    }
    Ok(values)
}

impl AggregateUDFImpl for MvAggregate {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let upper = self.name.to_ascii_uppercase();
        let element = match arg_types.first() {
            Some(DataType::List(f) | DataType::LargeList(f)) => f.data_type().clone(),
            Some(other) => {
                return plan_err!("{upper}: the argument must be a multi-value column, not {other}");
            }
            None => return plan_err!("{upper}: use {upper}(mvColumn)"),
        };
        Ok(match self.op {
            MvOp::Count => DataType::Int64,
            MvOp::DistinctCount => DataType::Int32,
            _ if element.is_numeric() => DataType::Float64,
            _ => return plan_err!("{upper}: the values are {element}, not numbers"),
        })
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let element = match args.expr_fields.first().map(|f| f.data_type()) {
            Some(DataType::List(f) | DataType::LargeList(f)) => f.data_type().clone(),
            _ => return internal_err!("{}: the argument is not a list", self.name),
        };
        let (value, count) = match self.op {
            MvOp::Min => (f64::INFINITY, 0),
            MvOp::Max => (f64::NEG_INFINITY, 0),
            _ => (0.0, 0),
        };
        Ok(Box::new(MvAccumulator { op: self.op, value, count, distinct: HashSet::new(), element }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let element = match args.input_fields.first().map(|f| f.data_type()) {
            Some(DataType::List(f) | DataType::LargeList(f)) => f.data_type().clone(),
            _ => DataType::Null,
        };
        Ok(vec![
            Arc::new(Field::new("value", DataType::Float64, true)),
            Arc::new(Field::new("count", DataType::Int64, true)),
            Arc::new(Field::new(
                "distinct",
                DataType::List(Arc::new(Field::new("item", element, true))),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct MvAccumulator {
    op: MvOp,
    /// The sum, minimum or maximum so far.
    value: f64,
    /// Values seen (COUNT, AVG).
    count: i64,
    distinct: HashSet<ScalarValue>,
    element: DataType,
}

impl MvAccumulator {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        match self.op {
            MvOp::Count => self.count += (values.len() - values.null_count()) as i64,
            MvOp::DistinctCount => {
                for i in 0..values.len() {
                    if values.is_valid(i) {
                        self.distinct.insert(ScalarValue::try_from_array(values, i)?);
                    }
                }
            }
            _ => {
                let doubles = cast(values, &DataType::Float64)?;
                for v in doubles.as_primitive::<Float64Type>().iter().flatten() {
                    self.count += 1;
                    self.value = match self.op {
                        MvOp::Min => self.value.min(v),
                        MvOp::Max => self.value.max(v),
                        _ => self.value + v,
                    };
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for MvAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(list) => self.add(&flat_values(list)?),
            None => internal_err!("multi-value aggregation without an argument"),
        }
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.op {
            MvOp::Count => ScalarValue::Int64(Some(self.count)),
            MvOp::DistinctCount => {
                ScalarValue::Int32(Some(i32::try_from(self.distinct.len()).unwrap_or(i32::MAX)))
            }
            MvOp::Avg if self.count == 0 => ScalarValue::Float64(Some(f64::NEG_INFINITY)),
            MvOp::Avg => ScalarValue::Float64(Some(self.value / self.count as f64)),
            _ => ScalarValue::Float64(Some(self.value)),
        })
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.distinct.capacity() * 64
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let distinct: Vec<ScalarValue> = self.distinct.iter().cloned().collect();
        Ok(vec![
            ScalarValue::Float64(Some(self.value)),
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::List(ScalarValue::new_list_nullable(&distinct, &self.element)),
        ])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(counts), Some(distinct)) = (
            states.first().and_then(|s| s.as_primitive_opt::<Float64Type>()),
            states.get(1).and_then(|s| s.as_primitive_opt::<Int64Type>()),
            states.get(2),
        ) else {
            return internal_err!("{:?}: unexpected partial state {states:?}", self.op);
        };
        for (v, c) in values.iter().zip(counts.iter()) {
            let (Some(v), Some(c)) = (v, c) else { continue };
            self.count += c;
            self.value = match self.op {
                MvOp::Min => self.value.min(v),
                MvOp::Max => self.value.max(v),
                MvOp::Sum | MvOp::Avg => self.value + v,
                _ => self.value,
            };
        }
        if self.op == MvOp::DistinctCount {
            let values = flat_values(distinct)?;
            self.add(&values)?;
        }
        Ok(())
    }
}
