//! The committer: the one place a table's committed state changes. The manifest (what is on
//! disk) and the table state (what queries read) change together, as one step, under one lock:
//! an [`Edit`] is applied through a [`CommitGuard`], which commits the manifest and swaps the
//! state before it is released (as mini-lsm does with its state lock). Another writer (a seal
//! of another shard, retention, a quarantine) cannot slip in between.
//!
//! Segment files are written outside the lock: a seal first reserves the shard's next segment
//! number under it, writes and maps the file, then commits. The lock is held only to commit.

use crate::error::Error;
use crate::manifest::{DeepObject, LostSegment, Manifest, SegmentEntry};
use crate::upsert::{Compaction, RebuildOrder, Segments, Upsert};
use parking_lot::{Mutex, MutexGuard, RwLock};
use shoal_segment::{MutableSegment, SealedSegment};
use shoal_stream::Checkpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// A sealed segment as the table holds it: its manifest entry and its mapped file.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub entry: SegmentEntry,
    pub segment: Arc<SealedSegment>,
}

/// What queries read: replaced whole by every edit, so that a query never sees a row twice.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    pub sealed: Vec<Sealed>,
    pub consuming: BTreeMap<String, Arc<MutableSegment>>,
    /// Per shard, its previous consuming segment while it is written and committed in the
    /// background: it takes no more rows and stays queryable until its sealed file replaces it.
    pub sealing: BTreeMap<String, Arc<MutableSegment>>,
    /// Sealed segments whose only copy is in the deep store (the cold tier), in commit order.
    pub cold: Vec<SegmentEntry>,
    /// The manifest committed with this state (for status and resume, without the lock).
    pub manifest: Arc<Manifest>,
}

impl TableState {
    /// The segments that still take or hold rows in memory: sealing ones, then consuming ones.
    pub(crate) fn mutable(&self) -> impl Iterator<Item = &Arc<MutableSegment>> {
        self.sealing.values().chain(self.consuming.values())
    }
}

/// A change to a table's committed state.
#[derive(Debug)]
pub(crate) enum Edit {
    /// A shard's ingest loop starts with `segment` as its consuming segment (no manifest
    /// change). A sealing segment a previous loop left (its seal failed; its rows will be read
    /// again from the checkpoint) goes.
    Consume { shard: String, segment: Arc<MutableSegment> },
    /// A shard's consuming segment stops taking rows and becomes its sealing segment (still
    /// queryable); `next` takes the shard's rows from now on (None: the shard ended). No
    /// manifest change.
    Handoff { shard: String, next: Option<Arc<MutableSegment>> },
    /// A shard's sealing segment sealed into `sealed` (None: it held no rows), its checkpoint
    /// moved to `checkpoint`, the shard may have ended.
    Seal { shard: String, sealed: Option<Sealed>, checkpoint: Option<Checkpoint>, ended: bool },
    /// The rows of the lost segment `lost` were read again into `sealed` (None: none came
    /// back); the lost entry is forgotten.
    Restore { lost: String, sealed: Option<Sealed> },
    /// Segments past the retention go.
    Expire { files: BTreeSet<String> },
    /// An upsert table's sealed segment `old` is replaced by `sealed`, which holds its rows
    /// `kept` (the visible ones), in the same place; None: no row was visible, it goes.
    Compact { old: String, sealed: Option<Sealed>, kept: Arc<Vec<u32>> },
    /// A sealed segment found damaged becomes lost, to be read again.
    Quarantine { file: String, reason: String },
    /// Consumption is paused (with why and since when) or resumed.
    Pause(Option<crate::manifest::Pause>),
    /// A sealed segment's copy is in the deep store.
    Uploaded { file: String, object: DeepObject },
    /// Uploaded segments leave local disk: queries read them from the deep store.
    Evict { files: BTreeSet<String> },
}

/// What the commit lock guards.
#[derive(Debug)]
struct Locked {
    manifest: Manifest,
    /// Segment numbers handed out to seals not committed yet, per shard: the next one free.
    reserved: BTreeMap<String, u64>,
    /// Set when the table stops: nothing commits after that.
    closed: bool,
}

/// The table's manifest and state, and the lock under which both change.
#[derive(Debug)]
pub(crate) struct Committer {
    dir: PathBuf,
    locked: Mutex<Locked>,
    /// An upsert or dedup table's key map, brought in line with each state before it is
    /// published.
    upsert: Option<Arc<Upsert>>,
    /// Written only while `locked` is held.
    state: RwLock<Arc<TableState>>,
    /// Woken after every commit (the deep-store uploader waits on it).
    pub(crate) changed: tokio::sync::Notify,
}

impl Committer {
    pub(crate) fn new(
        dir: PathBuf,
        manifest: Manifest,
        mut state: TableState,
        upsert: Option<Arc<Upsert>>,
    ) -> Committer {
        state.manifest = Arc::new(manifest.clone());
        if let Some(u) = &upsert {
            // The key map is built from the sealed segments' rows.
            u.publish(None, None, segments_of(&state.sealed, &state.sealing, &state.consuming), || {});
        }
        Committer {
            dir,
            locked: Mutex::new(Locked { manifest, reserved: BTreeMap::new(), closed: false }),
            upsert,
            state: RwLock::new(Arc::new(state)),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The key map, for an upsert or dedup table.
    pub(crate) fn upsert(&self) -> Option<&Arc<Upsert>> {
        self.upsert.as_ref()
    }

    /// The current state (what a query reads) and the manifest committed with it.
    pub(crate) fn current(&self) -> Arc<TableState> {
        Arc::clone(&self.state.read())
    }

    /// Takes the commit lock; an error once the table has stopped.
    pub(crate) fn lock(&self) -> Result<CommitGuard<'_>, Error> {
        let locked = self.locked.lock();
        if locked.closed {
            return Err(Error::ShutDown);
        }
        Ok(CommitGuard { committer: self, locked })
    }

    /// Reserves the next segment number of `shard`, for a file written outside the lock.
    pub(crate) fn reserve(&self, shard: &str) -> Result<u64, Error> {
        let mut guard = self.lock()?;
        let locked = &mut *guard.locked;
        let committed = locked.manifest.next_sequence.get(shard).copied().unwrap_or(0);
        let next = locked.reserved.entry(shard.to_string()).or_insert(0);
        let number = committed.max(*next);
        *next = number + 1;
        Ok(number)
    }

    /// Stops all commits, after the one under way (if any) is done.
    pub(crate) fn close(&self) {
        self.locked.lock().closed = true;
    }
}

/// Proof that the holder is the table's one committer right now.
pub(crate) struct CommitGuard<'a> {
    committer: &'a Committer,
    locked: MutexGuard<'a, Locked>,
}

impl CommitGuard<'_> {
    /// The committed manifest.
    pub(crate) fn manifest(&self) -> &Manifest {
        &self.locked.manifest
    }

    /// Applies `edit`: the manifest is committed (when the edit changes it) and then the state
    /// swapped, before the guard is released. When the commit fails nothing changes, and a
    /// segment file the edit brought, which no manifest names, is removed.
    pub(crate) fn apply(&mut self, edit: Edit) -> Result<(), Error> {
        let mut next = self.locked.manifest.clone();
        let state = self.committer.current();
        let mut sealed = state.sealed.clone();
        let mut consuming = state.consuming.clone();
        let mut sealing = state.sealing.clone();
        let mut cold = state.cold.clone();
        let mut new_file = None;
        // A seal hands its sealing segment's rows (and their key map state) to the file.
        let sealed_from = match &edit {
            Edit::Seal { shard, sealed: Some(s), .. } => {
                state.sealing.get(shard).map(|c| (Arc::clone(c), s.entry.file.clone()))
            }
            _ => None,
        };
        let compacted = match &edit {
            Edit::Compact { old, sealed, kept } => {
                Some((old.clone(), sealed.as_ref().map(|s| s.entry.file.clone()), Arc::clone(kept)))
            }
            _ => None,
        };
        let mut add = |next: &mut Manifest, s: Sealed| {
            let after =
                next.next_sequence.get(&s.entry.shard).copied().unwrap_or(0).max(s.entry.sequence + 1);
            next.next_sequence.insert(s.entry.shard.clone(), after);
            next.segments.push(s.entry.clone());
            new_file = Some(s.entry.file.clone());
            sealed.push(s);
        };
        match edit {
            Edit::Consume { shard, segment } => {
                sealing.remove(&shard);
                consuming.insert(shard, segment);
            }
            Edit::Handoff { shard, next: fresh } => {
                let old = match fresh {
                    Some(f) => consuming.insert(shard.clone(), f),
                    None => consuming.remove(&shard),
                };
                if let Some(old) = old {
                    sealing.insert(shard, old);
                }
            }
            Edit::Seal { shard, sealed: s, checkpoint, ended } => {
                if let Some(s) = s {
                    add(&mut next, s);
                }
                if let Some(c) = checkpoint {
                    next.checkpoints.insert(shard.clone(), c);
                }
                if ended {
                    next.ended_shards.insert(shard.clone());
                }
                sealing.remove(&shard);
            }
            Edit::Restore { lost, sealed: s } => {
                next.lost.retain(|l| l.entry.file != lost);
                if let Some(s) = s {
                    add(&mut next, s);
                }
            }
            Edit::Expire { files } => {
                next.segments.retain(|s| !files.contains(&s.file));
                sealed.retain(|s| !files.contains(&s.entry.file));
                cold.retain(|e| !files.contains(&e.file));
            }
            Edit::Uploaded { file, object } => {
                // A segment expired or compacted away meanwhile is not named again.
                if let Some(e) = next.segments.iter_mut().find(|s| s.file == file) {
                    e.deep = Some(object.clone());
                    e.replaces = None;
                }
                if let Some(s) = sealed.iter_mut().find(|s| s.entry.file == file) {
                    s.entry.deep = Some(object);
                    s.entry.replaces = None;
                }
            }
            Edit::Evict { files } => {
                for e in next.segments.iter_mut().filter(|e| files.contains(&e.file) && e.deep.is_some()) {
                    e.cold = true;
                    cold.push(e.clone());
                }
                sealed.retain(|s| !cold.iter().any(|c| c.file == s.entry.file));
            }
            Edit::Compact { old, sealed: replacement, .. } => {
                let at = next.segments.iter().position(|s| s.file == old);
                let held = sealed.iter().position(|s| s.entry.file == old);
                match replacement {
                    Some(mut s) => {
                        // Until the rewrite is uploaded, the deep store keeps the segment it
                        // replaces (the same rows and more, valid for a restore).
                        let old = at.map(|at| &next.segments[at]);
                        let uploaded = old.and_then(|o| match (&o.deep, &o.replaces) {
                            (Some(_), _) => Some(Box::new(SegmentEntry { replaces: None, ..o.clone() })),
                            (None, replaced) => replaced.clone(),
                        });
                        s.entry.replaces = uploaded;
                        let after = next
                            .next_sequence
                            .get(&s.entry.shard)
                            .copied()
                            .unwrap_or(0)
                            .max(s.entry.sequence + 1);
                        next.next_sequence.insert(s.entry.shard.clone(), after);
                        new_file = Some(s.entry.file.clone());
                        if let Some(at) = at {
                            next.segments[at] = s.entry.clone();
                        }
                        if let Some(held) = held {
                            sealed[held] = s;
                        }
                    }
                    None => {
                        if let Some(at) = at {
                            next.segments.remove(at);
                        }
                        if let Some(held) = held {
                            sealed.remove(held);
                        }
                    }
                }
            }
            Edit::Pause(pause) => next.paused = pause,
            Edit::Quarantine { file, reason } => {
                if let Some(at) = next.segments.iter().position(|s| s.file == file) {
                    let entry = next.segments.remove(at);
                    next.lost.push(LostSegment { entry, reason });
                }
                sealed.retain(|s| s.entry.file != file);
                cold.retain(|e| e.file != file);
            }
        }
        let mut committed = Arc::clone(&state.manifest);
        if next != self.locked.manifest {
            if let Err(e) = next.commit(&self.committer.dir) {
                if let Some(file) = new_file {
                    let _ = std::fs::remove_file(self.committer.dir.join(super::SEGMENTS_DIR).join(file));
                }
                return Err(e);
            }
            committed = Arc::new(next.clone());
            self.locked.manifest = next;
        }
        let next = Arc::new(TableState { sealed, consuming, sealing, cold, manifest: committed });
        match &self.committer.upsert {
            Some(u) => {
                let from = sealed_from.as_ref().map(|(c, f)| (c, f.as_str()));
                let compaction = compacted.as_ref().map(|(old, new, kept)| Compaction {
                    old: old.as_str(),
                    new: new
                        .as_ref()
                        .and_then(|f| next.sealed.iter().find(|s| &s.entry.file == f))
                        .map(|s| (s.entry.file.as_str(), &s.segment)),
                    kept: kept.as_slice(),
                });
                u.publish(
                    from,
                    compaction,
                    segments_of(&next.sealed, &next.sealing, &next.consuming),
                    || {
                        *self.committer.state.write() = Arc::clone(&next);
                    },
                );
            }
            None => *self.committer.state.write() = next,
        }
        self.committer.changed.notify_waiters();
        Ok(())
    }
}

/// A state's segments, in the order a key-map rebuild reads them: per shard in stream order
/// (sealed, then sealing, then consuming).
pub(super) fn segments_of<'a>(
    sealed: &'a [Sealed],
    sealing: &'a BTreeMap<String, Arc<MutableSegment>>,
    consuming: &'a BTreeMap<String, Arc<MutableSegment>>,
) -> Segments<'a> {
    Segments {
        sealed: sealed
            .iter()
            .map(|s| {
                let e = &s.entry;
                (
                    e.file.as_str(),
                    &s.segment,
                    (e.shard.clone(), 0, e.first.clone().or_else(|| e.after.clone()), e.sequence),
                )
            })
            .collect(),
        consuming: sealing
            .iter()
            .map(|(shard, c)| (c, (shard.clone(), 1, None, 0)))
            .chain(consuming.iter().map(|(shard, c)| (c, (shard.clone(), 2, None, 0))))
            .collect(),
    }
}

/// Where a sealed segment's rows lie in the table's streams.
pub(super) fn order_of(e: &SegmentEntry) -> RebuildOrder {
    (e.shard.clone(), 0, e.first.clone().or_else(|| e.after.clone()), e.sequence)
}
