//! Consumption: the source's readers and one ingest loop per shard, started and stopped apart
//! from the rest of the table, so that an operator can pause a table (its consuming segments
//! committed, nothing more read, the pause kept across restarts) and resume it from where it
//! stopped, or force the consuming segments to commit now (Pinot's `pauseConsumption`,
//! `resumeConsumption` and `forceCommit`).

use super::Table;
use super::committer::Edit;
use crate::error::Error;
use crate::manifest::Pause;
use shoal_segment::MutableSegment;
use shoal_stream::{ShardReader, Source, SourceHandle};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a forced commit waits for the shards to seal.
const FORCE_COMMIT_WAIT: Duration = Duration::from_secs(60);

/// The running part of consumption.
pub(crate) struct Consumption {
    pub source: Option<SourceHandle>,
    /// Sent `true` to stop the dispatcher and the ingest loops.
    pub stop: watch::Sender<bool>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Default for Consumption {
    fn default() -> Self {
        Consumption { source: None, stop: watch::channel(false).0, tasks: Vec::new() }
    }
}

/// Whether a table is paused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseStatus {
    /// True while consumption is paused.
    pub paused: bool,
    /// The operator's comment when pausing.
    pub comment: Option<String>,
    /// When the pause began, epoch ms.
    pub since_ms: Option<i64>,
    /// Shards whose consuming segment holds rows now.
    pub consuming: Vec<String>,
}

impl Table {
    /// Starts the source's readers and the ingest loops.
    pub(super) fn start_consuming(self: &Arc<Table>, source: Box<dyn Source>) {
        let resume = self.committer.current().manifest.resume_state();
        let mut handle = source.start(resume);
        *self.metrics.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&handle.metrics));
        let readers = std::mem::replace(&mut handle.readers, mpsc::channel(1).1);
        let mut consumption = self.consumption.lock();
        let (stop, stop_rx) = watch::channel(false);
        let dispatcher = tokio::spawn(Arc::clone(self).dispatch(readers, stop_rx));
        *consumption = Consumption { source: Some(handle), stop, tasks: vec![dispatcher] };
    }

    /// Stops the source and the ingest loops, and waits for them; what is committed stays.
    pub(super) async fn stop_consuming(&self) {
        // The source first, so that no reader is handed out while the loops stop.
        let stop = {
            let mut consumption = self.consumption.lock();
            if let Some(handle) = consumption.source.take() {
                handle.stop();
            }
            let _ = consumption.stop.send(true);
            consumption.stop.clone()
        };
        // Loops started while stopping are waited for too.
        loop {
            let tasks: Vec<_> = std::mem::take(&mut self.consumption.lock().tasks);
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        drop(stop);
    }

    /// Hands each reader the source gives to an ingest loop of its own. An ingest loop that
    /// panics is counted; its reader, dropped, is handed out again by the source from the
    /// shard's last commit, and a new loop takes it.
    async fn dispatch(
        self: Arc<Table>,
        mut readers: mpsc::Receiver<ShardReader>,
        stop: watch::Receiver<bool>,
    ) {
        let mut watch_stop = stop.clone();
        loop {
            let reader = tokio::select! {
                r = readers.recv() => r,
                _ = watch_stop.wait_for(|s| *s) => None,
            };
            let Some(reader) = reader else { return };
            if *stop.borrow() {
                return;
            }
            let shard = reader.shard_id.clone();
            let ingest = tokio::spawn(Arc::clone(&self).ingest(reader, stop.clone()));
            let table = Arc::clone(&self);
            let watcher = tokio::spawn(async move {
                if let Err(e) = ingest.await
                    && e.is_panic()
                {
                    let message = super::panic_message(e.into_panic());
                    table.metrics.ingest_panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(table = %table.name, shard, panic = %message, "the shard's ingest task panicked; it starts again from the last commit");
                    table.board.update_shard(&shard, |s| {
                        s.restarts += 1;
                        s.last_panic = Some(message);
                    });
                }
            });
            self.consumption.lock().tasks.push(watcher);
        }
    }

    /// Seals every consuming segment that holds rows now, and waits (up to a minute) until
    /// each has committed, and every seal under way; returns the names of the segments
    /// committed.
    pub async fn force_commit(self: &Arc<Table>) -> Result<Vec<String>, Error> {
        let state = self.committer.current();
        let before: Vec<(String, usize)> = state
            .consuming
            .iter()
            .chain(&state.sealing)
            .filter(|(_, c)| c.rows() > 0)
            .map(|(shard, c)| (shard.clone(), Arc::as_ptr(c) as usize))
            .collect();
        let sealed_before = state.sealed.len();
        drop(state);
        for (shard, _) in &before {
            if let Some(request) = self.seal_requests.lock().get(shard) {
                request.notify_one();
            }
        }
        let deadline = tokio::time::Instant::now() + FORCE_COMMIT_WAIT;
        loop {
            let state = self.committer.current();
            let waiting = before
                .iter()
                .filter(|(shard, ptr)| {
                    let is = |c: &Arc<MutableSegment>| Arc::as_ptr(c) as usize == *ptr;
                    state.consuming.get(shard).is_some_and(is) || state.sealing.get(shard).is_some_and(is)
                })
                .count();
            if waiting == 0 {
                return Ok(state.sealed[sealed_before.min(state.sealed.len())..]
                    .iter()
                    .map(|s| s.segment.meta().name.clone())
                    .collect());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Task(format!(
                    "{waiting} consuming segment(s) did not commit within {FORCE_COMMIT_WAIT:?} (is a shard paused by a failing seal? see the table's status)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pauses consumption: commits the consuming segments, stops reading, and records the
    /// pause in the manifest, so that a restart stays paused.
    pub async fn pause(self: &Arc<Table>, comment: Option<String>) -> Result<PauseStatus, Error> {
        if self.committer.current().manifest.paused.is_none() {
            self.force_commit().await?;
            self.stop_consuming().await;
            let pause = Pause { comment, since_ms: shoal_stream::now_ms() };
            self.committer.lock()?.apply(Edit::Pause(Some(pause)))?;
            tracing::info!(table = %self.name, "consumption paused");
        }
        Ok(self.pause_status())
    }

    /// Resumes a paused table from where it stopped (its last commit).
    pub async fn resume(self: &Arc<Table>) -> Result<PauseStatus, Error> {
        if self.committer.current().manifest.paused.is_some() {
            self.committer.lock()?.apply(Edit::Pause(None))?;
            let source = self.source().await;
            self.start_consuming(source);
            tracing::info!(table = %self.name, "consumption resumed");
        }
        Ok(self.pause_status())
    }

    /// Whether the table is paused, and its consuming shards.
    pub fn pause_status(&self) -> PauseStatus {
        let state = self.committer.current();
        let pause = state.manifest.paused.clone();
        PauseStatus {
            paused: pause.is_some(),
            comment: pause.as_ref().and_then(|p| p.comment.clone()),
            since_ms: pause.map(|p| p.since_ms),
            consuming: state
                .consuming
                .iter()
                .chain(&state.sealing)
                .filter(|(_, c)| c.rows() > 0)
                .map(|(s, _)| s.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }
}
