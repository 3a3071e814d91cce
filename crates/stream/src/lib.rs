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
pub use source::{CommittedSlot, ResumeState, ShardEvent, ShardReader, Source, SourceHandle};

/// A plain client for a local endpoint (tools and examples that create streams and put
/// records), with dummy static credentials.
pub fn local_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "local",
            "local-secret",
            None,
            None,
            "local",
        ))
        .http_client(client::http_client())
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
