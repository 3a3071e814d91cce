//! A table: its segments, its manifest, and one ingestion task per shard that decodes records
//! into the shard's consuming segment, seals it at a flush threshold and commits.

use crate::config::TableDefinition;
use crate::error::{Error, io_error};
use crate::manifest::{LostSegment, Manifest, SegmentEntry};
use crate::metrics::TableMetrics;
use serde::Serialize;
use shoal_query::{SegmentData, SnapshotSource, TableSnapshot};
use shoal_segment::mutable::now_ms;
use shoal_segment::sealed::is_temporary;
use shoal_segment::{
    DropStats, LayoutOptions, MutableSegment, RecordMeta, SealRequest, SealedSegment, TableLayout,
    write_segment,
};
use shoal_stream::{Checkpoint, Record, ShardEvent, ShardReader, Source, SourceHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The records a consuming segment took: the first and the last (rows or drops).
#[derive(Debug, Clone, Default)]
struct Span {
    first: Option<Checkpoint>,
    last: Option<Checkpoint>,
}

/// What queries read: swapped whole when a segment seals, so a query never sees a row twice.
#[derive(Debug, Default)]
struct TableState {
    sealed: Vec<(SegmentEntry, Arc<SealedSegment>)>,
    consuming: BTreeMap<String, Arc<MutableSegment>>,
}

/// Per-shard progress, for the status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard id.
    pub shard: String,
    /// `CONSUMING`, `PAUSED` (sealing fails, e.g. the disk is full; retried until it succeeds)
    /// or `ENDED`.
    pub state: String,
    /// Why the shard is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The committed checkpoint (sequence number, `:sub` inside a KPL aggregate).
    pub checkpoint: Option<String>,
    /// MillisBehindLatest of the last answer.
    pub millis_behind_latest: Option<i64>,
    /// Rows in the shard's consuming segment.
    pub consuming_rows: u64,
    /// Rows ingested from the shard since the engine opened.
    pub rows_ingested: u64,
}

/// One sealed segment, for the status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentStatus {
    /// Segment name.
    pub name: String,
    /// Shard.
    pub shard: String,
    /// Rows.
    pub rows: u64,
    /// Time range, epoch ms.
    pub time_range: Option<(i64, i64)>,
}

/// A segment whose file was refused at open, and what became of its rows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedSegment {
    /// The refused file (now in the table's `quarantine/` directory).
    pub file: String,
    /// Shard.
    pub shard: String,
    /// Why it was refused.
    pub reason: String,
    /// Rows it held.
    pub rows: u64,
    /// `REREADING` (its rows are being read again from the stream), `RESTORED` (all of them
    /// are back, in a new segment), `PARTIAL` (only some were still in the stream) or
    /// `PENDING` (not read again yet: the source cannot, or the stream did not answer; retried
    /// at the next start).
    pub state: String,
    /// Rows read again so far.
    pub rows_restored: u64,
}

/// A table's state for operators.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    /// Table name.
    pub table: String,
    /// Per shard.
    pub shards: Vec<ShardStatus>,
    /// Sealed segments.
    pub segments: Vec<SegmentStatus>,
    /// Rows in sealed segments.
    pub sealed_rows: u64,
    /// Rows in consuming segments.
    pub consuming_rows: u64,
    /// Dropped records by reason, with samples.
    pub dropped: DropStats,
    /// Segments refused at open, and what became of their rows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantinedSegment>,
}

impl TableStatus {
    /// Whether at least one shard is `CONSUMING`: the table has found its stream's shards and
    /// reads one. False while the stream is missing or its endpoint does not answer, and when
    /// every shard is paused or ended.
    pub fn is_consuming(&self) -> bool {
        self.shards.iter().any(|s| s.state == "CONSUMING")
    }
}

/// Engine-wide settings a table needs.
#[derive(Debug, Clone)]
pub struct TableOptions {
    /// Most bytes (estimated) the consuming segments of one table may hold before the largest
    /// seals early.
    pub consuming_memory_cap: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Longest wait between attempts to seal while sealing fails.
    pub seal_retry: Duration,
}

/// A table being consumed.
pub struct Table {
    pub(crate) name: String,
    pub(crate) definition: TableDefinition,
    pub(crate) layout: Arc<TableLayout>,
    dir: PathBuf,
    state: RwLock<Arc<TableState>>,
    manifest: Mutex<Manifest>,
    shards: Mutex<BTreeMap<String, ShardStatus>>,
    pub(crate) metrics: Arc<TableMetrics>,
    options: TableOptions,
    stop: watch::Sender<bool>,
    quarantined: Mutex<Vec<QuarantinedSegment>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    source: Mutex<Option<SourceHandle>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl SnapshotSource for Table {
    fn snapshot(&self) -> TableSnapshot {
        let state = self.current();
        let mut segments: Vec<SegmentData> =
            state.sealed.iter().map(|(_, s)| SegmentData::Sealed(Arc::clone(s))).collect();
        segments.extend(state.consuming.values().map(|c| SegmentData::Consuming(c.snapshot())));
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        TableSnapshot { segments }
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
        },
    ))
}

impl Table {
    /// Opens a table in `dir`: loads the manifest, deletes files it does not name (half-sealed
    /// segments), maps the sealed segments (without reading them) and quarantines any that
    /// fail to open.
    pub fn open(
        name: String,
        definition: TableDefinition,
        dir: PathBuf,
        metrics: Arc<TableMetrics>,
        options: TableOptions,
    ) -> Result<Table, Error> {
        let segments_dir = dir.join("segments");
        std::fs::create_dir_all(&segments_dir).map_err(|e| io_error(&segments_dir, e))?;
        let mut manifest = Manifest::load(&dir)?;
        let layout = layout_of(&definition);
        let named =
            manifest.files().into_iter().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
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
        for entry in &manifest.segments {
            let path = segments_dir.join(&entry.file);
            match SealedSegment::open(&path).and_then(|s| s.check_schema(&layout.arrow).map(|()| s)) {
                Ok(segment) => sealed.push((entry.clone(), Arc::new(segment))),
                Err(e) => {
                    tracing::error!(table = %name, file = %path.display(), error = %e, "segment refused at open: quarantined; its rows will be read again from the stream");
                    refused.push(LostSegment { entry: entry.clone(), reason: e.to_string() });
                }
            }
        }
        if !refused.is_empty() {
            let q = dir.join("quarantine");
            std::fs::create_dir_all(&q).map_err(|e| io_error(&q, e))?;
            for lost in &refused {
                let _ = std::fs::rename(segments_dir.join(&lost.entry.file), q.join(&lost.entry.file));
            }
            manifest.segments.retain(|s| !refused.iter().any(|l| l.entry.file == s.file));
            manifest.lost.extend(refused);
            manifest.commit(&dir)?;
        }
        let quarantined = manifest
            .lost
            .iter()
            .map(|l| QuarantinedSegment {
                file: l.entry.file.clone(),
                shard: l.entry.shard.clone(),
                reason: l.reason.clone(),
                rows: l.entry.rows,
                state: "PENDING".into(),
                rows_restored: 0,
            })
            .collect();
        let (stop, _) = watch::channel(false);
        Ok(Table {
            name,
            definition,
            layout,
            dir,
            state: RwLock::new(Arc::new(TableState { sealed, consuming: BTreeMap::new() })),
            manifest: Mutex::new(manifest),
            shards: Mutex::new(BTreeMap::new()),
            metrics,
            options,
            stop,
            quarantined: Mutex::new(quarantined),
            tasks: Mutex::new(Vec::new()),
            source: Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<TableState> {
        Arc::clone(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn swap(&self, change: impl FnOnce(&TableState) -> TableState) {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        let next = change(&guard);
        *guard = Arc::new(next);
    }

    /// Starts consuming from `source`, resuming after the manifest's checkpoints.
    pub fn start(self: &Arc<Table>, source: Box<dyn Source>) {
        let resume = self.manifest.lock().unwrap_or_else(|p| p.into_inner()).resume_state();
        let mut handle = source.start(resume);
        *self.metrics.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&handle.metrics));
        let readers = std::mem::replace(&mut handle.readers, tokio::sync::mpsc::channel(1).1);
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let table = Arc::clone(self);
        let mut readers = readers;
        let mut stop = self.stop.subscribe();
        let dispatcher = tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    reader = readers.recv() => match reader {
                        Some(reader) if *stop.borrow() => drop(reader),
                        Some(reader) => {
                            let t = Arc::clone(&table);
                            let task = tokio::spawn(async move { t.ingest(reader).await });
                            table.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
                        }
                        None => return,
                    },
                    _ = stop.changed() => return,
                }
            }
        });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(dispatcher);
        let table = Arc::clone(self);
        let mut stop = self.stop.subscribe();
        let retention = tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(table.options.retention_interval) => {
                        if let Err(e) = table.apply_retention() {
                            tracing::error!(table = %table.name, error = %e, "retention failed");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(retention);
    }

    /// Stops the readers and ingestion tasks; what is committed stays committed.
    pub async fn stop(&self) {
        // The source first, so that no reader is handed out (a released shard would otherwise
        // be handed out again from the start-up checkpoints) while the tasks stop.
        if let Some(handle) = self.source.lock().unwrap_or_else(|p| p.into_inner()).take() {
            handle.stop();
        }
        let _ = self.stop.send(true);
        // Tasks started while stopping are waited for too.
        loop {
            let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    fn shard_count(&self) -> usize {
        self.current().consuming.len().max(1)
    }

    /// One shard's ingestion: records → decode → consuming segment → seal → commit.
    async fn ingest(self: Arc<Table>, mut reader: ShardReader) {
        let shard = reader.shard_id.clone();
        let mut stop = self.stop.subscribe();
        let mut segment = self.new_consuming(&shard);
        let mut span = Span::default();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        {
            let committed = self
                .manifest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .checkpoints
                .get(&shard)
                .map(Checkpoint::to_text);
            self.update_shard(&shard, |s| {
                s.state = "CONSUMING".into();
                s.checkpoint = committed;
            });
        }
        loop {
            // A receiver made after the stop never sees it change.
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    if segment.should_seal(&self.definition.config.stream.flush, self.shard_count()).is_some()
                        && !self.seal_or_pause(&shard, &mut segment, &mut span, false, &mut stop).await
                    {
                        return;
                    }
                }
                event = reader.next() => match event {
                    None => return,
                    Some(ShardEvent::Records { records, millis_behind_latest }) => {
                        // Appended in slices that end at the row limit, so that a segment seals
                        // at exactly its threshold and carries the checkpoint of its last record.
                        let mut rest = &records[..];
                        while !rest.is_empty() {
                            let room = self
                                .definition
                                .config
                                .stream
                                .flush
                                .rows_per_segment(self.shard_count())
                                .map_or(rest.len(), |limit| limit.saturating_sub(segment.rows() as u64).max(1) as usize);
                            let (now, later) = rest.split_at(room.min(rest.len()));
                            rest = later;
                            let outcome = segment.append(now.iter().map(|r| {
                                (r.data.as_ref(), RecordMeta { partition_key: &r.partition_key, sequence_number: r.sequence_number.as_str(), arrival_millis: r.arrival_ms })
                            }));
                            if span.first.is_none() {
                                span.first = now.first().map(Record::position);
                            }
                            if let Some(r) = now.last() {
                                span.last = Some(r.position());
                            }
                            self.metrics.rows_ingested.fetch_add(outcome.rows as u64, Ordering::Relaxed);
                            self.metrics.bytes_ingested.fetch_add(outcome.bytes as u64, Ordering::Relaxed);
                            if outcome.dropped > 0 {
                                self.metrics.dropped.lock().unwrap_or_else(|p| p.into_inner()).merge(&outcome.drops);
                            }
                            let rows = segment.rows() as u64;
                            self.update_shard(&shard, |s| {
                                s.millis_behind_latest = millis_behind_latest;
                                s.consuming_rows = rows;
                                s.rows_ingested += outcome.rows as u64;
                            });
                            let over_cap = self.consuming_bytes() > self.options.consuming_memory_cap;
                            if (over_cap || segment.should_seal(&self.definition.config.stream.flush, self.shard_count()).is_some())
                                && !self.seal_or_pause(&shard, &mut segment, &mut span, false, &mut stop).await
                            {
                                return;
                            }
                        }
                    }
                    Some(ShardEvent::End { .. }) => {
                        // The end seals what is left and records the shard as ended; its children
                        // start only after that commit.
                        if !self.seal_or_pause(&shard, &mut segment, &mut span, true, &mut stop).await {
                            return;
                        }
                        reader.finished();
                        return;
                    }
                },
            }
        }
    }

    /// Seals, and while sealing fails (a full disk, a file size limit, an I/O error) keeps the
    /// shard paused: nothing more is read from it, its consuming segment stays queryable and in
    /// memory, the manifest keeps the last commit, and the seal is retried with a growing wait
    /// until it succeeds. False when the table stopped first.
    async fn seal_or_pause(
        self: &Arc<Table>,
        shard: &str,
        segment: &mut Arc<MutableSegment>,
        span: &mut Span,
        ended: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut wait = Duration::from_millis(100).min(self.options.seal_retry);
        let mut failures = 0u64;
        loop {
            match self.seal(shard, segment, span.clone(), ended).await {
                Ok(()) => {
                    // The next segment starts with the next record; the checkpoint stays.
                    span.first = None;
                    if failures > 0 {
                        tracing::warn!(table = %self.name, shard, failures, "sealing succeeded again; consuming resumes");
                        self.update_shard(shard, |s| {
                            if s.state == "PAUSED" {
                                s.state = "CONSUMING".into();
                            }
                            s.error = None;
                        });
                    }
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    self.metrics.seal_failures.fetch_add(1, Ordering::Relaxed);
                    let message = e.to_string();
                    if failures == 1 {
                        tracing::error!(table = %self.name, shard, error = %message, "sealing failed; the shard pauses and the seal is retried until it succeeds");
                    } else {
                        tracing::debug!(table = %self.name, shard, error = %message, failures, "sealing failed again");
                    }
                    self.update_shard(shard, |s| {
                        s.state = "PAUSED".into();
                        s.error = Some(message);
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return false,
            }
            if *stop.borrow() {
                return false;
            }
            wait = (wait * 2).min(self.options.seal_retry);
        }
    }

    fn consuming_bytes(&self) -> usize {
        self.current().consuming.values().map(|c| c.estimated_bytes()).sum()
    }

    fn new_consuming(&self, shard: &str) -> Arc<MutableSegment> {
        let segment = Arc::new(MutableSegment::new(Arc::clone(&self.layout)));
        let s = Arc::clone(&segment);
        self.swap(|state| {
            let mut consuming = state.consuming.clone();
            consuming.insert(shard.to_string(), s);
            TableState { sealed: state.sealed.clone(), consuming }
        });
        segment
    }

    fn update_shard(&self, shard: &str, change: impl FnOnce(&mut ShardStatus)) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        let s = shards
            .entry(shard.to_string())
            .or_insert_with(|| ShardStatus { shard: shard.to_string(), ..ShardStatus::default() });
        change(s);
    }

    /// Seals the shard's consuming segment (if it has rows), commits the manifest with the
    /// checkpoint (and the shard's end), then swaps the table state: the sealed segment and a
    /// fresh consuming segment appear to queries together.
    async fn seal(
        self: &Arc<Table>,
        shard: &str,
        segment: &mut Arc<MutableSegment>,
        span: Span,
        ended: bool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let table = Arc::clone(self);
        let shard_owned = shard.to_string();
        let current = Arc::clone(segment);
        let result =
            tokio::task::spawn_blocking(move || table.seal_blocking(&shard_owned, &current, span, ended))
                .await
                .map_err(|e| Error::Corrupt {
                    path: self.dir.clone(),
                    reason: format!("seal task failed: {e}"),
                })??;
        let sealed = result;
        let fresh = if ended { None } else { Some(Arc::new(MutableSegment::new(Arc::clone(&self.layout)))) };
        let shard_key = shard.to_string();
        let fresh_for_state = fresh.clone();
        self.swap(|state| {
            let mut all = state.sealed.clone();
            if let Some(s) = sealed {
                all.push(s);
            }
            let mut consuming = state.consuming.clone();
            match fresh_for_state {
                Some(f) => {
                    consuming.insert(shard_key, f);
                }
                None => {
                    consuming.remove(&shard_key);
                }
            }
            TableState { sealed: all, consuming }
        });
        if let Some(f) = fresh {
            *segment = f;
        }
        let checkpoint = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoints
            .get(shard)
            .map(Checkpoint::to_text);
        self.update_shard(shard, |s| {
            s.checkpoint = checkpoint;
            s.consuming_rows = 0;
            if ended {
                s.state = "ENDED".into();
            }
        });
        self.metrics.seal_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn seal_blocking(
        &self,
        shard: &str,
        segment: &MutableSegment,
        span: Span,
        ended: bool,
    ) -> Result<Option<(SegmentEntry, Arc<SealedSegment>)>, Error> {
        let mut manifest = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = manifest.clone();
        let after = manifest.checkpoints.get(shard).cloned();
        let new_segment = self.add_segment(&mut next, shard, segment, after, &span)?;
        if let Some(c) = span.last {
            next.checkpoints.insert(shard.to_string(), c);
        }
        if ended {
            next.ended_shards.insert(shard.to_string());
        }
        if next == *manifest {
            return Ok(new_segment);
        }
        self.commit_manifest(&mut manifest, next, &new_segment)?;
        Ok(new_segment)
    }

    /// Writes `segment`'s rows as the shard's next segment and adds its entry to `next`; None
    /// when it has no rows. `after` and `span` say where its records lie in the shard.
    fn add_segment(
        &self,
        next: &mut Manifest,
        shard: &str,
        segment: &MutableSegment,
        after: Option<Checkpoint>,
        span: &Span,
    ) -> Result<Option<(SegmentEntry, Arc<SealedSegment>)>, Error> {
        let snapshot = segment.snapshot();
        if snapshot.rows == 0 {
            return Ok(None);
        }
        let sequence = next.next_sequence.get(shard).copied().unwrap_or(0);
        let request = SealRequest {
            table: &self.name,
            shard,
            sequence,
            created_ms: segment.created_ms(),
            sort_by: self.definition.config.sorted_column.as_deref(),
        };
        let (path, meta) = write_segment(&self.dir.join("segments"), &self.layout, &snapshot, &request)?;
        let sealed = Arc::new(SealedSegment::open(&path)?);
        let entry = SegmentEntry {
            file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            shard: shard.to_string(),
            sequence,
            rows: meta.rows,
            time_range: meta.time_range,
            after,
            first: span.first.clone(),
            last: span.last.clone(),
        };
        next.segments.push(entry.clone());
        next.next_sequence.insert(shard.to_string(), sequence + 1);
        self.metrics.segments_sealed.fetch_add(1, Ordering::Relaxed);
        Ok(Some((entry, sealed)))
    }

    /// Commits `next` in place of `manifest`. When that fails, the new segment's file is named
    /// by no manifest: it is removed.
    fn commit_manifest(
        &self,
        manifest: &mut Manifest,
        mut next: Manifest,
        new_segment: &Option<(SegmentEntry, Arc<SealedSegment>)>,
    ) -> Result<(), Error> {
        if let Err(e) = next.commit(&self.dir) {
            if let Some((entry, _)) = new_segment {
                let _ = std::fs::remove_file(self.dir.join("segments").join(&entry.file));
            }
            return Err(e);
        }
        *manifest = next;
        Ok(())
    }

    /// Segments whose rows are still to be read again.
    pub(crate) fn lost(&self) -> Vec<LostSegment> {
        self.manifest.lock().unwrap_or_else(|p| p.into_inner()).lost.clone()
    }

    fn set_quarantine_state(&self, file: &str, state: &str, rows_restored: u64) {
        let mut all = self.quarantined.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = all.iter_mut().find(|q| q.file == file) {
            q.state = state.to_string();
            q.rows_restored = rows_restored;
        }
    }

    /// Reads the rows of a lost segment again from `source` (from the checkpoint before it to
    /// its last record) and commits them as a new segment of its shard, beside ingestion.
    pub(crate) fn reread(self: &Arc<Table>, lost: LostSegment, source: Box<dyn Source>) {
        let table = Arc::clone(self);
        let task = tokio::spawn(async move { table.reread_task(lost, source).await });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    async fn reread_task(self: Arc<Table>, lost: LostSegment, source: Box<dyn Source>) {
        /// How long a re-read waits for the stream before giving up until the next start.
        const IDLE: Duration = Duration::from_secs(60);
        let entry = &lost.entry;
        let file = entry.file.as_str();
        let Some(last) = entry.last.clone() else {
            tracing::error!(table = %self.name, file, "the lost segment was committed without its stream positions; its rows cannot be read again");
            self.set_quarantine_state(file, "PARTIAL", 0);
            return;
        };
        let Some(mut handle) = source.replay(&entry.shard, entry.after.clone()) else {
            tracing::error!(table = %self.name, file, "the source cannot read a shard again; the lost segment's rows stay lost");
            return;
        };
        let Some(mut reader) = handle.readers.recv().await else { return };
        self.set_quarantine_state(file, "REREADING", 0);
        tracing::warn!(table = %self.name, file, shard = %entry.shard, after = ?entry.after.as_ref().map(Checkpoint::to_text), last = %last.to_text(), "reading a lost segment's rows again");
        let segment = MutableSegment::new(Arc::clone(&self.layout));
        let mut stop = self.stop.subscribe();
        let mut reached = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let event = tokio::select! {
                _ = stop.changed() => return,
                event = tokio::time::timeout(IDLE, reader.next()) => event,
            };
            match event {
                Ok(Some(ShardEvent::Records { records, .. })) => {
                    let wanted = records.iter().filter(|r| {
                        let at = r.position();
                        at <= last && entry.first.as_ref().is_none_or(|first| &at >= first)
                    });
                    // Drops were counted when the records were first read.
                    segment.append(wanted.map(|r| {
                        (
                            r.data.as_ref(),
                            RecordMeta {
                                partition_key: &r.partition_key,
                                sequence_number: r.sequence_number.as_str(),
                                arrival_millis: r.arrival_ms,
                            },
                        )
                    }));
                    self.set_quarantine_state(file, "REREADING", segment.rows() as u64);
                    if records.last().is_some_and(|r| r.position() >= last) {
                        reached = true;
                        break;
                    }
                }
                Ok(Some(ShardEvent::End { .. }) | None) => break,
                Err(_) => {
                    tracing::warn!(table = %self.name, file, "no record from the stream for {IDLE:?}; stopping the re-read");
                    break;
                }
            }
        }
        handle.stop();
        drop(reader);
        let rows = segment.rows() as u64;
        if rows == 0 && !reached {
            tracing::error!(table = %self.name, file, "none of the lost segment's rows came back; retried at the next start");
            self.set_quarantine_state(file, "PENDING", 0);
            return;
        }
        let table = Arc::clone(&self);
        let (lost_owned, segment) = (lost.clone(), Arc::new(segment));
        let committed = tokio::task::spawn_blocking(move || table.commit_reread(&lost_owned, &segment)).await;
        match committed {
            Ok(Ok(new_segment)) => {
                if let Some(s) = new_segment {
                    self.swap(|state| {
                        let mut sealed = state.sealed.clone();
                        sealed.push(s);
                        TableState { sealed, consuming: state.consuming.clone() }
                    });
                }
                let complete = reached && rows == entry.rows;
                self.set_quarantine_state(file, if complete { "RESTORED" } else { "PARTIAL" }, rows);
                if complete {
                    tracing::warn!(table = %self.name, file, rows, "every row of the lost segment read again and committed");
                } else {
                    tracing::error!(table = %self.name, file, rows, of = entry.rows, "only part of the lost segment's rows were still in the stream; the rest are lost");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(table = %self.name, file, error = %e, "committing the re-read rows failed; retried at the next start");
                self.set_quarantine_state(file, "PENDING", 0);
            }
            Err(e) => {
                tracing::error!(table = %self.name, file, error = %e, "the re-read's commit task failed");
                self.set_quarantine_state(file, "PENDING", 0);
            }
        }
    }

    /// Seals the re-read rows of `lost` as a new segment of its shard and commits it, in the
    /// same manifest commit that forgets `lost`.
    fn commit_reread(
        &self,
        lost: &LostSegment,
        segment: &MutableSegment,
    ) -> Result<Option<(SegmentEntry, Arc<SealedSegment>)>, Error> {
        let mut manifest = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = manifest.clone();
        next.lost.retain(|l| l.entry.file != lost.entry.file);
        let span = Span { first: lost.entry.first.clone(), last: lost.entry.last.clone() };
        let new_segment =
            self.add_segment(&mut next, &lost.entry.shard, segment, lost.entry.after.clone(), &span)?;
        self.commit_manifest(&mut manifest, next, &new_segment)?;
        Ok(new_segment)
    }

    /// Drops the sealed segments whose newest row is older than the retention.
    pub fn apply_retention(&self) -> Result<usize, Error> {
        let Some(retention) = self.definition.config.segments.retention else { return Ok(0) };
        let cutoff = now_ms() - retention.as_millis() as i64;
        let mut manifest = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let expired: Vec<String> = manifest
            .segments
            .iter()
            .filter(|s| s.time_range.is_some_and(|(_, newest)| newest < cutoff))
            .map(|s| s.file.clone())
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let mut next = manifest.clone();
        next.segments.retain(|s| !expired.contains(&s.file));
        next.commit(&self.dir)?;
        *manifest = next;
        drop(manifest);
        self.swap(|state| TableState {
            sealed: state.sealed.iter().filter(|(e, _)| !expired.contains(&e.file)).cloned().collect(),
            consuming: state.consuming.clone(),
        });
        for file in &expired {
            // Queries still holding the segment keep its map; the file goes now.
            let path = self.dir.join("segments").join(file);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(table = %self.name, file = %path.display(), error = %e, "cannot remove an expired segment file");
            }
        }
        tracing::info!(table = %self.name, segments = expired.len(), "retention removed segments");
        Ok(expired.len())
    }

    /// The table's status.
    pub fn status(&self) -> TableStatus {
        let state = self.current();
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner()).clone();
        {
            let manifest = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
            for ended in &manifest.ended_shards {
                let s = shards
                    .entry(ended.clone())
                    .or_insert_with(|| ShardStatus { shard: ended.clone(), ..ShardStatus::default() });
                s.state = "ENDED".into();
                if s.checkpoint.is_none() {
                    s.checkpoint = manifest.checkpoints.get(ended).map(Checkpoint::to_text);
                }
            }
        }
        for (shard, c) in &state.consuming {
            if let Some(s) = shards.get_mut(shard) {
                s.consuming_rows = c.rows() as u64;
            }
        }
        let segments: Vec<SegmentStatus> = state
            .sealed
            .iter()
            .map(|(e, s)| SegmentStatus {
                name: s.meta().name.clone(),
                shard: e.shard.clone(),
                rows: e.rows,
                time_range: e.time_range,
            })
            .collect();
        TableStatus {
            table: self.name.clone(),
            sealed_rows: segments.iter().map(|s| s.rows).sum(),
            consuming_rows: state.consuming.values().map(|c| c.rows() as u64).sum(),
            segments,
            shards: shards.into_values().collect(),
            dropped: self.metrics.dropped.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            quarantined: self.quarantined.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// The table's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
