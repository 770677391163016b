//! Sources and sinks: where events come from and where they leave a pipeline.
//!
//! Sources: an NDJSON file (read once, resumed at its checkpointed byte position), standard
//! input, a generator, HTTP ingest (served by `server`, which uses this module), Kafka
//! (`kafka`) and the changes of PostgreSQL tables (`postgres::cdc`). Sinks: an NDJSON file
//! (synced, then its length checkpointed with the input positions, so a restart cuts what was
//! written after the checkpoint and writes it again: each event lands exactly once), standard
//! output, Kafka, PostgreSQL (`postgres::sink`) and MongoDB (`mongodb`). What the sinks share
//! is `common`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{SinkConfig, SinkKind, SourceConfig, SourceKind};
use crate::event::{self, Event, ndjson};
use crate::flow::producer::{Producer, Routed, Target, partition_for};
use crate::flow::{Ctl, StepStats, Stopped, with_sources};
use crate::log::{EventLog, Fence, LogError};

pub(crate) mod common;
pub mod kafka;
pub mod mongodb;
pub mod postgres;

/// Lines per append of a file or stdin source.
const SOURCE_BATCH: usize = 1024;

/// What a source thread needs.
#[derive(Clone)]
pub(crate) struct SourceCtx {
    pub pipeline: String,
    pub config: SourceConfig,
    pub log: Arc<dyn EventLog>,
    pub ctl: Arc<Ctl>,
    /// Set to stop this source alone.
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<StepStats>,
    pub target: Target,
    pub exactly_once: bool,
    pub commit_interval: Duration,
    /// On a log several processes share: the membership of the source's lease, which its
    /// appends carry (a source that lost its lease writes nothing more).
    pub fence: Option<Fence>,
}

impl SourceCtx {
    fn halted(&self) -> bool {
        self.ctl.stopping() || self.stop.load(Ordering::Acquire)
    }
}

impl SinkCtx {
    fn halted(&self) -> bool {
        self.ctl.stopping() || self.stop.load(Ordering::Acquire)
    }
}

impl SourceError {
    /// The fenced append behind this error, if that is what it is.
    fn fenced(&self) -> Option<LogError> {
        match self {
            SourceError::Log(e @ LogError::Fenced(_))
            | SourceError::Kafka(kafka::Error::Log(e @ LogError::Fenced(_))) => {
                Some(e.clone_shallow())
            }
            _ => None,
        }
    }
}

/// Why a source could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Its file cannot be opened.
    #[error("cannot open {}: {error}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Its file is shorter than the position already read from it.
    #[error(
        "{} has {len} bytes, fewer than the {position} already read from it: it was replaced or cut. To read the new file from its start, delete checkpoints/{checkpoint}.ckpt in the data directory",
        path.display()
    )]
    Shrunk {
        /// The file.
        path: PathBuf,
        /// Its length now.
        len: u64,
        /// The checkpointed position.
        position: u64,
        /// The source's checkpoint name.
        checkpoint: String,
    },
    /// Reading its input failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The log refused an append or a checkpoint.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A Kafka source failed.
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    /// A PostgreSQL change source failed.
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
}

/// Why a sink could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Its checkpoint cannot be read.
    #[error(
        "checkpoint {name} is not readable ({error}); delete checkpoints/{name}.ckpt to start the sink over"
    )]
    Checkpoint {
        /// The checkpoint's name.
        name: String,
        /// What is wrong with it.
        error: serde_json::Error,
    },
    /// Its file cannot be opened for writing.
    #[error("cannot open {} for writing: {error}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Writing its output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Reading its input or saving its checkpoint failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A Kafka sink failed.
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    /// A PostgreSQL sink failed.
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// A MongoDB sink failed.
    #[error(transparent)]
    Mongo(#[from] mongodb::Error),
}

/// Runs a source until its input ends or the pipeline stops.
pub(crate) fn run_source(ctx: SourceCtx) -> Result<(), Stopped> {
    let name = ctx.config.name.clone();
    let result = match &ctx.config.kind {
        SourceKind::File { path } => file_source(&ctx, path),
        SourceKind::Generator { count, rate, size } => generator(&ctx, *count, *rate, *size),
        SourceKind::Stdin => stdin_source(&ctx),
        SourceKind::Http => Ok(()),
        SourceKind::Kafka(k) => kafka::source::run(&ctx, k).map_err(SourceError::from),
        SourceKind::PostgresCdc(p) => postgres::cdc::run(&ctx, p).map_err(SourceError::from),
    };
    result.map_err(|e| match e.fenced() {
        Some(fenced) => ctx
            .ctl
            .log_failed(&format!("source `{name}`"), fenced, &ctx.stop),
        None => ctx.ctl.fail(format!("source `{name}`: {e}")),
    })
}

pub(crate) fn producer(ctx: &SourceCtx) -> Result<(Producer, u64), LogError> {
    let (mut producer, position) = Producer::open(
        ctx.log.clone(),
        format!("{}/source/{}", ctx.pipeline, ctx.config.name),
        format!("{}.source.{}", ctx.pipeline, ctx.config.name),
        vec![ctx.target.clone()],
        ctx.exactly_once,
        ctx.commit_interval,
        None,
        || Ok(0),
    )?;
    if let Some(fence) = &ctx.fence {
        // The lease is partition 0 of the lease topic.
        producer.fence(fence.clone(), 0);
    }
    Ok((producer, position))
}

/// Appends `events`, whose inputs end at `origins`, as one step up to `next_position`.
pub(crate) fn send(
    ctx: &SourceCtx,
    producer: &mut Producer,
    events: &[Event],
    origins: &[u64],
    next_position: u64,
) -> Result<(), LogError> {
    let batch = event::batch_of(events);
    let cols = event::columns(&batch).expect("built here");
    let rows: Vec<Routed<'_>> = cols
        .rows()
        .zip(origins)
        .map(|(row, &origin)| Routed {
            target: 0,
            partition: partition_for(row.key, ctx.target.partitions, origin),
            origin,
            row,
        })
        .collect();
    producer.send(&rows, next_position)?;
    ctx.stats
        .events
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn file_source(ctx: &SourceCtx, path: &std::path::Path) -> Result<(), SourceError> {
    let (mut producer, position) = producer(ctx)?;
    let mut file = File::open(path).map_err(|error| SourceError::Open {
        path: path.to_owned(),
        error,
    })?;
    let len = file.metadata()?.len();
    if len < position {
        return Err(SourceError::Shrunk {
            path: path.to_owned(),
            len,
            position,
            checkpoint: format!("{}.source.{}", ctx.pipeline, ctx.config.name),
        });
    }
    file.seek(SeekFrom::Start(position))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut at = position;
    let mut line = Vec::new();
    let mut events = Vec::with_capacity(SOURCE_BATCH);
    let mut origins = Vec::with_capacity(SOURCE_BATCH);
    let now = ndjson::now_ms();
    loop {
        if ctx.halted() {
            break;
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        let start = at;
        at += n as u64;
        if n > 0 {
            let text = String::from_utf8_lossy(&line);
            if !text.trim().is_empty() {
                match ndjson::parse_event(text.trim_end(), now) {
                    Ok(e) => {
                        events.push(e);
                        origins.push(at);
                    }
                    Err(message) => {
                        ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("flowgate_source_rejected_total", "source" => ctx.config.name.clone()).increment(1);
                        tracing::warn!(source = %ctx.config.name, file = %path.display(), byte = start, "line rejected: {message}");
                    }
                }
            }
        }
        if events.len() >= SOURCE_BATCH || (n == 0 && at > producer.position()) {
            send(ctx, &mut producer, &events, &origins, at)?;
            events.clear();
            origins.clear();
        }
        if n == 0 {
            break;
        }
    }
    producer.flush()?;
    tracing::info!(source = %ctx.config.name, file = %path.display(), bytes = at, "file source read to its end");
    Ok(())
}

/// The value of generated event `seq`: `{"seq":N,"pad":"..."}`, padded to `size` bytes.
pub fn generated_value(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{{\"seq\":{seq},\"pad\":\"").into_bytes();
    let pad = size.saturating_sub(v.len() + 2);
    v.extend((0..pad).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    v.extend_from_slice(b"\"}");
    v
}

fn generator(
    ctx: &SourceCtx,
    count: Option<u64>,
    rate: Option<u64>,
    size: usize,
) -> Result<(), SourceError> {
    let (mut producer, first) = producer(ctx)?;
    let end = count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut seq = first;
    let chunk = rate.map_or(SOURCE_BATCH as u64, |r| {
        (r / 100).clamp(1, SOURCE_BATCH as u64)
    });
    while seq < end && !ctx.halted() {
        if let Some(r) = rate {
            let due = started + Duration::from_secs_f64((seq - first) as f64 / r as f64);
            let now = Instant::now();
            if due > now {
                ctx.ctl.sleep(due - now, &ctx.stop);
                continue;
            }
        }
        let n = chunk.min(end - seq);
        let ts = ndjson::now_ms();
        let events: Vec<Event> = (seq..seq + n)
            .map(|s| Event {
                key: None,
                value: generated_value(s, size),
                timestamp: ts,
                headers: Vec::new(),
            })
            .collect();
        let origins: Vec<u64> = (seq + 1..=seq + n).collect();
        send(ctx, &mut producer, &events, &origins, seq + n)?;
        seq += n;
    }
    producer.flush()?;
    Ok(())
}

fn stdin_source(ctx: &SourceCtx) -> Result<(), SourceError> {
    let mut reader = BufReader::new(io::stdin());
    let now = ndjson::now_ms();
    let mut events = Vec::new();
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let got = reader.read_line(&mut line)?;
        n += 1;
        if got > 0 && !line.trim().is_empty() {
            match ndjson::parse_event(line.trim_end(), now) {
                Ok(e) => events.push(e),
                Err(message) => {
                    ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %ctx.config.name, line = n, "stdin line rejected: {message}");
                }
            }
        }
        // Append when a batch is full, or when no more input is waiting (interactive use).
        if !events.is_empty()
            && (got == 0 || events.len() >= SOURCE_BATCH || reader.buffer().is_empty())
        {
            append_events(&ctx.log, &ctx.target, &events, n)?;
            ctx.stats
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            events.clear();
        }
        if got == 0 || ctx.halted() {
            return Ok(());
        }
    }
}

/// Appends events (partitioned by key, else spread from `spread`) and waits until durable.
pub(crate) fn append_events(
    log: &Arc<dyn EventLog>,
    target: &Target,
    events: &[Event],
    spread: u64,
) -> Result<Vec<(u32, u64)>, LogError> {
    let pending = submit_events(log, target, events, spread)?;
    pending
        .into_iter()
        .map(|(p, pending)| pending.wait().map(|ack| (p, ack.base_offset)))
        .collect()
}

/// Submits events (partitioned by key, else spread from `spread`); one append per partition.
pub(crate) fn submit_events(
    log: &Arc<dyn EventLog>,
    target: &Target,
    events: &[Event],
    spread: u64,
) -> Result<Vec<(u32, crate::log::Pending)>, LogError> {
    let mut by_partition: Vec<Vec<&Event>> = vec![Vec::new(); target.partitions as usize];
    for (i, e) in events.iter().enumerate() {
        let p = partition_for(e.key.as_deref(), target.partitions, spread + i as u64);
        by_partition[p as usize].push(e);
    }
    let mut out = Vec::new();
    for (p, evs) in by_partition.into_iter().enumerate() {
        if evs.is_empty() {
            continue;
        }
        let mut b = event::BatchBuilder::with_capacity(evs.len(), 0);
        for e in evs {
            event::push_event(&mut b, e);
        }
        let batch = event::finish(b);
        let records = batch.timestamps.len() as u64;
        let bytes = crate::flow::producer::batch_bytes(&batch);
        out.push((p as u32, log.submit(&target.topic, p as u32, batch)?));
        crate::flow::producer::appended(&target.topic, records, bytes);
    }
    Ok(out)
}

/// What a sink thread needs.
#[derive(Clone)]
pub(crate) struct SinkCtx {
    pub pipeline: String,
    pub config: SinkConfig,
    pub log: Arc<dyn EventLog>,
    pub ctl: Arc<Ctl>,
    /// Set to stop this sink alone.
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<StepStats>,
    pub partitions: u32,
    pub commit_interval: Duration,
    /// Exactly-once delivery (a sink that can: Kafka's transactions).
    pub exactly_once: bool,
}

#[derive(Serialize, Deserialize)]
struct SinkCheckpoint {
    positions: Vec<u64>,
    file_len: Option<u64>,
}

/// Runs a sink until the pipeline stops or (bounded) its input is done.
pub(crate) fn run_sink(ctx: SinkCtx) -> Result<(), Stopped> {
    let name = ctx.config.name.clone();
    sink(&ctx).map_err(|e| ctx.ctl.fail(format!("sink `{name}`: {}", with_sources(&e))))
}

fn sink(ctx: &SinkCtx) -> Result<(), SinkError> {
    let ckpt_name = format!("{}.sink.{}", ctx.pipeline, ctx.config.name);
    let saved: Option<SinkCheckpoint> = match ctx.log.load_checkpoint(&ckpt_name)? {
        Some(b) => Some(
            serde_json::from_slice(&b).map_err(|error| SinkError::Checkpoint {
                name: ckpt_name.clone(),
                error,
            })?,
        ),
        None => None,
    };
    let mut out: Box<dyn Write> = match &ctx.config.kind {
        SinkKind::File { path } => {
            let mut f = OpenOptions::new()
                .create(true)
                .append(false)
                .write(true)
                .truncate(false)
                .open(path)
                .map_err(|error| SinkError::Open {
                    path: path.clone(),
                    error,
                })?;
            let len = f.metadata()?.len();
            let keep = saved.as_ref().and_then(|c| c.file_len).unwrap_or(len);
            if len > keep {
                tracing::info!(sink = %ctx.config.name, file = %path.display(), cut = len - keep, "cutting lines written after the last checkpoint; they are written again");
                f.set_len(keep)?;
                f.sync_data()?;
            } else if len < keep {
                tracing::warn!(sink = %ctx.config.name, file = %path.display(), "the file is shorter than at the last checkpoint (rotated or cut?); appending to it");
            }
            f.seek(SeekFrom::End(0))?;
            Box::new(SyncedFile(BufWriter::with_capacity(1 << 20, f)))
        }
        SinkKind::Stdout => Box::new(BufWriter::new(io::stdout())),
        SinkKind::Kafka(k) => return Ok(kafka::sink::run(ctx, k)?),
        SinkKind::Postgres(p) => return Ok(postgres::sink::run(ctx, p)?),
        SinkKind::Mongo(m) => return Ok(mongodb::run(ctx, m)?),
    };
    let mut cursors = common::cursors(ctx, saved.as_ref().map(|c| c.positions.as_slice()))?;
    let wait = if cursors.len() == 1 {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(2)
    };
    let mut saved_at = Instant::now();
    let mut dirty = false;
    let mut file_len = match &ctx.config.kind {
        SinkKind::File { path } => Some(std::fs::metadata(path)?.len()),
        _ => None,
    };
    // No position before the first checkpoint means "everything is mine": a sink killed before
    // its first checkpoint would keep what it wrote and write it again. The first checkpoint
    // (the file as it was found, and the starting positions) is written before the first line.
    if saved.is_none() {
        let c = SinkCheckpoint {
            positions: cursors.iter().map(|c| c.position).collect(),
            file_len,
        };
        ctx.log
            .save_checkpoint(&ckpt_name, &serde_json::to_vec(&c).expect("serialises"))?;
    }
    let mut line = Vec::with_capacity(4096);
    loop {
        let mut all_done = true;
        for c in &mut cursors {
            match c.next(4096, Duration::ZERO, wait)? {
                Some(input) => {
                    all_done = false;
                    let cols = event::columns(&input.batch).expect("the log checked the batch");
                    for row in cols.rows() {
                        line.clear();
                        ndjson::write_event(&mut line, &row)?;
                        out.write_all(&line)?;
                        if let Some(l) = &mut file_len {
                            *l += line.len() as u64;
                        }
                    }
                    ctx.stats
                        .events
                        .fetch_add(input.len() as u64, Ordering::Relaxed);
                    metrics::counter!("flowgate_sink_events_total", "sink" => ctx.config.name.clone()).increment(input.len() as u64);
                    dirty = true;
                }
                None => {
                    if !ctx.ctl.input_done(&ctx.log, c) {
                        all_done = false;
                    }
                }
            }
        }
        let stop = ctx.halted() || all_done;
        if dirty && (stop || saved_at.elapsed() >= ctx.commit_interval) {
            out.flush()?;
            let c = SinkCheckpoint {
                positions: cursors.iter().map(|c| c.position).collect(),
                file_len,
            };
            ctx.log
                .save_checkpoint(&ckpt_name, &serde_json::to_vec(&c).expect("serialises"))?;
            saved_at = Instant::now();
            dirty = false;
        }
        if stop {
            return Ok(());
        }
    }
}

/// A file whose `flush` also syncs its data to disk.
struct SyncedFile(BufWriter<File>);

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}
