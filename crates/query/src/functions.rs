//! Pinot functions that DataFusion lacks or names differently: DATETRUNC, DATETIMECONVERT,
//! TODATETIME, FROMDATETIME, ToEpoch*/FromEpoch*, ago, now (epoch ms, as in Pinot),
//! JSON_EXTRACT_SCALAR, and PERCENTILE with Pinot's exact definition. The aggregate spellings
//! (DISTINCTCOUNT, ...) are rewritten in `rewrite.rs`.

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use shoal_segment::datetime::{DateTimeFormat, JavaDatePattern, civil_from_days, days_from_civil};
use std::sync::Arc;

/// Every scalar function Shoal adds.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::from(PinotFn::new("datetrunc", Kind::DateTrunc, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("datetimeconvert", Kind::DateTimeConvert, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("todatetime", Kind::ToDateTime, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("fromdatetime", Kind::FromDateTime, Volatility::Immutable)),
        ScalarUDF::from(PinotFn::new("ago", Kind::Ago, Volatility::Stable)),
        ScalarUDF::from(PinotFn::new("now", Kind::Now, Volatility::Stable)),
        ScalarUDF::from(PinotFn::new("json_extract_scalar", Kind::JsonExtractScalar, Volatility::Immutable)),
    ];
    for (unit, ms) in [("seconds", 1_000), ("minutes", 60_000), ("hours", 3_600_000), ("days", 86_400_000)] {
        out.push(ScalarUDF::from(PinotFn::new(
            &format!("toepoch{unit}"),
            Kind::ToEpoch(ms),
            Volatility::Immutable,
        )));
        out.push(ScalarUDF::from(PinotFn::new(
            &format!("fromepoch{unit}"),
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
    name: String,
    kind: Kind,
    signature: Signature,
}

impl PinotFn {
    fn new(name: &str, kind: Kind, volatility: Volatility) -> PinotFn {
        let signature = if kind == Kind::Now {
            Signature::nullary(volatility)
        } else {
            Signature::variadic_any(volatility)
        };
        PinotFn { name: name.to_string(), kind, signature }
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
                plan_err!("{}: wrong number of arguments: use {usage}", self.name)
            } else {
                Ok(())
            }
        };
        let t = match self.kind {
            Kind::DateTrunc => {
                arity(2, 5, "DATETRUNC('unit', timeValue[, inputUnit])")?;
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
                arity(2, 3, "TODATETIME(millis, 'pattern')")?;
                DataType::Utf8
            }
            Kind::FromDateTime => {
                arity(2, 3, "FROMDATETIME(text, 'pattern')")?;
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
                arity(1, 1, &format!("{}(value)", self.name))?;
                DataType::Int64
            }
        };
        Ok(Arc::new(Field::new(&self.name, t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar_text = |i: usize| -> Result<String> {
            match args.args.get(i) {
                Some(ColumnarValue::Scalar(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::LargeUtf8(Some(s))
                    | ScalarValue::Utf8View(Some(s)),
                )) => Ok(s.clone()),
                _ => exec_err!("{}: argument {} must be a text literal", self.name, i + 1),
            }
        };
        let longs = |i: usize| -> Result<Int64Array> {
            let array = args.args[i].to_array(rows)?;
            let array = match array.data_type() {
                DataType::Timestamp(_, _) => cast(
                    &cast(&array, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))?,
                    &DataType::Int64,
                )?,
                _ => cast(&array, &DataType::Int64)?,
            };
            Ok(array.as_primitive::<Int64Type>().clone())
        };
        let out: ArrayRef = match self.kind {
            Kind::DateTrunc => {
                let unit = scalar_text(0)?;
                let input_unit = if args.args.len() >= 3 { Some(scalar_text(2)?) } else { None };
                let factor = match input_unit.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("MILLISECONDS") => 1,
                    Some("SECONDS") => 1_000,
                    Some("MINUTES") => 60_000,
                    Some("HOURS") => 3_600_000,
                    Some("DAYS") => 86_400_000,
                    Some(other) => return exec_err!("DATETRUNC: unknown input unit {other:?}"),
                };
                let values = longs(1)?;
                let trunc = Truncation::parse(&unit).ok_or_else(|| {
                    DataFusionError::Execution(format!("DATETRUNC: unknown unit {unit:?}: use millisecond, second, minute, hour, day, week, month, quarter or year"))
                })?;
                Arc::new(
                    values
                        .iter()
                        .map(|v| v.map(|v| trunc.apply(v * factor) / factor))
                        .collect::<Int64Array>(),
                )
            }
            Kind::DateTimeConvert => {
                let input = DateTimeFormat::parse(&scalar_text(1)?)
                    .map_err(|e| DataFusionError::Execution(format!("DATETIMECONVERT: input format: {e}")))?;
                let output = DateTimeFormat::parse(&scalar_text(2)?).map_err(|e| {
                    DataFusionError::Execution(format!("DATETIMECONVERT: output format: {e}"))
                })?;
                let granularity = shoal_segment::Granularity::parse(&scalar_text(3)?)
                    .map_err(|e| DataFusionError::Execution(format!("DATETIMECONVERT: granularity: {e}")))?;
                let step_ms =
                    (granularity.unit.nanos() / 1_000_000).max(1) as i64 * i64::from(granularity.size);
                let millis: Vec<Option<i64>> = match &input {
                    DateTimeFormat::SimpleDate(p) => {
                        let text = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
                        text.as_string::<i32>().iter().map(|v| v.and_then(|s| p.parse_millis(s))).collect()
                    }
                    f => longs(0)?.iter().map(|v| v.and_then(|v| f.epoch_to_millis(v))).collect(),
                };
                let bucketed = millis.into_iter().map(|m| m.map(|m| m.div_euclid(step_ms) * step_ms));
                match &output {
                    DateTimeFormat::SimpleDate(p) => {
                        Arc::new(bucketed.map(|m| m.map(|m| p.format_millis(m))).collect::<StringArray>())
                    }
                    f => Arc::new(bucketed.map(|m| m.and_then(|m| f.epoch_value(m))).collect::<Int64Array>()),
                }
            }
            Kind::ToDateTime => {
                let pattern = pattern(&scalar_text(1)?, "TODATETIME")?;
                Arc::new(
                    longs(0)?.iter().map(|v| v.map(|v| pattern.format_millis(v))).collect::<StringArray>(),
                )
            }
            Kind::FromDateTime => {
                let pattern = pattern(&scalar_text(1)?, "FROMDATETIME")?;
                let text = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
                Arc::new(
                    text.as_string::<i32>()
                        .iter()
                        .map(|v| v.and_then(|s| pattern.parse_millis(s)))
                        .collect::<Int64Array>(),
                )
            }
            Kind::Ago => {
                let period = scalar_text(0)?;
                let ms = iso_duration_ms(&period).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "ago: {period:?} is not an ISO-8601 duration such as PT1H or P1D"
                    ))
                })?;
                return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(now_ms() - ms))));
            }
            Kind::Now => return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(now_ms())))),
            Kind::JsonExtractScalar => {
                let path = json_path(&scalar_text(1)?)?;
                let ty = args.return_field.data_type().clone();
                let default = args.args.get(3).map(|d| match d {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    _ => exec_err!("JSON_EXTRACT_SCALAR: the default must be a literal"),
                });
                let default = default.transpose()?;
                let text = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
                let extracted: StringArray =
                    text.as_string::<i32>().iter().map(|doc| doc.and_then(|d| extract(d, &path))).collect();
                let mut typed = cast(&extracted, &ty)?;
                if let Some(default) = default.filter(|d| !d.is_null()) {
                    let filled = default.cast_to(&ty)?.to_array_of_size(rows)?;
                    typed = arrow::compute::kernels::zip::zip(
                        &arrow::compute::is_not_null(&typed)?,
                        &typed,
                        &filled,
                    )?;
                } else if typed.null_count() > 0 && typed.null_count() != text.null_count() {
                    return exec_err!(
                        "JSON_EXTRACT_SCALAR: the path {} is missing in a document and no default was given",
                        scalar_text(1)?
                    );
                }
                typed
            }
            Kind::ToEpoch(ms) => {
                Arc::new(longs(0)?.iter().map(|v| v.map(|v| v / ms)).collect::<Int64Array>())
            }
            Kind::FromEpoch(ms) => {
                Arc::new(longs(0)?.iter().map(|v| v.and_then(|v| v.checked_mul(ms))).collect::<Int64Array>())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn pattern(text: &str, function: &str) -> Result<JavaDatePattern> {
    JavaDatePattern::parse(text).map_err(|e| DataFusionError::Execution(format!("{function}: {e}")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// ISO-8601 durations: `PT1H`, `P1D`, `PT30M`, `P1DT12H`, `PT0.5S`.
fn iso_duration_ms(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_uppercase();
    let mut rest = t.strip_prefix('P')?;
    let mut in_time = false;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..end].parse().ok()?;
        let unit = rest[end..].chars().next()?;
        total += n * match (unit, in_time) {
            ('W', false) => 604_800_000.0,
            ('D', false) => 86_400_000.0,
            ('H', true) => 3_600_000.0,
            ('M', true) => 60_000.0,
            ('S', true) => 1_000.0,
            _ => return None,
        };
        rest = &rest[end + 1..];
    }
    Some(total as i64)
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

    /// Truncates epoch ms (UTC); weeks start on Monday, as in Pinot.
    fn apply(self, ms: i64) -> i64 {
        let day = ms.div_euclid(86_400_000);
        match self {
            Truncation::Fixed(step) => ms.div_euclid(step) * step,
            // 1970-01-01 was a Thursday: Monday-based week starts are 3 days earlier.
            Truncation::Week => (day - (day + 3).rem_euclid(7)) * 86_400_000,
            Truncation::Month | Truncation::Quarter | Truncation::Year => {
                let (y, m, _) = civil_from_days(day);
                let month = match self {
                    Truncation::Month => m,
                    Truncation::Quarter => (m - 1) / 3 * 3 + 1,
                    _ => 1,
                };
                days_from_civil(y, month, 1) * 86_400_000
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
fn json_path(text: &str) -> Result<Vec<PathStep>> {
    let bad = || {
        DataFusionError::Execution(format!(
            "JSON_EXTRACT_SCALAR: {text:?} is not a JSON path such as $.a.b[0]"
        ))
    };
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
        let v = cast(&values[0], &DataType::Float64)?;
        self.values.extend(v.as_primitive::<Float64Type>().iter().flatten());
        if self.percentile.is_none() && values.len() > 1 && !values[1].is_empty() {
            let p = cast(&values[1], &DataType::Float64)?;
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
        let lists = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.values.extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        if self.percentile.is_none() {
            let p: &Float64Array = states[1].as_primitive();
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
        assert_eq!(Truncation::parse("hour").unwrap().apply(ms), 1_706_702_400_000);
        assert_eq!(Truncation::parse("day").unwrap().apply(ms), 1_706_659_200_000);
        assert_eq!(Truncation::parse("week").unwrap().apply(ms), 1_706_486_400_000); // Monday 29th
        assert_eq!(Truncation::parse("month").unwrap().apply(ms), 1_704_067_200_000);
        assert_eq!(Truncation::parse("quarter").unwrap().apply(1_715_000_000_000), 1_711_929_600_000); // 2024-04-01
        assert_eq!(Truncation::parse("year").unwrap().apply(ms), 1_704_067_200_000);
    }

    #[test]
    fn iso_durations_and_json_paths() {
        assert_eq!(iso_duration_ms("PT1H"), Some(3_600_000));
        assert_eq!(iso_duration_ms("P1DT30M"), Some(88_200_000));
        assert_eq!(iso_duration_ms("1H"), None);
        let path = json_path("$.a.b[1]['c d']").unwrap();
        assert_eq!(extract(r#"{"a": {"b": [0, {"c d": 7}]}}"#, &path), Some("7".into()));
        assert!(json_path("a.b").is_err());
    }
}
