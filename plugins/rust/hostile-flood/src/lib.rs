//! Hostile fixture: emits config `count` copies (default 1,000,000) of each input event.
use flowgate_sdk::{Config, Error, EventRef};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(1_000_000);

fn setup(config: &Config) -> Result<(), Error> {
    COUNT.store(config.parse_or("count", 1_000_000usize)?, Ordering::Relaxed);
    Ok(())
}

#[flowgate_sdk::flat_map(init = setup)]
fn flood(event: &EventRef) -> Vec<Vec<u8>> {
    vec![event.value.to_vec(); COUNT.load(Ordering::Relaxed)]
}
