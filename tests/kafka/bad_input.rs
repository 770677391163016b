//! Bad input: topics that do not exist yet, values that are not JSON under `format = "json"`,
//! and records over the output topic's `max.message.bytes`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flowgate::event::Event;
use flowgate_tests::fixture::{Fixture, eventually, listen_addr, sigterm, wait_exit};
use flowgate_tests::kafka::{Broker, Isolation, Record};

use crate::{
    Delivery, Tally, Timer, chain, coordinates, excerpt, h, header, headers_without, log_topic,
    metrics, ndjson_file, read_until_complete, seq_counts, total,
};

/// Which Kafka topic of the pipeline does not exist when it starts.
#[derive(Clone, Copy, Debug)]
enum Missing {
    Source,
    Sink,
}

/// A pipeline Kafka → Kafka started while one of its Kafka topics does not exist: it keeps
/// running, its log names the topic (and `flowgate_kafka_errors_total` counts it, kind
/// `unknown-topic`, for the source); once the topic is created and records written, they arrive
/// in the output.
fn missing_topic(missing: Missing) {
    let kafka = Broker::shared();
    let name = format!("missing-{}", format!("{missing:?}").to_lowercase());
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    let absent = match missing {
        Missing::Source => {
            kafka.create_topic(&output, 2);
            input.clone()
        }
        Missing::Sink => {
            kafka.create_topic(&input, 2);
            output.clone()
        }
    };
    let f = Fixture::new(&chain(
        &name,
        Delivery::AtLeastOnce,
        &kafka.bootstrap(),
        &input,
        &output,
        &[],
        "\n[http]\nlisten = \"127.0.0.1:0\"\n",
    ));
    let mut child = f.spawn(&[], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let said = eventually(Duration::from_secs(30), || {
        f.stderr(0)
            .lines()
            .any(|l| l.contains(&format!("topic `{absent}` does not exist")))
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "flowgate run exited: {}",
        f.stderr(0)
    );
    assert!(
        said,
        "{missing:?}: 30 s after the start the log does not say that `{absent}` does not exist:\n{}",
        f.stderr(0)
    );
    if let Missing::Source = missing {
        let page = metrics(&addr);
        assert!(
            total(&page, "flowgate_kafka_errors_total", "unknown-topic") >= 1.0,
            "no unknown-topic error counted:\n{page}"
        );
    }

    kafka.create_topic(&absent, 2);
    kafka.produce_generated(&input, 0, 500);
    let read = read_until_complete(kafka, &output, 500, Duration::from_secs(90), || match child
        .try_wait()
        .unwrap()
    {
        None => Ok(()),
        Some(s) => Err(format!("flowgate run exited ({s}): {}", f.stderr(0))),
    });
    let tally = Tally::of(&seq_counts(&read), 500);
    assert!(
        tally.missing.is_empty() && tally.stray.is_empty(),
        "{missing:?}: once `{absent}` exists: {}; log:\n{}",
        tally.describe(),
        f.stderr(0)
    );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit 60 s after SIGTERM: {}", f.stderr(0)));
    assert!(status.success(), "{status}: {}", f.stderr(0));
}

#[test]
fn missing_source_topic_is_named_and_read_once_created() {
    let _t = Timer::start("missing source topic");
    missing_topic(Missing::Source);
}

#[test]
fn missing_sink_topic_is_named_and_written_once_created() {
    let _t = Timer::start("missing sink topic");
    missing_topic(Missing::Sink);
}

/// Records of the JSON test before those with values that are not JSON.
const JSON_FIRST: u64 = 60_000;

/// The input of the JSON test: `{"seq":N}` values, [`JSON_FIRST`] of them, then `n` more of
/// which one in five has a value that is not JSON; keys on half, a header on one in three.
fn json_inputs(n: u64) -> Vec<Event> {
    (0..JSON_FIRST + n)
        .map(|seq| Event {
            key: seq
                .is_multiple_of(2)
                .then(|| format!("k{seq}").into_bytes()),
            value: if seq >= JSON_FIRST && seq % 5 == 2 {
                format!("not json {{{seq}").into_bytes()
            } else {
                format!("{{\"seq\":{seq}}}").into_bytes()
            },
            timestamp: 5_000 + seq as i64,
            headers: if seq.is_multiple_of(3) {
                vec![h("n", seq.to_string())]
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// `format = "json"`: records whose value is not JSON go to the source's dead-letter topic with
/// their Kafka coordinates (`flowgate-topic`, `flowgate-partition`, `flowgate-offset`), kind
/// `format` and the source's name, key, value, timestamp and headers unchanged; the others reach
/// the sink. The dead letters are read from the log (`flowgate consume dead-letters`), then from a
/// file sink of the same pipeline reading `dead-letters` (which the source writes only after
/// 60,000 good records, so that file sink must wait for the source to end).
fn not_json(delivery: Delivery) {
    let kafka = Broker::shared();
    let name = format!("badjson-{}", delivery.tag());
    let input = format!("{name}-in");
    kafka.create_topic(&input, 2);
    let events = json_inputs(60);
    kafka.produce(&input, &events);
    let placed = kafka.consume(
        &input,
        Isolation::ReadCommitted,
        events.len(),
        Duration::from_secs(60),
    );
    assert_eq!(placed.len(), events.len(), "input records read back");
    let at: HashMap<Vec<u8>, &Record> = placed
        .iter()
        .map(|r| (r.value.clone().unwrap_or_default(), r))
        .collect();

    let f = Fixture::new(&format!(
        r#"name = "{name}"
delivery = "{}"

[topics.raw]
partitions = 2

[sources.in]
type = "kafka"
brokers = "{}"
topics = ["{input}"]
topic = "raw"
format = "json"

[sinks.good]
type = "file"
input = "raw"
path = "good.ndjson"

[sinks.dl]
type = "file"
input = "dead-letters"
path = "dead-letters.ndjson"
"#,
        delivery.as_str(),
        kafka.bootstrap()
    ));
    let (status, stderr) = f.run_bounded();
    assert!(
        status.success(),
        "flowgate run --bounded: {status}: {stderr}"
    );

    let expect = |e: &Event| {
        let r = at[&e.value];
        let mut want = e.clone();
        want.headers.extend(coordinates(r));
        (want, r)
    };
    let mut good: Vec<Event> = ndjson_file(&f.path("good.ndjson"));
    let mut want_good: Vec<Event> = events
        .iter()
        .filter(|e| e.value.starts_with(b"{"))
        .map(|e| expect(e).0)
        .collect();
    good.sort_by(|a, b| a.value.cmp(&b.value));
    want_good.sort_by(|a, b| a.value.cmp(&b.value));
    assert_eq!(
        good.len(),
        want_good.len(),
        "{delivery:?}: the JSON records in the sink"
    );
    if let Some((g, w)) = good.iter().zip(&want_good).find(|(g, w)| g != w) {
        panic!("{delivery:?}: a JSON record in the sink is\n  {g:?}\ninstead of\n  {w:?}");
    }

    let context = [
        "flowgate-source",
        "flowgate-error-kind",
        "flowgate-error",
        "flowgate-topic",
        "flowgate-partition",
        "flowgate-offset",
    ];
    let check_dead = |dead: &[Event], from: &str| {
        let bad: Vec<&Event> = events
            .iter()
            .filter(|e| !e.value.starts_with(b"{"))
            .collect();
        assert_eq!(
            dead.len(),
            bad.len(),
            "{delivery:?}: dead letters in {from}: {dead:?}"
        );
        for d in dead {
            let original = bad.iter().find(|e| e.value == d.value).unwrap_or_else(|| {
                panic!("{delivery:?}: a dead letter in {from} that was not sent: {d:?}")
            });
            let (want, r) = expect(original);
            let mut got = d.clone();
            got.headers = headers_without(d, &context);
            assert_eq!(
                got, want,
                "{delivery:?}: dead letter in {from}, context headers aside"
            );
            assert_eq!(header(d, "flowgate-error-kind"), Some("format"), "{d:?}");
            assert_eq!(header(d, "flowgate-source"), Some("in"), "{d:?}");
            assert!(
                header(d, "flowgate-error").is_some_and(|e| e.contains("not JSON")),
                "{d:?}"
            );
            assert_eq!(header(d, "flowgate-topic"), Some(input.as_str()), "{d:?}");
            assert_eq!(
                header(d, "flowgate-partition"),
                Some(r.partition.to_string().as_str()),
                "{d:?}"
            );
            assert_eq!(
                header(d, "flowgate-offset"),
                Some(r.offset.to_string().as_str()),
                "{d:?}"
            );
        }
    };
    check_dead(
        &log_topic(&f, "dead-letters"),
        "the log's dead-letters topic",
    );
    check_dead(
        &ndjson_file(&f.path("dead-letters.ndjson")),
        "the file sink reading dead-letters in the bounded run",
    );
}

#[test]
fn not_json_is_dead_lettered_with_its_coordinates_at_least_once() {
    let _t = Timer::start("not JSON, at-least-once");
    not_json(Delivery::AtLeastOnce);
}

#[test]
fn not_json_is_dead_lettered_with_its_coordinates_exactly_once() {
    let _t = Timer::start("not JSON, exactly-once");
    not_json(Delivery::ExactlyOnce);
}

/// The output topic takes records of up to 2,000 bytes (`max.message.bytes`); one record of
/// 5 KB among 400 test records (up to ~330 bytes each). The large one is dead-lettered (kind
/// `too-large`, from sink `out`, with its log coordinates), the others all reach Kafka once, the
/// sink going on after the large one.
fn too_large(delivery: Delivery) {
    let kafka = Broker::shared();
    let name = format!("toolarge-{}", delivery.tag());
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 1);
    kafka.create_topic_with(&output, 1, &[("max.message.bytes", "2000")]);
    const SMALL: u64 = 400;
    let big = Event {
        key: Some(b"big".to_vec()),
        value: [b"big-".as_slice(), &[b'x'; 5_000]].concat(),
        timestamp: 7_000,
        headers: vec![h("size", "5004")],
    };
    let mut events: Vec<Event> = (0..SMALL / 2).map(flowgate_tests::record).collect();
    events.push(big.clone());
    events.extend((SMALL / 2..SMALL).map(flowgate_tests::record));
    kafka.produce(&input, &events);

    let f = Fixture::new(&chain(
        &name,
        delivery,
        &kafka.bootstrap(),
        &input,
        &output,
        &[],
        r#"
[sinks.dl]
type = "file"
input = "dead-letters"
path = "dead-letters.ndjson"
"#,
    ));
    let began = Instant::now();
    let (status, stderr) = f.run_bounded();
    assert!(
        status.success(),
        "flowgate run --bounded: {status}: {stderr}"
    );
    let ran = began.elapsed();

    let read = read_until_complete(kafka, &output, SMALL, Duration::from_secs(30), || Ok(()));
    let tally = Tally::of(&seq_counts(&read), SMALL);
    assert!(
        tally.missing.is_empty() && tally.repeated.is_empty() && tally.stray.is_empty(),
        "{delivery:?}: the records that fit, in {output}: {}; run's log:\n{}",
        tally.describe(),
        excerpt(&stderr, 8)
    );
    let check_dead = |dead: &[Event], from: &str| {
        let kinds: Vec<(Option<&str>, usize)> = dead
            .iter()
            .map(|d| (header(d, "flowgate-error-kind"), d.value.len()))
            .collect();
        assert_eq!(
            dead.len(),
            1,
            "{delivery:?}: dead letters in {from} (kind, value bytes): {kinds:?}"
        );
        let d = &dead[0];
        assert_eq!(d.value, big.value, "{delivery:?}: the dead letter's value");
        assert_eq!(d.key, big.key);
        assert_eq!(d.timestamp, big.timestamp);
        assert_eq!(header(d, "flowgate-error-kind"), Some("too-large"), "{d:?}");
        assert_eq!(header(d, "flowgate-sink"), Some("out"), "{d:?}");
        assert_eq!(header(d, "flowgate-topic"), Some("raw"), "{d:?}");
        assert!(header(d, "flowgate-partition").is_some(), "{d:?}");
        assert!(header(d, "flowgate-offset").is_some(), "{d:?}");
        assert_eq!(header(d, "size"), Some("5004"), "{d:?}");
    };
    check_dead(
        &log_topic(&f, "dead-letters"),
        "the log's dead-letters topic",
    );
    check_dead(
        &ndjson_file(&f.path("dead-letters.ndjson")),
        "the file sink reading dead-letters in the bounded run",
    );
    assert!(
        ran < Duration::from_secs(60),
        "the bounded run took {ran:?}"
    );
}

#[test]
fn too_large_is_dead_lettered_and_the_sink_goes_on_at_least_once() {
    let _t = Timer::start("too large, at-least-once");
    too_large(Delivery::AtLeastOnce);
}

#[test]
fn too_large_is_dead_lettered_and_the_sink_goes_on_exactly_once() {
    let _t = Timer::start("too large, exactly-once");
    too_large(Delivery::ExactlyOnce);
}

/// The output topic refuses records more than a day old (`message.timestamp.before.max.ms`);
/// one record of 1970 among 300 of today. The old one is dead-lettered (from sink `out`, with why
/// Kafka refused it), the others all reach Kafka once, and the bounded run ends well.
fn refused_for_its_timestamp(delivery: Delivery) {
    let kafka = Broker::shared();
    let name = format!("oldtime-{}", delivery.tag());
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 1);
    kafka.create_topic_with(
        &output,
        1,
        &[("message.timestamp.before.max.ms", "86400000")],
    );
    const TODAY: u64 = 300;
    let now = flowgate::event::ndjson::now_ms();
    let today = |seq: u64| Event {
        timestamp: now - 60_000 + seq as i64,
        ..flowgate_tests::record(seq)
    };
    let old = Event {
        key: Some(b"old".to_vec()),
        value: b"a record of 1970".to_vec(),
        timestamp: 1_000,
        headers: Vec::new(),
    };
    let mut events: Vec<Event> = (0..TODAY / 2).map(today).collect();
    events.push(old.clone());
    events.extend((TODAY / 2..TODAY).map(today));
    kafka.produce(&input, &events);

    let f = Fixture::new(&chain(
        &name,
        delivery,
        &kafka.bootstrap(),
        &input,
        &output,
        &[],
        r#"
[sinks.dl]
type = "file"
input = "dead-letters"
path = "dead-letters.ndjson"
"#,
    ));
    let (status, stderr) = f.run_bounded();
    assert!(
        status.success(),
        "flowgate run --bounded: {status}: {}",
        excerpt(&stderr, 8)
    );
    let dead = log_topic(&f, "dead-letters");
    let read = kafka.consume(
        &output,
        Isolation::ReadCommitted,
        TODAY as usize,
        Duration::from_secs(30),
    );
    let tally = Tally::of(&seq_counts(&read), TODAY);
    let summary: Vec<(Option<&str>, Option<&str>, String)> = dead
        .iter()
        .map(|d| {
            (
                header(d, "flowgate-error-kind"),
                header(d, "flowgate-error"),
                String::from_utf8_lossy(&d.value[..d.value.len().min(20)]).into_owned(),
            )
        })
        .take(3)
        .collect();
    assert!(
        tally.missing.is_empty() && tally.repeated.is_empty() && tally.stray.is_empty(),
        "{delivery:?}: the records of today, in {output}: {}; {} dead letters (the first: {summary:?}); run's log:\n{}",
        tally.describe(),
        dead.len(),
        excerpt(&stderr, 8)
    );
    assert_eq!(
        dead.len(),
        1,
        "{delivery:?}: dead letters (kind, error, value): {summary:?}"
    );
    let d = &dead[0];
    assert_eq!(
        (&d.key, &d.value, d.timestamp),
        (&old.key, &old.value, old.timestamp)
    );
    assert_eq!(header(d, "flowgate-sink"), Some("out"), "{d:?}");
    assert!(header(d, "flowgate-error-kind").is_some(), "{d:?}");
}

#[test]
fn refused_for_its_timestamp_is_dead_lettered_and_the_sink_goes_on_at_least_once() {
    let _t = Timer::start("refused timestamp, at-least-once");
    refused_for_its_timestamp(Delivery::AtLeastOnce);
}

#[test]
fn refused_for_its_timestamp_is_dead_lettered_and_the_sink_goes_on_exactly_once() {
    let _t = Timer::start("refused timestamp, exactly-once");
    refused_for_its_timestamp(Delivery::ExactlyOnce);
}
