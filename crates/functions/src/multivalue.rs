//! Pinot's scalar functions over multi-value columns (Arrow lists): arrayLength, VALUEIN, and the
//! any-element match behind Pinot's predicates on multi-value columns (`tags = 'x'`), which
//! `shoal-query`'s rewrite writes as `mv_match(tags, '=', 'x')`.

use crate::scalar::Call;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, GenericListArray, Int32Array, UInt32Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::kernels::cmp::{eq, gt, gt_eq, lt, lt_eq};
use arrow::compute::{cast, filter, or_kleene, take};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use regex::Regex;
use std::sync::Arc;

/// The element field of a multi-value argument; an error says it must be one.
pub(crate) fn element_type(t: &DataType) -> std::result::Result<FieldRef, String> {
    match t {
        DataType::List(f) | DataType::LargeList(f) => Ok(Arc::clone(f)),
        other => Err(format!("the first argument must be a multi-value column, not {other}")),
    }
}

/// The items of `text` when it is a JSON array (how an ingestion transform receives a
/// record's array, as Pinot hands it on).
pub(crate) fn json_items(text: &str) -> Option<Vec<serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => Some(items),
        _ => None,
    }
}

/// The first argument as a list array (large lists are read as lists; JSON text arrays, as an
/// ingestion transform receives a record's array, as lists of their items' text).
fn list(call: &Call) -> Result<GenericListArray<i32>> {
    let array = call.arg(0)?.to_array(call.rows)?;
    let array = match array.data_type() {
        DataType::LargeList(f) => cast(&array, &DataType::List(Arc::clone(f)))?,
        DataType::List(_) => array,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(&array, &DataType::Utf8)?;
            let mut builder = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
            for value in text.as_string::<i32>().iter() {
                match value {
                    None => builder.append_null(),
                    Some(t) => {
                        let items =
                            json_items(t).ok_or_else(|| call.error(format_args!("{t:?} is not an array")))?;
                        for item in items {
                            match item {
                                serde_json::Value::Null => builder.values().append_null(),
                                serde_json::Value::String(s) => builder.values().append_value(s),
                                other => builder.values().append_value(other.to_string()),
                            }
                        }
                        builder.append(true);
                    }
                }
            }
            Arc::new(builder.finish())
        }
        other => {
            return Err(
                call.error(format_args!("the first argument must be a multi-value column, not {other}"))
            );
        }
    };
    Ok(array.as_list::<i32>().clone())
}

/// arrayLength(mv) (pinot-core ArrayLengthTransformFunction.java): the number of values.
pub(crate) fn array_length(call: &Call) -> Result<ArrayRef> {
    let list = list(call)?;
    let lengths: Int32Array =
        (0..list.len()).map(|i| list.is_valid(i).then(|| list.value_length(i))).collect();
    Ok(Arc::new(lengths))
}

/// VALUEIN(mv, v1, v2, ...) (pinot-core ValueInTransformFunction.java): the values of each row
/// that are among the literals, in their order in the row.
pub(crate) fn value_in(call: &Call) -> Result<ArrayRef> {
    let list = list(call)?;
    let values = list.values();
    let element = values.data_type();
    let mut keep = BooleanArray::from(vec![false; values.len()]);
    for i in 1..call.args.len() {
        let ColumnarValue::Scalar(literal) = call.arg(i)? else {
            return Err(call.error(format_args!("argument {} must be a literal", i + 1)));
        };
        // Pinot reads each literal as text and parses it as the column's type.
        let text = ScalarValue::Utf8(Some(literal.to_string()));
        let typed = text
            .cast_to(element)
            .map_err(|_| call.error(format_args!("the value {literal} is not a {element} of the column")))?;
        keep = or_kleene(&keep, &eq(values, &typed.to_scalar()?)?)?;
    }
    // Nulls inside a row are never among the literals.
    let keep = BooleanArray::from(keep.iter().map(|k| k == Some(true)).collect::<Vec<_>>());
    let kept_values = filter(values, &keep)?;
    let mut offsets = Vec::with_capacity(list.len() + 1);
    offsets.push(0i32);
    let mut kept = 0i32;
    for row in 0..list.len() {
        let (start, end) = (list.value_offsets()[row] as usize, list.value_offsets()[row + 1] as usize);
        kept += (start..end).filter(|&j| keep.value(j)).count() as i32;
        offsets.push(kept);
    }
    let DataType::List(field) = list.data_type() else {
        return Err(call.error("the first argument must be a multi-value column"));
    };
    Ok(Arc::new(GenericListArray::<i32>::try_new(
        Arc::clone(field),
        OffsetBuffer::new(offsets.into()),
        kept_values,
        list.nulls().cloned(),
    )?))
}

/// mv_match(mv, op, value...): true when one value of the row satisfies `value op rhs` (`=`,
/// `<`, `<=`, `>`, `>=`, `between` with two bounds, `in` with any number, `like`, `regexp_like`).
/// This is how Pinot evaluates an inclusive predicate on a multi-value column
/// (pinot-core BaseDictionaryBasedPredicateEvaluator.applyMV); the exclusive ones (`!=`,
/// NOT IN) are the negation of the inclusive match, which is Pinot's "every value differs".
/// An empty row matches nothing; a null row is null.
pub(crate) fn mv_match(call: &Call) -> Result<ArrayRef> {
    let list = list(call)?;
    let op = call.text(1)?.to_ascii_lowercase();
    let values = list.values();
    // The row of each value, to line row-wise arguments up with the values.
    let mut rows = Vec::with_capacity(values.len());
    for row in 0..list.len() {
        let n = list.value_length(row) as usize;
        rows.extend(std::iter::repeat_n(row as u32, n));
    }
    let rows = UInt32Array::from(rows);
    let value_offset = list.value_offsets()[0] as usize;
    let values = values.slice(value_offset, rows.len());
    // Argument `i` lined up with the values, and the values, cast to a common type.
    let side = |i: usize| -> Result<(ArrayRef, ArrayRef)> {
        let arg = call.arg(i)?;
        let rhs = match arg {
            ColumnarValue::Scalar(s) => s.to_array_of_size(rows.len())?,
            ColumnarValue::Array(a) => take(a, &rows, None)?,
        };
        let common = comparison_coercion(values.data_type(), rhs.data_type()).ok_or_else(|| {
            call.error(format_args!("cannot compare {} values with {}", values.data_type(), rhs.data_type()))
        })?;
        Ok((cast(&values, &common)?, cast(&rhs, &common)?))
    };
    let hits: BooleanArray = match op.as_str() {
        "=" | "<" | "<=" | ">" | ">=" => {
            let (l, r) = side(2)?;
            match op.as_str() {
                "=" => eq(&l, &r)?,
                "<" => lt(&l, &r)?,
                "<=" => lt_eq(&l, &r)?,
                ">" => gt(&l, &r)?,
                _ => gt_eq(&l, &r)?,
            }
        }
        "between" => {
            let (l, low) = side(2)?;
            let (_, high) = side(3)?;
            arrow::compute::and_kleene(&gt_eq(&l, &low)?, &lt_eq(&l, &high)?)?
        }
        "in" => {
            let mut any = BooleanArray::from(vec![false; rows.len()]);
            for i in 2..call.args.len() {
                let (l, r) = side(i)?;
                any = or_kleene(&any, &eq(&l, &r)?)?;
            }
            any
        }
        "like" | "regexp_like" => {
            let pattern = call.text(2)?;
            let regex = if op == "like" { like_regex(&pattern) } else { pattern.clone() };
            let regex = Regex::new(&regex)
                .map_err(|e| call.error(format_args!("the pattern {pattern:?} is not supported: {e}")))?;
            let text = cast(&values, &DataType::Utf8)?;
            text.as_string::<i32>().iter().map(|v| v.map(|v| regex.is_match(v))).collect()
        }
        other => return Err(call.error(format_args!("unknown comparison {other:?}"))),
    };
    let mut out = BooleanBuilder::with_capacity(list.len());
    let mut at = 0usize;
    for row in 0..list.len() {
        let n = list.value_length(row) as usize;
        if list.is_null(row) {
            out.append_null();
        } else {
            out.append_value((at..at + n).any(|j| hits.is_valid(j) && hits.value(j)));
        }
        at += n;
    }
    let out = out.finish();
    let nulls = NullBuffer::union(out.nulls(), list.nulls());
    Ok(Arc::new(BooleanArray::new(out.values().clone(), nulls)))
}

/// SQL LIKE (`%`, `_`, no escape) as an anchored regular expression.
fn like_regex(pattern: &str) -> String {
    let mut out = String::from("(?s)^");
    for c in pattern.chars() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}
