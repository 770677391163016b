//! Hostile fixture: calls `std::process::exit(code)` (config `code`, default 1) on the events
//! whose value contains config `marker` (default `exit`); echoes every other event.
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn exit_on(event: &EventRef) -> Vec<u8> {
    let config = flowgate_sdk::config();
    let marker = config.get("marker").unwrap_or("exit");
    if event
        .value
        .windows(marker.len().max(1))
        .any(|w| w == marker.as_bytes())
    {
        let code: i32 = config.get("code").and_then(|v| v.parse().ok()).unwrap_or(1);
        std::process::exit(code);
    }
    event.value.to_vec()
}
