//! A filter stage: keeps the events whose value contains `error`, unchanged.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! Return `true` to keep the event; return `Err(Error::invalid_input("why"))` from a function
//! returning `Result<bool, Error>` to fail it (it goes to the dead-letter topic).
use flowgate_sdk::EventRef;

#[flowgate_sdk::filter]
fn errors_only(event: &EventRef) -> bool {
    event.value.windows(5).any(|w| w == b"error")
}
