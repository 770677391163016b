//! Writing a pipeline step's outputs: routing into output partitions, appends in flight, the
//! input position committed once its outputs are durable, and exactly-once replay.
//!
//! Every step with a replayable input (a stage over a partition, a file source, a generator) has
//! a checkpoint: the input position up to which its outputs are acknowledged, and the end offset
//! it last saw acknowledged in each output partition. A crash repeats what came after the
//! checkpoint (at-least-once).
//!
//! Exactly-once: the last row of each append carries a header `flowgate-eos:
//! <producer>@<position>`, meaning "the outputs of every input up to `position` that go to this
//! partition are here". It is written in the same append as the rows, so it is exactly as
//! durable as they are. On start the step scans each output partition from its checkpointed end
//! and, while replaying, drops an output whose input it finds already covered there. Readers
//! strip the header before a plugin or sink sees the event. The outputs of closing an input
//! (an aggregator's last windows at the end of a bounded run) are marked `<position>+`: they
//! follow every output of the inputs up to `position`.
//!
//! A stage with keyed state saves the state in the same checkpoint file, after the JSON line
//! (see [`crate::state::KeyedState::encode`]). Before such a checkpoint is written every append
//! in flight is waited for, so the position and the state describe the same inputs.
//!
//! On a log several processes share, the state goes to the stage's changelog instead
//! ([`Changelog`]): a compacted topic with a partition per input partition, where each
//! checkpoint appends the entries written since the last one (key `e<key>`, or a tombstone
//! header for a deleted key) and the windows if they changed (key `w`), the last record
//! carrying the input position they describe (`flowgate-state-position`). It is appended before
//! the checkpoint, with the step's group membership, so a process that lost the partition
//! cannot write it; the process given the partition reads it to its end, and resumes from the
//! later of the checkpoint's position and the changelog's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::{self, Batch, BatchBuilder, EventRef};
use crate::log::{Consumed, EventLog, Fence, LogError, Pending};
use crate::state::{KeyedState, Reader, SharedState, WindowState};

/// The header that marks how far a producer's outputs in a partition go.
pub use crate::event::EOS_HEADER;

/// The header of a changelog's deleted key.
const TOMBSTONE_HEADER: &str = "flowgate-tombstone";
/// The header of the last record of a changelog append: the input position the state is at.
const STATE_POSITION_HEADER: &str = "flowgate-state-position";

/// Where a stage partition's keyed state is kept on a log several processes share.
#[derive(Clone, Debug)]
pub(crate) struct Changelog {
    /// The compacted changelog topic.
    pub topic: String,
    /// Its partition for this stage partition (the input partition).
    pub partition: u32,
}

/// A step's keyed state and, on a log several processes share, its changelog.
#[derive(Clone)]
pub(crate) struct StateStore {
    pub state: SharedState,
    pub changelog: Option<Changelog>,
}

/// Appends in flight per producer before it waits for the oldest.
const MAX_IN_FLIGHT: usize = 8;

/// An output topic and its partition count.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub topic: String,
    pub partitions: u32,
}

/// One output row: which target and partition, the input position it came from (the position
/// just after its input), and the row.
pub(crate) struct Routed<'a> {
    pub target: usize,
    pub partition: u32,
    pub origin: u64,
    pub row: EventRef<'a>,
}

/// A step's checkpoint: a JSON record, then (for a step with keyed state) a newline and the
/// state snapshot ([`KeyedState::encode`]).
#[derive(Serialize, Deserialize, Default, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Input position whose outputs are all acknowledged.
    pub position: u64,
    /// "topic/partition" → end offset seen acknowledged.
    pub outputs: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// Splits saved checkpoint bytes into the record and the state snapshot that follows it
    /// (empty when there is none). The error says what is wrong with the record.
    pub fn decode(bytes: &[u8]) -> Result<(Checkpoint, &[u8]), String> {
        let mut json = serde_json::Deserializer::from_slice(bytes).into_iter();
        let c: Checkpoint = json
            .next()
            .unwrap_or_else(|| Err(serde::de::Error::custom("empty")))
            .map_err(|e| e.to_string())?;
        let rest = bytes
            .get(json.byte_offset()..)
            .unwrap_or_default()
            .strip_prefix(b"\n")
            .unwrap_or_default();
        Ok((c, rest))
    }
}

struct InFlight {
    /// Target, partition, bytes, the append.
    appends: Vec<(usize, u32, u64, Pending)>,
    /// Target, partition and end offset of the appends acknowledged so far. They reach the
    /// checkpoint only with `next_position`, once every append of the step is acknowledged: a
    /// checkpointed end past a marker whose position is not checkpointed would hide the marker
    /// from the scan after a crash, and the replay would write those outputs again.
    acked: Vec<(usize, u32, u64)>,
    next_position: u64,
}

/// See the module docs.
pub(crate) struct Producer {
    log: Arc<dyn EventLog>,
    id: String,
    checkpoint: String,
    exactly_once: bool,
    targets: Vec<Target>,
    done: HashMap<(usize, u32), u64>,
    in_flight: VecDeque<InFlight>,
    ends: BTreeMap<(usize, u32), u64>,
    position: u64,
    saved_position: u64,
    saved_at: Instant,
    interval: Duration,
    state: Option<SharedState>,
    changelog: Option<Changelog>,
    /// The windows as last written to the changelog.
    written_windows: Vec<u8>,
    /// Something was sent since the last checkpoint.
    dirty: bool,
    /// The group membership the appends carry, and the group's partition this step reads.
    fence: Option<(Fence, u32)>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("id", &self.id)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

fn key(t: &Target, p: u32) -> String {
    format!("{}/{p}", t.topic)
}

impl Producer {
    /// Opens the producer `id` (checkpoint `checkpoint`), returning it and the input position to
    /// resume from (`start()` when there is no checkpoint yet). `state`, if given, is restored
    /// from the checkpoint (or its changelog) and saved with it from then on.
    #[expect(clippy::too_many_arguments, reason = "one call site per kind of step")]
    pub fn open(
        log: Arc<dyn EventLog>,
        id: String,
        checkpoint: String,
        targets: Vec<Target>,
        exactly_once: bool,
        interval: Duration,
        store: Option<StateStore>,
        start: impl FnOnce() -> Result<u64, LogError>,
    ) -> Result<(Producer, u64), LogError> {
        let (state, changelog) = match store {
            Some(s) => (Some(s.state), s.changelog),
            None => (None, None),
        };
        let unreadable = |e: String| {
            LogError::Invalid(format!(
                "checkpoint `{checkpoint}` is not readable ({e}); delete checkpoints/{checkpoint}.ckpt under the data directory to start that step over"
            ))
        };
        let restoring = Instant::now();
        let mut from_snapshot = false;
        let saved: Option<Checkpoint> = match log.load_checkpoint(&checkpoint)? {
            Some(bytes) => {
                let (c, rest) = Checkpoint::decode(&bytes).map_err(unreadable)?;
                if let Some(state) = &state
                    && !rest.is_empty()
                {
                    from_snapshot = true;
                    let mut s = state.lock();
                    let restored = KeyedState::decode(rest, usize::MAX)
                        .map_err(|e| unreadable(e.to_string()))?;
                    s.replace_with(restored);
                    // What a partition that moves (or a restart) costs: read and decoded.
                    let took = restoring.elapsed();
                    metrics::histogram!("flowgate_state_restore_seconds", "step" => id.clone())
                        .record(took.as_secs_f64());
                    metrics::gauge!("flowgate_state_restore_bytes", "step" => id.clone())
                        .set(rest.len() as f64);
                    tracing::info!(step = %id, bytes = rest.len(), entries = s.len(), took = ?took, "keyed state restored from the checkpoint");
                }
                Some(c)
            }
            None => None,
        };
        let mut restored = None;
        let mut written_windows = Vec::new();
        if let (Some(state), Some(changelog)) = (&state, &changelog) {
            let mut s = state.lock();
            s.track_changes();
            let (position, bytes) = restore(&*log, changelog, &mut s)?;
            if from_snapshot {
                // A checkpoint written before the state had a changelog: the changelog gets
                // all of it at the next checkpoint.
                s.mark_all_changed();
            } else {
                s.windows.encode(&mut written_windows);
            }
            let took = restoring.elapsed();
            metrics::histogram!("flowgate_state_restore_seconds", "step" => id.clone())
                .record(took.as_secs_f64());
            metrics::gauge!("flowgate_state_restore_bytes", "step" => id.clone()).set(bytes as f64);
            tracing::info!(step = %id, bytes, entries = s.len(), took = ?took, at = ?position, "keyed state restored from the changelog");
            restored = position;
        }
        let mut ends = BTreeMap::new();
        for (i, t) in targets.iter().enumerate() {
            let info = log.describe(&t.topic)?;
            for p in &info.partitions {
                let from = saved
                    .as_ref()
                    .and_then(|c| c.outputs.get(&key(t, p.partition)).copied())
                    .unwrap_or(p.end_offset);
                ends.insert((i, p.partition), from.min(p.end_offset));
            }
        }
        let fresh = saved.is_none();
        let position = match &saved {
            // The changelog is appended before the checkpoint: a crash between the two leaves
            // the state ahead of the checkpoint, at the position it names (every output up to
            // there was acknowledged before).
            Some(c) => c.position.max(restored.unwrap_or(0)),
            None => start()?,
        };
        let mut producer = Producer {
            log,
            id,
            checkpoint,
            exactly_once,
            targets,
            done: HashMap::new(),
            in_flight: VecDeque::new(),
            ends,
            position,
            saved_position: position,
            saved_at: Instant::now(),
            interval,
            state,
            changelog,
            written_windows,
            dirty: false,
            fence: None,
        };
        if fresh {
            producer.save()?;
        } else if exactly_once {
            producer.scan()?;
        }
        Ok((producer, position))
    }

    /// Makes every append carry `fence` and the position reached in the group's `partition`
    /// ([`EventLog::submit_consumed`]): on a log several processes share, an append is then
    /// written only while this process is a member of the group.
    pub fn fence(&mut self, fence: Fence, partition: u32) {
        self.fence = Some((fence, partition));
    }

    fn submit(
        &self,
        target: usize,
        partition: u32,
        batch: Batch,
        next_position: u64,
    ) -> Result<Pending, LogError> {
        self.submit_to(&self.targets[target].topic, partition, batch, next_position)
    }

    fn submit_to(
        &self,
        topic: &str,
        partition: u32,
        batch: Batch,
        next_position: u64,
    ) -> Result<Pending, LogError> {
        match &self.fence {
            None => self.log.submit(topic, partition, batch),
            Some((fence, read)) => self.log.submit_consumed(
                topic,
                partition,
                batch,
                &Consumed {
                    fence: fence.clone(),
                    partition: *read,
                    offset: next_position,
                },
            ),
        }
    }

    /// Finds this producer's markers written after the checkpoint.
    fn scan(&mut self) -> Result<(), LogError> {
        let prefix = format!("{}@", self.id);
        let mut done = std::mem::take(&mut self.done);
        for (&(t, p), &from) in &self.ends {
            rows_from(
                &*self.log,
                &self.targets[t].topic,
                p,
                from,
                None,
                |_, row| {
                    for (name, value) in row.headers.iter() {
                        if name == EOS_HEADER.as_bytes()
                            && let Some(pos) = std::str::from_utf8(value)
                                .ok()
                                .and_then(|v| v.strip_prefix(&prefix))
                                .and_then(half_steps)
                        {
                            let d = done.entry((t, p)).or_insert(0);
                            *d = (*d).max(pos);
                        }
                    }
                    Ok(())
                },
            )?;
        }
        self.done = done;
        if !self.done.is_empty() {
            tracing::info!(producer = %self.id, from = self.position, covered = ?self.done.values().max().map(|d| d / 2), "exactly-once: replaying; outputs already written will not be written again");
        }
        Ok(())
    }

    /// Input position whose outputs are all acknowledged.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Appends `rows` (in input order) and records that inputs up to `next_position` are done
    /// once they are durable. Rows already written before a crash are dropped (exactly-once).
    pub fn send(&mut self, rows: &[Routed<'_>], next_position: u64) -> Result<(), LogError> {
        self.send_rows(rows, next_position, false)
    }

    /// Appends the outputs of closing the input at `position` (an aggregator's last windows at
    /// the end of a bounded run): they come after every output of the inputs up to `position`,
    /// so their marker says `<position>+` and a replay tells them apart from the outputs of the
    /// last input.
    pub fn send_closing(&mut self, rows: &[Routed<'_>], position: u64) -> Result<(), LogError> {
        self.send_rows(rows, position, true)
    }

    fn send_rows(
        &mut self,
        rows: &[Routed<'_>],
        next_position: u64,
        closing: bool,
    ) -> Result<(), LogError> {
        let mut last: HashMap<(usize, u32), usize> = HashMap::new();
        // Positions in half steps: the closing outputs at `p` sit between `p` and `p + 1`.
        let at = |origin: u64| 2 * origin + u64::from(closing);
        let keep = |r: &Routed<'_>| {
            !self.exactly_once
                || self
                    .done
                    .get(&(r.target, r.partition))
                    .is_none_or(|&d| at(r.origin) > d)
        };
        for (i, r) in rows.iter().enumerate() {
            if keep(r) {
                last.insert((r.target, r.partition), i);
            }
        }
        let mut builders: BTreeMap<(usize, u32), BatchBuilder> = BTreeMap::new();
        let marker = format!(
            "{}@{next_position}{}",
            self.id,
            if closing { "+" } else { "" }
        );
        for (i, r) in rows.iter().enumerate() {
            let k = (r.target, r.partition);
            if !keep(r) {
                continue;
            }
            let b = builders
                .entry(k)
                .or_insert_with(|| BatchBuilder::with_capacity(64, 4096));
            let eos = |(n, _): &(&[u8], &[u8])| *n != EOS_HEADER.as_bytes();
            let headers = r.row.headers.iter().filter(eos);
            if self.exactly_once && last.get(&k) == Some(&i) {
                b.push(
                    r.row.key,
                    r.row.value,
                    r.row.timestamp,
                    headers.chain([(EOS_HEADER.as_bytes(), marker.as_bytes())]),
                );
            } else {
                b.push(r.row.key, r.row.value, r.row.timestamp, headers);
            }
        }
        let mut appends = Vec::with_capacity(builders.len());
        for ((t, p), b) in builders {
            let batch = event::finish(b);
            let bytes = batch_bytes(&batch);
            let pending = self.submit(t, p, batch, next_position)?;
            appends.push((t, p, bytes, pending));
        }
        self.queue(appends, next_position)
    }

    /// True while replaying inputs (from `first` on) whose outputs to this partition may be
    /// written already (exactly-once after a crash).
    pub fn replaying(&self, target: usize, partition: u32, first: u64) -> bool {
        self.exactly_once
            && self
                .done
                .get(&(target, partition))
                .is_some_and(|&d| 2 * first < d)
    }

    /// Appends a whole batch to one partition as it is (the marker header, if any, is added to
    /// its last row in place; a marker already in it is dropped). The caller checks
    /// [`replaying`](Self::replaying) first.
    pub fn send_whole(
        &mut self,
        target: usize,
        partition: u32,
        batch: Batch,
        next_position: u64,
    ) -> Result<(), LogError> {
        let mut appends = Vec::new();
        // Only this producer writes its markers: one already in the batch is dropped.
        let (mut batch, forged) = event::without_headers(batch, EOS_HEADER.as_bytes());
        if forged > 0 {
            tracing::warn!(producer = %self.id, forged, "dropped exactly-once markers that were not written by the host");
        }
        if !batch.timestamps.is_empty() {
            if self.exactly_once {
                let marker = format!("{}@{next_position}", self.id);
                add_last_header(&mut batch, EOS_HEADER.as_bytes(), marker.as_bytes());
            }
            let bytes = batch_bytes(&batch);
            let pending = self.submit(target, partition, batch, next_position)?;
            appends.push((target, partition, bytes, pending));
        }
        self.queue(appends, next_position)
    }

    fn queue(
        &mut self,
        appends: Vec<(usize, u32, u64, Pending)>,
        next_position: u64,
    ) -> Result<(), LogError> {
        self.dirty = true;
        self.in_flight.push_back(InFlight {
            acked: Vec::with_capacity(appends.len()),
            appends,
            next_position,
        });
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.complete_front(true)?;
        }
        self.poll()
    }

    /// Takes the acknowledgements that have come; checkpoints when the interval has passed
    /// (with keyed state: after waiting for every append in flight).
    pub fn poll(&mut self) -> Result<(), LogError> {
        while self.complete_front(false)? {}
        let moved = self.position != self.saved_position || (self.state.is_some() && self.dirty);
        if moved && self.saved_at.elapsed() >= self.interval {
            if self.state.is_some() {
                while self.complete_front(true)? {}
            }
            self.save()?;
        }
        Ok(())
    }

    fn complete_front(&mut self, block: bool) -> Result<bool, LogError> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(false);
        };
        while let Some((t, p, bytes, pending)) = front.appends.last_mut() {
            let answer = if block {
                Some(std::mem::replace(pending, Pending::ready(Err(LogError::Closed))).wait())
            } else {
                pending.try_wait()
            };
            match answer {
                None => return Ok(false),
                Some(Err(e @ LogError::Fenced(_))) => return Err(e),
                Some(Err(e)) => {
                    return Err(LogError::Failed {
                        topic: format!("{}/{p}", self.targets[*t].topic),
                        reason: format!(
                            "appending the outputs of `{}` failed: {e}; the inputs after position {} will be processed again on restart",
                            self.id, self.position
                        ),
                    });
                }
                Some(Ok(ack)) => {
                    let end = ack.base_offset + u64::from(ack.count);
                    front.acked.push((*t, *p, end));
                    appended(&self.targets[*t].topic, u64::from(ack.count), *bytes);
                    front.appends.pop();
                }
            }
        }
        let done = self.in_flight.pop_front().expect("front exists");
        for (t, p, end) in done.acked {
            let slot = self.ends.entry((t, p)).or_insert(end);
            *slot = (*slot).max(end);
        }
        self.position = done.next_position;
        Ok(true)
    }

    /// Waits for every append in flight and saves the checkpoint.
    pub fn flush(&mut self) -> Result<(), LogError> {
        while self.complete_front(true)? {}
        if self.position != self.saved_position || (self.state.is_some() && self.dirty) {
            self.save()?;
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), LogError> {
        let c = Checkpoint {
            position: self.position,
            outputs: self
                .ends
                .iter()
                .map(|(&(t, p), &e)| (key(&self.targets[t], p), e))
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&c).expect("a checkpoint serialises");
        if let Some(state) = &self.state {
            debug_assert!(
                self.in_flight.is_empty(),
                "state saved with appends in flight"
            );
            if let Some(changelog) = &self.changelog {
                let batch = {
                    let mut st = state.lock();
                    let mut windows = Vec::new();
                    st.windows.encode(&mut windows);
                    let windows = (windows != self.written_windows).then_some(windows);
                    changes(st.take_changes(), windows.as_deref(), self.position)
                };
                if let Some((batch, windows)) = batch {
                    self.submit_to(&changelog.topic, changelog.partition, batch, self.position)?
                        .wait()?;
                    if let Some(w) = windows {
                        self.written_windows = w;
                    }
                }
            } else {
                bytes.push(b'\n');
                bytes.extend_from_slice(&state.lock().encode());
            }
        }
        self.log.save_checkpoint(&self.checkpoint, &bytes)?;
        self.saved_position = self.position;
        self.saved_at = Instant::now();
        self.dirty = !self.in_flight.is_empty();
        Ok(())
    }
}

/// The output partition of a row: by key hash, else by `fallback` (the input partition, or a
/// round-robin counter).
pub(crate) fn partition_for(key: Option<&[u8]>, partitions: u32, fallback: u64) -> u32 {
    match key {
        Some(k) => crc32c::crc32c(k) % partitions,
        None => (fallback % u64::from(partitions)) as u32,
    }
}

/// A marker's position in half steps (`done` holds them so): `P` is `2P`, the closing marker
/// `P+` is `2P + 1`.
/// The changelog records of `changes` and of `windows` (if they changed), the last marked
/// with `position`; with the windows written, to remember. `None` if there is nothing to write.
fn changes(
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    windows: Option<&[u8]>,
    position: u64,
) -> Option<(Batch, Option<Vec<u8>>)> {
    let rows = changes.len() + usize::from(windows.is_some());
    if rows == 0 {
        return None;
    }
    let at = position.to_string();
    let mut b = BatchBuilder::with_capacity(rows, 64 * rows);
    let mut left = rows;
    let mut key = Vec::new();
    for (k, v) in &changes {
        left -= 1;
        key.clear();
        key.push(b'e');
        key.extend_from_slice(k);
        let mut headers: Vec<(&[u8], &[u8])> = Vec::new();
        if v.is_none() {
            headers.push((TOMBSTONE_HEADER.as_bytes(), b""));
        }
        if left == 0 {
            headers.push((STATE_POSITION_HEADER.as_bytes(), at.as_bytes()));
        }
        b.push(Some(&key), v.as_deref().unwrap_or_default(), 0, headers);
    }
    if let Some(w) = windows {
        b.push(
            Some(b"w"),
            w,
            0,
            [(STATE_POSITION_HEADER.as_bytes(), at.as_bytes())],
        );
    }
    Some((event::finish(b), windows.map(<[u8]>::to_vec)))
}

/// Reads a changelog partition to its end into `state`: the position the last append names
/// (none if it is empty) and the bytes read.
fn restore(
    log: &dyn EventLog,
    changelog: &Changelog,
    state: &mut KeyedState,
) -> Result<(Option<u64>, u64), LogError> {
    let (topic, p) = (&changelog.topic, changelog.partition);
    let info = log.describe(topic)?;
    let Some(part) = info.partitions.get(p as usize) else {
        return Err(LogError::NoSuchPartition {
            topic: topic.clone(),
            partition: p,
            partitions: info.partitions.len() as u32,
        });
    };
    let bad = |offset: u64, why: &str| {
        LogError::Invalid(format!(
            "the changelog {topic}/{p} has at offset {offset} {why}; it is not a changelog Flowgate wrote"
        ))
    };
    let mut position = None;
    let mut bytes = 0u64;
    let (from, to) = (part.start_offset, part.end_offset);
    rows_from(log, topic, p, from, Some(to), |offset, row| {
        bytes += (row.key.map_or(0, <[u8]>::len) + row.value.len()) as u64;
        let mut deleted = false;
        for (name, value) in row.headers.iter() {
            if name == TOMBSTONE_HEADER.as_bytes() {
                deleted = true;
            } else if name == STATE_POSITION_HEADER.as_bytes() {
                let at: u64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(offset, "a position that is no number"))?;
                position = Some(position.map_or(at, |p: u64| p.max(at)));
            }
        }
        match row.key {
            Some([b'e', key @ ..]) => {
                state.restore_entry(key, (!deleted).then_some(row.value));
            }
            Some(b"w") => {
                let mut r = Reader(row.value);
                state.windows = WindowState::decode(&mut r)
                    .map_err(|e| bad(offset, &format!("windows that do not decode ({e})")))?;
            }
            _ => return Err(bad(offset, "a record of no known kind")),
        }
        Ok(())
    })?;
    Ok((position, bytes))
}

/// Calls `each` with every row of `topic`/`p` from offset `from` on (to `to`, or to the end),
/// with its offset.
pub(crate) fn rows_from(
    log: &dyn EventLog,
    topic: &str,
    p: u32,
    from: u64,
    to: Option<u64>,
    mut each: impl FnMut(u64, EventRef<'_>) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut at = from;
    while to.is_none_or(|to| at < to) {
        let batches = log.read(topic, p, at, 4 << 20)?;
        if batches.is_empty() {
            break;
        }
        for rb in &batches {
            let cols = event::columns(&rb.batch)
                .map_err(|e| LogError::Invalid(format!("{topic}/{p}: {e}")))?;
            for (i, row) in cols.rows().enumerate() {
                let offset = rb.base_offset + i as u64;
                if offset >= at {
                    each(offset, row)?;
                }
            }
            at = at.max(rb.base_offset + rb.batch.timestamps.len() as u64);
        }
    }
    Ok(())
}

fn half_steps(v: &str) -> Option<u64> {
    match v.strip_suffix('+') {
        Some(p) => p.parse::<u64>().ok().map(|p| 2 * p + 1),
        None => v.parse::<u64>().ok().map(|p| 2 * p),
    }
}

/// Adds a header to the last row of a non-empty batch, in place.
fn add_last_header(batch: &mut Batch, name: &[u8], value: &[u8]) {
    let end = |data: &Vec<u8>| u32::try_from(data.len()).expect("batch under 4 GiB");
    batch.header_names.data.extend_from_slice(name);
    batch.header_names.ends.push(end(&batch.header_names.data));
    batch.header_values.data.extend_from_slice(value);
    batch
        .header_values
        .ends
        .push(end(&batch.header_values.data));
    if let Some(last) = batch.header_ends.last_mut() {
        *last += 1;
    }
}

/// Bytes of keys, values and headers in a batch.
pub(crate) fn batch_bytes(b: &Batch) -> u64 {
    (b.values.data.len()
        + b.keys.data.len()
        + b.header_names.data.len()
        + b.header_values.data.len()) as u64
}

/// Counts records and bytes appended to a topic.
pub(crate) fn appended(topic: &str, records: u64, bytes: u64) {
    metrics::counter!("flowgate_topic_records_appended_total", "topic" => topic.to_owned())
        .increment(records);
    metrics::counter!("flowgate_topic_bytes_appended_total", "topic" => topic.to_owned())
        .increment(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::oneshot;

    use super::*;
    use crate::event::Event;
    use crate::log::{Ack, MemoryLog, ReadBatch, TopicConfig, TopicInfo};

    /// A memory log whose appends to partition 0 stay in flight (never written) while `hold`
    /// is set: the state of a process that crashes before that append is synced.
    #[derive(Default)]
    struct Holding {
        inner: MemoryLog,
        hold: AtomicBool,
        held: Mutex<Vec<oneshot::Sender<Result<Ack, LogError>>>>,
    }

    impl EventLog for Holding {
        fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), LogError> {
            self.inner.create_topic(name, config)
        }
        fn topics(&self) -> Vec<String> {
            self.inner.topics()
        }
        fn describe(&self, topic: &str) -> Result<TopicInfo, LogError> {
            self.inner.describe(topic)
        }
        fn submit(&self, topic: &str, partition: u32, batch: Batch) -> Result<Pending, LogError> {
            if partition == 0 && self.hold.load(Ordering::Acquire) {
                let (tx, pending) = Pending::answered_by();
                self.held.lock().unwrap().push(tx);
                return Ok(pending);
            }
            self.inner.submit(topic, partition, batch)
        }
        fn read(
            &self,
            topic: &str,
            partition: u32,
            from: u64,
            max_bytes: usize,
        ) -> Result<Vec<ReadBatch>, LogError> {
            self.inner.read(topic, partition, from, max_bytes)
        }
        fn offset_for_time(&self, topic: &str, partition: u32, ts: i64) -> Result<u64, LogError> {
            self.inner.offset_for_time(topic, partition, ts)
        }
        fn wait_for(
            &self,
            topic: &str,
            partition: u32,
            offset: u64,
            timeout: Duration,
        ) -> Result<bool, LogError> {
            self.inner.wait_for(topic, partition, offset, timeout)
        }
        fn roll(&self, topic: &str, partition: u32) -> Result<(), LogError> {
            self.inner.roll(topic, partition)
        }
        fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
            self.inner.enforce_retention(now_ms)
        }
        fn commit_offset(&self, g: &str, t: &str, p: u32, offset: u64) -> Result<(), LogError> {
            self.inner.commit_offset(g, t, p, offset)
        }
        fn committed_offset(&self, g: &str, t: &str, p: u32) -> Result<Option<u64>, LogError> {
            self.inner.committed_offset(g, t, p)
        }
        fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<(), LogError> {
            self.inner.save_checkpoint(name, data)
        }
        fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
            self.inner.load_checkpoint(name)
        }
    }

    fn open(log: &Arc<Holding>, interval: Duration) -> (Producer, u64) {
        let target = Target {
            topic: "out".into(),
            partitions: 2,
        };
        Producer::open(
            log.clone(),
            "p".into(),
            "p".into(),
            vec![target],
            true,
            interval,
            None,
            || Ok(0),
        )
        .unwrap()
    }

    /// One output to each of partitions 0 and 1, from the inputs ending at `origins`, with the
    /// value `{"origin":<value>}`, handed to `send`.
    fn send_two(
        producer: &mut Producer,
        origins: [u64; 2],
        values: [u64; 2],
        send: impl FnOnce(&mut Producer, &[Routed<'_>]),
    ) {
        let events: Vec<Event> = values
            .iter()
            .map(|v| Event {
                key: None,
                value: format!("{{\"origin\":{v}}}").into_bytes(),
                timestamp: 0,
                headers: Vec::new(),
            })
            .collect();
        let batch = event::batch_of(&events);
        let cols = event::columns(&batch).unwrap();
        let rows: Vec<Routed<'_>> = cols
            .rows()
            .zip(origins)
            .enumerate()
            .map(|(p, (row, origin))| Routed {
                target: 0,
                partition: p as u32,
                origin,
                row,
            })
            .collect();
        send(producer, &rows);
    }

    /// Sends one output per partition for the inputs ending at `origins[0]` and `origins[1]`.
    fn step(producer: &mut Producer, origins: [u64; 2]) {
        send_two(producer, origins, origins, |p, rows| {
            p.send(rows, origins[1]).unwrap();
        });
    }

    /// Sends the closing outputs at `position`, one per partition (value origin 999).
    fn close(producer: &mut Producer, position: u64) {
        send_two(producer, [position; 2], [999; 2], |p, rows| {
            p.send_closing(rows, position).unwrap();
        });
    }

    fn open_stateful(log: &Arc<Holding>, state: &SharedState) -> (Producer, u64) {
        let target = Target {
            topic: "out".into(),
            partitions: 2,
        };
        let store = StateStore {
            state: state.clone(),
            changelog: Some(Changelog {
                topic: "changelog".into(),
                partition: 1,
            }),
        };
        Producer::open(
            log.clone(),
            "s".into(),
            "s".into(),
            vec![target],
            true,
            Duration::from_secs(3600),
            Some(store),
            || Ok(0),
        )
        .unwrap()
    }

    fn entries(state: &SharedState) -> Vec<(Vec<u8>, Vec<u8>)> {
        state.lock().scan(b"", None, usize::MAX)
    }

    /// With a changelog, a checkpoint appends the entries changed since the last one (a
    /// tombstone for a deleted key), not the whole state; a producer opened anew (the process
    /// the partition moved to) reads the changelog back to the same state, and resumes from
    /// the changelog's position when a crash came between its append and the checkpoint.
    #[test]
    fn keyed_state_moves_through_its_changelog() {
        let log = two_partitions();
        let changelog = TopicConfig {
            partitions: 2,
            compacted: true,
            ..TopicConfig::default()
        };
        log.create_topic("changelog", changelog).unwrap();
        let state = SharedState::new(1 << 20);
        let (mut producer, from) = open_stateful(&log, &state);
        assert_eq!(from, 0);
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            state.lock().put(k.into(), v.into()).unwrap();
        }
        step(&mut producer, [1, 2]);
        producer.flush().unwrap();
        state.lock().delete(b"a");
        state.lock().put(b"b".to_vec(), b"20".to_vec()).unwrap();
        step(&mut producer, [3, 4]);
        producer.flush().unwrap();
        let rows = |log: &Holding| -> usize {
            log.read("changelog", 1, 0, 1 << 20)
                .unwrap()
                .iter()
                .map(|b| b.batch.timestamps.len())
                .sum()
        };
        assert_eq!(
            rows(&log),
            5,
            "three entries, then a tombstone and one change"
        );

        let moved = SharedState::new(1 << 20);
        let (_, from) = open_stateful(&log, &moved);
        assert_eq!(from, 4, "resumes where the checkpoint is");
        assert_eq!(entries(&moved), entries(&state));
        assert_eq!(
            entries(&moved),
            vec![
                (b"b".to_vec(), b"20".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );

        // A crash after the changelog append and before its checkpoint: the state is the
        // changelog's, at the changelog's position.
        let (batch, _) = changes(vec![(b"d".to_vec(), Some(b"4".to_vec()))], None, 9).unwrap();
        log.append("changelog", 1, batch).unwrap();
        let after = SharedState::new(1 << 20);
        let (_, from) = open_stateful(&log, &after);
        assert_eq!(from, 9);
        assert_eq!(after.lock().get(b"d"), Some(&b"4"[..]));
        assert_eq!(after.lock().len(), 3);
    }

    /// The closing outputs at the end of the input come after the last input's outputs and
    /// their marker: after a crash, those not written yet are written, and those written are
    /// not written again.
    #[test]
    fn closing_outputs_after_the_last_input_are_written_once_across_a_crash() {
        let log = two_partitions();
        // The last input's outputs are written with their marker, not yet checkpointed.
        let (mut producer, _) = open(&log, Duration::from_secs(3600));
        step(&mut producer, [1, 2]);
        log.hold.store(true, Ordering::Release);
        close(&mut producer, 2);
        drop(producer); // partition 0's closing output is never written

        log.hold.store(false, Ordering::Release);
        let (mut producer, from) = open(&log, Duration::ZERO);
        assert_eq!(from, 0, "resumes at the checkpoint");
        step(&mut producer, [1, 2]);
        close(&mut producer, 2);
        producer.flush().unwrap();
        assert_eq!(origins_in(&log, 0), [1, 999], "partition 0");
        assert_eq!(origins_in(&log, 1), [2, 999], "partition 1");
    }

    /// A memory log with the topic `out` of two partitions.
    fn two_partitions() -> Arc<Holding> {
        let log = Arc::new(Holding::default());
        let config = TopicConfig {
            partitions: 2,
            ..TopicConfig::default()
        };
        log.create_topic("out", config).unwrap();
        log
    }

    fn origins_in(log: &Holding, partition: u32) -> Vec<u64> {
        let mut out = Vec::new();
        for rb in log.read("out", partition, 0, 1 << 20).unwrap() {
            let cols = event::columns(&rb.batch).unwrap();
            for row in cols.rows() {
                let v: serde_json::Value = serde_json::from_slice(row.value).unwrap();
                out.push(v["origin"].as_u64().unwrap());
            }
        }
        out
    }

    /// A step whose append to one partition is acknowledged and to another is not must not
    /// move that partition's checkpointed end: the scan after a crash starts there and would
    /// miss the marker, and the replay would write the step's outputs a second time.
    #[test]
    fn a_half_acknowledged_step_is_neither_lost_nor_repeated_after_a_crash() {
        let log = two_partitions();
        let (mut producer, from) = open(&log, Duration::from_secs(3600));
        assert_eq!(from, 0);
        step(&mut producer, [1, 2]);
        assert_eq!(producer.position(), 2);
        log.hold.store(true, Ordering::Release);
        step(&mut producer, [3, 4]);
        assert_eq!(producer.position(), 2, "partition 0 has not acknowledged");
        producer.interval = Duration::ZERO;
        producer.poll().unwrap();
        drop(producer); // the crash: partition 0's append of the second step is never written

        log.hold.store(false, Ordering::Release);
        let (mut producer, from) = open(&log, Duration::ZERO);
        assert_eq!(from, 2, "resumes after the first step");
        step(&mut producer, [3, 4]);
        producer.flush().unwrap();
        assert_eq!(producer.position(), 4);
        assert_eq!(origins_in(&log, 0), [1, 3], "partition 0 after the replay");
        assert_eq!(origins_in(&log, 1), [2, 4], "partition 1 after the replay");
    }
}
