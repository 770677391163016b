//! The pipeline file (TOML): parsing, and every check that can be made before running.
//!
//! Parsing collects every problem it can find in one pass, each with its line and column and
//! what to write instead: unknown keys (with the closest known key), values of the wrong type,
//! a stage reading a topic nobody writes, cycles, missing plugin files. Loading each plugin to
//! check its world is `pipeline::check_plugins`, since it needs a runtime; whether a loaded plugin
//! fits its stage is [`StageConfig::accepts`].
//!
//! Every key and its default is listed in `docs/pipeline.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, IntoDeserializer};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::event::RecordLimits;
use crate::log::{SyncPolicy, TopicConfig};
use crate::runtime::{Limits, PluginInfo, World};
use crate::state::{WindowSpec, Windowing};

/// One problem in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is something to say.
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a pipeline file.
#[derive(Clone, Debug, thiserror::Error)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "{}:{p}", self.path.display())?;
        }
        Ok(())
    }
}

/// Delivery guarantee of the stages and sources that can replay their input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// An input is committed after its outputs are durable; a crash may repeat outputs.
    #[default]
    AtLeastOnce,
    /// Outputs carry their input position; after a crash, outputs already written are not
    /// written again.
    ExactlyOnce,
}

/// How a stage calls its plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `on-batch` with up to `batch-size` events.
    #[default]
    Batch,
    /// `on-event`, one event per call.
    Event,
}

/// What a stage does with an event its plugin fails on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Append it to the dead-letter topic with the error in its headers.
    #[default]
    DeadLetter,
    /// Retry `retryable` errors with backoff; what still fails goes to the dead-letter topic.
    Retry,
    /// Drop it, counted in `flowgate_stage_skipped_total` and logged.
    Skip,
    /// Stop the pipeline.
    Fail,
}

/// Where a stage starts when it has no committed position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// The oldest event held.
    #[default]
    Earliest,
    /// Only events appended after the stage starts.
    Latest,
}

/// A whole pipeline file, parsed and checked.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Pipeline name: names its checkpoints and metrics.
    pub name: String,
    /// Delivery guarantee.
    pub delivery: Delivery,
    /// How often positions are checkpointed.
    pub commit_interval: Duration,
    /// Log sync policy.
    pub sync: SyncPolicy,
    /// The HTTP server, if any.
    pub http: Option<HttpConfig>,
    /// Per-record limits (`[limits]`): of HTTP ingest, and of every stage's outputs unless the
    /// stage sets its own.
    pub limits: RecordLimits,
    /// Topics by name: those declared and those used (with defaults).
    pub topics: BTreeMap<String, TopicSpec>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Stages by name, in an order where each comes after the stages it reads from.
    pub stages: Vec<StageConfig>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// A topic as the pipeline wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Settings for creating it.
    pub config: TopicConfig,
    /// Written by something outside the pipeline (filled before the run).
    pub external: bool,
}

/// The HTTP server: ingest, `/metrics`, `/health`.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: String,
    /// Name of the environment variable holding the bearer token of both ingest and admin
    /// (unless `admin-token-env` / `ingest-token-env` name their own); none: no auth.
    pub token_env: Option<String>,
    /// Name of the environment variable holding the admin API's bearer token.
    pub admin_token_env: Option<String>,
    /// Name of the environment variable holding the ingest bearer token.
    pub ingest_token_env: Option<String>,
    /// Whether the `/admin` routes are served (`admin = false` turns them off).
    pub admin: bool,
    /// Largest request body.
    pub max_body: usize,
    /// Bytes of ingest requests in flight at once before 503.
    pub max_inflight: usize,
    /// Unprocessed events in a topic's readers before ingest answers 429.
    pub max_lag: u64,
}

/// A source: where events come from.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// Its name.
    pub name: String,
    /// The topic it appends to.
    pub topic: String,
    /// What it reads.
    pub kind: SourceKind,
}

/// The kinds of source.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// NDJSON events from a file, read once; resumes where it stopped.
    File {
        /// The file.
        path: PathBuf,
    },
    /// NDJSON events from standard input.
    Stdin,
    /// Generated events `{"seq":N,"pad":"..."}`, for demos and benchmarks.
    Generator {
        /// How many (none: without end).
        count: Option<u64>,
        /// Events per second (none: as fast as the log takes them).
        rate: Option<u64>,
        /// Bytes of each value (at least the JSON around `seq`).
        size: usize,
    },
    /// `POST /topics/<topic>/events` on the HTTP server.
    Http,
}

/// A stage: a plugin between an input topic and its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct StageConfig {
    /// Its name.
    pub name: String,
    /// The plugin file.
    pub plugin: PathBuf,
    /// Line and column of `plugin` in the pipeline file, for problems found when loading it.
    pub plugin_at: (usize, usize),
    /// The topic it reads.
    pub input: String,
    /// Where its outputs go.
    pub output: Output,
    /// Per event or per batch.
    pub mode: Mode,
    /// Most events per `on-batch` call.
    pub batch_size: usize,
    /// How long to wait for a batch to fill.
    pub linger: Duration,
    /// Worker threads (each serves some of the input's partitions); default one per partition.
    pub parallelism: Option<u32>,
    /// Limits of each instance.
    pub limits: Limits,
    /// Plugin config, passed to `init`.
    pub config: Vec<(String, String)>,
    /// Error policy.
    pub on_error: OnError,
    /// Retry settings (for `on-error = "retry"`).
    pub retry: RetryConfig,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// Traps in a minute above which the stage pauses.
    pub max_traps_per_minute: u32,
    /// Where to start without a committed position.
    pub start: Start,
    /// Keyed state granted to the plugin (`flowgate:plugin/state`).
    pub state: bool,
    /// Cap on each instance's keyed state, bytes.
    pub max_state_bytes: usize,
    /// Per-record limits of its outputs: `[limits]`, with the stage's own keys over it.
    pub record_limits: RecordLimits,
    /// Windows, for an aggregator plugin.
    pub window: Option<Windowing>,
    /// Where events too late for every window go (else: by the error policy, as `late`).
    pub late_output: Option<String>,
}

impl StageConfig {
    /// Every topic the stage writes: outputs, late events, dead letters.
    pub fn written_topics(&self) -> Vec<&str> {
        let mut out = self.output.topics();
        out.extend(self.late_output.as_deref());
        if matches!(self.on_error, OnError::DeadLetter | OnError::Retry) {
            out.push(&self.dead_letter_topic);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether a plugin fits the stage: the world the stage's settings call for, and keyed
    /// state only where the stage grants it.
    pub fn accepts(&self, info: &PluginInfo) -> Result<(), Misfit> {
        match (info.kind, &self.window) {
            (World::Aggregator, None) => {
                return Err(Misfit::NoWindow {
                    plugin: info.name.clone(),
                });
            }
            (World::Stage, Some(_)) => {
                return Err(Misfit::NotAggregator {
                    plugin: info.name.clone(),
                });
            }
            _ => {}
        }
        if info.uses_state && !self.state {
            return Err(Misfit::StateNotGranted {
                plugin: info.name.clone(),
            });
        }
        Ok(())
    }
}

/// Why a plugin does not fit its stage ([`StageConfig::accepts`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misfit {
    /// An aggregator plugin, and the stage has no `window`.
    #[error("{plugin} implements the aggregator world, and the stage has no `window`")]
    NoWindow {
        /// The plugin's name.
        plugin: String,
    },
    /// A stage with a `window`, and a plugin of the stage world.
    #[error(
        "the stage has a `window`, and {plugin} implements the stage world, not the aggregator world"
    )]
    NotAggregator {
        /// The plugin's name.
        plugin: String,
    },
    /// A plugin that uses keyed state, and the stage is not granted it.
    #[error(
        "{plugin} uses keyed state (it imports flowgate:plugin/state), and the stage is not granted it"
    )]
    StateNotGranted {
        /// The plugin's name.
        plugin: String,
    },
}

impl Misfit {
    /// What to change in the pipeline file.
    pub fn help(&self) -> &'static str {
        match self {
            Misfit::NoWindow { .. } => {
                "add window = { kind = \"tumbling\", size = \"1m\" } (or hopping, session) to the stage"
            }
            Misfit::NotAggregator { .. } => {
                "a stage with `window` runs an aggregator plugin (world flowgate:plugin/aggregator); remove `window` to run this plugin"
            }
            Misfit::StateNotGranted { .. } => "add state = true to the stage",
        }
    }
}

/// Retries of `retryable` errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all (the first call included).
    pub attempts: u32,
    /// First backoff; doubled after each attempt.
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

/// Where a stage's outputs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Every output to each of these topics (one: the plain case; several: fan-out).
    Topics(Vec<String>),
    /// Each output to the topic its header names.
    Route {
        /// The header the plugin sets.
        header: String,
        /// Header value → topic.
        topics: BTreeMap<String, String>,
        /// Topic for other values and for outputs without the header; none: an error.
        default: Option<String>,
    },
}

impl Output {
    /// Every topic this may write.
    pub fn topics(&self) -> Vec<&str> {
        let mut t: BTreeSet<&str> = BTreeSet::new();
        match self {
            Output::Topics(v) => t.extend(v.iter().map(String::as_str)),
            Output::Route {
                topics, default, ..
            } => {
                t.extend(topics.values().map(String::as_str));
                t.extend(default.as_deref());
            }
        }
        t.into_iter().collect()
    }
}

/// A sink: where events leave the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Its name.
    pub name: String,
    /// The topic it reads.
    pub input: String,
    /// Where it writes.
    pub kind: SinkKind,
    /// Where to start without a committed position.
    pub start: Start,
}

/// The kinds of sink.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkKind {
    /// NDJSON lines appended to a file, synced before the position is committed.
    File {
        /// The file.
        path: PathBuf,
    },
    /// NDJSON lines on standard output.
    Stdout,
}

// ---------------------------------------------------------------------------------------------
// The file's shape: the keys that exist, for unknown-key reports.

const TOP_KEYS: &[&str] = &[
    "name",
    "delivery",
    "commit-interval",
    "log",
    "http",
    "limits",
    "topics",
    "sources",
    "stages",
    "sinks",
];
const LOG_KEYS: &[&str] = &["sync"];
/// Per-record limits: the `[limits]` table, and the same keys in a stage.
const LIMITS_KEYS: &[&str] = &[
    "max-key-bytes",
    "max-value-bytes",
    "max-headers",
    "max-header-bytes",
];
const HTTP_KEYS: &[&str] = &[
    "listen",
    "token-env",
    "admin-token-env",
    "ingest-token-env",
    "admin",
    "max-body",
    "max-inflight",
    "max-lag",
];
const TOPIC_KEYS: &[&str] = &[
    "partitions",
    "segment-bytes",
    "segment-age",
    "retention-bytes",
    "retention-age",
    "external",
];
const SOURCE_KEYS: &[(&str, &[&str])] = &[
    ("file", &["type", "topic", "path"]),
    ("stdin", &["type", "topic"]),
    ("generator", &["type", "topic", "count", "rate", "size"]),
    ("http", &["type", "topic"]),
];
const STAGE_KEYS: &[&str] = &[
    "plugin",
    "input",
    "output",
    "route",
    "mode",
    "batch-size",
    "linger",
    "parallelism",
    "memory",
    "timeout",
    "max-outputs-per-event",
    "max-output-bytes",
    "max-log-rate",
    "max-log-burst",
    "config",
    "on-error",
    "retry",
    "dead-letter-topic",
    "max-traps-per-minute",
    "start",
    "state",
    "max-state-bytes",
    "max-key-bytes",
    "max-value-bytes",
    "max-headers",
    "max-header-bytes",
    "window",
    "out-of-orderness",
    "allowed-lateness",
    "late-output",
];
const WINDOW_KEYS: &[&str] = &["kind", "size", "slide", "gap"];
const ROUTE_KEYS: &[&str] = &["header", "topics", "default"];
const RETRY_KEYS: &[&str] = &["attempts", "backoff", "max-backoff"];
const SINK_KEYS: &[(&str, &[&str])] = &[
    ("file", &["type", "input", "path", "start"]),
    ("stdout", &["type", "input", "start"]),
];

// ---------------------------------------------------------------------------------------------
// Serde shapes of each section (unknown keys are reported by the walk, not by serde).

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TopFile {
    name: Option<String>,
    #[serde(default)]
    delivery: Delivery,
    commit_interval: Option<Dur>,
}

#[derive(Deserialize, Default)]
struct LogFile {
    sync: Option<Spanned<String>>,
}

/// `[limits]`, and the same keys in a stage (each unset key: the level above).
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct LimitsFile {
    max_key_bytes: Option<Size>,
    max_value_bytes: Option<Size>,
    max_headers: Option<usize>,
    max_header_bytes: Option<Size>,
}

impl LimitsFile {
    /// `base` with the keys this sets.
    fn over(&self, base: RecordLimits) -> RecordLimits {
        RecordLimits {
            max_key_bytes: self
                .max_key_bytes
                .as_ref()
                .map_or(base.max_key_bytes, |s| s.0),
            max_value_bytes: self
                .max_value_bytes
                .as_ref()
                .map_or(base.max_value_bytes, |s| s.0),
            max_headers: self.max_headers.unwrap_or(base.max_headers),
            max_header_bytes: self
                .max_header_bytes
                .as_ref()
                .map_or(base.max_header_bytes, |s| s.0),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct HttpFile {
    listen: String,
    token_env: Option<String>,
    admin_token_env: Option<String>,
    ingest_token_env: Option<String>,
    admin: Option<bool>,
    max_body: Option<Size>,
    max_inflight: Option<Spanned<Size>>,
    max_lag: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct TopicFile {
    partitions: Option<u32>,
    segment_bytes: Option<Size>,
    segment_age: Option<Dur>,
    retention_bytes: Option<Size>,
    retention_age: Option<Dur>,
    #[serde(default)]
    external: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SourceFile {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    topic: Spanned<String>,
    path: Option<Spanned<String>>,
    count: Option<u64>,
    rate: Option<u64>,
    size: Option<Size>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StageFile {
    plugin: Spanned<String>,
    input: Spanned<String>,
    output: Option<Spanned<OneOrMany>>,
    route: Option<Spanned<RouteFile>>,
    #[serde(default)]
    mode: Mode,
    batch_size: Option<Spanned<u64>>,
    linger: Option<Dur>,
    parallelism: Option<Spanned<u32>>,
    memory: Option<Size>,
    timeout: Option<Dur>,
    max_outputs_per_event: Option<usize>,
    max_output_bytes: Option<Size>,
    max_log_rate: Option<Size>,
    max_log_burst: Option<Size>,
    #[serde(default)]
    config: BTreeMap<String, Scalar>,
    #[serde(default)]
    on_error: OnError,
    retry: Option<RetryFile>,
    dead_letter_topic: Option<Spanned<String>>,
    max_traps_per_minute: Option<u32>,
    #[serde(default)]
    start: Start,
    #[serde(default)]
    state: bool,
    max_state_bytes: Option<Size>,
    max_key_bytes: Option<Size>,
    max_value_bytes: Option<Size>,
    max_headers: Option<usize>,
    max_header_bytes: Option<Size>,
    window: Option<Spanned<WindowFile>>,
    out_of_orderness: Option<Dur>,
    allowed_lateness: Option<Dur>,
    late_output: Option<String>,
}

#[derive(Deserialize)]
struct WindowFile {
    kind: String,
    size: Option<Dur>,
    slide: Option<Dur>,
    gap: Option<Dur>,
}

#[derive(Deserialize)]
struct RouteFile {
    header: String,
    topics: BTreeMap<String, String>,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RetryFile {
    attempts: Option<u32>,
    backoff: Option<Dur>,
    max_backoff: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SinkFile {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    input: Spanned<String>,
    path: Option<Spanned<String>>,
    #[serde(default)]
    start: Start,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A plugin config value: strings as they are, numbers and booleans as written.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A duration written as `"250ms"`, `"1s"`, `"5m"`.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"250ms\", \"1s\" or \"5m\""
            ))
        })
    }
}

/// A byte size written as `"64MiB"` or a number of bytes.
struct Size(usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_: D::Error| {
            de::Error::custom("expected a size: a number of bytes or a string such as \"64MiB\"")
        })? {
            Raw::N(n) => Ok(Size(n as usize)),
            Raw::S(s) => crate::units::parse_size(&s)
                .map(Size)
                .map_err(de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// Byte offset → 1-based line and column.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

struct Collector<'t> {
    text: &'t str,
    problems: Vec<(usize, Problem)>,
}

impl Collector<'_> {
    fn add(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push((
            span.start,
            Problem {
                line,
                column,
                message: message.into(),
                help,
            },
        ));
    }

    fn serde(&mut self, fallback: Range<usize>, what: &str, e: toml::de::Error) {
        let span = e.span().unwrap_or(fallback);
        self.add(span, format!("{what}: {}", e.message().trim()), None);
    }

    /// Reports keys of `table` not in `known`, with the closest known key.
    fn keys(&mut self, table: &DeTable<'_>, known: &[&str], what: &str) {
        for key in table.keys() {
            let k = key.get_ref().as_ref();
            if known.contains(&k) {
                continue;
            }
            let closest = known
                .iter()
                .map(|c| (strsim::damerau_levenshtein(k, c), *c))
                .min()
                .filter(|(d, _)| *d <= 3.max(k.len() / 3));
            let help = match closest {
                Some((_, c)) => format!("did you mean `{c}`?"),
                None => format!("{what} takes: {}", known.join(", ")),
            };
            self.add(
                key.span(),
                format!("unknown key `{k}` in {what}"),
                Some(help),
            );
        }
    }

    fn section<'a, T: Deserialize<'a>>(
        &mut self,
        value: &Spanned<DeValue<'a>>,
        what: &str,
    ) -> Option<T> {
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.serde(value.span(), what, e);
                None
            }
        }
    }
}

fn as_table<'a, 'i>(
    c: &mut Collector<'_>,
    v: &'a Spanned<DeValue<'i>>,
    what: &str,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            c.add(
                v.span(),
                format!("{what} must be a table"),
                Some(format!("write it as [{what}]")),
            );
            None
        }
    }
}

/// A section of named tables (`[stages.parse]`), each checked by `f`.
fn named<'i, T>(
    c: &mut Collector<'_>,
    root: &DeTable<'i>,
    section: &str,
    mut f: impl FnMut(&mut Collector<'_>, &str, &Spanned<DeValue<'i>>) -> Option<T>,
) -> BTreeMap<String, (Range<usize>, T)> {
    let mut out = BTreeMap::new();
    let Some(v) = root.get(section) else {
        return out;
    };
    let Some(t) = as_table(c, v, section) else {
        return out;
    };
    for (k, v) in t {
        let name = k.get_ref().to_string();
        if let Err(e) = crate::log::check_name(section.trim_end_matches('s'), &name) {
            c.add(k.span(), e.to_string(), None);
            continue;
        }
        let what = format!("[{section}.{name}]");
        if as_table(c, v, &what).is_none() {
            continue;
        }
        if let Some(x) = f(c, &what, v) {
            out.insert(name, (k.span(), x));
        }
    }
    out
}

fn kind_keys<'a>(
    c: &mut Collector<'_>,
    v: &Spanned<DeValue<'_>>,
    what: &str,
    kinds: &'a [(&str, &[&str])],
) -> Option<&'a [&'a str]> {
    let DeValue::Table(t) = v.get_ref() else {
        return None;
    };
    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
    let Some(ty) = t.get("type") else {
        c.add(
            v.span(),
            format!("{what} has no `type`"),
            Some(format!("add type = one of {}", names.join(", "))),
        );
        return None;
    };
    let DeValue::String(s) = ty.get_ref() else {
        c.add(
            ty.span(),
            format!("`type` of {what} must be a string"),
            None,
        );
        return None;
    };
    match kinds.iter().find(|(k, _)| *k == s.as_ref()) {
        Some((_, keys)) => {
            c.keys(t, keys, what);
            Some(keys)
        }
        None => {
            c.add(
                ty.span(),
                format!("unknown type {s:?} in {what}"),
                Some(format!("use one of: {}", names.join(", "))),
            );
            None
        }
    }
}

impl PipelineConfig {
    /// Reads and checks a pipeline file. Relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<PipelineConfig, anyhow::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read pipeline file {}: {e}; give the path of a TOML file (see docs/pipeline.md)",
                path.display()
            )
        })?;
        Ok(PipelineConfig::parse(path, &text)?)
    }

    /// Parses and checks pipeline text; `path` names it in problems and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<PipelineConfig, Problems> {
        let mut c = Collector {
            text,
            problems: Vec::new(),
        };
        let config = parse_into(&mut c, path, text);
        if c.problems.is_empty()
            && let Some(config) = config
        {
            return Ok(config);
        }
        c.problems.sort_by_key(|(at, _)| *at);
        Err(Problems {
            path: path.to_path_buf(),
            problems: c.problems.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

fn parse_into(c: &mut Collector<'_>, path: &Path, text: &str) -> Option<PipelineConfig> {
    let root = match DeTable::parse(text) {
        Ok(r) => r,
        Err(e) => {
            c.serde(0..0, "not valid TOML", e);
            return None;
        }
    };
    let whole = root.span();
    let root = root.into_inner();
    c.keys(&root, TOP_KEYS, "the pipeline file");
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    // Top-level scalars: deserialize the root without its sections.
    let mut top_only = root.clone();
    for s in [
        "log", "http", "limits", "topics", "sources", "stages", "sinks",
    ] {
        top_only.remove(s);
    }
    let top: Option<TopFile> = c.section(
        &Spanned::new(whole.clone(), DeValue::Table(top_only)),
        "pipeline",
    );
    let name = top
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into())
        });
    if let Err(e) = crate::log::check_name("pipeline", &name) {
        c.add(
            0..0,
            e.to_string(),
            Some("set name = \"...\" at the top".into()),
        );
    }

    let mut sync = SyncPolicy::Always;
    if let Some(v) = root.get("log")
        && as_table(c, v, "log").is_some()
    {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, LOG_KEYS, "[log]");
        }
        if let Some(l) = c.section::<LogFile>(v, "[log]")
            && let Some(s) = l.sync
        {
            match s.get_ref().parse() {
                Ok(p) => sync = p,
                Err(e) => c.add(s.span(), e, None),
            }
        }
    }

    let mut limits = RecordLimits::default();
    if let Some(v) = root.get("limits")
        && as_table(c, v, "limits").is_some()
    {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, LIMITS_KEYS, "[limits]");
        }
        if let Some(l) = c.section::<LimitsFile>(v, "[limits]") {
            limits = l.over(limits);
        }
    }

    let mut http = None;
    // Whether the file has an [http] table, even one whose values were refused (each problem
    // is reported once, where it is).
    let mut http_section = false;
    if let Some(v) = root.get("http")
        && as_table(c, v, "http").is_some()
    {
        http_section = true;
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, HTTP_KEYS, "[http]");
        }
        if let Some(h) = c.section::<HttpFile>(v, "[http]") {
            let max_inflight = match h.max_inflight {
                None => 64 << 20,
                Some(m) => {
                    let n = m.get_ref().0;
                    if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&n) {
                        c.add(
                            m.span(),
                            format!(
                                "[http] max-inflight = {n} bytes is out of range: it must be from 1 to {} bytes",
                                tokio::sync::Semaphore::MAX_PERMITS
                            ),
                            Some("write e.g. max-inflight = \"64MiB\"".into()),
                        );
                    }
                    n
                }
            };
            http = Some(HttpConfig {
                listen: h.listen,
                token_env: h.token_env,
                admin_token_env: h.admin_token_env,
                ingest_token_env: h.ingest_token_env,
                admin: h.admin.unwrap_or(true),
                max_body: h.max_body.map_or(8 << 20, |s| s.0),
                max_inflight,
                max_lag: h.max_lag.unwrap_or(1_000_000),
            });
        }
    }

    let declared = named(c, &root, "topics", |c, what, v| {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, TOPIC_KEYS, what);
        }
        let t: TopicFile = c.section(v, what)?;
        let d = TopicConfig::default();
        Some(TopicSpec {
            config: TopicConfig {
                partitions: t.partitions.unwrap_or(d.partitions),
                segment_bytes: t.segment_bytes.map_or(d.segment_bytes, |s| s.0 as u64),
                segment_age: t.segment_age.map(|d| d.0).or(d.segment_age),
                retention_bytes: t.retention_bytes.map(|s| s.0 as u64),
                retention_age: t.retention_age.map(|d| d.0).or(d.retention_age),
                index_interval_bytes: d.index_interval_bytes,
            },
            external: t.external,
        })
    });

    let sources = named(c, &root, "sources", |c, what, v| {
        kind_keys(c, v, what, SOURCE_KEYS)?;
        let s: SourceFile = c.section(v, what)?;
        let kind = match s.kind.get_ref().as_str() {
            "file" => {
                let (p, path) = file_path(c, v, what, s.path.as_ref(), "events.ndjson", &resolve)?;
                if !path.is_file() {
                    c.add(
                        p.span(),
                        format!("source file {} does not exist", path.display()),
                        Some("paths are relative to the pipeline file's directory".into()),
                    );
                }
                SourceKind::File { path }
            }
            "stdin" => SourceKind::Stdin,
            "generator" => SourceKind::Generator {
                count: s.count,
                rate: s.rate.filter(|r| *r > 0),
                size: s.size.map_or(64, |s| s.0),
            },
            _ => SourceKind::Http,
        };
        Some((
            s.topic.span(),
            SourceConfig {
                name: String::new(),
                topic: s.topic.into_inner(),
                kind,
            },
        ))
    });

    let stages = named(c, &root, "stages", |c, what, v| {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, STAGE_KEYS, what);
            for (key, keys, sub) in [
                ("route", ROUTE_KEYS, "route"),
                ("retry", RETRY_KEYS, "retry"),
                ("window", WINDOW_KEYS, "window"),
            ] {
                if let Some(s) = t.get(key)
                    && let DeValue::Table(st) = s.get_ref()
                {
                    c.keys(st, keys, &format!("{what} {sub}"));
                }
            }
        }
        // Checked before the typed pass, so that a bad value elsewhere does not hide it.
        if let DeValue::Table(t) = v.get_ref()
            && let Some(p) = t.get("plugin")
            && let DeValue::String(name) = p.get_ref()
        {
            let plugin = resolve(name);
            if !plugin.is_file() {
                c.add(
                    p.span(),
                    format!("plugin file {} does not exist", plugin.display()),
                    Some("build it (cd plugins && cargo build --release) or fix the path; paths are relative to the pipeline file".into()),
                );
            }
        }
        let s: StageFile = c.section(v, what)?;
        stage(c, what, v.span(), s, limits, &resolve)
    });

    let sinks = named(c, &root, "sinks", |c, what, v| {
        kind_keys(c, v, what, SINK_KEYS)?;
        let s: SinkFile = c.section(v, what)?;
        let kind = match s.kind.get_ref().as_str() {
            "file" => {
                let (_, path) = file_path(c, v, what, s.path.as_ref(), "out.ndjson", &resolve)?;
                SinkKind::File { path }
            }
            _ => SinkKind::Stdout,
        };
        Some((
            s.input.span(),
            SinkConfig {
                name: String::new(),
                input: s.input.into_inner(),
                kind,
                start: s.start,
            },
        ))
    });

    if sources.is_empty() && stages.is_empty() && sinks.is_empty() && c.problems.is_empty() {
        c.add(
            whole.clone(),
            "the pipeline has no sources, stages or sinks",
            Some("add at least a [stages.<name>] table; see docs/pipeline.md".into()),
        );
    }
    if !http_section
        && let Some((name, (span, _))) = sources
            .iter()
            .find(|(_, (_, (_, s)))| matches!(s.kind, SourceKind::Http))
    {
        c.add(
            span.clone(),
            format!("source `{name}` is of type http, but there is no [http] section"),
            Some("add [http] with listen = \"127.0.0.1:8080\"".into()),
        );
    }

    // The graph: who writes each topic, who reads it.
    let mut writers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, (_, (_, s))) in &sources {
        writers
            .entry(&s.topic)
            .or_default()
            .push(format!("source `{name}`"));
    }
    for (name, (_, (_, s))) in &stages {
        for t in s.written_topics() {
            writers
                .entry(t)
                .or_default()
                .push(format!("stage `{name}`"));
        }
    }
    let external = |t: &str| declared.get(t).is_some_and(|(_, s)| s.external);
    let mut readers: Vec<(&str, &str, Range<usize>)> = Vec::new();
    for (name, (_, (span, s))) in &stages {
        readers.push((name, &s.input, span.clone()));
    }
    for (name, (_, (span, s))) in &sinks {
        readers.push((name, &s.input, span.clone()));
    }
    for (reader, topic, span) in &readers {
        if !writers.contains_key(topic) && !external(topic) {
            c.add(
                span.clone(),
                format!("`{reader}` reads topic `{topic}`, which nothing in this pipeline writes"),
                Some(format!(
                    "write it from a source or stage, or declare [topics.{topic}] with external = true if it is filled before the run"
                )),
            );
        }
    }
    for (name, (span, (_, s))) in &stages {
        if s.output.topics().contains(&s.input.as_str()) {
            c.add(
                span.clone(),
                format!("stage `{name}` writes its own input topic `{}`", s.input),
                Some("send its output to another topic".into()),
            );
        }
        if let Some(p) = s.parallelism {
            let partitions = declared
                .get(&s.input)
                .map_or(1, |(_, t)| t.config.partitions);
            if p == 0 || p > partitions {
                c.add(span.clone(), format!("stage `{name}`: parallelism {p} is not between 1 and the {partitions} partition(s) of `{}`", s.input), Some(format!("raise [topics.{}] partitions or lower parallelism", s.input)));
            }
        }
    }
    // Cycles between stages (through topics).
    let order = topo_order(c, &stages);

    let mut topics: BTreeMap<String, TopicSpec> =
        declared.into_iter().map(|(k, (_, v))| (k, v)).collect();
    let used = writers
        .keys()
        .map(|t| t.to_string())
        .chain(readers.iter().map(|(_, t, _)| t.to_string()))
        .collect::<Vec<_>>();
    for t in used {
        if let Err(e) = crate::log::check_name("topic", &t) {
            c.add(0..0, e.to_string(), None);
        }
        topics.entry(t).or_insert_with(|| TopicSpec {
            config: TopicConfig::default(),
            external: false,
        });
    }

    let top = top?;
    let order = order?;
    let mut stage_map: BTreeMap<String, StageConfig> = stages
        .into_iter()
        .map(|(k, (_, (_, mut s)))| {
            s.name = k.clone();
            (k, s)
        })
        .collect();
    Some(PipelineConfig {
        path: path.to_path_buf(),
        name,
        delivery: top.delivery,
        commit_interval: top
            .commit_interval
            .map_or(Duration::from_millis(500), |d| d.0),
        sync,
        http,
        limits,
        topics,
        sources: sources
            .into_iter()
            .map(|(k, (_, (_, mut s)))| {
                s.name = k.clone();
                (k, s)
            })
            .collect(),
        stages: order
            .into_iter()
            .filter_map(|n| stage_map.remove(&n))
            .collect(),
        sinks: sinks
            .into_iter()
            .map(|(k, (_, (_, mut s)))| {
                s.name = k.clone();
                (k, s)
            })
            .collect(),
    })
}

type Stages = BTreeMap<String, (Range<usize>, (Range<usize>, StageConfig))>;

/// Stage names with each after the stages whose output it reads; reports a cycle.
fn topo_order(c: &mut Collector<'_>, stages: &Stages) -> Option<Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    let feeds = |a: &StageConfig, b: &StageConfig| a.output.topics().contains(&b.input.as_str());
    while order.len() < stages.len() {
        let next = stages.iter().find(|(n, (_, (_, s)))| {
            !done.contains(n.as_str())
                && stages
                    .iter()
                    .all(|(m, (_, (_, o)))| m == *n || done.contains(m.as_str()) || !feeds(o, s))
        });
        match next {
            Some((n, _)) => {
                done.insert(n);
                order.push(n.clone());
            }
            None => {
                let left: Vec<&str> = stages
                    .keys()
                    .map(String::as_str)
                    .filter(|n| !done.contains(n))
                    .collect();
                let (span, _) = &stages[left[0]];
                c.add(
                    span.clone(),
                    format!("stages {} form a cycle through their topics", left.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                    Some("a stage's output must not flow back into its own input; break the loop with another topic".into()),
                );
                return None;
            }
        }
    }
    Some(order)
}

fn stage(
    c: &mut Collector<'_>,
    what: &str,
    span: Range<usize>,
    s: StageFile,
    limits: RecordLimits,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Option<(Range<usize>, StageConfig)> {
    let plugin = resolve(s.plugin.get_ref());
    let record_limits = LimitsFile {
        max_key_bytes: s.max_key_bytes,
        max_value_bytes: s.max_value_bytes,
        max_headers: s.max_headers,
        max_header_bytes: s.max_header_bytes,
    }
    .over(limits);
    let output = match (s.output, s.route) {
        (Some(o), None) => match o.into_inner() {
            OneOrMany::One(t) => Output::Topics(vec![t]),
            OneOrMany::Many(v) if v.is_empty() => {
                c.add(
                    span.clone(),
                    format!("{what}: `output` is an empty list"),
                    Some("name at least one topic".into()),
                );
                return None;
            }
            OneOrMany::Many(v) => Output::Topics(v),
        },
        (None, Some(r)) => {
            let r = r.into_inner();
            Output::Route {
                header: r.header,
                topics: r.topics,
                default: r.default,
            }
        }
        (Some(o), Some(_)) => {
            c.add(o.span(), format!("{what} has both `output` and `route`"), Some("keep one: output = \"topic\" (or a list, for fan-out), or route = { header, topics, default }".into()));
            return None;
        }
        (None, None) => {
            c.add(
                span.clone(),
                format!("{what} has no `output`"),
                Some("add output = \"<topic>\" (a list fans out), or a [route] by header".into()),
            );
            return None;
        }
    };
    let batch_size = s.batch_size.as_ref().map_or(1024, |b| *b.get_ref());
    if batch_size == 0 || batch_size > 1 << 20 {
        let at = s.batch_size.as_ref().map_or(span.clone(), |b| b.span());
        c.add(
            at,
            format!("{what}: batch-size {batch_size} is not between 1 and 1048576"),
            None,
        );
    }
    let d = Limits::default();
    let limits = Limits {
        memory_bytes: s.memory.map_or(d.memory_bytes, |m| m.0),
        call_timeout: s.timeout.map_or(d.call_timeout, |t| t.0),
        max_outputs_per_event: s.max_outputs_per_event.unwrap_or(d.max_outputs_per_event),
        max_output_bytes: s.max_output_bytes.map_or(d.max_output_bytes, |b| b.0),
        log_bytes_per_second: s.max_log_rate.map_or(d.log_bytes_per_second, |b| b.0),
        log_burst_bytes: s.max_log_burst.map_or(d.log_burst_bytes, |b| b.0),
        ..d
    };
    let retry = s.retry.map_or(
        RetryConfig {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        },
        |r| RetryConfig {
            attempts: r.attempts.unwrap_or(5).max(1),
            backoff: r.backoff.map_or(Duration::from_millis(100), |d| d.0),
            max_backoff: r.max_backoff.map_or(Duration::from_secs(10), |d| d.0),
        },
    );
    let dead_letter_topic = s
        .dead_letter_topic
        .map_or_else(|| "dead-letters".to_owned(), Spanned::into_inner);
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let window = match s.window {
        None => None,
        Some(w) => {
            let at = w.span();
            let w = w.into_inner();
            let positive = |c: &mut Collector<'_>, name: &str, d: Option<Dur>| match d {
                Some(d) if d.0 >= Duration::from_millis(1) => Some(ms(d.0)),
                Some(_) => {
                    c.add(
                        at.clone(),
                        format!("{what}: window `{name}` must be at least 1ms"),
                        None,
                    );
                    None
                }
                None => {
                    c.add(
                        at.clone(),
                        format!("{what}: a {} window needs `{name}`", w.kind),
                        Some(format!("add {name} = \"10s\" to the window table")),
                    );
                    None
                }
            };
            let spec = match w.kind.as_str() {
                "tumbling" => positive(c, "size", w.size).map(|size| WindowSpec::Tumbling { size }),
                "hopping" | "sliding" => {
                    match (positive(c, "size", w.size), positive(c, "slide", w.slide)) {
                        (Some(size), Some(slide)) if slide <= size => {
                            Some(WindowSpec::Hopping { size, slide })
                        }
                        (Some(size), Some(slide)) => {
                            c.add(at.clone(), format!("{what}: window slide ({slide} ms) is longer than its size ({size} ms)"), Some("events between windows would belong to none; use a slide no longer than the size".into()));
                            None
                        }
                        _ => None,
                    }
                }
                "session" => positive(c, "gap", w.gap).map(|gap| WindowSpec::Session { gap }),
                other => {
                    c.add(
                        at.clone(),
                        format!("{what}: unknown window kind `{other}`"),
                        Some("write kind = \"tumbling\", \"hopping\" or \"session\"".into()),
                    );
                    None
                }
            };
            Some(Windowing {
                spec: spec?,
                out_of_orderness: s.out_of_orderness.as_ref().map_or(0, |d| ms(d.0)),
                allowed_lateness: s.allowed_lateness.as_ref().map_or(0, |d| ms(d.0)),
            })
        }
    };
    if window.is_none()
        && (s.out_of_orderness.is_some() || s.allowed_lateness.is_some() || s.late_output.is_some())
    {
        c.add(
            span.clone(),
            format!("{what}: out-of-orderness, allowed-lateness and late-output apply to windows, and the stage has no `window`"),
            Some("add window = { kind = \"tumbling\", size = \"1m\" } for an aggregator plugin, or remove them".into()),
        );
    }
    Some((
        s.input.span(),
        StageConfig {
            name: String::new(),
            plugin,
            plugin_at: line_col(c.text, s.plugin.span().start),
            input: s.input.into_inner(),
            output,
            mode: s.mode,
            batch_size: batch_size as usize,
            linger: s.linger.map_or(Duration::from_millis(5), |d| d.0),
            parallelism: s.parallelism.map(Spanned::into_inner),
            limits,
            config: s
                .config
                .into_iter()
                .map(|(k, v)| (k, v.into_string()))
                .collect(),
            on_error: s.on_error,
            retry,
            dead_letter_topic,
            max_traps_per_minute: s.max_traps_per_minute.unwrap_or(10),
            start: s.start,
            state: s.state || window.is_some(),
            max_state_bytes: s.max_state_bytes.map_or(256 << 20, |b| b.0),
            record_limits,
            window,
            late_output: s.late_output,
        },
    ))
}

/// The `path` of a file source or sink, resolved; reports it missing.
fn file_path<'p>(
    c: &mut Collector<'_>,
    v: &Spanned<DeValue<'_>>,
    what: &str,
    path: Option<&'p Spanned<String>>,
    example: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Option<(&'p Spanned<String>, PathBuf)> {
    let Some(p) = path else {
        c.add(
            v.span(),
            format!("{what} (type file) has no `path`"),
            Some(format!("add path = \"{example}\"")),
        );
        return None;
    };
    Some((p, resolve(p.get_ref())))
}
