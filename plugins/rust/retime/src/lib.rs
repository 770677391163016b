//! Conformance: rewriting the event time. The time becomes its second (`timestamp -
//! timestamp mod 1000`, rounding down) plus the value's length in milliseconds. Key, value and
//! headers are kept.
use flowgate_sdk::{Event, EventRef, Header};

#[flowgate_sdk::map]
fn retime(event: &EventRef) -> Event {
    Event {
        key: event.key.map(<[u8]>::to_vec),
        value: event.value.to_vec(),
        timestamp: event.timestamp - event.timestamp.rem_euclid(1000) + event.value.len() as i64,
        headers: event
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: String::from_utf8_lossy(name).into_owned(),
                value: value.to_vec(),
            })
            .collect(),
    }
}
