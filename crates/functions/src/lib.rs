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

mod aggregate;
mod array;
mod datetime;
mod hll;
mod json;
mod json_match;
mod literal_args;
mod mode;
mod multivalue;
mod mv_aggregate;
mod scalar;
mod string;
mod sum_precision;

use arrow::datatypes::DataType;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, Signature, Volatility};
use datetime::DatePart;
use mv_aggregate::{MvAggregate, MvOp};
use scalar::{Kind, PinotFn};

pub use json::JsonKeysPath;

/// The name of the scalar function behind Pinot's predicates on multi-value columns:
/// `mv_match(column, op, value...)` is true when one of the row's values satisfies
/// `value op ...` (`=`, `<`, `<=`, `>`, `>=`, `between`, `in`, `like`, `regexp_like`).
/// `shoal-query` rewrites `tags = 'x'` into it.
pub const MV_MATCH: &str = "mv_match";

/// Argument types with each dictionary type replaced by its values' type: Shoal's functions
/// take a dictionary-encoded column as the values it holds (DataFusion inserts the casts).
pub(crate) fn without_dictionaries(types: &[DataType]) -> Vec<DataType> {
    types
        .iter()
        .map(|t| match t {
            DataType::Dictionary(_, values) => values.as_ref().clone(),
            t => t.clone(),
        })
        .collect()
}

/// Every scalar function Shoal adds, registered under Pinot's names (and over DataFusion's
/// `substr` and `substring`, whose positions mean other things).
pub fn scalar_functions() -> Vec<ScalarUDF> {
    // Built once: a query's session registers them all, and building them (names, aliases,
    // signatures) is part of every query's fixed cost.
    static FUNCTIONS: std::sync::OnceLock<Vec<ScalarUDF>> = std::sync::OnceLock::new();
    FUNCTIONS.get_or_init(build_scalar_functions).clone()
}

fn build_scalar_functions() -> Vec<ScalarUDF> {
    let mut fns = vec![
        PinotFn::new("DATETRUNC", Kind::DateTrunc),
        PinotFn::new("DATETIMECONVERT", Kind::DateTimeConvert),
        PinotFn::new("TODATETIME", Kind::ToDateTime),
        PinotFn::new("FROMDATETIME", Kind::FromDateTime),
        PinotFn::new("ago", Kind::Ago),
        PinotFn::new("now", Kind::Now),
        PinotFn::new("JSON_EXTRACT_SCALAR", Kind::JsonExtractScalar),
        PinotFn::new("jsonPathString", Kind::JsonPathString),
        PinotFn::new("jsonPathLong", Kind::JsonPathLong),
        PinotFn::new("jsonPathDouble", Kind::JsonPathDouble),
        PinotFn::new("jsonExtractKey", Kind::JsonExtractKey),
        PinotFn::new("JSON_MATCH", Kind::JsonMatch),
        PinotFn::new("SUBSTR", Kind::Substr),
        PinotFn::new("SUBSTRING", Kind::Substring),
        PinotFn::new("REGEXP_EXTRACT", Kind::RegexpExtract),
        PinotFn::new("strcmp", Kind::Strcmp),
        PinotFn::new("jsonFormat", Kind::JsonFormat).with_aliases(&["json_format"]),
        PinotFn::new("jsonPathArray", Kind::JsonPathArray),
        PinotFn::new("arrayLength", Kind::ArrayLength).with_aliases(&["cardinality"]),
        PinotFn::new("VALUEIN", Kind::ValueIn),
        PinotFn::new(MV_MATCH, Kind::MvMatch),
    ];
    for (unit, ms) in [("Seconds", 1_000), ("Minutes", 60_000), ("Hours", 3_600_000), ("Days", 86_400_000)] {
        fns.push(PinotFn::new(&format!("ToEpoch{unit}"), Kind::ToEpoch(ms)));
        fns.push(PinotFn::new(&format!("ToEpoch{unit}Rounded"), Kind::ToEpochRounded(ms)));
        fns.push(PinotFn::new(&format!("ToEpoch{unit}Bucket"), Kind::ToEpochBucket(ms)));
        fns.push(PinotFn::new(&format!("FromEpoch{unit}"), Kind::FromEpoch(ms)));
        fns.push(PinotFn::new(&format!("FromEpoch{unit}Bucket"), Kind::FromEpochBucket(ms)));
    }
    for (part, name, aliases) in DatePart::ALL {
        fns.push(PinotFn::new(name, Kind::DatePart(part)).with_aliases(aliases));
    }
    let mut udfs: Vec<ScalarUDF> = fns.into_iter().map(ScalarUDF::from).collect();
    udfs.extend(array::functions());
    udfs
}

/// Every aggregate function Shoal adds: PERCENTILE, MODE, SUMPRECISION, DISTINCTCOUNTHLL and the
/// multi-value aggregations. Pinot's other aggregate spellings (DISTINCTCOUNT, PERCENTILE95,
/// LASTWITHTIME...) are rewritten into DataFusion's in `shoal-query`.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    static FUNCTIONS: std::sync::OnceLock<Vec<AggregateUDF>> = std::sync::OnceLock::new();
    FUNCTIONS.get_or_init(build_aggregate_functions).clone()
}

fn build_aggregate_functions() -> Vec<AggregateUDF> {
    let mut out = vec![AggregateUDF::from(aggregate::Percentile {
        signature: Signature::any(2, Volatility::Immutable),
    })];
    out.push(AggregateUDF::from(mode::Mode::new()));
    out.push(AggregateUDF::from(sum_precision::SumPrecision::new()));
    out.push(AggregateUDF::from(hll::DistinctCountHll::new()));
    out.push(AggregateUDF::from(hll::ApproxDistinct::new()));
    for op in [MvOp::Count, MvOp::Sum, MvOp::Min, MvOp::Max, MvOp::Avg, MvOp::DistinctCount] {
        out.push(AggregateUDF::from(MvAggregate::new(op)));
    }
    out
}
