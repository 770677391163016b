//! Test fixture for the host's record limits and reserved headers. Each input event becomes one
//! output with the input's value, time and headers, changed per the config:
//!
//! - `key-bytes = N`: a key of N bytes (`k` repeated) on events whose value starts with `big`;
//! - `headers = N`: N extra headers `h-0` … on events whose value starts with `many`;
//! - `header = "name=value;name=value"`: these headers on every output (to forge host headers);
//! - `fail-on = "text"`: an event whose value is this text fails with `invalid-input`.
use flowgate_sdk::{Config, Error, Event, EventRef, Header};
use std::sync::OnceLock;

struct Settings {
    key_bytes: usize,
    headers: usize,
    header: Vec<(String, Vec<u8>)>,
    fail_on: Option<Vec<u8>>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let mut header = Vec::new();
    for h in config
        .get("header")
        .unwrap_or("")
        .split(';')
        .filter(|h| !h.is_empty())
    {
        let (name, value) = h
            .split_once('=')
            .ok_or_else(|| Error::fatal("config `header` is name=value;name=value"))?;
        header.push((name.to_owned(), value.as_bytes().to_vec()));
    }
    let key_bytes = config.parse_or("key-bytes", 0usize)?;
    let headers = config.parse_or("headers", 0usize)?;
    SETTINGS.get_or_init(|| Settings {
        key_bytes,
        headers,
        header,
        fail_on: config.get("fail-on").map(|v| v.as_bytes().to_vec()),
    });
    Ok(())
}

#[flowgate_sdk::map(init = setup)]
fn huge_key(event: &EventRef) -> Result<Event, Error> {
    let s = SETTINGS
        .get()
        .ok_or_else(|| Error::fatal("init did not run"))?;
    if s.fail_on.as_deref() == Some(event.value) {
        return Err(Error::invalid_input("the event named by fail-on"));
    }
    let mut headers: Vec<Header> = event
        .headers
        .iter()
        .map(|(n, v)| Header {
            name: String::from_utf8_lossy(n).into_owned(),
            value: v.to_vec(),
        })
        .collect();
    let mut key = event.key.map(<[u8]>::to_vec);
    if s.key_bytes > 0 && event.value.starts_with(b"big") {
        key = Some(vec![b'k'; s.key_bytes]);
    }
    if s.headers > 0 && event.value.starts_with(b"many") {
        headers.extend((0..s.headers).map(|i| Header {
            name: format!("h-{i}"),
            value: Vec::new(),
        }));
    }
    headers.extend(s.header.iter().map(|(name, value)| Header {
        name: name.clone(),
        value: value.clone(),
    }));
    Ok(Event {
        key,
        value: event.value.to_vec(),
        timestamp: event.timestamp,
        headers,
    })
}
