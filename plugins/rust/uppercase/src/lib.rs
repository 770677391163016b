//! Map: the value in upper case (ASCII letters only; other bytes pass through). Written in the
//! two-argument form: the new value goes straight into the output buffer.
use flowgate_sdk::{EventRef, ValueWriter};

#[flowgate_sdk::map]
fn uppercase(event: &EventRef, out: &mut ValueWriter) {
    out.extend(event.value.iter().map(u8::to_ascii_uppercase));
}
