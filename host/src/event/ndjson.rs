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
    if let Some(e) = fast::parse(line, default_ts) {
        return Ok(e);
    }
    parse_event_tree(line, default_ts)
}

/// [`parse_event`] through a JSON tree always: what the fast reading of a line must agree with
/// (the fuzz target `ndjson_read` and the tests compare the two).
#[doc(hidden)]
pub fn parse_event_tree(line: &str, default_ts: i64) -> Result<Event, String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    from_json(doc, default_ts)
}

/// The common line read without building a JSON tree: its fields are borrowed from the text,
/// and a `value` that is not a string is kept as its text with the blanks taken out, which is
/// its compact form when its numbers and escapes are written as `serde_json` writes them.
/// Anything else (a value of another spelling, a field of the wrong type, an unknown or
/// repeated field, base64 fields) is left to [`from_json`], which decides and words the error:
/// both read every line to the same event.
mod fast {
    use std::borrow::Cow;

    use serde_json::value::RawValue;

    use super::{EOS_HEADER, Event, Value};

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        #[serde(borrow, default)]
        key: Option<&'a RawValue>,
        #[serde(borrow, default)]
        key_b64: Option<&'a RawValue>,
        #[serde(borrow, default)]
        value: Option<&'a RawValue>,
        #[serde(borrow, default)]
        value_b64: Option<&'a RawValue>,
        #[serde(borrow, default)]
        timestamp: Option<&'a RawValue>,
        #[serde(borrow, default)]
        headers: Option<&'a RawValue>,
    }

    pub(super) fn parse(line: &str, default_ts: i64) -> Option<Event> {
        let l: Line<'_> = serde_json::from_str(line).ok()?;
        if l.key_b64.is_some() || l.value_b64.is_some() {
            return None;
        }
        let raw = l.value?.get();
        let value = if raw.starts_with('"') {
            serde_json::from_str::<Cow<'_, str>>(raw)
                .ok()?
                .into_owned()
                .into_bytes()
        } else {
            compact(raw)?
        };
        let key = match l.key {
            None => None,
            Some(k) => Some(
                serde_json::from_str::<Cow<'_, str>>(k.get())
                    .ok()?
                    .into_owned()
                    .into_bytes(),
            ),
        };
        let timestamp = match l.timestamp {
            None => default_ts,
            // As serde_json reads it: `-0` is a float there, and an error here.
            Some(t) => t
                .get()
                .parse::<i64>()
                .ok()
                .filter(|n| n.to_string() == t.get())?,
        };
        let mut headers = match l.headers {
            None => Vec::new(),
            Some(h) => super::headers(Some(&serde_json::from_str::<Value>(h.get()).ok()?)).ok()?,
        };
        headers.retain(|h| h.name != EOS_HEADER);
        Some(Event {
            key,
            value,
            timestamp,
            headers,
        })
    }

    /// Nesting deeper than this is left to the tree, whose reader has a depth limit (128) that
    /// the borrowed reading does not.
    const MAX_DEPTH: usize = 100;

    /// `raw` (valid JSON, not a string) without its blanks, if that is what `serde_json` writes
    /// for it: every number as it writes it back, every escape one it writes, and no object
    /// with a key twice (the tree keeps the last).
    fn compact(raw: &str) -> Option<Vec<u8>> {
        let b = raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        // The keys of the open objects, and per open object or list: where its keys start in
        // `keys` and whether a key comes next (objects).
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut open: Vec<Option<(usize, bool)>> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                c @ (b'{' | b'[') => {
                    // Deep nesting is the tree's to judge (serde_json refuses past 128 levels).
                    if open.len() >= MAX_DEPTH {
                        return None;
                    }
                    open.push((c == b'{').then_some((keys.len(), true)));
                    out.push(c);
                    i += 1;
                }
                c @ (b'}' | b']') => {
                    if let Some(Some((start, _))) = open.pop() {
                        let mine = &mut keys[start..];
                        mine.sort_unstable();
                        if mine.windows(2).any(|w| w[0] == w[1]) {
                            return None;
                        }
                        keys.truncate(start);
                    }
                    out.push(c);
                    i += 1;
                }
                b',' => {
                    if let Some(Some((_, key_next))) = open.last_mut() {
                        *key_next = true;
                    }
                    out.push(b',');
                    i += 1;
                }
                b'"' => {
                    let start = i;
                    i += 1;
                    while b[i] != b'"' {
                        if b[i] == b'\\' {
                            if !canonical_escape(&b[i..]) {
                                return None;
                            }
                            i += if b[i + 1] == b'u' { 6 } else { 2 };
                        } else {
                            i += 1;
                        }
                    }
                    i += 1;
                    if let Some(Some((_, key_next))) = open.last_mut()
                        && *key_next
                    {
                        keys.push(&b[start..i]);
                        *key_next = false;
                    }
                    out.extend_from_slice(&b[start..i]);
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len()
                        && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        i += 1;
                    }
                    let n = &raw[start..i];
                    if !canonical_number(n) {
                        return None;
                    }
                    out.extend_from_slice(n.as_bytes());
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        Some(out)
    }

    /// Whether the escape at the start of `b` is one `serde_json` writes: `\"`, `\\`, the short
    /// forms of control characters, or `\u00xx` (lower-case hex) for the other control characters.
    fn canonical_escape(b: &[u8]) -> bool {
        match b.get(1) {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => true,
            Some(b'u') => match b.get(2..6) {
                Some([b'0', b'0', h, l]) => {
                    let hex = |c: u8| match c {
                        b'0'..=b'9' => Some(c - b'0'),
                        b'a'..=b'f' => Some(c - b'a' + 10),
                        _ => None,
                    };
                    match (hex(*h), hex(*l)) {
                        (Some(h), Some(l)) => {
                            let c = h * 16 + l;
                            c < 0x20 && !matches!(c, 0x08 | 0x0c | 0x0a | 0x0d | 0x09)
                        }
                        _ => false,
                    }
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether `serde_json` writes the number `n` back as `n`.
    fn canonical_number(n: &str) -> bool {
        if let Ok(i) = n.parse::<i64>() {
            return i.to_string() == n;
        }
        if let Ok(u) = n.parse::<u64>() {
            return u.to_string() == n;
        }
        match n.parse::<f64>() {
            Ok(f) if f.is_finite() => ryu::Buffer::new().format_finite(f) == n,
            _ => false,
        }
    }
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
    // The exactly-once marker is the log's own, meaningful only where its producer wrote it:
    // one read from outside (a copy of another topic, or forged) is dropped, never trusted.
    let mut headers = headers(obj.get("headers"))?;
    headers.retain(|h| h.name != EOS_HEADER);
    Ok(Event {
        key,
        value,
        timestamp,
        headers,
    })
}

/// The headers of an event's `headers` field.
fn headers(field: Option<&Value>) -> Result<Vec<Header>, String> {
    Ok(match field {
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
    use proptest::prelude::*;

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

    /// A JSON number in one of its many spellings.
    fn number() -> impl Strategy<Value = String> {
        "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?"
    }

    /// A JSON string, with escapes of every kind.
    fn string() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-z é/]{0,3}",
                Just("\\\"".to_owned()),
                Just("\\\\".to_owned()),
                Just("\\/".to_owned()),
                Just("\\n".to_owned()),
                Just("\\u0001".to_owned()),
                Just("\\u001F".to_owned()),
                Just("\\u000a".to_owned()),
                Just("\\u00e9".to_owned()),
                Just("\\ud83d\\ude00".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat()))
    }

    /// JSON text of any kind, with blanks here and there.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            number(),
            string(),
            Just("true".to_owned()),
            Just("null".to_owned())
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(" , "))),
                proptest::collection::vec((string(), inner), 0..4).prop_map(|fields| {
                    let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    format!("{{ {} }}", f.join(","))
                }),
            ]
        })
    }

    proptest! {
        /// The fast reading of a line and the reading through a JSON tree give the same event,
        /// or the same error, for any value, key, timestamp and headers.
        #[test]
        fn the_fast_reading_agrees_with_the_tree(
            value in json(),
            key in proptest::option::of(prop_oneof![string(), number()]),
            ts in proptest::option::of(prop_oneof![number(), Just("null".to_owned())]),
            headers in proptest::option::of(prop_oneof![json(), Just(r#"{"h": "v", "flowgate-eos": "1"}"#.to_owned())]),
            extra in proptest::option::of(Just(r#""valu": 1"#.to_owned())),
        ) {
            let mut fields = vec![format!(r#""value" : {value}"#)];
            if let Some(k) = key { fields.push(format!(r#""key":{k}"#)); }
            if let Some(t) = ts { fields.push(format!(r#""timestamp":{t}"#)); }
            if let Some(h) = headers { fields.push(format!(r#""headers":{h}"#)); }
            if let Some(x) = extra { fields.push(x); }
            let line = format!("{{{}}}", fields.join(", "));
            prop_assert_eq!(parse_event(&line, 7), parse_event_tree(&line, 7), "{}", line);
        }
    }

    #[test]
    fn hostile_lines_are_refused_or_read_alike_without_a_crash() {
        // Nesting past serde_json's depth limit: an error, from both readings.
        let deep = format!(
            r#"{{"value":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(
            fast::parse(&deep, 0).is_none(),
            "deep nesting goes to the tree"
        );
        match parse_event(&deep, 0) {
            Err(e) => assert!(e.contains("recursion limit"), "{e}"),
            Ok(_) => panic!("100,000 levels of nesting were read"),
        }
        // Around both limits, the two readings agree level by level.
        for depth in 95..135 {
            let line = format!(r#"{{"value":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                parse_event(&line, 0),
                parse_event_tree(&line, 0),
                "depth {depth}"
            );
        }
        // 50,000 keys, one of them twice at the two ends: the tree keeps the last value.
        let mut fields: Vec<String> = (0..50_000).map(|i| format!(r#""k{i}":{i}"#)).collect();
        fields.push(r#""k0":"last""#.into());
        let wide = format!(r#"{{"value":{{{}}}}}"#, fields.join(","));
        assert!(
            fast::parse(&wide, 0).is_none(),
            "a repeated key goes to the tree"
        );
        let e = parse_event(&wide, 0).unwrap();
        assert!(e.value.starts_with(br#"{"k0":"last","k1":1"#));
        // A truncated line, and a string cut inside an escape.
        for bad in [r#"{"value":{"a":"#, r#"{"value":"\"#, r#"{"value":"\u12"}"#] {
            assert_eq!(parse_event(bad, 0), parse_event_tree(bad, 0), "{bad}");
            assert!(parse_event(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_in_their_compact_spelling_are_read_without_a_tree() {
        let line = r#"{"key":"k","value": {"id": 12, "f": 1.5, "s": "a\"b\n", "l": [true, null]}}"#;
        assert_eq!(
            parse_event(line, 0).unwrap().value,
            br#"{"id":12,"f":1.5,"s":"a\"b\n","l":[true,null]}"#
        );
        assert!(fast::parse(line, 0).is_some(), "read without a tree");
        // Spellings serde_json writes otherwise fall back to the tree, which rewrites them.
        assert!(fast::parse(r#"{"value":[1E2]}"#, 0).is_none());
        assert!(fast::parse(r#"{"value":"x","valu":1}"#, 0).is_none());
        assert_eq!(
            parse_event(r#"{"value":[1E2, 1.50]}"#, 0).unwrap().value,
            b"[100.0,1.5]"
        );
        assert_eq!(
            parse_event(r#"{"value":["\u00e9\/"]}"#, 0).unwrap().value,
            "[\"é/\"]".as_bytes()
        );
    }
}
