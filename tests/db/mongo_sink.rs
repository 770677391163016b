//! The MongoDB sink end to end: the real `flowgate` binary writing into a MongoDB
//! wire-compatible server, **FerretDB 1.24 on PostgreSQL, not MongoDB's `mongod`** (see
//! [`flowgate_tests::mongo`] for why and how it differs), and every result read back by an
//! independent client (pymongo, through [`Mongo::find`] and [`Mongo::count`]), never by
//! Flowgate's code. Dead letters are read from a file sink on the dead-letter topic.
//!
//! - 100,000 events into a collection, compared field by field (values, added fields, `_id`);
//! - `flowgate run` killed with SIGKILL during its writes, at least 10 times, in both delivery
//!   modes: every event is in the collection once (`FLOWGATE_MONGO_CRASH_CYCLES=N` sets the
//!   kills, `FLOWGATE_MONGO_CRASH_SEED=S` replays one sequence of kill moments);
//! - the server stopped and started again under a running pipeline (a server of the test's own):
//!   nothing lost, the outage shown in `GET /admin/status` and `/metrics`, the run completes;
//! - bad data (NUL characters, huge strings, values that are no object or no JSON, names
//!   starting with `$`): each event written as it was or dead-lettered with a reason naming the
//!   problem; none lost, no crash.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::fixture::{Fixture, eventually, http, listen_addr, wait_exit};
use flowgate_tests::mongo::Mongo;
use serde_json::{Value, json};

/// The sink's name in every pipeline here.
const SINK: &str = "docs";

/// A pipeline: `source` (a TOML table body) appends to topic `in` of `partitions` partitions;
/// sink `docs` writes it into `db.coll` at `url`, with `sink` added to its table; `extra` is
/// appended to the file.
fn pipeline(
    name: &str,
    delivery: &str,
    partitions: u32,
    source: &str,
    (url, db, coll): (&str, &str, &str),
    sink: &str,
    extra: &str,
) -> String {
    format!(
        r#"name = "{name}"
delivery = "{delivery}"

[topics.in]
partitions = {partitions}

[sources.src]
topic = "in"
{source}

[sinks.{SINK}]
type = "mongodb"
input = "in"
url = "{url}"
database = "{db}"
collection = "{coll}"
{sink}
{extra}"#
    )
}

/// Writes `events` (NDJSON lines' JSON) to `events.ndjson` in the fixture.
fn write_events(f: &Fixture, events: impl IntoIterator<Item = Value>) {
    let mut text = String::new();
    for e in events {
        writeln!(text, "{e}").expect("a String takes writes");
    }
    std::fs::write(f.path("events.ndjson"), text).expect("the events file");
}

const FILE_SOURCE: &str = "type = \"file\"\npath = \"events.ndjson\"";

/// `ms` since 1970 as pymongo's relaxed Extended JSON writes a date: ISO 8601 in UTC, with
/// milliseconds unless they are 0.
fn iso_ms(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let frac = if milli == 0 {
        String::new()
    } else {
        format!(".{milli:03}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The id of the log the sink of `f`'s pipeline read (made at its first start, kept in its data
/// directory): part of the `_id` of a document without an `id` source.
fn log_id(f: &Fixture) -> String {
    let dir = f.path("data/checkpoints");
    let file = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".log-id.ckpt"))
        .unwrap_or_else(|| panic!("no log id in {}", dir.display()));
    let v: Value = serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
    v["log"].as_str().expect("the log id").to_owned()
}

/// Documents by `_id` (as JSON text), panicking on a repeated `_id`.
fn by_id(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for d in docs {
        let id = d["_id"].to_string();
        if let Some(before) = out.insert(id.clone(), d) {
            panic!("_id {id} twice in the collection: {before}");
        }
    }
    out
}

/// The value of test event `i` of the round trip.
fn value(i: i64) -> Value {
    json!({
        "id": i,
        "name": format!("name \"{i}\" ünïcødé {{$set}}"),
        "big": i * 10_000_000_019,
        "ratio": i as f64 / 8.0,
        "even": i % 2 == 0,
        "none": null,
        "tags": ["a", i, {"k": [i, i + 1]}],
        "nested": {"level": {"deeper": i % 7}},
    })
}

/// 100,000 events from an NDJSON file (key, time, a header each) through `flowgate run
/// --bounded` into a collection; pymongo reads back 100,000 documents, each the event's value
/// with `_id` = `<log id>:in/0/<offset>` and the fields `key`, `at` (the time, a BSON date) and `src`
/// (the header) added, field by field.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the write rate (see it with --nocapture)"
)]
fn hundred_thousand_events_become_documents_field_by_field() {
    const N: i64 = 100_000;
    const T0: i64 = 1_700_000_000_000;
    assert_eq!(iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(iso_ms(951_782_400_000), "2000-02-29T00:00:00Z");
    let mongo = Mongo::shared();
    let (db, coll) = ("sink_round_trip", "events");
    mongo.drop_collection(db, coll);
    let f = Fixture::new(&pipeline(
        "mongo-round-trip",
        "at-least-once",
        1,
        FILE_SOURCE,
        (&mongo.url(), db, coll),
        "fields = { key = \"key\", at = \"timestamp\", src = \"header.src\" }",
        "",
    ));
    write_events(
        &f,
        (0..N).map(|i| {
            json!({
                "key": format!("k{i}"),
                "value": value(i),
                "timestamp": T0 + i,
                "headers": {"src": format!("h{}", i % 5)},
            })
        }),
    );
    let began = Instant::now();
    let (status, log) = f.run_bounded();
    let took = began.elapsed();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("MongoDB sink done"),
        "no final line of the sink: {log}"
    );

    let docs = by_id(mongo.find(db, coll));
    assert_eq!(docs.len(), N as usize, "documents in {db}.{coll}");
    let log = log_id(&f);
    for i in 0..N {
        let id = format!("{log}:in/0/{i}");
        let got = docs
            .get(&Value::String(id.clone()).to_string())
            .unwrap_or_else(|| panic!("no document {id}"));
        let mut want = value(i);
        let w = want.as_object_mut().expect("an object");
        w.insert("_id".into(), json!(id));
        w.insert("key".into(), json!(format!("k{i}")));
        w.insert("at".into(), json!({"$date": iso_ms(T0 + i)}));
        w.insert("src".into(), json!(format!("h{}", i % 5)));
        let got_o = got.as_object().expect("a document");
        for (k, v) in w.iter() {
            assert_eq!(got_o.get(k), Some(v), "document {id}, field {k}: {got}");
        }
        assert_eq!(
            got_o.len(),
            w.len(),
            "document {id} has other fields: {got}"
        );
    }
    let p99 = log
        .lines()
        .find(|l| l.contains("MongoDB sink done"))
        .unwrap_or_default();
    eprintln!(
        "mongo round trip: {N} events in {took:.1?} ({:.0} documents/s, whole run); {p99}",
        N as f64 / took.as_secs_f64()
    );
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `flowgate run --bounded` (file source → 3 partitions → MongoDB sink, 500 documents a batch)
/// killed with SIGKILL again and again while it writes: the first run within 10 ms of its start
/// (before the sink's first checkpoint; from a clean state again, killed at once, when that came
/// too late), each later one at a random moment (up to 400 ms) after
/// that run's sink checkpointed its first batch; then a run to the end. Every event is in the collection
/// once. Exactly-once delivery: `_id` is the event's position (the log holds each event once);
/// at-least-once: a restarted file source may append an event twice, so `_id` is the event's
/// own `id` (`id = "value.id"`).
#[expect(
    clippy::print_stderr,
    reason = "reports the seed, the kills and what they left (see them with --nocapture)"
)]
fn crash(delivery: &str) {
    const N: u64 = 100_000;
    let cycles = env_number("FLOWGATE_MONGO_CRASH_CYCLES")
        .unwrap_or(10)
        .max(1) as usize;
    let seed = env_number("FLOWGATE_MONGO_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64
            | 1
    });
    eprintln!("mongo crash {delivery}: {cycles} kills, FLOWGATE_MONGO_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mongo = Mongo::shared();
    let db = "sink_crash";
    let coll = delivery.replace('-', "_");
    mongo.drop_collection(db, &coll);
    let name = format!("mongo-crash-{delivery}");
    let id = if delivery == "exactly-once" {
        ""
    } else {
        "id = \"value.id\""
    };
    let f = Fixture::new(&pipeline(
        &name,
        delivery,
        3,
        FILE_SOURCE,
        (&mongo.url(), db, &coll),
        &format!("batch-size = 500\n{id}"),
        "",
    ));
    write_events(
        &f,
        (0..N).map(|i| json!({"key": format!("k{i}"), "value": {"id": i, "pad": "p".repeat((i % 50) as usize)}})),
    );
    let checkpoint = f.path(&format!("data/checkpoints/{name}.sink.{SINK}.ckpt"));

    let began = Instant::now();
    let mut kills = 0;
    let mut counts = Vec::new();
    for cycle in 0..cycles {
        let saved = std::fs::read(&checkpoint).ok();
        let mut child = f.spawn(&["--bounded"], cycle);
        if cycle == 0 {
            // Before the sink's first checkpoint, which it saves as soon as it starts: a kill
            // within 10 ms of the spawn. On a loaded machine that can come too late; then the
            // run starts again from nothing (no data directory, no documents) and is killed at
            // once after its spawn, up to 20 times.
            let mut wait = Duration::from_millis(rng.below(10));
            for attempt in 1.. {
                if let Some(s) = wait_exit(&mut child, wait) {
                    panic!("run 0 ended ({s}) before its kill: {}", f.stderr(0));
                }
                child.kill().expect("SIGKILL");
                child.wait().expect("the killed run");
                if !checkpoint.exists() {
                    break;
                }
                assert!(
                    attempt < 20,
                    "20 kills at once after the spawn all came after the sink's first checkpoint (FLOWGATE_MONGO_CRASH_SEED={seed}): {}",
                    f.stderr(0)
                );
                std::fs::remove_dir_all(f.path("data")).expect("removing the data directory");
                mongo.drop_collection(db, &coll);
                wait = Duration::ZERO;
                child = f.spawn(&["--bounded"], cycle);
            }
            kills += 1;
            counts.push(mongo.count(db, &coll));
            continue;
        }
        // This run writes: the sink checkpointed a batch it wrote (or the run ended).
        let mut ended = None;
        let writing = eventually(Duration::from_secs(60), || {
            if let Some(s) = child.try_wait().expect("the run's status") {
                ended = Some(s);
                return true;
            }
            std::fs::read(&checkpoint).ok() != saved
        });
        assert!(
            writing,
            "run {cycle} wrote nothing in 60 s: {}",
            f.stderr(cycle)
        );
        if let Some(s) = ended {
            panic!(
                "run {cycle} ended ({s}) before its kill: {N} events are too few for {cycles} kills at this speed; {}",
                f.stderr(cycle)
            );
        }
        // Up to 400 ms more, waiting on the run's exit (caught below) rather than sleeping.
        wait_exit(&mut child, Duration::from_millis(rng.below(400)));
        if let Some(s) = child.try_wait().expect("the run's status") {
            panic!(
                "run {cycle} ended ({s}) before its kill: {}",
                f.stderr(cycle)
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("the killed run");
        kills += 1;
        counts.push(mongo.count(db, &coll));
    }
    let (status, log) = f.run_bounded();
    assert!(status.success(), "the last run: {status}: {log}");
    let took = began.elapsed();

    let docs = mongo.find(db, &coll);
    let mut seen = vec![0u32; N as usize];
    for d in &docs {
        let i = d["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("a document without its event's id: {d}"));
        seen[i as usize] += 1;
    }
    let missing: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..N as usize).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && docs.len() == N as usize,
        "{delivery} after {kills} kills (FLOWGATE_MONGO_CRASH_SEED={seed}): {} documents, {} events missing (first {:?}), {} twice (first {:?})",
        docs.len(),
        missing.len(),
        missing.first(),
        twice.len(),
        twice.first()
    );
    if delivery == "exactly-once" {
        by_id(docs);
    }
    eprintln!(
        "mongo crash {delivery}: {kills} kills, documents after each: {counts:?}; all {N} once after {took:.1?}"
    );
}

#[test]
fn killed_during_writes_each_event_once_exactly_once() {
    crash("exactly-once");
}

#[test]
fn killed_during_writes_each_event_once_at_least_once() {
    crash("at-least-once");
}

/// `GET path` of a run's HTTP server: the body.
fn get(addr: &str, path: &str) -> String {
    let (status, _, body) = http(addr, "GET", path, &[], b"");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The sink's entry of `GET /admin/status`.
fn sink_status(addr: &str) -> Value {
    let status: Value = serde_json::from_str(&get(addr, "/admin/status")).expect("JSON status");
    status["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sink"] == SINK))
        .cloned()
        .unwrap_or_else(|| panic!("no sink {SINK} in the status: {status}"))
}

/// A generator (30,000 events at 3,000 a second) through `flowgate run --bounded` into a server
/// of the test's own; once documents arrive, the server is stopped (SIGTERM) until the status
/// shows the sink down (with why) and `flowgate_db_up` is 0, then started again. The run
/// completes by itself and every event is in the collection once.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports what the status showed and how long the outage took (see it with --nocapture)"
)]
fn server_restarted_mid_run_loses_nothing_and_the_outage_shows() {
    const N: u64 = 30_000;
    let mongo = Mongo::new();
    let (db, coll) = ("sink_outage", "events");
    let f = Fixture::new(&pipeline(
        "mongo-outage",
        "at-least-once",
        2,
        &format!("type = \"generator\"\ncount = {N}\nrate = 3000\nsize = 80"),
        (&mongo.url(), db, coll),
        "batch-size = 200\nlinger = \"20ms\"",
        "\n[http]\nlisten = \"127.0.0.1:0\"\n",
    ));
    let mut child = f.spawn(&["--bounded"], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let flowing = eventually(Duration::from_secs(60), || {
        sink_status(&addr)["events"].as_u64().unwrap_or(0) > 0
    });
    assert!(flowing, "the sink wrote nothing in 60 s: {}", f.stderr(0));

    let stopped = Instant::now();
    mongo.stop();
    let mut down = Value::Null;
    let shown = eventually(Duration::from_secs(60), || {
        down = sink_status(&addr)["down"].clone();
        let metrics = get(&addr, "/metrics");
        let up0 = metrics
            .lines()
            .any(|l| l.starts_with("flowgate_db_up{") && l.contains(SINK) && l.ends_with(" 0"));
        !down.is_null() && up0
    });
    assert!(
        child.try_wait().expect("the run's status").is_none(),
        "the run exited during the outage: {}",
        f.stderr(0)
    );
    assert!(
        shown,
        "60 s into the outage, the status says down = {down} and /metrics:\n{}",
        get(&addr, "/metrics")
    );
    let shown_after = stopped.elapsed();
    mongo.start();
    let outage = stopped.elapsed();

    let status = wait_exit(&mut child, Duration::from_secs(180)).unwrap_or_else(|| {
        panic!(
            "the run did not end 180 s after the outage: {}",
            f.stderr(0)
        )
    });
    assert!(status.success(), "{status}: {}", f.stderr(0));
    let log = f.stderr(0);
    assert!(
        log.contains("answers again"),
        "no line of the recovery: {log}"
    );

    let docs = mongo.find(db, coll);
    let mut seen = vec![0u32; N as usize];
    for d in &docs {
        let seq = d["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {d}"));
        seen[seq as usize] += 1;
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert!(
        missing == 0 && twice == 0 && docs.len() == N as usize,
        "after the outage: {} documents, {missing} events missing, {twice} twice",
        docs.len()
    );
    eprintln!(
        "mongo outage: shown {shown_after:.1?} after the stop (down: {down}); server away {outage:.1?}; all {N} documents once"
    );
}

/// Events no MongoDB document can be made of, or that the server may refuse, among good ones;
/// each is either in the collection as it was sent or in the dead-letter topic (read through a
/// file sink) with a reason naming its problem; the run ends cleanly and none is missing.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports what became of each event (see it with --nocapture)"
)]
fn bad_data_is_written_faithfully_or_dead_lettered_with_a_reason() {
    let mongo = Mongo::shared();
    let (db, coll) = ("sink_bad", "events");
    mongo.drop_collection(db, coll);
    let huge = "h".repeat(17 * 1024 * 1024);
    let large = "l".repeat(4 * 1024 * 1024);
    // (event line, the value a written document holds, words a dead letter's reason must hold)
    let cases: Vec<(Value, Option<Value>, &[&str])> = vec![
        (
            json!({"value": {"n": 0, "ok": true}}),
            Some(json!({"n": 0, "ok": true})),
            &[],
        ),
        (
            json!({"value": {"n": 1, "s": "nul \u{0} inside"}}),
            Some(json!({"n": 1, "s": "nul \u{0} inside"})),
            &[],
        ),
        (json!({"value": {"n": 2, "k\u{0}ey": 1}}), None, &["NUL"]),
        (json!({"value": {"n": 3, "s": huge}}), None, &["16 MiB"]),
        (
            json!({"value": {"n": 4, "s": large}}),
            Some(json!({"n": 4, "s": large})),
            &[],
        ),
        (
            json!({"value": [1, 2, 3]}),
            None,
            &["array", "not a JSON object"],
        ),
        (
            json!({"value": "42"}),
            None,
            &["number", "not a JSON object"],
        ),
        (
            json!({"value": "\"text\""}),
            None,
            &["string", "not a JSON object"],
        ),
        (json!({"value": "not json at all"}), None, &["not JSON"]),
        (json!({"value_b64": "/wA="}), None, &["not JSON"]),
        (
            json!({"value": {"n": 10, "$set": {"a": 1}}}),
            Some(json!({"n": 10, "$set": {"a": 1}})),
            &["$set"],
        ),
        (
            json!({"value": {"n": 11, "o": {"$inc": 1}}}),
            Some(json!({"n": 11, "o": {"$inc": 1}})),
            &["$inc"],
        ),
        (
            json!({"value": {"n": 12, "a.b": 1}}),
            Some(json!({"n": 12, "a.b": 1})),
            &["a.b"],
        ),
        (
            json!({"value": {"n": 13, "emoji": "😀 \u{7f} \u{ffff}", "deep": [[[[{"x": [1]}]]]]}}),
            Some(json!({"n": 13, "emoji": "😀 \u{7f} \u{ffff}", "deep": [[[[{"x": [1]}]]]]})),
            &[],
        ),
        (
            json!({"value": {"n": 14, "ok": true}}),
            Some(json!({"n": 14, "ok": true})),
            &[],
        ),
    ];
    let f = Fixture::new(&pipeline(
        "mongo-bad",
        "at-least-once",
        1,
        FILE_SOURCE,
        (&mongo.url(), db, coll),
        "batch-size = 100",
        "\n[sinks.dead]\ntype = \"file\"\ninput = \"dead-letters\"\npath = \"dead.ndjson\"\n",
    ));
    write_events(&f, cases.iter().map(|(e, _, _)| e.clone()));
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");

    let docs = by_id(mongo.find(db, coll));
    let dead: BTreeMap<u64, Value> = f
        .lines("dead.ndjson")
        .into_iter()
        .map(|d| {
            let offset = d["headers"]["flowgate-offset"]
                .as_str()
                .and_then(|o| o.parse().ok())
                .unwrap_or_else(|| panic!("a dead letter without its offset: {d}"));
            (offset, d)
        })
        .collect();
    let mut report = Vec::new();
    let log = log_id(&f);
    for (i, (event, written, words)) in cases.iter().enumerate() {
        let id = Value::String(format!("{log}:in/0/{i}")).to_string();
        let short = {
            let t = event.to_string();
            if t.len() > 80 {
                format!("{}…", &t[..80])
            } else {
                t
            }
        };
        match (docs.get(&id), dead.get(&(i as u64))) {
            (Some(doc), None) => {
                let want = written.as_ref().unwrap_or_else(|| {
                    panic!(
                        "event {i} ({short}) is a document, and it should have been refused: {doc}"
                    )
                });
                let mut doc = doc.clone();
                doc.as_object_mut().expect("a document").remove("_id");
                assert_eq!(
                    &doc, want,
                    "event {i} ({short}) written otherwise than sent"
                );
                report.push(format!("{i}: written"));
            }
            (None, Some(d)) => {
                let why = d["headers"]["flowgate-error"].as_str().unwrap_or_default();
                let kind = d["headers"]["flowgate-error-kind"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    ["format", "refused"].contains(&kind) && !why.is_empty(),
                    "event {i} ({short}): dead letter without kind or reason: {d}"
                );
                assert_eq!(d["headers"]["flowgate-sink"], SINK, "event {i}");
                assert!(
                    words.iter().all(|w| why.contains(w)),
                    "event {i} ({short}): the reason {why:?} does not name {words:?}"
                );
                if written.is_none() {
                    assert_eq!(kind, "format", "event {i} ({short}): {why}");
                }
                report.push(format!("{i}: dead letter ({kind}): {why}"));
            }
            (Some(doc), Some(d)) => {
                panic!("event {i} ({short}) is both a document ({doc}) and a dead letter ({d})")
            }
            (None, None) => panic!(
                "event {i} ({short}) is lost: neither a document nor a dead letter; the run's log:\n{log}"
            ),
        }
    }
    assert_eq!(
        docs.len() + dead.len(),
        cases.len(),
        "documents and dead letters beside the events"
    );
    eprintln!("mongo bad data:\n  {}", report.join("\n  "));
}

/// `mode = "replace"` with `id = "value.id"`: 3,000 events over 1,000 ids (two events in a row
/// share an id, so a batch holds the same `_id` twice, and later batches come back to it);
/// each `_id` ends up with the document of its last event, and a second run over the same input
/// (a fresh data directory: every event written again) changes nothing.
#[test]
fn replace_mode_keeps_the_last_event_of_each_id() {
    const N: u64 = 3_000;
    let mongo = Mongo::shared();
    let (db, coll) = ("sink_replace", "latest");
    mongo.drop_collection(db, coll);
    let id_of = |i: u64| (i / 2) % 1_000;
    let f = Fixture::new(&pipeline(
        "mongo-replace",
        "at-least-once",
        1,
        FILE_SOURCE,
        (&mongo.url(), db, coll),
        "mode = \"replace\"\nid = \"value.id\"\nbatch-size = 100\nfields = { at = \"position\" }",
        "",
    ));
    write_events(
        &f,
        (0..N).map(|i| json!({"value": {"id": id_of(i), "v": i}})),
    );
    let mut want: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..N {
        want.insert(
            json!(id_of(i)).to_string(),
            json!({"_id": id_of(i), "id": id_of(i), "v": i, "at": {"topic": "in", "partition": 0, "offset": i}}),
        );
    }
    for run in 0..2 {
        let (status, log) = f.run_bounded();
        assert!(status.success(), "run {run}: {status}: {log}");
        assert_eq!(by_id(mongo.find(db, coll)), want, "after run {run}");
        std::fs::remove_dir_all(f.path("data")).expect("the data directory");
    }
}

/// In replace mode, when the server refuses the last event of an `_id` in a batch, the earlier
/// events of that `_id` in the batch are dead letters with it (none of them was written), and
/// the other `_id`s are written.
#[test]
fn replace_mode_dead_letters_the_earlier_events_of_a_refused_id() {
    let mongo = Mongo::shared();
    let (db, coll) = ("sink_replace_refused", "latest");
    mongo.drop_collection(db, coll);
    let f = Fixture::new(&pipeline(
        "mongo-replace-refused",
        "at-least-once",
        1,
        FILE_SOURCE,
        (&mongo.url(), db, coll),
        "mode = \"replace\"\nid = \"value.id\"\nbatch-size = 1000\nlinger = \"1s\"",
        "\n[sinks.dead]\ntype = \"file\"\ninput = \"dead-letters\"\npath = \"dead.ndjson\"\n",
    ));
    // FerretDB refuses nested arrays (mongod would take them): event 1 is refused.
    write_events(
        &f,
        [
            json!({"value": {"id": 1, "v": "first"}}),
            json!({"value": {"id": 1, "v": [[1, 2]]}}),
            json!({"value": {"id": 2, "v": "fine"}}),
        ],
    );
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    let docs = mongo.find(db, coll);
    assert_eq!(
        docs,
        [json!({"_id": 2, "id": 2, "v": "fine"})],
        "documents; dead letters: {:?}; log: {log}",
        f.lines("dead.ndjson")
    );
    let mut offsets: Vec<String> = f
        .lines("dead.ndjson")
        .iter()
        .map(|d| d["headers"]["flowgate-offset"].as_str().unwrap().to_owned())
        .collect();
    offsets.sort();
    assert_eq!(offsets, ["0", "1"], "dead letters");
}

/// What the sink cannot work with stops a bounded run with an error that names what to change:
/// a database name no server takes, a `mongodb+srv://` URL (no SRV lookups in this build), and
/// a server that does not answer (a bounded run does not wait for it).
#[test]
fn settings_that_cannot_work_fail_with_what_to_change() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let cases = [
        (
            "mongodb://127.0.0.1:1/".to_owned(),
            "a.b",
            vec!["`database` \"a.b\" of sink `docs` is not a MongoDB database name"],
        ),
        (
            "mongodb+srv://user:secret@cluster0.example.net/".to_owned(),
            "d",
            vec!["mongodb+srv://", "mongodb://host1:27017"],
        ),
        (
            "http://127.0.0.1/".to_owned(),
            "d",
            vec!["is not a MongoDB URL"],
        ),
        (
            format!("mongodb://127.0.0.1:{closed}/"),
            "d",
            vec!["cannot reach", "a bounded run does not wait for the server"],
        ),
    ];
    for (url, db, words) in cases {
        let f = Fixture::new(&pipeline(
            "mongo-settings",
            "at-least-once",
            1,
            FILE_SOURCE,
            (&url, db, "c"),
            "",
            "",
        ));
        write_events(&f, [json!({"value": {"a": 1}})]);
        let began = Instant::now();
        let (status, log) = f.run_bounded();
        assert!(!status.success(), "{url} {db}: the run succeeded: {log}");
        for w in &words {
            assert!(
                log.contains(w),
                "{url} {db}: the error does not say {w:?}: {log}"
            );
        }
        assert!(!log.contains("secret"), "the password is shown: {log}");
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{url} {db}: failing took {:?}",
            began.elapsed()
        );
    }
}

/// FerretDB's storage (its PostgreSQL) killed and started again under a running pipeline: the
/// documents refused meanwhile are retried as their batch, not dead-lettered; every event is in
/// the collection once and the dead-letter topic is empty.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports what the sink logged during the outage (see it with --nocapture)"
)]
fn storage_killed_under_the_server_dead_letters_nothing() {
    const N: u64 = 20_000;
    let mongo = Mongo::new();
    let (db, coll) = ("sink_storage", "events");
    let f = Fixture::new(&pipeline(
        "mongo-storage",
        "at-least-once",
        1,
        &format!("type = \"generator\"\ncount = {N}\nrate = 2000\nsize = 60"),
        (&mongo.url(), db, coll),
        "batch-size = 200\nlinger = \"20ms\"",
        "\n[sinks.dead]\ntype = \"file\"\ninput = \"dead-letters\"\npath = \"dead.ndjson\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
    ));
    let mut child = f.spawn(&["--bounded"], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let flowing = eventually(Duration::from_secs(60), || {
        sink_status(&addr)["events"].as_u64().unwrap_or(0) > 0
    });
    assert!(flowing, "the sink wrote nothing in 60 s: {}", f.stderr(0));
    mongo.backend().kill();
    mongo.backend().start();
    let status = wait_exit(&mut child, Duration::from_secs(180))
        .unwrap_or_else(|| panic!("the run did not end in 180 s: {}", f.stderr(0)));
    let log = f.stderr(0);
    assert!(status.success(), "{status}: {log}");
    let dead = f.lines("dead.ndjson");
    assert!(
        dead.is_empty(),
        "{} dead letters, the first: {}",
        dead.len(),
        dead[0]
    );
    let docs = mongo.find(db, coll);
    let mut seen = vec![0u32; N as usize];
    for d in &docs {
        seen[d["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {d}")) as usize] += 1;
    }
    assert!(
        docs.len() == N as usize && seen.iter().all(|&n| n == 1),
        "{} documents, {} events missing",
        docs.len(),
        seen.iter().filter(|&&n| n == 0).count()
    );
    let retried: Vec<&str> = log.lines().filter(|l| l.contains("retrying")).collect();
    eprintln!(
        "mongo storage kill: all {N} documents once, no dead letters; {} retries logged{}",
        retried.len(),
        retried
            .first()
            .map(|l| format!(", the first: {l}"))
            .unwrap_or_default()
    );
}
