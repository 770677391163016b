//! Filter: passes the first event of each identity and drops the repeats that come within a
//! time window of it (by event time). The identity is the event key, or the JSON field named by
//! `field` (a dotted path). What was seen is kept in the stage's keyed state (`state = true`),
//! so a restart does not let repeats through; identities older than the window are forgotten.
//!
//! Config: `window` — e.g. `"10m"`, `"30s"`, `"500ms"`, `"1h"` (default `"1h"`); `field`.
//! An event without an identity (no key; the field missing; not JSON) fails with
//! `invalid-input`.
use std::sync::OnceLock;

use flowgate_sdk::{Config, Error, EventRef, state};
use serde_json::Value;

const SEEN: &[u8] = b"seen/";
const NEWEST: &[u8] = b"meta/newest";
const COUNT: &[u8] = b"meta/count";
/// Events between two sweeps of expired identities.
const SWEEP_EVERY: u64 = 4096;

static WINDOW_MS: OnceLock<i64> = OnceLock::new();

/// `"10m"` → 600000.
fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as \"10m\""))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    Ok(n * scale)
}

fn setup(config: &Config) -> Result<(), Error> {
    let w = parse_duration(config.get("window").unwrap_or("1h"))
        .map_err(|e| Error::fatal(format!("config `window`: {e}")))?;
    if w <= 0 {
        return Err(Error::fatal("config `window` must be longer than 0"));
    }
    let _ = WINDOW_MS.set(w);
    Ok(())
}

fn identity(event: &EventRef) -> Result<Vec<u8>, Error> {
    match flowgate_sdk::config().get("field") {
        None => event.key.map(<[u8]>::to_vec).ok_or_else(|| {
            Error::invalid_input("the event has no key to de-duplicate by (or set config `field`)")
        }),
        Some(path) => {
            let v: Value = serde_json::from_slice(event.value)?;
            let at = path
                .split('.')
                .try_fold(&v, |v, p| v.get(p))
                .ok_or_else(|| Error::invalid_input(format!("field `{path}` is missing")))?;
            Ok(match at {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            })
        }
    }
}

#[flowgate_sdk::filter(init = setup)]
fn dedup(event: &EventRef) -> Result<bool, Error> {
    let window = *WINDOW_MS.get().unwrap_or(&3_600_000);
    let id = identity(event)?;
    let mut key = SEEN.to_vec();
    key.extend_from_slice(&id);
    let t = event.timestamp;
    let newest = state::get_u64(NEWEST).map_or(i64::MIN, |v| v as i64).max(t);
    state::put_u64(NEWEST, newest as u64);
    let keep = match state::get_u64(&key) {
        Some(first) => {
            let first = first as i64;
            // A repeat within the window of the first sighting (before or after it, events
            // come out of order) is dropped; outside it, the event is a new first sighting.
            t.abs_diff(first) >= window as u64
        }
        None => true,
    };
    if keep {
        state::put_u64(&key, t as u64);
    }
    let n = state::get_u64(COUNT).unwrap_or(0) + 1;
    state::put_u64(COUNT, n);
    if n.is_multiple_of(SWEEP_EVERY) {
        let expired: Vec<Vec<u8>> = state::scan_prefix(SEEN)
            .filter(|(_, v)| {
                <[u8; 8]>::try_from(v.as_slice())
                    .is_ok_and(|b| newest - (u64::from_le_bytes(b) as i64) >= window)
            })
            .map(|(k, _)| k)
            .collect();
        for k in expired {
            state::delete(&k);
        }
    }
    Ok(keep)
}
