//! A stage worker: reads its input partitions, calls the plugin per event or per batch, routes
//! the outputs, handles failed events by the stage's error policy, and commits its position once
//! the outputs are durable.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Mode, OnError, Output, StageConfig};
use crate::event::{self, Batch, BatchBuilder, Columns, EventRef};
use crate::flow::failure::{DeadLetter, RowError};
use crate::flow::producer::{Changelog, Producer, Routed, StateStore, Target, partition_for};
use crate::flow::reader::{Cursor, Input};
use crate::flow::{Ctl, StageStats, Stopped};
use crate::log::{EventLog, Fence};
use crate::reload::{Probation, StageSlot, Verdict};
use crate::runtime::StageInstance;
use crate::state::{SharedState, WindowState, fired_batch};

/// What every worker of a stage shares.
#[derive(Clone)]
pub(crate) struct StageShared {
    pub pipeline: String,
    pub config: StageConfig,
    pub slot: Arc<StageSlot>,
    /// Set to stop this stage alone (a pipeline edit removed or changed it).
    pub stop: Arc<AtomicBool>,
    pub log: Arc<dyn EventLog>,
    pub ctl: Arc<Ctl>,
    pub stats: Arc<StageStats>,
    pub exactly_once: bool,
    pub commit_interval: Duration,
    /// Output topics first, then the dead-letter topic if the policy uses it.
    pub targets: Vec<Target>,
    pub dead_letters: Option<usize>,
    /// The `late-output` topic's target.
    pub late: Option<usize>,
    /// On a log several processes share: the membership of the stage's group, which every
    /// append carries (an append of a process no longer in the group is not written).
    pub fence: Option<Fence>,
    /// On a log several processes share, for a stage with state: its changelog topic.
    pub changelog: Option<String>,
}

impl StageShared {
    fn target(&self, topic: &str) -> usize {
        self.targets
            .iter()
            .position(|t| t.topic == topic)
            .expect("every output topic is a target")
    }
}

impl StageShared {
    fn halted(&self) -> bool {
        self.ctl.stopping() || self.stop.load(Ordering::Acquire)
    }
}

struct Part {
    cursor: Cursor,
    producer: Producer,
    instance: StageInstance,
    /// The version `instance` runs.
    version: u64,
    /// The instance it replaced, kept while the new version is on probation.
    previous: Option<(u64, StageInstance)>,
    probation: Option<Probation>,
    finished: bool,
    /// Keyed state (and windows) of this stage on this partition, when granted.
    state: Option<SharedState>,
    /// The plugin wrote host headers and was told so (once).
    warned_host_headers: bool,
}

/// At a batch boundary: follows the slot to its live version (a new one, or back to the previous
/// one after a roll-back).
fn follow_slot(s: &StageShared, part: &mut Part) -> Result<(), Stopped> {
    let live = s.slot.current();
    if live.id == part.version {
        return Ok(());
    }
    let started = Instant::now();
    let p = part.cursor.partition;
    if part.previous.as_ref().is_some_and(|(id, _)| *id == live.id) {
        let (id, inst) = part.previous.take().expect("checked");
        part.instance = inst;
        part.version = id;
        part.probation = None;
    } else {
        let inst = s.slot.instance_for(&live, p).map_err(|e| {
            s.ctl.fail(format!(
                "stage `{}` partition {p}: the new plugin version failed to start: {e}",
                s.config.name
            ))
        })?;
        let mut inst = inst;
        inst.attach_stage(&s.config.name, s.ctl.interrupt.clone());
        if let Some(state) = &part.state {
            inst.attach_state(state.clone());
        }
        let old = std::mem::replace(&mut part.instance, inst);
        part.previous = Some((part.version, old));
        part.version = live.id;
        part.probation = Some(Probation::new());
    }
    s.slot.swapped(&live, started.elapsed());
    Ok(())
}

/// Runs one worker over `partitions` until the pipeline stops or (bounded) its input is done.
pub(crate) fn run(shared: Arc<StageShared>, partitions: Vec<u32>) -> Result<(), Stopped> {
    let s = &*shared;
    let name = &s.config.name;
    let mut parts = Vec::new();
    for p in partitions {
        let id = format!("{}/{name}/{p}", s.pipeline);
        let ckpt = format!("{}.stage.{name}.{p}", s.pipeline);
        let input = s.config.input.clone();
        let log = s.log.clone();
        let start = s.config.start;
        let state = s
            .config
            .state
            .then(|| SharedState::new(s.config.max_state_bytes));
        let (mut producer, position) = Producer::open(
            s.log.clone(),
            id,
            ckpt,
            s.targets.clone(),
            s.exactly_once,
            s.commit_interval,
            state.clone().map(|state| StateStore {
                state,
                changelog: s.changelog.clone().map(|topic| Changelog {
                    topic,
                    partition: p,
                }),
            }),
            || {
                let info = log.describe(&input)?;
                let pi = &info.partitions[p as usize];
                Ok(match start {
                    crate::config::Start::Earliest => pi.start_offset,
                    crate::config::Start::Latest => pi.end_offset,
                })
            },
        )
        .map_err(|e| s.ctl.fail(format!("stage `{name}` partition {p}: {e}")))?;
        if let Some(fence) = &s.fence {
            producer.fence(fence.clone(), p);
        }
        let live = s.slot.current();
        let mut instance = s.slot.instance_for(&live, p).map_err(|e| {
            s.ctl.fail(format!(
                "stage `{name}`: plugin {} failed to start: {e}",
                s.config.plugin.display()
            ))
        })?;
        instance.attach_stage(name, s.ctl.interrupt.clone());
        if let Some(state) = &state {
            instance.attach_state(state.clone());
        }
        tracing::debug!(stage = %name, partition = p, position, "stage partition starting");
        let mut cursor = Cursor::new(s.log.clone(), &s.config.input, p, position);
        s.ctl.apply_range(&mut cursor);
        parts.push(Part {
            cursor,
            producer,
            instance,
            version: live.id,
            previous: None,
            probation: None,
            finished: false,
            state,
            warned_host_headers: false,
        });
    }
    let mut traps: VecDeque<Instant> = VecDeque::new();
    let mut pause = Duration::from_secs(1);
    let mut last_pause: Option<Instant> = None;
    let mut lag_at = Instant::now();
    let wait = if parts.len() == 1 {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(2)
    };
    while !s.halted() && parts.iter().any(|p| !p.finished) {
        for part in parts.iter_mut().filter(|p| !p.finished) {
            follow_slot(s, part)?;
            let input = part
                .cursor
                .next(s.config.batch_size, s.config.linger, wait)
                .map_err(|e| s.ctl.fail(format!("stage `{name}` reading: {e}")))?;
            match input {
                Some(input) => {
                    // A version that went live while this worker waited for the batch takes it:
                    // every batch read after a deploy (or a reload) returned meets the new one.
                    follow_slot(s, part)?;
                    process(s, part, &input, &mut traps)?;
                }
                None => {
                    part.producer
                        .poll()
                        .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
                    if s.ctl.input_done(&s.log, &part.cursor) {
                        close_windows(s, part)?;
                        part.producer
                            .flush()
                            .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
                        part.finished = true;
                    }
                }
            }
        }
        if lag_at.elapsed() >= Duration::from_secs(1) {
            lag_at = Instant::now();
            for part in &parts {
                let lag = s.ctl.lag(&s.log, &part.cursor);
                metrics::gauge!("flowgate_stage_lag", "stage" => name.clone(), "partition" => part.cursor.partition.to_string())
                    .set(lag as f64);
                s.stats.positions[part.cursor.partition as usize]
                    .store(part.cursor.position, Ordering::Relaxed);
                if let Some(state) = &part.state {
                    let st = state.lock();
                    let p = part.cursor.partition.to_string();
                    metrics::gauge!("flowgate_stage_state_bytes", "stage" => name.clone(), "partition" => p.clone())
                        .set((st.bytes() + st.windows.bytes()) as f64);
                    metrics::gauge!("flowgate_stage_windows_open", "stage" => name.clone(), "partition" => p)
                        .set(st.windows.len() as f64);
                }
            }
        }
        // A trap storm pauses the stage (not the process), with backoff.
        let minute = Instant::now() - Duration::from_secs(60);
        while traps.front().is_some_and(|t| *t < minute) {
            traps.pop_front();
        }
        if traps.len() > s.config.max_traps_per_minute as usize {
            if last_pause.is_some_and(|t| t.elapsed() > Duration::from_secs(120)) {
                pause = Duration::from_secs(1);
            }
            tracing::warn!(stage = %name, traps = traps.len(), pause = ?pause, "the plugin trapped {} times in a minute (max-traps-per-minute = {}); pausing the stage", traps.len(), s.config.max_traps_per_minute);
            s.stats.pauses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flowgate_stage_pauses_total", "stage" => name.clone()).increment(1);
            metrics::gauge!("flowgate_stage_paused", "stage" => name.clone()).set(1.0);
            for part in &mut parts {
                part.producer
                    .poll()
                    .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
            }
            s.ctl.sleep(pause, &s.stop);
            metrics::gauge!("flowgate_stage_paused", "stage" => name.clone()).set(0.0);
            traps.clear();
            last_pause = Some(Instant::now());
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }
    for part in &mut parts {
        s.stats.positions[part.cursor.partition as usize]
            .store(part.cursor.position, Ordering::Relaxed);
        part.producer
            .flush()
            .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
    }
    Ok(())
}

/// A failed input row and how many calls it took.
struct Failed {
    row: u32,
    error: RowError,
    attempts: u32,
}

/// Calls the plugin on a batch (per event or per batch, with retries).
fn call(
    s: &StageShared,
    part: &mut Part,
    input: &Input,
    cols: &Columns<'_>,
) -> Result<Called, Stopped> {
    let name = &s.config.name;
    let n = input.len();
    let started = Instant::now();
    let mut failures: Vec<Failed> = Vec::new();
    let mut late = Vec::new();
    // Outputs of the plugin: one batch and the input row of each output row.
    let (output, origins): (Batch, Vec<u32>) = match (&s.config.window, s.config.mode) {
        (Some(w), _) => {
            let state = part.state.as_ref().expect("a stage with windows has state");
            let mut windows = {
                // Panes count against max-state-bytes with the keyed entries.
                let mut st = state.lock();
                let cap = st.max_bytes().saturating_sub(st.bytes());
                let mut windows = std::mem::take(&mut st.windows);
                windows.cap = Some(cap);
                windows
            };
            let wm = windows.watermark(w);
            let result = windows.process(w, &mut part.instance, &input.batch, cols);
            state.lock().windows = windows;
            let out = result.map_err(|e| {
                if e.is_interrupted() {
                    // Shutting down: nothing of this batch is committed.
                    return Stopped;
                }
                s.ctl.fail(format!(
                    "stage `{name}` on {}/{} at offset {}: {e}; the stage stopped. It resumes from its last checkpoint",
                    s.config.input, part.cursor.partition, input.first
                ))
            })?;
            let plugin = part.instance.plugin().info().name.clone();
            failures.extend(out.failures.into_iter().map(|(row, failure)| Failed {
                row,
                error: RowError::of_windows(&plugin, failure),
                attempts: 1,
            }));
            if s.late.is_some() {
                late = out.late;
            } else {
                failures.extend(out.late.into_iter().map(|row| Failed {
                    row,
                    error: RowError::Late {
                        plugin: plugin.clone(),
                        message: format!(
                            "event time {} is before every open window (watermark {wm} or later, allowed lateness {} ms); set late-output to keep late events in a topic",
                            cols.row(row as usize).timestamp,
                            w.allowed_lateness
                        ),
                    },
                    attempts: 1,
                }));
            }
            s.stats
                .windows_fired
                .fetch_add(out.fired.len() as u64, Ordering::Relaxed);
            metrics::counter!("flowgate_stage_windows_fired_total", "stage" => name.clone())
                .increment(out.fired.len() as u64);
            fired_batch(&out.fired)
        }
        (None, Mode::Event) => {
            let mut b = BatchBuilder::with_capacity(n, input.batch.values.data.len());
            let mut origins = Vec::with_capacity(n);
            for (i, row) in cols.rows().enumerate() {
                match part.instance.on_event_owned(event::to_owned(&row)) {
                    Ok(events) => {
                        for e in &events {
                            event::push_event(&mut b, e);
                            origins.push(i as u32);
                        }
                    }
                    Err(error) => failures.push(Failed {
                        row: i as u32,
                        error: error.into(),
                        attempts: 1,
                    }),
                }
            }
            (event::finish(b), origins)
        }
        (None, Mode::Batch) => match part.instance.process_batch(&input.batch) {
            Ok(out) => {
                failures.extend(out.failures.into_iter().map(|f| Failed {
                    row: f.row,
                    error: f.error.into(),
                    attempts: 1,
                }));
                (out.output, out.origins)
            }
            Err(error) => {
                failures.extend((0..n as u32).map(|row| Failed {
                    row,
                    error: RowError::Call(error.clone()),
                    attempts: 1,
                }));
                (event::finish(BatchBuilder::default()), Vec::new())
            }
        },
    };
    metrics::histogram!("flowgate_stage_call_seconds", "stage" => name.clone())
        .record(started.elapsed().as_secs_f64());
    // Headers under `flowgate-` are the host's: a plugin's are dropped (window results carry
    // only headers the host wrote).
    let (output, mut dropped) = if s.config.window.is_some() {
        (output, 0)
    } else {
        event::without_headers(output, event::HOST_HEADER_PREFIX.as_bytes())
    };
    let (output, origins) = over_record_limits(s, part, output, origins, &mut failures);

    // Retries of retryable errors, one event at a time, with backoff.
    let mut retried = BatchBuilder::default();
    let mut retried_origins = Vec::new();
    if s.config.on_error == OnError::Retry {
        for f in failures.iter_mut().filter(|f| f.error.is_retryable()) {
            let mut backoff = s.config.retry.backoff;
            let row = event::to_owned(&cols.row(f.row as usize));
            while f.attempts < s.config.retry.attempts && f.error.is_retryable() {
                s.ctl.sleep(backoff, &s.stop);
                if s.halted() {
                    // Nothing of this batch is committed; it is processed again on restart.
                    return Err(Stopped);
                }
                backoff = (backoff * 2).min(s.config.retry.max_backoff);
                f.attempts += 1;
                s.stats.retries.fetch_add(1, Ordering::Relaxed);
                match part.instance.on_event(&row) {
                    Ok(events) => {
                        for e in &events {
                            event::push_event(&mut retried, e);
                            retried_origins.push(f.row);
                        }
                        f.attempts = 0;
                        break;
                    }
                    Err(e) => f.error = e.into(),
                }
            }
        }
        failures.retain(|f| f.attempts > 0);
    }
    if failures.iter().any(|f| f.error.is_interrupted()) {
        // The host is shutting down and stopped the call: nothing of this batch is committed;
        // it is processed again on restart.
        return Err(Stopped);
    }
    let (retried, more) =
        event::without_headers(event::finish(retried), event::HOST_HEADER_PREFIX.as_bytes());
    dropped += more;
    let (retried, retried_origins) =
        over_record_limits(s, part, retried, retried_origins, &mut failures);
    if dropped > 0 {
        metrics::counter!("flowgate_stage_host_headers_dropped_total", "stage" => name.clone())
            .increment(dropped as u64);
        if !part.warned_host_headers {
            part.warned_host_headers = true;
            tracing::warn!(stage = %name, dropped, "the plugin wrote headers named flowgate-…, which only the host writes; they are dropped (counted in flowgate_stage_host_headers_dropped_total)");
        }
    }
    Ok(Called {
        output,
        origins,
        failures,
        retried,
        retried_origins,
        late,
    })
}

/// Why a record is over the stage's record limits, with the pipeline key that raises the limit.
fn record_limit_message(s: &StageShared, e: &event::RecordLimitError) -> String {
    let key = e.key();
    format!(
        "an output of this event: {e}; raise {key} in the pipeline file's [limits] (or in [stages.{}] for this stage alone) if such records are meant",
        s.config.name
    )
}

/// Takes the output rows over the stage's record limits out of `output` (with their entries of
/// `origins`) and fails the input rows they came from, naming the limit. Per event and per batch
/// every output of such an input row is taken out (a failed row has no outputs); a window
/// result is taken out alone, failing the row it fired at. A batch whose buffers fit the
/// limits as a whole is returned as it is, without a walk over its rows.
fn over_record_limits(
    s: &StageShared,
    part: &Part,
    output: Batch,
    origins: Vec<u32>,
    failures: &mut Vec<Failed>,
) -> (Batch, Vec<u32>) {
    let limits = &s.config.record_limits;
    if limits.fits_whole(&output) {
        return (output, origins);
    }
    let cols = event::columns(&output).expect("checked by the runtime");
    let mut over = vec![false; cols.len()];
    let mut failed: BTreeMap<u32, String> = BTreeMap::new();
    for (i, (row, &origin)) in cols.rows().zip(&origins).enumerate() {
        if let Err(e) = limits.check(&row) {
            failed
                .entry(origin)
                .or_insert_with(|| record_limit_message(s, &e));
            over[i] = true;
        }
    }
    if failed.is_empty() {
        return (output, origins);
    }
    let windows = s.config.window.is_some();
    let mut b = BatchBuilder::with_capacity(cols.len(), 0);
    let mut kept = Vec::with_capacity(origins.len());
    for (i, (row, &origin)) in cols.rows().zip(&origins).enumerate() {
        let drop = if windows {
            over[i]
        } else {
            failed.contains_key(&origin)
        };
        if !drop {
            b.push_ref(&row);
            kept.push(origin);
        }
    }
    let plugin = part.instance.plugin().info().name.clone();
    for (row, message) in failed {
        tracing::debug!(stage = %s.config.name, row, "{message}");
        if failures.iter().any(|f| f.row == row) {
            continue;
        }
        failures.push(Failed {
            row,
            error: RowError::RecordLimit {
                plugin: plugin.clone(),
                message,
            },
            attempts: 1,
        });
    }
    (event::finish(b), kept)
}

/// At the end of a bounded input: fires every open window and drops them.
fn close_windows(s: &StageShared, part: &mut Part) -> Result<(), Stopped> {
    let (Some(_), Some(state)) = (&s.config.window, &part.state) else {
        return Ok(());
    };
    let mut windows = std::mem::take(&mut state.lock().windows);
    if windows.is_empty() {
        state.lock().windows = windows;
        return Ok(());
    }
    let result = windows.close_all(&mut part.instance);
    state.lock().windows = windows;
    let fired = result.map_err(|e| {
        s.ctl.fail(format!(
            "stage `{}` closing its windows: {e}",
            s.config.name
        ))
    })?;
    let (output, _) = fired_batch(&fired);
    let cols = event::columns(&output).expect("built here");
    let position = part.cursor.position;
    let mut routed: Vec<Routed<'_>> = Vec::with_capacity(cols.len());
    for row in cols.rows() {
        if let Err(e) = s.config.record_limits.check(&row) {
            // Like an unroutable result: no input event to dead-letter, counted and logged.
            s.stats.failed(&s.config.name, "record-limit");
            tracing::error!(stage = %s.config.name, limit = e.key(), "a closing window result is dropped: {}", record_limit_message(s, &e));
            continue;
        }
        if let Err(message) = route(s, part.cursor.partition, row, position, &mut routed) {
            // A window result has no input event to dead-letter: counted and logged.
            s.stats.failed(&s.config.name, "no-route");
            tracing::error!(stage = %s.config.name, "a closing window result is dropped: {message}");
        }
    }
    s.stats
        .windows_fired
        .fetch_add(fired.len() as u64, Ordering::Relaxed);
    count(s, 0, routed.len() as u64);
    part.producer
        .send_closing(&routed, position)
        .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
    state.lock().commit();
    Ok(())
}

/// Routes one output row (from the input before position `origin`) to its topics: every
/// output topic, or the one its route header names. `Err` says why no route fits.
fn route<'a>(
    s: &StageShared,
    input_partition: u32,
    row: EventRef<'a>,
    origin: u64,
    routed: &mut Vec<Routed<'a>>,
) -> Result<(), String> {
    let mut push = |topic: &str| {
        let t = s.target(topic);
        routed.push(Routed {
            target: t,
            partition: partition_for(row.key, s.targets[t].partitions, u64::from(input_partition)),
            origin,
            row,
        });
    };
    match &s.config.output {
        Output::Topics(topics) => {
            topics.iter().for_each(|t| push(t));
            Ok(())
        }
        Output::Route {
            header,
            topics,
            default,
        } => {
            let value = row.header(header);
            let topic = value
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| topics.get(v))
                .or(default.as_ref());
            match (topic, value) {
                (Some(t), _) => {
                    push(t);
                    Ok(())
                }
                (None, Some(v)) => Err(format!(
                    "output header `{header}` = {:?} names no route (routes: {})",
                    String::from_utf8_lossy(v),
                    topics.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                (None, None) => Err(format!(
                    "output has no `{header}` header and the route has no default"
                )),
            }
        }
    }
}

/// What the plugin made of a batch.
struct Called {
    output: Batch,
    origins: Vec<u32>,
    failures: Vec<Failed>,
    retried: Batch,
    retried_origins: Vec<u32>,
    /// Input rows too late for their windows (to the `late-output` topic).
    late: Vec<u32>,
}

fn process(
    s: &StageShared,
    part: &mut Part,
    input: &Input,
    traps: &mut VecDeque<Instant>,
) -> Result<(), Stopped> {
    // Checked once per batch, read by the call (per event, retries) and by the delivery.
    let cols = event::columns(&input.batch).expect("the log checked the batch");
    // What the state was before the batch, to take back if the new version is rolled back.
    let before: Option<(usize, Option<WindowState>)> = match (&part.state, &part.probation) {
        (Some(state), Some(_)) => {
            let st = state.lock();
            Some((st.mark(), s.config.window.map(|_| st.windows.clone())))
        }
        _ => None,
    };
    let mut called = call(s, part, input, &cols)?;
    let verdict = part
        .probation
        .as_mut()
        .map(|pr| pr.record(input.len() as u64, called.failures.len() as u64));
    match verdict {
        Some(Verdict::RollBack { failures, events }) => {
            let last = called
                .failures
                .last()
                .map(|f| f.error.to_string())
                .unwrap_or_default();
            let reason = format!(
                "new version failed {failures} of its first {events} events (last: {last})"
            );
            s.slot.roll_back(part.version, reason);
            if let (Some(state), Some((mark, windows))) = (&part.state, before) {
                let mut st = state.lock();
                st.roll_back(mark);
                if let Some(w) = windows {
                    st.windows = w;
                }
            }
            // Back to the previous instance, and the batch again with it.
            follow_slot(s, part)?;
            called = call(s, part, input, &cols)?;
        }
        Some(Verdict::Trusted) => {
            s.slot.confirm(part.version);
            part.previous = None;
            part.probation = None;
        }
        Some(Verdict::Undecided) | None => {}
    }
    deliver(s, part, input, &cols, called, traps)?;
    if let Some(state) = &part.state {
        state.lock().commit();
    }
    Ok(())
}

/// Routes the outputs, handles the failed events by policy, and appends.
fn deliver(
    s: &StageShared,
    part: &mut Part,
    input: &Input,
    cols: &Columns<'_>,
    called: Called,
    traps: &mut VecDeque<Instant>,
) -> Result<(), Stopped> {
    let Called {
        output,
        origins,
        mut failures,
        retried,
        retried_origins,
        late,
    } = called;
    let name = &s.config.name;
    let n = input.len();

    // The common case: every input went through, to one topic and one partition. The plugin's
    // output batch is appended as it is, without copying its rows.
    if failures.is_empty()
        && retried_origins.is_empty()
        && late.is_empty()
        && let Output::Topics(topics) = &s.config.output
        && let [topic] = topics.as_slice()
    {
        let t = s.target(topic);
        let partitions = s.targets[t].partitions;
        let p = part.cursor.partition;
        let (one_partition, target_p, outputs) = if output.has_key.iter().all(|&k| k == 0) {
            // No keys: every row goes to the input partition's counterpart.
            (true, p % partitions, output.timestamps.len() as u64)
        } else {
            let out_cols = event::columns(&output).expect("checked by the runtime");
            let mut rows = out_cols
                .rows()
                .map(|r| partition_for(r.key, partitions, u64::from(p)));
            let target_p = rows.next().unwrap_or(p % partitions);
            (rows.all(|q| q == target_p), target_p, out_cols.len() as u64)
        };
        if one_partition && !part.producer.replaying(t, target_p, input.first) {
            count(s, n as u64, outputs);
            part.producer
                .send_whole(t, target_p, output, input.first + n as u64)
                .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
            return Ok(());
        }
    }

    // Route the outputs, in input order.
    let mut routed: Vec<Routed<'_>> = Vec::with_capacity(origins.len());
    let out_cols = event::columns(&output).expect("checked by the runtime");
    let retried_cols = event::columns(&retried).expect("built here");
    let mut rows: Vec<(u32, EventRef<'_>)> = out_cols
        .rows()
        .zip(origins.iter().copied())
        .map(|(r, o)| (o, r))
        .chain(
            retried_cols
                .rows()
                .zip(retried_origins.iter().copied())
                .map(|(r, o)| (o, r)),
        )
        .collect();
    rows.sort_by_key(|(o, _)| *o);
    let mut no_route: BTreeMap<u32, String> = BTreeMap::new();
    let p = part.cursor.partition;
    for (origin, row) in rows {
        let at = input.first + u64::from(origin) + 1;
        if let Err(message) = route(s, p, row, at, &mut routed) {
            no_route.entry(origin).or_insert(message);
        }
    }
    for (row, message) in no_route {
        routed.retain(|r| r.origin != input.first + u64::from(row) + 1);
        failures.push(Failed {
            row,
            error: RowError::NoRoute {
                plugin: part.instance.plugin().info().name.clone(),
                message,
            },
            attempts: 1,
        });
    }

    // Failed events, by policy.
    failures.sort_by_key(|f| f.row);
    let mut dead = BatchBuilder::default();
    let mut dead_origins = Vec::new();
    for f in &failures {
        let kind = f.error.kind_name();
        s.stats.failed(name, kind);
        if f.error.is_trap() {
            traps.push_back(Instant::now());
        }
        let offset = input.first + u64::from(f.row);
        match s.config.on_error {
            OnError::DeadLetter | OnError::Retry => {
                let row = cols.row(f.row as usize);
                let ctx = DeadLetter {
                    stage: name,
                    plugin: part.instance.plugin().info(),
                    error: &f.error,
                    topic: &s.config.input,
                    partition: p,
                    offset,
                    attempts: f.attempts,
                }
                .headers();
                dead.push(
                    row.key,
                    row.value,
                    row.timestamp,
                    row.headers
                        .iter()
                        .chain(ctx.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))),
                );
                dead_origins.push(f.row);
                s.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flowgate_stage_dead_letters_total", "stage" => name.clone())
                    .increment(1);
                tracing::debug!(stage = %name, topic = %s.config.input, partition = p, offset, error = %f.error, "event sent to the dead-letter topic");
            }
            OnError::Skip => {
                s.stats.skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flowgate_stage_skipped_total", "stage" => name.clone())
                    .increment(1);
                tracing::warn!(stage = %name, topic = %s.config.input, partition = p, offset, error = %f.error, "event skipped (on-error = \"skip\")");
            }
            OnError::Fail => {
                return Err(s.ctl.fail(format!(
                    "stage `{name}` failed on {}/{p} offset {offset}: {}; the pipeline stopped (on-error = \"fail\"). Fix the plugin or the event and run again: the stage resumes at or before offset {offset}",
                    s.config.input, f.error
                )));
            }
        }
    }
    if let Some(t) = s.late {
        for &row in &late {
            let r = cols.row(row as usize);
            routed.push(Routed {
                target: t,
                partition: partition_for(r.key, s.targets[t].partitions, u64::from(p)),
                origin: input.first + u64::from(row) + 1,
                row: r,
            });
        }
        s.stats.late.fetch_add(late.len() as u64, Ordering::Relaxed);
        metrics::counter!("flowgate_stage_late_events_total", "stage" => name.clone())
            .increment(late.len() as u64);
    }
    let dead = event::finish(dead);
    let dead_cols: Columns<'_> = event::columns(&dead).expect("built here");
    if let Some(t) = s.dead_letters {
        for (row, origin) in dead_cols.rows().zip(dead_origins) {
            routed.push(Routed {
                target: t,
                partition: p % s.targets[t].partitions,
                origin: input.first + u64::from(origin) + 1,
                row,
            });
        }
    }
    let outputs = routed
        .iter()
        .filter(|r| Some(r.target) != s.dead_letters && Some(r.target) != s.late)
        .count();
    // Routed rows go out in input order (the late rows were added after the outputs).
    routed.sort_by_key(|r| r.origin);
    count(s, n as u64, outputs as u64);
    part.producer
        .send(&routed, input.first + n as u64)
        .map_err(|e| s.ctl.log_failed("", e, &s.stop))?;
    Ok(())
}

fn count(s: &StageShared, inputs: u64, outputs: u64) {
    let name = &s.config.name;
    s.stats.events_in.fetch_add(inputs, Ordering::Relaxed);
    s.stats.events_out.fetch_add(outputs, Ordering::Relaxed);
    metrics::counter!("flowgate_stage_events_in_total", "stage" => name.clone()).increment(inputs);
    metrics::counter!("flowgate_stage_events_out_total", "stage" => name.clone())
        .increment(outputs);
}
