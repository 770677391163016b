//! A MongoDB wire-compatible server for the tests, and an independent client to check what
//! Flowgate wrote to it.
//!
//! **The tests run against FerretDB, not MongoDB's `mongod`**, which cannot be installed here.
//! FerretDB 1.24.2 speaks MongoDB's wire protocol (it reports MongoDB 7.0.42) and keeps the
//! documents in PostgreSQL; what passes here is what a MongoDB client sees of FerretDB, and
//! FerretDB differs from `mongod` in places (its documentation lists them). It is built from its
//! Go module by `tests/db/db.sh install` (`scripts/install-test-deps`) into
//! `~/.cache/flowgate/ferretdb-v1.24.2/bin/ferretdb` (`FLOWGATE_FERRETDB`: another binary).
//!
//! [`Mongo::shared`] starts one per test binary on first use: FerretDB on a free port of
//! 127.0.0.1 with its PostgreSQL backend, on a PostgreSQL server of its own
//! ([`crate::postgres::Postgres`], database `ferretdb`; [`Mongo::backend`]), so a test that
//! restarts the harness's PostgreSQL does not take the documents away. No authentication,
//! telemetry off, no debug listener. FerretDB is killed when the test process exits, however it
//! exits (`PR_SET_PDEATHSIG`, as the PostgreSQL server), and an exit handler removes its
//! directory and its backend's.
//!
//! Why not FerretDB's SQLite backend: with it, an `update` command of 100 or more statements
//! (a bulk write of upserts) never returns, and the server answers nothing after it. FerretDB
//! 1.24 keeps each statement's query open until the command ends (`internal/handler/msg_update.go`
//! defers the iterator's close inside its loop), each holding a connection of a pool that the
//! SQLite backend caps at 100 (`SetMaxOpenConns(100)`, fixed). The PostgreSQL backend has the same
//! flaw but its pool is set in the URL (`pool_max_conns`, [`FERRETDB_POOL_MAX_CONNS`] here), and it
//! is the backend FerretDB calls production-ready. So, against this server:
//!
//! - **an `update` command must hold fewer statements than [`FERRETDB_POOL_MAX_CONNS`]** (a
//!   MongoDB driver sends a whole bulk write of upserts as one command, up to
//!   `maxWriteBatchSize` = 100,000), or it hangs for good, with every later command of that
//!   server;
//! - each statement of an update finds its document by a sequential scan of the collection
//!   (FerretDB filters `_id` with `_jsonb->'_id' @> $1`, which its btree index on `_id` cannot
//!   serve): upserts cost time in proportion to the collection's size. Inserts check `_id`
//!   through the unique index (a duplicate is error 11000 for that document alone with
//!   `ordered = false`).
//!
//! The client is the `pymongo` Python package (`tests/db/mongo.py`), not Flowgate's code;
//! documents cross as MongoDB's relaxed Extended JSON (`{"$oid": …}`, `{"$date": …}`, plain
//! numbers).
//!
//! ```no_run
//! use flowgate_tests::mongo::Mongo;
//! use serde_json::json;
//!
//! let mongo = Mongo::shared();
//! // ... run flowgate with `url = mongo.url()`, database "shop", collection "orders" ...
//! let docs = mongo.find("shop", "orders");
//! let took = mongo.insert_many("bench", "baseline", &[json!({"_id": 1, "a": "b"})], 1_000);
//! ```

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::postgres::{
    Needs, POLL, Postgres, STOP_TIMEOUT, db_dir, require_installed, start_timeout,
};
use crate::process::{
    check, describe, free_port, json_lines, kill, owned_temp_dir, remove_orphaned_dirs,
    run_with_input, spawn_tied, tail,
};

/// The connections FerretDB may open to its backend (`pool_max_conns`, FerretDB's default):
/// an `update` command of this many statements or more never returns (see the module's
/// documentation).
pub const FERRETDB_POOL_MAX_CONNS: u32 = 50;

/// The FerretDB binary (`FLOWGATE_FERRETDB`, or where `tests/db/db.sh install` builds it).
pub fn ferretdb_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOWGATE_FERRETDB") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/flowgate/ferretdb-v1.24.2/bin/ferretdb")
}

/// A MongoDB wire-compatible server run by the tests: FerretDB on 127.0.0.1, its documents in a
/// PostgreSQL server of its own.
#[derive(Debug)]
pub struct Mongo {
    port: u16,
    dir: PathBuf,
    backend: Postgres,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    started_in: Duration,
    backend_ready: bool,
}

impl Mongo {
    /// The server of this test binary: started on first use (on a free port; started again if a
    /// test left it stopped), killed when the test process exits. Tests that share it use
    /// databases or collections of their own; a test that stops or kills it does so for every
    /// test running beside it, so such tests take a server of their own ([`Mongo::new`]).
    pub fn shared() -> &'static Mongo {
        static SHARED: OnceLock<Mongo> = OnceLock::new();
        let mongo = SHARED.get_or_init(|| {
            let mongo = Mongo::new_stopped();
            extern "C" fn at_exit() {
                if let Some(mongo) = SHARED.get() {
                    mongo.kill_at_exit();
                }
            }
            // SAFETY: registers a function without arguments that never unwinds (kill_at_exit
            // only ignores errors).
            unsafe { libc::atexit(at_exit) };
            mongo
        });
        mongo.start();
        mongo
    }

    /// A server of the caller's own (FerretDB and its PostgreSQL), started; dropping it kills
    /// both and removes their directories.
    #[expect(
        clippy::new_without_default,
        reason = "starting a database server is not a default value"
    )]
    pub fn new() -> Mongo {
        let mongo = Mongo::new_stopped();
        mongo.start();
        mongo
    }

    fn new_stopped() -> Mongo {
        require_installed(Needs::Mongo);
        remove_orphaned_dirs(DIR_PREFIX);
        let backend = Postgres::new_stopped();
        let dir = owned_temp_dir(DIR_PREFIX, "FerretDB");
        Mongo {
            port: free_port(),
            dir,
            backend,
            state: Mutex::new(State {
                child: None,
                started_in: Duration::ZERO,
                backend_ready: false,
            }),
        }
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// The server's port on 127.0.0.1 (the same across [`stop`](Self::stop) and
    /// [`start`](Self::start)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// FerretDB's directory: `ferretdb.log` (its output across starts) and `state/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL server that holds the documents (database `ferretdb`), to crash the
    /// storage under FerretDB ([`Postgres::kill`]) or look at FerretDB's tables with `psql`.
    pub fn backend(&self) -> &Postgres {
        &self.backend
    }

    /// How long the last [`start`](Self::start) of FerretDB took, from spawning it to its answer
    /// to `ping` (its backend's start is [`Postgres::started_in`]).
    pub fn started_in(&self) -> Duration {
        self.state().started_in
    }

    /// Whether FerretDB's process is running.
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

    /// Starts the backend if it is not running, then FerretDB on its port, and returns when
    /// FerretDB answers `ping`. Does nothing if FerretDB runs. Panics, with the end of its log,
    /// if it exits or does not answer within the start deadline (`FLOWGATE_DB_START_TIMEOUT`,
    /// 120 s).
    pub fn start(&self) {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
            state.child = None;
        }
        self.backend.start();
        if !state.backend_ready {
            self.backend.create_database("ferretdb");
            state.backend_ready = true;
        }
        let began = Instant::now();
        let deadline = began + start_timeout();
        let backend_url = format!(
            "{}?pool_max_conns={FERRETDB_POOL_MAX_CONNS}",
            self.backend.url_for("ferretdb")
        );
        let log = self.open_log();
        let mut cmd = Command::new(ferretdb_bin());
        cmd.arg("--handler=postgresql")
            .arg(format!("--postgresql-url={backend_url}"))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            .arg(format!("--state-dir={}", self.dir.join("state").display()))
            .args([
                "--debug-addr=-",
                "--telemetry=disable",
                "--log-level=warn",
                "--log-format=text",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("FerretDB's log file"))
            .stderr(log);
        let mut child = spawn_tied(cmd).unwrap_or_else(|e| panic!("starting FerretDB: {e}"));

        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.fail_start(&format!(
                    "FerretDB exited ({}) before it listened",
                    describe(status)
                ));
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
        let ping = run_with_input(
            self.client(&["ping", "--deadline", &format!("{:.1}", left.as_secs_f64())]),
            b"",
        )
        .unwrap_or_else(|e| panic!("running mongo.py: {e}"));
        if !ping.status.success() {
            kill(&mut child);
            self.fail_start(&format!(
                "FerretDB listens but does not answer: {}",
                String::from_utf8_lossy(&ping.stderr).trim()
            ));
        }
        state.child = Some(child);
        state.started_in = began.elapsed();
    }

    /// Stops FerretDB as an operator would (SIGTERM), killing it if it has not stopped within
    /// 60 s. Its backend keeps running; its port stays, for [`start`](Self::start).
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
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills FerretDB (SIGKILL). What it acknowledged is in its backend, which keeps running
    /// (kill that too with [`backend`](Self::backend)`().kill()`).
    pub fn kill(&self) {
        if let Some(mut child) = self.state().child.take() {
            kill(&mut child);
        }
    }

    /// FerretDB's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ferretdb.log")).unwrap_or_default()
    }

    /// Every document of collection `coll` in database `db` (none if it does not exist), read by
    /// pymongo, in the server's order, as relaxed Extended JSON.
    pub fn find(&self, db: &str, coll: &str) -> Vec<serde_json::Value> {
        self.try_find(db, coll).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`find`](Self::find), returning the client's error instead of panicking: after its
    /// backend was killed and restarted, FerretDB fails each command that meets one of its dead
    /// pooled connections (`unexpected EOF`) before it reconnects.
    pub fn try_find(&self, db: &str, coll: &str) -> Result<Vec<serde_json::Value>, String> {
        let out = run_with_input(self.client(&["find", db, coll]), b"")
            .unwrap_or_else(|e| panic!("running mongo.py: {e}"));
        if out.status.success() {
            Ok(json_lines(&out.stdout, "mongo.py find"))
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "reading {db}.{coll} failed ({}): {}",
                describe(out.status),
                err.trim().lines().last().unwrap_or_default()
            ))
        }
    }

    /// The number of documents in `db.coll`, counted by pymongo.
    pub fn count(&self, db: &str, coll: &str) -> u64 {
        let out = self.run(&["count", db, coll], b"", &format!("counting {db}.{coll}"));
        let text = String::from_utf8_lossy(&out);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("mongo.py count printed {text:?}: {e}"))
    }

    /// Inserts `docs` (relaxed Extended JSON) into `db.coll` with pymongo's `insert_many`,
    /// `batch` documents a call, unordered; returns how long the inserts took inside the client
    /// (not its start nor the parsing of the documents): the baseline of the sink's benchmark.
    /// Panics if any document is refused (a duplicate `_id`, say).
    pub fn insert_many(
        &self,
        db: &str,
        coll: &str,
        docs: &[serde_json::Value],
        batch: usize,
    ) -> Duration {
        let mut input = String::new();
        for d in docs {
            input.push_str(&d.to_string());
            input.push('\n');
        }
        let batch = batch.max(1).to_string();
        let out = self.run(
            &["insert", db, coll, "--batch", &batch],
            input.as_bytes(),
            &format!("inserting {} documents into {db}.{coll}", docs.len()),
        );
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "mongo.py insert printed {:?}: {e}",
                String::from_utf8_lossy(&out)
            )
        });
        assert_eq!(
            report["inserted"].as_u64(),
            Some(docs.len() as u64),
            "documents inserted"
        );
        Duration::from_secs_f64(report["seconds"].as_f64().unwrap_or_default())
    }

    /// Drops collection `db.coll` (nothing happens if it does not exist).
    pub fn drop_collection(&self, db: &str, coll: &str) {
        self.run(&["drop", db, coll], b"", &format!("dropping {db}.{coll}"));
    }

    /// Runs mongo.py with `args`, `input` on its standard input; its standard output, or a
    /// panic with its error.
    fn run(&self, args: &[&str], input: &[u8], what: &str) -> Vec<u8> {
        let out = run_with_input(self.client(args), input)
            .unwrap_or_else(|e| panic!("running mongo.py: {e}"));
        check(&out, what);
        out.stdout
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("python3");
        cmd.arg(db_dir().join("mongo.py"))
            .arg("--url")
            .arg(self.url())
            .args(args);
        cmd
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_log(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ferretdb.log"))
            .expect("FerretDB's log file")
    }

    fn fail_start(&self, why: &str) -> ! {
        panic!(
            "FerretDB on {} did not start: {why}; the end of {}:\n{}",
            self.url(),
            self.dir.join("ferretdb.log").display(),
            tail(&self.log(), 40)
        );
    }

    /// At process exit: kill FerretDB and its backend now, remove their directories.
    fn kill_at_exit(&self) {
        let state = match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None, // the death signal kills it
        };
        if let Some(mut child) = state.and_then(|mut s| s.child.take()) {
            kill(&mut child);
        }
        self.backend.kill_at_exit();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The backend's own Drop kills it and removes its directory.
    }
}

/// The name of every FerretDB directory starts so, in the system's temporary directory.
const DIR_PREFIX: &str = "flowgate-ferretdb-";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Test document `i`: nested documents, arrays, integers past 32 bits, doubles, booleans,
    /// null, and strings with quotes, operators' characters and non-ASCII text.
    fn doc(i: i64) -> serde_json::Value {
        json!({
            "_id": format!("doc-{i:05}"),
            "seq": i,
            "big": i * 10_000_000_019,
            "ratio": i as f64 / 8.0,
            "even": i % 2 == 0,
            "none": null,
            "text": format!("\"{i}\" '$set' {{.}} ünïcødé"),
            "tags": ["a", i, {"k": [i, i + 1]}],
            "nested": {"level": {"deeper": i % 7}},
        })
    }

    fn by_id(mut docs: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
        docs.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
        docs
    }

    /// The harness itself: FerretDB on its PostgreSQL, 1,000 documents inserted by pymongo and
    /// read back by it field by field; then a stop and a start, a kill and a start, and a kill
    /// of the backend under FerretDB: the documents are all still there.
    #[test]
    #[expect(
        clippy::print_stderr,
        reason = "reports how long the servers took to start (see it with --nocapture)"
    )]
    fn mongo_round_trip_survives_restart_and_kill() {
        let t = Instant::now();
        let mongo = Mongo::shared();
        let first_start = t.elapsed();
        let backend_start = mongo.backend().started_in();
        let ferret_start = mongo.started_in();
        assert_eq!(
            mongo.url(),
            format!("mongodb://127.0.0.1:{}/", mongo.port())
        );

        mongo.drop_collection("harness", "docs");
        let want: Vec<serde_json::Value> = (0..1_000).map(doc).collect();
        let took = mongo.insert_many("harness", "docs", &want, 100);
        assert_eq!(mongo.count("harness", "docs"), 1_000);
        assert_eq!(
            by_id(mongo.find("harness", "docs")),
            want,
            "after the insert"
        );
        assert!(mongo.find("harness", "no_such_collection").is_empty());

        mongo.stop();
        assert!(!mongo.is_running());
        mongo.start();
        let restart = mongo.started_in();
        assert_eq!(
            by_id(mongo.find("harness", "docs")),
            want,
            "after a restart"
        );

        mongo.kill();
        mongo.start();
        let after_kill = mongo.started_in();
        assert_eq!(by_id(mongo.find("harness", "docs")), want, "after a kill");

        // The storage crashes under a running FerretDB: the commands that meet its dead pooled
        // connections fail, then it reconnects.
        mongo.backend().kill();
        mongo.backend().start();
        let backend_after_kill = mongo.backend().started_in();
        let mut failed = Vec::new();
        let again = loop {
            match mongo.try_find("harness", "docs") {
                Ok(docs) => break docs,
                Err(e) if failed.len() < 3 * FERRETDB_POOL_MAX_CONNS as usize => failed.push(e),
                Err(e) => panic!("FerretDB does not recover from its backend's crash: {e}"),
            }
        };
        assert_eq!(by_id(again), want, "after a kill of the backend");

        eprintln!(
            "ferretdb: first start {first_start:.1?} (backend PostgreSQL {backend_start:.1?} with \
             initdb, FerretDB {ferret_start:.1?}), after stop {restart:.1?}, after kill \
             {after_kill:.1?}; backend after kill {backend_after_kill:.1?}, then {} failed \
             reads; 1,000 documents inserted in {took:.1?}",
            failed.len()
        );
    }
}
