//! Map: keeps only the listed JSON fields, optionally renamed.
//!
//! Config `fields`: a comma-separated list of `path` or `path -> name`, where `path` is dotted
//! (`user.id -> user_id`). Fields missing from an event are left out of its output.
//! A value that is not a JSON object is an `invalid-input` error.
use flowgate_sdk::{Config, Error, EventRef, JsonExt};
use serde_json::{Map, Value};
use std::sync::OnceLock;

struct Field {
    path: Vec<String>,
    name: String,
}

static FIELDS: OnceLock<Vec<Field>> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let spec = config.require("fields")?;
    let mut fields = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (path, name) = match item.split_once("->") {
            Some((p, n)) => (p.trim(), n.trim()),
            None => (item, item.rsplit('.').next().unwrap_or(item)),
        };
        if path.is_empty() || name.is_empty() {
            return Err(Error::fatal(format!(
                "config `fields`: {item:?} should be `path` or `path -> name`"
            )));
        }
        fields.push(Field {
            path: path.split('.').map(str::to_owned).collect(),
            name: name.to_owned(),
        });
    }
    if fields.is_empty() {
        return Err(Error::fatal("config `fields` lists no field"));
    }
    let _ = FIELDS.set(fields);
    Ok(())
}

#[flowgate_sdk::map(init = setup)]
fn json_project(event: &EventRef) -> Result<Vec<u8>, Error> {
    let fields = FIELDS
        .get()
        .ok_or_else(|| Error::fatal("init did not run"))?;
    let doc: Value = event.json()?;
    if !doc.is_object() {
        return Err(Error::invalid_input("value is JSON but not an object"));
    }
    let mut out = Map::new();
    for f in fields {
        let mut at = Some(&doc);
        for part in &f.path {
            at = at.and_then(|v| v.get(part));
        }
        if let Some(v) = at {
            out.insert(f.name.clone(), v.clone());
        }
    }
    Ok(serde_json::to_vec(&out)?)
}
