//! Conformance: setting a header. The output has the input's headers in order, then `route` =
//! `json` when the value starts with `{` and `text` otherwise. Key, value and time are kept. A
//! pipeline routes on it with `route = { header = "route", topics = { … } }`.
use flowgate_sdk::{Event, EventRef, Header};

#[flowgate_sdk::map]
fn tag_route(event: &EventRef) -> Event {
    let mut headers: Vec<Header> = event
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.to_vec(),
        })
        .collect();
    let route: &[u8] = if event.value.first() == Some(&b'{') {
        b"json"
    } else {
        b"text"
    };
    headers.push(Header {
        name: "route".into(),
        value: route.to_vec(),
    });
    Event {
        key: event.key.map(<[u8]>::to_vec),
        value: event.value.to_vec(),
        timestamp: event.timestamp,
        headers,
    }
}
