//! Shoal's SQL: DataFusion over sealed and consuming segments, read-only, under limits, with
//! Pinot's functions (from `shoal-functions`). Pinot's wire formats live in `shoal-server`.
#![warn(missing_docs)]

pub mod engine;
mod guard;
pub mod provider;
pub mod rewrite;

pub use engine::{ErrorKind, QueryEngine, QueryError, QueryOptions, QueryResult, QueryStream};
pub use provider::{ScanStats, SegmentData, ShoalTable, SnapshotSource, TableSnapshot};
