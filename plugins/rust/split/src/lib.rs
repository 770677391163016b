//! Flat-map: splits the value on a separator (config `separator`, default a newline) into one
//! event per non-empty part; key, time and headers are copied to each part.
use flowgate_sdk::{Config, Error, EventRef};
use std::sync::OnceLock;

static SEPARATOR: OnceLock<Vec<u8>> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let sep = config.get("separator").unwrap_or("\n");
    if sep.is_empty() {
        return Err(Error::fatal("config `separator` must not be empty"));
    }
    SEPARATOR.get_or_init(|| sep.as_bytes().to_vec());
    Ok(())
}

#[flowgate_sdk::flat_map(init = setup)]
fn split(event: &EventRef) -> Vec<Vec<u8>> {
    let sep = SEPARATOR.get().map(Vec::as_slice).unwrap_or(b"\n");
    let mut parts = Vec::new();
    let mut rest = event.value;
    while let Some(at) = find(rest, sep) {
        if at > 0 {
            parts.push(rest[..at].to_vec());
        }
        rest = &rest[at + sep.len()..];
    }
    if !rest.is_empty() {
        parts.push(rest.to_vec());
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
