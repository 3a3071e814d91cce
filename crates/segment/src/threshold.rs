//! When a consuming segment seals: Pinot's flush thresholds, typed.

use std::time::Duration;

/// What bounds the size of one segment, after Pinot's precedence between its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushLimit {
    /// `realtime.segment.flush.threshold.segment.rows`: a fixed number of rows per segment.
    SegmentRows(u64),
    /// `realtime.segment.flush.threshold.rows`: rows for the whole table, divided across the
    /// shards it consumes, as Pinot divides it across the partitions of a server.
    TableRows(u64),
    /// `realtime.segment.flush.threshold.segment.size`: a target size of the sealed segment in
    /// bytes, estimated from the consuming segment's own bytes.
    SegmentSize(u64),
}

/// Pinot's flush thresholds: a row or size limit, and a time limit; whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushThresholds {
    /// The row or size limit.
    pub limit: FlushLimit,
    /// `realtime.segment.flush.threshold.time`: the longest a segment consumes before it seals.
    pub time: Duration,
}

/// Pinot's row limit when no flush key is set.
pub const DEFAULT_TABLE_ROWS: u64 = 5_000_000;
/// Pinot's segment size target when size-based flushing is on.
pub const DEFAULT_SEGMENT_SIZE: u64 = 200 * 1024 * 1024;
/// Pinot's default time threshold.
pub const DEFAULT_FLUSH_TIME: Duration = Duration::from_secs(6 * 3600);

impl Default for FlushThresholds {
    fn default() -> Self {
        FlushThresholds { limit: FlushLimit::TableRows(DEFAULT_TABLE_ROWS), time: DEFAULT_FLUSH_TIME }
    }
}

impl FlushThresholds {
    /// The row limit of one segment when the table consumes `shards` shards at once, or None
    /// when the limit is a size.
    pub fn rows_per_segment(&self, shards: usize) -> Option<u64> {
        match self.limit {
            FlushLimit::SegmentRows(rows) => Some(rows.max(1)),
            FlushLimit::TableRows(rows) => Some((rows / shards.max(1) as u64).max(1)),
            FlushLimit::SegmentSize(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_divided_across_shards() {
        let t = FlushThresholds { limit: FlushLimit::TableRows(1_000_000), time: DEFAULT_FLUSH_TIME };
        assert_eq!(t.rows_per_segment(4), Some(250_000));
        assert_eq!(t.rows_per_segment(0), Some(1_000_000));
        let t = FlushThresholds { limit: FlushLimit::SegmentRows(10), time: DEFAULT_FLUSH_TIME };
        assert_eq!(t.rows_per_segment(4), Some(10));
        let t = FlushThresholds { limit: FlushLimit::SegmentSize(1), time: DEFAULT_FLUSH_TIME };
        assert_eq!(t.rows_per_segment(4), None);
    }
}
