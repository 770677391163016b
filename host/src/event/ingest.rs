//! The bodies of HTTP ingest requests (`POST /topics/{topic}/events`): a JSON event, a JSON
//! array of events, NDJSON, or the Confluent REST Proxy v2 produce body. Events have the form of
//! docs/events.md. Kept apart from the HTTP server so that the parser is fuzzed without it.

use serde_json::Value;

use super::Event;
use super::ndjson;

/// Events of an ingest request body: NDJSON when `ndjson_body`, else a JSON event, an array of
/// them or a Confluent REST Proxy v2 `{"records": [...]}`. The error is the message for the client.
pub fn parse_body(ndjson_body: bool, body: &[u8]) -> Result<Vec<Event>, String> {
    let now = ndjson::now_ms();
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8 ({e})"))?;
    if ndjson_body {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(ndjson::parse_event(line, now).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
        return Ok(out);
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!("not valid JSON ({e}); send an event object, an array of them, {{\"records\":[...]}}, or NDJSON with Content-Type: application/x-ndjson")
    })?;
    match doc {
        Value::Object(mut obj) if obj.contains_key("records") => {
            let Some(Value::Array(records)) = obj.remove("records") else {
                return Err("`records` must be an array of {\"key\":..,\"value\":..}".into());
            };
            records
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let r = match r {
                        Value::Object(mut o) => {
                            // Partitions are chosen by key; a requested partition is not honoured.
                            o.remove("partition");
                            Value::Object(o)
                        }
                        other => other,
                    };
                    ndjson::from_json(r, now).map_err(|e| format!("records[{i}]: {e}"))
                })
                .collect()
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| ndjson::from_json(v, now).map_err(|e| format!("[{i}]: {e}")))
            .collect(),
        other => Ok(vec![ndjson::from_json(other, now)?]),
    }
}
