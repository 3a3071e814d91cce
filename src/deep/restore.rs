//! A table's directory rebuilt from the deep store, for a data directory that was lost: the
//! segments inside the local window are downloaded and written as local segment files (the
//! same names, shards and numbers), older ones stay cold (read from the store by queries), and
//! the local manifest is the deep-store manifest. The table then resumes consuming from that
//! manifest's checkpoints, so the rows sealed but not uploaded are read again from the stream,
//! once.

use super::DeepStore;
use crate::error::{Error, io_error};
use crate::manifest::Manifest;
use futures::StreamExt;
use serde_json::Value;
use shoal_segment::sealed::{SealRequest, write_segment};
use shoal_segment::{SegmentSnapshot, TableLayout};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Segments downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// The deep-store manifest of `table`, None when the store does not hold the table.
pub(crate) async fn manifest(deep: &DeepStore, table: &str) -> Result<Option<Manifest>, Error> {
    let Some(bytes) = deep.get(&deep.path(table, crate::table::DEEP_MANIFEST)).await? else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::DeepStore(format!("deep store {}: {table}/manifest.json: {e}", deep.url())))?;
    Ok(Some(manifest))
}

/// The table config and schema the store holds for `table`. The config's secrets were masked
/// when it was uploaded: those keys are left out, so that credentials come from the
/// environment's default chain.
pub(crate) async fn definition(deep: &DeepStore, table: &str) -> Result<(Value, Value), Error> {
    let read = async |name: &str| -> Result<Value, Error> {
        let bytes = deep.get(&deep.path(table, name)).await?.ok_or_else(|| {
            Error::DeepStore(format!("deep store {}: {table}/{name} is missing", deep.url()))
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::DeepStore(format!("deep store {}: {table}/{name}: {e}", deep.url())))
    };
    let mut config = read(crate::engine::TABLE_CONFIG_FILE).await?;
    let schema = read(crate::engine::SCHEMA_FILE).await?;
    drop_masked(&mut config);
    Ok((config, schema))
}

/// Removes every secret key whose value was masked.
fn drop_masked(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            map.retain(|key, value| {
                !(crate::config::secrets::is_secret_key(key) && value.as_str() == Some("***"))
            });
            map.values_mut().for_each(drop_masked);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_masked),
        _ => {}
    }
}

/// What a restore brought back.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Segments written to local disk.
    pub local: usize,
    /// Segments left in the deep store only.
    pub cold: usize,
    /// Rows of both.
    pub rows: u64,
}

/// Writes `dir`'s segments and manifest from the store's copy of `table` (`manifest`, as read
/// by [`manifest`]). Segments whose newest row is older than `cold_after` stay cold.
pub(crate) async fn restore(
    deep: &DeepStore,
    table: &str,
    mut manifest: Manifest,
    dir: &Path,
    layout: &Arc<TableLayout>,
    cold_after: Option<Duration>,
) -> Result<Restored, Error> {
    let segments_dir = dir.join(crate::table::SEGMENTS_DIR);
    std::fs::create_dir_all(&segments_dir).map_err(|e| io_error(&segments_dir, e))?;
    let cutoff = cold_after.map(|age| shoal_segment::mutable::now_ms() - age.as_millis() as i64);
    let mut restored = Restored::default();
    let mut local = Vec::new();
    for (at, entry) in manifest.segments.iter_mut().enumerate() {
        restored.rows += entry.rows;
        let Some(object) = entry.deep.as_mut() else {
            return Err(Error::DeepStore(format!(
                "deep store {}: {table}/manifest.json names {} without its object",
                deep.url(),
                entry.file
            )));
        };
        // The objects are this store's now (it may be a copy of another, or spelled otherwise).
        object.store = deep.url().to_string();
        let path = deep.key_path(&object.key);
        let old = entry.time_range.is_some_and(|(_, newest)| cutoff.is_some_and(|c| newest < c));
        if old {
            entry.cold = true;
            restored.cold += 1;
        } else {
            let object = object.clone();
            entry.cold = false;
            local.push((at, path, object));
        }
    }
    let mut downloads = futures::stream::iter(local)
        .map(|(at, path, object)| async move { deep.get(&path).await.map(|b| (at, path, object, b)) })
        .buffered(PARALLEL_DOWNLOADS);
    while let Some(next) = downloads.next().await {
        let (at, path, object, bytes) = next?;
        let bytes =
            bytes.ok_or_else(|| Error::DeepStore(format!("deep store {}: {path} is missing", deep.url())))?;
        if bytes.len() as u64 != object.bytes {
            return Err(Error::DeepStore(format!(
                "deep store {}: {path} holds {} bytes where the manifest says {}",
                deep.url(),
                bytes.len(),
                object.bytes
            )));
        }
        let entry = manifest.segments[at].clone();
        let (layout, dir, owner) = (Arc::clone(layout), segments_dir.clone(), table.to_string());
        let written = tokio::task::spawn_blocking(move || -> Result<String, Error> {
            let batches = super::parquet::read(&layout.arrow, bytes)
                .map_err(|e| Error::DeepStore(format!("{path}: {e}")))?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if rows as u64 != entry.rows {
                return Err(Error::DeepStore(format!(
                    "{path}: {rows} rows where the manifest says {}",
                    entry.rows
                )));
            }
            let snapshot = SegmentSnapshot {
                batches,
                rows,
                stats: object.stats.clone(),
                batch_stats: Vec::new(),
                time_range: entry.time_range,
                first_sequence: entry.first.as_ref().map(|c| c.sequence.to_string()),
                last_sequence: entry.last.as_ref().map(|c| c.sequence.to_string()),
                last_append_ms: None,
            };
            let request = SealRequest {
                table: &owner,
                shard: &entry.shard,
                sequence: entry.sequence,
                created_ms: object.created_ms,
                sort_by: None,
            };
            let (file, _) = write_segment(&dir, &layout, &snapshot, &request)?;
            Ok(file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
        })
        .await
        .map_err(|e| Error::Task(format!("restoring a segment: {e}")))??;
        let entry = &mut manifest.segments[at];
        if written != entry.file {
            tracing::warn!(table, expected = %entry.file, written, "a restored segment has a new file name");
            entry.file = written;
        }
        restored.local += 1;
    }
    manifest.commit(dir)?;
    Ok(restored)
}
