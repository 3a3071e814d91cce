//! Shoal's Kinesis consumer: shard discovery and lineage, checkpoints, throttling, KPL
//! de-aggregation, behind a small source trait that can also be fed from memory.
#![warn(missing_docs)]

pub mod client;
pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod secret;
pub mod sequence;

pub use config::{AssumeRole, KinesisConfig, ShardIteratorType, StartPosition, StaticCredentials};
pub use secret::Secret;
pub use sequence::SequenceNumber;
