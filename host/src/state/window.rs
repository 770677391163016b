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
//! part-way (then the adds so far are flushed first). Sessions flush too where an add that may
//! still fail decides a row's session: an event that reaches a session only through events not
//! yet added (the second event of a session the batch opened, or one past the part of the
//! session added so far), and a session due by its bounds before the waiting events widened it.
//! An event that bridges sessions is added alone, to their merged accumulator, before the
//! sessions are replaced by the merge.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The hasher of the panes' indexes: keys are the events' own, so seeded per process.
type Hasher = foldhash::quality::RandomState;

use super::{Reader, SnapshotError, StateFull, put_bytes, put_u64};
use crate::event::{self, Batch, BatchBuilder, Columns};

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
    /// Every pane by id (ids grow; `encode` writes them in id order).
    panes: HashMap<u64, Pane, Hasher>,
    /// Per key: start → pane.
    by_key: HashMap<Vec<u8>, BTreeMap<i64, u64>, Hasher>,
    /// The same for events without a key.
    unkeyed: BTreeMap<i64, u64>,
    /// Panes that have not fired, by end.
    unfired: BTreeSet<(i64, u64)>,
    /// Every pane, by end (for dropping them).
    alive: BTreeSet<(i64, u64)>,
    max_ts: Option<i64>,
    next_id: u64,
    /// Bytes of the panes (accumulators, keys and a fixed overhead each), kept as they change.
    bytes: usize,
    /// The most bytes the panes may hold (what `max-state-bytes` leaves after the keyed
    /// entries); none: no cap. Set by the stage before each batch; not part of a snapshot.
    pub cap: Option<usize>,
}

/// Bytes a pane counts for.
fn pane_bytes(key: Option<&[u8]>, acc: &[u8]) -> usize {
    acc.len() + key.map_or(0, <[u8]>::len) + 64
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

/// Window results as events: the window's key, the plugin's value, the window's last
/// millisecond as time, and headers giving the bounds and which firing it is.
pub fn fired_batch(fired: &[Fired]) -> (Batch, Vec<u32>) {
    let mut b = BatchBuilder::with_capacity(fired.len(), 64 * fired.len());
    let mut origins = Vec::with_capacity(fired.len());
    for f in fired {
        let (start, end, fire) = (f.start.to_string(), f.end.to_string(), f.fire.to_string());
        b.push(
            f.key.as_deref(),
            &f.value,
            f.end - 1,
            [
                (&b"flowgate-window-start"[..], start.as_bytes()),
                (&b"flowgate-window-end"[..], end.as_bytes()),
                (&b"flowgate-window-fire"[..], fire.as_bytes()),
            ],
        );
        origins.push(f.row);
    }
    (event::finish(b), origins)
}

/// A window whose result is due: key, start, end, accumulator.
pub type DuePane<'a> = (Option<&'a [u8]>, i64, i64, &'a [u8]);

/// A row the windows refuse: the host's finding, not the plugin's (a [`Failure::Refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The row would take the stage's state (keyed entries and window panes) past
    /// `max-state-bytes`.
    StateLimit {
        /// How many bytes, and the cap.
        message: String,
    },
    /// The row's time cannot be placed in a window (a window would end past the largest time).
    EventTime {
        /// The time and why.
        message: String,
    },
}

impl Refusal {
    /// A short name of the kind, for metrics and headers.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Refusal::StateLimit { .. } => "state-limit",
            Refusal::EventTime { .. } => "event-time",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::StateLimit { message } => write!(f, "state limit: {message}"),
            Refusal::EventTime { message } => write!(f, "event time: {message}"),
        }
    }
}

/// Why the windows failed a row: the aggregator's call failed on it, or the windows refused
/// it. `E` is the aggregator's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure<E> {
    /// The aggregator failed on the row (its `add`, `merge` or `finish`).
    Plugin(E),
    /// The windows refused the row.
    Refused(Refusal),
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Plugin(e) => e.fmt(f),
            Failure::Refused(r) => r.fmt(f),
        }
    }
}

/// What the windows need to know of an aggregator's error.
pub trait AggregateError: std::fmt::Display {
    /// True for the plugin's `fatal` error: the stage cannot go on.
    fn is_fatal(&self) -> bool;
}

/// What the host needs of an aggregator plugin. `Error` is the plugin's call error (the
/// runtime's `CallError`): the windows hand it back, they never look into it; a row they
/// refuse themselves is a [`Refusal`], never one of the plugin's errors.
pub trait Aggregate {
    /// A failed call or row.
    type Error: AggregateError;
    /// A `fatal` error of this plugin with `message` (a broken contract: the stage stops).
    fn fatal(&self, message: String) -> Self::Error;
    /// The empty accumulator.
    fn empty(&mut self) -> Vec<u8>;
    /// Adds row `i` of `input` into `accs[slots[i]]`; returns the accumulators and the failed
    /// rows (which leave their accumulator as it was).
    #[expect(clippy::type_complexity, reason = "accumulators and failed rows")]
    fn add(
        &mut self,
        accs: &[Vec<u8>],
        input: &Batch,
        slots: &[u32],
    ) -> Result<(Vec<Vec<u8>>, Vec<(u32, Self::Error)>), Self::Error>;
    /// `a` and `b` merged; `None` when the plugin cannot merge.
    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// The result of each pane: (key, start, end, accumulator).
    fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, Self::Error>;
}

/// What a batch gave; `E` is the aggregator's error.
#[derive(Debug)]
pub struct WindowOutput<E> {
    /// Window results, in the order they fired.
    pub fired: Vec<Fired>,
    /// Input rows too late for every window they belong to.
    pub late: Vec<u32>,
    /// Input rows that failed (each once): the plugin failed on them or the windows refused
    /// them.
    pub failures: Vec<(u32, Failure<E>)>,
}

impl<E> Default for WindowOutput<E> {
    fn default() -> Self {
        WindowOutput {
            fired: Vec::new(),
            late: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// Adds waiting to be sent to the plugin in one call.
#[derive(Default)]
struct Segment {
    rows: Vec<u32>,
    slots: Vec<u32>,
    panes: Vec<u64>,
    slot_of: HashMap<u64, u32, Hasher>,
    /// Panes made in this batch that no row was added to yet: a pane whose every row fails
    /// is removed (it never existed).
    fresh: BTreeSet<u64>,
    /// Panes a row was added to since they last fired (only those fire again as an update).
    added: BTreeSet<u64>,
    /// Session windows: the gap.
    gap: Option<i64>,
    /// Session windows: each pane a row waits to be added to, with its bounds before the
    /// first such row (none: made by one). A row whose add fails must not widen its session,
    /// so the flush shapes a pane with a failed row again from these bounds and the rows that
    /// were added; and a row that touches a pane only through such waiting rows is not put in
    /// it before they are added (see `session`).
    settled: HashMap<u64, Option<(i64, i64)>, Hasher>,
    /// The smallest end of the bounds in `settled`: a session that ends there may be due
    /// though waiting rows widened it.
    settled_end: Option<i64>,
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

/// The start of the window of `size` aligned to the epoch that holds `ts`; none when it would
/// start before the earliest time there is.
fn tumbling_start(ts: i64, size: i64) -> Option<i64> {
    ts.checked_sub(ts.rem_euclid(size))
}

/// The row's event time puts a window bound outside the times there are (an i64 of ms).
fn time_failure<E>(ts: i64, what: &str) -> Failure<E> {
    Failure::Refused(Refusal::EventTime {
        message: format!(
            "event time {ts} ms is too close to an end of the range of times ({} to {} ms): its {what} would not fit in it; fix the event's timestamp",
            i64::MIN,
            i64::MAX
        ),
    })
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

    /// Bytes of accumulators and keys held (with a fixed overhead per pane).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The state-limit failure of a row that would take the panes to `would` bytes.
    fn full<E>(&self, would: usize) -> Failure<E> {
        let full = StateFull {
            would,
            max: self.cap.unwrap_or(usize::MAX),
        };
        Failure::Refused(Refusal::StateLimit {
            message: format!("window panes and accumulators: {full}"),
        })
    }

    /// True when the panes may grow to `would` bytes.
    fn fits(&self, would: usize) -> bool {
        self.cap.is_none_or(|cap| would <= cap)
    }

    /// Takes a pane's accumulator out (to hand it to the plugin).
    fn take_acc(&mut self, id: u64) -> Vec<u8> {
        match self.panes.get_mut(&id) {
            Some(p) => {
                self.bytes -= p.acc.len();
                std::mem::take(&mut p.acc)
            }
            None => Vec::new(),
        }
    }

    /// Puts a pane's accumulator (back).
    fn set_acc(&mut self, id: u64, acc: Vec<u8>) {
        if let Some(p) = self.panes.get_mut(&id) {
            self.bytes = self.bytes - p.acc.len() + acc.len();
            p.acc = acc;
        }
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
        self.bytes += pane_bytes(pane.key.as_deref(), &pane.acc);
        let start = pane.start;
        self.of_key_mut(pane.key.as_deref()).insert(start, id);
        if pane.fires == 0 {
            self.unfired.insert((pane.end, id));
        }
        self.alive.insert((pane.end, id));
        self.panes.insert(id, pane);
        id
    }

    fn remove(&mut self, id: u64) -> Option<Pane> {
        let pane = self.panes.remove(&id)?;
        self.bytes -= pane_bytes(pane.key.as_deref(), &pane.acc);
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
        Some(pane)
    }

    /// Moves a pane to new bounds.
    fn reshape(&mut self, id: u64, start: i64, end: i64) {
        let Some(pane) = self.panes.get_mut(&id) else {
            return;
        };
        let keyed = match &pane.key {
            Some(k) => match self.by_key.get_mut(k.as_slice()) {
                Some(m) => m,
                None => return,
            },
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

    /// The pane of `key` starting at `start`, if there is one.
    fn find(&self, key: Option<&[u8]>, start: i64) -> Option<u64> {
        self.of_key(key).and_then(|m| m.get(&start)).copied()
    }

    /// A new pane of `key` from `start` to `end`, made in this batch.
    fn create(
        &mut self,
        key: Option<&[u8]>,
        start: i64,
        end: i64,
        empty: &[u8],
        seg: &mut Segment,
    ) -> u64 {
        let id = self.insert(Pane {
            key: key.map(<[u8]>::to_vec),
            start,
            end,
            acc: empty.to_vec(),
            fires: 0,
        });
        seg.fresh.insert(id);
        id
    }

    /// Runs a batch through the windows. `Err` only for a plugin error that stops the stage
    /// (`fatal`); other failures are per row.
    pub fn process<E: AggregateError>(
        &mut self,
        w: &Windowing,
        plugin: &mut dyn Aggregate<Error = E>,
        input: &Batch,
        cols: &Columns<'_>,
    ) -> Result<WindowOutput<E>, E> {
        let mut out = WindowOutput::default();
        let mut seg = Segment {
            gap: match w.spec {
                WindowSpec::Session { gap } => Some(gap),
                _ => None,
            },
            ..Segment::default()
        };
        let mut refire: BTreeSet<u64> = BTreeSet::new();
        let empty = plugin.empty();
        let lateness = w.allowed_lateness;
        let expired = |end: i64, wm: i64| end.saturating_add(lateness) <= wm;
        let mut panes: Vec<u64> = Vec::with_capacity(4);
        let mut bounds: Vec<(i64, i64)> = Vec::with_capacity(4);
        let mut found: Vec<Option<u64>> = Vec::with_capacity(4);
        for (i, row) in cols.rows().enumerate() {
            let i = i as u32;
            let ts = row.timestamp;
            let wm = self.watermark(w);
            panes.clear();
            bounds.clear();
            // The windows of the row: (start, end) for tumbling and hopping windows. A window
            // that would end past the largest time refuses the row.
            let mut refused = None;
            match w.spec {
                WindowSpec::Tumbling { size } => {
                    match tumbling_start(ts, size).and_then(|s| Some((s, s.checked_add(size)?))) {
                        Some((start, end)) if !expired(end, wm) => bounds.push((start, end)),
                        Some(_) => {}
                        None => refused = Some(time_failure(ts, "window")),
                    }
                }
                WindowSpec::Hopping { size, slide } => {
                    let Some(mut start) = tumbling_start(ts, slide) else {
                        out.failures.push((i, time_failure(ts, "window")));
                        continue;
                    };
                    while start > ts.saturating_sub(size) {
                        match start.checked_add(size) {
                            Some(end) if !expired(end, wm) => bounds.push((start, end)),
                            Some(_) => {}
                            None => {
                                refused = Some(time_failure(ts, "window"));
                                break;
                            }
                        }
                        let Some(next) = start.checked_sub(slide) else {
                            break;
                        };
                        start = next;
                    }
                }
                WindowSpec::Session { gap } => {
                    if ts.checked_add(gap).is_none() {
                        refused = Some(time_failure(ts, "session"));
                    }
                }
            }
            if let Some(e) = refused {
                out.failures.push((i, e));
                continue;
            }
            // A session pane the row went into already (see `session`).
            let mut added_to = None;
            if let WindowSpec::Session { gap } = w.spec {
                match self.session(w, plugin, &mut seg, &mut out, row.key, ts, gap, i, input)? {
                    Some((id, false)) => panes.push(id),
                    Some((id, true)) => {
                        seg.added.insert(id);
                        if self.panes.get(&id).is_some_and(|p| p.fires > 0) {
                            refire.insert(id);
                        }
                        added_to = Some(id);
                    }
                    None => {}
                }
            } else {
                // New panes count against the cap before they are made.
                found.clear();
                found.extend(bounds.iter().map(|&(start, _)| self.find(row.key, start)));
                let new =
                    found.iter().filter(|f| f.is_none()).count() * pane_bytes(row.key, &empty);
                if new > 0 && !self.fits(self.bytes + new) {
                    out.failures.push((i, self.full(self.bytes + new)));
                } else {
                    for (&(start, end), &f) in bounds.iter().zip(&found) {
                        panes.push(match f {
                            Some(id) => id,
                            None => self.create(row.key, start, end, &empty, &mut seg),
                        });
                    }
                }
            }
            let failed = out.failures.last().is_some_and(|(r, _)| *r == i);
            if panes.is_empty() && added_to.is_none() && !failed {
                out.late.push(i);
                continue;
            }
            for &id in &panes {
                seg.push(i, id);
                if self.panes.get(&id).is_some_and(|p| p.fires > 0) {
                    refire.insert(id);
                }
            }
            // A row that failed before reaching a pane still moves event time on.
            self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
            let wm = self.watermark(w);
            let cut = wm.saturating_sub(lateness).saturating_add(1);
            // A session waiting rows widened may be due by the bounds it had before them.
            let settled_due = seg.settled_end.is_some_and(|end| end <= wm);
            let nothing_due = refire.is_empty()
                && !settled_due
                && self.unfired.first().is_none_or(|&(end, _)| end > wm)
                && self.alive.first().is_none_or(|&(end, _)| end >= cut);
            if nothing_due {
                continue;
            }
            let any_due = !refire.is_empty()
                || settled_due
                || self.unfired.first().is_some_and(|&(end, _)| end <= wm);
            if any_due {
                // The adds so far first: a pane whose every row failed is gone after it.
                self.flush(plugin, &mut seg, &mut out, input)?;
                let due: Vec<u64> = self
                    .unfired
                    .range(..(wm.saturating_add(1), 0))
                    .map(|&(_, id)| id)
                    .chain(refire.iter().copied().filter(|id| seg.added.contains(id)))
                    .filter(|id| self.panes.contains_key(id))
                    .collect::<BTreeSet<u64>>()
                    .into_iter()
                    .collect();
                self.fire(plugin, &due, i, &mut out)?;
                refire.clear();
                seg.added.clear();
            }
            let drop: Vec<u64> = self.alive.range(..(cut, 0)).map(|&(_, id)| id).collect();
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
    pub fn close_all<E: AggregateError>(
        &mut self,
        plugin: &mut dyn Aggregate<Error = E>,
    ) -> Result<Vec<Fired>, E> {
        let mut out = WindowOutput::default();
        let due: Vec<u64> = self.unfired.iter().map(|&(_, id)| id).collect();
        self.fire(plugin, &due, 0, &mut out)?;
        let ids: Vec<u64> = self.panes.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        Ok(out.fired)
    }

    /// The session pane of an event (merging sessions it bridges), and whether the event is
    /// in its accumulator already (it is when it bridged sessions: it was added alone, so
    /// that a failed add leaves the sessions apart); `None` when it is late or failed (a
    /// failure is pushed to `out`).
    #[expect(clippy::too_many_arguments, reason = "the batch's working state")]
    fn session<E: AggregateError>(
        &mut self,
        w: &Windowing,
        plugin: &mut dyn Aggregate<Error = E>,
        seg: &mut Segment,
        out: &mut WindowOutput<E>,
        key: Option<&[u8]>,
        ts: i64,
        gap: i64,
        row: u32,
        input: &Batch,
    ) -> Result<Option<(u64, bool)>, E> {
        let end = ts.saturating_add(gap);
        let touching = |s: &WindowState| -> Vec<u64> {
            match s.of_key(key) {
                Some(m) => m
                    .range(..end)
                    .rev()
                    .map(|(_, &id)| id)
                    .take_while(|id| s.panes.get(id).is_some_and(|p| p.end > ts))
                    .collect(),
                None => Vec::new(),
            }
        };
        let mut found = touching(self);
        // Whether the event reaches a pane only through rows still waiting to be added (a pane
        // made by one, or the part a waiting row widened it by): if one of those fails, the
        // pane will not reach the event.
        let through_waiting = |found: &[u64], seg: &Segment| {
            found.iter().any(|id| match seg.settled.get(id) {
                None => false,
                Some(None) => true,
                Some(Some((s, e))) => !(*s < end && *e > ts),
            })
        };
        if found.len() > 1 || through_waiting(&found, seg) {
            // The adds so far go in before accumulators merge or the event joins on their
            // account; a pane whose every row failed is gone after it, and one a failed row
            // widened is shaped again, so the sessions are found again.
            self.flush(plugin, seg, out, input)?;
            found = touching(self);
        }
        match found.as_slice() {
            [] => {
                if end.saturating_add(w.allowed_lateness) <= self.watermark(w) {
                    return Ok(None);
                }
                let empty = plugin.empty();
                let would = self.bytes + pane_bytes(key, &empty);
                if !self.fits(would) {
                    out.failures.push((row, self.full(would)));
                    return Ok(None);
                }
                let id = self.insert(Pane {
                    key: key.map(<[u8]>::to_vec),
                    start: ts,
                    end,
                    acc: empty,
                    fires: 0,
                });
                seg.fresh.insert(id);
                seg.settled.insert(id, None);
                Ok(Some((id, false)))
            }
            [id] => {
                let Some(p) = self.panes.get(id) else {
                    return Ok(None);
                };
                let (start, new_end) = (p.start.min(ts), p.end.max(end));
                if !seg.settled.contains_key(id) {
                    seg.settled.insert(*id, Some((p.start, p.end)));
                    seg.settled_end = Some(seg.settled_end.map_or(p.end, |e| e.min(p.end)));
                }
                self.reshape(*id, start, new_end);
                Ok(Some((*id, false)))
            }
            many => {
                let panes: Vec<&Pane> = many.iter().filter_map(|id| self.panes.get(id)).collect();
                let (Some(first), Some(start), Some(new_end), Some(fires)) = (
                    panes.first(),
                    panes.iter().map(|p| p.start).min(),
                    panes.iter().map(|p| p.end).max(),
                    panes.iter().map(|p| p.fires).max(),
                ) else {
                    return Ok(None);
                };
                let mut acc = first.acc.clone();
                let rest: Vec<Vec<u8>> = panes[1..].iter().map(|p| p.acc.clone()).collect();
                for other in &rest {
                    match plugin.merge(&acc, other) {
                        Ok(Some(m)) => acc = m,
                        Ok(None) => {
                            return Err(plugin.fatal(
                                "the aggregator cannot merge (its `merge` returns none), so it cannot run session windows; use tumbling or hopping windows, or give it a merge".into(),
                            ));
                        }
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            out.failures.push((row, Failure::Plugin(e)));
                            return Ok(None);
                        }
                    }
                }
                // The bridging event is added now, alone: if it fails, the sessions stay apart.
                let acc = match add_one(plugin, acc, input, row)? {
                    Ok(acc) => acc,
                    Err(e) => {
                        out.failures.push((row, Failure::Plugin(e)));
                        return Ok(None);
                    }
                };
                let freed: usize = many
                    .iter()
                    .filter_map(|id| self.panes.get(id))
                    .map(|p| pane_bytes(p.key.as_deref(), &p.acc))
                    .sum();
                let would = self.bytes - freed + pane_bytes(key, &acc);
                if would > self.bytes && !self.fits(would) {
                    out.failures.push((row, self.full(would)));
                    return Ok(None);
                }
                for id in many {
                    self.remove(*id);
                }
                let id = self.insert(Pane {
                    key: key.map(<[u8]>::to_vec),
                    start: start.min(ts),
                    end: new_end.max(end),
                    acc,
                    fires,
                });
                Ok(Some((id, true)))
            }
        }
    }

    /// Sends the adds so far to the plugin. A call that fails as a whole, or whose
    /// accumulators would pass the cap, is retried row by row, so only the rows that fail are
    /// lost to their windows. A pane made in this batch that no row went into is removed.
    fn flush<E: AggregateError>(
        &mut self,
        plugin: &mut dyn Aggregate<Error = E>,
        seg: &mut Segment,
        out: &mut WindowOutput<E>,
        input: &Batch,
    ) -> Result<(), E> {
        if seg.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut seg.rows);
        let slots = std::mem::take(&mut seg.slots);
        let ids = std::mem::take(&mut seg.panes);
        seg.slot_of.clear();
        let whole = rows.len() == input.timestamps.len()
            && rows.iter().enumerate().all(|(i, &r)| r as usize == i);
        let built;
        let batch = if whole {
            input
        } else {
            built = rows_of(input, &rows);
            &built
        };
        // Taken out, lent to the plugin, and put back unless its new ones replace them.
        let saved: Vec<Vec<u8>> = ids.iter().map(|&id| self.take_acc(id)).collect();
        let before = self.bytes;
        // Rows (by index into `rows`) that were added.
        let mut added = vec![false; rows.len()];
        let row_by_row = match plugin.add(&saved, batch, &slots) {
            Ok((accs, failures))
                if accs.len() == ids.len()
                    && failures.iter().all(|(r, _)| (*r as usize) < rows.len()) =>
            {
                let grown: usize = accs.iter().map(Vec::len).sum();
                if self.fits(before + grown) {
                    for (&id, acc) in ids.iter().zip(accs) {
                        self.set_acc(id, acc);
                    }
                    added.iter_mut().for_each(|a| *a = true);
                    for (r, e) in failures {
                        if let Some(a) = added.get_mut(r as usize) {
                            *a = false;
                        }
                        out.failures.push((rows[r as usize], Failure::Plugin(e)));
                    }
                    false
                } else {
                    true
                }
            }
            Ok((accs, failures)) => {
                for (&id, acc) in ids.iter().zip(saved) {
                    self.set_acc(id, acc);
                }
                return Err(plugin.fatal(
                    match failures.iter().find(|(r, _)| *r as usize >= rows.len()) {
                        Some((r, _)) => format!(
                            "the aggregator's add named row {r} as failed, of {} passed in",
                            rows.len()
                        ),
                        None => format!(
                            "the aggregator's add returned {} accumulators for {} passed in",
                            accs.len(),
                            ids.len()
                        ),
                    },
                ));
            }
            Err(e) if e.is_fatal() => {
                for (&id, acc) in ids.iter().zip(saved) {
                    self.set_acc(id, acc);
                }
                return Err(e);
            }
            Err(_) => true,
        };
        if row_by_row {
            for (&id, acc) in ids.iter().zip(saved) {
                self.set_acc(id, acc);
            }
            for (j, (r, slot)) in rows.iter().zip(&slots).enumerate() {
                let Some(&id) = ids.get(*slot as usize) else {
                    continue;
                };
                let Some(acc) = self.panes.get(&id).map(|p| p.acc.clone()) else {
                    continue;
                };
                let old = acc.len();
                match add_one(plugin, acc, input, *r)? {
                    Ok(new) => {
                        let would = self.bytes - old + new.len();
                        if new.len() > old && !self.fits(would) {
                            out.failures.push((*r, self.full(would)));
                        } else {
                            self.set_acc(id, new);
                            added[j] = true;
                        }
                    }
                    Err(e) => out.failures.push((*r, Failure::Plugin(e))),
                }
            }
        }
        // A session a failed row widened takes the shape of its rows that were added.
        let settled = std::mem::take(&mut seg.settled);
        seg.settled_end = None;
        if let Some(gap) = seg.gap
            && added.contains(&false)
        {
            let mut shapes: HashMap<u64, Option<(i64, i64)>, Hasher> = HashMap::default();
            for (j, slot) in slots.iter().enumerate() {
                let Some(&id) = ids.get(*slot as usize) else {
                    continue;
                };
                let shape = shapes
                    .entry(id)
                    .or_insert_with(|| settled.get(&id).copied().flatten());
                if added[j] {
                    let ts = input.timestamps[rows[j] as usize];
                    let end = ts.saturating_add(gap);
                    *shape = Some(shape.map_or((ts, end), |(s, e)| (s.min(ts), e.max(end))));
                }
            }
            for (id, shape) in shapes {
                // A pane no row went into is removed below.
                if let Some((start, end)) = shape
                    && self
                        .panes
                        .get(&id)
                        .is_some_and(|p| (p.start, p.end) != (start, end))
                {
                    self.reshape(id, start, end);
                }
            }
        }
        for (j, slot) in slots.iter().enumerate() {
            if added[j]
                && let Some(&id) = ids.get(*slot as usize)
            {
                seg.fresh.remove(&id);
                seg.added.insert(id);
            }
        }
        // A pane made in this batch whose every row failed never existed.
        for id in &ids {
            if seg.fresh.remove(id) {
                self.remove(*id);
            }
        }
        Ok(())
    }

    fn fire<E: AggregateError>(
        &mut self,
        plugin: &mut dyn Aggregate<Error = E>,
        ids: &[u64],
        row: u32,
        out: &mut WindowOutput<E>,
    ) -> Result<(), E> {
        let mut due: Vec<(u64, &Pane)> = ids
            .iter()
            .filter_map(|id| self.panes.get(id).map(|p| (*id, p)))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        // By end, key and start (unique per pane): not by pane id, which depends on the
        // batching (a pane whose only row failed is removed at once per event, but kept for the
        // next row of a batch).
        due.sort_unstable_by(|(_, a), (_, b)| {
            (a.end, &a.key, a.start).cmp(&(b.end, &b.key, b.start))
        });
        let ids: Vec<u64> = due.iter().map(|(id, _)| *id).collect();
        let panes: Vec<DuePane<'_>> = due
            .iter()
            .map(|(_, p)| (p.key.as_deref(), p.start, p.end, &p.acc[..]))
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
                out.failures.push((row, Failure::Plugin(e)));
                for id in ids {
                    self.mark_fired(id);
                }
                return Ok(());
            }
        };
        for (id, value) in ids.iter().zip(values) {
            self.mark_fired(*id);
            let Some(p) = self.panes.get(id) else {
                continue;
            };
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
        if let Some(p) = self.panes.get_mut(&id) {
            p.fires = p.fires.saturating_add(1);
            self.unfired.remove(&(p.end, id));
        }
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
        let mut ids: Vec<u64> = self.panes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let p = &self.panes[&id];
            put_u64(out, id);
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

    /// Reads what [`encode`](Self::encode) wrote, checking every invariant the windows rely
    /// on (ids unique and below the next id, one pane per key and start, starts before ends),
    /// so that a crafted snapshot is refused here rather than trusted later.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<WindowState, SnapshotError> {
        let bad = |m: String| Err(SnapshotError::Inconsistent(m));
        let max_ts = match r.u8("the watermark flag")? {
            0 => None,
            1 => Some(r.u64("the largest event time")? as i64),
            f => return bad(format!("watermark flag {f} is neither 0 nor 1")),
        };
        let next_id = r.u64("the next pane id")?;
        let n = r.u64("the pane count")?;
        let mut s = WindowState {
            max_ts,
            ..WindowState::default()
        };
        let mut last = None;
        for _ in 0..n {
            let id = r.u64("a pane id")?;
            let key = match r.u8("a pane's key flag")? {
                0 => None,
                1 => Some(r.bytes("a pane's key")?.to_vec()),
                f => return bad(format!("pane {id}: key flag {f} is neither 0 nor 1")),
            };
            let start = r.u64("a pane's start")? as i64;
            let end = r.u64("a pane's end")? as i64;
            let acc = r.bytes("a pane's accumulator")?.to_vec();
            let fires = u32::try_from(r.u64("a pane's fire count")?).map_err(|_| {
                SnapshotError::Inconsistent(format!("pane {id}: fire count over 2^32"))
            })?;
            if id >= next_id {
                return bad(format!("pane id {id} is not below the next id {next_id}"));
            }
            if last.is_some_and(|last| last >= id) {
                return bad(format!("pane id {id} repeats or is out of order"));
            }
            last = Some(id);
            if start >= end {
                return bad(format!(
                    "pane {id} ends at {end}, not after its start {start}"
                ));
            }
            if s.find(key.as_deref(), start).is_some() {
                return bad(format!(
                    "two panes of one key start at {start} (pane {id} and another)"
                ));
            }
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

/// Adds input row `row` alone to `acc`: the new accumulator, or the row's failure; `Err` for a
/// fatal error (the plugin's, or an `add` that returns other than one accumulator).
fn add_one<E: AggregateError>(
    plugin: &mut dyn Aggregate<Error = E>,
    acc: Vec<u8>,
    input: &Batch,
    row: u32,
) -> Result<Result<Vec<u8>, E>, E> {
    match plugin.add(std::slice::from_ref(&acc), &rows_of(input, &[row]), &[0]) {
        Ok((mut accs, failures)) if accs.len() == 1 && failures.iter().all(|(r, _)| *r == 0) => {
            Ok(match failures.into_iter().next() {
                Some((_, e)) => Err(e),
                None => Ok(accs.pop().expect("one accumulator")),
            })
        }
        Ok((accs, failures)) => Err(plugin.fatal(match failures.iter().find(|(r, _)| *r != 0) {
            Some((r, _)) => format!("the aggregator's add named row {r} as failed, of 1 passed in"),
            None => format!(
                "the aggregator's add returned {} accumulators for 1 passed in",
                accs.len()
            ),
        })),
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => Ok(Err(e)),
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

    /// The test aggregator's error: its own `fatal`.
    #[derive(Debug)]
    struct SumError(String);

    impl Failure<SumError> {
        fn kind_name(&self) -> &'static str {
            match self {
                Failure::Plugin(_) => "fatal",
                Failure::Refused(r) => r.kind_name(),
            }
        }
    }

    impl AggregateError for SumError {
        fn is_fatal(&self) -> bool {
            true
        }
    }

    impl std::fmt::Display for SumError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fatal error: {}", self.0)
        }
    }

    impl Aggregate for Sum {
        type Error = SumError;
        fn fatal(&self, message: String) -> SumError {
            SumError(message)
        }
        fn empty(&mut self) -> Vec<u8> {
            b"0".to_vec()
        }
        fn add(
            &mut self,
            accs: &[Vec<u8>],
            input: &Batch,
            slots: &[u32],
        ) -> Result<(Vec<Vec<u8>>, Vec<(u32, SumError)>), SumError> {
            let mut accs = accs.to_vec();
            let cols = event::columns(input).unwrap();
            let mut failures = Vec::new();
            for (i, (row, &slot)) in cols.rows().zip(slots).enumerate() {
                // A value that is not a number fails its row (a missing field, say).
                let Ok(n) = std::str::from_utf8(row.value).unwrap().parse::<i64>() else {
                    failures.push((i as u32, self.fatal("not a number".into())));
                    continue;
                };
                let a: i64 = std::str::from_utf8(&accs[slot as usize])
                    .unwrap()
                    .parse()
                    .unwrap();
                accs[slot as usize] = (a + n).to_string().into_bytes();
            }
            Ok((accs, failures))
        }
        fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, SumError> {
            let p = |x: &[u8]| std::str::from_utf8(x).unwrap().parse::<i64>().unwrap();
            Ok(Some((p(a) + p(b)).to_string().into_bytes()))
        }
        fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, SumError> {
            Ok(panes.iter().map(|p| p.3.to_vec()).collect())
        }
    }

    fn batch(rows: &[(&str, i64, i64)]) -> Batch {
        let rows: Vec<(&str, i64, String)> = rows
            .iter()
            .map(|(k, ts, v)| (*k, *ts, v.to_string()))
            .collect();
        text_batch(&rows)
    }

    fn text_batch(rows: &[(&str, i64, String)]) -> Batch {
        let events: Vec<Event> = rows
            .iter()
            .map(|(k, ts, v)| Event {
                key: Some(k.as_bytes().to_vec()),
                value: v.as_bytes().to_vec(),
                timestamp: *ts,
                headers: Vec::new(),
            })
            .collect();
        event::batch_of(&events)
    }

    /// Window results as (key, start, value).
    type Results = Vec<(String, i64, String)>;
    /// Failed rows and the kind of each error.
    type Failures = Vec<(u32, &'static str)>;

    /// Processes `rows` (values as text) in one batch, then closes every window: the results
    /// as (key, start, value), and the failed rows with their error kinds.
    fn run_text(
        s: &mut WindowState,
        w: &Windowing,
        rows: &[(&str, i64, String)],
    ) -> (Results, Failures) {
        let b = text_batch(rows);
        let cols = event::columns(&b).unwrap();
        let out = s.process(w, &mut Sum, &b, &cols).unwrap();
        let mut fired = out.fired;
        fired.extend(s.close_all(&mut Sum).unwrap());
        let results = fired
            .into_iter()
            .map(|f| {
                (
                    String::from_utf8(f.key.unwrap()).unwrap(),
                    f.start,
                    String::from_utf8(f.value).unwrap(),
                )
            })
            .collect();
        let failures = out
            .failures
            .iter()
            .map(|(r, e)| (*r, e.kind_name()))
            .collect();
        (results, failures)
    }

    const TUMBLING_10: Windowing = Windowing {
        spec: WindowSpec::Tumbling { size: 10 },
        out_of_orderness: 0,
        allowed_lateness: 0,
    };

    /// A window every event of which failed (a missing field, say) gives no result: a pane
    /// no row was added to does not exist. Per batch or row by row, the same.
    #[test]
    fn a_window_whose_every_event_failed_gives_no_result() {
        for w in [
            TUMBLING_10,
            Windowing {
                spec: WindowSpec::Session { gap: 5 },
                ..TUMBLING_10
            },
        ] {
            let rows = [
                ("a", 1, "1".to_owned()),
                ("b", 2, "oops".to_owned()),
                ("b", 3, "oops".to_owned()),
                ("a", 25, "2".to_owned()),
                ("c", 40, "oops".to_owned()),
            ];
            let mut s = WindowState::default();
            let (results, failures) = run_text(&mut s, &w, &rows);
            let keys: Vec<&str> = results.iter().map(|(k, _, _)| k.as_str()).collect();
            assert_eq!(keys, ["a", "a"], "{w:?}: {results:?}");
            assert_eq!(failures, [(1, "fatal"), (2, "fatal"), (4, "fatal")]);
            assert!(s.is_empty());
            assert_eq!(s.bytes(), 0);
        }
        // An update of a fired window by a row that fails fires nothing again.
        let w = Windowing {
            allowed_lateness: 100,
            ..TUMBLING_10
        };
        let rows = [
            ("a", 1, "1".to_owned()),
            ("a", 15, "2".to_owned()),
            ("a", 3, "oops".to_owned()),
        ];
        let (results, _) = run_text(&mut WindowState::default(), &w, &rows);
        assert_eq!(
            results,
            [
                ("a".to_owned(), 0, "1".to_owned()),
                ("a".to_owned(), 10, "2".to_owned())
            ]
        );
    }

    /// `Sum`, but its `add` also names a row past the batch as failed.
    struct ForgedFailure;

    impl Aggregate for ForgedFailure {
        type Error = SumError;
        fn fatal(&self, message: String) -> SumError {
            SumError(message)
        }
        fn empty(&mut self) -> Vec<u8> {
            Sum.empty()
        }
        fn add(
            &mut self,
            accs: &[Vec<u8>],
            input: &Batch,
            slots: &[u32],
        ) -> Result<(Vec<Vec<u8>>, Vec<(u32, SumError)>), SumError> {
            let (accs, mut failures) = Sum.add(accs, input, slots)?;
            failures.push((slots.len() as u32, SumError("forged".into())));
            Ok((accs, failures))
        }
        fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, SumError> {
            Sum.merge(a, b)
        }
        fn finish(&mut self, panes: &[DuePane<'_>]) -> Result<Vec<Vec<u8>>, SumError> {
            Sum.finish(panes)
        }
    }

    #[test]
    fn an_add_that_names_a_row_past_its_input_stops_the_stage_and_keeps_the_accumulator() {
        let mut s = WindowState::default();
        let first = batch(&[("a", 1, 1), ("a", 2, 2)]);
        let cols = event::columns(&first).unwrap();
        s.process(&TUMBLING_10, &mut Sum, &first, &cols).unwrap();
        let forged = batch(&[("a", 3, 10), ("a", 4, 20)]);
        let cols = event::columns(&forged).unwrap();
        let Err(e) = s.process(&TUMBLING_10, &mut ForgedFailure, &forged, &cols) else {
            panic!("a forged failure row was taken");
        };
        assert_eq!(
            e.to_string(),
            "fatal error: the aggregator's add named row 2 as failed, of 2 passed in"
        );
        // The accumulator is as the first batch left it.
        let fired = s.close_all(&mut Sum).unwrap();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].value, b"3");
    }

    /// Panes count against the cap: a row that would make a pane past it fails with
    /// `state-limit`, the panes held stay under it, and once panes fire and go, rows fit again.
    #[test]
    fn window_panes_past_the_cap_fail_their_rows() {
        let mut s = WindowState {
            cap: Some(2 * pane_bytes(Some(b"k1"), b"0") + 8),
            ..WindowState::default()
        };
        let rows: Vec<(String, i64, String)> = (0..6)
            .map(|i| (format!("k{i}"), 1, "1".to_owned()))
            .chain([
                ("k9".to_owned(), 100, "5".to_owned()),
                ("k9".to_owned(), 100, "5".to_owned()),
            ])
            .collect();
        let rows: Vec<(&str, i64, String)> = rows
            .iter()
            .map(|(k, t, v)| (k.as_str(), *t, v.clone()))
            .collect();
        let b = text_batch(&rows);
        let cols = event::columns(&b).unwrap();
        let out = s.process(&TUMBLING_10, &mut Sum, &b, &cols).unwrap();
        let failed: Vec<(u32, &str)> = out
            .failures
            .iter()
            .map(|(r, e)| (*r, e.kind_name()))
            .collect();
        assert_eq!(
            failed,
            [
                (2, "state-limit"),
                (3, "state-limit"),
                (4, "state-limit"),
                (5, "state-limit"),
                (6, "state-limit")
            ]
        );
        assert!(
            out.failures[0].1.to_string().contains("max-state-bytes"),
            "{}",
            out.failures[0].1
        );
        // The first event at 100 did not fit but moved time on: the two windows fired and
        // went, and the next event's pane fits.
        let fired: Vec<&[u8]> = out
            .fired
            .iter()
            .map(|f| f.key.as_deref().unwrap())
            .collect();
        assert_eq!(fired, [&b"k0"[..], b"k1"]);
        assert_eq!(s.len(), 1);
        assert!(s.bytes() <= s.cap.unwrap());
        // A growing accumulator counts too: "5" + 10^30 does not fit the cap left.
        s.cap = Some(s.bytes() + 4);
        let big = vec![("k9", 101, "1000000000000000000".to_owned())];
        let b = text_batch(&big);
        let cols = event::columns(&b).unwrap();
        let out = s.process(&TUMBLING_10, &mut Sum, &b, &cols).unwrap();
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].1.kind_name(), "state-limit");
        assert!(s.bytes() <= s.cap.unwrap());
    }

    /// Event times at the ends of the i64 range do not overflow the window arithmetic: a row
    /// whose window would end past the largest time fails with `event-time`; the rest go on.
    #[test]
    fn event_times_at_the_ends_of_the_range_fail_their_row_instead_of_overflowing() {
        for spec in [
            WindowSpec::Tumbling { size: 10 },
            WindowSpec::Hopping { size: 10, slide: 3 },
            WindowSpec::Session { gap: 10 },
        ] {
            let w = Windowing {
                spec,
                out_of_orderness: i64::MAX,
                allowed_lateness: 0,
            };
            let rows = [
                ("a", i64::MIN, "1".to_owned()),
                ("a", i64::MIN + 1, "2".to_owned()),
                ("a", i64::MAX - 2, "4".to_owned()),
                ("a", i64::MAX, "8".to_owned()),
                ("a", 0, "16".to_owned()),
            ];
            let mut s = WindowState::default();
            let (results, failures) = run_text(&mut s, &w, &rows);
            assert!(
                failures.iter().all(|(_, k)| *k == "event-time"),
                "{spec:?}: {failures:?}"
            );
            assert!(
                failures.iter().any(|(r, _)| *r == 3),
                "{spec:?}: {failures:?}"
            );
            let total: i64 = results
                .iter()
                .map(|(_, _, v)| v.parse::<i64>().unwrap())
                .sum();
            let kept: i64 = [1, 2, 4, 8, 16]
                .iter()
                .enumerate()
                .filter(|(i, _)| !failures.iter().any(|(r, _)| *r as usize == *i))
                .map(|(_, v)| *v)
                .sum();
            if matches!(spec, WindowSpec::Hopping { .. }) {
                assert!(total >= kept, "{spec:?}: {results:?}");
            } else {
                assert_eq!(total, kept, "{spec:?}: {results:?}");
            }
        }
    }

    /// A snapshot with a valid CRC but two panes with one id, or two panes of one key and
    /// start, is refused with an error (it was restored and panicked later).
    #[test]
    fn a_snapshot_with_duplicate_panes_is_refused() {
        let pane = |out: &mut Vec<u8>, id: u64, start: i64| {
            put_u64(out, id);
            out.push(1);
            put_bytes(out, b"k");
            put_u64(out, start as u64);
            put_u64(out, (start + 10) as u64);
            put_bytes(out, b"0");
            put_u64(out, 0);
        };
        for (ids, starts) in [([1, 1], [0, 10]), ([1, 2], [0, 0]), ([2, 1], [0, 10])] {
            let mut body = b"FGS1".to_vec();
            put_u64(&mut body, 0); // no entries
            body.push(0); // no watermark
            put_u64(&mut body, 5); // next id
            put_u64(&mut body, 2);
            pane(&mut body, ids[0], starts[0]);
            pane(&mut body, ids[1], starts[1]);
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            let err = crate::state::KeyedState::decode(&body, usize::MAX).unwrap_err();
            assert!(
                matches!(err, SnapshotError::Inconsistent(_)),
                "{ids:?} {starts:?}: {err}"
            );
        }
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

    /// Results due at the same time come in the same order however the input is batched: a pane
    /// whose first row fails is gone at once per event but lives on within a batch, so the
    /// order cannot follow when panes were made.
    #[test]
    fn results_due_together_come_in_one_order_however_the_input_is_batched() {
        let w = Windowing {
            spec: WindowSpec::Tumbling { size: 10 },
            out_of_orderness: 0,
            allowed_lateness: 0,
        };
        let rows: Vec<(&str, i64, String)> = vec![
            ("b", 1, "x".into()),
            ("a", 2, "1".into()),
            ("b", 3, "2".into()),
            ("c", 4, "3".into()),
            ("a", 12, "4".into()),
        ];
        let order = |split: usize| {
            let mut s = WindowState::default();
            let mut keys = Vec::new();
            for chunk in rows.chunks(split) {
                let b = text_batch(chunk);
                let cols = event::columns(&b).unwrap();
                let out = s.process(&w, &mut Sum, &b, &cols).unwrap();
                keys.extend(out.fired.into_iter().map(|f| (f.key, f.start)));
            }
            keys.extend(
                s.close_all(&mut Sum)
                    .unwrap()
                    .into_iter()
                    .map(|f| (f.key, f.start)),
            );
            keys
        };
        let per_event = order(1);
        assert_eq!(per_event.len(), 4, "{per_event:?}");
        assert_eq!(
            per_event[..3]
                .iter()
                .map(|(k, _)| k.clone().unwrap())
                .collect::<Vec<_>>(),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        for split in [2, 3, 5] {
            assert_eq!(order(split), per_event, "batches of {split}");
        }
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

    /// A session result: key, start, end, value.
    type Session = (String, i64, i64, String);

    /// Runs text rows through session windows of gap 5 and the given out-of-orderness in
    /// batches of `split` rows: the results as (key, start, end, value), sorted, and the failed
    /// rows (by event time).
    fn sessions_of(
        rows: &[(&str, i64, &str)],
        out_of_orderness: i64,
        split: usize,
    ) -> (Vec<Session>, Vec<i64>) {
        let w = Windowing {
            spec: WindowSpec::Session { gap: 5 },
            out_of_orderness,
            allowed_lateness: 0,
        };
        let mut s = WindowState::default();
        let mut fired = Vec::new();
        let mut failed = Vec::new();
        for chunk in rows.chunks(split) {
            let rows: Vec<(&str, i64, String)> = chunk
                .iter()
                .map(|(k, t, v)| (*k, *t, v.to_string()))
                .collect();
            let b = text_batch(&rows);
            let cols = event::columns(&b).unwrap();
            let out = s.process(&w, &mut Sum, &b, &cols).unwrap();
            fired.extend(out.fired);
            failed.extend(out.failures.iter().map(|(r, _)| chunk[*r as usize].1));
        }
        fired.extend(s.close_all(&mut Sum).unwrap());
        let mut fired: Vec<Session> = fired
            .into_iter()
            .map(|f| {
                (
                    String::from_utf8(f.key.unwrap()).unwrap(),
                    f.start,
                    f.end,
                    String::from_utf8(f.value).unwrap(),
                )
            })
            .collect();
        fired.sort();
        (fired, failed)
    }

    #[test]
    fn an_event_that_fails_neither_widens_nor_bridges_a_session_however_batched() {
        let r = |k: &str, s, e, v: &str| (k.to_owned(), s, e, v.to_owned());
        // The event at 4 fails: the session of 0 stays [0,5), so the event at 8 starts a
        // session of its own, which the event at 12 joins.
        let widening = [
            ("a", 0, "1"),
            ("a", 4, "oops"),
            ("a", 8, "2"),
            ("a", 12, "3"),
        ];
        // Sessions [0,5) and [8,13); the event at 4 would bridge them, but it fails.
        let bridging = [
            ("a", 0, "1"),
            ("a", 8, "2"),
            ("a", 4, "oops"),
            ("b", 1, "7"),
        ];
        // A session whose first event fails is none; the next event starts one of its own.
        let first = [("a", 0, "oops"), ("a", 4, "2"), ("a", 6, "3")];
        // With no out-of-orderness the event at 7 makes [0,5) due: it fires and goes though the
        // failing event at 4 had widened it while waiting, so the event at 3 starts a session.
        let due = [
            ("a", 0, "1"),
            ("a", 4, "oops"),
            ("b", 7, "1"),
            ("a", 3, "2"),
        ];
        // Rows, out-of-orderness, and what `sessions_of` gives for them.
        type Case<'a> = (&'a [(&'a str, i64, &'a str)], i64, Vec<Session>, Vec<i64>);
        let cases: [Case<'_>; 4] = [
            (
                &due,
                0,
                vec![r("a", 0, 5, "1"), r("a", 3, 8, "2"), r("b", 7, 12, "1")],
                vec![4],
            ),
            (
                &widening,
                100,
                vec![r("a", 0, 5, "1"), r("a", 8, 17, "5")],
                vec![4],
            ),
            (
                &bridging,
                100,
                vec![r("a", 0, 5, "1"), r("a", 8, 13, "2"), r("b", 1, 6, "7")],
                vec![4],
            ),
            (&first, 100, vec![r("a", 4, 11, "5")], vec![0]),
        ];
        for (rows, out_of_orderness, fired, failed) in cases {
            for split in [1, 2, 4] {
                assert_eq!(
                    sessions_of(rows, out_of_orderness, split),
                    (fired.clone(), failed.clone()),
                    "{rows:?} in batches of {split}"
                );
            }
        }
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
