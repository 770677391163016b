//! `flowgate tap`: the events appended to a topic of a running pipeline, while they come.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flowgate_tests::fixture::{
    Fixture, flowgate_bin, http, post_values, sigterm, start_http, wait_exit,
};
use flowgate_tests::plugins::UPPERCASE;

fn pipeline() -> String {
    format!(
        r#"
name = "tap"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 2

[sources.api]
type = "http"
topic = "raw"

[stages.shout]
plugin = "{UPPERCASE}"
input = "raw"
output = "upper"
"#
    )
}

/// `flowgate tap <args>` against `addr`, with its stdout lines and its stderr lines sent to
/// channels as they come.
fn tap(addr: &str, args: &[&str]) -> (Child, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = Command::new(flowgate_bin())
        .arg("tap")
        .args(args)
        .args(["--admin", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |from: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let out = lines(Box::new(child.stdout.take().unwrap()));
    let err = lines(Box::new(child.stderr.take().unwrap()));
    (child, out, err)
}

/// Waits (up to 60 s) for the tap to say it is in place.
fn placed(err: &mpsc::Receiver<String>) {
    let line = err
        .recv_timeout(Duration::from_secs(60))
        .expect("the tap says where it starts");
    assert!(line.starts_with("{\"tap\":{"), "{line}");
}

#[test]
fn tap_prints_what_flows_through_a_topic_and_samples() {
    let f = Fixture::new(&pipeline());
    let (mut run, addr) = start_http(&f, 0);

    // Every event, while it flows.
    let (mut all, out, err) = tap(&addr, &["upper"]);
    placed(&err);
    post_values(&addr, "raw", (0..200).map(|i| format!("ev-{i}")));
    let mut seen = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    while seen.len() < 200 {
        let left = until.saturating_duration_since(Instant::now());
        let line = out
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} of 200 events tapped in 60 s", seen.len()));
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        let v = e["value"].as_str().unwrap().to_owned();
        assert!(v.starts_with("EV-"), "{line}");
        assert!(seen.insert(v), "tapped twice: {line}");
    }
    all.kill().unwrap();
    all.wait().unwrap();

    // One of every 10, and it stops after 5.
    let (mut sampled, out, err) = tap(&addr, &["upper", "--sample", "10", "--limit", "5"]);
    placed(&err);
    post_values(&addr, "raw", (0..100).map(|i| format!("again-{i}")));
    let status =
        wait_exit(&mut sampled, Duration::from_secs(60)).expect("the tap stops at its limit");
    assert!(status.success());
    // To the end of its output (the reader thread ends there).
    let lines: Vec<String> = out.iter().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");

    let (code, _, body) = http(&addr, "GET", "/admin/tap/nope", &[], b"");
    assert_eq!(code, 404, "{body}");
    let (code, _, body) = http(&addr, "GET", "/admin/tap/upper?sample=0", &[], b"");
    assert!(code == 400 && body.contains("sample"), "{body}");
    sigterm(&run);
    wait_exit(&mut run, Duration::from_secs(60)).expect("stops");
}
