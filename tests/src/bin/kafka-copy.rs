//! The native side of the Kafka benchmark (tests/benches/kafka.sh), and its load tools: plain
//! rdkafka code with no Flowgate in it, the physical limit of the broker and client that Flowgate's
//! Kafka source → WASM map → Kafka sink is measured against.
//!
//! ```text
//! kafka-copy copy --brokers B --from IN --to OUT [--exactly-once] [--commit-interval-ms 500] [--stream]
//! kafka-copy fill --brokers B --topic T --count N --size BYTES [--partitions P]
//! kafka-copy feed --brokers B --topic T --rate PER_SECOND --seconds S --size BYTES [--warmup S]
//! kafka-copy latency --brokers B --topic OUT --count N [--timeout S]
//! kafka-copy check --brokers B --topic OUT --count N
//! kafka-copy wait --brokers B --topic OUT --count N [--timeout S]
//! ```
//!
//! `copy` consumes every partition of IN (assigned, from the beginning, `read_committed`), maps each
//! value to ASCII upper case (the `uppercase` plugin's map) and produces it, with the record's
//! key, timestamp and headers, to OUT with an idempotent producer (`acks=all`). It stops once
//! each partition is read to the end offset it had at the start and every record produced is
//! acknowledged; `--stream` runs until it is killed instead. `--exactly-once`: a transaction every
//! commit interval holds the records and the consumed offsets (`send_offsets_to_transaction`).
//!
//! `fill` writes N records of BYTES-byte values (lower-case letters), spread evenly over the
//! partitions. `feed` writes records at a steady rate whose value starts with the time they were
//! sent (microseconds since the Unix epoch, 16 digits, then `W` during the warm-up or `M`);
//! `latency` reads OUT from its beginning until it has seen N `M` records and prints
//! `p50_ms p99_ms max_ms count`, the time from send to receipt. `check` reads OUT
//! (`read_committed`) and fails unless it holds exactly N records, every value in upper case.
//! `wait` reads OUT (`read_committed`, from its beginning) until it has N records and prints the
//! seconds that took since it started (fails after `--timeout`, default 600 s).
//!
//! `KAFKA_COPY_CONSUMER` and `KAFKA_COPY_PRODUCER` (`name=value,name=value`) add librdkafka
//! settings to every consumer and producer: what the benchmark also gives Flowgate's `properties`,
//! so that both sides run with the same client settings.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool: its figures on standard output, its progress on standard error"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// How long one request to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Counts the producer's acknowledgements and failures.
#[derive(Debug, Default)]
struct Acks {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("kafka-copy: a record was not delivered: {e}");
                }
                0
            }
        };
    }
}

/// The command line: `--name value` pairs and `--flag`s after the subcommand.
struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String], flags: &[&str]) -> anyhow::Result<Args> {
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("unexpected argument `{a}`"))?;
            if flags.contains(&name) {
                values.insert(name.to_owned(), "true".to_owned());
            } else {
                let v = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
                values.insert(name.to_owned(), v.clone());
            }
        }
        Ok(Args { values })
    }

    fn str(&self, name: &str) -> anyhow::Result<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            Some(v) => v.parse().map_err(|e| anyhow!("--{name} {v}: {e}")),
            None => default.ok_or_else(|| anyhow!("--{name} is required")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        bail!(
            "usage: kafka-copy copy|fill|feed|latency|check|wait --brokers B ... (see the file's header)"
        );
    };
    match cmd.as_str() {
        "copy" => copy(&Args::parse(rest, &["exactly-once", "stream"])?),
        "fill" => fill(&Args::parse(rest, &[])?),
        "feed" => feed(&Args::parse(rest, &[])?),
        "latency" => latency(&Args::parse(rest, &[])?),
        "check" => check(&Args::parse(rest, &[])?),
        "wait" => wait(&Args::parse(rest, &[])?),
        other => bail!("unknown command `{other}`: copy, fill, feed, latency, check or wait"),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A consumer of every partition of `topic` from its beginning; with each partition's end
/// (high watermark) at the time of the call.
fn consumer_of(
    brokers: &str,
    group: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(BaseConsumer, Vec<(i32, i64)>)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    settings(&mut config, "KAFKA_COPY_CONSUMER");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().context("consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("metadata of {topic}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .ok_or_else(|| anyhow!("topic {topic} does not exist on {brokers}"))?;
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        // A topic just made may not have its leader known everywhere yet: ask again a while.
        let deadline = Instant::now() + TIMEOUT;
        let high = loop {
            match consumer.fetch_watermarks(topic, p.id(), TIMEOUT) {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "kafka-copy: offsets of {topic}/{}: {e}; asking again",
                        p.id()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("offsets of {topic}/{}", p.id()));
                }
            }
        };
        ends.push((p.id(), high));
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assign")?;
    Ok((consumer, ends))
}

/// An idempotent producer (`acks=all`, Java's partitioner, as Flowgate's sink), then the
/// `KAFKA_COPY_PRODUCER` settings (`k=v,k=v`: what a benchmark also gives the sink's
/// `properties`).
fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random");
    settings(&mut c, "KAFKA_COPY_PRODUCER");
    c
}

/// Adds the settings of environment variable `var` (`k=v,k=v`) to `c`.
fn settings(c: &mut ClientConfig, var: &str) {
    for kv in std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .filter(|kv| !kv.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        c.set(k, v);
    }
}

/// Sends `record`, serving deliveries while librdkafka's queue is full.
fn send(
    producer: &BaseProducer<Acks>,
    mut record: BaseRecord<'_, [u8], [u8], ()>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context("produce"),
        }
    }
}

fn copy(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let (from, to) = (a.str("from")?, a.str("to")?);
    let exactly_once = a.flag("exactly-once");
    let stream = a.flag("stream");
    let interval = Duration::from_millis(a.num("commit-interval-ms", Some(500))?);
    let group = format!("kafka-copy.{from}.{to}");
    let started = Instant::now();
    let (consumer, ends) = consumer_of(brokers, &group, from, &[])?;
    // Partition → end offset still to reach (bounded runs); empty partitions are done at once.
    let mut left: HashMap<i32, i64> = ends.iter().filter(|(_, e)| *e > 0).copied().collect();
    let mut config = producer_config(brokers);
    if exactly_once {
        config.set("transactional.id", format!("kafka-copy.{to}"));
    }
    let producer: BaseProducer<Acks> = config.create_with_context(Acks::default())?;
    if exactly_once {
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
    }
    let group_metadata = consumer.group_metadata();
    // Partition → the offset after the last record produced (the transaction's offsets).
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut in_txn = 0u64;
    let mut began = Instant::now();
    let mut value = Vec::new();
    let mut copied = 0u64;
    let commit = |next: &HashMap<i32, i64>| -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in next {
            tpl.add_partition_offset(from, p, Offset::Offset(o))?;
        }
        let cgm = group_metadata
            .as_ref()
            .ok_or_else(|| anyhow!("the consumer has no group metadata"))?;
        producer.send_offsets_to_transaction(&tpl, cgm, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        Ok(())
    };
    while stream || !left.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let end = left.get(&p).copied();
                if stream || end.is_some_and(|e| m.offset() < e) {
                    value.clear();
                    value.extend(
                        m.payload()
                            .unwrap_or(&[])
                            .iter()
                            .map(u8::to_ascii_uppercase),
                    );
                    let mut record = BaseRecord::to(to).payload(&value[..]);
                    if let Some(k) = m.key() {
                        record = record.key(k);
                    }
                    if let Some(ts) = m.timestamp().to_millis() {
                        record = record.timestamp(ts);
                    }
                    if let Some(h) = m.headers() {
                        record = record.headers(h.detach());
                    }
                    send(&producer, record)?;
                    copied += 1;
                    in_txn += 1;
                    next.insert(p, m.offset() + 1);
                }
                if end.is_some_and(|e| m.offset() + 1 >= e) {
                    left.remove(&p);
                }
            }
            Some(Err(e)) => eprintln!("kafka-copy: consume: {e}"),
            None => {
                // Past the end without a record at it (transaction markers): done.
                if let Ok(tpl) = consumer.position() {
                    for e in tpl.elements_for_topic(from) {
                        if let (Offset::Offset(o), Some(&end)) =
                            (e.offset(), left.get(&e.partition()))
                            && o >= end
                        {
                            left.remove(&e.partition());
                        }
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
        if exactly_once && in_txn > 0 && began.elapsed() >= interval {
            commit(&next)?;
            producer.begin_transaction()?;
            in_txn = 0;
            began = Instant::now();
        }
    }
    if exactly_once {
        if in_txn > 0 {
            commit(&next)?;
        } else {
            producer.abort_transaction(TIMEOUT)?;
        }
    }
    producer.flush(TIMEOUT)?;
    let acks = producer.context();
    let (acked, failed) = (
        acks.acked.load(Ordering::Relaxed),
        acks.failed.load(Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "kafka-copy: {copied} records {from} -> {to} in {secs:.3} s ({:.0} records/s), {acked} acknowledged",
        copied as f64 / secs
    );
    if failed > 0 || acked != copied {
        bail!("{failed} records failed, {acked} of {copied} acknowledged");
    }
    Ok(())
}

fn fill(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let topic = a.str("topic")?;
    let count: u64 = a.num("count", None)?;
    let size: usize = a.num("size", None)?;
    let partitions: i32 = a.num("partitions", Some(3))?;
    let producer: BaseProducer<Acks> = producer_config(brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create_with_context(Acks::default())?;
    let started = Instant::now();
    let mut value = vec![0u8; size];
    for i in 0..count {
        for (j, b) in value.iter_mut().enumerate() {
            *b = b'a' + ((i as usize + j) % 26) as u8;
        }
        // Runs of 1,000 records per partition, so that batches stay large.
        let p = ((i / 1000) % partitions as u64) as i32;
        send(
            &producer,
            BaseRecord::to(topic).payload(&value[..]).partition(p),
        )?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300))?;
    let acked = producer.context().acked.load(Ordering::Relaxed);
    eprintln!(
        "kafka-copy: {acked} records of {size} bytes written to {topic} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if acked != count {
        bail!("{acked} of {count} records acknowledged");
    }
    Ok(())
}

fn feed(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let topic = a.str("topic")?;
    let rate: f64 = a.num("rate", None)?;
    let seconds: f64 = a.num("seconds", None)?;
    let warmup: f64 = a.num("warmup", Some(3.0))?;
    let size: usize = a.num("size", Some(100))?;
    if size < 17 {
        bail!("--size must leave room for the send time (17 bytes)");
    }
    let producer: BaseProducer<Acks> = producer_config(brokers)
        .set("linger.ms", "1")
        .create_with_context(Acks::default())?;
    let mut value = vec![b'x'; size];
    let started = Instant::now();
    let total = ((warmup + seconds) * rate) as u64;
    let measured_from = (warmup * rate) as u64;
    let mut sent = 0u64;
    while sent < total {
        // Every record whose time has come (a burst at most every millisecond).
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            let stamp = format!("{:016}", now_us());
            value[..16].copy_from_slice(stamp.as_bytes());
            value[16] = if sent < measured_from { b'W' } else { b'M' };
            send(&producer, BaseRecord::to(topic).payload(&value[..]))?;
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    producer.flush(TIMEOUT)?;
    eprintln!(
        "kafka-copy: fed {sent} records to {topic} at {rate:.0}/s ({} measured)",
        total - measured_from
    );
    Ok(())
}

fn latency(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let topic = a.str("topic")?;
    let count: usize = a.num("count", None)?;
    let timeout = Duration::from_secs(a.num("timeout", Some(120))?);
    // The broker answers a fetch at once when it has a record to give, else after
    // fetch.wait.max.ms (500 ms by default): records that become readable while a fetch waits
    // (a transaction's commit) would wait for it too, so this reader asks every few ms.
    let (consumer, _) = consumer_of(
        brokers,
        &format!("kafka-copy.latency.{topic}"),
        topic,
        &[("fetch.wait.max.ms", "5")],
    )?;
    let deadline = Instant::now() + timeout;
    let mut lat_us: Vec<u64> = Vec::with_capacity(count);
    while lat_us.len() < count {
        if Instant::now() >= deadline {
            bail!(
                "only {} of {count} measured records arrived in {timeout:?}",
                lat_us.len()
            );
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let now = now_us();
            let v = m.payload().unwrap_or(&[]);
            if v.len() >= 17 && v[16] == b'M' {
                let sent: u64 = std::str::from_utf8(&v[..16])?.parse()?;
                lat_us.push(now.saturating_sub(sent));
            }
        }
    }
    lat_us.sort_unstable();
    let at =
        |q: f64| lat_us[((lat_us.len() as f64 * q) as usize).min(lat_us.len() - 1)] as f64 / 1000.0;
    println!(
        "{:.2} {:.2} {:.2} {}",
        at(0.5),
        at(0.99),
        at(1.0),
        lat_us.len()
    );
    Ok(())
}

fn wait(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let topic = a.str("topic")?;
    let count: u64 = a.num("count", None)?;
    let timeout = Duration::from_secs(a.num("timeout", Some(600))?);
    let started = Instant::now();
    let (consumer, _) = consumer_of(brokers, &format!("kafka-copy.wait.{topic}"), topic, &[])?;
    let mut seen = 0u64;
    while seen < count {
        if started.elapsed() > timeout {
            bail!("{topic}: {seen} of {count} records after {timeout:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => eprintln!("kafka-copy: consume: {e}"),
            None => {}
        }
    }
    println!("{:.3}", started.elapsed().as_secs_f64());
    Ok(())
}

fn check(a: &Args) -> anyhow::Result<()> {
    let brokers = a.str("brokers")?;
    let topic = a.str("topic")?;
    let count: u64 = a.num("count", None)?;
    let (consumer, ends) = consumer_of(brokers, &format!("kafka-copy.check.{topic}"), topic, &[])?;
    let mut left: HashMap<i32, i64> = ends.into_iter().filter(|(_, e)| *e > 0).collect();
    let (mut seen, mut lower) = (0u64, 0u64);
    let mut idle = Instant::now();
    while !left.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                seen += 1;
                if m.payload()
                    .unwrap_or(&[])
                    .iter()
                    .any(u8::is_ascii_lowercase)
                {
                    lower += 1;
                }
                if left
                    .get(&m.partition())
                    .is_some_and(|&e| m.offset() + 1 >= e)
                {
                    left.remove(&m.partition());
                }
            }
            Some(Err(e)) => eprintln!("kafka-copy: consume: {e}"),
            None => {
                if let Ok(tpl) = consumer.position() {
                    for e in tpl.elements_for_topic(topic) {
                        if let (Offset::Offset(o), Some(&end)) =
                            (e.offset(), left.get(&e.partition()))
                            && o >= end
                        {
                            left.remove(&e.partition());
                        }
                    }
                }
                if idle.elapsed() > TIMEOUT {
                    bail!("{topic}: nothing more to read after {seen} records");
                }
            }
        }
    }
    if seen != count || lower > 0 {
        bail!("{topic}: {seen} records (expected {count}), {lower} with lower-case letters");
    }
    eprintln!("kafka-copy: {topic} holds {seen} records, all upper case");
    Ok(())
}
