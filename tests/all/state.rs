//! Keyed state and windows, through the real binary: window results against a computation
//! written here from the definitions, state and windows across SIGKILL, state across a hot
//! reload.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::plugins::{COUNT_THEN_FAIL, STATE_COUNT, WINDOW_STATS};
use serde_json::{Value, json};

use crate::pipeline::{Fixture, wait_exit};

#[derive(Clone, Debug)]
struct Ev {
    key: String,
    ts: i64,
    amount: i64,
}

/// Events in arrival order: time mostly moves on, some events are out of order by up to
/// `disorder` ms, a few are far behind (late).
fn events(n: usize, keys: u64, disorder: i64, seed: u64) -> Vec<Ev> {
    let mut rng = Rng(seed);
    let mut clock = 1_700_000_000_000i64;
    (0..n)
        .map(|_| {
            clock += rng.below(40) as i64;
            let behind = if rng.below(50) == 0 {
                disorder * 4 + rng.below(disorder as u64) as i64
            } else {
                rng.below(disorder as u64) as i64
            };
            Ev {
                key: format!("k{}", rng.below(keys)),
                ts: clock - behind,
                amount: rng.below(1000) as i64 - 200,
            }
        })
        .collect()
}

fn write_events(f: &Fixture, name: &str, evs: &[Ev]) {
    let mut s = String::new();
    for e in evs {
        s.push_str(&format!(
            "{{\"key\":\"{}\",\"value\":{{\"amount\":{}}},\"timestamp\":{}}}\n",
            e.key, e.amount, e.ts
        ));
    }
    std::fs::write(f.path(name), s).unwrap();
}

/// count, sum, min, max of a window.
type Stats = (u64, i64, i64, i64);

/// Results by key and window bounds.
type Windows = BTreeMap<(String, i64, i64), Stats>;

fn fold(acc: Option<Stats>, x: i64) -> Stats {
    match acc {
        None => (1, x, x, x),
        Some((n, s, lo, hi)) => (n + 1, s + x, lo.min(x), hi.max(x)),
    }
}

/// The windows (start, end) holding `ts`.
fn windows_of(ts: i64, size: i64, slide: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = ts - ts.rem_euclid(slide);
    while start > ts - size {
        out.push((start, start + size));
        start -= slide;
    }
    out
}

/// What a windowed aggregation must produce, computed from the definitions: an event is late
/// when every window it is in ends at or before the watermark (the largest event time seen
/// before it, less the out-of-orderness) less the allowed lateness; each window's final result
/// holds every event that was not late for it.
fn expected_windows(
    evs: &[Ev],
    size: i64,
    slide: i64,
    ooo: i64,
    lateness: i64,
) -> (Windows, Vec<i64>) {
    let mut max_ts: Option<i64> = None;
    let mut out: Windows = BTreeMap::new();
    let mut late = Vec::new();
    for e in evs {
        let wm = max_ts.map_or(i64::MIN, |m| m - ooo);
        let open: Vec<(i64, i64)> = windows_of(e.ts, size, slide)
            .into_iter()
            .filter(|(_, end)| wm == i64::MIN || end + lateness > wm)
            .collect();
        if open.is_empty() {
            late.push(e.ts);
            continue;
        }
        for (s, end) in open {
            let k = (e.key.clone(), s, end);
            let acc = out.get(&k).copied();
            out.insert(k, fold(acc, e.amount));
        }
        max_ts = Some(max_ts.map_or(e.ts, |m| m.max(e.ts)));
    }
    (out, late)
}

/// The last result of each window in a run's output, and how many windows fired more than once.
/// At least once, a result may be written again after a kill (`repeats`).
fn got_windows(lines: &[Value], repeats: bool) -> (Windows, usize) {
    let mut last: BTreeMap<(String, i64, i64), (u64, Stats)> = BTreeMap::new();
    for l in lines {
        let v = &l["value"];
        let fire: u64 = l["headers"]["flowgate-window-fire"]
            .as_str()
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("no flowgate-window-fire header: {l}"));
        let k = (
            v["key"]
                .as_str()
                .unwrap_or_else(|| panic!("no key: {l}"))
                .to_owned(),
            v["start"].as_i64().unwrap(),
            v["end"].as_i64().unwrap(),
        );
        assert_eq!(
            l["key"].as_str(),
            Some(k.0.as_str()),
            "output keyed by its window's key"
        );
        assert_eq!(
            l["timestamp"].as_i64(),
            Some(k.2 - 1),
            "output time is the window's last ms"
        );
        let stats = (
            v["count"].as_u64().unwrap_or_else(|| panic!("{l}")),
            v["sum"].as_f64().unwrap_or_else(|| panic!("{l}")) as i64,
            v["min"].as_f64().unwrap() as i64,
            v["max"].as_f64().unwrap() as i64,
        );
        let prev = last.get(&k).map_or(0, |(f, _)| *f);
        if !(repeats && fire <= prev) {
            assert_eq!(fire, prev + 1, "window {k:?} fired out of order");
        }
        if fire > prev {
            last.insert(k, (fire, stats));
        }
    }
    let updated = last.values().filter(|(f, _)| *f > 1).count();
    (
        last.into_iter().map(|(k, (_, s))| (k, s)).collect(),
        updated,
    )
}

fn window_pipeline(window: &str, extra: &str) -> String {
    format!(
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
batch-size = 97
window = {window}
late-output = "late"
config = {{ field = "amount" }}
{extra}

[sinks.out]
type = "file"
input = "stats"
path = "out.ndjson"

[sinks.late]
type = "file"
input = "late"
path = "late.ndjson"
"#
    )
}

fn check_windows(size: i64, slide: i64, ooo: i64, lateness: i64, disorder: i64) {
    let kind = if size == slide {
        format!("{{ kind = \"tumbling\", size = \"{size}ms\" }}")
    } else {
        format!("{{ kind = \"hopping\", size = \"{size}ms\", slide = \"{slide}ms\" }}")
    };
    let f = Fixture::new(&window_pipeline(
        &kind,
        &format!("out-of-orderness = \"{ooo}ms\"\nallowed-lateness = \"{lateness}ms\""),
    ));
    let evs = events(5_000, 7, disorder, 0x5eed + size as u64 + lateness as u64);
    write_events(&f, "in.ndjson", &evs);
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    let (want, want_late) = expected_windows(&evs, size, slide, ooo, lateness);
    let (got, updated) = got_windows(&f.lines("out.ndjson"), false);
    assert!(
        want_late.len() > 10,
        "the input has late events: {}",
        want_late.len()
    );
    let got_late: Vec<i64> = f
        .lines("late.ndjson")
        .iter()
        .map(|l| l["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(got_late, want_late, "late events");
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "windows missing: {missing:?}");
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "window {k:?}");
    }
    assert_eq!(got.len(), want.len());
    if lateness > 0 {
        assert!(updated > 0, "allowed lateness produced no updated window");
    } else {
        assert_eq!(updated, 0, "a window fired twice without allowed lateness");
    }
}

#[test]
fn tumbling_windows_with_out_of_order_and_late_events_match_the_definition() {
    check_windows(1_000, 1_000, 150, 0, 300);
}

#[test]
fn hopping_windows_with_allowed_lateness_match_the_definition() {
    check_windows(2_000, 500, 100, 400, 600);
}

#[test]
fn session_windows_match_gap_clustering() {
    const GAP: i64 = 120;
    let f = Fixture::new(&window_pipeline(
        &format!("{{ kind = \"session\", gap = \"{GAP}ms\" }}"),
        "out-of-orderness = \"1000000h\"",
    ));
    let mut rng = Rng(77);
    let mut evs = Vec::new();
    for i in 0..3_000 {
        let key = format!("k{}", rng.below(5));
        // Bursts with pauses: sessions of a few events, some bridged by a late-arriving one.
        let ts = 1_000_000 + (i / 10) * 400 + rng.below(300) as i64;
        evs.push(Ev {
            key,
            ts,
            amount: rng.below(100) as i64,
        });
    }
    write_events(&f, "in.ndjson", &evs);
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    // Per key: sort by time; a session runs while the next event is within GAP of the
    // session's last event.
    let mut by_key: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
    for e in &evs {
        by_key.entry(e.key.clone()).or_default().push(e);
    }
    let mut want: Windows = BTreeMap::new();
    for (k, mut es) in by_key {
        es.sort_by_key(|e| e.ts);
        let mut cur: Option<(i64, i64, Stats)> = None;
        for e in es {
            cur = Some(match cur {
                Some((s, end, acc)) if e.ts < end => {
                    (s, end.max(e.ts + GAP), fold(Some(acc), e.amount))
                }
                other => {
                    if let Some((s, end, acc)) = other {
                        want.insert((k.clone(), s, end), acc);
                    }
                    (e.ts, e.ts + GAP, fold(None, e.amount))
                }
            });
        }
        let (s, end, acc) = cur.unwrap();
        want.insert((k, s, end), acc);
    }
    let (got, updated) = got_windows(&f.lines("out.ndjson"), false);
    assert_eq!(updated, 0);
    assert!(want.len() > 100, "{} sessions", want.len());
    assert_eq!(got, want);
}

#[test]
fn a_stage_plugin_under_a_window_is_refused_with_the_fix() {
    let f = Fixture::new(&format!(
        r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.counts]
plugin = "{STATE_COUNT}"
input = "raw"
output = "out"

[stages.stats]
plugin = "{WINDOW_STATS}"
input = "raw"
output = "stats"
window = {{ kind = "tumbling", size = "0s" }}

[stages.stats2]
plugin = "{WINDOW_STATS}"
input = "raw"
output = "stats2"
"#
    ));
    let out = f.command(&["validate"]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("window `size` must be at least 1ms"),
        "{text}"
    );
    std::fs::write(
        f.path("pipeline.toml"),
        std::fs::read_to_string(f.path("pipeline.toml"))
            .unwrap()
            .replace("\"0s\"", "\"1s\""),
    )
    .unwrap();
    std::fs::write(f.path("in.ndjson"), "").unwrap();
    let out = f.command(&["validate"]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("uses keyed state") && text.contains("state = true"),
        "{text}"
    );
    assert!(
        text.contains("implements the aggregator world, and the stage has no `window`"),
        "{text}"
    );
}

/// Input for the kill tests: `n` keyed events over `keys` keys, times moving on.
fn keyed_input(f: &Fixture, n: usize, keys: u64) -> Vec<Ev> {
    let evs = events(n, keys, 200, 42);
    write_events(f, "in.ndjson", &evs);
    evs
}

fn state_pipeline(delivery: &str) -> String {
    format!(
        r#"
delivery = "{delivery}"
commit-interval = "20ms"

[topics.raw]
partitions = 2

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.counts]
plugin = "{STATE_COUNT}"
input = "raw"
output = "counts"
batch-size = 64
state = true

[stages.stats]
plugin = "{WINDOW_STATS}"
input = "raw"
output = "stats"
batch-size = 128
window = {{ kind = "tumbling", size = "2s" }}
out-of-orderness = "100ms"
late-output = "late"
config = {{ field = "amount" }}

[sinks.counts]
type = "file"
input = "counts"
path = "counts.ndjson"

[sinks.stats]
type = "file"
input = "stats"
path = "stats.ndjson"

[sinks.late]
type = "file"
input = "late"
path = "late.ndjson"
"#
    )
}

/// Per key, how many times each count was written.
fn counts(f: &Fixture) -> BTreeMap<String, BTreeMap<u64, u32>> {
    let mut out: BTreeMap<String, BTreeMap<u64, u32>> = BTreeMap::new();
    for l in f.lines("counts.ndjson") {
        let n = l["value"].as_u64().unwrap();
        *out.entry(l["key"].as_str().unwrap().to_owned())
            .or_default()
            .entry(n)
            .or_default() += 1;
    }
    out
}

fn sorted_lines(f: &Fixture, name: &str) -> Vec<String> {
    let mut v: Vec<String> = f.lines(name).iter().map(Value::to_string).collect();
    v.sort();
    v
}

#[expect(
    clippy::print_stderr,
    reason = "reports how many kills landed (see it with --nocapture)"
)]
fn kill_and_check_state(delivery: &str) {
    const N: usize = 20_000;
    let f = Fixture::new(&state_pipeline(delivery));
    let evs = keyed_input(&f, N, 50);
    let kills = f.kill_repeatedly(89, || {});
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
    assert!(kills >= 3, "only {kills} kills landed mid-run");

    // Every key's counts are 1..=its number of events in the input topic: none counted
    // twice, none missed. (At least once, the source may have appended some events twice
    // before a kill; they are events of the topic and count.)
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    if delivery == "exactly-once" {
        for e in &evs {
            *per_key.entry(e.key.clone()).or_default() += 1;
        }
    } else {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
            .args(["consume", "raw", "--from-beginning", "--data-dir"])
            .arg(f.path("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            *per_key
                .entry(e["key"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let total: u64 = per_key.values().sum();
        assert!(
            total >= evs.len() as u64,
            "the input topic lost events: {total}"
        );
    }
    let got = counts(&f);
    assert_eq!(got.len(), per_key.len());
    let mut repeated = 0;
    for (k, n) in &per_key {
        let seen = &got[k];
        let values: BTreeSet<u64> = seen.keys().copied().collect();
        let want: BTreeSet<u64> = (1..=*n).collect();
        assert!(
            values == want,
            "counts of {k} ({n} events): missing {:?}, extra {:?}",
            want.difference(&values).collect::<Vec<_>>(),
            values.difference(&want).collect::<Vec<_>>()
        );
        repeated += seen.values().filter(|&&c| c > 1).count();
    }
    if delivery == "exactly-once" {
        assert_eq!(repeated, 0, "counts written twice after {kills} kills");
    }

    // The windows equal those of a run that was never killed.
    let clean = Fixture::new(&state_pipeline(delivery));
    write_events(&clean, "in.ndjson", &evs);
    let (status, stderr) = clean.run_bounded();
    assert!(status.success(), "{stderr}");
    let (mine, theirs) = (
        sorted_lines(&f, "stats.ndjson"),
        sorted_lines(&clean, "stats.ndjson"),
    );
    if delivery == "exactly-once" {
        let extra: Vec<&String> = mine
            .iter()
            .filter(|l| !theirs.contains(l))
            .take(3)
            .collect();
        let missing: Vec<&String> = theirs
            .iter()
            .filter(|l| !mine.contains(l))
            .take(3)
            .collect();
        assert!(
            mine == theirs,
            "window results after {kills} kills: {} lines vs {}; extra {extra:#?}; missing {missing:#?}",
            mine.len(),
            theirs.len()
        );
        assert_eq!(
            sorted_lines(&f, "late.ndjson"),
            sorted_lines(&clean, "late.ndjson")
        );
    } else {
        // Events the source appended twice count twice: the same windows, none smaller.
        let (a, _) = got_windows(&f.lines("stats.ndjson"), true);
        let (b, _) = got_windows(&clean.lines("stats.ndjson"), false);
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, (n, ..)) in &b {
            assert!(a[k].0 >= *n, "window {k:?} lost events after {kills} kills");
        }
    }
    eprintln!(
        "{delivery}: {kills} kills, {repeated} counts repeated, {} windows",
        theirs.len()
    );
}

#[test]
fn keyed_state_and_windows_stay_exact_across_kills_at_least_once() {
    kill_and_check_state("at-least-once");
}

#[test]
fn keyed_state_and_windows_stay_exact_across_kills_exactly_once() {
    kill_and_check_state("exactly-once");
}

#[test]
fn keyed_state_survives_a_hot_reload_of_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("counter.wasm");
    let original = std::fs::read(STATE_COUNT).unwrap();
    std::fs::write(&plugin, &original).unwrap();
    let f = Fixture::new(&format!(
        r#"
[http]
listen = "127.0.0.1:0"

[sources.ingest]
type = "http"
topic = "raw"

[stages.counts]
plugin = "{}"
input = "raw"
output = "counts"
state = true
batch-size = 16

[sinks.out]
type = "file"
input = "counts"
path = "counts.ndjson"
"#,
        plugin.display()
    ));
    let mut child = f.spawn(&[], 0);
    let addr = crate::pipeline::listen_addr(&f, 0, &mut child);
    let post = |n: usize| {
        let body: String = (0..n)
            .map(|i| json!({"key": format!("k{}", i % 3), "value": i}).to_string() + "\n")
            .collect();
        let (status, _, text) = crate::pipeline::http(
            &addr,
            "POST",
            "/topics/raw/events",
            &[("content-type", "application/x-ndjson")],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
    };
    post(300);
    let wait_for = |lines: usize| {
        let until = Instant::now() + Duration::from_secs(30);
        while f.lines_so_far("counts.ndjson").len() < lines {
            assert!(
                Instant::now() < until,
                "only {} outputs",
                f.lines_so_far("counts.ndjson").len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(300);
    // A new build of the plugin (a custom section added: another hash), written over the old.
    let mut v2 = original.clone();
    v2.extend_from_slice(&[0, 9, 4, b'v', b'e', b'r', b'2', b'2', b'0', b'2', b'6']);
    let tmp = dir.path().join("counter.wasm.tmp");
    std::fs::write(&tmp, &v2).unwrap();
    std::fs::rename(&tmp, &plugin).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !f.stderr(0).contains("new plugin version ready") {
        assert!(Instant::now() < until, "no reload seen: {}", f.stderr(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    post(300);
    wait_for(600);
    crate::pipeline::sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    assert!(status.success(), "{}", f.stderr(0));
    let got = counts(&f);
    for k in ["k0", "k1", "k2"] {
        let values: Vec<u64> = got[k].keys().copied().collect();
        assert_eq!(
            values,
            (1..=200).collect::<Vec<u64>>(),
            "{k}: counts restarted or skipped across the reload"
        );
    }
}

/// A row that fails keeps none of its keyed-state writes, whether the plugin is called per
/// event or per batch: the counts the plugin outputs and the state after the call are those of
/// the rows that went through.
#[test]
fn a_failed_row_keeps_none_of_its_state_writes_per_event_and_per_batch() {
    use flowgate::event::{self, Event};
    use flowgate::state::SharedState;

    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(COUNT_THEN_FAIL.as_ref()).unwrap();
    let events: Vec<Event> = ["good", "bad", "good", "bad", "good"]
        .iter()
        .enumerate()
        .map(|(i, v)| Event {
            key: Some(b"k".to_vec()),
            value: v.as_bytes().to_vec(),
            timestamp: i as i64,
            headers: Vec::new(),
        })
        .collect();
    for per_batch in [false, true] {
        let state = SharedState::new(1 << 20);
        let mut inst = plugin.instantiate(Default::default(), Vec::new()).unwrap();
        inst.attach_state(state.clone());
        let mut values = Vec::new();
        let mut failed = Vec::new();
        if per_batch {
            let out = inst.process_batch(&event::batch_of(&events)).unwrap();
            let cols = event::columns(&out.output).unwrap();
            values.extend(
                cols.rows()
                    .map(|r| String::from_utf8_lossy(r.value).into_owned()),
            );
            failed.extend(out.failures.iter().map(|f| f.row));
        } else {
            for (i, e) in events.iter().enumerate() {
                match inst.on_event(e) {
                    Ok(out) => values.extend(
                        out.iter()
                            .map(|o| String::from_utf8_lossy(&o.value).into_owned()),
                    ),
                    Err(_) => failed.push(i as u32),
                }
            }
        }
        let mode = if per_batch { "on-batch" } else { "on-event" };
        assert_eq!(values, ["1", "2", "3"], "{mode}");
        assert_eq!(failed, [1, 3], "{mode}");
        assert_eq!(
            state.lock().get(b"k"),
            Some(&3u64.to_le_bytes()[..]),
            "{mode}: the state counts the failed rows"
        );
    }
}
