//! Pinot's broker response: `resultTable`, `exceptions` and the scan statistics, field by field
//! as Pinot writes them (the `pinotdb` client needs `numServersQueried`/`numServersResponded`;
//! pinot-common `BrokerResponseNative.java`).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field};
use serde::Serialize;
use serde_json::{Number, Value};
use shoal_query::{QueryError, QueryResult, RequestOptions};
use shoal_segment::columns::PINOT_TYPE_KEY;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Pinot's code (pinot-spi `QueryErrorCode.java`).
    pub error_code: i32,
    /// `Name: detail`, as pinot-common `BrokerResponseNative.java` writes it.
    pub message: String,
}

/// Pinot's error code for a segment that could not be read (`SERVER_SEGMENT_MISSING`).
pub const SEGMENT_MISSING: i32 = 235;

/// The broker's answer, field by field and in the order of pinot-common
/// `BrokerResponseNative.java` (`@JsonPropertyOrder`), for the fields Shoal computes. Where a
/// field comes from, [`ScanStats`](shoal_query::ScanStats) says.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerResponse {
    /// The result, absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_table: Option<ResultTable>,
    /// Rows in the result.
    pub num_rows_result_set: u64,
    /// True when the answer is not the whole answer: rows cut at the result limits, a segment
    /// that could not be read, or an error (Pinot: any exception makes a result partial).
    pub partial_result: bool,
    /// Errors.
    pub exceptions: Vec<QueryException>,
    /// Always false: Shoal groups without a limit on the number of groups (Pinot trims groups
    /// past `numGroupsLimit`, 100,000, and sets this).
    pub num_groups_limit_reached: bool,
    /// Wall time of the query.
    pub time_used_ms: u64,
    /// This answer's id: a random number per process times 10^9 plus a counter, as pinot-broker
    /// `BrokerRequestIdGenerator.java` makes them.
    pub request_id: String,
    /// Who answered: `Broker_<host>`, like Pinot's broker instance ids.
    pub broker_id: String,
    /// Rows that passed the filters and were read on.
    pub num_docs_scanned: u64,
    /// Rows in every segment queried.
    pub total_docs: u64,
    /// Values read to evaluate the filters.
    pub num_entries_scanned_in_filter: u64,
    /// Values read after filtering.
    pub num_entries_scanned_post_filter: u64,
    /// Always 1: one process is the whole cluster.
    pub num_servers_queried: u32,
    /// Always 1.
    pub num_servers_responded: u32,
    /// Segments in the snapshot.
    pub num_segments_queried: u64,
    /// Segments read after pruning.
    pub num_segments_processed: u64,
    /// Segments with at least one row that passed the filters.
    pub num_segments_matched: u64,
    /// Consuming segments queried.
    pub num_consuming_segments_queried: u64,
    /// Consuming segments read after pruning.
    pub num_consuming_segments_processed: u64,
    /// Consuming segments with at least one row that passed the filters.
    pub num_consuming_segments_matched: u64,
    /// Oldest last-append time among the consuming segments, epoch ms (0 when none).
    pub min_consuming_freshness_time_ms: i64,
    /// With the `trace` option: per server (Shoal's one, by its broker id), a JSON document of
    /// what each phase took and the plan with its operators' metrics. Empty otherwise.
    pub trace_info: BTreeMap<String, String>,
    /// The tables the query read, without `_REALTIME`.
    pub tables_queried: Vec<String>,
    /// Query options Shoal ignored because no Pinot version knows them, one sentence each.
    /// Pinot only logs these (pinot-common `QueryOptionsUtils.validateSqlQueryOptions`, WARN
    /// mode); Shoal logs them too and tells the client here, in a field of its own that Pinot's
    /// clients skip (pinot-common's `BrokerResponseNative` reads with `ignoreUnknown`). Left out
    /// of the JSON when empty, so Pinot's shape stays as it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Who answers queries: the broker id and the source of request ids.
#[derive(Debug)]
pub struct BrokerIdentity {
    id: String,
    base: u64,
    next: AtomicU64,
}

impl BrokerIdentity {
    /// An identity named `id`, its request ids starting at a random base.
    pub fn new(id: impl Into<String>) -> BrokerIdentity {
        use std::hash::{BuildHasher, Hasher};
        // pinot-broker BrokerRequestIdGenerator.java: a random int times 10^9, plus a counter
        // modulo 10^9.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        BrokerIdentity {
            id: id.into(),
            base: (random % i32::MAX as u64) * REQUEST_ID_OFFSET,
            next: AtomicU64::new(0),
        }
    }

    /// The broker id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn request_id(&self) -> String {
        (self.base + self.next.fetch_add(1, Ordering::Relaxed) % REQUEST_ID_OFFSET).to_string()
    }
}

const REQUEST_ID_OFFSET: u64 = 1_000_000_000;

/// The process's identity: `Broker_<host name>`.
pub static BROKER: LazyLock<BrokerIdentity> = LazyLock::new(|| {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    BrokerIdentity::new(format!("Broker_{host}"))
});

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
        // Pinot's SERVER_SEGMENT_MISSING (pinot-spi/.../exception/QueryErrorCode.java): the
        // answer is computed without the segment, and says so.
        let exceptions: Vec<QueryException> = s
            .unreadable
            .iter()
            .map(|why| QueryException {
                error_code: SEGMENT_MISSING,
                message: format!("ServerSegmentMissing: {why}"),
            })
            .collect();
        let mut trace_info = BTreeMap::new();
        if let Some(trace) = &result.trace {
            trace_info.insert(BROKER.id().to_string(), trace.clone());
        }
        BrokerResponse {
            result_table: Some(ResultTable {
                data_schema: DataSchema {
                    column_names: fields.iter().map(|f| f.name().clone()).collect(),
                    column_data_types: fields.iter().map(|f| pinot_type_name(f)).collect(),
                },
                rows,
            }),
            num_rows_result_set: result.batches.iter().map(|b| b.num_rows() as u64).sum(),
            partial_result: result.truncated || !exceptions.is_empty(),
            exceptions,
            num_groups_limit_reached: false,
            time_used_ms: took.as_millis() as u64,
            request_id: BROKER.request_id(),
            broker_id: BROKER.id().to_string(),
            num_docs_scanned: s.docs_scanned,
            total_docs: s.total_docs,
            num_entries_scanned_in_filter: s.entries_scanned_in_filter,
            num_entries_scanned_post_filter: s.entries_scanned_post_filter,
            num_servers_queried: 1,
            num_servers_responded: 1,
            num_segments_queried: s.segments_queried,
            num_segments_processed: s.segments_processed,
            num_segments_matched: s.segments_matched,
            num_consuming_segments_queried: s.consuming_queried,
            num_consuming_segments_processed: s.consuming_processed,
            num_consuming_segments_matched: s.consuming_matched,
            min_consuming_freshness_time_ms: s.min_consuming_freshness_ms.unwrap_or(0),
            trace_info,
            tables_queried: result.tables.clone(),
            warnings: result
                .options
                .ignored
                .iter()
                .map(|key| format!("Unsupported query option '{key}': ignored"))
                .collect(),
        }
    }

    /// The answer for a failed query: one exception, `Name: detail`.
    pub fn from_error(e: &QueryError, took: Duration) -> BrokerResponse {
        BrokerResponse {
            result_table: None,
            num_rows_result_set: 0,
            // pinot-common BrokerResponseNative.isPartialResult: true whenever there are
            // exceptions.
            partial_result: true,
            exceptions: vec![QueryException {
                error_code: e.kind.pinot_code(),
                message: format!("{}: {}", e.kind.pinot_name(), e.message),
            }],
            num_groups_limit_reached: false,
            time_used_ms: took.as_millis() as u64,
            request_id: BROKER.request_id(),
            broker_id: BROKER.id().to_string(),
            num_docs_scanned: 0,
            total_docs: 0,
            num_entries_scanned_in_filter: 0,
            num_entries_scanned_post_filter: 0,
            num_servers_queried: 1,
            num_servers_responded: 1,
            num_segments_queried: 0,
            num_segments_processed: 0,
            num_segments_matched: 0,
            num_consuming_segments_queried: 0,
            num_consuming_segments_processed: 0,
            num_consuming_segments_matched: 0,
            min_consuming_freshness_time_ms: 0,
            trace_info: BTreeMap::new(),
            tables_queried: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Runs `sql` on `engine` and answers as Pinot's broker does.
pub async fn answer(engine: &shoal::Engine, sql: &str) -> BrokerResponse {
    answer_with(engine, sql, &RequestOptions::default()).await
}

/// Runs `sql` with its request's options (`queryOptions`, `trace`) on `engine` and answers as
/// Pinot's broker does.
pub async fn answer_with(engine: &shoal::Engine, sql: &str, request: &RequestOptions) -> BrokerResponse {
    let started = Instant::now();
    match engine.sql_with(sql, request).await {
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
    answer_query_with(engine, sql, &RequestOptions::default()).await
}

/// Runs `sql` with its request's options on a bare query engine and answers as Pinot's broker
/// does.
pub async fn answer_query_with(
    engine: &shoal_query::QueryEngine,
    sql: &str,
    request: &RequestOptions,
) -> BrokerResponse {
    let started = Instant::now();
    match engine.execute_with(sql, request).await {
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
        DataType::Dictionary(_, value) => scalar_type_name(value),
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
        // A dictionary-encoded column: the value its key names.
        DataType::Dictionary(key, _) if **key == DataType::Int32 => {
            let dictionary = array.as_dictionary::<Int32Type>();
            match usize::try_from(dictionary.keys().value(row)) {
                Ok(at) if at < dictionary.values().len() => json_value(dictionary.values(), at),
                _ => Value::Null,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array};
    use arrow::datatypes::Int32Type;
    use std::sync::Arc;

    #[test]
    fn a_dictionary_column_answers_with_its_values_and_their_type() {
        let strings: DictionaryArray<Int32Type> =
            vec![Some("US"), None, Some("DE"), Some("US")].into_iter().collect();
        let strings: ArrayRef = Arc::new(strings);
        let cells: Vec<Value> = (0..4).map(|row| json_value(&strings, row)).collect();
        assert_eq!(cells, vec![Value::from("US"), Value::Null, Value::from("DE"), Value::from("US")]);
        let field = Field::new("country", strings.data_type().clone(), true);
        assert_eq!(pinot_type_name(&field), "STRING");

        let keys = arrow::array::Int32Array::from(vec![1, 0]);
        let longs =
            DictionaryArray::<Int32Type>::try_new(keys, Arc::new(Int64Array::from(vec![7, 9]))).unwrap();
        let longs: ArrayRef = Arc::new(longs);
        assert_eq!(json_value(&longs, 0), Value::from(9));
        let field = Field::new("n", longs.data_type().clone(), true);
        assert_eq!(pinot_type_name(&field), "LONG");
    }
}
