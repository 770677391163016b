//! What the harnesses of the real servers (Kafka, PostgreSQL, FerretDB) share: directories that a
//! later run cleans up if this one is killed, free ports, children that cannot outlive the test
//! process, and running the helper scripts.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};

/// A new directory `<tmp>/<prefix>XXXX` that outlives this value, with an `owner.pid` naming
/// this process (so that a later run removes it if this one is killed).
pub(crate) fn owned_temp_dir(prefix: &str, what: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("a temporary directory for {what}: {e}"))
        .keep();
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string())
        .unwrap_or_else(|e| panic!("the owner file of {what}'s directory: {e}"));
    dir
}

/// Removes the directories (`<tmp>/<prefix>*`) of servers whose test process is gone (killed:
/// no exit handler ran).
pub(crate) fn remove_orphaned_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A port free on 127.0.0.1 now.
pub(crate) fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports free on 127.0.0.1 now (all bound at once, so none repeats).
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a port").port())
}

/// Runs `cmd` with `input` on its standard input and returns its output.
pub(crate) fn run_with_input(mut cmd: Command, input: &[u8]) -> io::Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("the child's stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    // A child that exits without reading all its input is judged by its exit status.
    let _ = writer.join();
    Ok(out)
}

/// The JSON lines a helper printed.
pub(crate) fn json_lines(stdout: &[u8], helper: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{helper} printed {l:?}: {e}")))
        .collect()
}

/// Panics with a helper's standard error if it failed.
pub(crate) fn check(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {}",
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it cannot outlive this process: the child gets SIGKILL when its parent
/// dies (`PR_SET_PDEATHSIG`, set after a switch to another user, which would clear it).
/// The kernel's "parent" there is the *thread* that forked, so every such child is forked by
/// one thread that lives as long as the process, never by a test's thread (whose end would
/// kill the server under the next test).
pub(crate) fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("server-process-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut cmd));
                }
            })
            .expect("the thread that spawns the test servers");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the process keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the process keeper thread is gone"))?
}

fn spawn_with_death_signal(cmd: &mut Command) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (prctl, getppid) and allocates nothing. std runs it after the uid and gid changes.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody would kill this child later.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}
