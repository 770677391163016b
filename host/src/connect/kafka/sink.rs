//! The Kafka sink: a log topic's events produced to Kafka, at-least-once (positions checkpointed
//! after Kafka acknowledged) or exactly-once (records and positions in one Kafka transaction).

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
    Context, Error, FIRST_BACKOFF, POSITIONS_TOPIC, REQUEST_TIMEOUT, back_off, block_on,
    client_config,
};
use crate::config::{KafkaCompression, KafkaSink, KafkaSinkTopic, Start};
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

/// The id of the log an exactly-once sink reads, kept in the sink's checkpoint in the data
/// directory: made (and saved) at the sink's first start on this log.
fn log_id(ctx: &SinkCtx) -> Result<String, Error> {
    #[derive(Serialize, Deserialize)]
    struct Id {
        log: String,
    }
    let name = format!("{}.sink.{}.log-id", ctx.pipeline, ctx.config.name);
    if let Some(b) = ctx.log.load_checkpoint(&name)?
        && let Ok(id) = serde_json::from_slice::<Id>(&b)
    {
        return Ok(id.log);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = Id {
        log: format!("{:x}-{:x}", nanos, std::process::id()),
    };
    ctx.log
        .save_checkpoint(&name, &serde_json::to_vec(&id).expect("serialises"))?;
    Ok(id.log)
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
    /// The rows of this round's records, for the dead-letter topic should Kafka refuse one.
    rows: Vec<Event>,
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
        rows: Vec::new(),
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
    if !cfg.properties.contains_key("message.max.bytes")
        && let Some(Some(l)) = fixed_topic(cfg).and_then(|t| sender.limits.get(t))
    {
        config.set("message.max.bytes", (*l).max(1_000_000).to_string());
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

/// Cursors over the input, from `saved` positions or the sink's `start`.
fn cursors(ctx: &SinkCtx, saved: Option<&[u64]>) -> Result<Vec<Cursor>, Error> {
    let info = ctx.log.describe(&ctx.config.input)?;
    Ok((0..ctx.partitions)
        .map(|p| {
            let pi = &info.partitions[p as usize];
            let pos =
                saved
                    .and_then(|s| s.get(p as usize).copied())
                    .unwrap_or(match ctx.config.start {
                        Start::Earliest => pi.start_offset,
                        Start::Latest => pi.end_offset,
                    });
            let mut c = Cursor::new(ctx.log.clone(), &ctx.config.input, p, pos);
            ctx.ctl.apply_range(&mut c);
            c
        })
        .collect())
}

impl Sender<'_> {
    /// The topic's `max.message.bytes`; an error when the topic does not exist.
    fn limit(&mut self, topic: &str) -> Result<Option<usize>, Error> {
        if let Some(l) = self.limits.get(topic) {
            return Ok(*l);
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

    /// The Kafka topic of a row, or why it has none.
    fn topic_of(&self, row: &EventRef<'_>) -> Result<String, Refused> {
        match &self.cfg.topic {
            KafkaSinkTopic::Fixed(t) => Ok(t.clone()),
            KafkaSinkTopic::Header { name, fallback } => {
                let named = row
                    .headers
                    .iter()
                    .find(|(n, _)| *n == name.as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                named.or_else(|| fallback.clone()).ok_or(Refused {
                    kind: "no-topic",
                    why: format!("the event has no `{name}` header naming its topic, and the sink has no `topic` to fall back to"),
                })
            }
        }
    }

    /// Sends one row (waiting while librdkafka's queue is full); a row Kafka would refuse is
    /// returned with the reason.
    fn send(
        &mut self,
        producer: &BaseProducer<SinkContext>,
        row: &EventRef<'_>,
        at: (u32, u64),
    ) -> Result<Option<Refused>, Error> {
        let topic = match self.topic_of(row) {
            Ok(t) => t,
            Err(r) => return Ok(Some(r)),
        };
        let limit = match self.limit(&topic) {
            Ok(l) => l,
            Err(Error::Invalid(why)) => {
                return Ok(Some(Refused {
                    kind: "unknown-topic",
                    why,
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
                    }));
                }
                Err((e, _)) => {
                    return Ok(Some(Refused {
                        kind: "refused",
                        why: format!("the Kafka producer refused the record: {e}"),
                    }));
                }
            }
        }
        self.sent.push(at);
        self.rows.push(event::to_owned(row));
        Ok(None)
    }

    /// Appends refused rows to the dead-letter topic (durably) with why and where from.
    fn dead_letter(&self, rows: Vec<(Event, (u32, u64), Refused)>) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let name = &self.ctx.config.name;
        let events: Vec<Event> = rows
            .into_iter()
            .map(|(mut e, (p, offset), r)| {
                tracing::warn!(sink = %name, partition = p, offset, "event sent to the dead-letter topic: {}", r.why);
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
                e
            })
            .collect();
        metrics::counter!("flowgate_sink_dead_letters_total", "sink" => name.clone())
            .increment(events.len() as u64);
        append_events(&self.ctx.log, &self.dead, &events, 0)?;
        Ok(())
    }

    /// Reads up to [`READ`] rows from each cursor and sends them; the refused ones are returned.
    /// `skip` holds positions to dead-letter without sending (those Kafka refused in an aborted
    /// transaction). The bool is true when every cursor is at the end of a closed input.
    #[expect(clippy::type_complexity, reason = "one caller per delivery mode")]
    fn round(
        &mut self,
        producer: &BaseProducer<SinkContext>,
        cursors: &mut [Cursor],
        skip: &HashMap<(u32, u64), Refused>,
    ) -> Result<(Vec<(Event, (u32, u64), Refused)>, bool, usize), Error> {
        let wait = if cursors.len() == 1 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(2)
        };
        let mut refused = Vec::new();
        let mut all_done = true;
        let mut n = 0;
        for c in cursors.iter_mut() {
            match c.next(READ, Duration::ZERO, wait)? {
                Some(input) => {
                    all_done = false;
                    let cols = event::columns(&input.batch).expect("the log checked the batch");
                    for (i, row) in cols.rows().enumerate() {
                        let at = (c.partition, input.first + i as u64);
                        if let Some(r) = skip.get(&at) {
                            refused.push((
                                event::to_owned(&row),
                                at,
                                Refused {
                                    kind: r.kind,
                                    why: r.why.clone(),
                                },
                            ));
                            continue;
                        }
                        if let Some(r) = self.send(producer, &row, at)? {
                            refused.push((event::to_owned(&row), at, r));
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

    /// The failures the producer reported, as dead letters (those the producer cannot send)
    /// or, for a fatal producer error, an error.
    fn failures(
        &mut self,
        producer: &BaseProducer<SinkContext>,
    ) -> Vec<(Event, (u32, u64), Refused)> {
        let failures =
            std::mem::take(&mut *producer.context().failures.lock().expect("not poisoned"));
        failures
            .into_iter()
            .map(|f| {
                let kind = match f.error.rdkafka_error_code() {
                    Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize) => "too-large",
                    Some(Code::UnknownTopicOrPartition | Code::UnknownTopic) => "unknown-topic",
                    _ => "delivery",
                };
                (
                    self.rows[f.sent].clone(),
                    self.sent[f.sent],
                    Refused {
                        kind,
                        why: format!("Kafka refused the record: {}", f.error),
                    },
                )
            })
            .collect()
    }

    fn count(&self, n: usize) {
        self.ctx.stats.events.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("flowgate_sink_events_total", "sink" => self.ctx.config.name.clone())
            .increment(n as u64);
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
    let no_skip = HashMap::new();
    let mut saved_at = Instant::now();
    let mut unsaved = 0;
    let mut refused = Vec::new();
    loop {
        let (r, all_done, n) = sender.round(&producer, &mut cursors, &no_skip)?;
        refused.extend(r);
        unsaved += n;
        let stop = ctx.halted() || all_done;
        if unsaved > 0 && (stop || saved_at.elapsed() >= ctx.commit_interval) {
            // Everything sent so far must be acknowledged before the positions move past it.
            let flushed = loop {
                match producer.flush(Duration::from_millis(200)) {
                    Ok(()) => break true,
                    Err(_) if ctx.ctl.failure().is_some() => break false,
                    Err(_) => {}
                }
            };
            if !flushed {
                // The run failed elsewhere: what was not acknowledged is sent again next time.
                return Ok(());
            }
            refused.extend(sender.failures(&producer));
            refused.sort_by_key(|(_, at, _)| *at);
            sender.dead_letter(std::mem::take(&mut refused))?;
            save(&cursors)?;
            sender.count(unsaved);
            sender.sent.clear();
            sender.rows.clear();
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
    let mut skip: HashMap<(u32, u64), Refused> = HashMap::new();
    // No position before the first commit would mean "everything is mine": the first
    // transaction commits the starting positions even when there is nothing to send.
    let mut first = saved.is_none();
    loop {
        producer
            .begin_transaction()
            .map_err(|e| Error::kafka("cannot begin a transaction", e))?;
        let began = Instant::now();
        let mut refused = Vec::new();
        let mut n = 0;
        let mut all_done;
        loop {
            let (r, done, got) = sender.round(&producer, &mut cursors, &skip)?;
            refused.extend(r);
            n += got;
            all_done = done;
            if ctx.halted() || all_done || began.elapsed() >= ctx.commit_interval {
                break;
            }
        }
        if n == 0 && refused.is_empty() && !first {
            let _ = producer.abort_transaction(REQUEST_TIMEOUT);
            if ctx.halted() || all_done {
                return Ok(());
            }
            continue;
        }
        let positions = Positions {
            log: log.clone(),
            positions: cursors.iter().map(|c| c.position).collect(),
        };
        let value = serde_json::to_vec(&positions).expect("serialises");
        send_positions(&producer, transactional_id, &value)?;
        match producer.commit_transaction(COMMIT_TIMEOUT) {
            Ok(()) => {
                refused.extend(sender.failures(&producer));
                refused.sort_by_key(|(_, at, _)| *at);
                sender.dead_letter(refused)?;
                sender.count(n);
                committed = positions.positions;
                skip.clear();
                first = false;
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                if fenced(&e) {
                    return Err(Error::Fenced(transactional_id.to_owned()));
                }
                if fatal(&e) {
                    return Err(Error::kafka("the sink's transaction failed", e));
                }
                tracing::warn!(sink = %ctx.config.name, "the transaction did not commit ({e}); aborting it and sending its events again");
                producer.context().inner.count_error("transaction");
                let _ = producer.abort_transaction(COMMIT_TIMEOUT);
                // Records Kafka refused for what they are are dead-lettered on the next try
                // instead of sent again; the rest are sent again.
                for (_, at, r) in sender.failures(&producer) {
                    if r.kind != "delivery" {
                        skip.insert(at, r);
                    }
                }
                for (c, &p) in cursors.iter_mut().zip(&committed) {
                    c.seek(p);
                }
                back_off(&mut backoff, || ctx.ctl.failure().is_some());
            }
        }
        sender.sent.clear();
        sender.rows.clear();
        if ctx.halted() || all_done {
            return Ok(());
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

/// Produces the positions record of this transaction (waiting while the queue is full).
fn send_positions(
    producer: &BaseProducer<SinkContext>,
    transactional_id: &str,
    value: &[u8],
) -> Result<(), Error> {
    let mut record = BaseRecord::with_opaque_to(POSITIONS_TOPIC, usize::MAX)
        .key(transactional_id)
        .payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(Error::kafka("cannot write the sink's positions", e)),
        }
    }
}

/// Creates the positions topic (compacted, one partition) if it does not exist.
fn ensure_positions_topic(sender: &Sender<'_>) -> Result<(), Error> {
    let topic = NewTopic::new(POSITIONS_TOPIC, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let got = block_on(sender.admin.create_topics(
        [&topic],
        &AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)),
    ))
    .map_err(|e| Error::kafka(format!("cannot create the topic {POSITIONS_TOPIC}"), e))?;
    for r in got {
        match r {
            Ok(_) | Err((_, Code::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::kafka(
                    format!("cannot create the topic {POSITIONS_TOPIC}"),
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
    let what = format!("cannot read the sink's positions from {POSITIONS_TOPIC}");
    let (_, high) = consumer
        .fetch_watermarks(POSITIONS_TOPIC, 0, REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka(what.clone(), e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(POSITIONS_TOPIC, 0, Offset::Beginning)
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
            .and_then(|t| match t.find_partition(POSITIONS_TOPIC, 0)?.offset() {
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
            Some(Err(e)) => tracing::debug!("reading {POSITIONS_TOPIC}: {e}"),
        }
    }
}
