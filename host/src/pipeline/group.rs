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
//! Every append either makes carries its group's membership ([`Fence`]): an append of a
//! process that is no longer a member (it was cut off past its session, say) is not written
//! and fails as fenced; the step then stops (not the pipeline) and starts again from what was
//! committed, once this process is a member again ([`StageGroup::check`], [`Lease::check`]).
//!
//! A bounded run joins no group: it serves every partition itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::flow::{Ctl, Stopped};
use crate::log::{EventLog, Fence, LogError, Membership, Rebalance, TopicConfig};
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
/// A step stopped by a fenced append starts again at most this often.
const RESTART_EVERY: Duration = Duration::from_secs(1);

/// Keeps a membership alive until the step is asked to stop (or the pipeline stops), looking
/// after each poll whether the step stopped by itself (`check`); then lets go of what it holds
/// (`release`) and leaves the group.
pub(super) fn hold(
    member: Box<dyn Membership>,
    stop: &AtomicBool,
    ctl: &Ctl,
    check: impl Fn(),
    release: impl FnOnce() + Send,
) {
    while !stop.load(Ordering::Acquire) && !ctl.stopping() && ctl.failure().is_none() {
        member.poll(POLL);
        check();
    }
    // Let go while the membership is still served: the last commits may need the generation a
    // rebalance (the other processes stopping too) is forming, which reaches this process in a
    // poll.
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            release();
            released.store(true, Ordering::Release);
        });
        while !released.load(Ordering::Acquire) {
            member.poll(Duration::from_millis(10));
        }
    });
    drop(member);
}

/// The workers of this process for one stage, started again over the partitions it holds at
/// every rebalance.
pub(super) struct StageGroup {
    /// The stage as every worker shares it; each generation gets a copy with its own stop.
    base: Arc<StageShared>,
    parallelism: u32,
    current: Mutex<Generation>,
    fence: OnceLock<Fence>,
}

struct Generation {
    parts: BTreeSet<u32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<(), Stopped>>>,
    started: Instant,
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
                started: Instant::now(),
            }),
            fence: OnceLock::new(),
        }
    }

    /// The membership the workers' appends carry (set once, before the first assignment).
    pub(super) fn set_fence(&self, fence: Fence) {
        let _ = self.fence.set(fence);
    }

    /// Starts the workers again if they stopped by themselves (a fenced append set their
    /// stop) while this process still holds partitions and is a member of the group.
    pub(super) fn check(&self) {
        let mut g = self.generation();
        let halted = self.base.stop.load(Ordering::Acquire) || self.base.ctl.stopping();
        if halted
            || g.parts.is_empty()
            || !g.stop.load(Ordering::Acquire)
            || g.started.elapsed() < RESTART_EVERY
            || !g.threads.iter().all(JoinHandle::is_finished)
            || !self.fence.get().is_some_and(Fence::member)
        {
            return;
        }
        let parts = g.parts.clone();
        tracing::info!(stage = %self.base.config.name, partitions = ?parts, "stage starts again from what was committed after a fenced append");
        self.restart(&mut g, parts);
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
            fence: self.fence.get().cloned(),
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
        g.started = Instant::now();
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
    current: Mutex<Option<Running>>,
    fence: OnceLock<Fence>,
}

/// The step as it runs here under the lease.
struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    started: Instant,
}

/// Starts the step with this stop flag and the lease's membership (for its appends to carry).
pub(super) type StartStep =
    Box<dyn Fn(Arc<AtomicBool>, Option<Fence>) -> std::io::Result<JoinHandle<()>> + Send + Sync>;

impl Lease {
    pub(super) fn new(what: String, ctl: Arc<Ctl>, start: StartStep) -> Lease {
        Lease {
            what,
            ctl,
            start,
            current: Mutex::new(None),
            fence: OnceLock::new(),
        }
    }

    /// The membership the step's appends carry (set once, before the first assignment).
    pub(super) fn set_fence(&self, fence: Fence) {
        let _ = self.fence.set(fence);
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the step here (the caller holds `current`, which is empty).
    fn start(&self, current: &mut Option<Running>) {
        let stop = Arc::new(AtomicBool::new(false));
        match (self.start)(stop.clone(), self.fence.get().cloned()) {
            Ok(thread) => {
                tracing::info!(step = %self.what, "runs in this process (it holds the lease)");
                *current = Some(Running {
                    stop,
                    thread,
                    started: Instant::now(),
                });
            }
            Err(e) => {
                self.ctl
                    .fail(format!("{}: cannot start its thread: {e}", self.what));
            }
        }
    }

    /// Starts the step again if it stopped by itself after a fenced append while this process
    /// still holds the lease.
    pub(super) fn check(&self) {
        let mut current = self.current();
        let again = current.as_ref().is_some_and(|r| {
            r.stop.load(Ordering::Acquire)
                && r.thread.is_finished()
                && r.started.elapsed() >= RESTART_EVERY
        }) && !self.ctl.stopping()
            && self.fence.get().is_some_and(Fence::member);
        if again {
            *current = None;
            tracing::info!(step = %self.what, "starts again from what was committed after a fenced append");
            self.start(&mut current);
        }
    }

    /// Stops the step if it runs here: it finishes its batch and commits.
    pub(super) fn release(&self) {
        let taken = self.current().take();
        if let Some(r) = taken {
            r.stop.store(true, Ordering::Release);
            self.ctl.wake_sleepers();
            let _ = r.thread.join();
            tracing::info!(step = %self.what, "stopped here: its lease goes to another process");
        }
    }
}

impl Rebalance for Lease {
    fn assigned(&self, partitions: &[u32]) {
        if !partitions.contains(&0) {
            return;
        }
        let mut current = self.current();
        if current.is_none() {
            self.start(&mut current);
        }
    }

    fn revoked(&self, partitions: &[u32]) {
        if partitions.contains(&0) {
            self.release();
        }
    }
}
