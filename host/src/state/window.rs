//! Windows by event time, kept by the host for an aggregator plugin.
//!
//! Each event goes into the windows its timestamp falls in (tumbling, hopping) or into its
//! key's session (sessions closer than the gap merge). A window is a *pane*: a key, bounds and
//! the plugin's accumulator. The watermark is the largest event time seen minus the allowed
//! out-of-orderness; a pane fires (its result is emitted) once the watermark reaches its end,
//! and is dropped once the watermark passes its end plus the allowed lateness. An event that
//! arrives for a fired pane that is not yet dropped updates it, and the pane fires again (an
//! update). An event whose every window is already dropped is late: it goes to the side
//! output.
//!
//! Processing is defined row by row, so the results do not depend on how input is batched; the
//! plugin is still called once per batch for the adds, except where a pane must fire or merge
//! part-way (then the adds so far are flushed first).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Reader, put_bytes, put_u64};
use crate::event::{self, Batch, BatchBuilder, Columns};
use crate::runtime::CallError;

/// How events are grouped into windows (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// Back-to-back windows of `size`, aligned to the epoch.
    Tumbling {
        /// Length.
        size: i64,
    },
    /// Windows of `size` starting every `slide` (each event is in `size / slide` of them).
    Hopping {
        /// Length.
        size: i64,
        /// Distance between starts.
        slide: i64,
    },
    /// Per key, events closer than `gap` to each other share a window.
    Session {
        /// Inactivity that closes a session.
        gap: i64,
    },
}

/// Windows and their watermark settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windowing {
    /// The windows.
    pub spec: WindowSpec,
    /// The watermark trails the largest event time by this much.
    pub out_of_orderness: i64,
    /// A fired window keeps taking (and re-firing for) events this long after the watermark
    /// passed its end.
    pub allowed_lateness: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pane {
    key: Option<Vec<u8>>,
    start: i64,
    end: i64,
    acc: Vec<u8>,
    /// Times it fired.
    fires: u32,
}

/// The panes of one stage instance and its watermark; saved in the stage's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    panes: BTreeMap<u64, Pane>,
    /// Per key: start → pane.
    by_key: HashMap<Vec<u8>, BTreeMap<i64, u64>>,
    /// The same for events without a key.
    unkeyed: BTreeMap<i64, u64>,
    /// Panes that have not fired, by end.
    unfired: BTreeSet<(i64, u64)>,
    /// Every pane, by end (for dropping them).
    alive: BTreeSet<(i64, u64)>,
    max_ts: Option<i64>,
    next_id: u64,
}

/// A window result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The input row after which it fired (the batch's last row for a final flush).
    pub row: u32,
    /// The window's key.
    pub key: Option<Vec<u8>>,
    /// Bounds.
    pub start: i64,
    /// Bounds (exclusive).
    pub end: i64,
    /// The plugin's `finish` result.
    pub value: Vec<u8>,
    /// 1 for the first result of the window, 2 and on for updates by late events.
    pub fire: u32,
}

/// A window whose result is due: key, start, end, accumulator.
pub type DuePane<'a> = (Option<&'a [u8]>, i64, i64, &'a [u8]);

/// What the host needs of an aggregator plugin.
pub trait Aggregate {
    /// A `fatal` error of this plugin with `message` (a broken contract: the stage stops).
    fn fatal(&self, message: String) -> CallError;
    /// The empty accumulator.
    fn empty(&mut self) -> Vec<u8>;
    /// Adds row `i` of `input` into `accs[slots[i]]`; returns the accumulators and the failed
    /// rows (which leave their accumulator as it was).
    #[expect(clippy::type_complexity, reason = "accumulators and failed rows")]
    fn add(
        &mut self,
        accs: Vec<Vec<u8>>,
        input: &Batch,
        slots: &[u32],
    ) -> Result<(Vec<Vec<u8>>, Vec<(u32, CallError)>), CallError>;
    /// `a` and `b` merged; `None` when the plugin cannot merge.
    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, CallError>;
    /// The result of each pane: (key, start, end, accumulator).
    fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, CallError>;
}

/// What a batch gave.
#[derive(Debug, Default)]
pub struct WindowOutput {
    /// Window results, in the order they fired.
    pub fired: Vec<Fired>,
    /// Input rows too late for every window they belong to.
    pub late: Vec<u32>,
    /// Input rows the plugin failed on (each once).
    pub failures: Vec<(u32, CallError)>,
}

/// Adds waiting to be sent to the plugin in one call.
#[derive(Default)]
struct Segment {
    rows: Vec<u32>,
    slots: Vec<u32>,
    panes: Vec<u64>,
    slot_of: HashMap<u64, u32>,
}

impl Segment {
    fn push(&mut self, row: u32, pane: u64) {
        let next = self.panes.len() as u32;
        let slot = *self.slot_of.entry(pane).or_insert(next);
        if slot == next {
            self.panes.push(pane);
        }
        self.rows.push(row);
        self.slots.push(slot);
    }
}

fn tumbling_start(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

impl WindowState {
    /// Panes held.
    pub fn len(&self) -> usize {
        self.panes.len()
    }

    /// True when no pane is held.
    pub fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }

    /// Bytes of accumulators and keys held.
    pub fn bytes(&self) -> usize {
        self.panes
            .values()
            .map(|p| p.acc.len() + p.key.as_ref().map_or(0, Vec::len) + 64)
            .sum()
    }

    /// The watermark: the largest event time seen minus the out-of-orderness.
    pub fn watermark(&self, w: &Windowing) -> i64 {
        self.max_ts
            .map_or(i64::MIN, |t| t.saturating_sub(w.out_of_orderness))
    }

    /// The panes of a key, by start.
    fn of_key(&self, key: Option<&[u8]>) -> Option<&BTreeMap<i64, u64>> {
        match key {
            Some(k) => self.by_key.get(k),
            None => Some(&self.unkeyed),
        }
    }

    fn of_key_mut(&mut self, key: Option<&[u8]>) -> &mut BTreeMap<i64, u64> {
        match key {
            Some(k) => {
                if !self.by_key.contains_key(k) {
                    self.by_key.insert(k.to_vec(), BTreeMap::new());
                }
                self.by_key.get_mut(k).expect("inserted")
            }
            None => &mut self.unkeyed,
        }
    }

    fn insert(&mut self, pane: Pane) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let start = pane.start;
        self.of_key_mut(pane.key.as_deref()).insert(start, id);
        if pane.fires == 0 {
            self.unfired.insert((pane.end, id));
        }
        self.alive.insert((pane.end, id));
        self.panes.insert(id, pane);
        id
    }

    fn remove(&mut self, id: u64) -> Pane {
        let pane = self.panes.remove(&id).expect("pane exists");
        match &pane.key {
            Some(k) => {
                if let Some(m) = self.by_key.get_mut(k.as_slice()) {
                    m.remove(&pane.start);
                    if m.is_empty() {
                        self.by_key.remove(k.as_slice());
                    }
                }
            }
            None => {
                self.unkeyed.remove(&pane.start);
            }
        }
        self.unfired.remove(&(pane.end, id));
        self.alive.remove(&(pane.end, id));
        pane
    }

    /// Moves a pane to new bounds.
    fn reshape(&mut self, id: u64, start: i64, end: i64) {
        let pane = self.panes.get_mut(&id).expect("pane exists");
        let keyed = match &pane.key {
            Some(k) => self.by_key.get_mut(k.as_slice()).expect("indexed"),
            None => &mut self.unkeyed,
        };
        keyed.remove(&pane.start);
        keyed.insert(start, id);
        if self.unfired.remove(&(pane.end, id)) {
            self.unfired.insert((end, id));
        }
        self.alive.remove(&(pane.end, id));
        self.alive.insert((end, id));
        pane.start = start;
        pane.end = end;
    }

    fn find_or_create(&mut self, key: Option<&[u8]>, start: i64, end: i64, empty: &[u8]) -> u64 {
        if let Some(&id) = self.of_key(key).and_then(|m| m.get(&start)) {
            return id;
        }
        self.insert(Pane {
            key: key.map(<[u8]>::to_vec),
            start,
            end,
            acc: empty.to_vec(),
            fires: 0,
        })
    }

    /// Runs a batch through the windows. `Err` only for a plugin error that stops the stage
    /// (`fatal`); other failures are per row.
    pub fn process(
        &mut self,
        w: &Windowing,
        plugin: &mut dyn Aggregate,
        input: &Batch,
        cols: &Columns<'_>,
    ) -> Result<WindowOutput, CallError> {
        let mut out = WindowOutput::default();
        let mut seg = Segment::default();
        let mut refire: BTreeSet<u64> = BTreeSet::new();
        let empty = plugin.empty();
        let lateness = w.allowed_lateness;
        let expired = |end: i64, wm: i64| end.saturating_add(lateness) <= wm;
        let mut panes: Vec<u64> = Vec::with_capacity(4);
        for (i, row) in cols.rows().enumerate() {
            let i = i as u32;
            let ts = row.timestamp;
            let wm = self.watermark(w);
            panes.clear();
            match w.spec {
                WindowSpec::Tumbling { size } => {
                    let start = tumbling_start(ts, size);
                    if !expired(start.saturating_add(size), wm) {
                        panes.push(self.find_or_create(row.key, start, start + size, &empty));
                    }
                }
                WindowSpec::Hopping { size, slide } => {
                    let mut start = tumbling_start(ts, slide);
                    while start > ts.saturating_sub(size) {
                        if !expired(start.saturating_add(size), wm) {
                            panes.push(self.find_or_create(row.key, start, start + size, &empty));
                        }
                        start -= slide;
                    }
                }
                WindowSpec::Session { gap } => {
                    match self.session(w, plugin, &mut seg, &mut out, row.key, ts, gap, i, input)? {
                        Some(id) => panes.push(id),
                        None if out.failures.last().is_some_and(|(r, _)| *r == i) => continue,
                        None => {}
                    }
                }
            }
            if panes.is_empty() {
                out.late.push(i);
                continue;
            }
            for &id in &panes {
                seg.push(i, id);
                if self.panes[&id].fires > 0 {
                    refire.insert(id);
                }
            }
            self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
            let wm = self.watermark(w);
            let cut = wm.saturating_sub(lateness).saturating_add(1);
            let nothing_due = refire.is_empty()
                && self.unfired.first().is_none_or(|&(end, _)| end > wm)
                && self.alive.first().is_none_or(|&(end, _)| end >= cut);
            if nothing_due {
                continue;
            }
            let due: Vec<u64> = self
                .unfired
                .range(..(wm.saturating_add(1), 0))
                .map(|&(_, id)| id)
                .chain(refire.iter().copied())
                .filter(|id| self.panes.contains_key(id))
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            let drop: Vec<u64> = self
                .alive
                .range(..(wm.saturating_sub(lateness).saturating_add(1), 0))
                .map(|&(_, id)| id)
                .collect();
            if !due.is_empty() {
                self.flush(plugin, &mut seg, &mut out, input)?;
                self.fire(plugin, &due, i, &mut out)?;
                refire.clear();
            }
            for id in drop {
                self.remove(id);
            }
        }
        self.flush(plugin, &mut seg, &mut out, input)?;
        let mut seen = BTreeSet::new();
        out.failures.retain(|(r, _)| seen.insert(*r));
        out.failures.sort_by_key(|(r, _)| *r);
        Ok(out)
    }

    /// Fires every pane that has not fired (or has updates), and drops them all: the end of a
    /// bounded input, where the watermark goes to the end of time.
    pub fn close_all(&mut self, plugin: &mut dyn Aggregate) -> Result<Vec<Fired>, CallError> {
        let mut out = WindowOutput::default();
        let due: Vec<u64> = self.unfired.iter().map(|&(_, id)| id).collect();
        self.fire(plugin, &due, 0, &mut out)?;
        let ids: Vec<u64> = self.panes.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        Ok(out.fired)
    }

    /// The session pane of an event (merging sessions it bridges); `None` when it is late or
    /// failed (a failure is pushed to `out`).
    #[expect(clippy::too_many_arguments, reason = "the batch's working state")]
    fn session(
        &mut self,
        w: &Windowing,
        plugin: &mut dyn Aggregate,
        seg: &mut Segment,
        out: &mut WindowOutput,
        key: Option<&[u8]>,
        ts: i64,
        gap: i64,
        row: u32,
        input: &Batch,
    ) -> Result<Option<u64>, CallError> {
        let end = ts.saturating_add(gap);
        let touching: Vec<u64> = match self.of_key(key) {
            Some(m) => m
                .range(..end)
                .rev()
                .map(|(_, &id)| id)
                .take_while(|id| self.panes[id].end > ts)
                .collect(),
            None => Vec::new(),
        };
        match touching.as_slice() {
            [] => {
                if end.saturating_add(w.allowed_lateness) <= self.watermark(w) {
                    return Ok(None);
                }
                let empty = plugin.empty();
                Ok(Some(self.insert(Pane {
                    key: key.map(<[u8]>::to_vec),
                    start: ts,
                    end,
                    acc: empty,
                    fires: 0,
                })))
            }
            [id] => {
                let p = &self.panes[id];
                let (start, new_end) = (p.start.min(ts), p.end.max(end));
                self.reshape(*id, start, new_end);
                Ok(Some(*id))
            }
            many => {
                self.flush(plugin, seg, out, input)?;
                let mut acc = self.panes[&many[0]].acc.clone();
                for id in &many[1..] {
                    match plugin.merge(&acc, &self.panes[id].acc) {
                        Ok(Some(m)) => acc = m,
                        Ok(None) => {
                            return Err(plugin.fatal(
                                "the aggregator cannot merge (its `merge` returns none), so it cannot run session windows; use tumbling or hopping windows, or give it a merge".into(),
                            ));
                        }
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            out.failures.push((row, e));
                            return Ok(None);
                        }
                    }
                }
                let start = many
                    .iter()
                    .map(|id| self.panes[id].start)
                    .min()
                    .expect("many");
                let new_end = many
                    .iter()
                    .map(|id| self.panes[id].end)
                    .max()
                    .expect("many");
                let fires = many
                    .iter()
                    .map(|id| self.panes[id].fires)
                    .max()
                    .expect("many");
                for id in many {
                    self.remove(*id);
                }
                Ok(Some(self.insert(Pane {
                    key: key.map(<[u8]>::to_vec),
                    start: start.min(ts),
                    end: new_end.max(end),
                    acc,
                    fires,
                })))
            }
        }
    }

    /// Sends the adds so far to the plugin. A call that fails as a whole is retried row by
    /// row, so only the rows that fail are lost to their windows.
    fn flush(
        &mut self,
        plugin: &mut dyn Aggregate,
        seg: &mut Segment,
        out: &mut WindowOutput,
        input: &Batch,
    ) -> Result<(), CallError> {
        if seg.rows.is_empty() {
            return Ok(());
        }
        let seg = std::mem::take(seg);
        let whole = seg.rows.len() == input.timestamps.len()
            && seg.rows.iter().enumerate().all(|(i, &r)| r as usize == i);
        let built;
        let batch = if whole {
            input
        } else {
            built = rows_of(input, &seg.rows);
            &built
        };
        let accs: Vec<Vec<u8>> = seg
            .panes
            .iter()
            .map(|id| std::mem::take(&mut self.panes.get_mut(id).expect("pane").acc))
            .collect();
        let saved = accs.clone();
        match plugin.add(accs, batch, &seg.slots) {
            Ok((accs, failures)) if accs.len() == seg.panes.len() => {
                for (id, acc) in seg.panes.iter().zip(accs) {
                    self.panes.get_mut(id).expect("pane").acc = acc;
                }
                out.failures.extend(
                    failures
                        .into_iter()
                        .map(|(r, e)| (seg.rows.get(r as usize).copied().unwrap_or(0), e)),
                );
                Ok(())
            }
            Ok((accs, _)) => {
                for (id, acc) in seg.panes.iter().zip(saved) {
                    self.panes.get_mut(id).expect("pane").acc = acc;
                }
                Err(plugin.fatal(format!(
                    "the aggregator's add returned {} accumulators for {} passed in",
                    accs.len(),
                    seg.panes.len()
                )))
            }
            Err(e) if e.is_fatal() => Err(e),
            Err(_) => {
                for (id, acc) in seg.panes.iter().zip(saved) {
                    self.panes.get_mut(id).expect("pane").acc = acc;
                }
                for (r, slot) in seg.rows.iter().zip(&seg.slots) {
                    let id = seg.panes[*slot as usize];
                    let acc = self.panes[&id].acc.clone();
                    let one = rows_of(input, &[*r]);
                    match plugin.add(vec![acc], &one, &[0]) {
                        Ok((mut accs, failures)) if accs.len() == 1 => {
                            if let Some((_, e)) = failures.into_iter().next() {
                                out.failures.push((*r, e));
                            } else {
                                self.panes.get_mut(&id).expect("pane").acc =
                                    accs.pop().expect("one");
                            }
                        }
                        Ok(_) => {}
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => out.failures.push((*r, e)),
                    }
                }
                Ok(())
            }
        }
    }

    fn fire(
        &mut self,
        plugin: &mut dyn Aggregate,
        ids: &[u64],
        row: u32,
        out: &mut WindowOutput,
    ) -> Result<(), CallError> {
        if ids.is_empty() {
            return Ok(());
        }
        let panes: Vec<DuePane<'_>> = ids
            .iter()
            .map(|id| {
                let p = &self.panes[id];
                (p.key.as_deref(), p.start, p.end, &p.acc[..])
            })
            .collect();
        let values = match plugin.finish(&panes) {
            Ok(v) if v.len() == ids.len() => v,
            Ok(v) => {
                return Err(plugin.fatal(format!(
                    "the aggregator's finish returned {} results for {} windows",
                    v.len(),
                    ids.len()
                )));
            }
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, windows = ids.len(), "finishing windows failed; their results are lost");
                out.failures.push((row, e));
                for id in ids {
                    self.mark_fired(*id);
                }
                return Ok(());
            }
        };
        for (id, value) in ids.iter().zip(values) {
            self.mark_fired(*id);
            let p = &self.panes[id];
            out.fired.push(Fired {
                row,
                key: p.key.clone(),
                start: p.start,
                end: p.end,
                value,
                fire: p.fires,
            });
        }
        Ok(())
    }

    fn mark_fired(&mut self, id: u64) {
        let p = self.panes.get_mut(&id).expect("pane");
        p.fires += 1;
        self.unfired.remove(&(p.end, id));
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self.max_ts {
            Some(t) => {
                out.push(1);
                put_u64(out, t as u64);
            }
            None => out.push(0),
        }
        put_u64(out, self.next_id);
        put_u64(out, self.panes.len() as u64);
        for (id, p) in &self.panes {
            put_u64(out, *id);
            match &p.key {
                Some(k) => {
                    out.push(1);
                    put_bytes(out, k);
                }
                None => out.push(0),
            }
            put_u64(out, p.start as u64);
            put_u64(out, p.end as u64);
            put_bytes(out, &p.acc);
            put_u64(out, u64::from(p.fires));
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<WindowState, String> {
        let max_ts = match r.u8()? {
            0 => None,
            _ => Some(r.u64()? as i64),
        };
        let next_id = r.u64()?;
        let n = r.u64()?;
        let mut s = WindowState {
            max_ts,
            ..WindowState::default()
        };
        for _ in 0..n {
            let id = r.u64()?;
            let key = match r.u8()? {
                0 => None,
                _ => Some(r.bytes()?.to_vec()),
            };
            let start = r.u64()? as i64;
            let end = r.u64()? as i64;
            let acc = r.bytes()?.to_vec();
            let fires = u32::try_from(r.u64()?).map_err(|_| "bad fire count".to_owned())?;
            s.next_id = id;
            s.insert(Pane {
                key,
                start,
                end,
                acc,
                fires,
            });
        }
        s.next_id = next_id;
        Ok(s)
    }
}

/// A batch of the given rows of `input` (a row may repeat).
fn rows_of(input: &Batch, rows: &[u32]) -> Batch {
    let cols = event::columns(input).expect("the log checked the batch");
    let mut b = BatchBuilder::with_capacity(rows.len(), 64 * rows.len());
    for &r in rows {
        let row = cols.row(r as usize);
        b.push(row.key, row.value, row.timestamp, row.headers.iter());
    }
    event::finish(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// Sums decimal values; accumulators are decimal text.
    struct Sum;

    impl Aggregate for Sum {
        fn fatal(&self, message: String) -> CallError {
            CallError {
                plugin: "sum".into(),
                kind: crate::runtime::CallErrorKind::Plugin(crate::runtime::PluginError::Fatal(
                    message,
                )),
                stderr: String::new(),
            }
        }
        fn empty(&mut self) -> Vec<u8> {
            b"0".to_vec()
        }
        fn add(
            &mut self,
            mut accs: Vec<Vec<u8>>,
            input: &Batch,
            slots: &[u32],
        ) -> Result<(Vec<Vec<u8>>, Vec<(u32, CallError)>), CallError> {
            let cols = event::columns(input).unwrap();
            for (row, &slot) in cols.rows().zip(slots) {
                let n: i64 = std::str::from_utf8(row.value).unwrap().parse().unwrap();
                let a: i64 = std::str::from_utf8(&accs[slot as usize])
                    .unwrap()
                    .parse()
                    .unwrap();
                accs[slot as usize] = (a + n).to_string().into_bytes();
            }
            Ok((accs, Vec::new()))
        }
        fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
            let p = |x: &[u8]| std::str::from_utf8(x).unwrap().parse::<i64>().unwrap();
            Ok(Some((p(a) + p(b)).to_string().into_bytes()))
        }
        fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, CallError> {
            Ok(panes.iter().map(|p| p.3.to_vec()).collect())
        }
    }

    fn batch(rows: &[(&str, i64, i64)]) -> Batch {
        let events: Vec<Event> = rows
            .iter()
            .map(|(k, ts, v)| Event {
                key: Some(k.as_bytes().to_vec()),
                value: v.to_string().into_bytes(),
                timestamp: *ts,
                headers: Vec::new(),
            })
            .collect();
        event::batch_of(&events)
    }

    fn run(w: &Windowing, rows: &[(&str, i64, i64)], split: usize) -> (Vec<Fired>, Vec<i64>) {
        let mut s = WindowState::default();
        let mut fired = Vec::new();
        let mut late = Vec::new();
        for chunk in rows.chunks(split) {
            let b = batch(chunk);
            let cols = event::columns(&b).unwrap();
            let out = s.process(w, &mut Sum, &b, &cols).unwrap();
            fired.extend(out.fired.into_iter().map(|f| Fired { row: 0, ..f }));
            late.extend(out.late.iter().map(|&r| chunk[r as usize].1));
            // A snapshot in between changes nothing.
            let mut bytes = Vec::new();
            s.encode(&mut bytes);
            let back = WindowState::decode(&mut Reader(&bytes)).unwrap();
            assert_eq!(back, s);
        }
        fired.extend(s.close_all(&mut Sum).unwrap());
        (fired, late)
    }

    #[test]
    fn tumbling_windows_fire_at_the_watermark_and_late_events_go_aside() {
        let w = Windowing {
            spec: WindowSpec::Tumbling { size: 10 },
            out_of_orderness: 5,
            allowed_lateness: 0,
        };
        let rows = [
            ("a", 1, 1),
            ("a", 12, 2),
            ("a", 8, 4),   // out of order, within 5: counted in [0,10)
            ("a", 16, 8),  // watermark 11: [0,10) fires with 5
            ("a", 3, 16),  // late: [0,10) is gone
            ("b", 25, 32), // watermark 20: [10,20) of a fires with 10
        ];
        for split in [1, 2, 6] {
            let (fired, late) = run(&w, &rows, split);
            let got: Vec<(&[u8], i64, Vec<u8>, u32)> = fired
                .iter()
                .map(|f| (f.key.as_deref().unwrap(), f.start, f.value.clone(), f.fire))
                .collect();
            assert_eq!(
                got,
                vec![
                    (&b"a"[..], 0, b"5".to_vec(), 1),
                    (&b"a"[..], 10, b"10".to_vec(), 1),
                    (&b"b"[..], 20, b"32".to_vec(), 1),
                ],
                "split {split}"
            );
            assert_eq!(late, [3]);
        }
    }

    #[test]
    fn allowed_lateness_updates_a_fired_window() {
        let w = Windowing {
            spec: WindowSpec::Tumbling { size: 10 },
            out_of_orderness: 0,
            allowed_lateness: 10,
        };
        let (fired, late) = run(
            &w,
            &[
                ("a", 1, 1),
                ("a", 11, 2),
                ("a", 2, 4),
                ("a", 25, 8),
                ("a", 3, 16),
            ],
            5,
        );
        let got: Vec<(i64, Vec<u8>, u32)> = fired
            .iter()
            .map(|f| (f.start, f.value.clone(), f.fire))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, b"1".to_vec(), 1),
                (0, b"5".to_vec(), 2),
                (10, b"2".to_vec(), 1),
                (20, b"8".to_vec(), 1)
            ]
        );
        assert_eq!(late, [3]);
    }

    #[test]
    fn hopping_windows_hold_each_event_size_over_slide_times() {
        let w = Windowing {
            spec: WindowSpec::Hopping { size: 10, slide: 5 },
            out_of_orderness: 0,
            allowed_lateness: 0,
        };
        let (fired, _) = run(&w, &[("a", 7, 1), ("a", 12, 2)], 2);
        let got: Vec<(i64, i64, Vec<u8>)> = fired
            .iter()
            .map(|f| (f.start, f.end, f.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 10, b"1".to_vec()),
                (5, 15, b"3".to_vec()),
                (10, 20, b"2".to_vec())
            ]
        );
    }

    #[test]
    fn sessions_grow_and_merge_when_an_event_bridges_them() {
        let w = Windowing {
            spec: WindowSpec::Session { gap: 10 },
            out_of_orderness: 100,
            allowed_lateness: 0,
        };
        // Sessions [0,10) and [18,28), bridged by an event at 9 ([9,19) overlaps both): one
        // session [0,28). Nothing fires before the end (out-of-orderness 100).
        let (fired, _) = run(
            &w,
            &[("a", 0, 1), ("a", 18, 2), ("a", 9, 4), ("b", 5, 8)],
            1,
        );
        let got: Vec<(&[u8], i64, i64, Vec<u8>)> = fired
            .iter()
            .map(|f| (f.key.as_deref().unwrap(), f.start, f.end, f.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"b"[..], 5, 15, b"8".to_vec()),
                (&b"a"[..], 0, 28, b"7".to_vec())
            ]
        );
    }
}
