//! `MODE(x[, 'MIN'|'MAX'|'AVG'])`: the most frequent value, as pinot-core
//! `ModeAggregationFunction.java` computes it. Values are counted by their own type (integers
//! as integers, floating point by their bits); when several values are equally frequent, the
//! reducer picks the smallest (`MIN`, the default), the largest (`MAX`) or their average
//! (`AVG`). The result is DOUBLE; with no values it is `-Infinity` (Pinot's
//! `DEFAULT_FINAL_RESULT` without null handling).

use crate::literal_args::text_literal;
use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, TypeSignature, Volatility};
use std::collections::HashMap;
use std::sync::Arc;

/// The MODE aggregation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Mode {
    signature: Signature,
}

impl Mode {
    pub(crate) fn new() -> Mode {
        Mode {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }
}

/// How a tie between equally frequent values is resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reducer {
    Min,
    Max,
    Avg,
}

impl AggregateUDFImpl for Mode {
    fn name(&self) -> &str {
        "mode"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) if t.is_numeric() || t.is_null() => Ok(DataType::Float64),
            Some(t) => plan_err!("MODE: the values must be numbers, got {t}"),
            None => plan_err!("MODE: use MODE(value[, 'MIN'|'MAX'|'AVG'])"),
        }
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let reducer = match text_literal(&args, 1, "MODE")?.map(|s| s.to_ascii_uppercase()).as_deref() {
            None | Some("MIN") => Reducer::Min,
            Some("MAX") => Reducer::Max,
            Some("AVG") => Reducer::Avg,
            Some(other) => return plan_err!("MODE: the reducer must be MIN, MAX or AVG, got '{other}'"),
        };
        let floating = args.expr_fields.first().is_some_and(|f| f.data_type().is_floating());
        Ok(Box::new(ModeAccumulator { counts: HashMap::new(), floating, reducer }))
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str| {
            Arc::new(Field::new(
                name,
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ))
        };
        Ok(vec![list("keys"), list("counts")])
    }
}

/// Counts by value: an integer itself, a floating-point value its bits.
#[derive(Debug)]
struct ModeAccumulator {
    counts: HashMap<i64, u64>,
    floating: bool,
    reducer: Reducer,
}

impl ModeAccumulator {
    fn value(&self, key: i64) -> f64 {
        if self.floating { f64::from_bits(key as u64) } else { key as f64 }
    }

    /// Orders keys by their value (integers exactly, floating point as Java's `<` does).
    fn less(&self, a: i64, b: i64) -> bool {
        if self.floating { self.value(a) < self.value(b) } else { a < b }
    }
}

impl Accumulator for ModeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(v) = values.first() else { return plan_err!("MODE: no values") };
        if self.floating {
            let v = cast(v, &DataType::Float64)?;
            for x in v.as_primitive::<Float64Type>().iter().flatten() {
                // Keyed by bits, as fastutil's Double2LongOpenHashMap is: -0.0 and 0.0 apart.
                *self.counts.entry(x.to_bits() as i64).or_default() += 1;
            }
        } else {
            let v = cast(v, &DataType::Int64)?;
            for x in v.as_primitive::<Int64Type>().iter().flatten() {
                *self.counts.entry(x).or_default() += 1;
            }
        }
        Ok(())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Some(top) = self.counts.values().copied().max() else {
            return Ok(ScalarValue::Float64(Some(f64::NEG_INFINITY)));
        };
        let modes = self.counts.iter().filter(|(_, c)| **c == top).map(|(k, _)| *k);
        let result = match self.reducer {
            Reducer::Min => modes.reduce(|a, b| if self.less(b, a) { b } else { a }).map(|k| self.value(k)),
            Reducer::Max => modes.reduce(|a, b| if self.less(a, b) { b } else { a }).map(|k| self.value(k)),
            Reducer::Avg => {
                // Summed smallest first, so the same values give the same average every time.
                let mut values: Vec<f64> = modes.map(|k| self.value(k)).collect();
                values.sort_by(f64::total_cmp);
                Some(values.iter().sum::<f64>() / values.len() as f64)
            }
        };
        Ok(ScalarValue::Float64(result))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.capacity() * 24
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (keys, counts): (Vec<_>, Vec<_>) = self
            .counts
            .iter()
            .map(|(k, c)| (ScalarValue::Int64(Some(*k)), ScalarValue::Int64(Some(*c as i64))))
            .unzip();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&keys, &DataType::Int64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(keys), Some(counts)) = (
            states.first().and_then(|s| s.as_list_opt::<i32>()),
            states.get(1).and_then(|s| s.as_list_opt::<i32>()),
        ) else {
            return internal_err!("MODE: unexpected partial state {states:?}");
        };
        for (k, c) in keys.iter().zip(counts.iter()) {
            let (Some(k), Some(c)) = (k, c) else { continue };
            let (Some(k), Some(c)) = (k.as_primitive_opt::<Int64Type>(), c.as_primitive_opt::<Int64Type>())
            else {
                return internal_err!("MODE: a partial state holds no integers");
            };
            for (k, c) in k.iter().zip(c.iter()) {
                if let (Some(k), Some(c)) = (k, c) {
                    *self.counts.entry(k).or_default() += c as u64;
                }
            }
        }
        Ok(())
    }
}
