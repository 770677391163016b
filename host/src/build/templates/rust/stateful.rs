//! A stage with keyed state: replaces each value with the number of events seen so far with its
//! key (events without a key count under the empty key), as decimal text.
//! Build: `flowgate plugin build`; check: `flowgate plugin test`.
//!
//! The pipeline grants the state with `state = true` on the stage. The host keeps it with the
//! stage's input position: after a crash both come back from the same point, so no event is
//! counted twice or missed; a call that fails leaves it as it was.
use flowgate_sdk::{EventRef, ValueWriter, state};

#[flowgate_sdk::map]
fn count_per_key(event: &EventRef, out: &mut ValueWriter) {
    let key = event.key.unwrap_or_default();
    let n = state::get_u64(key).unwrap_or(0) + 1;
    state::put_u64(key, n);
    out.extend_from_slice(n.to_string().as_bytes());
}
