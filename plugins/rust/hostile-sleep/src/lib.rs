//! Hostile fixture: blocks inside a WASI host call for config `ms` milliseconds (default 30,000)
//! on each event, then echoes it. Events whose value is `awake` are echoed at once.
//!
//! Config `how` picks the host call it blocks in:
//! - `sleep` (default): `std::thread::sleep`;
//! - `block`: `monotonic-clock.subscribe-duration`, then `pollable.block`;
//! - `poll`: `monotonic-clock.subscribe-instant`, then `poll` on a list of it;
//! - `stdin`: a blocking read of stdin (the host gives an empty stream: it returns at once).
use std::time::Duration;

use flowgate_sdk::EventRef;
use wasip2::clocks::monotonic_clock;

#[flowgate_sdk::map]
fn sleep(event: &EventRef) -> Vec<u8> {
    if event.value == b"awake" {
        return event.value.to_vec();
    }
    let config = flowgate_sdk::config();
    let ms: u64 = config
        .get("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let nanos = ms.saturating_mul(1_000_000);
    let how = config.get("how").unwrap_or("sleep");
    // Tells a test watching the host's log that the call is under way.
    eprintln!("sleeping {ms} ms ({how})");
    match how {
        "block" => monotonic_clock::subscribe_duration(nanos).block(),
        "poll" => {
            let at = monotonic_clock::now().saturating_add(nanos);
            let pollable = monotonic_clock::subscribe_instant(at);
            wasip2::io::poll::poll(&[&pollable]);
        }
        "stdin" => {
            let stdin = wasip2::cli::stdin::get_stdin();
            // Closed or empty: what came back is echoed after the value.
            let read = stdin.blocking_read(1024).unwrap_or_default();
            let mut out = event.value.to_vec();
            out.extend_from_slice(&read);
            return out;
        }
        _ => std::thread::sleep(Duration::from_millis(ms)),
    }
    event.value.to_vec()
}
