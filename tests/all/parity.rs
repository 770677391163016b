//! Every example plugin gives the same output through `on-event` and `on-batch`, at several
//! batch sizes, on the same realistic inputs (malformed ones included), and the output is the
//! one expected.

use flowgate::event::{self, Event, Header, ndjson};
use flowgate::runtime::{Limits, StageInstance};
use flowgate_tests::plugins::{
    CONTAINS, COUNT_BY_KEY, FILTER_JSON, JSON_PROJECT, SPLIT, UPPERCASE,
};
use flowgate_tests::runtime;

/// A realistic mix: JSON objects, keys, headers, text, binary, an empty value, malformed JSON.
fn inputs() -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..40 {
        let country = ["DE", "FR", "US", "BR"][i % 4];
        let value = format!(
            r#"{{"user":{{"id":{i},"country":"{country}"}},"action":"{}","amount":{}}}"#,
            ["click", "buy", "view"][i % 3],
            i * 7
        );
        events.push(Event {
            key: (i % 5 != 0).then(|| format!("user-{}", i % 7).into_bytes()),
            value: value.into_bytes(),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: if i % 2 == 0 {
                vec![Header {
                    name: "source".into(),
                    value: b"web".to_vec(),
                }]
            } else {
                Vec::new()
            },
        });
    }
    events.insert(7, flowgate_tests::text("not json at all\nsecond line", 7));
    events.insert(12, flowgate_tests::text("", 12));
    events.insert(
        20,
        Event {
            key: Some(vec![0xff, 0x00]),
            value: vec![0xde, 0xad, b'\n', 0xbe, 0xef],
            timestamp: -5,
            headers: vec![
                Header {
                    name: "dup".into(),
                    value: vec![0xff],
                },
                Header {
                    name: "dup".into(),
                    value: vec![0xfe],
                },
            ],
        },
    );
    events.insert(30, flowgate_tests::text("[1,2,3]", 30));
    events
}

/// Outputs as NDJSON lines and failures as (row, kind).
type Run = (Vec<String>, Vec<(usize, String)>);

fn per_event(instance: &mut StageInstance, inputs: &[Event]) -> Run {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (row, e) in inputs.iter().enumerate() {
        match instance.on_event(e) {
            Ok(out) => {
                for o in &out {
                    let mut pairs = Vec::new();
                    lines.push(ndjson::Line(&event::view(o, &mut pairs)).to_string());
                }
            }
            Err(err) => failures.push((row, err.kind_name().to_owned())),
        }
    }
    (lines, failures)
}

fn per_batch(instance: &mut StageInstance, inputs: &[Event], size: usize) -> Run {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (n, chunk) in inputs.chunks(size).enumerate() {
        let out = instance.process_batch(&event::batch_of(chunk)).unwrap();
        for row in event::columns(&out.output).unwrap().rows() {
            lines.push(ndjson::Line(&row).to_string());
        }
        for f in out.failures {
            failures.push((n * size + f.row as usize, f.error.kind_name().to_owned()));
        }
    }
    (lines, failures)
}

/// Runs `plugin` both ways and returns the (identical) result.
fn both_ways(plugin: &str, config: &[(&str, &str)]) -> Run {
    let rt = runtime();
    let plugin = rt.load_file(plugin.as_ref()).unwrap();
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // A fresh instance per run, so plugins that keep state between calls start equal.
    let fresh = || {
        plugin
            .instantiate(Limits::default(), config.clone())
            .unwrap()
    };
    let inputs = inputs();
    let expected = per_event(&mut fresh(), &inputs);
    for size in [1, 3, 64, 1024] {
        let got = per_batch(&mut fresh(), &inputs, size);
        assert_eq!(
            got, expected,
            "on-batch (size {size}) differs from on-event"
        );
    }
    expected
}

#[test]
fn uppercase_agrees_and_uppercases_values_only() {
    let (lines, failures) = both_ways(UPPERCASE, &[]);
    assert!(failures.is_empty());
    assert_eq!(lines.len(), inputs().len());
    assert_eq!(
        lines[0],
        r#"{"value":{"USER":{"ID":0,"COUNTRY":"DE"},"ACTION":"CLICK","AMOUNT":0},"timestamp":1700000000000,"headers":{"source":"web"}}"#
    );
    // Keys, binary bytes and repeated headers pass through untouched.
    let binary = base64_of(&[0xde, 0xad, b'\n', 0xbe, 0xef]);
    assert_eq!(
        lines[20],
        format!(
            r#"{{"key_b64":"/wA=","value_b64":"{binary}","timestamp":-5,"headers":[["dup",{{"b64":"/w=="}}],["dup",{{"b64":"/g=="}}]]}}"#
        )
    );
}

fn base64_of(bytes: &[u8]) -> String {
    // Written out here rather than taken from the code under test.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn filter_json_agrees_and_keeps_only_matching_events() {
    let (lines, failures) = both_ways(
        FILTER_JSON,
        &[("field", "user.country"), ("equals", "\"DE\"")],
    );
    // Rows 0, 4, 8, ... of the generated events are DE: ids 0, 4, ..., 36.
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l.contains(r#""country":"DE""#)));
    // Malformed inputs fail alone, as invalid input: the text, the empty value and the binary.
    assert_eq!(
        failures,
        vec![
            (7, "invalid-input".to_owned()),
            (12, "invalid-input".to_owned()),
            (20, "invalid-input".to_owned())
        ]
    );
    let (lines, _) = both_ways(
        FILTER_JSON,
        &[("field", "amount"), ("min", "100"), ("max", "200")],
    );
    let amounts: Vec<u32> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"]["amount"].as_u64().unwrap() as u32
        })
        .collect();
    assert_eq!(amounts, (15..=28).map(|i| i * 7).collect::<Vec<_>>());
}

#[test]
fn json_project_agrees_and_renames_fields() {
    let (lines, failures) = both_ways(JSON_PROJECT, &[("fields", "user.id -> id, action")]);
    assert_eq!(
        lines[1],
        r#"{"key":"user-1","value":{"id":1,"action":"buy"},"timestamp":1700000000001}"#
    );
    // The text, the empty value, the binary value and the JSON array are refused.
    let rows: Vec<usize> = failures.iter().map(|f| f.0).collect();
    assert_eq!(rows, vec![7, 12, 20, 30]);
    assert!(failures.iter().all(|f| f.1 == "invalid-input"));
}

#[test]
fn split_agrees_and_emits_one_event_per_part() {
    let (lines, failures) = both_ways(SPLIT, &[("separator", "\"")]);
    assert!(failures.is_empty());
    // `{"user":{"id":0,"country":"DE"},"action":"click","amount":0}` has 14 quotes: 15 parts.
    assert_eq!(
        lines[0],
        r#"{"value":"{","timestamp":1700000000000,"headers":{"source":"web"}}"#
    );
    let first = lines.iter().filter(|l| l.contains("1700000000000")).count();
    assert_eq!(first, 15);
    let (lines, _) = both_ways(SPLIT, &[]);
    let text_parts: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(r#""timestamp":7"#))
        .collect();
    assert_eq!(
        text_parts,
        [
            r#"{"value":"not json at all","timestamp":7}"#,
            r#"{"value":"second line","timestamp":7}"#
        ],
        "the two-line text splits into two events"
    );
}

#[test]
fn bad_config_is_refused_at_init_with_the_plugins_message() {
    let rt = runtime();
    let plugin = rt.load_file(FILTER_JSON.as_ref()).unwrap();
    let err = plugin
        .instantiate(Limits::default(), Vec::new())
        .unwrap_err();
    assert_eq!(err.kind_name(), "fatal");
    assert!(
        err.to_string().contains("missing config key `field`"),
        "{err}"
    );
}

#[test]
fn contains_agrees_and_keeps_values_holding_the_needle() {
    let (lines, failures) = both_ways(CONTAINS, &[("needle", "\"country\":\"FR\"")]);
    assert!(failures.is_empty());
    let expected = inputs()
        .iter()
        .filter(|e| e.value.windows(14).any(|w| w == br#""country":"FR""#))
        .count();
    assert_eq!(expected, 10);
    assert_eq!(lines.len(), expected);
    assert!(lines.iter().all(|l| l.contains(r#""country":"FR""#)));
}

#[test]
fn count_by_key_agrees_and_counts_each_key_in_order() {
    let (lines, failures) = both_ways(COUNT_BY_KEY, &[]);
    assert!(failures.is_empty());
    let mut counts = std::collections::HashMap::new();
    let expected: Vec<String> = inputs()
        .iter()
        .map(|e| {
            let n = counts
                .entry(e.key.clone().unwrap_or_default())
                .or_insert(0u64);
            *n += 1;
            n.to_string()
        })
        .collect();
    let got: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"].to_string()
        })
        .collect();
    assert_eq!(got, expected);
}
