//! Plugins in other languages (a test binary of its own: see tests/Cargo.toml): the conformance suite (the same plugins written in each
//! language, run on the same input per event and per batch, outputs compared byte for byte),
//! and `flowgate plugin new` / `build` / `test` as a plugin author uses them.
//!
//! The C plugins are built here from `plugins/conformance/c/` with Flowgate's own build (clang
//! 19 and the WASI libc; a missing toolchain fails with the command that installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use flowgate::build::project::{self, ProjectError};
use flowgate::event::{self, Event, Header};
use flowgate::runtime::{CallError, PluginError};
use flowgate::state::SharedState;
use flowgate_tests::Rng;
use flowgate_tests::plugins::{KEEP_FLAG, REJECT_BAD, SPLIT, STATE_COUNT, UPPERCASE};

/// The conformance plugins: name, the Rust build, whether it needs keyed state.
const PLUGINS: [(&str, &str, bool); 5] = [
    ("uppercase", UPPERCASE, false),
    ("keep-flag", KEEP_FLAG, false),
    ("split", SPLIT, false),
    ("reject-bad", REJECT_BAD, false),
    ("state-count", STATE_COUNT, true),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds a conformance project (copied aside, so the sources stay clean); `uppercase` is the
/// project `flowgate plugin new` writes, so the templates are held to the suite too. `aot`
/// turns on ahead-of-time compilation (JavaScript and TypeScript). Fails with the install
/// command when a toolchain is missing.
fn build_project(src: &Path, scratch: &Path, aot: bool) -> PathBuf {
    let dir = scratch.join(src.file_name().unwrap());
    if src.ends_with("uppercase") {
        let lang = src.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let lang: project::Lang = clap::ValueEnum::from_str(lang, true).unwrap();
        project::new(&dir, "uppercase", lang, &repo().join("guest-sdk")).unwrap();
    } else {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
    }
    if aot {
        flowgate_tests::compile_ahead_of_time(&dir);
    }
    match project::build(&dir) {
        Ok(out) => out,
        Err(ProjectError::Missing { tool, install }) => {
            panic!("{tool} is needed for this test; install it with: {install}")
        }
        Err(e) => panic!("building {}: {e}", src.display()),
    }
}

/// Realistic input: keyed and unkeyed events, headers, text, multi-line text, JSON objects
/// with and without `"keep": true`, values that fail, empty values, UTF-8.
fn input() -> Vec<Event> {
    let mut rng = Rng(2026);
    let texts = [
        "hello world",
        "line one\nline two\n\nline four",
        "{\"keep\":true,\"user\":\"ana\"}",
        "{\"keep\":false,\"keep_me\":true}",
        "{\"inner\":{\"keep\":true},\"n\":[1,2,{\"keep\":true}]}",
        "{\"note\":\"say \\\"keep\\\": true\",\"keep\": true}",
        "bad input here",
        "badly formed? no: bad prefix",
        "",
        "grüße, 東京\nnaïve",
        "[1,2,3]",
        "{}",
    ];
    (0..240)
        .map(|i| {
            let value = texts[rng.below(texts.len() as u64) as usize];
            let key = match rng.below(4) {
                0 => None,
                1 => Some(Vec::new()),
                k => Some(format!("user-{}", k * 10 + rng.below(5)).into_bytes()),
            };
            let headers = (0..rng.below(3))
                .map(|h| Header {
                    name: format!("h{h}"),
                    value: format!("v{i}").into_bytes(),
                })
                .collect();
            Event {
                key,
                value: value.as_bytes().to_vec(),
                timestamp: 1_700_000_000_000 + i,
                headers,
            }
        })
        .collect()
}

fn failure_line(row: usize, e: &CallError) -> String {
    match e.plugin_error() {
        Some(PluginError::InvalidInput(m)) => format!("! row {row}: invalid-input: {m}\n"),
        Some(PluginError::Retryable(m)) => format!("! row {row}: retryable: {m}\n"),
        Some(PluginError::Fatal(m)) => format!("! row {row}: fatal: {m}\n"),
        _ => format!("! row {row}: {}\n", e.kind_name()),
    }
}

/// Output events as NDJSON, and each failed row, of one plugin over the input.
fn run(plugin: &Path, per_batch: bool, state: bool) -> String {
    let rt = flowgate_tests::runtime();
    let p = rt
        .load_file(plugin)
        .unwrap_or_else(|e| panic!("{}: {e}", plugin.display()));
    let mut inst = p.instantiate(Default::default(), Vec::new()).unwrap();
    if state {
        inst.attach_state(SharedState::new(1 << 20));
    }
    let events = input();
    let mut out = Vec::new();
    if per_batch {
        // Uneven batches, so batch edges fall anywhere.
        let mut first = 0;
        for size in [1, 7, 64, 13, 100, 55].iter().cycle() {
            if first >= events.len() {
                break;
            }
            let chunk = &events[first..(first + size).min(events.len())];
            let r = inst.on_batch(&event::batch_of(chunk)).unwrap();
            let mut fails = r.failures.iter().peekable();
            let cols = event::columns(&r.output).unwrap();
            for (row, origin) in cols.rows().zip(&r.origins) {
                while let Some(f) = fails.next_if(|f| f.row < *origin) {
                    out.extend(failure_line(first + f.row as usize, &f.error).bytes());
                }
                event::ndjson::write_event(&mut out, &row).unwrap();
            }
            for f in fails {
                out.extend(failure_line(first + f.row as usize, &f.error).bytes());
            }
            first += chunk.len();
        }
    } else {
        for (row, e) in events.iter().enumerate() {
            match inst.on_event(e) {
                Ok(outputs) => {
                    for o in &outputs {
                        let mut pairs = Vec::new();
                        event::ndjson::write_event(&mut out, &event::view(o, &mut pairs)).unwrap();
                    }
                }
                Err(err) => out.extend(failure_line(row, &err).bytes()),
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The languages held to the Rust plugins' output: folder under `plugins/conformance`, name,
/// whether compiled ahead of time.
const LANGUAGES: [(&str, &str, bool); 9] = [
    ("c", "C", false),
    ("zig", "Zig", false),
    ("go", "Go", false),
    ("assemblyscript", "AssemblyScript", false),
    ("cpp", "C++", false),
    ("python", "Python", false),
    ("js", "JavaScript", false),
    ("js", "JavaScript (aot)", true),
    ("ts", "TypeScript", false),
];

#[test]
fn every_language_gives_the_same_output_per_event_and_per_batch() {
    let scratch = tempfile::tempdir().unwrap();
    for (name, rust, state) in PLUGINS {
        let want = run(rust.as_ref(), false, state);
        assert!(
            want.lines().count() > 100,
            "{name}: {} lines",
            want.lines().count()
        );
        assert_eq!(
            run(rust.as_ref(), true, state),
            want,
            "{name}: Rust per batch vs per event"
        );
        for (dir, lang, aot) in LANGUAGES {
            let path = build_project(
                &repo().join("plugins/conformance").join(dir).join(name),
                &scratch.path().join(if aot { "js-aot" } else { dir }),
                aot,
            );
            for per_batch in [false, true] {
                let got = run(path.as_ref(), per_batch, state);
                if got != want {
                    let at = got
                        .lines()
                        .zip(want.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.lines().count().min(want.lines().count()));
                    panic!(
                        "{name} in {lang} (per {}) differs from Rust at line {}:\n  {lang}: {:?}\n  Rust: {:?}",
                        if per_batch { "batch" } else { "event" },
                        at + 1,
                        got.lines().nth(at),
                        want.lines().nth(at)
                    );
                }
            }
        }
    }
}

fn flowgate(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(args)
        .current_dir(dir)
        .env(
            "FLOWGATE_CACHE_DIR",
            flowgate_tests::target_dir().join("flowgate-test-cache"),
        )
        .output()
        .unwrap()
}

#[test]
fn a_new_project_builds_and_passes_its_test_as_written_in_every_language() {
    let scratch = tempfile::tempdir().unwrap();
    let languages = LANGUAGES.iter().filter(|(_, _, aot)| !aot);
    for lang in std::iter::once("rust").chain(languages.map(|(dir, _, _)| *dir)) {
        let name = format!("my-{lang}-plugin");
        let out = flowgate(
            scratch.path(),
            &[
                "plugin",
                "new",
                &name,
                "--lang",
                lang,
                "--sdk",
                repo().join("guest-sdk").to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = scratch.path().join(&name);
        assert!(dir.join("flowgate.toml").is_file() && dir.join("test/expected.ndjson").is_file());
        let out = flowgate(&dir, &["plugin", "build"]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !text.contains("is not installed"),
            "a toolchain is missing for this test: {text}"
        );
        assert!(out.status.success(), "{lang} build: {text}");
        let component = dir.join("build").join(format!("{name}.wasm"));
        let bytes = std::fs::read(&component).unwrap();
        assert!(
            flowgate::build::is_component(&bytes),
            "{lang}: not a component"
        );
        let out = flowgate(&dir, &["plugin", "test"]);
        assert!(
            out.status.success(),
            "{lang}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("per event and per batch"));

        // A change that breaks the expectation is reported, with the line.
        let expected = dir.join("test/expected.ndjson");
        let text = std::fs::read_to_string(&expected).unwrap();
        std::fs::write(&expected, text.replace("HELLO", "HELLO!")).unwrap();
        let out = flowgate(&dir, &["plugin", "test"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("differs from test/expected.ndjson at line 1"),
            "{err}"
        );
    }
}

#[test]
fn a_missing_toolchain_stops_the_build_with_the_command_that_installs_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("p");
    project::new(&dir, "p", project::Lang::C, &repo().join("guest-sdk")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["plugin", "build"])
        .current_dir(&dir)
        .env("PATH", scratch.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(project::C_INSTALL), "{err}");

    // `aot = true` with componentize-js (and Node.js) but no weval on PATH.
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["componentize-js", "node"] {
        let path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is needed for this test: {}", project::JS_INSTALL));
        std::os::unix::fs::symlink(path, bin.join(tool)).unwrap();
    }
    let dir = scratch.path().join("js");
    project::new(&dir, "js", project::Lang::Js, &repo().join("guest-sdk")).unwrap();
    flowgate_tests::compile_ahead_of_time(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["plugin", "build"])
        .current_dir(&dir)
        .env("PATH", &bin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(project::WEVAL_INSTALL), "{err}");
}

#[test]
fn ahead_of_time_compilation_is_refused_for_other_languages() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("p");
    project::new(&dir, "p", project::Lang::C, &repo().join("guest-sdk")).unwrap();
    let text = std::fs::read_to_string(dir.join("flowgate.toml")).unwrap();
    assert!(
        !text.contains("aot"),
        "only JavaScript and TypeScript offer it: {text}"
    );
    flowgate_tests::compile_ahead_of_time(&dir);
    let err = project::build(&dir).unwrap_err().to_string();
    assert!(
        err.contains("`aot` applies to JavaScript and TypeScript plugins only"),
        "{err}"
    );
}

#[test]
fn a_core_module_that_is_not_a_plugin_is_refused_with_the_reason() {
    // A valid core module that exports nothing a stage needs.
    let module = b"\0asm\x01\0\0\0";
    let err = flowgate::build::componentize(module, "stage").unwrap_err();
    assert!(
        err.to_string()
            .contains("does not implement the `flowgate:plugin/stage` world"),
        "{err}"
    );
    let err = flowgate::build::componentize(b"nope", "stage").unwrap_err();
    assert!(
        err.to_string()
            .contains("neither a WebAssembly core module nor a component"),
        "{err}"
    );
}

/// Over 100,000 events per event and 100,000 per batch, the map plugin of each compiled
/// language stays within a small memory cap, 8 MiB (32 MiB for Go): its helper frees each
/// call's memory, or its collector runs. And it gives the right output to the last event.
#[test]
fn a_long_run_stays_within_a_small_memory_cap() {
    let scratch = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..100_000u32)
        .map(|i| Event {
            key: (i % 2 == 0).then(|| i.to_be_bytes().to_vec()),
            value: format!("event {i} of a long run").into_bytes(),
            timestamp: i64::from(i),
            headers: vec![Header {
                name: "n".into(),
                value: i.to_string().into_bytes(),
            }],
        })
        .collect();
    let want = |e: &Event| e.value.to_ascii_uppercase();
    // Go's runtime takes about 19 MB of heap arenas as it starts (docs/languages/go.md).
    for (dir, lang, mib) in [
        ("c", "C", 8),
        ("cpp", "C++", 8),
        ("zig", "Zig", 8),
        ("go", "Go", 32),
        ("assemblyscript", "AssemblyScript", 8),
    ] {
        let limits = flowgate::runtime::Limits {
            memory_bytes: mib << 20,
            ..Default::default()
        };
        let path = build_project(
            &repo()
                .join("plugins/conformance")
                .join(dir)
                .join("uppercase"),
            &scratch.path().join(dir),
            false,
        );
        let rt = flowgate_tests::runtime();
        let plugin = rt.load_file(&path).unwrap();
        let mut inst = plugin
            .instantiate(limits, Vec::new())
            .unwrap_or_else(|err| panic!("{lang}: {err}"));
        for (i, e) in events.iter().enumerate() {
            let out = inst
                .on_event(e)
                .unwrap_or_else(|err| panic!("{lang}, event {i}: {err}"));
            assert_eq!(out.len(), 1, "{lang}, event {i}");
            assert_eq!(out[0].value, want(e), "{lang}, event {i}");
            assert_eq!((&out[0].key, &out[0].headers), (&e.key, &e.headers));
        }
        for (n, chunk) in events.chunks(1024).enumerate() {
            let r = inst
                .on_batch(&event::batch_of(chunk))
                .unwrap_or_else(|err| panic!("{lang}, batch {n}: {err}"));
            let cols = event::columns(&r.output).unwrap();
            assert_eq!(cols.len(), chunk.len(), "{lang}, batch {n}");
            for (row, e) in cols.rows().zip(chunk) {
                assert_eq!(row.value, want(e), "{lang}, batch {n}");
                assert_eq!(row.key, e.key.as_deref(), "{lang}, batch {n}");
            }
        }
    }
}
