//! Recovery: opening a table's directory (orphans removed, segments mapped, damaged ones
//! quarantined, anything else refused loudly), the scrub that reads every sealed segment's data
//! once after open and then now and then, and the re-read of a lost segment's rows from the
//! stream.

use super::committer::{Edit, Sealed, TableState};
use super::ingest::Span;
use super::status::{QuarantineState, QuarantinedSegment};
use super::{QUARANTINE_DIR, SEGMENTS_DIR, Table};
use crate::error::{Error, io_error};
use crate::manifest::{LostSegment, Manifest};
use shoal_segment::sealed::is_temporary;
use shoal_segment::{MutableSegment, RecordMeta, SealedSegment, SegmentError, TableLayout, durable};
use shoal_stream::{Checkpoint, ShardEvent};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How the scrub reads sealed segments in the background.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScrubOptions {
    /// Most bytes read per second (the scrub sleeps between segments to keep to it).
    pub bytes_per_second: u64,
    /// Time between two passes over every segment (the first starts right after open).
    pub interval: Duration,
}

/// Builder methods: `ScrubOptions::default().with_…(…)`, so that a setting added later breaks no caller.
impl ScrubOptions {
    /// Sets [`ScrubOptions::bytes_per_second`].
    pub fn with_bytes_per_second(mut self, bytes_per_second: u64) -> Self {
        self.bytes_per_second = bytes_per_second;
        self
    }

    /// Sets [`ScrubOptions::interval`].
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions { bytes_per_second: 64 << 20, interval: Duration::from_secs(24 * 3600) }
    }
}

/// True when `e` says the file is damaged or gone, so that its rows must come from the stream
/// again. Anything else (the kernel refusing a map or a file descriptor, a permission, a
/// format version from a newer build, a file of another table) says nothing about the data:
/// the open fails loudly instead, and the segment is never quarantined and forgotten.
fn is_damage(e: &SegmentError) -> bool {
    match e {
        SegmentError::Corrupt { .. } => true,
        SegmentError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The sealed segments a table directory holds, as found at open.
pub(super) struct Opened {
    pub manifest: Manifest,
    pub state: TableState,
}

/// Opens a table directory: loads the manifest, deletes segment files it does not name
/// (half-sealed segments), maps the named ones without reading their rows, and quarantines the
/// damaged ones (committed as lost, their files moved to `quarantine/`).
pub(super) fn open_dir(
    name: &str,
    dir: &Path,
    layout: &TableLayout,
    copies: Option<&str>,
) -> Result<Opened, Error> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    durable::create_dir(&segments_dir).map_err(|e| io_error(&segments_dir, e))?;
    let mut manifest = Manifest::load(dir)?;
    let named: BTreeSet<String> = manifest.files().into_iter().map(str::to_string).collect();
    for entry in std::fs::read_dir(&segments_dir).map_err(|e| io_error(&segments_dir, e))? {
        let entry = entry.map_err(|e| io_error(&segments_dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !named.contains(&file_name) {
            let path = entry.path();
            tracing::info!(table = %name, file = %path.display(), temporary = is_temporary(&path), "removing a segment file no manifest names");
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
    }
    let mut sealed = Vec::new();
    let mut refused = Vec::new();
    let mut cold = Vec::new();
    let mut replaced = Vec::new();
    for entry in &manifest.segments {
        if entry.cold {
            // Its only copy is in the deep store, by design; a file left by an eviction that a
            // crash interrupted goes now.
            cold.push(entry.clone());
            let path = segments_dir.join(&entry.file);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
            continue;
        }
        let path = segments_dir.join(&entry.file);
        match SealedSegment::open(&path).and_then(|s| s.check_schema(&layout.arrow).map(|()| s)) {
            Ok(segment) => sealed.push(Sealed { entry: entry.clone(), segment: Arc::new(segment) }),
            Err(e)
                if is_damage(&e) && entry.deep.as_ref().is_some_and(|d| Some(d.store.as_str()) == copies) =>
            {
                tracing::error!(table = %name, file = %path.display(), error = %e, "segment refused at open: its deep-store copy replaces it (read from the store from now on)");
                replaced.push(entry.file.clone());
            }
            Err(e) if is_damage(&e) => {
                tracing::error!(table = %name, file = %path.display(), error = %e, "segment refused at open: quarantined; its rows will be read again from the stream");
                refused.push(LostSegment { entry: entry.clone(), reason: e.to_string() });
            }
            Err(e) => {
                tracing::error!(table = %name, file = %path.display(), error = %e, "segment cannot be opened; the table is not opened (nothing was changed)");
                return Err(e.into());
            }
        }
    }
    let mut changed = false;
    if manifest.created_ms.is_none() {
        // The table's first commit records when it was created; a table made by an older
        // build takes its config file's time.
        let config = dir.join(crate::engine::TABLE_CONFIG_FILE);
        let created = std::fs::metadata(&config)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(shoal_stream::now_ms, |d| d.as_millis() as i64);
        manifest.created_ms = Some(created);
        changed = true;
    }
    if !refused.is_empty() {
        manifest.segments.retain(|s| !refused.iter().any(|l| l.entry.file == s.file));
        manifest.lost.extend(refused.iter().cloned());
        changed = true;
    }
    for entry in manifest.segments.iter_mut().filter(|e| replaced.contains(&e.file)) {
        entry.cold = true;
        cold.push(entry.clone());
        changed = true;
    }
    if changed {
        manifest.commit(dir)?;
    }
    for lost in &refused {
        move_to_quarantine(dir, &lost.entry.file);
    }
    for file in &replaced {
        move_to_quarantine(dir, file);
    }
    Ok(Opened { manifest, state: TableState { sealed, cold, ..TableState::default() } })
}

/// Moves a segment file the manifest no longer names into `quarantine/`, durably. The file is
/// kept for the operator only: a failure is logged (the file would be removed as an orphan at
/// the next open).
fn move_to_quarantine(dir: &Path, file: &str) {
    let quarantine = dir.join(QUARANTINE_DIR);
    let from = dir.join(SEGMENTS_DIR).join(file);
    let moved =
        durable::create_dir(&quarantine).and_then(|()| durable::rename(&from, &quarantine.join(file)));
    if let Err(e) = moved
        && from.exists()
    {
        tracing::warn!(file = %from.display(), error = %e, "cannot move a quarantined segment file aside");
    }
}

impl Table {
    /// Takes a sealed segment whose data turned out damaged out of the table: it becomes lost
    /// in the same commit that takes it out of queries, its file moves to `quarantine/`, and
    /// its rows are read again from the stream. Nothing happens for a file the table no longer
    /// holds (quarantined already, or expired).
    pub(super) fn quarantine(self: &Arc<Table>, file: &str, reason: String) {
        let lost = {
            let Ok(mut guard) = self.committer.lock() else { return };
            let Some(entry) = guard.manifest().segments.iter().find(|s| s.file == file).cloned() else {
                return;
            };
            if entry.cold {
                // Evicted since the read that failed: its copy in the deep store is what
                // queries read now.
                return;
            }
            let copy_here = entry
                .deep
                .as_ref()
                .zip(self.options.deep_store.as_ref())
                .is_some_and(|(object, deep)| object.store == deep.url());
            if copy_here && self.committer.upsert().is_none() {
                // Its copy in the deep store is intact (checked when it was written): queries
                // read that from now on, and the stream is not needed.
                let files = std::iter::once(file.to_string()).collect();
                if let Err(e) = guard.apply(Edit::Evict { files }) {
                    tracing::error!(table = %self.name, file, error = %e, "cannot commit a damaged segment as cold; it stays in the table until it is found again");
                    return;
                }
                drop(guard);
                tracing::error!(table = %self.name, file, %reason, "segment data damaged: its deep-store copy replaces it (read from the store from now on)");
                self.metrics.segments_quarantined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                move_to_quarantine(&self.dir, file);
                return;
            }
            if let Err(e) = guard.apply(Edit::Quarantine { file: file.to_string(), reason: reason.clone() }) {
                tracing::error!(table = %self.name, file, error = %e, "cannot commit a damaged segment as lost; it stays in the table until it is found again");
                return;
            }
            LostSegment { entry, reason }
        };
        tracing::error!(table = %self.name, file, reason = %lost.reason, "segment data damaged: quarantined; its rows are read again from the stream");
        self.metrics.segments_quarantined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        move_to_quarantine(&self.dir, file);
        self.reread(lost);
    }

    /// Reads every sealed segment's data (its checksum) once after open and then every
    /// `interval`, at most `bytes_per_second`; a damaged one is quarantined and re-read.
    /// A query could not read a sealed segment (`SnapshotSource::unreadable`). Its data
    /// checksum decides: damaged bytes are quarantined and read again; bytes exactly as written
    /// that still cannot be read are a reader bug, not damage, and stay (reading them again
    /// from the stream would write the same rows).
    pub(super) async fn unreadable_segment(self: &Arc<Table>, file: String, reason: String) {
        let Some(segment) = self
            .committer
            .current()
            .sealed
            .iter()
            .find(|s| s.entry.file == file)
            .map(|s| Arc::clone(&s.segment))
        else {
            return;
        };
        let table = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || match segment.verify() {
            Err(e) if is_damage(&e) => table.quarantine(&file, e.to_string()),
            Err(e) => tracing::error!(table = %table.name, file, error = %e, "a segment a query could not read cannot be checked"),
            Ok(()) => tracing::error!(table = %table.name, file, %reason, "a segment's data is intact (its checksum matches) but could not be read; it is not quarantined"),
        })
        .await;
    }

    /// Runs until the table stops (see `spawn_until_stopped`).
    pub(super) async fn scrub(self: Arc<Table>, options: ScrubOptions) {
        loop {
            let segments: Vec<Sealed> = self.committer.current().sealed.clone();
            for s in segments {
                let segment = Arc::clone(&s.segment);
                let bytes = std::fs::metadata(segment.path()).map(|m| m.len()).unwrap_or(0);
                let checked = tokio::task::spawn_blocking(move || segment.verify()).await;
                match checked {
                    Ok(Err(e)) if is_damage(&e) => {
                        let (table, file) = (Arc::clone(&self), s.entry.file.clone());
                        let _ =
                            tokio::task::spawn_blocking(move || table.quarantine(&file, e.to_string())).await;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(table = %self.name, file = %s.entry.file, error = %e, "the scrub cannot read a segment")
                    }
                    Ok(Ok(())) | Err(_) => {}
                }
                let pause = Duration::from_secs_f64(bytes as f64 / options.bytes_per_second.max(1) as f64);
                tokio::time::sleep(pause).await;
            }
            tokio::time::sleep(options.interval).await;
        }
    }

    /// Reads the rows of a lost segment again (from the checkpoint before it to its last
    /// record) and commits them as a new segment of its shard, beside ingestion.
    pub(super) fn reread(self: &Arc<Table>, lost: LostSegment) {
        if !self.rereads.lock().insert(lost.entry.file.clone()) {
            return;
        }
        self.board.quarantined(QuarantinedSegment {
            file: lost.entry.file.clone(),
            shard: lost.entry.shard.clone(),
            reason: lost.reason.clone(),
            rows: lost.entry.rows,
            state: QuarantineState::Pending,
            rows_restored: 0,
        });
        let table = Arc::clone(self);
        self.spawn_until_stopped(async move {
            let file = lost.entry.file.clone();
            Arc::clone(&table).reread_task(lost).await;
            table.rereads.lock().remove(&file);
        });
    }

    async fn reread_task(self: Arc<Table>, lost: LostSegment) {
        let entry = &lost.entry;
        let file = entry.file.as_str();
        let Some(last) = entry.last.clone() else {
            tracing::error!(table = %self.name, file, "the lost segment was committed without its stream positions; its rows cannot be read again");
            return;
        };
        let source = self.source().await;
        let Some(mut handle) = source.replay(&entry.shard, entry.after.clone()) else {
            tracing::error!(table = %self.name, file, "the source cannot read a shard again; the lost segment's rows wait for the next start");
            return;
        };
        let mut stop = self.stop.subscribe();
        let Some(mut reader) = handle.readers.recv().await else { return };
        self.board.set_quarantine_state(file, QuarantineState::Rereading, 0);
        tracing::warn!(table = %self.name, file, shard = %entry.shard, after = ?entry.after.as_ref().map(Checkpoint::to_text), last = %last.to_text(), "reading a lost segment's rows again");
        let segment = Arc::new(MutableSegment::new(Arc::clone(&self.layout)));
        // An upsert or dedup table decides the rows again against its key map as it stood
        // before this segment: the same merges, marks and drops as the first time.
        let state = self.committer.current();
        let preceding: Vec<super::committer::Sealed> = state
            .sealed
            .iter()
            .filter(|s| super::committer::order_of(&s.entry) < super::committer::order_of(entry))
            .cloned()
            .collect();
        let no_consuming = std::collections::BTreeMap::new();
        let mut restorer = self.committer.upsert().map(|u| {
            u.restorer(
                &super::committer::segments_of(&preceding, &no_consuming, &no_consuming),
                &entry.shard,
                &segment,
            )
        });
        // The stream decides when the re-read is over: the segment's last record reached, or
        // proof that records are gone (the first one after the checkpoint is not the segment's
        // first: they expired; or the shard ends before the last). Slow answers, throttling and
        // empty pages only make it wait.
        let mut gone = false;
        let mut seen_first = false;
        let mut reached = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let event = tokio::select! {
                _ = stop.changed() => return,
                event = reader.next() => event,
            };
            match event {
                Some(ShardEvent::Records { records, .. }) => {
                    if !seen_first && let Some(r) = records.first() {
                        seen_first = true;
                        gone = entry.first.as_ref().is_some_and(|first| r.position() > *first);
                    }
                    let wanted = records.iter().filter(|r| {
                        let at = r.position();
                        at <= last && entry.first.as_ref().is_none_or(|first| &at >= first)
                    });
                    // Drops were counted when the records were first read.
                    let wanted = wanted.map(|r| {
                        (
                            r.data.as_ref(),
                            RecordMeta {
                                partition_key: &r.partition_key,
                                sequence_number: r.sequence_number.as_str(),
                                arrival_millis: r.arrival_ms,
                            },
                        )
                    });
                    match &mut restorer {
                        Some(r) => r.append(&segment, segment.decode(wanted)),
                        None => {
                            segment.append(wanted);
                        }
                    }
                    self.board.set_quarantine_state(file, QuarantineState::Rereading, segment.rows() as u64);
                    if records.last().is_some_and(|r| r.position() >= last) {
                        reached = true;
                        break;
                    }
                }
                Some(ShardEvent::End { .. }) => {
                    gone = true;
                    break;
                }
                // The source stopped: the lost entry stays for the next start.
                None => return,
            }
        }
        handle.stop();
        drop(reader);
        let rows = segment.rows() as u64;
        let table = Arc::clone(&self);
        let lost_owned = lost.clone();
        let committed = tokio::task::spawn_blocking(move || table.commit_reread(&lost_owned, &segment)).await;
        match committed {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => {
                // Every position back and the rows the segment held: anything less is partial.
                let complete = reached && !gone && rows == entry.rows;
                let state = if complete { QuarantineState::Restored } else { QuarantineState::Partial };
                self.board.set_quarantine_state(file, state, rows);
                if complete {
                    tracing::warn!(table = %self.name, file, rows, "every row of the lost segment read again and committed");
                } else {
                    tracing::error!(table = %self.name, file, rows, of = entry.rows, "the stream no longer holds some of the lost segment's records; the rest are back");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(table = %self.name, file, error = %e, "committing the re-read rows failed; retried at the next start");
                self.board.set_quarantine_state(file, QuarantineState::Pending, 0);
            }
            Err(e) => {
                tracing::error!(table = %self.name, file, error = %e, "the re-read's commit task failed");
                self.board.set_quarantine_state(file, QuarantineState::Pending, 0);
            }
        }
    }

    /// Seals the re-read rows of `lost` as a new segment of its shard and commits it, in the
    /// same edit that forgets `lost`. Nothing happens (false) when `lost` is no longer lost.
    fn commit_reread(&self, lost: &LostSegment, segment: &MutableSegment) -> Result<bool, Error> {
        let still_lost = |m: &Manifest| m.lost.iter().any(|l| l.entry.file == lost.entry.file);
        if !still_lost(&self.committer.current().manifest) {
            return Ok(false);
        }
        let span = Span { first: lost.entry.first.clone(), last: lost.entry.last.clone() };
        let sealed = self.write_sealed(&lost.entry.shard, segment, lost.entry.after.clone(), &span)?;
        let mut guard = self.commit_lock_for(&sealed)?;
        if !still_lost(guard.manifest()) {
            if let Some(s) = &sealed {
                let _ = std::fs::remove_file(self.dir.join(SEGMENTS_DIR).join(&s.entry.file));
            }
            return Ok(false);
        }
        guard.apply(Edit::Restore { lost: lost.entry.file.clone(), sealed })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_damage_or_a_missing_file_counts_as_damage() {
        let io = |code: i32| SegmentError::Io {
            path: PathBuf::from("a.seg"),
            source: std::io::Error::from_raw_os_error(code),
        };
        assert!(is_damage(&SegmentError::Corrupt {
            path: PathBuf::from("a.seg"),
            reason: "checksum".into()
        }));
        assert!(is_damage(&io(libc::ENOENT)), "a file the manifest names and the disk lost");
        for code in [libc::ENOMEM, libc::EMFILE, libc::ENFILE, libc::EACCES, libc::EPERM, libc::EIO] {
            assert!(!is_damage(&io(code)), "os error {code} says nothing about the data");
        }
        assert!(!is_damage(&SegmentError::UnknownVersion { path: PathBuf::from("a.seg"), found: 2 }));
        assert!(!is_damage(&SegmentError::SchemaMismatch {
            path: PathBuf::from("a.seg"),
            reason: "x".into()
        }));
    }
}
