//! KPL de-aggregation: records written by the Kinesis Producer Library with aggregation carry
//! several user records in one blob: magic bytes F3 89 9A C2, a protobuf `AggregatedRecord`,
//! and the MD5 of that protobuf.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The KPL's magic prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;

/// The KPL's aggregate message (from the KPL's `messages.proto`).
#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    /// Partition keys the user records point into.
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    /// Explicit hash keys the user records point into.
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    records: Vec<RecordMessage>,
}

/// One user record as the protobuf holds it (`Record` in `messages.proto`).
#[derive(Clone, PartialEq, Message)]
struct RecordMessage {
    /// Index into the partition key table.
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    /// Index into the explicit hash key table; absent when the record has none.
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    /// The payload.
    #[prost(bytes = "bytes", required, tag = "3")]
    data: Bytes,
    /// Tags (read and ignored, as the KCL does).
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// A KPL tag.
#[derive(Clone, PartialEq, Message)]
struct Tag {
    /// Key.
    #[prost(string, required, tag = "1")]
    key: String,
    /// Value.
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// One user record inside an aggregate, with its keys resolved from the aggregate's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The partition key the producer gave.
    pub partition_key: String,
    /// The explicit hash key the producer gave (a decimal string), if any.
    pub explicit_hash_key: Option<String>,
    /// The payload.
    pub data: Bytes,
}

/// What a Kinesis record holds.
#[derive(Debug, PartialEq)]
pub enum Deaggregated {
    /// A plain record (also a blob that looks aggregated but whose MD5, protobuf or key
    /// indexes are bad, as the KPL's own de-aggregators pass it on).
    Plain,
    /// User records, in order; their index is the sub-sequence number.
    Aggregate(Vec<UserRecord>),
}

/// Looks inside one record's data.
pub fn deaggregate(data: &Bytes) -> Deaggregated {
    if data.len() < MAGIC.len() + MD5_LEN || data[..MAGIC.len()] != MAGIC {
        return Deaggregated::Plain;
    }
    let body = data.slice(MAGIC.len()..data.len() - MD5_LEN);
    let digest = Md5::digest(&body);
    if digest[..] != data[data.len() - MD5_LEN..] {
        return Deaggregated::Plain;
    }
    let Ok(message) = AggregatedRecord::decode(body) else { return Deaggregated::Plain };
    let entry =
        |table: &[String], index: u64| usize::try_from(index).ok().and_then(|i| table.get(i)).cloned();
    let mut out = Vec::with_capacity(message.records.len());
    for r in message.records {
        let Some(partition_key) = entry(&message.partition_key_table, r.partition_key_index) else {
            return Deaggregated::Plain;
        };
        let explicit_hash_key = match r.explicit_hash_key_index {
            None => None,
            Some(index) => match entry(&message.explicit_hash_key_table, index) {
                Some(key) => Some(key),
                None => return Deaggregated::Plain,
            },
        };
        out.push(UserRecord { partition_key, explicit_hash_key, data: r.data });
    }
    Deaggregated::Aggregate(out)
}

/// The 128-bit hash key that places a user record in a shard: its explicit hash key when it
/// has one (`None` if that is not a decimal number from 0 to 2^128-1), else the MD5 of its
/// partition key's UTF-8 bytes read as a big-endian number. This is what the Kinesis Client
/// Library computes (`AggregatorUtil.effectiveHashKey` in amazon-kinesis-client,
/// `src/main/java/software/amazon/kinesis/retrieval/AggregatorUtil.java`).
pub fn effective_hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Option<u128> {
    match explicit_hash_key {
        Some(key) => parse_hash_key(key),
        None => Some(u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())),
    }
}

/// A decimal hash key, as Kinesis writes them (0 to 2^128-1).
fn parse_hash_key(text: &str) -> Option<u128> {
    text.parse().ok()
}

/// A shard's hash key range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKeyRange {
    /// The first hash key of the shard.
    pub start: u128,
    /// The last hash key of the shard.
    pub end: u128,
}

/// A hash key range that ListShards answered but that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("hash key range {start:?}..={end:?} is not two decimal numbers from 0 to 2^128-1, in order")]
pub struct BadHashKeyRange {
    /// The starting hash key as given.
    pub start: String,
    /// The ending hash key as given.
    pub end: String,
}

impl HashKeyRange {
    /// Reads the decimal `StartingHashKey` and `EndingHashKey` of a shard's `HashKeyRange`.
    pub fn parse(start: &str, end: &str) -> Result<HashKeyRange, BadHashKeyRange> {
        match (parse_hash_key(start), parse_hash_key(end)) {
            (Some(s), Some(e)) if s <= e => Ok(HashKeyRange { start: s, end: e }),
            _ => Err(BadHashKeyRange { start: start.to_string(), end: end.to_string() }),
        }
    }

    /// Whether `hash_key` falls in the range, both ends included, as the KCL checks a user
    /// record against its shard (`AggregatorUtil.deaggregate` in amazon-kinesis-client).
    pub fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }
}

/// Builds an aggregated blob of (partition key, data) pairs, as the KPL does (for tests and
/// tools).
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let records: Vec<UserRecord> = records
        .iter()
        .map(|(key, data)| UserRecord {
            partition_key: key.to_string(),
            explicit_hash_key: None,
            data: Bytes::copy_from_slice(data),
        })
        .collect();
    aggregate_records(&records)
}

/// Builds an aggregated blob of user records, explicit hash keys included, as the KPL does:
/// each key stored once in its table, in first-seen order (for tests and tools).
pub fn aggregate_records(records: &[UserRecord]) -> Vec<u8> {
    fn index_of(table: &mut Vec<String>, key: &str) -> u64 {
        let index = table.iter().position(|k| k == key).unwrap_or_else(|| {
            table.push(key.to_string());
            table.len() - 1
        });
        index as u64
    }
    let mut message = AggregatedRecord {
        partition_key_table: Vec::new(),
        explicit_hash_key_table: Vec::new(),
        records: Vec::with_capacity(records.len()),
    };
    for r in records {
        let partition_key_index = index_of(&mut message.partition_key_table, &r.partition_key);
        let explicit_hash_key_index =
            r.explicit_hash_key.as_deref().map(|k| index_of(&mut message.explicit_hash_key_table, k));
        message.records.push(RecordMessage {
            partition_key_index,
            explicit_hash_key_index,
            data: r.data.clone(),
            tags: Vec::new(),
        });
    }
    let body = message.encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) -> UserRecord {
        UserRecord {
            partition_key: partition_key.to_string(),
            explicit_hash_key: explicit_hash_key.map(str::to_string),
            data: Bytes::copy_from_slice(data),
        }
    }

    fn framed(message: &AggregatedRecord) -> Bytes {
        let body = message.encode_to_vec();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        Bytes::from(out)
    }

    #[test]
    fn round_trips_and_refuses_bad_md5() {
        let blob = Bytes::from(aggregate(&[("a", b"one"), ("b", b"two"), ("a", b"three")]));
        let Deaggregated::Aggregate(records) = deaggregate(&blob) else { panic!("not recognised") };
        assert_eq!(records, [user("a", None, b"one"), user("b", None, b"two"), user("a", None, b"three")]);
        let mut bad = blob.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(deaggregate(&Bytes::from(bad)), Deaggregated::Plain);
        assert_eq!(deaggregate(&Bytes::from_static(b"{\"plain\": true}")), Deaggregated::Plain);
        let mut garbage = MAGIC.to_vec();
        garbage.extend_from_slice(&[0xff; 8]);
        garbage.extend_from_slice(&Md5::digest([0xffu8; 8]));
        assert_eq!(deaggregate(&Bytes::from(garbage)), Deaggregated::Plain);
    }

    #[test]
    fn explicit_hash_keys_round_trip_and_absent_ones_stay_absent() {
        let records = [user("a", None, b"1"), user("b", Some("42"), b"2"), user("c", None, b"3")];
        let blob = Bytes::from(aggregate_records(&records));
        assert_eq!(deaggregate(&blob), Deaggregated::Aggregate(records.to_vec()));
    }

    #[test]
    fn a_key_index_out_of_range_makes_the_blob_plain() {
        let record = |partition_key_index, explicit_hash_key_index| RecordMessage {
            partition_key_index,
            explicit_hash_key_index,
            data: Bytes::from_static(b"x"),
            tags: Vec::new(),
        };
        let message = |records| AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec!["7".into()],
            records,
        };
        let good = framed(&message(vec![record(0, Some(0)), record(0, None)]));
        assert_eq!(
            deaggregate(&good),
            Deaggregated::Aggregate(vec![user("k", Some("7"), b"x"), user("k", None, b"x")])
        );
        assert_eq!(
            deaggregate(&framed(&message(vec![record(0, None), record(1, None)]))),
            Deaggregated::Plain
        );
        assert_eq!(
            deaggregate(&framed(&message(vec![record(0, None), record(0, Some(1))]))),
            Deaggregated::Plain
        );
        assert_eq!(deaggregate(&framed(&message(vec![record(0, Some(u64::MAX))]))), Deaggregated::Plain);
    }

    #[test]
    fn effective_hash_key_is_the_explicit_key_or_the_md5_of_the_partition_key() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661 (RFC 1321's test suite).
        assert_eq!(effective_hash_key("a", None), Some(0x0cc175b9c0f1b6a831c399e269772661));
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(effective_hash_key("", None), Some(0xd41d8cd98f00b204e9800998ecf8427e));
        assert_eq!(effective_hash_key("a", Some("0")), Some(0));
        assert_eq!(effective_hash_key("a", Some("340282366920938463463374607431768211455")), Some(u128::MAX));
        for bad in ["340282366920938463463374607431768211456", "-1", "", "12a", " 1", "0x10"] {
            assert_eq!(effective_hash_key("a", Some(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_key_ranges_include_both_ends() {
        let whole = HashKeyRange::parse("0", "340282366920938463463374607431768211455").unwrap();
        assert_eq!(whole, HashKeyRange { start: 0, end: u128::MAX });
        assert!(whole.contains(0) && whole.contains(u128::MAX));
        let half = HashKeyRange::parse("0", "170141183460469231731687303715884105727").unwrap();
        assert!(half.contains(0) && half.contains((1 << 127) - 1));
        assert!(!half.contains(1 << 127));
        let upper = HashKeyRange::parse(
            "170141183460469231731687303715884105728",
            "340282366920938463463374607431768211455",
        )
        .unwrap();
        assert!(!upper.contains((1 << 127) - 1) && upper.contains(1 << 127) && upper.contains(u128::MAX));
        let single = HashKeyRange::parse("5", "5").unwrap();
        assert!(single.contains(5) && !single.contains(4) && !single.contains(6));
        assert!(HashKeyRange::parse("6", "5").is_err());
        assert!(HashKeyRange::parse("0", "340282366920938463463374607431768211456").is_err());
        assert!(HashKeyRange::parse("x", "5").is_err());
    }
}
