//! Stage throughput: the same 1,000,000 events of 64 bytes through a byte map (ASCII uppercase),
//! as a native Rust closure and as the `uppercase` WASM plugin per event and per batch, in one
//! run. Prints a Markdown table with the ratio of each to native.
//!
//! Run: `cargo bench -p flowgate-tests --bench stage` (add `-- --events N --runs R` to change
//! the size; each figure is the median of R runs after one warm-up).

use std::hint::black_box;
use std::time::{Duration, Instant};

use flowgate::event::{self, Batch, BatchBuilder, Event};
use flowgate::runtime::{Limits, StageInstance};
use flowgate_tests::plugins::UPPERCASE;

/// `n` events with 64-byte lowercase ASCII values.
fn make_events(n: usize) -> Vec<Event> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            let value = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b'a' + (seed % 26) as u8
                })
                .collect();
            Event {
                key: None,
                value,
                timestamp: i as i64,
                headers: Vec::new(),
            }
        })
        .collect()
}

/// The same work the SDK does inside the plugin, natively: walk the batch, map each value
/// straight into an output batch (as the plugin's two-argument `map` does).
fn native(batch: &Batch) -> usize {
    let cols = event::columns(batch).expect("valid batch");
    let mut out = BatchBuilder::with_capacity(cols.len(), batch.values.data.len());
    for row in cols.rows() {
        out.push_with(row.key, row.timestamp, row.headers.iter(), |v| {
            v.extend(row.value.iter().map(u8::to_ascii_uppercase));
        });
    }
    out.len()
}

fn per_event(inst: &mut StageInstance, events: &[Event]) -> usize {
    let mut n = 0;
    for e in events {
        n += inst.on_event(e).expect("on-event").len();
    }
    n
}

fn per_batch(inst: &mut StageInstance, batches: &[Batch]) -> usize {
    let mut n = 0;
    for b in batches {
        n += inst.on_batch(b).expect("on-batch").origins.len();
    }
    n
}

/// Median events per second of `runs` timed runs after one warm-up.
fn measure(events: usize, runs: usize, mut f: impl FnMut() -> usize) -> f64 {
    assert_eq!(
        black_box(f()),
        events,
        "every event must produce one output"
    );
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    events as f64 / times[runs / 2].as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let n = flowgate_tests::bench_arg("--events", 1_000_000) as usize;
    let runs = (flowgate_tests::bench_arg("--runs", 5) as usize).max(1);
    let events = make_events(n);
    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(UPPERCASE.as_ref()).expect("load uppercase");
    let limits = Limits {
        call_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let mut inst = plugin
        .instantiate(limits, Vec::new())
        .expect("instantiate uppercase");

    // `--only batch1024` (or native, event, batch1, batch64) runs one path, for profiling.
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only == name;
    let mut rows: Vec<(String, f64)> = Vec::new();
    let whole = event::batch_of(&events);
    let native_rate = measure(n, runs, || native(&whole));
    rows.push(("native Rust closure (same batch walk)".into(), native_rate));
    if wanted("event") {
        let rate = measure(n, runs, || per_event(&mut inst, &events));
        rows.push(("WASM per event (on-event)".into(), rate));
    }
    for size in [1usize, 64, 1024] {
        if !wanted(&format!("batch{size}")) {
            continue;
        }
        let batches: Vec<Batch> = events.chunks(size).map(event::batch_of).collect();
        let rate = measure(n, runs, || per_batch(&mut inst, &batches));
        rows.push((format!("WASM per batch of {size} (on-batch)"), rate));
    }

    let mut table = String::new();
    table.push_str(&format!(
        "{n} events of 64 bytes, ASCII uppercase; median of {runs} runs\n\n"
    ));
    table.push_str("| path | events/s | vs native |\n|---|---:|---:|\n");
    for (name, rate) in &rows {
        table.push_str(&format!(
            "| {name} | {:.2} M | {:.2}× |\n",
            rate / 1e6,
            rate / native_rate
        ));
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(table.as_bytes()).expect("stdout");
}
