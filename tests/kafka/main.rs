//! End-to-end tests of the Kafka source and sink: a real Apache Kafka broker
//! ([`flowgate_tests::kafka`]), the real `flowgate` binary ([`flowgate_tests::fixture`]), and an
//! independent client (the `confluent-kafka` Python package) that writes the input and reads the
//! output back. One module per area.
//!
//! The tests run side by side on the binary's shared broker ([`Broker::shared`]): each uses Kafka
//! topics, a pipeline name (so consumer groups and transactional ids) and a data directory of its
//! own. A test that disturbs a broker for everyone on it (stopping it, holding a transaction open
//! on the sinks' positions topic) starts a broker of its own ([`Broker::new`]).
//!
//! `cargo test -p flowgate-tests --test kafka -- --nocapture` shows how long each test took.

mod bad_input;
mod kafka_log;
mod outage;
mod positions;
mod roundtrip;
mod scale;
mod soak;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flowgate::event::{Event, Header};
use flowgate_tests::Delivery;
use flowgate_tests::fixture::{Fixture, flowgate_bin, http};
use flowgate_tests::kafka::{Broker, Isolation, Record};

/// Times a Kafka test (see it with `--nocapture`).
struct Timer;

impl Timer {
    fn start(name: &'static str) -> flowgate_tests::Timer {
        flowgate_tests::Timer::start("kafka", name)
    }
}

/// A pipeline file: Kafka source `in` (Kafka topic `input`) into log topic `raw`, through
/// `stages` (plugins, in order: `s1` reads `raw` and writes `t1`, `s2` reads `t1`, ...), to
/// Kafka sink `out` (Kafka topic `output`). Every log topic has 3 partitions. `extra` is
/// appended (more tables: `[http]`, another sink).
fn chain(
    name: &str,
    delivery: Delivery,
    brokers: &str,
    input: &str,
    output: &str,
    stages: &[&str],
    extra: &str,
) -> String {
    let mut toml = format!(
        r#"name = "{name}"
delivery = "{}"
commit-interval = "200ms"

[topics.raw]
partitions = 3

[sources.in]
type = "kafka"
brokers = "{brokers}"
topics = ["{input}"]
topic = "raw"
"#,
        delivery.as_str()
    );
    let mut last = "raw".to_owned();
    for (i, plugin) in stages.iter().enumerate() {
        let out = format!("t{}", i + 1);
        toml.push_str(&format!(
            r#"
[topics.{out}]
partitions = 3

[stages.s{n}]
plugin = "{plugin}"
input = "{last}"
output = "{out}"
"#,
            n = i + 1
        ));
        last = out;
    }
    toml.push_str(&format!(
        r#"
[sinks.out]
type = "kafka"
brokers = "{brokers}"
input = "{last}"
topic = "{output}"
"#
    ));
    toml.push_str(extra);
    toml
}

/// The test record number in a value that starts `seq-NNNNNNNNNN-` (in any case): a test record's
/// value ([`flowgate_tests::payload`]) after stages that append to it or change its case.
fn seq_of(value: &[u8]) -> Option<u64> {
    let head = value.get(..4)?;
    if !head.eq_ignore_ascii_case(b"seq-") || value.get(14) != Some(&b'-') {
        return None;
    }
    std::str::from_utf8(&value[4..14]).ok()?.parse().ok()
}

/// How many times each test record is in `records` (by [`seq_of`] of the value); panics on a
/// record that is no test record.
fn seq_counts(records: &[Record]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let seq = r
            .value
            .as_deref()
            .and_then(seq_of)
            .unwrap_or_else(|| panic!("a record that is no test record: {r:?}"));
        *counts.entry(seq).or_insert(0) += 1;
    }
    counts
}

/// What `counts` lacks or has more than once of the records `0 .. n`, and what it has beyond.
#[derive(Debug, Default)]
struct Tally {
    missing: Vec<u64>,
    /// (seq, times) of the records there more than once.
    repeated: Vec<(u64, usize)>,
    /// Copies beyond the first, over all records.
    extra_copies: usize,
    stray: Vec<u64>,
}

impl Tally {
    fn of(counts: &BTreeMap<u64, usize>, n: u64) -> Tally {
        let mut t = Tally {
            missing: (0..n).filter(|s| !counts.contains_key(s)).collect(),
            ..Tally::default()
        };
        for (&seq, &times) in counts {
            if seq >= n {
                t.stray.push(seq);
            } else if times > 1 {
                t.repeated.push((seq, times));
                t.extra_copies += times - 1;
            }
        }
        t
    }

    /// One line for an assert message: the counts, and the first few of each.
    fn describe(&self) -> String {
        format!(
            "{} missing (first {:?}), {} repeated ({} extra copies; first {:?}), {} never produced (first {:?})",
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)],
            self.repeated.len(),
            self.extra_copies,
            &self.repeated[..self.repeated.len().min(10)],
            self.stray.len(),
            &self.stray[..self.stray.len().min(10)],
        )
    }
}

/// Reads `topic` (read_committed) until it holds each of the test records `0 .. n` at least
/// once, or `deadline` passed (what was read last is returned either way). `alive` is asked
/// between reads, so a pipeline that died fails at once.
fn read_until_complete(
    kafka: &Broker,
    topic: &str,
    n: u64,
    deadline: Duration,
    alive: impl FnMut() -> Result<(), String>,
) -> Vec<Record> {
    read_until(kafka, topic, n as usize, deadline, alive, |read| {
        let counts = seq_counts(read);
        if (0..n).all(|s| counts.contains_key(&s)) {
            Ok(())
        } else {
            Err(Tally::of(&counts, n).describe())
        }
    })
}

/// Reads `topic` (read_committed, at least `count` records or to the deadline of each read)
/// until `complete` says what was read is all, or `deadline` passed; returns what was read last.
/// `alive` is asked between reads; when it fails, the panic says what `complete` lacked.
fn read_until(
    kafka: &Broker,
    topic: &str,
    count: usize,
    deadline: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
    complete: impl Fn(&[Record]) -> Result<(), String>,
) -> Vec<Record> {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let read = kafka.consume(
            topic,
            Isolation::ReadCommitted,
            count,
            left.min(Duration::from_secs(30))
                .max(Duration::from_secs(1)),
        );
        let lacks = match complete(&read) {
            Ok(()) => return read,
            Err(lacks) => lacks,
        };
        if Instant::now() >= until {
            return read;
        }
        if let Err(why) = alive() {
            panic!("{why}; {topic} so far: {lacks}");
        }
    }
}

/// What mark-a makes of a value.
fn marked(value: &[u8]) -> Vec<u8> {
    [value, b"|a"].concat()
}

/// Output records counted by the input record each came from (the `kafka.topic`,
/// `kafka.partition` and `kafka.offset` headers the source gave its event): exact even when the
/// input holds a test record twice (a producer's retry across a broker restart).
#[derive(Debug, Default)]
struct Origins {
    /// Input records (partition, offset) with no output record.
    missing: Vec<(i32, i64)>,
    /// Input records with more than one, and how many.
    repeated: Vec<((i32, i64), usize)>,
    /// Output records that name no input record, or whose value is not the input's.
    strange: Vec<String>,
}

impl Origins {
    /// `output` against `input`; `value` is what the pipeline makes of an input value.
    fn of(input: &[Record], output: &[Record], value: impl Fn(&[u8]) -> Vec<u8>) -> Origins {
        let at: BTreeMap<(i32, i64), &Record> =
            input.iter().map(|r| ((r.partition, r.offset), r)).collect();
        let mut counts: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        let mut o = Origins::default();
        for r in output {
            let e = r.event();
            let origin = (
                header(&e, "kafka.topic"),
                header(&e, "kafka.partition").and_then(|p| p.parse().ok()),
                header(&e, "kafka.offset").and_then(|p| p.parse().ok()),
            );
            let (Some(topic), Some(p), Some(offset)) = origin else {
                o.strange.push(format!("no origin: {r:?}"));
                continue;
            };
            match at.get(&(p, offset)) {
                Some(i) if i.topic == topic => {
                    let want = value(i.value.as_deref().unwrap_or_default());
                    if r.value.as_deref() != Some(&want[..]) {
                        o.strange
                            .push(format!("{topic}/{p}/{offset} has another value: {r:?}"));
                    }
                    *counts.entry((p, offset)).or_insert(0) += 1;
                }
                _ => o.strange.push(format!("an origin not in the input: {r:?}")),
            }
        }
        o.missing = at
            .keys()
            .filter(|k| !counts.contains_key(k))
            .copied()
            .collect();
        o.repeated = counts.into_iter().filter(|(_, n)| *n > 1).collect();
        o
    }

    fn describe(&self) -> String {
        format!(
            "{} input records missing (first (partition, offset) {:?}), {} repeated (first {:?}), {} strange (first {:?})",
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)],
            self.repeated.len(),
            &self.repeated[..self.repeated.len().min(10)],
            self.strange.len(),
            &self.strange[..self.strange.len().min(3)],
        )
    }
}

/// The value of header `name` of `e` (its first), as text.
fn header<'a>(e: &'a Event, name: &str) -> Option<&'a str> {
    e.headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| std::str::from_utf8(&h.value).expect("a text header"))
}

/// `e`'s headers without those named in `names`.
fn headers_without(e: &Event, names: &[&str]) -> Vec<Header> {
    e.headers
        .iter()
        .filter(|h| !names.contains(&h.name.as_str()))
        .cloned()
        .collect()
}

/// A header.
fn h(name: &str, value: impl Into<Vec<u8>>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// The headers a Kafka source adds to the event of the record at `r`'s coordinates.
fn coordinates(r: &Record) -> [Header; 3] {
    [
        h("kafka.topic", r.topic.clone()),
        h("kafka.partition", r.partition.to_string()),
        h("kafka.offset", r.offset.to_string()),
    ]
}

/// The events of a log topic of the fixture's data directory, as `flowgate consume` prints
/// them (from the beginning, every partition).
fn log_topic(f: &Fixture, topic: &str) -> Vec<Event> {
    let out = Command::new(flowgate_bin())
        .args(["consume", topic, "--from-beginning", "--data-dir"])
        .arg(f.path("data"))
        .env("NO_COLOR", "1")
        .output()
        .expect("flowgate consume");
    assert!(
        out.status.success(),
        "flowgate consume {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    flowgate::event::ndjson::read_all(out.stdout.as_slice())
        .unwrap_or_else(|e| panic!("flowgate consume {topic} printed no NDJSON: {e}"))
}

/// The events of an NDJSON file (a file sink's), none if it is missing.
fn ndjson_file(path: &Path) -> Vec<Event> {
    match std::fs::read(path) {
        Ok(bytes) => flowgate::event::ndjson::read_all(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        Err(_) => Vec::new(),
    }
}

/// The samples of metric `name` in a Prometheus text page: (labels as written, value).
fn samples(page: &str, name: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, value) = r.split_once('}')?;
                (labels.to_owned(), value)
            } else if rest.starts_with(' ') {
                (String::new(), rest)
            } else {
                return None;
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The first and the last `n` lines of a run's log, for an assert message.
fn excerpt(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if lines.len() <= 2 * n {
        return log.to_owned();
    }
    format!(
        "{}\n... ({} lines)\n{}",
        lines[..n].join("\n"),
        lines.len() - 2 * n,
        lines[lines.len() - n..].join("\n")
    )
}

/// `GET /metrics` of a run.
fn metrics(addr: &str) -> String {
    let (status, _, body) = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// The sum of the samples of `name` whose labels contain `label` (all with `""`).
fn total(page: &str, name: &str, label: &str) -> f64 {
    samples(page, name)
        .iter()
        .filter(|(l, _)| l.contains(label))
        .map(|(_, v)| v)
        .fold(0.0, |sum, v| sum + v)
}

#[test]
fn record_numbers_and_metric_samples_are_read_back() {
    assert_eq!(seq_of(&flowgate_tests::payload(42)), Some(42));
    let mut shouted = flowgate_tests::payload(7).to_ascii_uppercase();
    shouted.extend_from_slice(b"|A|b");
    assert_eq!(seq_of(&shouted), Some(7));
    assert_eq!(seq_of(b"not a record"), None);
    let page = "# TYPE flowgate_kafka_up gauge\nflowgate_kafka_up{step=\"sink:out\"} 0\nflowgate_kafka_up{step=\"source:in\"} 1\nflowgate_kafka_upx 5\nflowgate_log_syncs 12\n";
    assert_eq!(
        samples(page, "flowgate_kafka_up"),
        vec![
            ("step=\"sink:out\"".to_owned(), 0.0),
            ("step=\"source:in\"".to_owned(), 1.0)
        ]
    );
    assert_eq!(total(page, "flowgate_kafka_up", "source"), 1.0);
    assert_eq!(total(page, "flowgate_log_syncs", ""), 12.0);
}
