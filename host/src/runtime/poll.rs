//! Host side of `wasi:io/poll`, shadowing wasmtime-wasi's: the two calls that wait (`poll` and
//! `pollable.block`) end at the call's deadline or at its interrupt instead of blocking the
//! stage's thread past them.
//!
//! Every wait a plugin can make goes through these two: a sleep or a clock subscription
//! (`monotonic-clock.subscribe-duration`, `subscribe-instant`), and the readiness of a stream.
//! The streams themselves never wait: stdin is closed, stdout and stderr take every write at
//! once ([`super::stdio`]), and no file or socket is granted. A wait cut at the deadline traps
//! with `Trap::Interrupt`, which the call reports as a timeout, like a loop stopped by the epoch.
//!
//! wasmtime's async support (an epoch-driven yield and a timeout around the call) would bound
//! the same waits, but every call would then run on a fiber under an executor; this keeps the
//! synchronous embedding and its per-event cost, and bounds only the calls that can wait.

use std::future::Future;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};

use super::HostCtx;
use super::limits::{Interrupt, Interrupted};

/// The `wasi:io/poll` interface wasmtime-wasi 48 provides (the name the shadowing must match).
const POLL: &str = "wasi:io/poll@0.2.12";

/// How often a wait checks its interrupt.
const INTERRUPT_CHECK: Duration = Duration::from_millis(5);

/// Replaces `poll` and `[method]pollable.block` of `wasi:io/poll` in `linker` (which already
/// holds wasmtime-wasi's) with the bounded ones.
pub(crate) fn shadow(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut cx: StoreContextMut<'_, HostCtx>, (list,): (Vec<Resource<DynPollable>>,)| {
            let s = cx.data_mut();
            let (deadline, interrupt) = (s.deadline, s.interrupt.clone());
            let ready = bounded(deadline, &interrupt, s.table.poll(list))??;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut cx: StoreContextMut<'_, HostCtx>, (pollable,): (Resource<DynPollable>,)| {
            let s = cx.data_mut();
            let (deadline, interrupt) = (s.deadline, s.interrupt.clone());
            bounded(deadline, &interrupt, s.table.block(pollable))??;
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs the wait `f` to its end, or to `deadline` (a `Trap::Interrupt`) or to `interrupt`
/// (`Interrupted`), whichever comes first. A wait that is over when the deadline passes still
/// returns; the guest then meets the passed epoch deadline.
fn bounded<F: Future>(
    deadline: Instant,
    interrupt: &Interrupt,
    f: F,
) -> wasmtime::Result<F::Output> {
    if interrupt.is_interrupted() {
        return Err(Interrupted.into());
    }
    wasmtime_wasi::runtime::in_tokio(async {
        tokio::select! {
            biased;
            out = f => Ok(out),
            () = tokio::time::sleep_until(deadline.into()) => Err(Trap::Interrupt.into()),
            () = interrupted(interrupt) => Err(Interrupted.into()),
        }
    })
}

/// Ends once `interrupt` is set.
async fn interrupted(interrupt: &Interrupt) {
    while !interrupt.is_interrupted() {
        tokio::time::sleep(INTERRUPT_CHECK).await;
    }
}
