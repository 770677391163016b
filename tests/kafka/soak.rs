//! The Kafka crash soak: `flowgate run` (Kafka → mark-a → Kafka) killed with SIGKILL at random
//! moments while a producer writes to its input topic, then run to the end of the input.
//! Exactly-once: a read_committed consumer sees each input record's output once. At-least-once:
//! none missing (the duplicates are counted).
//!
//! `FLOWGATE_KAFKA_SOAK_CYCLES=N` sets the number of kill cycles (default 10),
//! `FLOWGATE_KAFKA_SOAK_SEED=S` replays one sequence of kill moments:
//! `FLOWGATE_KAFKA_SOAK_CYCLES=100 cargo test -p flowgate-tests --test kafka soak -- --nocapture`.

use std::time::{Duration, Instant};

use flowgate_tests::Rng;
use flowgate_tests::fixture::{Fixture, sigterm, wait_exit};
use flowgate_tests::kafka::{Broker, Isolation};
use flowgate_tests::plugins::MARK_A;

use crate::{
    Delivery, Origins, Tally, Timer, chain, log_topic, marked, read_until_complete, seq_counts,
    seq_of,
};

/// Records the producer writes while the pipeline is killed and restarted.
const RECORDS: u64 = 30_000;
/// Records a second it writes them at (10 s of input).
const RATE: f64 = 3_000.0;

/// The log line of a Kafka source that has opened a partition and reads it.
const READING: &str = "reading a Kafka partition";

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[expect(
    clippy::print_stderr,
    reason = "reports the seed, the cycles and the kills (see them with --nocapture)"
)]
fn soak(delivery: Delivery) {
    let cycles = env_number("FLOWGATE_KAFKA_SOAK_CYCLES")
        .unwrap_or(10)
        .max(1) as usize;
    let seed = env_number("FLOWGATE_KAFKA_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64
            | 1
    });
    eprintln!(
        "kafka soak {delivery:?}: {cycles} cycles, FLOWGATE_KAFKA_SOAK_SEED={seed}, {RECORDS} records at {RATE}/s"
    );
    let mut rng = Rng(seed);
    let late_kill_ms = ((2_000.0 * RECORDS as f64 / RATE) as u64 / cycles as u64).max(600);
    let kafka = Broker::shared();
    let name = format!("soak-{}", delivery.tag());
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka.create_topic(&input, 3);
    kafka.create_topic(&output, 3);
    let f = Fixture::new(&chain(
        &name,
        delivery,
        &kafka.bootstrap(),
        &input,
        &output,
        &[MARK_A],
        "",
    ));

    let producer = kafka.spawn_producer(&input, 0, RECORDS, Some(RATE));
    let began = Instant::now();
    let (mut starting, mut reading) = (0, 0);
    let mut moments = Vec::new();
    // Checkpoint files in the data directory when the first run was killed.
    let mut first_checkpoints = 0;
    for cycle in 0..cycles {
        let mut child = f.spawn(&[], cycle);
        let spawned = Instant::now();
        // The first run dies within 100 ms of its start, while its steps open their first
        // checkpoints and before its first commit interval has passed; of the others, one in
        // three dies while it may still be starting (within 400 ms), the rest at a random
        // moment after their source began reading Kafka: up to twice the time the producer
        // writes for divided by the cycles (at least 600 ms), so that the kills are spread
        // over the whole input.
        let mode = if cycle == 0 { 0 } else { rng.below(3) };
        let wait = if mode == 0 {
            Duration::from_millis(rng.below(if cycle == 0 { 100 } else { 400 }))
        } else {
            let until = Instant::now() + Duration::from_secs(60);
            while !f.stderr(cycle).contains(READING) {
                if let Some(status) = child.try_wait().expect("the run's status") {
                    panic!(
                        "cycle {cycle}: flowgate run exited ({status}): {}",
                        f.stderr(cycle)
                    );
                }
                assert!(
                    Instant::now() < until,
                    "cycle {cycle}: the source read nothing in 60 s: {}",
                    f.stderr(cycle)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Duration::from_millis(rng.below(late_kill_ms))
        };
        if let Some(status) = wait_exit(&mut child, wait) {
            panic!(
                "cycle {cycle}: flowgate run exited by itself ({status}): {}",
                f.stderr(cycle)
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("the killed run");
        if cycle == 0 {
            first_checkpoints =
                std::fs::read_dir(f.path("data/checkpoints")).map_or(0, |d| d.count());
        }
        if f.stderr(cycle).contains(READING) {
            reading += 1;
        } else {
            starting += 1;
        }
        moments.push(spawned.elapsed().as_millis());
    }
    let kills_done = began.elapsed();
    producer.finish();
    let produced_in = began.elapsed();

    // The last run: until the output has every record, then a clean stop.
    let last = cycles;
    let mut child = f.spawn(&[], last);
    let caught_up =
        read_until_complete(
            kafka,
            &output,
            RECORDS,
            Duration::from_secs(180),
            || match child.try_wait().expect("the run's status") {
                None => Ok(()),
                Some(status) => Err(format!(
                    "the last run exited ({status}): {}",
                    f.stderr(last)
                )),
            },
        );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit 60 s after SIGTERM: {}", f.stderr(last)));
    assert!(
        status.success(),
        "the last run: {status}: {}",
        f.stderr(last)
    );

    let read = kafka.consume(
        &output,
        Isolation::ReadCommitted,
        caught_up.len(),
        Duration::from_secs(60),
    );
    let tally = Tally::of(&seq_counts(&read), RECORDS);
    for r in &read {
        let seq = r.value.as_deref().and_then(seq_of).expect("counted");
        let mut want = flowgate_tests::payload(seq);
        want.extend_from_slice(b"|a");
        assert_eq!(r.value.as_deref(), Some(&want[..]), "value of record {seq}");
        let input = flowgate_tests::record(seq);
        assert_eq!(r.key, input.key, "key of record {seq}");
        assert_eq!(
            r.timestamp,
            Some(input.timestamp),
            "timestamp of record {seq}"
        );
    }
    // Where the copies beyond the first come from: the log topics the source and the stage
    // wrote, then Kafka.
    let extra_in = |topic: &str| {
        let events = log_topic(&f, topic);
        let distinct: std::collections::BTreeSet<u64> = events
            .iter()
            .map(|e| seq_of(&e.value).expect("a test record"))
            .collect();
        events.len() - distinct.len()
    };
    let (by_source, after_stage) = (extra_in("raw"), extra_in("t1"));
    eprintln!(
        "kafka soak {delivery:?}: extra copies: {by_source} in the source's topic, {} more in the stage's, {} more in Kafka",
        after_stage.saturating_sub(by_source),
        tally.extra_copies.saturating_sub(after_stage)
    );
    eprintln!(
        "kafka soak {delivery:?}: {cycles} kills ({starting} while starting, {reading} while reading; \
         at {moments:?} ms after the start; {first_checkpoints} checkpoint files at the first kill) \
         in {kills_done:.1?}, input written in {produced_in:.1?}; output: {} records, {}",
        read.len(),
        tally.describe()
    );
    // Each input record by its coordinates too: exact even if the producer wrote a test record
    // twice (its retry), which the pipeline must then deliver twice.
    let written = kafka.consume(
        &input,
        Isolation::ReadCommitted,
        RECORDS as usize,
        Duration::from_secs(60),
    );
    let origins = Origins::of(&written, &read, marked);
    let input_copies = Tally::of(&seq_counts(&written), RECORDS).extra_copies;
    assert!(
        origins.missing.is_empty() && origins.strange.is_empty() && tally.stray.is_empty(),
        "{delivery:?} after {cycles} kills (FLOWGATE_KAFKA_SOAK_SEED={seed}): {}; by test record: {}; {input_copies} test records the producer wrote twice",
        origins.describe(),
        tally.describe()
    );
    if delivery == Delivery::ExactlyOnce {
        assert!(
            origins.repeated.is_empty(),
            "exactly-once after {cycles} kills (FLOWGATE_KAFKA_SOAK_SEED={seed}): a read_committed consumer sees {}; by test record: {}; {input_copies} test records the producer wrote twice",
            origins.describe(),
            tally.describe()
        );
    }
}

#[test]
fn soak_exactly_once_kills_neither_lose_nor_repeat_a_record() {
    let _t = Timer::start("soak, exactly-once");
    soak(Delivery::ExactlyOnce);
}

#[test]
fn soak_at_least_once_kills_lose_no_record() {
    let _t = Timer::start("soak, at-least-once");
    soak(Delivery::AtLeastOnce);
}
