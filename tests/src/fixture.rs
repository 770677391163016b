//! Runs of `flowgate` as a user makes them: a directory with a pipeline file, the real binary
//! (`flowgate-under-test`, built by cargo with the test binaries), its logs, and a minimal HTTP
//! client.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `flowgate-under-test` binary next to the running test binary (cargo builds a package's
/// binaries before its integration tests).
pub fn flowgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("a directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("the profile directory")
    } else {
        dir
    };
    dir.join("flowgate-under-test")
}

/// A directory with a pipeline file in it, and the runs made of it.
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
}

/// A test that fails (or forgets) leaves no `flowgate` of its own running: every process whose
/// command line names the fixture's directory is killed when the fixture goes.
impl Drop for Fixture {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir) {
                // SAFETY: kill(2) on a pid read from /proc; the worst case is a process that
                // ended in between, and the call then fails.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Fixture {
    /// A new temporary directory with `pipeline` as its `pipeline.toml`.
    pub fn new(pipeline: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
        Fixture { dir }
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `flowgate <args> pipeline.toml` with the directory's data dir and the tests' plugin cache.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_for(&self.path("pipeline.toml"), args)
    }

    /// Like [`command`](Self::command), over the pipeline file `pipeline` instead.
    pub fn command_for(&self, pipeline: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(flowgate_bin());
        c.args(args)
            .arg(pipeline)
            .env(
                "FLOWGATE_CACHE_DIR",
                crate::target_dir().join("flowgate-test-cache"),
            )
            .env("FLOWGATE_DATA_DIR", self.path("data"))
            .env("FLOWGATE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Starts `flowgate run` with its stderr in `run-<n>.log`.
    pub fn spawn(&self, args: &[&str], n: usize) -> Child {
        let log = std::fs::File::create(self.path(&format!("run-{n}.log"))).unwrap();
        self.command(&[&["run"], args].concat())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// What run `n` wrote to stderr so far.
    pub fn stderr(&self, n: usize) -> String {
        std::fs::read_to_string(self.path(&format!("run-{n}.log"))).unwrap_or_default()
    }

    /// `flowgate run --bounded` to its end: exit status and stderr.
    pub fn run_bounded(&self) -> (ExitStatus, String) {
        let out = self
            .command(&["run", "--bounded"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `flowgate run --bounded` up to 12 times, killing each run with SIGKILL after a
    /// wait of 150 ms plus a multiple of `step_ms` (so kills land at different points), until a
    /// run ends by itself; calls `after_kill` after each kill. Returns the kills.
    pub fn kill_repeatedly(&self, step_ms: u64, mut after_kill: impl FnMut()) -> usize {
        let mut kills = 0;
        for n in 0..12 {
            let mut child = self.spawn(&["--bounded"], n);
            let wait = Duration::from_millis(150 + (n as u64 * step_ms) % 500);
            if let Some(status) = wait_exit(&mut child, wait) {
                assert!(status.success(), "{status}: {}", self.stderr(n));
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            after_kill();
        }
        kills
    }

    /// The JSON lines of a file in the directory (none if it is missing), every one of them:
    /// for a file no run is writing any more, where a torn line is a defect.
    pub fn lines(&self, name: &str) -> Vec<Value> {
        json_lines(&std::fs::read_to_string(self.path(name)).unwrap_or_default())
    }

    /// The whole JSON lines of a file a run is still writing (none if it is missing): a line
    /// being written, after the last newline, is left for the next look.
    pub fn lines_so_far(&self, name: &str) -> Vec<Value> {
        let bytes = std::fs::read(self.path(name)).unwrap_or_default();
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&bytes[..0], |i| &bytes[..=i]);
        json_lines(std::str::from_utf8(whole).expect("whole lines of UTF-8"))
    }
}

/// Each line of `text` as JSON.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `flowgate run --no-watch` of the fixture's pipeline (which has an `[http]` section), its
/// stderr in `run-<n>.log`: the process and the address its HTTP server listens on.
pub fn start_http(f: &Fixture, n: usize) -> (Child, String) {
    let mut child = f.spawn(&["--no-watch"], n);
    let addr = listen_addr(f, n, &mut child);
    (child, addr)
}

/// Posts one event per value (a JSON string each) to `topic` at `addr` as NDJSON; panics unless
/// the events are acknowledged.
pub fn post_values(addr: &str, topic: &str, values: impl IntoIterator<Item = String>) {
    let body: String = values
        .into_iter()
        .map(|v| format!("{}\n", serde_json::json!({ "value": v })))
        .collect();
    let ndjson = ("Content-Type", "application/x-ndjson");
    let path = format!("/topics/{topic}/events");
    let (code, _, answer) = http(addr, "POST", &path, &[ndjson], body.as_bytes());
    assert_eq!(code, 200, "{answer}");
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The address the HTTP server of a run listens on, from its log.
pub fn listen_addr(f: &Fixture, n: usize, child: &mut Child) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let log = f.stderr(n);
        if let Some(at) = log.find("addr=") {
            return log[at + 5..].split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "flowgate run exited: {log}"
        );
        assert!(Instant::now() < until, "no HTTP server after 60 s: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 client: status, headers (lower-case names), body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server that answers before reading a large body may close early: not our error.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Polls until `f` holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
