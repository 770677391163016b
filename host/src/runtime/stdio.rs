//! A plugin's stdout and stderr, routed into the host's `tracing` logs with the plugin's name.
//!
//! Output is split into lines (a line over [`MAX_LINE`] bytes is cut); the last lines of stderr
//! are also kept, so that the error of a trap can show what the plugin printed (a Rust panic
//! message, for one).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line logged; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;
/// Bytes of recent stderr kept for error reports.
const TAIL: usize = 2048;

#[derive(Debug, Default)]
struct State {
    line: Vec<u8>,
    tail: VecDeque<u8>,
}

/// One of a plugin's output streams.
#[derive(Clone, Debug)]
pub(crate) struct PluginOutput {
    plugin: Arc<str>,
    stream: &'static str,
    state: Arc<Mutex<State>>,
}

impl PluginOutput {
    pub(crate) fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        PluginOutput {
            plugin,
            stream,
            state: Arc::default(),
        }
    }

    /// What the plugin wrote most recently (up to 2 KiB), including an unfinished line.
    pub(crate) fn tail(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = state.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    /// Forgets the kept tail (at the start of a call).
    pub(crate) fn clear_tail(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail
            .clear();
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.stream == "stderr" {
            let keep = &bytes[bytes.len().saturating_sub(TAIL)..];
            state.tail.extend(keep);
            let excess = state.tail.len().saturating_sub(TAIL);
            state.tail.drain(..excess);
        }
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(state.line.len());
            state.line.extend_from_slice(&bytes[..nl.min(room)]);
            self.emit(&state.line);
            state.line.clear();
            bytes = &bytes[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(state.line.len());
        state
            .line
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        match self.stream {
            "stderr" => tracing::warn!(plugin = %self.plugin, stream = self.stream, "{line}"),
            _ => tracing::info!(plugin = %self.plugin, stream = self.stream, "{line}"),
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_latest_output_and_caps_lines() {
        let out = PluginOutput::new("p".into(), "stderr");
        out.write_bytes(b"first line\npanicked at src/lib.rs:3: boom");
        assert!(out.tail().ends_with("panicked at src/lib.rs:3: boom"));
        out.write_bytes(&vec![b'x'; 10_000]);
        assert_eq!(out.tail().len(), TAIL);
        assert!(out.state.lock().unwrap().line.len() <= MAX_LINE);
        out.clear_tail();
        assert_eq!(out.tail(), "");
    }
}
