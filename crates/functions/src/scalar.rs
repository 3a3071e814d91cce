//! The scalar UDF every Pinot scalar function is: one name, one [`Kind`], the argument checks
//! and the result type, and [`Call`], which reads one call's arguments with errors naming the
//! function and the argument.

use crate::{datetime, json, json_match, multivalue, string};
use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use shoal_segment::datetime::JavaDatePattern;
use shoal_segment::zone::TimeZone;
use std::sync::Arc;

/// What a Pinot scalar function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    DateTrunc,
    DateTimeConvert,
    ToDateTime,
    FromDateTime,
    Ago,
    Now,
    /// toEpochSeconds...: millis to whole units of this many ms.
    ToEpoch(i64),
    /// fromEpochSeconds...: units of this many ms to millis.
    FromEpoch(i64),
    /// toEpochSecondsRounded(millis, n)...
    ToEpochRounded(i64),
    /// toEpochSecondsBucket(millis, n)...
    ToEpochBucket(i64),
    /// fromEpochSecondsBucket(value, n)...
    FromEpochBucket(i64),
    /// YEAR, MONTH, HOUR...
    DatePart(datetime::DatePart),
    JsonExtractScalar,
    JsonPathString,
    JsonPathLong,
    JsonPathDouble,
    JsonExtractKey,
    JsonMatch,
    Substr,
    Substring,
    RegexpExtract,
    Strcmp,
    JsonFormat,
    JsonPathArray,
    ArrayLength,
    ValueIn,
    /// The any/all comparison of a multi-value column that `rewrite.rs` writes for Pinot's
    /// multi-value predicates.
    MvMatch,
}

/// One Pinot scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PinotFn {
    /// The name SQL calls it by (lowercase).
    name: String,
    /// Other names (lowercase).
    aliases: Vec<String>,
    /// Pinot's spelling, for messages.
    title: String,
    kind: Kind,
    signature: Signature,
}

impl PinotFn {
    pub(crate) fn new(title: &str, kind: Kind) -> PinotFn {
        let volatility = match kind {
            Kind::Ago | Kind::Now => Volatility::Stable,
            _ => Volatility::Immutable,
        };
        let signature = if kind == Kind::Now {
            Signature::nullary(volatility)
        } else {
            // Any arguments, dictionaries decoded (`coerce_types`).
            Signature::user_defined(volatility)
        };
        PinotFn {
            name: title.to_ascii_lowercase(),
            aliases: Vec::new(),
            title: title.to_string(),
            kind,
            signature,
        }
    }

    /// The same function under other names too.
    pub(crate) fn with_aliases(mut self, aliases: &[&str]) -> PinotFn {
        self.aliases = aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
        self
    }

    /// An execution error naming this function.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("{}: {message}", self.title))
    }

    fn plan_error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Plan(format!("{}: {message}", self.title))
    }
}

pub(crate) fn literal_string(arg: Option<&Option<&ScalarValue>>) -> Option<String> {
    match arg {
        Some(Some(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
        )) => Some(s.clone()),
        _ => None,
    }
}

impl ScalarUDFImpl for PinotFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(crate::without_dictionaries(arg_types))
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let n = args.arg_fields.len();
        let arity = |lo: usize, hi: usize, usage: &str| {
            if n < lo || n > hi {
                plan_err!("{}: wrong number of arguments: use {usage}", self.title)
            } else {
                Ok(())
            }
        };
        let t = match self.kind {
            Kind::DateTrunc => {
                arity(
                    2,
                    5,
                    "DATETRUNC('unit', timeValue[, 'inputTimeUnit'[, 'timeZone'[, 'outputTimeUnit']]])",
                )?;
                DataType::Int64
            }
            Kind::DateTimeConvert => {
                arity(4, 4, "DATETIMECONVERT(value, 'inputFormat', 'outputFormat', 'granularity')")?;
                datetime::convert_return_type(&args).map_err(|e| self.plan_error(e))?
            }
            Kind::ToDateTime => {
                arity(2, 3, "TODATETIME(millis, 'pattern'[, 'timeZone'])")?;
                DataType::Utf8
            }
            Kind::FromDateTime => {
                arity(2, 4, "FROMDATETIME(text, 'pattern'[, 'timeZone'[, default]])")?;
                DataType::Int64
            }
            Kind::Ago => {
                arity(1, 1, "ago('PT1H')")?;
                DataType::Int64
            }
            Kind::Now => {
                arity(0, 0, "now()")?;
                DataType::Int64
            }
            Kind::ToEpoch(_) | Kind::FromEpoch(_) => {
                arity(1, 1, &format!("{}(value)", self.title))?;
                DataType::Int64
            }
            Kind::ToEpochRounded(_) | Kind::ToEpochBucket(_) | Kind::FromEpochBucket(_) => {
                arity(2, 2, &format!("{}(value, n)", self.title))?;
                DataType::Int64
            }
            Kind::DatePart(_) => {
                arity(1, 2, &format!("{}(millis[, 'timeZone'])", self.title))?;
                DataType::Int32
            }
            Kind::JsonExtractScalar => {
                arity(3, 4, "JSON_EXTRACT_SCALAR(json, '$.path', 'TYPE'[, default])")?;
                let ty = literal_string(args.scalar_arguments.get(2))
                    .ok_or_else(|| self.plan_error("the result type must be a literal"))?;
                json::pinot_type(&ty).ok_or_else(|| {
                    self.plan_error(format_args!(
                        "unknown type {ty:?}: use INT, LONG, FLOAT, DOUBLE, BOOLEAN or STRING"
                    ))
                })?
            }
            Kind::JsonPathString => {
                arity(2, 3, "jsonPathString(json, '$.path'[, default])")?;
                DataType::Utf8
            }
            Kind::JsonPathLong => {
                arity(2, 3, "jsonPathLong(json, '$.path'[, default])")?;
                DataType::Int64
            }
            Kind::JsonPathDouble => {
                arity(2, 3, "jsonPathDouble(json, '$.path'[, default])")?;
                DataType::Float64
            }
            Kind::JsonExtractKey => {
                arity(2, 3, "jsonExtractKey(json, '$.path'[, 'maxDepth=n;dotNotation=true'])")?;
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
            Kind::JsonMatch => {
                arity(2, 2, "JSON_MATCH(json, '\"$.path\" = ''value''')")?;
                DataType::Boolean
            }
            Kind::Substr => {
                arity(2, 3, "SUBSTR(text, beginIndex[, endIndex])")?;
                DataType::Utf8
            }
            Kind::Substring => {
                arity(2, 3, "SUBSTRING(text, start[, length])")?;
                DataType::Utf8
            }
            Kind::Strcmp => {
                arity(2, 2, "strcmp(text1, text2)")?;
                DataType::Int32
            }
            Kind::JsonFormat => {
                arity(1, 1, "jsonFormat(value)")?;
                DataType::Utf8
            }
            Kind::JsonPathArray => {
                arity(2, 2, "jsonPathArray(json, '$.path')")?;
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
            }
            Kind::RegexpExtract => {
                arity(2, 4, "REGEXP_EXTRACT(text, 'regexp'[, group[, 'default']])")?;
                DataType::Utf8
            }
            Kind::ArrayLength => {
                arity(1, 1, "arrayLength(mvColumn)")?;
                // A record's array reaches an ingestion transform as JSON text.
                let t = args.arg_fields[0].data_type();
                if !matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null) {
                    multivalue::element_type(t).map_err(|e| self.plan_error(e))?;
                }
                DataType::Int32
            }
            Kind::ValueIn => {
                arity(2, usize::MAX, "VALUEIN(mvColumn, 'value1', 'value2', ...)")?;
                let t = args.arg_fields[0].data_type();
                multivalue::element_type(t).map_err(|e| self.plan_error(e))?;
                t.clone()
            }
            Kind::MvMatch => {
                arity(3, usize::MAX, "an any/all match of a multi-value column")?;
                DataType::Boolean
            }
        };
        Ok(Arc::new(Field::new(&self.name, t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = Call { function: self, args: &args.args, rows: args.number_rows };
        let out: ArrayRef = match self.kind {
            Kind::DateTrunc => Arc::new(datetime::date_trunc(&call)?),
            Kind::DateTimeConvert => datetime::date_time_convert(&call)?,
            Kind::ToDateTime => datetime::to_date_time(&call)?,
            Kind::FromDateTime => datetime::from_date_time(&call)?,
            Kind::Ago => return datetime::ago(&call),
            Kind::Now => return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(datetime::now())))),
            Kind::ToEpoch(ms) => datetime::to_epoch(&call, ms)?,
            Kind::FromEpoch(ms) => datetime::from_epoch(&call, ms, false)?,
            Kind::ToEpochRounded(ms) => datetime::to_epoch_rounded(&call, ms, true)?,
            Kind::ToEpochBucket(ms) => datetime::to_epoch_rounded(&call, ms, false)?,
            Kind::FromEpochBucket(ms) => datetime::from_epoch(&call, ms, true)?,
            Kind::DatePart(part) => datetime::date_part(&call, part)?,
            Kind::JsonExtractScalar => json::json_extract_scalar(&call, args.return_field.data_type())?,
            Kind::JsonPathString => json::json_path_string(&call)?,
            Kind::JsonPathLong => json::json_path_long(&call)?,
            Kind::JsonPathDouble => json::json_path_double(&call)?,
            Kind::JsonExtractKey => json::json_extract_key(&call)?,
            Kind::JsonMatch => json_match::json_match(&call)?,
            Kind::Substr => string::substr(&call)?,
            Kind::Substring => string::substring(&call)?,
            Kind::RegexpExtract => string::regexp_extract(&call)?,
            Kind::Strcmp => string::strcmp(&call)?,
            Kind::JsonFormat => json::json_format(&call)?,
            Kind::JsonPathArray => json::json_path_array(&call)?,
            Kind::ArrayLength => multivalue::array_length(&call)?,
            Kind::ValueIn => multivalue::value_in(&call)?,
            Kind::MvMatch => multivalue::mv_match(&call)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// One call's arguments, read with errors that name the function and the argument.
pub(crate) struct Call<'a> {
    pub(crate) function: &'a PinotFn,
    pub(crate) args: &'a [ColumnarValue],
    pub(crate) rows: usize,
}

impl Call<'_> {
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        self.function.error(message)
    }

    pub(crate) fn arg(&self, i: usize) -> Result<&ColumnarValue> {
        self.args.get(i).ok_or_else(|| self.error(format_args!("argument {} is missing", i + 1)))
    }

    /// Argument `i`, which must be a text literal (a unit, a pattern, a format).
    pub(crate) fn text(&self, i: usize) -> Result<String> {
        match self.arg(i)? {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            ) => Ok(s.clone()),
            _ => Err(self.error(format_args!("argument {} must be a text literal", i + 1))),
        }
    }

    /// Argument `i`, which must be an integer literal.
    pub(crate) fn integer(&self, i: usize) -> Result<i64> {
        match self.arg(i)? {
            ColumnarValue::Scalar(s) if !s.is_null() => match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(v))) if !matches!(s, ScalarValue::Utf8(_)) => Ok(v),
                _ => Err(self.error(format_args!("argument {} must be an integer literal, not {s}", i + 1))),
            },
            _ => Err(self.error(format_args!("argument {} must be an integer literal", i + 1))),
        }
    }

    /// Argument `i` as an array of `to`; timestamps become epoch millis.
    pub(crate) fn cast(&self, i: usize, to: &DataType) -> Result<ArrayRef> {
        let array = self.arg(i)?.to_array(self.rows)?;
        let array = match (array.data_type(), to) {
            (DataType::Timestamp(_, _), DataType::Int64) => {
                cast(&array, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))
                    .and_then(|ms| cast(&ms, to))
            }
            _ => cast(&array, to),
        };
        array.map_err(|e| self.error(format_args!("argument {}: {e}", i + 1)))
    }

    pub(crate) fn longs(&self, i: usize) -> Result<Int64Array> {
        Ok(self.cast(i, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
    }

    pub(crate) fn texts(&self, i: usize) -> Result<StringArray> {
        Ok(self.cast(i, &DataType::Utf8)?.as_string::<i32>().clone())
    }

    pub(crate) fn pattern(&self, i: usize) -> Result<JavaDatePattern> {
        JavaDatePattern::parse(&self.text(i)?).map_err(|e| self.error(e))
    }

    /// The optional time zone argument `i` (UTC when absent).
    pub(crate) fn zone(&self, i: usize) -> Result<TimeZone> {
        if self.args.len() <= i {
            return Ok(TimeZone::UTC);
        }
        TimeZone::parse(&self.text(i)?).map_err(|e| self.error(format_args!("timeZone: {e}")))
    }
}

/// Applies `f` to each non-null value, keeping nulls; an error of `f` fails the call.
pub(crate) fn map_longs_into<T, A>(values: &Int64Array, f: impl Fn(i64) -> Result<T>) -> Result<A>
where
    A: FromIterator<Option<T>>,
{
    values.iter().map(|v| v.map(&f).transpose()).collect::<Result<A>>()
}

/// [`map_longs`] for a function with a short way (inlined into the loop) that gives None where
/// the long way must decide: `long` runs only for those values, for its answer or its error.
pub(crate) fn map_longs_or<O: ArrowPrimitiveType>(
    values: &Int64Array,
    short: impl Fn(i64) -> Option<O::Native>,
    long: impl Fn(i64) -> Result<O::Native>,
) -> Result<PrimitiveArray<O>> {
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.values().iter().enumerate() {
        out.push(if values.is_null(i) {
            O::Native::default()
        } else {
            match short(v) {
                Some(x) => x,
                None => long(v)?,
            }
        });
    }
    Ok(PrimitiveArray::new(out.into(), values.nulls().cloned()))
}

/// [`map_longs_into`] for a primitive result: written straight into a values buffer, the
/// input's null buffer shared (a null slot holds the default value, `f` is not called on it).
pub(crate) fn map_longs<O: ArrowPrimitiveType>(
    values: &Int64Array,
    f: impl Fn(i64) -> Result<O::Native>,
) -> Result<PrimitiveArray<O>> {
    map_longs_or(values, |_| None, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Int64Type;
    use std::cell::RefCell;

    #[test]
    fn map_longs_or_takes_the_long_way_only_where_the_short_one_gives_none() {
        let values = Int64Array::from(vec![Some(4), None, Some(-3), Some(10)]);
        let long_calls = RefCell::new(Vec::new());
        let short = |v: i64| (v >= 0).then_some(v * 2);
        let long = |v: i64| {
            long_calls.borrow_mut().push(v);
            Ok(v * 100)
        };
        let out = map_longs_or::<Int64Type>(&values, short, long).unwrap();
        assert_eq!(out, Int64Array::from(vec![Some(8), None, Some(-300), Some(20)]));
        // The null slot is not computed; only -3 went the long way.
        assert_eq!(*long_calls.borrow(), vec![-3]);
        // The long way's error is the answer.
        let refused = map_longs_or::<Int64Type>(&values, short, |v| {
            Err(datafusion::common::DataFusionError::Execution(format!("{v} is out of range")))
        });
        assert!(refused.unwrap_err().to_string().contains("-3 is out of range"));
    }
}
