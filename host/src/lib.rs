//! Flowgate: a WebAssembly plugin host for stream handlers.
//!
//! - [`runtime`]: the wasmtime embedding: one engine, plugins compiled once (and cached on disk),
//!   one store per stage instance, every guest bounded by [`runtime::Limits`].
//! - [`build`]: plugins in any language: core modules made into components.
//! - [`cli`]: the `flowgate` command, one file per subcommand.
//! - [`log`]: the event log: topics, partitions, segments with CRC-checked record batches,
//!   group commit, crash recovery, consumer offsets; and its in-memory twin.
//! - [`pipeline`]: the pipeline file and the scheduler: sources, stage workers, sinks, checkpoints,
//!   dead letters, exactly-once replay.
//! - [`reload`]: hot reload: plugin versions per stage, swaps at batch boundaries, roll-back,
//!   the file watcher.
//! - [`state`]: keyed state of stage instances and the event-time windows of aggregators,
//!   checkpointed with the stage's input position.
//! - [`connect`]: sources and sinks (files, stdin/stdout, generator, HTTP ingest).
//! - [`event`]: events and columnar batches as the host holds them, and the NDJSON event format
//!   every command reads and writes (`docs/events.md`).
#![deny(missing_docs)]

pub mod build;
pub mod cli;
pub mod connect;
pub mod event;
pub mod log;
pub mod pipeline;
pub mod reload;
pub mod runtime;
pub mod state;
pub mod units;
