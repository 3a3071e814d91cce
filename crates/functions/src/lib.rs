//! Pinot's functions with Pinot's semantics, as DataFusion scalar and aggregate UDFs: the one
//! library Shoal's queries and its ingestion transforms share.
//!
//! Queries register [`scalar_functions`] and [`aggregate_functions`] in their DataFusion session
//! (`shoal-query`). Ingestion transforms (`transformConfigs`, `filterConfig`) will evaluate the
//! same functions over decoded batches: a transform is a DataFusion expression planned against
//! the decoded batch's schema and evaluated over the `RecordBatch` before it is appended. So a
//! function means the same at ingest and at query time, down to its edge cases and its errors.
//!
//! What Pinot defines, Shoal copies, and each behaviour names the Pinot source file it comes
//! from. A function or argument Shoal cannot honour is an error, never silently ignored.
//!
//! Arguments come from queries: every conversion is checked, and a value whose result does not
//! fit in i64 is an execution error naming the function and the argument, where Pinot's Java
//! would saturate or wrap (`TimeUnit.toMillis`, `epochTime * size`).
#![warn(missing_docs)]

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use shoal_segment::datetime::{
    DateTimeFormat, Granularity, JavaDatePattern, TimeUnit, check_utc, civil_from_days, days_from_civil,
};
use shoal_segment::mutable::now_ms;
use std::sync::Arc;

/// Every scalar function Shoal adds.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::from(PinotFn::new("DATETRUNC", Kind::DateTrunc, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("DATETIMECONVERT", Kind::DateTimeConvert, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("TODATETIME", Kind::ToDateTime, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("FROMDATETIME", Kind::FromDateTime, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("ago", Kind::Ago, Volatility::Stable)),
        ScalarUDF::from(PinotFn::new("now", Kind::Now, Volatility::Stable)),
        ScalarUDF::from(PinotFn::new("JSON_EXTRACT_SCALAR", Kind::JsonExtractScalar, Volatility::Immutable)),
    ];
    for (unit, ms) in [("Seconds", 1_000), ("Minutes", 60_000), ("Hours", 3_600_000), ("Days", 86_400_000)] {
        out.push(ScalarUDF::from(PinotFn::new(
            &format!("ToEpoch{unit}"),
            Kind::ToEpoch(ms),
            Volatility::Immutable,
        )));
        out.push(ScalarUDF::from(PinotFn::new(
            &format!("FromEpoch{unit}"),
            Kind::FromEpoch(ms),
            Volatility::Immutable,
        )));
    }
    out
}

/// Every aggregate function Shoal adds.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![AggregateUDF::from(Percentile { signature: Signature::any(2, Volatility::Immutable) })]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    DateTrunc,
    DateTimeConvert,
    ToDateTime,
    FromDateTime,
    Ago,
    Now,
    JsonExtractScalar,
    ToEpoch(i64),
    FromEpoch(i64),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PinotFn {
    /// The name SQL calls it by (lowercase).
    name: String,
    /// Pinot's spelling, for messages.
    title: String,
    kind: Kind,
    signature: Signature,
}

impl PinotFn {
    fn new(title: &str, kind: Kind, volatility: Volatility) -> PinotFn {
        let signature = if kind == Kind::Now {
            Signature::nullary(volatility)
        } else {
            Signature::variadic_any(volatility)
        };
        PinotFn { name: title.to_ascii_lowercase(), title: title.to_string(), kind, signature }
    }

    /// An execution error naming this function.
    fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("{}: {message}", self.title))
    }
}

fn literal_string(arg: Option<&Option<&ScalarValue>>) -> Option<String> {
    match arg {
        Some(Some(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
        )) => Some(s.clone()),
        _ => None,
    }
}

/// The Arrow type of a Pinot result type name.
fn pinot_type(name: &str) -> Option<DataType> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "INT" | "INTEGER" => DataType::Int32,
        "LONG" => DataType::Int64,
        "FLOAT" => DataType::Float32,
        "DOUBLE" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "STRING" | "JSON" | "BIG_DECIMAL" | "TIMESTAMP" => DataType::Utf8,
        _ => return None,
    })
}

impl ScalarUDFImpl for PinotFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
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
                arity(2, 5, "DATETRUNC('unit', timeValue[, 'inputTimeUnit'[, 'UTC'[, 'outputTimeUnit']]])")?;
                DataType::Int64
            }
            Kind::DateTimeConvert => {
                arity(4, 4, "DATETIMECONVERT(value, 'inputFormat', 'outputFormat', 'granularity')")?;
                let out = literal_string(args.scalar_arguments.get(2)).ok_or_else(|| {
                    DataFusionError::Plan("DATETIMECONVERT: the output format must be a literal".into())
                })?;
                match DateTimeFormat::parse(&out) {
                    Ok(DateTimeFormat::SimpleDate(_)) => DataType::Utf8,
                    Ok(_) => DataType::Int64,
                    Err(e) => return plan_err!("DATETIMECONVERT: output format: {e}"),
                }
            }
            Kind::ToDateTime => {
                arity(2, 3, "TODATETIME(millis, 'pattern'[, 'UTC'])")?;
                DataType::Utf8
            }
            Kind::FromDateTime => {
                arity(2, 3, "FROMDATETIME(text, 'pattern'[, 'UTC'])")?;
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
            Kind::JsonExtractScalar => {
                arity(3, 4, "JSON_EXTRACT_SCALAR(json, '$.path', 'TYPE'[, default])")?;
                let ty = literal_string(args.scalar_arguments.get(2)).ok_or_else(|| {
                    DataFusionError::Plan("JSON_EXTRACT_SCALAR: the result type must be a literal".into())
                })?;
                pinot_type(&ty).ok_or_else(|| {
                    DataFusionError::Plan(format!("JSON_EXTRACT_SCALAR: unknown type {ty:?}: use INT, LONG, FLOAT, DOUBLE, BOOLEAN or STRING"))
                })?
            }
            Kind::ToEpoch(_) | Kind::FromEpoch(_) => {
                arity(1, 1, &format!("{}(value)", self.title))?;
                DataType::Int64
            }
        };
        Ok(Arc::new(Field::new(&self.name, t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = Call { function: self, args: &args.args, rows: args.number_rows };
        let out: ArrayRef = match self.kind {
            Kind::DateTrunc => Arc::new(date_trunc(&call)?),
            Kind::DateTimeConvert => date_time_convert(&call)?,
            Kind::ToDateTime => {
                let pattern = call.pattern(1)?;
                call.utc(2)?;
                Arc::new(
                    call.longs(0)?
                        .iter()
                        .map(|v| v.map(|v| pattern.format_millis(v)))
                        .collect::<StringArray>(),
                )
            }
            Kind::FromDateTime => {
                let pattern = call.pattern(1)?;
                call.utc(2)?;
                Arc::new(
                    call.texts(0)?
                        .iter()
                        .map(|v| v.map(|s| pattern.try_parse_millis(s).map_err(|e| call.error(e))))
                        .map(|v| v.transpose().map(Option::flatten))
                        .collect::<Result<Int64Array>>()?,
                )
            }
            Kind::Ago => {
                let period = call.text(0)?;
                let ms = iso_duration_ms(&period).map_err(|e| call.error(e))?;
                let at = now_ms().checked_sub(ms).ok_or_else(|| {
                    call.error(format_args!("{period:?} before now is out of range of epoch milliseconds"))
                })?;
                return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(at))));
            }
            Kind::Now => return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(now_ms())))),
            Kind::JsonExtractScalar => json_extract_scalar(&call, args.return_field.data_type())?,
            // Truncated toward zero, as Java's TimeUnit.MILLISECONDS.toSeconds (pinot-common
            // DateTimeFunctions.java); a division by a positive constant cannot overflow.
            Kind::ToEpoch(ms) => {
                Arc::new(call.longs(0)?.iter().map(|v| v.map(|v| v / ms)).collect::<Int64Array>())
            }
            Kind::FromEpoch(ms) => Arc::new(
                call.longs(0)?
                    .iter()
                    .map(|v| {
                        v.map(|v| {
                            v.checked_mul(ms).ok_or_else(|| {
                                call.error(format_args!("{v} is out of range of epoch milliseconds"))
                            })
                        })
                        .transpose()
                    })
                    .collect::<Result<Int64Array>>()?,
            ),
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// One call's arguments, read with errors that name the function and the argument.
struct Call<'a> {
    function: &'a PinotFn,
    args: &'a [ColumnarValue],
    rows: usize,
}

impl Call<'_> {
    fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        self.function.error(message)
    }

    fn arg(&self, i: usize) -> Result<&ColumnarValue> {
        self.args.get(i).ok_or_else(|| self.error(format_args!("argument {} is missing", i + 1)))
    }

    /// Argument `i`, which must be a text literal (a unit, a pattern, a format).
    fn text(&self, i: usize) -> Result<String> {
        match self.arg(i)? {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            ) => Ok(s.clone()),
            _ => Err(self.error(format_args!("argument {} must be a text literal", i + 1))),
        }
    }

    /// Argument `i` as an array of `to`; timestamps become epoch millis.
    fn cast(&self, i: usize, to: &DataType) -> Result<ArrayRef> {
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

    fn longs(&self, i: usize) -> Result<Int64Array> {
        Ok(self.cast(i, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
    }

    fn texts(&self, i: usize) -> Result<StringArray> {
        Ok(self.cast(i, &DataType::Utf8)?.as_string::<i32>().clone())
    }

    fn pattern(&self, i: usize) -> Result<JavaDatePattern> {
        JavaDatePattern::parse(&self.text(i)?).map_err(|e| self.error(e))
    }

    /// The optional time zone argument `i`: only UTC, as everywhere in Shoal.
    fn utc(&self, i: usize) -> Result<()> {
        if self.args.len() <= i {
            return Ok(());
        }
        check_utc(&self.text(i)?).map_err(|e| self.error(format_args!("timeZone: {e}")))
    }
}

/// DATETRUNC(unit, timeValue[, inputTimeUnit[, timeZone[, outputTimeUnit]]]) as in pinot-common
/// DateTimeFunctions.java: the value is converted to millis (truncated toward zero), floored to
/// the unit's start, and converted to the output unit (by default the input unit). Only UTC.
fn date_trunc(call: &Call) -> Result<Int64Array> {
    let unit = call.text(0)?;
    let trunc = Truncation::parse(&unit).ok_or_else(|| {
        call.error(format_args!(
            "unknown unit {unit:?}: use millisecond, second, minute, hour, day, week, month, quarter or year"
        ))
    })?;
    let time_unit = |i: usize, what: &str, default: TimeUnit| -> Result<TimeUnit> {
        if call.args.len() <= i {
            return Ok(default);
        }
        let text = call.text(i)?;
        TimeUnit::parse(&text).ok_or_else(|| {
            call.error(format_args!("unknown {what} {text:?}: use one of {}", TimeUnit::NAMES))
        })
    };
    let input = time_unit(2, "inputTimeUnit", TimeUnit::Milliseconds)?;
    call.utc(3)?;
    let output = time_unit(4, "outputTimeUnit", input)?;
    let one = |v: i64| -> Result<i64> {
        let ms = input.convert(v, TimeUnit::Milliseconds).ok_or_else(|| {
            call.error(format_args!("timeValue {v} {} is out of range of epoch milliseconds", input.name()))
        })?;
        let start = trunc.apply(ms).ok_or_else(|| {
            call.error(format_args!(
                "the start of the {unit} holding {ms} ms is out of range of epoch milliseconds"
            ))
        })?;
        TimeUnit::Milliseconds.convert(start, output).ok_or_else(|| {
            call.error(format_args!("{start} ms is out of range in outputTimeUnit {}", output.name()))
        })
    };
    call.longs(1)?.iter().map(|v| v.map(one).transpose()).collect()
}

/// DATETIMECONVERT(value, inputFormat, outputFormat, granularity): the value read in the input
/// format, bucketed by the granularity, written in the output format.
fn date_time_convert(call: &Call) -> Result<ArrayRef> {
    let (input_text, output_text, granularity_text) = (call.text(1)?, call.text(2)?, call.text(3)?);
    let input =
        DateTimeFormat::parse(&input_text).map_err(|e| call.error(format_args!("input format: {e}")))?;
    let output =
        DateTimeFormat::parse(&output_text).map_err(|e| call.error(format_args!("output format: {e}")))?;
    let granularity =
        Granularity::parse(&granularity_text).map_err(|e| call.error(format_args!("granularity: {e}")))?;
    // A granularity under a millisecond leaves millis as they are (pinot-core
    // BaseDateTimeTransformer.java); otherwise millis are bucketed by its length, which is at
    // most u32::MAX days (3.7e17 ms).
    let step_ms = (granularity.unit.nanos() / 1_000_000 * i128::from(granularity.size)).max(1);
    let step_ms = i64::try_from(step_ms)
        .map_err(|_| call.error(format_args!("granularity {granularity_text:?} is too long")))?;
    let millis: Vec<Option<i64>> = match &input {
        DateTimeFormat::SimpleDate(p) => call
            .texts(0)?
            .iter()
            .map(|v| v.map(|s| p.try_parse_millis(s).map_err(|e| call.error(format_args!("input: {e}")))))
            .map(|v| v.transpose().map(Option::flatten))
            .collect::<Result<_>>()?,
        f => call
            .longs(0)?
            .iter()
            .map(|v| {
                v.map(|v| {
                    f.epoch_to_millis(v).ok_or_else(|| {
                        call.error(format_args!(
                            "{v} in the input format {input_text:?} is out of range of epoch milliseconds"
                        ))
                    })
                })
                .transpose()
            })
            .collect::<Result<_>>()?,
    };
    let bucket = |m: i64| {
        m.div_euclid(step_ms).checked_mul(step_ms).ok_or_else(|| {
            call.error(format_args!(
                "the bucket of granularity {granularity_text:?} holding {m} ms starts out of range of epoch milliseconds"
            ))
        })
    };
    let bucketed = millis.into_iter().map(|m| m.map(bucket).transpose());
    Ok(match &output {
        DateTimeFormat::SimpleDate(p) => Arc::new(
            bucketed.map(|m| m.map(|m| m.map(|m| p.format_millis(m)))).collect::<Result<StringArray>>()?,
        ),
        f => Arc::new(
            bucketed
                .map(|m| {
                    m?.map(|m| {
                        f.epoch_value(m).ok_or_else(|| {
                            call.error(format_args!(
                                "{m} ms is out of range in the output format {output_text:?}"
                            ))
                        })
                    })
                    .transpose()
                })
                .collect::<Result<Int64Array>>()?,
        ),
    })
}

/// JSON_EXTRACT_SCALAR(json, path, type[, default]): the value at the path as `ty`; a document
/// without it (or with what is not of the type) takes the default, or is an error.
fn json_extract_scalar(call: &Call, ty: &DataType) -> Result<ArrayRef> {
    let path_text = call.text(1)?;
    let path = json_path(&path_text).map_err(|e| call.error(e))?;
    let type_name = call.text(2)?;
    let default = match call.args.get(3) {
        None => None,
        Some(ColumnarValue::Scalar(s)) if s.is_null() => None,
        Some(ColumnarValue::Scalar(s)) => Some(
            s.cast_to(ty).map_err(|_| call.error(format_args!("the default {s} is not a {type_name}")))?,
        ),
        Some(_) => return Err(call.error("the default must be a literal")),
    };
    let text = call.texts(0)?;
    let extracted: StringArray = text.iter().map(|doc| doc.and_then(|d| extract(d, &path))).collect();
    let typed = cast(&extracted, ty).map_err(|e| call.error(e))?;
    Ok(match default {
        Some(default) => arrow::compute::kernels::zip::zip(
            &arrow::compute::is_not_null(&typed)?,
            &typed,
            &default.to_array_of_size(call.rows)?,
        )?,
        None if (0..text.len()).any(|i| text.is_valid(i) && typed.is_null(i)) => {
            return Err(call.error(format_args!(
                "the path {path_text} is missing or not a {type_name} in a document, and no default was given"
            )));
        }
        None => typed,
    })
}

/// ISO-8601 durations, as Java's `Duration.parse` reads them for Pinot's `ago` (pinot-common
/// DateTimeFunctions.java): `PT1H`, `P1D`, `PT30M`, `P1DT12H`, `PT0.5S` (a fraction on seconds
/// only), plus weeks (`P1W`). Signs are not read. A duration past i64 milliseconds is an error,
/// where Java's `toMillis` throws too.
fn iso_duration_ms(text: &str) -> std::result::Result<i64, String> {
    let bad = || format!("{text:?} is not an ISO-8601 duration such as PT1H or P1D");
    let t = text.trim().to_ascii_uppercase();
    let mut rest = t.strip_prefix('P').ok_or_else(bad)?;
    let (mut in_time, mut date_parts, mut time_parts) = (false, 0, 0);
    let mut total = 0f64;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time {
                return Err(bad());
            }
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number = &rest[..end];
        let n: f64 = number.parse().map_err(|_| bad())?;
        let unit = rest[end..].chars().next().ok_or_else(bad)?;
        if number.contains('.') && unit != 'S' {
            return Err(bad());
        }
        total += n * match (unit, in_time) {
            ('W', false) => 604_800_000.0,
            ('D', false) => 86_400_000.0,
            ('H', true) => 3_600_000.0,
            ('M', true) => 60_000.0,
            ('S', true) => 1_000.0,
            _ => return Err(bad()),
        };
        *(if in_time { &mut time_parts } else { &mut date_parts }) += 1;
        // The unit is one of the ASCII letters above: one byte.
        rest = &rest[end + 1..];
    }
    if date_parts + time_parts == 0 || (in_time && time_parts == 0) {
        return Err(bad());
    }
    // i64::MAX as f64 rounds up to 2^63, which is itself out of range.
    if total >= i64::MAX as f64 {
        return Err(format!("{text:?} is out of range: longer than i64 milliseconds"));
    }
    Ok(total as i64)
}

#[derive(Debug, Clone, Copy)]
enum Truncation {
    Fixed(i64),
    Week,
    Month,
    Quarter,
    Year,
}

impl Truncation {
    fn parse(unit: &str) -> Option<Truncation> {
        Some(match unit.trim().to_ascii_lowercase().as_str() {
            "millisecond" | "milliseconds" => Truncation::Fixed(1),
            "second" | "seconds" => Truncation::Fixed(1_000),
            "minute" | "minutes" => Truncation::Fixed(60_000),
            "hour" | "hours" => Truncation::Fixed(3_600_000),
            "day" | "days" => Truncation::Fixed(86_400_000),
            "week" | "weeks" => Truncation::Week,
            "month" | "months" => Truncation::Month,
            "quarter" | "quarters" => Truncation::Quarter,
            "year" | "years" => Truncation::Year,
            _ => return None,
        })
    }

    /// Truncates epoch ms (UTC); weeks start on Monday, as in Pinot. None when the start is
    /// before i64::MIN ms (near i64::MIN every start but the millisecond's is).
    fn apply(self, ms: i64) -> Option<i64> {
        let day = ms.div_euclid(86_400_000);
        match self {
            Truncation::Fixed(step) => ms.div_euclid(step).checked_mul(step),
            // 1970-01-01 was a Thursday: Monday-based week starts are 3 days earlier.
            Truncation::Week => (day - (day + 3).rem_euclid(7)).checked_mul(86_400_000),
            Truncation::Month | Truncation::Quarter | Truncation::Year => {
                // |day| < 2^47: the calendar arithmetic stays far inside i64.
                let (y, m, _) = civil_from_days(day);
                let month = match self {
                    Truncation::Month => m,
                    Truncation::Quarter => (m - 1) / 3 * 3 + 1,
                    _ => 1,
                };
                days_from_civil(y, month, 1).checked_mul(86_400_000)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// A simple JSONPath: `$.a.b[0].c` or `$['a']`.
fn json_path(text: &str) -> std::result::Result<Vec<PathStep>, String> {
    let bad = || format!("{text:?} is not a JSON path such as $.a.b[0]");
    let mut rest = text.trim().strip_prefix('$').ok_or_else(bad)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(bad)?;
            steps.push(PathStep::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            steps.push(PathStep::Index(r[..end].trim().parse().map_err(|_| bad())?));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(PathStep::Key(r[..end].to_string()));
            rest = &r[end..];
        } else {
            return Err(bad());
        }
    }
    Ok(steps)
}

fn extract(doc: &str, path: &[PathStep]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(doc).ok()?;
    let mut at = &value;
    for step in path {
        at = match step {
            PathStep::Key(k) => at.get(k)?,
            PathStep::Index(i) => at.get(*i)?,
        };
    }
    match at {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `PERCENTILE(x, p)`: Pinot's exact percentile, the sorted value at index `(int)(n * p / 100)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Percentile {
    signature: Signature,
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
        self.values.extend(v.as_primitive::<Float64Type>().iter().flatten());
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
        self.values.sort_by(f64::total_cmp);
        let n = self.values.len();
        let index = ((n as f64 * p / 100.0) as usize).min(n - 1);
        Ok(ScalarValue::Float64(Some(self.values[index])))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = ScalarValue::new_list_nullable(
            &self.values.iter().map(|v| ScalarValue::Float64(Some(*v))).collect::<Vec<_>>(),
            &DataType::Float64,
        );
        Ok(vec![ScalarValue::List(list), ScalarValue::Float64(self.percentile)])
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
            self.values.extend(values.iter().flatten());
        }
        if self.percentile.is_none() {
            self.percentile = p.iter().flatten().next();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_by_calendar() {
        let ms = 1_706_704_496_789; // 2024-01-31T12:34:56.789Z, a Wednesday
        let at = |unit: &str, ms: i64| Truncation::parse(unit).unwrap().apply(ms);
        assert_eq!(at("hour", ms), Some(1_706_702_400_000));
        assert_eq!(at("day", ms), Some(1_706_659_200_000));
        assert_eq!(at("week", ms), Some(1_706_486_400_000)); // Monday 29th
        assert_eq!(at("month", ms), Some(1_704_067_200_000));
        assert_eq!(at("quarter", 1_715_000_000_000), Some(1_711_929_600_000)); // 2024-04-01
        assert_eq!(at("year", ms), Some(1_704_067_200_000));
        // i64::MIN ms is -292275055-05-16T16:47:04.192Z: every start but the millisecond's is
        // before it; i64::MAX's starts are all after i64::MIN.
        assert_eq!(at("millisecond", i64::MIN), Some(i64::MIN));
        for unit in ["second", "minute", "hour", "day", "week", "month", "quarter", "year"] {
            assert_eq!(at(unit, i64::MIN), None, "{unit}");
            assert!(at(unit, i64::MAX).is_some(), "{unit}");
        }
    }

    #[test]
    fn iso_durations_and_json_paths() {
        assert_eq!(iso_duration_ms("PT1H"), Ok(3_600_000));
        assert_eq!(iso_duration_ms("P1DT30M"), Ok(88_200_000));
        assert_eq!(iso_duration_ms("PT0.5S"), Ok(500));
        for bad in ["1H", "P", "PT", "P1DT", "PTT1H", "PT0.5H", "P1H", "PT1D", "P1\u{e9}", ""] {
            assert!(iso_duration_ms(bad).unwrap_err().contains("ISO-8601"), "{bad}");
        }
        // 106,751,991,167 days is just under i64::MAX ms; 106,751,991,168 is over.
        assert_eq!(iso_duration_ms("P106751991167D"), Ok(9_223_372_036_828_800_000));
        assert!(iso_duration_ms("P106751991168D").unwrap_err().contains("out of range"));
        assert!(iso_duration_ms(&format!("PT{}S", "9".repeat(400))).unwrap_err().contains("out of range"));
        let path = json_path("$.a.b[1]['c d']").unwrap();
        assert_eq!(extract(r#"{"a": {"b": [0, {"c d": 7}]}}"#, &path), Some("7".into()));
        assert!(json_path("a.b").is_err());
    }
}
