//! Upsert compaction, Pinot's UpsertCompactionTask run inside the engine: a sealed segment of an
//! upsert table whose rows are mostly superseded is rewritten with only its visible rows, and
//! one with no visible row is dropped, so that queries stop reading rows they never show.

use super::committer::Edit;
use super::ingest::Span;
use super::{SEGMENTS_DIR, Table};
use crate::error::Error;
use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use shoal_segment::MutableSegment;
use shoal_segment::mutable::now_ms;
use std::sync::Arc;

impl Table {
    /// Compacts the sealed segments the table's `UpsertCompactionTask` settings select; returns
    /// how many were rewritten or dropped.
    pub fn compact(&self) -> Result<usize, Error> {
        let (Some(upsert), Some(config)) = (
            self.committer.upsert(),
            self.definition.config.upsert.as_ref().and_then(|u| u.compaction.as_ref()),
        ) else {
            return Ok(0);
        };
        let buffer_ms = i64::try_from(config.buffer.as_millis()).unwrap_or(i64::MAX);
        let mut done = 0;
        for s in &self.committer.current().sealed {
            let rows = s.entry.rows as usize;
            // Pinot compacts completed segments older than the buffer.
            if rows == 0
                || s.entry.time_range.is_none_or(|(_, newest)| newest > now_ms().saturating_sub(buffer_ms))
            {
                continue;
            }
            let Some(valid) = upsert.valid_rows(&s.entry.file, rows) else { continue };
            // A segment whose rows cannot be read is left to the scrub and the queries, which
            // quarantine it.
            let batches = match s.segment.batches() {
                Ok(b) if b.iter().map(|b| b.num_rows()).sum::<usize>() == rows => b,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(table = %self.name, file = %s.entry.file, error = %e, "a segment to compact cannot be read");
                    continue;
                }
            };
            let visible = valid.count_set_bits();
            let invalid = rows - visible;
            let percent = invalid as f64 * 100.0 / rows as f64;
            if visible > 0
                && (invalid == 0
                    || percent < config.threshold_percent
                    || (invalid as u64) < config.threshold_count)
            {
                continue;
            }
            let kept: Arc<Vec<u32>> = Arc::new(valid.set_indices().map(|i| i as u32).collect());
            let segment = MutableSegment::new(Arc::clone(&self.layout));
            let mut start = 0;
            for batch in batches {
                let n = batch.num_rows();
                let mask = BooleanArray::new(valid.slice(start, n), None);
                let rows = filter_record_batch(batch, &mask).map_err(|e| Error::Corrupt {
                    path: s.segment.path().to_path_buf(),
                    reason: e.to_string(),
                })?;
                segment.append_batch(rows);
                start += n;
            }
            // The rows kept lie within the segment's time range (a narrower one is not needed).
            segment.widen_time_range(s.entry.time_range);
            let span = Span { first: s.entry.first.clone(), last: s.entry.last.clone() };
            let sealed = self.write_sealed(&s.entry.shard, &segment, s.entry.after.clone(), &span)?;
            let mut guard = self.commit_lock_for(&sealed)?;
            // Expired or quarantined meanwhile, or a rebuild (which holds the commit lock, as
            // this does now) made a row valid that was not kept: try again next time.
            if !guard.manifest().segments.iter().any(|e| e.file == s.entry.file)
                || !upsert.only_kept_valid(&s.entry.file, kept.as_slice())
            {
                if let Some(n) = &sealed {
                    let _ = std::fs::remove_file(self.dir.join(SEGMENTS_DIR).join(&n.entry.file));
                }
                continue;
            }
            guard.apply(Edit::Compact { old: s.entry.file.clone(), sealed, kept })?;
            drop(guard);
            // Queries still holding the old segment keep its map; the file goes now.
            let _ = std::fs::remove_file(self.dir.join(SEGMENTS_DIR).join(&s.entry.file));
            self.metrics.segments_compacted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(table = %self.name, file = %s.entry.file, rows, visible, "upsert compaction rewrote a segment with its visible rows");
            done += 1;
        }
        Ok(done)
    }
}
