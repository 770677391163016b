//! Steps shared by the processes of a pipeline on a Kafka log ([`EventLog::join`]).
//!
//! - A stage joins the group `flowgate.<pipeline>.stage.<stage>` on its input topic and serves
//!   the partitions Kafka gives this process ([`StageGroup`]). On every change its workers
//!   finish their batch, flush and checkpoint (the partitions given up are then another
//!   process's to open from that checkpoint, keyed state included), and start again over the
//!   partitions held now.
//! - A source or sink that reads or writes as one (a file, a table, a Kafka consumer of its
//!   own) runs in one process at a time: it holds a lease, partition 0 of the one-partition
//!   topic `flowgate.leases.<pipeline>` in its own group ([`Lease`]). When that process stops
//!   or dies the lease, and the step, move to another.
//!
//! A bounded run joins no group: it serves every partition itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::flow::{Ctl, Stopped};
use crate::log::{EventLog, LogError, Membership, Rebalance, TopicConfig};
use crate::stage::{self, StageShared};

/// The one-partition topic whose partition 0 is each leased step's lease.
pub(super) fn lease_topic(pipeline: &str) -> String {
    crate::log::safe_name(&format!("flowgate.leases.{pipeline}"), 200)
}

/// Makes the lease topic if it is not there.
pub(super) fn ensure_lease_topic(log: &dyn EventLog, pipeline: &str) -> Result<String, LogError> {
    let topic = lease_topic(pipeline);
    match log.create_topic(&topic, TopicConfig::default()) {
        Ok(()) | Err(LogError::TopicExists(_)) => Ok(topic),
        Err(e) => Err(e),
    }
}

/// How often a group's thread polls (heartbeats go on in the client regardless).
const POLL: Duration = Duration::from_millis(100);

/// Keeps a membership alive until the step is asked to stop (or the pipeline stops), then
/// lets go of what it holds (`release`) and leaves the group.
pub(super) fn hold(
    member: Box<dyn Membership>,
    stop: &AtomicBool,
    ctl: &Ctl,
    release: impl FnOnce(),
) {
    while !stop.load(Ordering::Acquire) && !ctl.stopping() && ctl.failure().is_none() {
        member.poll(POLL);
    }
    release();
    drop(member);
}

/// The workers of this process for one stage, started again over the partitions it holds at
/// every rebalance.
pub(super) struct StageGroup {
    /// The stage as every worker shares it; each generation gets a copy with its own stop.
    base: Arc<StageShared>,
    parallelism: u32,
    current: Mutex<Generation>,
}

struct Generation {
    parts: BTreeSet<u32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<(), Stopped>>>,
}

impl StageGroup {
    pub(super) fn new(base: Arc<StageShared>, parallelism: u32) -> StageGroup {
        // Nothing is served here until the group says so.
        for s in &base.stats.served {
            s.store(false, Ordering::Relaxed);
        }
        StageGroup {
            base,
            parallelism: parallelism.max(1),
            current: Mutex::new(Generation {
                parts: BTreeSet::new(),
                stop: Arc::new(AtomicBool::new(false)),
                threads: Vec::new(),
            }),
        }
    }

    fn generation(&self) -> std::sync::MutexGuard<'_, Generation> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the workers (each finishes its batch, flushes and checkpoints), then starts new
    /// ones over `parts`.
    fn restart(&self, g: &mut Generation, parts: BTreeSet<u32>) {
        g.stop.store(true, Ordering::Release);
        self.base.ctl.wake_sleepers();
        for t in g.threads.drain(..) {
            let _ = t.join();
        }
        g.parts = parts;
        for (p, s) in self.base.stats.served.iter().enumerate() {
            s.store(g.parts.contains(&(p as u32)), Ordering::Relaxed);
        }
        let halted = self.base.stop.load(Ordering::Acquire) || self.base.ctl.stopping();
        if g.parts.is_empty() || halted {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(StageShared {
            stop: stop.clone(),
            ..(*self.base).clone()
        });
        let list: Vec<u32> = g.parts.iter().copied().collect();
        let n = (self.parallelism as usize).min(list.len());
        for w in 0..n {
            let mine: Vec<u32> = list
                .iter()
                .enumerate()
                .filter(|(i, _)| i % n == w)
                .map(|(_, p)| *p)
                .collect();
            let shared = shared.clone();
            let name: String = format!("stage {}#{w}", self.base.config.name)
                .chars()
                .take(15)
                .collect();
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || stage::run(shared, mine))
            {
                Ok(t) => g.threads.push(t),
                Err(e) => {
                    self.base.ctl.fail(format!(
                        "stage `{}`: cannot start a worker thread: {e}",
                        self.base.config.name
                    ));
                    return;
                }
            }
        }
        g.stop = stop;
        tracing::info!(stage = %self.base.config.name, partitions = ?list, "stage serves its partitions held by this process");
    }

    /// Stops every worker (at the end of the step).
    pub(super) fn release(&self) {
        let mut g = self.generation();
        self.restart(&mut g, BTreeSet::new());
    }
}

impl Rebalance for StageGroup {
    fn assigned(&self, partitions: &[u32]) {
        let mut g = self.generation();
        let mut parts = g.parts.clone();
        parts.extend(partitions.iter().copied());
        self.restart(&mut g, parts);
    }

    fn revoked(&self, partitions: &[u32]) {
        let mut g = self.generation();
        let parts = g
            .parts
            .iter()
            .copied()
            .filter(|p| !partitions.contains(p))
            .collect();
        self.restart(&mut g, parts);
    }
}

/// Runs a step while this process holds its lease.
pub(super) struct Lease {
    what: String,
    ctl: Arc<Ctl>,
    start: StartStep,
    current: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// Starts the step with this stop flag.
pub(super) type StartStep =
    Box<dyn Fn(Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> + Send + Sync>;

impl Lease {
    pub(super) fn new(what: String, ctl: Arc<Ctl>, start: StartStep) -> Lease {
        Lease {
            what,
            ctl,
            start,
            current: Mutex::new(None),
        }
    }

    /// Stops the step if it runs here: it finishes its batch and commits.
    pub(super) fn release(&self) {
        let taken = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, thread)) = taken {
            stop.store(true, Ordering::Release);
            self.ctl.wake_sleepers();
            let _ = thread.join();
            tracing::info!(step = %self.what, "stopped here: its lease goes to another process");
        }
    }
}

impl Rebalance for Lease {
    fn assigned(&self, partitions: &[u32]) {
        if !partitions.contains(&0) {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        match (self.start)(stop.clone()) {
            Ok(t) => {
                tracing::info!(step = %self.what, "runs in this process (it holds the lease)");
                *current = Some((stop, t));
            }
            Err(e) => {
                self.ctl
                    .fail(format!("{}: cannot start its thread: {e}", self.what));
            }
        }
    }

    fn revoked(&self, partitions: &[u32]) {
        if partitions.contains(&0) {
            self.release();
        }
    }
}
