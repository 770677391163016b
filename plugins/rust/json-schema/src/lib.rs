//! Filter: passes events whose value is JSON that matches a JSON Schema; an event that does not
//! match (or is not JSON) fails with `invalid-input`, naming each violation by its JSON pointer
//! — with `on-error = "dead-letter"` it goes to the dead-letter topic with that reason.
//!
//! Config: `schema` — the schema as JSON text (drafts 4, 6, 7, 2019-09 and 2020-12; remote
//! `$ref`s are not fetched). A schema that does not compile keeps the plugin from loading.
use std::sync::OnceLock;

use flowgate_sdk::{Config, Error, EventRef};
use jsonschema::Validator;
use serde_json::Value;

static VALIDATOR: OnceLock<Validator> = OnceLock::new();

/// Violations named in one error, at most.
const MAX_REASONS: usize = 5;

fn setup(config: &Config) -> Result<(), Error> {
    let text = config.require("schema")?;
    let schema: Value = serde_json::from_str(text)
        .map_err(|e| Error::fatal(format!("config `schema` is not JSON: {e}")))?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| Error::fatal(format!("config `schema` is not a valid JSON Schema: {e}")))?;
    let _ = VALIDATOR.set(validator);
    Ok(())
}

#[flowgate_sdk::filter(init = setup)]
fn json_schema(event: &EventRef) -> Result<bool, Error> {
    let validator = VALIDATOR
        .get()
        .ok_or_else(|| Error::fatal("init did not run"))?;
    let value: Value = serde_json::from_slice(event.value)?;
    let mut reasons = Vec::new();
    let mut more = 0;
    for e in validator.iter_errors(&value) {
        if reasons.len() < MAX_REASONS {
            let at = e.instance_path.to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            reasons.push(format!("at {at}: {e}"));
        } else {
            more += 1;
        }
    }
    if reasons.is_empty() {
        return Ok(true);
    }
    let mut message = format!("does not match the schema: {}", reasons.join("; "));
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    Err(Error::invalid_input(message))
}
