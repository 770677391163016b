//! Plugin deploys across the processes of a pipeline on a shared log (a Kafka log): a deploy made
//! at one process (`flowgate plugin deploy`, the admin API) is appended to the control topic
//! `flowgate.control.<pipeline>` (key: the stage; value: the plugin; a header: where it came
//! from), and every process follows that topic and deploys what it reads, each at its workers'
//! next batch boundary, as a local deploy is. A process that starts later reads the topic from
//! its beginning and takes the newest deploy of each stage before it follows on.
//!
//! A partition is served by one process at a time, so no event is processed by two versions
//! at once; while a deploy spreads, some partitions run the new version and others the old.
//! Probation and roll-back stay per process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Running;
use crate::event::{self, BatchBuilder};
use crate::flow::reader::Cursor;
use crate::log::{EventLog, LogError, TopicConfig};
use crate::reload::{DeployError, Deployed, StageSlot};

/// The header naming where a deploy came from.
const SOURCE_HEADER: &str = "flowgate-deploy-source";

/// The control topic of `pipeline`.
pub(super) fn topic(pipeline: &str) -> String {
    crate::log::safe_name(&format!("flowgate.control.{pipeline}"), 200)
}

/// Makes the control topic if it is not there; its name.
pub(super) fn ensure(log: &dyn EventLog, pipeline: &str) -> Result<String, LogError> {
    let t = topic(pipeline);
    match log.create_topic(&t, TopicConfig::default()) {
        Ok(()) | Err(LogError::TopicExists(_)) => Ok(t),
        Err(e) => Err(e),
    }
}

/// Appends a deploy of `bytes` to `stage` for the other processes.
fn publish(
    log: &dyn EventLog,
    topic: &str,
    stage: &str,
    source: &str,
    bytes: &[u8],
) -> Result<(), LogError> {
    let mut b = BatchBuilder::with_capacity(1, bytes.len());
    b.push(
        Some(stage.as_bytes()),
        bytes,
        event::ndjson::now_ms(),
        [(SOURCE_HEADER.as_bytes(), source.as_bytes())],
    );
    log.append(topic, 0, event::finish(b)).map(|_| ())
}

impl Running {
    /// Deploys `bytes` as the next version of `slot`'s stage here ([`crate::reload::deploy`])
    /// and, on a log several processes share, for every other process of the pipeline too.
    pub fn deploy(
        &self,
        slot: &StageSlot,
        source: String,
        bytes: &[u8],
        requested_at: Instant,
    ) -> Result<Deployed, DeployError> {
        let d = crate::reload::deploy(&self.runtime, slot, source.clone(), bytes, requested_at)?;
        if let Some(topic) = self.control.get()
            && d.changed
        {
            match publish(&*self.log, topic, &slot.stage, &source, bytes) {
                Ok(()) => {
                    tracing::info!(stage = %slot.stage, hash = %d.hash, "deploy sent to the pipeline's other processes");
                }
                Err(e) => {
                    tracing::error!(stage = %slot.stage, "the deploy is live here but could not be sent to the other processes: {e}; deploy again");
                }
            }
        }
        Ok(d)
    }
}

/// Follows the control topic until the pipeline stops.
pub(super) fn follow(running: &Running, topic: &str) {
    let log = running.log.clone();
    let end = match log.describe(topic) {
        Ok(i) => i.partitions.first().map_or(0, |p| p.end_offset),
        Err(e) => {
            tracing::error!(
                "cannot read the control topic {topic}: {e}; deploys made at other processes will not reach this one"
            );
            return;
        }
    };
    let mut cursor = Cursor::new(log, topic, 0, 0);
    // What came before this process started: the newest deploy of each stage.
    let mut newest: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    while cursor.position < end && !running.ctl.stopping() {
        for (stage, source, bytes) in read(running, &mut cursor) {
            newest.insert(stage, (source, bytes));
        }
    }
    for (stage, (source, bytes)) in newest {
        apply(running, &stage, &source, &bytes);
    }
    while !running.ctl.stopping() {
        for (stage, source, bytes) in read(running, &mut cursor) {
            apply(running, &stage, &source, &bytes);
        }
    }
}

/// The deploys the control topic holds next (stage, source, plugin), waiting up to 200 ms.
fn read(running: &Running, cursor: &mut Cursor) -> Vec<(String, String, Vec<u8>)> {
    match cursor.next(16, Duration::ZERO, Duration::from_millis(200)) {
        Ok(Some(input)) => {
            let Ok(cols) = event::columns(&input.batch) else {
                return Vec::new();
            };
            cols.rows()
                .map(|r| {
                    let stage = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                    let source = r
                        .headers
                        .iter()
                        .find(|(n, _)| *n == SOURCE_HEADER.as_bytes())
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    (stage, source, r.value.to_vec())
                })
                .collect()
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("reading the control topic: {e}; trying again in 1 s");
            running.ctl.sleep(
                Duration::from_secs(1),
                &std::sync::atomic::AtomicBool::new(false),
            );
            Vec::new()
        }
    }
}

/// Deploys what another process deployed, unless it runs here already.
fn apply(running: &Running, stage: &str, source: &str, bytes: &[u8]) {
    let Some(slot) = running.slot(stage) else {
        tracing::warn!(
            stage,
            "a deploy for a stage this pipeline does not have; ignored"
        );
        return;
    };
    if crate::runtime::hash_of(bytes) == slot.current().plugin.info().hash {
        return;
    }
    let source = format!("{source} (from another process)");
    match crate::reload::deploy(&running.runtime, &slot, source, bytes, Instant::now()) {
        Ok(d) => {
            tracing::info!(stage, version = d.version, hash = %d.hash, "plugin deployed at another process of the pipeline is live here");
        }
        Err(e) => {
            tracing::warn!(
                stage,
                "a plugin deployed at another process is refused here: {e}; the live version keeps serving"
            );
        }
    }
}
