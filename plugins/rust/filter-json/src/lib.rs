//! Filter: keeps events whose JSON value has a field that matches.
//!
//! Config: `field` (required; a dotted path such as `user.country`), and one or more of
//! `equals` (a JSON literal: `"error"`, `42`, `true`), `min` and `max` (numbers, inclusive).
//! With `field` alone, keeps events where the field exists and is not null.
//! A value that is not JSON is an `invalid-input` error (to the dead-letter queue).
use flowgate_sdk::{Config, Error, EventRef, JsonExt};
use serde_json::Value;
use std::sync::OnceLock;

struct Rule {
    path: Vec<String>,
    equals: Option<Value>,
    min: Option<f64>,
    max: Option<f64>,
}

static RULE: OnceLock<Rule> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let field = config.require("field")?;
    let equals = match config.get("equals") {
        None => None,
        Some(raw) => Some(serde_json::from_str(raw).map_err(|e| {
            Error::fatal(format!(
                "config `equals` = {raw:?} is not a JSON literal ({e}); quote strings: equals = '\"error\"'"
            ))
        })?),
    };
    let number = |key: &str| -> Result<Option<f64>, Error> {
        config
            .get(key)
            .map(|raw| {
                raw.parse::<f64>()
                    .map_err(|e| Error::fatal(format!("config `{key}` = {raw:?}: {e}")))
            })
            .transpose()
    };
    let rule = Rule {
        path: field.split('.').map(str::to_owned).collect(),
        equals,
        min: number("min")?,
        max: number("max")?,
    };
    let _ = RULE.set(rule);
    Ok(())
}

#[flowgate_sdk::filter(init = setup)]
fn filter_json(event: &EventRef) -> Result<bool, Error> {
    let rule = RULE.get().ok_or_else(|| Error::fatal("init did not run"))?;
    let doc: Value = event.json()?;
    let mut at = &doc;
    for part in &rule.path {
        match at.get(part) {
            Some(v) => at = v,
            None => return Ok(false),
        }
    }
    if at.is_null() {
        return Ok(false);
    }
    if rule.equals.as_ref().is_some_and(|want| at != want) {
        return Ok(false);
    }
    if rule.min.is_some() || rule.max.is_some() {
        let Some(n) = at.as_f64() else {
            return Ok(false);
        };
        if rule.min.is_some_and(|m| n < m) || rule.max.is_some_and(|m| n > m) {
            return Ok(false);
        }
    }
    Ok(true)
}
