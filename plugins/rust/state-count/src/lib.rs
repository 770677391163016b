//! Map: replaces each value with the running count of events seen with its key (events without
//! a key count under the empty key), as decimal text. The counts live in the stage's keyed
//! state (`state = true`): they come back after a crash together with the stage's position, so
//! no event is counted twice or missed, and they survive a hot reload.
//!
//! It reads only keys (`values = false`).
use flowgate_sdk::{EventRef, ValueWriter, state};

#[flowgate_sdk::map(values = false)]
fn state_count(event: &EventRef, out: &mut ValueWriter) {
    let key = event.key.unwrap_or_default();
    let n = state::get_u64(key).unwrap_or(0) + 1;
    state::put_u64(key, n);
    out.extend_from_slice(n.to_string().as_bytes());
}
