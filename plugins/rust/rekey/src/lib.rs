//! Conformance: re-keying. When the value contains `"user":"`, the new key is the text after it
//! up to the next `"` (to the end of the value when there is none); otherwise the event has no
//! key. Value, time and headers are kept. A byte search, not a JSON parser, so every language
//! can do exactly the same.
use flowgate_sdk::{Event, EventRef, Header};

const FIELD: &[u8] = b"\"user\":\"";

#[flowgate_sdk::map]
fn rekey(event: &EventRef) -> Event {
    let key = event
        .value
        .windows(FIELD.len())
        .position(|w| w == FIELD)
        .map(|at| {
            let rest = &event.value[at + FIELD.len()..];
            let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
            rest[..end].to_vec()
        });
    Event {
        key,
        value: event.value.to_vec(),
        timestamp: event.timestamp,
        headers: headers(event),
    }
}

/// The event's headers, owned.
fn headers(event: &EventRef) -> Vec<Header> {
    event
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.to_vec(),
        })
        .collect()
}
