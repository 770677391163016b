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
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::log::LogError;
pub(crate) use crate::log::kafka::{Context, WARN_EVERY, block_on, client_config};

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
    crate::log::safe_name(&format!("{POSITIONS_TOPIC}.{pipeline}.{sink}"), 249)
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
