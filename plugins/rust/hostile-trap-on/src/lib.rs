//! Hostile fixture: panics (traps) on the event whose value equals config `poison`
//! (default `poison`); passes every other event through.
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn trap_on(event: &EventRef) -> Vec<u8> {
    let poison = flowgate_sdk::config().get("poison").unwrap_or("poison");
    if event.value == poison.as_bytes() {
        panic!("poisoned event: {poison}");
    }
    event.value.to_vec()
}
