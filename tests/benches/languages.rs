//! Plugin languages side by side: the conformance `uppercase` map plugin in each language.
//!
//! Per language: component size; time to compile it (empty cache) and to load it again (from
//! the compiled-code cache); time to instantiate it (a fresh instance, `init` called); events/s
//! per event (`on-event`) and per batch (`on-batch`, 1,024 events) over 200,000 events of 64
//! bytes. Figures are medians of `--runs` runs (default 3), all languages in one process.
//!
//! Run: `cargo bench -p flowgate-tests --bench languages [-- --runs N --only rust,zig]` (needs
//! the toolchains CI installs: see `.ci/run`).

#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flowgate::build::project;
use flowgate::event::{self, Event};
use flowgate::runtime::{Runtime, RuntimeConfig};
use flowgate_tests::plugins::UPPERCASE;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `lang` is a `--lang` name, `-aot` appended for ahead-of-time compilation.
fn build(lang: &str, scratch: &Path) -> PathBuf {
    // The project `flowgate plugin new` writes: the upper-casing map of every language.
    let dir = scratch.join(lang);
    let (lang, aot) = match lang.strip_suffix("-aot") {
        Some(l) => (l, true),
        None => (lang, false),
    };
    let lang_value: project::Lang = clap::ValueEnum::from_str(lang, true).expect("a language");
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    project::new(&dir, "uppercase", lang_value, project::Kind::Map, &sdk).expect("project");
    if aot {
        flowgate_tests::compile_ahead_of_time(&dir);
    }
    let t = Instant::now();
    let out = project::build(&dir).unwrap_or_else(|e| panic!("{lang}: {e}"));
    println!("  ({lang} built in {:.1} s)", t.elapsed().as_secs_f64());
    out
}

fn main() {
    let runs = flowgate_tests::bench_arg("--runs", 3) as usize;
    // `--only rust,zig`: those languages (by `--lang` name; `js-aot` for JavaScript compiled
    // ahead of time) and no others.
    let only = flowgate_tests::bench_word("--only");
    let wanted = |lang: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|l| l == lang))
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut plugins = Vec::new();
    if wanted("rust") {
        plugins.push(("Rust".to_owned(), PathBuf::from(UPPERCASE)));
    }
    for (name, dir) in [
        ("C", "c"),
        ("C++", "cpp"),
        ("Zig", "zig"),
        ("Go", "go"),
        ("AssemblyScript", "assemblyscript"),
        ("Python", "python"),
        ("JavaScript", "js"),
        ("JavaScript (aot)", "js-aot"),
        ("TypeScript", "ts"),
    ] {
        if wanted(dir) {
            plugins.push((name.to_owned(), build(dir, scratch.path())));
        }
    }
    let events: Vec<Event> = (0..200_000)
        .map(|i| Event {
            key: None,
            value: format!("{i:08} the quick brown fox jumps over the lazy dog, and again {i:08}")
                .into_bytes()[..64]
                .to_vec(),
            timestamp: i,
            headers: Vec::new(),
        })
        .collect();
    let batches: Vec<_> = events.chunks(1024).map(event::batch_of).collect();
    println!(
        "| language | component | compile (no cache) | load (cached) | instantiate | per event | per batch |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, path) in &plugins {
        let size = std::fs::metadata(path).expect("plugin").len();
        let (mut compile, mut cached, mut inst, mut per_event, mut per_batch) =
            (vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            let cache = scratch.path().join(format!("cache-{name}-{run}"));
            let config = RuntimeConfig {
                cache_dir: Some(cache),
                max_stage_instances: 8,
                max_memory_bytes: 512 << 20,
                ..RuntimeConfig::default()
            };
            let t = Instant::now();
            Runtime::new(config.clone())
                .expect("runtime")
                .load_file(path)
                .expect("compile");
            compile.push(t.elapsed().as_secs_f64());
            let rt = Runtime::new(config).expect("runtime");
            let t = Instant::now();
            let plugin = rt.load_file(path).expect("load");
            cached.push(t.elapsed().as_secs_f64());
            assert!(
                plugin.info().from_cache,
                "{name}: not loaded from the cache"
            );
            let t = Instant::now();
            // A generous cap: the JavaScript engine's memory grows over long per-event runs
            // (see docs/languages/js.md); the benchmark measures speed, not that.
            let limits = flowgate::runtime::Limits {
                memory_bytes: 512 << 20,
                ..Default::default()
            };
            let mut instance = plugin.instantiate(limits, Vec::new()).expect("instance");
            inst.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for e in &events {
                std::hint::black_box(instance.on_event(e).expect("event"));
            }
            per_event.push(events.len() as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for b in &batches {
                std::hint::black_box(instance.on_batch(b).expect("batch"));
            }
            per_batch.push(events.len() as f64 / t.elapsed().as_secs_f64());
        }
        let ms = |v: Vec<f64>| Duration::from_secs_f64(median(v)).as_secs_f64() * 1e3;
        println!(
            "| {name} | {:.0} KB | {:.0} ms | {:.1} ms | {:.2} ms | {:.2} M/s | {:.2} M/s |",
            size as f64 / 1e3,
            ms(compile),
            ms(cached),
            ms(inst),
            median(per_event) / 1e6,
            median(per_batch) / 1e6
        );
    }
}
