//! An aggregator: per key and window, the count and the sum of the events' values, which are
//! integers written as text (`-?[0-9]{1,18}`); any other value fails with `invalid-input` (to the
//! dead-letter topic). Each window's result is `{"count":…,"sum":…}`.
//! Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
//! flowgate.toml says).
//!
//! The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping
//! or session), keeps one accumulator per key and window and calls `finish` when a window is
//! due; `merge` lets session windows that grow into each other become one.
use flowgate_sdk::{Aggregator, Error, EventRef, Window};

struct CountSum;

#[flowgate_sdk::aggregator]
impl Aggregator for CountSum {
    /// The count and the sum.
    type Acc = (i64, i64);

    fn add(acc: &mut (i64, i64), event: &EventRef) -> Result<(), Error> {
        let n = integer(event.value).ok_or_else(|| Error::invalid_input("not an integer"))?;
        acc.0 += 1;
        acc.1 = acc.1.wrapping_add(n);
        Ok(())
    }

    fn merge(a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
        Some((a.0 + b.0, a.1.wrapping_add(b.1)))
    }

    fn finish(acc: (i64, i64), _key: Option<&[u8]>, _window: Window) -> Result<Vec<u8>, Error> {
        Ok(format!("{{\"count\":{},\"sum\":{}}}", acc.0, acc.1).into_bytes())
    }
}

/// The value as an integer when it is exactly `-?[0-9]{1,18}`.
fn integer(value: &[u8]) -> Option<i64> {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}
