//! One partition of a topic: segments on disk, a writer thread doing group commit, readers.
//!
//! The writer thread owns all writes. Appends queue up while it syncs; it then takes every
//! queued append, encodes them as one record batch, writes it with one call and syncs once (the
//! group commit). Readers see a record only once the group holding it is durable, so nothing a
//! reader saw can be lost to a crash.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::format::{self, BatchHeader, FormatError};
use super::storage::{Storage, StorageFile};
use super::{Ack, LogError, ReadBatch, SyncPolicy, TopicConfig};
use crate::event::{self, Batch, ndjson};

/// How often an idle writer applies retention by age (it also runs after every roll).
const RETENTION_CHECK: Duration = Duration::from_secs(60);
/// Largest group written at once; more waits for the next group.
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Bytes of an offset-index entry: relative offset u32, position u32.
const INDEX_ENTRY: usize = 8;
/// Bytes of a time-index entry: timestamp i64, relative offset u32.
const TIME_ENTRY: usize = 12;

pub(crate) fn segment_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// `(relative offset, position)` of some batch starts, ascending.
type OffsetIndex = Vec<(u32, u32)>;
/// `(largest timestamp so far, relative offset)`, when it grows.
type TimeIndex = Vec<(i64, u32)>;

/// One segment: a `.log` file and its sparse indexes (held in memory, written at roll).
struct Segment {
    base: u64,
    file: Arc<dyn StorageFile>,
    /// Durable (visible) bytes.
    size: u64,
    /// Offset after the last durable record.
    next: u64,
    max_timestamp: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    /// Wall time of the first append, for roll by age.
    created: Option<Instant>,
}

impl Segment {
    /// Records a batch written at `pos` in the indexes.
    fn note_batch(&mut self, h: &BatchHeader, pos: u64, interval: u64) {
        let rel = (h.base_offset - self.base) as u32;
        if self.index.is_empty() || self.bytes_since_index >= interval {
            self.index.push((rel, pos as u32));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            if self.time_index.last().is_none_or(|&(_, r)| rel > r) {
                self.time_index.push((h.max_timestamp, rel));
            }
        }
        self.next = h.next_offset();
    }

    /// Position of the last indexed batch starting at or before `offset`.
    fn position_for(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base);
        let i = self.index.partition_point(|&(r, _)| u64::from(r) <= rel);
        if i == 0 {
            0
        } else {
            u64::from(self.index[i - 1].1)
        }
    }
}

/// The partition's segments and whether it can still write: what readers and the writer share,
/// behind one lock.
pub(crate) struct Segments {
    segments: Vec<Segment>,
    /// Set when the partition can no longer write (a failed sync that could not be undone).
    failed: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) segments: RwLock<Segments>,
    /// Bumped (with the end offset) whenever new records become visible.
    notify: (Mutex<u64>, Condvar),
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: TopicConfig,
    name: String,
    /// Successful data syncs, for metrics.
    pub(crate) syncs: AtomicU64,
    /// The newest acknowledged appends, as they were submitted, so that readers following the
    /// end (pipeline stages) get them without reading and decoding the file.
    tail: Mutex<Tail>,
}

/// Bytes (keys, values, headers) of recent appends kept in memory per partition.
const TAIL_BYTES: usize = 8 << 20;
/// And at most this many appends (each has a fixed cost beside its bytes: many appends of one
/// small event each would otherwise be hundreds of thousands).
const TAIL_BATCHES: usize = 16 << 10;

/// Recent acknowledged appends: consecutive, the last one ending at the partition's end.
#[derive(Default)]
struct Tail {
    batches: VecDeque<ReadBatch>,
    bytes: usize,
}

fn batch_bytes(b: &Batch) -> usize {
    b.values.data.len() + b.keys.data.len() + b.header_names.data.len() + b.header_values.data.len()
}

impl Tail {
    fn push(&mut self, rb: ReadBatch) {
        self.bytes += batch_bytes(&rb.batch);
        self.batches.push_back(rb);
        while (self.bytes > TAIL_BYTES || self.batches.len() > TAIL_BATCHES)
            && self.batches.len() > 1
        {
            let old = self.batches.pop_front().expect("more than one");
            self.bytes -= batch_bytes(&old.batch);
        }
    }

    /// The batches holding offsets `from..end`, about `max_bytes` of them, if the tail reaches
    /// back to `from`.
    fn read(&self, from: u64, end: u64, max_bytes: usize) -> Option<Vec<ReadBatch>> {
        let first = self.batches.front()?;
        if first.base_offset > from {
            return None;
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        // The batches are consecutive: the first one holding `from` is found by bisection, not
        // by a walk from the oldest (a reader at the end reads after every append).
        let start = self
            .batches
            .partition_point(|rb| rb.base_offset + rb.batch.timestamps.len() as u64 <= from);
        for rb in self.batches.range(start..) {
            if rb.base_offset >= end || (!out.is_empty() && budget == 0) {
                break;
            }
            budget = budget.saturating_sub(batch_bytes(&rb.batch));
            out.push(rb.clone());
        }
        Some(out)
    }
}

enum Request {
    Append(Box<Batch>, oneshot::Sender<Result<Ack, LogError>>),
    Roll(oneshot::Sender<Result<(), LogError>>),
    Retention(i64, oneshot::Sender<Result<usize, LogError>>),
}

/// A partition: what its readers and its writer share, plus the channel to its writer thread.
pub(crate) struct Partition {
    pub(crate) shared: Arc<Shared>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> LogError {
    move |source| LogError::Io { context, source }
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir`.
    /// With `sync` `None` the partition is opened read-only: nothing is repaired or written, and
    /// reads pick up what the process that owns the log appends (see [`Partition::refresh`]).
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        name: String,
        config: TopicConfig,
        sync: Option<SyncPolicy>,
    ) -> Result<Partition, LogError> {
        if sync.is_some() {
            storage
                .create_dir_all(&dir)
                .map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let mut bases: Vec<u64> = storage
            .list(&dir)
            .map_err(io_err(format!("listing {}", dir.display())))?
            .iter()
            .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
            .collect();
        bases.sort_unstable();
        let mut segments = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            segments.push(recover_segment(
                &*storage,
                &dir,
                &name,
                base,
                last,
                sync.is_some(),
                &config,
            )?);
        }
        if segments.is_empty() {
            segments.push(new_segment(&*storage, &dir, 0)?);
        }
        let end = segments.last().map_or(0, |s| s.next);
        let shared = Arc::new(Shared {
            segments: RwLock::new(Segments {
                segments,
                failed: None,
            }),
            notify: (Mutex::new(end), Condvar::new()),
            storage,
            dir,
            config,
            name,
            syncs: AtomicU64::new(0),
            tail: Mutex::new(Tail::default()),
        });
        let Some(sync) = sync else {
            return Ok(Partition {
                shared,
                tx: None,
                writer: None,
            });
        };
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name(format!("flowgate-log-{}", shared.name))
            .spawn(move || Writer::new(writer_shared, sync).run(rx))
            .map_err(io_err("starting the log writer thread".into()))?;
        Ok(Partition {
            shared,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    fn read_only(&self) -> bool {
        self.tx.is_none()
    }

    /// For a read-only partition: picks up batches and segments the owning process added since,
    /// and forgets segments it deleted. Batches count once complete and valid (written, not
    /// necessarily synced yet). A no-op for the owner, which knows its own writes.
    fn refresh(&self) -> Result<(), LogError> {
        if !self.read_only() {
            return Ok(());
        }
        let sh = &self.shared;
        let mut bases: Vec<u64> = sh
            .storage
            .list(&sh.dir)
            .map_err(io_err(format!("listing {}", sh.dir.display())))?
            .iter()
            .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
            .collect();
        bases.sort_unstable();
        let mut st = sh.segments.write().unwrap_or_else(|p| p.into_inner());
        let keep_from = bases.first().copied().unwrap_or(0);
        if st.segments.len() > 1 {
            st.segments.retain(|s| s.base >= keep_from);
        }
        loop {
            let last = st.segments.last_mut().expect("a partition has a segment");
            let path = sh.dir.join(segment_name(last.base, "log"));
            let len = last
                .file
                .len()
                .map_err(io_err(format!("reading {}", path.display())))?;
            if len > last.size {
                // An incomplete batch at the end is one being written: it stops the scan.
                scan_tail(last, len, &path, &sh.config)?;
            }
            let last_base = last.base;
            let Some(&next) = bases.iter().find(|&&b| b > last_base) else {
                break;
            };
            let seg = recover_segment(
                &*sh.storage,
                &sh.dir,
                &sh.name,
                next,
                true,
                false,
                &sh.config,
            )?;
            st.segments.push(seg);
        }
        let end = st.segments.last().map_or(0, |s| s.next);
        drop(st);
        let (lock, cv) = &sh.notify;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = end;
        cv.notify_all();
        Ok(())
    }

    fn send(&self, req: Request) -> Result<(), LogError> {
        let Some(tx) = &self.tx else {
            return Err(LogError::ReadOnly(self.shared.name.clone()));
        };
        tx.send(req).map_err(|_| LogError::Closed)
    }

    /// Queues an append; the receiver yields the acknowledgement once the records are durable.
    pub(crate) fn submit(
        &self,
        batch: Batch,
    ) -> Result<oneshot::Receiver<Result<Ack, LogError>>, LogError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Append(Box::new(batch), tx))?;
        Ok(rx)
    }

    pub(crate) fn roll(&self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Roll(tx))?;
        rx.blocking_recv().map_err(|_| LogError::Closed)?
    }

    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Retention(now_ms, tx))?;
        rx.blocking_recv().map_err(|_| LogError::Closed)?
    }

    /// Successful syncs so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// `(start offset, end offset, bytes, segments)`.
    pub(crate) fn watermarks(&self) -> (u64, u64, u64, usize) {
        if let Err(e) = self.refresh() {
            tracing::warn!(topic = %self.shared.name, error = %e, "could not pick up new log data");
        }
        let st = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let start = st.segments.first().map_or(0, |s| s.base);
        let end = st.segments.last().map_or(0, |s| s.next);
        let bytes = st.segments.iter().map(|s| s.size).sum();
        (start, end, bytes, st.segments.len())
    }

    /// Reads whole batches holding offsets from `from`, up to about `max_bytes` (at least one
    /// batch when there is one).
    pub(crate) fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<ReadBatch>, LogError> {
        let (start, end, _, _) = self.watermarks();
        if from < start || from > end {
            return Err(LogError::OffsetOutOfRange {
                topic: self.shared.name.clone(),
                requested: from,
                start,
                end,
            });
        }
        if from == end {
            return Ok(Vec::new());
        }
        if let Some(out) = self
            .shared
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(from, end, max_bytes)
        {
            return Ok(out);
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut at = from;
        while at < end && (out.is_empty() || budget > 0) {
            let (file, pos, size) = {
                let st = self
                    .shared
                    .segments
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let i = st
                    .segments
                    .partition_point(|s| s.base <= at)
                    .saturating_sub(1);
                let Some(seg) = st.segments.get(i) else { break };
                if at >= seg.next {
                    // `at` is the end of this segment: continue in the next one.
                    match st.segments.get(i + 1) {
                        Some(next) => (next.file.clone(), 0, next.size),
                        None => break,
                    }
                } else {
                    (seg.file.clone(), seg.position_for(at), seg.size)
                }
            };
            let before = out.len();
            let read = self.read_segment(&*file, pos, size, at, &mut budget, &mut out)?;
            if out.len() == before {
                break;
            }
            at = read;
        }
        Ok(out)
    }

    /// Reads batches from one segment file starting at `pos`, skipping those before `from`.
    /// Returns the offset after the last batch read.
    fn read_segment(
        &self,
        file: &dyn StorageFile,
        mut pos: u64,
        size: u64,
        from: u64,
        budget: &mut usize,
        out: &mut Vec<ReadBatch>,
    ) -> Result<u64, LogError> {
        let mut next = from;
        let chunk = (*budget).clamp(64 << 10, 16 << 20) as u64;
        while pos < size && (out.is_empty() || *budget > 0) {
            let len = chunk.min(size - pos) as usize;
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, pos)
                .map_err(io_err(format!("reading {}", self.shared.name)))?;
            let mut at = 0;
            while at < buf.len() {
                let header = match format::check(&buf[at..]) {
                    Ok(h) => h,
                    Err(FormatError::Truncated { need, .. }) if at == 0 => {
                        // A batch larger than the chunk: read it whole.
                        buf = vec![0; need];
                        file.read_exact_at(&mut buf, pos)
                            .map_err(io_err(format!("reading {}", self.shared.name)))?;
                        continue;
                    }
                    Err(FormatError::Truncated { .. }) => break,
                    Err(e) => {
                        return Err(LogError::Corrupt {
                            topic: self.shared.name.clone(),
                            position: pos + at as u64,
                            reason: e.to_string(),
                        });
                    }
                };
                if header.next_offset() > from {
                    let (_, batch) = format::decode(&buf[at..]).map_err(|e| LogError::Corrupt {
                        topic: self.shared.name.clone(),
                        position: pos + at as u64,
                        reason: e.to_string(),
                    })?;
                    *budget = budget.saturating_sub(header.total_len);
                    out.push(ReadBatch {
                        base_offset: header.base_offset,
                        batch: Arc::new(batch),
                    });
                }
                next = header.next_offset();
                at += header.total_len;
                if *budget == 0 {
                    return Ok(next);
                }
            }
            if at == 0 {
                break;
            }
            pos += at as u64;
        }
        Ok(next)
    }

    /// The first offset whose record has a timestamp at or after `ts` (the end offset if none).
    pub(crate) fn offset_for_time(&self, ts: i64) -> Result<u64, LogError> {
        let (candidates, end) = {
            let st = self
                .shared
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let end = st.segments.last().map_or(0, |s| s.next);
            let first = st
                .segments
                .iter()
                .position(|s| s.max_timestamp >= ts && s.next > s.base);
            let Some(i) = first else { return Ok(end) };
            let seg = &st.segments[i];
            // Skip to the last time-index entry below `ts`: no record before it reaches `ts`.
            let k = seg.time_index.partition_point(|&(t, _)| t < ts);
            let from = if k == 0 {
                seg.base
            } else {
                seg.base + u64::from(seg.time_index[k - 1].1)
            };
            (from, end)
        };
        let mut at = candidates;
        while at < end {
            let batches = self.read(at, 1 << 20)?;
            if batches.is_empty() {
                break;
            }
            for rb in &batches {
                let cols = event::columns(&rb.batch).map_err(|e| LogError::Corrupt {
                    topic: self.shared.name.clone(),
                    position: 0,
                    reason: e.to_string(),
                })?;
                for (i, row) in cols.rows().enumerate() {
                    let offset = rb.base_offset + i as u64;
                    if offset >= at && row.timestamp >= ts {
                        return Ok(offset);
                    }
                }
                at = rb.base_offset + cols.len() as u64;
            }
        }
        Ok(end)
    }

    /// Waits until the end offset passes `offset` or `timeout` elapses; true if it did.
    pub(crate) fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        if self.read_only() {
            // Another process writes: look at the files every 50 ms.
            let until = Instant::now() + timeout;
            loop {
                if self.watermarks().1 > offset {
                    return true;
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        }
        let (lock, cv) = &self.shared.notify;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |end| *end <= offset)
            .unwrap_or_else(|p| p.into_inner());
        *guard > offset
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn new_segment(storage: &dyn Storage, dir: &Path, base: u64) -> Result<Segment, LogError> {
    let path = dir.join(segment_name(base, "log"));
    let file = storage
        .open(&path, true)
        .map_err(io_err(format!("creating {}", path.display())))?;
    storage
        .sync_dir(dir)
        .map_err(io_err(format!("syncing {}", dir.display())))?;
    Ok(Segment {
        base,
        file,
        size: 0,
        next: base,
        max_timestamp: i64::MIN,
        index: Vec::new(),
        time_index: Vec::new(),
        bytes_since_index: 0,
        created: None,
    })
}

/// Opens a segment. The last (active) one is scanned from its start: every batch's length, CRC
/// and offset is checked, and (with `repair`) the file is cut at the first bad one. Earlier
/// segments were synced before the roll that sealed them; their indexes are loaded (or rebuilt
/// if unusable) and only their tail past the last index entry is scanned.
fn recover_segment(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    base: u64,
    last: bool,
    repair: bool,
    config: &TopicConfig,
) -> Result<Segment, LogError> {
    let path = dir.join(segment_name(base, "log"));
    let file = storage
        .open(&path, false)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let len = file
        .len()
        .map_err(io_err(format!("reading {}", path.display())))?;
    let mut seg = Segment {
        base,
        file: file.clone(),
        size: 0,
        next: base,
        max_timestamp: i64::MIN,
        index: Vec::new(),
        time_index: Vec::new(),
        bytes_since_index: 0,
        created: None,
    };
    if !last && let Some((index, time_index)) = load_indexes(storage, dir, base, len) {
        seg.size = index.last().map_or(0, |&(_, p)| u64::from(p));
        seg.next = base + index.last().map_or(0, |&(r, _)| u64::from(r));
        seg.max_timestamp = time_index.last().map_or(i64::MIN, |&(t, _)| t);
        seg.index = index;
        seg.time_index = time_index;
        seg.index.pop(); // re-added by the scan below
        seg.bytes_since_index = config.index_interval_bytes;
    }
    let Some(reason) = scan_tail(&mut seg, len, &path, config)? else {
        return Ok(seg);
    };
    if !last {
        return Err(LogError::Corrupt {
            topic: name.to_owned(),
            position: seg.size,
            reason: format!("{reason} in sealed segment {}", path.display()),
        });
    }
    if repair {
        tracing::warn!(
            topic = name,
            segment = %path.display(),
            position = seg.size,
            bytes_cut = len - seg.size,
            reason,
            "recovery: truncating the log at the first invalid batch"
        );
        file.set_len(seg.size)
            .and_then(|_| file.sync_data())
            .map_err(io_err(format!("truncating {}", path.display())))?;
    }
    Ok(seg)
}

/// Adds the valid batches between `seg.size` and `len` to the segment; returns why it stopped
/// before `len`, if it did.
fn scan_tail(
    seg: &mut Segment,
    len: u64,
    path: &Path,
    config: &TopicConfig,
) -> Result<Option<String>, LogError> {
    let mut buf = vec![0; len.saturating_sub(seg.size) as usize];
    seg.file
        .read_exact_at(&mut buf, seg.size)
        .map_err(io_err(format!("reading {}", path.display())))?;
    let mut at = 0usize;
    let reason = loop {
        if at == buf.len() {
            break None;
        }
        match format::check(&buf[at..]) {
            Ok(h) if h.base_offset == seg.next && h.count > 0 => {
                seg.note_batch(&h, seg.size + at as u64, config.index_interval_bytes);
                at += h.total_len;
            }
            Ok(h) => {
                break Some(format!(
                    "batch at offset {} where {} was expected",
                    h.base_offset, seg.next
                ));
            }
            Err(FormatError::NewerVersion(v)) => {
                return Err(LogError::NewerFormat {
                    path: path.to_owned(),
                    version: v,
                });
            }
            Err(e) => break Some(e.to_string()),
        }
    };
    seg.size += at as u64;
    Ok(reason)
}

/// Loads a sealed segment's index files; `None` if missing or inconsistent (then rebuilt).
fn load_indexes(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    log_len: u64,
) -> Option<(OffsetIndex, TimeIndex)> {
    let read = |ext| super::storage::read_all(storage, &dir.join(segment_name(base, ext))).ok();
    let (idx, tidx) = (read("index")?, read("timeindex")?);
    if idx.len() % INDEX_ENTRY != 0 || tidx.len() % TIME_ENTRY != 0 {
        return None;
    }
    let index: OffsetIndex = idx
        .chunks_exact(INDEX_ENTRY)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().expect("4")),
                u32::from_le_bytes(c[4..].try_into().expect("4")),
            )
        })
        .collect();
    let time_index: TimeIndex = tidx
        .chunks_exact(TIME_ENTRY)
        .map(|c| {
            (
                i64::from_le_bytes(c[..8].try_into().expect("8")),
                u32::from_le_bytes(c[8..].try_into().expect("4")),
            )
        })
        .collect();
    let sorted = index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
    let inside = index.iter().all(|&(_, p)| u64::from(p) < log_len);
    (sorted && inside).then_some((index, time_index))
}

fn write_indexes(storage: &dyn Storage, dir: &Path, seg: &Segment) -> std::io::Result<()> {
    let mut idx = Vec::with_capacity(seg.index.len() * INDEX_ENTRY);
    for (r, p) in &seg.index {
        idx.extend_from_slice(&r.to_le_bytes());
        idx.extend_from_slice(&p.to_le_bytes());
    }
    let mut tidx = Vec::with_capacity(seg.time_index.len() * TIME_ENTRY);
    for (t, r) in &seg.time_index {
        tidx.extend_from_slice(&t.to_le_bytes());
        tidx.extend_from_slice(&r.to_le_bytes());
    }
    super::storage::write_atomic(storage, &dir.join(segment_name(seg.base, "index")), &idx)?;
    super::storage::write_atomic(
        storage,
        &dir.join(segment_name(seg.base, "timeindex")),
        &tidx,
    )
}

/// Appends written but not yet durable (interval policy), with their acknowledgements.
struct Unsynced {
    replies: Vec<(oneshot::Sender<Result<Ack, LogError>>, Ack)>,
    headers: Vec<(BatchHeader, u64)>,
    /// The appends written, for the tail once they are synced.
    batches: Vec<ReadBatch>,
}

/// The writer thread's own view: where the next write goes, ahead of what readers see.
struct Writer {
    shared: Arc<Shared>,
    sync: SyncPolicy,
    /// End of written data in the active segment, and the offset after it.
    written: u64,
    next: u64,
    unsynced: Unsynced,
    last_sync: Instant,
    buf: Vec<u8>,
}

impl Writer {
    fn new(shared: Arc<Shared>, sync: SyncPolicy) -> Self {
        let (written, next) = {
            let st = shared.segments.read().unwrap_or_else(|p| p.into_inner());
            let active = st.segments.last().expect("a partition has a segment");
            (active.size, active.next)
        };
        Writer {
            shared,
            sync,
            written,
            next,
            unsynced: Unsynced {
                replies: Vec::new(),
                headers: Vec::new(),
                batches: Vec::new(),
            },
            last_sync: Instant::now(),
            buf: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<Request>) {
        let mut last_retention = Instant::now();
        loop {
            // Wake for the next interval sync, or at least once per retention period.
            let mut wait = RETENTION_CHECK.saturating_sub(last_retention.elapsed());
            if let (SyncPolicy::Interval(d), false) = (self.sync, self.unsynced.replies.is_empty())
            {
                wait = wait.min(d.saturating_sub(self.last_sync.elapsed()));
            }
            let first = match rx.recv_timeout(wait) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if last_retention.elapsed() >= RETENTION_CHECK {
                last_retention = Instant::now();
                if let Err(e) = self.retention(ndjson::now_ms()) {
                    tracing::warn!(topic = %self.shared.name, error = %e, "retention failed");
                }
            }
            let mut group = Vec::new();
            let mut bytes = 0usize;
            let mut next_req = first;
            while let Some(req) = next_req.take() {
                match req {
                    Request::Append(batch, reply) => {
                        bytes += batch.values.data.len() + batch.keys.data.len() + 64;
                        group.push((*batch, reply));
                    }
                    Request::Roll(reply) => {
                        self.write_group(std::mem::take(&mut group));
                        let _ = reply.send(self.roll());
                    }
                    Request::Retention(now, reply) => {
                        self.write_group(std::mem::take(&mut group));
                        let _ = reply.send(self.retention(now));
                    }
                }
                if bytes < MAX_GROUP_BYTES {
                    next_req = rx.try_recv().ok();
                }
            }
            self.write_group(group);
            if let SyncPolicy::Interval(d) = self.sync
                && self.last_sync.elapsed() >= d
            {
                self.sync_unsynced();
            }
        }
        self.sync_unsynced();
    }

    fn fail_all(
        &self,
        group: Vec<(Batch, oneshot::Sender<Result<Ack, LogError>>)>,
        err: &LogError,
    ) {
        for (_, reply) in group {
            let _ = reply.send(Err(err.clone_shallow()));
        }
    }

    fn write_group(&mut self, group: Vec<(Batch, oneshot::Sender<Result<Ack, LogError>>)>) {
        let group: Vec<_> = group
            .into_iter()
            .filter_map(|(batch, reply)| {
                if batch.values.ends.is_empty() {
                    let _ = reply.send(Ok(Ack {
                        base_offset: self.next,
                        count: 0,
                    }));
                    None
                } else {
                    Some((batch, reply))
                }
            })
            .collect();
        if group.is_empty() {
            return;
        }
        if let Some(reason) = self.failed() {
            self.fail_all(
                group,
                &LogError::Failed {
                    topic: self.shared.name.clone(),
                    reason,
                },
            );
            return;
        }
        if let Err(e) = self.maybe_roll() {
            self.fail_all(group, &e);
            return;
        }
        let parts: Vec<_> = group.iter().map(|(b, _)| event::parts(b)).collect();
        self.buf.clear();
        let header = format::encode(self.next, &parts, &mut self.buf);
        let file = self.active_file();
        if let Err(source) = file.write_all_at(&self.buf, self.written) {
            // Take back whatever part of the write landed, so the file ends at a batch boundary.
            let _ = file.set_len(self.written);
            let err = LogError::Io {
                context: format!("appending to {}", self.shared.name),
                source,
            };
            tracing::error!(topic = %self.shared.name, error = %err, "append failed; nothing acknowledged");
            self.fail_all(group, &err);
            return;
        }
        let pos = self.written;
        self.written += header.total_len as u64;
        let mut base = self.next;
        self.next = header.next_offset();
        for (batch, reply) in group {
            let count = batch.values.ends.len() as u32;
            self.unsynced.batches.push(ReadBatch {
                base_offset: base,
                batch: Arc::new(batch),
            });
            self.unsynced.replies.push((
                reply,
                Ack {
                    base_offset: base,
                    count,
                },
            ));
            base += u64::from(count);
        }
        self.unsynced.headers.push((header, pos));
        if matches!(self.sync, SyncPolicy::Always | SyncPolicy::Never) {
            self.sync_unsynced();
        }
    }

    fn failed(&self) -> Option<String> {
        self.shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .clone()
    }

    fn active_file(&self) -> Arc<dyn StorageFile> {
        let st = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner());
        st.segments.last().expect("active segment").file.clone()
    }

    /// Syncs what was written (per the policy), then makes it visible and acknowledges it. On a
    /// failed sync nothing is acknowledged and the file is cut back to its last durable end.
    fn sync_unsynced(&mut self) {
        if self.unsynced.replies.is_empty() {
            return;
        }
        let file = self.active_file();
        let result = match self.sync {
            SyncPolicy::Never => Ok(()),
            _ => file.sync_data().inspect(|()| {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            }),
        };
        self.last_sync = Instant::now();
        let replies = std::mem::take(&mut self.unsynced.replies);
        let headers = std::mem::take(&mut self.unsynced.headers);
        let batches = std::mem::take(&mut self.unsynced.batches);
        if let Err(source) = result {
            let (durable, next) = {
                let st = self
                    .shared
                    .segments
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                let a = st.segments.last().expect("active segment");
                (a.size, a.next)
            };
            // Cut the group off so the next write goes where it stood. The cut need not be synced
            // now: the next group's sync covers it, and if the machine dies first, recovery keeps
            // at most this whole (unacknowledged) group or cuts it as a torn tail.
            let undo = file.set_len(durable);
            self.written = durable;
            self.next = next;
            let err = LogError::Io {
                context: format!("syncing {}", self.shared.name),
                source,
            };
            tracing::error!(topic = %self.shared.name, error = %err, "sync failed; the group is not acknowledged and was cut off");
            if let Err(e) = undo {
                let reason = format!(
                    "a sync failed ({err}) and cutting the unsynced data off failed too ({e}); reopen the log"
                );
                self.shared
                    .segments
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .failed = Some(reason);
            }
            for (reply, _) in replies {
                let _ = reply.send(Err(err.clone_shallow()));
            }
            return;
        }
        let interval = self.shared.config.index_interval_bytes;
        let end = {
            let mut st = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let active = st.segments.last_mut().expect("active segment");
            for (h, pos) in &headers {
                active.note_batch(h, *pos, interval);
            }
            active.size = self.written;
            active.created.get_or_insert_with(Instant::now);
            active.next
        };
        {
            let mut tail = self.shared.tail.lock().unwrap_or_else(|p| p.into_inner());
            for rb in batches {
                tail.push(rb);
            }
        }
        {
            let (lock, cv) = &self.shared.notify;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = end;
            cv.notify_all();
        }
        for (reply, ack) in replies {
            let _ = reply.send(Ok(ack));
        }
    }

    fn maybe_roll(&mut self) -> Result<(), LogError> {
        let (size, age) = {
            let st = self
                .shared
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let a = st.segments.last().expect("active segment");
            (self.written, a.created.map(|c| c.elapsed()))
        };
        let by_size = size >= self.shared.config.segment_bytes;
        let by_age = self
            .shared
            .config
            .segment_age
            .is_some_and(|max| age.is_some_and(|a| a >= max));
        if !(by_size || by_age) {
            return Ok(());
        }
        self.roll()?;
        if let Err(e) = self.retention(ndjson::now_ms()) {
            tracing::warn!(topic = %self.shared.name, error = %e, "retention failed");
        }
        Ok(())
    }

    /// Seals the active segment (synced, indexes written) and starts a new one.
    fn roll(&mut self) -> Result<(), LogError> {
        self.sync_unsynced();
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        {
            let st = self
                .shared
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let active = st.segments.last().expect("active segment");
            if active.next == active.base {
                return Ok(()); // nothing to seal
            }
            active
                .file
                .sync_data()
                .and_then(|_| write_indexes(&*storage, &dir, active))
                .map_err(io_err(format!("sealing a segment of {}", self.shared.name)))?;
        }
        let seg = new_segment(&*storage, &dir, self.next)?;
        self.written = 0;
        self.shared
            .segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .segments
            .push(seg);
        Ok(())
    }

    /// Deletes sealed segments past the retention limits; returns how many.
    fn retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let config = &self.shared.config;
        let doomed: Vec<u64> = {
            let st = self
                .shared
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
            let mut doomed = Vec::new();
            for s in &st.segments[..st.segments.len() - 1] {
                let too_big = config.retention_bytes.is_some_and(|max| total > max);
                // Age is write time (the file's last change), not event time: replaying old
                // events must not get them deleted on the next roll.
                let written = s.file.modified_ms().unwrap_or(now_ms);
                let too_old = config
                    .retention_age
                    .is_some_and(|age| written < now_ms.saturating_sub(age.as_millis() as i64));
                if !(too_big || too_old) {
                    break;
                }
                total -= s.size;
                doomed.push(s.base);
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        self.shared
            .segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .segments
            .retain(|s| !doomed.contains(&s.base));
        let storage = &self.shared.storage;
        for base in &doomed {
            for ext in ["log", "index", "timeindex"] {
                let path = self.shared.dir.join(segment_name(*base, ext));
                if storage.exists(&path) {
                    storage
                        .remove_file(&path)
                        .map_err(io_err(format!("deleting {}", path.display())))?;
                }
            }
        }
        storage
            .sync_dir(&self.shared.dir)
            .map_err(io_err(format!("syncing {}", self.shared.dir.display())))?;
        tracing::info!(topic = %self.shared.name, segments = doomed.len(), "retention deleted old segments");
        Ok(doomed.len())
    }
}
