//! Shoal's SQL: DataFusion over sealed and consuming segments, read-only, under limits, with
//! Pinot's functions (from `shoal-functions`) and dialect (query options, default LIMIT, result
//! names and types). Pinot's wire formats live in `shoal-server`.
#![warn(missing_docs)]

pub mod dialect;
mod dictionary_group;
pub mod engine;
mod from_statistics;
mod guard;
mod literal;
pub mod lookup;
pub mod provider;
pub mod rewrite;
mod scan;

pub use dialect::{PinotOptions, RequestOptions};

/// Registers Shoal's Pinot functions in an app's own DataFusion context: the scalar functions
/// (`DATETRUNC`, `DATETIMECONVERT`, `TODATETIME`, `JSON_EXTRACT_SCALAR`, `jsonPathString`,
/// `ToEpochSeconds`, the array functions, ...) and the aggregates (`PERCENTILE`, `MODE`,
/// `DISTINCTCOUNTHLL`, `SUMPRECISION`, the multi-value aggregates). They are the functions
/// Shoal's own queries and ingestion transforms use.
///
/// Pinot's spellings that Shoal rewrites before planning (`DISTINCTCOUNT(x)`, `PERCENTILE95(x)`,
/// `SUBSTRING(s FROM a FOR b)`, predicates on multi-value columns) are not functions and are
/// not available this way: use DataFusion's (`count(DISTINCT x)`) or Shoal's own SQL.
///
/// ```
/// let ctx = datafusion::prelude::SessionContext::new();
/// shoal_query::register_pinot_functions(&ctx);
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let df = ctx.sql("SELECT DATETRUNC('DAY', 1700000000123) AS day").await.unwrap();
/// let batches = df.collect().await.unwrap();
/// assert_eq!(batches[0].num_rows(), 1);
/// # });
/// ```
pub fn register_pinot_functions(ctx: &datafusion::prelude::SessionContext) {
    for f in shoal_functions::scalar_functions() {
        ctx.register_udf(f);
    }
    for f in shoal_functions::aggregate_functions() {
        ctx.register_udaf(f);
    }
}
pub use engine::{ErrorKind, QueryEngine, QueryError, QueryOptions, QueryResult, QueryStream};
pub use lookup::{DimensionTable, Dimensions, lookup_function};
pub use provider::{
    ColdSegment, RowValidity, ScanRecorder, ScanStats, SegmentData, ShoalTable, SnapshotSource,
    TableSnapshot, UpsertView,
};
