//! Kafka (and anything speaking its protocol, such as Redpanda) as a source and a sink, through
//! librdkafka (the `rdkafka` crate).
//!
//! **Source** (`source.rs`): one consumer per source, its partitions assigned by the source itself
//! (every partition of the listed topics, or of the topics matching the pattern, looked up again
//! every few seconds). Each Kafka partition is its own producer into the log, with its own
//! checkpoint: the Kafka offset after the last record whose events are durable, saved with the
//! events it appended (the `flowgate-eos` marker scheme of `flow/producer.rs`), so a restart
//! neither skips nor repeats an appended record in exactly-once mode. The same offsets are
//! committed to the consumer group afterwards, for Kafka's own tools to show the lag; Flowgate
//! never resumes from them.
//!
//! **Sink** (`sink.rs`): an idempotent producer (`acks=all`, Java's murmur2 partitioner).
//! At-least-once: the sink's log positions are checkpointed only after Kafka acknowledged every
//! record before them. Exactly-once: a Kafka transaction per commit interval holds the records
//! and one record of the sink's log positions in the control topic
//! [`positions_topic`]; on start the sink fences any earlier instance (`init_transactions`) and
//! resumes from the positions of the last committed transaction. See ARCHITECTURE.md, "Kafka".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::log::LogError;

pub(crate) mod sink;
pub(crate) mod source;

/// The prefix of the compacted topic in which an exactly-once Kafka sink keeps its log
/// positions, one record per transaction: `flowgate.sink-positions.<pipeline>.<sink>`
/// ([`positions_topic`]). One topic per sink: another producer's open transaction there would
/// hold back what a `read_committed` reader sees of this sink's commits.
pub const POSITIONS_TOPIC: &str = "flowgate.sink-positions";

/// The positions topic of sink `sink` of pipeline `pipeline`: characters Kafka does not allow
/// in a topic name become `_`.
pub fn positions_topic(pipeline: &str, sink: &str) -> String {
    let name: String = format!("{POSITIONS_TOPIC}.{pipeline}.{sink}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.chars().take(249).collect()
}

/// Header names under which a Kafka source's events carry where they came from.
pub const TOPIC_HEADER: &str = "kafka.topic";
/// See [`TOPIC_HEADER`].
pub const PARTITION_HEADER: &str = "kafka.partition";
/// See [`TOPIC_HEADER`].
pub const OFFSET_HEADER: &str = "kafka.offset";

/// How long one request to the brokers may take before it is retried or reported.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// See [`FIRST_BACKOFF`].
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What went wrong in a Kafka source or sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka refused the client settings (a bad `properties` entry, say).
    #[error(
        "the Kafka client settings are refused: {0}. Check the `properties` of this step against librdkafka's CONFIGURATION.md"
    )]
    Config(KafkaError),
    /// A request to the brokers failed in a way retrying does not mend.
    #[error("{what}: {error}")]
    Kafka {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// Another instance took over this sink's transactional id.
    #[error(
        "another process took over this sink (transactional id `{0}`): this one stops so that the two do not both write. Run one `flowgate run` per pipeline, or give the pipelines different names"
    )]
    Fenced(String),
    /// The setup asked for cannot work (a missing topic in a bounded run, say).
    #[error("{0}")]
    Invalid(String),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Error {
    fn kafka(what: impl Into<String>, error: KafkaError) -> Error {
        Error::Kafka {
            what: what.into(),
            error,
        }
    }
}

/// The librdkafka settings shared by sources and sinks: the brokers, then the user's
/// `properties` (which cannot name what Flowgate sets itself: the pipeline file's checks refuse
/// those).
pub(crate) fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    // librdkafka's own logs go through `ClientContext::log` below; keep its chatter out.
    c.set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Counts a client's errors, tells whether the brokers are reachable, and sends librdkafka's
/// logs to `tracing` under the step's name.
#[derive(Debug)]
pub(crate) struct Context {
    /// `source:<name>` or `sink:<name>`.
    step: String,
    /// Errors librdkafka reported (transport failures, all brokers down, ...).
    pub errors: AtomicU64,
    /// 1 while the brokers answer, 0 after librdkafka reported them all down.
    pub up: AtomicU64,
    /// When each kind of warning was last logged (a broker away repeats its errors every few
    /// milliseconds: the log says each once per [`WARN_EVERY`]).
    said: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How often one kind of Kafka warning is logged again while it persists.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Context {
    pub(crate) fn new(step: String) -> Context {
        metrics::gauge!("flowgate_kafka_up", "step" => step.clone()).set(1.0);
        Context {
            step,
            errors: AtomicU64::new(0),
            up: AtomicU64::new(1),
            said: Default::default(),
        }
    }

    /// True if a warning of this kind was not logged in the last [`WARN_EVERY`].
    pub(crate) fn should_say(&self, kind: &str) -> bool {
        let mut said = self.said.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        match said.get(kind) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                said.insert(kind.to_owned(), now);
                true
            }
        }
    }

    /// Something came back from the brokers: they are reachable.
    pub(crate) fn reached(&self) {
        if self.up.swap(1, Ordering::Relaxed) == 0 {
            tracing::info!(step = %self.step, "the Kafka brokers answer again");
            metrics::gauge!("flowgate_kafka_up", "step" => self.step.clone()).set(1.0);
        }
    }

    /// Counts an error that a step handles itself (and retries).
    pub(crate) fn count_error(&self, kind: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flowgate_kafka_errors_total", "step" => self.step.clone(), "kind" => kind)
            .increment(1);
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(step = %self.step, facility = fac, "kafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(step = %self.step, facility = fac, "kafka: {message}")
            }
            _ => tracing::debug!(step = %self.step, facility = fac, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let code = error.rdkafka_error_code();
        let down = matches!(
            code,
            Some(Code::AllBrokersDown | Code::BrokerTransportFailure | Code::Resolve)
        );
        self.count_error(if down { "unreachable" } else { "client" });
        if down {
            if self.up.swap(0, Ordering::Relaxed) == 1 {
                metrics::gauge!("flowgate_kafka_up", "step" => self.step.clone()).set(0.0);
            }
            if self.should_say("unreachable") {
                tracing::warn!(step = %self.step, "Kafka brokers unreachable ({reason}); retrying");
            }
        } else if self.should_say(&error.to_string()) {
            tracing::warn!(step = %self.step, "kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Context {}

/// Waits `backoff` (unless the step stops first) and doubles it, up to [`MAX_BACKOFF`].
pub(crate) fn back_off(backoff: &mut Duration, stopped: impl FnMut() -> bool) {
    crate::connect::common::back_off(backoff, MAX_BACKOFF, stopped);
}

/// What `flowgate validate` learns about a Kafka step's brokers.
#[derive(Debug)]
pub struct Probe {
    /// Brokers in the cluster's metadata.
    pub brokers: usize,
    /// The topics asked about that the cluster does not have.
    pub missing: Vec<String>,
}

/// Asks the brokers for their metadata (within `timeout`): whether they can be reached with
/// these settings, and which of `topics` they do not have.
pub fn probe(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    topics: &[String],
    timeout: Duration,
) -> Result<Probe, Error> {
    let consumer: BaseConsumer<Context> = client_config(brokers, properties)
        .create_with_context(Context::new("validate".into()))
        .map_err(Error::Config)?;
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| Error::kafka(format!("cannot reach the Kafka brokers {brokers}"), e))?;
    let known: std::collections::HashSet<&str> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    Ok(Probe {
        brokers: md.brokers().len(),
        missing: topics
            .iter()
            .filter(|t| !known.contains(t.as_str()))
            .cloned()
            .collect(),
    })
}

/// Runs an admin future on this (non-async) thread.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}
