//! Reads of the Kafka log: a pool of `read_committed` consumers per partition, each assigned at
//! the offset a cursor reads from and kept there while that cursor reads on, so a cursor's
//! sequential reads are one fetch stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode as Code;

use super::{Context, KafkaLogConfig, REQUEST_TIMEOUT, client_config, remote, watermarks};
use crate::event::{self, BatchBuilder};
use crate::log::{LogError, ReadBatch};

/// Consumers kept per partition (one per cursor reading it, normally).
const MAX_READERS: usize = 16;

struct Row {
    offset: u64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Row {
    fn bytes(&self) -> usize {
        self.value.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
            + 16
    }
}

struct Reader {
    consumer: BaseConsumer<Context>,
    /// The Kafka topic and its partition.
    topic: String,
    partition: u32,
    /// Reads are answered from here on: what is before was handed out, or holds no record.
    start: u64,
    /// The offset after the last record fetched: the consumer's position, which moves past
    /// transaction markers and aborted records as well.
    fetched: u64,
    rows: VecDeque<Row>,
}

impl Reader {
    /// Places the reader at `from`, assigning its consumer anew unless it is there already.
    fn seek(
        &mut self,
        meta: &BaseConsumer<Context>,
        name: &str,
        from: u64,
    ) -> Result<(), LogError> {
        if self.start <= from && from <= self.fetched {
            while self.rows.front().is_some_and(|r| r.offset < from) {
                self.rows.pop_front();
            }
            self.start = from;
            return Ok(());
        }
        let (low, high) = meta
            .fetch_watermarks(&self.topic, self.partition as i32, REQUEST_TIMEOUT)
            .map_err(|e| {
                remote(
                    format!("reading the offsets of {}/{}", self.topic, self.partition),
                    e,
                )
            })?;
        let (low, high) = (low.max(0) as u64, high.max(0) as u64);
        if from < low || from > high {
            return Err(LogError::OffsetOutOfRange {
                topic: format!("{name}/{}", self.partition),
                requested: from,
                start: low,
                end: high,
            });
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            self.partition as i32,
            Offset::Offset(from as i64),
        )
        .map_err(|e| remote("assigning a partition", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| remote(format!("reading {}/{}", self.topic, self.partition), e))?;
        self.rows.clear();
        self.start = from;
        self.fetched = from;
        Ok(())
    }

    /// Takes what the consumer has (waiting up to `wait` for the first record), about
    /// `budget` bytes.
    fn fetch(&mut self, wait: Duration, budget: usize) -> Result<(), LogError> {
        let mut got = 0;
        let mut timeout = wait;
        while got < budget {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let offset = m.offset().max(0) as u64;
                    let row = Row {
                        offset,
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().unwrap_or_default().to_vec(),
                        timestamp: m.timestamp().to_millis().unwrap_or(0),
                        headers: m.headers().map_or_else(Vec::new, |h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.as_bytes().to_vec(),
                                        h.value.unwrap_or_default().to_vec(),
                                    )
                                })
                                .collect()
                        }),
                    };
                    got += row.bytes();
                    self.fetched = offset + 1;
                    if offset >= self.start {
                        self.rows.push_back(row);
                    }
                    timeout = Duration::ZERO;
                }
                Some(Err(e)) => {
                    if e.rdkafka_error_code() == Some(Code::OffsetOutOfRange) {
                        // Retention deleted what the reader was at: the next seek finds out
                        // where the partition starts now.
                        self.fetched = 0;
                        self.start = u64::MAX;
                    }
                    return Err(remote(
                        format!("reading {}/{}", self.topic, self.partition),
                        e,
                    ));
                }
                None => break,
            }
        }
        // Past transaction markers (and aborted records) the position moves without a record.
        if let Ok(p) = self.consumer.position()
            && let Some(Offset::Offset(o)) = p
                .find_partition(&self.topic, self.partition as i32)
                .map(|e| e.offset())
            && o as u64 > self.fetched
        {
            self.fetched = o as u64;
        }
        Ok(())
    }

    /// True if something is there at or after `offset`.
    fn has(&self, offset: u64) -> bool {
        self.fetched > offset || self.rows.back().is_some_and(|r| r.offset >= offset)
    }
}

/// A reader, used by one read at a time.
type Shared = Arc<Mutex<Reader>>;

pub(super) struct Readers {
    cfg: KafkaLogConfig,
    pool: Mutex<HashMap<(String, u32), Vec<Shared>>>,
}

impl Readers {
    pub(super) fn new(cfg: &KafkaLogConfig) -> Readers {
        Readers {
            cfg: cfg.clone(),
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// A reader of the partition: a free one already at `from`, else a free one, else a new one.
    fn get(
        &self,
        meta: &BaseConsumer<Context>,
        topic: &str,
        name: &str,
        partition: u32,
        from: u64,
    ) -> Result<Shared, LogError> {
        let mut pool = self.pool.lock().expect("not poisoned");
        let list = pool.entry((topic.to_owned(), partition)).or_default();
        let free: Vec<&Shared> = list.iter().filter(|r| r.try_lock().is_ok()).collect();
        if let Some(r) = free.iter().find(|r| {
            r.try_lock()
                .is_ok_and(|g| g.start <= from && from <= g.fetched)
        }) {
            return Ok(Arc::clone(r));
        }
        if list.len() >= MAX_READERS
            && let Some(r) = free.first().copied().or(list.first())
        {
            return Ok(r.clone());
        }
        let md = meta
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| remote(format!("reading the metadata of {topic}"), e))?;
        let partitions = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len() as u32);
        if partitions == 0 {
            return Err(LogError::NoSuchTopic {
                topic: name.to_owned(),
                existing: String::new(),
            });
        }
        if partition >= partitions {
            return Err(LogError::NoSuchPartition {
                topic: name.to_owned(),
                partition,
                partitions,
            });
        }
        let mut c = client_config(&self.cfg.brokers, &self.cfg.properties);
        c.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "100")
            // librdkafka waits fetch.error.backoff.ms (500 ms) before fetching again a partition
            // read to its end, and fetch.queue.backoff.ms (1 s) once its queue is full: a reader
            // at the tail would see each new append that much late.
            .set("fetch.error.backoff.ms", "5")
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.message.max.bytes", "104857600")
            .set("queued.max.messages.kbytes", "16384")
            .set(
                "group.id",
                format!("{}flowgate.log-reader", self.cfg.prefix),
            );
        let consumer: BaseConsumer<Context> = c
            .create_with_context(Context::new("log".into()))
            .map_err(|e| remote("making a reader of the Kafka log", e))?;
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            topic: topic.to_owned(),
            partition,
            start: u64::MAX,
            fetched: 0,
            rows: VecDeque::new(),
        }));
        list.push(reader.clone());
        Ok(reader)
    }

    pub(super) fn read(
        &self,
        meta: &BaseConsumer<Context>,
        topic: &str,
        name: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ReadBatch>, LogError> {
        let reader = self.get(meta, topic, name, partition, from)?;
        let mut r = reader.lock().expect("not poisoned");
        r.seek(meta, name, from)?;
        if r.rows.is_empty() {
            r.fetch(Duration::ZERO, max_bytes)?;
        }
        if !r.has(from) {
            // A read answers with what the log holds, as the embedded log's does: when the
            // partition's committed end is past `from`, wait until the consumer has it.
            let (_, high) = watermarks(meta, topic, partition)?;
            let deadline = Instant::now() + REQUEST_TIMEOUT * 3;
            while from < high && !r.has(from) {
                if Instant::now() >= deadline {
                    return Err(LogError::Remote {
                        what: format!("reading {topic}/{partition} from offset {from}"),
                        error: format!(
                            "nothing came in 30 s, though the partition's committed records end at {high}"
                        ),
                    });
                }
                r.fetch(Duration::from_millis(20), max_bytes)?;
            }
        }
        let mut out = Vec::new();
        let mut taken = 0;
        while taken < max_bytes.max(1) {
            let Some(first) = r.rows.front() else { break };
            let base = first.offset;
            let mut b = BatchBuilder::with_capacity(64, 0);
            let mut next = base;
            while taken < max_bytes.max(1)
                && let Some(row) = r.rows.front()
                && row.offset == next
            {
                let row = r.rows.pop_front().expect("front");
                taken += row.bytes();
                b.push(
                    row.key.as_deref(),
                    &row.value,
                    row.timestamp,
                    row.headers
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice())),
                );
                next += 1;
            }
            r.start = next;
            out.push(ReadBatch {
                base_offset: base,
                batch: Arc::new(event::finish(b)),
            });
        }
        if out.is_empty() && r.fetched > from {
            // Nothing but markers (or aborted records) from `from` to `fetched`.
            let to = r.fetched;
            r.start = to;
            out.push(ReadBatch {
                base_offset: to,
                batch: Arc::new(event::finish(BatchBuilder::with_capacity(0, 0))),
            });
        }
        Ok(out)
    }

    pub(super) fn wait_for(
        &self,
        meta: &BaseConsumer<Context>,
        topic: &str,
        name: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool, LogError> {
        let deadline = Instant::now() + timeout;
        let reader = self.get(meta, topic, name, partition, offset)?;
        let mut r = reader.lock().expect("not poisoned");
        if !(r.start <= offset && offset <= r.fetched) {
            r.seek(meta, name, offset)?;
        }
        loop {
            if r.has(offset) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // In slices, so a position moved past markers alone is seen too.
            r.fetch((deadline - now).min(Duration::from_millis(20)), 1 << 20)?;
        }
    }
}
