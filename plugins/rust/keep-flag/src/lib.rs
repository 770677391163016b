//! Filter, one of the conformance plugins every plugin language implements alike
//! (docs/languages.md): keeps an event whose value is a JSON object with a top-level field
//! `keep` that is `true`; a value that is not a JSON object fails with `invalid-input`
//! "not a JSON object".
use flowgate_sdk::{Error, EventRef};
use serde_json::Value;

#[flowgate_sdk::filter]
fn keep_flag(event: &EventRef) -> Result<bool, Error> {
    match serde_json::from_slice::<Value>(event.value) {
        Ok(Value::Object(o)) => Ok(o.get("keep") == Some(&Value::Bool(true))),
        _ => Err(Error::invalid_input("not a JSON object")),
    }
}
