//! The Kafka log's writer thread: every append queued becomes part of one Kafka transaction
//! (the group commit), answered once the transaction committed.
//!
//! An append a step of a consumer group made for what it consumed ([`Offsets`]) commits that
//! position as the group's offset in the same transaction, with the group's metadata
//! (KIP-447). If the group coordinator refuses it (this process is no longer a member of that
//! generation), or this process lost the group's partitions since the append was made, the
//! transaction is aborted, that group's appends fail with [`LogError::Fenced`] and the others
//! are sent again in a new transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode as Code;
use tokio::sync::oneshot;

use super::group::GroupFence;
use super::{Context, KafkaLogConfig, REQUEST_TIMEOUT};
use crate::event::{self, Batch};
use crate::log::{Ack, LogError, Pending};

/// At most this many appends, or this many bytes, in one transaction.
const MAX_GROUP: usize = 4096;
const MAX_GROUP_BYTES: usize = 64 << 20;
/// How long a member's offsets are tried again while its group refuses them (it is forming a
/// new generation) before its appends fail as fenced (its steps then start again from what
/// was committed).
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// How long a group is tried again while the brokers fail it before its appends fail.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

pub(super) enum StartError {
    Config(KafkaError),
    Kafka(KafkaError),
}

struct Append {
    topic: String,
    partition: u32,
    batch: Batch,
    offsets: Option<Held>,
    answer: oneshot::Sender<Result<Ack, LogError>>,
}

/// What an append of a group's step consumed: the group's `partition` up to `offset`.
pub(super) struct Offsets {
    pub fence: Arc<GroupFence>,
    pub partition: u32,
    pub offset: u64,
}

/// [`Offsets`] with the group's losses when the append was made.
struct Held {
    offsets: Offsets,
    losses: u64,
}

impl Held {
    /// Whether the append may still be committed: this process is a member and has not lost
    /// the group's partitions since.
    fn current(&self) -> bool {
        let fence = &self.offsets.fence;
        fence.losses() == self.losses && fence.metadata().is_some()
    }
}

/// The delivery reports of the group in flight: the offset of each append's first record.
struct WriterContext {
    inner: Context,
    first: Mutex<Vec<Option<i64>>>,
}

impl rdkafka::client::ClientContext for WriterContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, append: usize) {
        use rdkafka::message::Message;
        if append == usize::MAX {
            return;
        }
        if let Ok(m) = result {
            self.inner.reached();
            if let Some(slot) = self.first.lock().expect("not poisoned").get_mut(append) {
                *slot = Some(m.offset());
            }
        }
    }
}

pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Append>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Makes the transactional producer, fences an earlier one of the same id (ending its open
    /// transaction) and starts the thread.
    pub(super) fn start(cfg: &KafkaLogConfig, mut c: ClientConfig) -> Result<Writer, StartError> {
        let id = cfg.transactional_id();
        c.set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            // A process killed in a transaction holds back what readers see of the partitions
            // it wrote until the transaction times out (or the process is back): keep it short;
            // a group commit takes milliseconds.
            .set("transaction.timeout.ms", "10000")
            .set("message.max.bytes", "104857600")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "262144");
        let producer = make_producer(&c)?;
        let (tx, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-kafka-log".into())
            .spawn(move || run(producer, &c, rx, &id, &counted))
            .expect("spawning the Kafka log's writer");
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            commits,
        })
    }

    pub(super) fn submit(
        &self,
        topic: String,
        partition: u32,
        batch: Batch,
        offsets: Option<Offsets>,
    ) -> Pending {
        let (answer, rx) = oneshot::channel();
        let offsets = offsets.map(|offsets| Held {
            losses: offsets.fence.losses(),
            offsets,
        });
        if let Some(held) = &offsets
            && !held.current()
        {
            let _ = answer.send(Err(not_a_member(&held.offsets.fence.group, None)));
            return Pending(rx);
        }
        let append = Append {
            topic,
            partition,
            batch,
            offsets,
            answer,
        };
        match self.tx.lock().expect("not poisoned").as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(a)) = tx.send(append) {
                    let _ = a.answer.send(Err(LogError::Closed));
                }
            }
            None => {
                let _ = append.answer.send(Err(LogError::Closed));
            }
        }
        Pending(rx)
    }

    /// Transactions committed since the log was opened.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.lock().expect("not poisoned").take();
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }
}

/// A transactional producer of `c`'s id, which fences an earlier one of the same id (ending its
/// open transaction).
fn make_producer(c: &ClientConfig) -> Result<BaseProducer<WriterContext>, StartError> {
    let producer: BaseProducer<WriterContext> = c
        .create_with_context(WriterContext {
            inner: Context::new("log".into()),
            first: Mutex::new(Vec::new()),
        })
        .map_err(StartError::Config)?;
    producer
        .init_transactions(REQUEST_TIMEOUT * 3)
        .map_err(StartError::Kafka)?;
    Ok(producer)
}

/// A new producer in place of one that cannot go on, trying again while the brokers are away
/// (the fence is often seen as the link to them comes back) for up to [`GIVE_UP_AFTER`].
fn renew(c: &ClientConfig) -> Result<BaseProducer<WriterContext>, KafkaError> {
    let started = Instant::now();
    loop {
        match make_producer(c) {
            Ok(p) => return Ok(p),
            Err(StartError::Config(e)) => return Err(e),
            Err(StartError::Kafka(e)) if started.elapsed() >= GIVE_UP_AFTER => return Err(e),
            Err(StartError::Kafka(e)) => {
                tracing::warn!(
                    "a new transactional producer for the Kafka log could not start ({e}); trying again"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// More fences than this within [`FENCES_WITHIN`] mean another process uses the same id.
const MAX_FENCES: usize = 3;
const FENCES_WITHIN: Duration = Duration::from_secs(60);

fn bytes(b: &Batch) -> usize {
    b.values.data.len() + b.keys.data.len() + b.header_values.data.len() + b.timestamps.len() * 8
}

fn run(
    mut producer: BaseProducer<WriterContext>,
    config: &ClientConfig,
    rx: mpsc::Receiver<Append>,
    id: &str,
    commits: &AtomicU64,
) {
    // After a fatal error every append fails with it.
    let mut dead: Option<String> = None;
    let mut fences: Vec<Instant> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut size = bytes(&first.batch);
        let mut group = vec![first];
        while group.len() < MAX_GROUP && size < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(a) => {
                    size += bytes(&a.batch);
                    group.push(a);
                }
                Err(_) => break,
            }
        }
        if let Some(why) = &dead {
            for a in group {
                let _ = a.answer.send(Err(failed(&a.topic, why)));
            }
            continue;
        }
        let started = Instant::now();
        match commit_group(&producer, &mut group, id) {
            Ok(firsts) => {
                tracing::trace!(appends = group.len(), bytes = size, took = ?started.elapsed(), "kafka log: transaction committed");
                commits.fetch_add(1, Ordering::Relaxed);
                for (a, base) in group.into_iter().zip(firsts) {
                    let count = a.batch.timestamps.len() as u32;
                    let _ = a.answer.send(Ok(Ack {
                        base_offset: base,
                        count,
                    }));
                }
            }
            Err(Outcome::GaveUp(why)) => {
                for a in group {
                    let _ = a.answer.send(Err(failed(&a.topic, &why)));
                }
            }
            Err(Outcome::Renew(why)) => {
                // This process's transaction was aborted by the brokers (it was away, cut off or
                // stopped, longer than the transaction timeout, and its partitions have gone to
                // other processes), or the producer failed in a way it cannot go on from. The
                // transaction's outcome is the coordinator's: a new producer of the same id
                // completes or aborts it before it starts. The steps start again from what was
                // committed (their offsets are in the transaction, so that is consistent either
                // way); several renewals in a row mean another process has the same id.
                fences.retain(|t| t.elapsed() < FENCES_WITHIN);
                fences.push(Instant::now());
                let again = if fences.len() > MAX_FENCES {
                    Err(format!(
                        "{why}; {} times in {FENCES_WITHIN:?}: another process uses the instance name of this one: give each `flowgate run` its own --instance",
                        fences.len()
                    ))
                } else {
                    renew(config).map_err(|e| format!("{why}; a new producer could not start: {e}"))
                };
                for a in group {
                    let _ = a.answer.send(Err(LogError::Fenced(format!(
                        "{why}: this append was not acknowledged"
                    ))));
                }
                match again {
                    Ok(p) => {
                        tracing::warn!(
                            "{why}: the Kafka log starts a new transactional producer; the steps start again from what was committed"
                        );
                        producer = p;
                    }
                    Err(e) => {
                        tracing::error!("the Kafka log's writer stops: {e}");
                        dead = Some(e);
                    }
                }
            }
        }
    }
}

fn not_a_member(group: &str, error: Option<&KafkaError>) -> LogError {
    LogError::Fenced(match error {
        Some(e) => format!(
            "the consumer group `{group}` no longer counts this process in ({e}): its partitions went to another process, and nothing of this append was written"
        ),
        None => format!(
            "this process is not a member of the consumer group `{group}` now: its partitions may be another process's, and nothing of this append was written"
        ),
    })
}

fn failed(topic: &str, why: &str) -> LogError {
    LogError::Failed {
        topic: topic.to_owned(),
        reason: why.to_owned(),
    }
}

enum Outcome {
    /// The brokers failed the group for longer than [`GIVE_UP_AFTER`].
    GaveUp(String),
    /// The producer must be made anew: it was fenced (a newer producer of its id, or the
    /// coordinator ending a transaction that took too long, bumped its epoch), it failed with
    /// an error librdkafka calls fatal, or it could not abort its transaction.
    Renew(String),
}

/// What a failed call means for the producer: `None` if it can abort and go on.
fn fatal(e: &KafkaError, id: &str) -> Option<Outcome> {
    if matches!(
        e.rdkafka_error_code(),
        Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch)
    ) {
        return Some(Outcome::Renew(format!(
            "the brokers fenced the log's transactional producer `{id}` ({e})"
        )));
    }
    matches!(e, KafkaError::Transaction(t) if t.is_fatal()).then(|| {
        Outcome::Renew(format!(
            "the log's transactional producer `{id}` cannot go on: {e}"
        ))
    })
}

/// Why a transaction failed.
enum TryError {
    /// The coordinator of the consumer group of `group[i]`'s offsets refused them (or this
    /// process is no longer a member).
    NotAMember(usize, Option<KafkaError>),
    Kafka(KafkaError),
}

impl From<KafkaError> for TryError {
    fn from(e: KafkaError) -> Self {
        TryError::Kafka(e)
    }
}

/// Sends the group in one transaction and commits it, trying again (after an abort) while the
/// brokers fail it; the first offset of each append. Appends whose consumer group no longer
/// counts this process in are answered (fenced) and taken out of `group`.
fn commit_group(
    producer: &BaseProducer<WriterContext>,
    group: &mut Vec<Append>,
    id: &str,
) -> Result<Vec<u64>, Outcome> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut refused_since: Option<Instant> = None;
    loop {
        drop_fenced(group, |held| !held.current(), None);
        if group.is_empty() {
            return Ok(Vec::new());
        }
        let err = match try_group(producer, group) {
            Ok(firsts) => return Ok(firsts),
            Err(TryError::NotAMember(i, e)) => {
                abort(producer, id)?;
                let refused = group[i].offsets.as_ref().expect("offsets refused");
                let since = *refused_since.get_or_insert_with(Instant::now);
                if refused.current() && since.elapsed() < REFUSED_FOR {
                    // A member whose group is forming a new generation: its metadata is the
                    // new one once the rebalance completes here (a poll of the group away).
                    tracing::debug!(group = %refused.offsets.fence.group, "offsets refused during a rebalance ({e:?}); trying again");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                refused_since = None;
                let fence = refused.offsets.fence.clone();
                tracing::warn!(group = %fence.group, refused = ?e, "this process is no longer a member of the group: the appends made for its partitions are dropped, the others sent again");
                drop_fenced(
                    group,
                    |held| Arc::ptr_eq(&held.offsets.fence, &fence),
                    e.as_ref(),
                );
                continue;
            }
            Err(TryError::Kafka(e)) => e,
        };
        if let Some(outcome) = fatal(&err, id) {
            return Err(outcome);
        }
        tracing::warn!("the Kafka log's transaction failed ({err}); aborting it and trying again");
        abort(producer, id)?;
        if started.elapsed() >= GIVE_UP_AFTER {
            return Err(Outcome::GaveUp(format!(
                "the Kafka brokers did not take the append in {GIVE_UP_AFTER:?}: {err}"
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Serves the delivery reports until none is outstanding (true), or `timeout` passed. Served
/// here in steps of 1 ms: rdkafka's own flush polls in steps of 100 ms and sleeps the whole
/// step even once the last delivery came; and the transaction calls that flush (commit, abort)
/// do not serve the reports themselves.
pub(super) fn deliveries<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        producer.poll(Duration::from_millis(1));
    }
    true
}

/// Aborts the open transaction, trying again (for up to a minute) while the call fails without
/// a fatal error.
fn abort(producer: &BaseProducer<WriterContext>, id: &str) -> Result<(), Outcome> {
    let started = Instant::now();
    loop {
        deliveries(producer, REQUEST_TIMEOUT);
        match producer.abort_transaction(REQUEST_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(e) => {
                if let Some(outcome) = fatal(&e, id) {
                    return Err(outcome);
                }
                if started.elapsed() >= REQUEST_TIMEOUT * 6 {
                    return Err(Outcome::Renew(format!(
                        "the log's transactional producer `{id}` cannot abort its transaction: {e}"
                    )));
                }
                tracing::debug!("aborting the Kafka log's transaction: {e}; trying again");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Answers the appends of `group` whose offsets are `fenced` (as not written) and takes them
/// out.
fn drop_fenced(
    group: &mut Vec<Append>,
    fenced: impl Fn(&Held) -> bool,
    error: Option<&KafkaError>,
) {
    let (out, kept): (Vec<Append>, Vec<Append>) = std::mem::take(group)
        .into_iter()
        .partition(|a| a.offsets.as_ref().is_some_and(&fenced));
    for a in out {
        let name = &a.offsets.as_ref().expect("fenced").offsets.fence.group;
        let _ = a.answer.send(Err(not_a_member(name, error)));
    }
    *group = kept;
}

fn try_group(
    producer: &BaseProducer<WriterContext>,
    group: &[Append],
) -> Result<Vec<u64>, TryError> {
    *producer.context().first.lock().expect("not poisoned") = vec![None; group.len()];
    producer.begin_transaction()?;
    for (i, a) in group.iter().enumerate() {
        let cols = event::columns(&a.batch).expect("checked when submitted");
        for (j, row) in cols.rows().enumerate() {
            let mut record =
                BaseRecord::with_opaque_to(&a.topic, if j == 0 { i } else { usize::MAX })
                    .partition(a.partition as i32)
                    .payload(row.value)
                    .timestamp(row.timestamp);
            if let Some(k) = row.key {
                record = record.key(k);
            }
            if !row.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(row.headers.len());
                for (name, value) in row.headers.iter() {
                    h = h.insert(Header {
                        key: &String::from_utf8_lossy(name),
                        value: Some(value),
                    });
                }
                record = record.headers(h);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
    }
    send_offsets(producer, group)?;
    if !deliveries(producer, REQUEST_TIMEOUT * 6) {
        return Err(KafkaError::Flush(Code::MessageTimedOut).into());
    }
    producer.commit_transaction(REQUEST_TIMEOUT * 6)?;
    let first = producer.context().first.lock().expect("not poisoned");
    first
        .iter()
        .map(|o| match o {
            Some(o) => Ok(*o as u64),
            None => Err(KafkaError::MessageProduction(Code::Fail).into()),
        })
        .collect()
}

/// Adds the offsets the group's appends consumed to the transaction: per consumer group, the
/// furthest position of each partition, with the group's metadata now.
fn send_offsets(producer: &BaseProducer<WriterContext>, group: &[Append]) -> Result<(), TryError> {
    // group → (an append that carries it, partition → offset)
    let mut by_group: Vec<(usize, BTreeMap<u32, u64>)> = Vec::new();
    for (i, a) in group.iter().enumerate() {
        let Some(held) = &a.offsets else { continue };
        let slot = by_group.iter_mut().find(|(j, _)| {
            let other = group[*j].offsets.as_ref().expect("has offsets");
            Arc::ptr_eq(&other.offsets.fence, &held.offsets.fence)
        });
        let offsets = match slot {
            Some((_, offsets)) => offsets,
            None => {
                by_group.push((i, BTreeMap::new()));
                &mut by_group.last_mut().expect("just pushed").1
            }
        };
        let o = offsets.entry(held.offsets.partition).or_insert(0);
        *o = (*o).max(held.offsets.offset);
    }
    for (i, offsets) in by_group {
        let held = group[i].offsets.as_ref().expect("has offsets");
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (p, o) in offsets {
            tpl.add_partition_offset(
                &held.offsets.fence.topic,
                p as i32,
                Offset::Offset(o as i64),
            )
            .map_err(TryError::Kafka)?;
        }
        let Some(metadata) = held.offsets.fence.metadata().filter(|_| held.current()) else {
            return Err(TryError::NotAMember(i, None));
        };
        if let Err(e) = producer.send_offsets_to_transaction(&tpl, &metadata, REQUEST_TIMEOUT * 3) {
            let refused = matches!(
                e.rdkafka_error_code(),
                Some(Code::IllegalGeneration | Code::UnknownMemberId | Code::FencedInstanceId)
            );
            return Err(if refused {
                TryError::NotAMember(i, Some(e))
            } else {
                TryError::Kafka(e)
            });
        }
    }
    Ok(())
}
