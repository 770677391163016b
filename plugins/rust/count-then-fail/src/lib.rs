//! Test fixture for keyed state under failures: counts each event under its key in the stage's
//! keyed state (as `state-count` does) and outputs the count, but an event whose value starts
//! with `bad` fails with `invalid-input` after its count was written. The host must take that
//! write back, per event and per batch alike.
use flowgate_sdk::{Error, EventRef, ValueWriter, state};

#[flowgate_sdk::map]
fn count_then_fail(event: &EventRef, out: &mut ValueWriter) -> Result<(), Error> {
    let key = event.key.unwrap_or_default();
    let n = state::get_u64(key).unwrap_or(0) + 1;
    state::put_u64(key, n);
    if event.value.starts_with(b"bad") {
        return Err(Error::invalid_input("bad event (after counting it)"));
    }
    out.extend_from_slice(n.to_string().as_bytes());
    Ok(())
}
