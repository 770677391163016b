//! `flowgate validate` on a pipeline whose Kafka brokers cannot be reached.

use std::time::{Duration, Instant};

use flowgate_tests::fixture::Fixture;

use crate::{Delivery, Timer, chain};

/// CHECK AFTER THE CHANGE TO `flowgate validate` LANDS (its Kafka broker check,
/// host/src/cli/validate.rs): brokers that cannot be reached do not make the file invalid.
/// `validate` exits 0, says on stdout that the file is valid, and says on stderr, in a line
/// naming the brokers, that it cannot reach them — for the source and for the sink.
#[test]
fn validate_says_unreachable_brokers_without_failing_the_file() {
    let _t = Timer::start("validate, unreachable brokers");
    let brokers = "127.0.0.1:1";
    let f = Fixture::new(&chain(
        "unreachable",
        Delivery::ExactlyOnce,
        brokers,
        "orders",
        "orders-out",
        &[],
        "",
    ));
    let began = Instant::now();
    let out = f
        .command(&["validate"])
        .output()
        .expect("flowgate validate");
    let took = began.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "validate failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(
        stdout.contains("is valid"),
        "stdout does not say the file is valid: {stdout}"
    );
    let unreachable: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot reach") && l.contains(brokers))
        .collect();
    assert!(
        unreachable.iter().any(|l| l.contains("source"))
            && unreachable.iter().any(|l| l.contains("sink")),
        "stderr has no line saying it cannot reach {brokers} for the source and for the sink:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(60),
        "validate took {took:?} with unreachable brokers"
    );
}
