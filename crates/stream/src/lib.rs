//! Shoal's Kinesis consumer: shard discovery and lineage, checkpoints, throttling, KPL
//! de-aggregation, behind a small source trait that can also be fed from memory.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod consumer;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod kpl;
pub mod lineage;
pub mod memory;
pub mod metrics;
pub mod reader;
pub mod record;
pub mod secret;
pub mod sequence;
pub mod source;

pub use config::{AssumeRole, KinesisConfig, ShardIteratorType, StartPosition, StaticCredentials};
pub use consumer::KinesisSource;
pub use memory::MemorySource;
pub use metrics::{ShardMetricsSnapshot, StreamMetrics};
pub use record::{Checkpoint, Record};
pub use secret::Secret;
pub use sequence::SequenceNumber;
pub use source::{ResumeState, ShardEvent, ShardReader, Source, SourceHandle};

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
