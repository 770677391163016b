//! A flat-map stage: one event per word of the value (split on spaces), each with the input's
//! key, time and headers. Build: `flowgate plugin build`; check: `flowgate plugin test`.
//!
//! Return a `Vec` of values (or of whole `flowgate_sdk::Event`s, to set key, time and
//! headers); an empty one drops the event.
use flowgate_sdk::EventRef;

#[flowgate_sdk::flat_map]
fn words(event: &EventRef) -> Vec<Vec<u8>> {
    event
        .value
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
