//! Flowgate: a WebAssembly plugin host for stream handlers.
//!
//! The modules are layers, listed here lowest first; a module uses only the ones below it (the
//! test in `src/layers.rs` fails on an import of a module of its own layer or above: run
//! `cargo test -p flowgate --lib layers`).
//!
//! 1. [`wit`]: the host bindings generated from `wit/`; [`units`]: sizes and durations.
//! 2. [`event`]: events and columnar batches as the host holds them (the WIT types), the NDJSON
//!    event format every command reads and writes (`docs/events.md`), record limits.
//! 3. [`log`]: the event log: topics, partitions, segments with CRC-checked record batches,
//!    group commit, crash recovery, consumer offsets; its in-memory twin; and (feature `full`)
//!    a Kafka cluster as the log, shared by several processes.
//! 4. [`state`]: keyed state of stage instances and the event-time windows of aggregators,
//!    checkpointed with the stage's input position.
//! 5. [`runtime`]: the wasmtime embedding: one engine, plugins compiled once (and cached on
//!    disk), one store per stage instance, every guest bounded by [`runtime::Limits`];
//!    [`build`]: plugins in any language: core modules made into components.
//! 6. [`config`]: the pipeline file and every check made before running.
//! 7. [`flow`]: what every step shares: the run's control, counters, the cursor a step reads
//!    with and the producer that appends its outputs and checkpoints.
//! 8. [`reload`]: plugin versions per stage (slots), deploy, probation and roll-back.
//! 9. [`connect`]: sources and sinks (files, stdin/stdout, generator, Kafka); `stage`: the
//!    stage worker.
//! 10. [`pipeline`]: a pure [`pipeline::plan()`] of an edit, and [`pipeline::Running`], which
//!     applies it (starting a pipeline is applying it to an empty one).
//! 11. [`server`]: the HTTP server (ingest, metrics, admin); [`watch`]: the file watcher.
//! 12. [`cli`]: the `flowgate` command, one file per subcommand.
//!
//! Layers 1 to 7 but `build` are the crate without its default feature `full`
//! (`default-features = false`, as the fuzz targets build it): the formats and their checks, and
//! the runtime on wasmtime without its compiler (no plugin loads). `full` adds the compiler and
//! `build` and the layers above `flow`, with their crates (axum, librdkafka, the plugin builder's).
#![deny(missing_docs)]

#[cfg(feature = "full")]
pub mod build;
#[cfg(feature = "full")]
pub mod cli;
pub mod config;
#[cfg(feature = "full")]
pub mod connect;
pub mod event;
#[cfg_attr(
    not(feature = "full"),
    expect(
        dead_code,
        reason = "without `full` no step runs: the crate-internal parts of `flow` serve the layers above"
    )
)]
pub mod flow;
pub mod log;
#[cfg(feature = "full")]
pub mod pipeline;
#[cfg(feature = "full")]
pub mod reload;
pub mod runtime;
#[cfg(feature = "full")]
pub mod server;
#[cfg(feature = "full")]
pub(crate) mod stage;
pub mod state;
pub mod units;
#[cfg(feature = "full")]
pub mod watch;
pub mod wit;

#[cfg(test)]
mod layers;
