//! Plugins in other languages (a test binary of its own: see tests/Cargo.toml): the conformance suite (the same plugins written in each
//! language, run on the same input per event and per batch, outputs compared byte for byte),
//! and `flowgate plugin new` / `build` / `test` as a plugin author uses them.
//!
//! The C plugins are built here from `plugins/conformance/c/` with Flowgate's own build (clang
//! 19 and the WASI libc; a missing toolchain fails with the command that installs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flowgate::build::project::{self, ProjectError};
use flowgate::event::{self, Event, Header};
use flowgate::runtime::{CallError, PluginError};
use flowgate::state::SharedState;
use flowgate::state::{Failure, WindowSpec, WindowState, Windowing};
use flowgate_tests::Rng;
use flowgate_tests::fixture::Fixture;
use flowgate_tests::plugins::{
    COUNT_SUM, KEEP_FLAG, REJECT_BAD, REKEY, RETIME, SPLIT, STATE_COUNT, TAG_ROUTE, UPPERCASE,
};

/// The conformance stage plugins: name, the Rust build, whether it needs keyed state.
const PLUGINS: [(&str, &str, bool); 8] = [
    ("uppercase", UPPERCASE, false),
    ("keep-flag", KEEP_FLAG, false),
    ("split", SPLIT, false),
    ("reject-bad", REJECT_BAD, false),
    ("state-count", STATE_COUNT, true),
    ("rekey", REKEY, false),
    ("tag-route", TAG_ROUTE, false),
    ("retime", RETIME, false),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `plugin new --kind` whose template a conformance plugin is, if it is one.
fn template_kind(plugin: &str) -> Option<&'static str> {
    match plugin {
        "uppercase" => Some("map"),
        "state-count" => Some("stateful"),
        "count-sum" => Some("aggregator"),
        _ => None,
    }
}

/// Builds a conformance project (copied aside, so the sources stay clean); `uppercase`,
/// `state-count` and `count-sum` are the projects `flowgate plugin new` writes (`--kind map`,
/// `--kind stateful`, `--kind aggregator`), so the templates are held to the suite too. `aot` turns on ahead-of-time
/// compilation (JavaScript and TypeScript). Fails with the install command when a toolchain is
/// missing.
fn build_project(src: &Path, scratch: &Path, aot: bool) -> PathBuf {
    let dir = scratch.join(src.file_name().unwrap());
    let name = src.file_name().unwrap().to_str().unwrap();
    if let Some(kind) = template_kind(name) {
        let kind: project::Kind = clap::ValueEnum::from_str(kind, true).unwrap();
        let lang = src.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let lang: project::Lang = clap::ValueEnum::from_str(lang, true).unwrap();
        project::new(&dir, name, lang, kind, &repo().join("guest-sdk")).unwrap();
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
        "{\"user\":\"bo\",\"n\":1}",
        "{\"user\":\"東京\"}",
        "{\"user\":\"\"}",
        "cut \"user\":\"unterminated",
    ];
    (0..240)
        .map(|i| {
            let value = texts[rng.below(texts.len() as u64) as usize];
            let key = match rng.below(4) {
                0 => None,
                1 => Some(Vec::new()),
                k => Some(format!("user-{}", k * 10 + rng.below(5)).into_bytes()),
            };
            // Repeated names, and order, must come through.
            let headers = (0..rng.below(4))
                .map(|h| Header {
                    name: format!("h{}", h % 2),
                    value: format!("v{i}").into_bytes(),
                })
                .collect();
            Event {
                key,
                value: value.as_bytes().to_vec(),
                // Spread over seconds, so a rewrite to the second shows.
                timestamp: 1_700_000_000_000 + i * 137,
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

/// A language the suite holds to Rust: its folder under `plugins/conformance` (and its
/// `plugin new --lang`), its name, whether it is compiled ahead of time, and for the compiled
/// languages the memory cap (MiB) its map plugin keeps to over a long run.
struct Language {
    dir: &'static str,
    name: &'static str,
    aot: bool,
    memory_cap_mib: Option<usize>,
}

/// One test per language, so that the languages build side by side and a failure names its
/// language. Each builds every template as a plugin author does (`plugin new`, `plugin build`,
/// `plugin test`), then holds the conformance plugins to Rust's output per event and per batch,
/// the `count-sum` aggregator to Rust's windows, and for the compiled languages a long run to a
/// small memory cap. The `map`, `stateful` and `aggregator` templates are the conformance
/// suite's `uppercase`, `state-count` and `count-sum`: one build serves both.
mod language {
    use super::{Language, held_to_rust, templates_pass};

    macro_rules! languages {
        ($($test:ident: $dir:literal, $name:literal, $aot:literal, $cap:expr;)*) => {$(
            #[test]
            fn $test() {
                held_to_rust(&Language { dir: $dir, name: $name, aot: $aot, memory_cap_mib: $cap });
            }
        )*};
    }

    // Go's runtime takes about 19 MB of heap arenas as it starts (docs/languages/go.md).
    languages! {
        c: "c", "C", false, Some(8);
        cpp: "cpp", "C++", false, Some(8);
        zig: "zig", "Zig", false, Some(8);
        go: "go", "Go", false, Some(32);
        assemblyscript: "assemblyscript", "AssemblyScript", false, Some(8);
        python: "python", "Python", false, None;
        javascript: "js", "JavaScript", false, None;
        javascript_ahead_of_time: "js", "JavaScript (aot)", true, None;
        typescript: "ts", "TypeScript", false, None;
    }

    /// Rust is what the others are held to: its templates pass as written.
    #[test]
    fn rust() {
        templates_pass("rust");
    }
}

/// The kinds `plugin new --kind` writes.
const KINDS: [&str; 5] = ["map", "filter", "flat-map", "aggregator", "stateful"];

/// Every template of a language builds and passes its test as written; their components by
/// kind.
fn templates_pass(lang: &str) -> (tempfile::TempDir, HashMap<&'static str, PathBuf>) {
    let scratch = tempfile::tempdir().unwrap();
    let built = KINDS
        .iter()
        .map(|kind| {
            (
                *kind,
                new_project_passes_its_test(scratch.path(), lang, kind),
            )
        })
        .collect();
    (scratch, built)
}

/// What one language is held to (see [`language`]).
fn held_to_rust(lang: &Language) {
    // Ahead-of-time builds are not a template's: their conformance plugins are built below.
    let (scratch, templates) = if lang.aot {
        (tempfile::tempdir().unwrap(), HashMap::new())
    } else {
        templates_pass(lang.dir)
    };
    let build = |name: &str| -> PathBuf {
        match template_kind(name).and_then(|kind| templates.get(kind)) {
            Some(path) => path.clone(),
            None => build_project(
                &repo().join("plugins/conformance").join(lang.dir).join(name),
                &scratch.path().join("conformance"),
                lang.aot,
            ),
        }
    };
    gives_rusts_output_per_event_and_per_batch(lang, &build);
    aggregates_windows_as_rust_does(lang, &build("count-sum"));
    if let Some(mib) = lang.memory_cap_mib {
        stays_within_a_small_memory_cap(lang, &build("uppercase"), mib);
    }
}

/// The line at which two outputs part, 1-based.
fn first_difference(got: &str, want: &str) -> usize {
    got.lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(got.lines().count().min(want.lines().count()))
        + 1
}

/// The Rust conformance plugins' outputs (per event; per batch is checked to be the same),
/// computed once for every language's test.
fn rust_outputs() -> &'static [String] {
    static OUTPUTS: OnceLock<Vec<String>> = OnceLock::new();
    OUTPUTS.get_or_init(|| {
        PLUGINS
            .iter()
            .map(|(name, rust, state)| {
                let want = run(rust.as_ref(), false, *state);
                let lines = want.lines().count();
                assert!(lines > 100, "{name}: {lines} lines");
                assert_eq!(
                    run(rust.as_ref(), true, *state),
                    want,
                    "{name}: Rust per batch vs per event"
                );
                want
            })
            .collect()
    })
}

fn gives_rusts_output_per_event_and_per_batch(lang: &Language, build: &dyn Fn(&str) -> PathBuf) {
    for ((name, _, state), want) in PLUGINS.iter().zip(rust_outputs()) {
        // Compiling ahead of time changes how the plugin's code runs, not the helper's paths
        // these three take besides the others (full events out): the other five hold it to
        // the suite, and its weval builds are the slowest of all.
        if lang.aot && ["rekey", "tag-route", "retime"].contains(name) {
            continue;
        }
        let path = build(name);
        if *name == "tag-route" {
            follows_the_route_header(&path, lang.name);
        }
        for per_batch in [false, true] {
            let got = run(path.as_ref(), per_batch, *state);
            if &got != want {
                let at = first_difference(&got, want);
                panic!(
                    "{name} in {} (per {}) differs from Rust at line {at}:\n  {}: {:?}\n  Rust: {:?}",
                    lang.name,
                    if per_batch { "batch" } else { "event" },
                    lang.name,
                    got.lines().nth(at - 1),
                    want.lines().nth(at - 1)
                );
            }
        }
    }
}

/// A pipeline routes the `tag-route` plugin's outputs by the header it set: `json` values to
/// one topic, the others to another, none lost.
fn follows_the_route_header(plugin: &Path, lang: &str) {
    let f = Fixture::new(&format!(
        r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.tag]
plugin = "{}"
input = "raw"
# Python and JavaScript components import every interface of the world, state included.
state = true
route = {{ header = "route", topics = {{ json = "json", text = "text" }} }}

[sinks.json]
type = "file"
input = "json"
path = "json.ndjson"
[sinks.text]
type = "file"
input = "text"
path = "text.ndjson"
"#,
        plugin.display()
    ));
    let mut lines = Vec::new();
    for e in input() {
        let mut pairs = Vec::new();
        event::ndjson::write_event(&mut lines, &event::view(&e, &mut pairs)).unwrap();
    }
    std::fs::write(f.path("in.ndjson"), &lines).unwrap();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{lang}: {stderr}");
    let values = |name: &str| -> Vec<String> {
        f.lines(name)
            .iter()
            .map(|e| e["value"].to_string())
            .collect()
    };
    let (json, text): (Vec<Event>, Vec<Event>) = input()
        .into_iter()
        .partition(|e| e.value.first() == Some(&b'{'));
    assert_eq!(
        values("json.ndjson").len(),
        json.len(),
        "{lang}: routed to json"
    );
    assert_eq!(
        values("text.ndjson").len(),
        text.len(),
        "{lang}: routed to text"
    );
    for e in f.lines("json.ndjson") {
        let headers = e["headers"].to_string();
        assert!(
            headers.contains("\"route\",\"json\"") || headers.contains("\"route\":\"json\""),
            "{lang}: {e}"
        );
    }
}

/// An aggregator's output over the windows: the window results as NDJSON and each failed row,
/// in the order of the rows they came at (a failure before what fired after its row), over
/// batches of the given sizes (1: per event), then the windows still open at the end.
fn run_windows(plugin: &Path, windowing: &Windowing, sizes: &[usize]) -> String {
    let rt = flowgate_tests::runtime();
    let p = rt
        .load_file(plugin)
        .unwrap_or_else(|e| panic!("{}: {e}", plugin.display()));
    let mut inst = p.instantiate(Default::default(), Vec::new()).unwrap();
    let events = window_input();
    let mut windows = WindowState::default();
    let mut out = Vec::new();
    let write =
        |fired: &[flowgate::state::Fired], lines: &mut Vec<(usize, u8, String)>, first: usize| {
            let (batch, origins) = flowgate::state::fired_batch(fired);
            for (row, origin) in event::columns(&batch).unwrap().rows().zip(origins) {
                let mut line = Vec::new();
                event::ndjson::write_event(&mut line, &row).unwrap();
                lines.push((first + origin as usize, 1, String::from_utf8(line).unwrap()));
            }
        };
    let mut first = 0;
    for size in sizes.iter().cycle() {
        if first >= events.len() {
            break;
        }
        let chunk = &events[first..(first + size).min(events.len())];
        let batch = event::batch_of(chunk);
        let cols = event::columns(&batch).unwrap();
        let r = windows
            .process(windowing, &mut inst, &batch, &cols)
            .unwrap_or_else(|e| panic!("{}: {e}", plugin.display()));
        let mut lines = Vec::new();
        for (row, f) in &r.failures {
            let row = first + *row as usize;
            let line = match f {
                Failure::Plugin(e) => failure_line(row, e),
                Failure::Refused(r) => format!("! row {row}: {r}\n"),
            };
            lines.push((row, 0, line));
        }
        for row in &r.late {
            let row = first + *row as usize;
            lines.push((row, 0, format!("! row {row}: late\n")));
        }
        write(&r.fired, &mut lines, first);
        lines.sort_by_key(|(row, order, _)| (*row, *order));
        out.extend(lines.into_iter().map(|(_, _, line)| line));
        first += chunk.len();
    }
    let mut lines = Vec::new();
    write(&windows.close_all(&mut inst).unwrap(), &mut lines, 0);
    out.extend(lines.into_iter().map(|(_, _, line)| line));
    out.concat()
}

/// Events for the aggregators: integers as text (and values that are not), keyed, unkeyed and
/// empty-keyed, out of order within 300 ms, so sessions grow into each other and merge.
fn window_input() -> Vec<Event> {
    let mut rng = Rng(7);
    let values = [
        "12",
        "-3",
        "0",
        "999999999999999",
        "7",
        "-0",
        "42",
        "5",
        "bad",
        "",
        "+5",
        " 4",
        "1.5",
        "1234567890123456789",
        "٣",
    ];
    (0..400u64)
        .map(|i| Event {
            key: match rng.below(5) {
                0 => None,
                1 => Some(Vec::new()),
                k => Some(format!("k{k}").into_bytes()),
            },
            value: values[rng.below(values.len() as u64) as usize]
                .as_bytes()
                .to_vec(),
            timestamp: 1_700_000_000_000 + ((i * 37) % 300) as i64 + (i / 30) as i64 * 9,
            headers: Vec::new(),
        })
        .collect()
}

/// Batch sizes of the window runs: per event, and uneven batches.
const WINDOW_BATCHES: [&[usize]; 2] = [&[1], &[1, 7, 64, 13, 100, 55]];

/// The Rust `count-sum` aggregator's window results, per event and per batch, for tumbling
/// and session windows; computed once for every language's test.
fn rust_windows() -> &'static [(&'static str, Windowing, [String; 2])] {
    static WINDOWS: OnceLock<Vec<(&'static str, Windowing, [String; 2])>> = OnceLock::new();
    WINDOWS.get_or_init(|| {
        [
            ("tumbling", WindowSpec::Tumbling { size: 50 }),
            ("session", WindowSpec::Session { gap: 5 }),
        ]
        .into_iter()
        .map(|(kind, spec)| {
            let w = Windowing {
                spec,
                out_of_orderness: 400,
                allowed_lateness: 0,
            };
            let rust = run_windows(COUNT_SUM.as_ref(), &w, WINDOW_BATCHES[0]);
            assert!(
                rust.lines().filter(|l| l.starts_with('{')).count() > 20,
                "{kind}: {rust}"
            );
            assert!(rust.contains("not an integer"), "{kind}: {rust}");
            let batched = run_windows(COUNT_SUM.as_ref(), &w, WINDOW_BATCHES[1]);
            // A failing row neither widens nor bridges a session, batched or not: per batch
            // and per event fire the same windows.
            let at = first_difference(&batched, &rust);
            assert_eq!(
                batched, rust,
                "{kind}: Rust per batch vs per event, from line {at}"
            );
            (kind, w, [rust, batched])
        })
        .collect()
    })
}

fn aggregates_windows_as_rust_does(lang: &Language, plugin: &Path) {
    for (kind, w, wants) in rust_windows() {
        for ((per, sizes), want) in ["event", "batch"].iter().zip(WINDOW_BATCHES).zip(wants) {
            let got = run_windows(plugin, w, sizes);
            if &got != want {
                let at = first_difference(&got, want);
                panic!(
                    "count-sum in {} ({kind} windows, per {per}) differs from Rust at line {at}:\n  {}: {:?}\n  Rust: {:?}",
                    lang.name,
                    lang.name,
                    got.lines().nth(at - 1),
                    want.lines().nth(at - 1)
                );
            }
        }
    }
}

fn flowgate(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(args)
        .current_dir(dir)
        // The Rust projects share one target directory: their dependencies build once.
        .env(
            "CARGO_TARGET_DIR",
            flowgate_tests::target_dir().join("new-rust-projects"),
        )
        .env(
            "FLOWGATE_CACHE_DIR",
            flowgate_tests::target_dir().join("flowgate-test-cache"),
        )
        .output()
        .unwrap()
}

/// `plugin new --lang <lang> --kind <kind>`, `plugin build`, `plugin test`; for a map, also
/// that a broken expectation is reported with its line.
fn new_project_passes_its_test(scratch: &Path, lang: &str, kind: &str) -> PathBuf {
    {
        let name = format!("my-{lang}-{kind}");
        let out = flowgate(
            scratch,
            &[
                "plugin",
                "new",
                &name,
                "--lang",
                lang,
                "--kind",
                kind,
                "--sdk",
                repo().join("guest-sdk").to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = scratch.join(&name);
        assert!(dir.join("flowgate.toml").is_file() && dir.join("test/expected.ndjson").is_file());
        let out = flowgate(&dir, &["plugin", "build"]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !text.contains("is not installed"),
            "a toolchain is missing for this test: {text}"
        );
        assert!(out.status.success(), "{lang} {kind} build: {text}");
        let component = dir.join("build").join(format!("{name}.wasm"));
        let bytes = std::fs::read(&component).unwrap();
        assert!(
            flowgate::build::is_component(&bytes),
            "{lang} {kind}: not a component"
        );
        let out = flowgate(&dir, &["plugin", "test"]);
        assert!(
            out.status.success(),
            "{lang} {kind}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("per event and per batch"));
        // The component as the template builds it, kept aside from the changes below.
        let kept = scratch.join(format!("{name}.wasm"));
        std::fs::copy(&component, &kept).unwrap();
        if lang == "ts" && kind == "stateful" {
            // A source written against contract 0.1.0 imports the state interface at that
            // version: it builds (and type-checks) unchanged, and passes the same test.
            let app = dir.join("app.ts");
            let text = std::fs::read_to_string(&app).unwrap();
            assert!(text.contains("'flowgate:plugin/state@0.1.1'"), "{text}");
            std::fs::write(&app, text.replace("state@0.1.1", "state@0.1.0")).unwrap();
            let out = flowgate(&dir, &["plugin", "build"]);
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "ts stateful against 0.1.0: {text}");
            let out = flowgate(&dir, &["plugin", "test"]);
            assert!(
                out.status.success(),
                "ts stateful against 0.1.0: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if kind != "map" {
            return kept;
        }

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
        kept
    }
}

#[test]
fn a_missing_toolchain_stops_the_build_with_the_command_that_installs_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("p");
    project::new(
        &dir,
        "p",
        project::Lang::C,
        project::Kind::Map,
        &repo().join("guest-sdk"),
    )
    .unwrap();
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
    project::new(
        &dir,
        "js",
        project::Lang::Js,
        project::Kind::Map,
        &repo().join("guest-sdk"),
    )
    .unwrap();
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
    project::new(
        &dir,
        "p",
        project::Lang::C,
        project::Kind::Map,
        &repo().join("guest-sdk"),
    )
    .unwrap();
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

/// Over 100,000 events per event and 100,000 per batch, a compiled language's map plugin stays
/// within a small memory cap (8 MiB; 32 MiB for Go): its helper frees each call's memory, or
/// its collector runs. And it gives the right output to the last event.
fn stays_within_a_small_memory_cap(lang: &Language, plugin: &Path, mib: usize) {
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
    let lang = lang.name;
    let limits = flowgate::runtime::Limits {
        memory_bytes: mib << 20,
        ..Default::default()
    };
    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(plugin).unwrap();
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

/// The language pages' common table: its rows, in order, on every page.
const CONTRACT_ROWS: [&str; 9] = [
    "entry points",
    "event fields",
    "emit forms",
    "state",
    "aggregator",
    "errors",
    "config",
    "limits",
    "size and speed",
];

/// The rows whose API names are checked against the helper's sources.
const CHECKED_ROWS: [&str; 6] = [
    "event fields",
    "emit forms",
    "state",
    "aggregator",
    "errors",
    "config",
];

/// The files a language's API lives in: its helper, its templates (and, for Rust, the SDK's
/// crates).
fn api_sources(page: &str) -> String {
    let root = repo();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut add_dir = |dir: PathBuf| {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    };
    let (helper, templates): (&[&str], &str) = match page {
        "rust" => (
            &[
                "guest-sdk/src",
                "guest-sdk/macros/src",
                "guest-sdk/batch/src",
            ],
            "rust",
        ),
        "c" | "cpp" | "zig" => (&["guest-sdk/c"], page),
        "go" => (&["guest-sdk/go"], "go"),
        "assemblyscript" => (&["guest-sdk/assemblyscript"], "assemblyscript"),
        "python" => (&["guest-sdk/python"], "python"),
        "js" | "ts" => (&["guest-sdk/js"], page),
        other => panic!("no sources known for docs/languages/{other}.md"),
    };
    for h in helper {
        add_dir(root.join(h));
    }
    add_dir(root.join("host/src/build/templates").join(templates));
    let mut text: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    text.push_str(include_str!("../../wit/plugin.wit"));
    text
}

/// Every language page has the same table (docs/languages/README.md says what each row holds),
/// and every API name it gives in backticks in the rows about the API is in that language's
/// helper or templates: a renamed or removed function fails here until the page follows.
#[test]
fn every_language_page_has_the_contract_table_and_it_names_only_what_exists() {
    let pages = [
        "rust",
        "c",
        "cpp",
        "zig",
        "go",
        "assemblyscript",
        "python",
        "js",
        "ts",
    ];
    for page in pages {
        let path = repo().join("docs/languages").join(format!("{page}.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        let table = text
            .split("## The contract at a glance")
            .nth(1)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no \"## The contract at a glance\" section",
                    path.display()
                )
            });
        let rows: Vec<(&str, &str)> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').splitn(2, '|').collect();
                (cells[0].trim(), cells.get(1).map_or("", |c| c.trim()))
            })
            .collect();
        let names: Vec<&str> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, CONTRACT_ROWS, "{}: the table's rows", path.display());
        let sources = api_sources(page);
        for (row, cell) in rows {
            assert!(!cell.is_empty(), "{}: row `{row}` is empty", path.display());
            if !CHECKED_ROWS.contains(&row) {
                continue;
            }
            for code in cell.split('`').skip(1).step_by(2) {
                for name in identifiers(code) {
                    assert!(
                        sources.contains(name),
                        "{}: row `{row}` names `{name}` (in `{code}`), which is in none of the {page} helper's or templates' sources",
                        path.display()
                    );
                }
            }
        }
    }
}

/// The identifiers in a piece of code (letters, digits, `_`, starting with a letter or `_`), of
/// three characters or more.
fn identifiers(code: &str) -> Vec<&str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.len() >= 3 && !w.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}
