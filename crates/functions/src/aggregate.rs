//! Pinot's aggregations that DataFusion lacks: PERCENTILE (exact).

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature};
use std::sync::Arc;

/// `PERCENTILE(x, p)`: Pinot's exact percentile, the sorted value at index `(int)(n * p / 100)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Percentile {
    pub(crate) signature: Signature,
}

impl AggregateUDFImpl for Percentile {
    fn name(&self) -> &str {
        "percentile"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PercentileAccumulator { values: Vec::new(), percentile: None }))
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                "values",
                DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                true,
            )),
            Arc::new(Field::new("percentile", DataType::Float64, true)),
        ])
    }
}

#[derive(Debug)]
struct PercentileAccumulator {
    values: Vec<f64>,
    percentile: Option<f64>,
}

impl Accumulator for PercentileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [v, p] = values else {
            return plan_err!("PERCENTILE: use PERCENTILE(value, percentile)");
        };
        let v = cast(v, &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        match v.nulls() {
            Some(_) => self.values.extend(v.iter().flatten()),
            None => self.values.extend_from_slice(v.values()),
        }
        if self.percentile.is_none() && !p.is_empty() {
            let p = cast(p, &DataType::Float64)?;
            self.percentile = p.as_primitive::<Float64Type>().iter().flatten().next();
        }
        Ok(())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        let p = self.percentile.unwrap_or(50.0);
        if !(0.0..=100.0).contains(&p) {
            return exec_err!("PERCENTILE: {p} is not between 0 and 100");
        }
        // The value a sort would put at the index, found by selection (linear, not n log n).
        let n = self.values.len();
        let index = ((n as f64 * p / 100.0) as usize).min(n - 1);
        let (_, value, _) = self.values.select_nth_unstable_by(index, f64::total_cmp);
        Ok(ScalarValue::Float64(Some(*value)))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // One list of the values, built as an array (not a scalar per value); the values stay
        // (DataFusion may evaluate after taking the state).
        let values = Float64Array::from(self.values.clone());
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Float64, true)),
            OffsetBuffer::from_lengths([values.len()]),
            Arc::new(values),
            None,
        );
        Ok(vec![ScalarValue::List(Arc::new(list)), ScalarValue::Float64(self.percentile)])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        // The states are what `state` made, as `state_fields` declares them.
        let (Some(lists), Some(p)) = (
            states.first().and_then(|s| s.as_list_opt::<i32>()),
            states.get(1).and_then(|s| s.as_primitive_opt::<Float64Type>()),
        ) else {
            return datafusion::common::internal_err!("PERCENTILE: unexpected partial state {states:?}");
        };
        for list in lists.iter().flatten() {
            let values = list.as_primitive_opt::<Float64Type>().ok_or_else(|| {
                DataFusionError::Internal("PERCENTILE: a partial state holds no doubles".into())
            })?;
            match values.nulls() {
                Some(_) => self.values.extend(values.iter().flatten()),
                None => self.values.extend_from_slice(values.values()),
            }
        }
        if self.percentile.is_none() {
            self.percentile = p.iter().flatten().next();
        }
        Ok(())
    }
}
