//! Shoal: an embedded real-time OLAP engine. It consumes an Amazon Kinesis stream into
//! Pinot-style REALTIME tables: rows are queryable as soon as they are consumed, and segments
//! seal to memory-mapped columnar files as they fill.
#![warn(missing_docs)]

pub mod config;

pub use config::{ConfigError, TableConfig, TableDefinition};
pub use shoal_segment::{Problem, Schema};
pub use shoal_stream::Secret;
