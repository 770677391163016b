//! An exactly-once sink resumes from the positions of its own last committed transaction, even
//! while another producer holds a transaction open on `flowgate.sink-positions`. When the sinks
//! shared that one topic, the open transaction held back what a read_committed reader saw of the
//! sink's later commits, and the sink resent 100 records it had committed; each sink now has a
//! positions topic of its own (`flowgate.sink-positions.<pipeline>.<sink>`), and this test keeps
//! a shared one from coming back. The test has a broker of its own: the open transaction holds
//! back every read_committed reader of that topic.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowgate_tests::fixture::Fixture;
use flowgate_tests::kafka::{Broker, Isolation};

use crate::{Delivery, Tally, Timer, chain, seq_counts};

/// Another transactional producer (the independent client): writes one record to the positions
/// topic in a transaction, prints `open`, and holds the transaction open until its standard
/// input closes, then aborts it.
const OPEN_TRANSACTION: &str = r#"
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": sys.argv[2],
              "transaction.timeout.ms": 300000, "log.connection.close": False})
p.init_transactions(60)
p.begin_transaction()
p.produce("flowgate.sink-positions", key=sys.argv[2].encode(), value=b'{"positions":[0,0,0]}')
if p.flush(60) != 0:
    sys.exit("the record was not acknowledged")
print("open", flush=True)
sys.stdin.read()
p.abort_transaction(60)
"#;

/// The open transaction's process; killed if the test ends first.
struct OpenTransaction(Child);

impl OpenTransaction {
    fn begin(kafka: &Broker) -> OpenTransaction {
        let mut child = Command::new("python3")
            .args([
                "-c",
                OPEN_TRANSACTION,
                &kafka.bootstrap(),
                "flowgate.another.sink",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("the open transaction's output");
        assert_eq!(
            line.trim(),
            "open",
            "the other producer opened no transaction"
        );
        OpenTransaction(child)
    }

    fn end(mut self) {
        drop(self.0.stdin.take());
        let status = self.0.wait().expect("the other producer");
        assert!(status.success(), "the other producer: {status}");
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if self.0.stdin.is_some() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Three bounded runs of an exactly-once pipeline Kafka → Kafka: 100 records; then, with another
/// producer's transaction open on the positions topic, 100 more; then a run with nothing new. A
/// read_committed consumer of the output sees each of the 200 records once after each run: the
/// third run resumes from the second run's committed positions, which lie after the open
/// transaction's record.
#[test]
fn exactly_once_sink_resumes_from_its_last_commit_while_another_transaction_is_open() {
    let _t = Timer::start("positions beside an open transaction");
    let kafka = Broker::new();
    let (input, output) = ("positions-in", "positions-out");
    kafka.create_topic(input, 1);
    kafka.create_topic(output, 1);
    let f = Fixture::new(&chain(
        "positions",
        Delivery::ExactlyOnce,
        &kafka.bootstrap(),
        input,
        output,
        &[],
        "",
    ));
    let check = |n: u64, when: &str| {
        let read = kafka.consume(
            output,
            Isolation::ReadCommitted,
            n as usize,
            Duration::from_secs(60),
        );
        let tally = Tally::of(&seq_counts(&read), n);
        assert!(
            tally.missing.is_empty() && tally.repeated.is_empty() && tally.stray.is_empty(),
            "{when}: a read_committed consumer sees {}",
            tally.describe()
        );
    };
    let run = |when: &str| {
        let (status, stderr) = f.run_bounded();
        assert!(status.success(), "{when}: {status}: {stderr}");
    };

    kafka.produce_generated(input, 0, 100);
    run("the first run");
    check(100, "after the first run");

    let other = OpenTransaction::begin(&kafka);
    kafka.produce_generated(input, 100, 100);
    run("the second run");
    check(200, "after the second run");
    run("a third run with nothing new");
    check(
        200,
        "after a third run with nothing new, while another transaction is open on flowgate.sink-positions",
    );
    other.end();
    run("a fourth run, the other transaction aborted");
    check(200, "after a fourth run with nothing new");
}
