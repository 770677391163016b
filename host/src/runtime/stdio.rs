//! A plugin's stdout and stderr, routed into the host's `tracing` logs with the plugin's name,
//! and the log budget they share with `flowgate:plugin/log`.
//!
//! Output is split into lines (a line over [`MAX_LINE`] bytes is cut); the last lines of stderr
//! are also kept, so that the error of a trap can show what the plugin printed (a Rust panic
//! message, for one). What reaches the log is bounded per instance by a [`LogBudget`]: lines
//! past it are dropped, counted, and reported at most once per [`REPORT_EVERY`]. The stream
//! never waits: a write is taken at once, logged or dropped.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line logged; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;
/// Bytes of recent stderr kept for error reports.
const TAIL: usize = 2048;
/// Lines dropped over the budget are reported at most this often per instance.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The log budget of one stage instance: a token bucket of bytes, shared by its stdout, its
/// stderr and its `flowgate:plugin/log` calls, and kept across the stores it rebuilds (so a
/// plugin that traps cannot refill it). Cheap to clone; clones share the bucket.
#[derive(Clone, Debug)]
pub(crate) struct LogBudget {
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// Largest fill, bytes.
    burst: f64,
    /// Bytes that may be logged now.
    tokens: f64,
    filled: Instant,
    plugin: Arc<str>,
    /// The stage the instance serves, once known.
    stage: Arc<str>,
    /// Lines dropped in all.
    dropped: u64,
    /// Lines dropped and not yet counted in the metric.
    uncounted: u64,
    /// Lines dropped since the last report.
    unreported: u64,
    reported: Option<Instant>,
}

impl LogBudget {
    pub(crate) fn new(plugin: Arc<str>, bytes_per_second: usize, burst: usize) -> Self {
        let burst = burst as f64;
        LogBudget {
            bucket: Arc::new(Mutex::new(Bucket {
                rate: bytes_per_second as f64,
                burst,
                tokens: burst,
                filled: Instant::now(),
                plugin,
                stage: "".into(),
                dropped: 0,
                uncounted: 0,
                unreported: 0,
                reported: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names the stage in the metric and the reports.
    pub(crate) fn set_stage(&self, stage: &str) {
        self.lock().stage = stage.into();
    }

    /// Lines dropped over the budget so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// True when a line of `bytes` may be logged now (and takes them from the bucket); false
    /// when it is to be dropped (counted; call [`settle`](Self::settle) after a run of lines).
    pub(crate) fn admit(&self, bytes: usize) -> bool {
        self.lock().admit(bytes)
    }

    /// Puts the lines dropped since the last call into the metric, and reports them if the
    /// last report is [`REPORT_EVERY`] old.
    pub(crate) fn settle(&self) {
        self.lock().settle();
    }

    /// Reports the drops not reported yet, whenever the last report was (the instance is going
    /// away).
    pub(crate) fn finish(&self) {
        let mut bucket = self.lock();
        bucket.settle();
        if bucket.unreported > 0 {
            bucket.report();
        }
    }
}

impl Bucket {
    fn admit(&mut self, bytes: usize) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.filled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.filled = now;
        let cost = bytes as f64;
        if cost <= self.tokens {
            self.tokens -= cost;
            return true;
        }
        self.dropped += 1;
        self.uncounted += 1;
        self.unreported += 1;
        false
    }

    fn settle(&mut self) {
        if self.uncounted == 0 {
            return;
        }
        metrics::counter!(
            "flowgate_plugin_log_dropped_total",
            "plugin" => self.plugin.to_string(),
            "stage" => self.stage.to_string()
        )
        .increment(self.uncounted);
        self.uncounted = 0;
        if self.reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            self.report();
        }
    }

    fn report(&mut self) {
        tracing::warn!(
            plugin = %self.plugin,
            stage = %self.stage,
            dropped = self.unreported,
            dropped_total = self.dropped,
            bytes_per_second = self.rate,
            burst = self.burst,
            "plugin output over its log budget: lines dropped (reported at most every {}s; raise the log limits if the output is needed)",
            REPORT_EVERY.as_secs()
        );
        self.unreported = 0;
        self.reported = Some(Instant::now());
    }
}

/// What a stream holds between writes: the line not yet ended, and (stderr) the latest bytes.
#[derive(Debug, Default)]
struct Buffers {
    line: Vec<u8>,
    tail: VecDeque<u8>,
}

/// One of a plugin's output streams.
#[derive(Clone, Debug)]
pub(crate) struct PluginOutput {
    plugin: Arc<str>,
    stream: &'static str,
    buffers: Arc<Mutex<Buffers>>,
    budget: LogBudget,
}

impl PluginOutput {
    pub(crate) fn new(plugin: Arc<str>, stream: &'static str, budget: LogBudget) -> Self {
        PluginOutput {
            plugin,
            stream,
            buffers: Arc::default(),
            budget,
        }
    }

    /// What the plugin wrote most recently (up to 2 KiB), including an unfinished line.
    pub(crate) fn tail(&self) -> String {
        let buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = buffers.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    /// Forgets the kept tail (at the start of a call).
    pub(crate) fn clear_tail(&self) {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail
            .clear();
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut buf = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if self.stream == "stderr" {
            let keep = &bytes[bytes.len().saturating_sub(TAIL)..];
            buf.tail.extend(keep);
            let excess = buf.tail.len().saturating_sub(TAIL);
            buf.tail.drain(..excess);
        }
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(buf.line.len());
            buf.line.extend_from_slice(&bytes[..nl.min(room)]);
            self.emit(&buf.line);
            buf.line.clear();
            bytes = &bytes[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(buf.line.len());
        buf.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        drop(buf);
        self.budget.settle();
    }

    /// Logs one line if the budget has room for it (the line and its newline).
    fn emit(&self, line: &[u8]) {
        if !self.budget.admit(line.len() + 1) {
            return;
        }
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

    fn budget(rate: usize, burst: usize) -> LogBudget {
        LogBudget::new("p".into(), rate, burst)
    }

    #[test]
    fn stderr_tail_keeps_the_latest_output_and_caps_lines() {
        let out = PluginOutput::new("p".into(), "stderr", budget(1 << 20, 1 << 20));
        out.write_bytes(b"first line\npanicked at src/lib.rs:3: boom");
        assert!(out.tail().ends_with("panicked at src/lib.rs:3: boom"));
        out.write_bytes(&vec![b'x'; 10_000]);
        assert_eq!(out.tail().len(), TAIL);
        assert!(out.buffers.lock().unwrap().line.len() <= MAX_LINE);
        out.clear_tail();
        assert_eq!(out.tail(), "");
    }

    #[test]
    fn budget_takes_the_burst_then_the_rate_and_counts_what_it_drops() {
        let b = budget(1000, 4000);
        assert!(b.admit(3000));
        assert!(b.admit(1000));
        // Empty now: the next line is dropped, until the rate has refilled it.
        assert!(!b.admit(500));
        assert_eq!(b.dropped(), 1);
        b.lock().filled -= Duration::from_millis(600);
        assert!(b.admit(500));
        // Never more than the burst, however long it was idle.
        b.lock().filled -= Duration::from_secs(10);
        assert!(!b.admit(4001));
        assert!(b.admit(4000));
        assert_eq!(b.dropped(), 2);
    }

    #[test]
    fn dropped_lines_reach_the_metric_with_plugin_and_stage() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let b = budget(0, 100);
            b.set_stage("clean");
            let out = PluginOutput::new("p".into(), "stderr", b.clone());
            // 100 lines of 9 bytes and their newlines: the burst takes 10, 90 are dropped.
            out.write_bytes("123456789\n".repeat(100).as_bytes());
            assert_eq!(b.dropped(), 90);
            // The stderr tail is kept whatever the budget says.
            assert!(out.tail().ends_with("123456789"));
        });
        let text = handle.render();
        assert!(
            text.contains(r#"flowgate_plugin_log_dropped_total{plugin="p",stage="clean"} 90"#),
            "{text}"
        );
    }
}
