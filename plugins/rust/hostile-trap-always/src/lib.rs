//! Hostile fixture: panics (traps) on every event; `init` succeeds.
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn trap_always(event: &EventRef) -> Vec<u8> {
    panic!(
        "this version traps on every event ({} bytes)",
        event.value.len()
    );
}
