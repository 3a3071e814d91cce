//! Pinot's broker response: `resultTable`, `exceptions` and the scan statistics, field by field
//! as Pinot writes them (the `pinotdb` client needs `numServersQueried`/`numServersResponded`;
//! pinot-common `BrokerResponseNative.java`).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field};
use serde::Serialize;
use serde_json::{Number, Value};
use shoal_query::{QueryError, QueryResult};
use shoal_segment::columns::PINOT_TYPE_KEY;
use std::time::{Duration, Instant};

/// The column names and Pinot types of a result.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataSchema {
    /// Column names.
    pub column_names: Vec<String>,
    /// Pinot type names (`LONG`, `STRING`, `STRING_ARRAY`, ...).
    pub column_data_types: Vec<String>,
}

/// The rows of a result.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultTable {
    /// The schema.
    pub data_schema: DataSchema,
    /// The rows, as JSON values.
    pub rows: Vec<Vec<Value>>,
}

/// One error, with Pinot's code.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueryException {
    /// 150 parse/validation, 200 execution, 250 timeout.
    pub error_code: i32,
    /// What went wrong.
    pub message: String,
}

/// Pinot's error code for a segment that could not be read (`SERVER_SEGMENT_MISSING`).
pub const SEGMENT_MISSING: i32 = 235;

/// The broker's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerResponse {
    /// The result, absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_table: Option<ResultTable>,
    /// Errors.
    pub exceptions: Vec<QueryException>,
    /// Rows read by the scans (rows of the segments not pruned).
    pub num_docs_scanned: u64,
    /// Rows in every segment queried.
    pub total_docs: u64,
    /// Segments in the snapshot.
    pub num_segments_queried: u64,
    /// Segments read after pruning.
    pub num_segments_processed: u64,
    /// Segments read that hold rows.
    pub num_segments_matched: u64,
    /// Consuming segments queried.
    pub num_consuming_segments_queried: u64,
    /// Oldest last-append time among the consuming segments, epoch ms (0 when none).
    pub min_consuming_freshness_time_ms: i64,
    /// Rows in the result.
    pub num_rows_result_set: u64,
    /// Wall time of the query.
    pub time_used_ms: u64,
    /// True when the result was cut at the row limit or a segment could not be read.
    pub partial_result: bool,
    /// Always 1: one process is the whole cluster.
    pub num_servers_queried: u32,
    /// Always 1.
    pub num_servers_responded: u32,
}

impl BrokerResponse {
    /// The answer for a finished query.
    pub fn from_result(result: &QueryResult, took: Duration) -> BrokerResponse {
        let fields: Vec<&Field> = result.schema.fields().iter().map(|f| f.as_ref()).collect();
        let mut rows = Vec::new();
        for batch in &result.batches {
            for r in 0..batch.num_rows() {
                rows.push(batch.columns().iter().map(|c| json_value(c, r)).collect());
            }
        }
        let s = &result.stats;
        BrokerResponse {
            result_table: Some(ResultTable {
                data_schema: DataSchema {
                    column_names: fields.iter().map(|f| f.name().clone()).collect(),
                    column_data_types: fields.iter().map(|f| pinot_type_name(f)).collect(),
                },
                rows,
            }),
            // Pinot's SERVER_SEGMENT_MISSING (pinot-spi/.../exception/QueryErrorCode.java): the
            // answer is computed without the segment, and says so.
            exceptions: s
                .unreadable
                .iter()
                .map(|why| QueryException { error_code: SEGMENT_MISSING, message: why.clone() })
                .collect(),
            num_docs_scanned: s.docs_scanned,
            total_docs: s.total_docs,
            num_segments_queried: s.segments_queried,
            num_segments_processed: s.segments_processed,
            num_segments_matched: s.segments_matched,
            num_consuming_segments_queried: s.consuming_queried,
            min_consuming_freshness_time_ms: s.min_consuming_freshness_ms.unwrap_or(0),
            num_rows_result_set: result.batches.iter().map(|b| b.num_rows() as u64).sum(),
            time_used_ms: took.as_millis() as u64,
            partial_result: result.truncated || !s.unreadable.is_empty(),
            num_servers_queried: 1,
            num_servers_responded: 1,
        }
    }

    /// The answer for a failed query.
    pub fn from_error(e: &QueryError, took: Duration) -> BrokerResponse {
        BrokerResponse {
            result_table: None,
            exceptions: vec![QueryException { error_code: e.kind.pinot_code(), message: e.message.clone() }],
            num_docs_scanned: 0,
            total_docs: 0,
            num_segments_queried: 0,
            num_segments_processed: 0,
            num_segments_matched: 0,
            num_consuming_segments_queried: 0,
            min_consuming_freshness_time_ms: 0,
            num_rows_result_set: 0,
            time_used_ms: took.as_millis() as u64,
            partial_result: false,
            num_servers_queried: 1,
            num_servers_responded: 1,
        }
    }
}

/// Runs `sql` on `engine` and answers as Pinot's broker does.
pub async fn answer(engine: &shoal::Engine, sql: &str) -> BrokerResponse {
    let started = Instant::now();
    match engine.sql_result(sql).await {
        Ok(result) => BrokerResponse::from_result(&result, started.elapsed()),
        Err(shoal::Error::Query(e)) => BrokerResponse::from_error(&e, started.elapsed()),
        Err(e) => BrokerResponse::from_error(
            &QueryError { kind: shoal_query::ErrorKind::Execution, message: e.to_string() },
            started.elapsed(),
        ),
    }
}

/// Runs `sql` on a bare query engine (tests and benchmarks) and answers as Pinot's broker does.
pub async fn answer_query(engine: &shoal_query::QueryEngine, sql: &str) -> BrokerResponse {
    let started = Instant::now();
    match engine.execute(sql).await {
        Ok(result) => BrokerResponse::from_result(&result, started.elapsed()),
        Err(e) => BrokerResponse::from_error(&e, started.elapsed()),
    }
}

/// Pinot's type name for a result column (the table's own name where the column kept it).
pub fn pinot_type_name(field: &Field) -> String {
    if let Some(t) = field.metadata().get(PINOT_TYPE_KEY) {
        return t.clone();
    }
    match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}_ARRAY", scalar_type_name(item.data_type()))
        }
        t => scalar_type_name(t).to_string(),
    }
}

fn scalar_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "INT",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "LONG",
        DataType::Float16 | DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "BIG_DECIMAL",
        DataType::Boolean => "BOOLEAN",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "BYTES"
        }
        _ => "STRING",
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map(Value::Number).unwrap_or_else(|| {
        Value::String(
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .to_string(),
        )
    })
}

/// One cell as Pinot writes it: numbers as numbers, TIMESTAMP as `yyyy-MM-dd HH:mm:ss.S`,
/// BYTES as hex, BIG_DECIMAL as text, multi-value as arrays.
pub fn json_value(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    use arrow::datatypes::*;
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Binary => Value::String(hex(array.as_binary::<i32>().value(row))),
        DataType::LargeBinary => Value::String(hex(array.as_binary::<i64>().value(row))),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Value::String(format_timestamp(array.as_primitive::<TimestampMillisecondType>().value(row)))
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Value::Array((0..items.len()).map(|i| json_value(&items, i)).collect())
        }
        _ => match arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &Default::default()) {
            Ok(f) => Value::String(f.value(row).to_string()),
            Err(_) => Value::Null,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pinot's TIMESTAMP text: `2024-01-31 12:34:56.789` (`.0` when whole seconds).
fn format_timestamp(ms: i64) -> String {
    let pattern =
        shoal_segment::JavaDatePattern::parse("yyyy-MM-dd HH:mm:ss").expect("a fixed, valid pattern");
    let base = pattern.format_millis(ms);
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        format!("{base}.0")
    } else {
        format!("{base}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}
