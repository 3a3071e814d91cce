//! Shard lineage: which shards may be read now. A child of a split or merge starts only after
//! every parent has been read to its end (and its end committed by the engine).

use crate::kpl::HashKeyRange;
use crate::sequence::SequenceNumber;
use std::collections::{BTreeMap, BTreeSet};

/// One shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id (kept as a string: AWS promises no format).
    pub id: String,
    /// `ParentShardId`.
    pub parent: Option<String>,
    /// `AdjacentParentShardId` (the second parent of a merge).
    pub adjacent_parent: Option<String>,
    /// `SequenceNumberRange.EndingSequenceNumber`: set once the shard is closed.
    pub ending_sequence: Option<SequenceNumber>,
    /// `HashKeyRange`: the partition-key hashes the shard owns (None when unknown).
    pub hash_range: Option<HashKeyRange>,
}

impl ShardInfo {
    /// The shard's parents.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent.iter().chain(&self.adjacent_parent).map(String::as_str)
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// From the configured `shardIteratorType`: a shard of the stream as it was when the table
    /// first started consuming.
    Configured,
    /// At its first record: a child of a shard the table has read.
    FirstRecord,
}

/// Something the lineage noticed that the operator must hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineageEvent {
    /// A shard the table was reading (it has a checkpoint, or it was started) disappeared from
    /// the listing before it was read to its end: its remaining records expired unread.
    DataLoss {
        /// The shard.
        shard: String,
    },
}

/// The shards of a stream and how far the table has got with each.
#[derive(Debug, Default)]
pub struct Lineage {
    listed: BTreeMap<String, ShardInfo>,
    finished: BTreeSet<String>,
    running: BTreeSet<String>,
    /// Shards with a checkpoint: the table has read part of them.
    checkpointed: BTreeSet<String>,
    start: BTreeMap<String, StartKind>,
    persisted_finished: BTreeSet<String>,
    listed_once: bool,
    lost: BTreeSet<String>,
}

impl Lineage {
    /// A lineage resuming from the shards the table has finished and those it has checkpoints for.
    pub fn new(
        finished: impl IntoIterator<Item = String>,
        checkpointed: impl IntoIterator<Item = String>,
    ) -> Lineage {
        let finished: BTreeSet<String> = finished.into_iter().collect();
        Lineage {
            persisted_finished: finished.clone(),
            finished,
            checkpointed: checkpointed.into_iter().collect(),
            ..Lineage::default()
        }
    }

    /// Takes a new listing. Reports shards lost to retention.
    pub fn update(&mut self, listing: Vec<ShardInfo>) -> Vec<LineageEvent> {
        let first = !self.listed_once;
        self.listed_once = true;
        for shard in &listing {
            if self.start.contains_key(&shard.id) {
                continue;
            }
            let read_before = |p: &str| self.persisted_finished.contains(p) || self.checkpointed.contains(p);
            let kind = if first && !shard.parents().any(read_before) {
                StartKind::Configured
            } else {
                StartKind::FirstRecord
            };
            self.start.insert(shard.id.clone(), kind);
        }
        let new: BTreeMap<String, ShardInfo> = listing.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut events = Vec::new();
        // A shard we were reading or had a checkpoint in, no longer listed, and not finished:
        // its data expired before it was read to its end.
        for id in self.checkpointed.iter().chain(&self.running) {
            if !new.contains_key(id) && !self.finished.contains(id) && self.lost.insert(id.clone()) {
                events.push(LineageEvent::DataLoss { shard: id.clone() });
            }
        }
        for id in &self.lost {
            self.running.remove(id);
            self.finished.insert(id.clone());
        }
        self.listed = new;
        events
    }

    /// Shards that may start now, with where each starts (when it has no checkpoint).
    /// They are marked running.
    pub fn ready(&mut self) -> Vec<(ShardInfo, StartKind)> {
        let mut out = Vec::new();
        for (id, shard) in &self.listed {
            if self.finished.contains(id) || self.running.contains(id) {
                continue;
            }
            let parents_done =
                shard.parents().all(|p| self.finished.contains(p) || !self.listed.contains_key(p));
            if parents_done {
                out.push((shard.clone(), self.start.get(id).copied().unwrap_or(StartKind::FirstRecord)));
            }
        }
        for (s, _) in &out {
            self.running.insert(s.id.clone());
        }
        out
    }

    /// A shard was read to its end and its end committed.
    pub fn finish(&mut self, shard: &str) {
        self.running.remove(shard);
        self.finished.insert(shard.to_string());
    }

    /// A running shard stopped before its end (its reader was dropped): it may start again.
    pub fn release(&mut self, shard: &str) {
        self.running.remove(shard);
    }

    /// The listed shard's info.
    pub fn shard(&self, id: &str) -> Option<&ShardInfo> {
        self.listed.get(id)
    }

    /// Shards being read now.
    pub fn running(&self) -> impl Iterator<Item = &String> {
        self.running.iter()
    }

    /// True when the shard is finished.
    pub fn is_finished(&self, id: &str) -> bool {
        self.finished.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parent: parents.first().map(|p| p.to_string()),
            adjacent_parent: parents.get(1).map(|p| p.to_string()),
            ending_sequence: closed.then(|| SequenceNumber::parse("99").unwrap()),
            hash_range: None,
        }
    }

    fn ids(ready: &[(ShardInfo, StartKind)]) -> Vec<(&str, StartKind)> {
        ready.iter().map(|(s, k)| (s.id.as_str(), *k)).collect()
    }

    #[test]
    fn children_wait_for_every_parent_and_start_at_their_first_record() {
        let mut l = Lineage::new(Vec::new(), Vec::new());
        l.update(vec![shard("a", &[], false), shard("b", &[], false)]);
        assert_eq!(ids(&l.ready()), [("a", StartKind::Configured), ("b", StartKind::Configured)]);
        // a splits into c and d; then d and b merge into e.
        l.update(vec![
            shard("a", &[], true),
            shard("b", &[], true),
            shard("c", &["a"], false),
            shard("d", &["a"], true),
            shard("e", &["d", "b"], false),
        ]);
        assert!(l.ready().is_empty(), "nothing starts before a ends");
        l.finish("a");
        assert_eq!(ids(&l.ready()), [("c", StartKind::FirstRecord), ("d", StartKind::FirstRecord)]);
        l.finish("d");
        assert!(l.ready().is_empty(), "e waits for its second parent b");
        l.finish("b");
        assert_eq!(ids(&l.ready()), [("e", StartKind::FirstRecord)]);
    }

    #[test]
    fn the_first_listing_uses_the_configured_start_unless_a_parent_was_read_before() {
        let mut l = Lineage::new(vec!["p".to_string()], Vec::new());
        l.update(vec![shard("p", &[], true), shard("c1", &["p"], false), shard("x", &["old"], false)]);
        assert_eq!(ids(&l.ready()), [("c1", StartKind::FirstRecord), ("x", StartKind::Configured)]);
    }

    /// A restart after a crash: `p` was read to its end and committed; its child `c` was read
    /// without a checkpoint and has split since. `c` starts at its first record; `c`'s
    /// children, whose parent the table never committed anything of, take the configured
    /// start, which the consumer pins to the table's creation for LATEST: every record of a
    /// shard made after the table was created is read either way.
    #[test]
    fn after_a_restart_grandchildren_of_an_unread_shard_take_the_configured_start() {
        let mut l = Lineage::new(vec!["p".to_string()], Vec::new());
        l.update(vec![
            shard("p", &[], true),
            shard("c", &["p"], true),
            shard("g1", &["c"], false),
            shard("g2", &["c"], false),
        ]);
        assert_eq!(ids(&l.ready()), [("c", StartKind::FirstRecord)]);
        l.finish("c");
        assert_eq!(ids(&l.ready()), [("g1", StartKind::Configured), ("g2", StartKind::Configured)]);
    }

    #[test]
    fn a_checkpointed_shard_gone_from_the_listing_is_data_loss_and_its_children_start() {
        let mut l = Lineage::new(Vec::new(), vec!["a".to_string()]);
        let events = l.update(vec![shard("c", &["a"], false)]);
        assert_eq!(events, [LineageEvent::DataLoss { shard: "a".into() }]);
        assert_eq!(ids(&l.ready()), [("c", StartKind::FirstRecord)]);
        assert!(l.update(vec![shard("c", &["a"], false)]).is_empty(), "reported once");
    }
}
