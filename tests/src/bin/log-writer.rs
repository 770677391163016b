//! Test helper for the kill -9 test: appends to a log as fast as it can and prints one line per
//! acknowledgement, `ack <base-offset> <count> <first-seq>`, flushed, so the parent knows exactly
//! what was acknowledged when it kills this process.
//!
//! Usage: `log-writer <data-dir> <first-seq>`. Record `seq` is `flowgate_tests::record(seq)`.

use std::io::Write;
use std::path::PathBuf;

use flowgate::event::{self, Event};
use flowgate::log::{EventLog, Log, LogOptions, TopicConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(&args[1]);
    let mut seq: u64 = args[2].parse().expect("first seq");
    let log = Log::open(&dir, LogOptions::default()).expect("open log");
    if log.topics().is_empty() {
        let config = TopicConfig {
            segment_bytes: 64 << 10,
            ..TopicConfig::default()
        };
        log.create_topic("t", config).expect("create topic");
    }
    let mut out = std::io::stdout().lock();
    loop {
        let n = 1 + (seq % 7) as usize;
        let events: Vec<Event> = (seq..seq + n as u64).map(flowgate_tests::record).collect();
        let ack = log
            .append("t", 0, event::batch_of(&events))
            .expect("append");
        writeln!(out, "ack {} {} {seq}", ack.base_offset, ack.count).expect("stdout");
        out.flush().expect("flush");
        seq += n as u64;
    }
}
