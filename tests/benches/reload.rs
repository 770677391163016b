//! Hot-reload benchmark: swap pause and time from file write to new version live.
//!
//! A pipeline (generator at `--rate` events/s, default 20,000 → 2 partitions → one stage) runs
//! with the file watcher on. The stage's plugin file is replaced (write aside + rename) `--rounds`
//! times (default 50), alternating two versions; each time the clock runs from the rename until
//! the new version is live (its first worker has swapped). Swap pause: how long a worker stops
//! between two batches to take the new instance. Two pairs: a small Rust plugin (`mark_a` ↔
//! `mark_b`, ~60 KB) and a large one (`mark_large`, 4.2 MB, ↔ `mark_a`). The compiled-code cache
//! starts empty, so the first swap to each version includes compiling it.
//!
//! Run: `cargo bench -p flowgate-tests --bench reload`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::log::{EventLog, Log, LogOptions};
use flowgate::pipeline::{self, PipelineConfig, RunOptions};
use flowgate::runtime::{Runtime, RuntimeConfig, hash_of};
use flowgate_tests::plugins::{MARK_A, MARK_B, MARK_LARGE};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(name: &str, versions: [&str; 2], rounds: u64, rate: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log: Arc<dyn EventLog> =
        Arc::new(Log::open(&dir.path().join("data"), LogOptions::default()).expect("log"));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_stage_instances: 32,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let stage_file = dir.path().join("stage.wasm");
    let bytes: Vec<Vec<u8>> = versions
        .iter()
        .map(|p| std::fs::read(p).expect("plugin"))
        .collect();
    std::fs::write(&stage_file, &bytes[1]).expect("plugin file");
    let text = format!(
        r#"
name = "reload-bench"
[topics.raw]
partitions = 2
[sources.gen]
type = "generator"
topic = "raw"
rate = {rate}
[stages.s]
plugin = "{}"
input = "raw"
output = "out"
batch-size = 256
linger = "1ms"
"#,
        stage_file.display()
    );
    let config =
        PipelineConfig::parse(&dir.path().join("pipeline.toml"), &text).expect("valid pipeline");
    std::fs::write(dir.path().join("pipeline.toml"), &text).expect("pipeline file");
    let running = pipeline::start(config, log, &runtime, RunOptions::default()).expect("start");
    let watcher = flowgate::watch::spawn(running.clone()).expect("watcher");
    std::thread::sleep(Duration::from_millis(500));
    let slot = running.slot("s").expect("stage");
    let mut to_live: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..rounds as usize {
        let v = i % 2;
        let hash = hash_of(&bytes[v]);
        let started = Instant::now();
        replace(&stage_file, &bytes[v]);
        loop {
            let live = slot.current();
            let swapped = live.plugin.info().hash == hash
                && slot
                    .history()
                    .iter()
                    .any(|r| r.id == live.id && r.live_after_ms.is_some());
            if swapped {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "version {v} did not go live"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        to_live[v].push(started.elapsed());
    }
    let mut pauses = slot.swap_pauses();
    pauses.sort_unstable();
    for (v, times) in to_live.iter().enumerate() {
        let first = times[0];
        let mut rest: Vec<Duration> = times[1..].to_vec();
        rest.sort_unstable();
        let file = Path::new(versions[v])
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        println!(
            "| {name}: write → live, {file} ({} bytes) | first (compiles) {:.1} ms; then p50 {:.1} ms, p99 {:.1} ms | {} swaps |",
            bytes[v].len(),
            ms(first),
            ms(percentile(&rest, 0.5)),
            ms(percentile(&rest, 0.99)),
            times.len()
        );
    }
    println!(
        "| {name}: swap pause per worker | p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms | {} worker swaps |",
        ms(percentile(&pauses, 0.5)),
        ms(percentile(&pauses, 0.99)),
        ms(*pauses.last().expect("swaps")),
        pauses.len()
    );
    running.stop();
    let summary = running.wait(Duration::from_secs(30));
    assert!(summary.failure.is_none(), "{summary}");
    watcher.join().expect("watcher");
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn main() {
    let rounds = flowgate_tests::bench_arg("--rounds", 50);
    let rate = flowgate_tests::bench_arg("--rate", 20_000);
    println!("| measure | result | notes |\n|---|---|---|");
    run("small", [MARK_B, MARK_A], rounds, rate);
    run("large", [MARK_LARGE, MARK_A], rounds, rate);
}
