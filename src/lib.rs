//! Shoal: an embedded real-time OLAP engine. It consumes an Amazon Kinesis stream into
//! Pinot-style REALTIME tables: rows are queryable as soon as they are consumed, and segments
//! seal to memory-mapped columnar files as they fill.
//!
//! ```no_run
//! # async fn demo(table: serde_json::Value, schema: serde_json::Value) -> Result<(), shoal::Error> {
//! let engine = shoal::Engine::open("data").await?;
//! engine.create_table(&table, &schema).await?;
//! let batches = engine.sql("SELECT count(*) FROM events").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod append;
pub mod config;
mod deep;
mod dimension;
mod embed;
pub mod engine;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod table;
pub mod transform;
mod upsert;

pub use upsert::UpsertCounters;

pub use append::Appended;
pub use config::{ConfigError, TableConfig, TableDefinition};
pub use deep::{DeepStore, DeepStoreOptions};
#[cfg(feature = "fault-injection")]
pub use engine::Faults;
pub use engine::{Engine, EngineOptions, KinesisSources, SourceFactory};
pub use error::Error;
pub use metrics::Metrics;
pub use shoal_query::{
    QueryOptions, QueryResult, RequestOptions, register_pinot_functions as register_functions,
};
pub use shoal_segment::{Problem, Schema};
pub use shoal_stream::Secret;
pub use table::{
    DeepStoreStatus, PauseStatus, QuarantineState, QuarantinedSegment, ScrubOptions, SegmentStatus,
    ShardState, ShardStatus, TableStatus,
};
