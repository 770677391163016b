//! A real Apache Kafka broker for the tests, and an independent client to check what Flowgate
//! wrote to it.
//!
//! The broker is Kafka 4 in KRaft mode, one node (broker and controller in one JVM) on
//! 127.0.0.1, run by `tests/kafka/kafka.sh` from the jars `tests/kafka/pom.xml` pins (installed
//! by `scripts/install-test-deps`). [`Broker::shared`] starts one per test binary on first use,
//! on free ports with its data in a temporary directory; it is killed when the test process
//! exits, however it exits: the JVM is spawned with `PR_SET_PDEATHSIG` = `SIGKILL` from a thread
//! that lives as long as the process, and an exit handler also removes its directory.
//!
//! The client is the `confluent-kafka` Python package (librdkafka, not Flowgate's code):
//! [`Broker::produce`] and [`Broker::consume`] run `tests/kafka/produce.py` and
//! `tests/kafka/consume.py`, topics are made by `tests/kafka/admin.py`.
//!
//! ```no_run
//! use flowgate_tests::kafka::{Broker, Isolation};
//! use std::time::Duration;
//!
//! let kafka = Broker::shared();
//! kafka.create_topic("in", 3);
//! kafka.produce_generated("in", 0, 1_000); // flowgate_tests::record(0 .. 1000)
//! // ... run flowgate with `brokers = kafka.bootstrap()` ...
//! let out = kafka.consume("out", Isolation::ReadCommitted, 1_000, Duration::from_secs(60));
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flowgate::event::{Event, Header};

use crate::process::{check, free_ports, kill, owned_temp_dir, remove_orphaned_dirs, spawn_tied};

/// How long a broker may take to start before [`Broker::start`] gives up
/// (`FLOWGATE_KAFKA_START_TIMEOUT` seconds, default 120: a loaded 2-core machine is slow).
fn start_timeout() -> Duration {
    let secs = std::env::var("FLOWGATE_KAFKA_START_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// How long a broker may take to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Between two looks at a process or a port, in waits that have a deadline.
const POLL: Duration = Duration::from_millis(50);

/// The folder of the broker's script and the Python helpers.
pub fn kafka_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka")
}

/// Which records [`Broker::consume`] reads: `read_committed` skips aborted transactions and
/// stops at the last stable offset (what a consumer of an exactly-once pipeline sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `isolation.level=read_committed`.
    ReadCommitted,
    /// `isolation.level=read_uncommitted`: every record written, aborted ones too.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A record as the independent consumer read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms), `None` when the record has none.
    pub timestamp: Option<i64>,
    /// Its key, `None` when it has none.
    pub key: Option<Vec<u8>>,
    /// Its value, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Its headers in order (a value `None` is a null header value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The record as a Flowgate event (a null value or header value becomes empty bytes, a
    /// missing timestamp 0), to compare with the events a test produced.
    pub fn event(&self) -> Event {
        Event {
            key: self.key.clone(),
            value: self.value.clone().unwrap_or_default(),
            timestamp: self.timestamp.unwrap_or(0),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The value of header `name` (its first occurrence).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn from_json(line: &str) -> Record {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("consume.py printed {line:?}: {e}"));
        let bytes = |v: &serde_json::Value| -> Option<Vec<u8>> {
            v.as_str().map(|s| {
                BASE64
                    .decode(s)
                    .unwrap_or_else(|e| panic!("consume.py printed {line:?}: {e}"))
            })
        };
        Record {
            topic: v["topic"].as_str().unwrap_or_default().to_owned(),
            partition: v["partition"].as_i64().unwrap_or(-1) as i32,
            offset: v["offset"].as_i64().unwrap_or(-1),
            timestamp: v["timestamp"].as_i64(),
            key: bytes(&v["key"]),
            value: bytes(&v["value"]),
            headers: v["headers"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h[0].as_str().unwrap_or_default().to_owned(), bytes(&h[1])))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The partition Kafka's default partitioner (a Java producer, librdkafka's `murmur2_random`)
/// gives `key` in a topic of `partitions` partitions: murmur2 of the key, made positive, modulo.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

/// A Kafka broker run by the tests: a single KRaft node on 127.0.0.1 (or another local address).
#[derive(Debug)]
pub struct Broker {
    host: String,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    started_in: Duration,
}

impl Broker {
    /// The broker of this test binary: started on first use (on free ports, data in a temporary
    /// directory; started again if a test left it stopped), killed when the test process exits.
    /// Tests that share it use topics of their own; a test that stops it (an outage) stops it for
    /// every test running beside it, so such tests take a broker of their own ([`Broker::new`]).
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        let broker = SHARED.get_or_init(|| {
            let broker = Broker::new_stopped();
            extern "C" fn at_exit() {
                if let Some(broker) = SHARED.get() {
                    broker.kill_at_exit();
                }
            }
            // SAFETY: registers a function without arguments that never unwinds (kill_at_exit
            // catches nothing and panics nowhere: it only ignores errors).
            unsafe { libc::atexit(at_exit) };
            broker
        });
        broker.start();
        broker
    }

    /// A broker of the caller's own, started, on free ports with its data in a new temporary
    /// directory; dropping it kills it and removes the directory (and it does not outlive the
    /// test process either).
    #[expect(
        clippy::new_without_default,
        reason = "starting a JVM is not a default value"
    )]
    pub fn new() -> Broker {
        let broker = Broker::new_stopped();
        broker.start();
        broker
    }

    /// Like [`Broker::new`], listening on `host` (an address of this machine, such as a veth's,
    /// that processes in a network namespace reach) instead of 127.0.0.1.
    pub fn new_on(host: &str) -> Broker {
        let broker = Broker::stopped_on(host);
        broker.start();
        broker
    }

    fn new_stopped() -> Broker {
        Broker::stopped_on("127.0.0.1")
    }

    fn stopped_on(host: &str) -> Broker {
        require_installed();
        remove_orphaned_dirs(DIR_PREFIX);
        let dir = owned_temp_dir(DIR_PREFIX, "the Kafka broker");
        let [port, controller_port] = free_ports::<2>();
        Broker {
            host: host.to_owned(),
            port,
            controller_port,
            dir,
            state: Mutex::new(State {
                child: None,
                started_in: Duration::ZERO,
            }),
        }
    }

    /// `<host>:<port>` (host 127.0.0.1 unless [`Broker::new_on`]), the `bootstrap.servers` of a
    /// client.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The broker's client port (the same across [`stop`](Self::stop) and [`start`](Self::start)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's directory: `server.properties`, `broker.log`, and the log data in `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the last [`start`](Self::start) took, from spawning the JVM to a metadata answer
    /// listing the broker.
    pub fn started_in(&self) -> Duration {
        self.state().started_in
    }

    /// Whether the broker's process is running.
    pub fn is_running(&self) -> bool {
        let mut state = self.state();
        match state.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                state.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts the broker (formatting its storage the first time) on its port and data directory,
    /// and returns when it answers a metadata request that lists it, so topics can be created.
    /// Does nothing if it runs. Panics, with the end of its log, if it exits or is not ready
    /// within the start deadline (`FLOWGATE_KAFKA_START_TIMEOUT`, 120 s).
    pub fn start(&self) {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
            state.child = None;
        }
        let began = Instant::now();
        let deadline = began + start_timeout();
        let log = self.open_log();
        let mut cmd = Command::new("bash");
        cmd.arg(kafka_dir().join("kafka.sh"))
            .arg("run")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .arg(&self.host)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the broker's log file"))
            .stderr(log);
        let mut child =
            spawn_tied(cmd).unwrap_or_else(|e| panic!("starting the Kafka broker: {e}"));

        // The port first (cheap), then a metadata request through the Python client.
        let addr: SocketAddr = self.bootstrap().parse().expect("an IP address and a port");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.fail_start(&format!("the broker exited ({status}) before it listened"));
            }
            if TcpStream::connect_timeout(&addr, POLL).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                self.fail_start(&format!(
                    "nothing listens on {addr} after {:?}",
                    start_timeout()
                ));
            }
            std::thread::sleep(POLL);
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let ready = self.admin(left, &["ready"]);
        if !ready.status.success() {
            kill(&mut child);
            self.fail_start(&format!(
                "the broker listens but does not answer: {}",
                String::from_utf8_lossy(&ready.stderr).trim()
            ));
        }
        state.child = Some(child);
        state.started_in = began.elapsed();
    }

    /// Stops the broker as an operator would (SIGTERM: a controlled shutdown), killing it if it
    /// has not stopped within 60 s. Its port and data stay, for [`start`](Self::start).
    pub fn stop(&self) {
        let Some(mut child) = self.state().child.take() else {
            return;
        };
        // SAFETY: a plain kill(2) on the pid of a child this process has not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                kill(&mut child);
                break;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the broker (SIGKILL: a crash; it recovers its logs at the next start).
    pub fn kill(&self) {
        if let Some(mut child) = self.state().child.take() {
            kill(&mut child);
        }
    }

    /// The broker's log so far (its standard output and error across starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// Creates topic `name` with `partitions` partitions (one replica) and waits until every
    /// partition has a leader. Panics if it exists.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// [`create_topic`](Self::create_topic) with topic settings (`("max.message.bytes", "2000")`).
    pub fn create_topic_with(&self, name: &str, partitions: u32, config: &[(&str, &str)]) {
        let partitions = partitions.to_string();
        let mut args = vec!["create", name, "--partitions", &partitions];
        let settings: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for s in &settings {
            args.extend(["--config", s]);
        }
        let out = self.admin(Duration::from_secs(60), &args);
        check(&out, &format!("creating Kafka topic {name}"));
    }

    /// Deletes topic `name` and waits until the metadata no longer lists it.
    pub fn delete_topic(&self, name: &str) {
        let out = self.admin(Duration::from_secs(60), &["delete", name]);
        check(&out, &format!("deleting Kafka topic {name}"));
    }

    /// Writes `records` to `topic` with the independent producer (idempotent, `acks=all`, keys
    /// partitioned as a Java producer would) and waits until the broker acknowledged them all.
    pub fn produce(&self, topic: &str, records: &[Event]) {
        let mut lines = String::new();
        for e in records {
            let headers: Vec<serde_json::Value> = e
                .headers
                .iter()
                .map(|h| serde_json::json!([h.name, BASE64.encode(&h.value)]))
                .collect();
            let line = serde_json::json!({
                "key": e.key.as_ref().map(|k| BASE64.encode(k)),
                "value": BASE64.encode(&e.value),
                "timestamp": e.timestamp,
                "headers": headers,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        let mut child = spawn_tied(self.python("produce.py", &["--topic", topic]))
            .unwrap_or_else(|e| panic!("running produce.py: {e}"));
        let mut stdin = child.stdin.take().expect("produce.py's stdin");
        let writer = std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
        let out = child.wait_with_output().expect("produce.py");
        writer
            .join()
            .expect("the writer of produce.py's input")
            .unwrap_or_else(|e| panic!("writing to produce.py: {e}"));
        check(
            &out,
            &format!("producing {} records to {topic}", records.len()),
        );
        let acked = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            acked.trim(),
            records.len().to_string(),
            "produce.py acknowledged another count"
        );
    }

    /// Writes test records `first .. first + count` ([`crate::record`]: the same keys, values,
    /// timestamps and headers, made by the Python producer itself) to `topic`.
    pub fn produce_generated(&self, topic: &str, first: u64, count: u64) {
        self.spawn_producer(topic, first, count, None).finish();
    }

    /// Starts writing test records `first .. first + count` to `topic` in the background, at
    /// about `rate` records a second (`None`: as fast as it can), for a test that crashes a
    /// pipeline while its input grows. [`Producing::finish`] waits for the end.
    pub fn spawn_producer(
        &self,
        topic: &str,
        first: u64,
        count: u64,
        rate: Option<f64>,
    ) -> Producing {
        self.spawn_keyed_producer(topic, first, count, rate, None)
    }

    /// [`Broker::spawn_producer`], with every record keyed `key-<seq mod keys>` when `keys` is
    /// given (a few keys, each many times: the input of a keyed count).
    pub fn spawn_keyed_producer(
        &self,
        topic: &str,
        first: u64,
        count: u64,
        rate: Option<f64>,
        keys: Option<u64>,
    ) -> Producing {
        let (first_s, count_s) = (first.to_string(), count.to_string());
        let rate_s = rate.map(|r| r.to_string());
        let keys_s = keys.map(|k| k.to_string());
        let mut args = vec![
            "--topic",
            topic,
            "--generate",
            &count_s,
            "--first",
            &first_s,
        ];
        if let Some(r) = &rate_s {
            args.extend(["--rate", r]);
        }
        if let Some(k) = &keys_s {
            args.extend(["--keys", k]);
        }
        let mut cmd = self.python("produce.py", &args);
        cmd.stdin(Stdio::null());
        let child = spawn_tied(cmd).unwrap_or_else(|e| panic!("running produce.py: {e}"));
        Producing {
            child: Some(child),
            count,
        }
    }

    /// Reads `topic` from its start with the independent consumer until every partition is at
    /// its end and at least `expected_count` records were read (a duplicate past that count is
    /// still read), or until `deadline` has passed; returns what it read either way, ordered by
    /// partition and offset, for the caller to compare.
    /// Panics if the topic does not exist or the broker cannot be reached.
    pub fn consume(
        &self,
        topic: &str,
        isolation: Isolation,
        expected_count: usize,
        deadline: Duration,
    ) -> Vec<Record> {
        let (expect, secs) = (
            expected_count.to_string(),
            format!("{:.3}", deadline.as_secs_f64()),
        );
        let args = [
            "--topic",
            topic,
            "--isolation",
            isolation.as_str(),
            "--expect",
            &expect,
            "--deadline",
            &secs,
        ];
        let mut cmd = self.python("consume.py", &args);
        cmd.stdin(Stdio::null());
        let out = spawn_tied(cmd)
            .and_then(Child::wait_with_output)
            .unwrap_or_else(|e| panic!("running consume.py: {e}"));
        // Exit 3: the deadline passed first; what was read is returned all the same.
        if out.status.code() != Some(3) {
            check(&out, &format!("consuming {topic}"));
        }
        let mut records: Vec<Record> = BufReader::new(out.stdout.as_slice())
            .lines()
            .map(|l| Record::from_json(&l.expect("consume.py's output")))
            .collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    fn python(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg(kafka_dir().join(script))
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn admin(&self, deadline: Duration, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("python3");
        cmd.arg(kafka_dir().join("admin.py"))
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .arg("--deadline")
            .arg(deadline.as_secs().max(1).to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        spawn_tied(cmd)
            .and_then(Child::wait_with_output)
            .unwrap_or_else(|e| panic!("running admin.py: {e}"))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_log(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("the broker's log file")
    }

    fn fail_start(&self, why: &str) -> ! {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "the Kafka broker on {} did not start: {why}; the end of {}:\n{}",
            self.bootstrap(),
            self.dir.join("broker.log").display(),
            tail.join("\n")
        );
    }

    /// At process exit: kill the JVM now (no waiting on a lock a test thread may hold) and
    /// remove the directory.
    fn kill_at_exit(&self) {
        let state = match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None, // the death signal kills it
        };
        if let Some(mut child) = state.and_then(|mut s| s.child.take()) {
            kill(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A producer writing in the background ([`Broker::spawn_producer`]); killed if dropped unfinished.
#[derive(Debug)]
pub struct Producing {
    child: Option<Child>,
    count: u64,
}

impl Producing {
    /// Waits until every record was written and acknowledged; panics if any was not.
    pub fn finish(mut self) {
        let child = self.child.take().expect("a running producer");
        let out = child.wait_with_output().expect("produce.py");
        check(&out, &format!("producing {} test records", self.count));
        let acked = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            acked.trim(),
            self.count.to_string(),
            "produce.py acknowledged another count"
        );
    }
}

impl Drop for Producing {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// The name of every broker directory starts so, in the system's temporary directory.
const DIR_PREFIX: &str = "flowgate-kafka-";

/// Checks once that Java, the Kafka jars and the Python client are there, and panics naming
/// the install script (and Debian's packages for Java and Maven) if not.
fn require_installed() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let mut missing = Vec::new();
        match Command::new("bash")
            .arg(kafka_dir().join("kafka.sh"))
            .arg("check")
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => missing.push(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => missing.push(format!("bash: {e}")),
        }
        let python = Command::new("python3")
            .args(["-c", "import confluent_kafka"])
            .stderr(Stdio::piped())
            .output();
        match python {
            Ok(out) if out.status.success() => {}
            Ok(out) => missing.push(format!(
                "python3 cannot import confluent_kafka ({}); run scripts/install-test-deps",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => missing.push(format!("python3: {e}")),
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    });
    if let Err(why) = result {
        panic!("the Kafka test broker cannot run: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partitions Java's client gives these keys (`Utils.toPositive(Utils.murmur2(key)) % n`,
    /// computed with the kafka-clients jar the broker runs).
    #[test]
    fn java_partition_matches_kafka_default_partitioner() {
        let cases: [(&[u8], i32, i32); 8] = [
            (b"21", 7, 3),
            (b"foobar", 7, 0),
            (b"a-little-bit-long-string", 7, 1),
            (b"a-little-bit-longer-string", 7, 0),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 7, 3),
            (b"abc", 7, 4),
            (b"", 7, 2),
            (&1_234_567u64.to_le_bytes(), 3, 1),
        ];
        for (key, partitions, want) in cases {
            assert_eq!(java_partition(key, partitions), want, "key {key:?}");
        }
    }

    fn by_seq(records: &[Record]) -> Vec<(u64, &Record)> {
        let mut v: Vec<(u64, &Record)> = records
            .iter()
            .map(|r| {
                let seq = r
                    .value
                    .as_deref()
                    .and_then(crate::payload_seq)
                    .unwrap_or_else(|| panic!("a record that is no test record: {r:?}"));
                (seq, r)
            })
            .collect();
        v.sort_by_key(|(seq, _)| *seq);
        v
    }

    /// Every test record `0 .. n` once, field by field, each keyed one in the partition a Java
    /// producer would choose.
    fn check_records(records: &[Record], n: u64, partitions: i32) {
        let got = by_seq(records);
        assert_eq!(got.len() as u64, n, "records read");
        for (i, (seq, r)) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64, "test record {i} missing or repeated");
            assert_eq!(r.event(), crate::record(*seq), "test record {seq}");
            if let Some(key) = &r.key {
                assert_eq!(
                    r.partition,
                    java_partition(key, partitions),
                    "partition of {seq}"
                );
            }
        }
    }

    /// The same records (both ordered by partition and offset), or the first that differs.
    fn same_records(got: &[Record], want: &[Record], when: &str) {
        assert_eq!(got.len(), want.len(), "records read {when}");
        if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
            panic!("{when}, read {g:?}\ninstead of {w:?}");
        }
    }

    /// The harness itself: a real broker, a topic, 1,000 records through the Python producer
    /// (from the Rust side) and 1,000 it made itself, read back by the Python consumer and
    /// compared; then a stop and a start, and a kill and a start, on the same port and data:
    /// the records are all still there.
    #[test]
    #[expect(
        clippy::print_stderr,
        reason = "reports how long the broker took to start (see it with --nocapture)"
    )]
    fn broker_round_trip_survives_restart_and_kill() {
        let t = Instant::now();
        let kafka = Broker::shared();
        let first_start = t.elapsed();
        kafka.create_topic("harness", 3);

        let events: Vec<Event> = (0..1_000).map(crate::record).collect();
        kafka.produce("harness", &events);
        kafka.produce_generated("harness", 1_000, 1_000);
        let read = kafka.consume(
            "harness",
            Isolation::ReadCommitted,
            2_000,
            Duration::from_secs(60),
        );
        check_records(&read, 2_000, 3);
        assert!(read.iter().all(|r| r.topic == "harness"));

        kafka.stop();
        assert!(!kafka.is_running());
        kafka.start();
        let restart = kafka.started_in();
        let again = kafka.consume(
            "harness",
            Isolation::ReadUncommitted,
            2_000,
            Duration::from_secs(60),
        );
        same_records(&again, &read, "after a restart");

        kafka.kill();
        kafka.start();
        let after_kill = kafka.started_in();
        let again = kafka.consume(
            "harness",
            Isolation::ReadCommitted,
            2_000,
            Duration::from_secs(60),
        );
        same_records(&again, &read, "after a kill");

        // A topic that does not exist is a clear failure; reading an empty one ends at once.
        kafka.create_topic("harness-empty", 2);
        assert!(
            kafka
                .consume(
                    "harness-empty",
                    Isolation::ReadCommitted,
                    0,
                    Duration::from_secs(30)
                )
                .is_empty()
        );
        kafka.delete_topic("harness-empty");

        eprintln!(
            "kafka broker: first start {first_start:.1?} (format included), after stop {restart:.1?}, \
             after kill {after_kill:.1?}"
        );
    }
}
