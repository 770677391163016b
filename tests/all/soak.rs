//! The crash soak: `flowgate run` with HTTP ingest, two stages and a file sink, exactly-once,
//! killed with SIGKILL at random moments (some before the first checkpoint, some before the
//! HTTP server is up, some right after the first acknowledgement) and restarted. After each
//! restart every event the ingest acknowledged is in the sink exactly once.
//!
//! `FLOWGATE_SOAK_CYCLES=N` sets the number of kill cycles (default 20), `FLOWGATE_SOAK_SEED=S`
//! replays one sequence of kill moments:
//! `FLOWGATE_SOAK_CYCLES=1000 cargo test -p flowgate-tests --test all soak -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::plugins::{FILTER_JSON, UPPERCASE};
use serde_json::Value;

use crate::pipeline::{Fixture, listen_addr, sigterm, wait_exit};

/// Events per request.
const PER_POST: u64 = 40;

fn pipeline() -> String {
    format!(
        r#"
delivery = "exactly-once"
commit-interval = "200ms"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 2
[topics.upper]
partitions = 2

[sources.api]
type = "http"
topic = "raw"

[stages.shout]
plugin = "{UPPERCASE}"
input = "raw"
output = "upper"
mode = "event"

[stages.keep]
plugin = "{FILTER_JSON}"
input = "upper"
output = "kept"
batch-size = 64
config = {{ field = "SEQ" }}

[sinks.out]
type = "file"
input = "kept"
path = "out.ndjson"
"#
    )
}

/// What a request's answer says of its events.
enum Answer {
    /// 200: synced, must reach the sink exactly once.
    Acknowledged,
    /// 429/503: refused, never appended.
    Refused,
    /// No complete answer (the process died): appended or not, at most once.
    Unknown,
}

/// One POST of NDJSON; never panics on a connection the kill cut.
fn post(addr: &str, body: &[u8]) -> Answer {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Answer::Unknown;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let head = format!(
        "POST /topics/raw/events HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return Answer::Unknown;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    match status {
        Some(200u16) if text.contains("\"count\"") => Answer::Acknowledged,
        Some(429 | 503) => Answer::Refused,
        Some(other) => panic!("ingest answered {other}: {text}"),
        None => Answer::Unknown,
    }
}

/// Complete lines of the sink: SEQ → how many times it was written. A torn last line (the
/// process was killed mid-write, before it was acknowledged downstream) is not counted.
fn sink_counts(f: &Fixture) -> BTreeMap<u64, u32> {
    let text = std::fs::read_to_string(f.path("out.ndjson")).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut counts = BTreeMap::new();
    for line in complete.lines() {
        let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let seq = e["value"]["SEQ"]
            .as_u64()
            .unwrap_or_else(|| panic!("no SEQ in {line}"));
        *counts.entry(seq).or_insert(0) += 1;
    }
    counts
}

/// Waits (60 s at most) until every acknowledged event is in the sink, then checks that none
/// is there twice and that nothing is there that was not sent.
fn check_sink(f: &Fixture, cycle: usize, acked: &BTreeSet<u64>, sent: u64) {
    let until = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = sink_counts(f);
        if acked.iter().all(|s| counts.contains_key(s)) {
            break counts;
        }
        let missing: Vec<&u64> = acked.iter().filter(|s| !counts.contains_key(s)).collect();
        assert!(
            Instant::now() < until,
            "cycle {cycle}: {} acknowledged events not in the sink after 60 s (first {:?}); log: {}",
            missing.len(),
            &missing[..missing.len().min(5)],
            f.stderr(cycle)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let twice: Vec<(&u64, &u32)> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "cycle {cycle}: events written more than once: {twice:?}"
    );
    let stray: Vec<&u64> = counts.keys().filter(|s| **s >= sent).take(5).collect();
    assert!(stray.is_empty(), "cycle {cycle}: never sent: {stray:?}");
}

/// Posts batches of fresh sequence numbers until `stop`; sends each batch's first sequence
/// number and answer back.
fn poster(
    addr: String,
    first: u64,
    stop: Arc<AtomicBool>,
    answers: mpsc::Sender<(u64, Answer)>,
) -> u64 {
    let mut next = first;
    let pad = "p".repeat(64);
    while !stop.load(Ordering::Relaxed) {
        let body: String = (next..next + PER_POST)
            .map(|s| {
                format!(
                    "{{\"key\":\"k{}\",\"value\":{{\"seq\":{s},\"pad\":\"{pad}\"}}}}\n",
                    s % 7
                )
            })
            .collect();
        let answer = post(&addr, body.as_bytes());
        let dead = matches!(answer, Answer::Unknown);
        let _ = answers.send((next, answer));
        next += PER_POST;
        if dead {
            break;
        }
    }
    next
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the cycles, kills and events (see it with --nocapture)"
)]
fn soak_kills_at_random_moments_lose_and_repeat_no_acknowledged_event() {
    let cycles: usize = std::env::var("FLOWGATE_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FLOWGATE_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("soak: {cycles} cycles, FLOWGATE_SOAK_SEED={seed}");
    let mut rng = Rng(seed);
    let f = Fixture::new(&pipeline());
    let mut acked = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut sent = 0u64;
    let (mut before_listen, mut sink_written, mut after_first_ack, mut later) = (0, 0, 0, 0);

    for cycle in 0..=cycles {
        let mut child = f.spawn(&[], cycle);
        let last = cycle == cycles;
        // One cycle in six is killed while it may still be starting: before its HTTP server
        // listens, before its steps open their checkpoints.
        if !last && cycle > 0 && rng.below(6) == 0 {
            let wait = Duration::from_millis(rng.below(150));
            if wait_exit(&mut child, wait).is_none() {
                child.kill().unwrap();
            }
            child.wait().unwrap();
            before_listen += 1;
            continue;
        }
        let addr = listen_addr(&f, cycle, &mut child);
        check_sink(&f, cycle, &acked, sent);

        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let poster = {
            let (addr, stop) = (addr.clone(), stop.clone());
            let first = sent;
            std::thread::spawn(move || poster(addr, first, stop, tx))
        };
        let mut record = |(first, answer): (u64, Answer), acked: &mut BTreeSet<u64>| {
            let range = first..first + PER_POST;
            match answer {
                Answer::Acknowledged => acked.extend(range),
                Answer::Unknown => unknown.extend(range),
                Answer::Refused => {}
            }
        };
        if last {
            // The last run: some more events, then a clean stop.
            let until = Instant::now() + Duration::from_secs(60);
            let mut got = 0;
            while got < 10 {
                let a = rx
                    .recv_timeout(until.saturating_duration_since(Instant::now()))
                    .expect("no answer from ingest within 60 s");
                got += usize::from(matches!(a.1, Answer::Acknowledged));
                record(a, &mut acked);
            }
            stop.store(true, Ordering::Relaxed);
            for a in rx.iter() {
                record(a, &mut acked);
            }
            sent = poster.join().unwrap();
            // A stop leaves what is still in the topics for the next run: wait until the sink
            // has caught up, then stop.
            check_sink(&f, cycle, &acked, sent);
            sigterm(&child);
            let status = wait_exit(&mut child, Duration::from_secs(30))
                .unwrap_or_else(|| panic!("no exit 30 s after SIGTERM: {}", f.stderr(cycle)));
            assert!(status.success(), "{}", f.stderr(cycle));
            break;
        }
        // The first run is killed as soon as its sink has written (before the sink's first
        // checkpoint); later ones as soon as their sink has written more, right after their
        // first acknowledgement, or at a random moment up to 600 ms in.
        let mode = if cycle == 0 { 0 } else { rng.below(4) };
        if mode == 0 {
            let len = |f: &Fixture| std::fs::metadata(f.path("out.ndjson")).map_or(0, |m| m.len());
            let at_start = len(&f);
            let until = Instant::now() + Duration::from_secs(60);
            while len(&f) == at_start {
                while let Ok(a) = rx.try_recv() {
                    record(a, &mut acked);
                }
                assert!(
                    Instant::now() < until,
                    "cycle {cycle}: the sink wrote nothing in 60 s"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            sink_written += 1;
        } else if mode == 1 {
            let a = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("no answer from ingest within 60 s");
            record(a, &mut acked);
            after_first_ack += 1;
        } else {
            let until = Instant::now() + Duration::from_millis(rng.below(600));
            while let Ok(a) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                record(a, &mut acked);
            }
            later += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for a in rx.iter() {
            record(a, &mut acked);
        }
        sent = poster.join().unwrap();
    }

    // After the clean stop: every acknowledged event exactly once; an event whose request a
    // kill cut at most once.
    let counts = sink_counts(&f);
    check_sink(&f, cycles, &acked, sent);
    let maybe = unknown.iter().filter(|s| counts.contains_key(s)).count();
    assert!(
        acked.len() >= 10 * PER_POST as usize,
        "too few events acknowledged: {}",
        acked.len()
    );
    eprintln!(
        "soak: {} acknowledged, {} of {} cut requests' events appended, kills: {before_listen} while starting, {sink_written} as the sink wrote, {after_first_ack} right after the first ack, {later} later",
        acked.len(),
        maybe,
        unknown.len()
    );
}
