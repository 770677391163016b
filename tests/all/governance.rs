//! The data-governance and learning plugins that ship with Flowgate, in pipelines: PII
//! redaction, JSON Schema validation, de-duplication, online linear regression. Each on
//! realistic input, malformed input included (to the dead-letter topic, with the reason).

use std::collections::BTreeMap;

use flowgate_tests::plugins::{DEDUP, JSON_SCHEMA, LINEAR_REGRESSION, PII_REDACT};
use serde_json::{Value, json};

use crate::pipeline::Fixture;

/// A pipeline: file `in.ndjson` → one stage → `out.ndjson`, dead letters → `dead.ndjson`.
fn one_stage(plugin: &str, extra: &str) -> Fixture {
    Fixture::new(&format!(
        r#"
[topics.raw]
partitions = 1

[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.s]
plugin = "{plugin}"
input = "raw"
output = "out"
on-error = "dead-letter"
{extra}

[sinks.out]
type = "file"
input = "out"
path = "out.ndjson"

[sinks.dead]
type = "file"
input = "dead-letters"
path = "dead.ndjson"
"#
    ))
}

fn write(f: &Fixture, lines: &[String]) {
    std::fs::write(f.path("in.ndjson"), lines.join("\n") + "\n").unwrap();
}

fn run(f: &Fixture) {
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{stderr}");
}

fn event(value: Value) -> String {
    json!({ "value": value, "timestamp": 1_000 }).to_string()
}

/// A dead letter's error header.
fn reason(l: &Value) -> String {
    l["headers"]["flowgate-error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn pii_redaction_replaces_emails_phones_and_luhn_valid_cards_only() {
    let f = one_stage(PII_REDACT, "");
    write(
        &f,
        &[
            event(json!({
                "user": {"email": "jane.doe+news@example.co.uk", "phone": "+1 (415) 555-2671"},
                "note": "Card 4111 1111 1111 1111, order 1234567890123, call 020 7946 0958.",
                "when": "2024-01-15 10:30:00",
                "ip": "10.1.2.3",
                "card": 5500005555555559u64,
                "count": 1234567890123u64,
                "tags": ["mail bob@example.com.", "4111-1111-1111-1112"]
            })),
            r#"{"value": "not json {", "timestamp": 1}"#.to_owned(),
            event(json!({"text": "nothing to hide here: v1.2.3, 42 items"})),
        ],
    );
    run(&f);
    let out = f.lines("out.ndjson");
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0]["value"],
        json!({
            "user": {"email": "[EMAIL]", "phone": "[PHONE]"},
            "note": "Card [CARD], order 1234567890123, call [PHONE].",
            "when": "2024-01-15 10:30:00",
            "ip": "10.1.2.3",
            "card": "[CARD]",
            "count": 1234567890123u64,
            "tags": ["mail [EMAIL].", "4111-1111-1111-1112"]
        })
    );
    assert_eq!(
        out[1]["value"],
        json!({"text": "nothing to hide here: v1.2.3, 42 items"})
    );
    let dead = f.lines("dead.ndjson");
    assert_eq!(dead.len(), 1);
    assert!(
        reason(&dead[0]).contains("not valid JSON"),
        "{}",
        reason(&dead[0])
    );

    // Only the configured fields, only the configured kinds.
    let f = one_stage(
        PII_REDACT,
        "config = { fields = \"user.email, note\", kinds = \"email, card\" }",
    );
    write(
        &f,
        &[event(json!({
            "user": {"email": "a@b.io", "phone": "+44 20 7946 0958"},
            "note": "call +44 20 7946 0958 or pay 4111111111111111",
            "other": "x@y.com"
        }))],
    );
    run(&f);
    assert_eq!(
        f.lines("out.ndjson")[0]["value"],
        json!({
            "user": {"email": "[EMAIL]", "phone": "+44 20 7946 0958"},
            "note": "call +44 20 7946 0958 or pay [CARD]",
            "other": "x@y.com"
        })
    );

    let f = one_stage(PII_REDACT, "config = { kinds = \"email, ssn\" }");
    write(&f, &[event(json!({}))]);
    let out = f.command(&["validate"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("unknown kind `ssn`"),
        "{text}"
    );
}

#[test]
fn schema_validation_passes_matching_events_and_dead_letters_the_rest_with_the_reason() {
    let schema = json!({
        "type": "object",
        "required": ["id", "amount"],
        "properties": {
            "id": {"type": "integer"},
            "amount": {"type": "number", "minimum": 0},
            "currency": {"enum": ["EUR", "USD"]}
        }
    });
    let f = one_stage(
        JSON_SCHEMA,
        &format!("config = {{ schema = '{}' }}", schema),
    );
    write(
        &f,
        &[
            event(json!({"id": 1, "amount": 9.5, "currency": "EUR"})),
            event(json!({"id": "two", "amount": 3})),
            event(json!({"id": 3, "amount": -1, "currency": "GBP"})),
            event(json!({"amount": 4})),
            r#"{"value": "{\"id\": 5,", "timestamp": 1}"#.to_owned(),
            event(json!({"id": 6, "amount": 0})),
        ],
    );
    run(&f);
    let ids: Vec<i64> = f
        .lines("out.ndjson")
        .iter()
        .map(|l| l["value"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 6]);
    let dead: Vec<String> = f.lines("dead.ndjson").iter().map(reason).collect();
    assert_eq!(dead.len(), 4, "{dead:#?}");
    assert!(
        dead[0].contains("at /id") && dead[0].contains("integer"),
        "{}",
        dead[0]
    );
    assert!(
        dead[1].contains("at /amount") && dead[1].contains("at /currency"),
        "{}",
        dead[1]
    );
    assert!(
        dead[2].contains("\"id\" is a required property"),
        "{}",
        dead[2]
    );
    assert!(dead[3].contains("not valid JSON"), "{}", dead[3]);
    for l in f.lines("dead.ndjson") {
        assert_eq!(l["headers"]["flowgate-error-kind"], "invalid-input");
    }

    // A schema that is not one keeps the pipeline from starting, with the reason.
    let f = one_stage(JSON_SCHEMA, "config = { schema = '{\"type\": 12}' }");
    write(&f, &[event(json!({}))]);
    let out = f.command(&["validate"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("not a valid JSON Schema"),
        "{text}"
    );
}

#[test]
fn dedup_drops_repeats_within_the_window_even_across_runs() {
    const WINDOW: i64 = 10_000;
    let f = one_stage(
        DEDUP,
        "state = true\nconfig = { field = \"order.id\", window = \"10s\" }",
    );
    let mut lines = Vec::new();
    let mut evs = Vec::new();
    let mut seed = 9u64;
    for i in 0..400 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let id = (seed >> 33) % 40;
        // Times move on, with some disorder.
        let ts = 1_000_000 + i * 300 - ((seed >> 20) % 2_000) as i64;
        evs.push((id, ts));
        lines.push(json!({"value": {"order": {"id": id}, "n": i}, "timestamp": ts}).to_string());
    }
    lines.insert(
        200,
        r#"{"value": {"order": {}}, "timestamp": 5}"#.to_owned(),
    );
    // The first half in one run, the rest in a second: what was seen survives the restart.
    std::fs::write(f.path("in.ndjson"), lines[..201].join("\n") + "\n").unwrap();
    run(&f);
    std::fs::write(f.path("in.ndjson"), lines.join("\n") + "\n").unwrap();
    run(&f);
    // The definition: an event passes unless its id passed less than WINDOW ms away from it.
    let mut first: BTreeMap<u64, i64> = BTreeMap::new();
    let mut want = Vec::new();
    for (i, (id, ts)) in evs.iter().enumerate() {
        let keep = first.get(id).is_none_or(|f| (ts - f).abs() >= WINDOW);
        if keep {
            first.insert(*id, *ts);
            want.push(i as i64);
        }
    }
    let got: Vec<i64> = f
        .lines("out.ndjson")
        .iter()
        .map(|l| l["value"]["n"].as_i64().unwrap())
        .collect();
    assert!(want.len() > 60 && want.len() < 300, "{}", want.len());
    assert_eq!(got, want);
    let dead = f.lines("dead.ndjson");
    assert_eq!(dead.len(), 1);
    assert!(reason(&dead[0]).contains("field `order.id` is missing"));
}

#[test]
fn online_regression_predicts_then_learns_per_key_as_plain_sgd_does() {
    const RATE: f64 = 0.05;
    let f = one_stage(
        LINEAR_REGRESSION,
        &format!(
            "state = true\nconfig = {{ features = \"x1, x2\", target = \"y\", learning-rate = {RATE} }}"
        ),
    );
    let mut lines = Vec::new();
    let mut inputs = Vec::new();
    let mut seed = 3u64;
    let mut unit = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..3000 {
        let (x1, x2) = (unit(), unit());
        let key = if i % 3 == 0 { "b" } else { "a" };
        // Two keys, two different lines.
        let y = if key == "a" {
            3.0 * x1 - 2.0 * x2 + 0.5
        } else {
            -x1 + 4.0 * x2
        };
        let with_target = i % 10 != 9;
        let mut v = json!({"x1": x1, "x2": x2, "id": i});
        if with_target {
            v["y"] = json!(y);
        }
        lines.push(json!({"key": key, "value": v, "timestamp": i}).to_string());
        inputs.push((key, x1, x2, with_target.then_some(y)));
    }
    lines.push(json!({"key": "a", "value": {"x1": 1.0}, "timestamp": 1}).to_string());
    lines.push(json!({"key": "a", "value": [1, 2], "timestamp": 1}).to_string());
    write(&f, &lines);
    run(&f);

    // SGD written out: predict, then step on the squared error.
    let mut models: BTreeMap<&str, ([f64; 2], f64)> = BTreeMap::new();
    let mut want = Vec::new();
    for (key, x1, x2, y) in &inputs {
        let (w, b) = models.entry(key).or_insert(([0.0; 2], 0.0));
        let p = *b + (w[0] * x1 + w[1] * x2);
        if let Some(y) = y {
            let e = p - y;
            w[0] -= RATE * e * x1;
            w[1] -= RATE * e * x2;
            *b -= RATE * e;
        }
        want.push(p);
    }
    let out = f.lines("out.ndjson");
    assert_eq!(out.len(), inputs.len());
    for (i, (l, p)) in out.iter().zip(&want).enumerate() {
        assert_eq!(l["value"]["id"].as_i64(), Some(i as i64));
        let got = l["value"]["prediction"].as_f64().unwrap();
        assert!((got - p).abs() < 1e-9, "event {i}: {got} vs {p}");
    }
    // And it learned: the last predictions of each key are close to the truth.
    for (l, (key, x1, x2, _)) in out.iter().zip(&inputs).rev().take(30) {
        let truth = if *key == "a" {
            3.0 * x1 - 2.0 * x2 + 0.5
        } else {
            -x1 + 4.0 * x2
        };
        let got = l["value"]["prediction"].as_f64().unwrap();
        assert!((got - truth).abs() < 0.1, "{key}: {got} vs {truth}");
    }
    let dead: Vec<String> = f.lines("dead.ndjson").iter().map(reason).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].contains("feature `x2` is missing"), "{}", dead[0]);
    assert!(dead[1].contains("not a JSON object"), "{}", dead[1]);
}
