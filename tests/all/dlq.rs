//! Dead letters listed and sent back (`flowgate dlq list|replay`) to the stage that failed them:
//! a replay before the fix dead-letters them again with their count raised, a replay after it
//! makes each reach the sink once, across a kill -9 in the middle of the replay.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::fixture::{
    Fixture, flowgate_bin, http, listen_addr, post_values, sigterm, start_http, wait_exit,
};
use flowgate_tests::plugins::{MARK_A, REJECT_BAD};

const POISON: usize = 1_000;

fn pipeline(plugin: &str) -> String {
    format!(
        r#"
name = "dlq"
delivery = "exactly-once"
commit-interval = "100ms"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 2

[sources.api]
type = "http"
topic = "raw"

[stages.check]
plugin = "{plugin}"
input = "raw"
output = "clean"

[sinks.out]
type = "file"
input = "clean"
path = "out.ndjson"
"#
    )
}

/// `flowgate dlq <args>` against the run at `addr`: exit status and stdout.
fn dlq(f: &Fixture, addr: &str, args: &[&str]) -> (bool, String) {
    let _ = f;
    let out = dlq_command(addr, args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `flowgate dlq <args> --admin <addr>`.
fn dlq_command(addr: &str, args: &[&str]) -> Command {
    let mut c = Command::new(flowgate_bin());
    c.arg("dlq").args(args).args(["--admin", addr]);
    c
}

/// The dead letters `flowgate dlq list` prints (one JSON object a line).
fn listed(f: &Fixture, addr: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let (ok, out) = dlq(
        f,
        addr,
        &[&["list", "dead-letters", "--limit", "100000"], args].concat(),
    );
    assert!(ok, "flowgate dlq list: {out}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Polls (up to 60 s, looking at `child` between looks) until `done` holds.
fn until(f: &Fixture, child: &mut Child, n: usize, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} after 60 s: {}",
            f.stderr(n)
        );
        if let Some(status) = wait_exit(child, Duration::from_millis(50)) {
            panic!("run {n} exited ({status}): {}", f.stderr(n));
        }
    }
}

/// Sink lines by value: how many times each value was written, and the redrive count of each.
fn sunk(f: &Fixture) -> (BTreeMap<String, usize>, BTreeMap<String, String>) {
    let mut counts = BTreeMap::new();
    let mut redriven = BTreeMap::new();
    for line in f.lines("out.ndjson") {
        let v = line["value"].as_str().unwrap_or_default().to_owned();
        if let Some(n) = line["headers"]["x-flowgate-redriven"].as_str() {
            redriven.insert(v.clone(), n.to_owned());
        }
        *counts.entry(v).or_insert(0) += 1;
    }
    (counts, redriven)
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the seed and the kill moment (see them with --nocapture)"
)]
fn dead_letters_replayed_after_the_fix_reach_the_sink_once_across_a_kill() {
    let seed = flowgate_tests::seed("FLOWGATE_DLQ_SEED");
    let mut rng = Rng(seed);
    let f = Fixture::new(&pipeline(REJECT_BAD));
    let (mut child, addr) = start_http(&f, 0);
    post_values(
        &addr,
        "raw",
        (0..POISON).flat_map(|i| [format!("bad-{i}"), format!("good-{i}")]),
    );
    until(&f, &mut child, 0, "1,000 dead letters", || {
        listed(&f, &addr, &[]).len() == POISON
    });
    let first = listed(&f, &addr, &["--stage", "check"]);
    assert_eq!(first[0]["kind"], "invalid-input", "{}", first[0]);
    assert!(
        first[0]["error"]
            .as_str()
            .is_some_and(|e| e.ends_with("bad event")),
        "{}",
        first[0]
    );
    assert_eq!(first[0]["redriven"], 0);
    assert_eq!(first[0]["input"]["topic"], "raw");
    assert!(
        first
            .iter()
            .all(|d| d["value"].as_str().is_some_and(|v| v.starts_with("bad-"))),
        "only the bad events are dead letters"
    );
    assert!(
        listed(&f, &addr, &["--where", "error-kind=timeout"]).is_empty(),
        "none of another kind"
    );
    let (ok, out) = dlq(&f, &addr, &["list", "dead-letters", "--where", "kind=x"]);
    assert!(
        !ok && out.contains("error-kind=<kind>"),
        "a bad filter is named: {out}"
    );

    // Replayed before the fix: each fails again and is a dead letter again, counted once more.
    let replay = ["replay", "dead-letters", "--stage", "check"];
    let (ok, out) = dlq(&f, &addr, &replay);
    assert!(ok && out.contains("\"sent\": 1000"), "{out}");
    until(
        &f,
        &mut child,
        0,
        "the replayed events dead-lettered again",
        || listed(&f, &addr, &[]).len() == 2 * POISON,
    );
    let again = listed(&f, &addr, &[]);
    assert_eq!(
        again.iter().filter(|d| d["redriven"] == 1).count(),
        POISON,
        "each dead-lettered again with its count raised"
    );

    // The fix (the stage's plugin now passes every event), then a replay killed at a random
    // moment, and asked again after the restart.
    std::fs::write(f.path("pipeline.toml"), pipeline(MARK_A)).unwrap();
    let (code, _, answer) = http(&addr, "POST", "/admin/reload", &[], b"");
    assert_eq!(code, 200, "{answer}");
    let mut replaying = dlq_command(&addr, &replay)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kill_after = Duration::from_millis(rng.below(60));
    if let Some(status) = wait_exit(&mut child, kill_after) {
        panic!("the run exited ({status}): {}", f.stderr(0));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = replaying.wait();
    eprintln!(
        "dlq replay: FLOWGATE_DLQ_SEED={seed}: the run killed {kill_after:?} into the replay"
    );
    let (mut child, addr) = start_http(&f, 1);
    let (ok, out) = dlq(&f, &addr, &replay);
    assert!(ok, "{out}");
    until(&f, &mut child, 1, "every bad event at the sink", || {
        sunk(&f).0.keys().filter(|v| v.starts_with("bad-")).count() == POISON
    });
    // Let what is in flight land, then look at every line.
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("stops after SIGTERM");
    assert!(status.success(), "{}", f.stderr(1));
    let (counts, redriven) = sunk(&f);
    for i in 0..POISON {
        let bad = format!("bad-{i}|a");
        assert_eq!(
            counts.get(&bad),
            Some(&1),
            "{bad} reached the sink once: {:?}",
            f.lines("out.ndjson")
                .iter()
                .filter(|l| l["value"] == bad.as_str())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            redriven.get(&bad).map(String::as_str),
            Some("2"),
            "{bad} says it was redriven twice: {:?}",
            f.lines("out.ndjson")
                .iter()
                .find(|l| l["value"] == bad.as_str())
        );
        assert_eq!(counts.get(&format!("good-{i}")), Some(&1));
    }
    assert_eq!(counts.len(), 2 * POISON, "nothing else reached the sink");
}

#[test]
fn dead_letters_need_the_admin_token() {
    let f = Fixture::new(&pipeline(REJECT_BAD).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\ntoken-env = \"DLQ_TOKEN\"",
    ));
    let mut child = f
        .command(&["run", "--no-watch"])
        .env("DLQ_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(f.path("run-0.log")).unwrap())
        .spawn()
        .unwrap();
    let addr = listen_addr(&f, 0, &mut child);
    for (method, path) in [
        ("GET", "/admin/dlq/dead-letters"),
        ("POST", "/admin/dlq/dead-letters/replay"),
    ] {
        let (code, _, body) = http(&addr, method, path, &[], b"");
        assert_eq!(code, 401, "{method} {path} without the token: {body}");
    }
    let auth = ("Authorization", "Bearer s3cret");
    let (code, _, body) = http(&addr, "GET", "/admin/dlq/dead-letters", &[auth], b"");
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(&addr, "GET", "/admin/dlq/nope?stage=x", &[auth], b"");
    assert_eq!(code, 404, "an unknown topic: {body}");
    let (code, _, body) = http(
        &addr,
        "GET",
        "/admin/dlq/dead-letters?color=red",
        &[auth],
        b"",
    );
    assert!(code == 400 && body.contains("color"), "{body}");
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(60)).expect("stops");
}
