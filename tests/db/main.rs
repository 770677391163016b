//! End-to-end tests of the database connectors: the PostgreSQL sink (`pg_sink`), the MongoDB
//! sink (`mongo_sink`) and the PostgreSQL change source (`cdc`), each against a real server
//! started by the harness (PostgreSQL 15 from Debian's packages, [`flowgate_tests::postgres`];
//! FerretDB, a MongoDB wire-compatible server, [`flowgate_tests::mongo`]: the MongoDB tests run
//! against FerretDB, not MongoDB's `mongod`), the real `flowgate` binary
//! ([`flowgate_tests::fixture`]), and independent clients (`psql`, `psycopg`, `pymongo`) that
//! read the results back.
//!
//! Each test uses a database (or collection) and a data directory of its own; a test that
//! restarts a server starts one of its own.

mod cdc;
mod mongo_sink;
mod pg_sink;
mod warehouse;

/// Times a database test (see it with `--nocapture`).
struct Timer;

impl Timer {
    fn start(name: &'static str) -> flowgate_tests::Timer {
        flowgate_tests::Timer::start("db", name)
    }
}
