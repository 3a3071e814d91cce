//! The literal arguments of an aggregation (`MODE(x, 'MAX')`, `SUMPRECISION(x, 10, 2)`,
//! `DISTINCTCOUNTHLL(x, 12)`), read when its accumulator is made: Pinot reads them once, as
//! literals (pinot-core `AggregationFunctionFactory.java`), and so does Shoal.

use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::physical_expr::expressions::Literal;

/// The literal at `index`, or None when the call has fewer arguments. An argument that is no
/// literal is an error naming the function.
pub(crate) fn literal<'a>(
    args: &'a AccumulatorArgs,
    index: usize,
    function: &str,
) -> Result<Option<&'a ScalarValue>> {
    let Some(expr) = args.exprs.get(index) else { return Ok(None) };
    match expr.downcast_ref::<Literal>() {
        Some(l) if l.value().is_null() => plan_err!("{function}: argument {} must not be NULL", index + 1),
        Some(l) => Ok(Some(l.value())),
        None => plan_err!("{function}: argument {} must be a literal", index + 1),
    }
}

/// The integer literal at `index` within `range`.
pub(crate) fn int_literal(
    args: &AccumulatorArgs,
    index: usize,
    function: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>> {
    let Some(value) = literal(args, index, function)? else { return Ok(None) };
    let n = match value {
        ScalarValue::Int8(Some(v)) => i64::from(*v),
        ScalarValue::Int16(Some(v)) => i64::from(*v),
        ScalarValue::Int32(Some(v)) => i64::from(*v),
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => i64::from(*v),
        ScalarValue::UInt16(Some(v)) => i64::from(*v),
        ScalarValue::UInt32(Some(v)) => i64::from(*v),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).unwrap_or(i64::MAX),
        other => return plan_err!("{function}: argument {} must be an integer, got {other}", index + 1),
    };
    if !range.contains(&n) {
        return plan_err!(
            "{function}: argument {} must be between {} and {}, got {n}",
            index + 1,
            range.start(),
            range.end()
        );
    }
    Ok(Some(n))
}

/// The text literal at `index`.
pub(crate) fn text_literal(args: &AccumulatorArgs, index: usize, function: &str) -> Result<Option<String>> {
    let Some(value) = literal(args, index, function)? else { return Ok(None) };
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Ok(Some(s.clone()))
        }
        other => plan_err!("{function}: argument {} must be text, got {other}", index + 1),
    }
}
