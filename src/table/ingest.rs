//! A shard's ingest loop: it owns the shard's consuming segment, appends the reader's records
//! to it, and seals it at a flush threshold, at the table's memory cap (when it is the largest),
//! or at the shard's end, committing each seal through the committer.
//!
//! A seal runs in the background: the full segment is handed off (it takes no more rows and
//! stays queryable) and a fresh one takes the shard's next records while the file is written,
//! fsynced and committed on the blocking pool. One seal per shard is under way at a time, so
//! that a shard's segments and checkpoints commit in stream order; the loop waits for it before
//! the next seal, at the shard's end, and when it stops. A failed seal pauses the shard (it reads
//! nothing more) and is retried until it succeeds.

use super::committer::{CommitGuard, Edit, Sealed};
use super::status::ShardState;
use super::{SEGMENTS_DIR, Table};
use crate::error::Error;
use crate::manifest::SegmentEntry;
use shoal_segment::{MutableSegment, RecordMeta, SealRequest, SealedSegment, write_segment};
use shoal_stream::{Checkpoint, Record, ShardEvent, ShardReader};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The records a consuming segment took: the first and the last (rows or drops).
#[derive(Debug, Clone, Default)]
pub(crate) struct Span {
    pub first: Option<Checkpoint>,
    pub last: Option<Checkpoint>,
}

/// A shard's seal under way: its handed-off segment being written and committed.
struct InFlight {
    segment: Arc<MutableSegment>,
    span: Span,
    ended: bool,
    started: Instant,
    handle: JoinHandle<Result<Option<Checkpoint>, Error>>,
}

impl Table {
    /// One shard's ingestion: records → decode → consuming segment → seal → commit.
    pub(super) async fn ingest(self: Arc<Table>, mut reader: ShardReader, mut stop: watch::Receiver<bool>) {
        let shard = reader.shard_id.clone();
        let seal_request = Arc::new(Notify::new());
        self.seal_requests.lock().insert(shard.clone(), Arc::clone(&seal_request));
        let mut segment = self.new_consuming(&shard);
        let mut span = Span::default();
        let mut in_flight: Option<InFlight> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let committed = self.committer.current().manifest.checkpoints.get(&shard).map(Checkpoint::to_text);
        self.board.update_shard(&shard, |s| {
            s.state = ShardState::Consuming;
            s.checkpoint = committed;
            s.consuming_rows = 0;
        });
        let flush = &self.definition.config.stream.flush;
        loop {
            // A receiver made after the stop never sees it change.
            if *stop.borrow() {
                Self::stop_sealing(in_flight).await;
                return;
            }
            // In order: a stop, then a seal's outcome (a failure pauses the shard before it
            // reads on), then the rest.
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    Self::stop_sealing(in_flight).await;
                    return;
                }
                result = Self::seal_done(&mut in_flight) => {
                    let Some(f) = in_flight.take() else { continue };
                    if !self.settle(&reader, f, result, &mut stop).await {
                        return;
                    }
                }
                // The table is over its memory cap and this shard's segment is the largest.
                _ = seal_request.notified() => {
                    if segment.rows() > 0
                        && !self.hand_off(&reader, &mut segment, &mut span, &mut in_flight, false, &mut stop).await
                    {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if segment.should_seal(flush, self.shard_count()).is_some()
                        && !self.hand_off(&reader, &mut segment, &mut span, &mut in_flight, false, &mut stop).await
                    {
                        return;
                    }
                }
                event = reader.next() => match event {
                    None => {
                        Self::stop_sealing(in_flight).await;
                        return;
                    }
                    Some(ShardEvent::Records { records, millis_behind_latest }) => {
                        #[cfg(feature = "fault-injection")]
                        self.options.faults.before_append(&records);
                        // Appended in slices that end at the row limit, so that a segment seals
                        // at exactly its threshold and carries the checkpoint of its last record.
                        let mut rest = &records[..];
                        while !rest.is_empty() {
                            let room = flush
                                .rows_per_segment(self.shard_count())
                                .map_or(rest.len(), |limit| limit.saturating_sub(segment.rows() as u64).max(1) as usize);
                            let (now, later) = rest.split_at(room.min(rest.len()));
                            rest = later;
                            self.append(&shard, &segment, &mut span, now, millis_behind_latest);
                            if !self.should_seal_now(&shard, &segment) {
                                continue;
                            }
                            if !self
                                .hand_off(&reader, &mut segment, &mut span, &mut in_flight, false, &mut stop)
                                .await
                            {
                                return;
                            }
                        }
                    }
                    Some(ShardEvent::End { .. }) => {
                        // The end seals what is left and records the shard as ended; its children
                        // start only after that commit.
                        if !self
                            .hand_off(&reader, &mut segment, &mut span, &mut in_flight, true, &mut stop)
                            .await
                        {
                            return;
                        }
                        self.seal_requests.lock().remove(&shard);
                        reader.finished();
                        return;
                    }
                },
            }
        }
    }

    fn append(
        &self,
        shard: &str,
        segment: &Arc<MutableSegment>,
        span: &mut Span,
        records: &[Record],
        millis_behind_latest: Option<i64>,
    ) {
        let records_iter = records.iter().map(|r| {
            (
                r.data.as_ref(),
                RecordMeta {
                    partition_key: &r.partition_key,
                    sequence_number: r.sequence_number.as_str(),
                    arrival_millis: r.arrival_ms,
                },
            )
        });
        let outcome = match self.committer.upsert() {
            // A primary key's table decides which rows stay, under its key map's lock.
            Some(upsert) => upsert.ingest(shard, segment, segment.decode(records_iter)).outcome,
            None => segment.append(records_iter),
        };
        if span.first.is_none() {
            span.first = records.first().map(Record::position);
        }
        if let Some(r) = records.last() {
            span.last = Some(r.position());
        }
        self.metrics.rows_ingested.fetch_add(outcome.rows as u64, Ordering::Relaxed);
        self.metrics.bytes_ingested.fetch_add(outcome.bytes as u64, Ordering::Relaxed);
        if outcome.dropped > 0 {
            self.metrics.dropped.lock().unwrap_or_else(|p| p.into_inner()).merge(&outcome.drops);
        }
        self.metrics.rows_filtered.fetch_add(outcome.filtered as u64, Ordering::Relaxed);
        self.metrics.rows_incomplete.fetch_add(outcome.incomplete as u64, Ordering::Relaxed);
        let rows = segment.rows() as u64;
        let now = shoal_stream::now_ms();
        let newest = records.last();
        self.board.update_shard(shard, |s| {
            s.millis_behind_latest = millis_behind_latest;
            s.consuming_rows = rows;
            s.rows_ingested += outcome.rows as u64;
            s.last_consumed_ms = Some(now);
            s.consumed = newest.map(|r| r.position().to_text());
            s.availability_lag_ms = newest.map(|r| (now - r.arrival_ms).max(0));
            s.latest_upstream = match millis_behind_latest {
                Some(0) => newest.map(|r| r.position().to_text()),
                _ => None,
            };
        });
        // A table the app feeds: `Appended::queryable` waits for this.
        if self.append_log.is_some()
            && let Some(seq) = newest.and_then(|r| r.sequence_number.as_str().parse::<u64>().ok())
        {
            self.append_progress.send_if_modified(|done| {
                let moved = seq > *done;
                *done = (*done).max(seq);
                moved
            });
        }
    }

    /// True when `segment` (the shard's) must seal now: a flush threshold is reached, or the
    /// table's consuming segments are over the memory cap and this one is the largest. When
    /// another shard's segment is the largest, that shard is asked to seal instead: sealing the
    /// shard that happens to be appending would make a storm of tiny segments.
    fn should_seal_now(&self, shard: &str, segment: &MutableSegment) -> bool {
        if segment.should_seal(&self.definition.config.stream.flush, self.shard_count()).is_some() {
            return true;
        }
        let state = self.committer.current();
        let total: usize = state.mutable().map(|c| c.estimated_bytes()).sum();
        if total <= self.options.consuming_memory_cap {
            return false;
        }
        // A sealing segment that is the largest frees its memory once written: wait for it
        // rather than seal a small one.
        let largest = state
            .consuming
            .iter()
            .map(|(s, c)| (s, c, true))
            .chain(state.sealing.iter().map(|(s, c)| (s, c, false)))
            .filter(|(_, c, _)| c.rows() > 0)
            .max_by_key(|(_, c, _)| c.estimated_bytes())
            .map(|(s, _, consuming)| (s.clone(), consuming));
        match largest {
            Some((_, false)) => false,
            Some((l, true)) if l == shard => true,
            Some((l, true)) => {
                if let Some(request) = self.seal_requests.lock().get(&l) {
                    request.notify_one();
                }
                false
            }
            None => false,
        }
    }

    /// Hands the shard's consuming segment off to be sealed and starts the next one; at the
    /// shard's end (`ended`), seals and commits it before returning. A seal still under way is
    /// settled first. False when the table stopped.
    async fn hand_off(
        self: &Arc<Table>,
        reader: &ShardReader,
        segment: &mut Arc<MutableSegment>,
        span: &mut Span,
        in_flight: &mut Option<InFlight>,
        ended: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if in_flight.is_some() {
            let result = Self::seal_done(in_flight).await;
            if let Some(f) = in_flight.take()
                && !self.settle(reader, f, result, stop).await
            {
                return false;
            }
        }
        let shard = reader.shard_id.clone();
        let next = (!ended).then(|| Arc::new(MutableSegment::new(Arc::clone(&self.layout))));
        let edit = Edit::Handoff { shard: shard.clone(), next: next.clone() };
        // A state-only edit: it fails only once the table has stopped.
        if let Err(e) = self.committer.lock().and_then(|mut guard| guard.apply(edit)) {
            tracing::debug!(table = %self.name, shard, error = %e, "not sealed: the table stopped");
            return false;
        }
        let full = match next {
            Some(n) => std::mem::replace(segment, n),
            None => Arc::clone(segment),
        };
        // The next segment starts with the next record; the checkpoint stays until it has one.
        let taken = Span { first: span.first.take(), last: span.last.clone() };
        self.board.update_shard(&shard, |s| s.consuming_rows = 0);
        *in_flight = Some(self.start_seal(reader, full, taken, ended));
        if !ended {
            return true;
        }
        let result = Self::seal_done(in_flight).await;
        match in_flight.take() {
            Some(f) => self.settle(reader, f, result, stop).await,
            None => true,
        }
    }

    /// Starts sealing `segment` (handed off) on the blocking pool. Its commit is recorded in
    /// the reader as it is made, and the seal holds the reader's slot: a loop that unwinds (a
    /// panic) drops its reader, but the shard goes back to the source, to be handed out again
    /// after the last commit, only once the seal is over.
    fn start_seal(
        self: &Arc<Table>,
        reader: &ShardReader,
        segment: Arc<MutableSegment>,
        span: Span,
        ended: bool,
    ) -> InFlight {
        let table = Arc::clone(self);
        let (shard, sealing, taken) = (reader.shard_id.clone(), Arc::clone(&segment), span.clone());
        let slot = reader.committed_slot();
        let handle = tokio::task::spawn_blocking(move || {
            let committed = table.seal_blocking(&shard, &sealing, taken, ended)?;
            if let Some(c) = &committed {
                slot.set(c.clone());
            }
            Ok(committed)
        });
        InFlight { segment, span, ended, started: Instant::now(), handle }
    }

    /// The outcome of the shard's seal under way (the shard's committed checkpoint); pending
    /// while there is none. The caller takes `in_flight` once this returns.
    async fn seal_done(in_flight: &mut Option<InFlight>) -> Result<Option<Checkpoint>, Error> {
        match in_flight {
            Some(f) => match (&mut f.handle).await {
                Ok(result) => result,
                Err(e) => Err(Error::Task(format!("sealing a segment: {e}"))),
            },
            None => std::future::pending().await,
        }
    }

    /// Finishes the seal `f` with its first `result`. On success the reader learns the
    /// committed checkpoint. While it fails (a full disk, a file size limit, an I/O error) the
    /// shard stays paused: nothing more is read from it, its segments stay queryable and in
    /// memory, the manifest keeps the last commit, and the seal is retried with a growing wait
    /// until it succeeds. False when the table stopped first.
    async fn settle(
        self: &Arc<Table>,
        reader: &ShardReader,
        f: InFlight,
        mut result: Result<Option<Checkpoint>, Error>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let shard = reader.shard_id.clone();
        let mut wait = Duration::from_millis(100).min(self.options.seal_retry);
        let mut failures = 0u64;
        loop {
            match result {
                Ok(committed) => {
                    let text = committed.as_ref().map(Checkpoint::to_text);
                    if failures > 0 {
                        tracing::warn!(table = %self.name, shard, failures, "sealing succeeded again; consuming resumes");
                    }
                    self.board.update_shard(&shard, |s| {
                        s.checkpoint = text;
                        if f.ended {
                            s.state = ShardState::Ended;
                        } else if failures > 0 && s.state == ShardState::Paused {
                            s.state = ShardState::Consuming;
                        }
                        if failures > 0 {
                            s.error = None;
                        }
                    });
                    self.metrics
                        .seal_micros
                        .fetch_add(f.started.elapsed().as_micros() as u64, Ordering::Relaxed);
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
                    self.board.update_shard(&shard, |s| {
                        s.state = ShardState::Paused;
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
            let mut retry = Some(self.start_seal(reader, Arc::clone(&f.segment), f.span.clone(), f.ended));
            result = Self::seal_done(&mut retry).await;
        }
    }

    /// When the loop stops: waits for the shard's seal under way, so that its file is
    /// committed (or removed, when the table stopped first) before anything reopens the
    /// table. A failed seal is not retried: its rows are read again from the checkpoint.
    async fn stop_sealing(mut in_flight: Option<InFlight>) {
        if in_flight.is_some() {
            let _ = Self::seal_done(&mut in_flight).await;
        }
    }

    fn new_consuming(&self, shard: &str) -> Arc<MutableSegment> {
        let segment = Arc::new(MutableSegment::new(Arc::clone(&self.layout)));
        let edit = Edit::Consume { shard: shard.to_string(), segment: Arc::clone(&segment) };
        // A state-only edit: nothing is written; it fails only once the table has stopped.
        if let Err(e) = self.committer.lock().and_then(|mut guard| guard.apply(edit)) {
            tracing::debug!(table = %self.name, shard, error = %e, "no consuming segment: the table stopped");
        }
        segment
    }

    /// Writes the shard's sealing segment (if it has rows) and commits it with the checkpoint
    /// (and the shard's end) in one edit: the sealed segment replaces the sealing one for
    /// queries together with the manifest that names it. Returns the shard's committed
    /// checkpoint.
    fn seal_blocking(
        &self,
        shard: &str,
        segment: &MutableSegment,
        span: Span,
        ended: bool,
    ) -> Result<Option<Checkpoint>, Error> {
        // One seal per shard at a time, in order: the committed checkpoint is the segment's start.
        let after = self.committer.current().manifest.checkpoints.get(shard).cloned();
        // The file is written without the commit lock; then committed under it.
        let sealed = self.write_sealed(shard, segment, after, &span)?;
        if let Some(s) = &sealed {
            tracing::debug!(table = %self.name, shard, file = %s.entry.file, rows = s.entry.rows, "segment file written; committing it");
            #[cfg(feature = "fault-injection")]
            self.options.faults.before_commit();
        }
        let wrote = sealed.is_some();
        let mut guard = self.commit_lock_for(&sealed)?;
        guard.apply(Edit::Seal { shard: shard.to_string(), sealed, checkpoint: span.last, ended })?;
        if wrote {
            self.metrics.segments_sealed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(guard.manifest().checkpoints.get(shard).cloned())
    }

    /// The commit lock, for committing `sealed`; when the table has stopped, the file (which no
    /// manifest will name) is removed.
    pub(super) fn commit_lock_for(&self, sealed: &Option<Sealed>) -> Result<CommitGuard<'_>, Error> {
        self.committer.lock().inspect_err(|_| {
            if let Some(s) = sealed {
                let _ = std::fs::remove_file(self.dir.join(SEGMENTS_DIR).join(&s.entry.file));
            }
        })
    }

    /// Writes `segment`'s rows as the shard's next segment file (a number the committer
    /// reserves) and maps it; None when it has no rows. `after` and `span` say where its records
    /// lie in the shard. The file is named by no manifest until the caller's edit.
    pub(super) fn write_sealed(
        &self,
        shard: &str,
        segment: &MutableSegment,
        after: Option<Checkpoint>,
        span: &Span,
    ) -> Result<Option<Sealed>, Error> {
        let snapshot = segment.snapshot();
        if snapshot.rows == 0 {
            return Ok(None);
        }
        let sequence = self.committer.reserve(shard)?;
        let request = SealRequest {
            table: &self.name,
            shard,
            sequence,
            created_ms: segment.created_ms(),
            // A primary key's table keeps its rows in ingest order: the key map and the bitmaps
            // name rows by their position, the same in the consuming segment and the file.
            sort_by: if self.committer.upsert().is_some() {
                None
            } else {
                self.definition.config.sorted_column.as_deref()
            },
        };
        let (path, meta) = write_segment(&self.dir.join(SEGMENTS_DIR), &self.layout, &snapshot, &request)?;
        let segment = match SealedSegment::open(&path) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        };
        let entry = SegmentEntry {
            file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            shard: shard.to_string(),
            sequence,
            rows: meta.rows,
            time_range: meta.time_range,
            after,
            first: span.first.clone(),
            last: span.last.clone(),
            deep: None,
            cold: false,
            replaces: None,
        };
        Ok(Some(Sealed { entry, segment }))
    }
}
