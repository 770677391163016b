//! Dead letters: listing those of a dead-letter topic and sending them back (a redrive) to the
//! input of the stage that failed them, once the plugin is fixed.
//!
//! A dead letter is the failed event (its key, value, time and own headers) with the context
//! headers a stage adds (`flowgate-stage`, `flowgate-topic`, `flowgate-partition`, …; see
//! `flow::failure::DeadLetter`). A redrive appends the event without the context to
//! the partition of the input topic it was read from, with `x-flowgate-redriven: <n>` (one more
//! than it carried), so a redriven event that fails again is dead-lettered with its count.
//!
//! Exactly once: a redrive is a step of its own over the dead-letter topic, with a checkpoint
//! and the markers of the step outputs (`flow::producer`), named after the topic and the filters. It
//! reads each partition from its checkpoint to the end the partition had when the redrive began,
//! so a redrive killed in the middle and asked again with the same filters sends each dead
//! letter once; dead letters that came later (a redriven event that failed again, say) wait for
//! the next redrive.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::Running;
use crate::event::{self, BatchBuilder, EventRef};
use crate::flow::producer::{Producer, Routed, Target};
use crate::log::LogError;

/// The header counting how many times an event was redriven. Not under `flowgate-` (the host's
/// own headers, which a stage does not pass on): plugins see it, and it stays on the outputs a
/// plugin makes of the event as its other headers do.
pub const REDRIVEN_HEADER: &str = "x-flowgate-redriven";

/// Which dead letters a listing or a redrive takes.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Failed by this stage only.
    pub stage: Option<String>,
    /// Appended at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Of this error kind only (`invalid-input`, `timeout`, …).
    pub kind: Option<String>,
    /// These dead letters only (partition and offset in the dead-letter topic): a selection,
    /// as the dashboard makes.
    pub at: Option<BTreeSet<(u32, u64)>>,
}

/// A dead letter's context, from its headers.
struct Context<'a> {
    stage: &'a str,
    kind: &'a str,
    topic: &'a str,
    partition: Option<u32>,
    redriven: u64,
}

fn header<'a>(row: &EventRef<'a>, name: &str) -> Option<&'a str> {
    row.headers
        .iter()
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn context<'a>(row: &EventRef<'a>) -> Option<Context<'a>> {
    Some(Context {
        stage: header(row, "flowgate-stage")?,
        kind: header(row, "flowgate-error-kind").unwrap_or_default(),
        topic: header(row, "flowgate-topic")?,
        partition: header(row, "flowgate-partition").and_then(|p| p.parse().ok()),
        redriven: header(row, REDRIVEN_HEADER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

impl Filter {
    fn takes(&self, at: (u32, u64), row: &EventRef<'_>, c: &Context<'_>) -> bool {
        self.at.as_ref().is_none_or(|set| set.contains(&at))
            && self.stage.as_deref().is_none_or(|s| s == c.stage)
            && self.kind.as_deref().is_none_or(|k| k == c.kind)
            && self.since.is_none_or(|t| row.timestamp >= t)
    }

    /// A name for the redrive step of these filters (a checkpoint of its own).
    fn step_name(&self, topic: &str) -> String {
        let name = format!(
            "dlq-redrive.{topic}.{}.{}.{}",
            self.stage.as_deref().unwrap_or("*"),
            self.kind.as_deref().unwrap_or("*"),
            self.since.map_or("*".into(), |t| t.to_string())
        );
        // A selection is named by its hash: the same selection asked again resumes its step.
        let name = match &self.at {
            Some(set) => {
                let listed: Vec<String> = set.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                let hash = crate::runtime::hash_of(listed.join(",").as_bytes());
                format!("{name}.at-{}", &hash[..16])
            }
            None => name,
        };
        crate::log::safe_name(&name, 200)
    }
}

fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => json!({ "bytes": bytes.len() }),
    }
}

impl Running {
    /// The dead letters of `topic` the filter takes, oldest first, at most `limit`: each with
    /// its coordinates in the dead-letter topic, time, stage, plugin and hash, error kind and
    /// message, input coordinates, redrive count, key and value (as text when they are UTF-8).
    pub fn dead_letters(
        &self,
        topic: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Value>, LogError> {
        let info = self.log.describe(topic)?;
        let mut out = Vec::new();
        for pi in &info.partitions {
            let p = pi.partition;
            let from = match filter.since {
                Some(t) => self.log.offset_for_time(topic, p, t)?,
                None => pi.start_offset,
            };
            crate::flow::producer::rows_from(
                &*self.log,
                topic,
                p,
                from,
                Some(pi.end_offset),
                |offset, row| {
                    if out.len() >= limit {
                        return Ok(());
                    }
                    let Some(c) = context(&row) else {
                        return Ok(());
                    };
                    if filter.takes((p, offset), &row, &c) {
                        out.push(json!({
                            "partition": p,
                            "offset": offset,
                            "time": row.timestamp,
                            "stage": c.stage,
                            "plugin": header(&row, "flowgate-plugin"),
                            "hash": header(&row, "flowgate-plugin-hash"),
                            "kind": c.kind,
                            "error": header(&row, "flowgate-error"),
                            "input": { "topic": c.topic, "partition": c.partition, "offset": header(&row, "flowgate-offset").and_then(|o| o.parse::<u64>().ok()) },
                            "redriven": c.redriven,
                            "key": row.key.map(text),
                            "value": text(row.value),
                        }));
                    }
                    Ok(())
                },
            )?;
        }
        Ok(out)
    }

    /// Sends the dead letters of `topic` the filter takes back to the input partition of the
    /// stage that failed them (see the module docs); returns how many were sent, skipped (not
    /// taken, or no longer routable: their topic or partition is gone) and already sent before.
    pub fn redrive(&self, topic: &str, filter: &Filter) -> Result<Value, LogError> {
        let info = self.log.describe(topic)?;
        let step = filter.step_name(topic);
        let config = self.config();
        let pipeline = &config.name;
        let (mut sent, mut skipped, mut before) = (0u64, 0u64, 0u64);
        // A dead letter goes back to the input of a stage; one naming another topic (or one no
        // longer in the pipeline) is skipped.
        let inputs: BTreeSet<String> = config.stages.iter().map(|s| s.input.clone()).collect();
        let mut targets: Vec<Target> = Vec::new();
        for name in inputs {
            let info = self.log.describe(&name)?;
            targets.push(Target {
                topic: name,
                partitions: info.partitions.len() as u32,
            });
        }
        for pi in &info.partitions {
            let p = pi.partition;
            let (mut producer, position) = Producer::open(
                self.log.clone(),
                format!("{pipeline}/{step}/{p}"),
                format!("{pipeline}.{step}.{p}"),
                targets.clone(),
                true,
                Duration::from_secs(1),
                None,
                || Ok(pi.start_offset),
            )?;
            before += position.saturating_sub(pi.start_offset);
            let end = pi.end_offset;
            // (dead-letter offset, target, partition) of each event sent, and the events.
            let mut meta = Vec::new();
            let mut events = BatchBuilder::with_capacity(64, 4096);
            crate::flow::producer::rows_from(
                &*self.log,
                topic,
                p,
                position,
                Some(end),
                |offset, row| {
                    let Some(c) = context(&row) else {
                        skipped += 1;
                        return Ok(());
                    };
                    let target = targets.iter().position(|t| t.topic == c.topic);
                    let routable = target
                        .zip(c.partition)
                        .filter(|(t, part)| *part < targets[*t].partitions);
                    match routable {
                        Some((t, part)) if filter.takes((p, offset), &row, &c) => {
                            meta.push((offset, t, part));
                            redriven(&mut events, &row, c.redriven.saturating_add(1));
                            sent += 1;
                        }
                        _ => skipped += 1,
                    }
                    Ok(())
                },
            )?;
            let events = event::finish(events);
            let cols = event::columns(&events)
                .map_err(|e| LogError::Invalid(format!("redriving {topic}/{p}: {e}")))?;
            let routed: Vec<Routed<'_>> = cols
                .rows()
                .zip(&meta)
                .map(|(row, &(offset, target, partition))| Routed {
                    target,
                    partition,
                    origin: offset + 1,
                    row,
                })
                .collect();
            // In input order, in slices (a marker on each append says how far it goes).
            for chunk in routed.chunks(512) {
                let last = chunk.last().map_or(position, |r| r.origin);
                producer.send(chunk, last)?;
            }
            producer.send(&[], end)?;
            producer.flush()?;
        }
        tracing::info!(topic, stage = ?filter.stage, kind = ?filter.kind, sent, skipped, before, "dead letters redriven");
        Ok(json!({ "sent": sent, "skipped": skipped, "already_sent": before }))
    }
}

/// Adds to `b` the event of a dead letter without its context headers, counted as redriven `n`
/// times.
fn redriven(b: &mut BatchBuilder, row: &EventRef<'_>, n: u64) {
    let count = n.to_string();
    let own = row.headers.iter().filter(|(name, _)| {
        !name.starts_with(event::HOST_HEADER_PREFIX.as_bytes())
            && *name != REDRIVEN_HEADER.as_bytes()
    });
    b.push(
        row.key,
        row.value,
        row.timestamp,
        own.chain([(REDRIVEN_HEADER.as_bytes(), count.as_bytes())]),
    );
}
