//! The NDJSON event format: one JSON object per line, read and written by every command that
//! takes or prints events. The format is specified in `docs/events.md`; in short:
//!
//! ```json
//! {"key":"user-7","value":{"clicks":3},"timestamp":1700000000000,"headers":{"source":"web"}}
//! ```
//!
//! - `value`: a JSON string is taken as UTF-8 text (its bytes, without quotes); any other JSON
//!   (object, array, number, `true`/`false`/`null`) is taken as the bytes of its compact form.
//!   `value_b64` gives raw bytes in base64 instead. One of the two is required.
//! - `key`: text, or `key_b64` for raw bytes; absent or `null` means no key.
//! - `timestamp`: milliseconds since the Unix epoch; absent means the time it was read.
//! - `headers`: an object `{"name": "text"}`, or a list of `["name", "text"]` pairs when names
//!   repeat; a header value that is not UTF-8 is written `{"b64": "..."}`. A `flowgate-eos`
//!   header (the log's exactly-once marker) is dropped on reading: only the host writes it.
//!
//! Writing picks the form that reads back to the same bytes: a value that is compact JSON and
//! not a string is embedded, other UTF-8 is a string, anything else is `value_b64`.

use std::fmt;
use std::io::{self, BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use super::{EOS_HEADER, Event, EventRef, Header};

/// A line that is not a valid event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The input could not be read.
    #[error("reading events: {0}")]
    Io(#[from] io::Error),
    /// A line is not an event; the message says what is wrong and what to write instead.
    #[error("line {line}: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

const FIELDS: &str = "key, key_b64, value, value_b64, timestamp, headers";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    B64.decode(s)
        .map_err(|e| format!("`{what}` is not valid base64 ({e})"))
}

fn header_value(name: &str, v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(o) if o.len() == 1 && o.get("b64").is_some_and(Value::is_string) => {
            b64(o["b64"].as_str().unwrap_or_default(), "headers.b64")
        }
        _ => Err(format!(
            "header `{name}` must be a string or {{\"b64\": \"...\"}}, not {v}"
        )),
    }
}

/// Parses one event from one line of JSON.
pub fn parse_event(line: &str, default_ts: i64) -> Result<Event, String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    from_json(doc, default_ts)
}

/// An event from its parsed JSON form (the same form as one NDJSON line).
pub fn from_json(doc: Value, default_ts: i64) -> Result<Event, String> {
    let Value::Object(obj) = doc else {
        return Err(format!(
            "an event is a JSON object like {{\"value\": ...}}, not {}",
            kind(&doc)
        ));
    };
    if let Some(bad) = obj
        .keys()
        .find(|k| !FIELDS.split(", ").any(|f| f == k.as_str()))
    {
        return Err(format!("unknown field `{bad}` (fields are: {FIELDS})"));
    }
    let value = match (obj.get("value"), obj.get("value_b64")) {
        (Some(_), Some(_)) => return Err("give `value` or `value_b64`, not both".into()),
        (None, None) => return Err("missing `value` (or `value_b64` for raw bytes)".into()),
        (Some(Value::String(s)), None) => s.as_bytes().to_vec(),
        (Some(v), None) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
        (None, Some(Value::String(s))) => b64(s, "value_b64")?,
        (None, Some(_)) => return Err("`value_b64` must be a base64 string".into()),
    };
    let key = match (obj.get("key"), obj.get("key_b64")) {
        (Some(k), Some(_)) if !k.is_null() => {
            return Err("give `key` or `key_b64`, not both".into());
        }
        (_, Some(Value::String(s))) => Some(b64(s, "key_b64")?),
        (_, Some(_)) => return Err("`key_b64` must be a base64 string".into()),
        (None | Some(Value::Null), None) => None,
        (Some(Value::String(s)), None) => Some(s.as_bytes().to_vec()),
        (Some(k), None) => {
            return Err(format!(
                "`key` must be a string (or use `key_b64`), not {}",
                kind(k)
            ));
        }
    };
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => default_ts,
        Some(t) => t.as_i64().ok_or_else(|| {
            format!("`timestamp` must be an integer of milliseconds since the Unix epoch, not {t}")
        })?,
    };
    let headers = match obj.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(n, v)| {
                Ok(Header {
                    name: n.clone(),
                    value: header_value(n, v)?,
                })
            })
            .collect::<Result<_, String>>()?,
        Some(Value::Array(list)) => list
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(n), v]) => Ok(Header {
                    name: n.clone(),
                    value: header_value(n, v)?,
                }),
                _ => Err(format!(
                    "a header in a list is a pair [\"name\", \"value\"], not {pair}"
                )),
            })
            .collect::<Result<_, String>>()?,
        Some(h) => {
            return Err(format!(
                "`headers` must be an object {{\"name\": \"value\"}} or a list of pairs, not {}",
                kind(h)
            ));
        }
    };
    // The exactly-once marker is the log's own, meaningful only where its producer wrote it:
    // one read from outside (a copy of another topic, or forged) is dropped, never trusted.
    let mut headers: Vec<Header> = headers;
    headers.retain(|h| h.name != EOS_HEADER);
    Ok(Event {
        key,
        value,
        timestamp,
        headers,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads every event of an NDJSON stream. Blank lines are skipped; the first bad line is an
/// error that names it.
pub fn read_all(input: impl BufRead) -> Result<Vec<Event>, ReadError> {
    let now = now_ms();
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(&line, now).map_err(|message| ReadError::Invalid {
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// The JSON form of an event.
pub fn to_json(e: &EventRef<'_>) -> Value {
    let mut obj = Map::new();
    match e.key {
        None => {}
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => {
                obj.insert("key".into(), Value::String(s.into()));
            }
            Err(_) => {
                obj.insert("key_b64".into(), Value::String(B64.encode(k)));
            }
        },
    }
    let (field, value) = value_json(e.value);
    obj.insert(field.into(), value);
    obj.insert("timestamp".into(), Value::from(e.timestamp));
    if !e.headers.is_empty() {
        let header_json = |v: &[u8]| match std::str::from_utf8(v) {
            Ok(s) => Value::String(s.into()),
            Err(_) => serde_json::json!({ "b64": B64.encode(v) }),
        };
        let mut names: Vec<&[u8]> = e.headers.iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        names.dedup();
        let utf8_names = e
            .headers
            .iter()
            .all(|(n, _)| std::str::from_utf8(n).is_ok());
        let headers = if names.len() == e.headers.len() && utf8_names {
            Value::Object(
                e.headers
                    .iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), header_json(v)))
                    .collect(),
            )
        } else {
            Value::Array(
                e.headers
                    .iter()
                    .map(|(n, v)| {
                        Value::Array(vec![
                            Value::String(String::from_utf8_lossy(n).into_owned()),
                            header_json(v),
                        ])
                    })
                    .collect(),
            )
        };
        obj.insert("headers".into(), headers);
    }
    Value::Object(obj)
}

/// The field and JSON form that read back to exactly `bytes`.
fn value_json(bytes: &[u8]) -> (&'static str, Value) {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes)
        && !v.is_string()
        && serde_json::to_vec(&v).is_ok_and(|c| c == bytes)
    {
        return ("value", v);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => ("value", Value::String(s.into())),
        Err(_) => ("value_b64", Value::String(B64.encode(bytes))),
    }
}

/// Writes one event as one line.
pub fn write_event(out: &mut impl Write, e: &EventRef<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &to_json(e))?;
    out.write_all(b"\n")
}

/// Displays an event as its NDJSON line (without the newline).
#[derive(Debug)]
pub struct Line<'a>(pub &'a EventRef<'a>);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", to_json(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::view;

    fn round_trip(line: &str) -> String {
        let e = parse_event(line, 5).unwrap();
        let mut pairs = Vec::new();
        to_json(&view(&e, &mut pairs)).to_string()
    }

    #[test]
    fn values_read_as_text_json_or_base64_and_write_back_the_same() {
        assert_eq!(
            round_trip(r#"{"value":"hello","timestamp":1}"#),
            r#"{"value":"hello","timestamp":1}"#
        );
        assert_eq!(
            round_trip(r#"{"key":"k","value":{"a":[1,2]},"timestamp":1,"headers":{"h":"v"}}"#),
            r#"{"key":"k","value":{"a":[1,2]},"timestamp":1,"headers":{"h":"v"}}"#
        );
        let e = parse_event(r#"{"value_b64":"/wA=","key_b64":"AQ=="}"#, 9).unwrap();
        assert_eq!(e.value, vec![0xff, 0]);
        assert_eq!(e.key, Some(vec![1]));
        assert_eq!(e.timestamp, 9);
        assert_eq!(
            round_trip(r#"{"value_b64":"/wA="}"#),
            r#"{"value_b64":"/wA=","timestamp":5}"#
        );
        // JSON with spaces is not compact: it stays text so the bytes survive.
        let e = parse_event(r#"{"value":"{ \"a\": 1 }"}"#, 0).unwrap();
        assert_eq!(e.value, br#"{ "a": 1 }"#);
        assert_eq!(
            round_trip(r#"{"value":"{ \"a\": 1 }"}"#),
            r#"{"value":"{ \"a\": 1 }","timestamp":5}"#
        );
    }

    #[test]
    fn repeated_and_binary_headers_use_the_list_form() {
        let out = round_trip(r#"{"value":"x","headers":[["a","1"],["a",{"b64":"/w=="}]]}"#);
        assert_eq!(
            out,
            r#"{"value":"x","timestamp":5,"headers":[["a","1"],["a",{"b64":"/w=="}]]}"#
        );
    }

    #[test]
    fn bad_lines_say_what_to_write() {
        let err = |l: &str| parse_event(l, 0).unwrap_err();
        assert!(err("{}").contains("missing `value`"));
        assert!(err(r#"{"value":1,"vaule":2}"#).contains("unknown field `vaule`"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err(r#"{"value":1,"timestamp":"today"}"#).contains("milliseconds"));
        assert!(err(r#"{"value_b64":"***"}"#).contains("base64"));
        assert!(err("not json").contains("not valid JSON"));
        let e = read_all(&b"{\"value\":1}\n\n{\"value\":}\n"[..]).unwrap_err();
        assert!(e.to_string().starts_with("line 3:"), "{e}");
    }
}
