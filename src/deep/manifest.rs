//! The deep-store manifest: what a restore starts from. It is always a prefix of the local
//! manifest: the longest run of segments, in commit order, that are all uploaded; and its
//! checkpoints are exactly the ones that cover those segments, so that a restore reads every
//! row not in them again from the stream, once.
//!
//! Per shard, a segment not in the prefix is either
//! - after every prefix segment of its shard in the stream: the shard's checkpoint goes back to
//!   where the earliest such segment starts (its `after`), and the stream gives its rows again;
//! - or before one (a lost segment read again, committed after later ones): it is named as
//!   lost, and the restored table reads just its records again, as it does for a quarantined
//!   segment.

use crate::manifest::{LostSegment, Manifest, SegmentEntry};
use shoal_stream::Checkpoint;

/// Why a deep-store manifest names a segment as lost.
pub(crate) const NOT_UPLOADED: &str = "sealed but not uploaded to the deep store before the restore";

/// Where a segment starts in its shard's stream (None: unknown, or the shard's start).
fn start_of(e: &SegmentEntry) -> Option<&Checkpoint> {
    e.first.as_ref().or(e.after.as_ref())
}

/// The deep-store manifest of `local`.
pub(crate) fn of(local: &Manifest) -> Manifest {
    // A compaction's rewrite not uploaded yet counts by the uploaded segment it replaced.
    let uploaded = |s: &SegmentEntry| match (&s.deep, &s.replaces) {
        (Some(_), _) => Some(SegmentEntry { cold: false, replaces: None, ..s.clone() }),
        (None, Some(old)) => Some(SegmentEntry { cold: false, replaces: None, ..(**old).clone() }),
        (None, None) => None,
    };
    let k = local.segments.iter().take_while(|s| uploaded(s).is_some()).count();
    let (prefix, rest) = local.segments.split_at(k);
    let mut deep = Manifest {
        version: local.version,
        generation: local.generation,
        segments: prefix.iter().filter_map(uploaded).collect(),
        checkpoints: Default::default(),
        ended_shards: Default::default(),
        next_sequence: local.next_sequence.clone(),
        lost: Vec::new(),
        created_ms: local.created_ms,
        paused: local.paused.clone(),
    };
    let missing: Vec<&SegmentEntry> = rest.iter().chain(local.lost.iter().map(|l| &l.entry)).collect();
    let shards = local
        .checkpoints
        .keys()
        .chain(local.ended_shards.iter())
        .chain(local.segments.iter().map(|s| &s.shard))
        .chain(local.lost.iter().map(|l| &l.entry.shard));
    let shards: std::collections::BTreeSet<&String> = shards.collect();
    for shard in shards {
        // The furthest point of the stream the shard's prefix segments reach.
        let reached = prefix.iter().filter(|s| &s.shard == shard).filter_map(|s| s.last.as_ref()).max();
        let mut tails = Vec::new();
        for m in missing.iter().filter(|m| &m.shard == shard) {
            let before_prefix = match (start_of(m), reached) {
                (Some(start), Some(reached)) => start <= reached,
                // Nothing of the shard is in the prefix: the segment is in the tail.
                (_, None) => false,
                // A segment from the shard's start, with prefix segments after it.
                (None, Some(_)) => true,
            };
            if before_prefix {
                let entry = SegmentEntry { cold: false, ..(*m).clone() };
                deep.lost.push(LostSegment { entry, reason: NOT_UPLOADED.into() });
            } else {
                tails.push(*m);
            }
        }
        if tails.is_empty() {
            if let Some(c) = local.checkpoints.get(shard) {
                deep.checkpoints.insert(shard.clone(), c.clone());
            }
            if local.ended_shards.contains(shard) {
                deep.ended_shards.insert(shard.clone());
            }
            continue;
        }
        // Read again from where the earliest missing segment starts; from the shard's start
        // (no checkpoint) when one of them starts there.
        let starts: Option<Vec<&Checkpoint>> = tails.iter().map(|t| t.after.as_ref()).collect();
        if let Some(from) = starts.and_then(|s| s.into_iter().min()) {
            deep.checkpoints.insert(shard.clone(), from.clone());
        }
    }
    deep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DeepObject;
    use shoal_stream::SequenceNumber;

    fn cp(n: u64) -> Checkpoint {
        Checkpoint { sequence: SequenceNumber::parse(&n.to_string()).unwrap(), sub_sequence: None }
    }

    /// A segment of `shard` holding the records after `from` up to `to`, uploaded or not.
    fn seg(shard: &str, seq: u64, from: u64, to: u64, uploaded: bool) -> SegmentEntry {
        SegmentEntry {
            file: format!("{shard}-{seq}.seg"),
            shard: shard.into(),
            sequence: seq,
            rows: to - from,
            time_range: None,
            after: (from > 0).then(|| cp(from)),
            first: Some(cp(from + 1)),
            last: Some(cp(to)),
            deep: uploaded.then(|| DeepObject {
                store: String::new(),
                key: String::new(),
                bytes: 1,
                created_ms: 0,
                stats: Vec::new(),
            }),
            cold: false,
            replaces: None,
        }
    }

    fn files(m: &Manifest) -> Vec<&str> {
        m.segments.iter().map(|s| s.file.as_str()).collect()
    }

    #[test]
    fn everything_uploaded_keeps_the_local_checkpoints() {
        let mut local = Manifest::new();
        local.segments = vec![seg("a", 0, 0, 10, true), seg("b", 0, 0, 5, true), seg("a", 1, 10, 20, true)];
        local.checkpoints.insert("a".into(), cp(25));
        local.checkpoints.insert("b".into(), cp(5));
        local.ended_shards.insert("b".into());
        let deep = of(&local);
        assert_eq!(files(&deep), ["a-0.seg", "b-0.seg", "a-1.seg"]);
        assert_eq!(deep.checkpoints, local.checkpoints);
        assert_eq!(deep.ended_shards, local.ended_shards);
        assert!(deep.lost.is_empty());
    }

    #[test]
    fn the_prefix_stops_at_the_first_segment_not_uploaded() {
        let mut local = Manifest::new();
        // a-1 is not uploaded; b-1 after it is, but the prefix stops at a-1.
        local.segments = vec![
            seg("a", 0, 0, 10, true),
            seg("b", 0, 0, 5, true),
            seg("a", 1, 10, 20, false),
            seg("b", 1, 5, 9, true),
        ];
        local.checkpoints.insert("a".into(), cp(20));
        local.checkpoints.insert("b".into(), cp(9));
        local.ended_shards.insert("b".into());
        let deep = of(&local);
        assert_eq!(files(&deep), ["a-0.seg", "b-0.seg"]);
        assert_eq!(deep.checkpoints.get("a"), Some(&cp(10)));
        assert_eq!(deep.checkpoints.get("b"), Some(&cp(5)));
        assert!(deep.ended_shards.is_empty(), "b's last segment is not in the prefix");
        assert!(deep.lost.is_empty());
    }

    #[test]
    fn a_shard_with_nothing_uploaded_starts_over() {
        let mut local = Manifest::new();
        local.segments = vec![seg("a", 0, 0, 10, false)];
        local.checkpoints.insert("a".into(), cp(10));
        local.checkpoints.insert("c".into(), cp(3));
        let deep = of(&local);
        assert!(deep.segments.is_empty());
        assert_eq!(deep.checkpoints.get("a"), None, "a is read from its start again");
        assert_eq!(deep.checkpoints.get("c"), Some(&cp(3)), "c sealed nothing: its checkpoint stands");
    }

    #[test]
    fn a_compaction_rewrite_counts_by_the_segment_it_replaced_until_uploaded() {
        let mut local = Manifest::new();
        let mut rewrite = seg("a", 5, 0, 10, false);
        rewrite.rows = 3;
        rewrite.replaces = Some(Box::new(seg("a", 0, 0, 10, true)));
        local.segments = vec![rewrite, seg("a", 1, 10, 20, true)];
        local.checkpoints.insert("a".into(), cp(20));
        let deep = of(&local);
        assert_eq!(files(&deep), ["a-0.seg", "a-1.seg"], "the old segment stays named");
        assert_eq!(deep.segments[0].rows, 10);
        assert_eq!(deep.checkpoints.get("a"), Some(&cp(20)));
    }

    #[test]
    fn a_reread_segment_behind_uploaded_ones_is_named_lost() {
        let mut local = Manifest::new();
        // a-0 was quarantined and read again as a-2, committed after a-1.
        local.segments =
            vec![seg("a", 1, 10, 20, true), seg("a", 2, 0, 10, false), seg("a", 3, 20, 30, false)];
        local.checkpoints.insert("a".into(), cp(30));
        let mut lost = seg("a", 4, 30, 40, false);
        lost.file = "a-lost.seg".into();
        local.lost.push(LostSegment { entry: lost, reason: "damaged".into() });
        let deep = of(&local);
        assert_eq!(files(&deep), ["a-1.seg"]);
        assert_eq!(deep.lost.len(), 1);
        assert_eq!(deep.lost[0].entry.file, "a-2.seg");
        assert_eq!(deep.checkpoints.get("a"), Some(&cp(20)), "from a-3, the earliest tail segment");
    }
}
