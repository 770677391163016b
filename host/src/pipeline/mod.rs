//! Pipelines: running the pipeline file (`crate::config`): sources append to topics, each
//! stage instance (stage × input partition) reads its partition from its committed position,
//! calls the plugin, appends the outputs and commits its position once they are durable; sinks
//! read topics out.
//!
//! Every hop goes through a log topic, so each step resumes from its own checkpoint
//! (`producer.rs`), and a slow step only grows the lag of its input topic (on disk) — memory
//! stays bounded: a stage holds one batch and at most 8 appends in flight.
//!
//! Stage workers, sources and sinks are OS threads (plugin calls are synchronous CPU work); the
//! HTTP server, in the layer above, runs on tokio.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{Delivery, OnError, SourceKind, StageConfig};
pub use crate::config::{PipelineConfig, PipelineFileError, Problem, Problems};
pub use crate::flow::Checkpoint;
use crate::flow::Ctl;
use crate::flow::producer::Target;
pub use crate::flow::{StageStats, StepStats, total_syncs};
use crate::stage;

mod control;
pub mod dlq;
mod group;
mod plan;
pub mod tap;
pub use plan::{Plan, PlanError, StepId, plan};
#[cfg(test)]
mod tests;

use crate::log::{EventLog, LogError};
use crate::reload::StageSlot;
use crate::runtime::Runtime;

/// The pipeline's topics could not be made ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// A topic the pipeline names could not be created.
    #[error("creating topic `{topic}`")]
    Create {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        source: LogError,
    },
    /// A topic could not be looked at.
    #[error(transparent)]
    Describe(#[from] LogError),
}

/// Why [`Running::apply`] did not apply an edit, or applied only part of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The edit cannot be applied at all (a bounded run, a renamed pipeline); nothing changed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The plugins of stages that would start do not load, fit or start; nothing changed.
    #[error(transparent)]
    Plugins(#[from] Problems),
    /// The pipeline's topics could not be made ready; nothing changed.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// A step's thread could not be started.
    #[error("starting a thread")]
    Thread(#[source] std::io::Error),
    /// A step could not join the group its partitions are shared in (a Kafka log).
    #[error("{what} cannot join its group")]
    Group {
        /// The step.
        what: String,
        /// Why.
        #[source]
        source: LogError,
    },
    /// New plugin files of stages that keep running were refused: those stages' live versions
    /// keep serving. Everything else was applied.
    #[error(
        "{}{}",
        refused.join("; "),
        if applied.is_empty() {
            String::new()
        } else {
            format!(" (applied: {})", applied.join(", "))
        }
    )]
    Refused {
        /// Each refusal: the stage and why.
        refused: Vec<String>,
        /// What was applied, one line each.
        applied: Vec<String>,
    },
}

/// Why [`start`] did not start a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `--from`/`--to` were given and the pipeline has no external topic they apply to.
    #[error(
        "--from/--to apply to the topics filled before the run, and this pipeline declares none: mark its input topic with external = true under [topics.<name>]"
    )]
    NoExternalTopic,
    /// The pipeline's topics could not be made ready.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// The range of a bounded run could not be found in the log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Applying the pipeline to an empty one failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
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
    /// This process's name among the pipeline's processes (a shared log): what the others'
    /// status calls it.
    pub instance: Option<String>,
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

/// A running step: its own stop flag and its threads.
struct Step {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<()>)>,
}

impl Step {
    fn finished(&self) -> bool {
        self.threads.iter().all(|(_, h)| h.is_finished())
    }

    /// Asks the step to stop: it finishes its batch, commits and ends (a pause ends at once).
    fn ask_stop(&self, ctl: &Ctl) {
        self.stop.store(true, Ordering::Release);
        ctl.wake_sleepers();
    }

    /// Waits for the step's threads to end.
    fn join(self) {
        for (_, h) in self.threads {
            let _ = h.join();
        }
    }
}

/// What runs now, as the last [`Running::apply`] left it: the pipeline, its steps, their
/// counters and slots. Changed only by `apply`, which locks it only to read or change it: never
/// while a plugin compiles or a step is joined.
#[derive(Default)]
struct Applied {
    config: Option<PipelineConfig>,
    partitions: BTreeMap<String, u32>,
    steps: BTreeMap<StepId, Step>,
    stages: BTreeMap<String, Arc<StageStats>>,
    sources: BTreeMap<String, Arc<StepStats>>,
    sinks: BTreeMap<String, Arc<StepStats>>,
    slots: BTreeMap<String, Arc<StageSlot>>,
}

/// What readers of a running pipeline need (ingest, status, counters), published by
/// [`Running::apply`] after each change: they read it without any lock.
#[derive(Default)]
struct View {
    config: Option<Arc<PipelineConfig>>,
    slots: BTreeMap<String, Arc<StageSlot>>,
    stages: BTreeMap<String, Arc<StageStats>>,
    sources: BTreeMap<String, Arc<StepStats>>,
    sinks: BTreeMap<String, Arc<StepStats>>,
    ingest: BTreeMap<String, Arc<IngestRoute>>,
}

/// A topic open to ingest (an HTTP source's): where its events go, the source's counters, and
/// the counters of the stages reading the topic (for the lag check).
#[derive(Debug)]
pub(crate) struct IngestRoute {
    pub(crate) target: Target,
    pub(crate) stats: Arc<StepStats>,
    pub(crate) readers: Vec<Arc<StageStats>>,
}

/// A running pipeline. Shared (`Arc`) between the thread that waits for it, the HTTP server
/// and the reloader.
pub struct Running {
    pub(crate) ctl: Arc<Ctl>,
    log: Arc<dyn EventLog>,
    runtime: Runtime,
    started: Instant,
    /// Held for a whole [`Running::apply`]: one edit at a time. Readers never take it.
    applying: Mutex<()>,
    applied: Mutex<Applied>,
    view: ArcSwap<View>,
    /// On a log several processes share: the topic deploys are sent to the others through.
    control: std::sync::OnceLock<String>,
    /// On a log several processes share: this process's name, its admin address, and what
    /// each process of the pipeline last reported of itself.
    instance: std::sync::OnceLock<String>,
    admin: std::sync::OnceLock<String>,
    members: Mutex<BTreeMap<String, (i64, serde_json::Value)>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
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
    /// Window results emitted (aggregator stages).
    pub windows_fired: u64,
    /// Events sent to `late-output`.
    pub late: u64,
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
            if s.windows_fired > 0 || s.late > 0 {
                writeln!(
                    f,
                    "    windows: {} results, {} late events to late-output",
                    s.windows_fired, s.late
                )?;
            }
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

/// Why [`reload`] applied nothing, or only part of an edit. Print it with its sources (they
/// name the cause under a wrapper).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The pipeline file cannot be read or has problems; nothing changed.
    #[error(transparent)]
    File(#[from] PipelineFileError),
    /// The new pipeline was not applied, or only in part.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Re-reads the pipeline file (and the plugin files it names) and applies it. What the
/// watcher, `POST /admin/reload` and `flowgate reload` do.
///
/// On a log several processes share, an edit that changed something here is sent to the other
/// processes of the pipeline, which apply it as their own (the newest edit, from any process,
/// is the pipeline; a process started later applies the newest).
pub fn reload(running: &Running) -> Result<Vec<String>, ReloadError> {
    let path = running.config().path;
    let config = PipelineConfig::load(&path)?;
    let done = running.apply(config).map_err(|e| {
        metrics::counter!("flowgate_reload_failures_total", "stage" => "").increment(1);
        ReloadError::Apply(e)
    })?;
    if !done.is_empty()
        && let Ok(text) = std::fs::read(&path)
    {
        running.edited(&text);
    }
    Ok(done)
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
            Ok(p) if s.accepts(p.info()).is_err() => {
                let misfit = s.accepts(p.info()).expect_err("checked");
                problems.push(Problem {
                    line,
                    column,
                    message: format!("stage `{}`: {misfit}", s.name),
                    help: Some(misfit.help().into()),
                })
            }
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
) -> Result<BTreeMap<String, u32>, TopicError> {
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
                match log.create_topic(name, spec.config.clone()) {
                    Ok(()) => spec.config.partitions,
                    // Another process of the pipeline (on a shared log) made it first.
                    Err(LogError::TopicExists(_)) => log.describe(name)?.partitions.len() as u32,
                    Err(source) => {
                        return Err(TopicError::Create {
                            topic: name.clone(),
                            source,
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        out.insert(name.clone(), partitions);
    }
    if log.shared() {
        // A stage's keyed state (and windows) moves with its partitions through a compacted
        // changelog, a partition per input partition.
        for s in config.stages.iter().filter(|s| s.state) {
            let Some(&partitions) = out.get(&s.input) else {
                continue;
            };
            let name = changelog_topic(&config.name, &s.name);
            let topic = crate::log::TopicConfig {
                partitions,
                compacted: true,
                ..crate::log::TopicConfig::default()
            };
            match log.create_topic(&name, topic) {
                Ok(()) => {}
                Err(LogError::TopicExists(_)) => {
                    let have = log.describe(&name)?.partitions.len() as u32;
                    if have != partitions {
                        tracing::warn!(topic = %name, changelog = have, input = partitions, "the stage's changelog has another partition count than its input; the state of the partitions beyond it is lost");
                    }
                }
                Err(source) => {
                    return Err(TopicError::Create {
                        topic: name,
                        source,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The changelog topic of a stage with state on a log several processes share.
fn changelog_topic(pipeline: &str, stage: &str) -> String {
    crate::log::safe_name(&format!("{pipeline}.{stage}.changelog"), 200)
}

/// The topics a source or sink writes, done (for bounded runs) once it ended well.
struct WriterDone {
    ctl: Arc<Ctl>,
    topics: Vec<String>,
}

impl WriterDone {
    fn of(ctl: &Arc<Ctl>, topics: Vec<&str>) -> WriterDone {
        WriterDone {
            ctl: ctl.clone(),
            topics: topics.into_iter().map(str::to_owned).collect(),
        }
    }

    fn after<E>(self, ended: Result<(), E>) {
        if ended.is_ok() {
            for t in &self.topics {
                self.ctl.writer_done(t);
            }
        }
    }
}

/// Starts a pipeline: [`Running::apply`] of `config` to an empty pipeline (the same code a
/// pipeline edit goes through). The HTTP server, if any, is started by the caller: it sits in
/// the layer above this one and serves a `Running`.
pub fn start(
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    runtime: &Runtime,
    options: RunOptions,
) -> Result<Arc<Running>, StartError> {
    // Writers per topic, so that bounded runs know when a topic is complete.
    let mut writers: BTreeMap<String, usize> =
        config.topics.keys().map(|t| (t.clone(), 0)).collect();
    for s in config.sources.values() {
        for t in s.written_topics() {
            *writers.get_mut(t).expect("topic listed") += 1;
        }
    }
    for s in config.sinks.values() {
        // A sink's dead letters: a step reading them ends after the sink did.
        for t in s.written_topics() {
            *writers.get_mut(t).expect("topic listed") += 1;
        }
    }
    for s in &config.stages {
        // One per topic: a stage's workers report each of its targets once.
        for t in s.written_topics() {
            *writers.get_mut(t).expect("topic listed") += 1;
        }
    }
    let mut ranges = BTreeMap::new();
    if options.from.is_some() || options.to.is_some() {
        ensure_topics(&config, &log)?;
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
            return Err(StartError::NoExternalTopic);
        }
    }
    let ctl = Arc::new(Ctl::new(options.bounded, writers, ranges));
    let pipeline = config.name.clone();
    let running = Running::empty(ctl, log, runtime);
    running.apply(config)?;
    if !options.bounded && running.log.shared() {
        // Deploys made at any process of the pipeline reach this one, and this one's reach them.
        let topic = control::ensure(&*running.log, &pipeline)?;
        let members = control::ensure_members(&*running.log, &pipeline)?;
        let _ = running.control.set(topic.clone());
        let _ = running.instance.set(
            options
                .instance
                .clone()
                .unwrap_or_else(|| "flowgate".into()),
        );
        let follower = running.clone();
        thread_named("control", move || {
            control::follow(&follower, &topic, &members)
        })
        .map_err(ApplyError::Thread)?;
    }
    Ok(running)
}

fn spawn(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<(String, JoinHandle<()>), ApplyError> {
    let h = thread_named(&name, f).map_err(ApplyError::Thread)?;
    Ok((name, h))
}

/// A thread named `name` (cut to the 15 bytes Linux keeps).
fn thread_named(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(f)
}

impl Running {
    /// A pipeline with nothing running yet, for [`Running::apply`] to start.
    fn empty(ctl: Arc<Ctl>, log: Arc<dyn EventLog>, runtime: &Runtime) -> Arc<Running> {
        Arc::new(Running {
            ctl,
            log,
            runtime: runtime.clone(),
            started: Instant::now(),
            applying: Mutex::new(()),
            applied: Mutex::new(Applied::default()),
            view: ArcSwap::from_pointee(View::default()),
            control: std::sync::OnceLock::new(),
            instance: std::sync::OnceLock::new(),
            admin: std::sync::OnceLock::new(),
            members: Mutex::new(BTreeMap::new()),
        })
    }

    /// On a log several processes share (and in an unbounded run): a step that runs in one
    /// process at a time, started by `start` while this process holds its lease. Returns the
    /// thread that holds the lease, or `None` when the step simply runs here.
    fn lease(
        &self,
        pipeline: &str,
        what: String,
        group: &str,
        stop: &Arc<AtomicBool>,
        start: group::StartStep,
    ) -> Result<Option<(String, JoinHandle<()>)>, ApplyError> {
        if self.ctl.bounded() || !self.log.shared() {
            return Ok(None);
        }
        let failed = |source| ApplyError::Group {
            what: what.clone(),
            source,
        };
        let topic = group::ensure_lease_topic(&*self.log, pipeline).map_err(failed)?;
        let lease = Arc::new(group::Lease::new(what.clone(), self.ctl.clone(), start));
        let Some(member) = self
            .log
            .join(group, &topic, lease.clone())
            .map_err(failed)?
        else {
            return Ok(None);
        };
        lease.set_fence(member.fence());
        let (ctl, held) = (self.ctl.clone(), stop.clone());
        let name = format!("lease {group}");
        Ok(Some(spawn(name, move || {
            group::hold(member, &held, &ctl, || lease.check(), || lease.release());
        })?))
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `new` as a diff to what runs: stages, sources and sinks that did not change keep
    /// running untouched; removed ones finish their batch, commit and stop; added ones start;
    /// changed ones stop and start again from their checkpoint (a switch at a batch boundary).
    /// A stage whose only change is its plugin gets the new version swapped in ([`crate::reload::deploy`]).
    /// Returns what it did, one line each.
    ///
    /// One apply runs at a time. Plugins compile, new versions deploy and stopped steps are
    /// joined with no lock held; what runs (`Applied`) is locked only to take steps out and put
    /// new ones in, and what readers need is published when the edit is done.
    pub fn apply(&self, new: PipelineConfig) -> Result<Vec<String>, ApplyError> {
        let _applying = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.applied().config.clone();
        let plan = plan(old.as_ref(), &new, self.ctl.bounded())?;
        // Plugins of the stages that (re)start are loaded and their init tried first: a bad
        // edit changes nothing.
        let probe = PipelineConfig {
            stages: plan
                .starting_stages()
                .filter_map(|n| new.stages.iter().find(|s| s.name == n).cloned())
                .collect(),
            ..new.clone()
        };
        let plugins = check_plugins(&probe, &self.runtime)?;
        let partitions = ensure_topics(&new, &self.log)?;
        let mut done = Vec::new();
        // New plugin versions that were refused: the live ones keep serving.
        let mut refused = Vec::new();

        // Stop what is gone or changed: taken out under the lock, asked to stop together,
        // then joined without it.
        let (stopping, kept) = {
            let mut applied = self.applied();
            applied.partitions = partitions.clone();
            let mut stopping = Vec::new();
            for id in &plan.stop {
                if let Some(step) = applied.steps.remove(id) {
                    if let StepId::Stage(name) = id {
                        applied.slots.remove(name);
                    }
                    stopping.push((id.clone(), step));
                }
            }
            // Stages that keep running: their slots, for a new plugin file.
            let kept: Vec<(&StageConfig, Arc<StageSlot>)> = plan
                .keep
                .iter()
                .filter_map(|n| new.stages.iter().find(|s| &s.name == n))
                .filter_map(|s| applied.slots.get(&s.name).map(|slot| (s, slot.clone())))
                .collect();
            (stopping, kept)
        };
        for (_, step) in &stopping {
            step.ask_stop(&self.ctl);
        }
        for (id, step) in stopping {
            step.join();
            done.push(format!("stopped {id}"));
        }

        // Running and unchanged but for, maybe, their plugin file: a deploy (compiles, no lock).
        for (s, slot) in kept {
            let bytes = match std::fs::read(&s.plugin) {
                Ok(b) => b,
                Err(e) => {
                    refused.push(format!(
                        "stage `{}`: cannot read {}: {e}",
                        s.name,
                        s.plugin.display()
                    ));
                    continue;
                }
            };
            if crate::runtime::hash_of(&bytes) != slot.current().plugin.info().hash {
                match crate::reload::deploy(
                    &self.runtime,
                    &slot,
                    s.plugin.display().to_string(),
                    &bytes,
                    Instant::now(),
                ) {
                    Ok(d) => done.push(format!("stage `{}`: plugin version {}", s.name, d.version)),
                    Err(e) => refused.push(format!("stage `{}`: {e}", s.name)),
                }
            }
        }

        // Starting steps only spawns threads: done under the lock.
        let mut applied = self.applied();

        let exactly_once = new.delivery == Delivery::ExactlyOnce;
        let target = |t: &str| Target {
            topic: t.to_owned(),
            partitions: partitions[t],
        };
        let starting = |kind: fn(String) -> StepId, name: &str| {
            let id = kind(name.to_owned());
            plan.start.contains(&id).then_some(id)
        };
        for s in &new.stages {
            let Some(key) = starting(StepId::Stage, &s.name) else {
                continue;
            };
            let mut targets: Vec<Target> = s.output.topics().into_iter().map(target).collect();
            let mut target_of = |topic: &str| match targets.iter().position(|t| t.topic == topic) {
                Some(i) => i,
                None => {
                    targets.push(target(topic));
                    targets.len() - 1
                }
            };
            let dead_letters = matches!(s.on_error, OnError::DeadLetter | OnError::Retry)
                .then(|| target_of(&s.dead_letter_topic));
            let late = s.late_output.as_deref().map(&mut target_of);
            let n = partitions[&s.input];
            let stats = applied
                .stages
                .entry(s.name.clone())
                .or_insert_with(|| Arc::new(StageStats::new(n)))
                .clone();
            let slot = Arc::new(StageSlot::new(
                s,
                plugins[&s.name].clone(),
                s.plugin.display().to_string(),
                (0..n).collect(),
            ));
            applied.slots.insert(s.name.clone(), slot.clone());
            let stop = Arc::new(AtomicBool::new(false));
            let shared = Arc::new(stage::StageShared {
                pipeline: new.name.clone(),
                config: s.clone(),
                slot,
                stop: stop.clone(),
                log: self.log.clone(),
                ctl: self.ctl.clone(),
                stats,
                exactly_once,
                commit_interval: new.commit_interval,
                targets,
                dead_letters,
                late,
                fence: None,
                changelog: (s.state && self.log.shared())
                    .then(|| changelog_topic(&new.name, &s.name)),
            });
            let workers = s.parallelism.unwrap_or(n).clamp(1, n);
            if !self.ctl.bounded() && self.log.shared() {
                // On a log shared by several processes (Kafka), the stage serves the
                // partitions its group gives this process.
                let group = Arc::new(group::StageGroup::new(shared.clone(), workers));
                let member = self
                    .log
                    .join(&format!("stage.{}", s.name), &s.input, group.clone())
                    .map_err(|source| ApplyError::Group {
                        what: format!("stage `{}`", s.name),
                        source,
                    })?;
                if let Some(member) = member {
                    group.set_fence(member.fence());
                    let (ctl, held) = (self.ctl.clone(), stop.clone());
                    let threads = vec![spawn(format!("stage {}", s.name), move || {
                        group::hold(member, &held, &ctl, || group.check(), || group.release());
                    })?];
                    applied.steps.insert(key, Step { stop, threads });
                    done.push(format!("started stage `{}` (in its group)", s.name));
                    continue;
                }
            }
            let remaining = Arc::new(AtomicUsize::new(workers as usize));
            let mut threads = Vec::new();
            for w in 0..workers {
                let parts: Vec<u32> = (0..n).filter(|p| p % workers == w).collect();
                let shared = shared.clone();
                let remaining = remaining.clone();
                threads.push(spawn(format!("stage {}#{w}", s.name), move || {
                    let result = stage::run(shared.clone(), parts);
                    // The stage's outputs are complete when its last worker ends well.
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 && result.is_ok() {
                        for t in &shared.targets {
                            shared.ctl.writer_done(&t.topic);
                        }
                    }
                })?);
            }
            applied.steps.insert(key, Step { stop, threads });
            done.push(format!("started stage `{}`", s.name));
        }

        for s in new.sources.values() {
            let Some(key) = starting(StepId::Source, &s.name) else {
                continue;
            };
            let stats = applied.sources.entry(s.name.clone()).or_default().clone();
            let stop = Arc::new(AtomicBool::new(false));
            let mut threads = Vec::new();
            if !matches!(s.kind, SourceKind::Http) {
                // HTTP sources are served by the HTTP server.
                let ctx = crate::connect::SourceCtx {
                    pipeline: new.name.clone(),
                    config: s.clone(),
                    log: self.log.clone(),
                    ctl: self.ctl.clone(),
                    stop: stop.clone(),
                    stats,
                    target: target(&s.topic),
                    exactly_once,
                    commit_interval: new.commit_interval,
                    fence: None,
                };
                let thread = format!("source {}", s.name);
                let leased = ctx.clone();
                let lease = self.lease(
                    &new.name,
                    format!("source `{}`", s.name),
                    &format!("source.{}", s.name),
                    &stop,
                    Box::new(move |stop, fence| {
                        let ctx = crate::connect::SourceCtx {
                            stop,
                            fence,
                            ..leased.clone()
                        };
                        thread_named(&thread, move || {
                            let _ = crate::connect::run_source(ctx);
                        })
                    }),
                )?;
                match lease {
                    Some(t) => threads.push(t),
                    None => {
                        let writes = WriterDone::of(&ctx.ctl, s.written_topics());
                        threads.push(spawn(format!("source {}", s.name), move || {
                            writes.after(crate::connect::run_source(ctx));
                        })?);
                    }
                }
            }
            applied.steps.insert(key, Step { stop, threads });
            done.push(format!("started source `{}`", s.name));
        }
        for s in new.sinks.values() {
            let Some(key) = starting(StepId::Sink, &s.name) else {
                continue;
            };
            let stats = applied.sinks.entry(s.name.clone()).or_default().clone();
            let stop = Arc::new(AtomicBool::new(false));
            let ctx = crate::connect::SinkCtx {
                pipeline: new.name.clone(),
                config: s.clone(),
                log: self.log.clone(),
                ctl: self.ctl.clone(),
                stop: stop.clone(),
                stats,
                partitions: partitions[&s.input],
                commit_interval: new.commit_interval,
                exactly_once,
            };
            let thread = format!("sink {}", s.name);
            let leased = ctx.clone();
            let lease = self.lease(
                &new.name,
                format!("sink `{}`", s.name),
                &format!("sink.{}", s.name),
                &stop,
                Box::new(move |stop, _| {
                    let ctx = crate::connect::SinkCtx {
                        stop,
                        ..leased.clone()
                    };
                    thread_named(&thread, move || {
                        let _ = crate::connect::run_sink(ctx);
                    })
                }),
            )?;
            let threads = match lease {
                Some(t) => vec![t],
                None => {
                    let writes = WriterDone::of(&ctx.ctl, s.written_topics());
                    vec![spawn(format!("sink {}", s.name), move || {
                        writes.after(crate::connect::run_sink(ctx));
                    })?]
                }
            };
            applied.steps.insert(key, Step { stop, threads });
            done.push(format!("started sink `{}`", s.name));
        }
        if old.is_some() {
            tracing::info!(changes = ?done, "pipeline edit applied");
        } else {
            tracing::info!(pipeline = %new.name, stages = new.stages.len(), sources = new.sources.len(), sinks = new.sinks.len(), delivery = ?new.delivery, bounded = self.ctl.bounded(), "pipeline running");
        }
        applied.config = Some(new);
        self.publish(&applied);
        drop(applied);
        if refused.is_empty() {
            Ok(done)
        } else {
            Err(ApplyError::Refused {
                refused,
                applied: done,
            })
        }
    }

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

    /// The runtime its plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Publishes what readers need from `applied` (the caller holds its lock, so views are
    /// published in the order of the changes).
    fn publish(&self, applied: &Applied) {
        let config = applied.config.clone().map(Arc::new);
        let mut ingest = BTreeMap::new();
        if let Some(c) = &config {
            for s in c.sources.values() {
                if !matches!(s.kind, SourceKind::Http) {
                    continue;
                }
                let (Some(&partitions), Some(stats)) = (
                    applied.partitions.get(&s.topic),
                    applied.sources.get(&s.name),
                ) else {
                    continue;
                };
                let readers = c
                    .stages
                    .iter()
                    .filter(|st| st.input == s.topic)
                    .filter_map(|st| applied.stages.get(&st.name).cloned())
                    .collect();
                let route = IngestRoute {
                    target: Target {
                        topic: s.topic.clone(),
                        partitions,
                    },
                    stats: stats.clone(),
                    readers,
                };
                ingest.insert(s.topic.clone(), Arc::new(route));
            }
        }
        self.view.store(Arc::new(View {
            config,
            slots: applied.slots.clone(),
            stages: applied.stages.clone(),
            sources: applied.sources.clone(),
            sinks: applied.sinks.clone(),
            ingest,
        }));
    }

    /// The pipeline as applied last.
    pub fn config(&self) -> PipelineConfig {
        PipelineConfig::clone(self.view.load().config.as_ref().expect("applied at start"))
    }

    /// A stage's plugin slot (live version and history).
    pub fn slot(&self, stage: &str) -> Option<Arc<StageSlot>> {
        self.view.load().slots.get(stage).cloned()
    }

    /// Every stage's slot.
    pub fn slots(&self) -> Vec<Arc<StageSlot>> {
        self.view.load().slots.values().cloned().collect()
    }

    /// Counters of the stages reading `topic`.
    pub fn readers(&self, topic: &str) -> Vec<Arc<StageStats>> {
        let view = self.view.load();
        view.config
            .iter()
            .flat_map(|c| c.stages.iter())
            .filter(|s| s.input == topic)
            .filter_map(|s| view.stages.get(&s.name).cloned())
            .collect()
    }

    /// Where ingest appends the events of `topic`, if an HTTP source writes it.
    pub(crate) fn ingest_route(&self, topic: &str) -> Option<Arc<IngestRoute>> {
        self.view.load().ingest.get(topic).cloned()
    }

    /// The topics open to ingest.
    pub(crate) fn ingest_topics(&self) -> Vec<String> {
        self.view.load().ingest.keys().cloned().collect()
    }

    /// Counters of a stage.
    pub fn stage_stats(&self, name: &str) -> Option<Arc<StageStats>> {
        self.view.load().stages.get(name).cloned()
    }

    /// Counters of a source.
    pub fn source_stats(&self, name: &str) -> Option<Arc<StepStats>> {
        self.view.load().sources.get(name).cloned()
    }

    /// A sink's counters, while it runs.
    pub fn sink_stats(&self, name: &str) -> Option<Arc<StepStats>> {
        self.view.load().sinks.get(name).cloned()
    }

    /// Waits for every step to end (a bounded run ending, or after [`Running::stop`]); after a
    /// stop, interrupts the plugin calls still running when the grace is nearly over (a quarter
    /// of it, at most 1 s, is left for the steps to wind up), and gives up on steps still busy
    /// after `grace`.
    pub fn wait(&self, grace: Duration) -> Summary {
        let mut deadline: Option<Instant> = None;
        let wind_up = (grace / 4).min(Duration::from_secs(1));
        loop {
            // An unbounded run with HTTP ingest serves until it is stopped, even when no step
            // runs (its topics are read by other processes, or by `flowgate consume`).
            let serving = !self.ctl.bounded()
                && !self.ctl.stopping()
                && self.view.load().config.as_ref().is_some_and(|c| {
                    c.sources
                        .values()
                        .any(|s| matches!(s.kind, SourceKind::Http))
                });
            let finished = !serving && self.applied().steps.values().all(Step::finished);
            if finished {
                break;
            }
            if deadline.is_none() && self.ctl.stopping() {
                deadline = Some(Instant::now() + grace);
            }
            if deadline.is_some_and(|d| Instant::now() + wind_up >= d)
                && !self.ctl.interrupt.is_interrupted()
            {
                tracing::warn!(
                    grace = ?grace,
                    "interrupting the plugin calls still running: the grace after the stop is nearly over"
                );
                self.ctl.interrupt.interrupt();
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let busy: Vec<String> = self
                    .applied()
                    .steps
                    .values()
                    .flat_map(|s| s.threads.iter())
                    .filter(|(_, h)| !h.is_finished())
                    .map(|(n, _)| n.clone())
                    .collect();
                self.ctl.fail(format!(
                    "steps still busy {grace:?} after the stop: {}; their uncommitted input will be processed again on restart",
                    busy.join(", ")
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let steps = std::mem::take(&mut self.applied().steps);
        for step in steps.into_values() {
            for (_, h) in step.threads {
                if h.is_finished() {
                    let _ = h.join();
                }
            }
        }
        self.summary()
    }

    /// The counters now.
    pub fn summary(&self) -> Summary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let view = self.view.load();
        let order: Vec<String> = view
            .config
            .iter()
            .flat_map(|c| c.stages.iter().map(|s| s.name.clone()))
            .collect();
        Summary {
            seconds: self.started.elapsed().as_secs_f64(),
            sources: view
                .sources
                .iter()
                .map(|(k, s)| (k.clone(), (get(&s.events), get(&s.rejected))))
                .collect(),
            stages: order
                .iter()
                .filter_map(|n| view.stages.get(n).map(|s| (n, s)))
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
                            windows_fired: get(&s.windows_fired),
                            late: get(&s.late),
                        },
                    )
                })
                .collect(),
            sinks: view
                .sinks
                .iter()
                .map(|(k, s)| (k.clone(), get(&s.events)))
                .collect(),
            failure: self.ctl.failure(),
        }
    }
}
