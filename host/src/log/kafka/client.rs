//! What every Kafka client of Flowgate shares (the log's, the sources' and the sinks'): the
//! settings made from `brokers` and `properties`, and a client context that counts errors,
//! keeps `flowgate_kafka_up` and sends librdkafka's logs to `tracing`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

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
    /// The last delivery a producer with this context failed, taken by whoever waits for it.
    pub undelivered: std::sync::Mutex<Option<KafkaError>>,
}

/// How often one kind of Kafka warning is logged again while it persists.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(30);

impl Context {
    pub(crate) fn new(step: String) -> Context {
        metrics::gauge!("flowgate_kafka_up", "step" => step.clone()).set(1.0);
        Context {
            step,
            errors: AtomicU64::new(0),
            up: AtomicU64::new(1),
            said: Default::default(),
            undelivered: Default::default(),
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

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.reached(),
            Err((e, _)) => *self.undelivered.lock().expect("not poisoned") = Some(e.clone()),
        }
    }
}
