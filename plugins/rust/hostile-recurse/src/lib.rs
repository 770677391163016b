//! Hostile fixture: recurses without bound in on-event. The host must trap it on stack overflow.
use flowgate_sdk::EventRef;

/// Keeps values live across the call so each level takes a real stack frame, and combines them
/// after it so the recursion cannot become a loop.
fn dive(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let a = depth.wrapping_mul(3);
    let b = depth ^ 7;
    dive(depth + 1).wrapping_add(a).wrapping_mul(b | 1)
}

#[flowgate_sdk::map]
fn recurse(event: &EventRef) -> Vec<u8> {
    dive(event.value.len() as u64).to_string().into_bytes()
}
