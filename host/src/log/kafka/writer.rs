//! The Kafka log's writer thread: every append queued becomes part of one Kafka transaction
//! (the group commit), answered once the transaction committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode as Code;
use tokio::sync::oneshot;

use super::{Context, KafkaLogConfig, REQUEST_TIMEOUT};
use crate::event::{self, Batch};
use crate::log::{Ack, LogError, Pending};

/// At most this many appends, or this many bytes, in one transaction.
const MAX_GROUP: usize = 4096;
const MAX_GROUP_BYTES: usize = 64 << 20;
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
    answer: oneshot::Sender<Result<Ack, LogError>>,
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
        let producer: BaseProducer<WriterContext> = c
            .create_with_context(WriterContext {
                inner: Context::new("log".into()),
                first: Mutex::new(Vec::new()),
            })
            .map_err(StartError::Config)?;
        producer
            .init_transactions(REQUEST_TIMEOUT * 3)
            .map_err(StartError::Kafka)?;
        let (tx, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-kafka-log".into())
            .spawn(move || run(producer, rx, &id, &counted))
            .expect("spawning the Kafka log's writer");
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            commits,
        })
    }

    pub(super) fn submit(&self, topic: String, partition: u32, batch: Batch) -> Pending {
        let (answer, rx) = oneshot::channel();
        let append = Append {
            topic,
            partition,
            batch,
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

fn bytes(b: &Batch) -> usize {
    b.values.data.len() + b.keys.data.len() + b.header_values.data.len() + b.timestamps.len() * 8
}

fn run(
    producer: BaseProducer<WriterContext>,
    rx: mpsc::Receiver<Append>,
    id: &str,
    commits: &AtomicU64,
) {
    // After a fatal error (fenced by a newer process, say) every append fails with it.
    let mut dead: Option<String> = None;
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
        match commit_group(&producer, &group, id) {
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
            Err(Outcome::Dead(why)) => {
                tracing::error!("the Kafka log's writer stops: {why}");
                for a in group {
                    let _ = a.answer.send(Err(failed(&a.topic, &why)));
                }
                dead = Some(why);
            }
        }
    }
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
    /// The producer cannot go on (fenced, or a fatal error).
    Dead(String),
}

fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch)
    ) || matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

/// Sends the group in one transaction and commits it, trying again (after an abort) while the
/// brokers fail it; the first offset of each append.
fn commit_group(
    producer: &BaseProducer<WriterContext>,
    group: &[Append],
    id: &str,
) -> Result<Vec<u64>, Outcome> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let err = match try_group(producer, group) {
            Ok(firsts) => return Ok(firsts),
            Err(e) => e,
        };
        if fenced(&err) {
            return Err(Outcome::Dead(format!(
                "another process took over the log's transactional id `{id}` ({err}): run one `flowgate run` per pipeline on a Kafka log, or give the pipelines different names"
            )));
        }
        tracing::warn!("the Kafka log's transaction failed ({err}); aborting it and trying again");
        if let Err(e) = producer.abort_transaction(REQUEST_TIMEOUT * 3)
            && fenced(&e)
        {
            return Err(Outcome::Dead(format!(
                "another process took over the log's transactional id `{id}` ({e})"
            )));
        }
        if started.elapsed() >= GIVE_UP_AFTER {
            return Err(Outcome::GaveUp(format!(
                "the Kafka brokers did not take the append in {GIVE_UP_AFTER:?}: {err}"
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn try_group(
    producer: &BaseProducer<WriterContext>,
    group: &[Append],
) -> Result<Vec<u64>, KafkaError> {
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
                    Err((e, _)) => return Err(e),
                }
            }
        }
    }
    // Served here in steps of 1 ms: rdkafka's own flush (which commit_transaction calls) polls
    // in steps of 100 ms and sleeps the whole step even once the last delivery came.
    let deadline = Instant::now() + REQUEST_TIMEOUT * 6;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(Code::MessageTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    producer.commit_transaction(REQUEST_TIMEOUT * 6)?;
    let first = producer.context().first.lock().expect("not poisoned");
    first
        .iter()
        .map(|o| match o {
            Some(o) => Ok(*o as u64),
            None => Err(KafkaError::MessageProduction(Code::Fail)),
        })
        .collect()
}
