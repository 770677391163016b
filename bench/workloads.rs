//! The stage workloads the peer benchmark (`bench/peers/runner`) and the quick ratio report
//! (`tests/benches/ratios.rs`) both run, in one source both include: records, the native
//! version of each workload over Flowgate's columnar batches, the Flowgate calls, and the
//! timing. `filter` keeps values containing `"level":"error"` (a quarter of them); `map`
//! uppercases the value; `count` replaces the value with a running count per key (1,000 keys).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use flowgate::event::{self, Batch, BatchBuilder, Event};
use flowgate::runtime::StageInstance;

/// Events per batch.
pub const BATCH: usize = 1024;
pub const NEEDLE: &[u8] = br#""level":"error""#;

/// A workload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Filter,
    Map,
    Count,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Filter => "filter",
            Work::Map => "map",
            Work::Count => "count",
        }
    }

    /// (Flowgate plugin file stem, its config, SmartModule file stem).
    pub fn modules(self) -> (&'static str, Vec<(String, String)>, &'static str) {
        match self {
            Work::Filter => (
                "contains",
                vec![("needle".into(), String::from_utf8_lossy(NEEDLE).into())],
                "sm_filter",
            ),
            Work::Map => ("uppercase", vec![], "sm_map"),
            Work::Count => ("count_by_key", vec![], "sm_count"),
        }
    }
}

/// `n` records whose values are `size` bytes of JSON-like text; one in four is an error.
pub fn records(n: usize, size: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let level = if i % 4 == 0 { "error" } else { "info" };
            let mut value = format!(r#"{{"id":{i},"level":"{level}","msg":""#).into_bytes();
            value.resize(size - 2, b'x');
            value.extend_from_slice(b"\"}");
            Event {
                key: Some(format!("user-{}", i % 1000).into_bytes()),
                value,
                timestamp: i as i64,
                headers: Vec::new(),
            }
        })
        .collect()
}

/// The native version of each workload, over the same columnar batches Flowgate gets.
pub fn native(work: Work, batches: &[Batch], counts: &mut HashMap<Vec<u8>, u64>) -> usize {
    let finder = memchr::memmem::Finder::new(NEEDLE);
    let mut n = 0;
    for b in batches {
        let cols = event::columns(b).expect("valid batch");
        let mut out = BatchBuilder::with_capacity(cols.len(), b.values.data.len());
        for row in cols.rows() {
            match work {
                Work::Filter => {
                    if finder.find(row.value).is_some() {
                        out.push_ref(&row);
                    }
                }
                Work::Map => {
                    let upper = row.value.to_ascii_uppercase();
                    out.push(row.key, &upper, row.timestamp, row.headers.iter());
                }
                Work::Count => {
                    let key = row.key.unwrap_or_default();
                    let c = match counts.get_mut(key) {
                        Some(c) => c,
                        None => counts.entry(key.to_vec()).or_insert(0),
                    };
                    *c += 1;
                    out.push(
                        row.key,
                        c.to_string().as_bytes(),
                        row.timestamp,
                        row.headers.iter(),
                    );
                }
            }
        }
        n += out.len();
        black_box(&out);
    }
    n
}

/// Flowgate per event: one call per record.
pub fn flowgate_events(inst: &mut StageInstance, events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| inst.on_event(e).expect("on-event").len())
        .sum()
}

/// Flowgate per batch: one call per batch.
pub fn flowgate_batches(inst: &mut StageInstance, batches: &[Batch]) -> usize {
    batches
        .iter()
        .map(|b| inst.on_batch(b).expect("on-batch").origins.len())
        .sum()
}

/// Median events/s over `runs` runs of `f` (after one warm-up); `prepare` runs untimed first.
pub fn measure<I>(
    events: usize,
    runs: usize,
    mut prepare: impl FnMut() -> I,
    mut f: impl FnMut(I) -> usize,
) -> (f64, usize) {
    let out = f(prepare());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let input = prepare();
            let t = Instant::now();
            black_box(f(input));
            t.elapsed()
        })
        .collect();
    times.sort();
    (events as f64 / times[runs / 2].as_secs_f64(), out)
}
