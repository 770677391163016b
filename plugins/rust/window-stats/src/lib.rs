//! Aggregator: per key and window, the count of events and the sum, average, minimum and
//! maximum of a numeric JSON field.
//!
//! Config: `field` — the field to aggregate, a top-level name or a dotted path (`order.total`);
//! without it only events are counted. An event whose value is not JSON, or whose field is
//! missing or not a number, fails with `invalid-input` (to the dead-letter topic).
//!
//! Each window's result is one event, keyed like its inputs, with the value
//! `{"key":"…","start":…,"end":…,"count":…,"sum":…,"avg":…,"min":…,"max":…}` (times in ms;
//! `sum`, `avg`, `min`, `max` only with `field`).
use flowgate_sdk::{Aggregator, Config, Error, EventRef, Window};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Default, Clone, Serialize, Deserialize)]
struct Stats {
    #[serde(rename = "n")]
    count: u64,
    #[serde(rename = "s")]
    sum: f64,
    #[serde(rename = "lo")]
    min: f64,
    #[serde(rename = "hi")]
    max: f64,
}

struct WindowStats;

fn field() -> Option<&'static str> {
    flowgate_sdk::config().get("field")
}

fn number_at(value: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(value, |v, part| v.get(part))?
        .as_f64()
}

#[flowgate_sdk::aggregator]
impl Aggregator for WindowStats {
    type Acc = Stats;

    fn init(config: &Config) -> Result<(), Error> {
        if config.get("field").is_some_and(|f| f.trim().is_empty()) {
            return Err(Error::fatal(
                "config `field` is empty: name a numeric JSON field, or leave it out to count events",
            ));
        }
        Ok(())
    }

    fn add(acc: &mut Stats, event: &EventRef) -> Result<(), Error> {
        if let Some(path) = field() {
            let value: Value = serde_json::from_slice(event.value)?;
            let x = number_at(&value, path).ok_or_else(|| {
                Error::invalid_input(format!("field `{path}` is missing or not a number"))
            })?;
            if acc.count == 0 {
                acc.min = x;
                acc.max = x;
            } else {
                acc.min = acc.min.min(x);
                acc.max = acc.max.max(x);
            }
            acc.sum += x;
        }
        acc.count += 1;
        Ok(())
    }

    fn merge(a: Stats, b: Stats) -> Option<Stats> {
        if a.count == 0 {
            return Some(b);
        }
        if b.count == 0 {
            return Some(a);
        }
        Some(Stats {
            count: a.count + b.count,
            sum: a.sum + b.sum,
            min: a.min.min(b.min),
            max: a.max.max(b.max),
        })
    }

    fn finish(acc: Stats, key: Option<&[u8]>, window: Window) -> Result<Vec<u8>, Error> {
        let mut out = Map::new();
        if let Some(k) = key {
            out.insert("key".into(), String::from_utf8_lossy(k).into());
        }
        out.insert("start".into(), window.start.into());
        out.insert("end".into(), window.end.into());
        out.insert("count".into(), acc.count.into());
        if field().is_some() && acc.count > 0 {
            out.insert("sum".into(), acc.sum.into());
            out.insert("avg".into(), (acc.sum / acc.count as f64).into());
            out.insert("min".into(), acc.min.into());
            out.insert("max".into(), acc.max.into());
        }
        Ok(serde_json::to_vec(&Value::Object(out)).expect("JSON serialises"))
    }
}
