//! The wasmtime embedding.
//!
//! - One [`Runtime`] per process: one `Engine` (pooling allocator, epoch interruption,
//!   copy-on-write memory images), one `Linker` built once, an epoch ticker thread, and the
//!   on-disk compiled-code cache.
//! - One [`Plugin`] per plugin version: the compiled component and its pre-instantiated handle,
//!   made once.
//! - One [`StageInstance`] per stage instance (stage × partition): a store reused across calls,
//!   whose data is the instance's host context, [`HostCtx`].
//!
//! Every guest is bounded by [`Limits`] from one file (`limits.rs`): a call ends at its time
//! limit whether it runs guest code (the epoch) or waits in a WASI call (`wasi:io/poll` is
//! shadowed, `poll.rs`), and an [`Interrupt`] stops calls in flight when the host shuts down.
//! Plugins see WASI without filesystem, network, stdin or environment, the
//! `flowgate:plugin/log` import, and
//! `flowgate:plugin/state` when their stage is granted keyed state; their stdout and stderr go
//! to the host's logs under the plugin's name. A plugin implements the `stage` world or the
//! `aggregator` world (windows kept by the host, [`crate::state::window`]).

#[cfg(feature = "full")]
mod cache;
mod error;
mod limits;
mod log;
mod plugin;
mod poll;
mod state;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use error::{CallError, CallErrorKind, LoadError, PluginError};
pub use limits::{Interrupt, Limits};
pub use plugin::{BatchOutput, Plugin, PluginInfo, RowFailure, StageInstance, World, hash_of};

#[cfg(feature = "full")]
use cache::CodeCache;
use limits::Limiter;
use stdio::LogBudget;

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// Epoch period: call deadlines are measured in these ticks.
    pub epoch_tick: Duration,
    /// Stage instances that may exist at once (the size of the instance pool).
    pub max_stage_instances: u32,
    /// Largest memory cap any stage may be given, in bytes (reserved per pool slot).
    pub max_memory_bytes: usize,
    /// WebAssembly stack per call, in bytes: deeper recursion traps.
    pub max_stack_bytes: usize,
    /// Write `/tmp/perf-<pid>.map` so `perf` names the plugins' compiled functions (build the
    /// plugin without stripping its name section to get its function names). Default: on when
    /// `FLOWGATE_PERF_MAP=1`.
    pub perf_map: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: default_cache_dir(),
            epoch_tick: Duration::from_millis(1),
            max_stage_instances: 256,
            max_memory_bytes: 1 << 30,
            max_stack_bytes: 512 << 10,
            perf_map: std::env::var_os("FLOWGATE_PERF_MAP").is_some_and(|v| v == "1"),
        }
    }
}

/// `$FLOWGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/flowgate`, else `~/.cache/flowgate`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FLOWGATE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("flowgate"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("flowgate"))
}

/// The host context of a stage instance, the data of its store: the WASI context, the limiter,
/// the call's deadline and interrupt, the plugin's name and log budget for its logs, and the
/// keyed state it is granted.
pub struct HostCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// When the call in progress must end (set by `limits::apply`).
    deadline: Instant,
    interrupt: Interrupt,
    budget: LogBudget,
    plugin: Arc<str>,
    /// The stage instance's keyed state, when granted.
    state: Option<crate::state::SharedState>,
}

impl std::fmt::Debug for HostCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCtx")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Advances the engine's epoch once per tick, tracking wall time: if the thread wakes late it
/// catches up, so a deadline of N ticks means N ticks of real time. Dropping it stops and joins
/// the thread.
#[derive(Debug)]
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-epoch".into())
            .spawn(move || {
                let start = Instant::now();
                let mut epoch: u128 = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let due = start.elapsed().as_nanos() / tick.as_nanos().max(1);
                    while epoch < due {
                        engine.increment_epoch();
                        epoch += 1;
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    engine: Engine,
    linker: Linker<HostCtx>,
    #[cfg(feature = "full")]
    cache: Option<CodeCache>,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

/// The process-wide WebAssembly runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_stage_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memory_size(config.max_memory_bytes);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack_bytes)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        #[cfg(feature = "full")]
        wasm.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if config.perf_map {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(|e| LoadError::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        poll::shadow(&mut linker).map_err(|e| LoadError::Engine(e.to_string()))?;
        crate::wit::flowgate::plugin::log::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| LoadError::Engine(e.to_string()))?;
        crate::wit::flowgate::plugin::state::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| LoadError::Engine(e.to_string()))?;

        #[cfg(feature = "full")]
        let cache = match &config.cache_dir {
            None => None,
            Some(dir) => match CodeCache::new(dir.clone(), &engine) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "compiled-code cache disabled");
                    None
                }
            },
        };
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linker,
                #[cfg(feature = "full")]
                cache,
                config,
                _ticker: ticker,
            }),
        })
    }

    /// The engine-wide settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Loads a plugin from a file: compiles it (or takes it from the cache), checks it is a
    /// Flowgate stage, and pre-instantiates it.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        self.load_bytes(&name, &bytes)
    }

    /// Loads a plugin from its bytes; `name` tags its logs and errors.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        plugin::load(self, name, bytes)
    }

    #[cfg(feature = "full")]
    fn compile(
        &self,
        name: &str,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), LoadError> {
        let engine = &self.shared.engine;
        if let Some(c) = self
            .shared
            .cache
            .as_ref()
            .and_then(|c| c.load(engine, hash))
        {
            return Ok((c, true));
        }
        if wasmparser::Parser::is_core_wasm(bytes) {
            return Err(LoadError::NotAComponent {
                plugin: name.into(),
            });
        }
        let component = Component::from_binary(engine, bytes).map_err(|e| LoadError::Compile {
            plugin: name.into(),
            message: format!("{e:#}"),
        })?;
        if let Some(cache) = &self.shared.cache {
            cache.store(hash, &component);
        }
        Ok((component, false))
    }

    /// Without the `full` feature wasmtime has no compiler (and the cache no engine key): no
    /// plugin loads.
    #[cfg(not(feature = "full"))]
    fn compile(&self, name: &str, _: &str, _: &[u8]) -> Result<(Component, bool), LoadError> {
        Err(LoadError::Compile {
            plugin: name.into(),
            message: "this build of flowgate has no compiler (its `full` feature is off)".into(),
        })
    }
}
