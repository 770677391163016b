//! The event log: topics of partitions of append-only records, durable on disk ([`Log`]) or held
//! in memory ([`MemoryLog`]), both behind [`EventLog`].
//!
//! On disk (`<data-dir>`, layout in `docs/log-format.md`):
//!
//! ```text
//! LOCK                                   held by the process that has the log open
//! topics/<topic>/topic.json              partitions and segment/retention settings
//! topics/<topic>/<partition>/<base>.log  record batches (format.rs), named by base offset
//!                           <base>.index / .timeindex   sparse offset and time indexes
//! groups/<group>.json                    committed consumer offsets of a group
//! checkpoints/<name>.ckpt                stage checkpoints
//! ```
//!
//! An append is acknowledged only once the group commit holding it is synced (with the default
//! [`SyncPolicy::Always`]); on open, each partition's active segment is scanned and cut at the
//! first invalid batch.

pub mod format;
#[cfg(feature = "full")]
pub mod kafka;
mod memory;
mod partition;
pub mod storage;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::event::Batch;
pub use memory::MemoryLog;
use partition::Partition;
use storage::{OsStorage, Storage};

/// When appended data is synced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync every group commit; acknowledge after the sync (the default).
    Always,
    /// Sync at most once per interval; appends wait for the sync that covers them, so they are
    /// still acknowledged only when durable (fewer syncs, more latency).
    Interval(Duration),
    /// Never sync; acknowledge after the write. For tests and throwaway data only: a machine
    /// crash loses what the page cache held.
    Never,
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    /// `always`, `never`, or `interval:<duration>` (e.g. `interval:10ms`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            other => match other.strip_prefix("interval:") {
                Some(d) => humantime::parse_duration(d)
                    .map(SyncPolicy::Interval)
                    .map_err(|e| format!("sync interval {d:?}: {e}")),
                None => Err(format!(
                    "unknown sync policy {other:?}: use always, never or interval:<duration> (e.g. interval:10ms)"
                )),
            },
        }
    }
}

/// Settings of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: u32,
    /// A segment is rolled once it reaches this many bytes.
    pub segment_bytes: u64,
    /// A segment is rolled once its first record is this old (wall time), if set.
    #[serde(with = "opt_ms", rename = "segment_age_ms")]
    pub segment_age: Option<Duration>,
    /// Oldest segments are deleted while a partition holds more than this, if set.
    pub retention_bytes: Option<u64>,
    /// Segments last written longer ago than this are deleted, if set (write time, not event
    /// time, so replayed old events are kept).
    #[serde(with = "opt_ms", rename = "retention_age_ms")]
    pub retention_age: Option<Duration>,
    /// Bytes of log between two offset-index entries.
    pub index_interval_bytes: u64,
    /// Keep the last record of each key rather than delete by size or age (a changelog); only
    /// logs several processes share make such topics (Kafka's `cleanup.policy=compact`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            segment_bytes: 128 << 20,
            segment_age: Some(Duration::from_secs(24 * 3600)),
            retention_bytes: None,
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            compacted: false,
        }
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// The acknowledgement of an append: the offsets its records got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
}

/// A record batch read from the log.
#[derive(Clone, Debug)]
pub struct ReadBatch {
    /// Offset of its first record; record `i` has offset `base_offset + i`.
    pub base_offset: u64,
    /// The records.
    pub batch: Arc<Batch>,
}

/// A partition's offsets and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Oldest offset still held.
    pub start_offset: u64,
    /// Offset the next record will get.
    pub end_offset: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Segments held (1 for the memory log).
    pub segments: usize,
    /// Data syncs since the log was opened (0 for the memory log).
    pub syncs: u64,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Settings.
    pub config: TopicConfig,
    /// Each partition: offsets, sizes, syncs.
    pub partitions: Vec<PartitionInfo>,
}

/// Errors of log operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The topic does not exist.
    #[error(
        "topic `{topic}` does not exist (existing: {existing}); create it with `flowgate topic create {topic}`"
    )]
    NoSuchTopic {
        /// The topic.
        topic: String,
        /// The topics that do exist.
        existing: String,
    },
    /// The topic exists already.
    #[error("topic `{0}` exists already")]
    TopicExists(String),
    /// The name or settings are not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The partition does not exist.
    #[error("topic `{topic}` has partitions 0..{partitions}, not {partition}")]
    NoSuchPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        partitions: u32,
    },
    /// A read asked for an offset the partition does not hold.
    #[error(
        "offset {requested} is outside `{topic}`, which holds offsets {start}..{end}; use --from-beginning or an offset in that range"
    )]
    OffsetOutOfRange {
        /// Topic and partition.
        topic: String,
        /// The offset asked for.
        requested: u64,
        /// Oldest offset held.
        start: u64,
        /// Next offset to be written.
        end: u64,
    },
    /// Another process has the data directory open.
    #[error("data directory {} is in use ({holder}); stop that process or use another --data-dir", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// An I/O error; nothing was acknowledged.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Stored data is damaged where recovery cannot cut it off (inside a sealed segment).
    #[error("`{topic}` is damaged at byte {position}: {reason}")]
    Corrupt {
        /// Topic and partition.
        topic: String,
        /// Byte position in the segment.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log was written by a newer Flowgate.
    #[error("{} holds record batches of format version {version}, newer than this build reads ({}); upgrade Flowgate", path.display(), format::VERSION)]
    NewerFormat {
        /// The segment.
        path: PathBuf,
        /// Its version.
        version: u8,
    },
    /// The partition stopped accepting writes after an unrecoverable I/O failure.
    #[error("`{topic}` accepts no more writes: {reason}")]
    Failed {
        /// Topic and partition.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The log is closed.
    #[error("the log is closed")]
    Closed,
    /// The Kafka cluster behind the log (`[log] backend = "kafka"`) failed a request.
    #[error("{what}: {error}")]
    Remote {
        /// What was being done.
        what: String,
        /// The client's error.
        error: String,
    },
    /// The log was opened read-only.
    #[error(
        "`{0}` is open read-only here (another process owns the log); write through that process"
    )]
    ReadOnly(String),
    /// The append was made for a partition this process no longer holds: its group gave the
    /// partition to another process (after a rebalance, or while this one was cut off). Nothing
    /// of it was written; the step stops serving the partition and starts again from what was
    /// committed if the group gives it back.
    #[error("{0}")]
    Fenced(String),
}

impl LogError {
    /// A copy for each waiter of a failed group (I/O errors are re-made from kind and text).
    pub(crate) fn clone_shallow(&self) -> LogError {
        match self {
            LogError::Io { context, source } => LogError::Io {
                context: context.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            LogError::Failed { topic, reason } => LogError::Failed {
                topic: topic.clone(),
                reason: reason.clone(),
            },
            LogError::Corrupt {
                topic,
                position,
                reason,
            } => LogError::Corrupt {
                topic: topic.clone(),
                position: *position,
                reason: reason.clone(),
            },
            LogError::Fenced(why) => LogError::Fenced(why.clone()),
            LogError::Remote { what, error } => LogError::Remote {
                what: what.clone(),
                error: error.clone(),
            },
            other => LogError::Invalid(other.to_string()),
        }
    }
}

/// An append on its way: `.wait()` blocks for the acknowledgement, or `.await` it.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Ack, LogError>>);

impl Pending {
    /// A pending append that is already answered.
    pub fn ready(result: Result<Ack, LogError>) -> Pending {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(result);
        Pending(rx)
    }

    /// A pending append answered through the returned sender (for logs built in tests).
    #[cfg(test)]
    pub(crate) fn answered_by() -> (oneshot::Sender<Result<Ack, LogError>>, Pending) {
        let (tx, rx) = oneshot::channel();
        (tx, Pending(rx))
    }

    /// The answer if it has come, without blocking; `None` while the append is in flight.
    pub fn try_wait(&mut self) -> Option<Result<Ack, LogError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(LogError::Closed)),
        }
    }

    /// Blocks until the append is durable (or failed). Not for use inside an async task.
    pub fn wait(self) -> Result<Ack, LogError> {
        self.0.blocking_recv().map_err(|_| LogError::Closed)?
    }
}

impl Future for Pending {
    type Output = Result<Ack, LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| LogError::Closed).and_then(|r| r))
    }
}

/// What every log offers, on disk or in memory.
pub trait EventLog: Send + Sync {
    /// Creates a topic.
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), LogError>;
    /// Topic names, sorted.
    fn topics(&self) -> Vec<String>;
    /// A topic's settings and partitions.
    fn describe(&self, topic: &str) -> Result<TopicInfo, LogError>;
    /// Queues an append of `batch` (all its rows, in order) to a partition.
    fn submit(&self, topic: &str, partition: u32, batch: Batch) -> Result<Pending, LogError>;
    /// Queues an append like [`submit`](EventLog::submit), made by a step of a group for
    /// what it consumed: on a log several processes share, the append is committed together
    /// with `consumed` as the group's offset, and only while the group still counts this
    /// process in; otherwise it fails with [`LogError::Fenced`]. Other logs ignore `consumed`.
    fn submit_consumed(
        &self,
        topic: &str,
        partition: u32,
        batch: Batch,
        consumed: &Consumed,
    ) -> Result<Pending, LogError> {
        let _ = consumed;
        self.submit(topic, partition, batch)
    }
    /// Appends and waits until durable.
    fn append(&self, topic: &str, partition: u32, batch: Batch) -> Result<Ack, LogError> {
        self.submit(topic, partition, batch)?.wait()
    }
    /// Reads whole batches that hold offsets from `from` on, about `max_bytes` worth (at least
    /// one batch if any). The first batch may start before `from`.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ReadBatch>, LogError>;
    /// The first offset whose timestamp is at or after `ts` (ms), or the end offset.
    fn offset_for_time(&self, topic: &str, partition: u32, ts: i64) -> Result<u64, LogError>;
    /// Waits until the partition's end offset passes `offset`, or `timeout`; true if it did.
    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool, LogError>;
    /// Starts a new segment now (normally done by size and age).
    fn roll(&self, topic: &str, partition: u32) -> Result<(), LogError>;
    /// Deletes what the retention settings no longer keep; returns segments deleted.
    fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError>;
    /// Records that `group` has processed `topic`/`partition` up to (not including) `offset`.
    fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError>;
    /// The offset `group` committed, if any.
    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError>;
    /// Stores a checkpoint atomically (replacing the previous one).
    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<(), LogError>;
    /// The last checkpoint saved under `name`.
    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, LogError>;
    /// True if several processes may serve this log's partitions together (a Kafka log): steps
    /// then share them through [`EventLog::join`].
    fn shared(&self) -> bool {
        false
    }
    /// Joins `group`, which shares the partitions of `topic` among every process of the
    /// pipeline that joins it: `on` is told which partitions this process is given and which
    /// it gives up. `None` on a log of one process (embedded, in memory), where one process
    /// serves every partition.
    fn join(
        &self,
        group: &str,
        topic: &str,
        on: Arc<dyn Rebalance>,
    ) -> Result<Option<Box<dyn Membership>>, LogError> {
        let _ = (group, topic, on);
        Ok(None)
    }
}

/// What a member of a group ([`EventLog::join`]) is told of its partitions.
pub trait Rebalance: Send + Sync {
    /// These partitions are now this process's too.
    fn assigned(&self, partitions: &[u32]);
    /// These partitions go to another process: returns once nothing more will be written or
    /// checkpointed for them here.
    fn revoked(&self, partitions: &[u32]);
}

/// A process's place in a group: kept alive by [`Membership::poll`], left when dropped (after
/// its partitions were revoked).
pub trait Membership: Send {
    /// Keeps the membership alive and runs the rebalances due (calling [`Rebalance`]), waiting
    /// up to `timeout`.
    fn poll(&self, timeout: Duration);
    /// What the appends made for this group's partitions carry ([`Consumed`]), so that they
    /// are written only while this process is a member.
    fn fence(&self) -> Fence;
}

/// A group's proof of membership, as its log keeps it (opaque to the steps).
#[derive(Clone)]
pub struct Fence(pub(crate) Arc<dyn FenceToken>);

impl Fence {
    /// Whether this process is a member of the group now (its appends can be written).
    pub fn member(&self) -> bool {
        self.0.member()
    }
}

/// What a log keeps in a [`Fence`].
pub(crate) trait FenceToken: std::any::Any + Send + Sync {
    /// Whether this process is a member of the group now.
    fn member(&self) -> bool;
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

/// What an append made by a step of a group consumed: the group's partition `partition` up to
/// (not including) `offset` ([`EventLog::submit_consumed`]).
#[derive(Clone, Debug)]
pub struct Consumed {
    /// The group's membership.
    pub fence: Fence,
    /// The partition of the group's topic the step reads.
    pub partition: u32,
    /// The position the step's inputs reach with this append.
    pub offset: u64,
}

/// The topics of a log by name; shared by [`Log`] and [`MemoryLog`].
pub(crate) struct Registry<T>(RwLock<BTreeMap<String, Arc<T>>>);

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry(RwLock::new(BTreeMap::new()))
    }
}

impl<T> Registry<T> {
    /// Topic names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every topic.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The topic called `name`, or an error listing those that exist.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<T>, LogError> {
        let topics = self.0.read().unwrap_or_else(|p| p.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::NoSuchTopic {
                topic: name.into(),
                existing: if topics.is_empty() {
                    "none".into()
                } else {
                    topics.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })
    }

    /// Adds a topic made by `make`, unless one of that name exists (checked and added under
    /// one lock, so two creations cannot race).
    pub(crate) fn insert_new(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<T, LogError>,
    ) -> Result<(), LogError> {
        let mut topics = self.0.write().unwrap_or_else(|p| p.into_inner());
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.into()));
        }
        topics.insert(name.into(), Arc::new(make()?));
        Ok(())
    }
}

/// `name` with every character but `A-Z a-z 0-9 . _ -` made `_`, cut to `max` characters: a
/// name made from a pipeline's names that the log (at most 200) or Kafka (249) takes.
pub fn safe_name(name: &str, max: usize) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// Checks a topic, group or checkpoint name: 1–200 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_name(what: &str, name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LogError::Invalid(format!(
            "{what} name {name:?} is not valid: use 1 to 200 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn check_config(c: &TopicConfig) -> Result<(), LogError> {
    if c.partitions == 0 || c.partitions > 10_000 {
        return Err(LogError::Invalid(format!(
            "a topic has 1 to 10000 partitions, not {}",
            c.partitions
        )));
    }
    if c.segment_bytes < 4096 || c.segment_bytes > u64::from(u32::MAX) {
        return Err(LogError::Invalid(format!(
            "segment size must be between 4 KiB and 4 GiB, not {} bytes",
            c.segment_bytes
        )));
    }
    if c.index_interval_bytes == 0 {
        return Err(LogError::Invalid("index interval must be above 0".into()));
    }
    Ok(())
}

/// Settings of a [`Log`].
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// When appends are synced.
    pub sync: SyncPolicy,
    /// Open without the directory lock, repairing and writing nothing, so that another
    /// process can own the log meanwhile: for reading (and committing consumer offsets).
    pub read_only: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            sync: SyncPolicy::Always,
            read_only: false,
        }
    }
}

struct Topic {
    config: TopicConfig,
    partitions: Vec<Partition>,
}

/// The durable log in a data directory.
pub struct Log {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: LogOptions,
    topics: Registry<Topic>,
    /// Serialises read-modify-write of group offset files.
    groups: Mutex<()>,
    _lock: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> LogError {
    move |source| LogError::Io { context, source }
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, LogError> {
        Log::open_in(Arc::new(OsStorage), dir, options)
    }

    /// Opens (or creates) the log in `dir` of `storage`, recovering every partition.
    pub fn open_in(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<Log, LogError> {
        if options.read_only {
            if !storage.exists(&dir.join("topics")) {
                return Err(LogError::Invalid(format!(
                    "there is no log in {}: create a topic there first, or pass --data-dir",
                    dir.display()
                )));
            }
        } else {
            storage
                .create_dir_all(&dir.join("topics"))
                .map_err(io(format!("creating the data directory {}", dir.display())))?;
        }
        let lock: Box<dyn Send + Sync> = if options.read_only {
            Box::new(())
        } else {
            storage.lock_dir(dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock => LogError::Locked {
                    dir: dir.to_owned(),
                    holder: e.to_string(),
                },
                _ => LogError::Io {
                    context: format!("locking {}", dir.display()),
                    source: e,
                },
            })?
        };
        let log = Log {
            storage,
            dir: dir.to_owned(),
            options,
            topics: Registry::default(),
            groups: Mutex::new(()),
            _lock: lock,
        };
        let topics_dir = dir.join("topics");
        let mut names = log
            .storage
            .list(&topics_dir)
            .map_err(io(format!("listing {}", topics_dir.display())))?;
        names.sort();
        for name in names {
            let meta = topics_dir.join(&name).join("topic.json");
            if !log.storage.exists(&meta) {
                continue; // a topic whose creation did not finish
            }
            let bytes = storage::read_all(&*log.storage, &meta)
                .map_err(io(format!("reading {}", meta.display())))?;
            let config: TopicConfig = serde_json::from_slice(&bytes).map_err(|e| {
                LogError::Invalid(format!("{} is not a valid topic file: {e}", meta.display()))
            })?;
            log.topics
                .insert_new(&name, || log.open_topic(&name, config))?;
        }
        Ok(log)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_topic(&self, name: &str, config: TopicConfig) -> Result<Topic, LogError> {
        let partitions = (0..config.partitions)
            .map(|p| {
                Partition::open(
                    self.storage.clone(),
                    self.dir.join("topics").join(name).join(p.to_string()),
                    format!("{name}/{p}"),
                    config.clone(),
                    (!self.options.read_only).then_some(self.options.sync),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Topic { config, partitions })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.topics.get(name)
    }

    fn with_partition<R>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&Partition) -> R,
    ) -> Result<R, LogError> {
        let t = self.topic(topic)?;
        let p = t
            .partitions
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition {
                topic: topic.into(),
                partition,
                partitions: t.config.partitions,
            })?;
        Ok(f(p))
    }

    fn group_path(&self, group: &str) -> PathBuf {
        self.dir.join("groups").join(format!("{group}.json"))
    }

    fn read_group(&self, group: &str) -> Result<BTreeMap<String, BTreeMap<u32, u64>>, LogError> {
        let path = self.group_path(group);
        if !self.storage.exists(&path) {
            return Ok(BTreeMap::new());
        }
        let bytes = storage::read_all(&*self.storage, &path)
            .map_err(io(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
            topic: format!("group {group}"),
            position: 0,
            reason: format!("{} is not valid: {e}", path.display()),
        })
    }
}

impl EventLog for Log {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), LogError> {
        check_name("topic", name)?;
        check_config(&config)?;
        if self.options.read_only {
            return Err(LogError::ReadOnly(name.into()));
        }
        self.topics.insert_new(name, || {
            let dir = self.dir.join("topics").join(name);
            self.storage
                .create_dir_all(&dir)
                .map_err(io(format!("creating {}", dir.display())))?;
            let topic = self.open_topic(name, config.clone())?;
            let json = serde_json::to_vec_pretty(&config).expect("config serialises");
            storage::write_atomic(&*self.storage, &dir.join("topic.json"), &json)
                .map_err(io(format!("writing {}", dir.join("topic.json").display())))?;
            Ok(topic)
        })
    }

    fn topics(&self) -> Vec<String> {
        self.topics.names()
    }

    fn describe(&self, topic: &str) -> Result<TopicInfo, LogError> {
        let t = self.topic(topic)?;
        let partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (start, end, bytes, segments) = p.watermarks();
                PartitionInfo {
                    partition: i as u32,
                    start_offset: start,
                    end_offset: end,
                    bytes,
                    segments,
                    syncs: p.syncs(),
                }
            })
            .collect();
        Ok(TopicInfo {
            name: topic.into(),
            config: t.config.clone(),
            partitions,
        })
    }

    fn submit(&self, topic: &str, partition: u32, batch: Batch) -> Result<Pending, LogError> {
        crate::event::columns(&batch).map_err(|e| LogError::Invalid(format!("bad batch: {e}")))?;
        let rx = self.with_partition(topic, partition, |p| p.submit(batch))??;
        Ok(Pending(rx))
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ReadBatch>, LogError> {
        self.with_partition(topic, partition, |p| p.read(from, max_bytes))?
    }

    fn offset_for_time(&self, topic: &str, partition: u32, ts: i64) -> Result<u64, LogError> {
        self.with_partition(topic, partition, |p| p.offset_for_time(ts))?
    }

    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool, LogError> {
        self.with_partition(topic, partition, |p| p.wait_for(offset, timeout))
    }

    fn roll(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.with_partition(topic, partition, |p| p.roll())?
    }

    fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut deleted = 0;
        for t in self.topics.all() {
            for p in &t.partitions {
                deleted += p.enforce_retention(now_ms)?;
            }
        }
        Ok(deleted)
    }

    fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        check_name("group", group)?;
        self.with_partition(topic, partition, |_| ())?;
        let _guard = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut offsets = self.read_group(group)?;
        offsets
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, offset);
        let dir = self.dir.join("groups");
        self.storage
            .create_dir_all(&dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        let json = serde_json::to_vec_pretty(&offsets).expect("offsets serialise");
        let path = self.group_path(group);
        storage::write_atomic(&*self.storage, &path, &json)
            .map_err(io(format!("writing {}", path.display())))
    }

    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        check_name("group", group)?;
        let _guard = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .read_group(group)?
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied())
    }

    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<(), LogError> {
        check_name("checkpoint", name)?;
        if self.options.read_only {
            return Err(LogError::ReadOnly(name.into()));
        }
        let dir = self.dir.join("checkpoints");
        self.storage
            .create_dir_all(&dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join(format!("{name}.ckpt"));
        storage::write_atomic(&*self.storage, &path, data)
            .map_err(io(format!("writing {}", path.display())))
    }

    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        check_name("checkpoint", name)?;
        let path = self.dir.join("checkpoints").join(format!("{name}.ckpt"));
        if !self.storage.exists(&path) {
            return Ok(None);
        }
        storage::read_all(&*self.storage, &path)
            .map(Some)
            .map_err(io(format!("reading {}", path.display())))
    }
}

/// `$FLOWGATE_DATA_DIR` if set, else `./flowgate-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("FLOWGATE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("flowgate-data"))
}
