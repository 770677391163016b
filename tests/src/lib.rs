//! Test support: the plugins under `plugins/`, built by this crate's build script, and helpers
//! shared by the integration tests and benchmarks.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use flowgate::event::Event;
use flowgate::runtime::{Runtime, RuntimeConfig};

pub mod fixture;
pub mod kafka;
pub mod mongo;
pub mod netns;
pub mod postgres;
mod process;

/// Paths of the built plugins, one constant per plugin.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A runtime with its compiled-code cache in a directory of its own under the target dir.
pub fn runtime() -> Runtime {
    Runtime::new(test_config()).expect("runtime")
}

/// The settings tests use: the default ones with a cache under `target/`.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(target_dir().join("flowgate-test-cache")),
        max_stage_instances: 32,
        ..RuntimeConfig::default()
    }
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// An event with a text value, no key and no headers.
pub fn text(value: &str, timestamp: i64) -> Event {
    Event {
        key: None,
        value: value.as_bytes().to_vec(),
        timestamp,
        headers: Vec::new(),
    }
}

/// The value of test record `seq`: its number and a body whose length and bytes depend on it,
/// so a record read back can be checked byte for byte.
pub fn payload(seq: u64) -> Vec<u8> {
    let mut v = format!("seq-{seq:010}-").into_bytes();
    let len = (seq * 7919 % 300) as usize;
    v.extend((0..len).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    v
}

/// The sequence number a payload was made from, if it is one.
pub fn payload_seq(value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value.get(4..14)?).ok()?;
    let seq = s.parse().ok()?;
    (payload(seq) == value).then_some(seq)
}

/// Test record `seq`: value [`payload`]`(seq)`, a key on two of three records, time
/// `1000 + 10 × seq` ms, and a header on one of four.
pub fn record(seq: u64) -> Event {
    Event {
        key: (!seq.is_multiple_of(3)).then(|| seq.to_le_bytes().to_vec()),
        value: payload(seq),
        timestamp: 1_000 + seq as i64 * 10,
        headers: if seq.is_multiple_of(4) {
            vec![flowgate::event::Header {
                name: "n".into(),
                value: seq.to_string().into_bytes(),
            }]
        } else {
            Vec::new()
        },
    }
}

/// The word after `name` on the command line (`--only rust,c`): the options of the bench
/// binaries.
pub fn bench_word(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// The number after `name` on the command line (`--events 1000`), or `default`.
pub fn bench_arg(name: &str, default: u64) -> u64 {
    bench_word(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Turns on ahead-of-time compilation (`aot = true`) in the plugin project at `dir`.
pub fn compile_ahead_of_time(dir: &Path) {
    let manifest = dir.join("flowgate.toml");
    let text = std::fs::read_to_string(&manifest).expect("flowgate.toml");
    // A top-level key: before the first table (`[test]` of an aggregator), if any.
    let text = match text.find("\n[") {
        Some(at) => format!("{}\naot = true{}", &text[..at], &text[at..]),
        None => format!("{text}aot = true\n"),
    };
    std::fs::write(&manifest, text).expect("flowgate.toml");
}

/// The seed a randomised test uses: `$var` if set (to replay a run), else one from the clock.
/// The test prints it, so a failing run can be replayed.
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
                | 1
        })
}

/// A small deterministic generator (xorshift), so that a failing seeded case can be replayed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Prints how long a test took when it ends (passed or failed): `<suite> test <name>: passed in
/// 1.2s` (see it with `--nocapture`).
#[derive(Debug)]
pub struct Timer {
    suite: &'static str,
    name: &'static str,
    began: std::time::Instant,
}

impl Timer {
    /// Starts timing test `name` of `suite`.
    pub fn start(suite: &'static str, name: &'static str) -> Timer {
        Timer {
            suite,
            name,
            began: std::time::Instant::now(),
        }
    }
}

impl Drop for Timer {
    #[expect(
        clippy::print_stderr,
        reason = "reports each test's time (see it with --nocapture)"
    )]
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "failed"
        } else {
            "passed"
        };
        eprintln!(
            "{} test {}: {outcome} in {:.1?}",
            self.suite,
            self.name,
            self.began.elapsed()
        );
    }
}

/// `delivery` of a pipeline file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `"at-least-once"`.
    AtLeastOnce,
    /// `"exactly-once"`.
    ExactlyOnce,
}

impl Delivery {
    /// As the pipeline file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        }
    }

    /// A short tag for names of pipelines and topics.
    pub fn tag(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "alo",
            Delivery::ExactlyOnce => "eos",
        }
    }
}
