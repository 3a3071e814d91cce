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
pub struct AggregatedRecord {
    /// Partition keys the user records point into.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys the user records point into.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// One user record inside an aggregate.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    /// Index into the partition key table.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into the explicit hash key table.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The payload.
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    /// Tags.
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// A KPL tag.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    /// Key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// What a Kinesis record holds.
#[derive(Debug, PartialEq)]
pub enum Deaggregated {
    /// A plain record (also a blob that looks aggregated but whose MD5 or protobuf is bad,
    /// as the KPL's own de-aggregators pass it on).
    Plain,
    /// User records: (partition key, data), in order; their index is the sub-sequence number.
    Aggregate(Vec<(String, Bytes)>),
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
    let mut out = Vec::with_capacity(message.records.len());
    for r in message.records {
        let Some(key) =
            usize::try_from(r.partition_key_index).ok().and_then(|i| message.partition_key_table.get(i))
        else {
            return Deaggregated::Plain;
        };
        out.push((key.clone(), r.data));
    }
    Deaggregated::Aggregate(out)
}

/// Builds an aggregated blob, as the KPL does (for tests and tools).
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut keys: Vec<String> = Vec::new();
    let mut user = Vec::new();
    for (key, data) in records {
        let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
            keys.push(key.to_string());
            keys.len() - 1
        });
        user.push(UserRecord {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data: Bytes::copy_from_slice(data),
            tags: Vec::new(),
        });
    }
    let body =
        AggregatedRecord { partition_key_table: keys, explicit_hash_key_table: Vec::new(), records: user }
            .encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_md5() {
        let blob = Bytes::from(aggregate(&[("a", b"one"), ("b", b"two"), ("a", b"three")]));
        let Deaggregated::Aggregate(records) = deaggregate(&blob) else { panic!("not recognised") };
        let got: Vec<(&str, &[u8])> = records.iter().map(|(k, d)| (k.as_str(), d.as_ref())).collect();
        assert_eq!(got, [("a", &b"one"[..]), ("b", b"two"), ("a", b"three")]);
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
}
