//! The Grafana dashboard (docs/grafana/flowgate.json): every query names metrics Flowgate
//! exports, every metric Flowgate exports is on it, and a running pipeline serves the core ones
//! at `/metrics`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use flowgate_tests::fixture::{
    Fixture, eventually, http, post_values, sigterm, start_http, wait_exit,
};
use flowgate_tests::plugins::REJECT_BAD;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The `flowgate_…` names in `text` (a histogram's `_bucket`, `_sum`, `_count` taken off).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("flowgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        out.insert(name.to_owned());
        rest = &tail[end..];
    }
    out
}

/// The metrics the host's code records: the names given to `counter!`, `gauge!`, `histogram!`.
fn exported() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![root().join("host/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for kind in ["counter!(", "gauge!(", "histogram!("] {
                    for part in text.split(kind).skip(1) {
                        let arg = part.trim_start();
                        if let Some(name) = arg.strip_prefix('"').and_then(|a| a.split('"').next())
                            && name.starts_with("flowgate_")
                        {
                            out.insert(name.to_owned());
                        }
                    }
                }
            }
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    let path = root().join("docs/grafana/flowgate.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_query_names_an_exported_metric_and_every_metric_is_shown() {
    let exported = exported();
    assert!(
        exported.len() >= 20,
        "found the metrics in the code: {exported:?}"
    );
    let d = dashboard();
    let mut shown = BTreeSet::new();
    for panel in d["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has queries");
        for t in targets {
            let expr = t["expr"].as_str().expect("a PromQL expression");
            let opened = expr.matches('(').count();
            assert_eq!(opened, expr.matches(')').count(), "{title}: {expr}");
            let used = names(expr);
            assert!(!used.is_empty(), "{title}: {expr} names no metric");
            for name in used {
                assert!(
                    exported.contains(&name),
                    "panel {title}: {name} is not a metric Flowgate exports ({expr})"
                );
                shown.insert(name);
            }
        }
    }
    let missing: Vec<&String> = exported.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "metrics not on the dashboard: {missing:?}"
    );
}

#[test]
fn a_running_pipeline_serves_the_dashboards_core_metrics() {
    let f = Fixture::new(&format!(
        r#"
name = "grafana"

[http]
listen = "127.0.0.1:0"

[topics.raw]
partitions = 1

[sources.api]
type = "http"
topic = "raw"

[stages.check]
plugin = "{REJECT_BAD}"
input = "raw"
output = "clean"

[sinks.out]
type = "file"
input = "clean"
path = "out.ndjson"
"#
    ));
    let (mut child, addr) = start_http(&f, 0);
    post_values(&addr, "raw", ["ok".to_owned(), "bad".to_owned()]);
    let core = [
        "flowgate_ingest_events_total",
        "flowgate_ingest_requests_total",
        "flowgate_stage_events_in_total",
        "flowgate_stage_events_out_total",
        "flowgate_stage_errors_total",
        "flowgate_stage_dead_letters_total",
        "flowgate_stage_call_seconds",
        "flowgate_sink_events_total",
        "flowgate_topic_records_appended_total",
        "flowgate_topic_bytes_appended_total",
    ];
    let mut page = String::new();
    let served = eventually(Duration::from_secs(60), || {
        page = http(&addr, "GET", "/metrics", &[], b"").2;
        let have = names(&page);
        core.iter().all(|m| have.contains(*m))
    });
    let have = names(&page);
    assert!(
        served,
        "not served: {:?}",
        core.iter()
            .filter(|m| !have.contains(**m))
            .collect::<Vec<_>>()
    );
    let shown = names(&dashboard().to_string());
    for m in core {
        assert!(shown.contains(m), "{m} is on the dashboard");
    }
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(60)).expect("stops");
}
