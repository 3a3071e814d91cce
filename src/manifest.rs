//! The table manifest: the sealed segments, the per-shard checkpoints and the ended shards.
//! It is the only checkpoint, replaced atomically on every commit (temporary file, fsync,
//! rename, fsync of the directory).

use crate::error::{Error, io_error};
use serde::{Deserialize, Serialize};
use shoal_segment::durable;
use shoal_stream::{Checkpoint, ResumeState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The manifest's format version.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name in a table directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A sealed segment the manifest names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// File name in the table's `segments/` directory.
    pub file: String,
    /// Shard it was consumed from.
    pub shard: String,
    /// Its number among the shard's segments.
    pub sequence: u64,
    /// Rows.
    pub rows: u64,
    /// Smallest and largest time column value, epoch ms.
    pub time_range: Option<(i64, i64)>,
    /// The shard's checkpoint before this segment (None: the shard's start): where its rows
    /// are read again from if the file is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Checkpoint>,
    /// The first record consumed into it (rows or drops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Checkpoint>,
    /// The last record consumed into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Checkpoint>,
    /// Its copy in the deep store, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep: Option<DeepObject>,
    /// True once its local file is gone (the cold tier): queries read its deep-store copy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
    /// An upsert compaction's rewrite not uploaded yet: the uploaded segment it replaced, which
    /// the deep store's manifest names (and keeps) in its place until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Box<SegmentEntry>>,
}

/// A sealed segment's Parquet copy in the deep store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepObject {
    /// The deep store's URL (without credentials): an engine opened with another store uploads
    /// the segment again.
    #[serde(default)]
    pub store: String,
    /// The object's key under the store's prefix: `<table>/dt=<yyyy-MM-dd>/<segment>.parquet`.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When the segment started consuming, epoch ms (its name is made from it).
    pub created_ms: i64,
    /// Per-column statistics, in the table's column order: cold segments are pruned with them
    /// without reading the object.
    pub stats: Vec<shoal_segment::ColumnStats>,
}

/// A segment whose file was refused (and moved to `quarantine/`), waiting for its rows to be
/// read again from the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostSegment {
    /// The segment as it was committed.
    pub entry: SegmentEntry,
    /// Why the file was refused.
    pub reason: String,
}

/// What a table has committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Incremented by every commit.
    pub generation: u64,
    /// Sealed segments, in commit order.
    pub segments: Vec<SegmentEntry>,
    /// The last record consumed into a committed segment, per shard.
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// Shards read to their end.
    pub ended_shards: BTreeSet<String>,
    /// The next segment number per shard.
    pub next_sequence: BTreeMap<String, u64>,
    /// Quarantined segments whose rows are still to be read again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<LostSegment>,
    /// When the table was created, epoch ms: where shards without a checkpoint start when the
    /// config says `LATEST` (see `ResumeState::created_ms`). Written by the table's first commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
    /// Set while an operator has paused consumption; a restart stays paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
}

/// An operator's pause of a table's consumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Why, as the operator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When the pause began, epoch ms.
    pub since_ms: i64,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Manifest {
        Manifest { version: MANIFEST_VERSION, ..Manifest::default() }
    }

    /// Reads the manifest of `dir`; an empty one when there is none yet.
    pub fn load(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::new()),
            Err(e) => return Err(io_error(&path, e)),
        };
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| Error::Corrupt { path: path.clone(), reason: format!("manifest: {e}") })?;
        if manifest.version != MANIFEST_VERSION {
            return Err(Error::Corrupt {
                path,
                reason: format!(
                    "manifest version {} (this build reads {MANIFEST_VERSION})",
                    manifest.version
                ),
            });
        }
        let named = manifest.segments.iter().chain(manifest.lost.iter().map(|l| &l.entry));
        if let Some(bad) = named.map(|s| s.file.as_str()).find(|f| !is_segment_file_name(f)) {
            return Err(Error::Corrupt {
                path,
                reason: format!("it names {bad:?}, which is not a segment file name (a plain `*.seg` name)"),
            });
        }
        Ok(manifest)
    }

    /// Replaces the manifest of `dir` with this one, atomically and durably.
    pub fn commit(&mut self, dir: &Path) -> Result<(), Error> {
        self.generation += 1;
        let path = dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Corrupt { path: path.clone(), reason: e.to_string() })?;
        match durable::write_atomic(&path, &bytes, 0o600) {
            Ok(()) => Ok(()),
            // The new manifest is in place: it is what a reader (and a restart) sees, so the
            // commit stands; the next commit fsyncs the directory again.
            Err(e) if e.replaced => {
                tracing::error!(manifest = %path.display(), error = %e.source, "the manifest was replaced but its directory could not be fsynced");
                Ok(())
            }
            Err(e) => Err(io_error(&path, e.source)),
        }
    }

    /// Where the table's readers resume.
    pub fn resume_state(&self) -> ResumeState {
        ResumeState {
            checkpoints: self.checkpoints.clone(),
            ended: self.ended_shards.clone(),
            created_ms: self.created_ms,
        }
    }

    /// File names of every segment the manifest names.
    pub fn files(&self) -> BTreeSet<&str> {
        self.segments.iter().map(|s| s.file.as_str()).collect()
    }
}

/// True for a name a segment file can have: a plain `*.seg` file name, so that a manifest can
/// never make the engine open, move or delete a file outside the table's `segments/`.
fn is_segment_file_name(name: &str) -> bool {
    let path = Path::new(name);
    let plain = path.components().count() == 1
        && matches!(path.components().next(), Some(std::path::Component::Normal(_)));
    plain && !name.contains(['/', '\\', '\0']) && name.ends_with(".seg") && name.len() > ".seg".len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_stream::SequenceNumber;

    #[test]
    fn commits_replace_the_manifest_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Manifest::new());
        let mut m = Manifest::new();
        m.segments.push(SegmentEntry {
            file: "a.seg".into(),
            shard: "s".into(),
            sequence: 0,
            rows: 5,
            time_range: Some((1, 2)),
            after: None,
            first: None,
            last: None,
            deep: None,
            cold: false,
            replaces: None,
        });
        m.checkpoints.insert(
            "s".into(),
            Checkpoint { sequence: SequenceNumber::parse("42").unwrap(), sub_sequence: Some(1) },
        );
        m.ended_shards.insert("p".into());
        m.commit(dir.path()).unwrap();
        m.commit(dir.path()).unwrap();
        let back = Manifest::load(dir.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.generation, 2);
        assert!(!dir.path().join("manifest.json.tmp").exists());
        std::fs::write(dir.path().join(MANIFEST_FILE), "{not json").unwrap();
        assert!(matches!(Manifest::load(dir.path()), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn a_manifest_naming_a_path_outside_the_segments_is_refused() {
        for bad in ["../../etc/passwd.seg", "/etc/passwd.seg", "..", ".seg", "a/b.seg", "x.json", ""] {
            let dir = tempfile::tempdir().unwrap();
            let mut m = Manifest::new();
            m.segments.push(SegmentEntry {
                file: bad.into(),
                shard: "s".into(),
                sequence: 0,
                rows: 1,
                time_range: None,
                after: None,
                first: None,
                last: None,
                deep: None,
                cold: false,
                replaces: None,
            });
            m.commit(dir.path()).unwrap();
            let err = Manifest::load(dir.path()).unwrap_err();
            assert!(matches!(&err, Error::Corrupt { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
        }
        assert!(is_segment_file_name("events__shardId-000000000001__3__20250326T1827Z.seg"));
    }
}
