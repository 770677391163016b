//! The stage part of the quick ratio report (`scripts/ratios`): filter, map and count over the
//! same records natively and as WASM per batch (and map per event), at 64 and 1,024 bytes, with
//! the workloads of the peer benchmark (`bench/workloads.rs`, one source for both). Prints
//! Markdown rows: workload, size, native, WASM, ratio.
//!
//! Run: `cargo bench -p flowgate-tests --bench ratios` (`-- --records N --runs R [--work filter]
//! [--size 1024]`).
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::collections::HashMap;
use std::time::Duration;

use flowgate::event::{self, Batch};
use flowgate::runtime::Limits;

#[path = "../../bench/workloads.rs"]
mod workloads;
use workloads::{BATCH, Work, flowgate_batches, flowgate_events, measure, native, records};

/// Components built against contract 0.1.0 (see tests/all/runtime.rs).
const CONTRACT_0_1_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/contract-0.1.0");

fn main() {
    let n = flowgate_tests::bench_arg("--records", 200_000) as usize;
    let runs = (flowgate_tests::bench_arg("--runs", 3) as usize).max(1);
    // `--work filter|map|count` runs one workload (to profile it).
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--work")
        .and_then(|i| args.get(i + 1).cloned());
    let rt = flowgate_tests::runtime();
    let dir = std::path::Path::new(flowgate_tests::plugins::UPPERCASE)
        .parent()
        .expect("the plugins' directory")
        .to_owned();
    let limits = Limits {
        call_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    println!("| stage workload | size | native | WASM | WASM / native |");
    println!("|---|---:|---:|---:|---:|");
    // `--size 64|1024` runs one record size (to profile it).
    let size_only = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1)?.parse::<usize>().ok());
    assert!(
        size_only.is_none_or(|s| s == 64 || s == 1024),
        "--size takes 64 or 1024"
    );
    for size in [64usize, 1024] {
        if size_only.is_some_and(|s| s != size) {
            continue;
        }
        let events = records(n, size);
        let batches: Vec<Batch> = events.chunks(BATCH).map(event::batch_of).collect();
        for work in [Work::Filter, Work::Map, Work::Count] {
            if only.as_deref().is_some_and(|w| w != work.name()) {
                continue;
            }
            let (stem, config, _) = work.modules();
            let plugin = rt
                .load_file(&dir.join(format!("{stem}.wasm")))
                .expect("load plugin");
            let instance = || {
                plugin
                    .instantiate(limits.clone(), config.clone())
                    .expect("instantiate")
            };
            let (native_rate, native_out) = measure(n, runs, HashMap::new, |mut c| {
                native(work, &batches, &mut c)
            });
            let (batch_rate, batch_out) = measure(n, runs, instance, |mut i| {
                flowgate_batches(&mut i, &batches)
            });
            assert_eq!(batch_out, native_out, "{}: per batch", work.name());
            let m = |r: f64| format!("{:.2} M/s", r / 1e6);
            if work == Work::Filter {
                // The same filter built against contract 0.1.0, a stage that copies each kept
                // event out (the baseline of the filter world's selection, in this run).
                let old = rt
                    .load_file(&std::path::Path::new(CONTRACT_0_1_0).join("contains.wasm"))
                    .expect("load the 0.1.0 build");
                let (old_rate, old_out) = measure(
                    n,
                    runs,
                    || {
                        old.instantiate(limits.clone(), config.clone())
                            .expect("instantiate")
                    },
                    |mut i| flowgate_batches(&mut i, &batches),
                );
                assert_eq!(old_out, native_out, "filter 0.1.0: per batch");
                println!(
                    "| filter per batch, 0.1.0 build (stage world) | {size} B | {} | {} | {:.2}× |",
                    m(native_rate),
                    m(old_rate),
                    old_rate / native_rate
                );
            }
            println!(
                "| {} per batch | {size} B | {} | {} | {:.2}× |",
                work.name(),
                m(native_rate),
                m(batch_rate),
                batch_rate / native_rate
            );
            if work == Work::Map && size == 64 {
                let (event_rate, event_out) =
                    measure(n, runs, instance, |mut i| flowgate_events(&mut i, &events));
                assert_eq!(event_out, native_out, "map: per event");
                println!(
                    "| map per event | {size} B | {} | {} | {:.2}× |",
                    m(native_rate),
                    m(event_rate),
                    event_rate / native_rate
                );
            }
        }
    }
}
