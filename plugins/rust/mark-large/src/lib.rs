//! Test fixture: appends `|L` to each value, and carries a 4 MiB table in its data so that the
//! component is several megabytes (for hot-reload tests and benchmarks of large plugins).
use flowgate_sdk::EventRef;

const SIZE: usize = 4 << 20;

/// Bytes that do not repeat in any short period, so nothing can fold them away.
#[allow(
    long_running_const_eval,
    reason = "4 Mi steps of xorshift at compile time, on purpose"
)]
static TABLE: [u8; SIZE] = {
    let mut t = [0u8; SIZE];
    let mut i = 0;
    let mut x: u32 = 2_463_534_242;
    while i < SIZE {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t[i] = x as u8;
        i += 1;
    }
    t
};

#[flowgate_sdk::map]
fn mark_large(event: &EventRef) -> Vec<u8> {
    let mut v = event.value.to_vec();
    // Reads the table, so it stays in the component.
    let check = TABLE[event.value.len() % SIZE];
    v.extend_from_slice(b"|L");
    if check == 0 {
        v.push(b'0');
    }
    v
}
