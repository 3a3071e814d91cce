//! A table: its committed segments and one ingest loop per shard.
//!
//! - `committer.rs`: the manifest and the table state, changed together by one committer;
//! - `ingest.rs`: a shard's ingest loop (decode, append, seal at a threshold or the memory cap);
//! - `recovery.rs`: open, quarantine, scrub, and re-reading lost segments from the stream;
//! - `status.rs`: what operators see.

mod committer;
mod compaction;
mod consumption;
mod ingest;
mod recovery;
mod status;
mod tiering;
pub(crate) use tiering::DEEP_MANIFEST;

pub use consumption::PauseStatus;
pub use recovery::ScrubOptions;
pub use status::{
    DeepStoreStatus, QuarantineState, QuarantinedSegment, SegmentStatus, ShardState, ShardStatus,
    TableStatus, UpsertStatus,
};

use crate::config::TableDefinition;
use crate::engine::SourceFactory;
use crate::error::Error;
use crate::metrics::TableMetrics;
use crate::upsert::{SegmentRef, Upsert};
use committer::Committer;
use parking_lot::Mutex;
use shoal_query::{ColdSegment, SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::mutable::now_ms;
use shoal_segment::{LayoutOptions, SealedSegment, SegmentError, TableLayout};
use shoal_stream::{Checkpoint, Source};
use status::StatusBoard;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// The directory of a table's sealed segment files.
pub(crate) const SEGMENTS_DIR: &str = "segments";
/// The directory damaged segment files are moved to.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// Engine-wide settings a table needs.
#[derive(Clone)]
#[non_exhaustive]
pub struct TableOptions {
    /// Most bytes (estimated) the consuming segments of one table may hold before the largest
    /// seals early.
    pub consuming_memory_cap: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Longest wait between attempts to seal while sealing fails.
    pub seal_retry: Duration,
    /// The background scrub of sealed segments; None turns it off.
    pub scrub: Option<ScrubOptions>,
    /// Where the table reads records from (also to read lost segments again).
    pub sources: Arc<dyn SourceFactory>,
    /// The engine's deep store: sealed segments are uploaded to it.
    pub deep_store: Option<Arc<crate::deep::DeepStore>>,
    /// Faults the tests inject.
    #[cfg(feature = "fault-injection")]
    pub faults: Arc<crate::engine::Faults>,
    /// The data directory's lock: held while any table (or a task of it) is alive, so that
    /// another process cannot open the directory while a table still commits.
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    pub(crate) dir_lock: Arc<crate::engine::DataDirLock>,
}

/// A table being consumed.
pub struct Table {
    pub(crate) name: String,
    pub(crate) definition: TableDefinition,
    pub(crate) layout: Arc<TableLayout>,
    dir: PathBuf,
    committer: Committer,
    board: StatusBoard,
    pub(crate) metrics: Arc<TableMetrics>,
    options: TableOptions,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The readers and ingest loops, while the table consumes.
    consumption: Mutex<consumption::Consumption>,
    /// Per shard, how to ask its ingest loop to seal now (the table is over its memory cap).
    seal_requests: Mutex<BTreeMap<String, Arc<Notify>>>,
    /// Lost segments being read again.
    rereads: Mutex<BTreeSet<String>>,
    /// Segments a query found unreadable, for the recovery task.
    unreadable: mpsc::UnboundedSender<(String, String)>,
    unreadable_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
    /// The append log of a table the app feeds (`streamType` `append`).
    pub(crate) append_log: Option<Arc<crate::append::AppendLog>>,
    /// The last sequence number of the append log the ingest loop has taken (0: none).
    pub(crate) append_progress: watch::Sender<u64>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        // An upsert table's rows and the bits of which are visible are taken together, under
        // the key map's lock.
        let mut view = self.committer.upsert().and_then(|u| u.view());
        let state = self.committer.current();
        let mut segments: Vec<SegmentData> =
            state.sealed.iter().map(|s| SegmentData::Sealed(Arc::clone(&s.segment))).collect();
        segments.extend(state.mutable().map(|c| SegmentData::Consuming(c.snapshot())));
        if let Some(deep) = &self.options.deep_store {
            segments.extend(state.cold.iter().filter_map(|e| {
                let object = e.deep.as_ref()?;
                Some(SegmentData::Cold(Arc::new(ColdSegment {
                    store: Arc::clone(&deep.store),
                    store_url: deep.query_url.clone(),
                    path: deep.key_path(&object.key),
                    bytes: object.bytes,
                    rows: e.rows as usize,
                    stats: object.stats.clone(),
                })))
            }));
        }
        let mut snapshot = TableSnapshot::new(segments);
        if let Some(view) = &mut view {
            let sealed = state.sealed.iter().map(|s| SegmentRef::Sealed(&s.entry.file));
            let consuming = state.mutable().map(SegmentRef::Consuming);
            snapshot.validity = sealed
                .chain(consuming)
                .zip(&snapshot.segments)
                .map(|(r, d)| Some(view.validity(r, d.rows())))
                .collect();
        }
        snapshot
    }

    fn unreadable(&self, segment: &Arc<SealedSegment>, error: &SegmentError) {
        // Reading a sealed segment's rows fails only on damaged data (SealedSegment::batches).
        let file = segment.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = self.unreadable.send((file, error.to_string()));
    }
}

/// The layout of a table definition.
pub fn layout_of(definition: &TableDefinition) -> Arc<TableLayout> {
    let config = &definition.config;
    Arc::new(TableLayout::new(
        Arc::clone(&definition.schema),
        &LayoutOptions {
            time_column: Some(config.segments.time_column.clone()),
            flatten_delimiter: config.ingestion.complex_type.as_ref().map(|c| c.delimiter.clone()),
            populate_metadata: config.stream.populate_metadata,
            continue_on_error: config.ingestion.continue_on_error,
            row_time_check: config.ingestion.row_time_check,
            transform: definition.transform.clone().map(|t| t as Arc<dyn shoal_segment::RecordTransform>),
            dictionary: dictionary_columns(definition),
        },
    ))
}

/// The columns a table stores dictionary-encoded: as in Pinot, every single-value STRING
/// dimension not named in `noDictionaryColumns` (or a RAW `fieldConfigList` entry). Time
/// columns stay plain (DATETIME fields), as do multi-value columns.
fn dictionary_columns(definition: &TableDefinition) -> std::collections::HashSet<String> {
    let no_dictionary = &definition.config.no_dictionary_columns;
    definition
        .schema
        .fields
        .iter()
        .filter(|f| {
            f.role == shoal_segment::schema::FieldRole::Dimension
                && f.single_value
                && f.data_type == shoal_segment::DataType::String
                && !no_dictionary.contains(&f.name)
        })
        .map(|f| f.name.clone())
        .collect()
}

/// The sequence number of the append log up to which a table needs no record again: its
/// committed checkpoint, or just before the first record of the earliest lost segment, which
/// is read again from the log.
fn append_keep_after(manifest: &crate::manifest::Manifest) -> u64 {
    let seq = |c: &shoal_stream::Checkpoint| c.sequence.as_str().parse::<u64>().unwrap_or(0);
    let committed = manifest.checkpoints.get(crate::append::APPEND_SHARD).map_or(0, seq);
    manifest
        .lost
        .iter()
        .filter(|l| l.entry.shard == crate::append::APPEND_SHARD)
        .map(|l| l.entry.after.as_ref().map_or(0, seq))
        .fold(committed, u64::min)
}

impl Table {
    /// Opens a table in `dir`: loads the manifest, deletes files it does not name (half-sealed
    /// segments), maps the sealed segments (without reading them) and quarantines the damaged
    /// ones. Any other failure to open a segment (the kernel refusing a map, a format from a
    /// newer build) fails the open and changes nothing.
    pub fn open(
        name: String,
        definition: TableDefinition,
        dir: PathBuf,
        metrics: Arc<TableMetrics>,
        options: TableOptions,
    ) -> Result<Table, Error> {
        let layout = layout_of(&definition);
        // A damaged file whose copy is in this deep store is replaced by the copy, but not in an
        // upsert or dedup table, whose key map reads every segment's rows.
        let keyed = definition.config.upsert.is_some() || definition.config.dedup.is_some();
        let copies = options.deep_store.as_ref().filter(|_| !keyed).map(|d| d.url().to_string());
        let opened = recovery::open_dir(&name, &dir, &layout, copies.as_deref())?;
        let mut opened = opened;
        let cold_store =
            opened.state.cold.iter().filter_map(|e| e.deep.as_ref()).map(|d| d.store.as_str()).next();
        if let Some(cold_store) = cold_store
            && options.deep_store.as_ref().is_none_or(|d| d.url() != cold_store)
        {
            return Err(Error::DeepStore(format!(
                "table {name}: {} of its segments live only in the deep store {cold_store} (the cold tier); open the engine with that deep store",
                opened.state.cold.len()
            )));
        }
        if let Some(deep) = &options.deep_store {
            // Segments uploaded to another store are uploaded to this one again.
            let elsewhere =
                |d: &Option<crate::manifest::DeepObject>| d.as_ref().is_some_and(|d| d.store != deep.url());
            let forget = |e: &mut crate::manifest::SegmentEntry| {
                let mut changed = false;
                if elsewhere(&e.deep) {
                    e.deep = None;
                    changed = true;
                }
                if e.replaces.as_ref().is_some_and(|r| elsewhere(&r.deep)) {
                    e.replaces = None;
                    changed = true;
                }
                changed
            };
            let mut changed = false;
            for e in opened.manifest.segments.iter_mut().filter(|e| !e.cold) {
                changed |= forget(e);
            }
            if changed {
                opened.manifest.commit(&dir)?;
                for s in &mut opened.state.sealed {
                    forget(&mut s.entry);
                }
            }
        }
        let upsert = Upsert::of(&definition, &layout, Arc::clone(&metrics.upsert)).map(Arc::new);
        let board = StatusBoard::default();
        for l in &opened.manifest.lost {
            board.quarantined(QuarantinedSegment {
                file: l.entry.file.clone(),
                shard: l.entry.shard.clone(),
                reason: l.reason.clone(),
                rows: l.entry.rows,
                state: QuarantineState::Pending,
                rows_restored: 0,
            });
        }
        let append_log = if definition.config.stream.is_append() {
            let keep_after = append_keep_after(&opened.manifest);
            Some(Arc::new(crate::append::AppendLog::open(&name, &dir, keep_after)?))
        } else {
            None
        };
        let (stop, _) = watch::channel(false);
        let (unreadable, unreadable_rx) = mpsc::unbounded_channel();
        Ok(Table {
            append_log,
            append_progress: watch::Sender::new(0),
            name,
            definition,
            layout,
            committer: Committer::new(dir.clone(), opened.manifest, opened.state, upsert),
            dir,
            board,
            metrics,
            options,
            stop,
            tasks: Mutex::new(Vec::new()),
            consumption: Mutex::new(consumption::Consumption::default()),
            seal_requests: Mutex::new(BTreeMap::new()),
            rereads: Mutex::new(BTreeSet::new()),
            unreadable,
            unreadable_rx: Mutex::new(Some(unreadable_rx)),
        })
    }

    /// The source the table reads: its append log for a table the app feeds, else the one the
    /// engine's source factory makes.
    pub(crate) async fn source(&self) -> Box<dyn Source> {
        match &self.append_log {
            Some(log) => Box::new(crate::append::AppendSource { log: Arc::clone(log) }),
            None => self.options.sources.create(&self.definition).await,
        }
    }

    /// The sequence number of the append log up to which the table needs no record again.
    pub(crate) fn append_keep_after(&self) -> u64 {
        append_keep_after(&self.committer.current().manifest)
    }

    /// Starts consuming from `source` (unless the table is paused), resuming after the
    /// manifest's checkpoints; reads the lost segments' rows again, and starts retention and
    /// the scrub.
    pub fn start(self: &Arc<Table>, source: Box<dyn Source>) {
        if self.committer.current().manifest.paused.is_none() {
            self.start_consuming(source);
        }
        let table = Arc::clone(self);
        self.spawn_until_stopped(async move {
            loop {
                tokio::time::sleep(table.options.retention_interval).await;
                if let Err(e) = table.apply_retention() {
                    tracing::error!(table = %table.name, error = %e, "retention failed");
                }
                let compacting = Arc::clone(&table);
                match tokio::task::spawn_blocking(move || compacting.compact()).await {
                    Ok(Err(e)) => {
                        tracing::error!(table = %table.name, error = %e, "upsert compaction failed")
                    }
                    Err(e) => {
                        tracing::error!(table = %table.name, error = %e, "upsert compaction task failed")
                    }
                    Ok(Ok(_)) => {}
                }
            }
        });
        if let Some(rx) = self.unreadable_rx.lock().take() {
            let table = Arc::clone(self);
            self.spawn_until_stopped(async move {
                let mut rx = rx;
                while let Some((file, reason)) = rx.recv().await {
                    table.unreadable_segment(file, reason).await;
                }
            });
        }
        if let Some(deep) = self.options.deep_store.clone() {
            self.spawn_until_stopped(Arc::clone(self).deep_store_loop(deep));
            // The upload lag's gauges follow every commit, also while an upload hangs.
            let table = Arc::clone(self);
            self.spawn_until_stopped(async move {
                loop {
                    let changed = table.committer.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    table.update_deep_gauges();
                    changed.await;
                }
            });
        }
        if let Some(scrub) = self.options.scrub.clone() {
            self.spawn_until_stopped(Arc::clone(self).scrub(scrub));
        }
        for lost in self.committer.current().manifest.lost.clone() {
            self.reread(lost);
        }
    }

    /// Runs `task` until the table stops (also when the stop comes before the task first
    /// runs: the stop is watched from the moment of this call).
    pub(super) fn spawn_until_stopped(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.subscribe();
        self.tasks.lock().push(tokio::spawn(async move {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = task => {}
                _ = stop.changed() => {}
            }
        }));
    }

    /// Stops the readers and ingestion tasks; what is committed stays committed.
    pub async fn stop(&self) {
        if let Some(log) = &self.append_log {
            log.close();
        }
        self.stop_consuming().await;
        let _ = self.stop.send(true);
        // Tasks started while stopping are waited for too.
        loop {
            let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        // A commit still under way in a blocking thread (its task was cancelled) finishes
        // first; nothing commits after this.
        self.committer.close();
    }

    /// Tells the source and every task to stop, without waiting (for a drop).
    pub(crate) fn stop_now(&self) {
        if let Some(log) = &self.append_log {
            log.close();
        }
        let consumption = std::mem::take(&mut *self.consumption.lock());
        if let Some(handle) = consumption.source {
            handle.stop();
        }
        let _ = consumption.stop.send(true);
        let _ = self.stop.send(true);
    }

    fn shard_count(&self) -> usize {
        self.committer.current().consuming.len().max(1)
    }

    /// Drops the sealed segments whose newest row is older than the retention.
    pub fn apply_retention(&self) -> Result<usize, Error> {
        let Some(retention) = self.definition.config.segments.retention else { return Ok(0) };
        let cutoff = now_ms() - retention.as_millis() as i64;
        let (expired, cold): (BTreeSet<String>, BTreeSet<String>) = {
            let mut guard = self.committer.lock()?;
            let expired: BTreeSet<String> = guard
                .manifest()
                .segments
                .iter()
                .filter(|s| s.time_range.is_some_and(|(_, newest)| newest < cutoff))
                .map(|s| s.file.clone())
                .collect();
            if expired.is_empty() {
                return Ok(0);
            }
            let cold = guard
                .manifest()
                .segments
                .iter()
                .filter(|s| s.cold && expired.contains(&s.file))
                .map(|s| s.file.clone())
                .collect();
            guard.apply(committer::Edit::Expire { files: expired.clone() })?;
            (expired, cold)
        };
        // The deep store's copies go once its manifest no longer names them (the uploader).
        for file in expired.difference(&cold) {
            // Queries still holding the segment keep its map; the file goes now.
            let path = self.dir.join(SEGMENTS_DIR).join(file);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(table = %self.name, file = %path.display(), error = %e, "cannot remove an expired segment file");
            }
        }
        tracing::info!(table = %self.name, segments = expired.len(), "retention removed segments");
        Ok(expired.len())
    }

    /// The table's status.
    pub fn status(&self) -> TableStatus {
        let state = self.committer.current();
        let mut shards = self.board.shards();
        {
            let manifest = &state.manifest;
            for ended in &manifest.ended_shards {
                let s = shards
                    .entry(ended.clone())
                    .or_insert_with(|| ShardStatus { shard: ended.clone(), ..ShardStatus::default() });
                s.state = ShardState::Ended;
                if s.checkpoint.is_none() {
                    s.checkpoint = manifest.checkpoints.get(ended).map(Checkpoint::to_text);
                }
            }
        }
        // A shard's rows not in a sealed segment yet: its consuming segment's and a sealing one's.
        let mut unsealed: BTreeMap<&str, u64> = BTreeMap::new();
        for (shard, c) in state.consuming.iter().chain(&state.sealing) {
            *unsealed.entry(shard).or_default() += c.rows() as u64;
        }
        for (shard, rows) in unsealed {
            if let Some(s) = shards.get_mut(shard) {
                s.consuming_rows = rows;
            }
        }
        if state.manifest.paused.is_some() {
            for s in shards.values_mut().filter(|s| s.state != ShardState::Ended) {
                s.state = ShardState::Paused;
                s.error = Some("consumption paused by an operator".into());
            }
        }
        let mut segments: Vec<SegmentStatus> = state
            .sealed
            .iter()
            .map(|s| SegmentStatus {
                name: s.segment.meta().name.clone(),
                shard: s.entry.shard.clone(),
                rows: s.entry.rows,
                time_range: s.entry.time_range,
                verified: s.segment.is_read(),
                bytes: s.segment.file_bytes(),
                uploaded: s.entry.deep.is_some(),
                cold: false,
            })
            .collect();
        segments.extend(state.cold.iter().map(|e| SegmentStatus {
            name: e.file.strip_suffix(".seg").unwrap_or(&e.file).to_string(),
            shard: e.shard.clone(),
            rows: e.rows,
            time_range: e.time_range,
            verified: false,
            bytes: 0,
            uploaded: true,
            cold: true,
        }));
        TableStatus {
            table: self.name.clone(),
            sealed_rows: segments.iter().map(|s| s.rows).sum(),
            consuming_rows: state.mutable().map(|c| c.rows() as u64).sum(),
            segments,
            shards: shards.into_values().collect(),
            dropped: self.metrics.dropped.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            filtered: self.metrics.rows_filtered.load(std::sync::atomic::Ordering::Relaxed),
            incomplete: self.metrics.rows_incomplete.load(std::sync::atomic::Ordering::Relaxed),
            quarantined: self.board.quarantine_list(),
            paused: state.manifest.paused.is_some(),
            upsert: self.committer.upsert().map(|u| u.status()),
            deep_store: self.deep_status(&state),
        }
    }

    /// The table's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub(super) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "a panic".to_string(), |s| s.to_string())
        }
    }
}
