//! Keyed state of this stage instance, kept by the host (`flowgate:plugin/state`).
//!
//! Each instance (the stage on one input partition) has its own state; events with the same
//! key go to the same partition, so per-key state is consistent. The host saves the state with
//! the stage's input position: after a crash both come back together, so no update counts
//! twice. A call that fails (an error or a trap) leaves the state as it was before the call.
//!
//! The stage needs `state = true` in the pipeline file. State is not available in `init`: it
//! is attached when the instance starts serving its partition.
//!
//! ```no_run
//! use flowgate_sdk::{EventRef, ValueWriter, state};
//!
//! #[flowgate_sdk::map]
//! fn count(event: &EventRef, out: &mut ValueWriter) {
//!     let key = event.key.unwrap_or_default();
//!     let n = state::get_u64(key).unwrap_or(0) + 1;
//!     state::put_u64(key, n);
//!     out.extend_from_slice(n.to_string().as_bytes());
//! }
//! ```

use crate::__private::flowgate::plugin::state as host;

/// The value under `key`.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    host::get(key)
}

/// Stores `value` under `key`. The call traps when the state would pass the stage's
/// `max-state-bytes`.
pub fn put(key: &[u8], value: &[u8]) {
    host::put(key, value);
}

/// Removes `key`.
pub fn delete(key: &[u8]) {
    host::delete(key);
}

/// Up to `limit` entries with `start <= key < end` (no bound when `end` is `None`), in key
/// order.
pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    host::scan(start, end, limit)
}

/// Every entry whose key starts with `prefix`, in key order, fetched a page at a time.
pub fn scan_prefix(prefix: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    let end = prefix_end(prefix);
    let mut next: Option<Vec<u8>> = Some(prefix.to_vec());
    let mut page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)> = Vec::new().into_iter();
    std::iter::from_fn(move || {
        loop {
            if let Some(entry) = page.next() {
                return Some(entry);
            }
            let start = next.take()?;
            let got = host::scan(&start, end.as_deref(), 256);
            if got.len() == 256 {
                let mut after = got[255].0.clone();
                after.push(0);
                next = Some(after);
            }
            if got.is_empty() {
                return None;
            }
            page = got.into_iter();
        }
    })
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The `u64` under `key` (stored little-endian by [`put_u64`]); `None` when absent or not 8
/// bytes.
pub fn get_u64(key: &[u8]) -> Option<u64> {
    get(key).and_then(|v| {
        <[u8; 8]>::try_from(v.as_slice())
            .ok()
            .map(u64::from_le_bytes)
    })
}

/// Stores a `u64` under `key`.
pub fn put_u64(key: &[u8], value: u64) {
    put(key, &value.to_le_bytes());
}

/// The value under `key` decoded from JSON; `None` when absent, a `fatal` error when it is not
/// what `T` expects (the state was written by another version of the plugin).
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &[u8]) -> Result<Option<T>, crate::Error> {
    match get(key) {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
            crate::Error::fatal(format!(
                "keyed state under {:?} does not decode ({e}); was it written by another version of this plugin?",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

/// Stores `value` as JSON under `key`.
#[cfg(feature = "json")]
pub fn put_json<T: serde::Serialize>(key: &[u8], value: &T) {
    put(key, &serde_json::to_vec(value).expect("a value serialises"));
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
