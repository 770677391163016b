//! Several `flowgate run` processes of one pipeline on a Kafka log: the stage's partitions are
//! shared through its consumer group, keyed state moves with a partition (in its checkpoint),
//! and a kill -9 or a scale from one process to three and back neither loses nor repeats a
//! count. The output is read back with the independent client (read_committed).

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::fixture::{Fixture, http, sigterm, wait_exit};
use flowgate_tests::kafka::{Broker, Record};
use flowgate_tests::netns::Namespace;
use flowgate_tests::plugins::{MARK_A, MARK_B, STATE_COUNT, WINDOW_STATS};

use crate::{Timer, read_until};

/// Keys of the input: each record is keyed `key-<seq mod KEYS>`.
const KEYS: u64 = 50;
/// Partitions of the input and output topics.
const PARTITIONS: u32 = 6;

/// External topic `in` (6 partitions) → state-count (keyed state) → `counts`, exactly-once, on
/// the Kafka log with `prefix`; with `sink`, `counts` also goes to a file, and `in` to a
/// window stage too (counts per key and second, to `windows`).
fn pipeline(name: &str, kafka: &Broker, prefix: &str, sink: bool) -> String {
    let sink = if sink {
        r#"
# One file, so one process at a time writes it: the sink holds a lease.
[sinks.file]
type = "file"
input = "counts"
path = "counts.ndjson"

[topics.windows]
partitions = 6

[stages.per-second]
plugin = "{WINDOW_STATS}"
input = "in"
output = "windows"
window = { kind = "tumbling", size = "1s" }
"#
        .replace("{WINDOW_STATS}", WINDOW_STATS)
    } else {
        String::new()
    };
    format!(
        r#"{head}
[topics.counts]
partitions = {PARTITIONS}

[stages.count]
plugin = "{STATE_COUNT}"
input = "in"
output = "counts"
state = true
{sink}"#,
        head = head(name, kafka, prefix)
    )
}

/// External topic `in` → mark-a → `out`, exactly-once, on the Kafka log with `prefix`, with an
/// admin API on a port of its own.
fn marking(name: &str, kafka: &Broker, prefix: &str) -> String {
    format!(
        r#"{head}
[http]
listen = "127.0.0.1:0"

[topics.out]
partitions = {PARTITIONS}

[stages.mark]
plugin = "{MARK_A}"
input = "in"
output = "out"
"#,
        head = head(name, kafka, prefix)
    )
}

/// The start of the tests' pipelines: `name`, exactly-once, the Kafka log with `prefix` (a short
/// session), and the external input topic `in`.
fn head(name: &str, kafka: &Broker, prefix: &str) -> String {
    format!(
        r#"name = "{name}"
delivery = "exactly-once"
commit-interval = "200ms"

[log]
backend = "kafka"
brokers = "{brokers}"
topic-prefix = "{prefix}"
session-timeout = "3s"

[topics.in]
partitions = {PARTITIONS}
external = true
"#,
        brokers = kafka.bootstrap()
    )
}

/// Process `n` of the fixture's pipeline, with a data directory (so an instance name) of its own.
fn start(f: &Fixture, n: usize, log: usize) -> Child {
    let dir = f.path(&format!("data-{n}"));
    let file = std::fs::File::create(f.path(&format!("run-{log}.log"))).unwrap();
    f.command(&["run", "--no-watch", "--data-dir", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Waits up to `step` on the exit of the first of `children` (and looks at the others): an exit
/// fails the test. What the caller polls for is looked at again after it.
fn watch<'a>(
    f: &Fixture,
    children: impl IntoIterator<Item = (usize, &'a mut Child)>,
    step: Duration,
) {
    for (i, (l, c)) in children.into_iter().enumerate() {
        let exited = if i == 0 {
            wait_exit(c, step)
        } else {
            c.try_wait().unwrap()
        };
        if let Some(status) = exited {
            panic!("run {l} exited ({status}): {}", f.stderr(l));
        }
    }
}

/// Waits until each of `logs` says its stage serves partitions.
fn wait_serving(f: &Fixture, logs: &[usize], children: &mut [&mut Child]) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if logs
            .iter()
            .all(|&l| f.stderr(l).contains("stage serves its partitions"))
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "not every process serves partitions after 90 s: {}",
            logs.iter()
                .map(|&l| format!("run {l}: {}", f.stderr(l)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        watch(
            f,
            logs.iter()
                .copied()
                .zip(children.iter_mut().map(|c| &mut **c)),
            Duration::from_millis(20),
        );
    }
}

/// Per key, the counts read: each key's must be exactly 1 ..= its number of input records, once
/// each. Returns the problems, if any.
fn exact_counts<'a>(
    read: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    records: u64,
) -> Result<(), String> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, value) in read {
        let key = String::from_utf8_lossy(key).into_owned();
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("a count that is no number: {key} = {value:?}"))?;
        by_key.entry(key).or_default().push(n);
    }
    let mut problems = Vec::new();
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let want = (records / KEYS + u64::from(k < records % KEYS)) as usize;
        let mut got = by_key.remove(&key).unwrap_or_default();
        got.sort_unstable();
        let repeated = got.windows(2).filter(|w| w[0] == w[1]).count();
        got.dedup();
        let missing = (1..=want as u64)
            .filter(|n| got.binary_search(n).is_err())
            .count();
        if repeated > 0 || missing > 0 || got.len() != want {
            problems.push(format!(
                "{key}: {missing} of 1..={want} missing, {repeated} repeated, {} distinct",
                got.len()
            ));
        }
    }
    if !by_key.is_empty() {
        problems.push(format!(
            "keys never written: {:?}",
            by_key.keys().collect::<Vec<_>>()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems[..problems.len().min(10)].join("; "))
    }
}

/// The (key, value) of each record.
fn pairs(read: &[Record]) -> impl Iterator<Item = (&[u8], &[u8])> {
    read.iter().map(|r| {
        (
            r.key.as_deref().unwrap_or_default(),
            r.value.as_deref().unwrap_or_default(),
        )
    })
}

/// Reads `<prefix>counts` until every count is there (or 180 s passed) and checks them.
fn check_counts(
    kafka: &Broker,
    prefix: &str,
    records: u64,
    alive: impl FnMut() -> Result<(), String>,
) {
    let read = read_until(
        kafka,
        &format!("{prefix}counts"),
        records as usize,
        Duration::from_secs(180),
        alive,
        |read| exact_counts(pairs(read), records),
    );
    assert_eq!(read.len() as u64, records, "one count per input record");
}

fn stop_all(f: &Fixture, children: Vec<(usize, Child)>) {
    for (_, c) in &children {
        sigterm(c);
    }
    for (l, mut c) in children {
        let status = wait_exit(&mut c, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("run {l}: no exit 60 s after SIGTERM: {}", f.stderr(l)));
        assert!(status.success(), "run {l}: {status}: {}", f.stderr(l));
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the seed and the kill moment (see them with --nocapture)"
)]
fn three_processes_share_a_stage_and_a_kill_9_loses_and_repeats_no_count() {
    let _t = Timer::start("scale_kill");
    const RECORDS: u64 = 100_000;
    let seed = flowgate_tests::seed("FLOWGATE_KAFKA_SCALE_SEED");
    let mut rng = Rng(seed);
    let kafka = Broker::shared();
    let prefix = "scale-kill.";
    kafka.create_topic(&format!("{prefix}in"), PARTITIONS);
    let f = Fixture::new(&pipeline("scale-kill", kafka, prefix, true));
    let mut a = start(&f, 0, 0);
    let mut b = start(&f, 1, 1);
    let mut c = start(&f, 2, 2);
    wait_serving(&f, &[0, 1, 2], &mut [&mut a, &mut b, &mut c]);

    let producer = kafka.spawn_keyed_producer(
        &format!("{prefix}in"),
        0,
        RECORDS,
        Some(20_000.0),
        Some(KEYS),
    );
    // Process 0 dies at a random moment while the input flows (it is written over 5 s), and
    // comes back after up to 2 s.
    let kill_at = Duration::from_millis(500 + rng.below(3_500));
    if let Some(status) = wait_exit(&mut a, kill_at) {
        panic!("run 0 exited by itself ({status}): {}", f.stderr(0));
    }
    a.kill().unwrap();
    a.wait().unwrap();
    let back_after = Duration::from_millis(rng.below(2_000));
    if let Some(status) = wait_exit(&mut b, back_after) {
        panic!("run 1 exited ({status}): {}", f.stderr(1));
    }
    let a = start(&f, 0, 3);
    eprintln!(
        "kafka scale kill: FLOWGATE_KAFKA_SCALE_SEED={seed}: process 0 killed {kill_at:?} after the input began, back {back_after:?} later"
    );
    producer.finish();
    let mut children = vec![(3, a), (1, b), (2, c)];
    check_counts(kafka, prefix, RECORDS, || {
        for (l, c) in children.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                return Err(format!("run {l} exited ({status}): {}", f.stderr(*l)));
            }
        }
        Ok(())
    });
    // The file sink (in whichever process holds its lease) has every count once too.
    let until = Instant::now() + Duration::from_secs(120);
    let file = loop {
        let events = crate::ndjson_file(&f.path("counts.ndjson"));
        if events.len() as u64 >= RECORDS || Instant::now() >= until {
            break events;
        }
        watch(
            &f,
            children.iter_mut().map(|(l, c)| (*l, c)),
            Duration::from_millis(100),
        );
    };
    let in_file = file
        .iter()
        .map(|e| (e.key.as_deref().unwrap_or_default(), &e.value[..]));
    if let Err(e) = exact_counts(in_file, RECORDS) {
        panic!("the file sink's counts: {e}");
    }
    stop_all(&f, children);
    // The windows are those of a run without a kill: record `seq` has time 1000 + 10 * seq ms
    // and key `key-<seq mod 50>`, so each full second holds 2 records of each key. Each window
    // fires once its partition's events pass its end: every window of every key up to the last
    // seconds is there, once, counting 2.
    let windows = read_until(
        kafka,
        &format!("{prefix}windows"),
        (KEYS * 990) as usize,
        Duration::from_secs(120),
        || Ok(()),
        |read| {
            let mut seen = std::collections::BTreeSet::new();
            for r in read {
                let w: serde_json::Value =
                    serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                        .map_err(|e| format!("a window result that is no JSON ({e}): {r:?}"))?;
                let (key, start) = (
                    w["key"].as_str().unwrap_or_default().to_owned(),
                    w["start"].as_i64().unwrap_or(-1),
                );
                if w["count"] != 2 || w["end"].as_i64() != Some(start + 1000) {
                    return Err(format!("window {w} is not a second of 2 events"));
                }
                if !seen.insert((key.clone(), start)) {
                    return Err(format!("window {key} at {start} fired twice"));
                }
            }
            let missing = (0..KEYS)
                .flat_map(|k| (0..989).map(move |s| (format!("key-{k}"), 1000 + s * 1000)))
                .filter(|w| !seen.contains(w))
                .count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} windows missing"))
            }
        },
    );
    eprintln!(
        "kafka scale kill: {} windows, each once and exact",
        windows.len()
    );
    // The counts are in the stage's changelog, read back with the independent client: per key
    // the last record holds its final count.
    let changelog = kafka.consume(
        &format!("{prefix}scale-kill.count.changelog"),
        flowgate_tests::kafka::Isolation::ReadCommitted,
        KEYS as usize,
        Duration::from_secs(60),
    );
    let mut last: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for r in &changelog {
        let value = r.value.as_deref().unwrap_or_default();
        let n = <[u8; 8]>::try_from(value).map(u64::from_le_bytes);
        last.insert(r.key.clone().unwrap_or_default(), n.unwrap_or(u64::MAX));
    }
    // RECORDS is a multiple of KEYS: every key has the same count.
    const _: () = assert!(RECORDS.is_multiple_of(KEYS));
    for k in 0..KEYS {
        let want = RECORDS / KEYS;
        assert_eq!(
            last.get(format!("ekey-{k}").as_bytes()),
            Some(&want),
            "the changelog's last count of key-{k}"
        );
    }

    // The killed process's partitions were served again after the kill: by the others, or by
    // the process once it was back.
    let held = served(&f.stderr(0));
    let killed = held.last().cloned().unwrap_or_default();
    assert!(
        !killed.is_empty(),
        "process 0 served partitions: {}",
        f.stderr(0)
    );
    let after: std::collections::BTreeSet<u32> = [1, 2]
        .iter()
        .flat_map(|&l| served(&f.stderr(l)).into_iter().skip(1).flatten())
        .chain(served(&f.stderr(3)).into_iter().flatten())
        .collect();
    assert!(
        killed.iter().all(|p| after.contains(p)),
        "partitions {killed:?} of the killed process are served after the kill (served then: {after:?})"
    );
}

/// The bytes of keyed state the runs `logs` restored from the changelog, over every restore.
fn restored_bytes(f: &Fixture, logs: &[usize]) -> u64 {
    logs.iter()
        .flat_map(|&l| {
            f.stderr(l)
                .lines()
                .filter(|l| l.contains("keyed state restored from the changelog"))
                .filter_map(|l| l.split("bytes=").nth(1)?.split(' ').next()?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .sum()
}

/// The partitions of each "stage serves its partitions" line of a run's log, in order.
fn served(log: &str) -> Vec<Vec<u32>> {
    log.lines()
        .filter(|l| l.contains("stage serves its partitions"))
        .filter_map(|l| {
            let list = l.split("partitions=[").nth(1)?.split(']').next()?;
            Some(
                list.split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn scaling_from_one_process_to_three_and_back_keeps_every_count_exact() {
    let _t = Timer::start("scale_out_in");
    const RECORDS: u64 = 60_000;
    let kafka = Broker::shared();
    let prefix = "scale-out.";
    kafka.create_topic(&format!("{prefix}in"), PARTITIONS);
    let f = Fixture::new(&pipeline("scale-out", kafka, prefix, true));
    let mut a = start(&f, 0, 0);
    wait_serving(&f, &[0], &mut [&mut a]);
    let producer = kafka.spawn_keyed_producer(
        &format!("{prefix}in"),
        0,
        RECORDS,
        Some(10_000.0),
        Some(KEYS),
    );

    // Two more join while the input flows, once the first has counted keys in every partition
    // (so whichever partitions move to them, they restore state it wrote)...
    read_until(
        kafka,
        &format!("{prefix}counts"),
        KEYS as usize,
        Duration::from_secs(120),
        || match a.try_wait().unwrap() {
            Some(status) => Err(format!("run 0 exited ({status}): {}", f.stderr(0))),
            None => Ok(()),
        },
        |read| {
            let partitions: std::collections::BTreeSet<i32> =
                read.iter().map(|r| r.partition).collect();
            if partitions.len() == PARTITIONS as usize {
                Ok(())
            } else {
                Err(format!("counts in partitions {partitions:?} only"))
            }
        },
    );
    let mut b = start(&f, 1, 1);
    let mut c = start(&f, 2, 2);
    wait_serving(&f, &[1, 2], &mut [&mut b, &mut c]);
    // ... and leave again (SIGTERM: each finishes its batch and checkpoints before its
    // partitions move).
    for (l, child) in [(1, &mut b), (2, &mut c)] {
        sigterm(child);
        let status = wait_exit(child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("run {l}: no exit 60 s after SIGTERM: {}", f.stderr(l)));
        assert!(status.success(), "run {l}: {status}: {}", f.stderr(l));
    }
    producer.finish();
    check_counts(kafka, prefix, RECORDS, || match a.try_wait().unwrap() {
        Some(status) => Err(format!("run 0 exited ({status}): {}", f.stderr(0))),
        None => Ok(()),
    });
    // The partitions that moved took their counts with them, through the changelog: the two
    // that joined restored state the first had written, and the first restored theirs.
    assert!(
        restored_bytes(&f, &[1, 2]) > 0,
        "the processes that joined restored no state: {}",
        f.stderr(1)
    );
    // After the two left, the first process serves all six partitions again (the counts can
    // be complete before its last rebalance is).
    let all = "partitions=[0, 1, 2, 3, 4, 5]";
    let until = Instant::now() + Duration::from_secs(60);
    while f.stderr(0).matches(all).count() < 2 {
        assert!(
            Instant::now() < until,
            "process 0 does not serve every partition again 60 s after the others left: {}",
            f.stderr(0)
        );
        watch(&f, [(0, &mut a)], Duration::from_millis(50));
    }
    stop_all(&f, vec![(0, a)]);
}

#[test]
fn a_deploy_made_at_one_process_is_live_at_all_three() {
    let _t = Timer::start("scale_deploy");
    const RECORDS: u64 = 20_000;
    let kafka = Broker::shared();
    let prefix = "scale-deploy.";
    kafka.create_topic(&format!("{prefix}in"), PARTITIONS);
    let f = Fixture::new(&marking("scale-deploy", kafka, prefix));
    let mut children: Vec<Child> = (0..3).map(|n| start(&f, n, n)).collect();
    {
        let mut refs: Vec<&mut Child> = children.iter_mut().collect();
        wait_serving(&f, &[0, 1, 2], &mut refs);
    }
    let addrs: Vec<String> = children
        .iter_mut()
        .enumerate()
        .map(|(n, c)| flowgate_tests::fixture::listen_addr(&f, n, c))
        .collect();
    kafka.produce_generated(&format!("{prefix}in"), 0, RECORDS / 2);

    // mark-b, deployed at process 0 alone.
    let b = std::fs::read(MARK_B).unwrap();
    let (code, _, body) = http(&addrs[0], "POST", "/admin/stages/mark/plugin", &[], &b);
    assert_eq!(code, 200, "{body}");
    let hash = serde_json::from_str::<serde_json::Value>(&body).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = |addr: &str| {
        let (code, _, body) = http(addr, "GET", "/admin/status", &[], b"");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["stage"] == "mark"))
            .map(|s| s["live"]["hash"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let until = Instant::now() + Duration::from_secs(60);
    while addrs.iter().any(|a| live(a) != hash) {
        assert!(
            Instant::now() < until,
            "the deploy is not live at every process after 60 s: {:?}",
            addrs.iter().map(|a| live(a)).collect::<Vec<_>>()
        );
        watch(
            &f,
            children.iter_mut().enumerate(),
            Duration::from_millis(50),
        );
    }
    // The status of any process shows all three: their admin addresses, the partitions each
    // serves (together every partition, each once) and the version each runs.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, body) = http(&addrs[1], "GET", "/admin/status", &[], b"");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let procs = status["processes"].as_array().cloned().unwrap_or_default();
        let mut served: Vec<u64> = procs
            .iter()
            .flat_map(|p| {
                p["stages"][0]["partitions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p.as_u64())
            .collect();
        served.sort_unstable();
        let mut admins: Vec<String> = procs
            .iter()
            .filter_map(|p| p["admin"].as_str().map(str::to_owned))
            .collect();
        admins.sort();
        let mut want_admins = addrs.clone();
        want_admins.sort();
        let complete = procs.len() == 3
            && procs
                .iter()
                .all(|p| p["stages"][0]["hash"] == hash.as_str() && p["stages"][0]["lag"].is_u64())
            && served == (0..u64::from(PARTITIONS)).collect::<Vec<_>>()
            && admins == want_admins;
        if complete {
            break;
        }
        assert!(
            Instant::now() < until,
            "the status does not show the three processes, every partition once, the new version: {}",
            status["processes"]
        );
        watch(
            &f,
            children.iter_mut().enumerate(),
            Duration::from_millis(50),
        );
    }
    // Everything written from now on meets mark-b, whichever process serves it.
    kafka.produce_generated(&format!("{prefix}in"), RECORDS / 2, RECORDS / 2);
    let read = read_until(
        kafka,
        &format!("{prefix}out"),
        RECORDS as usize,
        Duration::from_secs(120),
        || Ok(()),
        |read| {
            each_once(read, RECORDS, 2, |seq, mark| match mark {
                b"|b" => Ok(()),
                b"|a" if seq < RECORDS / 2 => Ok(()),
                b"|a" => Err(format!(
                    "record {seq}, written after the deploy was live everywhere, met mark-a"
                )),
                _ => Err(format!("record {seq} marked {mark:?}")),
            })
        },
    );
    assert_eq!(read.len() as u64, RECORDS);
    for n in 1..3 {
        assert!(
            f.stderr(n)
                .contains("plugin deployed at another process of the pipeline is live here"),
            "run {n}: {}",
            f.stderr(n)
        );
    }
    stop_all(&f, children.into_iter().enumerate().collect());
}

/// Process `n` of the fixture's pipeline, run in the network namespace `ns`.
fn start_in(f: &Fixture, ns: &Namespace, n: usize, log: usize) -> Child {
    let dir = f.path(&format!("data-{n}"));
    let inner = f.command(&["run", "--no-watch", "--data-dir", dir.to_str().unwrap()]);
    let file = std::fs::File::create(f.path(&format!("run-{log}.log"))).unwrap();
    ns.command(&inner)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// The partitions the last "stage serves its partitions" line of each of `logs` names.
fn serving_now(f: &Fixture, logs: &[usize]) -> std::collections::BTreeSet<u32> {
    logs.iter()
        .flat_map(|&l| served(&f.stderr(l)).pop().unwrap_or_default())
        .collect()
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports how long the partitions took to move (see it with --nocapture)"
)]
fn a_process_cut_off_from_the_network_is_fenced_rejoins_and_writes_nothing_twice() {
    let _t = Timer::start("scale_cutoff");
    const RECORDS: u64 = 80_000;
    // Process 2 runs in a network namespace of its own: a second host, reached through a veth
    // pair that the test takes down.
    let ns = Namespace::new(std::process::id() % 30_000);
    let kafka = Broker::new_on(ns.host_addr());
    let prefix = "cutoff.";
    kafka.create_topic(&format!("{prefix}in"), PARTITIONS);
    let f = Fixture::new(&pipeline("cutoff", &kafka, prefix, false));
    let mut a = start(&f, 0, 0);
    let mut b = start(&f, 1, 1);
    let mut c = start_in(&f, &ns, 2, 2);
    wait_serving(&f, &[0, 1, 2], &mut [&mut a, &mut b, &mut c]);
    let producer = kafka.spawn_keyed_producer(
        &format!("{prefix}in"),
        0,
        RECORDS,
        Some(5_000.0),
        Some(KEYS),
    );
    let all: std::collections::BTreeSet<u32> = (0..PARTITIONS).collect();
    // Two cuts while the input flows (16 s): one longer than the session timeout (3 s), after
    // which the coordinator refuses the process's offsets; one longer than the transaction
    // timeout (10 s) too, after which its producer is fenced.
    for (round, away) in [Duration::from_secs(6), Duration::from_secs(13)]
        .into_iter()
        .enumerate()
    {
        if let Some(status) = wait_exit(&mut c, Duration::from_millis(1_500)) {
            panic!("run 2 exited ({status}): {}", f.stderr(2));
        }
        let rejoined_before = f.stderr(2).matches("stage serves its partitions").count();
        ns.cut();
        let cut = Instant::now();
        // Its partitions move to the two others within the session timeout.
        let until = cut + Duration::from_secs(60);
        while serving_now(&f, &[0, 1]) != all {
            assert!(
                Instant::now() < until,
                "60 s after the cut the two others serve {:?}:\n{}\n{}",
                serving_now(&f, &[0, 1]),
                f.stderr(0),
                f.stderr(1)
            );
            watch(
                &f,
                [(0, &mut a), (1, &mut b), (2, &mut c)],
                Duration::from_millis(20),
            );
        }
        let moved = cut.elapsed();
        if let Some(status) = wait_exit(&mut c, away.saturating_sub(moved)) {
            panic!("run 2 exited while cut off ({status}): {}", f.stderr(2));
        }
        ns.restore();
        // Back, it learns it lost its partitions (its appends of then are not written), joins
        // again and serves partitions again.
        let back = Instant::now();
        let until = back + Duration::from_secs(90);
        while f.stderr(2).matches("stage serves its partitions").count() <= rejoined_before {
            assert!(
                Instant::now() < until,
                "run 2 does not serve partitions again 90 s after the link came back: {}",
                f.stderr(2)
            );
            watch(
                &f,
                [(2, &mut c), (0, &mut a), (1, &mut b)],
                Duration::from_millis(20),
            );
        }
        eprintln!(
            "kafka cut-off {round}: away {:?}; partitions moved {moved:?} after the cut; serving again {:?} after the link came back",
            cut.elapsed() - back.elapsed(),
            back.elapsed()
        );
    }
    let log = f.stderr(2);
    assert!(
        log.contains("this process lost its partitions"),
        "run 2 saw that it lost its partitions: {log}"
    );
    eprintln!(
        "kafka cut-off: run 2 had {} appends refused as no longer a member, its producer fenced {} times, {} restarts after a fenced append",
        log.matches("no longer counts this process in").count()
            + log.matches("is not a member of the consumer group").count(),
        log.matches("starts a new transactional producer").count(),
        log.matches("starts again from what was committed after a fenced append")
            .count()
    );
    producer.finish();
    let mut children = vec![(0, a), (1, b), (2, c)];
    check_counts(&kafka, prefix, RECORDS, || {
        for (l, c) in children.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                return Err(format!("run {l} exited ({status}): {}", f.stderr(*l)));
            }
        }
        Ok(())
    });
    stop_all(&f, children);
}

/// Whether `read` holds each of the test records `0..records` once, marked: its value is a
/// test record's with `mark_len` bytes after it, which `check` is given with the record's number.
fn each_once(
    read: &[Record],
    records: u64,
    mark_len: usize,
    check: impl Fn(u64, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for r in read {
        let v = r.value.as_deref().unwrap_or_default();
        let (payload, mark) = v.split_at(v.len().saturating_sub(mark_len));
        let seq = flowgate_tests::payload_seq(payload)
            .ok_or_else(|| format!("not a marked test record: {r:?}"))?;
        check(seq, mark)?;
        if !seen.insert(seq) {
            return Err(format!("record {seq} twice"));
        }
    }
    if seen.len() as u64 == records {
        Ok(())
    } else {
        Err(format!("{} of {records} records", seen.len()))
    }
}

/// Process `n` over the pipeline file `file` of its own (in the fixture's directory).
fn start_with(f: &Fixture, file: &str, n: usize) -> Child {
    let dir = f.path(&format!("data-{n}"));
    let log = std::fs::File::create(f.path(&format!("run-{n}.log"))).unwrap();
    f.command_for(
        &f.path(file),
        &["run", "--no-watch", "--data-dir", dir.to_str().unwrap()],
    )
    .stdout(std::process::Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap()
}

/// The stage names `/admin/status` at `addr` lists.
fn stages_at(addr: &str) -> Vec<String> {
    let (code, _, body) = http(addr, "GET", "/admin/status", &[], b"");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["stages"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["stage"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pipeline_edit_made_at_one_process_runs_at_every_process() {
    let _t = Timer::start("scale_edit");
    const RECORDS: u64 = 10_000;
    let kafka = Broker::shared();
    let prefix = "scale-edit.";
    kafka.create_topic(&format!("{prefix}in"), PARTITIONS);
    let before = marking("scale-edit", kafka, prefix);
    let f = Fixture::new(&before);
    // Each process has a pipeline file of its own (as on hosts of their own); only process 0's
    // is edited.
    for n in 0..4 {
        std::fs::write(f.path(&format!("p-{n}.toml")), &before).unwrap();
    }
    let mut children: Vec<Child> = (0..3)
        .map(|n| start_with(&f, &format!("p-{n}.toml"), n))
        .collect();
    {
        let mut refs: Vec<&mut Child> = children.iter_mut().collect();
        wait_serving(&f, &[0, 1, 2], &mut refs);
    }
    let addrs: Vec<String> = children
        .iter_mut()
        .enumerate()
        .map(|(n, c)| flowgate_tests::fixture::listen_addr(&f, n, c))
        .collect();

    // A stage added to process 0's file, applied there by a reload.
    let after = format!(
        r#"{before}
[topics.marked]
partitions = {PARTITIONS}

[stages.again]
plugin = "{MARK_B}"
input = "out"
output = "marked"
"#
    );
    std::fs::write(f.path("p-0.toml"), &after).unwrap();
    let (code, _, body) = http(&addrs[0], "POST", "/admin/reload", &[], b"");
    assert_eq!(code, 200, "{body}");
    let until = Instant::now() + Duration::from_secs(60);
    while !addrs
        .iter()
        .all(|a| stages_at(a).contains(&"again".to_owned()))
    {
        assert!(
            Instant::now() < until,
            "the edit does not run at every process after 60 s: {:?}",
            addrs.iter().map(|a| stages_at(a)).collect::<Vec<_>>()
        );
        watch(
            &f,
            children.iter_mut().enumerate(),
            Duration::from_millis(50),
        );
    }
    for n in 1..3 {
        assert!(
            f.stderr(n)
                .contains("pipeline edit made at another process applied here"),
            "run {n}: {}",
            f.stderr(n)
        );
    }
    // A process started later, with the file as it was, runs the newest edit too.
    let mut late = start_with(&f, "p-3.toml", 3);
    let late_addr = flowgate_tests::fixture::listen_addr(&f, 3, &mut late);
    let until = Instant::now() + Duration::from_secs(60);
    while !stages_at(&late_addr).contains(&"again".to_owned()) {
        assert!(
            Instant::now() < until,
            "a process started after the edit does not run it: {}",
            f.stderr(3)
        );
        watch(&f, [(3, &mut late)], Duration::from_millis(50));
    }
    children.push(late);

    // Every event goes through both stages once, whichever process serves its partitions.
    kafka.produce_generated(&format!("{prefix}in"), 0, RECORDS);
    let read = read_until(
        kafka,
        &format!("{prefix}marked"),
        RECORDS as usize,
        Duration::from_secs(120),
        || Ok(()),
        |read| {
            each_once(read, RECORDS, 4, |seq, mark| {
                if mark == b"|a|b" {
                    Ok(())
                } else {
                    Err(format!("record {seq} not marked by both stages: {mark:?}"))
                }
            })
        },
    );
    assert_eq!(read.len() as u64, RECORDS);
    stop_all(&f, children.into_iter().enumerate().collect());
}
