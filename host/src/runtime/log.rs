//! Host side of `flowgate:plugin/log`: plugin log lines become `tracing` events, within the
//! instance's log budget (shared with its stdout and stderr, [`super::stdio::LogBudget`]).

use super::HostCtx;
use super::stdio::MAX_LINE;
use crate::wit::flowgate::plugin::log::{Host, Level};

impl Host for HostCtx {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if !self.budget.admit(message.len() + 1) {
            self.budget.settle();
            return Ok(());
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}
