//! Pipelines: the pipeline file ([`config`]), and running it: sources append to topics, each
//! stage instance (stage × input partition) reads its partition from its committed position,
//! calls the plugin, appends the outputs and commits its position once they are durable; sinks
//! read topics out.
//!
//! Every hop goes through a log topic, so each step resumes from its own checkpoint
//! (`producer.rs`), and a slow step only grows the lag of its input topic (on disk) — memory
//! stays bounded: a stage holds one batch and at most 8 appends in flight.
//!
//! Stage workers, sources and sinks are OS threads (plugin calls are synchronous CPU work); the
//! HTTP server runs on tokio (`crate::connect::http`).

pub mod config;
pub(crate) mod producer;
pub(crate) mod reader;
pub(crate) mod stage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use config::{Delivery, OnError, SourceKind};
pub use config::{PipelineConfig, Problem, Problems};
use producer::Target;
use reader::Cursor;

use crate::log::{EventLog, LogError};
use crate::runtime::Runtime;

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
}

impl Ctl {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = self.wake.0.lock();
        self.wake.1.notify_all();
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

    /// Sleeps `d`, or less if the pipeline stops.
    pub(crate) fn sleep(&self, d: Duration) {
        let guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .wake
            .1
            .wait_timeout_while(guard, d, |_| !self.stopping());
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
    /// Events sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Events dropped by `on-error = "skip"`.
    pub skipped: AtomicU64,
    /// Retried calls.
    pub retries: AtomicU64,
    /// Times the stage paused after a trap storm.
    pub pauses: AtomicU64,
    /// Input position per partition (updated about once a second and at the end).
    pub positions: Vec<AtomicU64>,
}

/// Counters of a source or sink.
#[derive(Debug, Default)]
pub struct StepStats {
    /// Events appended (sources) or written out (sinks).
    pub events: AtomicU64,
    /// Input lines rejected as malformed (sources).
    pub rejected: AtomicU64,
}

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run to completion: sources stop at their end, and each step stops once its input has no
    /// writer left and it has read all of it.
    pub bounded: bool,
    /// Bounded runs: where to start in the external topics (those filled before the run).
    pub from: Option<Position>,
    /// Bounded runs: where to stop in the external topics (exclusive).
    pub to: Option<Position>,
}

/// A place in a topic: an offset (the same in every partition) or a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// An offset.
    Offset(u64),
    /// The first event at or after this time (ms since the epoch), in each partition.
    Time(i64),
}

impl std::str::FromStr for Position {
    type Err = String;

    /// A number is an offset; otherwise an RFC 3339 time (`2026-11-21T10:00:00Z`).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(o) = s.parse() {
            return Ok(Position::Offset(o));
        }
        let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
            format!("{s:?} is neither an offset nor a time ({e}); write e.g. 1000 or 2026-11-21T10:00:00Z")
        })?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{s:?} is before 1970"))?
            .as_millis();
        Ok(Position::Time(ms as i64))
    }
}

fn resolve(log: &Arc<dyn EventLog>, topic: &str, p: u32, at: Position) -> Result<u64, LogError> {
    match at {
        Position::Offset(o) => Ok(o),
        Position::Time(t) => log.offset_for_time(topic, p, t),
    }
}

/// What the steps of a running pipeline share with its observers (the HTTP server).
pub struct RunShared {
    pub(crate) ctl: Arc<Ctl>,
    log: Arc<dyn EventLog>,
    config: PipelineConfig,
    /// Stage counters by stage name.
    pub stages: BTreeMap<String, Arc<StageStats>>,
    /// Source counters by source name.
    pub sources: BTreeMap<String, Arc<StepStats>>,
    /// Sink counters by sink name.
    pub sinks: BTreeMap<String, Arc<StepStats>>,
}

impl std::fmt::Debug for RunShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunShared")
            .field("pipeline", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl RunShared {
    /// Asks every step to finish its batch, commit and stop.
    pub fn stop(&self) {
        self.ctl.stop();
    }

    /// True once the pipeline is stopping (asked to, or a step failed).
    pub fn stopping(&self) -> bool {
        self.ctl.stopping()
    }

    /// The log the pipeline runs on.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The pipeline's settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }
}

/// A running pipeline.
#[derive(Debug)]
pub struct Running {
    shared: Arc<RunShared>,
    started: Instant,
    threads: Vec<(String, JoinHandle<()>)>,
    done_rx: mpsc::Receiver<String>,
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Seconds from start to end.
    pub seconds: f64,
    /// Per source: events appended, lines rejected.
    pub sources: BTreeMap<String, (u64, u64)>,
    /// Per stage, in pipeline order.
    pub stages: Vec<(String, StageSummary)>,
    /// Per sink: events written.
    pub sinks: BTreeMap<String, u64>,
    /// The failure that stopped the run, if one did.
    pub failure: Option<String>,
}

/// A stage's counters at the end of a run.
#[derive(Debug, Serialize)]
pub struct StageSummary {
    /// Events read.
    pub events_in: u64,
    /// Events written.
    pub events_out: u64,
    /// Failed events.
    pub errors: u64,
    /// Dead-lettered events.
    pub dead_letters: u64,
    /// Skipped events.
    pub skipped: u64,
    /// Pauses after trap storms.
    pub pauses: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "finished in {:.2} s", self.seconds)?;
        for (name, (n, rejected)) in &self.sources {
            writeln!(
                f,
                "  source {name}: {n} events appended, {rejected} lines rejected"
            )?;
        }
        for (name, s) in &self.stages {
            writeln!(
                f,
                "  stage {name}: {} in, {} out, {} errors ({} dead-lettered, {} skipped), {} pauses",
                s.events_in, s.events_out, s.errors, s.dead_letters, s.skipped, s.pauses
            )?;
        }
        for (name, n) in &self.sinks {
            writeln!(f, "  sink {name}: {n} events written")?;
        }
        if let Some(e) = &self.failure {
            writeln!(f, "  failed: {e}")?;
        }
        Ok(())
    }
}

/// Data syncs of every partition of the log since it was opened.
pub fn total_syncs(log: &dyn EventLog) -> u64 {
    log.topics()
        .iter()
        .filter_map(|t| log.describe(t).ok())
        .flat_map(|i| i.partitions.into_iter().map(|p| p.syncs))
        .sum()
}

/// Loads each stage's plugin and starts an instance with its config (calling `init`), so a
/// plugin that is not a stage, or rejects its config, is reported before the run. Problems name
/// the line and column of the stage's `plugin` key.
pub fn check_plugins(
    config: &PipelineConfig,
    runtime: &Runtime,
) -> Result<BTreeMap<String, crate::runtime::Plugin>, Problems> {
    let mut plugins = BTreeMap::new();
    let mut problems = Vec::new();
    for s in &config.stages {
        let (line, column) = s.plugin_at;
        match runtime.load_file(&s.plugin) {
            Ok(p) => match p.instantiate(s.limits.clone(), s.config.clone()) {
                Ok(_) => {
                    plugins.insert(s.name.clone(), p);
                }
                Err(e) => problems.push(Problem {
                    line,
                    column,
                    message: format!("stage `{}`: the plugin's init failed: {e}", s.name),
                    help: Some(format!(
                        "check the stage's config table ([stages.{}.config]) against what the plugin expects",
                        s.name
                    )),
                }),
            },
            Err(e) => problems.push(Problem {
                line,
                column,
                message: format!("stage `{}`: {e}", s.name),
                help: Some(
                    "a stage plugin is a component of world flowgate:plugin/stage; `flowgate plugin inspect <file>` shows what this one is"
                        .into(),
                ),
            }),
        }
    }
    if problems.is_empty() {
        Ok(plugins)
    } else {
        Err(Problems {
            path: config.path.clone(),
            problems,
        })
    }
}

/// Creates the pipeline's topics that do not exist yet; returns each topic's partition count.
fn ensure_topics(
    config: &PipelineConfig,
    log: &Arc<dyn EventLog>,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for (name, spec) in &config.topics {
        let partitions = match log.describe(name) {
            Ok(info) => {
                let have = info.partitions.len() as u32;
                if have != spec.config.partitions {
                    tracing::warn!(topic = %name, existing = have, declared = spec.config.partitions, "topic exists with another partition count; using the existing one");
                }
                have
            }
            Err(LogError::NoSuchTopic { .. }) => {
                if spec.external {
                    tracing::warn!(topic = %name, "external topic does not exist yet; creating it empty");
                }
                log.create_topic(name, spec.config.clone())
                    .with_context(|| format!("creating topic `{name}`"))?;
                spec.config.partitions
            }
            Err(e) => return Err(e.into()),
        };
        out.insert(name.clone(), partitions);
    }
    Ok(out)
}

/// Starts a pipeline: creates its topics, loads its plugins, and starts every source, stage
/// worker and sink. The HTTP server, if any, is started by the caller with
/// [`crate::connect::http::serve`].
pub fn start(
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    runtime: &Runtime,
    options: RunOptions,
) -> anyhow::Result<Running> {
    let plugins = check_plugins(&config, runtime)?;
    let partitions = ensure_topics(&config, &log)?;
    let target = |t: &str| Target {
        topic: t.to_owned(),
        partitions: partitions[t],
    };
    // Writers per topic, so that bounded runs know when a topic is complete.
    let mut writers: BTreeMap<String, usize> =
        config.topics.keys().map(|t| (t.clone(), 0)).collect();
    for s in config.sources.values() {
        *writers.get_mut(&s.topic).expect("topic listed") += 1;
    }
    for s in &config.stages {
        for t in s.output.topics() {
            *writers.get_mut(t).expect("topic listed") += 1;
        }
        if matches!(s.on_error, OnError::DeadLetter | OnError::Retry) {
            *writers.get_mut(&s.dead_letter_topic).expect("topic listed") += 1;
        }
    }
    let mut ranges = BTreeMap::new();
    if options.from.is_some() || options.to.is_some() {
        for (topic, _) in config.topics.iter().filter(|(_, s)| s.external) {
            let info = log.describe(topic)?;
            for pi in &info.partitions {
                let p = pi.partition;
                let from = match options.from {
                    Some(at) => resolve(&log, topic, p, at)?,
                    None => pi.start_offset,
                };
                let to = match options.to {
                    Some(at) => resolve(&log, topic, p, at)?,
                    None => pi.end_offset,
                };
                tracing::info!(topic = %topic, partition = p, from, to, "bounded run over a range");
                ranges.insert((topic.clone(), p), (from, to));
            }
        }
        if ranges.is_empty() {
            anyhow::bail!(
                "--from/--to apply to the topics filled before the run, and this pipeline declares none: mark its input topic with external = true under [topics.<name>]"
            );
        }
    }
    let ctl = Arc::new(Ctl {
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        wake: (Mutex::new(()), Condvar::new()),
        bounded: options.bounded,
        writers: writers
            .into_iter()
            .map(|(k, v)| (k, AtomicUsize::new(v)))
            .collect(),
        ranges,
    });
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    let mut sources_stats = BTreeMap::new();
    let mut sinks_stats = BTreeMap::new();
    let exactly_once = config.delivery == Delivery::ExactlyOnce;
    let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| -> anyhow::Result<()> {
        let tx = done_tx.clone();
        let n = name.clone();
        let h = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                f();
                let _ = tx.send(n);
            })
            .context("starting a thread")?;
        threads.push((name, h));
        Ok(())
    };

    let mut stage_stats = BTreeMap::new();
    for s in &config.stages {
        let mut targets: Vec<Target> = s.output.topics().into_iter().map(target).collect();
        let dead_letters = matches!(s.on_error, OnError::DeadLetter | OnError::Retry).then(|| {
            match targets.iter().position(|t| t.topic == s.dead_letter_topic) {
                Some(i) => i,
                None => {
                    targets.push(target(&s.dead_letter_topic));
                    targets.len() - 1
                }
            }
        });
        let n = partitions[&s.input];
        let stats = Arc::new(StageStats {
            positions: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ..StageStats::default()
        });
        stage_stats.insert(s.name.clone(), stats.clone());
        let shared = Arc::new(stage::StageShared {
            pipeline: config.name.clone(),
            config: s.clone(),
            plugin: plugins[&s.name].clone(),
            log: log.clone(),
            ctl: ctl.clone(),
            stats,
            exactly_once,
            commit_interval: config.commit_interval,
            targets,
            dead_letters,
        });
        let workers = s.parallelism.unwrap_or(n).clamp(1, n);
        let remaining = Arc::new(AtomicUsize::new(workers as usize));
        for w in 0..workers {
            let parts: Vec<u32> = (0..n).filter(|p| p % workers == w).collect();
            let shared = shared.clone();
            let remaining = remaining.clone();
            spawn(
                format!("stage {}#{w}", s.name),
                Box::new(move || {
                    let result = stage::run(shared.clone(), parts);
                    // The stage's outputs are complete when its last worker ends well.
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 && result.is_ok() {
                        for t in &shared.targets {
                            shared.ctl.writer_done(&t.topic);
                        }
                    }
                }),
            )?;
        }
    }

    for s in config.sources.values() {
        let stats = Arc::new(StepStats::default());
        sources_stats.insert(s.name.clone(), stats.clone());
        if matches!(s.kind, SourceKind::Http) {
            // Served by the HTTP server; in a bounded run it never ends by itself.
            continue;
        }
        let ctx = crate::connect::SourceCtx {
            pipeline: config.name.clone(),
            config: s.clone(),
            log: log.clone(),
            ctl: ctl.clone(),
            stats,
            target: target(&s.topic),
            exactly_once,
            commit_interval: config.commit_interval,
        };
        spawn(
            format!("source {}", s.name),
            Box::new(move || {
                let topic = ctx.config.topic.clone();
                let ctl = ctx.ctl.clone();
                if crate::connect::run_source(ctx).is_ok() {
                    ctl.writer_done(&topic);
                }
            }),
        )?;
    }
    for s in config.sinks.values() {
        let stats = Arc::new(StepStats::default());
        sinks_stats.insert(s.name.clone(), stats.clone());
        let ctx = crate::connect::SinkCtx {
            pipeline: config.name.clone(),
            config: s.clone(),
            log: log.clone(),
            ctl: ctl.clone(),
            stats,
            partitions: partitions[&s.input],
            commit_interval: config.commit_interval,
        };
        spawn(
            format!("sink {}", s.name),
            Box::new(move || {
                let _ = crate::connect::run_sink(ctx);
            }),
        )?;
    }
    drop(done_tx);
    let running = Running {
        shared: Arc::new(RunShared {
            ctl,
            log,
            config: config.clone(),
            stages: stage_stats,
            sources: sources_stats,
            sinks: sinks_stats,
        }),
        started: Instant::now(),
        threads,
        done_rx,
    };
    tracing::info!(pipeline = %config.name, stages = config.stages.len(), sources = config.sources.len(), sinks = config.sinks.len(), delivery = ?config.delivery, bounded = options.bounded, "pipeline running");
    Ok(running)
}

impl Running {
    /// What observers of the run share.
    pub fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    /// Waits for every step to end (a bounded run ending, or after [`RunShared::stop`]); after
    /// a stop, gives up on steps still busy after `grace`.
    pub fn wait(mut self, grace: Duration) -> Summary {
        let mut left = self.threads.len();
        let mut deadline: Option<Instant> = None;
        while left > 0 {
            if deadline.is_none() && self.shared.ctl.stopping() {
                deadline = Some(Instant::now() + grace);
            }
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(100),
            };
            match self.done_rx.recv_timeout(timeout) {
                Ok(_) => left -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let busy: Vec<&str> = self
                            .threads
                            .iter()
                            .filter(|(_, h)| !h.is_finished())
                            .map(|(n, _)| n.as_str())
                            .collect();
                        self.shared.ctl.fail(format!(
                            "steps still busy {grace:?} after the stop: {}; their uncommitted input will be processed again on restart",
                            busy.join(", ")
                        ));
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        for (_, h) in std::mem::take(&mut self.threads) {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        self.summary()
    }

    /// The counters now.
    pub fn summary(&self) -> Summary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sh = &self.shared;
        Summary {
            seconds: self.started.elapsed().as_secs_f64(),
            sources: sh
                .sources
                .iter()
                .map(|(k, s)| (k.clone(), (get(&s.events), get(&s.rejected))))
                .collect(),
            stages: sh
                .config
                .stages
                .iter()
                .map(|c| (&c.name, &sh.stages[&c.name]))
                .map(|(k, s)| {
                    (
                        k.clone(),
                        StageSummary {
                            events_in: get(&s.events_in),
                            events_out: get(&s.events_out),
                            errors: get(&s.errors),
                            dead_letters: get(&s.dead_letters),
                            skipped: get(&s.skipped),
                            pauses: get(&s.pauses),
                        },
                    )
                })
                .collect(),
            sinks: sh
                .sinks
                .iter()
                .map(|(k, s)| (k.clone(), get(&s.events)))
                .collect(),
            failure: sh
                .ctl
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
