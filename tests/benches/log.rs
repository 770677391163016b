//! Log benchmark: group-commit append throughput of 100-byte events, syncs per second,
//! sequential read throughput, and acknowledgement latency at half of peak load.
//!
//! Run: `cargo bench -p flowgate-tests --bench log` (options: `--events N` per run, `--producers P`,
//! `--batch B` events per append, `--dir PATH` for the data directory, default a temp dir under
//! target/). The data directory must be on the disk you want to measure.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::event::{self, Batch, Event};
use flowgate::log::{EventLog, Log, LogOptions, TopicConfig};

/// A batch of `n` events with 100-byte values.
fn batch(n: usize, seed: u64) -> Batch {
    let events: Vec<Event> = (0..n)
        .map(|i| Event {
            key: None,
            value: format!("{seed:020}{i:020}{}", "x".repeat(60)).into_bytes(),
            timestamp: i as i64,
            headers: Vec::new(),
        })
        .collect();
    event::batch_of(&events)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let events = flowgate_tests::bench_arg("--events", 4_000_000);
    let producers = flowgate_tests::bench_arg("--producers", 4);
    let per_append = flowgate_tests::bench_arg("--batch", 1000) as usize;
    let inflight = 8;
    let base = std::env::args()
        .skip_while(|a| a != "--dir")
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| flowgate_tests::target_dir().join("bench-log"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    let log = Arc::new(Log::open(&base, LogOptions::default()).expect("open log"));
    let config = TopicConfig {
        segment_bytes: 256 << 20,
        ..TopicConfig::default()
    };
    log.create_topic("bench", config).expect("topic");

    // 1. Peak append throughput: producers keep `inflight` appends each in flight.
    let appends_per_producer = events / producers / per_append as u64;
    let total = appends_per_producer * producers * per_append as u64;
    let template = batch(per_append, 7);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..producers {
            let log = log.clone();
            let template = &template;
            s.spawn(move || {
                let mut pending = std::collections::VecDeque::new();
                for _ in 0..appends_per_producer {
                    if pending.len() == inflight {
                        let p: flowgate::log::Pending = pending.pop_front().expect("one");
                        p.wait().expect("append");
                    }
                    pending.push_back(log.submit("bench", 0, template.clone()).expect("submit"));
                }
                for p in pending {
                    p.wait().expect("append");
                }
            });
        }
    });
    let append_time = started.elapsed();
    let info = log.describe("bench").expect("describe").partitions[0].clone();
    let peak = total as f64 / append_time.as_secs_f64();
    let syncs_per_s = info.syncs as f64 / append_time.as_secs_f64();

    // 2. Sequential read of everything written.
    let started = Instant::now();
    let mut at = 0u64;
    let mut payload = 0u64;
    while at < info.end_offset {
        for b in log.read("bench", 0, at, 4 << 20).expect("read") {
            payload += b.batch.values.data.len() as u64;
            at = b.base_offset + b.batch.values.ends.len() as u64;
        }
    }
    let read_time = started.elapsed();
    let read_gbps = info.bytes as f64 / read_time.as_secs_f64() / 1e9;

    // 3. Latency at half of peak: one append of `per_append` events every interval.
    let rate = peak / 2.0;
    let interval = Duration::from_secs_f64(per_append as f64 / rate);
    let samples = 2000.min((3.0 / interval.as_secs_f64()) as usize).max(100);
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, flowgate::log::Pending)>();
    let waiter = std::thread::spawn(move || {
        let mut lat = Vec::new();
        for (t, p) in rx {
            p.wait().expect("append");
            lat.push(t.elapsed());
        }
        lat
    });
    let start = Instant::now();
    for i in 0..samples {
        let due = start + interval * i as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        tx.send((t, log.submit("bench", 0, template.clone()).expect("submit")))
            .expect("waiter");
    }
    drop(tx);
    let mut lat = waiter.join().expect("waiter thread");
    lat.sort();

    println!(
        "events of 100 bytes, {producers} producers × {inflight} appends in flight × {per_append} events per append, sync=always\n"
    );
    println!("| measure | value |\n|---|---:|");
    println!(
        "| append throughput (group commit) | {:.2} M events/s ({:.0} MB/s of log) |",
        peak / 1e6,
        info.bytes as f64 / append_time.as_secs_f64() / 1e6
    );
    println!("| syncs per second during it | {syncs_per_s:.0} |");
    println!(
        "| events per sync | {:.0} |",
        total as f64 / info.syncs.max(1) as f64
    );
    println!(
        "| sequential read | {read_gbps:.2} GB/s of log ({:.2} GB/s of values) |",
        payload as f64 / read_time.as_secs_f64() / 1e9
    );
    println!(
        "| ack latency at half of peak ({:.2} M events/s, {samples} appends) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        rate / 1e6,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().expect("samples").as_secs_f64() * 1e3
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&base);
}
