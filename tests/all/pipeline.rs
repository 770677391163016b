//! `flowgate run` and `flowgate validate` as a user runs them: the real binary, real plugins,
//! real files and sockets.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) use flowgate_tests::fixture::{
    Fixture, eventually, http, listen_addr, post_values, sigterm, start_http, wait_exit,
};
use flowgate_tests::plugins::{
    FILTER_JSON, FLAKY, HOSTILE_TRAP_ON, HUGE_KEY, JSON_PROJECT, UPPERCASE, WINDOW_STATS,
};
use serde_json::Value;

/// A bad request: headers, path, body, the status it gets, and what the answer says.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [u8], u16, &'a str);

/// A run with HTTP ingest and no step (its topic is read elsewhere) serves until it is stopped,
/// and says what it took.
#[test]
fn a_run_with_only_http_ingest_serves_until_stopped() {
    let f = Fixture::new(
        r#"
name = "ingest-only"

[http]
listen = "127.0.0.1:0"

[sources.api]
type = "http"
topic = "in"
"#,
    );
    let (mut child, addr) = start_http(&f, 0);
    post_values(&addr, "in", (0..3).map(|i| format!("e{i}")));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run still serves: {}",
        f.stderr(0)
    );
    post_values(&addr, "in", ["e3".to_owned()]);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("stops after SIGTERM");
    assert!(status.success(), "{}", f.stderr(0));
    assert!(
        f.stderr(0).contains("source api: 4 events appended"),
        "{}",
        f.stderr(0)
    );
}

#[test]
fn http_events_pass_three_stages_to_a_file_sink() {
    let f = Fixture::new(&format!(
        r#"
name = "ingest"

[http]
listen = "127.0.0.1:0"
token-env = "INGEST_TOKEN"
max-body = "64KiB"
max-lag = 0

[topics.raw]
partitions = 2

[sources.api]
type = "http"
topic = "raw"

[stages.project]
plugin = "{JSON_PROJECT}"
input = "raw"
output = "projected"
mode = "event"
config = {{ fields = "seq, name" }}

[stages.shout]
plugin = "{UPPERCASE}"
input = "projected"
output = "upper"

[stages.keep]
plugin = "{FILTER_JSON}"
input = "upper"
output = "kept"
config = {{ field = "SEQ" }}

[sinks.out]
type = "file"
input = "kept"
path = "out.ndjson"
"#
    ));
    let mut child = f
        .command(&["run"])
        .env("INGEST_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(f.path("run-0.log")).unwrap())
        .spawn()
        .unwrap();
    let addr = listen_addr(&f, 0, &mut child);
    let auth = ("Authorization", "Bearer s3cret");
    let json = ("Content-Type", "application/json");

    // Three body forms, 100 events each round; 429 (lag) and 503 are retried after Retry-After.
    let mut retried = 0;
    for round in 0..5u32 {
        let seqs: Vec<u32> = (round * 100..round * 100 + 100).collect();
        let (ctype, body) = match round % 3 {
            0 => (
                "application/json",
                serde_json::to_string(
                    &seqs
                        .iter()
                        .map(|s| serde_json::json!({"value": {"seq": s, "name": format!("n{s}"), "drop": 1}}))
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
            ),
            1 => (
                "application/x-ndjson",
                seqs.iter()
                    .map(|s| format!("{{\"key\":\"k{s}\",\"value\":{{\"seq\":{s},\"name\":\"n{s}\"}}}}\n"))
                    .collect(),
            ),
            _ => (
                "application/vnd.kafka.json.v2+json",
                serde_json::json!({"records": seqs.iter().map(|s| serde_json::json!({"key": format!("k{s}"), "value": {"seq": s, "name": format!("n{s}")}})).collect::<Vec<_>>()}).to_string(),
            ),
        };
        loop {
            let (status, headers, answer) = http(
                &addr,
                "POST",
                "/topics/raw/events",
                &[auth, ("Content-Type", ctype)],
                body.as_bytes(),
            );
            if status == 429 || status == 503 {
                assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
                retried += 1;
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            assert_eq!(status, 200, "{answer}");
            let a: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(a["count"], 100);
            assert_eq!(a["offsets"].as_array().unwrap().len(), 100);
            break;
        }
    }
    assert!(retried > 0, "max-lag = 0 never pushed back");

    // Bad requests: each names its problem.
    let cases: [Case<'_>; 6] = [
        (
            &[json],
            "/topics/raw/events",
            b"{\"value\": 1}",
            401,
            "bearer token",
        ),
        (
            &[auth, json],
            "/topics/raw/events",
            b"{not json",
            400,
            "not valid JSON",
        ),
        (
            &[auth, json],
            "/topics/raw/events",
            b"{\"valu\": 1}",
            400,
            "unknown field `valu`",
        ),
        (&[auth, json], "/topics/raw/events", b"[]", 400, "no events"),
        (
            &[auth, json],
            "/topics/nope/events",
            b"{\"value\": 1}",
            404,
            "topics open to ingest: raw",
        ),
        (
            &[auth, json],
            "/topics/raw/events",
            &[b'x'; 70_000],
            413,
            "65536 byte limit",
        ),
    ];
    for (headers, path, body, want, says) in cases {
        let (status, _, answer) = http(&addr, "POST", path, headers, body);
        assert_eq!(status, want, "{path}: {answer}");
        assert!(answer.contains(says), "{answer:?} should say {says:?}");
    }

    let done = eventually(Duration::from_secs(60), || {
        f.lines_so_far("out.ndjson").len() >= 500
    });
    assert!(
        done,
        "{} of 500 events reached the sink",
        f.lines_so_far("out.ndjson").len()
    );
    let mut seqs: Vec<u64> = f
        .lines("out.ndjson")
        .iter()
        .map(|e| {
            let v = &e["value"];
            assert_eq!(v["NAME"], format!("N{}", v["SEQ"]), "{e}");
            assert!(v.get("DROP").is_none(), "json-project kept a field: {e}");
            v["SEQ"].as_u64().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());

    // Counters follow the acknowledgements, which a stage takes when it next polls: wait for them.
    let wants = [
        "flowgate_stage_events_in_total{stage=\"project\"} 500",
        "flowgate_stage_events_out_total{stage=\"keep\"} 500",
        "flowgate_sink_events_total{sink=\"out\"} 500",
        "flowgate_stage_call_seconds_bucket{stage=\"shout\",le=",
        "flowgate_ingest_events_total{topic=\"raw\"} 500",
        "flowgate_stage_lag{stage=\"keep\",partition=\"0\"}",
        "flowgate_topic_records_appended_total{topic=\"raw\"} 500",
        "flowgate_topic_records_appended_total{topic=\"kept\"} 500",
        "flowgate_topic_bytes_appended_total{topic=\"raw\"}",
        "flowgate_log_syncs ",
    ];
    let mut metrics = String::new();
    let complete = eventually(Duration::from_secs(10), || {
        let (status, _, text) = http(&addr, "GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        metrics = text;
        wants.iter().all(|w| metrics.contains(w))
    });
    let missing: Vec<&&str> = wants.iter().filter(|w| !metrics.contains(**w)).collect();
    assert!(complete, "/metrics lacks {missing:?}:\n{metrics}");

    // SIGTERM: finish, commit, exit 0 quickly.
    let asked = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}: {}", f.stderr(0));
    assert!(asked.elapsed() < Duration::from_secs(15));
}

/// NDJSON of `n` events `{"seq":i,"pad":"..."}`, without keys.
fn seq_file(path: &Path, n: u64) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"value\":{{\"seq\":{i},\"pad\":\"{}\"}},\"timestamp\":{}}}\n",
            "x".repeat((i % 50) as usize),
            1_000 + i
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[expect(
    clippy::print_stderr,
    reason = "reports how many kills landed and how many events repeated (see it with --nocapture)"
)]
fn kill_and_restart(delivery: &str) {
    const N: u64 = 20_000;
    let f = Fixture::new(&format!(
        r#"
delivery = "{delivery}"
commit-interval = "20ms"

[topics.raw]
partitions = 2
[topics.projected]
partitions = 2

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.project]
plugin = "{JSON_PROJECT}"
input = "raw"
output = "projected"
mode = "event"
config = {{ fields = "seq, pad" }}

[stages.shout]
plugin = "{UPPERCASE}"
input = "projected"
output = "upper"
batch-size = 100

[stages.keep]
plugin = "{FILTER_JSON}"
input = "upper"
output = "kept"
batch-size = 300
config = {{ field = "SEQ" }}

[sinks.out]
type = "file"
input = "kept"
path = "out.ndjson"
"#
    ));
    seq_file(&f.path("in.ndjson"), N);
    let mut partial = 0;
    let kills = f.kill_repeatedly(97, || {
        // Whole lines only: a kill can land in the middle of a write, and the run after it
        // cuts that torn tail off.
        let got = std::fs::read_to_string(f.path("out.ndjson"))
            .unwrap_or_default()
            .matches('\n')
            .count();
        if got > 0 && (got as u64) < N {
            partial += 1;
        }
    });
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    assert!(kills >= 3, "only {kills} kills landed mid-run");
    assert!(partial >= 1, "no kill landed while the sink was part-way");
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for e in f.lines("out.ndjson") {
        *counts
            .entry(e["value"]["SEQ"].as_u64().unwrap())
            .or_default() += 1;
    }
    let missing: Vec<u64> = (0..N)
        .filter(|s| !counts.contains_key(s))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lost after {kills} kills: {missing:?}…");
    assert_eq!(counts.len() as u64, N);
    let repeated = counts.values().filter(|&&c| c > 1).count();
    if delivery == "exactly-once" {
        assert_eq!(
            repeated, 0,
            "{repeated} events written twice after {kills} kills"
        );
    }
    eprintln!("{delivery}: {kills} kills, {repeated} events repeated, {N} delivered");
}

#[test]
fn killed_runs_lose_nothing_at_least_once() {
    kill_and_restart("at-least-once");
}

#[test]
fn killed_runs_write_each_event_once_exactly_once() {
    kill_and_restart("exactly-once");
}

#[test]
fn poison_events_go_to_the_dead_letter_topic_and_a_trap_storm_pauses_the_stage() {
    let f = Fixture::new(&format!(
        r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.fragile]
plugin = "{HOSTILE_TRAP_ON}"
input = "raw"
output = "out"
max-traps-per-minute = 2

[stages.sturdy]
plugin = "{UPPERCASE}"
input = "raw"
output = "upper"
mode = "event"

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"

[sinks.upper]
type = "file"
input = "upper"
path = "upper.ndjson"

[sinks.dlq]
type = "file"
input = "dead-letters"
path = "dlq.ndjson"
"#
    ));
    let mut input = String::new();
    for i in 0..200 {
        let v = if i % 40 == 7 {
            "poison".to_owned()
        } else {
            format!("ok-{i}")
        };
        input.push_str(&format!("{{\"value\":\"{v}\",\"timestamp\":{i}}}\n"));
    }
    std::fs::write(f.path("in.ndjson"), input).unwrap();
    let started = Instant::now();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    assert_eq!(f.lines("out.ndjson").len(), 195, "{stderr}");
    assert_eq!(
        f.lines("upper.ndjson").len(),
        200,
        "the other stage lost events"
    );
    let dlq = f.lines("dlq.ndjson");
    assert_eq!(dlq.len(), 5);
    for (k, d) in dlq.iter().enumerate() {
        assert_eq!(d["value"], "poison");
        let h = &d["headers"];
        assert_eq!(h["flowgate-stage"], "fragile");
        assert_eq!(h["flowgate-plugin"], "hostile_trap_on");
        assert_eq!(h["flowgate-plugin-hash"].as_str().unwrap().len(), 64);
        assert_eq!(h["flowgate-error-kind"], "trap");
        assert!(
            h["flowgate-error"]
                .as_str()
                .unwrap()
                .contains("poisoned event"),
            "{d}"
        );
        assert_eq!(h["flowgate-topic"], "raw");
        assert_eq!(h["flowgate-partition"], "0");
        assert_eq!(h["flowgate-offset"], (7 + 40 * k).to_string());
        assert_eq!(h["flowgate-attempt"], "1");
    }
    // 5 traps > 2 a minute: the stage paused (1 s), the process did not.
    assert!(
        stderr.contains(
            "stage fragile: 200 in, 195 out, 5 errors (5 dead-lettered, 0 skipped), 1 pauses"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("pausing the stage"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn on_error_fail_stops_the_pipeline_naming_the_event_and_skip_counts() {
    for (policy, code, says) in [
        ("fail", 1, "failed on raw/0 offset 3"),
        ("skip", 0, "1 errors (0 dead-lettered, 1 skipped)"),
    ] {
        let f = Fixture::new(&format!(
            r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.fragile]
plugin = "{HOSTILE_TRAP_ON}"
input = "raw"
output = "out"
on-error = "{policy}"
"#
        ));
        let input: String = (0..10)
            .map(|i| {
                let v = if i == 3 { "poison" } else { "fine" };
                format!("{{\"value\":\"{v}\"}}\n")
            })
            .collect();
        std::fs::write(f.path("in.ndjson"), input).unwrap();
        let (status, stderr) = f.run_bounded();
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(says), "{policy}: {stderr}");
    }
}

fn validate(pipeline: &str) -> (i32, String) {
    let f = Fixture::new(pipeline);
    std::fs::write(f.path("garbage.wasm"), b"\0asm but not really").unwrap();
    let out = f
        .command(&["validate"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn validate_reports_every_problem_with_line_and_column() {
    let (code, text) = validate(&format!(
        r#"naem = "x"

[stages.a]
plugin = "{UPPERCASE}"
input = "nowhere"
ouput = "b-in"

[stages.b]
plugin = "missing.wasm"
input = "b-in"
output = "c"
mode = "evnt"

[sinks.s]
type = "file"
input = "c"
"#
    ));
    assert_eq!(code, 2, "{text}");
    for want in [
        "1:1: unknown key `naem` in the pipeline file",
        "help: did you mean `name`?",
        "6:1: unknown key `ouput` in [stages.a]",
        "help: did you mean `output`?",
        "[stages.a] has no `output`",
        "9:10: plugin file",
        "missing.wasm does not exist",
        "12:8: [stages.b]: unknown variant `evnt`",
        "[sinks.s] (type file) has no `path`",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let (code, text) = validate(&format!(
        r#"
[stages.a]
plugin = "{UPPERCASE}"
input = "x"
output = "y"

[stages.b]
plugin = "{UPPERCASE}"
input = "y"
output = "x"

[stages.c]
plugin = "{UPPERCASE}"
input = "orphan"
output = "z"
"#
    ));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("stages `a`, `b` form a cycle"), "{text}");
    assert!(
        text.contains("14:9: `c` reads topic `orphan`, which nothing in this pipeline writes"),
        "{text}"
    );
    assert!(text.contains("external = true"), "{text}");

    let (code, text) = validate(
        r#"
[topics.in]
external = true

[stages.a]
plugin = "garbage.wasm"
input = "in"
output = "out"
"#,
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("6:10: stage `a`:"), "{text}");
    assert!(text.contains("flowgate plugin inspect"), "{text}");

    let (code, text) = validate(&format!(
        r#"
[topics.in]
external = true

[stages.a]
plugin = "{JSON_PROJECT}"
input = "in"
output = "out"
"#
    ));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("the plugin's init failed"), "{text}");
    assert!(
        text.contains("fields"),
        "the init error names the missing key: {text}"
    );

    let (code, text) = validate(&format!(
        r#"
[topics.in]
external = true

[stages.a]
plugin = "{JSON_PROJECT}"
input = "in"
output = ["out", "copy"]
config = {{ fields = "a" }}
"#
    ));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("is valid: 0 source(s), 1 stage(s), 0 sink(s), 4 topic(s)"),
        "{text}"
    );
}

#[test]
fn bounded_run_over_an_offset_or_time_range_of_a_filled_topic() {
    for (from, to, want) in [
        ("20", "50", 20..50),
        (
            "1970-01-01T00:00:01.040Z",
            "1970-01-01T00:00:01.045Z",
            40..45,
        ),
    ] {
        let f = Fixture::new(&format!(
            r#"
[topics.in]
external = true

[stages.shout]
plugin = "{UPPERCASE}"
input = "in"
output = "out"

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"
"#
        ));
        seq_file(&f.path("in.ndjson"), 100);
        let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
            .args(["topic", "create", "in"])
            .env("FLOWGATE_DATA_DIR", f.path("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
            .args(["produce", "in", "--input"])
            .arg(f.path("in.ndjson"))
            .env("FLOWGATE_DATA_DIR", f.path("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = f
            .command(&["run", "--bounded", "--from", from, "--to", to])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let seqs: Vec<u64> = f
            .lines("out.ndjson")
            .iter()
            .map(|e| e["value"]["SEQ"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, want.collect::<Vec<_>>(), "{stderr}");
    }
}

#[test]
fn outputs_fan_out_or_follow_a_header_route_and_unrouted_ones_are_dead_lettered() {
    let f = Fixture::new(&format!(
        r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.copy]
plugin = "{UPPERCASE}"
input = "raw"
output = ["copy-a", "copy-b"]

[stages.route]
plugin = "{UPPERCASE}"
input = "raw"
mode = "event"
route = {{ header = "to", topics = {{ good = "good", bad = "bad" }} }}

[sinks.a]
type = "file"
input = "copy-a"
path = "a.ndjson"
[sinks.b]
type = "file"
input = "copy-b"
path = "b.ndjson"
[sinks.good]
type = "file"
input = "good"
path = "good.ndjson"
[sinks.bad]
type = "file"
input = "bad"
path = "bad.ndjson"
[sinks.dlq]
type = "file"
input = "dead-letters"
path = "dlq.ndjson"
"#
    ));
    std::fs::write(
        f.path("in.ndjson"),
        "{\"value\":\"one\",\"headers\":{\"to\":\"good\"}}\n\
         {\"value\":\"two\",\"headers\":{\"to\":\"bad\"}}\n\
         {\"value\":\"three\",\"headers\":{\"to\":\"good\"}}\n\
         {\"value\":\"four\",\"headers\":{\"to\":\"elsewhere\"}}\n\
         {\"value\":\"five\"}\n",
    )
    .unwrap();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    let values = |name: &str| -> Vec<String> {
        f.lines(name)
            .iter()
            .map(|e| e["value"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ["ONE", "TWO", "THREE", "FOUR", "FIVE"];
    assert_eq!(values("a.ndjson"), all);
    assert_eq!(values("b.ndjson"), all);
    assert_eq!(values("good.ndjson"), ["ONE", "THREE"]);
    assert_eq!(values("bad.ndjson"), ["TWO"]);
    let dlq = f.lines("dlq.ndjson");
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0]["value"], "four");
    let e0 = dlq[0]["headers"]["flowgate-error"].as_str().unwrap();
    assert!(
        e0.contains("no route for an output: output header `to` = \"elsewhere\""),
        "{e0}"
    );
    assert_eq!(dlq[0]["headers"]["flowgate-error-kind"], "no-route");
    assert!(e0.contains("routes: bad, good"), "{e0}");
    assert_eq!(dlq[1]["value"], "five");
    let e1 = dlq[1]["headers"]["flowgate-error"].as_str().unwrap();
    assert!(e1.contains("no `to` header"), "{e1}");
}

#[test]
fn retryable_errors_are_retried_with_backoff_then_dead_lettered() {
    // The plugin fails each event twice: three attempts pass it, two dead-letter it.
    for (attempts, passed, dead) in [(3, 4, 0), (2, 0, 4)] {
        let f = Fixture::new(&format!(
            r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.flaky]
plugin = "{FLAKY}"
input = "raw"
output = "out"
on-error = "retry"
retry = {{ attempts = {attempts}, backoff = "50ms" }}

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"
[sinks.dlq]
type = "file"
input = "dead-letters"
path = "dlq.ndjson"
"#
        ));
        std::fs::write(
            f.path("in.ndjson"),
            "{\"value\":\"a\"}\n{\"value\":\"b\"}\n{\"value\":\"c\"}\n{\"value\":\"d\"}\n",
        )
        .unwrap();
        let started = Instant::now();
        let (status, stderr) = f.run_bounded();
        assert!(status.success(), "{stderr}");
        assert_eq!(f.lines("out.ndjson").len(), passed, "{stderr}");
        let dlq = f.lines("dlq.ndjson");
        assert_eq!(dlq.len(), dead, "{stderr}");
        for d in &dlq {
            assert_eq!(d["headers"]["flowgate-attempt"], "2");
            assert_eq!(d["headers"]["flowgate-error-kind"], "retryable");
        }
        // Backoff 50 ms, then 100 ms: each event waits at least 50 ms per retry.
        assert!(started.elapsed() >= Duration::from_millis(50 * 4));
    }
}

#[test]
fn generator_and_stdin_sources_feed_stdout_and_file_sinks() {
    let f = Fixture::new(&format!(
        r#"
[sources.gen]
type = "generator"
topic = "generated"
count = 1000
size = 40

[sources.input]
type = "stdin"
topic = "typed"

[stages.shout]
plugin = "{UPPERCASE}"
input = "typed"
output = "shouted"

[sinks.generated]
type = "file"
input = "generated"
path = "generated.ndjson"

[sinks.print]
type = "stdout"
input = "shouted"
"#
    ));
    let mut child = f
        .command(&["run", "--bounded"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"value\":\"from stdin\"}\n{\"value\":\"again\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let values: Vec<&str> = printed
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["FROM STDIN", "AGAIN"]);
    let generated = f.lines("generated.ndjson");
    assert_eq!(generated.len(), 1000);
    for (i, e) in generated.iter().enumerate() {
        assert_eq!(e["value"]["seq"], i as u64);
        assert_eq!(serde_json::to_string(&e["value"]).unwrap().len(), 40);
    }
    assert!(
        stderr.contains("source gen: 1000 events appended"),
        "{stderr}"
    );
}

/// Runs `flowgate <args>` against the fixture's data directory and checks that it succeeds.
fn flowgate_ok(f: &Fixture, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(args)
        .env("FLOWGATE_DATA_DIR", f.path("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flowgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file sink killed before its first checkpoint must not keep what it wrote and then write
/// it all again: its first checkpoint (the file's length at open) is written before any line.
#[expect(
    clippy::print_stderr,
    reason = "reports how many lines the kill left in the file (see it with --nocapture)"
)]
#[test]
fn a_file_sink_killed_before_its_first_checkpoint_writes_each_event_once() {
    const N: u64 = 20_000;
    let f = Fixture::new(
        r#"
commit-interval = "1h"

[topics.in]
external = true

[sinks.out]
type = "file"
input = "in"
path = "out.ndjson"
"#,
    );
    seq_file(&f.path("in.ndjson"), N);
    flowgate_ok(&f, &["topic", "create", "in"]);
    let input = f.path("in.ndjson");
    flowgate_ok(&f, &["produce", "in", "--input", input.to_str().unwrap()]);

    // The sink writes more than its buffer holds, so lines reach the file; with an interval of
    // an hour it has not checkpointed them when it is killed.
    let mut child = f.spawn(&[], 0);
    let written = eventually(Duration::from_secs(60), || {
        std::fs::metadata(f.path("out.ndjson")).is_ok_and(|m| m.len() > 0)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(written, "the sink wrote nothing: {}", f.stderr(0));
    let at_kill = f.lines("out.ndjson").len();

    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for e in f.lines("out.ndjson") {
        *counts
            .entry(e["value"]["seq"].as_u64().unwrap())
            .or_default() += 1;
    }
    let repeated = counts.values().filter(|&&c| c > 1).count();
    eprintln!("{at_kill} lines in the file at the kill, {repeated} written twice");
    assert_eq!(counts.len() as u64, N, "events lost");
    assert_eq!(
        repeated, 0,
        "{repeated} events written twice ({at_kill} in the file at the kill)"
    );
}

/// `flowgate consume <topic> --from-beginning`: every event held, as JSON.
fn consume(f: &Fixture, topic: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["consume", topic, "--from-beginning"])
        .env("FLOWGATE_DATA_DIR", f.path("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The names and values of an event's headers (either JSON form).
fn header_pairs(e: &Value) -> Vec<(String, String)> {
    match &e["headers"] {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A plugin that writes `flowgate-` headers itself (a forged exactly-once marker far ahead,
/// a forged dead-letter header) gets neither into the log, so after a stop the replay trusts
/// only the host's markers: the outputs not written yet are written, none is lost.
#[test]
fn a_plugin_cannot_write_host_headers_and_a_forged_marker_loses_no_output_on_replay() {
    let pipeline = |policy: &str| {
        format!(
            r#"
delivery = "exactly-once"
commit-interval = "1h"

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.a]
plugin = "{HUGE_KEY}"
input = "raw"
output = "mid"
batch-size = 1
on-error = "{policy}"
config = {{ header = "flowgate-eos=pipeline/a/0@1000;flowgate-stage=forged", fail-on = "poison" }}

[sinks.out]
type = "file"
input = "mid"
path = "out.ndjson"
"#
        )
    };
    let f = Fixture::new(&pipeline("fail"));
    let values: Vec<String> = (0..10)
        .map(|i| {
            if i == 5 {
                "poison".into()
            } else {
                format!("e{i}")
            }
        })
        .collect();
    let input: String = values
        .iter()
        .map(|v| format!("{{\"value\":\"{v}\"}}\n"))
        .collect();
    std::fs::write(f.path("in.ndjson"), input).unwrap();

    // The first run stops at the poison event, before the stage's first checkpoint after open.
    let (status, stderr) = f.run_bounded();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("offset 5"), "{stderr}");
    let mid = consume(&f, "mid");
    assert_eq!(mid.len(), 5, "{mid:?}");
    for e in &mid {
        for (name, value) in header_pairs(e) {
            assert!(
                name != "flowgate-stage" && value != "pipeline/a/0@1000",
                "a plugin-written header reached the log: {e}"
            );
        }
    }

    // The second run skips the poison event and replays from the checkpoint.
    std::fs::write(f.path("pipeline.toml"), pipeline("skip")).unwrap();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    let got: Vec<String> = f
        .lines("out.ndjson")
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = values.into_iter().filter(|v| v != "poison").collect();
    assert_eq!(got, want, "{stderr}");
}

/// Bytes of a topic's files in a fixture's data directory.
fn topic_bytes(f: &Fixture, topic: &str) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |d| {
            d.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(&f.path("data").join("topics").join(topic))
}

/// The huge-key plugin between a file and topic `out`: an 8 MiB key on `big…` events, 200,000
/// headers on `many…` events.
fn huge_key_pipeline(mode: &str, limits: &str, stage_extra: &str) -> Fixture {
    let f = Fixture::new(&format!(
        r#"
{limits}

[topics.raw]
partitions = 1

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.huge]
plugin = "{HUGE_KEY}"
input = "raw"
output = "out"
mode = "{mode}"
on-error = "dead-letter"
config = {{ key-bytes = 8388608, headers = 200000 }}
{stage_extra}
"#
    ));
    std::fs::write(
        f.path("in.ndjson"),
        "{\"value\":\"big-1\"}\n{\"value\":\"many-2\"}\n{\"value\":\"ok-3\"}\n",
    )
    .unwrap();
    f
}

/// A plugin output over a record limit (an 8 MiB key; 200,000 headers) fails its input row, per
/// event and per batch: the row goes to the dead-letter topic with the limit, the size and the
/// key that raises it, and nothing oversize reaches the output topic. Raising the limits in the
/// pipeline file (in `[limits]`, or in the stage) lets the same records through.
#[expect(
    clippy::print_stderr,
    reason = "reports the bytes of the output topic (see them with --nocapture)"
)]
#[test]
fn plugin_outputs_over_the_record_limits_are_dead_lettered_and_raised_limits_let_them_through() {
    for mode in ["event", "batch"] {
        let f = huge_key_pipeline(mode, "", "");
        let (status, stderr) = f.run_bounded();
        assert!(status.success(), "{mode}: {stderr}");
        let out = consume(&f, "out");
        let values: Vec<&str> = out.iter().map(|e| e["value"].as_str().unwrap()).collect();
        assert_eq!(values, ["ok-3"], "{mode}: {stderr}");
        for e in &out {
            assert!(e["key"].as_str().map_or(0, str::len) <= 64 << 10, "{mode}");
            assert!(header_pairs(e).len() <= 1000, "{mode}");
        }
        let dead = consume(&f, "dead-letters");
        assert_eq!(dead.len(), 2, "{mode}: {dead:?}");
        let header = |e: &Value, name: &str| {
            header_pairs(e)
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .unwrap_or_default()
        };
        for (e, value, says) in [
            (
                &dead[0],
                "big-1",
                ["8388608 bytes", "max-key-bytes = 65536"],
            ),
            (&dead[1], "many-2", ["200000 headers", "max-headers = 1000"]),
        ] {
            assert_eq!(e["value"], value, "{mode}");
            assert_eq!(header(e, "flowgate-error-kind"), "record-limit", "{mode}");
            let error = header(e, "flowgate-error");
            for s in says.iter().chain(&["[limits]", "[stages.huge]"]) {
                assert!(error.contains(s), "{mode}: {error:?} does not say {s:?}");
            }
        }
        let bytes = topic_bytes(&f, "out");
        eprintln!("{mode}: {bytes} bytes in topic `out` for 3 events with the default limits");
        assert!(bytes < 64 << 10, "{mode}: {bytes} bytes in `out`");

        // Raised limits let the records through: per pipeline for one mode, per stage for the other.
        let raised = "max-key-bytes = \"16MiB\"\nmax-headers = 200000\nmax-header-bytes = \"4MiB\"";
        let f = if mode == "event" {
            huge_key_pipeline(mode, &format!("[limits]\n{raised}"), "")
        } else {
            huge_key_pipeline(mode, "[limits]\nmax-headers = 10", raised)
        };
        let (status, stderr) = f.run_bounded();
        assert!(status.success(), "{mode}: {stderr}");
        let out = consume(&f, "out");
        assert_eq!(out.len(), 3, "{mode}: {stderr}");
        assert_eq!(
            out[0]["key"].as_str().map(str::len),
            Some(8 << 20),
            "{mode}"
        );
        assert_eq!(header_pairs(&out[1]).len(), 200_000, "{mode}");
        assert!(consume(&f, "dead-letters").is_empty(), "{mode}");
    }
}

/// A window result over a record limit fails the input row it fired at (dead-lettered, naming
/// the limit) and reaches no output; one fired at the end of the input is dropped and counted.
#[test]
fn window_results_over_the_record_limits_fail_the_row_they_fired_at() {
    let f = Fixture::new(&format!(
        r#"
[topics.raw]
partitions = 1

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.stats]
plugin = "{WINDOW_STATS}"
input = "raw"
output = "stats"
window = {{ kind = "tumbling", size = "1s" }}
config = {{ field = "amount" }}
max-value-bytes = 8
"#
    ));
    let lines: String = [0, 500, 1500, 2500]
        .iter()
        .map(|t| format!("{{\"key\":\"a\",\"value\":{{\"amount\":1}},\"timestamp\":{t}}}\n"))
        .collect();
    std::fs::write(f.path("in.ndjson"), lines).unwrap();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    assert!(consume(&f, "stats").is_empty(), "{stderr}");
    let dead = consume(&f, "dead-letters");
    let at: Vec<i64> = dead
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(at, [1500, 2500], "the rows the windows fired at: {stderr}");
    for e in &dead {
        let error = e["headers"]["flowgate-error"].as_str().unwrap_or_default();
        assert!(error.contains("max-value-bytes = 8"), "{error}");
        assert_eq!(e["headers"]["flowgate-error-kind"], "record-limit");
    }
    assert!(
        stderr.contains("a closing window result is dropped") && stderr.contains("max-value-bytes"),
        "{stderr}"
    );
}

/// HTTP ingest refuses a request with a record over a limit whole (413, naming the record, the
/// limit and the key) and appends nothing of it.
#[test]
fn ingest_refuses_a_request_with_a_record_over_a_limit_and_appends_nothing_of_it() {
    let f = Fixture::new(
        r#"
[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 1

[sources.api]
type = "http"
topic = "raw"

[sinks.out]
type = "file"
input = "raw"
path = "out.ndjson"
"#,
    );
    let mut child = f.spawn(&[], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let json = ("Content-Type", "application/json");
    let big_key = "k".repeat(70_000);
    let many: Vec<(String, String)> = (0..1001)
        .map(|i| (format!("h{i}"), String::new()))
        .collect();
    let cases: [(&str, String, &[&str]); 3] = [
        (
            "application/json",
            serde_json::json!([{"value": "a"}, {"key": big_key, "value": "b"}, {"value": "c"}])
                .to_string(),
            &[
                "record 1",
                "70000 bytes",
                "max-key-bytes = 65536",
                "[limits]",
            ],
        ),
        (
            "application/x-ndjson",
            format!(
                "{{\"value\":\"a\"}}\n{}\n",
                serde_json::json!({"value": "b", "headers": many})
            ),
            &["record 1", "1001 headers", "max-headers = 1000"],
        ),
        (
            "application/json",
            serde_json::json!({"value": "v".repeat(1_500_000)}).to_string(),
            &["record 0", "1500000 bytes", "max-value-bytes = 1048576"],
        ),
    ];
    for (ctype, body, says) in &cases {
        let (status, _, answer) = http(
            &addr,
            "POST",
            "/topics/raw/events",
            &[("Content-Type", ctype)],
            body.as_bytes(),
        );
        assert_eq!(status, 413, "{answer}");
        for s in *says {
            assert!(answer.contains(s), "{answer} does not say {s:?}");
        }
    }
    // The next request's records are the topic's first.
    let (status, _, answer) = http(
        &addr,
        "POST",
        "/topics/raw/events",
        &[json],
        br#"[{"value":"x"},{"value":"y"}]"#,
    );
    assert_eq!(status, 200, "{answer}");
    let a: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(a["offsets"][0]["offset"], 0, "{answer}");
    let held: Vec<Value> = consume(&f, "raw")
        .iter()
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(held, ["x", "y"]);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    assert!(status.success(), "{}", f.stderr(0));
}

/// `flowgate produce` refuses a line over a record limit, naming the line and the limit, and
/// appends nothing of the run; its `--max-…` flags raise the limits.
#[test]
fn produce_refuses_a_line_over_a_record_limit_and_its_flags_raise_the_limits() {
    let f = Fixture::new("");
    flowgate_ok(&f, &["topic", "create", "t"]);
    let big_key = "k".repeat(70_000);
    let many: Vec<(String, String)> = (0..1001)
        .map(|i| (format!("h{i}"), String::new()))
        .collect();
    let files = [
        (
            "key.ndjson",
            format!("{{\"value\":\"a\"}}\n\n{{\"key\":\"{big_key}\",\"value\":\"b\"}}\n"),
            [
                "line 3",
                "70000 bytes",
                "max-key-bytes = 65536",
                "--max-key-bytes",
            ],
            "--max-key-bytes=128KiB",
        ),
        (
            "headers.ndjson",
            format!(
                "{{\"value\":\"a\"}}\n{}\n",
                serde_json::json!({"value": "b", "headers": many})
            ),
            [
                "line 2",
                "1001 headers",
                "max-headers = 1000",
                "--max-headers",
            ],
            "--max-headers=1001",
        ),
    ];
    let produce = |file: &str, flag: Option<&str>| {
        let input = f.path(file);
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"));
        c.args(["produce", "t", "--input", input.to_str().unwrap()])
            .args(flag)
            .env("FLOWGATE_DATA_DIR", f.path("data"));
        c.output().unwrap()
    };
    for (file, text, says, _) in &files {
        std::fs::write(f.path(file), text).unwrap();
        let out = produce(file, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: {stderr}");
        for s in says.iter().chain(&["nothing was appended"]) {
            assert!(stderr.contains(s), "{file}: {stderr} does not say {s:?}");
        }
    }
    assert!(consume(&f, "t").is_empty());
    for (file, _, _, flag) in &files {
        let out = produce(file, Some(flag));
        assert!(
            out.status.success(),
            "{file} {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(consume(&f, "t").len(), 4);
}

/// `[limits]` keys are checked like every other key: a misspelt one is named with the closest
/// key, a size that is not one is refused with its line.
#[test]
fn validate_checks_the_limits_keys() {
    let (code, text) = validate(&format!(
        r#"[limits]
max-key-byte = "1MiB"

[stages.a]
plugin = "{UPPERCASE}"
input = "raw"
output = "out"
max-headers = "many"

[topics.raw]
external = true
"#
    ));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("unknown key `max-key-byte` in [limits]"),
        "{text}"
    );
    assert!(text.contains("did you mean `max-key-bytes`?"), "{text}");
    assert!(
        text.contains("pipeline.toml:8:15: [stages.a]: invalid type: string \"many\""),
        "{text}"
    );
}
