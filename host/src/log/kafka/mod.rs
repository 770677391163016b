//! The event log on Kafka (`[log] backend = "kafka"`): every topic of the pipeline is the Kafka
//! topic `<prefix><topic>`, with the same partitions and offsets.
//!
//! - **Appends** go to one writer thread per process, which owns a transactional producer: it
//!   takes every append queued (the embedded log's group commit), sends their records in one
//!   Kafka transaction and answers them once the commit returned. So an append is acknowledged
//!   only after the brokers hold all of it (`acks=all`), and it becomes visible whole or not at
//!   all: the `flowgate-eos` marker on its last row is there exactly when its rows are.
//! - **Reads** are `read_committed`: a reader sees committed appends only. Each transaction
//!   leaves a control record behind, so offsets have gaps; a read answers with runs of
//!   consecutive offsets, and an empty batch whose base is the position past a gap.
//! - **Checkpoints** and group offsets are records of the compacted topic
//!   `<prefix>flowgate.checkpoints.<pipeline>`, keyed by name; the last record of a name is its
//!   value.
//!
//! Retention and segments are Kafka's: `roll` and `enforce_retention` do nothing here. Topics
//! are kept by size (`retention-bytes`), not by age: Kafka's age is the record's timestamp,
//! which is the event's time.

mod client;
mod group;
mod reader;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode as Code;

pub(crate) use client::{Context, WARN_EVERY, client_config};

use super::{
    Ack, Consumed, EventLog, LogError, Membership, PartitionInfo, Pending, ReadBatch, Rebalance,
    TopicConfig, TopicInfo,
};
use crate::event::{self, Batch};

/// How long one request to the brokers may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest record the log writes (a checkpoint with keyed state is one record).
const MAX_RECORD_BYTES: usize = 100 << 20;

/// Where the log is and how it names its topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaLogConfig {
    /// The brokers to bootstrap from, `host:port` separated by commas.
    pub brokers: String,
    /// librdkafka settings for every client of the log.
    pub properties: BTreeMap<String, String>,
    /// Put before every topic name of the pipeline (may be empty).
    pub prefix: String,
    /// Replicas of each topic the log creates (-1: the brokers' default).
    pub replication_factor: i32,
    /// Names the log's own topic and the groups (the pipeline's name).
    pub owner: String,
    /// This process among those of the pipeline: names its writer's transactional id, so a
    /// restart of the same process fences the one it replaces. Unique per process.
    pub instance: String,
    /// How long a process that stops answering keeps its partitions in the groups.
    pub session_timeout: Duration,
}

impl KafkaLogConfig {
    /// The Kafka topic of pipeline topic `topic`.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// The compacted topic holding the checkpoints and group offsets.
    pub fn checkpoint_topic(&self) -> String {
        kafka_name(&format!(
            "{}flowgate.checkpoints.{}",
            self.prefix, self.owner
        ))
    }

    /// The writer's transactional id: one per process of the pipeline, so a restarted process
    /// fences the one it replaces and ends the transaction it left open.
    pub fn transactional_id(&self) -> String {
        format!(
            "{}flowgate.log.{}.{}",
            self.prefix, self.owner, self.instance
        )
    }

    /// The consumer group in which the processes of the pipeline share `step`'s partitions.
    pub fn group(&self, step: &str) -> String {
        format!("{}flowgate.{}.{step}", self.prefix, self.owner)
    }
}

/// `name` as a Kafka topic name: see [`super::safe_name`].
fn kafka_name(name: &str) -> String {
    super::safe_name(name, 249)
}

fn remote(what: impl Into<String>, e: KafkaError) -> LogError {
    LogError::Remote {
        what: what.into(),
        error: e.to_string(),
    }
}

/// A partition's (low, high) watermarks, `read_committed` (high is the last stable offset), asked
/// again while the brokers answer that its leader is moving or not known yet (a topic just
/// made, a broker restarting), for up to [`REQUEST_TIMEOUT`].
fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: u32,
) -> Result<(u64, u64), LogError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT) {
            Ok((low, high)) => return Ok((low.max(0) as u64, high.max(0) as u64)),
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            Code::NotLeaderForPartition
                                | Code::LeaderNotAvailable
                                | Code::UnknownTopicOrPartition
                                | Code::NotCoordinator
                                | Code::RequestTimedOut
                                | Code::BrokerNotAvailable
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(remote(
                    format!("reading the offsets of {topic}/{partition}"),
                    e,
                ));
            }
        }
    }
}

/// Runs an admin future on this (non-async) thread.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}

/// The event log on a Kafka cluster. See the module's documentation.
pub struct KafkaLog {
    cfg: KafkaLogConfig,
    /// Metadata, watermarks (`read_committed`: the end is the last stable offset) and offsets
    /// by time.
    meta: BaseConsumer<Context>,
    admin: AdminClient<DefaultClientContext>,
    writer: writer::Writer,
    readers: reader::Readers,
    checkpoints: Mutex<Checkpoints>,
    /// Since when reads fail for want of the brokers (see [`READ_OUTAGE`]), and when that was
    /// last said.
    unreachable: Mutex<Option<(Instant, Option<Instant>)>>,
}

/// Reads the brokers fail (they are away, or this process is cut off from them) answer
/// "nothing yet" for this long, as long as appends are tried again, before they fail.
const READ_OUTAGE: Duration = Duration::from_secs(120);

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.cfg.brokers)
            .field("prefix", &self.cfg.prefix)
            .finish_non_exhaustive()
    }
}

/// The checkpoint topic as read so far, and the producer that writes it.
struct Checkpoints {
    values: HashMap<String, Vec<u8>>,
    /// Offset of the next record of the topic to read into `values`.
    read_to: i64,
    consumer: BaseConsumer<Context>,
    producer: BaseProducer<Context>,
}

impl KafkaLog {
    /// Connects: reaches the brokers (within 10 s), creates the checkpoint topic if it is not
    /// there, and starts the writer (`init_transactions`, which fences an earlier process of the
    /// same pipeline and ends the transaction it left open).
    pub fn open(cfg: KafkaLogConfig) -> Result<KafkaLog, LogError> {
        let base = || client_config(&cfg.brokers, &cfg.properties);
        let config_error = |e: KafkaError| {
            LogError::Invalid(format!(
                "the Kafka client settings of [log] are refused: {e}. Check `properties` against librdkafka's CONFIGURATION.md"
            ))
        };
        let mut c = base();
        c.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("group.id", format!("{}flowgate.log-meta", cfg.prefix));
        let meta: BaseConsumer<Context> = c
            .create_with_context(Context::new("log".into()))
            .map_err(config_error)?;
        meta.fetch_metadata(None, REQUEST_TIMEOUT).map_err(|e| {
            remote(
                format!(
                    "cannot reach the Kafka brokers {} ([log] brokers); is Kafka running there?",
                    cfg.brokers
                ),
                e,
            )
        })?;
        let admin: AdminClient<DefaultClientContext> = base().create().map_err(config_error)?;
        let log_topic = cfg.checkpoint_topic();
        // Compacted soon after it is written (segments of 16 MiB or a minute, cleaned at 10 %
        // dirt): a process that opens a checkpoint reads the topic to its end, which stays about
        // one record per checkpoint name.
        let topic = NewTopic::new(&log_topic, 1, replication(cfg.replication_factor))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", "104857600")
            .set("segment.bytes", "16777216")
            .set("segment.ms", "60000")
            .set("min.cleanable.dirty.ratio", "0.1");
        create(&admin, &topic)?;

        let mut c = base();
        c.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.message.max.bytes", "104857600")
            .set(
                "group.id",
                format!("{}flowgate.log-checkpoints", cfg.prefix),
            );
        let consumer: BaseConsumer<Context> = c
            .create_with_context(Context::new("log".into()))
            .map_err(config_error)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&log_topic, 0, Offset::Beginning)
            .map_err(|e| remote("assigning the checkpoint topic", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| remote("assigning the checkpoint topic", e))?;
        let mut c = base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "104857600")
            .set("linger.ms", "0");
        let producer: BaseProducer<Context> = c
            .create_with_context(Context::new("log".into()))
            .map_err(config_error)?;

        let writer = writer::Writer::start(&cfg, base()).map_err(|e| match e {
            writer::StartError::Config(e) => config_error(e),
            writer::StartError::Kafka(e) => remote(
                format!(
                    "cannot start the log's transactional writer `{}`",
                    cfg.transactional_id()
                ),
                e,
            ),
        })?;
        let readers = reader::Readers::new(&cfg);
        Ok(KafkaLog {
            meta,
            admin,
            writer,
            readers,
            checkpoints: Mutex::new(Checkpoints {
                values: HashMap::new(),
                read_to: 0,
                consumer,
                producer,
            }),
            unreachable: Mutex::new(None),
            cfg,
        })
    }

    /// Where the log is.
    pub fn config(&self) -> &KafkaLogConfig {
        &self.cfg
    }

    /// Partitions of `topic` (a Kafka name), or `NoSuchTopic`.
    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let full = self.cfg.topic(topic);
        let md = self
            .meta
            .fetch_metadata(Some(&full), REQUEST_TIMEOUT)
            .map_err(|e| remote(format!("reading the metadata of {full}"), e))?;
        match md.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len() as u32)
            }
            _ => Err(LogError::NoSuchTopic {
                topic: topic.to_owned(),
                existing: self.topics().join(", "),
            }),
        }
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        let partitions = self.partitions(topic)?;
        if partition >= partitions {
            return Err(LogError::NoSuchPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    /// A read's result, with a failure to reach the brokers answered by `nothing` until it has
    /// lasted [`READ_OUTAGE`] (after a pause, so a caller that reads again at once does not
    /// spin).
    fn outlast<T>(&self, result: Result<T, LogError>, nothing: T) -> Result<T, LogError> {
        let mut since = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(v) => {
                if since.take().is_some() {
                    tracing::info!("the Kafka log's brokers answer reads again");
                }
                Ok(v)
            }
            Err(e @ LogError::Remote { .. }) => {
                let now = Instant::now();
                let (first, said) = since.get_or_insert((now, None));
                if now.duration_since(*first) >= READ_OUTAGE {
                    return Err(e);
                }
                if said.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    *said = Some(now);
                    tracing::warn!(
                        "{e}; reading again while the brokers are away (for up to {READ_OUTAGE:?})"
                    );
                }
                drop(since);
                std::thread::sleep(Duration::from_millis(200));
                Ok(nothing)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues an append to the writer (an empty one is answered at once).
    fn queue(
        &self,
        topic: &str,
        partition: u32,
        batch: Batch,
        offsets: Option<writer::Offsets>,
    ) -> Result<Pending, LogError> {
        let rows = event::columns(&batch)
            .map_err(|e| LogError::Invalid(format!("bad batch: {e}")))?
            .len();
        if rows == 0 {
            return Ok(Pending::ready(Ok(Ack {
                base_offset: 0,
                count: 0,
            })));
        }
        Ok(self
            .writer
            .submit(self.cfg.topic(topic), partition, batch, offsets))
    }

    /// Reads the checkpoint topic to its end into `values`.
    fn catch_up(&self, c: &mut Checkpoints) -> Result<(), LogError> {
        let topic = self.cfg.checkpoint_topic();
        // Asked on the idle metadata client: on the checkpoint consumer's own connection the
        // request would queue behind its fetch, which the broker holds up to fetch.wait.max.ms.
        let (_, high) = watermarks(&self.meta, &topic, 0)?;
        let high = high as i64;
        let deadline = Instant::now() + REQUEST_TIMEOUT * 3;
        let (from, started) = (c.read_to, Instant::now());
        while c.read_to < high {
            if Instant::now() >= deadline {
                return Err(LogError::Remote {
                    what: format!("reading the checkpoints in {topic}"),
                    error: format!("only offset {} of {high} read in 30 s", c.read_to),
                });
            }
            match c.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    c.read_to = m.offset() + 1;
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    match m.payload() {
                        Some(v) => {
                            c.values.insert(key.to_owned(), v.to_vec());
                        }
                        None => {
                            c.values.remove(key);
                        }
                    }
                }
                Some(Err(e)) => tracing::debug!("reading {topic}: {e}"),
                None => {
                    if let Ok(p) = c.consumer.position()
                        && let Some(Offset::Offset(o)) =
                            p.find_partition(&topic, 0).map(|e| e.offset())
                    {
                        c.read_to = c.read_to.max(o);
                    }
                }
            }
        }
        tracing::trace!(from, to = high, took = ?started.elapsed(), "kafka log: checkpoints read");
        Ok(())
    }
}

fn replication(factor: i32) -> TopicReplication<'static> {
    TopicReplication::Fixed(factor)
}

/// Creates `topic`; true if made, false if it was there.
fn create(
    admin: &AdminClient<DefaultClientContext>,
    topic: &NewTopic<'_>,
) -> Result<bool, LogError> {
    let what = || format!("cannot create the Kafka topic {}", topic.name);
    let got = block_on(admin.create_topics(
        [topic],
        &AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)),
    ))
    .map_err(|e| remote(what(), e))?;
    match got.into_iter().next() {
        Some(Ok(_)) | None => Ok(true),
        Some(Err((_, Code::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(remote(what(), KafkaError::AdminOp(code))),
    }
}

impl EventLog for KafkaLog {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), LogError> {
        super::check_name("topic", name)?;
        super::check_config(&config)?;
        let full = self.cfg.topic(name);
        if full.len() > 249 {
            return Err(LogError::Invalid(format!(
                "topic `{name}` with the prefix `{}` is longer than Kafka's 249 characters",
                self.cfg.prefix
            )));
        }
        let retention_bytes = config
            .retention_bytes
            .map_or("-1".to_owned(), |b| b.to_string());
        // Kafka's time retention counts the records' timestamps, which are the events' times: a
        // replay of last year's events would be deleted as it is written. So topics are kept by
        // size only (`retention-bytes`), never by age.
        let retention_ms = "-1";
        let segment_bytes = config
            .segment_bytes
            .clamp(1 << 20, i32::MAX as u64)
            .to_string();
        let topic = NewTopic::new(
            &full,
            config.partitions as i32,
            replication(self.cfg.replication_factor),
        )
        .set(
            "cleanup.policy",
            if config.compacted {
                "compact"
            } else {
                "delete"
            },
        )
        .set("retention.bytes", &retention_bytes)
        .set("retention.ms", retention_ms)
        .set("segment.bytes", &segment_bytes)
        // An event may be up to `[limits] max-value-bytes` and more (a plugin in the control
        // topic: megabytes); Kafka's default is 1 MB.
        .set("max.message.bytes", "104857600");
        let created = create(&self.admin, &topic)?;
        // The metadata of a new topic reaches every broker a moment later (also when another
        // process of the pipeline created it just now): wait for it, so the appends and reads
        // that follow find their partitions.
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while self.partitions(name).is_err() {
            if Instant::now() >= deadline {
                return Err(LogError::Remote {
                    what: format!("creating the Kafka topic {full}"),
                    error: "the brokers do not show it 10 s after it was created".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if created {
            Ok(())
        } else {
            Err(LogError::TopicExists(name.to_owned()))
        }
    }

    fn topics(&self) -> Vec<String> {
        let Ok(md) = self.meta.fetch_metadata(None, REQUEST_TIMEOUT) else {
            return Vec::new();
        };
        let own = self.cfg.checkpoint_topic();
        let mut out: Vec<String> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && t.name() != own && !t.name().starts_with("__"))
            .filter_map(|t| t.name().strip_prefix(&self.cfg.prefix))
            // The log's own topics, and the pipeline's control topics.
            .filter(|n| {
                ![
                    "flowgate.checkpoints.",
                    "flowgate.leases.",
                    "flowgate.control.",
                    "flowgate.members.",
                ]
                .iter()
                .any(|own| n.starts_with(own))
            })
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }

    fn describe(&self, topic: &str) -> Result<TopicInfo, LogError> {
        let partitions = self.partitions(topic)?;
        let full = self.cfg.topic(topic);
        let mut out = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let (low, high) = watermarks(&self.meta, &full, p)?;
            out.push(PartitionInfo {
                partition: p,
                start_offset: low,
                end_offset: high,
                bytes: 0,
                segments: 0,
                syncs: if p == 0 { self.writer.commits() } else { 0 },
            });
        }
        Ok(TopicInfo {
            name: topic.to_owned(),
            config: TopicConfig {
                partitions,
                ..TopicConfig::default()
            },
            partitions: out,
        })
    }

    fn submit(&self, topic: &str, partition: u32, batch: Batch) -> Result<Pending, LogError> {
        self.queue(topic, partition, batch, None)
    }

    fn submit_consumed(
        &self,
        topic: &str,
        partition: u32,
        batch: Batch,
        consumed: &Consumed,
    ) -> Result<Pending, LogError> {
        let token: Arc<dyn std::any::Any + Send + Sync> = consumed.fence.0.clone();
        let offsets = token
            .downcast::<group::GroupFence>()
            .ok()
            .map(|fence| writer::Offsets {
                fence,
                partition: consumed.partition,
                offset: consumed.offset,
            });
        self.queue(topic, partition, batch, offsets)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ReadBatch>, LogError> {
        let read = self.readers.read(
            &self.meta,
            &self.cfg.topic(topic),
            topic,
            partition,
            from,
            max_bytes,
        );
        self.outlast(read, Vec::new())
    }

    fn offset_for_time(&self, topic: &str, partition: u32, ts: i64) -> Result<u64, LogError> {
        self.check_partition(topic, partition)?;
        let full = self.cfg.topic(topic);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&full, partition as i32, Offset::Offset(ts))
            .map_err(|e| remote("offsets by time", e))?;
        let got = self
            .meta
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| remote(format!("finding offsets by time in {full}"), e))?;
        match got
            .find_partition(&full, partition as i32)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Ok(o.max(0) as u64),
            _ => Ok(watermarks(&self.meta, &full, partition)?.1),
        }
    }

    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool, LogError> {
        let waited = self.readers.wait_for(
            &self.meta,
            &self.cfg.topic(topic),
            topic,
            partition,
            offset,
            timeout,
        );
        self.outlast(waited, false)
    }

    fn roll(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.check_partition(topic, partition)
    }

    fn enforce_retention(&self, _now_ms: i64) -> Result<usize, LogError> {
        Ok(0)
    }

    fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        self.save_checkpoint(
            &format!("group.{group}.{topic}.{partition}"),
            offset.to_string().as_bytes(),
        )
    }

    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let name = format!("group.{group}.{topic}.{partition}");
        self.load_checkpoint(&name)?
            .map(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        LogError::Invalid(format!("group offset {name} is not a number"))
                    })
            })
            .transpose()
    }

    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<(), LogError> {
        if data.len() > MAX_RECORD_BYTES {
            return Err(LogError::Invalid(format!(
                "checkpoint {name} is {} bytes, more than the {MAX_RECORD_BYTES} a record of the Kafka log holds; lower the stage's max-state-bytes",
                data.len()
            )));
        }
        let topic = self.cfg.checkpoint_topic();
        let waited = Instant::now();
        let mut c = self.checkpoints.lock().expect("not poisoned");
        let started = Instant::now();
        let waited = started - waited;
        let mut record = BaseRecord::to(&topic).key(name).payload(data).partition(0);
        loop {
            match c.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                    record = r;
                    c.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(remote(format!("saving checkpoint {name}"), e)),
            }
        }
        // Delivered means written with acks=all.
        if !writer::deliveries(&c.producer, REQUEST_TIMEOUT * 3) {
            return Err(LogError::Remote {
                what: format!("saving checkpoint {name} to {topic}"),
                error: "the brokers did not acknowledge it in 30 s".into(),
            });
        }
        if let Some(e) = c
            .producer
            .context()
            .undelivered
            .lock()
            .expect("not poisoned")
            .take()
        {
            return Err(remote(format!("saving checkpoint {name} to {topic}"), e));
        }
        c.values.insert(name.to_owned(), data.to_vec());
        tracing::trace!(name, bytes = data.len(), waited = ?waited, took = ?started.elapsed(), "kafka log: checkpoint saved");
        Ok(())
    }

    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        let mut c = self.checkpoints.lock().expect("not poisoned");
        self.catch_up(&mut c)?;
        Ok(c.values.get(name).cloned())
    }

    fn shared(&self) -> bool {
        true
    }

    fn join(
        &self,
        group: &str,
        topic: &str,
        on: Arc<dyn Rebalance>,
    ) -> Result<Option<Box<dyn Membership>>, LogError> {
        self.partitions(topic)?;
        let member = group::join(
            &self.cfg,
            &self.cfg.group(group),
            &self.cfg.topic(topic),
            on,
        )?;
        Ok(Some(Box::new(member)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_what_kafka_allows() {
        let cfg = KafkaLogConfig {
            brokers: "b:9092".into(),
            properties: BTreeMap::new(),
            prefix: "fg.".into(),
            replication_factor: -1,
            owner: "my pipeline/1".into(),
            instance: "host-1".into(),
            session_timeout: Duration::from_secs(10),
        };
        assert_eq!(cfg.topic("orders"), "fg.orders");
        assert_eq!(
            cfg.checkpoint_topic(),
            "fg.flowgate.checkpoints.my_pipeline_1"
        );
        assert_eq!(
            cfg.transactional_id(),
            "fg.flowgate.log.my pipeline/1.host-1"
        );
        assert_eq!(
            cfg.group("stage.count"),
            "fg.flowgate.my pipeline/1.stage.count"
        );
        assert_eq!(kafka_name(&"x".repeat(300)).len(), 249);
    }
}
