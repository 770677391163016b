//! Runs three workloads over the same records through native Rust, Flowgate per event,
//! Flowgate per batch and Fluvio SmartEngine, and prints events/s with ratios.
//!
//! Workloads (`bench/workloads.rs`, shared with the quick ratio report): `filter` keeps values
//! containing `"level":"error"` (a quarter of them); `map` uppercases the value; `count`
//! replaces the value with a running count per key (1,000 keys).
//! Records: `--records` (default 1,000,000) of 64 and of 1,024 bytes. Each figure is the median
//! of `--runs` (default 5) timed runs after a warm-up. Inputs are prepared outside the timed part
//! in each engine's own input form (a columnar batch for Flowgate, encoded records for Fluvio,
//! as each would get them from its log); outputs are each engine's own output form.
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flowgate::event::{self, Batch, Event};
use flowgate::runtime::{Limits, Runtime, RuntimeConfig};
use fluvio_protocol::record::Record;
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;

#[path = "../../../workloads.rs"]
mod workloads;
use workloads::{BATCH, Work, flowgate_batches, flowgate_events, measure, native, records};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn fluvio_chain(engine: &SmartEngine, path: &Path) -> SmartModuleChainInstance {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = SmartModuleConfig::builder()
        .smartmodule_names(vec!["bench".to_string()])
        .build()
        .expect("smartmodule config");
    let mut builder = SmartModuleChainBuilder::default();
    builder.add_smart_module(config, bytes);
    // Fluvio's default store limit (1 GB) is reached during one run of the 1,024-byte map
    // (977 calls on one chain): its module memory keeps growing from call to call. The largest
    // wasm32 memory lets the run finish.
    builder.set_store_memory_limit(u32::MAX as usize);
    builder.initialize(engine).expect("initialize chain")
}

fn fluvio_inputs(events: &[Event]) -> Vec<SmartModuleInput> {
    events
        .chunks(BATCH)
        .map(|chunk| {
            let records: Vec<Record> = chunk
                .iter()
                .map(|e| Record::new_key_value(e.key.clone().unwrap_or_default(), e.value.clone()))
                .collect();
            SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)
                .expect("encode records")
        })
        .collect()
}

fn fluvio_run(chain: &mut SmartModuleChainInstance, inputs: Vec<SmartModuleInput>) -> usize {
    inputs
        .into_iter()
        .map(|input| {
            let out = chain.process(input).expect("process");
            assert!(out.error.is_none(), "smartmodule error: {:?}", out.error);
            out.successes.len()
        })
        .sum()
}

fn main() {
    let n: usize = arg("--records")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = arg("--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let plugins = PathBuf::from(arg("--plugins").expect("--plugins DIR"));
    let smartmodules = PathBuf::from(arg("--smartmodules").expect("--smartmodules DIR"));

    // `--profile <workload> <size>` runs only Flowgate per batch on that case (for perf).
    let profile: Option<(String, usize)> = std::env::args()
        .skip_while(|a| a != "--profile")
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .split_first()
        .and_then(|(w, rest)| Some((w.clone(), rest.first()?.parse().ok()?)));
    let runtime = Runtime::new(RuntimeConfig::default()).expect("flowgate runtime");
    let engine = SmartEngine::new();
    let limits = Limits {
        call_timeout: Duration::from_secs(10),
        ..Limits::default()
    };

    println!("{n} records per run, median of {runs} runs, batches of {BATCH}\n");
    println!(
        "| workload | size | native | Flowgate per event | Flowgate per batch | Fluvio SmartEngine | batch / native | batch / Fluvio | event / Fluvio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in [64usize, 1024] {
        if profile.as_ref().is_some_and(|(_, s)| *s != size) {
            continue;
        }
        let events = records(n, size);
        let batches: Vec<Batch> = events.chunks(BATCH).map(event::batch_of).collect();
        for work in [Work::Filter, Work::Map, Work::Count] {
            let (plugin, config, sm) = work.modules();
            let plugin = runtime
                .load_file(&plugins.join(format!("{plugin}.wasm")))
                .expect("load plugin");
            let sm_path = smartmodules.join(format!("{sm}.wasm"));
            if let Some((w, s)) = &profile {
                if w != work.name() || *s != size {
                    continue;
                }
                let (rate, _) = measure(
                    n,
                    runs,
                    || {
                        plugin
                            .instantiate(limits.clone(), config.clone())
                            .expect("instantiate")
                    },
                    |mut inst| flowgate_batches(&mut inst, &batches),
                );
                println!(
                    "| {} | {size} B | | | {:.2} M/s | | | | |",
                    work.name(),
                    rate / 1e6
                );
                continue;
            }

            let (native_rate, native_out) = measure(n, runs, HashMap::new, |mut c| {
                native(work, &batches, &mut c)
            });
            let (event_rate, event_out) = measure(
                n,
                runs,
                || {
                    plugin
                        .instantiate(limits.clone(), config.clone())
                        .expect("instantiate")
                },
                |mut inst| flowgate_events(&mut inst, &events),
            );
            let (batch_rate, batch_out) = measure(
                n,
                runs,
                || {
                    plugin
                        .instantiate(limits.clone(), config.clone())
                        .expect("instantiate")
                },
                |mut inst| flowgate_batches(&mut inst, &batches),
            );
            let (fluvio_rate, fluvio_out) = measure(
                n,
                runs,
                || (fluvio_chain(&engine, &sm_path), fluvio_inputs(&events)),
                |(mut chain, inputs)| fluvio_run(&mut chain, inputs),
            );
            // All four did the same work.
            assert_eq!(event_out, native_out, "{}: Flowgate per event", work.name());
            assert_eq!(batch_out, native_out, "{}: Flowgate per batch", work.name());
            assert_eq!(fluvio_out, native_out, "{}: Fluvio", work.name());

            let m = |r: f64| format!("{:.2} M/s", r / 1e6);
            println!(
                "| {} | {size} B | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× |",
                work.name(),
                m(native_rate),
                m(event_rate),
                m(batch_rate),
                m(fluvio_rate),
                batch_rate / native_rate,
                batch_rate / fluvio_rate,
                event_rate / fluvio_rate,
            );
        }
    }
}
