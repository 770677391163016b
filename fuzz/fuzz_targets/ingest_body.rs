//! Feeds arbitrary bytes to the HTTP ingest body parser, as JSON and as NDJSON: it must return
//! events or a message for the client, and never panic.
#![no_main]

use flowgate::event::ingest::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ndjson in [false, true] {
        if let Err(message) = parse_body(ndjson, data) {
            assert!(!message.is_empty());
        }
    }
});
