//! A per-row error, one of the conformance plugins every plugin language implements alike
//! (docs/languages.md): a value that starts with `bad` fails with `invalid-input` "bad event";
//! the others pass unchanged.
use flowgate_sdk::{Error, EventRef};

#[flowgate_sdk::filter]
fn reject_bad(event: &EventRef) -> Result<bool, Error> {
    if event.value.starts_with(b"bad") {
        return Err(Error::invalid_input("bad event"));
    }
    Ok(true)
}
