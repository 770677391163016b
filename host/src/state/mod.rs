//! Keyed state of a stage instance (a stage on one input partition) and the windows the host
//! keeps for aggregators ([`window`]).
//!
//! The state lives in memory, in a sorted map, and is saved whole into the stage's checkpoint
//! together with its input position and output ends (one atomic file, see
//! `flow/producer.rs`): after a crash the stage resumes from a position and a state that
//! belong together, so replayed inputs update the state once.
//!
//! Writes are journalled in an undo log so that the writes of a failed call (an error or a
//! trap), or of a batch a rolled-back plugin version processed, are taken back. The journal is
//! emptied when a batch is handed to the producer.

pub mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

pub use window::{
    AggregateError, Failure, Fired, Refusal, WindowSpec, WindowState, Windowing, fired_batch,
};

/// A stage instance's state, shared by the worker and the plugin instance it runs (which
/// changes on hot reload; the state stays).
#[derive(Clone, Debug)]
pub struct SharedState(Arc<Mutex<KeyedState>>);

impl SharedState {
    /// Empty state with a size cap.
    pub fn new(max_bytes: usize) -> SharedState {
        SharedState(Arc::new(Mutex::new(KeyedState::new(max_bytes))))
    }

    /// Locks it. A poisoned lock (a panic elsewhere) still gives the state: every method
    /// leaves it consistent.
    pub fn lock(&self) -> MutexGuard<'_, KeyedState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state would pass its cap.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "keyed state would hold {would} bytes, over the stage's max-state-bytes = {max}; raise max-state-bytes or delete keys the plugin no longer needs"
)]
pub struct StateFull {
    /// Bytes after the write.
    pub would: usize,
    /// The cap.
    pub max: usize,
}

/// A state snapshot (from a checkpoint file) that cannot be restored. Decoding returns one of
/// these for any bytes that are not a snapshot [`KeyedState::encode`] wrote; it never panics.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes end before the snapshot does.
    #[error("state snapshot is cut short (it ends inside {what})")]
    CutShort {
        /// What was being read.
        what: &'static str,
    },
    /// The CRC-32C at the end does not match.
    #[error("state snapshot fails its CRC check (the file was damaged)")]
    Crc,
    /// The snapshot does not start with `FGS1`.
    #[error("state snapshot has an unknown format (it does not start with FGS1)")]
    Format,
    /// Bytes follow the snapshot's last field.
    #[error("state snapshot has {0} trailing bytes")]
    Trailing(usize),
    /// The fields read, but break an invariant of the state (keys out of order, two panes
    /// with one id or one window, a pane that ends before it starts…).
    #[error("state snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// Sorted keys and values, their size, and the undo journal.
#[derive(Debug, Default)]
pub struct KeyedState {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Keys written since [`take_changes`](Self::take_changes), once tracking is on.
    changed: Option<BTreeSet<Vec<u8>>>,
    /// Windows of an aggregator stage (empty otherwise).
    pub windows: WindowState,
}

/// Bytes an entry counts for: key, value and a fixed overhead for the map node.
fn entry_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 48
}

impl KeyedState {
    /// Empty, capped at `max_bytes`.
    pub fn new(max_bytes: usize) -> KeyedState {
        KeyedState {
            max_bytes,
            ..KeyedState::default()
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held (keys, values and per-entry overhead), windows not counted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cap on entries and windows together (`max-state-bytes`).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateFull> {
        let old = self.map.get(&key).map_or(0, |v| entry_bytes(&key, v));
        let would = self.bytes - old + entry_bytes(&key, &value);
        // Window panes count against the same cap.
        let windows = self.windows.bytes();
        if would.saturating_add(windows) > self.max_bytes && would > self.bytes {
            return Err(StateFull {
                would: would.saturating_add(windows),
                max: self.max_bytes,
            });
        }
        self.bytes = would;
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
        }
        let previous = self.map.insert(key.clone(), value);
        self.undo.push((key, previous));
        Ok(())
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        if let Some((k, v)) = self.map.remove_entry(key) {
            self.bytes -= entry_bytes(&k, &v);
            if let Some(changed) = &mut self.changed {
                changed.insert(k.clone());
            }
            self.undo.push((k, Some(v)));
        }
    }

    /// Keeps the keys written from now on, for [`take_changes`](Self::take_changes) (a
    /// changelog of the state).
    pub fn track_changes(&mut self) {
        self.changed.get_or_insert_with(BTreeSet::new);
    }

    /// Counts every entry as written (for a changelog that does not hold them yet).
    pub fn mark_all_changed(&mut self) {
        if let Some(changed) = &mut self.changed {
            changed.extend(self.map.keys().cloned());
        }
    }

    /// The entries written since the last call, in key order: each key with its value now, or
    /// `None` if it is gone.
    pub fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let Some(changed) = &mut self.changed else {
            return Vec::new();
        };
        std::mem::take(changed)
            .into_iter()
            .map(|k| {
                let v = self.map.get(&k).cloned();
                (k, v)
            })
            .collect()
    }

    /// Sets one entry as a changelog holds it (no cap, no journal); `None` removes it.
    pub fn restore_entry(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= entry_bytes(key, &old);
        }
        if let Some(v) = value {
            self.bytes += entry_bytes(key, v);
            self.map.insert(key.to_vec(), v.to_vec());
        }
    }

    /// Up to `limit` entries with `start <= key < end`, in key order.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        if end.is_some_and(|e| e <= start) {
            return Vec::new();
        }
        self.map
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A point to [`roll_back`](Self::roll_back) to.
    pub fn mark(&self) -> usize {
        self.undo.len()
    }

    /// Takes back every write made since `mark`.
    pub fn roll_back(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (key, previous) = self.undo.pop().expect("longer than mark");
            if let Some(v) = self.map.remove(&key) {
                self.bytes -= entry_bytes(&key, &v);
            }
            if let Some(v) = previous {
                self.bytes += entry_bytes(&key, &v);
                self.map.insert(key, v);
            }
        }
    }

    /// Keeps every write so far (empties the journal).
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The state as bytes, for a checkpoint: `FGS1`, the entries, the windows, a CRC-32C.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes + 64);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, self.map.len() as u64);
        for (k, v) in &self.map {
            put_bytes(&mut out, k);
            put_bytes(&mut out, v);
        }
        self.windows.encode(&mut out);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Restores what [`encode`](Self::encode) wrote (the cap is not part of it). Any other
    /// bytes give an error: a damaged or crafted snapshot is refused, never trusted.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<KeyedState, SnapshotError> {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err(SnapshotError::CutShort { what: "the CRC" });
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err(SnapshotError::Crc);
        }
        let mut r = Reader(body);
        if r.take(MAGIC.len(), "the magic")? != MAGIC {
            return Err(SnapshotError::Format);
        }
        let n = r.u64("the entry count")?;
        let mut state = KeyedState::new(max_bytes);
        for _ in 0..n {
            let k = r.bytes("an entry's key")?;
            let v = r.bytes("an entry's value")?;
            if state
                .map
                .last_key_value()
                .is_some_and(|(last, _)| last.as_slice() >= k)
            {
                return Err(SnapshotError::Inconsistent(
                    "entry keys are not in increasing order".into(),
                ));
            }
            state.bytes = state.bytes.saturating_add(entry_bytes(k, v));
            state.map.insert(k.to_vec(), v.to_vec());
        }
        state.windows = WindowState::decode(&mut r)?;
        if !r.0.is_empty() {
            return Err(SnapshotError::Trailing(r.0.len()));
        }
        Ok(state)
    }

    /// Replaces this state's contents (entries and windows) with `other`'s, keeping the cap.
    pub fn replace_with(&mut self, other: KeyedState) {
        let max = self.max_bytes;
        let tracking = self.changed.is_some();
        *self = other;
        self.max_bytes = max;
        self.changed = tracking.then(BTreeSet::new);
    }
}

const MAGIC: &[u8] = b"FGS1";

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads what `put_*` wrote.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes; `what` names them in the error.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let Some((head, rest)) = self.0.split_at_checked(n) else {
            return Err(SnapshotError::CutShort { what });
        };
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(SnapshotError::CutShort { what });
        };
        self.0 = rest;
        Ok(*head)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, SnapshotError> {
        self.array::<1>(what).map(|[b]| b)
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let n = u32::from_le_bytes(self.array::<4>(what)?);
        self.take(n as usize, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_roll_back_takes_back_puts_and_deletes_to_the_mark() {
        let mut s = KeyedState::new(1 << 20);
        s.put(b"a".to_vec(), b"1".to_vec()).unwrap();
        s.commit();
        let before = s.bytes();
        let mark = s.mark();
        s.put(b"a".to_vec(), b"22".to_vec()).unwrap();
        s.put(b"b".to_vec(), b"3".to_vec()).unwrap();
        s.delete(b"a");
        assert_eq!(s.get(b"a"), None);
        s.roll_back(mark);
        assert_eq!(s.get(b"a"), Some(&b"1"[..]));
        assert_eq!(s.get(b"b"), None);
        assert_eq!(s.bytes(), before);
    }

    #[test]
    fn a_put_over_the_cap_is_refused_and_changes_nothing() {
        let mut s = KeyedState::new(100);
        s.put(b"k".to_vec(), vec![0; 40]).unwrap();
        let err = s.put(b"j".to_vec(), vec![0; 40]).unwrap_err();
        assert_eq!(err.max, 100);
        assert!(err.to_string().contains("max-state-bytes"));
        assert_eq!(s.len(), 1);
        // Shrinking a value is always allowed.
        s.put(b"k".to_vec(), vec![0; 10]).unwrap();
    }

    #[test]
    fn a_snapshot_with_a_flipped_bit_is_refused() {
        let mut s = KeyedState::new(1 << 20);
        s.put(b"key".to_vec(), b"value".to_vec()).unwrap();
        let mut bytes = s.encode();
        bytes[9] ^= 1;
        assert_eq!(
            KeyedState::decode(&bytes, 1 << 20).unwrap_err(),
            SnapshotError::Crc
        );
        assert!(KeyedState::decode(&bytes[..3], 1 << 20).is_err());
    }

    proptest! {
        /// The state after any writes equals a model map; scans agree with it; a snapshot
        /// restores it exactly.
        #[test]
        fn state_matches_a_model_map(ops in prop::collection::vec((0u8..3, 0u8..16, prop::collection::vec(any::<u8>(), 0..8)), 0..200), lo in 0u8..16, hi in 0u8..17) {
            let mut s = KeyedState::new(usize::MAX);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (op, k, v) in ops {
                let key = vec![b'k', k];
                match op {
                    0 | 1 => { s.put(key.clone(), v.clone()).unwrap(); model.insert(key, v); }
                    _ => { s.delete(&key); model.remove(&key); }
                }
            }
            for (k, v) in &model {
                prop_assert_eq!(s.get(k), Some(&v[..]));
            }
            prop_assert_eq!(s.len(), model.len());
            let (start, end) = (vec![b'k', lo], vec![b'k', hi]);
            let got = s.scan(&start, Some(&end), 5);
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().filter(|(k, _)| **k >= start && **k < end).take(5).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
            let back = KeyedState::decode(&s.encode(), usize::MAX).unwrap();
            prop_assert_eq!(back.map, s.map);
            prop_assert_eq!(back.bytes, s.bytes);
        }
    }
}
