//! Hot reload under load: plugin swaps through the admin endpoint and the file watcher, refused
//! and rolled-back versions, and a pipeline edit applied while events flow.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use flowgate_tests::plugins::{
    HOSTILE_LOOP, HOSTILE_TRAP_ALWAYS, JSON_PROJECT, MARK_A, MARK_B, MARK_LARGE, UPPERCASE,
};
use serde_json::Value;

use crate::pipeline::{Fixture, eventually, http, listen_addr, sigterm, wait_exit};

/// Starts `flowgate run` (unbounded, watching) and returns it with its HTTP address.
fn start(f: &Fixture) -> (Child, String) {
    let mut child = f.spawn(&[], 0);
    let addr = listen_addr(f, 0, &mut child);
    (child, addr)
}

/// Replaces a file the way a deploy tool should: write aside, then rename over.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The sequence number and mark of an output value `{"seq":N,...}|m` (keys may be upper-cased).
fn seq_and_mark(e: &Value) -> (u64, String) {
    let v = e["value"].as_str().unwrap_or_else(|| panic!("{e}"));
    let (json, mark) = v
        .rsplit_once('|')
        .unwrap_or_else(|| panic!("unmarked: {v}"));
    assert!(!json.contains('|'), "marked twice: {v}");
    let doc: Value = serde_json::from_str(json).unwrap();
    let seq = doc.get("seq").or_else(|| doc.get("SEQ")).unwrap();
    (seq.as_u64().unwrap(), mark.to_owned())
}

/// Waits for `n` lines in the sink, then stops the run (SIGTERM, exit 0).
fn finish(f: &Fixture, child: &mut Child, n: usize) -> Vec<Value> {
    let ok = eventually(Duration::from_secs(90), || {
        f.lines_so_far("out.ndjson").len() >= n
    });
    assert!(
        ok,
        "{} of {n} events arrived: {}",
        f.lines_so_far("out.ndjson").len(),
        f.stderr(0)
    );
    sigterm(child);
    let status = wait_exit(child, Duration::from_secs(20)).expect("exit after SIGTERM");
    assert!(status.success(), "{}", f.stderr(0));
    f.lines("out.ndjson")
}

/// Each sequence number exactly once, and the marks seen.
fn exactly_once(lines: &[Value], n: u64) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut marks = BTreeMap::new();
    for e in lines {
        let (seq, mark) = seq_and_mark(e);
        *seen.entry(seq).or_insert(0) += 1;
        *marks.entry(mark).or_insert(0) += 1;
    }
    let missing: Vec<u64> = (0..n).filter(|s| !seen.contains_key(s)).take(5).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(s, _)| *s)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "repeated: {twice:?}");
    assert_eq!(seen.len() as u64, n);
    marks
}

fn pipeline(count: u64, rate: u64, plugin: &str) -> String {
    format!(
        r#"
delivery = "exactly-once"
commit-interval = "50ms"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 2

[sources.gen]
type = "generator"
topic = "raw"
count = {count}
rate = {rate}

[stages.mark]
plugin = "{plugin}"
input = "raw"
output = "out"
batch-size = 64
linger = "1ms"

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"
"#
    )
}

/// A pipeline whose stage runs the plugin file `stage.wasm` in its directory (a copy of
/// `mark_a`), for tests that replace it.
fn with_stage_file(count: u64, rate: u64) -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new("");
    let stage_file = f.path("stage.wasm");
    std::fs::copy(MARK_A, &stage_file).unwrap();
    std::fs::write(
        f.path("pipeline.toml"),
        pipeline(count, rate, stage_file.to_str().unwrap()),
    )
    .unwrap();
    (f, stage_file)
}

fn status(addr: &str) -> Value {
    let (code, _, body) = http(addr, "GET", "/admin/status", &[], b"");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
#[expect(
    clippy::print_stdout,
    reason = "reports the measured swap pauses (see them with --nocapture)"
)]
fn two_hundred_swaps_under_load_lose_and_repeat_nothing() {
    const N: u64 = 20_000;
    let (f, _) = with_stage_file(N, 4_000);
    let (mut child, addr) = start(&f);
    let a = std::fs::read(MARK_A).unwrap();
    let b = std::fs::read(MARK_B).unwrap();
    for i in 0..200 {
        let body = if i % 2 == 0 { &b } else { &a };
        let (code, _, answer) = http(&addr, "POST", "/admin/stages/mark/plugin", &[], body);
        assert_eq!(code, 200, "swap {i}: {answer}");
        let d: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(d["changed"], true, "swap {i}: {answer}");
        std::thread::sleep(Duration::from_millis(15));
    }
    let st = status(&addr);
    let lines = finish(&f, &mut child, N as usize);
    let marks = exactly_once(&lines, N);
    assert_eq!(
        marks.keys().cloned().collect::<Vec<_>>(),
        ["a", "b"],
        "{marks:?}"
    );
    let stage = &st["stages"][0];
    assert_eq!(stage["input"], "raw");
    assert_eq!(stage["partitions"].as_array().unwrap().len(), 2, "{stage}");
    assert!(stage["events"]["in"].as_u64().unwrap() > 0, "{stage}");
    assert!(
        stage["partitions"][0]["end"].as_u64().unwrap() > 0,
        "{stage}"
    );
    let versions = stage["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 201, "the first version and 200 deploys");
    assert!(
        versions
            .iter()
            .all(|v| v["status"] != "failed" && v["status"] != "rolled-back"),
        "{stage}"
    );
    let swaps = stage["swaps"].as_u64().unwrap();
    assert!(swaps >= 100, "only {swaps} worker swaps happened: {stage}");
    let pause = &stage["swap_pause_ms"];
    let (p50, p99, max) = (
        pause["p50"].as_f64().unwrap(),
        pause["p99"].as_f64().unwrap(),
        pause["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{pause}");
    println!(
        "200 deploys, {swaps} worker swaps; swap pause p50 {p50:.3} ms, p99 {p99:.3} ms; marks {marks:?}"
    );
}

#[test]
fn garbage_failing_and_trapping_versions_are_refused_or_rolled_back() {
    const N: u64 = 6_000;
    let (f, stage_file) = with_stage_file(N, 2_000);
    let (mut child, addr) = start(&f);

    // 1. The watched file replaced by garbage: refused.
    replace(&stage_file, b"\0asm\x0d\0\x01\0 not a component at all");
    let refused = eventually(Duration::from_secs(20), || {
        status(&addr)["stages"][0]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["status"] == "failed")
    });
    assert!(refused, "garbage was not refused: {}", f.stderr(0));

    // 2. A plugin whose init fails (json_project without its `fields` config): refused.
    let (code, _, answer) = http(
        &addr,
        "POST",
        "/admin/stages/mark/plugin",
        &[],
        &std::fs::read(JSON_PROJECT).unwrap(),
    );
    assert_eq!(code, 422, "{answer}");
    assert!(answer.contains("init failed"), "{answer}");

    // 3. One that traps on every event: accepted, then rolled back at its first batch.
    let (code, _, answer) = http(
        &addr,
        "POST",
        "/admin/stages/mark/plugin",
        &[],
        &std::fs::read(HOSTILE_TRAP_ALWAYS).unwrap(),
    );
    assert_eq!(code, 200, "{answer}");
    let rolled = eventually(Duration::from_secs(20), || {
        status(&addr)["stages"][0]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["status"] == "rolled-back")
    });
    assert!(
        rolled,
        "the trapping version was not rolled back: {}",
        f.stderr(0)
    );

    // `flowgate status` shows the history.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["status", "--data-dir"])
        .arg(f.path("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "\"failed\"",
        "\"rolled-back\"",
        "\"live\"",
        "init failed",
        "traps on every event",
    ] {
        assert!(text.contains(want), "status lacks {want}: {text}");
    }

    let lines = finish(&f, &mut child, N as usize);
    let marks = exactly_once(&lines, N);
    assert_eq!(
        marks.keys().cloned().collect::<Vec<_>>(),
        ["a"],
        "the old version served all: {marks:?}"
    );
    let stderr = f.stderr(0);
    assert!(stderr.contains("rolled back"), "{stderr}");
}

#[test]
fn a_pipeline_edit_adds_a_stage_and_rewires_another_while_events_flow() {
    const N: u64 = 8_000;
    let v1 = pipeline(N, 2_000, MARK_A);
    let f = Fixture::new(&v1);
    let (mut child, addr) = start(&f);
    let some = eventually(Duration::from_secs(30), || {
        f.lines_so_far("out.ndjson").len() > 500
    });
    assert!(some, "{}", f.stderr(0));
    // `mark` now writes to `mid`, and a new stage upper-cases `mid` into `out`.
    let v2 = v1.replace(
        "output = \"out\"\nbatch-size = 64",
        "output = \"mid\"\nbatch-size = 64",
    ) + &format!(
        "\n[stages.shout]\nplugin = \"{UPPERCASE}\"\ninput = \"mid\"\noutput = \"out\"\n"
    );
    assert_ne!(v1, v2);
    replace(&f.path("pipeline.toml"), v2.as_bytes());
    let applied = eventually(Duration::from_secs(20), || {
        status(&addr)["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "shout")
    });
    assert!(applied, "the edit was not applied: {}", f.stderr(0));
    let lines = finish(&f, &mut child, N as usize);
    let marks = exactly_once(&lines, N);
    assert!(marks.get("a").is_some_and(|n| *n > 0), "{marks:?}");
    assert!(marks.get("A").is_some_and(|n| *n > 0), "{marks:?}");
    assert!(
        f.stderr(0).contains("pipeline edit applied"),
        "{}",
        f.stderr(0)
    );
}

#[test]
fn a_plugin_file_replaced_on_disk_is_swapped_in_even_a_large_one() {
    const N: u64 = 6_000;
    let (f, stage_file) = with_stage_file(N, 2_000);
    let (mut child, addr) = start(&f);
    let large = std::fs::read(MARK_LARGE).unwrap();
    assert!(
        large.len() > 4 << 20,
        "the large fixture is {} bytes",
        large.len()
    );
    replace(&stage_file, &large);
    let live = eventually(Duration::from_secs(60), || {
        let st = status(&addr);
        let stage = &st["stages"][0];
        stage["live"]["hash"] == flowgate::runtime::hash_of(&large)
            && stage["versions"].as_array().unwrap().iter().any(|v| {
                v["live_after_ms"].is_number()
                    && v["source"] != "deploy"
                    && v["id"] == stage["live"]["version"]
            })
    });
    assert!(live, "the large version did not go live: {}", f.stderr(0));
    let lines = finish(&f, &mut child, N as usize);
    let marks = exactly_once(&lines, N);
    assert!(marks.get("L").is_some_and(|n| *n > 0), "{marks:?}");
}

/// A pipeline with an HTTP source feeding `mark` (with the `[http]` keys given), into out.ndjson.
fn http_pipeline(http_keys: &str) -> String {
    format!(
        r#"
[http]
{http_keys}

[sources.api]
type = "http"
topic = "raw"

[stages.mark]
plugin = "{MARK_A}"
input = "raw"
output = "out"

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"
"#
    )
}

/// Starts `flowgate run` with the environment given, stderr in `run-0.log`.
fn spawn_with_env(f: &Fixture, env: &[(&str, &str)]) -> Child {
    let mut c = f.command(&["run"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(f.path("run-0.log")).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn an_admin_api_open_beyond_loopback_without_a_token_is_refused_at_start() {
    let f = Fixture::new(&http_pipeline("listen = \"0.0.0.0:0\""));
    let mut child = spawn_with_env(&f, &[]);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = f.stderr(0);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    for want in [
        "listen = \"0.0.0.0:0\"",
        "reachable from other machines",
        "admin-token-env",
        "admin = false",
    ] {
        assert!(
            stderr.contains(want),
            "the refusal lacks {want:?}: {stderr}"
        );
    }
    assert!(!stderr.contains("listening"), "{stderr}");

    // With the admin routes off, the same address serves ingest (and no /admin).
    let f = Fixture::new(&http_pipeline("listen = \"0.0.0.0:0\"\nadmin = false"));
    let mut child = spawn_with_env(&f, &[]);
    let addr = listen_addr(&f, 0, &mut child);
    let port = addr.rsplit_once(':').unwrap().1;
    let local = format!("127.0.0.1:{port}");
    let (code, _, body) = http(
        &local,
        "POST",
        "/topics/raw/events",
        &[],
        b"{\"value\":\"x\"}",
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(
        &local,
        "POST",
        "/admin/stages/mark/plugin",
        &[],
        &std::fs::read(MARK_B).unwrap(),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("admin = false"), "{body}");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
}

#[test]
fn ingest_and_admin_tokens_are_separate_and_deploys_are_logged_with_their_address() {
    let f = Fixture::new(&http_pipeline(
        "listen = \"127.0.0.1:0\"\nadmin-token-env = \"ADMIN_T\"\ningest-token-env = \"INGEST_T\"",
    ));
    let mut child = spawn_with_env(&f, &[("ADMIN_T", "adm-secret"), ("INGEST_T", "ing-secret")]);
    let addr = listen_addr(&f, 0, &mut child);
    let ingest = [("Authorization", "Bearer ing-secret")];
    let admin = [("Authorization", "Bearer adm-secret")];
    let event = b"{\"value\":\"{\\\"seq\\\":0}\"}";
    let b = std::fs::read(MARK_B).unwrap();

    let (code, _, body) = http(&addr, "POST", "/topics/raw/events", &ingest, event);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(&addr, "POST", "/topics/raw/events", &admin, event);
    assert_eq!(code, 401, "the admin token is not an ingest token: {body}");
    for (path, method) in [
        ("/admin/stages/mark/plugin", "POST"),
        ("/admin/reload", "POST"),
        ("/admin/status", "GET"),
    ] {
        let (code, _, body) = http(&addr, method, path, &ingest, &b);
        assert_eq!(code, 401, "the ingest token opened {path}: {body}");
    }
    let (code, _, body) = http(&addr, "POST", "/admin/stages/mark/plugin", &admin, &b);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(&addr, "POST", "/admin/reload", &admin, b"");
    assert_eq!(code, 200, "{body}");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    let stderr = f.stderr(0);
    let line = |what: &str| {
        stderr
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line: {stderr}"))
            .to_owned()
    };
    let deployed = line("plugin deployed through the admin API");
    assert!(deployed.contains("from=127.0.0.1:"), "{deployed}");
    assert!(deployed.contains("stage=mark"), "{deployed}");
    assert!(
        line("pipeline reloaded through the admin API").contains("from=127.0.0.1:"),
        "{stderr}"
    );
    let refused = line("admin request refused");
    assert!(refused.contains("from=127.0.0.1:"), "{refused}");
}

/// A pipeline with an HTTP source of its own (`other`, into other.ndjson) beside a stage
/// `slow` reading `raw` (from a second HTTP source) with `plugin` and `stage_keys`.
fn slow_stage_pipeline(plugin: &str, stage_keys: &str, output: &str) -> String {
    format!(
        r#"
commit-interval = "50ms"

[http]
listen = "127.0.0.1:0"

[sources.api]
type = "http"
topic = "raw"

[sources.other]
type = "http"
topic = "other"

[stages.slow]
plugin = "{plugin}"
input = "raw"
output = "{output}"
batch-size = 1
on-error = "skip"
{stage_keys}

[sinks.other]
type = "file"
input = "other"
path = "other.ndjson"
"#
    )
}

/// POSTs `body` to `path`, returning the status and how long the answer took.
fn timed_post(addr: &str, path: &str, body: &[u8]) -> (u16, String, Duration) {
    let t = std::time::Instant::now();
    let (code, _, answer) = http(addr, "POST", path, &[], body);
    (code, answer, t.elapsed())
}

#[test]
#[expect(
    clippy::print_stdout,
    reason = "reports the measured ingest latencies (see them with --nocapture)"
)]
fn ingest_keeps_answering_while_an_edit_waits_for_a_busy_stage_to_stop() {
    // `slow` spins in every call until its 4 s timeout: restarting it waits for that call.
    let keys = "timeout = \"4s\"\nmax-traps-per-minute = 100000";
    let f = Fixture::new(&slow_stage_pipeline(HOSTILE_LOOP, keys, "out"));
    let mut child = f.spawn(&["--no-watch"], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let (code, _, answer) = http(
        &addr,
        "POST",
        "/topics/raw/events",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"value\":\"spin\"}\n{\"value\":\"spin again\"}\n",
    );
    assert_eq!(code, 200, "{answer}");
    // The first call has timed out (events are counted once processed): the stage has just
    // begun its 4 s call on the second.
    let busy = eventually(Duration::from_secs(20), || {
        status(&addr)["stages"][0]["events"]["in"].as_u64() == Some(1)
    });
    assert!(busy, "{}", f.stderr(0));

    // Ingest runs throughout; the edit (a rewiring of `slow`) is applied meanwhile.
    let (first_tx, first) = std::sync::mpsc::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (addr, done) = (addr.clone(), done.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let sent = std::time::Instant::now();
                let (code, answer, took) =
                    timed_post(&addr, "/topics/other/events", b"{\"value\":\"x\"}");
                assert_eq!(code, 200, "{answer}");
                answers.push((sent, took));
                let _ = first_tx.send(());
            }
            answers
        })
    };
    first.recv_timeout(Duration::from_secs(20)).unwrap();
    replace(
        &f.path("pipeline.toml"),
        slow_stage_pipeline(HOSTILE_LOOP, keys, "out2").as_bytes(),
    );
    let applying = std::time::Instant::now();
    let (code, answer, apply) = timed_post(&addr, "/admin/reload", b"");
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("started stage `slow`"), "{answer}");
    done.store(true, std::sync::atomic::Ordering::Release);
    let answers = hammer.join().unwrap();
    let during: Vec<Duration> = answers
        .iter()
        .filter(|(sent, took)| *sent + *took > applying && *sent < applying + apply)
        .map(|(_, took)| *took)
        .collect();
    let max = during.iter().max().copied().unwrap_or_default();
    println!(
        "apply (waiting for a stage's call to end) took {apply:?}; {} ingest requests during it, the slowest {max:?}",
        during.len()
    );
    // The apply really waited for the busy call; ingest did not.
    assert!(apply >= Duration::from_secs(1), "the apply took {apply:?}");
    assert!(
        during.len() >= 5,
        "{} requests during the apply",
        during.len()
    );
    // A request that waited for the apply would take about as long as the apply (it did:
    // 7.96 s of an 8 s apply); on a loaded machine a request may take a few hundred ms anyway.
    assert!(
        max < apply / 4,
        "an ingest request took {max:?} during a {apply:?} apply"
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).is_some());
}

#[test]
#[expect(
    clippy::print_stdout,
    reason = "reports the measured restart time (see it with --nocapture)"
)]
fn a_paused_stage_stops_promptly_when_an_edit_restarts_it() {
    // Every event traps: past 1 trap a minute the stage pauses 1 s, 2 s, 4 s, ...
    let keys = "max-traps-per-minute = 1";
    let f = Fixture::new(&slow_stage_pipeline(HOSTILE_TRAP_ALWAYS, keys, "out"));
    let mut child = f.spawn(&["--no-watch"], 0);
    let addr = listen_addr(&f, 0, &mut child);
    let events: String = (0..50)
        .map(|i| format!("{{\"value\":\"{i}\"}}\n"))
        .collect();
    let (code, _, answer) = http(
        &addr,
        "POST",
        "/topics/raw/events",
        &[("Content-Type", "application/x-ndjson")],
        events.as_bytes(),
    );
    assert_eq!(code, 200, "{answer}");
    // The third pause (4 s) has begun.
    let paused = eventually(Duration::from_secs(30), || {
        status(&addr)["stages"][0]["events"]["pauses"].as_u64() >= Some(3)
    });
    assert!(paused, "{}", f.stderr(0));
    replace(
        &f.path("pipeline.toml"),
        slow_stage_pipeline(HOSTILE_TRAP_ALWAYS, keys, "out2").as_bytes(),
    );
    let (code, answer, took) = timed_post(&addr, "/admin/reload", b"");
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("stopped stage `slow`"), "{answer}");
    println!("an edit restarted a stage in its 4 s pause in {took:?}");
    // Waiting out the pause would take up to 4 s (it did: 3.96 s).
    assert!(
        took < Duration::from_secs(2),
        "restarting the paused stage took {took:?}"
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30)).is_some());
}
