//! Hot reload of plugins: each stage has a [`StageSlot`] holding its live plugin version. A new
//! version is compiled (cached by hash), and one instance per partition is made and its `init`
//! called, all off the hot path ([`deploy`]); only then does the slot point at it, and each
//! worker swaps its instance at its next batch boundary. A version on probation whose events
//! fail at more than half rolls back: the workers swap their previous instance back in and the
//! batch is processed again by it; the probation is `Probation`. The file watcher and the
//! admin endpoint call [`deploy`] through the pipeline's `Running::apply` (the layers above
//! this one), which also stops and starts stages whose settings changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Misfit;
use crate::runtime::{CallError, Limits, LoadError, Plugin, Runtime, StageInstance};

/// Events and time after which a new version is trusted.
const PROBATION_EVENTS: u64 = 1000;
const PROBATION_TIME: Duration = Duration::from_secs(10);

/// A new version's first events, counted by each worker that runs it: it rolls back if more
/// than half of them fail, and is trusted after [`PROBATION_EVENTS`] events or
/// [`PROBATION_TIME`].
#[derive(Debug)]
pub(crate) struct Probation {
    events: u64,
    failures: u64,
    started: Instant,
}

/// What a worker does with the version on probation after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep counting.
    Undecided,
    /// More than half of its events failed: roll it back ([`StageSlot::roll_back`]).
    RollBack {
        /// Failed events so far.
        failures: u64,
        /// Events so far.
        events: u64,
    },
    /// It passed: confirm it ([`StageSlot::confirm`]).
    Trusted,
}

impl Probation {
    /// The probation of a version that starts now.
    pub(crate) fn new() -> Probation {
        Probation {
            events: 0,
            failures: 0,
            started: Instant::now(),
        }
    }

    /// Counts a batch of `events` of which `failures` failed.
    pub(crate) fn record(&mut self, events: u64, failures: u64) -> Verdict {
        self.events += events;
        self.failures += failures;
        if self.failures * 2 > self.events {
            Verdict::RollBack {
                failures: self.failures,
                events: self.events,
            }
        } else if self.events >= PROBATION_EVENTS || self.started.elapsed() >= PROBATION_TIME {
            Verdict::Trusted
        } else {
            Verdict::Undecided
        }
    }
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// Swap pauses and history records kept per stage (the newest).
const KEEP: usize = 10_000;

fn push_record(history: &mut Vec<VersionRecord>, r: VersionRecord) {
    if history.len() >= KEEP {
        history.drain(..KEEP / 2);
    }
    history.push(r);
}

/// A loaded plugin version of a stage.
#[derive(Debug)]
pub struct Version {
    /// Unique in the process.
    pub id: u64,
    /// The plugin.
    pub plugin: Plugin,
    /// Where it came from (a path, or `deploy`).
    pub source: String,
    /// When the change was seen (file event or request), to measure the time to live.
    pub requested_at: Instant,
}

/// A version in a stage's history.
#[derive(Clone, Debug, Serialize)]
pub struct VersionRecord {
    /// Version id.
    pub id: u64,
    /// SHA-256 of the component.
    pub hash: String,
    /// Path or `deploy`.
    pub source: String,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
    /// `live`, `probation`, `replaced`, `rolled-back` or `failed`.
    pub status: String,
    /// Why it failed or was rolled back.
    pub reason: Option<String>,
    /// From the change being seen to the first worker running it, in ms.
    pub live_after_ms: Option<f64>,
}

/// A stage's live version, its history, and instances made ahead for a new version.
#[derive(Debug)]
pub struct StageSlot {
    /// The stage.
    pub stage: String,
    /// Its settings (a new version must fit them: same world, state only if granted).
    settings: crate::config::StageConfig,
    limits: Limits,
    config: Vec<(String, String)>,
    partitions: Vec<u32>,
    current: ArcSwap<Version>,
    previous: Mutex<Option<Arc<Version>>>,
    prepared: Mutex<HashMap<(u64, u32), StageInstance>>,
    history: Mutex<Vec<VersionRecord>>,
    swap_pauses: Mutex<Vec<Duration>>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn record(v: &Version, status: &str, reason: Option<String>) -> VersionRecord {
    VersionRecord {
        id: v.id,
        hash: v.plugin.info().hash.clone(),
        source: v.source.clone(),
        loaded_at: now_rfc3339(),
        status: status.into(),
        reason,
        live_after_ms: None,
    }
}

impl StageSlot {
    /// A slot serving `plugin` for `partitions`.
    pub fn new(
        settings: &crate::config::StageConfig,
        plugin: Plugin,
        source: String,
        partitions: Vec<u32>,
    ) -> StageSlot {
        let v = Version {
            id: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
            plugin,
            source,
            requested_at: Instant::now(),
        };
        let rec = record(&v, "live", None);
        StageSlot {
            stage: settings.name.clone(),
            settings: settings.clone(),
            limits: settings.limits.clone(),
            config: settings.config.clone(),
            partitions,
            current: ArcSwap::from_pointee(v),
            previous: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
            history: Mutex::new(vec![rec]),
            swap_pauses: Mutex::new(Vec::new()),
        }
    }

    /// The live version.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// A fresh instance of the live version for a partition: the one made ahead if there is
    /// one, else made now.
    pub(crate) fn instance_for(
        &self,
        v: &Version,
        partition: u32,
    ) -> Result<StageInstance, CallError> {
        let ready = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(v.id, partition));
        match ready {
            Some(i) => Ok(i),
            None => v
                .plugin
                .instantiate(self.limits.clone(), self.config.clone()),
        }
    }

    fn set_status(&self, id: u64, status: &str, reason: Option<String>) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = h.iter_mut().rev().find(|r| r.id == id) {
            r.status = status.into();
            if reason.is_some() {
                r.reason = reason;
            }
        }
    }

    /// A worker swapped to version `v` after pausing `pause`.
    pub(crate) fn swapped(&self, v: &Version, pause: Duration) {
        metrics::histogram!("flowgate_reload_swap_seconds", "stage" => self.stage.clone())
            .record(pause.as_secs_f64());
        {
            let mut pauses = self.swap_pauses.lock().unwrap_or_else(|p| p.into_inner());
            if pauses.len() >= KEEP {
                pauses.drain(..KEEP / 2);
            }
            pauses.push(pause);
        }
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = h.iter_mut().rev().find(|r| r.id == v.id)
            && r.live_after_ms.is_none()
        {
            r.live_after_ms = Some(v.requested_at.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// A version passed its probation.
    pub(crate) fn confirm(&self, id: u64) {
        if self.current.load().id == id {
            self.set_status(id, "live", None);
        }
    }

    /// Rolls back from version `id` (if it is still live) to the previous one.
    pub(crate) fn roll_back(&self, id: u64, reason: String) {
        let prev = self
            .previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(prev) = prev else { return };
        if self.current.load().id != id {
            return;
        }
        tracing::error!(stage = %self.stage, version = id, back_to = prev.id, "{reason}; rolled back");
        metrics::counter!("flowgate_reload_rollbacks_total", "stage" => self.stage.clone())
            .increment(1);
        self.current.store(prev.clone());
        self.set_status(id, "rolled-back", Some(reason));
        self.set_status(prev.id, "live", None);
    }

    /// The version the live one replaced, if any: what a roll-back goes back to.
    pub fn previous(&self) -> Option<Arc<Version>> {
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The history, oldest first (the newest 10,000 records).
    pub fn history(&self) -> Vec<VersionRecord> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swap pauses seen so far.
    pub fn swap_pauses(&self) -> Vec<Duration> {
        self.swap_pauses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What [`deploy`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    /// The stage.
    pub stage: String,
    /// The new version's id, or the live one's when nothing changed.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// False when the bytes are the live version already.
    pub changed: bool,
}

/// Why [`deploy`] refused a new version; the live version keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The bytes do not load as a plugin.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin does not fit the stage (its world, or keyed state the stage does not grant).
    #[error(transparent)]
    Misfit(#[from] Misfit),
    /// An instance of the new version failed to start (its `init`, say).
    #[error("init failed: {0}")]
    Init(CallError),
}

/// Loads `bytes` as the next version of `slot`'s stage: compiles (cached by hash), makes one
/// instance per partition (calling `init`), and only then makes it live. On any failure the live
/// version keeps serving and the failure is recorded and returned.
pub fn deploy(
    runtime: &Runtime,
    slot: &StageSlot,
    source: String,
    bytes: &[u8],
    requested_at: Instant,
) -> Result<Deployed, DeployError> {
    let live = slot.current();
    let name = live.plugin.info().name.clone();
    let fail = |error: DeployError| {
        let reason = error.to_string();
        tracing::error!(stage = %slot.stage, source = %source, "new plugin version refused: {reason}; the live version keeps serving");
        metrics::counter!("flowgate_reload_failures_total", "stage" => slot.stage.clone())
            .increment(1);
        push_record(
            &mut slot.history.lock().unwrap_or_else(|p| p.into_inner()),
            VersionRecord {
                id: 0,
                hash: crate::runtime::hash_of(bytes),
                source: source.clone(),
                loaded_at: now_rfc3339(),
                status: "failed".into(),
                reason: Some(reason),
                live_after_ms: None,
            },
        );
        error
    };
    let plugin = runtime
        .load_bytes(&name, bytes)
        .map_err(|e| fail(e.into()))?;
    slot.settings
        .accepts(plugin.info())
        .map_err(|m| fail(m.into()))?;
    if plugin.info().hash == live.plugin.info().hash {
        return Ok(Deployed {
            stage: slot.stage.clone(),
            version: live.id,
            hash: plugin.info().hash.clone(),
            changed: false,
        });
    }
    let v = Version {
        id: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
        plugin,
        source: source.clone(),
        requested_at,
    };
    let mut made = HashMap::new();
    for &p in &slot.partitions {
        let inst = v
            .plugin
            .instantiate(slot.limits.clone(), slot.config.clone())
            .map_err(|e| fail(DeployError::Init(e)))?;
        made.insert((v.id, p), inst);
    }
    let deployed = Deployed {
        stage: slot.stage.clone(),
        version: v.id,
        hash: v.plugin.info().hash.clone(),
        changed: true,
    };
    let rec = record(&v, "probation", None);
    {
        let mut prepared = slot.prepared.lock().unwrap_or_else(|p| p.into_inner());
        prepared.retain(|(id, _), _| *id == live.id);
        prepared.extend(made);
    }
    {
        let mut h = slot.history.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = h.iter_mut().rev().find(|r| r.id == live.id)
            && (r.status == "live" || r.status == "probation")
        {
            r.status = "replaced".into();
        }
        push_record(&mut h, rec);
    }
    *slot.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
    slot.current.store(Arc::new(v));
    tracing::info!(stage = %slot.stage, version = deployed.version, hash = %deployed.hash, source = %source, "new plugin version ready; workers swap at their next batch");
    Ok(deployed)
}
