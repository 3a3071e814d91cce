//! What a reader hands on: records with their place in the shard, and checkpoints.

use crate::sequence::SequenceNumber;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::sync::Arc;

/// One record (a KPL user record counts as one), with everything the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The shard it was read from.
    pub shard_id: Arc<str>,
    /// Its Kinesis sequence number.
    pub sequence_number: SequenceNumber,
    /// Its index inside a KPL aggregate; None for a plain record.
    pub sub_sequence: Option<u64>,
    /// Approximate arrival time, epoch ms.
    pub arrival_ms: i64,
    /// The partition key (of the user record, for KPL aggregates).
    pub partition_key: String,
    /// The payload.
    pub data: Bytes,
}

impl Record {
    /// The position of this record, to checkpoint after it.
    pub fn position(&self) -> Checkpoint {
        Checkpoint { sequence: self.sequence_number.clone(), sub_sequence: self.sub_sequence }
    }
}

/// A position in a shard: the last record consumed (and, inside a KPL aggregate, the last user
/// record of it). Reading resumes right after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the last record consumed.
    pub sequence: SequenceNumber,
    /// Sub-sequence number of the last user record consumed inside that aggregate.
    pub sub_sequence: Option<u64>,
}

impl Ord for Checkpoint {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sequence.cmp(&other.sequence).then_with(|| match (self.sub_sequence, other.sub_sequence) {
            (None, None) => Ordering::Equal,
            // A whole record is after any of its sub-records.
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(&b),
        })
    }
}

impl PartialOrd for Checkpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Checkpoint {
    /// True when `record` comes after this checkpoint (and so must be delivered).
    pub fn is_before(&self, record: &Record) -> bool {
        match record.sequence_number.cmp(&self.sequence) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => match (self.sub_sequence, record.sub_sequence) {
                (Some(done), Some(sub)) => sub > done,
                _ => false,
            },
        }
    }

    /// The sequence number followed by `:sub` inside an aggregate.
    pub fn to_text(&self) -> String {
        match self.sub_sequence {
            Some(sub) => format!("{}:{sub}", self.sequence),
            None => self.sequence.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for SequenceNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SequenceNumber::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a sequence number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: &str, sub: Option<u64>) -> Record {
        Record {
            shard_id: "s".into(),
            sequence_number: SequenceNumber::parse(seq).unwrap(),
            sub_sequence: sub,
            arrival_ms: 0,
            partition_key: String::new(),
            data: Bytes::new(),
        }
    }

    #[test]
    fn checkpoints_order_records() {
        let plain = Checkpoint { sequence: SequenceNumber::parse("100").unwrap(), sub_sequence: None };
        assert!(!plain.is_before(&rec("100", None)));
        assert!(!plain.is_before(&rec("100", Some(3))));
        assert!(plain.is_before(&rec("101", None)));
        assert!(!plain.is_before(&rec("99", None)));
        let inside = Checkpoint { sequence: SequenceNumber::parse("100").unwrap(), sub_sequence: Some(1) };
        assert!(!inside.is_before(&rec("100", Some(1))));
        assert!(inside.is_before(&rec("100", Some(2))));
        assert!(inside < plain);
        assert_eq!(inside.to_text(), "100:1");
        let json = serde_json::to_string(&inside).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), inside);
    }
}
