//! What the sinks share: cursors over the input, batches read from it with a linger, the value
//! of a column or field taken from an event, the dead letters of refused rows, the id of the log
//! a sink's positions are in, and the backoff of a connector waiting for its server.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{FieldSource, Start};
use crate::connect::{SinkCtx, append_events};
use crate::event::{self, Event, Header};
use crate::flow::producer::Target;
use crate::flow::reader::Cursor;
use crate::log::LogError;

/// An event of a batch and where it is in the sink's input.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Input partition and offset.
    pub at: (u32, u64),
    pub event: Event,
}

/// Rows read for one write, and the input positions after them.
pub(crate) struct Batch {
    pub rows: Vec<Row>,
    /// Per input partition: the offset of the next event to read after this batch.
    pub positions: Vec<u64>,
    /// Every input is done (bounded run) or the sink is to stop: nothing more comes.
    pub last: bool,
}

/// The sink's input, read a batch at a time: up to `size` rows, waiting up to `linger` after
/// the first for more.
pub(crate) struct Gather {
    pub cursors: Vec<Cursor>,
    pub size: usize,
    pub linger: Duration,
}

impl Gather {
    /// Cursors over the input from `saved` positions (else the sink's `start`).
    pub fn open(
        ctx: &SinkCtx,
        saved: Option<&[u64]>,
        size: usize,
        linger: Duration,
    ) -> Result<Gather, LogError> {
        Ok(Gather {
            cursors: cursors(ctx, saved)?,
            size,
            linger,
        })
    }

    /// The positions the next batch starts at.
    pub fn positions(&self) -> Vec<u64> {
        self.cursors.iter().map(|c| c.position).collect()
    }

    /// Moves every cursor back to `positions` (a batch that was not written is read again).
    pub fn rewind(&mut self, ctx: &SinkCtx, positions: &[u64]) -> Result<(), LogError> {
        self.cursors = cursors(ctx, Some(positions))?;
        Ok(())
    }

    /// The next batch. Empty (and not `last`) when nothing came for a while: the caller can
    /// look after its connection and ask again.
    pub fn next(&mut self, ctx: &SinkCtx) -> Result<Batch, LogError> {
        let wait = if self.cursors.len() == 1 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(2)
        };
        let mut rows = Vec::new();
        let mut deadline: Option<Instant> = None;
        let started = Instant::now();
        loop {
            let mut all_done = true;
            for c in &mut self.cursors {
                let room = self.size - rows.len();
                if room == 0 {
                    all_done = false;
                    break;
                }
                match c.next(room, Duration::ZERO, wait)? {
                    Some(input) => {
                        all_done = false;
                        let cols = event::columns(&input.batch).expect("the log checked the batch");
                        for (i, row) in cols.rows().enumerate() {
                            rows.push(Row {
                                at: (c.partition, input.first + i as u64),
                                event: event::to_owned(&row),
                            });
                        }
                        deadline.get_or_insert_with(|| Instant::now() + self.linger);
                    }
                    None => {
                        if !ctx.ctl.input_done(&ctx.log, c) {
                            all_done = false;
                        }
                    }
                }
            }
            let halted = ctx.halted();
            let last = halted || all_done;
            let full = rows.len() >= self.size;
            let lingered = deadline.is_some_and(|d| Instant::now() >= d);
            let idle = rows.is_empty() && started.elapsed() >= Duration::from_millis(500);
            if last || full || lingered || idle {
                return Ok(Batch {
                    rows,
                    positions: self.positions(),
                    last,
                });
            }
        }
    }
}

/// What a sink wrote: its rows (or documents) and how long each batch's write took, counted in
/// the step's stats and the metrics (`flowgate_sink_events_total`,
/// `flowgate_sink_commit_seconds`) and kept for the sink's summary line.
pub(crate) struct Written {
    sink: String,
    rows: u64,
    batches: u64,
    took: Vec<Duration>,
}

/// How many batches' latencies a sink's summary is made of (the last ones).
pub(crate) const LATENCIES_KEPT: usize = 100_000;

impl Written {
    pub fn new(ctx: &SinkCtx) -> Written {
        Written {
            sink: ctx.config.name.clone(),
            rows: 0,
            batches: 0,
            took: Vec::new(),
        }
    }

    /// A batch of `rows` written in `took` (the summary's latencies are of the last
    /// [`LATENCIES_KEPT`] batches).
    pub fn batch(&mut self, ctx: &SinkCtx, rows: u64, took: Duration) {
        metrics::histogram!("flowgate_sink_commit_seconds", "sink" => self.sink.clone())
            .record(took.as_secs_f64());
        metrics::counter!("flowgate_sink_events_total", "sink" => self.sink.clone())
            .increment(rows);
        ctx.stats.events.fetch_add(rows, Ordering::Relaxed);
        self.rows += rows;
        self.batches += 1;
        if self.took.len() == LATENCIES_KEPT {
            self.took[(self.batches as usize - 1) % LATENCIES_KEPT] = took;
        } else {
            self.took.push(took);
        }
    }

    /// `<rows> <what> in <batches> batches; latency p50 <ms> ms, p99 <ms> ms`.
    pub fn summary(&self, what: &str) -> String {
        let mut took = self.took.clone();
        took.sort_unstable();
        let pct = |q: f64| {
            took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        format!(
            "{} {what} in {} batches; latency p50 {:.1} ms, p99 {:.1} ms",
            self.rows,
            self.batches,
            pct(0.5),
            pct(0.99)
        )
    }
}

/// Cursors over the input, from `saved` positions or the sink's `start`.
pub(crate) fn cursors(ctx: &SinkCtx, saved: Option<&[u64]>) -> Result<Vec<Cursor>, LogError> {
    let info = ctx.log.describe(&ctx.config.input)?;
    Ok((0..ctx.partitions)
        .map(|p| {
            let pi = &info.partitions[p as usize];
            let pos =
                saved
                    .and_then(|s| s.get(p as usize).copied())
                    .unwrap_or(match ctx.config.start {
                        Start::Earliest => pi.start_offset,
                        Start::Latest => pi.end_offset,
                    });
            let mut c = Cursor::new(ctx.log.clone(), &ctx.config.input, p, pos);
            ctx.ctl.apply_range(&mut c);
            c
        })
        .collect())
}

/// An event's value as JSON, parsed once and only when a field needs it.
pub(crate) struct Fields<'a> {
    pub input: &'a str,
    pub row: &'a Row,
    value: Option<Result<Value, String>>,
}

impl<'a> Fields<'a> {
    pub fn new(input: &'a str, row: &'a Row) -> Fields<'a> {
        Fields {
            input,
            row,
            value: None,
        }
    }

    /// The event's value as JSON; an error saying why it is not.
    pub fn value(&mut self) -> Result<&Value, String> {
        let row = self.row;
        let v = self.value.get_or_insert_with(|| {
            serde_json::from_slice(&row.event.value).map_err(|e| {
                format!(
                    "the event's value is not JSON ({e}); its first bytes: {:?}",
                    String::from_utf8_lossy(&row.event.value[..row.event.value.len().min(60)])
                )
            })
        });
        v.as_ref().map_err(Clone::clone)
    }

    /// The value `source` names (borrowed from the parsed value for a field of it): `Null`
    /// when the field, key or header is not there; an error when a field of the value is asked
    /// for and the value is not JSON.
    pub fn get(&mut self, source: &FieldSource) -> Result<Cow<'_, Value>, String> {
        let e = &self.row.event;
        Ok(Cow::Owned(match source {
            FieldSource::Value(path) => {
                let mut v = self.value()?;
                for name in path {
                    match v.get(name) {
                        Some(inner) => v = inner,
                        None => return Ok(Cow::Owned(Value::Null)),
                    }
                }
                return Ok(Cow::Borrowed(v));
            }
            FieldSource::Key => e.key.as_ref().map_or(Value::Null, |k| {
                Value::String(String::from_utf8_lossy(k).into_owned())
            }),
            FieldSource::Timestamp => Value::from(e.timestamp),
            FieldSource::Header(name) => header(&e.headers, name).map_or(Value::Null, |v| {
                Value::String(String::from_utf8_lossy(v).into_owned())
            }),
            FieldSource::Headers => Value::Object(
                e.headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.clone(),
                            Value::String(String::from_utf8_lossy(&h.value).into_owned()),
                        )
                    })
                    .collect::<Map<_, _>>(),
            ),
            FieldSource::Position => serde_json::json!({
                "topic": self.input,
                "partition": self.row.at.0,
                "offset": self.row.at.1,
            }),
        }))
    }
}

/// The value of the first header called `name`.
pub(crate) fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.as_slice())
}

/// Why a row goes to the dead-letter topic.
#[derive(Debug)]
pub(crate) struct Refused {
    pub row: Row,
    /// `flowgate-error-kind`: `format` (no value for the target), `refused` (the target said
    /// no).
    pub kind: &'static str,
    pub why: String,
}

/// Appends refused rows to `dead` (durably), each with why and where it came from, in the
/// headers every dead letter has.
pub(crate) fn dead_letter(
    ctx: &SinkCtx,
    dead: &Target,
    refused: Vec<Refused>,
) -> Result<(), LogError> {
    if refused.is_empty() {
        return Ok(());
    }
    let name = &ctx.config.name;
    let mut events = Vec::with_capacity(refused.len());
    for r in refused {
        let (p, offset) = r.row.at;
        tracing::warn!(sink = %name, partition = p, offset, "event sent to the dead-letter topic: {}", r.why);
        let mut e = r.row.event;
        for (k, v) in [
            ("flowgate-sink", name.clone()),
            ("flowgate-error-kind", r.kind.to_owned()),
            ("flowgate-error", r.why),
            ("flowgate-topic", ctx.config.input.clone()),
            ("flowgate-partition", p.to_string()),
            ("flowgate-offset", offset.to_string()),
        ] {
            e.headers.push(Header {
                name: k.to_owned(),
                value: v.into_bytes(),
            });
        }
        events.push(e);
    }
    ctx.stats
        .dead_letters
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    metrics::counter!("flowgate_sink_dead_letters_total", "sink" => name.clone())
        .increment(events.len() as u64);
    append_events(&ctx.log, dead, &events, 0)?;
    Ok(())
}

/// The dead-letter topic of a sink, as a target to append to.
pub(crate) fn dead_target(ctx: &SinkCtx, topic: &str) -> Result<Target, LogError> {
    let info = ctx.log.describe(topic)?;
    Ok(Target {
        topic: topic.to_owned(),
        partitions: info.partitions.len() as u32,
    })
}

/// The id of the log a sink reads, kept in the sink's checkpoint in the data directory: made
/// (and saved) at the sink's first start on this log. A sink that keeps its positions in its
/// target keeps this id with them: positions of another log (the data directory was deleted
/// and made anew) are not this one's.
pub(crate) fn log_id(ctx: &SinkCtx) -> Result<String, LogError> {
    #[derive(Serialize, Deserialize)]
    struct Id {
        log: String,
    }
    let name = format!("{}.sink.{}.log-id", ctx.pipeline, ctx.config.name);
    if let Some(b) = ctx.log.load_checkpoint(&name)? {
        // An id that cannot be read is not made anew: positions kept with it would then be
        // taken for another log's, and the input written again (or skipped).
        return serde_json::from_slice::<Id>(&b).map(|id| id.log).map_err(|e| {
            LogError::Invalid(format!(
                "checkpoint {name} is not readable ({e}); delete checkpoints/{name}.ckpt in the data directory to give this log a new id (the sink then starts over at its `start`)"
            ))
        });
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = Id {
        log: format!("{:x}-{:x}", nanos, std::process::id()),
    };
    ctx.log
        .save_checkpoint(&name, &serde_json::to_vec(&id).expect("serialises"))?;
    Ok(id.log)
}

/// Waits `backoff` (in steps of 20 ms, returning early when `stopped` says so) and doubles it
/// up to `max`.
pub(crate) fn back_off(backoff: &mut Duration, max: Duration, mut stopped: impl FnMut() -> bool) {
    let until = Instant::now() + *backoff;
    while !stopped() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(20).min(until - now));
    }
    *backoff = (*backoff * 2).min(max);
}
