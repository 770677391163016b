//! Map: replaces each value with the running count of events seen with its key (events without
//! a key count under the empty key), as decimal text.
//!
//! It reads only keys (`values = false`), so the host does not copy values into it.
//!
//! The counts live in the instance's memory: they survive between calls, not a restart of the
//! instance (durable keyed state is a host interface of a later contract version).
use flowgate_sdk::{EventRef, ValueWriter};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static COUNTS: RefCell<HashMap<Vec<u8>, u64>> = RefCell::new(HashMap::new());
}

#[flowgate_sdk::map(values = false)]
fn count_by_key(event: &EventRef, out: &mut ValueWriter) {
    let key = event.key.unwrap_or_default();
    let n = COUNTS.with_borrow_mut(|counts| {
        let n = match counts.get_mut(key) {
            Some(n) => n,
            None => counts.entry(key.to_vec()).or_insert(0),
        };
        *n += 1;
        *n
    });
    // Decimal digits, written in place.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
