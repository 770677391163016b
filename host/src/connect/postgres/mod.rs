//! PostgreSQL as a sink and as a change source, through the `postgres` crate (rust-postgres'
//! synchronous client, over `tokio-postgres`), with TLS from OpenSSL (`postgres-openssl`, the
//! OpenSSL librdkafka links already).
//!
//! **Sink** (`sink.rs`): a batch of rows is one transaction that also writes the sink's input
//! positions into `flowgate_sink_positions`, so after a crash the sink resumes from the
//! positions the database holds: each event's row is there exactly once, in both delivery
//! modes. Rows go in with `COPY ... FROM STDIN` (text format: values are data, never SQL);
//! upserts go through a temporary staging table and one `INSERT ... ON CONFLICT`.
//!
//! **Change source** (`cdc.rs`): the changes of chosen tables, read from a logical replication
//! slot with the `pgoutput` plugin through SQL (`pg_logical_slot_peek_binary_changes`), appended
//! to the log with their commit's end LSN as the source's position, and only then confirmed to
//! the slot (`pg_replication_slot_advance`).

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use crate::config::redact_url;
use crate::log::LogError;

pub(crate) mod cdc;
pub(crate) mod sink;

/// How long connecting may take before it counts as a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// See [`FIRST_BACKOFF`].
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What went wrong in a PostgreSQL sink or source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is missing or not one.
    #[error("{0}")]
    Url(String),
    /// A request to the database failed.
    #[error("{what}: {}", describe(error))]
    Db {
        /// What was being done.
        what: String,
        /// The database's or the connection's error.
        error: postgres::Error,
    },
    /// The database is not as the step needs it (a table or column missing, say).
    #[error("{0}")]
    Invalid(String),
    /// The log refused an append or a checkpoint.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Error {
    pub(crate) fn db(what: impl Into<String>, error: postgres::Error) -> Error {
        Error::Db {
            what: what.into(),
            error,
        }
    }

    /// Trying again later may work: the connection or the server is away, or busy.
    pub(crate) fn transient(&self) -> bool {
        match self {
            Error::Db { error, .. } => transient(error),
            Error::Url(_) | Error::Invalid(_) | Error::Log(_) => false,
        }
    }
}

/// A database error with its SQLSTATE, detail and hint; else the error as it is.
pub(crate) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(e) = source {
                s.push_str(&format!(": {e}"));
                source = e.source();
            }
            s
        }
    }
}

/// The connection or server is away or busy (trying again later may work), as opposed to the
/// database refusing what was sent, or settings that will not work (TLS, authentication).
pub(crate) fn transient(error: &postgres::Error) -> bool {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection closed, or could not be made (an I/O error, a timeout);
        // not a TLS or configuration error, which trying again does not mend.
        if error.is_closed() {
            return true;
        }
        let mut source = std::error::Error::source(error);
        while let Some(e) = source {
            if e.is::<std::io::Error>() {
                return true;
            }
            source = e.source();
        }
        return error.to_string().contains("timeout");
    };
    let c = code.code();
    // 08: connection exception; 53: insufficient resources (disk full, too many
    // connections); 57P: operator intervention (shutdown, crash recovery); 40001/40P01:
    // serialization failure and deadlock, which a retry resolves.
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("57P")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Connects to `url` (a `postgres://` URL or a `key=value` connection string): TLS as its
/// `sslmode` says (`prefer` when it says nothing), certificates checked against the system's.
pub(crate) fn connect(url: &str) -> Result<Client, Error> {
    connect_within(url, CONNECT_TIMEOUT)
}

/// [`connect`], giving up after `timeout` unless the URL sets `connect_timeout` itself.
fn connect_within(url: &str, timeout: Duration) -> Result<Client, Error> {
    let mut config: Config = url.parse().map_err(|e| {
        Error::Url(format!(
            "{} is not a PostgreSQL URL ({e}); write postgres://user[:password]@host[:port]/database",
            redact_url(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("flowgate");
    }
    let what = || format!("cannot connect to {}", redact_url(url));
    match config.get_ssl_mode() {
        postgres::config::SslMode::Disable => {
            config.connect(NoTls).map_err(|e| Error::db(what(), e))
        }
        _ => {
            let builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .map_err(|e| Error::Invalid(format!("OpenSSL cannot make a TLS context: {e}")))?;
            let tls = postgres_openssl::MakeTlsConnector::new(builder.build());
            config.connect(tls).map_err(|e| Error::db(what(), e))
        }
    }
}

/// The database refused a row for what it holds (SQLSTATE class 22, data exception: a type, a
/// value out of range; class 23, integrity constraint; P0001, an exception raised by a
/// trigger): that row is a dead letter. Any other refusal (a missing unique index for the
/// upsert, a permission, a dropped table, a read-only server) is about the sink, not the row:
/// dead-lettering every row for it would empty the input into the dead-letter topic.
pub(crate) fn refuses_a_row(error: &postgres::Error) -> bool {
    error.code().is_some_and(|c| {
        c.code().starts_with("22") || c.code().starts_with("23") || c.code() == "P0001"
    })
}

/// `name` as a quoted SQL identifier: a name is never SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` or `schema.name` as a quoted, qualified SQL name.
pub(crate) fn quote_table(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
        None => quote_ident(table),
    }
}

/// A column of a table: its name and type (as `format_type` spells it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The name.
    pub name: String,
    /// The type, e.g. `integer`, `text`, `timestamp with time zone`, `jsonb`.
    pub ty: String,
}

/// The columns of `table`, in their order; `None` when there is no such table.
pub(crate) fn columns(client: &mut Client, table: &str) -> Result<Option<Vec<Column>>, Error> {
    let quoted = quote_table(table);
    let exists = client
        .query_one("SELECT to_regclass($1)::oid", &[&quoted])
        .map_err(|e| Error::db(format!("cannot look up table {table}"), e))?;
    let oid: Option<u32> = exists.get(0);
    let Some(oid) = oid else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .map_err(|e| Error::db(format!("cannot read the columns of table {table}"), e))?;
    Ok(Some(
        rows.iter()
            .map(|r| Column {
                name: r.get(0),
                ty: r.get(1),
            })
            .collect(),
    ))
}

/// What `flowgate validate` learns about a PostgreSQL step's tables.
#[derive(Debug)]
pub struct Probe {
    /// Each table asked about, with its columns; `None` when the table does not exist.
    pub tables: Vec<(String, Option<Vec<Column>>)>,
    /// The server's `wal_level` (`logical` is needed by a change source).
    pub wal_level: String,
}

/// Connects to `url` (waiting up to `timeout`) and looks up `tables` (for `flowgate validate`).
pub fn probe(url: &str, tables: &[&str], timeout: Duration) -> Result<Probe, Error> {
    let mut client = connect_within(url, timeout)?;
    let wal_level = client
        .query_one("SHOW wal_level", &[])
        .map_err(|e| Error::db("cannot read wal_level", e))?
        .get(0);
    let mut out = Vec::new();
    for t in tables {
        out.push(((*t).to_owned(), columns(&mut client, t)?));
    }
    Ok(Probe {
        tables: out,
        wal_level,
    })
}

/// The problem with a sink's columns against the table's, if there is one: a column the table
/// does not have (with the table's columns, to pick from).
pub fn missing_columns<'a>(
    table: &str,
    wanted: impl IntoIterator<Item = &'a str>,
    have: &[Column],
) -> Option<String> {
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|w| !have.iter().any(|c| c.name == *w))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let names: Vec<&str> = have.iter().map(|c| c.name.as_str()).collect();
    Some(format!(
        "table {table} has no column {}; its columns are: {}",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_so_that_they_are_never_sql() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(quote_table("shop.orders"), "\"shop\".\"orders\"");
    }

    #[test]
    fn a_missing_column_is_named_with_the_columns_there_are() {
        let have = [
            Column {
                name: "id".into(),
                ty: "integer".into(),
            },
            Column {
                name: "body".into(),
                ty: "jsonb".into(),
            },
        ];
        assert_eq!(missing_columns("t", ["id", "body"], &have), None);
        assert_eq!(
            missing_columns("t", ["id", "amount"], &have).as_deref(),
            Some("table t has no column `amount`; its columns are: id, body")
        );
    }
}
