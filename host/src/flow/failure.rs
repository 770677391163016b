//! A failed input row: why it failed ([`RowError`]), and the context a dead letter carries
//! ([`DeadLetter`]). A row fails when the plugin's call fails on it (a [`CallError`]) or when the
//! stage worker refuses what came of it: an output no route takes, an event too late for its
//! windows, a row the windows refuse, an output over a record limit. Both go by the stage's
//! `on-error` policy alike, and are named alike in metrics and dead-letter headers.

use std::fmt;

use crate::runtime::{CallError, PluginError, PluginInfo};
use crate::state::{Failure, Refusal};

/// Why an input row failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowError {
    /// The plugin's call failed on the row: a trap, a limit, an error value it returned...
    Call(CallError),
    /// An output of the row that the stage's route has no topic for.
    NoRoute {
        /// The plugin that made the output.
        plugin: String,
        /// The header and its value.
        message: String,
    },
    /// The row arrived after every window it belongs to was closed, and the stage has no
    /// `late-output`.
    Late {
        /// The stage's plugin.
        plugin: String,
        /// The event time and the watermark.
        message: String,
    },
    /// The windows refused the row: it would take the stage's state past `max-state-bytes`, or
    /// its time cannot be placed in a window.
    Refused {
        /// The stage's plugin.
        plugin: String,
        /// What the windows found.
        refusal: Refusal,
    },
    /// An output of the row is over a record limit (`[limits]` in the pipeline file).
    RecordLimit {
        /// The plugin that made the output.
        plugin: String,
        /// Which limit, by how much, and the key that raises it.
        message: String,
    },
}

impl From<CallError> for RowError {
    fn from(e: CallError) -> Self {
        RowError::Call(e)
    }
}

impl RowError {
    /// A row the windows of `plugin`'s stage failed: the plugin's call, or their refusal.
    pub fn of_windows(plugin: &str, failure: Failure<CallError>) -> RowError {
        match failure {
            Failure::Plugin(e) => RowError::Call(e),
            Failure::Refused(refusal) => RowError::Refused {
                plugin: plugin.to_owned(),
                refusal,
            },
        }
    }

    /// The call error, when the plugin's call failed on the row.
    pub fn call(&self) -> Option<&CallError> {
        match self {
            RowError::Call(e) => Some(e),
            _ => None,
        }
    }

    /// True when the instance trapped (or was stopped) on the row.
    pub fn is_trap(&self) -> bool {
        self.call().is_some_and(CallError::is_trap)
    }

    /// True when the call was stopped by the host shutting down.
    pub fn is_interrupted(&self) -> bool {
        self.call().is_some_and(CallError::is_interrupted)
    }

    /// True for the plugin's `retryable` error.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.call().and_then(CallError::plugin_error),
            Some(PluginError::Retryable(_))
        )
    }

    /// A short name of the kind, for metrics and headers.
    pub fn kind_name(&self) -> &'static str {
        match self {
            RowError::Call(e) => e.kind_name(),
            RowError::NoRoute { .. } => "no-route",
            RowError::Late { .. } => "late",
            RowError::Refused { refusal, .. } => refusal.kind_name(),
            RowError::RecordLimit { .. } => "record-limit",
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::Call(e) => e.fmt(f),
            RowError::NoRoute { plugin, message } => {
                write!(f, "plugin `{plugin}`: no route for an output: {message}")
            }
            RowError::Late { plugin, message } => {
                write!(f, "plugin `{plugin}`: late event: {message}")
            }
            RowError::Refused { plugin, refusal } => write!(f, "plugin `{plugin}`: {refusal}"),
            RowError::RecordLimit { plugin, message } => {
                write!(f, "plugin `{plugin}`: record limit: {message}")
            }
        }
    }
}

impl std::error::Error for RowError {}

/// Where a failed row was read and what failed it: the headers a dead letter carries next to
/// the row's own (docs/pipeline.md lists them).
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    /// The stage.
    pub stage: &'a str,
    /// The plugin version that ran the row.
    pub plugin: &'a PluginInfo,
    /// Why it failed.
    pub error: &'a RowError,
    /// The input topic, partition and offset of the row.
    pub topic: &'a str,
    /// See `topic`.
    pub partition: u32,
    /// See `topic`.
    pub offset: u64,
    /// Calls made on the row.
    pub attempts: u32,
}

impl DeadLetter<'_> {
    /// The context headers, in the order they are written.
    pub fn headers(&self) -> [(&'static str, String); 9] {
        [
            ("flowgate-stage", self.stage.to_owned()),
            ("flowgate-plugin", self.plugin.name.clone()),
            ("flowgate-plugin-hash", self.plugin.hash.clone()),
            ("flowgate-error-kind", self.error.kind_name().to_owned()),
            ("flowgate-error", self.error.to_string()),
            ("flowgate-topic", self.topic.to_owned()),
            ("flowgate-partition", self.partition.to_string()),
            ("flowgate-offset", self.offset.to_string()),
            ("flowgate-attempt", self.attempts.to_string()),
        ]
    }
}
