//! The pipeline as the rest of the host sees it: what a parsed and checked file holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::RecordLimits;
use crate::log::{SyncPolicy, TopicConfig};
use crate::runtime::{Limits, PluginInfo, World};
use crate::state::Windowing;

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
    /// Log sync policy (of the embedded log).
    pub sync: SyncPolicy,
    /// A Kafka cluster as the log (`[log] backend = "kafka"`); `None`: the embedded log.
    pub kafka_log: Option<KafkaLog>,
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

/// `[log] backend = "kafka"`: every topic of the pipeline is the Kafka topic
/// `<topic-prefix><topic>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaLog {
    /// The brokers to bootstrap from, `host:port` separated by commas.
    pub brokers: String,
    /// librdkafka settings, as text; never one of those Flowgate sets itself.
    pub properties: BTreeMap<String, String>,
    /// Put before every topic name (default empty: the pipeline's topics are Kafka's by name).
    pub topic_prefix: String,
    /// Replicas of each topic made (-1, the default: the brokers' `default.replication.factor`).
    pub replication_factor: i32,
    /// How long a process that stops answering keeps its partitions (default 10 s).
    pub session_timeout: Duration,
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
    /// Records consumed from Kafka topics.
    Kafka(KafkaSource),
    /// Row changes of PostgreSQL tables, through logical replication.
    PostgresCdc(PostgresCdcSource),
}

impl SourceConfig {
    /// Every topic the source writes: its topic, and a Kafka source's dead letters.
    pub fn written_topics(&self) -> Vec<&str> {
        let mut out = vec![self.topic.as_str()];
        if let SourceKind::Kafka(k) = &self.kind {
            out.push(&k.dead_letter_topic);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A source of type `kafka`: records of Kafka topics, appended to the source's topic.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSource {
    /// The brokers to bootstrap from, `host:port` separated by commas.
    pub brokers: String,
    /// The Kafka topics it consumes.
    pub topics: KafkaTopics,
    /// The consumer group (default `flowgate.<pipeline>.<source>`).
    pub group: String,
    /// Where to start in a partition the source has no checkpoint for.
    pub start: KafkaStart,
    /// librdkafka settings, as text; never one of those Flowgate sets itself.
    pub properties: BTreeMap<String, String>,
    /// What a record's value must be.
    pub format: KafkaFormat,
    /// The log topic records that fail `format` are appended to.
    pub dead_letter_topic: String,
}

/// The Kafka topics a source consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaTopics {
    /// These topics (`topics`).
    Names(Vec<String>),
    /// Every topic whose whole name matches this regular expression (`topic-pattern`), as
    /// written: it is not anchored, so a consumer anchors it (`^(?:...)$`).
    Pattern(String),
}

/// Where a Kafka source starts in a partition it has no checkpoint for (the group's committed
/// offsets are for Kafka's tools; the source resumes from its checkpoints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KafkaStart {
    /// The oldest record held.
    #[default]
    Earliest,
    /// Only records produced after the source starts.
    Latest,
    /// The first record at or after this time (by record timestamp).
    Time(std::time::SystemTime),
}

/// What a Kafka source requires of a record's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    /// Any bytes: the value as it is.
    #[default]
    Raw,
    /// A JSON document; other values are dead-lettered.
    Json,
}

/// How a database connector finds its database: a URL written in the file, or the name of an
/// environment variable holding it (to keep a password out of the file).
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `url`.
    Literal(String),
    /// `url-env`.
    Env(String),
}

impl DbUrl {
    /// The URL; an error naming the variable when `url-env`'s is not set.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            DbUrl::Literal(u) => Ok(u.clone()),
            DbUrl::Env(v) => std::env::var(v).map_err(|_| {
                format!("environment variable {v} (the `url-env` of this connector) is not set; set it to the database's URL")
            }),
        }
    }
}

impl std::fmt::Debug for DbUrl {
    /// Never shows a password written in a URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Literal(u) => write!(f, "Literal({:?})", redact_url(u)),
            DbUrl::Env(v) => write!(f, "Env({v:?})"),
        }
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(p) => p,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Where a database column's or document field's value comes from in an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldSource {
    /// The JSON value (`value`), or a field inside it (`value.a.b`: these names, in order).
    Value(Vec<String>),
    /// The key, as text (`key`).
    Key,
    /// The timestamp, milliseconds since 1970 (`timestamp`).
    Timestamp,
    /// One header's value, as text (`header.<name>`).
    Header(String),
    /// Every header, as a JSON object (`headers`).
    Headers,
    /// Where the event is in the sink's input: `{"topic","partition","offset"}` (`position`).
    Position,
}

impl std::fmt::Display for FieldSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldSource::Value(path) if path.is_empty() => f.write_str("value"),
            FieldSource::Value(path) => write!(f, "value.{}", path.join(".")),
            FieldSource::Key => f.write_str("key"),
            FieldSource::Timestamp => f.write_str("timestamp"),
            FieldSource::Header(h) => write!(f, "header.{h}"),
            FieldSource::Headers => f.write_str("headers"),
            FieldSource::Position => f.write_str("position"),
        }
    }
}

/// How a PostgreSQL sink writes its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresMode {
    /// Every event a new row.
    Insert,
    /// A row per conflict key: an event whose key is there already updates that row.
    Upsert {
        /// The conflict target: columns with a unique index or primary key over them.
        conflict: Vec<String>,
    },
}

/// A sink of type `postgres`: each event a row of a table, a batch a transaction that also
/// records the sink's input positions.
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresSink {
    /// The database.
    pub url: DbUrl,
    /// The table: `name` or `schema.name`, as written (quoted when used).
    pub table: String,
    /// Column → where its value comes from, in the file's order.
    pub columns: Vec<(String, FieldSource)>,
    /// Insert or upsert.
    pub mode: PostgresMode,
    /// Most rows per transaction.
    pub batch_size: usize,
    /// How long a batch waits for more rows after its first.
    pub linger: Duration,
    /// The log topic of rows the database refuses.
    pub dead_letter_topic: String,
}

/// How a MongoDB sink treats a document whose `_id` is there already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MongoMode {
    /// Keep the document there: a replayed event changes nothing.
    #[default]
    Insert,
    /// Replace it with the event's document: the latest event for each `_id` wins.
    Replace,
}

/// A sink of type `mongodb`: each event a document.
#[derive(Clone, Debug, PartialEq)]
pub struct MongoSink {
    /// The server.
    pub url: DbUrl,
    /// The database.
    pub database: String,
    /// The collection.
    pub collection: String,
    /// Where `_id` comes from; none: the event's coordinates (the Kafka record's when the
    /// event came from Kafka, else its position in the sink's input), so a replay writes the
    /// same `_id`.
    pub id: Option<FieldSource>,
    /// Insert or replace.
    pub mode: MongoMode,
    /// Fields added to each document, beside those of the event's value.
    pub fields: Vec<(String, FieldSource)>,
    /// Most documents per write.
    pub batch_size: usize,
    /// How long a batch waits for more documents after its first.
    pub linger: Duration,
    /// The log topic of events that are no document (not a JSON object) or that the server
    /// refuses.
    pub dead_letter_topic: String,
}

/// A source of type `postgres-cdc`: the changes of tables, read from a logical replication
/// slot with the `pgoutput` plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresCdcSource {
    /// The database.
    pub url: DbUrl,
    /// The tables whose changes are read: `name` or `schema.name`.
    pub tables: Vec<String>,
    /// The replication slot (made when missing).
    pub slot: String,
    /// The publication naming the tables (made when missing).
    pub publication: String,
    /// How long to wait before asking again when the slot had no changes.
    pub poll_interval: Duration,
    /// Most changes read per round (whole transactions: a larger one is read whole).
    pub batch_size: usize,
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
            (World::Stage | World::Filter, Some(_)) => {
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
    /// Records produced to Kafka.
    Kafka(KafkaSink),
    /// Rows of a PostgreSQL table.
    Postgres(PostgresSink),
    /// Documents of a MongoDB collection.
    Mongo(MongoSink),
}

impl SinkConfig {
    /// Every topic of the log the sink writes: its dead letters.
    pub fn written_topics(&self) -> Vec<&str> {
        match &self.kind {
            SinkKind::Kafka(k) => vec![k.dead_letter_topic.as_str()],
            SinkKind::Postgres(p) => vec![p.dead_letter_topic.as_str()],
            SinkKind::Mongo(m) => vec![m.dead_letter_topic.as_str()],
            SinkKind::File { .. } | SinkKind::Stdout => Vec::new(),
        }
    }
}

/// A sink of type `kafka`: the events of its input produced to Kafka.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSink {
    /// The brokers to bootstrap from, `host:port` separated by commas.
    pub brokers: String,
    /// The Kafka topic of each record.
    pub topic: KafkaSinkTopic,
    /// librdkafka settings, as text; never one of those Flowgate sets itself.
    pub properties: BTreeMap<String, String>,
    /// Compression of produced batches.
    pub compression: KafkaCompression,
    /// The log topic records Kafka refuses (too large) are appended to.
    pub dead_letter_topic: String,
}

/// The Kafka topic a sink produces each record to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaSinkTopic {
    /// Every record to this topic (`topic`).
    Fixed(String),
    /// Each record to the topic its event header names (`topic-header`).
    Header {
        /// The header.
        name: String,
        /// The topic of records without the header (`topic`); none: such a record is a dead
        /// letter.
        fallback: Option<String>,
    },
}

/// Compression of the record batches a Kafka sink produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaCompression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Misfit, Mode, StageConfig};
    use crate::config::testing::{Files, STAGE};
    use crate::runtime::{PluginInfo, World};

    /// A plugin `p` of `world`, importing `flowgate:plugin/state` or not, as loading reports
    /// it.
    fn plugin(world: World, uses_state: bool) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            hash: "00".repeat(32),
            size: 0,
            from_cache: false,
            load_time: Duration::ZERO,
            world: match world {
                World::Stage => "flowgate:plugin/stage@0.1.1",
                World::Filter => "flowgate:plugin/filter@0.1.1",
                World::Aggregator => "flowgate:plugin/aggregator@0.1.1",
            },
            kind: world,
            uses_state,
            imports: Vec::new(),
            exports: Vec::new(),
            reads_values: true,
        }
    }

    /// Stage `a` of [`STAGE`] with `keys` added.
    fn stage(keys: &str) -> StageConfig {
        let f = Files::new();
        let mut config = f.ok(&format!("{STAGE}output = \"out\"\n{keys}"));
        config.stages.remove(0)
    }

    const WINDOW: &str = "window = { kind = \"tumbling\", size = \"1m\" }\n";

    #[test]
    fn a_plugin_of_the_world_and_grant_its_stage_calls_for_fits() {
        let fits = [
            (
                "a stage plugin, batch",
                stage(""),
                plugin(World::Stage, false),
            ),
            (
                "a stage plugin, per event",
                stage("mode = \"event\"\n"),
                plugin(World::Stage, false),
            ),
            (
                "a stage plugin with state, granted",
                stage("state = true\n"),
                plugin(World::Stage, true),
            ),
            (
                "a stage plugin without state, granted",
                stage("state = true\n"),
                plugin(World::Stage, false),
            ),
            (
                "an aggregator under a window",
                stage(WINDOW),
                plugin(World::Aggregator, false),
            ),
            // A window grants keyed state.
            (
                "an aggregator with state under a window",
                stage(WINDOW),
                plugin(World::Aggregator, true),
            ),
        ];
        for (name, stage, plugin) in fits {
            assert_eq!(stage.accepts(&plugin), Ok(()), "{name}");
        }
        assert_eq!(stage("mode = \"event\"\n").mode, Mode::Event);
    }

    #[test]
    fn each_misfit_says_what_does_not_fit_and_what_to_change() {
        let cases = [
            (
                stage(""),
                plugin(World::Aggregator, false),
                Misfit::NoWindow { plugin: "p".into() },
                "p implements the aggregator world, and the stage has no `window`",
                "add window = { kind = \"tumbling\", size = \"1m\" } (or hopping, session) to the stage",
            ),
            (
                stage(WINDOW),
                plugin(World::Stage, false),
                Misfit::NotAggregator { plugin: "p".into() },
                "the stage has a `window`, and p implements the stage world, not the aggregator world",
                "a stage with `window` runs an aggregator plugin (world flowgate:plugin/aggregator); remove `window` to run this plugin",
            ),
            (
                stage(""),
                plugin(World::Stage, true),
                Misfit::StateNotGranted { plugin: "p".into() },
                "p uses keyed state (it imports flowgate:plugin/state), and the stage is not granted it",
                "add state = true to the stage",
            ),
        ];
        for (stage, plugin, want, message, help) in cases {
            let got = stage.accepts(&plugin).expect_err(message);
            assert_eq!(got, want);
            assert_eq!(got.to_string(), message);
            assert_eq!(got.help(), help);
        }
    }

    #[test]
    fn the_world_is_checked_before_the_state_grant() {
        // An aggregator that uses state, in a stage with neither window nor state: the world
        // is what is reported.
        assert_eq!(
            stage("").accepts(&plugin(World::Aggregator, true)),
            Err(Misfit::NoWindow { plugin: "p".into() })
        );
        // A stage plugin that uses state under a window (which grants state): the world.
        assert_eq!(
            stage(WINDOW).accepts(&plugin(World::Stage, true)),
            Err(Misfit::NotAggregator { plugin: "p".into() })
        );
    }
}
