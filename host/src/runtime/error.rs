//! Errors of loading and calling plugins: one enum per operation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::wit::flowgate::plugin::types::Error as WitError;

/// What Flowgate provides to plugins; named in link errors.
const PROVIDED: &str = "wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem and \
    wasi:sockets (with no directory and no network granted), flowgate:plugin/log and flowgate:plugin/state (0.1.x)";

/// A plugin could not be loaded. The old version, if any, keeps running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The engine could not be set up (a host problem, not the plugin's).
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The file is a core module, not a component.
    #[error(
        "plugin `{plugin}` is a core WebAssembly module, not a component: build it for \
         wasm32-wasip2 (`rustup target add wasm32-wasip2`, then `cargo build --target wasm32-wasip2`) \
         or wrap it with `wasm-tools component new`"
    )]
    NotAComponent {
        /// Plugin name.
        plugin: String,
    },
    /// The bytes are not a valid component.
    #[error("plugin `{plugin}` is not a valid WebAssembly component: {message}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// What wasmtime said.
        message: String,
    },
    /// The component does not export the `stage` world.
    #[error(
        "plugin `{plugin}` implements no flowgate:plugin world of 0.1.x (stage: init, \
         on-event, on-batch; filter: init, keep, keep-batch; aggregator: init, create, add, \
         merge, finish): {message}"
    )]
    NotAStage {
        /// Plugin name.
        plugin: String,
        /// What is missing or mistyped.
        message: String,
    },
    /// The component imports something Flowgate does not provide.
    #[error(
        "plugin `{plugin}` needs an import Flowgate does not provide: {message} (provided: {PROVIDED})"
    )]
    Link {
        /// Plugin name.
        plugin: String,
        /// What wasmtime said.
        message: String,
    },
}

/// An error a plugin returned as a WIT value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A transient problem; the same input may succeed later.
    #[error("retryable error: {0}")]
    Retryable(String),
    /// The input cannot be processed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The plugin cannot go on.
    #[error("fatal error: {0}")]
    Fatal(String),
}

impl From<WitError> for PluginError {
    fn from(e: WitError) -> Self {
        match e {
            WitError::Retryable(m) => PluginError::Retryable(m),
            WitError::InvalidInput(m) => PluginError::InvalidInput(m),
            WitError::Fatal(m) => PluginError::Fatal(m),
        }
    }
}

/// What went wrong in a call: what the guest did or what bounding it took. A row the stage
/// worker fails on its own findings (no route for an output, a late event, a record or state
/// limit) is not a call error: that is the stage's row error, one layer up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The plugin returned an error value.
    Plugin(PluginError),
    /// The call ran past its deadline and was stopped.
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The plugin asked for more memory than its cap.
    MemoryLimit {
        /// The cap, bytes.
        cap: usize,
        /// What it asked for in all, bytes.
        requested: usize,
    },
    /// The plugin overflowed its stack (unbounded recursion, usually).
    StackOverflow,
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access...).
    Trap {
        /// The trap message with the wasm backtrace.
        message: String,
    },
    /// The plugin returned more output than a call may.
    OutputLimit {
        /// Which limit and by how much.
        message: String,
    },
    /// The plugin returned a malformed batch.
    BadOutput {
        /// What is malformed.
        message: String,
    },
    /// The plugin called WASI `exit` (`std::process::exit`, say): the call ends there, as a trap
    /// of this call only, and the instance is rebuilt for the next one.
    Exited {
        /// The exit status it gave.
        code: i32,
    },
    /// The call was stopped because the host is shutting down (its
    /// [`Interrupt`](super::Interrupt) was set); the input is processed again after a restart.
    Interrupted,
    /// The plugin could not be instantiated.
    Instantiate {
        /// What wasmtime said.
        message: String,
    },
}

/// A call into a plugin failed. A trap never takes the host down: the instance is rebuilt on
/// its next call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// The plugin's name.
    pub plugin: String,
    /// What went wrong.
    pub kind: CallErrorKind,
    /// The last lines the plugin wrote to stderr during the call (a panic message, say).
    pub stderr: String,
}

impl CallError {
    /// True when the instance trapped (or was stopped) and had to be discarded.
    pub fn is_trap(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Timeout { .. }
                | CallErrorKind::MemoryLimit { .. }
                | CallErrorKind::StackOverflow
                | CallErrorKind::Trap { .. }
                | CallErrorKind::Exited { .. }
        )
    }

    /// True when the call was stopped by the host shutting down, not by anything the plugin did.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.kind, CallErrorKind::Interrupted)
    }

    /// True for the plugin's `fatal` error: the stage cannot go on.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, CallErrorKind::Plugin(PluginError::Fatal(_)))
    }

    /// The plugin's own error, if it returned one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match &self.kind {
            CallErrorKind::Plugin(e) => Some(e),
            _ => None,
        }
    }

    /// A short name of the kind, for metrics and headers.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            CallErrorKind::Plugin(PluginError::Retryable(_)) => "retryable",
            CallErrorKind::Plugin(PluginError::InvalidInput(_)) => "invalid-input",
            CallErrorKind::Plugin(PluginError::Fatal(_)) => "fatal",
            CallErrorKind::Timeout { .. } => "timeout",
            CallErrorKind::MemoryLimit { .. } => "memory-limit",
            CallErrorKind::StackOverflow => "stack-overflow",
            CallErrorKind::Trap { .. } => "trap",
            CallErrorKind::OutputLimit { .. } => "output-limit",
            CallErrorKind::BadOutput { .. } => "bad-output",
            CallErrorKind::Exited { .. } => "exit",
            CallErrorKind::Interrupted => "interrupted",
            CallErrorKind::Instantiate { .. } => "instantiate",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}`: ", self.plugin)?;
        match &self.kind {
            CallErrorKind::Plugin(e) => write!(f, "{e}")?,
            CallErrorKind::Timeout { limit } => write!(
                f,
                "stopped after its time limit of {} ms per call (raise the stage's `timeout` if the work is legitimate)",
                limit.as_millis()
            )?,
            CallErrorKind::MemoryLimit { cap, requested } => write!(
                f,
                "memory cap of {cap} bytes reached: it asked for {requested} bytes in all (raise the stage's `memory` if legitimate)"
            )?,
            CallErrorKind::StackOverflow => write!(f, "stack overflow (unbounded recursion?)")?,
            CallErrorKind::Trap { message } => write!(f, "trapped: {message}")?,
            CallErrorKind::OutputLimit { message } => write!(f, "output limit: {message}")?,
            CallErrorKind::BadOutput { message } => {
                write!(f, "returned a malformed batch: {message}")?
            }
            CallErrorKind::Exited { code } => write!(
                f,
                "called exit with status {code}: the call ends there and the instance is rebuilt \
                 (a plugin should return an error value for an event it cannot process, not exit)"
            )?,
            CallErrorKind::Interrupted => write!(
                f,
                "stopped in the middle of a call: the host is shutting down (the input is processed again on restart)"
            )?,
            CallErrorKind::Instantiate { message } => {
                write!(f, "cannot be instantiated: {message}")?
            }
        }
        if !self.stderr.is_empty() {
            write!(
                f,
                "\n  plugin stderr: {}",
                self.stderr.replace('\n', "\n    ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}
