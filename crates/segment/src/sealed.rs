//! Sealed segments: one immutable file per segment, mapped into memory and read zero-copy.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! [Arrow IPC file: 64-byte aligned, uncompressed][0-7 bytes padding][metadata JSON][trailer, 56 bytes]
//! trailer = magic "SHOALSG\0" | version u32 | 0u32 | ipc_len u64 | meta_len u64
//!           | xxh3(ipc bytes) u64 | xxh3(IPC footer, its length and end magic) u64
//!           | xxh3(metadata JSON ++ trailer[0..48]) u64
//! ```
//!
//! A segment is written to `<name>.seg.tmp`, fsynced, renamed to `<name>.seg` and the directory
//! fsynced: a half-written file never carries the final name. Opening checks the trailer, the
//! checksums of the metadata and of the IPC footer, and that every IPC block lies inside the
//! file; it reads no row data. The first read checks the data checksum and that every buffer lies
//! inside its batch's body, and Arrow validates every array it decodes (matching checksums do not
//! prove that Shoal wrote the file); a panic inside Arrow's reader becomes a refusal. The batches
//! point into the map: nothing is copied.

use crate::columns::TableLayout;
use crate::mutable::{BATCH_ROWS, SegmentSnapshot, now_ms};
use crate::stats::ColumnStats;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, Int32Builder, RecordBatch, StringBuilder,
};
use arrow::buffer::Buffer;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Int32Type};
use arrow::error::ArrowError;
use arrow::ipc::reader::FileDecoder;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::{Block, MetadataVersion, convert::fb_to_schema, root_as_footer};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The format version this code writes. Version 2 may hold dictionary-encoded columns (one
/// dictionary per column per file); version 1 files, which never do, are read too.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this code reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"SHOALSG\0";
const TRAILER: usize = 56;
/// File name extension of sealed segments.
pub const EXTENSION: &str = "seg";

/// Why a segment could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The file system refused.
    #[error("segment file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a whole, intact segment.
    #[error("segment file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a format this build does not read.
    #[error(
        "segment file {path} has format version {found}; this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The file does not hold the table's columns.
    #[error("segment file {path} does not match the table: {reason}")]
    SchemaMismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io { path: path.to_path_buf(), source }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SegmentError {
    SegmentError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

/// Per-column metadata of a sealed segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    /// Column name.
    pub name: String,
    /// Pinot data type (`*_ARRAY` for multi-value).
    pub data_type: String,
    /// Statistics.
    pub stats: ColumnStats,
}

/// What a sealed segment says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Pinot-style name: `{table}__{shard}__{sequence}__{yyyyMMdd'T'HHmm'Z'}`.
    pub name: String,
    /// Table name.
    pub table: String,
    /// Shard id it was consumed from.
    pub shard: String,
    /// Its number among the shard's segments.
    pub sequence: u64,
    /// Sequence number of the first record consumed into it.
    pub first_sequence: Option<String>,
    /// Sequence number of the last record consumed into it (the checkpoint it carries).
    pub last_sequence: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Smallest and largest time column value, epoch ms.
    pub time_range: Option<(i64, i64)>,
    /// Per-column statistics, in the table's column order.
    pub columns: Vec<ColumnMeta>,
    /// Column the rows are sorted by.
    pub sorted_by: Option<String>,
    /// When consuming started, epoch ms.
    pub created_ms: i64,
    /// When it sealed, epoch ms.
    pub sealed_ms: i64,
    /// Format version.
    pub format_version: u32,
    /// Bytes of the Arrow IPC part.
    pub data_bytes: u64,
}

/// What the writer needs to know beyond the rows.
#[derive(Debug, Clone)]
pub struct SealRequest<'a> {
    /// Table name.
    pub table: &'a str,
    /// Shard id.
    pub shard: &'a str,
    /// The segment's number among the shard's segments.
    pub sequence: u64,
    /// When consuming started, epoch ms.
    pub created_ms: i64,
    /// Sort rows by this column.
    pub sort_by: Option<&'a str>,
}

/// The Pinot-style segment name for a table, shard, sequence and creation time.
pub fn segment_name(table: &str, shard: &str, sequence: u64, created_ms: i64) -> String {
    let stamp = crate::datetime::JavaDatePattern::parse("yyyyMMdd'T'HHmm'Z'")
        .expect("a fixed, valid pattern")
        .format_millis(created_ms);
    format!("{table}__{shard}__{sequence}__{stamp}")
}

/// Writes a snapshot as a sealed segment in `dir` and returns its path and metadata.
pub fn write_segment(
    dir: &Path,
    layout: &TableLayout,
    snapshot: &SegmentSnapshot,
    request: &SealRequest<'_>,
) -> Result<(PathBuf, SegmentMeta), SegmentError> {
    let name = segment_name(request.table, request.shard, request.sequence, request.created_ms);
    let path = dir.join(format!("{name}.{EXTENSION}"));
    let tmp = dir.join(format!("{name}.{EXTENSION}.tmp"));
    // A failed write (a full disk, a file size limit) leaves no partial file taking space.
    let written = write_temporary(&tmp, &name, layout, snapshot, request);
    let meta = match written {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(SegmentError::Io { path, source: e });
    }
    crate::durable::sync_dir(dir).map_err(io(dir))?;
    Ok((path, meta))
}

/// Writes and fsyncs the segment file at `tmp`.
fn write_temporary(
    tmp: &Path,
    name: &str,
    layout: &TableLayout,
    snapshot: &SegmentSnapshot,
    request: &SealRequest<'_>,
) -> Result<SegmentMeta, SegmentError> {
    let tmp = tmp.to_path_buf();
    let batches = match request.sort_by.and_then(|c| layout.column_index(c)) {
        Some(column) => {
            sorted(&layout.arrow, &snapshot.batches, column).map_err(|e| corrupt(&tmp, e.to_string()))?
        }
        None => snapshot.batches.clone(),
    };
    let batches = share_dictionaries(&layout.arrow, batches).map_err(|e| corrupt(&tmp, e.to_string()))?;

    // Read access too: the footer is read back for its checksum.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let mut out =
        HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Xxh3::new(), len: 0 };
    let options =
        IpcWriteOptions::try_new(64, false, MetadataVersion::V5).map_err(|e| corrupt(&tmp, e.to_string()))?;
    let arrow_err = |e: arrow::error::ArrowError| match e {
        arrow::error::ArrowError::IoError(_, source) => SegmentError::Io { path: tmp.clone(), source },
        other => corrupt(&tmp, other.to_string()),
    };
    let mut writer = FileWriter::try_new_with_options(&mut out, &layout.arrow, options).map_err(arrow_err)?;
    for batch in &batches {
        writer.write(batch).map_err(arrow_err)?;
    }
    writer.finish().map_err(arrow_err)?;
    drop(writer);
    let ipc_len = out.len;
    let data_checksum = out.hasher.digest();
    let mut inner = out.inner;
    inner.flush().map_err(io(&tmp))?;
    let footer_checksum = footer_checksum_of(inner.get_ref(), ipc_len).map_err(io(&tmp))?;

    let meta = SegmentMeta {
        name: name.to_string(),
        table: request.table.to_string(),
        shard: request.shard.to_string(),
        sequence: request.sequence,
        first_sequence: snapshot.first_sequence.clone(),
        last_sequence: snapshot.last_sequence.clone(),
        rows: snapshot.rows as u64,
        time_range: snapshot.time_range,
        columns: layout
            .arrow
            .fields()
            .iter()
            .zip(&snapshot.stats)
            .map(|(field, s)| ColumnMeta {
                name: field.name().clone(),
                data_type: field.metadata().get(crate::columns::PINOT_TYPE_KEY).cloned().unwrap_or_default(),
                // Sums serve queries of the segment in memory; the file does not keep them.
                stats: ColumnStats { sum: None, ..s.clone() },
            })
            .collect(),
        sorted_by: request.sort_by.map(str::to_string),
        created_ms: request.created_ms,
        sealed_ms: now_ms(),
        format_version: FORMAT_VERSION,
        data_bytes: ipc_len,
    };
    let meta_json = serde_json::to_vec(&meta).map_err(|e| corrupt(&tmp, e.to_string()))?;
    let padding = (8 - ipc_len % 8) % 8;
    let mut tail = vec![0u8; padding as usize];
    tail.extend_from_slice(&meta_json);
    let mut trailer = Vec::with_capacity(TRAILER);
    trailer.extend_from_slice(MAGIC);
    trailer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    trailer.extend_from_slice(&0u32.to_le_bytes());
    trailer.extend_from_slice(&ipc_len.to_le_bytes());
    trailer.extend_from_slice(&(meta_json.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&data_checksum.to_le_bytes());
    trailer.extend_from_slice(&footer_checksum.to_le_bytes());
    let meta_checksum = meta_checksum(&meta_json, &trailer);
    trailer.extend_from_slice(&meta_checksum.to_le_bytes());
    tail.extend_from_slice(&trailer);
    inner.write_all(&tail).map_err(io(&tmp))?;
    let file =
        inner.into_inner().map_err(|e| SegmentError::Io { path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io(&tmp))?;
    Ok(meta)
}

/// Recomputes the three checksums of a segment file's bytes from the lengths its trailer
/// gives, so that a fuzzer's changes reach the parsers behind the checksums. For fuzzing and
/// tests; false (and nothing changed) when the trailer's lengths do not fit the bytes.
#[doc(hidden)]
pub fn restamp_checksums(image: &mut [u8]) -> bool {
    let len = image.len();
    if len < TRAILER + 8 {
        return false;
    }
    let at = len - TRAILER;
    let word = |image: &[u8], offset: usize| {
        u64::from_le_bytes(image[at + offset..at + offset + 8].try_into().expect("8 bytes"))
    };
    let (ipc_len, meta_len) = (word(image, 16), word(image, 24));
    let fits = ipc_len
        .checked_add((8 - ipc_len % 8) % 8)
        .and_then(|v| v.checked_add(meta_len))
        .and_then(|v| v.checked_add(TRAILER as u64))
        == Some(len as u64);
    if !fits || ipc_len < 10 {
        return false;
    }
    let (ipc_len, meta_len) = (ipc_len as usize, meta_len as usize);
    let footer_len =
        u32::from_le_bytes(image[ipc_len - 10..ipc_len - 6].try_into().expect("4 bytes")) as usize;
    let Some(footer_start) = (ipc_len - 10).checked_sub(footer_len) else { return false };
    let data = xxh3_64(&image[..ipc_len]);
    let footer = xxh3_64(&image[footer_start..ipc_len]);
    image[at + 32..at + 40].copy_from_slice(&data.to_le_bytes());
    image[at + 40..at + 48].copy_from_slice(&footer.to_le_bytes());
    let meta = meta_checksum(&image[at - meta_len..at], &image[at..]);
    image[at + 48..at + 56].copy_from_slice(&meta.to_le_bytes());
    true
}

fn meta_checksum(meta_json: &[u8], trailer_head: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(meta_json);
    h.update(&trailer_head[..TRAILER - 8]);
    h.digest()
}

/// The checksum of the IPC footer at the end of the `ipc_len` bytes just written to `file`.
fn footer_checksum_of(file: &File, ipc_len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut tail = [0u8; 10];
    file.read_exact_at(&mut tail, ipc_len - 10)?;
    let footer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    let mut footer = vec![0u8; footer_len as usize + 10];
    file.read_exact_at(&mut footer, ipc_len - 10 - footer_len)?;
    Ok(xxh3_64(&footer))
}

fn sorted(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    column: usize,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let all = concat_batches(schema, batches)?;
    let indices =
        lexsort_to_indices(&[SortColumn { values: Arc::clone(all.column(column)), options: None }], None)?;
    let all = take_record_batch(&all, &indices)?;
    Ok((0..all.num_rows())
        .step_by(BATCH_ROWS)
        .map(|start| all.slice(start, BATCH_ROWS.min(all.num_rows() - start)))
        .collect())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Xxh3,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A sealed segment, mapped into memory.
pub struct SealedSegment {
    path: PathBuf,
    meta: SegmentMeta,
    /// The whole file, owning the map.
    buffer: Buffer,
    /// The map, which each batch's own buffer (`decode_checked`) also owns.
    map: Arc<Mmap>,
    ipc_len: usize,
    data_checksum: u64,
    schema: SchemaRef,
    blocks: Vec<Block>,
    dictionaries: Vec<Block>,
    batches: OnceLock<Result<Arc<[RecordBatch]>, String>>,
    /// Per column, the statistics of each batch: computed the first time pruning inside the
    /// segment asks for them (files do not store them).
    batch_stats: Vec<OnceLock<Vec<ColumnStats>>>,
    /// Set once the data checksum has been checked and found right.
    verified: AtomicBool,
    /// The table's schema, when its STRING columns are encoded otherwise than in the file
    /// (see [`SealedSegment::check_schema`]).
    read_as: OnceLock<SchemaRef>,
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment").field("path", &self.path).field("rows", &self.meta.rows).finish()
    }
}

impl SealedSegment {
    /// Maps a segment file and checks its trailer, metadata and IPC footer. Reads no row data,
    /// so it takes the same time whatever the file's size.
    pub fn open(path: &Path) -> Result<SealedSegment, SegmentError> {
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len() as usize;
        if len < TRAILER + 8 {
            return Err(corrupt(path, format!("{len} bytes is too short to be a segment (truncated?)")));
        }
        // SAFETY: segment files are immutable once renamed into place, and Shoal never writes
        // to them again; the map lives as long as the Buffers that point into it.
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        let trailer = &map[len - TRAILER..];
        if &trailer[..8] != MAGIC {
            return Err(corrupt(
                path,
                "no segment trailer at the end of the file (truncated or not a segment)",
            ));
        }
        let word = |at: usize| u64::from_le_bytes(trailer[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
        let (ipc_len, meta_len) = (word(16), word(24));
        let (data_checksum, footer_checksum, stored_meta_checksum) = (word(32), word(40), word(48));
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SegmentError::UnknownVersion { path: path.to_path_buf(), found: version });
        }
        let padding = (8 - ipc_len % 8) % 8;
        let expected = ipc_len
            .checked_add(padding)
            .and_then(|v| v.checked_add(meta_len))
            .and_then(|v| v.checked_add(TRAILER as u64));
        if expected != Some(len as u64) {
            return Err(corrupt(
                path,
                format!("the trailer describes {expected:?} bytes but the file has {len}"),
            ));
        }
        let (ipc_len, meta_len) = (ipc_len as usize, meta_len as usize);
        let meta_start = len - TRAILER - meta_len;
        let meta_bytes = &map[meta_start..meta_start + meta_len];
        if meta_checksum(meta_bytes, trailer) != stored_meta_checksum {
            return Err(corrupt(path, "metadata checksum mismatch"));
        }
        let meta: SegmentMeta =
            serde_json::from_slice(meta_bytes).map_err(|e| corrupt(path, format!("metadata: {e}")))?;
        if meta.format_version != version {
            return Err(SegmentError::UnknownVersion {
                path: path.to_path_buf(),
                found: meta.format_version,
            });
        }

        let ptr = NonNull::new(map.as_ptr() as *mut u8).ok_or_else(|| corrupt(path, "empty map"))?;
        // SAFETY: the pointer and length describe the live map, which the Buffer now owns.
        let map = Arc::new(map);
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, Arc::clone(&map) as _) };
        let ipc = &buffer.as_slice()[..ipc_len];
        if ipc_len < 16 || &ipc[..6] != b"ARROW1" || &ipc[ipc_len - 6..] != b"ARROW1" {
            return Err(corrupt(path, "the Arrow IPC part lacks its magic bytes"));
        }
        let footer_len = i32::from_le_bytes(ipc[ipc_len - 10..ipc_len - 6].try_into().expect("4 bytes"));
        let footer_start = usize::try_from(footer_len)
            .ok()
            .and_then(|f| (ipc_len - 10).checked_sub(f))
            .filter(|&s| s >= 8)
            .ok_or_else(|| corrupt(path, "bad IPC footer length"))?;
        if xxh3_64(&ipc[footer_start..]) != footer_checksum {
            return Err(corrupt(path, "IPC footer checksum mismatch"));
        }
        let footer = root_as_footer(&ipc[footer_start..ipc_len - 10])
            .map_err(|e| corrupt(path, format!("IPC footer: {e}")))?;
        let fb_schema = footer.schema().ok_or_else(|| corrupt(path, "IPC footer has no schema"))?;
        // Arrow's conversion panics on types it does not know (the fuzzer found one).
        let schema = std::panic::catch_unwind(|| fb_to_schema(fb_schema))
            .map(Arc::new)
            .map_err(|_| corrupt(path, "the IPC footer's schema has a type Arrow cannot read"))?;
        let blocks: Vec<Block> =
            footer.recordBatches().map(|b| b.iter().copied().collect()).unwrap_or_default();
        let dictionaries: Vec<Block> =
            footer.dictionaries().map(|b| b.iter().copied().collect()).unwrap_or_default();
        for b in blocks.iter().chain(&dictionaries) {
            let end = (b.offset() as i128) + i128::from(b.metaDataLength()) + (b.bodyLength() as i128);
            if b.offset() < 0 || b.metaDataLength() < 0 || b.bodyLength() < 0 || end > footer_start as i128 {
                return Err(corrupt(path, "an IPC block lies outside the file"));
            }
        }
        let columns = schema.fields().len();
        Ok(SealedSegment {
            path: path.to_path_buf(),
            meta,
            buffer,
            map,
            ipc_len,
            data_checksum,
            schema,
            blocks,
            dictionaries,
            batch_stats: (0..columns).map(|_| OnceLock::new()).collect(),
            batches: OnceLock::new(),
            verified: AtomicBool::new(false),
            read_as: OnceLock::new(),
        })
    }

    /// Opens a segment and reads all of it at once, checking every byte.
    pub fn load(path: &Path) -> Result<SealedSegment, SegmentError> {
        let segment = Self::open(path)?;
        segment.batches()?;
        Ok(segment)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its metadata.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The Arrow schema of its rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Checks that the file's columns are the table's (names and types, in order). A STRING
    /// column stored plain where the table now encodes it as a dictionary, or the other way
    /// round (a file written before `noDictionaryColumns` changed, or by format version 1), is
    /// accepted: its batches are converted to the table's type when first read, in memory.
    pub fn check_schema(&self, expected: &SchemaRef) -> Result<(), SegmentError> {
        let found: Vec<_> = self.schema.fields().iter().map(|f| (f.name(), f.data_type())).collect();
        let want: Vec<_> = expected.fields().iter().map(|f| (f.name(), f.data_type())).collect();
        if found == want {
            return Ok(());
        }
        let convertible = found.len() == want.len()
            && found.iter().zip(&want).all(|((fname, ftype), (wname, wtype))| {
                fname == wname && (ftype == wtype || crate::columns::strings_either_way(ftype, wtype))
            });
        if !convertible {
            return Err(SegmentError::SchemaMismatch {
                path: self.path.clone(),
                reason: format!("it holds {found:?}, the table has {want:?}"),
            });
        }
        if self.batches.get().is_some() {
            return Err(SegmentError::SchemaMismatch {
                path: self.path.clone(),
                reason: "its batches were read before its columns were checked".into(),
            });
        }
        let _ = self.read_as.set(Arc::clone(expected));
        Ok(())
    }

    /// Checks the data checksum (reads the whole file once).
    pub fn verify(&self) -> Result<(), SegmentError> {
        if xxh3_64(&self.buffer.as_slice()[..self.ipc_len]) != self.data_checksum {
            return Err(corrupt(&self.path, "data checksum mismatch"));
        }
        self.verified.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.buffer.len() as u64
    }

    /// True once the row data has been read: its checksum checked, or its batches decoded.
    /// Opening reads no row data.
    pub fn is_read(&self) -> bool {
        self.verified.load(Ordering::Relaxed) || self.batches.get().is_some()
    }

    /// The statistics of column `column` in each batch of [`SealedSegment::batches`], computed
    /// once (one pass over the column) and kept.
    pub fn batch_stats(&self, column: usize) -> Result<&[ColumnStats], SegmentError> {
        let Some(cell) = self.batch_stats.get(column) else {
            return Err(corrupt(&self.path, format!("no column {column}")));
        };
        if let Some(stats) = cell.get() {
            return Ok(stats);
        }
        let batches = self.batches()?;
        Ok(cell.get_or_init(|| batches.iter().map(|b| ColumnStats::of(b.column(column))).collect()))
    }

    /// The rows, as record batches pointing into the mapped file. The first call checks the
    /// data checksum and the buffer bounds, and decodes and validates every batch.
    pub fn batches(&self) -> Result<&[RecordBatch], SegmentError> {
        self.decoded().map(|b| &**b)
    }

    /// [`SealedSegment::batches`], shared: a scan holds the segment's batches with one
    /// reference count instead of a clone of each batch.
    pub fn shared_batches(&self) -> Result<Arc<[RecordBatch]>, SegmentError> {
        self.decoded().map(Arc::clone)
    }

    fn decoded(&self) -> Result<&Arc<[RecordBatch]>, SegmentError> {
        let decoded = self.batches.get_or_init(|| self.decode().map(Arc::from).map_err(|e| e.to_string()));
        match decoded {
            Ok(b) => Ok(b),
            Err(reason) => Err(corrupt(&self.path, reason.clone())),
        }
    }

    fn decode(&self) -> Result<Vec<RecordBatch>, SegmentError> {
        self.verify()?;
        // A file whose checksums match but whose contents are not what Shoal wrote (crafted, or
        // damaged before the checksum was taken) must be refused, not trusted: every buffer is
        // checked against its batch's body here, Arrow validates every array it builds, and a
        // panic inside Arrow's reader is turned into a refusal.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decode_checked()));
        decoded.unwrap_or_else(|_| Err(corrupt(&self.path, "the Arrow IPC reader failed on this file")))
    }

    fn decode_checked(&self) -> Result<Vec<RecordBatch>, SegmentError> {
        let ipc = self.buffer.slice_with_length(0, self.ipc_len);
        let mut decoder =
            FileDecoder::new(Arc::clone(&self.schema), MetadataVersion::V5).with_require_alignment(true);
        // Each batch gets a buffer of its own over its part of the map (the blocks lie inside
        // the IPC part, checked at open), so that its arrays report their batch's size as their
        // memory (`Array::get_array_memory_size`, which DataFusion's sorts, TopK and result
        // limits account with), not the whole file's, as a slice of one file-wide buffer would.
        let slice = |b: &Block| {
            let (offset, len) = (b.offset() as usize, b.metaDataLength() as usize + b.bodyLength() as usize);
            let part = ipc.as_slice().get(offset..offset.saturating_add(len)).unwrap_or(&[]);
            match NonNull::new(part.as_ptr() as *mut u8) {
                // SAFETY: the pointer and length lie inside the live map, which the Buffer owns
                // a reference to.
                Some(ptr) => unsafe {
                    Buffer::from_custom_allocation(ptr, part.len(), Arc::clone(&self.map) as _)
                },
                None => Buffer::from_vec(Vec::<u8>::new()),
            }
        };
        for block in &self.dictionaries {
            check_buffers(ipc.as_slice(), block, true).map_err(|e| corrupt(&self.path, e))?;
            decoder.read_dictionary(block, &slice(block)).map_err(|e| corrupt(&self.path, e.to_string()))?;
        }
        let mut out = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            check_buffers(ipc.as_slice(), block, false).map_err(|e| corrupt(&self.path, e))?;
            if let Some(batch) = decoder
                .read_record_batch(block, &slice(block))
                .map_err(|e| corrupt(&self.path, e.to_string()))?
            {
                out.push(batch);
            }
        }
        let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
        if rows as u64 != self.meta.rows {
            return Err(corrupt(&self.path, format!("{rows} rows, metadata says {}", self.meta.rows)));
        }
        let out = match self.read_as.get() {
            Some(schema) => out
                .iter()
                .map(|batch| convert_strings(batch, schema))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(&self.path, format!("converting to the table's columns: {e}")))?,
            None => out,
        };
        out.into_iter()
            .map(own_dictionaries)
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(&self.path, format!("a dictionary: {e}")))
    }
}

/// `batch` with each column cast to `schema`'s type where it differs (the file's fields
/// otherwise: names, nullability and metadata as the file has them).
fn convert_strings(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let file = batch.schema();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for ((column, field), table) in batch.columns().iter().zip(file.fields()).zip(schema.fields()) {
        if column.data_type() == table.data_type() {
            columns.push(Arc::clone(column));
            fields.push(field.as_ref().clone());
        } else {
            columns.push(arrow::compute::cast(column, table.data_type())?);
            fields.push(field.as_ref().clone().with_data_type(table.data_type().clone()));
        }
    }
    let converted = Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, file.metadata().clone()));
    RecordBatch::try_new(converted, columns)
}

/// `batch` with each dictionary column whose dictionary (the file's) holds more values than
/// the batch has rows given a dictionary of its own, of the values its rows use: kernels that
/// work on a dictionary's values (comparisons, hashing, the row format of GROUP BY) then cost
/// what the batch holds, not what the file holds. A column of few distinct values keeps the
/// file's dictionary, in place.
fn own_dictionaries(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (c, column) in columns.iter_mut().enumerate() {
        let Some(array) = column.as_dictionary_opt::<Int32Type>() else { continue };
        if array.values().len() > batch.num_rows() {
            let mut own = Dictionary::new(schema.field(c).name());
            let keys = own.add(array)?;
            *column = own.finish(keys)?;
        }
    }
    RecordBatch::try_new(schema, columns)
}

/// Gives each dictionary column one dictionary for the whole file, as Arrow's IPC file format
/// holds one per column: the values the batches' rows use, each once, in the order first
/// used, and each batch's keys mapped into them.
fn share_dictionaries(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut columns: Vec<Vec<ArrayRef>> = batches.iter().map(|b| b.columns().to_vec()).collect();
    for (c, field) in schema.fields().iter().enumerate() {
        if !matches!(field.data_type(), DataType::Dictionary(..)) {
            continue;
        }
        let mut shared = Dictionary::new(field.name());
        let keys = batches
            .iter()
            .map(|batch| {
                let array = batch.column(c).as_dictionary_opt::<Int32Type>().ok_or_else(|| {
                    ArrowError::SchemaError(format!("column {:?} is not a dictionary", field.name()))
                })?;
                shared.add(array)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = shared.values();
        for (row, keys) in columns.iter_mut().zip(keys) {
            row[c] = Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(&values))?);
        }
    }
    batches
        .iter()
        .zip(columns)
        .map(|(batch, columns)| RecordBatch::try_new(batch.schema(), columns))
        .collect()
}

/// A dictionary of strings being built from the values other dictionary arrays' rows use, each
/// once, in the order first used.
struct Dictionary<'a> {
    column: &'a str,
    ids: HashMap<&'a str, i32>,
    values: StringBuilder,
}

impl<'a> Dictionary<'a> {
    fn new(column: &'a str) -> Self {
        Dictionary { column, ids: HashMap::new(), values: StringBuilder::new() }
    }

    /// `array`'s keys into this dictionary, its values added; a null value becomes a null key.
    fn add(&mut self, array: &'a DictionaryArray<Int32Type>) -> Result<Int32Array, ArrowError> {
        let local = array.values().as_string_opt::<i32>().ok_or_else(|| {
            ArrowError::SchemaError(format!("column {:?}'s dictionary does not hold strings", self.column))
        })?;
        // Each local value a row uses, mapped once: by a table as long as the local dictionary
        // when it is no longer than the rows, else by a map of just the values used (a slice of
        // a file's dictionary).
        let mut dense = (local.len() <= array.len()).then(|| vec![None; local.len()]);
        let mut sparse: HashMap<usize, Option<i32>> = HashMap::new();
        let mut keys = Int32Builder::with_capacity(array.len());
        for key in array.keys().iter() {
            let Some(key) = key else {
                keys.append_null();
                continue;
            };
            let k = usize::try_from(key).ok().filter(|&k| k < local.len()).ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!("dictionary key {key} out of range"))
            })?;
            let seen = match &mut dense {
                Some(dense) => dense[k],
                None => sparse.get(&k).copied(),
            };
            let id = match seen {
                Some(id) => id,
                None => {
                    let id = if local.is_null(k) { None } else { Some(self.id(local.value(k))?) };
                    match &mut dense {
                        Some(dense) => dense[k] = Some(id),
                        None => {
                            sparse.insert(k, id);
                        }
                    }
                    id
                }
            };
            keys.append_option(id);
        }
        Ok(keys.finish())
    }

    /// The id of `value`, added if new.
    fn id(&mut self, value: &'a str) -> Result<i32, ArrowError> {
        if let Some(&id) = self.ids.get(value) {
            return Ok(id);
        }
        // Offsets are 32-bit: one dictionary holds at most 2 GiB of distinct values.
        if self.values.values_slice().len() + value.len() > i32::MAX as usize {
            return Err(ArrowError::InvalidArgumentError(format!(
                "column {:?} has over 2 GiB of distinct values in one segment, more than one dictionary holds: list it in tableIndexConfig.noDictionaryColumns, or lower the flush threshold",
                self.column
            )));
        }
        let id = i32::try_from(self.ids.len())
            .map_err(|_| ArrowError::InvalidArgumentError("too many distinct values".into()))?;
        self.values.append_value(value);
        self.ids.insert(value, id);
        Ok(id)
    }

    fn values(&mut self) -> ArrayRef {
        Arc::new(self.values.finish())
    }

    /// One array of `keys` over this dictionary.
    fn finish(mut self, keys: Int32Array) -> Result<ArrayRef, ArrowError> {
        Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(keys, self.values())?))
    }
}

/// Checks that every buffer of a batch message lies inside the batch's body (Arrow's reader
/// slices them without asking). `block` lies inside `ipc` (checked at open).
fn check_buffers(ipc: &[u8], block: &Block, dictionary: bool) -> Result<(), String> {
    let start = block.offset() as usize;
    let metadata = &ipc[start..start + block.metaDataLength() as usize];
    // The continuation marker and the length, or (before Arrow 0.15) the length alone.
    let flatbuffer = match metadata {
        [0xff, 0xff, 0xff, 0xff, _, _, _, _, rest @ ..] => rest,
        [_, _, _, _, rest @ ..] => rest,
        _ => return Err("an IPC block's metadata is too short".into()),
    };
    let message =
        arrow::ipc::root_as_message(flatbuffer).map_err(|e| format!("an IPC block's metadata: {e}"))?;
    let batch = if dictionary {
        message.header_as_dictionary_batch().and_then(|d| d.data())
    } else {
        message.header_as_record_batch()
    }
    .ok_or("an IPC block is not the batch the footer says")?;
    let body = i128::from(block.bodyLength());
    for b in batch.buffers().into_iter().flatten() {
        if b.offset() < 0 || b.length() < 0 || i128::from(b.offset()) + i128::from(b.length()) > body {
            return Err(format!(
                "an IPC buffer ({} bytes at {}) lies outside its batch's body ({body} bytes)",
                b.length(),
                b.offset()
            ));
        }
    }
    if batch.length() < 0 || batch.nodes().into_iter().flatten().any(|n| n.length() < 0 || n.null_count() < 0)
    {
        return Err("an IPC batch has a negative length".into());
    }
    Ok(())
}

/// Removes a leftover `*.seg.tmp` (a seal interrupted by a crash).
pub fn is_temporary(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(&format!(".{EXTENSION}.tmp")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    fn dictionary(keys: Vec<Option<i32>>, values: Vec<Option<&str>>) -> ArrayRef {
        let values: ArrayRef = Arc::new(arrow::array::StringArray::from(values));
        Arc::new(DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), values).unwrap())
    }

    fn plain(array: &ArrayRef) -> Vec<Option<String>> {
        let strings = arrow::compute::cast(array, &DataType::Utf8).unwrap();
        strings.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
    }

    /// Batches with dictionaries of their own, null keys and a null value among them, share one
    /// dictionary of the values their rows use, each once; every row reads as before, a null as
    /// a null; a batch of a dictionary larger than itself gets its own of what it uses.
    #[test]
    fn batches_share_one_dictionary_and_a_small_batch_of_a_large_one_gets_its_own() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )]));
        let batches: Vec<RecordBatch> = [
            dictionary(
                vec![Some(0), None, Some(2), Some(0), Some(3)],
                vec![Some("b"), Some("unused"), Some("a"), None],
            ),
            dictionary(vec![Some(1), Some(0), Some(1)], vec![Some("c"), Some("a")]),
        ]
        .into_iter()
        .map(|c| RecordBatch::try_new(Arc::clone(&schema), vec![c]).unwrap())
        .collect();
        let shared = share_dictionaries(&schema, batches.clone()).unwrap();
        for (before, after) in batches.iter().zip(&shared) {
            assert_eq!(plain(before.column(0)), plain(after.column(0)));
        }
        let values: Vec<&ArrayRef> =
            shared.iter().map(|b| b.column(0).as_dictionary::<Int32Type>().values()).collect();
        assert!(Arc::ptr_eq(values[0], values[1]), "one dictionary");
        assert_eq!(plain(values[0]), vec![Some("b".into()), Some("a".into()), Some("c".into())]);
        assert_eq!(shared[0].column(0).null_count(), 2, "the null key and the null value's row");

        // Two rows of a three-value dictionary: a dictionary of their own, of the two they use.
        let small = RecordBatch::try_new(Arc::clone(&schema), vec![shared[1].column(0).slice(0, 2)]).unwrap();
        let own = own_dictionaries(small.clone()).unwrap();
        assert_eq!(own.column(0).as_dictionary::<Int32Type>().values().len(), 2);
        assert_eq!(plain(own.column(0)), plain(small.column(0)));
    }
}
