//! Everything that bounds a guest, set in one place.
//!
//! [`Limits`] is per stage instance (memory, time per call, output caps); the engine-wide bounds
//! (stack size, pool sizes) are in [`RuntimeConfig`](super::RuntimeConfig). [`apply`] is the one
//! function that puts a store under its limits, before every call.

use std::time::Duration;

use wasmtime::{ResourceLimiter, Store};

use super::StageState;

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

/// Puts `store` under its limits for the next call: the memory limiter, and an epoch deadline
/// `timeout` from now. `tick` is the epoch period of the runtime.
pub(crate) fn apply(store: &mut Store<StageState>, timeout: Duration, tick: Duration) {
    store.limiter(|s| &mut s.limiter);
    // The epoch counts whole ticks since the runtime started, so the deadline lands between
    // `timeout` and `timeout + tick` from now; one more tick covers a ticker that runs late.
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
}
