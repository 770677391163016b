//! A map stage: upper-cases each event's value (ASCII), keeping key, time and headers.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
use flowgate_sdk::{EventRef, ValueWriter};

#[flowgate_sdk::map]
fn uppercase(event: &EventRef, out: &mut ValueWriter) {
    out.extend(event.value.iter().map(u8::to_ascii_uppercase));
}
