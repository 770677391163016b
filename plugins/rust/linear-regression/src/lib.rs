//! Map: online linear regression per key. Each event's features are read from its JSON value,
//! the key's model predicts, the prediction is attached to the event (field `prediction`), and
//! then, if the event carries the target, the model takes one stochastic-gradient step:
//!
//! ```text
//! prediction = b + Σ wᵢ·xᵢ
//! error      = prediction − y
//! wᵢ        -= rate · error · xᵢ
//! b         -= rate · error
//! ```
//!
//! The model of each key (weights, bias, updates) lives in the stage's keyed state
//! (`state = true`): it survives restarts and hot reloads, and after a crash it is the model of
//! the stage's checkpointed position, so no event trains it twice.
//!
//! Config: `features` — comma-separated JSON fields (dotted paths allowed), required;
//! `target` — the field to learn (default `y`); `learning-rate` (default 0.01);
//! `output` — the field the prediction goes in (default `prediction`).
//! An event that is not a JSON object, or lacks a feature, fails with `invalid-input`.
use std::sync::OnceLock;

use flowgate_sdk::{Config, Error, EventRef, ValueWriter, state};
use serde::{Deserialize, Serialize};
use serde_json::Value;

struct Settings {
    features: Vec<String>,
    target: String,
    rate: f64,
    output: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Model {
    w: Vec<f64>,
    b: f64,
    n: u64,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let features: Vec<String> = config
        .require("features")?
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    if features.is_empty() {
        return Err(Error::fatal("config `features` names no field"));
    }
    let rate: f64 = config.parse_or("learning-rate", 0.01)?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(Error::fatal(
            "config `learning-rate` must be a positive number",
        ));
    }
    let _ = SETTINGS.set(Settings {
        features,
        target: config.get("target").unwrap_or("y").to_owned(),
        rate,
        output: config.get("output").unwrap_or("prediction").to_owned(),
    });
    Ok(())
}

fn number(v: &Value, path: &str) -> Option<f64> {
    path.split('.').try_fold(v, |v, p| v.get(p))?.as_f64()
}

#[flowgate_sdk::map(init = setup)]
fn linear_regression(event: &EventRef, out: &mut ValueWriter) -> Result<(), Error> {
    let st = SETTINGS
        .get()
        .ok_or_else(|| Error::fatal("init did not run"))?;
    let mut value: Value = serde_json::from_slice(event.value)?;
    if !value.is_object() {
        return Err(Error::invalid_input("the value is not a JSON object"));
    }
    let x: Vec<f64> = st
        .features
        .iter()
        .map(|f| {
            number(&value, f).ok_or_else(|| {
                Error::invalid_input(format!("feature `{f}` is missing or not a number"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut key = b"model/".to_vec();
    key.extend_from_slice(event.key.unwrap_or_default());
    let mut model: Model = state::get_json(&key)?.unwrap_or_default();
    if model.w.len() != x.len() {
        model.w = vec![0.0; x.len()];
    }
    let prediction = model.b + model.w.iter().zip(&x).map(|(w, x)| w * x).sum::<f64>();
    if let Some(y) = number(&value, &st.target) {
        let error = prediction - y;
        for (w, x) in model.w.iter_mut().zip(&x) {
            *w -= st.rate * error * x;
        }
        model.b -= st.rate * error;
        model.n += 1;
        state::put_json(&key, &model);
    }
    value[st.output.as_str()] = prediction.into();
    serde_json::to_writer(out, &value).map_err(|e| Error::fatal(e.to_string()))
}
