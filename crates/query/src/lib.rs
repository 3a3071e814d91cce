//! Shoal's SQL: DataFusion over sealed and consuming segments, read-only, under limits, with
//! Pinot's functions (from `shoal-functions`) and dialect (query options, default LIMIT, result
//! names and types). Pinot's wire formats live in `shoal-server`.
#![warn(missing_docs)]

pub mod dialect;
pub mod engine;
mod guard;
pub mod provider;
pub mod rewrite;
mod scan;

pub use dialect::{PinotOptions, RequestOptions};
pub use engine::{ErrorKind, QueryEngine, QueryError, QueryOptions, QueryResult, QueryStream};
pub use provider::{
    ColdSegment, RowValidity, ScanRecorder, ScanStats, SegmentData, ShoalTable, SnapshotSource,
    TableSnapshot, UpsertView,
};
