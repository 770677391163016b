//! Everything that bounds a guest, set in one place.
//!
//! [`Limits`] is per stage instance (memory, time per call, output caps, log bytes); the
//! engine-wide bounds (stack size, pool sizes) are in [`RuntimeConfig`](super::RuntimeConfig).
//! [`bound`] puts a new store under its limiter and its deadline check; [`apply`] arms the
//! deadline before every call.
//!
//! A call's time limit is one instant, [`HostCtx::deadline`], held to in two places: the
//! epoch callback (guest code: loops, deep work) and the waits of `wasi:io/poll`
//! ([`super::poll`]: sleeps, clock subscriptions, stream readiness), so a call ends at its
//! deadline whether it computes or waits in the host. Both also end a call when its
//! [`Interrupt`] is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use super::HostCtx;

/// How often a call that runs guest code checks its [`Interrupt`] (and its deadline, when that
/// is further away).
const SLICE: Duration = Duration::from_millis(20);

/// Limits of one stage instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of an instance, all memories together, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time one call (`init`, `on-event`, `on-batch`) may take.
    pub call_timeout: Duration,
    /// Output events one input event may produce (a batch call may produce this many per row).
    pub max_outputs_per_event: usize,
    /// Output bytes (keys, values, headers) one call may produce.
    pub max_output_bytes: usize,
    /// Elements of all tables of an instance.
    pub table_elements: usize,
    /// Core instances, tables and memories one component may create.
    pub max_instances: usize,
    /// Bytes per second an instance may write to the host's log (stdout, stderr and
    /// `flowgate:plugin/log` together); lines past it are dropped and counted in
    /// `flowgate_plugin_log_dropped_total`.
    pub log_bytes_per_second: usize,
    /// Bytes an instance may log at once above the rate (the size of its token bucket).
    pub log_burst_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            max_outputs_per_event: 1_000,
            max_output_bytes: 32 << 20,
            table_elements: 100_000,
            max_instances: 64,
            log_bytes_per_second: 64 << 10,
            log_burst_bytes: 256 << 10,
        }
    }
}

/// Enforces [`Limits`] on memory and table growth, and remembers a refusal so that the trap
/// that follows can be reported as "memory cap reached" rather than as an opaque abort.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_cap: usize,
    table_cap: usize,
    max_instances: usize,
    /// Linear memory granted so far, all memories together.
    memory_used: usize,
    table_used: usize,
    /// Total size the guest asked for when it was refused.
    pub(crate) refused_memory: Option<usize>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory_cap: limits.memory_bytes,
            table_cap: limits.table_elements,
            max_instances: limits.max_instances,
            memory_used: 0,
            table_used: 0,
            refused_memory: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current + desired;
        if total > self.memory_cap {
            self.refused_memory = Some(total);
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_used - current + desired;
        if total > self.table_cap {
            return Ok(false);
        }
        self.table_used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}

/// Stops the calls of the stage instances that hold it, from any thread: a call in flight ends
/// within a few milliseconds with [`CallErrorKind::Interrupted`](super::CallErrorKind), and
/// later calls fail at once. Set when the host shuts down, so that no call outlives the grace
/// period, whatever its time limit. Cheap to clone; clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag not set.
    pub fn new() -> Self {
        Interrupt::default()
    }

    /// Stops the calls in flight and refuses new ones.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once [`interrupt`](Self::interrupt) was called.
    pub fn is_interrupted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The error a call is stopped with when its [`Interrupt`] is set.
#[derive(Debug, thiserror::Error)]
#[error("the call was interrupted: the host is shutting down")]
pub(crate) struct Interrupted;

/// Epoch ticks from now to at least `d` from now; one more tick covers a ticker that runs late
/// (the epoch counts whole ticks since the runtime started).
fn ticks(d: Duration, tick: Duration) -> u64 {
    d.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64 + 1
}

/// Puts a new store under its limiter and its deadline check, once per store: when the epoch
/// deadline passes, the call is stopped if its [`Interrupt`] is set (`Interrupted`) or its
/// deadline has passed (`Trap::Interrupt`, reported as a timeout); otherwise it goes on for
/// another slice.
pub(crate) fn bound(store: &mut Store<HostCtx>, tick: Duration) {
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(move |cx| {
        let s = cx.data();
        if s.interrupt.is_interrupted() {
            return Err(Interrupted.into());
        }
        let now = Instant::now();
        if now >= s.deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Continue(ticks(
            (s.deadline - now).min(SLICE),
            tick,
        )))
    });
}

/// Arms `store` for the next call: its deadline `timeout` from now, and the epoch deadline at
/// the first check (at most [`SLICE`] away). `tick` is the epoch period of the runtime.
pub(crate) fn apply(store: &mut Store<HostCtx>, timeout: Duration, tick: Duration) {
    let now = Instant::now();
    // A limit too large for the clock is as good as none: a year.
    store.data_mut().deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
    store.set_epoch_deadline(ticks(timeout.min(SLICE), tick));
}
