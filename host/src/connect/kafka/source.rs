//! The Kafka source: records of Kafka topics appended to a log topic, each Kafka partition
//! resumed from the offset checkpointed with the events it produced (see the module above).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{Context, Error, FIRST_BACKOFF, REQUEST_TIMEOUT, back_off, client_config};
use crate::config::{KafkaFormat, KafkaSource, KafkaStart, KafkaTopics};
use crate::connect::SourceCtx;
use crate::event::{self, BatchBuilder, ndjson};
use crate::flow::producer::{Producer, Routed, Target, partition_for};

/// Records taken from the consumer before they are appended.
const BATCH: usize = 4096;
/// How often the topics (a pattern's matches, new partitions) are looked up again.
const REFRESH: Duration = Duration::from_secs(5);

/// The source's client context: the shared one, plus the last stable offsets from librdkafka's
/// statistics (for the lag).
struct SourceContext {
    inner: Context,
    /// (topic, partition) → last stable offset (the end a `read_committed` reader can reach).
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl rdkafka::client::ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let mut ends = self.ends.lock().expect("not poisoned");
        for (name, t) in &stats.topics {
            for (&p, s) in &t.partitions {
                if p >= 0 && s.ls_offset >= 0 {
                    ends.insert((name.clone(), p), s.ls_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// One Kafka partition being read.
struct Part {
    producer: Producer,
    /// The Kafka offset of the next record to take.
    next: u64,
    /// Bounded runs: the offset at which this partition is read to its end.
    end: Option<u64>,
    /// Events taken and not appended yet, and the offset after each.
    events: BatchBuilder,
    origins: Vec<u64>,
    /// Records refused by `format`, for the dead-letter topic, and the offset after each.
    dead: BatchBuilder,
    dead_origins: Vec<u64>,
}

impl Part {
    fn pending(&self) -> bool {
        !self.origins.is_empty() || !self.dead_origins.is_empty()
    }
}

/// The partitions being read: topic → partition → its reader (looked up per record by the
/// record's `&str` topic, without making a key).
#[derive(Default)]
struct Parts(BTreeMap<String, BTreeMap<i32, Part>>);

impl Parts {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    fn contains(&self, topic: &str, p: i32) -> bool {
        self.0.get(topic).is_some_and(|ps| ps.contains_key(&p))
    }

    fn insert(&mut self, topic: String, p: i32, part: Part) {
        self.0.entry(topic).or_default().insert(p, part);
    }

    fn get_mut(&mut self, topic: &str, p: i32) -> Option<&mut Part> {
        self.0.get_mut(topic)?.get_mut(&p)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, i32, &Part)> {
        self.0
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, part)| (t.as_str(), *p, part)))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Part> {
        self.0.values_mut().flat_map(BTreeMap::values_mut)
    }
}

/// Runs the source until the pipeline stops (or, bounded, every partition is read to the end it
/// had when the run started).
pub(crate) fn run(ctx: &SourceCtx, cfg: &KafkaSource) -> Result<(), Error> {
    let name = &ctx.config.name;
    let mut config = client_config(&cfg.brokers, &cfg.properties);
    config
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        // A checkpointed offset that Kafka's retention already deleted: go on from the oldest
        // record there is (what was deleted is gone from Kafka, not from Flowgate).
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "1000");
    if !cfg.properties.contains_key("fetch.queue.backoff.ms") {
        // librdkafka's default stops fetching for a second once 100,000 records wait in its
        // queue: a source that keeps up never needs that pause.
        config.set("fetch.queue.backoff.ms", "10");
    }
    if !cfg.properties.contains_key("reconnect.backoff.max.ms") {
        // Back within 2 s of the brokers (librdkafka's default waits up to 10 s).
        config.set("reconnect.backoff.max.ms", "2000");
    }
    let make = || -> Result<BaseConsumer<SourceContext>, Error> {
        config
            .create_with_context(SourceContext {
                inner: Context::new(format!("source:{name}")),
                ends: Mutex::new(HashMap::new()),
            })
            .map_err(Error::Config)
    };
    let mut consumer = make()?;
    // Lookups failed in a row while no record came: after a broker restart a client can stay
    // stuck on its old connections; a new one (assigned where the old one was) is not.
    let mut failed_lookups = 0;
    let dead_target = {
        let info = ctx.log.describe(&cfg.dead_letter_topic)?;
        Target {
            topic: cfg.dead_letter_topic.clone(),
            partitions: info.partitions.len() as u32,
        }
    };
    let pattern = match &cfg.topics {
        KafkaTopics::Pattern(p) => Some(
            regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| Error::Invalid(format!("topic-pattern `{p}`: {e}")))?,
        ),
        KafkaTopics::Names(_) => None,
    };
    let mut parts = Parts::default();
    let mut refreshed: Option<Instant> = None;
    let mut committed_at = Instant::now();
    let mut lag_at = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut missing_said: HashMap<String, Instant> = HashMap::new();
    let now = ndjson::now_ms();
    loop {
        if ctx.halted() {
            break;
        }
        if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
            match refresh(
                ctx,
                cfg,
                pattern.as_ref(),
                &consumer,
                &mut parts,
                &dead_target,
                &mut missing_said,
            ) {
                Ok(()) => {
                    refreshed = Some(Instant::now());
                    backoff = FIRST_BACKOFF;
                    failed_lookups = 0;
                }
                Err(e @ (Error::Invalid(_) | Error::Log(_) | Error::Config(_))) => return Err(e),
                Err(e) => {
                    let inner = &consumer.context().inner;
                    inner.count_error("metadata");
                    if parts.is_empty() {
                        tracing::warn!(source = %name, "{e}; retrying in {:?}", backoff);
                        back_off(&mut backoff, || ctx.halted());
                        continue;
                    }
                    // The partitions already assigned go on being read; the lookup is tried
                    // again at the next refresh.
                    if inner.should_say("refresh") {
                        tracing::warn!(source = %name, "{e}; reading the partitions already assigned, looking the topics up again every {REFRESH:?}");
                    }
                    refreshed = Some(Instant::now());
                    failed_lookups += 1;
                    if failed_lookups >= 3 {
                        tracing::warn!(source = %name, "the Kafka client has not reached the brokers in {failed_lookups} lookups; starting a new one where this one was");
                        drop(consumer);
                        consumer = make()?;
                        assign(&consumer, &parts)?;
                        failed_lookups = 0;
                    }
                }
            }
        }
        if parts.is_empty() {
            if ctx.ctl.bounded() {
                return Err(Error::Invalid(format!(
                    "none of the topics this source reads exists on {}: a bounded run would never end. Create them, or change `topics`",
                    cfg.brokers
                )));
            }
            ctx.ctl.sleep(Duration::from_millis(200), &ctx.stop);
            continue;
        }
        if take(ctx, cfg, &consumer, &mut parts, now)? > 0 {
            failed_lookups = 0;
        }
        for part in parts.values_mut() {
            if part.pending() {
                append(ctx, &dead_target, part)?;
            }
            part.producer.poll()?;
        }
        if committed_at.elapsed() >= ctx.commit_interval {
            commit_to_group(&consumer, &parts);
            committed_at = Instant::now();
        }
        if lag_at.elapsed() >= Duration::from_secs(1) {
            publish_lag(ctx, &consumer, &parts);
            lag_at = Instant::now();
        }
        if ctx.ctl.bounded() && read_to_end(&consumer, &parts) {
            break;
        }
    }
    for part in parts.values_mut() {
        if part.pending() {
            append(ctx, &dead_target, part)?;
        }
        part.producer.flush()?;
    }
    commit_to_group(&consumer, &parts);
    tracing::info!(source = %name, partitions = parts.len(), "kafka source stopped");
    Ok(())
}

/// Looks the topics up; opens and assigns the partitions not read yet.
fn refresh(
    ctx: &SourceCtx,
    cfg: &KafkaSource,
    pattern: Option<&regex::Regex>,
    consumer: &BaseConsumer<SourceContext>,
    parts: &mut Parts,
    dead_target: &Target,
    missing_said: &mut HashMap<String, Instant>,
) -> Result<(), Error> {
    let md = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| {
            Error::kafka(
                format!(
                    "cannot read the topics of the Kafka brokers {}",
                    cfg.brokers
                ),
                e,
            )
        })?;
    consumer.context().inner.reached();
    let mut found: Vec<(String, i32)> = Vec::new();
    match (&cfg.topics, pattern) {
        (KafkaTopics::Names(names), _) => {
            for n in names {
                let t = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == n && t.error().is_none());
                match t {
                    Some(t) => found.extend(t.partitions().iter().map(|p| (n.clone(), p.id()))),
                    None => {
                        if ctx.ctl.bounded() {
                            return Err(Error::Invalid(format!(
                                "topic `{n}` does not exist on {}; create it, or take it out of `topics`",
                                cfg.brokers
                            )));
                        }
                        let said = missing_said.get(n);
                        if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                            tracing::error!(source = %ctx.config.name, topic = %n, brokers = %cfg.brokers, "topic `{n}` does not exist; the source reads it once it is created (looked up every {REFRESH:?})");
                            consumer.context().inner.count_error("unknown-topic");
                            missing_said.insert(n.clone(), Instant::now());
                        }
                    }
                }
            }
        }
        (KafkaTopics::Pattern(_), Some(re)) => {
            for t in md.topics() {
                if t.error().is_none() && !t.name().starts_with("__") && re.is_match(t.name()) {
                    found.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
                }
            }
        }
        (KafkaTopics::Pattern(_), None) => unreachable!("the pattern is compiled first"),
    }
    let new: Vec<(String, i32)> = found
        .into_iter()
        .filter(|(t, p)| !parts.contains(t, *p))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    for (topic, p) in new {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("cannot read the offsets of {topic}/{p}"), e))?;
        let (low, high) = (low.max(0) as u64, high.max(0) as u64);
        let first = match &cfg.start {
            KafkaStart::Earliest => low,
            KafkaStart::Latest => high,
            KafkaStart::Time(t) => offset_at(consumer, &topic, p, *t)?.unwrap_or(high),
        };
        let (mut producer, position) = Producer::open(
            ctx.log.clone(),
            format!("{}/source/{}/{topic}/{p}", ctx.pipeline, ctx.config.name),
            format!("{}.source.{}.{topic}.{p}", ctx.pipeline, ctx.config.name),
            vec![ctx.target.clone(), dead_target.clone()],
            ctx.exactly_once,
            ctx.commit_interval,
            None,
            || Ok(first),
        )?;
        if let Some(fence) = &ctx.fence {
            // The source's lease is partition 0 of the lease topic.
            producer.fence(fence.clone(), 0);
        }
        tracing::info!(source = %ctx.config.name, topic = %topic, partition = p, offset = position, "reading a Kafka partition");
        parts.insert(
            topic,
            p,
            Part {
                producer,
                next: position,
                end: ctx.ctl.bounded().then_some(high),
                events: BatchBuilder::with_capacity(BATCH, 0),
                origins: Vec::new(),
                dead: BatchBuilder::with_capacity(0, 0),
                dead_origins: Vec::new(),
            },
        );
    }
    assign(consumer, parts)
}

/// Assigns every partition being read to `consumer`, each at the next record to take.
fn assign(consumer: &BaseConsumer<SourceContext>, parts: &Parts) -> Result<(), Error> {
    let mut tpl = TopicPartitionList::new();
    for (topic, p, part) in parts.iter() {
        tpl.add_partition_offset(topic, p, Offset::Offset(part.next as i64))
            .map_err(|e| Error::kafka("cannot assign the partitions", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka("cannot assign the partitions", e))?;
    Ok(())
}

/// The offset of the first record at or after `t` in `topic/p`, if there is one.
fn offset_at(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    p: i32,
    t: SystemTime,
) -> Result<Option<u64>, Error> {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(ms))
        .map_err(|e| Error::kafka("cannot look up the start time", e))?;
    let got = consumer
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka(format!("cannot look up the start time in {topic}/{p}"), e))?;
    Ok(got.find_partition(topic, p).and_then(|e| match e.offset() {
        Offset::Offset(o) if o >= 0 => Some(o as u64),
        _ => None,
    }))
}

/// Takes the records the consumer has (waiting up to 100 ms for the first); returns how many.
fn take(
    ctx: &SourceCtx,
    cfg: &KafkaSource,
    consumer: &BaseConsumer<SourceContext>,
    parts: &mut Parts,
    now: i64,
) -> Result<usize, Error> {
    let mut wait = Duration::from_millis(100);
    let mut taken = 0;
    let (mut partition_text, mut offset_text) = (String::new(), String::new());
    while taken < BATCH {
        let m = match consumer.poll(wait) {
            None => break,
            Some(Err(e)) => {
                let inner = &consumer.context().inner;
                inner.count_error("consume");
                if inner.should_say(&e.to_string()) {
                    tracing::warn!(source = %ctx.config.name, "kafka: {e} (said once per {:?} while it lasts)", super::WARN_EVERY);
                }
                break;
            }
            Some(Ok(m)) => m,
        };
        wait = Duration::ZERO;
        taken += 1;
        let Some(part) = parts.get_mut(m.topic(), m.partition()) else {
            continue;
        };
        let offset = m.offset().max(0) as u64;
        if offset < part.next {
            continue;
        }
        part.next = offset + 1;
        let value = m.payload().unwrap_or(&[]);
        let ts = m.timestamp().to_millis().unwrap_or(now);
        partition_text.clear();
        offset_text.clear();
        let _ = write!(partition_text, "{}", m.partition());
        let _ = write!(offset_text, "{offset}");
        let coords = [
            (super::TOPIC_HEADER, m.topic()),
            (super::PARTITION_HEADER, partition_text.as_str()),
            (super::OFFSET_HEADER, offset_text.as_str()),
        ];
        let kafka_headers: Vec<(&[u8], &[u8])> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.as_bytes(), h.value.unwrap_or(&[])))
                    .collect()
            })
            .unwrap_or_default();
        let headers = kafka_headers
            .iter()
            .copied()
            .chain(coords.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        let refused = match cfg.format {
            KafkaFormat::Raw => None,
            KafkaFormat::Json => serde_json::from_slice::<serde::de::IgnoredAny>(value)
                .err()
                .map(|e| format!("the value is not JSON (format = \"json\"): {e}")),
        };
        match refused {
            None => {
                part.events.push(m.key(), value, ts, headers);
                part.origins.push(offset + 1);
            }
            Some(why) => {
                let context = [
                    ("flowgate-source", ctx.config.name.clone()),
                    ("flowgate-error-kind", "format".to_owned()),
                    ("flowgate-error", why),
                    ("flowgate-topic", m.topic().to_owned()),
                    ("flowgate-partition", m.partition().to_string()),
                    ("flowgate-offset", offset.to_string()),
                ];
                part.dead.push(
                    m.key(),
                    value,
                    ts,
                    headers.chain(context.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))),
                );
                part.dead_origins.push(offset + 1);
                ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flowgate_source_rejected_total", "source" => ctx.config.name.clone()).increment(1);
            }
        }
    }
    if taken > 0 {
        consumer.context().inner.reached();
    }
    Ok(taken)
}

/// Appends a partition's taken records (the refused ones to the dead-letter topic), in offset
/// order, as one step up to the offset after the last.
fn append(ctx: &SourceCtx, dead_target: &Target, part: &mut Part) -> Result<(), Error> {
    let events = event::finish(std::mem::replace(
        &mut part.events,
        BatchBuilder::with_capacity(BATCH, 0),
    ));
    let dead = event::finish(std::mem::replace(
        &mut part.dead,
        BatchBuilder::with_capacity(0, 0),
    ));
    let cols = event::columns(&events).expect("built here");
    let dead_cols = event::columns(&dead).expect("built here");
    let mut rows: Vec<Routed<'_>> = cols
        .rows()
        .zip(&part.origins)
        .map(|(row, &origin)| Routed {
            target: 0,
            partition: partition_for(row.key, ctx.target.partitions, origin),
            origin,
            row,
        })
        .collect();
    rows.extend(
        dead_cols
            .rows()
            .zip(&part.dead_origins)
            .map(|(row, &origin)| Routed {
                target: 1,
                partition: (origin % u64::from(dead_target.partitions.max(1))) as u32,
                origin,
                row,
            }),
    );
    rows.sort_by_key(|r| r.origin);
    part.producer.send(&rows, part.next)?;
    ctx.stats
        .events
        .fetch_add(part.origins.len() as u64, Ordering::Relaxed);
    part.origins.clear();
    part.dead_origins.clear();
    Ok(())
}

/// Commits each partition's durable position to the consumer group (for Kafka's tools; the
/// source itself resumes from its checkpoints).
fn commit_to_group(consumer: &BaseConsumer<SourceContext>, parts: &Parts) {
    let mut tpl = TopicPartitionList::new();
    for (topic, p, part) in parts.iter() {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(part.producer.position() as i64));
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        consumer.context().inner.count_error("commit");
        tracing::debug!("committing offsets to the consumer group: {e}");
    }
}

/// Sets the lag gauges and the source's lag for `flowgate status`: records a `read_committed`
/// reader can reach that are not durable in the log yet, per partition.
fn publish_lag(ctx: &SourceCtx, consumer: &BaseConsumer<SourceContext>, parts: &Parts) {
    let ends = consumer.context().ends.lock().expect("not poisoned");
    let mut lags = ctx.stats.lag.lock().expect("not poisoned");
    for (topic, p, part) in parts.iter() {
        if let Some(&end) = ends.get(&(topic.to_owned(), p)) {
            let lag = (end.max(0) as u64).saturating_sub(part.producer.position());
            metrics::gauge!("flowgate_kafka_source_lag", "source" => ctx.config.name.clone(), "topic" => topic.to_owned(), "partition" => p.to_string())
                .set(lag as f64);
            lags.insert(format!("{topic}/{p}"), lag);
        }
    }
}

/// Bounded runs: every partition's reader is past the end it had at the start, and all taken
/// records are appended.
fn read_to_end(consumer: &BaseConsumer<SourceContext>, parts: &Parts) -> bool {
    let positions = consumer.position().ok();
    parts.iter().all(|(topic, p, part)| {
        let Some(end) = part.end else { return false };
        if part.pending() {
            return false;
        }
        if part.next >= end {
            return true;
        }
        // Past the end without a record at it: the last offsets are transaction markers.
        positions
            .as_ref()
            .and_then(|tpl| tpl.find_partition(topic, p))
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= 0 && o as u64 >= end))
    })
}
