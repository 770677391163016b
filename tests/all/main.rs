//! End-to-end tests: the real wasmtime runtime, real plugins built from `plugins/`, and the real
//! `flowgate` command. One test binary, one module per area.

mod cli;
mod dlq;
mod governance;
mod grafana;
mod hostile;
mod log;
mod parity;
mod pipeline;
mod reload;
mod runtime;
mod soak;
mod state;
mod tap;
mod top;
mod ui;
