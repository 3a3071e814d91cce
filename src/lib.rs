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
pub use error::{Error, ErrorKind};
pub use metrics::Metrics;
pub use shoal_query::{
    ErrorKind as QueryErrorKind, QueryError, QueryOptions, QueryResult, QueryStream, RequestOptions,
    ScanStats, register_pinot_functions as register_functions,
};
/// The Arrow and DataFusion Shoal is built with: an app that uses these names has the versions
/// Shoal's tables and batches need.
pub use {arrow, datafusion};

/// What a table reads records from, for an app that feeds a table from a source of its own:
/// implement [`Source`](source::Source) (one [`ShardReader`](source::ShardReader) per shard,
/// each yielding [`ShardEvent`](source::ShardEvent)s of [`Record`](source::Record)s in order)
/// and hand the engine a [`SourceFactory`] that makes it
/// ([`EngineOptions::with_sources`]). `examples/channel_source.rs` feeds a table from an
/// in-process channel this way. A table's checkpoints ([`ResumeState`](source::ResumeState))
/// say where a source resumes after a restart: a source that cannot read again what was not
/// yet committed loses it at a crash, which is what [`Engine::append`] and its log avoid.
pub mod source {
    pub use crate::engine::{KinesisSources, SourceFactory};
    pub use shoal_stream::source::Control;
    pub use shoal_stream::{
        Checkpoint, Record, ResumeState, SequenceNumber, ShardEvent, ShardReader, Source, SourceHandle,
        StreamMetrics,
    };
}
pub use shoal_segment::{Problem, Schema};
pub use shoal_stream::Secret;
pub use table::{
    DeepStoreStatus, PauseStatus, QuarantineState, QuarantinedSegment, ScrubOptions, SegmentStatus,
    ShardState, ShardStatus, TableStatus,
};
