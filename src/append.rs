//! Tables an app feeds ([`crate::Engine::append`]): the records go to the table's append log, a
//! durable, checksummed file of batches, and the table reads that log as its stream, through
//! the same ingest loop as a Kinesis shard (decode, transform, seal, commit).
//!
//! The log is a sequence of files `<first sequence number>.log` in the table's `append/`
//! directory. Each holds frames, one per `append` call: a header (magic, payload length, the
//! payload's xxh3 checksum) and the payload (the first record's sequence number, the arrival
//! time, the records). A frame is written and fsynced before `append` returns, and readers see
//! it only then. At open, a torn frame at the end of the last file (a crash during a write) is
//! cut off: a batch is in the log whole or not at all. Sequence numbers count up from 1 and
//! continue after the table's committed checkpoint, so that a log lost with its directory
//! (a table restored from the deep store) never reuses a committed number.
//!
//! Files whose records are all committed (sealed into segments) are deleted when the log moves
//! on to a new file; the records after the last commit are read again after a restart.

use crate::error::{Error, io_error};
use bytes::Bytes;
use shoal_segment::durable;
use shoal_stream::metrics::StreamMetrics;
use shoal_stream::source::Control;
use shoal_stream::{
    Checkpoint, Record, ResumeState, SequenceNumber, ShardEvent, ShardReader, Source, SourceHandle,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The one shard of a table an app feeds.
pub const APPEND_SHARD: &str = "append";
/// The log's directory inside the table's.
pub(crate) const LOG_DIR: &str = "append";
/// A new file starts once the current one is this large.
const FILE_LIMIT: u64 = 64 << 20;
/// The most bytes one `append` call may carry.
pub(crate) const BATCH_LIMIT: usize = 256 << 20;
const MAGIC: u32 = 0x5348_4150; // "SHAP"
const HEADER: usize = 16;
/// Records per event handed to the ingest loop.
const EVENT_RECORDS: usize = 10_000;

/// The outcome of [`crate::Engine::append`]: where the records are in the table's log. They
/// are durable; [`Appended::queryable`] waits until queries see them.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The table.
    pub table: String,
    /// How many records were appended.
    pub records: usize,
    /// The sequence number of the first record (None when no record was given).
    pub first: Option<u64>,
    /// The sequence number of the last one.
    pub last: Option<u64>,
    pub(crate) progress: Option<watch::Receiver<u64>>,
}

impl Appended {
    /// Waits until the table's ingest loop has taken the records: from then on every query
    /// sees their rows (a record that cannot be decoded is counted and skipped, as from a
    /// stream). While the table's consumption is paused this waits for the resume; it fails
    /// (`NoSuchTable`) when the table is dropped or the engine shut down first, the records
    /// staying durable in the log of a table that was not dropped.
    pub async fn queryable(&self) -> Result<(), Error> {
        let (Some(last), Some(progress)) = (self.last, &self.progress) else { return Ok(()) };
        let mut progress = progress.clone();
        let table = &self.table;
        progress
            .wait_for(|&done| done >= last)
            .await
            .map(|_| ())
            .map_err(|_| Error::NoSuchTable(table.clone()))
    }
}

struct LogState {
    /// The files, in order, with their first sequence numbers.
    files: Vec<(u64, PathBuf)>,
    /// The file being written, and its length.
    current: Option<(File, u64)>,
    next: u64,
    /// A failed fsync leaves the file's state unknown: nothing more is written to it until the
    /// table is opened again.
    broken: Option<String>,
    /// The table stopped (dropped, shut down): nothing more is written.
    closed: bool,
}

/// A table's append log.
pub(crate) struct AppendLog {
    table: String,
    dir: PathBuf,
    state: Mutex<LogState>,
    /// The last durable sequence number (0: none).
    durable: watch::Sender<u64>,
}

impl std::fmt::Debug for AppendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendLog").field("dir", &self.dir).finish()
    }
}

/// Whether the bad frame at `at` is the torn end of a write a crash cut short: it is the last
/// thing in the file (its header cut off, its length running to or past the end), or only
/// zeros follow (space the file system allocated before the data reached it).
fn torn_tail(file: &mut File, at: u64, size: u64) -> std::io::Result<bool> {
    let rest = size - at;
    if rest < HEADER as u64 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(at))?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as u64;
    if HEADER as u64 + len >= rest {
        return Ok(true);
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(at))?;
    file.read_to_end(&mut tail)?;
    Ok(tail.iter().all(|b| *b == 0))
}

/// One frame read back.
struct Frame {
    first: u64,
    arrival_ms: i64,
    records: Vec<Bytes>,
    /// The frame's length in the file.
    len: u64,
}

fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// Reads the frame at the reader's position: None at a clean end of file, Err(reason) for a
/// torn or damaged frame.
fn read_frame(file: &mut impl Read) -> std::io::Result<Result<Option<Frame>, String>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = file.read(&mut header[got..])?;
        if n == 0 {
            return Ok(if got == 0 { Ok(None) } else { Err("a frame header is cut short".into()) });
        }
        got += n;
    }
    let magic = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let checksum = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return Ok(Err("a frame does not start with the log's magic number".into()));
    }
    if !(20..=BATCH_LIMIT + 20).contains(&len) {
        return Ok(Err(format!("a frame claims an impossible length ({len} bytes)")));
    }
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = file.read(&mut payload[got..])?;
        if n == 0 {
            return Ok(Err("a frame is cut short".into()));
        }
        got += n;
    }
    if xxhash_rust::xxh3::xxh3_64(&payload) != checksum {
        return Ok(Err("a frame's checksum does not match".into()));
    }
    let payload = Bytes::from(payload);
    let first = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
    let arrival_ms = i64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(payload[16..20].try_into().expect("4 bytes")) as usize;
    let mut at = 20;
    let mut records = Vec::with_capacity(count.min(len / 4));
    for _ in 0..count {
        let Some(size) = payload.get(at..at + 4) else {
            return Ok(Err("a frame's records overrun it".into()));
        };
        let size = u32::from_le_bytes(size.try_into().expect("4 bytes")) as usize;
        at += 4;
        if at + size > payload.len() {
            return Ok(Err("a frame's records overrun it".into()));
        }
        records.push(payload.slice(at..at + size));
        at += size;
    }
    if at != payload.len() || first == 0 {
        return Ok(Err("a frame's records do not fill it".into()));
    }
    Ok(Ok(Some(Frame { first, arrival_ms, records, len: (HEADER + len) as u64 })))
}

fn encode_frame(first: u64, arrival_ms: i64, records: &[Bytes]) -> Vec<u8> {
    let size: usize = 20 + records.iter().map(|r| 4 + r.len()).sum::<usize>();
    let mut payload = Vec::with_capacity(size);
    payload.extend_from_slice(&first.to_le_bytes());
    payload.extend_from_slice(&arrival_ms.to_le_bytes());
    payload.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        payload.extend_from_slice(&(r.len() as u32).to_le_bytes());
        payload.extend_from_slice(r);
    }
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&MAGIC.to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

impl AppendLog {
    /// Opens the log in `table_dir`: deletes the files wholly at or before `keep_after` (the
    /// table's committed checkpoint, or earlier while a lost segment still needs its records
    /// read again), checks every frame of the others, and cuts a torn last frame (a crash
    /// during its write: never acknowledged) off the last file. Damage anywhere else refuses
    /// the open: acknowledged batches are never cut away.
    pub(crate) fn open(table: &str, table_dir: &Path, keep_after: u64) -> Result<AppendLog, Error> {
        let dir = table_dir.join(LOG_DIR);
        durable::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()).filter(|f| *f > 0) {
                Some(first) => files.push((first, path)),
                None => {
                    tracing::warn!(file = %path.display(), "an unknown file in an append log is left alone")
                }
            }
        }
        files.sort();
        // A file whose successor starts at or before keep_after + 1 holds only records that are
        // no longer needed: it goes unread.
        while files.len() > 1 && files[1].0 <= keep_after + 1 {
            let (_, path) = files.remove(0);
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
        let mut next = files.first().map_or(1, |f| f.0);
        let count = files.len();
        for (i, (first, path)) in files.iter().enumerate() {
            if *first != next {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    reason: format!("the append log jumps from sequence number {} to {first}", next - 1),
                });
            }
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, e))?;
            let size = file.metadata().map_err(|e| io_error(path, e))?.len();
            let mut reader = std::io::BufReader::new(&mut file);
            let mut good = 0u64;
            loop {
                match read_frame(&mut reader).map_err(|e| io_error(path, e))? {
                    Ok(None) => break,
                    Ok(Some(frame)) if frame.first == next => {
                        next += frame.records.len() as u64;
                        good += frame.len;
                    }
                    Ok(Some(frame)) => {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            reason: format!(
                                "a frame starts at sequence number {} where {next} was due",
                                frame.first
                            ),
                        });
                    }
                    Err(reason) => {
                        drop(reader);
                        if i + 1 < count
                            || !torn_tail(&mut file, good, size).map_err(|e| io_error(path, e))?
                        {
                            return Err(Error::Corrupt {
                                path: path.clone(),
                                reason: format!(
                                    "{reason} at byte {good}, with acknowledged batches after it"
                                ),
                            });
                        }
                        // The last write, cut short by a crash: its batch was never
                        // acknowledged, and it goes.
                        tracing::warn!(table, file = %path.display(), offset = good, reason, "cutting a torn batch off the append log's end");
                        file.set_len(good).map_err(|e| io_error(path, e))?;
                        file.sync_all().map_err(|e| io_error(path, e))?;
                        break;
                    }
                }
            }
        }
        if next <= keep_after + 1 {
            // Every record in the log is committed: it starts again, empty, after them (also
            // when it was lost with its directory, so that no committed number is reused).
            for (_, path) in files.drain(..) {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        let next = next.max(keep_after + 1);
        Ok(AppendLog {
            table: table.to_string(),
            dir,
            state: Mutex::new(LogState { files, current: None, next, broken: None, closed: false }),
            durable: watch::Sender::new(next - 1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `records` as one batch and fsyncs it; returns the first and last sequence
    /// numbers. Blocking.
    pub(crate) fn append(&self, records: &[Bytes], arrival_ms: i64) -> Result<(u64, u64), Error> {
        assert!(!records.is_empty(), "an empty batch is not written");
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(Error::NoSuchTable(self.table.clone()));
        }
        if let Some(reason) = &state.broken {
            return Err(Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(format!(
                    "the append log failed to sync earlier ({reason}): open the engine again to append"
                )),
            });
        }
        let first = state.next;
        let last = first + records.len() as u64 - 1;
        if state.current.as_ref().is_none_or(|(_, len)| *len >= FILE_LIMIT) {
            self.roll(state, first)?;
        }
        let frame = encode_frame(first, arrival_ms, records);
        let (file, len) = state.current.as_mut().expect("rolled above");
        let path = self.dir.join(file_name(state.files.last().map_or(first, |f| f.0)));
        if let Err(e) = file.write_all(&frame) {
            // Nothing acknowledged is lost: cut the partial frame off and stay usable.
            if file.set_len(*len).and_then(|()| file.seek(SeekFrom::Start(*len)).map(|_| ())).is_err() {
                state.broken = Some(e.to_string());
            }
            return Err(io_error(&path, e));
        }
        if let Err(e) = file.sync_data() {
            state.broken = Some(e.to_string());
            return Err(io_error(&path, e));
        }
        *len += frame.len() as u64;
        state.next = last + 1;
        // Under the lock: the mark only moves forward, in the order of the writes.
        self.durable.send_replace(last);
        drop(guard);
        Ok((first, last))
    }

    /// Stops all writing (the table stopped); a write under way finishes first.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Starts a new file at `first`, durably.
    fn roll(&self, state: &mut LogState, first: u64) -> Result<(), Error> {
        let path = self.dir.join(file_name(first));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        durable::sync_dir(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        if state.files.last().is_none_or(|f| f.0 != first) {
            state.files.push((first, path));
        }
        state.current = Some((file, 0));
        Ok(())
    }

    /// Deletes the files whose records are all at or before `keep_after` (never the last
    /// one). A file that cannot be deleted stays, and so do the ones after it.
    pub(crate) fn trim(&self, keep_after: u64) {
        let mut state = self.lock();
        while state.files.len() > 1 && state.files[1].0 <= keep_after + 1 {
            let path = &state.files[0].1;
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "a committed append log file could not be deleted");
                return;
            }
            state.files.remove(0);
        }
    }

    /// Whether the log still holds the record after `after` (or is at it: nothing is missing).
    fn holds_after(&self, after: u64) -> bool {
        let state = self.lock();
        match state.files.first() {
            Some((first, _)) => *first <= after + 1,
            None => after + 1 >= state.next,
        }
    }

    /// The file holding sequence number `seq`, with its first number.
    fn file_for(&self, seq: u64) -> Option<(u64, PathBuf)> {
        let state = self.lock();
        state.files.iter().rev().find(|(first, _)| *first <= seq).cloned()
    }
}

/// A reader's place in the log.
struct Cursor {
    log: Arc<AppendLog>,
    /// The next sequence number to hand out.
    next: u64,
    file: Option<(u64, std::io::BufReader<File>)>,
    /// The sequence number the open file's reader is at.
    at: u64,
}

impl Cursor {
    /// The records from `next` up to `durable` (at most about EVENT_RECORDS). Blocking.
    fn read(&mut self, durable: u64) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        let shard: Arc<str> = Arc::from(APPEND_SHARD);
        while self.next <= durable && out.len() < EVENT_RECORDS {
            if self.file.is_none() {
                let (first, path) = self
                    .log
                    .file_for(self.next)
                    .ok_or_else(|| format!("the append log no longer holds sequence number {}", self.next))?;
                let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                self.file = Some((first, std::io::BufReader::new(file)));
                self.at = first;
            }
            let (_, reader) = self.file.as_mut().expect("opened above");
            match read_frame(reader).map_err(|e| e.to_string())?? {
                Some(frame) => {
                    self.at = frame.first + frame.records.len() as u64;
                    for (i, data) in frame.records.into_iter().enumerate() {
                        let seq = frame.first + i as u64;
                        if seq < self.next {
                            continue;
                        }
                        out.push(Record {
                            shard_id: Arc::clone(&shard),
                            sequence_number: SequenceNumber::parse(&seq.to_string()).expect("digits"),
                            sub_sequence: None,
                            arrival_ms: frame.arrival_ms,
                            partition_key: String::new(),
                            data,
                        });
                        self.next = seq + 1;
                    }
                }
                // The end of this file: a durable record after it is in the next file, which
                // starts where this one ended.
                None => {
                    if self.log.file_for(self.at).is_none_or(|(first, _)| first != self.at) {
                        return Err(format!("the append log has no file starting at {}", self.at));
                    }
                    self.file = None;
                }
            }
        }
        Ok(out)
    }
}

fn sequence_of(checkpoint: &Checkpoint) -> u64 {
    checkpoint.sequence.as_str().parse().unwrap_or(0)
}

/// The source of a table an app feeds: its append log, as one shard that never ends.
pub(crate) struct AppendSource {
    pub(crate) log: Arc<AppendLog>,
}

impl AppendSource {
    fn spawn_reader(
        log: Arc<AppendLog>,
        after: u64,
        events: mpsc::Sender<ShardEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tokio::spawn(async move {
            let mut durable = log.durable.subscribe();
            let mut cursor = Some(Cursor { log, next: after + 1, file: None, at: 0 });
            let mut backoff: Option<Duration> = None;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let target = *durable.borrow_and_update();
                let mut c = cursor.take().expect("put back below");
                let (c, read) = match tokio::task::spawn_blocking(move || {
                    let read = c.read(target);
                    (c, read)
                })
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(error = %e, "the append log's reader failed");
                        return;
                    }
                };
                cursor = Some(c);
                match read {
                    Ok(records) if !records.is_empty() => {
                        let behind =
                            records.last().map_or(0, |r| (shoal_stream::now_ms() - r.arrival_ms).max(0));
                        let event = ShardEvent::Records { records, millis_behind_latest: Some(behind) };
                        if events.send(event).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(_) => backoff = None,
                    Err(reason) => {
                        // A failed read (an I/O error, a frame a failed write left in this
                        // reader's buffer): the file is opened again after a pause that grows
                        // to 30 s, and the ingest loop waits; never a busy loop.
                        let pause = backoff.map_or(Duration::from_millis(100), |p: Duration| {
                            (p * 2).min(Duration::from_secs(30))
                        });
                        if backoff.is_none() || pause == Duration::from_secs(30) {
                            tracing::error!(reason, retry_in = ?pause, "the append log cannot be read now");
                        }
                        backoff = Some(pause);
                        if let Some(c) = cursor.as_mut() {
                            c.file = None;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.changed() => return,
                            _ = events.closed() => return,
                        }
                        continue;
                    }
                }
                tokio::select! {
                    _ = durable.changed() => {}
                    _ = shutdown.changed() => return,
                    _ = events.closed() => return,
                }
            }
        });
    }
}

impl Source for AppendSource {
    fn start(self: Box<Self>, resume: ResumeState) -> SourceHandle {
        let (readers_tx, readers_rx) = mpsc::channel(1);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let metrics = Arc::new(StreamMetrics::default());
        let log = self.log;
        let mut after = resume.checkpoints.get(APPEND_SHARD).map_or(0, sequence_of);
        tokio::spawn(async move {
            let (control_tx, mut control_rx) = mpsc::unbounded_channel();
            let mut shutdown_rx = shutdown.clone();
            loop {
                let (events_tx, events_rx) = mpsc::channel(4);
                AppendSource::spawn_reader(Arc::clone(&log), after, events_tx, shutdown.clone());
                let reader =
                    ShardReader::new(APPEND_SHARD.to_string(), Vec::new(), events_rx, control_tx.clone());
                if readers_tx.send(reader).await.is_err() {
                    return;
                }
                // A reader dropped before the end (an ingest task that failed) is handed out
                // again, after what it committed.
                loop {
                    tokio::select! {
                        _ = shutdown_rx.changed() => return,
                        msg = control_rx.recv() => match msg {
                            Some(Control::Released(_, committed)) => {
                                if let Some(c) = committed {
                                    after = after.max(sequence_of(&c));
                                }
                                break;
                            }
                            Some(Control::Finished(_)) => {}
                            None => return,
                        },
                    }
                }
            }
        });
        SourceHandle::new(readers_rx, metrics, shutdown_tx)
    }

    fn replay(self: Box<Self>, shard: &str, after: Option<Checkpoint>) -> Option<SourceHandle> {
        let after = after.as_ref().map_or(0, sequence_of);
        if shard != APPEND_SHARD || !self.log.holds_after(after) {
            return None;
        }
        let (events_tx, events_rx) = mpsc::channel(4);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        AppendSource::spawn_reader(self.log, after, events_tx, shutdown_rx);
        let (control_tx, _) = mpsc::unbounded_channel();
        let (readers_tx, readers_rx) = mpsc::channel(1);
        let reader = ShardReader::new(shard.to_string(), Vec::new(), events_rx, control_tx);
        readers_tx.try_send(reader).ok()?;
        Some(SourceHandle::new(readers_rx, Arc::new(StreamMetrics::default()), shutdown_tx))
    }
}

/// The source a [`crate::KinesisSources`] gives a table that has no stream: nothing to read.
pub(crate) struct NoSource;

impl Source for NoSource {
    fn start(self: Box<Self>, _: ResumeState) -> SourceHandle {
        let (_, readers) = mpsc::channel(1);
        let (shutdown, _) = watch::channel(false);
        SourceHandle::new(readers, Arc::new(StreamMetrics::default()), shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(texts: &[&str]) -> Vec<Bytes> {
        texts.iter().map(|t| Bytes::copy_from_slice(t.as_bytes())).collect()
    }

    fn read_all(log: &Arc<AppendLog>, after: u64) -> Vec<(u64, String)> {
        let mut c = Cursor { log: Arc::clone(log), next: after + 1, file: None, at: 0 };
        let durable = *log.durable.borrow();
        let mut out = Vec::new();
        loop {
            let got = c.read(durable).unwrap();
            if got.is_empty() {
                return out;
            }
            out.extend(got.into_iter().map(|r| {
                (r.sequence_number.as_str().parse().unwrap(), String::from_utf8(r.data.to_vec()).unwrap())
            }));
        }
    }

    #[test]
    fn batches_are_numbered_read_back_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AppendLog::open("t", dir.path(), 0).unwrap());
        assert_eq!(log.append(&batch(&["a", "b"]), 1).unwrap(), (1, 2));
        assert_eq!(log.append(&batch(&["c"]), 2).unwrap(), (3, 3));
        assert_eq!(read_all(&log, 0), vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]);
        assert_eq!(read_all(&log, 2), vec![(3, "c".into())]);
        drop(log);
        let log = Arc::new(AppendLog::open("t", dir.path(), 0).unwrap());
        assert_eq!(log.append(&batch(&["d"]), 3).unwrap(), (4, 4));
        assert_eq!(read_all(&log, 1).len(), 3);
    }

    #[test]
    fn a_torn_last_batch_is_cut_off_whole_and_a_damaged_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppendLog::open("t", dir.path(), 0).unwrap();
        log.append(&batch(&["a"]), 1).unwrap();
        log.append(&batch(&["b", "c"]), 1).unwrap();
        drop(log);
        let path = dir.path().join(LOG_DIR).join(file_name(1));
        let len = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the second batch's write.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let log = Arc::new(AppendLog::open("t", dir.path(), 0).unwrap());
        assert_eq!(read_all(&log, 0), vec![(1, "a".into())]);
        // The numbers of the lost batch are given out again: it was never acknowledged.
        assert_eq!(log.append(&batch(&["x"]), 1).unwrap(), (2, 2));
        drop(log);
        // A flipped byte inside an acknowledged batch that is not the last: refused.
        let log = AppendLog::open("t", dir.path(), 0).unwrap();
        log.append(&batch(&["y"]), 1).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 21] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let e = AppendLog::open("t", dir.path(), 0).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn damage_inside_the_last_file_is_refused_and_a_zeroed_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppendLog::open("t", dir.path(), 0).unwrap();
        for text in ["a", "b", "c"] {
            log.append(&batch(&[text]), 1).unwrap();
        }
        drop(log);
        let path = dir.path().join(LOG_DIR).join(file_name(1));
        let good = std::fs::read(&path).unwrap();
        // A flipped byte in the middle batch of the last file: acknowledged batches follow it.
        let frame = good.len() / 3;
        let mut bytes = good.clone();
        bytes[frame + HEADER + 21] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = AppendLog::open("t", dir.path(), 0).unwrap_err().to_string();
        assert!(e.contains("acknowledged batches after it"), "{e}");
        // A last batch whose space was allocated but never written (zeros): cut off.
        let mut bytes = good.clone();
        bytes[2 * frame..].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let log = Arc::new(AppendLog::open("t", dir.path(), 0).unwrap());
        assert_eq!(read_all(&log, 0), vec![(1, "a".into()), (2, "b".into())]);
        // A closed log takes nothing more.
        log.close();
        assert!(matches!(log.append(&batch(&["d"]), 1), Err(Error::NoSuchTable(_))));
    }

    #[test]
    fn committed_files_are_deleted_and_numbering_continues_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppendLog::open("t", dir.path(), 0).unwrap();
        log.append(&batch(&["a"]), 1).unwrap();
        {
            let mut state = log.lock();
            state.current.as_mut().unwrap().1 = FILE_LIMIT; // the next batch starts a file
        }
        log.append(&batch(&["b"]), 1).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join(LOG_DIR)).unwrap().count(), 2);
        log.trim(0);
        assert_eq!(std::fs::read_dir(dir.path().join(LOG_DIR)).unwrap().count(), 2);
        log.trim(1);
        assert_eq!(std::fs::read_dir(dir.path().join(LOG_DIR)).unwrap().count(), 1);
        let log = Arc::new(log);
        assert_eq!(read_all(&log, 1), vec![(2, "b".into())]);
        assert!(!log.holds_after(0));
        drop(log);
        // The log is gone (a restored table): numbers go on after the committed checkpoint.
        std::fs::remove_dir_all(dir.path().join(LOG_DIR)).unwrap();
        let log = AppendLog::open("t", dir.path(), 7).unwrap();
        assert_eq!(log.append(&batch(&["c"]), 1).unwrap(), (8, 8));
    }
}
