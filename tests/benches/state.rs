//! Keyed state and windows benchmark.
//!
//! 1. Keyed state from WASM: `state-count` (one `get` and one `put` per event, through the
//!    `flowgate:plugin/state` import) over batches of 1,024 events and `--keys` keys (default
//!    10,000), against native Rust doing the same get + put on the same host store. Reported as
//!    state operations per second and the ratio.
//! 2. Windowed aggregate: `--events` events (default 1,000,000) over `--keys` keys, event times
//!    1 ms apart with up to 50 ms of disorder, 10 s and 60 s tumbling windows (about one and six
//!    events per key and window), through the stage's window
//!    path (`WindowState::process`) with the `window-stats` plugin (count, sum, avg, min, max of a
//!    JSON field); then sessions of gap 10 s over the same events; against a native Rust
//!    aggregator doing the same on the same path. Reported:
//!    events/s, windows fired, panes held at most, their bytes, the checkpoint snapshot size and
//!    time, and the process's peak resident memory.
//!
//! Each figure is the median of `--runs` runs (default 3), both sides in the same process.
//!
//! Run: `cargo bench -p flowgate-tests --bench state [-- --events N --keys K --runs R]`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::time::{Duration, Instant};

use flowgate::event::{self, Batch, Columns, Event};
use flowgate::runtime::{CallError, CallErrorKind, Limits, PluginError};
use flowgate::state::window::{Aggregate, DuePane};
use flowgate::state::{KeyedState, SharedState, WindowSpec, WindowState, Windowing};
use flowgate_tests::plugins::{STATE_COUNT, WINDOW_STATS};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, bytes (VmHWM).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `n` keyed events `{"amount":…}` in batches of 1,024.
fn batches(n: u64, keys: u64) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rows = Vec::with_capacity(1024);
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        rows.push(Event {
            key: Some(format!("user-{}", seed % keys).into_bytes()),
            value: format!("{{\"amount\":{}}}", seed % 1000).into_bytes(),
            timestamp: 1_700_000_000_000 + i as i64 - (seed % 50) as i64,
            headers: Vec::new(),
        });
        if rows.len() == 1024 {
            out.push(event::batch_of(&rows));
            rows.clear();
        }
    }
    if !rows.is_empty() {
        out.push(event::batch_of(&rows));
    }
    out
}

fn keyed_state(keys: u64, runs: u64) {
    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(STATE_COUNT.as_ref()).expect("state-count");
    let input = batches(1_000_000, keys);
    let events: u64 = input.iter().map(|b| b.timestamps.len() as u64).sum();
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    for _ in 0..runs {
        let state = SharedState::new(1 << 30);
        let mut inst = plugin
            .instantiate(Limits::default(), Vec::new())
            .expect("instance");
        inst.attach_state(state.clone());
        let t = Instant::now();
        for b in &input {
            inst.on_batch(b).expect("batch");
            state.lock().commit();
        }
        wasm.push(2.0 * events as f64 / t.elapsed().as_secs_f64());

        let state = SharedState::new(1 << 30);
        let t = Instant::now();
        for b in &input {
            let cols = event::columns(b).expect("batch");
            let mut s = state.lock();
            let mut out = Vec::with_capacity(cols.len());
            for row in cols.rows() {
                let key = row.key.unwrap_or_default();
                let n = s
                    .get(key)
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_le_bytes)
                    + 1;
                s.put(key.to_vec(), n.to_le_bytes().to_vec()).expect("room");
                out.push(n.to_string());
            }
            s.commit();
            std::hint::black_box(out);
        }
        native.push(2.0 * events as f64 / t.elapsed().as_secs_f64());
    }
    let (w, n) = (median(wasm), median(native));
    println!(
        "keyed state, {events} events over {keys} keys (get + put per event), median of {runs}:"
    );
    println!("  WASM state-count  {:>7.2} M state ops/s", w / 1e6);
    println!("  native Rust       {:>7.2} M state ops/s", n / 1e6);
    println!("  ratio WASM/native {:>7.2}", w / n);
}

/// The same aggregation as `window-stats`, in Rust: accumulators are 32 bytes (count, sum,
/// min, max), the field is parsed with serde_json.
struct NativeStats;

fn acc_of(b: &[u8]) -> (u64, f64, f64, f64) {
    if b.len() != 32 {
        return (0, 0.0, 0.0, 0.0);
    }
    let f = |i: usize| f64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    (
        u64::from_le_bytes(b[..8].try_into().expect("8")),
        f(1),
        f(2),
        f(3),
    )
}

fn bytes_of(a: (u64, f64, f64, f64)) -> Vec<u8> {
    let mut v = a.0.to_le_bytes().to_vec();
    for x in [a.1, a.2, a.3] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

impl Aggregate for NativeStats {
    type Error = CallError;
    fn fatal(&self, message: String) -> CallError {
        CallError {
            plugin: "native".into(),
            kind: CallErrorKind::Plugin(PluginError::Fatal(message)),
            stderr: String::new(),
        }
    }
    fn empty(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn add(
        &mut self,
        accs: &[Vec<u8>],
        input: &Batch,
        slots: &[u32],
    ) -> Result<(Vec<Vec<u8>>, Vec<(u32, CallError)>), CallError> {
        let cols = event::columns(input).expect("batch");
        let mut decoded: Vec<(u64, f64, f64, f64)> = accs.iter().map(|a| acc_of(a)).collect();
        for (row, &slot) in cols.rows().zip(slots) {
            let v: serde_json::Value = serde_json::from_slice(row.value).expect("JSON");
            let x = v["amount"].as_f64().expect("amount");
            let a = &mut decoded[slot as usize];
            *a = if a.0 == 0 {
                (1, x, x, x)
            } else {
                (a.0 + 1, a.1 + x, a.2.min(x), a.3.max(x))
            };
        }
        Ok((decoded.into_iter().map(bytes_of).collect(), Vec::new()))
    }
    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
        let (a, b) = (acc_of(a), acc_of(b));
        Ok(Some(bytes_of(match (a.0, b.0) {
            (0, _) => b,
            (_, 0) => a,
            _ => (a.0 + b.0, a.1 + b.1, a.2.min(b.2), a.3.max(b.3)),
        })))
    }
    fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, CallError> {
        Ok(panes
            .iter()
            .map(|(key, start, end, acc)| {
                let a = acc_of(acc);
                serde_json::to_vec(&serde_json::json!({
                    "key": String::from_utf8_lossy(key.unwrap_or_default()),
                    "start": start, "end": end, "count": a.0, "sum": a.1,
                    "avg": a.1 / a.0 as f64, "min": a.2, "max": a.3,
                }))
                .expect("JSON")
            })
            .collect())
    }
}

/// One pass of the window path: events/s, windows fired, most panes held, their bytes, and
/// the final state's snapshot size and encoding time.
fn window_pass(
    agg: &mut dyn Aggregate<Error = CallError>,
    input: &[Batch],
    w: &Windowing,
) -> (f64, u64, usize, usize, usize, Duration) {
    let mut state = KeyedState::new(usize::MAX);
    let mut windows = WindowState::default();
    let mut fired = 0;
    let mut most = (0, 0);
    let t = Instant::now();
    for b in input {
        let cols: Columns<'_> = event::columns(b).expect("batch");
        let out = windows.process(w, agg, b, &cols).expect("process");
        fired += out.fired.len() as u64;
        if windows.len() > most.0 {
            most = (windows.len(), windows.bytes());
        }
    }
    let elapsed = t.elapsed();
    let events: usize = input.iter().map(|b| b.timestamps.len()).sum();
    state.windows = windows;
    let t = Instant::now();
    let snapshot = state.encode().len();
    let encode = t.elapsed();
    (
        events as f64 / elapsed.as_secs_f64(),
        fired,
        most.0,
        most.1,
        snapshot,
        encode,
    )
}

fn windows(events: u64, keys: u64, runs: u64, spec: WindowSpec) {
    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(WINDOW_STATS.as_ref()).expect("window-stats");
    let input = batches(events, keys);
    let w = Windowing {
        spec,
        out_of_orderness: 100,
        allowed_lateness: 0,
    };
    let rss_before = peak_rss();
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let mut inst = plugin
            .instantiate(Limits::default(), vec![("field".into(), "amount".into())])
            .expect("instance");
        let r = window_pass(&mut inst, &input, &w);
        wasm.push(r.0);
        last = Some(r);
        native.push(window_pass(&mut NativeStats, &input, &w).0);
    }
    let (_, fired, panes, bytes, snapshot, encode) = last.expect("a run");
    let (wv, nv) = (median(wasm), median(native));
    let what = match spec {
        WindowSpec::Tumbling { size } => format!("tumbling {} s windows", size / 1000),
        WindowSpec::Session { gap } => format!("sessions of gap {} s", gap / 1000),
        WindowSpec::Hopping { .. } => "hopping windows".to_owned(),
    };
    println!("windowed aggregate, {events} events over {keys} keys, {what}, median of {runs}:");
    println!("  WASM window-stats {:>7.2} M events/s", wv / 1e6);
    println!("  native Rust       {:>7.2} M events/s", nv / 1e6);
    println!("  ratio WASM/native {:>7.2}", wv / nv);
    println!(
        "  {fired} windows fired; at most {panes} panes held, {:.1} MB of accumulators and keys",
        bytes as f64 / 1e6
    );
    println!(
        "  checkpoint snapshot at the end: {snapshot} bytes, encoded in {:.2} ms",
        encode.as_secs_f64() * 1e3
    );
    println!(
        "  peak resident memory of the process: {:.0} MB (input batches included; {:.0} MB before the runs)",
        peak_rss() as f64 / 1e6,
        rss_before as f64 / 1e6
    );
}

fn main() {
    let events = arg("--events", 1_000_000);
    let keys = arg("--keys", 10_000);
    let runs = arg("--runs", 3);
    keyed_state(keys, runs);
    // Events are 1 ms apart: 10 s windows hold about one event per key, 60 s ones about six.
    for size in [10_000, 60_000] {
        windows(events, keys, runs, WindowSpec::Tumbling { size });
    }
    // A key's events are about 10 s apart: with a gap of 10 s, sessions hold a few events and
    // often merge when a late event bridges two.
    windows(events, keys, runs, WindowSpec::Session { gap: 10_000 });
    let sample = batches(1, 1).remove(0);
    println!(
        "  (event values look like {})",
        String::from_utf8_lossy(&sample.values.data)
    );
}
