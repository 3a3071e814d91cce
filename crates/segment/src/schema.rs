//! Pinot schema JSON: field specs, data types, default null values, dateTime formats.

use crate::datetime::{DateTimeFormat, Granularity};
use crate::problem::{JsonReader, Problems, describe, type_name};
use serde_json::Value;
use std::collections::HashSet;

/// A Pinot column data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// Decimal number.
    BigDecimal,
    /// true/false.
    Boolean,
    /// Milliseconds since the epoch.
    Timestamp,
    /// UTF-8 text.
    String,
    /// JSON text.
    Json,
    /// Raw bytes (hex in JSON input).
    Bytes,
}

impl DataType {
    /// Every type, for messages.
    pub const NAMES: &'static str =
        "INT, LONG, FLOAT, DOUBLE, BIG_DECIMAL, BOOLEAN, TIMESTAMP, STRING, JSON, BYTES";

    /// Parses Pinot's name (case-insensitive).
    pub fn parse(name: &str) -> Option<DataType> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "INT" | "INTEGER" => DataType::Int,
            "LONG" => DataType::Long,
            "FLOAT" => DataType::Float,
            "DOUBLE" => DataType::Double,
            "BIG_DECIMAL" => DataType::BigDecimal,
            "BOOLEAN" => DataType::Boolean,
            "TIMESTAMP" => DataType::Timestamp,
            "STRING" => DataType::String,
            "JSON" => DataType::Json,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    /// Pinot's name, as in the broker's `columnDataTypes`.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Int => "INT",
            DataType::Long => "LONG",
            DataType::Float => "FLOAT",
            DataType::Double => "DOUBLE",
            DataType::BigDecimal => "BIG_DECIMAL",
            DataType::Boolean => "BOOLEAN",
            DataType::Timestamp => "TIMESTAMP",
            DataType::String => "STRING",
            DataType::Json => "JSON",
            DataType::Bytes => "BYTES",
        }
    }

    /// True for the types a metric may have.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            DataType::Int | DataType::Long | DataType::Float | DataType::Double | DataType::BigDecimal
        )
    }
}

/// Which list of the schema a field came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRole {
    /// `dimensionFieldSpecs`.
    Dimension,
    /// `metricFieldSpecs`.
    Metric,
    /// `dateTimeFieldSpecs`.
    DateTime,
}

impl FieldRole {
    fn key(self) -> &'static str {
        match self {
            FieldRole::Dimension => "dimensionFieldSpecs",
            FieldRole::Metric => "metricFieldSpecs",
            FieldRole::DateTime => "dateTimeFieldSpecs",
        }
    }
}

/// A typed default null value.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    /// INT.
    Int(i32),
    /// LONG.
    Long(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// BIG_DECIMAL, as its decimal text.
    BigDecimal(String),
    /// BOOLEAN.
    Boolean(bool),
    /// TIMESTAMP, epoch milliseconds.
    Timestamp(i64),
    /// STRING or JSON text.
    String(String),
    /// BYTES.
    Bytes(Vec<u8>),
}

impl DefaultValue {
    /// Pinot's default for a type in a role.
    pub fn pinot_default(data_type: DataType, role: FieldRole) -> DefaultValue {
        let metric = role == FieldRole::Metric;
        match data_type {
            DataType::Int => DefaultValue::Int(if metric { 0 } else { i32::MIN }),
            DataType::Long => DefaultValue::Long(if metric { 0 } else { i64::MIN }),
            DataType::Float => DefaultValue::Float(if metric { 0.0 } else { f32::NEG_INFINITY }),
            DataType::Double => DefaultValue::Double(if metric { 0.0 } else { f64::NEG_INFINITY }),
            DataType::BigDecimal => DefaultValue::BigDecimal("0".to_string()),
            DataType::Boolean => DefaultValue::Boolean(false),
            DataType::Timestamp => DefaultValue::Timestamp(0),
            DataType::String | DataType::Json => DefaultValue::String("null".to_string()),
            DataType::Bytes => DefaultValue::Bytes(Vec::new()),
        }
    }

    /// Converts a `defaultNullValue` from the schema JSON to `data_type`.
    pub fn from_json(data_type: DataType, value: &Value) -> Result<DefaultValue, String> {
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(format!("must be a scalar, found {}", type_name(other))),
        };
        let bad = || format!("{} is not a valid {}", describe(value), data_type.name());
        Ok(match data_type {
            DataType::Int => {
                DefaultValue::Int(parse_integer(&text).and_then(|v| i32::try_from(v).ok()).ok_or_else(bad)?)
            }
            DataType::Long => DefaultValue::Long(parse_integer(&text).ok_or_else(bad)?),
            DataType::Float => DefaultValue::Float(parse_float(&text).ok_or_else(bad)? as f32),
            DataType::Double => DefaultValue::Double(parse_float(&text).ok_or_else(bad)?),
            DataType::BigDecimal => {
                if !is_decimal(&text) {
                    return Err(bad());
                }
                DefaultValue::BigDecimal(text)
            }
            DataType::Boolean => DefaultValue::Boolean(match text.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(bad()),
            }),
            DataType::Timestamp => DefaultValue::Timestamp(parse_integer(&text).ok_or_else(bad)?),
            DataType::String | DataType::Json => DefaultValue::String(match value {
                Value::String(s) => s.clone(),
                _ => text,
            }),
            DataType::Bytes => DefaultValue::Bytes(decode_hex(&text).ok_or_else(bad)?),
        })
    }
}

fn parse_integer(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        // "3.0" is accepted as Pinot does; "3.5" is not.
        let f = text.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
    })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}

fn is_decimal(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes hex text (Pinot's form for BYTES in JSON).
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// The dateTime part of a field spec.
#[derive(Debug, Clone, PartialEq)]
pub struct DateTimeSpec {
    /// How values are written.
    pub format: DateTimeFormat,
    /// The granularity the values are kept at.
    pub granularity: Granularity,
}

/// One column of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Data type of one value.
    pub data_type: DataType,
    /// Which list it came from.
    pub role: FieldRole,
    /// False for a multi-value column.
    pub single_value: bool,
    /// Value used when the field is missing or null (and null handling is off).
    pub default_null_value: DefaultValue,
    /// Whether the field may not be null.
    pub not_null: bool,
    /// Longest kept STRING/JSON/BYTES value; longer ones are cut, as Pinot does.
    pub max_length: usize,
    /// Set for dateTime fields.
    pub date_time: Option<DateTimeSpec>,
    /// The field's own `transformFunction` (Pinot's older form of an ingestion transform; a
    /// `transformConfigs` entry for the same column wins).
    pub transform_function: Option<String>,
}

/// A Pinot schema.
#[derive(Debug, Clone)]
pub struct Schema {
    /// `schemaName`.
    pub name: String,
    /// Every field: dimensions, then metrics, then dateTime fields, in file order.
    pub fields: Vec<FieldSpec>,
    /// `primaryKeyColumns`.
    pub primary_key_columns: Vec<String>,
    /// `enableColumnBasedNullHandling`: missing values are real nulls.
    pub null_handling: bool,
    /// The schema JSON as given (unknown keys are kept, as Pinot does).
    pub raw: Value,
}

/// Pinot's default `maxLength` for STRING, JSON and BYTES values.
pub const DEFAULT_MAX_LENGTH: usize = 512;

impl Schema {
    /// Parses and validates a schema, reporting every problem with its key path.
    pub fn from_json(doc: &Value) -> Result<(Schema, Problems), Problems> {
        let mut problems = Problems::default();
        let schema = Self::read(doc, &mut problems);
        match schema {
            Some(schema) if problems.is_ok() => Ok((schema, problems)),
            _ => Err(problems),
        }
    }

    /// Parses schema JSON text.
    pub fn from_json_str(text: &str) -> Result<(Schema, Problems), Problems> {
        match serde_json::from_str::<Value>(text) {
            Ok(doc) => Self::from_json(&doc),
            Err(e) => {
                let mut problems = Problems::default();
                problems.error("(document)", format!("not valid JSON: {e}"));
                Err(problems)
            }
        }
    }

    fn read(doc: &Value, problems: &mut Problems) -> Option<Schema> {
        let r = JsonReader::of("", doc, problems)?;
        let name = r.required_string("schemaName", problems);
        if r.get("timeFieldSpec").is_some() {
            problems.error(
                "timeFieldSpec",
                "the deprecated timeFieldSpec is not supported: describe the time column in dateTimeFieldSpecs",
            );
        }
        let null_handling = r.bool("enableColumnBasedNullHandling", problems).unwrap_or(false);
        let mut fields: Vec<FieldSpec> = Vec::new();
        let mut seen = HashSet::new();
        for role in [FieldRole::Dimension, FieldRole::Metric, FieldRole::DateTime] {
            fields.extend(r.array(role.key(), problems, |path, item, problems| {
                let field = read_field(path.clone(), item, role, problems)?;
                if !seen.insert(field.name.clone()) {
                    problems.error(
                        format!("{path}.name"),
                        format!("column {:?} is defined more than once", field.name),
                    );
                    return None;
                }
                Some(field)
            }));
        }
        if fields.is_empty() && problems.is_ok() {
            problems.error("dimensionFieldSpecs", "the schema defines no columns");
        }
        let primary_key_columns = r.string_array("primaryKeyColumns", problems).unwrap_or_default();
        for (i, column) in primary_key_columns.iter().enumerate() {
            match fields.iter().find(|f| &f.name == column) {
                None => problems.error(
                    format!("primaryKeyColumns[{i}]"),
                    format!("column {column:?} is not in the schema"),
                ),
                Some(f) if !f.single_value => problems.error(
                    format!("primaryKeyColumns[{i}]"),
                    format!("column {column:?} is multi-value; a primary key column must be single-value"),
                ),
                Some(_) => {}
            }
        }
        Some(Schema { name: name?, fields, primary_key_columns, null_handling, raw: doc.clone() })
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn read_field(path: String, item: &Value, role: FieldRole, problems: &mut Problems) -> Option<FieldSpec> {
    let r = JsonReader::of(path, item, problems)?;
    let name = r.required_string("name", problems);
    let data_type = match r.string("dataType", problems) {
        None if r.get("dataType").is_none() => {
            problems.error(r.path_of("dataType"), format!("missing: one of {}", DataType::NAMES));
            None
        }
        None => None,
        Some(text) => {
            let parsed = DataType::parse(&text);
            if parsed.is_none() {
                problems.error(
                    r.path_of("dataType"),
                    format!("unknown data type {text:?}: use one of {}", DataType::NAMES),
                );
            }
            parsed
        }
    };
    let single_value = r.bool("singleValueField", problems).unwrap_or(true);
    let not_null = r.bool("notNull", problems).unwrap_or(false);
    let max_length = match r.u64("maxLength", problems) {
        Some(0) => {
            problems.error(r.path_of("maxLength"), "must be at least 1");
            DEFAULT_MAX_LENGTH
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_LENGTH,
    };
    let data_type = data_type?;
    if role == FieldRole::Metric {
        if !data_type.is_numeric() && data_type != DataType::Bytes {
            problems.error(
                r.path_of("dataType"),
                format!(
                    "a metric must be INT, LONG, FLOAT, DOUBLE, BIG_DECIMAL or BYTES, not {}",
                    data_type.name()
                ),
            );
        }
        if !single_value {
            problems.error(r.path_of("singleValueField"), "a metric must be single-value");
        }
    }
    let date_time = if role == FieldRole::DateTime {
        read_date_time(&r, data_type, single_value, problems)
    } else {
        None
    };
    let default_null_value = match r.get("defaultNullValue") {
        None => DefaultValue::pinot_default(data_type, role),
        Some(value) => match DefaultValue::from_json(data_type, value) {
            Ok(v) => v,
            Err(message) => {
                problems.error(r.path_of("defaultNullValue"), message);
                DefaultValue::pinot_default(data_type, role)
            }
        },
    };
    Some(FieldSpec {
        name: name?,
        data_type,
        role,
        single_value,
        default_null_value,
        not_null,
        max_length,
        date_time,
        transform_function: r.string("transformFunction", problems).filter(|t| !t.trim().is_empty()),
    })
}

fn read_date_time(
    r: &JsonReader<'_>,
    data_type: DataType,
    single_value: bool,
    problems: &mut Problems,
) -> Option<DateTimeSpec> {
    if !single_value {
        problems.error(r.path_of("singleValueField"), "a dateTime field must be single-value");
    }
    let format = match r.string("format", problems) {
        None => {
            if r.get("format").is_none() {
                problems.error(
                    r.path_of("format"),
                    "missing: a dateTime field needs a format such as 1:MILLISECONDS:EPOCH",
                );
            }
            None
        }
        Some(text) => match DateTimeFormat::parse(&text) {
            Ok(f) => Some(f),
            Err(message) => {
                problems.error(r.path_of("format"), message);
                None
            }
        },
    };
    let granularity = match r.string("granularity", problems) {
        None => {
            if r.get("granularity").is_none() {
                problems.error(
                    r.path_of("granularity"),
                    "missing: a dateTime field needs a granularity such as 1:MILLISECONDS",
                );
            }
            None
        }
        Some(text) => match Granularity::parse(&text) {
            Ok(g) => Some(g),
            Err(message) => {
                problems.error(r.path_of("granularity"), message);
                None
            }
        },
    };
    let format = format?;
    let fits = match &format {
        DateTimeFormat::Epoch { .. } => {
            matches!(data_type, DataType::Int | DataType::Long | DataType::Timestamp)
        }
        DateTimeFormat::Timestamp => matches!(data_type, DataType::Timestamp | DataType::Long),
        DateTimeFormat::SimpleDate(_) => {
            matches!(data_type, DataType::String | DataType::Int | DataType::Long)
        }
    };
    if !fits {
        problems.error(
            r.path_of("dataType"),
            format!(
                "{} cannot hold this format: EPOCH needs INT, LONG or TIMESTAMP, TIMESTAMP needs TIMESTAMP or LONG, \
                 SIMPLE_DATE_FORMAT needs STRING (or INT/LONG for all-digit patterns)",
                data_type.name()
            ),
        );
    }
    Some(DateTimeSpec { format, granularity: granularity? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(problems: &Problems) -> Vec<String> {
        problems.errors.iter().map(|p| p.path.clone()).collect()
    }

    #[test]
    fn reads_every_type_default_and_format() {
        let doc = json!({
            "schemaName": "events",
            "enableColumnBasedNullHandling": true,
            "dimensionFieldSpecs": [
                {"name": "i", "dataType": "INT"},
                {"name": "tags", "dataType": "STRING", "singleValueField": false},
                {"name": "b", "dataType": "BOOLEAN", "defaultNullValue": "true"},
                {"name": "raw", "dataType": "BYTES", "defaultNullValue": "00ff"},
                {"name": "doc", "dataType": "JSON", "maxLength": 4096},
                {"name": "dec", "dataType": "BIG_DECIMAL", "defaultNullValue": "-1.50"},
                {"name": "f", "dataType": "FLOAT"}
            ],
            "metricFieldSpecs": [{"name": "m", "dataType": "DOUBLE"}, {"name": "n", "dataType": "LONG", "defaultNullValue": 7}],
            "dateTimeFieldSpecs": [
                {"name": "ts", "dataType": "LONG", "format": "1:MILLISECONDS:EPOCH", "granularity": "1:MILLISECONDS"},
                {"name": "day", "dataType": "STRING", "format": "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd", "granularity": "1:DAYS"},
                {"name": "t2", "dataType": "TIMESTAMP", "format": "TIMESTAMP", "granularity": "1:SECONDS"}
            ],
            "primaryKeyColumns": ["i"],
            "someFutureKey": {"kept": true}
        });
        let (schema, _) = Schema::from_json(&doc).unwrap();
        assert_eq!(schema.fields.len(), 12);
        assert!(schema.null_handling);
        assert_eq!(schema.field("i").unwrap().default_null_value, DefaultValue::Int(i32::MIN));
        assert_eq!(schema.field("m").unwrap().default_null_value, DefaultValue::Double(0.0));
        assert_eq!(schema.field("n").unwrap().default_null_value, DefaultValue::Long(7));
        assert_eq!(schema.field("f").unwrap().default_null_value, DefaultValue::Float(f32::NEG_INFINITY));
        assert_eq!(schema.field("b").unwrap().default_null_value, DefaultValue::Boolean(true));
        assert_eq!(schema.field("raw").unwrap().default_null_value, DefaultValue::Bytes(vec![0, 255]));
        assert_eq!(schema.field("doc").unwrap().max_length, 4096);
        assert_eq!(schema.field("doc").unwrap().default_null_value, DefaultValue::String("null".into()));
        assert!(!schema.field("tags").unwrap().single_value);
        assert!(schema.field("day").unwrap().date_time.is_some());
        assert_eq!(schema.raw["someFutureKey"]["kept"], json!(true));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let doc = json!({
            "dimensionFieldSpecs": [
                {"name": "a", "dataType": "STRNG"},
                {"dataType": "INT"},
                {"name": "a", "dataType": "LONG", "defaultNullValue": "abc"}
            ],
            "metricFieldSpecs": [{"name": "m", "dataType": "STRING"}],
            "dateTimeFieldSpecs": [
                {"name": "ts", "dataType": "LONG", "format": "1:WEEKS:EPOCH", "granularity": "1:MILLISECONDS"},
                {"name": "ts2", "dataType": "LONG", "granularity": "ms"}
            ],
            "primaryKeyColumns": ["nope"]
        });
        let problems = Schema::from_json(&doc).unwrap_err();
        assert_eq!(
            paths(&problems),
            [
                "schemaName",
                "dimensionFieldSpecs[0].dataType",
                "dimensionFieldSpecs[1].name",
                "dimensionFieldSpecs[2].defaultNullValue",
                "metricFieldSpecs[0].dataType",
                "dateTimeFieldSpecs[0].format",
                "dateTimeFieldSpecs[1].format",
                "dateTimeFieldSpecs[1].granularity",
                "primaryKeyColumns[0]",
            ]
        );
    }
}
