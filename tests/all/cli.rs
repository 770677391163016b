//! The `flowgate plugin` commands, run as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use flowgate_tests::plugins::{JSON_PROJECT, UPPERCASE};

fn flowgate(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(args)
        .env(
            "FLOWGATE_CACHE_DIR",
            flowgate_tests::target_dir().join("flowgate-test-cache"),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe: that is not our error.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const INPUT: &str = r#"{"key":"a","value":{"name":"ada","id":1},"timestamp":10}
{"value":"plain text","timestamp":11,"headers":{"h":"v"}}

{"value":{"name":"bob"},"timestamp":12}
"#;

#[test]
fn plugin_test_prints_outputs_as_ndjson_in_both_modes() {
    for mode in ["event", "batch"] {
        let out = flowgate(
            &["plugin", "test", UPPERCASE, "--input", "-", "--mode", mode],
            INPUT,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "{\"key\":\"a\",\"value\":{\"NAME\":\"ADA\",\"ID\":1},\"timestamp\":10}\n\
             {\"value\":\"PLAIN TEXT\",\"timestamp\":11,\"headers\":{\"h\":\"v\"}}\n\
             {\"value\":{\"NAME\":\"BOB\"},\"timestamp\":12}\n"
        );
    }
}

#[test]
fn plugin_test_reports_failed_rows_and_exits_1() {
    for mode in ["event", "batch"] {
        let out = flowgate(
            &[
                "plugin",
                "test",
                JSON_PROJECT,
                "-i",
                "-",
                "--mode",
                mode,
                "--config",
                "fields=name",
            ],
            INPUT,
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "{\"key\":\"a\",\"value\":{\"name\":\"ada\"},\"timestamp\":10}\n{\"value\":{\"name\":\"bob\"},\"timestamp\":12}\n"
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("row 1: plugin `json_project`: invalid input"),
            "{err}"
        );
        assert!(err.contains("1 of 3 events failed"), "{err}");
    }
}

#[test]
fn plugin_test_explains_bad_input_bad_config_and_bad_plugins() {
    let out = flowgate(
        &["plugin", "test", UPPERCASE, "-i", "-"],
        "{\"value\":1}\n{\"valeu\":2}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("line 2: unknown field `valeu`"), "{err}");

    let out = flowgate(&["plugin", "test", JSON_PROJECT, "-i", "-"], INPUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing config key `fields`"));

    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"MZ not wasm").unwrap();
    let path = junk.path().to_str().unwrap();
    let out = flowgate(&["plugin", "test", path, "-i", "-"], INPUT);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a valid WebAssembly component"));

    let out = flowgate(
        &["plugin", "test", UPPERCASE, "-i", "-", "--memory", "lots"],
        INPUT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("64MiB"));
}

#[test]
fn plugin_inspect_shows_world_exports_imports_size_and_hash() {
    let out = flowgate(&["plugin", "inspect", UPPERCASE], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let size = std::fs::metadata(UPPERCASE).unwrap().len();
    assert!(s.contains("world:   flowgate:plugin/stage@0.1.1"), "{s}");
    assert!(s.contains(&format!("size:    {size} bytes")), "{s}");
    assert!(s.contains("on-batch (func)"), "{s}");
    assert!(s.contains("wasi:cli/stderr"), "{s}");

    let out = flowgate(&["plugin", "inspect", UPPERCASE, "--json"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = doc["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert_eq!(doc["size"].as_u64(), Some(size));
}

fn with_dir(args: &[&str], dir: &std::path::Path, stdin: &str) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--data-dir");
    all.push(dir.to_str().unwrap());
    flowgate(&all, stdin)
}

const EVENTS: &str = r#"{"key":"a","value":{"n":1},"timestamp":1000}
{"key":"b","value":"two","timestamp":2000,"headers":{"h":"x"}}
{"value_b64":"/wA=","timestamp":3000}
"#;

#[test]
fn produce_then_consume_round_trips_events_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_dir(&["topic", "create", "orders"], dir.path(), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_dir(&["produce", "orders"], dir.path(), EVENTS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "acknowledged 3 events\n");

    let out = with_dir(&["consume", "orders", "--from-beginning"], dir.path(), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), EVENTS);

    let out = with_dir(&["consume", "orders", "--offset", "2"], dir.path(), "");
    assert_eq!(
        text(&out.stdout),
        EVENTS.lines().nth(2).unwrap().to_owned() + "\n"
    );
    let out = with_dir(&["consume", "orders", "--since", "1500"], dir.path(), "");
    assert_eq!(text(&out.stdout).lines().count(), 2);

    // A group resumes where it left off.
    let out = with_dir(
        &["consume", "orders", "--group", "g", "--max", "2"],
        dir.path(),
        "",
    );
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let out = with_dir(&["consume", "orders", "--group", "g"], dir.path(), "");
    assert_eq!(
        text(&out.stdout),
        EVENTS.lines().nth(2).unwrap().to_owned() + "\n"
    );
    let out = with_dir(&["consume", "orders", "--group", "g"], dir.path(), "");
    assert_eq!(text(&out.stdout), "");

    let out = with_dir(&["topic", "describe", "orders", "--json"], dir.path(), "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["partitions"][0]["end_offset"], 3);
    let out = with_dir(&["topic", "list"], dir.path(), "");
    assert_eq!(text(&out.stdout), "orders\tpartitions=1\trecords=3\n");
}

#[test]
fn keys_pick_a_stable_partition() {
    let dir = tempfile::tempdir().unwrap();
    with_dir(
        &["topic", "create", "k", "--partitions", "4"],
        dir.path(),
        "",
    );
    let input: String = (0..40)
        .map(|i| format!("{{\"key\":\"user-{}\",\"value\":{i}}}\n", i % 5))
        .collect();
    let out = with_dir(&["produce", "k"], dir.path(), &input);
    assert_eq!(text(&out.stdout), "acknowledged 40 events\n");
    let mut seen = std::collections::HashMap::new();
    for p in 0..4 {
        let out = with_dir(
            &["consume", "k", "--partition", &p.to_string()],
            dir.path(),
            "",
        );
        for line in text(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = v["key"].as_str().unwrap().to_owned();
            assert_eq!(
                *seen.entry(key).or_insert(p),
                p,
                "a key landed in two partitions"
            );
        }
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn log_commands_explain_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_dir(&["produce", "missing"], dir.path(), EVENTS);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("flowgate topic create missing"),
        "{}",
        text(&out.stderr)
    );

    with_dir(&["topic", "create", "t"], dir.path(), "");
    let out = with_dir(
        &["produce", "t"],
        dir.path(),
        "{\"value\":1}\n{\"value\":2,\"extra\":3}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2: unknown field `extra`"),
        "{}",
        text(&out.stderr)
    );

    with_dir(&["produce", "t"], dir.path(), EVENTS);
    let out = with_dir(&["consume", "t", "--offset", "99"], dir.path(), "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("holds offsets 0..3"),
        "{}",
        text(&out.stderr)
    );

    let out = with_dir(&["topic", "create", "t"], dir.path(), "");
    assert!(text(&out.stderr).contains("exists already"));
    let out = with_dir(&["produce", "t", "--sync", "sometimes"], dir.path(), EVENTS);
    assert!(
        text(&out.stderr).contains("interval:<duration>"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn consume_follow_prints_events_another_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    with_dir(&["topic", "create", "live"], dir.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["consume", "live", "--follow", "--max", "6", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let produce = || {
        let out = with_dir(&["produce", "live"], dir.path(), EVENTS);
        assert_eq!(
            text(&out.stdout),
            "acknowledged 3 events\n",
            "{}",
            text(&out.stderr)
        );
    };
    // The consumer reads without the lock, so producers can run meanwhile. Once it has printed
    // the first three events it is following the topic's end; the next three must reach it.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout) {
            let _ = tx.send(line.unwrap() + "\n");
        }
    });
    let read = |n: usize| -> String {
        (0..n)
            .map(|i| {
                lines
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("consume printed {i} of {n} lines in 60 s"))
            })
            .collect()
    };
    produce();
    assert_eq!(read(3), EVENTS);
    produce();
    assert_eq!(read(3), EVENTS);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    reader.join().unwrap();
}

/// `flowgate <command> <dir>/pipeline.toml` on `pipeline`: exit code and stdout + stderr.
fn on_pipeline(command: &str, pipeline: &str) -> (Option<i32>, String) {
    let f = crate::pipeline::Fixture::new(pipeline);
    let out = f
        .command(&[command])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn http_pipeline(max_inflight: &str) -> String {
    format!(
        r#"[http]
listen = "127.0.0.1:0"
max-inflight = {max_inflight}

[sources.api]
type = "http"
topic = "raw"

[stages.up]
plugin = "{UPPERCASE}"
input = "raw"
output = "out"
"#
    )
}

#[test]
fn a_bad_http_value_is_reported_once_where_it_is() {
    let (code, out) = on_pipeline("validate", &http_pipeline("\"4TiB\""));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("has 1 problem:"), "{out}");
    assert!(out.contains("pipeline.toml:3:"), "{out}");
    assert!(out.contains("tib"), "{out}");
    assert!(!out.contains("no [http] section"), "{out}");
}

#[test]
fn max_inflight_beyond_the_semaphore_maximum_is_refused_with_the_range() {
    let too_many = (1u64 << 62).to_string();
    for command in ["validate", "run"] {
        let (code, out) = on_pipeline(command, &http_pipeline(&too_many));
        assert_eq!(code, Some(2), "{command}: {out}");
        assert!(out.contains("pipeline.toml:3:"), "{command}: {out}");
        assert!(
            out.contains("max-inflight = 4611686018427387904 bytes is out of range")
                && out.contains("from 1 to 2305843009213693951 bytes"),
            "{command}: {out}"
        );
        assert!(!out.contains("panicked"), "{command}: {out}");
    }
}

#[test]
fn topic_describe_prints_sizes_and_durations_a_person_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = with_dir(
        &[
            "topic",
            "create",
            "sized",
            "--segment-bytes",
            "64MiB",
            "--segment-age",
            "6h",
            "--retention-bytes",
            "10GiB",
            "--retention",
            "7d",
        ],
        dir.path(),
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_dir(
        &["topic", "create", "plain", "--retention", "forever"],
        dir.path(),
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = with_dir(&["topic", "describe", "sized"], dir.path(), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("\nsegment:     rolled at 64 MiB or after 6 hours\n"),
        "{s}"
    );
    assert!(
        s.contains("\nretention:   7 days, at most 10 GiB per partition\n"),
        "{s}"
    );
    let out = with_dir(&["topic", "describe", "plain"], dir.path(), "");
    let s = text(&out.stdout);
    assert!(
        s.contains("\nsegment:     rolled at 128 MiB or after 1 day\n"),
        "{s}"
    );
    assert!(s.contains("\nretention:   forever\n"), "{s}");
    assert!(!s.contains("Some("), "{s}");
}

#[test]
fn plugin_build_copies_what_cargo_built_wherever_cargo_target_dir_points() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("fresh");
    let out = flowgate(
        &[
            "plugin",
            "new",
            "fresh-plugin",
            "--lang",
            "rust",
            "--dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A stale component where a build without CARGO_TARGET_DIR would put it: never used.
    let stale = dir.join("target/wasm32-wasip2/release/fresh_plugin.wasm");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"stale, not a component").unwrap();
    // Shared by runs of this test, so only the first one compiles the SDK.
    let target = flowgate_tests::target_dir().join("plugin-build-target-dir");
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["plugin", "build"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built = std::fs::read(dir.join("build/fresh-plugin.wasm")).unwrap();
    assert!(flowgate::build::is_component(&built), "not a component");
    assert_eq!(
        built,
        std::fs::read(target.join("wasm32-wasip2/release/fresh_plugin.wasm")).unwrap(),
        "the component is not the one cargo just built"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["plugin", "test"])
        .current_dir(&dir)
        .env(
            "FLOWGATE_CACHE_DIR",
            flowgate_tests::target_dir().join("flowgate-test-cache"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn file_errors_of_the_plugin_commands_name_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let inside = file.join("plugin");
    let out = flowgate(
        &[
            "plugin",
            "new",
            "p",
            "--lang",
            "c",
            "--dir",
            inside.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(inside.to_str().unwrap()), "{err}");
    assert!(err.contains("Not a directory"), "{err}");

    // A project whose build folder cannot be made.
    let project = scratch.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("flowgate.toml"),
        "name = \"p\"\nlang = \"c\"\n",
    )
    .unwrap();
    std::fs::write(project.join("build"), "a file where the build folder goes").unwrap();
    let out = flowgate(&["plugin", "build", "--dir", project.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(project.join("build").to_str().unwrap()),
        "{err}"
    );
}
