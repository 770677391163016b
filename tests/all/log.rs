//! The event log: the same behaviour on disk and in memory, a model test, seeded crash and
//! fault injection through the fault-injecting storage, and kill -9 of a real writer process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowgate::event::{self, Event};
use flowgate::log::storage::{CrashMode, FaultyStorage};
use flowgate::log::{EventLog, Log, LogError, LogOptions, MemoryLog, SyncPolicy, TopicConfig};
use flowgate_tests::{payload_seq, record};
use proptest::prelude::*;

fn records(seqs: std::ops::Range<u64>) -> Vec<Event> {
    seqs.map(record).collect()
}

/// Every record of a partition from `from` on, with its offset.
fn read_all(log: &dyn EventLog, topic: &str, partition: u32, from: u64) -> Vec<(u64, Event)> {
    let end = log.describe(topic).unwrap().partitions[partition as usize].end_offset;
    let mut out = Vec::new();
    let mut at = from;
    while at < end {
        let batches = log.read(topic, partition, at, 64 << 10).unwrap();
        assert!(
            !batches.is_empty(),
            "no batch at offset {at} below end {end}"
        );
        for b in batches {
            for (i, row) in event::columns(&b.batch).unwrap().rows().enumerate() {
                let offset = b.base_offset + i as u64;
                if offset >= at {
                    out.push((offset, event::to_owned(&row)));
                }
            }
            at = b.base_offset + b.batch.values.ends.len() as u64;
        }
    }
    out
}

fn small_segments() -> TopicConfig {
    TopicConfig {
        partitions: 2,
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..TopicConfig::default()
    }
}

/// The behaviour every log shares.
fn behaves(log: &dyn EventLog) {
    log.create_topic("events", small_segments()).unwrap();
    assert!(matches!(
        log.create_topic("events", small_segments()),
        Err(LogError::TopicExists(_))
    ));
    let err = log
        .create_topic("bad/name", TopicConfig::default())
        .unwrap_err();
    assert!(err.to_string().contains("not valid"), "{err}");
    let err = log.describe("nope").unwrap_err();
    assert!(
        err.to_string().contains("flowgate topic create nope"),
        "{err}"
    );
    assert!(err.to_string().contains("existing: events"), "{err}");
    assert!(matches!(
        log.append("events", 7, event::batch_of(&records(0..1))),
        Err(LogError::NoSuchPartition { partitions: 2, .. })
    ));

    // Appends get contiguous offsets per partition.
    let mut next = 0;
    for chunk in [0..5u64, 5..6, 6..40, 40..41, 41..120] {
        let n = chunk.end - chunk.start;
        let ack = log
            .append("events", 0, event::batch_of(&records(chunk)))
            .unwrap();
        assert_eq!((ack.base_offset, u64::from(ack.count)), (next, n));
        next += n;
    }
    let ack = log
        .append("events", 1, event::batch_of(&records(500..503)))
        .unwrap();
    assert_eq!(ack.base_offset, 0);
    let empty = log.append("events", 1, event::batch_of(&[])).unwrap();
    assert_eq!((empty.base_offset, empty.count), (3, 0));

    // Reads return the same bytes at the same offsets, from anywhere.
    let all = read_all(log, "events", 0, 0);
    assert_eq!(all.len(), 120);
    for (offset, e) in &all {
        assert_eq!(*e, record(*offset), "offset {offset}");
    }
    assert_eq!(read_all(log, "events", 0, 77)[0], (77, record(77)));
    assert_eq!(read_all(log, "events", 1, 0).len(), 3);
    assert!(log.read("events", 0, 120, 1 << 20).unwrap().is_empty());
    let err = log.read("events", 0, 121, 1 << 20).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                start: 0,
                end: 120,
                ..
            }
        ),
        "{err}"
    );

    // By time: record n has timestamp 1000 + 10n.
    assert_eq!(log.offset_for_time("events", 0, 0).unwrap(), 0);
    assert_eq!(log.offset_for_time("events", 0, 1_555).unwrap(), 56);
    assert_eq!(log.offset_for_time("events", 0, 1_560).unwrap(), 56);
    assert_eq!(log.offset_for_time("events", 0, 99_999).unwrap(), 120);

    // Offsets of consumer groups, and checkpoints.
    assert_eq!(log.committed_offset("g", "events", 0).unwrap(), None);
    log.commit_offset("g", "events", 0, 42).unwrap();
    log.commit_offset("g", "events", 1, 2).unwrap();
    log.commit_offset("g", "events", 0, 43).unwrap();
    assert_eq!(log.committed_offset("g", "events", 0).unwrap(), Some(43));
    assert_eq!(log.committed_offset("g", "events", 1).unwrap(), Some(2));
    assert_eq!(log.committed_offset("other", "events", 0).unwrap(), None);
    assert!(log.commit_offset("g", "nope", 0, 1).is_err());
    assert_eq!(log.load_checkpoint("stage-a").unwrap(), None);
    log.save_checkpoint("stage-a", b"one").unwrap();
    log.save_checkpoint("stage-a", b"two").unwrap();
    assert_eq!(
        log.load_checkpoint("stage-a").unwrap().as_deref(),
        Some(&b"two"[..])
    );

    // Waiting for data.
    assert!(
        !log.wait_for("events", 1, 3, Duration::from_millis(20))
            .unwrap()
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            log.append("events", 1, event::batch_of(&records(503..504)))
                .unwrap();
        });
        assert!(
            log.wait_for("events", 1, 3, Duration::from_secs(10))
                .unwrap()
        );
    });

    let info = log.describe("events").unwrap();
    assert_eq!(info.partitions[0].end_offset, 120);
    assert_eq!(log.topics(), vec!["events".to_owned()]);
}

#[test]
fn the_disk_log_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    behaves(&log);
    // About 20 KB in 4 KiB segments: it rolled (the model test rolls far more).
    assert!(log.describe("events").unwrap().partitions[0].segments >= 2);
    drop(log);
    // Everything is there after reopening.
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let all = read_all(&log, "events", 0, 0);
    assert_eq!(all.len(), 120);
    assert!(all.iter().all(|(o, e)| *e == record(*o)));
    assert_eq!(log.committed_offset("g", "events", 0).unwrap(), Some(43));
    assert_eq!(log.offset_for_time("events", 0, 1_555).unwrap(), 56);
}

#[test]
fn the_memory_log_behaves() {
    behaves(&MemoryLog::new());
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let err = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["topic", "create", "another", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("is in use"), "{msg}");
    assert!(
        msg.contains(&std::process::id().to_string()),
        "names the holder: {msg}"
    );
}

#[test]
fn a_read_only_log_follows_the_owner_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Log::open(dir.path(), LogOptions::default()).unwrap();
    owner.create_topic("t", small_segments()).unwrap();
    owner
        .append("t", 0, event::batch_of(&records(0..10)))
        .unwrap();
    let reader = Log::open(
        dir.path(),
        LogOptions {
            read_only: true,
            ..LogOptions::default()
        },
    )
    .unwrap();
    assert_eq!(read_all(&reader, "t", 0, 0).len(), 10);
    // New batches and new segments of the owner show up; retention's deletions too.
    for i in 1..20 {
        owner
            .append("t", 0, event::batch_of(&records(i * 10..i * 10 + 10)))
            .unwrap();
    }
    assert!(
        reader
            .wait_for("t", 0, 150, Duration::from_secs(5))
            .unwrap()
    );
    let all = read_all(&reader, "t", 0, 0);
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|(o, e)| *e == record(*o)));
    assert!(reader.describe("t").unwrap().partitions[0].segments > 1);
    let err = reader
        .append("t", 0, event::batch_of(&records(0..1)))
        .unwrap_err();
    assert!(matches!(err, LogError::ReadOnly(_)), "{err}");
    assert!(reader.create_topic("u", TopicConfig::default()).is_err());
}

#[test]
fn retention_deletes_old_segments_by_size_and_by_age() {
    for log in [Box::new(MemoryLog::new()) as Box<dyn EventLog>, {
        let dir = tempfile::tempdir().unwrap().keep();
        Box::new(Log::open(&dir, LogOptions::default()).unwrap())
    }] {
        let config = TopicConfig {
            partitions: 1,
            segment_bytes: 4096,
            retention_bytes: Some(10_000),
            retention_age: Some(Duration::from_secs(60)),
            ..TopicConfig::default()
        };
        log.create_topic("t", config).unwrap();
        for i in 0..100 {
            log.append("t", 0, event::batch_of(&records(i * 5..i * 5 + 5)))
                .unwrap();
        }
        // Size retention applies by itself as the log grows.
        let p = &log.describe("t").unwrap().partitions[0];
        assert!(p.start_offset > 0, "size retention deleted nothing");
        log.enforce_retention(0).unwrap();
        let p = &log.describe("t").unwrap().partitions[0];
        assert!(p.bytes <= 10_000 + 4096 + 2048, "kept {} bytes", p.bytes);
        assert_eq!(p.end_offset, 500);
        let kept = read_all(&*log, "t", 0, p.start_offset);
        assert!(kept.iter().all(|(o, e)| *e == record(*o)));
        let err = log.read("t", 0, 0, 100).unwrap_err();
        assert!(matches!(err, LogError::OffsetOutOfRange { .. }));
        // By age (write time): a minute and a bit from now, everything sealed is too old.
        log.enforce_retention(event::ndjson::now_ms() + 61_000)
            .unwrap();
        let p = &log.describe("t").unwrap().partitions[0];
        assert!(p.end_offset - p.start_offset <= 60, "{p:?}");
        assert_eq!(p.end_offset, 500, "the active segment is never deleted");
    }
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Append(u32, u8),
    Roll(u32),
    Retain,
    Reopen,
    Read(u32, u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2u32, 1..30u8).prop_map(|(p, n)| Op::Append(p, n)),
        1 => (0..2u32).prop_map(Op::Roll),
        1 => Just(Op::Retain),
        1 => Just(Op::Reopen),
        3 => (0..2u32, any::<u16>()).prop_map(|(p, o)| Op::Read(p, o)),
    ]
}

fn run_model(ops: Vec<Op>, on_disk: bool) {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Box<dyn EventLog> {
        if on_disk {
            Box::new(Log::open(dir.path(), LogOptions::default()).unwrap())
        } else {
            Box::new(MemoryLog::new())
        }
    };
    let mut log = open();
    let config = TopicConfig {
        retention_bytes: Some(6000),
        ..small_segments()
    };
    log.create_topic("m", config).unwrap();
    // The model: every record ever appended per partition, and the oldest offset still held.
    let mut model: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut start = [0u64; 2];
    let mut seq = 0u64;
    for op in ops {
        match op {
            Op::Append(p, n) => {
                let seqs = seq..seq + u64::from(n);
                seq += u64::from(n);
                let ack = log
                    .append("m", p, event::batch_of(&records(seqs.clone())))
                    .unwrap();
                let held = model.entry(p).or_default();
                assert_eq!(ack.base_offset, held.len() as u64);
                held.extend(seqs);
            }
            Op::Roll(p) => log.roll("m", p).unwrap(),
            Op::Retain => {
                log.enforce_retention(0).unwrap();
            }
            Op::Reopen if on_disk => {
                drop(log);
                log = open();
            }
            Op::Reopen => {}
            Op::Read(p, o) => {
                let held = model.get(&p).cloned().unwrap_or_default();
                let info = log.describe("m").unwrap().partitions[p as usize].clone();
                assert_eq!(info.end_offset, held.len() as u64);
                assert!(info.start_offset >= start[p as usize], "start went back");
                start[p as usize] = info.start_offset;
                let span = info.end_offset - info.start_offset + 1;
                let from = info.start_offset + u64::from(o) % span;
                let got = read_all(&*log, "m", p, from);
                let want: Vec<(u64, Event)> = (from..info.end_offset)
                    .map(|off| (off, record(held[off as usize])))
                    .collect();
                assert_eq!(got, want);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_disk_log_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(ops, true);
    }

    #[test]
    fn the_memory_log_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(ops, false);
    }
}

use flowgate_tests::Rng;

/// Checks a recovered partition: offsets contiguous, every record intact and one of those
/// written, none twice, and every acknowledged one present at its offset.
fn check_recovered(log: &dyn EventLog, acked: &BTreeMap<u64, u64>, case: &str) {
    let all = read_all(log, "t", 0, 0);
    let mut seen = std::collections::HashSet::new();
    for (i, (offset, e)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64, "{case}: offsets not contiguous");
        let seq = payload_seq(&e.value)
            .unwrap_or_else(|| panic!("{case}: corrupt record at offset {offset}"));
        assert_eq!(*e, record(seq), "{case}: record {seq} changed");
        assert!(seen.insert(seq), "{case}: record {seq} twice");
    }
    for (offset, seq) in acked {
        let got = all
            .get(*offset as usize)
            .map(|(_, e)| payload_seq(&e.value));
        assert_eq!(
            got,
            Some(Some(*seq)),
            "{case}: acknowledged record {seq} at offset {offset} lost"
        );
    }
}

fn crash_case(seed: u64, torn: &AtomicU64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let storage = FaultyStorage::new();
    let dir = Path::new("/data");
    let sync = match rng.below(3) {
        0 => SyncPolicy::Interval(Duration::from_millis(1)),
        _ => SyncPolicy::Always,
    };
    let options = LogOptions {
        sync,
        ..LogOptions::default()
    };
    let config = TopicConfig {
        partitions: 1,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..TopicConfig::default()
    };
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seq = 0u64;
    {
        let log = Log::open_in(Arc::new(storage.clone()), dir, options.clone()).unwrap();
        log.create_topic("t", config).unwrap();
        // Acknowledged appends, some hitting a full disk or a failing sync.
        for _ in 0..rng.below(12) {
            match rng.below(10) {
                0 => storage.set_space_left(Some(rng.below(3000))),
                1 => storage.set_fail_sync(true),
                _ => {}
            }
            let n = 1 + rng.below(9);
            let batch = event::batch_of(&records(seq..seq + n));
            match log.append("t", 0, batch) {
                Ok(ack) => {
                    for i in 0..n {
                        acked.insert(ack.base_offset + i, seq + i);
                    }
                }
                Err(e) => assert!(
                    matches!(e, LogError::Io { .. }),
                    "seed {seed}: unexpected error {e}"
                ),
            }
            seq += n;
            storage.set_space_left(None);
            storage.set_fail_sync(false);
        }
        // The machine dies right after one of the next writes, before its sync.
        let mode = match rng.below(5) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::Tear(512),
            2 => CrashMode::Tear(4096),
            3 => CrashMode::GarbageTail(1 + rng.below(5000) as usize),
            _ => CrashMode::ZeroTail(1 + rng.below(5000) as usize),
        };
        storage.crash_after_writes(1 + rng.below(3), mode, rng.next_u64());
        while storage.crashed().is_none() {
            let n = 1 + rng.below(9);
            let _ = log.append("t", 0, event::batch_of(&records(seq..seq + n)));
            seq += n;
        }
        let (crashed, unsynced) = storage.crashed().expect("crashed");
        if unsynced > 0 {
            torn.fetch_add(1, Ordering::Relaxed);
        }
        drop(log);
        let case = format!("seed {seed} ({mode:?}, {sync:?})");
        let log = Log::open_in(Arc::new(crashed), dir, options)
            .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
        check_recovered(&log, &acked, &case);
        // And it takes appends again, after what survived.
        let end = log.describe("t").unwrap().partitions[0].end_offset;
        let ack = log
            .append("t", 0, event::batch_of(&records(10_000..10_002)))
            .unwrap_or_else(|e| panic!("{case}: append after recovery: {e}"));
        assert_eq!(ack.base_offset, end, "{case}");
        let after = read_all(&log, "t", 0, end);
        assert_eq!(after.len(), 2, "{case}");
    }
}

/// At least 1,000 seeded crash cases. Replay one with `FLOWGATE_CRASH_SEED=<seed>`; run more
/// with `FLOWGATE_CRASH_CASES=<n>`.
#[test]
fn seeded_crashes_and_io_faults_never_lose_acknowledged_records() {
    if let Ok(seed) = std::env::var("FLOWGATE_CRASH_SEED") {
        let torn = AtomicU64::new(0);
        crash_case(
            seed.parse().expect("FLOWGATE_CRASH_SEED is a number"),
            &torn,
        );
        return;
    }
    let cases: u64 = std::env::var("FLOWGATE_CRASH_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000);
    let torn = AtomicU64::new(0);
    for seed in 0..cases {
        crash_case(seed, &torn);
    }
    // The crash comes right after a write: most cases must have had an unsynced tail to tear.
    let torn = torn.load(Ordering::Relaxed);
    assert!(
        torn * 2 > cases,
        "only {torn} of {cases} crashes had unsynced bytes"
    );
}

#[test]
fn a_full_disk_or_failed_sync_fails_the_append_and_the_log_goes_on() {
    let storage = FaultyStorage::new();
    let log = Log::open_in(
        Arc::new(storage.clone()),
        Path::new("/d"),
        LogOptions::default(),
    )
    .unwrap();
    log.create_topic("t", small_segments()).unwrap();
    log.append("t", 0, event::batch_of(&records(0..3))).unwrap();

    storage.set_space_left(Some(100));
    let err = log
        .append("t", 0, event::batch_of(&records(3..10)))
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    storage.set_space_left(None);
    assert_eq!(read_all(&log, "t", 0, 0).len(), 3);

    storage.set_fail_sync(true);
    let err = log
        .append("t", 0, event::batch_of(&records(10..12)))
        .unwrap_err();
    assert!(err.to_string().contains("syncing"), "{err}");
    storage.set_fail_sync(false);
    assert_eq!(
        read_all(&log, "t", 0, 0).len(),
        3,
        "unsynced records are not visible"
    );

    let ack = log
        .append("t", 0, event::batch_of(&records(12..14)))
        .unwrap();
    assert_eq!(ack.base_offset, 3, "no gap after failed appends");
    let all = read_all(&log, "t", 0, 0);
    let seqs: Vec<u64> = all
        .iter()
        .map(|(_, e)| payload_seq(&e.value).unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 12, 13]);
}

#[test]
fn a_newer_format_version_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.create_topic("t", TopicConfig::default()).unwrap();
        log.append("t", 0, event::batch_of(&records(0..2))).unwrap();
    }
    let seg = dir.path().join("topics/t/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let before = bytes.clone();
    bytes[8] = 9;
    let crc = crc32c(&bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let err = Log::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(
        matches!(err, LogError::NewerFormat { version: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Flowgate"));
    assert_eq!(
        std::fs::read(&seg).unwrap().len(),
        before.len(),
        "nothing was cut"
    );
}

/// CRC-32C (Castagnoli), written out here so the test does not trust the code under test.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// At least 50 kill -9 cycles; `FLOWGATE_KILL_CYCLES=<n>` runs more (the long mode).
#[test]
fn kill_dash_nine_never_loses_acknowledged_records() {
    let cycles: u64 = std::env::var("FLOWGATE_KILL_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = Rng(0x5eed);
    let mut next_seq = 0u64;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-writer"))
            .arg(dir.path())
            .arg(next_seq.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|x| x.parse().unwrap())
                    .collect();
                acks.push((f[0], f[1], f[2]));
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for (base, count, seq) in reader.join().unwrap() {
            for i in 0..count {
                acked.insert(base + i, seq + i);
            }
        }
        let log = Log::open(dir.path(), LogOptions::default())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        if log.topics().is_empty() {
            continue; // killed before it created the topic
        }
        check_recovered(&log, &acked, &format!("kill cycle {cycle}"));
        next_seq = read_all(&log, "t", 0, 0)
            .iter()
            .filter_map(|(_, e)| payload_seq(&e.value))
            .max()
            .map_or(next_seq, |s| s + 1)
            .max(next_seq);
        // Unacknowledged records may have survived: later cycles must not reuse their numbers.
        next_seq += 1000;
    }
    assert!(
        acked.len() > 100,
        "the writer acknowledged only {} records",
        acked.len()
    );
}
