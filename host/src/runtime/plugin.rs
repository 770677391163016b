//! A plugin version (compiled once, pre-instantiated once) and its stage instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::flowgate::plugin::types::BatchResult;
use super::bindings::{Stage, StagePre};
use super::error::{CallError, CallErrorKind, LoadError, PluginError};
use super::limits::{self, Limiter, Limits};
use super::stdio::PluginOutput;
use super::{Runtime, StageState};
use crate::event::{self, Batch, BatchBuilder, BytesColumn, Event};

/// The exports of the `stage` world.
const STAGE_EXPORTS: [&str; 3] = ["init", "on-event", "on-batch"];

/// What is known about a loaded plugin.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// Name (the file stem).
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// True when the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// Time to compile (or load from the cache) and pre-instantiate.
    pub load_time: Duration,
    /// The world it implements.
    pub world: &'static str,
    /// Imported interfaces and functions.
    pub imports: Vec<String>,
    /// Exported interfaces and functions.
    pub exports: Vec<String>,
    /// False when the plugin declared that it never reads input values (the SDK's
    /// `values = false`): its batches arrive with empty values, which are not copied in.
    pub reads_values: bool,
}

/// The custom section by which a plugin says it does not read input values.
const NO_VALUES_SECTION: &str = "flowgate:no-values";

/// True unless a core module of the component carries [`NO_VALUES_SECTION`].
fn reads_values(bytes: &[u8]) -> bool {
    !wasmparser::Parser::new(0).parse_all(bytes).any(
        |p| matches!(p, Ok(wasmparser::Payload::CustomSection(c)) if c.name() == NO_VALUES_SECTION),
    )
}

/// A loaded plugin version: compiled code and a pre-instantiated handle. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    info: Arc<PluginInfo>,
    pre: StagePre<StageState>,
    runtime: Runtime,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn describe(name: &str, item: &ComponentItem) -> String {
    let what = match item {
        ComponentItem::ComponentFunc(_) | ComponentItem::CoreFunc(_) => "func",
        ComponentItem::ComponentInstance(_) => "interface",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    };
    format!("{name} ({what})")
}

/// SHA-256 of a component's bytes, hex: its identity in the cache and in version histories.
pub fn hash_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn load(rt: &Runtime, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
    let started = Instant::now();
    let hash = hash_of(bytes);
    let (component, from_cache) = rt.compile(name, &hash, bytes)?;
    let engine = &rt.shared.engine;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(n, i)| describe(n, &i.ty))
        .collect();
    let export_names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(n, i)| describe(n, &i.ty))
        .collect();

    let missing: Vec<&str> = STAGE_EXPORTS
        .iter()
        .copied()
        .filter(|e| !export_names.iter().any(|n| n == e))
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::NotAStage {
            plugin: name.into(),
            message: format!(
                "missing export(s) {}; it exports: {}",
                missing.join(", "),
                if export_names.is_empty() {
                    "nothing".to_owned()
                } else {
                    export_names.join(", ")
                }
            ),
        });
    }
    let instance_pre =
        rt.shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                plugin: name.into(),
                message: format!("{e:#}"),
            })?;
    let pre = StagePre::new(instance_pre).map_err(|e| LoadError::NotAStage {
        plugin: name.into(),
        message: format!("{e:#}"),
    })?;
    let info = PluginInfo {
        name: name.into(),
        hash,
        size: bytes.len(),
        from_cache,
        load_time: started.elapsed(),
        world: "flowgate:plugin/stage@0.1.0",
        imports,
        exports,
        reads_values: reads_values(bytes),
    };
    tracing::debug!(plugin = name, hash = %info.hash, from_cache, load_ms = info.load_time.as_millis() as u64, "plugin loaded");
    Ok(Plugin {
        info: Arc::new(info),
        pre,
        runtime: rt.clone(),
    })
}

impl Plugin {
    /// What is known about this plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// A new stage instance: a fresh store under `limits`, instantiated, with `init` called.
    pub fn instantiate(
        &self,
        limits: Limits,
        config: Vec<(String, String)>,
    ) -> Result<StageInstance, CallError> {
        let name: Arc<str> = self.info.name.as_str().into();
        let mut instance = StageInstance {
            plugin: self.clone(),
            stderr: PluginOutput::new(name.clone(), "stderr"),
            stdout: PluginOutput::new(name.clone(), "stdout"),
            name,
            limits,
            config,
            live: None,
            restarts: 0,
        };
        instance.start()?;
        Ok(instance)
    }
}

struct Live {
    store: Store<StageState>,
    stage: Stage,
}

/// A stage instance: one store, reused across calls. Not shared between threads at once.
///
/// After a trap the store is dropped; the next call builds a fresh one (and calls `init`
/// again), so one bad event never leaves a broken instance behind.
pub struct StageInstance {
    plugin: Plugin,
    name: Arc<str>,
    limits: Limits,
    config: Vec<(String, String)>,
    stdout: PluginOutput,
    stderr: PluginOutput,
    live: Option<Live>,
    restarts: u64,
}

impl std::fmt::Debug for StageInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageInstance")
            .field("plugin", &self.name)
            .field("limits", &self.limits)
            .field("live", &self.live.is_some())
            .field("restarts", &self.restarts)
            .finish()
    }
}

/// A row of a batch that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowFailure {
    /// Index of the input row.
    pub row: u32,
    /// Why.
    pub error: CallError,
}

/// The result of a batch: outputs, where each came from, and the rows that failed.
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// Output rows, in order.
    pub output: Batch,
    /// For each output row, its input row; non-decreasing.
    pub origins: Vec<u32>,
    /// Input rows that failed.
    pub failures: Vec<RowFailure>,
}

/// Bytes of keys, values and headers of owned events.
fn event_bytes(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| {
            e.value.len()
                + e.key.as_ref().map_or(0, Vec::len)
                + e.headers
                    .iter()
                    .map(|h| h.name.len() + h.value.len())
                    .sum::<usize>()
        })
        .sum()
}

/// The trap and the top of the wasm backtrace (at most 8 frames).
fn trap_message(trap: &Trap, err: &wasmtime::Error) -> String {
    let mut message = trap.to_string();
    if let Some(bt) = err.downcast_ref::<WasmBacktrace>() {
        for frame in bt.frames().iter().take(8) {
            let func = frame
                .func_name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("wasm function {}", frame.func_index()));
            message.push_str(&format!("\n    at {func}"));
        }
        if bt.frames().len() > 8 {
            message.push_str(&format!("\n    ... {} more frames", bt.frames().len() - 8));
        }
    }
    message
}

impl StageInstance {
    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// How many times the instance was rebuilt after a trap.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    fn error(&self, kind: CallErrorKind) -> CallError {
        CallError {
            plugin: self.name.to_string(),
            kind,
            stderr: self.stderr.tail(),
        }
    }

    /// Turns a wasmtime error (a trap, usually) into a typed error.
    fn classify(&self, err: wasmtime::Error, state: &StageState) -> CallError {
        let kind = match (err.downcast_ref::<Trap>(), state.limiter.refused_memory) {
            (Some(Trap::Interrupt), _) => CallErrorKind::Timeout {
                limit: self.limits.call_timeout,
            },
            (Some(Trap::StackOverflow), _) => CallErrorKind::StackOverflow,
            (_, Some(requested)) => CallErrorKind::MemoryLimit {
                cap: self.limits.memory_bytes,
                requested,
            },
            (Some(trap), None) => CallErrorKind::Trap {
                message: trap_message(trap, &err),
            },
            (None, None) => CallErrorKind::Instantiate {
                message: format!("{err:#}"),
            },
        };
        self.error(kind)
    }

    /// Builds a fresh store, instantiates and calls `init`.
    fn start(&mut self) -> Result<(), CallError> {
        let rt = &self.plugin.runtime.shared;
        let wasi = WasiCtxBuilder::new()
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = StageState {
            wasi,
            table: Default::default(),
            limiter: Limiter::new(&self.limits),
            plugin: self.name.clone(),
        };
        let mut store = Store::new(&rt.engine, state);
        self.stderr.clear_tail();
        limits::apply(&mut store, self.limits.call_timeout, rt.config.epoch_tick);
        let stage = match self.plugin.pre.instantiate(&mut store) {
            Ok(s) => s,
            Err(e) => return Err(self.classify(e, store.data())),
        };
        limits::apply(&mut store, self.limits.call_timeout, rt.config.epoch_tick);
        match stage.call_init(&mut store, &self.config) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.error(CallErrorKind::Plugin(e.into()))),
            Err(e) => return Err(self.classify(e, store.data())),
        }
        self.live = Some(Live { store, stage });
        Ok(())
    }

    /// Runs one call under the limits; on a trap, drops the store.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Stage, &mut Store<StageState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.live.is_none() {
            self.restarts += 1;
            tracing::info!(plugin = %self.name, restarts = self.restarts, "rebuilding the instance after a trap");
            self.start()?;
        }
        let tick = self.plugin.runtime.shared.config.epoch_tick;
        let timeout = self.limits.call_timeout;
        self.stderr.clear_tail();
        let Some(mut live) = self.live.take() else {
            unreachable!("start() succeeded, so the instance is live")
        };
        limits::apply(&mut live.store, timeout, tick);
        match f(&live.stage, &mut live.store) {
            Ok(r) => {
                self.live = Some(live);
                Ok(r)
            }
            // The store is dropped here: a trapped instance is never entered again.
            Err(e) => Err(self.classify(e, live.store.data())),
        }
    }

    /// Calls `on-event`.
    pub fn on_event(&mut self, event: &Event) -> Result<Vec<Event>, CallError> {
        let out = self
            .call(|stage, store| stage.call_on_event(store, event))?
            .map_err(|e| self.error(CallErrorKind::Plugin(e.into())))?;
        let max = self.limits.max_outputs_per_event;
        if out.len() > max {
            return Err(self.error(CallErrorKind::OutputLimit {
                message: format!(
                    "{} events from one input event; the limit is {max} (stage key `max-outputs-per-event`)",
                    out.len()
                ),
            }));
        }
        self.check_bytes(event_bytes(&out))?;
        Ok(out)
    }

    fn check_bytes(&self, bytes: usize) -> Result<(), CallError> {
        let max = self.limits.max_output_bytes;
        if bytes > max {
            return Err(self.error(CallErrorKind::OutputLimit {
                message: format!(
                    "{bytes} bytes of output from one call; the limit is {max} (stage key `max-output-bytes`)"
                ),
            }));
        }
        Ok(())
    }

    /// Calls `on-batch` once. See [`process_batch`](Self::process_batch) for the call that
    /// survives a trap on one row.
    pub fn on_batch(&mut self, input: &Batch) -> Result<BatchOutput, CallError> {
        let rows = input.values.ends.len();
        // A plugin that does not read values gets them empty: not copied into its memory.
        let projected;
        let input = if self.plugin.info.reads_values {
            input
        } else {
            projected = Batch {
                values: BytesColumn {
                    data: Vec::new(),
                    ends: vec![0; rows],
                },
                keys: input.keys.clone(),
                has_key: input.has_key.clone(),
                timestamps: input.timestamps.clone(),
                header_ends: input.header_ends.clone(),
                header_names: input.header_names.clone(),
                header_values: input.header_values.clone(),
            };
            &projected
        };
        let result: BatchResult = self
            .call(|stage, store| stage.call_on_batch(store, input))?
            .map_err(|e| self.error(CallErrorKind::Plugin(e.into())))?;
        let bad = |message: String| self.error(CallErrorKind::BadOutput { message });
        let cols = event::columns(&result.output).map_err(|e| bad(e.to_string()))?;
        if result.origins.len() != cols.len() {
            return Err(bad(format!(
                "{} output rows but {} origins",
                cols.len(),
                result.origins.len()
            )));
        }
        if result.origins.windows(2).any(|w| w[0] > w[1])
            || result.origins.last().is_some_and(|&o| o as usize >= rows)
        {
            return Err(bad(format!(
                "origins must be non-decreasing input rows below {rows}"
            )));
        }
        if let Some(f) = result.failures.iter().find(|f| f.row as usize >= rows) {
            return Err(bad(format!("failure names row {} of {rows}", f.row)));
        }
        let max = self
            .limits
            .max_outputs_per_event
            .saturating_mul(rows.max(1));
        if cols.len() > max {
            return Err(self.error(CallErrorKind::OutputLimit {
                message: format!(
                    "{} events from a batch of {rows}; the limit is {} per input event (stage key `max-outputs-per-event`)",
                    cols.len(),
                    self.limits.max_outputs_per_event
                ),
            }));
        }
        let p = event::parts(&result.output);
        self.check_bytes(
            p.values.len() + p.keys.len() + p.header_names.len() + p.header_values.len(),
        )?;
        let failures = result
            .failures
            .into_iter()
            .map(|f| RowFailure {
                row: f.row,
                error: self.error(CallErrorKind::Plugin(f.error.into())),
            })
            .collect();
        Ok(BatchOutput {
            output: result.output,
            origins: result.origins,
            failures,
        })
    }

    /// Calls `on-batch`; if the batch traps (or hits a limit), replays it one event at a time
    /// through `on-event` so that only the rows that trap fail and the rest go through.
    ///
    /// The replay gives up (returning the error) at the third row that times out, so a plugin
    /// that loops on every event costs three deadlines, not one per row. A `fatal` plugin error
    /// fails the whole batch.
    pub fn process_batch(&mut self, input: &Batch) -> Result<BatchOutput, CallError> {
        let err = match self.on_batch(input) {
            Ok(out) => return Ok(out),
            Err(e) if e.is_trap() || matches!(e.kind, CallErrorKind::OutputLimit { .. }) => e,
            Err(e) => return Err(e),
        };
        tracing::warn!(plugin = %self.name, error = %err, "batch failed; replaying it event by event to isolate the bad rows");
        let cols = event::columns(input).map_err(|e| {
            self.error(CallErrorKind::BadOutput {
                message: format!("input batch: {e}"),
            })
        })?;
        let mut out = BatchBuilder::with_capacity(cols.len(), input.values.data.len());
        let mut origins = Vec::with_capacity(cols.len());
        let mut failures = Vec::new();
        let mut timeouts = 0;
        for (row, e) in cols.rows().enumerate() {
            let row = row as u32;
            match self.on_event(&event::to_owned(&e)) {
                Ok(events) => {
                    for ev in &events {
                        event::push_event(&mut out, ev);
                        origins.push(row);
                    }
                }
                Err(error) => {
                    if matches!(error.plugin_error(), Some(PluginError::Fatal(_))) {
                        return Err(error);
                    }
                    if matches!(error.kind, CallErrorKind::Timeout { .. }) {
                        timeouts += 1;
                        if timeouts >= 3 {
                            return Err(error);
                        }
                    }
                    failures.push(RowFailure { row, error });
                }
            }
        }
        Ok(BatchOutput {
            output: event::finish(out),
            origins,
            failures,
        })
    }
}
