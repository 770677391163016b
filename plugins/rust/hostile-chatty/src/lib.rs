//! Hostile fixture: writes config `bytes` (default 10,000,000) of log lines per event, in lines
//! of config `line` bytes (default 1,000), then echoes the event. Config `to` picks where:
//! `stderr` (default), `stdout`, or `log` (the `flowgate:plugin/log` import).
use std::io::Write;

use flowgate_sdk::{EventRef, LogLevel};

#[flowgate_sdk::map]
fn chatter(event: &EventRef) -> Vec<u8> {
    let config = flowgate_sdk::config();
    let bytes: usize = config
        .get("bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let line: usize = config
        .get("line")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
        .max(2);
    let text = "x".repeat(line - 1);
    let to = config.get("to").unwrap_or("stderr");
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for _ in 0..bytes / line {
        match to {
            "log" => flowgate_sdk::log(LogLevel::Warn, &text),
            "stdout" => {
                let _ = writeln!(stdout, "{text}");
            }
            _ => {
                let _ = writeln!(stderr, "{text}");
            }
        }
    }
    let _ = stdout.flush();
    event.value.to_vec()
}
