//! The Kafka sink: a log topic's events produced to Kafka, at-least-once (positions checkpointed
//! after Kafka acknowledged) or exactly-once (records and positions in one Kafka transaction).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode as Code;
use serde::{Deserialize, Serialize};

use super::{
    Context, Error, FIRST_BACKOFF, REQUEST_TIMEOUT, back_off, block_on, client_config,
    positions_topic,
};
use crate::config::{KafkaCompression, KafkaSink, KafkaSinkTopic};
use crate::connect::common::{cursors, log_id};
use crate::connect::{SinkCtx, append_events};
use crate::event::{self, Event, EventRef, Header as EventHeader};
use crate::flow::producer::Target;
use crate::flow::reader::Cursor;

/// Rows read from one partition per round.
const READ: usize = 4096;
/// What a record takes on the wire beyond its key, value and headers (the record and batch
/// headers), for the size check against the topic's `max.message.bytes`.
const RECORD_OVERHEAD: usize = 128;
/// How long a transaction's commit may take before it is tried again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A record Kafka did not take, reported by the producer.
struct Failure {
    /// Index into the round's `sent` positions.
    sent: usize,
    error: KafkaError,
}

struct SinkContext {
    inner: Context,
    failures: Mutex<Vec<Failure>>,
}

impl rdkafka::client::ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: usize) {
        match result {
            Ok(_) => self.inner.reached(),
            Err((error, _)) => self.failures.lock().expect("not poisoned").push(Failure {
                sent,
                error: error.clone(),
            }),
        }
    }
}

/// The positions an exactly-once sink commits in its transactions.
#[derive(Serialize, Deserialize)]
struct Positions {
    /// The data directory's log these positions are in (see [`log_id`]): positions of another
    /// log (the data directory was deleted and made anew) are not this one's.
    #[serde(default)]
    log: String,
    /// Log input partition → the offset of the next event to send.
    positions: Vec<u64>,
}

/// The at-least-once checkpoint (in the log's checkpoint store, like the file sink's).
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    positions: Vec<u64>,
}

/// Why a record goes to the dead-letter topic instead of Kafka.
struct Refused {
    kind: &'static str,
    why: String,
    /// Sending it again would be refused again.
    permanent: bool,
}

/// Everything a round of sending needs besides the producer.
struct Sender<'a> {
    ctx: &'a SinkCtx,
    cfg: &'a KafkaSink,
    /// Topic → `max.message.bytes` (looked up once per topic; `None` when unknown).
    limits: HashMap<String, Option<usize>>,
    admin: AdminClient<rdkafka::client::DefaultClientContext>,
    dead: Target,
    /// Log (partition, offset) of each record sent this round, indexed by delivery opaque.
    sent: Vec<(u32, u64)>,
    /// Records to dead-letter without sending (exactly-once: refused by themselves in an aborted
    /// transaction).
    skip: HashMap<(u32, u64), Refused>,
    /// Records refused in a batch with others (exactly-once): sent alone on the next try.
    suspects: HashMap<(u32, u64), Refused>,
    /// Exactly-once: the transaction can take no more records and has to be aborted.
    abortable: bool,
}

/// Runs the sink until the pipeline stops (or, bounded, its input is done).
pub(crate) fn run(ctx: &SinkCtx, cfg: &KafkaSink) -> Result<(), Error> {
    let name = &ctx.config.name;
    let transactional_id = format!("flowgate.{}.{}", ctx.pipeline, name);
    let admin: AdminClient<_> = client_config(&cfg.brokers, &cfg.properties)
        .create()
        .map_err(Error::Config)?;
    let dead = {
        let info = ctx.log.describe(&cfg.dead_letter_topic)?;
        Target {
            topic: cfg.dead_letter_topic.clone(),
            partitions: info.partitions.len() as u32,
        }
    };
    let mut sender = Sender {
        ctx,
        cfg,
        limits: HashMap::new(),
        admin,
        dead,
        sent: Vec::new(),
        skip: HashMap::new(),
        suspects: HashMap::new(),
        abortable: false,
    };
    // The fixed topic must exist: wait for it (clearly), rather than dead-letter every event.
    if let KafkaSinkTopic::Fixed(t)
    | KafkaSinkTopic::Header {
        fallback: Some(t), ..
    } = &cfg.topic
    {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match sender.limit(t) {
                Ok(_) => break,
                Err(e) => {
                    if ctx.ctl.bounded() {
                        return Err(e);
                    }
                    tracing::error!(sink = %name, "{e}; retrying in {backoff:?}");
                    back_off(&mut backoff, || ctx.halted());
                    if ctx.halted() {
                        return Ok(());
                    }
                }
            }
        }
    }
    let mut config = client_config(&cfg.brokers, &cfg.properties);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java's default partitioner: a key lands where a Java producer would put it.
        .set("partitioner", "murmur2_random")
        .set("compression.type", compression(&cfg.compression));
    if !cfg.properties.contains_key("message.timeout.ms") {
        // Retry while the brokers are away rather than fail records: an outage delays, it
        // does not dead-letter (exactly-once: bounded by the transaction's timeout instead).
        config.set("message.timeout.ms", "0");
    }
    if let Some(Some(l)) = fixed_topic(cfg).and_then(|t| sender.limits.get(t)) {
        // The broker checks a whole batch against the topic's limit: batches stay under it, so
        // only a record too large by itself is refused (and that one is caught before sending).
        if !cfg.properties.contains_key("message.max.bytes") {
            config.set(
                "message.max.bytes",
                (*l).max(RECORD_OVERHEAD * 8).to_string(),
            );
        }
        if !cfg.properties.contains_key("batch.size") {
            config.set("batch.size", (*l * 3 / 4).clamp(1, 1_000_000).to_string());
        }
    }
    if !cfg.properties.contains_key("reconnect.backoff.max.ms") {
        // Back within 2 s of the brokers (librdkafka's default waits up to 10 s).
        config.set("reconnect.backoff.max.ms", "2000");
    }
    if ctx.exactly_once {
        config.set("transactional.id", &transactional_id);
        config.remove("message.timeout.ms");
    }
    let make = |config: &rdkafka::ClientConfig| -> Result<BaseProducer<SinkContext>, Error> {
        config
            .create_with_context(SinkContext {
                inner: Context::new(format!("sink:{name}")),
                failures: Mutex::new(Vec::new()),
            })
            .map_err(Error::Config)
    };
    let producer = make(&config)?;
    if ctx.exactly_once {
        exactly_once(&mut sender, producer, &transactional_id)
    } else {
        at_least_once(&mut sender, producer)
    }
}

fn fixed_topic(cfg: &KafkaSink) -> Option<&str> {
    match &cfg.topic {
        KafkaSinkTopic::Fixed(t) => Some(t),
        KafkaSinkTopic::Header { fallback, .. } => fallback.as_deref(),
    }
}

fn compression(c: &KafkaCompression) -> &'static str {
    match c {
        KafkaCompression::None => "none",
        KafkaCompression::Gzip => "gzip",
        KafkaCompression::Snappy => "snappy",
        KafkaCompression::Lz4 => "lz4",
        KafkaCompression::Zstd => "zstd",
    }
}

impl Sender<'_> {
    /// The topic's `max.message.bytes`; an error when the topic does not exist.
    fn limit(&mut self, topic: &str) -> Result<Option<usize>, Error> {
        if let Some(l) = self.limits.get(topic) {
            return Ok(*l);
        }
        // describe_configs answers a missing topic with no entries rather than an error: ask the
        // metadata whether it exists.
        let md = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| {
                Error::kafka(
                    format!("cannot look up topic `{topic}` on {}", self.cfg.brokers),
                    e,
                )
            })?;
        let exists = md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Err(Error::Invalid(format!(
                "topic `{topic}` does not exist on {}; create it (for example: kafka-topics.sh --create --topic {topic} --bootstrap-server {})",
                self.cfg.brokers, self.cfg.brokers
            )));
        }
        let got = block_on(self.admin.describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)),
        ))
        .map_err(|e| {
            Error::kafka(
                format!(
                    "cannot read the settings of topic `{topic}` on {}",
                    self.cfg.brokers
                ),
                e,
            )
        })?;
        let limit = match got.into_iter().next() {
            Some(Ok(r)) => r
                .get("max.message.bytes")
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse().ok()),
            Some(Err(Code::UnknownTopicOrPartition)) => {
                return Err(Error::Invalid(format!(
                    "topic `{topic}` does not exist on {}; create it (for example: kafka-topics.sh --create --topic {topic} --bootstrap-server {})",
                    self.cfg.brokers, self.cfg.brokers
                )));
            }
            Some(Err(code)) => {
                return Err(Error::kafka(
                    format!("cannot read the settings of topic `{topic}`"),
                    KafkaError::AdminOp(code),
                ));
            }
            None => None,
        };
        self.limits.insert(topic.to_owned(), limit);
        Ok(limit)
    }

    /// Sends one row (waiting while librdkafka's queue is full); a row Kafka would refuse is
    /// returned with the reason.
    fn send(
        &mut self,
        producer: &BaseProducer<SinkContext>,
        row: &EventRef<'_>,
        at: (u32, u64),
    ) -> Result<Option<Refused>, Error> {
        let topic = match topic_of(self.cfg, row) {
            Ok(t) => t,
            Err(r) => return Ok(Some(r)),
        };
        let limit = match self.limit(&topic) {
            Ok(l) => l,
            Err(Error::Invalid(why)) => {
                return Ok(Some(Refused {
                    kind: "unknown-topic",
                    why,
                    permanent: true,
                }));
            }
            Err(e) => return Err(e),
        };
        let size = row.key.map_or(0, <[u8]>::len)
            + row.value.len()
            + row
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>()
            + RECORD_OVERHEAD;
        if let Some(l) = limit
            && size > l
        {
            return Ok(Some(Refused {
                kind: "too-large",
                why: format!(
                    "the record takes {size} bytes, over the {l} of max.message.bytes of topic `{topic}`"
                ),
                permanent: true,
            }));
        }
        let mut headers = OwnedHeaders::new_with_capacity(row.headers.len());
        for (n, v) in row.headers.iter() {
            headers = headers.insert(Header {
                key: &String::from_utf8_lossy(n),
                value: Some(v),
            });
        }
        let index = self.sent.len();
        let mut record = BaseRecord::with_opaque_to(&topic, index)
            .payload(row.value)
            .headers(headers);
        if let Some(k) = row.key {
            record = record.key(k);
        }
        if row.timestamp > 0 {
            record = record.timestamp(row.timestamp);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                    if self.ctx.halted() && self.ctx.ctl.failure().is_some() {
                        return Err(Error::Invalid("the pipeline failed".into()));
                    }
                }
                Err((KafkaError::MessageProduction(Code::MessageSizeTooLarge), _)) => {
                    return Ok(Some(Refused {
                        kind: "too-large",
                        why: format!(
                            "the record takes {size} bytes, over the producer's message.max.bytes"
                        ),
                        permanent: true,
                    }));
                }
                Err((e, _))
                    if self.ctx.exactly_once
                        && matches!(e.rdkafka_error_code(), Some(Code::State | Code::Fatal)) =>
                {
                    // The transaction failed (a record refused, the broker away too long): it
                    // is aborted and sent again.
                    self.abortable = true;
                    return Ok(None);
                }
                Err((e, _)) => {
                    return Ok(Some(Refused {
                        kind: "refused",
                        why: format!("the Kafka producer refused the record: {e}"),
                        permanent: true,
                    }));
                }
            }
        }
        self.sent.push(at);
        Ok(None)
    }

    /// The input row at `at`, read back from the log (for the dead-letter topic: a refusal is
    /// rare, so rows are not kept in memory for it).
    fn row_at(&self, at: (u32, u64)) -> Result<Event, Error> {
        let mut c = Cursor::new(self.ctx.log.clone(), &self.ctx.config.input, at.0, at.1);
        let input = c
            .next(1, Duration::ZERO, Duration::ZERO)?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "input {}/{} offset {} is gone from the log (deleted by retention?): it cannot be dead-lettered",
                    self.ctx.config.input, at.0, at.1
                ))
            })?;
        let cols = event::columns(&input.batch).expect("the log checked the batch");
        Ok(event::to_owned(&cols.row(0)))
    }

    /// Appends refused rows to the dead-letter topic (durably) with why and where from.
    fn dead_letter(&self, mut rows: Vec<((u32, u64), Refused)>) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_by_key(|(at, _)| *at);
        rows.dedup_by_key(|(at, _)| *at);
        let name = &self.ctx.config.name;
        let mut events = Vec::with_capacity(rows.len());
        for ((p, offset), r) in rows {
            tracing::warn!(sink = %name, partition = p, offset, "event sent to the dead-letter topic: {}", r.why);
            let mut e = self.row_at((p, offset))?;
            for (k, v) in [
                ("flowgate-sink", name.clone()),
                ("flowgate-error-kind", r.kind.to_owned()),
                ("flowgate-error", r.why),
                ("flowgate-topic", self.ctx.config.input.clone()),
                ("flowgate-partition", p.to_string()),
                ("flowgate-offset", offset.to_string()),
            ] {
                e.headers.push(EventHeader {
                    name: k.to_owned(),
                    value: v.into_bytes(),
                });
            }
            events.push(e);
        }
        metrics::counter!("flowgate_sink_dead_letters_total", "sink" => name.clone())
            .increment(events.len() as u64);
        append_events(&self.ctx.log, &self.dead, &events, 0)?;
        Ok(())
    }

    /// Reads up to [`READ`] rows from each cursor and sends them; the refused ones are returned.
    /// A row in `skip` is refused without being sent; a row in `suspects` (refused in a batch
    /// with others) is sent alone, so that only a row refused for itself is dead-lettered.
    /// The bool is true when every cursor is at the end of a closed input. Stops early when a
    /// transaction has to be aborted (`abortable`).
    #[expect(clippy::type_complexity, reason = "one caller per delivery mode")]
    fn round(
        &mut self,
        producer: &BaseProducer<SinkContext>,
        cursors: &mut [Cursor],
    ) -> Result<(Vec<((u32, u64), Refused)>, bool, usize), Error> {
        let wait = if cursors.len() == 1 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(2)
        };
        let mut refused = Vec::new();
        let mut all_done = true;
        let mut n = 0;
        for c in cursors.iter_mut() {
            if self.abortable {
                all_done = false;
                break;
            }
            match c.next(READ, Duration::ZERO, wait)? {
                Some(input) => {
                    all_done = false;
                    let cols = event::columns(&input.batch).expect("the log checked the batch");
                    for (i, row) in cols.rows().enumerate() {
                        let at = (c.partition, input.first + i as u64);
                        if let Some(r) = self.skip.get(&at) {
                            refused.push((
                                at,
                                Refused {
                                    kind: r.kind,
                                    why: r.why.clone(),
                                    permanent: true,
                                },
                            ));
                            continue;
                        }
                        let alone = self.suspects.remove(&at).is_some();
                        if alone && !self.flushed(producer) {
                            return Err(Error::Invalid("the pipeline failed".into()));
                        }
                        if let Some(r) = self.send(producer, &row, at)? {
                            refused.push((at, r));
                        } else if alone {
                            if !self.flushed(producer) {
                                return Err(Error::Invalid("the pipeline failed".into()));
                            }
                            match self.take_failure(producer, at) {
                                // Refused by itself: dead-lettered (exactly-once: in the next
                                // try of the transaction, which this refusal aborts).
                                Some(r) if r.permanent && self.ctx.exactly_once => {
                                    self.skip.insert(at, r);
                                    self.abortable = true;
                                }
                                Some(r) if r.permanent => refused.push((at, r)),
                                // Failed for another reason (the transaction failed, the
                                // record was purged): still a suspect, sent alone next time.
                                Some(r) => {
                                    self.suspects.insert(at, r);
                                    self.abortable = self.ctx.exactly_once;
                                    if !self.ctx.exactly_once {
                                        return Err(Error::Invalid(format!(
                                            "input {}/{} offset {}: Kafka did not take the record",
                                            self.ctx.config.input, at.0, at.1
                                        )));
                                    }
                                }
                                None => {}
                            }
                        }
                        if self.abortable {
                            // Seek back to the first row not taken: the transaction is
                            // aborted and sent again from its start anyway.
                            break;
                        }
                    }
                    n += input.len();
                }
                None => {
                    if !self.ctx.ctl.input_done(&self.ctx.log, c) {
                        all_done = false;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        Ok((refused, all_done, n))
    }

    /// Waits until every record sent is acknowledged or refused; false if the run failed
    /// elsewhere meanwhile (what was not acknowledged is sent again by the next run).
    fn flushed(&self, producer: &BaseProducer<SinkContext>) -> bool {
        loop {
            match producer.flush(Duration::from_millis(200)) {
                Ok(()) => return true,
                Err(_) if self.ctx.ctl.failure().is_some() => return false,
                Err(_) => {}
            }
        }
    }

    /// The refusal of the record sent for `at`, if the producer reported one (taken out of the
    /// reported failures).
    fn take_failure(
        &mut self,
        producer: &BaseProducer<SinkContext>,
        at: (u32, u64),
    ) -> Option<Refused> {
        let mut failures = producer.context().failures.lock().expect("not poisoned");
        let i = failures
            .iter()
            .position(|f| self.sent.get(f.sent) == Some(&at))?;
        Some(refusal(&failures.swap_remove(i).error))
    }

    /// The failures the producer reported: (where, why).
    fn failures(&mut self, producer: &BaseProducer<SinkContext>) -> Vec<((u32, u64), Refused)> {
        let failures =
            std::mem::take(&mut *producer.context().failures.lock().expect("not poisoned"));
        failures
            .into_iter()
            .filter_map(|f| Some((*self.sent.get(f.sent)?, refusal(&f.error))))
            .collect()
    }

    fn count(&self, n: usize) {
        self.ctx.stats.events.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("flowgate_sink_events_total", "sink" => self.ctx.config.name.clone())
            .increment(n as u64);
    }
}

/// The Kafka topic of a row (borrowed: no allocation per record for a fixed topic), or why it
/// has none.
fn topic_of<'x>(cfg: &'x KafkaSink, row: &EventRef<'x>) -> Result<Cow<'x, str>, Refused> {
    match &cfg.topic {
        KafkaSinkTopic::Fixed(t) => Ok(Cow::Borrowed(t)),
        KafkaSinkTopic::Header { name, fallback } => {
            let named = row
                .headers
                .iter()
                .find(|(n, _)| *n == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v));
            named
                .or_else(|| fallback.as_deref().map(Cow::Borrowed))
                .ok_or(Refused {
                    kind: "no-topic",
                    why: format!("the event has no `{name}` header naming its topic, and the sink has no `topic` to fall back to"),
                    permanent: true,
                })
        }
    }
}

/// Why Kafka refused a record, by its error.
fn refusal(error: &KafkaError) -> Refused {
    let code = error.rdkafka_error_code();
    let kind = match code {
        Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize) => "too-large",
        Some(Code::UnknownTopicOrPartition | Code::UnknownTopic) => "unknown-topic",
        _ => "delivery",
    };
    // What sending again cannot mend, as opposed to a timeout, a purge or a broker away.
    let permanent = kind != "delivery"
        || matches!(
            code,
            Some(
                Code::InvalidTimestamp
                    | Code::InvalidRecord
                    | Code::InvalidMessage
                    | Code::TopicAuthorizationFailed
                    | Code::PolicyViolation
                    | Code::UnsupportedForMessageFormat
            )
        );
    Refused {
        kind,
        why: format!("Kafka refused the record: {error}"),
        permanent,
    }
}

/// At-least-once: send, wait until Kafka acknowledged everything sent, then checkpoint.
fn at_least_once(
    sender: &mut Sender<'_>,
    producer: BaseProducer<SinkContext>,
) -> Result<(), Error> {
    let ctx = sender.ctx;
    let ckpt_name = format!("{}.sink.{}", ctx.pipeline, ctx.config.name);
    let saved: Option<Checkpoint> = match ctx.log.load_checkpoint(&ckpt_name)? {
        Some(b) => Some(serde_json::from_slice(&b).map_err(|e| {
            Error::Invalid(format!("checkpoint {ckpt_name} is not readable ({e}); delete checkpoints/{ckpt_name}.ckpt to start the sink over"))
        })?),
        None => None,
    };
    let mut cursors = cursors(ctx, saved.as_ref().map(|c| &c.positions[..]))?;
    let save = |cursors: &[Cursor]| -> Result<(), Error> {
        let c = Checkpoint {
            positions: cursors.iter().map(|c| c.position).collect(),
        };
        ctx.log
            .save_checkpoint(&ckpt_name, &serde_json::to_vec(&c).expect("serialises"))?;
        Ok(())
    };
    if saved.is_none() {
        save(&cursors)?;
    }
    let mut saved_at = Instant::now();
    let mut unsaved = 0;
    let mut refused = Vec::new();
    loop {
        let (r, all_done, n) = sender.round(&producer, &mut cursors)?;
        refused.extend(r);
        unsaved += n;
        let stop = ctx.halted() || all_done;
        if unsaved > 0 && (stop || saved_at.elapsed() >= ctx.commit_interval) {
            // Everything sent so far must be acknowledged before the positions move past it.
            if !sender.flushed(&producer) {
                return Ok(());
            }
            // A refused batch refuses every record in it: each is sent again alone, and only
            // those refused for themselves are dead-lettered.
            for (at, _) in sender.failures(&producer) {
                let row = sender.row_at(at)?;
                let mut pairs = Vec::new();
                let view = event::view(&row, &mut pairs);
                if let Some(r) = sender.send(&producer, &view, at)? {
                    refused.push((at, r));
                    continue;
                }
                if !sender.flushed(&producer) {
                    return Ok(());
                }
                if let Some(r) = sender.take_failure(&producer, at) {
                    refused.push((at, r));
                }
            }
            let dead = refused.len();
            sender.dead_letter(std::mem::take(&mut refused))?;
            save(&cursors)?;
            sender.count(unsaved.saturating_sub(dead));
            sender.sent.clear();
            unsaved = 0;
            saved_at = Instant::now();
        }
        if stop {
            return Ok(());
        }
    }
}

/// Exactly-once: one Kafka transaction per commit interval holds the records and the positions.
fn exactly_once(
    sender: &mut Sender<'_>,
    producer: BaseProducer<SinkContext>,
    transactional_id: &str,
) -> Result<(), Error> {
    let ctx = sender.ctx;
    ensure_positions_topic(sender)?;
    let mut backoff = FIRST_BACKOFF;
    // Fences an earlier instance of this sink and ends the transaction it left open.
    loop {
        match producer.init_transactions(REQUEST_TIMEOUT) {
            Ok(()) => break,
            Err(e) if fatal(&e) => {
                return Err(Error::kafka("cannot start the sink's transactions", e));
            }
            Err(e) => {
                tracing::warn!(sink = %ctx.config.name, "cannot start the sink's transactions yet: {e}; retrying in {backoff:?}");
                back_off(&mut backoff, || ctx.halted());
                if ctx.halted() {
                    return Ok(());
                }
            }
        }
    }
    let log = log_id(ctx)?;
    let saved = read_positions(sender, transactional_id, &log)?;
    let mut cursors = cursors(ctx, saved.as_deref())?;
    let mut committed: Vec<u64> = cursors.iter().map(|c| c.position).collect();
    // No position before the first commit would mean "everything is mine": the first
    // transaction commits the starting positions even when there is nothing to send.
    let mut first = saved.is_none();
    backoff = FIRST_BACKOFF;
    loop {
        if let Err(e) = producer.begin_transaction() {
            if fatal(&e) {
                return Err(Error::kafka("cannot begin a transaction", e));
            }
            // An abort still under way: finish it first.
            abort(&producer, ctx, &mut backoff)?;
            continue;
        }
        let began = Instant::now();
        let mut refused = Vec::new();
        let mut n = 0;
        let mut all_done;
        loop {
            let (r, done, got) = sender.round(&producer, &mut cursors)?;
            refused.extend(r);
            n += got;
            all_done = done;
            if sender.abortable
                || ctx.halted()
                || all_done
                || began.elapsed() >= ctx.commit_interval
            {
                break;
            }
        }
        if !sender.abortable && n == 0 && refused.is_empty() && !first {
            abort(&producer, ctx, &mut backoff)?;
            if ctx.halted() || all_done {
                return Ok(());
            }
            continue;
        }
        let positions = Positions {
            log: log.clone(),
            positions: cursors.iter().map(|c| c.position).collect(),
        };
        let committed_now = !sender.abortable
            && send_positions(&producer, ctx, transactional_id, &positions)
            && commit(&producer, ctx, transactional_id)?;
        if committed_now {
            let dead = refused.len();
            sender.dead_letter(refused)?;
            sender.count(n.saturating_sub(dead));
            committed = positions.positions;
            sender.skip.clear();
            first = false;
            backoff = FIRST_BACKOFF;
            sender.sent.clear();
            if ctx.halted() || all_done {
                return Ok(());
            }
            continue;
        }
        tracing::warn!(sink = %ctx.config.name, "the transaction cannot commit; aborting it and sending its events again");
        producer.context().inner.count_error("transaction");
        abort(&producer, ctx, &mut backoff)?;
        // Records refused in this transaction are sent alone next time: only a record refused
        // for itself is dead-lettered, its batch-mates go through.
        for (at, r) in sender.failures(&producer) {
            if r.permanent {
                sender.suspects.insert(at, r);
            }
        }
        sender.abortable = false;
        sender.sent.clear();
        for (c, &p) in cursors.iter_mut().zip(&committed) {
            c.seek(p);
        }
        if ctx.halted() {
            // Sent again by the next run, from the committed positions.
            return Ok(());
        }
        back_off(&mut backoff, || ctx.halted());
    }
}

/// Commits the transaction, trying again while the error is retriable. False when it has to
/// be aborted; an error when the producer is fenced or failed for good.
fn commit(
    producer: &BaseProducer<SinkContext>,
    ctx: &SinkCtx,
    transactional_id: &str,
) -> Result<bool, Error> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match producer.commit_transaction(COMMIT_TIMEOUT) {
            Ok(()) => return Ok(true),
            Err(e) if fenced(&e) => return Err(Error::Fenced(transactional_id.to_owned())),
            Err(e) if fatal(&e) => return Err(Error::kafka("the sink's transaction failed", e)),
            Err(KafkaError::Transaction(t)) if t.is_retriable() && !t.txn_requires_abort() => {
                tracing::warn!(sink = %ctx.config.name, "the commit did not complete ({t}); trying again");
                back_off(&mut backoff, || ctx.ctl.failure().is_some());
                if ctx.ctl.failure().is_some() {
                    return Ok(false);
                }
            }
            Err(e) => {
                tracing::warn!(sink = %ctx.config.name, "the transaction did not commit: {e}");
                return Ok(false);
            }
        }
    }
}

/// Aborts the transaction, trying again until the broker confirms it (a new transaction cannot
/// begin before).
fn abort(
    producer: &BaseProducer<SinkContext>,
    ctx: &SinkCtx,
    backoff: &mut Duration,
) -> Result<(), Error> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match producer.abort_transaction(COMMIT_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(e) if attempts >= 10 => {
                return Err(Error::kafka(
                    "cannot abort the transaction (10 attempts)",
                    e,
                ));
            }
            Err(e) if fenced(&e) => {
                return Err(Error::Fenced(format!(
                    "flowgate.{}.{}",
                    ctx.pipeline, ctx.config.name
                )));
            }
            Err(e) if fatal(&e) => return Err(Error::kafka("cannot abort the transaction", e)),
            Err(e) => {
                tracing::warn!(sink = %ctx.config.name, "the abort did not complete ({e}); trying again");
                if ctx.halted() {
                    // The next run's init_transactions ends it.
                    return Ok(());
                }
                back_off(backoff, || ctx.halted());
            }
        }
    }
}

fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch)
    )
}

fn fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

/// Produces the positions record of this transaction (waiting while the queue is full); false
/// when the transaction can no longer take records (it has to be aborted).
fn send_positions(
    producer: &BaseProducer<SinkContext>,
    ctx: &SinkCtx,
    transactional_id: &str,
    positions: &Positions,
) -> bool {
    let value = serde_json::to_vec(positions).expect("serialises");
    let topic = positions_topic(&ctx.pipeline, &ctx.config.name);
    let mut record = BaseRecord::with_opaque_to(&topic, usize::MAX)
        .key(transactional_id)
        .payload(&value);
    loop {
        match producer.send(record) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                tracing::warn!("cannot write the sink's positions: {e}");
                return false;
            }
        }
    }
}

/// Creates the positions topic (compacted, one partition) if it does not exist.
fn ensure_positions_topic(sender: &Sender<'_>) -> Result<(), Error> {
    let name = positions_topic(&sender.ctx.pipeline, &sender.ctx.config.name);
    let topic =
        NewTopic::new(&name, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let got = block_on(sender.admin.create_topics(
        [&topic],
        &AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)),
    ))
    .map_err(|e| Error::kafka(format!("cannot create the topic {name}"), e))?;
    for r in got {
        match r {
            Ok(_) | Err((_, Code::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::kafka(
                    format!("cannot create the topic {name}"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

/// The positions of this sink's last committed transaction, read from the positions topic.
fn read_positions(
    sender: &Sender<'_>,
    transactional_id: &str,
    log: &str,
) -> Result<Option<Vec<u64>>, Error> {
    let cfg = sender.cfg;
    let mut config = client_config(&cfg.brokers, &cfg.properties);
    config
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("group.id", format!("{transactional_id}.positions"));
    let consumer: BaseConsumer = config.create().map_err(Error::Config)?;
    let topic = positions_topic(&sender.ctx.pipeline, &sender.ctx.config.name);
    let what = format!("cannot read the sink's positions from {topic}");
    // The end of the topic, open transactions included (librdkafka reads with read_committed
    // unless told otherwise, and a read_committed client's end is the last stable offset). The
    // topic is this sink's alone and init_transactions ended its last transaction, so the read
    // reaches that end at once.
    let mut uncommitted = client_config(&cfg.brokers, &cfg.properties);
    uncommitted.set("isolation.level", "read_uncommitted");
    let uncommitted: BaseConsumer = uncommitted.create().map_err(Error::Config)?;
    let (_, high) = uncommitted
        .fetch_watermarks(&topic, 0, REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka(what.clone(), e))?;
    drop(uncommitted);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| Error::kafka(what.clone(), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(what.clone(), e))?;
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let mut last: Option<Vec<u64>> = None;
    loop {
        let at = consumer
            .position()
            .ok()
            .and_then(|t| match t.find_partition(&topic, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        if at >= high {
            return Ok(last);
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(format!(
                "{what}: the topic is not readable to its end ({at} of {high}) after {COMMIT_TIMEOUT:?}; a transaction of another sink may be stuck open"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.key() == Some(transactional_id.as_bytes()) => {
                let p: Positions =
                    serde_json::from_slice(m.payload().unwrap_or(&[])).map_err(|e| {
                        Error::Invalid(format!(
                            "{what}: record at offset {} is not readable: {e}",
                            m.offset()
                        ))
                    })?;
                // Another log's positions (an earlier data directory) say nothing of this one.
                last = (p.log == log).then_some(p.positions);
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => tracing::debug!("reading {topic}: {e}"),
        }
    }
}
