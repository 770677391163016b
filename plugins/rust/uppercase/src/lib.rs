//! Map: the value in upper case (ASCII letters only; other bytes pass through).
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn uppercase(event: &EventRef) -> Vec<u8> {
    event.value.to_ascii_uppercase()
}
