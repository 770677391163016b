//! Hostile fixture: eats memory.
//!
//! Config `mode`: `alloc` (default) pushes into a vector until allocation fails, which aborts;
//! `probe` grows linear memory a page at a time until the host refuses, then returns the
//! final memory size in bytes as the value, so a test can check the cap to the byte.
use flowgate_sdk::{Config, Error, EventRef};
use std::sync::atomic::{AtomicBool, Ordering};

static PROBE: AtomicBool = AtomicBool::new(false);

fn setup(config: &Config) -> Result<(), Error> {
    match config.get("mode").unwrap_or("alloc") {
        "alloc" => {}
        "probe" => PROBE.store(true, Ordering::Relaxed),
        other => {
            return Err(Error::fatal(format!(
                "config `mode` = {other:?}: use alloc or probe"
            )));
        }
    }
    Ok(())
}

#[flowgate_sdk::map(init = setup)]
fn grow(_event: &EventRef) -> Vec<u8> {
    if PROBE.load(Ordering::Relaxed) {
        while core::arch::wasm32::memory_grow(0, 1) != usize::MAX {}
        let bytes = core::arch::wasm32::memory_size(0) * 65536;
        return bytes.to_string().into_bytes();
    }
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}
