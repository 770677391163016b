//! A Kafka cluster as the log (`[log] backend = "kafka"`): the same pipeline file as on the
//! embedded log, every topic a Kafka topic read back with the independent client, resumed from
//! the checkpoints kept in Kafka, exactly-once across kill -9, and an unreachable cluster named.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowgate::event::{self, Event};
use flowgate_tests::Rng;
use flowgate_tests::fixture::{Fixture, wait_exit};
use flowgate_tests::kafka::{Broker, Isolation};
use flowgate_tests::plugins::{MARK_A, UPPERCASE};

use crate::{Delivery, Tally, Timer, ndjson_file, seq_of};

/// A pipeline: file `in.ndjson` → `raw` (3 partitions) → mark-a → `t1` (3) → uppercase → `t2`
/// (2) → file `out.ndjson`; `log` is the `[log]` table (empty: the embedded log).
fn pipeline(name: &str, delivery: Delivery, log: &str) -> String {
    format!(
        r#"name = "{name}"
delivery = "{}"
commit-interval = "200ms"
{log}
[topics.raw]
partitions = 3
[topics.t1]
partitions = 3
[topics.t2]
partitions = 2

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.mark]
plugin = "{MARK_A}"
input = "raw"
output = "t1"

[stages.shout]
plugin = "{UPPERCASE}"
input = "t1"
output = "t2"
mode = "event"

[sinks.file]
type = "file"
input = "t2"
path = "out.ndjson"
"#,
        delivery.as_str()
    )
}

fn kafka_log(kafka: &Broker, prefix: &str) -> String {
    format!(
        "\n[log]\nbackend = \"kafka\"\nbrokers = \"{}\"\ntopic-prefix = \"{prefix}\"\n",
        kafka.bootstrap()
    )
}

/// Writes test records `0 .. n` to the fixture's `in.ndjson`.
fn write_input(f: &Fixture, n: u64) {
    let mut out = Vec::new();
    for seq in 0..n {
        let e = flowgate_tests::record(seq);
        let mut pairs = Vec::new();
        event::ndjson::write_event(&mut out, &event::view(&e, &mut pairs)).unwrap();
    }
    std::fs::write(f.path("in.ndjson"), out).unwrap();
}

/// The sink's output, one NDJSON line per event, sorted (partitions interleave differently on
/// the two logs).
fn sorted_lines(f: &Fixture) -> Vec<String> {
    let text = std::fs::read_to_string(f.path("out.ndjson")).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// What the output of test record `seq` is: marked, then upper-cased.
fn expected(seq: u64) -> Vec<u8> {
    let mut v = flowgate_tests::payload(seq);
    v.extend_from_slice(b"|a");
    v.to_ascii_uppercase()
}

fn counts(events: &[Event]) -> BTreeMap<u64, usize> {
    let mut c = BTreeMap::new();
    for e in events {
        let seq = seq_of(&e.value).unwrap_or_else(|| panic!("not a test record: {e:?}"));
        *c.entry(seq).or_insert(0) += 1;
    }
    c
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports how long the run took (see it with --nocapture)"
)]
fn a_pipeline_runs_on_a_kafka_log_as_it_does_on_the_embedded_one() {
    let _t = Timer::start("log_same_as_embedded");
    const N: u64 = 3_000;
    let kafka = Broker::shared();
    let embedded = Fixture::new(&pipeline("log-same", Delivery::AtLeastOnce, ""));
    write_input(&embedded, N);
    let (status, err) = embedded.run_bounded();
    assert!(status.success(), "embedded run: {err}");

    let prefix = "log-same.";
    let f = Fixture::new(&pipeline(
        "log-same",
        Delivery::AtLeastOnce,
        &kafka_log(kafka, prefix),
    ));
    write_input(&f, N);
    let started = Instant::now();
    let (status, err) = f.run_bounded();
    assert!(status.success(), "run on the Kafka log: {err}");
    let took = started.elapsed();
    assert_eq!(
        sorted_lines(&f),
        sorted_lines(&embedded),
        "the same output on both logs"
    );
    assert_eq!(sorted_lines(&f).len(), N as usize);
    for e in ndjson_file(&f.path("out.ndjson")) {
        let seq = seq_of(&e.value).expect("a test record");
        assert_eq!(e.value, expected(seq), "value of record {seq}");
        let input = flowgate_tests::record(seq);
        assert_eq!(e.key, input.key, "key of record {seq}");
        assert_eq!(e.timestamp, input.timestamp, "time of record {seq}");
        assert_eq!(e.headers, input.headers, "headers of record {seq}");
    }

    // Every topic of the pipeline is a Kafka topic with the prefix, and the independent client
    // reads each event there, with its key, time and headers.
    let mid = kafka.consume(
        &format!("{prefix}t1"),
        Isolation::ReadCommitted,
        N as usize,
        Duration::from_secs(60),
    );
    assert_eq!(mid.len(), N as usize, "records in {prefix}t1");
    for r in &mid {
        let seq = r.value.as_deref().and_then(seq_of).expect("a test record");
        let mut want = flowgate_tests::payload(seq);
        want.extend_from_slice(b"|a");
        assert_eq!(
            r.value.as_deref(),
            Some(&want[..]),
            "{prefix}t1 record {seq}"
        );
        let input = flowgate_tests::record(seq);
        assert_eq!(r.key, input.key, "key of {prefix}t1 record {seq}");
        assert_eq!(
            r.timestamp,
            Some(input.timestamp),
            "time of {prefix}t1 record {seq}"
        );
        assert_eq!(
            r.header("n"),
            input.headers.first().map(|h| &h.value[..]),
            "header of {prefix}t1 record {seq}"
        );
    }

    // A second run resumes from the checkpoints kept in Kafka: nothing is read or written again.
    let (status, err) = f.run_bounded();
    assert!(status.success(), "second run: {err}");
    assert_eq!(sorted_lines(&f).len(), N as usize, "no event written twice");
    assert!(
        err.contains("source file: 0 events appended"),
        "the second run appends nothing: {err}"
    );
    eprintln!("kafka log: {N} events through 2 stages in {took:.1?} (whole run)");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the seed and the kill moments (see them with --nocapture)"
)]
fn killed_runs_on_a_kafka_log_write_each_event_once() {
    let _t = Timer::start("log_kill_exactly_once");
    const N: u64 = 20_000;
    const CYCLES: usize = 8;
    let seed = flowgate_tests::seed("FLOWGATE_KAFKA_LOG_KILL_SEED");
    let mut rng = Rng(seed);
    let kafka = Broker::shared();
    let prefix = "log-kill.";
    let f = Fixture::new(&pipeline(
        "log-kill",
        Delivery::ExactlyOnce,
        &kafka_log(kafka, prefix),
    ));
    write_input(&f, N);
    let mut moments = Vec::new();
    for cycle in 0..CYCLES {
        let mut child = f.spawn(&["--bounded"], cycle);
        // The first run dies within 300 ms, before any checkpoint; the others once the pipeline
        // runs, at a random moment in the next 3 s.
        let wait = if cycle == 0 {
            Duration::from_millis(rng.below(300))
        } else {
            let until = Instant::now() + Duration::from_secs(60);
            while !f.stderr(cycle).contains("pipeline running") {
                assert!(
                    Instant::now() < until,
                    "cycle {cycle}: not running after 60 s: {}",
                    f.stderr(cycle)
                );
                // Between looks at the log, wait on the run's exit (which fails the test).
                if let Some(status) = wait_exit(&mut child, Duration::from_millis(10)) {
                    panic!(
                        "cycle {cycle}: the run exited ({status}): {}",
                        f.stderr(cycle)
                    );
                }
            }
            Duration::from_millis(rng.below(3_000))
        };
        if let Some(status) = wait_exit(&mut child, wait) {
            // The run finished before its kill: the rest of the cycles check the restarts.
            assert!(
                status.success(),
                "cycle {cycle}: {status}: {}",
                f.stderr(cycle)
            );
            moments.push(format!("{}ms (ended)", wait.as_millis()));
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        moments.push(format!("{}ms", wait.as_millis()));
    }
    let (status, err) = f.run_bounded();
    assert!(status.success(), "the last run: {err}");
    eprintln!("kafka log kill: FLOWGATE_KAFKA_LOG_KILL_SEED={seed}, kills at {moments:?}");

    let out = ndjson_file(&f.path("out.ndjson"));
    let tally = Tally::of(&counts(&out), N);
    assert!(
        tally.missing.is_empty() && tally.repeated.is_empty() && tally.stray.is_empty(),
        "the sink's file: {}",
        tally.describe()
    );
    for e in &out {
        let seq = seq_of(&e.value).expect("counted");
        assert_eq!(e.value, expected(seq), "value of record {seq}");
    }
    // The log itself holds each event once: a replayed append was recognised by its marker,
    // committed in the same Kafka transaction as its rows.
    for topic in ["raw", "t1", "t2"] {
        let read = kafka.consume(
            &format!("{prefix}{topic}"),
            Isolation::ReadCommitted,
            N as usize,
            Duration::from_secs(60),
        );
        let mut c = BTreeMap::new();
        for r in &read {
            let seq = r.value.as_deref().and_then(seq_of).expect("a test record");
            *c.entry(seq).or_insert(0) += 1;
        }
        let tally = Tally::of(&c, N);
        assert!(
            tally.missing.is_empty() && tally.repeated.is_empty(),
            "Kafka topic {prefix}{topic}: {}",
            tally.describe()
        );
    }
}

#[test]
fn an_unreachable_kafka_log_stops_the_run_with_the_brokers_named() {
    let _t = Timer::start("log_unreachable");
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new(&pipeline(
        "log-away",
        Delivery::AtLeastOnce,
        &format!("\n[log]\nbackend = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\n"),
    ));
    write_input(&f, 10);
    let started = Instant::now();
    let (status, err) = f.run_bounded();
    assert!(!status.success(), "the run must fail: {err}");
    assert!(
        err.contains(&format!(
            "cannot reach the Kafka brokers 127.0.0.1:{port} ([log] brokers)"
        )),
        "the error names the brokers and the setting: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it gives up within a minute: {:?}",
        started.elapsed()
    );
}

#[test]
fn validate_asks_the_kafka_log_and_checks_the_cluster_example() {
    let _t = Timer::start("log_validate");
    let kafka = Broker::shared();
    let validate = |f: &Fixture| {
        let out = f.command(&["validate"]).output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Reachable, the external topic missing: valid, with a warning naming the Kafka topic.
    let f = Fixture::new(&format!(
        "name = \"log-validate\"\n{}\n[topics.in]\nexternal = true\n[stages.up]\nplugin = \"{UPPERCASE}\"\ninput = \"in\"\noutput = \"out\"\n",
        kafka_log(kafka, "log-validate.")
    ));
    let (status, err) = validate(&f);
    assert!(status.success(), "{err}");
    assert!(
        err.contains("warning: [log]: topic `log-validate.in` does not exist on"),
        "{err}"
    );
    kafka.create_topic("log-validate.in", 1);
    let (status, err) = validate(&f);
    assert!(status.success() && !err.contains("warning"), "{err}");
    // Unreachable: valid, with a warning.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new(&format!(
        "name = \"log-validate\"\n[log]\nbackend = \"kafka\"\nbrokers = \"127.0.0.1:{port}\"\n[topics.in]\nexternal = true\n[stages.up]\nplugin = \"{UPPERCASE}\"\ninput = \"in\"\noutput = \"out\"\n"
    ));
    let (status, err) = validate(&f);
    assert!(status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: [log]: cannot reach the Kafka brokers 127.0.0.1:{port}"
        )),
        "{err}"
    );
    // The README's example of several processes is a valid file (its plugin built).
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml");
    let out = std::process::Command::new(flowgate_tests::fixture::flowgate_bin())
        .arg("validate")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
