//! Kinesis sequence numbers: decimal strings of up to 128 digits, compared as numbers.

use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// A Kinesis sequence number. It is kept as its digits and ordered numerically (a shorter
/// number is smaller), never as a string and never squeezed into a machine integer.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Parses a sequence number: 1 to 128 ASCII digits. Leading zeros are dropped.
    pub fn parse(text: &str) -> Option<SequenceNumber> {
        let text = text.trim();
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = text.trim_start_matches('0');
        Some(SequenceNumber(if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }))
    }

    /// The digits, as Kinesis wants them back.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_as_numbers() {
        let a = SequenceNumber::parse("9").unwrap();
        let b = SequenceNumber::parse("10").unwrap();
        assert!(a < b, "string order would say otherwise");
        let big = "4".repeat(128);
        assert!(SequenceNumber::parse(&big).unwrap() > b);
        assert_eq!(SequenceNumber::parse("007").unwrap(), SequenceNumber::parse("7").unwrap());
        assert!(SequenceNumber::parse(&"1".repeat(129)).is_none());
        assert!(SequenceNumber::parse("12a").is_none());
        assert!(SequenceNumber::parse("").is_none());
    }
}
