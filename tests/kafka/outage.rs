//! The broker stopped and started again under running pipelines: nothing is lost, the pipelines
//! resume by themselves, and the outage shows in their metrics. The test has a broker of its
//! own ([`Broker::new`]): stopping the shared one would stop it under every other test.

use std::process::Child;
use std::time::{Duration, Instant};

use flowgate_tests::fixture::{Fixture, eventually, listen_addr, sigterm, wait_exit};
use flowgate_tests::kafka::{Broker, Isolation, Producing, Record};
use flowgate_tests::plugins::MARK_A;

use crate::{
    Delivery, Origins, Tally, Timer, chain, excerpt, marked, metrics, read_until, samples,
    seq_counts, total,
};

/// Records written while the pipelines run (at [`RATE`] a second, so the stop comes while
/// they are written), then records written after the restart.
const DURING: u64 = 6_000;
const AFTER: u64 = 2_000;
const RATE: f64 = 600.0;

/// One pipeline under the outage.
struct Run {
    delivery: Delivery,
    input: String,
    output: String,
    f: Fixture,
    child: Child,
    addr: String,
}

impl Run {
    fn start(kafka: &Broker, delivery: Delivery) -> Run {
        let name = format!("outage-{}", delivery.tag());
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
            "\n[http]\nlisten = \"127.0.0.1:0\"\n",
        ));
        let mut child = f.spawn(&[], 0);
        let addr = listen_addr(&f, 0, &mut child);
        Run {
            delivery,
            input,
            output,
            f,
            child,
            addr,
        }
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait().expect("the run's status") {
            None => Ok(()),
            Some(status) => Err(format!(
                "{:?}: flowgate run exited ({status}): {}",
                self.delivery,
                self.f.stderr(0)
            )),
        }
    }
}

/// Two pipelines (at-least-once and exactly-once) Kafka → mark-a → Kafka on a broker of their
/// own, records flowing; the broker stopped (SIGTERM) until both pipelines' metrics show the
/// outage (`flowgate_kafka_up` 0 or `flowgate_kafka_errors_total` rising), then started again;
/// more records. Every input record reaches the output, counted by the coordinates the source
/// put in its headers (exactly-once: once; a test record the producer wrote twice across the
/// restart is two input records), every `flowgate_kafka_up` is 1 again, and both pipelines stop
/// cleanly on SIGTERM.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports what the metrics showed and how long the outage took (see it with --nocapture)"
)]
fn broker_stopped_and_started_loses_nothing_and_shows_in_metrics() {
    let _t = Timer::start("broker outage");
    let kafka = Broker::new();
    let mut runs: Vec<Run> = [Delivery::AtLeastOnce, Delivery::ExactlyOnce]
        .into_iter()
        .map(|d| Run::start(&kafka, d))
        .collect();
    let producers: Vec<Producing> = runs
        .iter()
        .map(|r| kafka.spawn_producer(&r.input, 0, DURING, Some(RATE)))
        .collect();

    // Records flowing: each sink has written some.
    for r in &mut runs {
        let flowing = eventually(Duration::from_secs(60), || {
            total(&metrics(&r.addr), "flowgate_sink_events_total", "") > 0.0
        });
        r.alive().unwrap();
        assert!(
            flowing,
            "{:?}: the sink wrote nothing in 60 s: {}",
            r.delivery,
            r.f.stderr(0)
        );
    }
    let errors_before: Vec<f64> = runs
        .iter()
        .map(|r| total(&metrics(&r.addr), "flowgate_kafka_errors_total", ""))
        .collect();

    let stopped = Instant::now();
    kafka.stop();
    let mut shown = Vec::new();
    for (r, before) in runs.iter_mut().zip(&errors_before) {
        let mut seen = String::new();
        let visible = eventually(Duration::from_secs(60), || {
            let page = metrics(&r.addr);
            let down = samples(&page, "flowgate_kafka_up")
                .iter()
                .any(|(_, v)| *v == 0.0);
            let errors = total(&page, "flowgate_kafka_errors_total", "");
            seen = format!(
                "flowgate_kafka_up 0: {down}, flowgate_kafka_errors_total {before} → {errors}"
            );
            down || errors > *before
        });
        r.alive().unwrap();
        assert!(
            visible,
            "{:?}: 60 s into the outage the metrics do not show it ({seen}):\n{}",
            r.delivery,
            metrics(&r.addr)
        );
        shown.push(seen);
    }
    kafka.start();
    let outage = stopped.elapsed();

    for p in producers {
        p.finish();
    }
    for r in &runs {
        kafka.produce_generated(&r.input, DURING, AFTER);
    }
    // The input as written (a producer's retry across the restart may have written a test
    // record twice: each input record is one to deliver), then the output against it.
    let inputs: Vec<Vec<Record>> = runs
        .iter()
        .map(|r| {
            kafka.consume(
                &r.input,
                Isolation::ReadCommitted,
                (DURING + AFTER) as usize,
                Duration::from_secs(60),
            )
        })
        .collect();
    for (r, input) in runs.iter_mut().zip(&inputs) {
        let output = r.output.clone();
        let read = read_until(
            &kafka,
            &output,
            input.len(),
            Duration::from_secs(120),
            || r.alive(),
            |read| {
                let o = Origins::of(input, read, marked);
                if o.missing.is_empty() {
                    Ok(())
                } else {
                    Err(o.describe())
                }
            },
        );
        let o = Origins::of(input, &read, marked);
        assert!(
            o.missing.is_empty() && o.strange.is_empty(),
            "{:?}: after the outage: {}; the run's warnings:\n{}",
            r.delivery,
            o.describe(),
            warnings(&r.f.stderr(0))
        );
        if r.delivery == Delivery::ExactlyOnce {
            assert!(
                o.repeated.is_empty(),
                "exactly-once across the outage, a read_committed consumer sees {}; the run's warnings:\n{}",
                o.describe(),
                warnings(&r.f.stderr(0))
            );
        }
        let input_copies = Tally::of(&seq_counts(input), DURING + AFTER).extra_copies;
        eprintln!(
            "kafka outage {:?}: {} input records ({input_copies} of them a test record again), {} output records, {} repeated; during the outage {}",
            r.delivery,
            input.len(),
            read.len(),
            o.repeated.len(),
            shown[runs_index(r.delivery)]
        );
    }

    // The pipelines resumed by themselves: every client says the brokers answer again.
    for r in &mut runs {
        let mut page = String::new();
        let up = eventually(Duration::from_secs(60), || {
            page = metrics(&r.addr);
            let up = samples(&page, "flowgate_kafka_up");
            !up.is_empty() && up.iter().all(|(_, v)| *v == 1.0)
        });
        assert!(
            up,
            "{:?}: flowgate_kafka_up is not 1 for every step after the broker came back:\n{}",
            r.delivery,
            page.lines()
                .filter(|l| l.starts_with("flowgate_kafka"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        sigterm(&r.child);
    }
    for r in &mut runs {
        let status = wait_exit(&mut r.child, Duration::from_secs(60)).unwrap_or_else(|| {
            panic!(
                "{:?}: no exit 60 s after SIGTERM: {}",
                r.delivery,
                r.f.stderr(0)
            )
        });
        assert!(
            status.success(),
            "{:?}: {status}: {}",
            r.delivery,
            r.f.stderr(0)
        );
    }
    // Nothing more arrived after the stop (exactly-once: still once each).
    let eos = runs_index(Delivery::ExactlyOnce);
    let read = kafka.consume(
        &runs[eos].output,
        Isolation::ReadCommitted,
        inputs[eos].len(),
        Duration::from_secs(60),
    );
    let o = Origins::of(&inputs[eos], &read, marked);
    assert!(
        o.missing.is_empty() && o.repeated.is_empty() && o.strange.is_empty(),
        "exactly-once after the stop: {}",
        o.describe()
    );
    eprintln!("kafka outage: broker away for {outage:.1?}");
}

/// The warnings and errors of a run's log (what its Kafka clients said of the outage).
fn warnings(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    excerpt(&lines.join("\n"), 25)
}

fn runs_index(d: Delivery) -> usize {
    match d {
        Delivery::AtLeastOnce => 0,
        Delivery::ExactlyOnce => 1,
    }
}
