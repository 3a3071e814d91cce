//! The table's side of the deep store: uploads after each seal, the deep-store manifest, the
//! cold tier's evictions, and the deletes of objects no manifest names any more.
//!
//! One task per table. It wakes after every commit and:
//! 1. once per start: writes the table's config (secrets masked) and schema, reads the
//!    deep-store manifest written last, and deletes segment objects that neither manifest names
//!    (left by a crash between an upload and its commit, or by a retention pass);
//! 2. uploads every sealed segment not uploaded yet, in commit order: the Parquet object first,
//!    then the local manifest records it (`Edit::Uploaded`), then the deep-store manifest is
//!    written again, so that it never names a missing object;
//! 3. deletes the objects of segments the manifests no longer name (expired, compacted);
//! 4. evicts uploaded segments past the cold tier's age from local disk (only those the
//!    deep-store manifest names, so that a lost disk never loses them).
//!
//! Any failure is retried with backoff; ingestion and queries of local data never wait for
//! the store.

use super::committer::Edit;
use super::{SEGMENTS_DIR, Table};
use crate::deep::{DeepStore, manifest as deep_manifest, parquet};
use crate::error::Error;
use crate::manifest::{DeepObject, Manifest};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The deep-store manifest's name in a table's prefix.
pub(crate) const DEEP_MANIFEST: &str = "manifest.json";

/// What the uploader knows between rounds.
#[derive(Default)]
struct Progress {
    /// Objects no manifest names any more, and since when.
    doomed: Vec<(tokio::time::Instant, String)>,
    /// Config and schema written, leftovers swept.
    started: bool,
    /// The deep-store manifest last written (or found), generation aside.
    published: Option<Manifest>,
    /// Segment objects known to exist in the store.
    objects: BTreeSet<String>,
}

impl Table {
    /// The uploader: runs until the table stops.
    pub(super) async fn deep_store_loop(self: Arc<Table>, deep: Arc<DeepStore>) {
        let first_retry = Duration::from_millis(200);
        let mut backoff = first_retry;
        let mut progress = Progress::default();
        loop {
            let changed = self.committer.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deep_round(&deep, &mut progress).await {
                Ok(()) => {
                    backoff = first_retry;
                    self.board.deep.lock().1 = None;
                    // Also wakes now and then, for segments that age into the cold tier and
                    // objects past their grace.
                    let wait = if progress.doomed.is_empty() {
                        self.options.retention_interval
                    } else {
                        self.options.retention_interval.min(deep.delete_grace)
                    };
                    let _ = tokio::time::timeout(wait, changed).await;
                }
                Err(e) => {
                    self.metrics.deep_upload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(table = %self.name, error = %e, retry_in = ?backoff, "deep store: will retry");
                    self.board.deep.lock().1 = Some(e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(deep.retry_max);
                }
            }
        }
    }

    async fn deep_round(self: &Arc<Table>, deep: &DeepStore, progress: &mut Progress) -> Result<(), Error> {
        if !progress.started {
            self.deep_start(deep, progress).await?;
            progress.started = true;
        }
        loop {
            let state = self.committer.current();
            let next = state.manifest.segments.iter().find(|e| e.deep.is_none() && !e.cold);
            let Some(sealed) = next.and_then(|e| state.sealed.iter().find(|s| s.entry.file == e.file)) else {
                break;
            };
            let object = self.upload(deep, sealed).await?;
            progress.objects.insert(object.key.clone());
            let bytes = object.bytes;
            tracing::debug!(table = %self.name, file = %sealed.entry.file, object = %object.key, bytes, "deep store: segment uploaded");
            self.committer.lock()?.apply(Edit::Uploaded { file: sealed.entry.file.clone(), object })?;
            self.metrics.deep_uploads.fetch_add(1, Ordering::Relaxed);
            self.metrics.deep_upload_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.publish(deep, progress).await?;
        }
        self.publish(deep, progress).await?;
        self.evict(progress)?;
        Ok(())
    }

    /// Writes the config and schema, reads the last deep-store manifest and deletes the segment
    /// objects that neither manifest names.
    async fn deep_start(&self, deep: &DeepStore, progress: &mut Progress) -> Result<(), Error> {
        let config = serde_json::to_vec_pretty(self.definition.config.masked_json())
            .map_err(|e| Error::DeepStore(e.to_string()))?;
        deep.put(&deep.path(&self.name, crate::engine::TABLE_CONFIG_FILE), config.into()).await?;
        let schema_path = self.dir.join(crate::engine::SCHEMA_FILE);
        let schema = std::fs::read(&schema_path).map_err(|e| crate::error::io_error(&schema_path, e))?;
        deep.put(&deep.path(&self.name, crate::engine::SCHEMA_FILE), schema.into()).await?;
        let found = deep.get(&deep.path(&self.name, DEEP_MANIFEST)).await?;
        progress.published = match found {
            None => None,
            Some(bytes) => {
                // Never overwritten (nor its objects swept) unread: an operator looks first.
                let mut m = serde_json::from_slice::<Manifest>(&bytes).map_err(|e| {
                    Error::DeepStore(format!(
                        "deep store {}: {}/{DEEP_MANIFEST} cannot be read ({e}); it is left as it is",
                        deep.url(),
                        self.name
                    ))
                })?;
                m.generation = 0;
                Some(m)
            }
        };
        self.board.deep.lock().0 = progress.published.as_ref().map_or(0, |m| m.segments.len() as u64);
        let named = self.named_objects(progress.published.as_ref());
        for path in deep.list_table(&self.name).await? {
            let key = path.as_ref().to_string();
            let is_segment = key.ends_with(".parquet") && key.contains("/dt=");
            if is_segment && !named.iter().any(|k| key.ends_with(k.as_str())) {
                tracing::info!(table = %self.name, object = %key, "deep store: deleting an object no manifest names");
                deep.delete(&path).await?;
            }
        }
        progress.objects = named;
        Ok(())
    }

    /// The segment objects the local manifest and `published` name.
    fn named_objects(&self, published: Option<&Manifest>) -> BTreeSet<String> {
        let state = self.committer.current();
        let local = state.manifest.segments.iter().chain(state.manifest.lost.iter().map(|l| &l.entry));
        let deep =
            published.into_iter().flat_map(|m| m.segments.iter().chain(m.lost.iter().map(|l| &l.entry)));
        let replaced = state.manifest.segments.iter().filter_map(|e| e.replaces.as_deref());
        local.chain(replaced).chain(deep).filter_map(|e| e.deep.as_ref().map(|d| d.key.clone())).collect()
    }

    /// Writes one sealed segment's Parquet object.
    async fn upload(&self, deep: &DeepStore, sealed: &super::committer::Sealed) -> Result<DeepObject, Error> {
        let segment = Arc::clone(&sealed.segment);
        let schema = Arc::clone(&self.layout.arrow);
        let file = sealed.entry.file.clone();
        let shard = sealed.entry.shard.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            // Reading the rows checks the file's checksum: a damaged segment is never uploaded.
            let batches = segment.batches()?;
            let meta = segment.meta();
            let sorted_by = meta.sorted_by.as_ref().and_then(|c| schema.index_of(c).ok());
            let info = parquet::FileInfo { segment: &meta.name, shard: &shard, sorted_by };
            let bytes = parquet::write(&schema, batches, &info)
                .map_err(|e| Error::DeepStore(format!("writing Parquet for {}: {e}", meta.name)))?;
            let stats = meta.columns.iter().map(|c| c.stats.clone()).collect::<Vec<_>>();
            Ok::<_, Error>((bytes, stats, meta.created_ms))
        })
        .await
        .map_err(|e| Error::Task(format!("encoding a segment for the deep store: {e}")))?;
        let (bytes, stats, created_ms) = match encoded {
            Ok(done) => done,
            Err(Error::Segment(e)) => {
                // The scrub's path: checked, quarantined and read again from the stream.
                let _ = self.unreadable.send((file.clone(), e.to_string()));
                return Err(Error::Segment(e));
            }
            Err(e) => return Err(e),
        };
        let oldest = sealed.entry.time_range.map_or(created_ms, |(oldest, _)| oldest);
        let key = DeepStore::segment_key(&self.name, &file, oldest);
        let size = bytes.len() as u64;
        deep.put(&deep.key_path(&key), bytes).await?;
        Ok(DeepObject { store: deep.url().to_string(), key, bytes: size, created_ms, stats })
    }

    /// Writes the deep-store manifest when it changed, then deletes the objects no manifest
    /// names any more.
    async fn publish(&self, deep: &DeepStore, progress: &mut Progress) -> Result<(), Error> {
        let local = Arc::clone(&self.committer.current().manifest);
        let mut next = deep_manifest::of(&local);
        next.generation = 0;
        if progress.published.as_ref() != Some(&next) {
            let bytes = serde_json::to_vec_pretty(&next).map_err(|e| Error::DeepStore(e.to_string()))?;
            deep.put(&deep.path(&self.name, DEEP_MANIFEST), bytes.into()).await?;
            self.board.deep.lock().0 = next.segments.len() as u64;
            progress.published = Some(next);
        }
        let named = self.named_objects(progress.published.as_ref());
        let now = tokio::time::Instant::now();
        for key in progress.objects.difference(&named) {
            if !progress.doomed.iter().any(|(_, k)| k == key) {
                progress.doomed.push((now, key.clone()));
            }
        }
        // Named again (cannot happen today, but never delete what a manifest names).
        progress.doomed.retain(|(_, k)| !named.contains(k));
        while let Some(at) =
            progress.doomed.iter().position(|(since, _)| now.duration_since(*since) >= deep.delete_grace)
        {
            let key = progress.doomed[at].1.clone();
            if let Err(e) = deep.delete(&deep.key_path(&key)).await {
                // Uploads go on (a store may forbid deletes); the delete is tried again later.
                tracing::warn!(table = %self.name, object = %key, error = %e, "deep store: an object no manifest names cannot be deleted yet");
                self.metrics.deep_upload_failures.fetch_add(1, Ordering::Relaxed);
                progress.doomed[at].0 = now;
                break;
            }
            progress.objects.remove(&key);
            progress.doomed.remove(at);
        }
        Ok(())
    }

    /// Drops from local disk the uploaded segments older than the cold tier's age that the
    /// deep-store manifest names.
    fn evict(&self, progress: &Progress) -> Result<usize, Error> {
        let (Some(age), Some(published)) = (self.definition.config.cold_after, progress.published.as_ref())
        else {
            return Ok(0);
        };
        let cutoff = shoal_segment::mutable::now_ms() - age.as_millis() as i64;
        let in_deep: BTreeSet<&str> = published.segments.iter().map(|s| s.file.as_str()).collect();
        let files: BTreeSet<String> = {
            let mut guard = self.committer.lock()?;
            let files: BTreeSet<String> = guard
                .manifest()
                .segments
                .iter()
                .filter(|s| !s.cold && s.deep.is_some() && in_deep.contains(s.file.as_str()))
                .filter(|s| s.time_range.is_some_and(|(_, newest)| newest < cutoff))
                .map(|s| s.file.clone())
                .collect();
            if files.is_empty() {
                return Ok(0);
            }
            guard.apply(Edit::Evict { files: files.clone() })?;
            files
        };
        for file in &files {
            // Queries holding the segment keep its map; the file goes now.
            let path = self.dir.join(SEGMENTS_DIR).join(file);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(table = %self.name, file = %path.display(), error = %e, "cannot remove an evicted segment file");
            }
        }
        self.metrics.deep_evicted.fetch_add(files.len() as u64, Ordering::Relaxed);
        tracing::info!(table = %self.name, segments = files.len(), "cold tier: segments now live only in the deep store");
        Ok(files.len())
    }

    pub(super) fn update_deep_gauges(&self) {
        if let Some(s) = self.deep_status(&self.committer.current()) {
            self.metrics.deep_pending_segments.store(s.pending_segments, Ordering::Relaxed);
            self.metrics.deep_pending_bytes.store(s.pending_bytes, Ordering::Relaxed);
            self.metrics.deep_cold_segments.store(s.cold_segments, Ordering::Relaxed);
        }
    }

    /// The deep store's part of the status.
    pub(super) fn deep_status(&self, state: &super::committer::TableState) -> Option<super::DeepStoreStatus> {
        let deep = self.options.deep_store.as_ref()?;
        let pending: Vec<_> = state.sealed.iter().filter(|s| s.entry.deep.is_none()).collect();
        let (manifest_segments, error) = self.board.deep.lock().clone();
        Some(super::DeepStoreStatus {
            url: deep.url().to_string(),
            uploaded_segments: state.manifest.segments.iter().filter(|s| s.deep.is_some()).count() as u64,
            pending_segments: pending.len() as u64,
            pending_bytes: pending.iter().map(|s| s.segment.file_bytes()).sum(),
            manifest_segments,
            cold_segments: state.cold.len() as u64,
            error,
        })
    }
}
