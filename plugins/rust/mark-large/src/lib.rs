//! Test fixture: appends `|L` to each value, and carries a 4 MiB table in its data so that the
//! component is several megabytes (for hot-reload tests and benchmarks of large plugins).
use flowgate_sdk::EventRef;

/// Made by build.rs.
static TABLE: &[u8; 4 << 20] = include_bytes!(concat!(env!("OUT_DIR"), "/table.bin"));

#[flowgate_sdk::map]
fn mark_large(event: &EventRef) -> Vec<u8> {
    let mut v = event.value.to_vec();
    // Reads the table, so it stays in the component.
    let check = TABLE[event.value.len() % TABLE.len()];
    v.extend_from_slice(b"|L");
    if check == 0 {
        v.push(b'0');
    }
    v
}
