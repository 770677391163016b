//! Kafka → three WASM stages → Kafka, 100,000 records written and read back by the independent
//! client, compared field by field.

use std::collections::HashMap;
use std::time::Duration;

use flowgate::event::Event;
use flowgate_tests::fixture::Fixture;
use flowgate_tests::kafka::{Broker, Isolation, Record, java_partition};
use flowgate_tests::plugins::{MARK_A, MARK_B, UPPERCASE};

use crate::{Delivery, Tally, Timer, chain, coordinates, seq_counts, seq_of};

/// Records through the pipeline.
const RECORDS: u64 = 100_000;
/// Partitions of the input and output Kafka topics.
const PARTITIONS: i32 = 3;

/// The value test record `seq` has after mark-a, uppercase and mark-b.
fn transformed(seq: u64) -> Vec<u8> {
    let mut v = flowgate_tests::payload(seq).to_ascii_uppercase();
    v.extend_from_slice(b"|A|b");
    v
}

/// 100,000 test records (keys on two of three, a header on one of four, timestamps from 1 s
/// on) written by the Python producer to a 3-partition topic, through mark-a → uppercase →
/// mark-b in a bounded run, to a 3-partition topic read back with read_committed: each record
/// once, with the value the stages make of it, the input's key, timestamp and headers, then
/// `kafka.topic`/`kafka.partition`/`kafka.offset` naming where the input record was, and each
/// keyed record in the partition a Java producer would have chosen.
fn round_trip(delivery: Delivery) {
    let kafka = Broker::shared();
    let name = format!("roundtrip-{}", delivery.tag());
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, PARTITIONS as u32);
    kafka.create_topic(&output, PARTITIONS as u32);
    kafka.produce_generated(&input, 0, RECORDS);

    let f = Fixture::new(&chain(
        &name,
        delivery,
        &kafka.bootstrap(),
        &input,
        &output,
        &[MARK_A, UPPERCASE, MARK_B],
        "",
    ));
    let (status, stderr) = f.run_bounded();
    assert!(
        status.success(),
        "flowgate run --bounded: {status}: {stderr}"
    );

    // Where each input record is (the producer chose its partition), and the output.
    let deadline = Duration::from_secs(120);
    let (read_in, read_out) = std::thread::scope(|s| {
        let read_in =
            s.spawn(|| kafka.consume(&input, Isolation::ReadCommitted, RECORDS as usize, deadline));
        let read_out = kafka.consume(
            &output,
            Isolation::ReadCommitted,
            RECORDS as usize,
            deadline,
        );
        (read_in.join().expect("reading the input"), read_out)
    });
    assert_eq!(read_in.len() as u64, RECORDS, "input records read back");
    let inputs: HashMap<u64, &Record> = read_in
        .iter()
        .map(|r| {
            let seq = r
                .value
                .as_deref()
                .and_then(flowgate_tests::payload_seq)
                .expect("a test record");
            assert_eq!(r.event(), flowgate_tests::record(seq), "input record {seq}");
            (seq, r)
        })
        .collect();

    let tally = Tally::of(&seq_counts(&read_out), RECORDS);
    assert!(
        tally.missing.is_empty() && tally.repeated.is_empty() && tally.stray.is_empty(),
        "{delivery:?}: {} output records: {}",
        read_out.len(),
        tally.describe()
    );

    let mut wrong = Vec::new();
    let mut misplaced = Vec::new();
    for out in &read_out {
        let seq = out
            .value
            .as_deref()
            .and_then(seq_of)
            .expect("counted above");
        let source = inputs[&seq];
        let mut want: Event = flowgate_tests::record(seq);
        want.value = transformed(seq);
        want.headers.extend(coordinates(source));
        let got = out.event();
        if got != want {
            wrong.push((seq, got, want));
        }
        if let Some(key) = &out.key
            && out.partition != java_partition(key, PARTITIONS)
        {
            misplaced.push((seq, out.partition, java_partition(key, PARTITIONS)));
        }
        assert_eq!(out.topic, output);
    }
    assert!(
        wrong.is_empty(),
        "{delivery:?}: {} of {RECORDS} output records differ from what the stages make of their input; the first:\n  got  {:?}\n  want {:?}",
        wrong.len(),
        wrong[0].1,
        wrong[0].2
    );
    assert!(
        misplaced.is_empty(),
        "{delivery:?}: {} keyed records not in the partition of Kafka's default partitioner; the first (seq, partition, expected): {:?}",
        misplaced.len(),
        &misplaced[..misplaced.len().min(5)]
    );
}

#[test]
fn round_trip_at_least_once_100k_records_field_by_field() {
    let _t = Timer::start("round trip, at-least-once");
    round_trip(Delivery::AtLeastOnce);
}

#[test]
fn round_trip_exactly_once_100k_records_field_by_field() {
    let _t = Timer::start("round trip, exactly-once");
    round_trip(Delivery::ExactlyOnce);
}
