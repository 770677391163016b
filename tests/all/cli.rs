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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
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
    assert!(s.contains("world:   flowgate:plugin/stage@0.1.0"), "{s}");
    assert!(s.contains(&format!("size:    {size} bytes")), "{s}");
    assert!(s.contains("on-batch (func)"), "{s}");
    assert!(s.contains("wasi:cli/stderr"), "{s}");

    let out = flowgate(&["plugin", "inspect", UPPERCASE, "--json"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = doc["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert_eq!(doc["size"].as_u64(), Some(size));
}
