//! A plugin version (compiled once, pre-instantiated once) and its stage instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::p2::pipe::ClosedInputStream;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::error::{CallError, CallErrorKind, LoadError, PluginError};
use super::limits::{self, Interrupt, Interrupted, Limiter, Limits};
use super::stdio::{LogBudget, PluginOutput};
use super::{HostCtx, Runtime};
use crate::event::{self, Batch, BatchBuilder, BytesColumn, Event};
use crate::state::SharedState;
use crate::state::window::{Aggregate, AggregateError};
use crate::wit::aggregator::flowgate::plugin::windows::{AddResult, Pane, Window};
use crate::wit::aggregator::{Aggregator, AggregatorPre};
use crate::wit::filter::{Filter, FilterPre};
use crate::wit::flowgate::plugin::types::{BatchResult, RowError, Selection};
use crate::wit::{Stage, StagePre};

/// The exports of the `stage` world.
const STAGE_EXPORTS: [&str; 3] = ["init", "on-event", "on-batch"];

/// The exports of the `filter` world.
const FILTER_EXPORTS: [&str; 3] = ["init", "keep", "keep-batch"];

/// The exports of the `aggregator` world.
const AGGREGATOR_EXPORTS: [&str; 5] = ["init", "create", "add", "merge", "finish"];

/// The import by which a plugin uses keyed state.
const STATE_IMPORT: &str = "flowgate:plugin/state";

/// The worlds a plugin may implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `flowgate:plugin/stage`: events in, events out.
    Stage,
    /// `flowgate:plugin/filter` (since 0.1.1): says which input events go on, unchanged.
    Filter,
    /// `flowgate:plugin/aggregator`: folds events into windows the host keeps.
    Aggregator,
}

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
    /// The same, as a value.
    pub kind: World,
    /// True when it imports `flowgate:plugin/state` (its stage must grant `state = true`).
    pub uses_state: bool,
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
    /// The component as loaded (a roll-back deploys it again, at every process of a shared log).
    bytes: Arc<[u8]>,
    pre: Pre,
    runtime: Runtime,
}

#[derive(Clone)]
enum Pre {
    Stage(StagePre<HostCtx>),
    Filter(FilterPre<HostCtx>),
    Aggregator(AggregatorPre<HostCtx>),
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

/// The world's name, at the contract version the plugin was built against: 0.1.0 when its
/// imports of the contract's interfaces say so (it runs on this host through the linker's
/// semver matching), else this host's 0.1.1.
fn world_name(kind: World, imports: &[String]) -> &'static str {
    let old = imports
        .iter()
        .any(|i| i.starts_with("flowgate:plugin/") && i.contains("@0.1.0"));
    match (kind, old) {
        (World::Stage, true) => "flowgate:plugin/stage@0.1.0",
        (World::Stage, false) => "flowgate:plugin/stage@0.1.1",
        (World::Filter, _) => "flowgate:plugin/filter@0.1.1",
        (World::Aggregator, true) => "flowgate:plugin/aggregator@0.1.0",
        (World::Aggregator, false) => "flowgate:plugin/aggregator@0.1.1",
    }
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

    let has = |e: &str| export_names.iter().any(|n| n == e);
    let kind = if has("add") && has("finish") {
        World::Aggregator
    } else if has("keep-batch") {
        World::Filter
    } else {
        World::Stage
    };
    let wanted: &[&str] = match kind {
        World::Stage => &STAGE_EXPORTS,
        World::Filter => &FILTER_EXPORTS,
        World::Aggregator => &AGGREGATOR_EXPORTS,
    };
    let missing: Vec<&str> = wanted
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
    let not_a_stage = |e: wasmtime::Error| LoadError::NotAStage {
        plugin: name.into(),
        message: format!("{e:#}"),
    };
    let pre = match kind {
        World::Stage => Pre::Stage(StagePre::new(instance_pre).map_err(not_a_stage)?),
        World::Filter => Pre::Filter(FilterPre::new(instance_pre).map_err(not_a_stage)?),
        World::Aggregator => {
            Pre::Aggregator(AggregatorPre::new(instance_pre).map_err(not_a_stage)?)
        }
    };
    let uses_state = imports.iter().any(|i| i.starts_with(STATE_IMPORT));
    let info = PluginInfo {
        name: name.into(),
        hash,
        size: bytes.len(),
        from_cache,
        load_time: started.elapsed(),
        world: world_name(kind, &imports),
        kind,
        uses_state,
        imports,
        exports,
        reads_values: reads_values(bytes),
    };
    tracing::debug!(plugin = name, hash = %info.hash, from_cache, load_ms = info.load_time.as_millis() as u64, "plugin loaded");
    Ok(Plugin {
        info: Arc::new(info),
        bytes: bytes.into(),
        pre,
        runtime: rt.clone(),
    })
}

impl Plugin {
    /// What is known about this plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The component's bytes, as loaded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A new stage instance: a fresh store under `limits`, instantiated, with `init` called.
    pub fn instantiate(
        &self,
        limits: Limits,
        config: Vec<(String, String)>,
    ) -> Result<StageInstance, CallError> {
        let name: Arc<str> = self.info.name.as_str().into();
        let budget = LogBudget::new(
            name.clone(),
            limits.log_bytes_per_second,
            limits.log_burst_bytes,
        );
        let mut instance = StageInstance {
            plugin: self.clone(),
            stderr: PluginOutput::new(name.clone(), "stderr", budget.clone()),
            stdout: PluginOutput::new(name.clone(), "stdout", budget.clone()),
            budget,
            interrupt: Interrupt::new(),
            name,
            limits,
            config,
            live: None,
            restarts: 0,
            state: None,
            empty: None,
        };
        instance.start()?;
        Ok(instance)
    }
}

struct Live {
    store: Store<HostCtx>,
    exports: Exports,
}

enum Exports {
    Stage(Stage),
    Filter(Filter),
    Aggregator(Aggregator),
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
    /// The log budget of stdout, stderr and the log import together, kept across stores.
    budget: LogBudget,
    interrupt: Interrupt,
    live: Option<Live>,
    restarts: u64,
    state: Option<SharedState>,
    /// The aggregator's empty accumulator, made once per store.
    empty: Option<Vec<u8>>,
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

impl Drop for StageInstance {
    fn drop(&mut self) {
        // Lines dropped since the last report are reported once more, so none go unsaid.
        self.budget.finish();
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

/// What a batch call returned: a stage's rows, or a filter's selection.
#[expect(
    clippy::large_enum_variant,
    reason = "a local that lives for one call and is matched at once: a box would only add an allocation"
)]
enum Returned {
    Rows(BatchResult),
    Kept(Selection),
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

    /// Lines of its output dropped over its log budget so far.
    pub fn log_dropped(&self) -> u64 {
        self.budget.dropped()
    }

    /// Ties the instance to the stage that serves it: its log metric carries the stage's name,
    /// and setting `interrupt` stops its call in flight (shutdown).
    pub fn attach_stage(&mut self, stage: &str, interrupt: Interrupt) {
        self.budget.set_stage(stage);
        if let Some(live) = &mut self.live {
            live.store.data_mut().interrupt = interrupt.clone();
        }
        self.interrupt = interrupt;
    }

    /// Turns a wasmtime error (a trap, usually) into a typed error.
    fn classify(&self, err: wasmtime::Error, ctx: &HostCtx) -> CallError {
        // A WASI exit and an interrupt come back as errors of their own, not as traps.
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return self.error(CallErrorKind::Exited { code: exit.0 });
        }
        if err.downcast_ref::<Interrupted>().is_some() {
            return self.error(CallErrorKind::Interrupted);
        }
        let kind = match (err.downcast_ref::<Trap>(), ctx.limiter.refused_memory) {
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
            .stdin(ClosedInputStream)
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let ctx = HostCtx {
            wasi,
            table: Default::default(),
            limiter: Limiter::new(&self.limits),
            deadline: Instant::now(),
            interrupt: self.interrupt.clone(),
            budget: self.budget.clone(),
            plugin: self.name.clone(),
            state: self.state.clone(),
        };
        let mut store = Store::new(&rt.engine, ctx);
        limits::bound(&mut store, rt.config.epoch_tick);
        self.stderr.clear_tail();
        limits::apply(&mut store, self.limits.call_timeout, rt.config.epoch_tick);
        let exports = match &self.plugin.pre {
            Pre::Stage(pre) => pre.instantiate(&mut store).map(Exports::Stage),
            Pre::Filter(pre) => pre.instantiate(&mut store).map(Exports::Filter),
            Pre::Aggregator(pre) => pre.instantiate(&mut store).map(Exports::Aggregator),
        };
        let exports = match exports {
            Ok(s) => s,
            Err(e) => return Err(self.classify(e, store.data())),
        };
        limits::apply(&mut store, self.limits.call_timeout, rt.config.epoch_tick);
        // `init` may read the state; what it writes is kept only if it succeeds.
        let mark = self.state_mark();
        let init = match &exports {
            Exports::Stage(s) => s.call_init(&mut store, &self.config),
            Exports::Filter(s) => s.call_init(&mut store, &self.config),
            Exports::Aggregator(a) => a.call_init(&mut store, &self.config),
        };
        match init {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.state_roll_back(mark);
                return Err(self.error(CallErrorKind::Plugin(e.into())));
            }
            Err(e) => {
                self.state_roll_back(mark);
                return Err(self.classify(e, store.data()));
            }
        }
        self.empty = None;
        self.live = Some(Live { store, exports });
        Ok(())
    }

    /// Gives this instance a stage instance's keyed state (kept across instances: after a
    /// trap, a hot reload, a restart from a checkpoint).
    pub fn attach_state(&mut self, state: SharedState) {
        if let Some(live) = &mut self.live {
            live.store.data_mut().state = Some(state.clone());
        }
        self.state = Some(state);
    }

    fn state_mark(&self) -> Option<usize> {
        self.state.as_ref().map(|s| s.lock().mark())
    }

    fn state_roll_back(&self, mark: Option<usize>) {
        if let (Some(s), Some(m)) = (&self.state, mark) {
            s.lock().roll_back(m);
        }
    }

    /// Runs one call of the `stage` world (or, with `filter`, of the `filter` world) under the
    /// limits.
    fn call<R>(
        &mut self,
        stage: impl FnOnce(&Stage, &mut Store<HostCtx>) -> wasmtime::Result<R>,
        filter: impl FnOnce(&Filter, &mut Store<HostCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_any(|exports, store| match exports {
            Exports::Stage(s) => stage(s, store),
            Exports::Filter(f) => filter(f, store),
            Exports::Aggregator(_) => Err(wasmtime::format_err!(
                "this plugin implements the aggregator world; its stage needs a `window`"
            )),
        })
    }

    /// Runs one call of the `aggregator` world under the limits.
    fn call_aggregator<R>(
        &mut self,
        f: impl FnOnce(&Aggregator, &mut Store<HostCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_any(|exports, store| match exports {
            Exports::Aggregator(a) => f(a, store),
            Exports::Stage(_) | Exports::Filter(_) => Err(wasmtime::format_err!(
                "this plugin implements the stage or filter world; a stage with a `window` needs an aggregator"
            )),
        })
    }

    /// Runs one call under the limits; on a trap, drops the store and takes back the call's
    /// writes to the state.
    fn call_any<R>(
        &mut self,
        f: impl FnOnce(&Exports, &mut Store<HostCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.interrupt.is_interrupted() {
            return Err(self.error(CallErrorKind::Interrupted));
        }
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
        let mark = self.state_mark();
        match f(&live.exports, &mut live.store) {
            Ok(r) => {
                self.live = Some(live);
                Ok(r)
            }
            // The store is dropped here: a trapped instance is never entered again.
            Err(e) => {
                self.state_roll_back(mark);
                Err(self.classify(e, live.store.data()))
            }
        }
    }

    /// Calls `on-event` (a filter's `keep`: the event, or nothing).
    pub fn on_event(&mut self, event: &Event) -> Result<Vec<Event>, CallError> {
        Ok(self
            .event_call(event)?
            .unwrap_or_else(|| vec![event.clone()]))
    }

    /// [`on_event`](Self::on_event) on an event the caller gives up: a filter's kept event is
    /// returned as it is, not copied.
    pub fn on_event_owned(&mut self, event: Event) -> Result<Vec<Event>, CallError> {
        Ok(self.event_call(&event)?.unwrap_or_else(|| vec![event]))
    }

    /// One `on-event` (or `keep`) call, its outputs checked against the limits; `None` for an
    /// event a filter kept, which goes on as it came.
    fn event_call(&mut self, event: &Event) -> Result<Option<Vec<Event>>, CallError> {
        let mark = self.state_mark();
        let out = self
            .call(
                |stage, store| Ok(stage.call_on_event(store, event)?.map(Some)),
                |filter, store| {
                    let keep = filter.call_keep(store, event)?;
                    Ok(keep.map(|k| if k { None } else { Some(Vec::new()) }))
                },
            )?
            .map_err(|e| {
                // An event that fails leaves the state as it was.
                self.state_roll_back(mark);
                self.error(CallErrorKind::Plugin(e.into()))
            })?;
        let Some(out) = out else {
            // A kept event is the input as it came, not the plugin's output: like the kept
            // rows of a batch, it is not counted against the output caps.
            return Ok(None);
        };
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
        Ok(Some(out))
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

    /// Calls `on-batch` (a filter's `keep-batch`) once. See
    /// [`process_batch`](Self::process_batch) for the call that survives a trap on one row.
    pub fn on_batch(&mut self, input: &Batch) -> Result<BatchOutput, CallError> {
        let rows = input.values.ends.len();
        // A plugin that does not read values gets them empty: not copied into its memory.
        let projected;
        let whole = input;
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
        let mark = self.state_mark();
        let result = self
            .call(
                |stage, store| Ok(stage.call_on_batch(store, input)?.map(Returned::Rows)),
                |filter, store| Ok(filter.call_keep_batch(store, input)?.map(Returned::Kept)),
            )?
            .map_err(|e| {
                self.state_roll_back(mark);
                self.error(CallErrorKind::Plugin(e.into()))
            })?;
        let out = self.checked(whole, rows, result);
        if out.is_err() {
            // A result the host refuses fails every row: none keeps its state writes.
            self.state_roll_back(mark);
        }
        out
    }

    /// What a batch call returned, checked against the contract (origins, kept rows,
    /// failures) and the output limits; `whole` is the input as the host holds it.
    fn checked(
        &self,
        whole: &Batch,
        rows: usize,
        result: Returned,
    ) -> Result<BatchOutput, CallError> {
        let mut result = match result {
            Returned::Rows(r) => r,
            Returned::Kept(s) => return self.selected(whole, s),
        };
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
        check_failures(&mut result.failures, rows, &result.origins, "has outputs").map_err(bad)?;
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
        let failures = self.row_failures(result.failures);
        Ok(BatchOutput {
            output: result.output,
            origins: result.origins,
            failures,
        })
    }

    /// The rows a plugin reported as failed, as the host's errors (in row order, each once:
    /// see [`check_failures`]).
    fn row_failures(&self, failures: Vec<RowError>) -> Vec<RowFailure> {
        failures
            .into_iter()
            .map(|f| RowFailure {
                row: f.row,
                error: self.error(CallErrorKind::Plugin(f.error.into())),
            })
            .collect()
    }

    /// The output of a filter's batch: the rows it kept, taken from the host's own copy of the
    /// input (values included, for a filter that reads none).
    fn selected(&self, input: &Batch, mut s: Selection) -> Result<BatchOutput, CallError> {
        let rows = input.values.ends.len();
        let bad = |message: String| self.error(CallErrorKind::BadOutput { message });
        if s.kept.windows(2).any(|w| w[0] >= w[1])
            || s.kept.last().is_some_and(|&r| r as usize >= rows)
        {
            return Err(bad(format!(
                "kept rows must be increasing input rows below {rows}"
            )));
        }
        check_failures(&mut s.failures, rows, &s.kept, "is kept").map_err(bad)?;
        let output = event::select(input, &s.kept).map_err(|e| bad(format!("input batch: {e}")))?;
        let failures = self.row_failures(s.failures);
        Ok(BatchOutput {
            output,
            origins: s.kept,
            failures,
        })
    }

    /// Calls `on-batch`; if the batch traps (or hits a limit), replays it one event at a time
    /// through `on-event` so that only the rows that trap fail and the rest go through. With
    /// keyed state, a batch in which rows failed is replayed the same way (its writes taken
    /// back first), so a failed row keeps none of its state writes.
    ///
    /// The replay gives up (returning the error) at the third row that times out, so a plugin
    /// that loops on every event costs three deadlines, not one per row. A `fatal` plugin error
    /// fails the whole batch, and an interrupt stops the replay.
    pub fn process_batch(&mut self, input: &Batch) -> Result<BatchOutput, CallError> {
        let mark = self.state_mark();
        let err = match self.on_batch(input) {
            // With keyed state, a failed row's writes cannot be told from the others' in one
            // call: the batch's writes are taken back and it is replayed event by event, so a
            // failed row keeps none of its writes, as with `on-event`.
            Ok(out) if mark.is_some() && !out.failures.is_empty() => {
                self.state_roll_back(mark);
                tracing::debug!(plugin = %self.name, failed = out.failures.len(), "rows failed in a batch with keyed state; replaying it event by event to take back their writes");
                return self.replay_events(input);
            }
            Ok(out) => return Ok(out),
            Err(e) if e.is_trap() || matches!(e.kind, CallErrorKind::OutputLimit { .. }) => e,
            Err(e) => return Err(e),
        };
        tracing::warn!(plugin = %self.name, error = %err, "batch failed; replaying it event by event to isolate the bad rows");
        self.replay_events(input)
    }

    /// Calls `on-event` on each row of `input` in turn: the rows that fail are failures, the
    /// others' outputs are the batch's.
    fn replay_events(&mut self, input: &Batch) -> Result<BatchOutput, CallError> {
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
            match self.on_event_owned(event::to_owned(&e)) {
                Ok(events) => {
                    for ev in &events {
                        event::push_event(&mut out, ev);
                        origins.push(row);
                    }
                }
                Err(error) => {
                    if error.is_fatal() || error.is_interrupted() {
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

impl AggregateError for CallError {
    fn is_fatal(&self) -> bool {
        CallError::is_fatal(self)
    }
}

impl Aggregate for StageInstance {
    type Error = CallError;

    fn fatal(&self, message: String) -> CallError {
        self.error(CallErrorKind::Plugin(PluginError::Fatal(message)))
    }

    fn empty(&mut self) -> Vec<u8> {
        if let Some(e) = &self.empty {
            return e.clone();
        }
        match self.call_aggregator(|a, store| a.call_create(store)) {
            Ok(e) => {
                self.empty = Some(e.clone());
                e
            }
            // A trap in `create` leaves an empty accumulator; `add` will fail on it too and
            // the rows go by the stage's error policy.
            Err(e) => {
                tracing::warn!(plugin = %self.name, error = %e, "create failed");
                Vec::new()
            }
        }
    }

    fn add(
        &mut self,
        accs: &[Vec<u8>],
        input: &Batch,
        slots: &[u32],
    ) -> Result<(Vec<Vec<u8>>, Vec<(u32, CallError)>), CallError> {
        let result: AddResult = self
            .call_aggregator(|a, store| a.call_add(store, accs, input, slots))?
            .map_err(|e| self.error(CallErrorKind::Plugin(e.into())))?;
        let failures = result
            .failures
            .into_iter()
            .map(|f| (f.row, self.error(CallErrorKind::Plugin(f.error.into()))))
            .collect();
        Ok((result.accumulators, failures))
    }

    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
        self.call_aggregator(|agg, store| agg.call_merge(store, a, b))
    }

    fn finish(
        &mut self,
        panes: &[crate::state::window::DuePane<'_>],
    ) -> Result<Vec<Vec<u8>>, CallError> {
        let panes: Vec<Pane> = panes
            .iter()
            .map(|(key, start, end, acc)| Pane {
                key: key.map(<[u8]>::to_vec),
                window: Window {
                    start: *start,
                    end: *end,
                },
                accumulator: acc.to_vec(),
            })
            .collect();
        self.call_aggregator(|a, store| a.call_finish(store, &panes))?
            .map_err(|e| self.error(CallErrorKind::Plugin(e.into())))
    }
}

/// Checks the failures a plugin returned for a batch of `rows` input rows, and puts them in row
/// order: each must name an input row, once (a row named twice would be dead-lettered twice),
/// and none a row in `passed` (non-decreasing: the rows whose events went on, which `what`
/// describes), since a failed row has no outputs. The contract asks no order of failures, so
/// any order is taken.
fn check_failures(
    failures: &mut [RowError],
    rows: usize,
    passed: &[u32],
    what: &str,
) -> Result<(), String> {
    if !failures.is_sorted_by_key(|f| f.row) {
        failures.sort_by_key(|f| f.row);
    }
    if let Some(w) = failures.windows(2).find(|w| w[0].row == w[1].row) {
        return Err(format!("failure names row {} twice", w[0].row));
    }
    if let Some(f) = failures.last().filter(|f| f.row as usize >= rows) {
        return Err(format!("failure names row {} of {rows}", f.row));
    }
    let mut passed = passed.iter().peekable();
    for f in failures.iter() {
        while passed.next_if(|&&p| p < f.row).is_some() {}
        if passed.peek() == Some(&&f.row) {
            return Err(format!("failure names row {}, which {what}", f.row));
        }
    }
    Ok(())
}
