//! Pinot's `streamConfigs` map (string keys, string values) turned into typed settings: the
//! Kinesis consumer's [`KinesisConfig`] and the segments' [`FlushThresholds`].

use super::secrets::is_secret_key;
use super::units::{format_duration, format_size, parse_duration, parse_size};
use serde_json::{Map, Value};
use shoal_segment::datetime::JavaDatePattern;
use shoal_segment::problem::{Problems, join, type_name};
use shoal_segment::threshold::{DEFAULT_FLUSH_TIME, DEFAULT_SEGMENT_SIZE, DEFAULT_TABLE_ROWS};
use shoal_segment::{FlushLimit, FlushThresholds};
use shoal_stream::config::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_RECORDS_TO_FETCH, DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_SESSION_DURATION, DEFAULT_SHARD_DISCOVERY_INTERVAL, MAX_RECORDS_TO_FETCH,
};
use shoal_stream::secret::MASK;
use shoal_stream::{
    AssumeRole, KinesisConfig, Secret, SequenceNumber, ShardIteratorType, StartPosition, StaticCredentials,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Stream keys.
pub mod keys {
    /// `kinesis`, or Shoal's `append` for a table an app feeds through `Engine::append`.
    pub const STREAM_TYPE: &str = "streamType";
    /// Stream name.
    pub const TOPIC_NAME: &str = "stream.kinesis.topic.name";
    /// AWS region.
    pub const REGION: &str = "region";
    /// Endpoint override.
    pub const ENDPOINT: &str = "endpoint";
    /// Static access key id.
    pub const ACCESS_KEY: &str = "accessKey";
    /// Static secret key.
    pub const SECRET_KEY: &str = "secretKey";
    /// Static session token (Shoal's addition, for temporary credentials).
    pub const SESSION_TOKEN: &str = "sessionToken";
    /// Start position type.
    pub const SHARD_ITERATOR_TYPE: &str = "shardIteratorType";
    /// Shoal: the timestamp for AT_TIMESTAMP (epoch ms or ISO-8601).
    pub const SHARD_ITERATOR_TIMESTAMP: &str = "shardIteratorTimestamp";
    /// Shoal: per-shard sequence numbers for AT_/AFTER_SEQUENCE_NUMBER.
    pub const SHARD_ITERATOR_SEQUENCE_NUMBERS: &str = "shardIteratorSequenceNumbers";
    /// Pinot's generic start position: `stream.<type>.` + `consumer.prop.auto.offset.reset`
    /// (StreamConfigProperties.STREAM_CONSUMER_OFFSET_CRITERIA, joined by
    /// constructStreamProperty; default `largest` in StreamConfig.java).
    pub const AUTO_OFFSET_RESET: &str = "stream.kinesis.consumer.prop.auto.offset.reset";
    /// GetRecords limit.
    pub const MAX_RECORDS_TO_FETCH: &str = "maxRecordsToFetch";
    /// GetRecords calls per second per shard.
    pub const REQUESTS_PER_SECOND: &str = "requests_per_second_limit";
    /// How long one fetch may take.
    pub const FETCH_TIMEOUT: &str = "stream.kinesis.fetch.timeout.millis";
    /// Shoal: how often shards are listed again.
    pub const SHARD_DISCOVERY_INTERVAL: &str = "shardDiscoveryInterval";
    /// Must be `lowlevel`.
    pub const CONSUMER_TYPE: &str = "stream.kinesis.consumer.type";
    /// A JSON decoder class.
    pub const DECODER_CLASS: &str = "stream.kinesis.decoder.class.name";
    /// Kinesis consumer factory class.
    pub const CONSUMER_FACTORY: &str = "stream.kinesis.consumer.factory.class.name";
    /// Assume a role.
    pub const IAM_ROLE_ENABLED: &str = "iamRoleBasedAccessEnabled";
    /// The role.
    pub const ROLE_ARN: &str = "roleArn";
    /// Its session name.
    pub const ROLE_SESSION_NAME: &str = "roleSessionName";
    /// Its external id.
    pub const EXTERNAL_ID: &str = "externalId";
    /// Its session duration.
    pub const SESSION_DURATION: &str = "sessionDurationSeconds";
    /// Refresh the session in the background.
    pub const ASYNC_SESSION_UPDATE: &str = "asyncSessionUpdateEnabled";
    /// Add record metadata columns.
    pub const METADATA_POPULATE: &str = "metadata.populate";
    /// Same, with Pinot's stream prefix.
    pub const METADATA_POPULATE_PREFIXED: &str = "stream.kinesis.metadata.populate";
    /// Rows for the table, divided across shards.
    pub const FLUSH_ROWS: &str = "realtime.segment.flush.threshold.rows";
    /// Older name of FLUSH_ROWS.
    pub const FLUSH_ROWS_OLD: &str = "realtime.segment.flush.threshold.size";
    /// Fixed rows per segment.
    pub const FLUSH_SEGMENT_ROWS: &str = "realtime.segment.flush.threshold.segment.rows";
    /// Time before a segment seals.
    pub const FLUSH_TIME: &str = "realtime.segment.flush.threshold.time";
    /// Target segment size.
    pub const FLUSH_SEGMENT_SIZE: &str = "realtime.segment.flush.threshold.segment.size";
    /// Older name of FLUSH_SEGMENT_SIZE.
    pub const FLUSH_SEGMENT_SIZE_OLD: &str = "realtime.segment.flush.desired.size";
}

/// The `streamType` of a table an app feeds through `Engine::append` (Shoal's addition).
pub const APPEND: &str = "append";
/// The decoder an `append` table uses when its config names none.
const DEFAULT_DECODER: &str = "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder";
/// The stream keys an `append` table takes.
const APPEND_KEYS: &[&str] = &[
    keys::STREAM_TYPE,
    keys::DECODER_CLASS,
    keys::METADATA_POPULATE,
    keys::METADATA_POPULATE_PREFIXED,
    keys::FLUSH_ROWS,
    keys::FLUSH_ROWS_OLD,
    keys::FLUSH_SEGMENT_ROWS,
    keys::FLUSH_TIME,
    keys::FLUSH_SEGMENT_SIZE,
    keys::FLUSH_SEGMENT_SIZE_OLD,
];

/// How record bytes are decoded. Only JSON exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// Pinot's JSONMessageDecoder or KafkaJSONMessageDecoder.
    Json,
}

/// The typed stream settings of a table.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Where the map was found, e.g. `tableIndexConfig.streamConfigs`.
    pub path: String,
    /// What the Kinesis consumer needs; None for a table the app feeds (`streamType`
    /// `append`).
    pub kinesis: Option<KinesisConfig>,
    /// When consuming segments seal.
    pub flush: FlushThresholds,
    /// How records are decoded.
    pub decoder: Decoder,
    /// The decoder class as written, kept for round trips.
    pub decoder_class: String,
    /// The consumer factory class as written, if any.
    pub consumer_factory_class: Option<String>,
    /// Add `__key`, `__metadata$sequenceNumber`, `__metadata$apprxArrivalTimestamp` columns.
    pub populate_metadata: bool,
    /// Keys Shoal does not know, kept as Pinot keeps them (secret ones masked).
    pub other: BTreeMap<String, String>,
}

/// What JSON a stream setting may be written as. Pinot's `streamConfigs` is a
/// `Map<String, String>`: Jackson reads a JSON number or boolean as its text, so a number setting
/// may be a bare number and a switch a bare boolean; a name, region, key or class written as a
/// number or boolean is a mistake, and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A JSON string only.
    Text,
    /// A JSON string or number.
    Number,
    /// A JSON string or boolean.
    Switch,
}

/// Every stream key Shoal reads, with the JSON it may be written as.
const KNOWN_KEYS: &[(&str, Kind)] = &[
    (keys::STREAM_TYPE, Kind::Text),
    (keys::TOPIC_NAME, Kind::Text),
    (keys::REGION, Kind::Text),
    (keys::ENDPOINT, Kind::Text),
    (keys::ACCESS_KEY, Kind::Text),
    (keys::SECRET_KEY, Kind::Text),
    (keys::SESSION_TOKEN, Kind::Text),
    (keys::SHARD_ITERATOR_TYPE, Kind::Text),
    // Epoch milliseconds or ISO-8601 text.
    (keys::SHARD_ITERATOR_TIMESTAMP, Kind::Number),
    // Up to 128 digits: a JSON number would lose them.
    (keys::SHARD_ITERATOR_SEQUENCE_NUMBERS, Kind::Text),
    // Bare digits are neither a period nor a timestamp to Pinot.
    (keys::AUTO_OFFSET_RESET, Kind::Text),
    (keys::MAX_RECORDS_TO_FETCH, Kind::Number),
    (keys::REQUESTS_PER_SECOND, Kind::Number),
    (keys::FETCH_TIMEOUT, Kind::Number),
    (keys::SHARD_DISCOVERY_INTERVAL, Kind::Number),
    (keys::CONSUMER_TYPE, Kind::Text),
    (keys::DECODER_CLASS, Kind::Text),
    (keys::CONSUMER_FACTORY, Kind::Text),
    (keys::IAM_ROLE_ENABLED, Kind::Switch),
    (keys::ROLE_ARN, Kind::Text),
    (keys::ROLE_SESSION_NAME, Kind::Text),
    (keys::EXTERNAL_ID, Kind::Text),
    (keys::SESSION_DURATION, Kind::Number),
    (keys::ASYNC_SESSION_UPDATE, Kind::Switch),
    (keys::METADATA_POPULATE, Kind::Switch),
    (keys::METADATA_POPULATE_PREFIXED, Kind::Switch),
    (keys::FLUSH_ROWS, Kind::Number),
    (keys::FLUSH_ROWS_OLD, Kind::Number),
    (keys::FLUSH_SEGMENT_ROWS, Kind::Number),
    (keys::FLUSH_TIME, Kind::Number),
    (keys::FLUSH_SEGMENT_SIZE, Kind::Number),
    (keys::FLUSH_SEGMENT_SIZE_OLD, Kind::Number),
];

fn known_kind(key: &str) -> Option<Kind> {
    KNOWN_KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// The string values of the map, with a path per key. A number or boolean is taken as its
/// text where the key's [`Kind`] allows it (and for keys Shoal does not know, as Pinot keeps
/// them); a value of another type is reported once, here, and the key is then treated as unset.
struct StringMap<'a> {
    path: &'a str,
    values: BTreeMap<&'a str, String>,
    /// Keys whose value was refused: not reported again as missing.
    refused: Vec<&'a str>,
}

impl<'a> StringMap<'a> {
    fn new(path: &'a str, map: &'a Map<String, Value>, problems: &mut Problems) -> Self {
        let mut values = BTreeMap::new();
        let mut refused = Vec::new();
        for (key, value) in map {
            let kind = known_kind(key);
            let text = match (value, kind) {
                (Value::Null, _) => continue,
                (Value::String(s), _) => s.clone(),
                (Value::Number(n), None | Some(Kind::Number)) => n.to_string(),
                (Value::Bool(b), None | Some(Kind::Switch)) => b.to_string(),
                (other, _) => {
                    let expected = match kind {
                        Some(Kind::Number) => "a string or a number",
                        Some(Kind::Switch) => "true or false",
                        Some(Kind::Text) | None => "a string",
                    };
                    problems
                        .error(join(path, key), format!("must be {expected}, found {}", type_name(other)));
                    refused.push(key.as_str());
                    continue;
                }
            };
            if is_placeholder(&text) {
                // The value is not shown: it may stand where a secret goes.
                problems.warn(
                    join(path, key),
                    "is still a placeholder from Pinot's docs (<...>): fill it in before the table consumes",
                );
            }
            values.insert(key.as_str(), text);
        }
        StringMap { path, values, refused }
    }

    /// True when the key's value was of a type it cannot have (and was reported).
    fn is_refused(&self, key: &str) -> bool {
        self.refused.contains(&key)
    }

    fn at(&self, key: &str) -> String {
        join(self.path, key)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn required(&self, key: &str, what: &str, problems: &mut Problems) -> Option<String> {
        let value = self.get(key).map(str::to_string);
        if value.is_none() && !self.is_refused(key) {
            problems.error(self.at(key), format!("missing: {what}"));
        }
        value
    }

    fn bool(&self, key: &str, default: bool, problems: &mut Problems) -> bool {
        match self.get(key) {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                problems.error(self.at(key), format!("{v:?} must be true or false"));
                default
            }
        }
    }

    fn u64(&self, key: &str, problems: &mut Problems) -> Option<u64> {
        let v = self.get(key)?;
        match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.error(self.at(key), format!("{v:?} must be a non-negative integer"));
                None
            }
        }
    }

    fn duration(&self, key: &str, problems: &mut Problems) -> Option<Duration> {
        let v = self.get(key)?;
        parse_duration(v).map_err(|e| problems.error(self.at(key), e)).ok()
    }

    fn size(&self, key: &str, problems: &mut Problems) -> Option<u64> {
        let v = self.get(key)?;
        parse_size(v).map_err(|e| problems.error(self.at(key), e)).ok()
    }

    /// The first of several spellings that is set, with the key it was found under.
    fn first_of<'k>(&self, names: &[&'k str]) -> Option<&'k str> {
        names.iter().copied().find(|k| self.get(k).is_some())
    }
}

impl StreamSettings {
    /// Reads the stream map found at `path`. `table` names the default role session.
    pub fn parse(
        path: &str,
        map: &Map<String, Value>,
        table: &str,
        problems: &mut Problems,
    ) -> Option<StreamSettings> {
        let m = StringMap::new(path, map, problems);

        match m.get(keys::STREAM_TYPE) {
            None => problems.error(
                m.at(keys::STREAM_TYPE),
                "missing: must be \"kinesis\" (or \"append\" for a table the app feeds)",
            ),
            Some(t) if t.eq_ignore_ascii_case("kinesis") => {}
            Some(t) if t.eq_ignore_ascii_case(APPEND) => return Self::parse_append(&m, problems),
            Some(t) => problems.error(
                m.at(keys::STREAM_TYPE),
                format!("{t:?} is not supported: Shoal consumes Kinesis (\"kinesis\"), or records an app appends (\"append\")"),
            ),
        }
        let stream_name = m.required(keys::TOPIC_NAME, "the Kinesis stream name", problems);
        let region = m.required(keys::REGION, "an AWS region such as us-east-1", problems);
        if let Some(r) = &region
            && !is_placeholder(r)
            && !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            problems.error(m.at(keys::REGION), format!("{r:?} is not a region name such as us-east-1"));
        }
        let endpoint = m.get(keys::ENDPOINT).map(str::to_string);
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            problems.error(
                m.at(keys::ENDPOINT),
                format!("{e:?} must be a URL starting with http:// or https://"),
            );
        }

        let credentials = match (m.get(keys::ACCESS_KEY), m.get(keys::SECRET_KEY)) {
            (Some(a), Some(s)) => Some(StaticCredentials {
                access_key: Secret::new(a),
                secret_key: Secret::new(s),
                session_token: m.get(keys::SESSION_TOKEN).map(Secret::new),
            }),
            (None, None) => {
                if m.get(keys::SESSION_TOKEN).is_some() {
                    problems.error(m.at(keys::SESSION_TOKEN), "needs accessKey and secretKey beside it");
                }
                None
            }
            (Some(_), None) => {
                problems.error(m.at(keys::SECRET_KEY), "missing: accessKey is set, so secretKey must be too (or unset both to use the default credential chain)");
                None
            }
            (None, Some(_)) => {
                problems.error(m.at(keys::ACCESS_KEY), "missing: secretKey is set, so accessKey must be too (or unset both to use the default credential chain)");
                None
            }
        };

        let assume_role = if m.bool(keys::IAM_ROLE_ENABLED, false, problems) {
            let role_arn = m.required(
                keys::ROLE_ARN,
                "iamRoleBasedAccessEnabled is true, so a role ARN is needed",
                problems,
            );
            if let Some(arn) = &role_arn
                && !arn.starts_with("arn:")
            {
                problems.error(
                    m.at(keys::ROLE_ARN),
                    format!("{arn:?} is not an ARN (arn:aws:iam::<account>:role/<name>)"),
                );
            }
            let seconds =
                m.u64(keys::SESSION_DURATION, problems).unwrap_or(DEFAULT_SESSION_DURATION.as_secs());
            if !(900..=43_200).contains(&seconds) {
                problems.error(
                    m.at(keys::SESSION_DURATION),
                    format!("{seconds} must be between 900 and 43200 seconds"),
                );
            }
            role_arn.map(|role_arn| AssumeRole {
                role_arn,
                session_name: m
                    .get(keys::ROLE_SESSION_NAME)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("shoal-{table}")),
                external_id: m.get(keys::EXTERNAL_ID).map(Secret::new),
                session_duration: Duration::from_secs(seconds),
                async_session_update: m.bool(keys::ASYNC_SESSION_UPDATE, true, problems),
            })
        } else {
            None
        };

        let start = parse_start(&m, problems);

        let max_records_to_fetch = match m.u64(keys::MAX_RECORDS_TO_FETCH, problems) {
            None => DEFAULT_MAX_RECORDS_TO_FETCH,
            Some(n) if (1..=u64::from(MAX_RECORDS_TO_FETCH)).contains(&n) => n as u32,
            Some(n) => {
                problems.error(
                    m.at(keys::MAX_RECORDS_TO_FETCH),
                    format!("{n} must be between 1 and {MAX_RECORDS_TO_FETCH}"),
                );
                DEFAULT_MAX_RECORDS_TO_FETCH
            }
        };
        let requests_per_second = match m.get(keys::REQUESTS_PER_SECOND) {
            None => DEFAULT_REQUESTS_PER_SECOND,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => {
                    if r > 5.0 {
                        problems.warn(m.at(keys::REQUESTS_PER_SECOND), format!("{r} is above the 5 calls/s Kinesis allows per shard (shared by every consumer): expect throttling"));
                    }
                    r
                }
                _ => {
                    problems.error(
                        m.at(keys::REQUESTS_PER_SECOND),
                        format!("{v:?} must be a positive number of calls per second"),
                    );
                    DEFAULT_REQUESTS_PER_SECOND
                }
            },
        };
        let fetch_timeout = m.duration(keys::FETCH_TIMEOUT, problems).unwrap_or(DEFAULT_FETCH_TIMEOUT);
        if fetch_timeout.is_zero() {
            problems.error(m.at(keys::FETCH_TIMEOUT), "must be more than 0");
        }
        let shard_discovery_interval =
            m.duration(keys::SHARD_DISCOVERY_INTERVAL, problems).unwrap_or(DEFAULT_SHARD_DISCOVERY_INTERVAL);
        if shard_discovery_interval < Duration::from_secs(1) {
            problems.error(
                m.at(keys::SHARD_DISCOVERY_INTERVAL),
                "must be at least 1s: ListShards allows 100 calls per second per account",
            );
        }

        if let Some(t) = m.get(keys::CONSUMER_TYPE)
            && !t.eq_ignore_ascii_case("lowlevel")
        {
            problems.error(
                m.at(keys::CONSUMER_TYPE),
                format!("{t:?} is not supported: only \"lowlevel\" exists"),
            );
        }
        let decoder_class = m.required(
            keys::DECODER_CLASS,
            "a JSON decoder class such as org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder",
            problems,
        );
        if let Some(class) = &decoder_class
            && !class.ends_with("JSONMessageDecoder")
        {
            problems.error(
                m.at(keys::DECODER_CLASS),
                format!("{class:?} is not supported: Shoal decodes JSON (org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder or org.apache.pinot.plugin.stream.kafka.KafkaJSONMessageDecoder)"),
            );
        }
        let consumer_factory_class = m.get(keys::CONSUMER_FACTORY).map(str::to_string);
        if let Some(class) = &consumer_factory_class
            && !class.ends_with("KinesisConsumerFactory")
        {
            problems.error(
                m.at(keys::CONSUMER_FACTORY),
                format!("{class:?} is not supported: use org.apache.pinot.plugin.stream.kinesis.KinesisConsumerFactory"),
            );
        }
        let populate_metadata = match m.first_of(&[keys::METADATA_POPULATE_PREFIXED, keys::METADATA_POPULATE])
        {
            Some(key) => m.bool(key, false, problems),
            None => false,
        };
        let flush = parse_flush(&m, problems);

        let other = m
            .values
            .iter()
            .filter(|(k, _)| known_kind(k).is_none())
            .map(|(k, v)| (k.to_string(), if is_secret_key(k) { MASK.to_string() } else { v.clone() }))
            .collect();

        Some(StreamSettings {
            path: path.to_string(),
            kinesis: Some(KinesisConfig {
                stream_name: stream_name?,
                region: region?,
                endpoint,
                credentials,
                assume_role,
                start,
                max_records_to_fetch,
                requests_per_second,
                fetch_timeout,
                shard_discovery_interval,
            }),
            flush,
            decoder: Decoder::Json,
            decoder_class: decoder_class?,
            consumer_factory_class,
            populate_metadata,
            other,
        })
    }

    /// The settings of a table an app feeds (`streamType` `append`): the decoder, the flush
    /// thresholds and the metadata columns; a Kinesis setting is refused.
    fn parse_append(m: &StringMap<'_>, problems: &mut Problems) -> Option<StreamSettings> {
        for (key, _) in KNOWN_KEYS {
            if m.get(key).is_some() && !APPEND_KEYS.contains(key) {
                problems.error(
                    m.at(key),
                    "is a Kinesis setting: a table whose streamType is \"append\" is fed by Engine::append",
                );
            }
        }
        let decoder_class = m.get(keys::DECODER_CLASS).unwrap_or(DEFAULT_DECODER).to_string();
        if !decoder_class.ends_with("JSONMessageDecoder") {
            problems.error(
                m.at(keys::DECODER_CLASS),
                format!("{decoder_class:?} is not supported: Shoal decodes JSON (org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder)"),
            );
        }
        let populate_metadata = match m.first_of(&[keys::METADATA_POPULATE_PREFIXED, keys::METADATA_POPULATE])
        {
            Some(key) => m.bool(key, false, problems),
            None => false,
        };
        let flush = parse_flush(m, problems);
        let other = m
            .values
            .iter()
            .filter(|(k, _)| known_kind(k).is_none())
            .map(|(k, v)| (k.to_string(), if is_secret_key(k) { MASK.to_string() } else { v.clone() }))
            .collect();
        Some(StreamSettings {
            path: m.path.to_string(),
            kinesis: None,
            flush,
            decoder: Decoder::Json,
            decoder_class,
            consumer_factory_class: None,
            populate_metadata,
            other,
        })
    }

    /// Whether an app feeds the table (`streamType` `append`) instead of a Kinesis stream.
    pub fn is_append(&self) -> bool {
        self.kinesis.is_none()
    }

    /// The map in Pinot's form with every setting's effective value, secrets as `***`.
    pub fn normalised(&self) -> Map<String, Value> {
        let mut out = Map::new();
        let mut put = |key: &str, value: String| {
            out.insert(key.to_string(), Value::String(value));
        };
        let Some(k) = &self.kinesis else {
            put(keys::STREAM_TYPE, APPEND.into());
            put(keys::DECODER_CLASS, self.decoder_class.clone());
            put(keys::METADATA_POPULATE, self.populate_metadata.to_string());
            self.put_flush(&mut put);
            for (key, value) in &self.other {
                put(key, value.clone());
            }
            return out;
        };
        put(keys::STREAM_TYPE, "kinesis".into());
        put(keys::TOPIC_NAME, k.stream_name.clone());
        put(keys::REGION, k.region.clone());
        if let Some(e) = &k.endpoint {
            put(keys::ENDPOINT, e.clone());
        }
        if let Some(c) = &k.credentials {
            put(keys::ACCESS_KEY, c.access_key.to_string());
            put(keys::SECRET_KEY, c.secret_key.to_string());
            if let Some(t) = &c.session_token {
                put(keys::SESSION_TOKEN, t.to_string());
            }
        }
        // The effective start, in a form that reads back to the same start.
        match &k.start {
            // Its time is known only once the table is created: kept as Pinot's period.
            StartPosition::Period { millis } => {
                put(keys::AUTO_OFFSET_RESET, format_period(*millis));
            }
            other => put(keys::SHARD_ITERATOR_TYPE, other.iterator_type().name().into()),
        }
        match &k.start {
            StartPosition::AtTimestamp { millis } => put(keys::SHARD_ITERATOR_TIMESTAMP, millis.to_string()),
            StartPosition::AtSequenceNumber { shards } | StartPosition::AfterSequenceNumber { shards } => {
                put(
                    keys::SHARD_ITERATOR_SEQUENCE_NUMBERS,
                    shards.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(","),
                )
            }
            StartPosition::Latest | StartPosition::TrimHorizon | StartPosition::Period { .. } => {}
        }
        put(keys::MAX_RECORDS_TO_FETCH, k.max_records_to_fetch.to_string());
        put(keys::REQUESTS_PER_SECOND, k.requests_per_second.to_string());
        put(keys::FETCH_TIMEOUT, k.fetch_timeout.as_millis().to_string());
        put(keys::SHARD_DISCOVERY_INTERVAL, format_duration(k.shard_discovery_interval));
        put(keys::CONSUMER_TYPE, "lowlevel".into());
        put(keys::DECODER_CLASS, self.decoder_class.clone());
        if let Some(c) = &self.consumer_factory_class {
            put(keys::CONSUMER_FACTORY, c.clone());
        }
        if let Some(r) = &k.assume_role {
            put(keys::IAM_ROLE_ENABLED, "true".into());
            put(keys::ROLE_ARN, r.role_arn.clone());
            put(keys::ROLE_SESSION_NAME, r.session_name.clone());
            if let Some(e) = &r.external_id {
                put(keys::EXTERNAL_ID, e.to_string());
            }
            put(keys::SESSION_DURATION, r.session_duration.as_secs().to_string());
            put(keys::ASYNC_SESSION_UPDATE, r.async_session_update.to_string());
        }
        put(keys::METADATA_POPULATE, self.populate_metadata.to_string());
        self.put_flush(&mut put);
        for (key, value) in &self.other {
            put(key, value.clone());
        }
        out
    }

    fn put_flush(&self, put: &mut impl FnMut(&str, String)) {
        match self.flush.limit {
            FlushLimit::SegmentRows(n) => put(keys::FLUSH_SEGMENT_ROWS, n.to_string()),
            FlushLimit::TableRows(n) => put(keys::FLUSH_ROWS, n.to_string()),
            FlushLimit::SegmentSize(n) => {
                put(keys::FLUSH_ROWS, "0".into());
                put(keys::FLUSH_SEGMENT_SIZE, format_size(n));
            }
        }
        put(keys::FLUSH_TIME, format_duration(self.flush.time));
    }
}

/// Where shards without a checkpoint start.
///
/// Pinot does not use `shardIteratorType` for this: `KinesisConfig.java` parses it (default
/// LATEST) and nothing reads it, while `KinesisStreamMetadataProvider.computePartitionGroupMetadata`
/// (pinot-plugins/pinot-stream-ingestion/pinot-kinesis) starts every shard of a new table after
/// the shard's own startingSequenceNumber: at its oldest retained record, that record lost.
/// Pinot's generic start key is [`keys::AUTO_OFFSET_RESET`]. Shoal: an explicit
/// `shardIteratorType` wins (AT_/AFTER_SEQUENCE_NUMBER only with sequence numbers); without it,
/// `auto.offset.reset` decides; with neither, LATEST.
fn parse_start(m: &StringMap<'_>, problems: &mut Problems) -> StartPosition {
    let reset = m.get(keys::AUTO_OFFSET_RESET).and_then(|text| match parse_offset_criteria(text) {
        Ok(start) => Some((text, start)),
        Err(e) => {
            problems.error(m.at(keys::AUTO_OFFSET_RESET), e);
            None
        }
    });
    let fallback = |default: StartPosition| reset.as_ref().map_or(default, |(_, start)| start.clone());
    let Some(text) = m.get(keys::SHARD_ITERATOR_TYPE) else {
        return fallback(StartPosition::Latest);
    };
    let Some(kind) = ShardIteratorType::parse(text) else {
        problems.error(
            m.at(keys::SHARD_ITERATOR_TYPE),
            format!("{text:?} is not one of {}", ShardIteratorType::NAMES),
        );
        return fallback(StartPosition::Latest);
    };
    let explicit = match kind {
        ShardIteratorType::Latest => StartPosition::Latest,
        ShardIteratorType::TrimHorizon => StartPosition::TrimHorizon,
        ShardIteratorType::AtTimestamp => {
            match m.get(keys::SHARD_ITERATOR_TIMESTAMP) {
                None if m.is_refused(keys::SHARD_ITERATOR_TIMESTAMP) => return StartPosition::Latest,
                None => {
                    problems.error(m.at(keys::SHARD_ITERATOR_TIMESTAMP), "missing: AT_TIMESTAMP needs a time, as epoch milliseconds or ISO-8601 such as 2025-03-26T18:27:00Z");
                    return StartPosition::Latest;
                }
                Some(t) => match parse_timestamp(t) {
                    Some(millis) => StartPosition::AtTimestamp { millis },
                    None => {
                        problems.error(m.at(keys::SHARD_ITERATOR_TIMESTAMP), format!("{t:?} is not epoch milliseconds or an ISO-8601 time such as 2025-03-26T18:27:00Z"));
                        return StartPosition::Latest;
                    }
                },
            }
        }
        ShardIteratorType::AtSequenceNumber | ShardIteratorType::AfterSequenceNumber => {
            let shards = match m.get(keys::SHARD_ITERATOR_SEQUENCE_NUMBERS) {
                None if m.is_refused(keys::SHARD_ITERATOR_SEQUENCE_NUMBERS) => return StartPosition::Latest,
                None => {
                    // As the seed page writes it. Start where Pinot starts a new table (the
                    // oldest retained record; Shoal keeps that first record), unless
                    // auto.offset.reset says otherwise.
                    let start = fallback(StartPosition::TrimHorizon);
                    let whence = match &reset {
                        Some((text, _)) => format!("where {} says ({text:?})", keys::AUTO_OFFSET_RESET),
                        None => "at TRIM_HORIZON (the oldest retained record), where Pinot starts a new table whatever shardIteratorType says".to_string(),
                    };
                    problems.warn(
                        m.at(keys::SHARD_ITERATOR_TYPE),
                        format!("{} without {}: shards start {whence}; list per-shard sequence numbers in {} to start there", kind.name(), keys::SHARD_ITERATOR_SEQUENCE_NUMBERS, keys::SHARD_ITERATOR_SEQUENCE_NUMBERS),
                    );
                    return start;
                }
                Some(text) => match parse_sequence_numbers(text) {
                    Ok(shards) => shards,
                    Err(e) => {
                        problems.error(m.at(keys::SHARD_ITERATOR_SEQUENCE_NUMBERS), e);
                        return StartPosition::Latest;
                    }
                },
            };
            if kind == ShardIteratorType::AtSequenceNumber {
                StartPosition::AtSequenceNumber { shards }
            } else {
                StartPosition::AfterSequenceNumber { shards }
            }
        }
    };
    if let Some((reset_text, reset_start)) = &reset
        && reset_start != &explicit
    {
        problems.warn(
            m.at(keys::AUTO_OFFSET_RESET),
            format!(
                "{reset_text:?} is not used: {} {} says where shards start and wins over {}; remove one of the two",
                keys::SHARD_ITERATOR_TYPE,
                kind.name(),
                keys::AUTO_OFFSET_RESET
            ),
        );
    }
    explicit
}

/// Pinot's offset criteria (`OffsetCriteria.withOffsetString`, pinot-spi): `smallest` or
/// `largest` in any case, a period such as `10d` or `4h30m` (that long before the table was
/// created), or a timestamp `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (any ISO-8601 time is accepted, as for
/// `shardIteratorTimestamp`).
fn parse_offset_criteria(text: &str) -> Result<StartPosition, String> {
    if text.eq_ignore_ascii_case("smallest") {
        return Ok(StartPosition::TrimHorizon);
    }
    if text.eq_ignore_ascii_case("largest") {
        return Ok(StartPosition::Latest);
    }
    // Bare digits are neither: Pinot's period needs a unit, and its timestamp is ISO-8601.
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(period) = parse_duration(text) {
            return Ok(StartPosition::Period {
                millis: i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
            });
        }
        if let Some(millis) = parse_timestamp(text) {
            return Ok(StartPosition::AtTimestamp { millis });
        }
    }
    Err(format!(
        "{text:?} is not smallest, largest, a period such as 10d or 4h30m (that long before the table was created), or a timestamp such as 2022-08-09T12:31:38.222Z"
    ))
}

/// A period as Pinot writes one, with a unit even below a second (bare digits are not a period).
fn format_period(millis: i64) -> String {
    let text = format_duration(Duration::from_millis(u64::try_from(millis).unwrap_or(0)));
    if text.bytes().all(|b| b.is_ascii_digit()) { format!("{text}ms") } else { text }
}

/// True for a value left as the docs wrote it, such as `<your region>`.
fn is_placeholder(text: &str) -> bool {
    let t = text.trim();
    t.len() > 2 && t.starts_with('<') && t.ends_with('>')
}

/// Epoch milliseconds, or ISO-8601 with a zone (`2025-03-26T18:27:00Z`, `...:00.123+01:00`).
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    ["yyyy-MM-dd'T'HH:mm:ssXXX", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "yyyy-MM-dd'T'HH:mmXXX", "yyyy-MM-dd"]
        .iter()
        .filter_map(|p| JavaDatePattern::parse(p).ok())
        .find_map(|p| p.parse_millis(text))
}

/// `shardId-0=123,shardId-1=456`, or Pinot's JSON offset `{"shardId-0":"123"}`.
fn parse_sequence_numbers(text: &str) -> Result<BTreeMap<String, SequenceNumber>, String> {
    let pairs: Vec<(String, String)> = if text.starts_with('{') {
        let map: BTreeMap<String, Value> = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON object of shard id to sequence number: {e}"))?;
        map.into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect()
    } else {
        text.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.split_once('=')
                    .map(|(s, n)| (s.trim().to_string(), n.trim().to_string()))
                    .ok_or_else(|| format!("{p:?} is not shardId=sequenceNumber"))
            })
            .collect::<Result<_, _>>()?
    };
    if pairs.is_empty() {
        return Err("lists no shard: write shardId-000000000000=<sequence number>,...".to_string());
    }
    pairs
        .into_iter()
        .map(|(shard, number)| {
            if shard.is_empty() || shard.len() > 128 {
                return Err(format!("{shard:?} is not a shard id (1 to 128 characters)"));
            }
            let n = SequenceNumber::parse(&number).ok_or_else(|| {
                format!("{number:?} (shard {shard}) is not a sequence number: up to 128 digits")
            })?;
            Ok((shard, n))
        })
        .collect()
}

fn parse_flush(m: &StringMap<'_>, problems: &mut Problems) -> FlushThresholds {
    let time = m.duration(keys::FLUSH_TIME, problems).unwrap_or(DEFAULT_FLUSH_TIME);
    if time.is_zero() {
        problems.error(m.at(keys::FLUSH_TIME), "must be more than 0");
    }
    let segment_rows = m.u64(keys::FLUSH_SEGMENT_ROWS, problems);
    let rows_key = m.first_of(&[keys::FLUSH_ROWS, keys::FLUSH_ROWS_OLD]);
    let rows = rows_key.and_then(|k| m.u64(k, problems));
    let size_key = m.first_of(&[keys::FLUSH_SEGMENT_SIZE, keys::FLUSH_SEGMENT_SIZE_OLD]);
    let size = size_key.and_then(|k| m.size(k, problems));
    if size == Some(0) {
        problems.error(m.at(size_key.unwrap_or(keys::FLUSH_SEGMENT_SIZE)), "must be more than 0");
    }
    let limit = match (segment_rows, rows, size) {
        (Some(0), ..) => {
            problems.error(m.at(keys::FLUSH_SEGMENT_ROWS), "must be more than 0");
            FlushLimit::TableRows(DEFAULT_TABLE_ROWS)
        }
        (Some(n), ..) => FlushLimit::SegmentRows(n),
        (None, Some(0), s) => FlushLimit::SegmentSize(s.unwrap_or(DEFAULT_SEGMENT_SIZE)),
        (None, Some(n), _) => FlushLimit::TableRows(n),
        (None, None, Some(s)) => FlushLimit::SegmentSize(s),
        (None, None, None) => FlushLimit::TableRows(DEFAULT_TABLE_ROWS),
    };
    FlushThresholds { limit, time }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(map: Value) -> (Option<StreamSettings>, Problems) {
        let mut problems = Problems::default();
        let s = StreamSettings::parse("s", map.as_object().unwrap(), "t", &mut problems);
        (s, problems)
    }

    fn base() -> Value {
        json!({
            "streamType": "kinesis",
            "stream.kinesis.topic.name": "events",
            "region": "us-east-1",
            "stream.kinesis.decoder.class.name": "org.apache.pinot.plugin.inputformat.json.JSONMessageDecoder"
        })
    }

    #[test]
    fn defaults_follow_pinot_except_max_records() {
        let (s, problems) = parse(base());
        assert!(problems.is_ok(), "{problems:?}");
        let s = s.unwrap();
        assert_eq!(s.kinesis.as_ref().unwrap().max_records_to_fetch, 10_000);
        assert_eq!(s.kinesis.as_ref().unwrap().requests_per_second, 1.0);
        assert_eq!(s.kinesis.as_ref().unwrap().fetch_timeout, Duration::from_millis(5000));
        assert_eq!(s.kinesis.as_ref().unwrap().start, StartPosition::Latest);
        assert_eq!(s.flush, FlushThresholds::default());
        assert!(s.kinesis.as_ref().unwrap().credentials.is_none());
    }

    #[test]
    fn flush_precedence() {
        let with = |extra: Value| {
            let mut m = base();
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse(m).0.unwrap().flush.limit
        };
        assert_eq!(
            with(json!({"realtime.segment.flush.threshold.rows": "1000"})),
            FlushLimit::TableRows(1000)
        );
        assert_eq!(
            with(
                json!({"realtime.segment.flush.threshold.rows": "1000", "realtime.segment.flush.threshold.segment.rows": "10"})
            ),
            FlushLimit::SegmentRows(10)
        );
        assert_eq!(
            with(json!({"realtime.segment.flush.threshold.rows": "0"})),
            FlushLimit::SegmentSize(200 << 20)
        );
        assert_eq!(
            with(
                json!({"realtime.segment.flush.threshold.rows": "0", "realtime.segment.flush.threshold.segment.size": "1.5G"})
            ),
            FlushLimit::SegmentSize(3 << 29)
        );
        assert_eq!(with(json!({"realtime.segment.flush.threshold.size": "77"})), FlushLimit::TableRows(77));
    }

    #[test]
    fn start_positions() {
        let with = |extra: Value| {
            let mut m = base();
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse(m)
        };
        let (s, _) = with(
            json!({"shardIteratorType": "AT_TIMESTAMP", "shardIteratorTimestamp": "2025-03-26T18:27:00Z"}),
        );
        assert_eq!(
            s.unwrap().kinesis.as_ref().unwrap().start,
            StartPosition::AtTimestamp { millis: 1_743_013_620_000 }
        );
        let (s, _) = with(
            json!({"shardIteratorType": "AFTER_SEQUENCE_NUMBER", "shardIteratorSequenceNumbers": "shardId-000000000000=49590338271490256608559692538361571095921575989136588898"}),
        );
        let StartPosition::AfterSequenceNumber { shards } = s.unwrap().kinesis.unwrap().start else {
            panic!()
        };
        assert_eq!(
            shards["shardId-000000000000"].as_str(),
            "49590338271490256608559692538361571095921575989136588898"
        );
        let (s, _) = with(
            json!({"shardIteratorType": "AT_SEQUENCE_NUMBER", "shardIteratorSequenceNumbers": "{\"shardId-1\": \"12\"}"}),
        );
        assert!(matches!(s.unwrap().kinesis.as_ref().unwrap().start, StartPosition::AtSequenceNumber { .. }));
        // Without numbers: a warning, and the start Pinot gives a new table.
        let (s, problems) = with(json!({"shardIteratorType": "AT_SEQUENCE_NUMBER"}));
        assert!(problems.is_ok(), "{problems:?}");
        assert_eq!(problems.warnings[0].path, "s.shardIteratorType");
        assert_eq!(s.unwrap().kinesis.as_ref().unwrap().start, StartPosition::TrimHorizon);
        let (_, problems) = with(
            json!({"shardIteratorType": "AT_SEQUENCE_NUMBER", "shardIteratorSequenceNumbers": "shardId-1"}),
        );
        assert_eq!(problems.errors[0].path, "s.shardIteratorSequenceNumbers");
        let (_, problems) = with(json!({"shardIteratorType": "SOMETIMES"}));
        assert_eq!(problems.errors[0].path, "s.shardIteratorType");
    }

    #[test]
    fn a_value_is_taken_in_another_json_type_only_where_pinot_reads_it_the_same() {
        let with = |extra: Value| {
            let mut m = base();
            m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse(m)
        };
        // Numbers and switches may be bare JSON, as Jackson reads them into Pinot's string map.
        let (s, problems) = with(json!({"maxRecordsToFetch": 500, "metadata.populate": true, "custom.n": 5}));
        assert!(problems.is_ok(), "{problems:?}");
        let s = s.unwrap();
        assert_eq!(s.kinesis.as_ref().unwrap().max_records_to_fetch, 500);
        assert!(s.populate_metadata);
        assert_eq!(s.other["custom.n"], "5");
        // Names, switches and sequence numbers of another type are refused, once, at their key.
        for (key, value) in [
            ("endpoint", json!(7)),
            ("iamRoleBasedAccessEnabled", json!(1)),
            ("maxRecordsToFetch", json!(true)),
            ("stream.kinesis.topic.name", json!(false)),
            ("custom.list", json!(["a"])),
        ] {
            let (_, problems) = with(json!({ key: value }));
            let paths: Vec<_> = problems.errors.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(paths, [format!("s.{key}")], "{key} = {value}");
        }
        let (_, problems) = with(
            json!({"shardIteratorType": "AT_SEQUENCE_NUMBER", "shardIteratorSequenceNumbers": 4.959_033_827_149_026e55}),
        );
        let paths: Vec<_> = problems.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["s.shardIteratorSequenceNumbers"]);
    }

    /// The shared rule masks exactly the stream keys that hold credentials, and no other.
    #[test]
    fn of_the_known_keys_only_credentials_are_secrets() {
        let secrets: Vec<_> = KNOWN_KEYS.iter().map(|(k, _)| *k).filter(|k| is_secret_key(k)).collect();
        assert_eq!(secrets, [keys::ACCESS_KEY, keys::SECRET_KEY, keys::SESSION_TOKEN, keys::EXTERNAL_ID]);
    }

    #[test]
    fn secrets_are_masked_in_every_output() {
        let mut m = base();
        m["accessKey"] = json!("AKIAEXAMPLEKEY");
        m["secretKey"] = json!("wJalrXUtnFEMIexample");
        m["sessionToken"] = json!("FwoGZXIvYXdzEXAMPLE");
        m["custom.password"] = json!("hunter2");
        let (s, problems) = parse(m);
        assert!(problems.is_ok());
        let s = s.unwrap();
        let shown = format!("{s:?} {}", Value::Object(s.normalised()));
        for secret in ["AKIAEXAMPLEKEY", "wJalrXUtnFEMIexample", "FwoGZXIvYXdzEXAMPLE", "hunter2"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert_eq!(
            s.kinesis.as_ref().unwrap().credentials.as_ref().unwrap().secret_key.expose(),
            "wJalrXUtnFEMIexample"
        );
    }
}
