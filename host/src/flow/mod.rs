//! What every step of a pipeline shares, whatever it runs: the run's control (`Ctl`: the
//! stop flag, the first failure, sleeps that end on a stop, the writers of each topic in a
//! bounded run), the counters of stages and of sources and sinks, the `Cursor` a step
//! reads its input with, the `Producer` that appends its outputs and
//! checkpoints its position once they are durable, and what a failed row is (`RowError`) and
//! the context its dead letter carries.
//!
//! Sources and sinks (`connect`), stage workers (`stage`) and the scheduler (`pipeline`) use it;
//! it uses none of them.

pub(crate) mod failure;
pub(crate) mod producer;
pub(crate) mod reader;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use producer::Checkpoint;
use reader::Cursor;

use crate::log::{EventLog, LogError};
use crate::runtime::Interrupt;

/// A step stopped because the pipeline is stopping; the reason (if a failure) is in [`Ctl`].
#[derive(Debug)]
pub(crate) struct Stopped;

/// The run's shared control: stop flag, first failure, and (bounded runs) which topics still
/// have writers.
#[derive(Debug)]
pub(crate) struct Ctl {
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    wake: (Mutex<()>, Condvar),
    bounded: bool,
    writers: BTreeMap<String, AtomicUsize>,
    /// Bounded runs over a range: (topic, partition) → offsets `from .. to` to process.
    ranges: BTreeMap<(String, u32), (u64, u64)>,
    /// Held by every stage instance: set when the grace after a stop is nearly over, it stops
    /// the plugin calls still running.
    pub(crate) interrupt: Interrupt,
}

impl Ctl {
    /// The control of a run: `bounded` runs end with their inputs; `writers` counts the steps
    /// writing each topic; `ranges` are the offsets to process of the external topics.
    pub(crate) fn new(
        bounded: bool,
        writers: BTreeMap<String, usize>,
        ranges: BTreeMap<(String, u32), (u64, u64)>,
    ) -> Ctl {
        Ctl {
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            wake: (Mutex::new(()), Condvar::new()),
            bounded,
            writers: writers
                .into_iter()
                .map(|(k, v)| (k, AtomicUsize::new(v)))
                .collect(),
            ranges,
            interrupt: Interrupt::new(),
        }
    }

    /// True for a bounded run (it ends when its inputs do).
    pub(crate) fn bounded(&self) -> bool {
        self.bounded
    }

    /// The first failure, if a step failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True once the run is stopping (asked to, or a step failed).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops the run: every step finishes its batch, commits and ends.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake_sleepers();
    }

    /// Wakes every [`Ctl::sleep`], so that each checks its stop flags again.
    pub(crate) fn wake_sleepers(&self) {
        let _guard = self.wake.0.lock();
        self.wake.1.notify_all();
    }

    /// A step's failure to append or checkpoint: a fenced append ([`LogError::Fenced`]: the
    /// step's group gave its partitions to another process) stops that step alone (`stop` is
    /// set; its group starts it again over the partitions this process holds then); any other
    /// error fails the pipeline with `what` and the error.
    pub(crate) fn log_failed(&self, what: &str, e: LogError, stop: &AtomicBool) -> Stopped {
        if let LogError::Fenced(why) = &e {
            tracing::warn!("{what}: {why}; it stops here and starts again from what was committed");
            stop.store(true, Ordering::Release);
            self.wake_sleepers();
            return Stopped;
        }
        self.fail(if what.is_empty() {
            e.to_string()
        } else {
            format!("{what}: {e}")
        })
    }

    /// Records the first failure and stops the pipeline.
    pub(crate) fn fail(&self, message: String) -> Stopped {
        tracing::error!("{message}");
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(message);
        }
        drop(f);
        self.stop();
        Stopped
    }

    /// Sleeps `d`, or less if the pipeline stops or `step` (the sleeping step's own stop flag)
    /// is set: a paused stage that an edit stops ends at once.
    pub(crate) fn sleep(&self, d: Duration, step: &AtomicBool) {
        let guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.wake.1.wait_timeout_while(guard, d, |_| {
            !self.stopping() && !step.load(Ordering::Acquire)
        });
    }

    /// A writer of `topic` is done (bounded runs: the topic closes when none is left).
    pub(crate) fn writer_done(&self, topic: &str) {
        if let Some(n) = self.writers.get(topic) {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn end_offset(log: &Arc<dyn EventLog>, cursor: &Cursor) -> u64 {
        log.describe(&cursor.topic)
            .ok()
            .and_then(|i| {
                i.partitions
                    .get(cursor.partition as usize)
                    .map(|p| p.end_offset)
            })
            .unwrap_or(0)
    }

    /// Applies a run's range to a cursor over an external topic: starts it at the range's
    /// start if it is before it, and stops it at the range's end.
    pub(crate) fn apply_range(&self, cursor: &mut Cursor) {
        if let Some(&(from, to)) = self.ranges.get(&(cursor.topic.clone(), cursor.partition)) {
            cursor.position = cursor.position.max(from);
            cursor.limit = Some(to);
        }
    }

    /// Bounded runs: the input has no writers left and the cursor is at its end.
    pub(crate) fn input_done(&self, log: &Arc<dyn EventLog>, cursor: &Cursor) -> bool {
        self.bounded
            && self
                .writers
                .get(&cursor.topic)
                .is_none_or(|n| n.load(Ordering::Acquire) == 0)
            && cursor.position
                >= cursor
                    .limit
                    .map_or(u64::MAX, |l| l)
                    .min(Ctl::end_offset(log, cursor))
    }

    /// Events in the cursor's partition not yet read.
    pub(crate) fn lag(&self, log: &Arc<dyn EventLog>, cursor: &Cursor) -> u64 {
        Ctl::end_offset(log, cursor).saturating_sub(cursor.position)
    }
}

/// Counters of a stage (also exported as metrics).
#[derive(Debug, Default)]
pub struct StageStats {
    /// Events read.
    pub events_in: AtomicU64,
    /// Events written to output topics.
    pub events_out: AtomicU64,
    /// Failed events (each failure once, whatever the policy did with it).
    pub errors: AtomicU64,
    /// The failures of `errors` by kind (`invalid-input`, `trap`, `record-limit`, …).
    pub errors_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Events sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Events dropped by `on-error = "skip"`.
    pub skipped: AtomicU64,
    /// Retried calls.
    pub retries: AtomicU64,
    /// Times the stage paused after a trap storm.
    pub pauses: AtomicU64,
    /// Window results emitted (aggregator stages).
    pub windows_fired: AtomicU64,
    /// Events too late for their windows, sent to `late-output`.
    pub late: AtomicU64,
    /// Input position per partition (updated about once a second and at the end).
    pub positions: Vec<AtomicU64>,
    /// Per partition: served by this process (all of them, unless the log shares the
    /// partitions among processes and the stage's group gave some to others).
    pub served: Vec<AtomicBool>,
}

impl StageStats {
    /// Counters of a stage reading `partitions` partitions, all served here.
    pub fn new(partitions: u32) -> StageStats {
        StageStats {
            positions: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            served: (0..partitions).map(|_| AtomicBool::new(true)).collect(),
            ..StageStats::default()
        }
    }

    /// Counts a failure of `kind` of the stage `stage` (here and in
    /// `flowgate_stage_errors_total`).
    pub(crate) fn failed(&self, stage: &str, kind: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .errors_by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_insert(0) += 1;
        metrics::counter!("flowgate_stage_errors_total", "stage" => stage.to_owned(), "kind" => kind)
            .increment(1);
    }

    /// The partitions served here.
    pub fn served(&self) -> Vec<u32> {
        (0..self.served.len() as u32)
            .filter(|&p| self.served[p as usize].load(Ordering::Relaxed))
            .collect()
    }
}

/// Counters of a source or sink.
#[derive(Debug, Default)]
pub struct StepStats {
    /// Events appended (sources) or written out (sinks).
    pub events: AtomicU64,
    /// Input lines rejected as malformed (sources).
    pub rejected: AtomicU64,
    /// Sources that read partitions of another system (Kafka): "topic/partition" → records
    /// there not yet durable in the log (updated about once a second).
    pub lag: Mutex<BTreeMap<String, u64>>,
    /// Events sent to the dead-letter topic (sinks: refused by their target).
    pub dead_letters: AtomicU64,
    /// Why the step cannot reach its server now (a database or broker away), while it retries.
    pub down: Mutex<Option<String>>,
}

/// `error` and each of its sources after a colon (`outer: cause: its cause`, as the CLI prints an
/// error with its context), for a message that names the cause under a wrapper.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Data syncs of every partition of the log since it was opened.
pub fn total_syncs(log: &dyn EventLog) -> u64 {
    log.topics()
        .iter()
        .filter_map(|t| log.describe(t).ok())
        .flat_map(|i| i.partitions.into_iter().map(|p| p.syncs))
        .sum()
}
