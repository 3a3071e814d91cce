//! Shoal's SQL: DataFusion over sealed and consuming segments, read-only, under limits, with
//! Pinot's functions and Pinot's broker response.
#![warn(missing_docs)]

pub mod engine;
pub mod functions;
pub mod provider;
pub mod response;
pub mod rewrite;

pub use engine::{ErrorKind, QueryEngine, QueryError, QueryOptions, QueryResult, QueryStream};
pub use provider::{ScanStats, SegmentData, ShoalTable, SnapshotSource, TableSnapshot};
pub use response::BrokerResponse;
