//! Hostile fixture: panics (traps) in init.
use flowgate_sdk::{Config, Error, EventRef};

fn setup(_config: &Config) -> Result<(), Error> {
    panic!("init refused: this fixture always traps in init");
}

#[flowgate_sdk::map(init = setup)]
fn never(event: &EventRef) -> Vec<u8> {
    event.value.to_vec()
}
