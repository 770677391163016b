//! Map: replaces each value with the running count of events seen with its key (events without
//! a key count under the empty key), as decimal text.
//!
//! It reads only keys (`values = false`), so the host does not copy values into it.
//!
//! The counts live in the instance's memory: they survive between calls, not a restart of the
//! instance (durable keyed state is a host interface of a later contract version).
use flowgate_sdk::EventRef;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static COUNTS: RefCell<HashMap<Vec<u8>, u64>> = RefCell::new(HashMap::new());
}

#[flowgate_sdk::map(values = false)]
fn count_by_key(event: &EventRef) -> Vec<u8> {
    let key = event.key.unwrap_or_default();
    COUNTS.with_borrow_mut(|counts| {
        let n = match counts.get_mut(key) {
            Some(n) => n,
            None => counts.entry(key.to_vec()).or_insert(0),
        };
        *n += 1;
        n.to_string().into_bytes()
    })
}
