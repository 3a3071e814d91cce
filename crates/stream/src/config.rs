//! The typed Kinesis settings of a table. The root crate reads them from Pinot's string-valued
//! `streamConfigs`; nothing here sees raw strings.

use crate::secret::Secret;
use crate::sequence::SequenceNumber;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `shardIteratorType`: where a shard with no checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShardIteratorType {
    /// Only records written after the reader starts.
    Latest,
    /// The oldest record still retained.
    TrimHorizon,
    /// The first record at or after a timestamp.
    AtTimestamp,
    /// At a given sequence number.
    AtSequenceNumber,
    /// Right after a given sequence number.
    AfterSequenceNumber,
}

impl ShardIteratorType {
    /// Every value, for messages.
    pub const NAMES: &'static str =
        "LATEST, TRIM_HORIZON, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER";

    /// Parses the Kinesis name (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "LATEST" => Self::Latest,
            "TRIM_HORIZON" => Self::TrimHorizon,
            "AT_TIMESTAMP" => Self::AtTimestamp,
            "AT_SEQUENCE_NUMBER" => Self::AtSequenceNumber,
            "AFTER_SEQUENCE_NUMBER" => Self::AfterSequenceNumber,
            _ => return None,
        })
    }

    /// The Kinesis name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Latest => "LATEST",
            Self::TrimHorizon => "TRIM_HORIZON",
            Self::AtTimestamp => "AT_TIMESTAMP",
            Self::AtSequenceNumber => "AT_SEQUENCE_NUMBER",
            Self::AfterSequenceNumber => "AFTER_SEQUENCE_NUMBER",
        }
    }
}

/// Where a shard without a checkpoint starts, with what its iterator type needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartPosition {
    /// LATEST.
    Latest,
    /// TRIM_HORIZON.
    TrimHorizon,
    /// AT_TIMESTAMP, epoch milliseconds (`shardIteratorTimestamp`).
    AtTimestamp {
        /// Epoch milliseconds.
        millis: i64,
    },
    /// AT_SEQUENCE_NUMBER, per shard (`shardIteratorSequenceNumbers`); shards not listed start
    /// at TRIM_HORIZON so that nothing is skipped.
    AtSequenceNumber {
        /// Shard id to sequence number.
        shards: BTreeMap<String, SequenceNumber>,
    },
    /// AFTER_SEQUENCE_NUMBER, per shard; shards not listed start at TRIM_HORIZON.
    AfterSequenceNumber {
        /// Shard id to sequence number.
        shards: BTreeMap<String, SequenceNumber>,
    },
    /// AT_TIMESTAMP this long before the table was created: Pinot's period offset criteria
    /// (`stream.kinesis.consumer.prop.auto.offset.reset` such as `10d`, pinot-spi
    /// `OffsetCriteria`). The time is fixed once, when the table is created, so that a restart
    /// does not move it; the engine resolves it into an AT_TIMESTAMP.
    Period {
        /// How far before the table's creation, in milliseconds.
        millis: i64,
    },
}

impl StartPosition {
    /// The iterator type.
    pub fn iterator_type(&self) -> ShardIteratorType {
        match self {
            StartPosition::Latest => ShardIteratorType::Latest,
            StartPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
            StartPosition::AtTimestamp { .. } | StartPosition::Period { .. } => {
                ShardIteratorType::AtTimestamp
            }
            StartPosition::AtSequenceNumber { .. } => ShardIteratorType::AtSequenceNumber,
            StartPosition::AfterSequenceNumber { .. } => ShardIteratorType::AfterSequenceNumber,
        }
    }
}

/// Static credentials from the table config (`accessKey`, `secretKey`, `sessionToken`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticCredentials {
    /// `accessKey`.
    pub access_key: Secret,
    /// `secretKey`.
    pub secret_key: Secret,
    /// `sessionToken`, for temporary credentials.
    pub session_token: Option<Secret>,
}

/// `iamRoleBasedAccessEnabled`: assume a role through STS on top of the base credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssumeRole {
    /// `roleArn`.
    pub role_arn: String,
    /// `roleSessionName`.
    pub session_name: String,
    /// `externalId`: treated as a secret, since it guards the role.
    pub external_id: Option<Secret>,
    /// `sessionDurationSeconds` (Pinot's default 900).
    pub session_duration: Duration,
    /// `asyncSessionUpdateEnabled`: refresh the session in the background before it expires.
    pub async_session_update: bool,
}

/// Everything the Kinesis consumer needs to know about its stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KinesisConfig {
    /// `stream.kinesis.topic.name`.
    pub stream_name: String,
    /// `region`.
    pub region: String,
    /// `endpoint`: an override for emulators and VPC endpoints.
    pub endpoint: Option<String>,
    /// Static credentials; None means the default provider chain.
    pub credentials: Option<StaticCredentials>,
    /// Role to assume, if any.
    pub assume_role: Option<AssumeRole>,
    /// Where shards without a checkpoint start.
    pub start: StartPosition,
    /// `maxRecordsToFetch`: GetRecords `Limit` (1 to 10,000).
    pub max_records_to_fetch: u32,
    /// `requests_per_second_limit`: GetRecords calls per second per shard.
    pub requests_per_second: f64,
    /// `stream.kinesis.fetch.timeout.millis`: how long one fetch may take, retries included.
    pub fetch_timeout: Duration,
    /// `shardDiscoveryInterval`: how often shards are listed again (they are also listed as soon
    /// as a shard ends).
    pub shard_discovery_interval: Duration,
}

/// Pinot's default for `maxRecordsToFetch` is 20 on the seed page; 20 records a call at 1 call
/// a second cannot keep up with one shard's 1,000 records/s, so Shoal uses the API's maximum.
pub const DEFAULT_MAX_RECORDS_TO_FETCH: u32 = 10_000;
/// Largest `Limit` GetRecords accepts.
pub const MAX_RECORDS_TO_FETCH: u32 = 10_000;
/// Pinot's default `requests_per_second_limit`.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 1.0;
/// Pinot's default `stream.kinesis.fetch.timeout.millis`.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Default `shardDiscoveryInterval`.
pub const DEFAULT_SHARD_DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// Pinot's default `sessionDurationSeconds`.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(900);
