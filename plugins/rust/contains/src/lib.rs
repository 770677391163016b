//! Filter: keeps events whose value contains the bytes of config `needle` (required).
use flowgate_sdk::{Config, Error, EventRef};
use memchr::memmem::Finder;
use std::sync::OnceLock;

static FINDER: OnceLock<Finder<'static>> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let needle = config.require("needle")?;
    if needle.is_empty() {
        return Err(Error::fatal("config `needle` must not be empty"));
    }
    FINDER.get_or_init(|| Finder::new(needle.as_bytes()).into_owned());
    Ok(())
}

#[flowgate_sdk::filter(init = setup)]
fn contains(event: &EventRef) -> bool {
    FINDER.get().is_some_and(|f| f.find(event.value).is_some())
}
