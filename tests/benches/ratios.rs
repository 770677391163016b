//! The stage part of the quick ratio report (`scripts/ratios`): filter, map and count over the
//! same records natively and as WASM per batch (and map per event), at 64 and 1,024 bytes, with
//! the workloads of the peer benchmark (`bench/workloads.rs`, one source for both). Prints
//! Markdown rows: workload, size, native, WASM, ratio.
//!
//! Run: `cargo bench -p flowgate-tests --bench ratios` (`-- --records N --runs R`).
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::collections::HashMap;
use std::time::Duration;

use flowgate::event::{self, Batch};
use flowgate::runtime::Limits;

#[path = "../../bench/workloads.rs"]
mod workloads;
use workloads::{BATCH, Work, flowgate_batches, flowgate_events, measure, native, records};

fn main() {
    let n = flowgate_tests::bench_arg("--records", 200_000) as usize;
    let runs = (flowgate_tests::bench_arg("--runs", 3) as usize).max(1);
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
    for size in [64usize, 1024] {
        let events = records(n, size);
        let batches: Vec<Batch> = events.chunks(BATCH).map(event::batch_of).collect();
        for work in [Work::Filter, Work::Map, Work::Count] {
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
