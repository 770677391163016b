//! Feeds arbitrary bytes to the NDJSON event reader (every command's input format): it must
//! return events or an error naming the line, and never panic. An event that reads back must
//! write and read again to the same event, and the fast reading of each line must agree with
//! the reading through a JSON tree.
#![no_main]

use flowgate::event::{self, ndjson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fast reading of a line and the reading through a JSON tree agree, event or error.
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            assert_eq!(
                ndjson::parse_event(line, 0),
                ndjson::parse_event_tree(line, 0),
                "{line}"
            );
        }
    }
    let Ok(events) = ndjson::read_all(data) else {
        return;
    };
    for e in &events {
        let batch = event::batch_of(std::slice::from_ref(e));
        let cols = event::columns(&batch).expect("a batch of one parsed event is valid");
        let row = cols.rows().next().expect("one row");
        let mut line = Vec::new();
        ndjson::write_event(&mut line, &row).expect("writing to a Vec");
        let text = std::str::from_utf8(&line).expect("the writer writes UTF-8");
        let again =
            ndjson::parse_event(text.trim_end(), 0).expect("what the writer wrote reads back");
        assert_eq!(&again, e, "{text}");
    }
});
