//! `SUMPRECISION(x[, precision[, scale]])`: an exact decimal sum, as pinot-core
//! `SumPrecisionAggregationFunction.java` computes it. Integers are summed as themselves;
//! floating-point values as the decimal Java writes for them (`new BigDecimal(Double.toString
//! (v))`: 0.1 is 0.1, 1.5 + 2.5 is 4.0); text as the decimal it spells. With a precision the
//! sum is rounded to that many significant digits, with a scale then set to that many decimals,
//! both half-even (`MathContext`, `setScale(..., HALF_EVEN)`). The result is STRING (Pinot's
//! `getFinalResultColumnType`), written as Java's `BigDecimal.toString`; with no values it is
//! `0` (without null handling).

use crate::literal_args::int_literal;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type};
use bigdecimal::num_bigint::BigInt;
use bigdecimal::{BigDecimal, RoundingMode, Zero};
use datafusion::common::{DataFusionError, Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use std::num::NonZeroU64;
use std::str::FromStr;
use std::sync::Arc;

/// The SUMPRECISION aggregation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct SumPrecision {
    signature: Signature,
}

impl SumPrecision {
    pub(crate) fn new() -> SumPrecision {
        SumPrecision {
            // One to three arguments, dictionaries decoded (`coerce_types`).
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The largest precision and scale taken: a sum is never wider than this, and a larger one
/// would only make a huge string.
const MAX_DIGITS: i64 = 1_000;

impl AggregateUDFImpl for SumPrecision {
    fn name(&self) -> &str {
        "sumprecision"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(1..=3).contains(&arg_types.len()) {
            return plan_err!("SUMPRECISION: use SUMPRECISION(value[, precision[, scale]])");
        }
        Ok(crate::without_dictionaries(arg_types))
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t)
                if t.is_numeric()
                    || t.is_null()
                    || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) =>
            {
                Ok(DataType::Utf8)
            }
            Some(t) => plan_err!("SUMPRECISION: the values must be numbers, got {t}"),
            None => plan_err!("SUMPRECISION: use SUMPRECISION(value[, precision[, scale]])"),
        }
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // Java's MathContext(0) is "unlimited": Pinot then leaves the sum as it is.
        let precision = int_literal(&args, 1, "SUMPRECISION", 0..=MAX_DIGITS)?;
        let scale = int_literal(&args, 2, "SUMPRECISION", -MAX_DIGITS..=MAX_DIGITS)?;
        Ok(Box::new(SumPrecisionAccumulator { sum: BigDecimal::zero(), precision, scale }))
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new("sum", DataType::Utf8, true))])
    }
}

#[derive(Debug)]
struct SumPrecisionAccumulator {
    sum: BigDecimal,
    precision: Option<i64>,
    scale: Option<i64>,
}

/// The largest power of ten a summed value may carry: a sum is as wide as its values' scales
/// are apart, so "1e999999999" + 0.1 would need a billion digits.
const MAX_EXPONENT: i64 = 4_096;

fn parse(text: &str) -> Result<BigDecimal> {
    let value = BigDecimal::from_str(text.trim())
        .map_err(|_| DataFusionError::Execution(format!("SUMPRECISION: '{text}' is not a number")))?;
    let (_, scale) = value.as_bigint_and_exponent();
    if scale.abs() > MAX_EXPONENT {
        return Err(DataFusionError::Execution(format!(
            "SUMPRECISION: '{text}' is outside 10^-{MAX_EXPONENT}..10^{MAX_EXPONENT}"
        )));
    }
    Ok(value)
}

/// Java's `Double.toString` (and `Float.toString`) of a finite value from its shortest digits:
/// plain between 10^-3 and 10^7 with at least one decimal, else `d.dddE±n`.
fn java_float_text(shortest_scientific: &str) -> String {
    // `{:e}` gives the shortest digits that round-trip: "-1.25e-4".
    let (mantissa, exponent) = shortest_scientific.split_once('e').unwrap_or((shortest_scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-3..7).contains(&exponent) {
        let point = exponent + 1;
        let (int, frac) = if point <= 0 {
            ("0".to_string(), format!("{}{digits}", "0".repeat((-point) as usize)))
        } else if point as usize >= digits.len() {
            (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
        } else {
            (digits[..point as usize].to_string(), digits[point as usize..].to_string())
        };
        let frac = if frac.is_empty() { "0".to_string() } else { frac };
        format!("{sign}{int}.{frac}")
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{rest}E{exponent}", &digits[..1])
    }
}

fn float_decimal(v: f64, text: String) -> Result<BigDecimal> {
    if !v.is_finite() {
        // new BigDecimal("NaN") throws NumberFormatException in Pinot.
        return Err(DataFusionError::Execution(format!("SUMPRECISION: {v} is not a decimal number")));
    }
    parse(&java_float_text(&text))
}

/// Java's `BigDecimal.toString`: plain when the scale is not negative and the adjusted exponent
/// is at least -6, else scientific with `E+n`/`E-n`.
pub(crate) fn java_decimal_text(d: &BigDecimal) -> String {
    let (unscaled, scale) = d.as_bigint_and_exponent();
    let negative = unscaled < BigInt::zero();
    let digits = unscaled.magnitude().to_string();
    let sign = if negative { "-" } else { "" };
    let adjusted = -scale + (digits.len() as i64 - 1);
    if scale >= 0 && adjusted >= -6 {
        if scale == 0 {
            return format!("{sign}{digits}");
        }
        let scale = scale as usize;
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let e = if adjusted >= 0 { format!("E+{adjusted}") } else { format!("E{adjusted}") };
        format!("{sign}{first}{point}{e}")
    }
}

impl Accumulator for SumPrecisionAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(v) = values.first() else { return plan_err!("SUMPRECISION: no values") };
        let mut add = |d: BigDecimal| self.sum += d;
        match v.data_type() {
            DataType::Float64 => {
                for x in v.as_primitive::<Float64Type>().iter().flatten() {
                    add(float_decimal(x, format!("{x:e}"))?);
                }
            }
            DataType::Float32 => {
                for x in v.as_primitive::<Float32Type>().iter().flatten() {
                    add(float_decimal(f64::from(x), format!("{x:e}"))?);
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let v = arrow::compute::cast(v, &DataType::Utf8)?;
                for x in v.as_string::<i32>().iter().flatten() {
                    add(parse(x)?);
                }
            }
            DataType::Null => {}
            t if t.is_integer() => {
                let v = arrow::compute::cast(v, &DataType::Decimal128(38, 0))?;
                for x in v.as_primitive::<arrow::datatypes::Decimal128Type>().iter().flatten() {
                    add(BigDecimal::from(x));
                }
            }
            t if t.is_numeric() => {
                // Decimals: their own digits and scale.
                let v = arrow::compute::cast(v, &DataType::Utf8)?;
                for x in v.as_string::<i32>().iter().flatten() {
                    add(parse(x)?);
                }
            }
            t => return plan_err!("SUMPRECISION: the values must be numbers, got {t}"),
        }
        Ok(())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut result = self.sum.clone();
        if let Some(precision) = self.precision.and_then(|p| NonZeroU64::new(p as u64)) {
            // BigDecimal.round(MathContext) only ever drops digits.
            if result.digits() > precision.get() {
                result = result.with_precision_round(precision, RoundingMode::HalfEven);
            }
            if let Some(scale) = self.scale {
                result = result.with_scale_round(scale, RoundingMode::HalfEven);
            }
        }
        Ok(ScalarValue::Utf8(Some(java_decimal_text(&result))))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + (self.sum.digits() as usize).div_ceil(2)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (unscaled, scale) = self.sum.as_bigint_and_exponent();
        Ok(vec![ScalarValue::Utf8(Some(format!("{unscaled}E{}", -scale)))])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(sums) = states.first().and_then(|s| s.as_string_opt::<i32>()) else {
            return internal_err!("SUMPRECISION: unexpected partial state {states:?}");
        };
        for s in sums.iter().flatten() {
            self.sum += parse(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_read_as_java_writes_them() {
        // Java: Double.toString(1.5) = "1.5", 1e7 = "1.0E7", 0.001 = "0.001", 1e-4 = "1.0E-4",
        // 100.0 = "100.0", -2.5e-3 = "-0.0025".
        for (v, java) in [
            (1.5, "1.5"),
            (1e7, "1.0E7"),
            (0.001, "0.001"),
            (1e-4, "1.0E-4"),
            (100.0, "100.0"),
            (-2.5e-3, "-0.0025"),
            (123456.7, "123456.7"),
            (1.2345e10, "1.2345E10"),
        ] {
            assert_eq!(java_float_text(&format!("{v:e}")), java, "{v}");
        }
    }

    #[test]
    fn huge_exponents_are_refused_before_they_are_summed() {
        assert!(parse("1e999999999").unwrap_err().to_string().contains("outside"));
        assert!(parse("1e-5000").is_err());
        assert!(parse("1.5e300").is_ok());
    }

    #[test]
    fn decimals_are_written_as_java_writes_them() {
        // Java: new BigDecimal("4.0").toString() = "4.0", "1.0E7" → "1.0E+7", "0.0000001" →
        // "1E-7", "-12.50" → "-12.50", "0.000123" → "0.000123".
        for (text, java) in [
            ("4.0", "4.0"),
            ("1.0E7", "1.0E+7"),
            ("0.0000001", "1E-7"),
            ("-12.50", "-12.50"),
            ("0.000123", "0.000123"),
            ("15", "15"),
        ] {
            assert_eq!(java_decimal_text(&parse(text).unwrap()), java, "{text}");
        }
    }
}
