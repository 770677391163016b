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
//!
//! The same thread reports this process every [`REPORT_EVERY`] to `flowgate.members.<pipeline>`
//! (key: its instance name; value: its admin address and, per stage, the partitions it serves
//! and the version it runs) and reads the others' reports, so that `status` at any process
//! shows every process.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Running;
use crate::event::{self, BatchBuilder};
use crate::flow::reader::Cursor;
use crate::log::{EventLog, LogError, TopicConfig};
use crate::reload::{DeployError, Deployed, StageSlot};

/// How often each process reports itself to the members topic.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(2);

/// A process not heard of for this long is left out of `status`.
const GONE_AFTER: Duration = Duration::from_secs(10);

/// The header naming where a deploy came from.
const SOURCE_HEADER: &str = "flowgate-deploy-source";
/// The header of a pipeline edit (its value: the process that made it); the record's value is
/// the pipeline file's text.
const PIPELINE_HEADER: &str = "flowgate-pipeline-edit";

/// What the control topic carries.
enum Control {
    /// A plugin deployed to `stage`.
    Deploy {
        stage: String,
        source: String,
        bytes: Vec<u8>,
    },
    /// A pipeline edit, made at the process `from`.
    Pipeline { from: String, text: Vec<u8> },
}

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

/// Makes the members topic if it is not there (kept to 16 MiB); its name.
pub(super) fn ensure_members(log: &dyn EventLog, pipeline: &str) -> Result<String, LogError> {
    let t = crate::log::safe_name(&format!("flowgate.members.{pipeline}"), 200);
    let config = TopicConfig {
        retention_bytes: Some(16 << 20),
        ..TopicConfig::default()
    };
    match log.create_topic(&t, config) {
        Ok(()) | Err(LogError::TopicExists(_)) => Ok(t),
        Err(e) => Err(e),
    }
}

/// Appends one record for the other processes.
fn publish(
    log: &dyn EventLog,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
    header: (&str, &str),
) -> Result<(), LogError> {
    let mut b = BatchBuilder::with_capacity(1, value.len());
    b.push(
        key.map(str::as_bytes),
        value,
        event::ndjson::now_ms(),
        [(header.0.as_bytes(), header.1.as_bytes())],
    );
    log.append(topic, 0, event::finish(b)).map(|_| ())
}

impl Running {
    /// After this process applied an edit of its pipeline file (`text`), on a log several
    /// processes share: sends it to the others, which apply it as their own edit.
    pub(super) fn edited(&self, text: &[u8]) {
        let Some(topic) = self.control.get() else {
            return;
        };
        let from = self.instance.get().cloned().unwrap_or_default();
        match publish(&*self.log, topic, None, text, (PIPELINE_HEADER, &from)) {
            Ok(()) => tracing::info!("pipeline edit sent to the pipeline's other processes"),
            Err(e) => tracing::warn!(
                "the pipeline edit is applied here but could not be sent to the other processes: {e}"
            ),
        }
    }

    /// Where this process's admin API listens (said in its reports to the other processes).
    pub fn set_admin_addr(&self, addr: String) {
        let _ = self.admin.set(addr);
    }

    /// On a log several processes share: every process of the pipeline heard of in the last
    /// 10 s (this one included), as it last reported itself: `instance`, `admin`, `age_ms`, and
    /// per stage the partitions it serves and the version it runs. Empty otherwise.
    pub fn processes(&self) -> Vec<serde_json::Value> {
        let now = event::ndjson::now_ms();
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members
            .values()
            .filter(|(at, _)| now - at <= GONE_AFTER.as_millis() as i64)
            .map(|(at, report)| {
                let mut r = report.clone();
                r["age_ms"] = serde_json::json!(now - at);
                r
            })
            .collect()
    }

    /// This process, as it reports itself.
    fn report(&self) -> serde_json::Value {
        let config = self.config();
        let stages: Vec<serde_json::Value> = self
            .slots()
            .iter()
            .map(|slot| {
                let live = slot.current();
                let stats = self.stage_stats(&slot.stage);
                let partitions = stats.as_ref().map(|s| s.served()).unwrap_or_default();
                // The events of its input this process has yet to process, over the partitions
                // it serves.
                let ends: Vec<u64> = config
                    .stages
                    .iter()
                    .find(|s| s.name == slot.stage)
                    .and_then(|s| self.log.describe(&s.input).ok())
                    .map(|i| i.partitions.iter().map(|p| p.end_offset).collect())
                    .unwrap_or_default();
                let lag: u64 = stats.as_ref().map_or(0, |st| {
                    partitions
                        .iter()
                        .map(|&p| {
                            let pos = st.positions[p as usize].load(Ordering::Relaxed);
                            ends.get(p as usize).map_or(0, |e| e.saturating_sub(pos))
                        })
                        .sum()
                });
                serde_json::json!({
                    "stage": slot.stage,
                    "partitions": partitions,
                    "lag": lag,
                    "version": live.id,
                    "hash": live.plugin.info().hash,
                })
            })
            .collect();
        serde_json::json!({
            "instance": self.instance.get(),
            "admin": self.admin.get(),
            "stages": stages,
        })
    }

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
            let header = (SOURCE_HEADER, source.as_str());
            match publish(&*self.log, topic, Some(&slot.stage), bytes, header) {
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

    /// Deploys again the version the live one of `slot` replaced (a roll-back an operator asks
    /// for), as [`Running::deploy`] does: a new version of the same component, on probation,
    /// at every process; `None` when there is no earlier version.
    pub fn roll_back(
        &self,
        slot: &StageSlot,
        source: String,
        requested_at: Instant,
    ) -> Option<Result<Deployed, DeployError>> {
        let previous = slot.previous()?;
        let source = format!("{source} (roll-back to version {})", previous.id);
        Some(self.deploy(slot, source, previous.plugin.bytes(), requested_at))
    }
}

/// Follows the control topic (and reports this process to, and reads the others from, the
/// members topic) until the pipeline stops.
pub(super) fn follow(running: &Running, topic: &str, members_topic: &str) {
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
    // What came before this process started: the newest pipeline edit, then the newest deploy
    // of each stage made after it.
    let mut pipeline: Option<(String, Vec<u8>)> = None;
    let mut newest: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    while cursor.position < end && !running.ctl.stopping() {
        for c in read(running, &mut cursor) {
            match c {
                Control::Deploy {
                    stage,
                    source,
                    bytes,
                } => {
                    newest.insert(stage, (source, bytes));
                }
                Control::Pipeline { from, text } => {
                    newest.clear();
                    pipeline = Some((from, text));
                }
            }
        }
    }
    if let Some((from, text)) = pipeline {
        apply_pipeline(running, &from, &text);
    }
    for (stage, (source, bytes)) in newest {
        apply(running, &stage, &source, &bytes);
    }
    let mut members = Cursor::new(running.log.clone(), members_topic, 0, 0);
    let mut reported: Option<Instant> = None;
    while !running.ctl.stopping() {
        if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            reported = Some(Instant::now());
            let instance = running.instance.get().cloned().unwrap_or_default();
            let report = running.report();
            let mut b = BatchBuilder::with_capacity(1, 256);
            let value = serde_json::to_vec(&report).expect("serialises");
            b.push(
                Some(instance.as_bytes()),
                &value,
                event::ndjson::now_ms(),
                [],
            );
            if let Err(e) = running.log.append(members_topic, 0, event::finish(b)) {
                tracing::debug!("reporting to {members_topic}: {e}");
            }
        }
        // Every report since the last look: the newest of each process.
        while let Ok(Some(input)) = members.next(1024, Duration::ZERO, Duration::ZERO) {
            let Ok(cols) = event::columns(&input.batch) else {
                break;
            };
            let mut m = running.members.lock().unwrap_or_else(|p| p.into_inner());
            for r in cols.rows() {
                let Ok(report) = serde_json::from_slice::<serde_json::Value>(r.value) else {
                    continue;
                };
                let instance = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                m.insert(instance, (r.timestamp, report));
            }
        }
        for c in read(running, &mut cursor) {
            match c {
                Control::Deploy {
                    stage,
                    source,
                    bytes,
                } => apply(running, &stage, &source, &bytes),
                Control::Pipeline { from, text } => apply_pipeline(running, &from, &text),
            }
        }
    }
}

/// What the control topic holds next, waiting up to 200 ms.
fn read(running: &Running, cursor: &mut Cursor) -> Vec<Control> {
    match cursor.next(16, Duration::ZERO, Duration::from_millis(200)) {
        Ok(Some(input)) => {
            let Ok(cols) = event::columns(&input.batch) else {
                return Vec::new();
            };
            cols.rows()
                .map(|r| {
                    let header = |name: &str| {
                        r.headers
                            .iter()
                            .find(|(n, _)| *n == name.as_bytes())
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    };
                    match header(PIPELINE_HEADER) {
                        Some(from) => Control::Pipeline {
                            from,
                            text: r.value.to_vec(),
                        },
                        None => Control::Deploy {
                            stage: String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned(),
                            source: header(SOURCE_HEADER).unwrap_or_default(),
                            bytes: r.value.to_vec(),
                        },
                    }
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

/// Applies a pipeline edit made at another process (`from`), read as if it were this process's
/// pipeline file (relative plugin paths from its directory), unless it is this process's own.
fn apply_pipeline(running: &Running, from: &str, text: &[u8]) {
    if running.instance.get().is_some_and(|me| me == from) {
        return;
    }
    let path = running.config().path;
    let config = match std::str::from_utf8(text)
        .map_err(|e| e.to_string())
        .and_then(|t| crate::config::PipelineConfig::parse(&path, t).map_err(|p| p.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                from,
                "a pipeline edit made at another process is refused here: {e}; the pipeline runs on as it is"
            );
            return;
        }
    };
    match running.apply(config) {
        Ok(done) if done.is_empty() => {}
        Ok(done) => {
            tracing::info!(from, changes = ?done, "pipeline edit made at another process applied here")
        }
        Err(e) => tracing::warn!(
            from,
            "a pipeline edit made at another process is not applied here (in whole or in part): {e}"
        ),
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
