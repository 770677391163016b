//! A real PostgreSQL 15 server for the tests, and independent clients to check what Flowgate
//! wrote to it.
//!
//! The server is Debian's `postgresql-15` (binaries in `/usr/lib/postgresql/15/bin`, or
//! `FLOWGATE_POSTGRES_BIN`), installed by `scripts/install-test-deps`. [`Postgres::shared`]
//! starts one per test binary on first use: `initdb` into a temporary directory, then the
//! server on a free port of 127.0.0.1 (no Unix socket), set up for logical replication
//! (`wal_level = logical`, 20 replication slots and WAL senders) with trust authentication for
//! the superuser `postgres` on loopback. PostgreSQL refuses to run as root, so when the tests run
//! as root `initdb` and the server run as the `postgres` user (Debian's package makes it), which
//! owns the directory. The server is killed when the test process exits, however it exits: it is
//! spawned with `PR_SET_PDEATHSIG` = `SIGKILL` from a thread that lives as long as the process (its
//! backends end on their own when it dies), and an exit handler also removes its directory.
//!
//! The clients are PostgreSQL's own `psql` ([`Postgres::psql`], [`Postgres::rows_in`]) and the
//! `psycopg` Python package ([`Postgres::query_in`], `tests/db/pg.py`), not Flowgate's code.
//!
//! ```no_run
//! use flowgate_tests::postgres::Postgres;
//!
//! let pg = Postgres::shared();
//! let url = pg.create_database("orders_test");
//! pg.psql_in("orders_test", "CREATE TABLE orders (id bigint PRIMARY KEY, body text)");
//! // ... run flowgate with `url = url` ...
//! let rows = pg.rows_in("orders_test", "SELECT id, body FROM orders ORDER BY id");
//! ```

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::process::{
    check, describe, free_port, json_lines, kill, owned_temp_dir, remove_orphaned_dirs,
    run_with_input, spawn_tied, tail,
};

/// How long a database server may take to start before its `start` gives up
/// (`FLOWGATE_DB_START_TIMEOUT` seconds, default 120: crash recovery on a loaded 2-core machine).
pub(crate) fn start_timeout() -> Duration {
    let secs = std::env::var("FLOWGATE_DB_START_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// How long a server may take to stop before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Between two looks at a process or a port, in waits that have a deadline.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// The superuser of the test server (trusted on loopback, no password).
pub const SUPERUSER: &str = "postgres";

/// The folder of the database scripts and Python helpers (`tests/db`).
pub fn db_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("db")
}

/// The path of PostgreSQL's program `name` (`initdb`, `psql`, `pg_isready`, `pgbench`, ...).
pub fn pg_bin(name: &str) -> PathBuf {
    std::env::var_os("FLOWGATE_POSTGRES_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
        .join(name)
}

/// A PostgreSQL server run by the tests, on 127.0.0.1.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    /// The user and group the server runs as (`postgres`) when the tests run as root.
    user: Option<(u32, u32)>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    started_in: Duration,
}

impl Postgres {
    /// The server of this test binary: started on first use (on a free port, data in a
    /// temporary directory; started again if a test left it stopped), killed when the test
    /// process exits. Tests that share it use databases of their own ([`create_database`]); a
    /// test that stops or kills it (the "database restarted mid-run" cases) does so for every test
    /// running beside it, so such tests take a server of their own ([`Postgres::new`]).
    ///
    /// [`create_database`]: Self::create_database
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        let pg = SHARED.get_or_init(|| {
            let pg = Postgres::new_stopped();
            extern "C" fn at_exit() {
                if let Some(pg) = SHARED.get() {
                    pg.kill_at_exit();
                }
            }
            // SAFETY: registers a function without arguments that never unwinds (kill_at_exit
            // only ignores errors).
            unsafe { libc::atexit(at_exit) };
            pg
        });
        pg.start();
        pg
    }

    /// A server of the caller's own, started, on a free port with its data in a new temporary
    /// directory; dropping it kills it and removes the directory (and it does not outlive the
    /// test process either).
    #[expect(
        clippy::new_without_default,
        reason = "starting a database server is not a default value"
    )]
    pub fn new() -> Postgres {
        let pg = Postgres::new_stopped();
        pg.start();
        pg
    }

    /// A server not started yet: its directory and port chosen.
    pub(crate) fn new_stopped() -> Postgres {
        require_installed(Needs::Postgres);
        remove_orphaned_dirs(DIR_PREFIX);
        let user = server_user();
        let dir = owned_temp_dir(DIR_PREFIX, "PostgreSQL");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("giving {} to the `postgres` user: {e}", dir.display()));
        }
        Postgres {
            port: free_port(),
            dir,
            user,
            state: Mutex::new(State {
                child: None,
                started_in: Duration::ZERO,
            }),
        }
    }

    /// The server's port on 127.0.0.1 (the same across [`stop`](Self::stop) and
    /// [`start`](Self::start)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:<port>/postgres`: the superuser on the default database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` (a plain name: letters, digits, `_`), as the superuser.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgresql://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's directory: `data/` (the cluster), `postgres.log` (its output across starts),
    /// `initdb.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// How long the last [`start`](Self::start) took, from spawning the server (or `initdb`, the
    /// first time) to its accepting connections.
    pub fn started_in(&self) -> Duration {
        self.state().started_in
    }

    /// Whether the server's process is running.
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

    /// Starts the server (running `initdb` the first time) on its port and data directory, and
    /// returns when it accepts connections (after crash recovery, following a
    /// [`kill`](Self::kill)). Does nothing if it runs. Panics, with the end of its log, if it
    /// exits or is not ready within the start deadline (`FLOWGATE_DB_START_TIMEOUT`, 120 s).
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
        if !self.data_dir().join("PG_VERSION").exists() {
            self.initdb();
        }
        let log = self.open_log();
        let mut cmd = self.as_server_user(Command::new(pg_bin("postgres")));
        cmd.arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server's log file"))
            .stderr(log);
        let mut child = spawn_tied(cmd).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));

        // The port first (cheap), then pg_isready: the server listens during recovery too, but
        // refuses connections until it is done.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut listening = false;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.fail_start(&format!("the server exited ({})", describe(status)));
            }
            if !listening {
                listening = TcpStream::connect_timeout(&addr, POLL).is_ok();
            }
            if listening && self.is_ready() {
                break;
            }
            if Instant::now() >= deadline {
                kill_postmaster(&mut child, &self.data_dir());
                self.fail_start(&format!(
                    "not accepting connections on {addr} after {:?}",
                    start_timeout()
                ));
            }
            std::thread::sleep(POLL);
        }
        state.child = Some(child);
        state.started_in = began.elapsed();
    }

    /// Stops the server as an operator would (`pg_ctl stop`'s default, a fast shutdown: SIGINT,
    /// clients disconnected, a checkpoint), killing it if it has not stopped within 60 s. Its
    /// port and data stay, for [`start`](Self::start).
    pub fn stop(&self) {
        let Some(mut child) = self.state().child.take() else {
            return;
        };
        // SAFETY: a plain kill(2) on the pid of a child this process has not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                kill_postmaster(&mut child, &self.data_dir());
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the server: SIGKILL to the postmaster and every backend at once, as a crash of the
    /// machine would end them (nothing is flushed; committed transactions are in the WAL, and
    /// the next [`start`](Self::start) recovers from it). Returns when they are all gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.state().child.take() {
            kill_postmaster(&mut child, &self.data_dir());
        }
    }

    /// The server's log so far (its standard output and error across starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Runs `sql` with `psql` on the database `postgres`; see [`psql_in`](Self::psql_in).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Runs `sql` (statements, and `psql` commands such as `\copy`, each in its own transaction
    /// unless it opens one) with the real `psql` on database `db`, stopping at the first error,
    /// and returns what it printed: rows only (no headers, no command tags), a row a line,
    /// fields separated by `|`, NULL as an empty field, without the last newline. Panics with
    /// psql's error if a statement fails.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.try_psql_in(db, sql)
            .unwrap_or_else(|e| panic!("psql on {} failed: {e}\nthe SQL: {sql}", self.url_for(db)))
    }

    /// [`psql_in`](Self::psql_in), returning psql's error (its standard error) instead of
    /// panicking, for the tests of what the database refuses.
    pub fn try_psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(pg_bin("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-U", SUPERUSER, "-d", db, "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10");
        let out = run_with_input(cmd, sql.as_bytes())
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_bin("psql").display()));
        if out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.ends_with('\n') {
                text.pop();
            }
            Ok(text)
        } else {
            Err(format!(
                "{}: {}",
                describe(out.status),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The rows of the query `select` (one SELECT, no trailing `;`) on database `db`, read by
    /// `psql` as PostgreSQL's own `row_to_json` renders them: an object a row, columns by name,
    /// numbers as JSON numbers, bytea as `"\\x…"` hex text, timestamps as ISO 8601 text.
    pub fn rows_in(&self, db: &str, select: &str) -> Vec<serde_json::Value> {
        let out = self.psql_in(db, &format!("SELECT row_to_json(q) FROM ({select}) AS q"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("psql printed {l:?}: {e}")))
            .collect()
    }

    /// Runs `sql` (one statement, autocommit) on database `db` through the `psycopg` Python
    /// client (`tests/db/pg.py`) and returns its rows (none for a statement without a result):
    /// an object a row; numeric as exact text, bytea as `"\\x…"` hex, dates and times in ISO
    /// 8601. Panics with the client's error if the statement fails.
    pub fn query_in(&self, db: &str, sql: &str) -> Vec<serde_json::Value> {
        let mut cmd = Command::new("python3");
        cmd.arg(db_dir().join("pg.py"))
            .arg("--url")
            .arg(self.url_for(db))
            .arg("query")
            .arg(sql);
        let out = run_with_input(cmd, b"").unwrap_or_else(|e| panic!("running pg.py: {e}"));
        check(
            &out,
            &format!("psycopg's query on {}: {sql}", self.url_for(db)),
        );
        json_lines(&out.stdout, "pg.py")
    }

    /// Creates database `name` (a plain name: letters, digits, `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE {}", quote_ident(name)));
        self.url_for(name)
    }

    fn initdb(&self) {
        let mut cmd = self.as_server_user(Command::new(pg_bin("initdb")));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // No fsync of the new cluster's files: a test cluster does not outlive the machine.
            .arg("--no-sync")
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_bin("initdb").display()));
        let _ = std::fs::write(
            self.dir.join("initdb.log"),
            [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
        );
        if !out.status.success() {
            panic!(
                "initdb into {} failed ({}): {}",
                self.data_dir().display(),
                describe(out.status),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let settings = format!(
            "\n# Written by the test harness (tests/src/postgres.rs).\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = ''\n\
             max_connections = 200\n\
             # Logical replication, for the change source (pgoutput).\n\
             wal_level = logical\n\
             max_replication_slots = 20\n\
             max_wal_senders = 20\n\
             # Dynamic shared memory in the data directory: what a killed server leaves there\n\
             # goes with the directory.\n\
             dynamic_shared_memory_type = mmap\n",
            self.port
        );
        let conf = self.data_dir().join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let hba = "# Written by the test harness: every user trusted on loopback, replication too.\n\
                   host all all 127.0.0.1/32 trust\n\
                   host replication all 127.0.0.1/32 trust\n";
        let hba_path = self.data_dir().join("pg_hba.conf");
        std::fs::write(&hba_path, hba)
            .unwrap_or_else(|e| panic!("writing {}: {e}", hba_path.display()));
    }

    /// Whether the server accepts connections (`pg_isready`).
    fn is_ready(&self) -> bool {
        Command::new(pg_bin("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-t",
                "2",
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `cmd` set to run as the server's user, in the server's directory.
    fn as_server_user(&self, mut cmd: Command) -> Command {
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_log(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("the server's log file")
    }

    fn fail_start(&self, why: &str) -> ! {
        panic!(
            "PostgreSQL on 127.0.0.1:{} did not start: {why}; the end of {}:\n{}",
            self.port,
            self.dir.join("postgres.log").display(),
            tail(&self.log(), 40)
        );
    }

    /// At process exit: kill the server now (no waiting on a lock a test thread may hold) and
    /// remove the directory.
    pub(crate) fn kill_at_exit(&self) {
        let state = match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None, // the death signal kills it
        };
        if let Some(mut child) = state.and_then(|mut s| s.child.take()) {
            kill_postmaster(&mut child, &self.data_dir());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` as an SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Kills a postmaster and its backends together: the postmaster is stopped first (so it forks
/// no more), its children are killed, then itself; returns when they are all gone, and removes
/// its `postmaster.pid` (the processes it names are dead: a recycled pid must not make the next
/// start think a server still runs there).
fn kill_postmaster(child: &mut Child, data_dir: &Path) {
    let pid = child.id();
    // SAFETY: plain kill(2) calls on the pid of a child this process has not reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let backends = children_of(pid);
    for b in &backends {
        // SAFETY: kill(2) on processes whose parent is the stopped postmaster: it cannot reap
        // them, so the pids are not recycled meanwhile.
        unsafe { libc::kill(*b as libc::pid_t, libc::SIGKILL) };
    }
    kill(child);
    wait_gone(&backends, STOP_TIMEOUT);
    let _ = std::fs::remove_file(data_dir.join("postmaster.pid"));
}

/// The processes whose parent is `pid` (from `/proc/<n>/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|n| proc_stat(*n).is_some_and(|(_, ppid)| ppid == pid))
        .collect()
}

/// The state letter and parent of process `pid`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, the last ')' ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits until each of `pids` is gone or a zombie (dead, waiting for a reaper that is not us),
/// for at most `within`.
fn wait_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids
        .iter()
        .any(|p| proc_stat(*p).is_some_and(|(state, _)| state != 'Z'))
    {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The uid and gid of the `postgres` user when this process runs as root (PostgreSQL refuses
/// root), `None` otherwise (the server runs as the caller).
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new(SUPERUSER).expect("a user name without NUL");
    // SAFETY: getpwnam with a valid C string; the record is read at once, before any other
    // call that could reuse its static storage (the harness calls it from one place, under
    // the OnceLock of a server's creation or a test's own thread).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        panic!(
            "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to \
             run it as: apt-get install -y postgresql-15 makes one (run scripts/install-test-deps)"
        );
    }
    // SAFETY: pw is a non-null record returned just now.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

/// The name of every server directory starts so, in the system's temporary directory.
const DIR_PREFIX: &str = "flowgate-postgres-";

/// The servers [`require_installed`] checks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// PostgreSQL, the `postgres` user when run as root, psycopg.
    Postgres,
    /// PostgreSQL, FerretDB, pymongo.
    Mongo,
}

/// Checks once that what `needs` names is there (`tests/db/db.sh check`), and panics naming the
/// install script if not.
pub(crate) fn require_installed(needs: Needs) {
    static CHECKED: [OnceLock<Result<(), String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let (index, arg) = match needs {
        Needs::Postgres => (0, "postgres"),
        Needs::Mongo => (1, "mongo"),
    };
    let result = CHECKED[index].get_or_init(|| {
        match Command::new("bash")
            .arg(db_dir().join("db.sh"))
            .args(["check", arg])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("bash: {e}")),
        }
    });
    if let Err(why) = result {
        panic!("the {arg} test server cannot run: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rows the round trip writes: psql's generated ones and psycopg's, by id.
    fn expected(n: i64) -> Vec<serde_json::Value> {
        (1..=n)
            .map(|i| {
                let body = if i % 100 == 0 {
                    // Metacharacters and quotes land as text.
                    format!("row {i} '); DROP TABLE t; -- \"quoted\" \\ ünïcødé")
                } else {
                    format!("row {i}")
                };
                json!({"id": i, "body": body, "n": i * 1_000_003, "ok": i % 2 == 0})
            })
            .collect()
    }

    /// The harness itself: a real server, a database, 1,000 rows written by psql (SQL, quotes
    /// doubled) and 1,000 by psycopg (parameters), read back by both clients and compared field
    /// by field; then a stop and a start, and a kill and a start, on the same port and data: the
    /// rows are all still there, and a transaction committed just before the kill too.
    #[test]
    #[expect(
        clippy::print_stderr,
        reason = "reports how long the server took to start (see it with --nocapture)"
    )]
    fn postgres_round_trip_survives_restart_and_kill() {
        let t = Instant::now();
        let pg = Postgres::shared();
        let first_start = t.elapsed();
        let url = pg.create_database("harness");
        assert_eq!(
            url,
            format!("postgresql://postgres@127.0.0.1:{}/harness", pg.port())
        );
        pg.psql_in(
            "harness",
            "CREATE TABLE t (id bigint PRIMARY KEY, body text NOT NULL, n bigint, ok boolean)",
        );
        let want = expected(2_000);
        let mut sql = String::new();
        for row in &want[..1_000] {
            sql.push_str(&format!(
                "INSERT INTO t VALUES ({}, '{}', {}, {});\n",
                row["id"],
                row["body"].as_str().unwrap().replace('\'', "''"),
                row["n"],
                row["ok"]
            ));
        }
        pg.psql_in("harness", &sql);
        // psycopg inserts the other half from one JSON parameter (no SQL text from the data).
        let half = serde_json::Value::Array(want[1_000..].to_vec()).to_string();
        let inserted = pg.query_in(
            "harness",
            &format!(
                "INSERT INTO t SELECT * FROM json_populate_recordset(NULL::t, {}) RETURNING id",
                quote_literal(&half)
            ),
        );
        assert_eq!(inserted.len(), 1_000);

        let read = |when: &str| {
            let by_psql = pg.rows_in("harness", "SELECT id, body, n, ok FROM t ORDER BY id");
            assert_eq!(by_psql, want, "rows read by psql {when}");
            let by_psycopg = pg.query_in("harness", "SELECT id, body, n, ok FROM t ORDER BY id");
            assert_eq!(by_psycopg, want, "rows read by psycopg {when}");
        };
        read("after the writes");
        assert_eq!(pg.psql_in("harness", "SELECT count(*), sum(n) FROM t"), {
            let sum: i64 = (1..=2_000).map(|i| i * 1_000_003).sum();
            format!("2000|{sum}")
        });
        let missing = pg.try_psql_in("harness", "SELECT * FROM no_such_table");
        assert!(
            missing.as_ref().is_err_and(|e| e.contains("no_such_table")),
            "{missing:?}"
        );
        let wal_level = pg.psql("SHOW wal_level");
        assert_eq!(wal_level, "logical");

        pg.stop();
        assert!(!pg.is_running());
        pg.start();
        let restart = pg.started_in();
        read("after a restart");

        // A commit acknowledged just before the kill survives it (crash recovery replays it).
        pg.psql_in("harness", "UPDATE t SET n = -n WHERE id = 7");
        pg.kill();
        assert!(!pg.is_running());
        pg.start();
        let after_kill = pg.started_in();
        assert_eq!(
            pg.psql_in("harness", "SELECT n FROM t WHERE id = 7"),
            "-7000021"
        );
        pg.psql_in("harness", "UPDATE t SET n = -n WHERE id = 7");
        read("after a kill");

        eprintln!(
            "postgres: first start {first_start:.1?} (initdb included), after stop {restart:.1?}, \
             after kill {after_kill:.1?}"
        );
    }

    /// `text` as an SQL string literal.
    fn quote_literal(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }
}
