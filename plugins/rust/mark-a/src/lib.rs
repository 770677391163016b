//! Test fixture: appends `|a` to each value, so an output shows which version made it.
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn mark(event: &EventRef) -> Vec<u8> {
    let mut v = event.value.to_vec();
    v.extend_from_slice(b"|a");
    v
}
