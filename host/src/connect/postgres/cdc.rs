//! The PostgreSQL change source (`type = "postgres-cdc"`): the row changes of chosen tables,
//! read from a logical replication slot with PostgreSQL's built-in `pgoutput` plugin, one event
//! per row change.
//!
//! **Reading.** The slot is read through SQL on an ordinary connection:
//! `pg_logical_slot_peek_binary_changes` decodes whole transactions from the slot's confirmed
//! position without moving it, and `pg_replication_slot_advance` moves it once their events are
//! durable in the log. (rust-postgres has no replication mode, and the SQL functions give exact
//! control over what is confirmed; the cost is that a poll re-decodes the WAL from the slot's
//! restart point, see the crate docs.) At start the source makes the publication
//! (`CREATE PUBLICATION <publication> FOR TABLE <tables>`) and the slot if they are missing.
//! The slot reads changes from its creation on: rows that were there before are not read (no
//! initial snapshot).
//!
//! **Events.** Key: a JSON object of the row's key columns (the primary key, or the replica
//! identity's columns; none, and no key, for a table without either). Value:
//! `{"op":"insert|update|delete|truncate","table":"schema.name","before":{..}|null,"after":{..}|null,
//! "lsn":"X/Y","commit_time":"RFC 3339","xid":N}`, `lsn` being the change's own WAL position.
//! Columns are typed by their type: integers and `oid` are JSON numbers, floats numbers (NaN
//! and infinities strings), `bool` true/false, `json`/`jsonb` embedded JSON, `numeric` a string
//! (exact), everything else the text PostgreSQL writes; NULL is null. A TOASTed column that an
//! update did not change is not sent by PostgreSQL and is left out of `after`. `before` holds
//! what the table's replica identity sends: nothing for an update that kept the key, the key
//! columns for a delete or an update that changed the key; every column with
//! `ALTER TABLE t REPLICA IDENTITY FULL`. A `TRUNCATE` is one event per table, op `truncate`,
//! no key, `before` and `after` null. Headers `pg.op`, `pg.table`, `pg.lsn`; the timestamp is
//! the commit time in milliseconds.
//!
//! **Position and exactly-once.** The source's position is the end LSN of the last
//! transaction whose events are in the log. A round appends the events of whole transactions
//! with the end LSN of the last one as its next position (each event's origin being its
//! transaction's end LSN), waits until they are durable, and only then advances the slot to
//! that LSN. After a crash the slot gives again what it had not confirmed; transactions that
//! end at or before the checkpointed position are skipped, and in exactly-once mode the
//! producer's markers drop the events of those written after it. A crash therefore loses
//! nothing in either mode and repeats nothing in exactly-once mode.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use postgres::Client;
use postgres::error::SqlState;
use postgres::types::PgLsn;
use serde_json::{Map, Value, json};

use super::{Error, FIRST_BACKOFF, MAX_BACKOFF, connect, quote_ident, quote_table};
use crate::config::PostgresCdcSource;
use crate::connect::common::back_off;
use crate::connect::{SourceCtx, producer, send};
use crate::event::{Event, Header};
use crate::flow::producer::Producer;

/// How long a slot may stay in use by another connection before the source gives up: the
/// backend of a killed run of this source can hold it until it sees its client gone.
const SLOT_IN_USE_GRACE: Duration = Duration::from_secs(60);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Runs the source until the pipeline stops (or, bounded, until it has read what was committed
/// when it started).
pub(crate) fn run(ctx: &SourceCtx, cfg: &PostgresCdcSource) -> Result<(), Error> {
    let url = cfg.url.resolve().map_err(Error::Url)?;
    let (mut producer, position) = producer(ctx)?;
    tracing::info!(source = %ctx.config.name, slot = %cfg.slot, publication = %cfg.publication, position = %lsn_text(position), "PostgreSQL change source starting");
    let mut source = Source {
        ctx,
        cfg,
        url,
        client: None,
        decoder: Decoder::default(),
        confirmed: 0,
        bounded_end: None,
        in_use_since: None,
    };
    let mut backoff = FIRST_BACKOFF;
    while !ctx.halted() {
        match source.round(&mut producer) {
            Ok(Round::More) => backoff = FIRST_BACKOFF,
            Ok(Round::Idle) => {
                backoff = FIRST_BACKOFF;
                ctx.ctl.sleep(cfg.poll_interval, &ctx.stop);
            }
            Ok(Round::End) => break,
            Err(e) => source.failed(e, &mut backoff)?,
        }
    }
    producer.flush()?;
    tracing::info!(source = %ctx.config.name, position = %lsn_text(producer.position()), "PostgreSQL change source stopped");
    Ok(())
}

/// What a round of reading found.
enum Round {
    /// Transactions (read more at once).
    More,
    /// Nothing new (wait `poll_interval`).
    Idle,
    /// A bounded run has read all it is to read.
    End,
}

struct Source<'a> {
    ctx: &'a SourceCtx,
    cfg: &'a PostgresCdcSource,
    url: String,
    client: Option<Client>,
    decoder: Decoder,
    /// The slot's confirmed position, as last read or advanced.
    confirmed: u64,
    /// A bounded run: the WAL position it reads to (the flushed WAL when it first connected).
    bounded_end: Option<u64>,
    /// Since when the slot has been in use by another connection.
    in_use_since: Option<Instant>,
}

impl Source<'_> {
    fn name(&self) -> &str {
        &self.ctx.config.name
    }

    /// Reads the transactions committed since the slot's confirmed position (up to
    /// `batch_size` changes, whole transactions), appends them, and confirms them.
    fn round(&mut self, producer: &mut Producer) -> Result<Round, Error> {
        if self.client.is_none() {
            self.open()?;
        }
        let client = self.client.as_mut().expect("opened");
        let upto = match self.bounded_end {
            Some(end) => end,
            None => flush_lsn(client)?,
        };
        metrics::gauge!("flowgate_cdc_lag_bytes", "step" => self.ctx.config.name.clone())
            .set(upto.saturating_sub(self.confirmed) as f64);
        let limit = i32::try_from(self.cfg.batch_size).unwrap_or(i32::MAX);
        let publications = quote_ident(&self.cfg.publication);
        let rows = client
            .query(
                "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2, $3, \
                 'proto_version', '1', 'publication_names', $4)",
                &[&self.cfg.slot, &PgLsn::from(upto), &limit, &publications],
            )
            .map_err(|e| Error::db(format!("cannot read replication slot {}", self.cfg.slot), e))?;
        if rows.is_empty() {
            // Nothing of the tables committed before `upto`: the slot can move there, so that
            // the server may recycle the WAL of the other tables' changes.
            if upto > self.confirmed {
                self.advance(upto)?;
            }
            return Ok(if self.bounded_end.is_some() {
                Round::End
            } else {
                Round::Idle
            });
        }
        // A table with REPLICA IDENTITY FULL flags every column as key; its primary key, if it
        // has one, is looked up and keys the events instead.
        for row in &rows {
            let data: &[u8] = row.get(1);
            if data.first() == Some(&b'R')
                && let Ok(Message::Relation(r)) = parse(data)
                && r.identity == b'f'
                && !self.decoder.primary_keys.contains_key(&r.oid)
            {
                let pk = primary_key(client, r.oid)?;
                self.decoder.primary_keys.insert(r.oid, pk);
            }
        }
        let mut transactions = Vec::new();
        for row in &rows {
            let lsn = u64::from(row.get::<_, PgLsn>(0));
            let data: &[u8] = row.get(1);
            let done = self.decoder.feed(lsn, data).map_err(|e| {
                Error::Invalid(format!(
                    "cannot decode the pgoutput message at LSN {} of slot {}: {e}",
                    lsn_text(lsn),
                    self.cfg.slot
                ))
            })?;
            transactions.extend(done);
        }
        // The peek returns whole transactions; one left open would be read again next round.
        self.decoder.abandon();
        let Some(last_end) = transactions.last().map(|t| t.end_lsn) else {
            return Ok(Round::Idle);
        };
        let done = producer.position();
        let (mut events, mut origins, mut skipped) = (Vec::new(), Vec::new(), 0usize);
        for t in transactions {
            if t.end_lsn <= done {
                // In the log already (appended before a crash or a lost connection).
                skipped += t.events.len();
                continue;
            }
            origins.extend(std::iter::repeat_n(t.end_lsn, t.events.len()));
            events.extend(t.events);
        }
        if skipped > 0 {
            tracing::info!(source = %self.name(), skipped, position = %lsn_text(done), "changes already in the log skipped");
        }
        if last_end > done {
            send(self.ctx, producer, &events, &origins, last_end)?;
            // Durable before the slot moves past them.
            producer.flush()?;
        }
        if last_end > self.confirmed {
            self.advance(last_end)?;
        }
        Ok(Round::More)
    }

    /// Confirms the slot up to `lsn`.
    fn advance(&mut self, lsn: u64) -> Result<(), Error> {
        let client = self.client.as_mut().expect("opened");
        let row = client
            .query_one(
                "SELECT end_lsn FROM pg_replication_slot_advance($1, $2)",
                &[&self.cfg.slot, &PgLsn::from(lsn)],
            )
            .map_err(|e| {
                Error::db(
                    format!(
                        "cannot advance replication slot {} to {}",
                        self.cfg.slot,
                        lsn_text(lsn)
                    ),
                    e,
                )
            })?;
        let moved: Option<PgLsn> = row.get(0);
        self.confirmed = self.confirmed.max(moved.map_or(lsn, u64::from));
        Ok(())
    }

    /// Connects and makes sure of the server, the tables, the publication and the slot.
    fn open(&mut self) -> Result<(), Error> {
        let mut client = connect(&self.url)?;
        let wal_level: String = client
            .query_one("SHOW wal_level", &[])
            .map_err(|e| Error::db("cannot read wal_level", e))?
            .get(0);
        if wal_level != "logical" {
            return Err(Error::Invalid(format!(
                "the server's wal_level is {wal_level}, and reading changes needs logical: run ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart the server"
            )));
        }
        let (database, user): (String, String) = {
            let r = client
                .query_one("SELECT current_database()::text, current_user::text", &[])
                .map_err(|e| Error::db("cannot read the current database", e))?;
            (r.get(0), r.get(1))
        };
        let mut tables = BTreeSet::new();
        for t in &self.cfg.tables {
            let rows = client
                .query(
                    "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                    &[&quote_table(t)],
                )
                .map_err(|e| Error::db(format!("cannot look up table {t}"), e))?;
            let Some(r) = rows.first() else {
                return Err(Error::Invalid(format!(
                    "table {t} does not exist in database {database}: create it, or take it out of `tables`"
                )));
            };
            tables.insert(format!(
                "{}.{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            ));
        }
        self.ensure_publication(&mut client, &tables, &user)?;
        self.ensure_slot(&mut client, &database, &user)?;
        let confirmed: Option<PgLsn> = client
            .query_one(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.cfg.slot],
            )
            .map_err(|e| Error::db(format!("cannot read replication slot {}", self.cfg.slot), e))?
            .get(0);
        self.confirmed = confirmed.map_or(0, u64::from);
        if self.ctx.ctl.bounded() && self.bounded_end.is_none() {
            let end = flush_lsn(&mut client)?;
            tracing::info!(source = %self.name(), to = %lsn_text(end), "bounded run: reading the changes committed before it started");
            self.bounded_end = Some(end);
        }
        self.decoder.tables = Some(tables);
        self.client = Some(client);
        metrics::gauge!("flowgate_db_up", "step" => self.ctx.config.name.clone()).set(1.0);
        *self.ctx.stats.down.lock().expect("not poisoned") = None;
        self.in_use_since = None;
        tracing::info!(source = %self.name(), slot = %self.cfg.slot, confirmed = %lsn_text(self.confirmed), "reading replication slot");
        Ok(())
    }

    /// Makes the publication of `tables` if it is missing; checks that it covers them if not.
    fn ensure_publication(
        &self,
        client: &mut Client,
        tables: &BTreeSet<String>,
        user: &str,
    ) -> Result<(), Error> {
        let publication = &self.cfg.publication;
        let find = |client: &mut Client| -> Result<Option<bool>, Error> {
            let rows = client
                .query(
                    "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                    &[publication],
                )
                .map_err(|e| Error::db(format!("cannot look up publication {publication}"), e))?;
            Ok(rows.first().map(|r| r.get(0)))
        };
        let all = match find(client)? {
            Some(all) => all,
            None => {
                let list: Vec<String> = tables.iter().map(|t| quote_table(t)).collect();
                let sql = format!(
                    "CREATE PUBLICATION {} FOR TABLE {}",
                    quote_ident(publication),
                    list.join(", ")
                );
                match client.batch_execute(&sql) {
                    Ok(()) => {
                        tracing::info!(source = %self.name(), publication = %publication, "publication created");
                        return Ok(());
                    }
                    // Made meanwhile by someone else: check it as if it had been there.
                    Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                        find(client)?.unwrap_or(false)
                    }
                    Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                        return Err(Error::Invalid(format!(
                            "role {user} may not create publication {publication} ({}): create it as the tables' owner (CREATE PUBLICATION {} FOR TABLE {}), or give {user} CREATE on the database and ownership of the tables",
                            super::describe(&e),
                            quote_ident(publication),
                            list.join(", ")
                        )));
                    }
                    Err(e) => {
                        return Err(Error::db(
                            format!("cannot create publication {publication}"),
                            e,
                        ));
                    }
                }
            }
        };
        if all {
            return Ok(());
        }
        let published: BTreeSet<String> = client
            .query(
                "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[publication],
            )
            .map_err(|e| Error::db(format!("cannot read the tables of publication {publication}"), e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let missing: Vec<String> = tables
            .difference(&published)
            .map(|t| quote_table(t))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Invalid(format!(
                "publication {publication} does not publish {}: run ALTER PUBLICATION {} ADD TABLE {} (its changes are read from then on), or name another `publication`",
                missing.join(", "),
                quote_ident(publication),
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Makes the slot if it is missing; checks that it is a `pgoutput` slot of this database.
    fn ensure_slot(&self, client: &mut Client, database: &str, user: &str) -> Result<(), Error> {
        let slot = &self.cfg.slot;
        let rows = client
            .query(
                "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
                &[slot],
            )
            .map_err(|e| Error::db(format!("cannot look up replication slot {slot}"), e))?;
        if let Some(r) = rows.first() {
            let plugin: Option<String> = r.get(0);
            let db: Option<String> = r.get(1);
            if plugin.as_deref() != Some("pgoutput") || db.as_deref() != Some(database) {
                return Err(Error::Invalid(format!(
                    "replication slot {slot} is not a pgoutput slot of database {database} (plugin {}, database {}): name another `slot`, or drop it (SELECT pg_drop_replication_slot('{slot}'))",
                    plugin.as_deref().unwrap_or("none: a physical slot"),
                    db.as_deref().unwrap_or("none"),
                )));
            }
            return Ok(());
        }
        match client.query_one(
            "SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[slot],
        ) {
            Ok(r) => {
                let at: PgLsn = r.get(0);
                tracing::info!(source = %self.name(), slot = %slot, at = %lsn_text(at.into()), "replication slot created: changes are read from here on");
                Ok(())
            }
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                Err(Error::Invalid(format!(
                    "role {user} may not use replication slots ({}): ALTER ROLE {} REPLICATION, or connect as a superuser",
                    super::describe(&e),
                    quote_ident(user)
                )))
            }
            Err(e) => Err(Error::db(
                format!("cannot create replication slot {slot}"),
                e,
            )),
        }
    }

    /// After a failed round: waits and reconnects when trying again may work (the database
    /// away, the slot held by a connection that is going), else returns the error.
    fn failed(&mut self, e: Error, backoff: &mut Duration) -> Result<(), Error> {
        let name = self.ctx.config.name.clone();
        self.client = None;
        if let Some(pid) = slot_in_use(&e) {
            let since = *self.in_use_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SLOT_IN_USE_GRACE {
                return Err(Error::Invalid(format!(
                    "replication slot {} has been in use by another connection (PID {pid}) for {SLOT_IN_USE_GRACE:?}: another run of this source, or another client, reads it; a slot has one reader at a time (name another `slot` for a second reader)",
                    self.cfg.slot
                )));
            }
            tracing::warn!(source = %name, slot = %self.cfg.slot, pid, "replication slot in use by another connection; trying again in {backoff:?}");
        } else if e.transient() && !self.ctx.ctl.bounded() {
            tracing::error!(source = %name, "{e}; reconnecting in {backoff:?}");
            metrics::counter!("flowgate_db_errors_total", "step" => name.clone()).increment(1);
        } else {
            return Err(e);
        }
        metrics::gauge!("flowgate_db_up", "step" => name).set(0.0);
        *self.ctx.stats.down.lock().expect("not poisoned") = Some(e.to_string());
        back_off(backoff, MAX_BACKOFF, || self.ctx.halted());
        Ok(())
    }
}

/// The PID holding the slot, when `e` says the slot is in use.
fn slot_in_use(e: &Error) -> Option<String> {
    let Error::Db { error, .. } = e else {
        return None;
    };
    let db = error.as_db_error()?;
    if *db.code() != SqlState::OBJECT_IN_USE {
        return None;
    }
    let message = db.message();
    Some(
        message
            .rsplit(' ')
            .next()
            .unwrap_or("unknown")
            .trim_end_matches('.')
            .to_owned(),
    )
}

/// The server's flushed WAL position.
fn flush_lsn(client: &mut Client) -> Result<u64, Error> {
    let lsn: PgLsn = client
        .query_one("SELECT pg_current_wal_flush_lsn()", &[])
        .map_err(|e| Error::db("cannot read the WAL position", e))?
        .get(0);
    Ok(lsn.into())
}

/// The primary key columns of table `oid`, in key order (empty without one).
fn primary_key(client: &mut Client, oid: u32) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .map_err(|e| Error::db("cannot read a table's primary key", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `lsn` as PostgreSQL writes it: `X/Y`, the high and low 32 bits in hex.
pub(crate) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn as u32)
}

/// A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as RFC 3339, and in milliseconds
/// since the Unix epoch.
fn commit_time(pg_us: i64) -> (String, i64) {
    let unix_us = pg_us.saturating_add(PG_EPOCH_US);
    let text = u64::try_from(unix_us).map_or_else(
        |_| unix_us.to_string(),
        |us| {
            humantime::format_rfc3339_micros(SystemTime::UNIX_EPOCH + Duration::from_micros(us))
                .to_string()
        },
    );
    (text, unix_us.div_euclid(1000))
}

// ---- pgoutput (protocol version 1), as in PostgreSQL's "Logical Replication Message Formats".

/// A column of a Relation message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelColumn {
    /// Part of the replica identity (the flags' bit 1).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
}

/// A Relation message: a table as the changes that follow describe its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Relation {
    pub oid: u32,
    /// `schema.name` (`pg_catalog` when the message says none).
    pub name: String,
    /// Replica identity: `d` default (primary key), `n` nothing, `f` full, `i` an index.
    pub identity: u8,
    pub columns: Vec<RelColumn>,
}

/// A column's value in a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Datum<'a> {
    Null,
    /// A TOASTed value the change did not touch: PostgreSQL does not send it.
    Unchanged,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

/// One pgoutput message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Origin,
    Relation(Relation),
    Type,
    Insert {
        rel: u32,
        new: Vec<Datum<'a>>,
    },
    Update {
        rel: u32,
        /// `K` (the old key) or `O` (the old row), when sent.
        old: Option<(u8, Vec<Datum<'a>>)>,
        new: Vec<Datum<'a>>,
    },
    Delete {
        rel: u32,
        old: (u8, Vec<Datum<'a>>),
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// A logical decoding message (`pg_logical_emit_message`); not made into events.
    Logical,
}

/// Reads the big-endian fields of a message.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "the message ends at byte {} where {n} more were due at byte {}",
                    self.buf.len(),
                    self.at
                )
            })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }

    /// A NUL-terminated string.
    fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.buf[self.at.min(self.buf.len())..];
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a string without its terminating NUL")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Datum<'a>>, String> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Datum::Text(self.take(len)?)
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    Datum::Binary(self.take(len)?)
                }
                other => return Err(format!("unknown column kind {:?}", other as char)),
            });
        }
        Ok(out)
    }
}

/// Parses one pgoutput (version 1) message.
pub(crate) fn parse(data: &[u8]) -> Result<Message<'_>, String> {
    let mut f = Fields { buf: data, at: 0 };
    let kind = f.u8()?;
    let m = match kind {
        b'B' => Message::Begin {
            final_lsn: f.u64()?,
            commit_time: f.i64()?,
            xid: f.u32()?,
        },
        b'C' => {
            let _flags = f.u8()?;
            Message::Commit {
                commit_lsn: f.u64()?,
                end_lsn: f.u64()?,
                commit_time: f.i64()?,
            }
        }
        b'O' => {
            let _lsn = f.u64()?;
            let _name = f.cstr()?;
            Message::Origin
        }
        b'R' => {
            let oid = f.u32()?;
            let namespace = f.cstr()?;
            let name = f.cstr()?;
            let identity = f.u8()?;
            let n = f.u16()?;
            let mut columns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let flags = f.u8()?;
                let name = f.cstr()?;
                let type_oid = f.u32()?;
                let _typmod = f.u32()?;
                columns.push(RelColumn {
                    key: flags & 1 != 0,
                    name,
                    type_oid,
                });
            }
            let schema = if namespace.is_empty() {
                "pg_catalog".to_owned()
            } else {
                namespace
            };
            Message::Relation(Relation {
                oid,
                name: format!("{schema}.{name}"),
                identity,
                columns,
            })
        }
        b'Y' => {
            let _oid = f.u32()?;
            let _namespace = f.cstr()?;
            let _name = f.cstr()?;
            Message::Type
        }
        b'I' => {
            let rel = f.u32()?;
            match f.u8()? {
                b'N' => Message::Insert {
                    rel,
                    new: f.tuple()?,
                },
                other => return Err(format!("an insert with {:?} for N", other as char)),
            }
        }
        b'U' => {
            let rel = f.u32()?;
            let mut old = None;
            let mut tag = f.u8()?;
            if tag == b'K' || tag == b'O' {
                old = Some((tag, f.tuple()?));
                tag = f.u8()?;
            }
            if tag != b'N' {
                return Err(format!("an update with {:?} for N", tag as char));
            }
            Message::Update {
                rel,
                old,
                new: f.tuple()?,
            }
        }
        b'D' => {
            let rel = f.u32()?;
            let tag = f.u8()?;
            if tag != b'K' && tag != b'O' {
                return Err(format!("a delete with {:?} for K or O", tag as char));
            }
            Message::Delete {
                rel,
                old: (tag, f.tuple()?),
            }
        }
        b'T' => {
            let n = f.u32()?;
            let _options = f.u8()?;
            let mut rels = Vec::new();
            for _ in 0..n {
                rels.push(f.u32()?);
            }
            Message::Truncate { rels }
        }
        b'M' => Message::Logical,
        b'S' | b'E' | b'c' | b'A' => {
            return Err(
                "a streamed transaction message, which protocol version 1 does not send".into(),
            );
        }
        other => return Err(format!("unknown message type {:?}", other as char)),
    };
    Ok(m)
}

/// The events of one committed transaction.
#[derive(Debug)]
pub(crate) struct Transaction {
    pub end_lsn: u64,
    pub events: Vec<Event>,
}

struct Open {
    xid: u32,
    time: (String, i64),
    events: Vec<Event>,
}

/// Turns pgoutput messages into events, a transaction at a time.
#[derive(Default)]
pub(crate) struct Decoder {
    relations: HashMap<u32, Relation>,
    /// Primary keys of tables with REPLICA IDENTITY FULL (which flags every column as key).
    pub primary_keys: HashMap<u32, Vec<String>>,
    /// The tables (`schema.name`) whose changes become events; `None`: all.
    pub tables: Option<BTreeSet<String>>,
    open: Option<Open>,
}

impl Decoder {
    /// Takes the message at `lsn`; returns the transaction it ends, if it is a Commit.
    pub fn feed(&mut self, lsn: u64, data: &[u8]) -> Result<Option<Transaction>, String> {
        let message = parse(data)?;
        let (op, rel, before, after, key_from) = match message {
            Message::Begin {
                commit_time: t,
                xid,
                ..
            } => {
                if self.open.is_some() {
                    return Err("a Begin inside a transaction".into());
                }
                self.open = Some(Open {
                    xid,
                    time: commit_time(t),
                    events: Vec::new(),
                });
                return Ok(None);
            }
            Message::Commit { end_lsn, .. } => {
                let open = self.open.take().ok_or("a Commit outside a transaction")?;
                return Ok(Some(Transaction {
                    end_lsn,
                    events: open.events,
                }));
            }
            Message::Relation(r) => {
                self.relations.insert(r.oid, r);
                return Ok(None);
            }
            Message::Origin | Message::Type | Message::Logical => return Ok(None),
            Message::Truncate { rels } => {
                for oid in rels {
                    let rel = self.relation(oid)?;
                    if self.wanted(rel) {
                        let event =
                            self.event(lsn, "truncate", rel, Value::Null, Value::Null, None)?;
                        self.push(event)?;
                    }
                }
                return Ok(None);
            }
            Message::Insert { rel, new } => ("insert", rel, None, Some(new), Side::After),
            Message::Update { rel, old, new } => ("update", rel, old, Some(new), Side::After),
            Message::Delete { rel, old } => ("delete", rel, Some(old), None, Side::Before),
        };
        let relation = self.relation(rel)?;
        if !self.wanted(relation) {
            return Ok(None);
        }
        let before_json = match &before {
            None => Value::Null,
            Some((b'K', t)) => Value::Object(row(relation, t, |c| c.key)?),
            Some((_, t)) => Value::Object(row(relation, t, |_| true)?),
        };
        let after_json = match &after {
            None => Value::Null,
            Some(t) => Value::Object(row(relation, t, |_| true)?),
        };
        let key_tuple = match key_from {
            Side::After => after.as_deref(),
            Side::Before => before.as_ref().map(|(_, t)| t.as_slice()),
        };
        let key = match key_tuple {
            Some(t) => self.key(relation, t)?,
            None => None,
        };
        let event = self.event(lsn, op, relation, before_json, after_json, key)?;
        self.push(event)?;
        Ok(None)
    }

    /// Drops a transaction left open (it is read again, whole, from the slot).
    pub fn abandon(&mut self) {
        self.open = None;
    }

    fn relation(&self, oid: u32) -> Result<&Relation, String> {
        self.relations
            .get(&oid)
            .ok_or_else(|| format!("a change of relation {oid} before its Relation message"))
    }

    fn wanted(&self, rel: &Relation) -> bool {
        self.tables.as_ref().is_none_or(|t| t.contains(&rel.name))
    }

    fn push(&mut self, event: Event) -> Result<(), String> {
        self.open
            .as_mut()
            .ok_or("a change outside a transaction")?
            .events
            .push(event);
        Ok(())
    }

    /// The key of a row: its primary key's columns for REPLICA IDENTITY FULL (when it has
    /// one), else the replica identity's columns; `None` when there are none.
    fn key(&self, rel: &Relation, tuple: &[Datum<'_>]) -> Result<Option<Vec<u8>>, String> {
        let pk = self
            .primary_keys
            .get(&rel.oid)
            .filter(|pk| rel.identity == b'f' && !pk.is_empty());
        let key = match pk {
            Some(pk) => row(rel, tuple, |c| pk.contains(&c.name))?,
            None => row(rel, tuple, |c| c.key)?,
        };
        if key.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::to_vec(&Value::Object(key)).expect("JSON serialises"),
        ))
    }

    fn event(
        &self,
        lsn: u64,
        op: &str,
        rel: &Relation,
        before: Value,
        after: Value,
        key: Option<Vec<u8>>,
    ) -> Result<Event, String> {
        let open = self.open.as_ref().ok_or("a change outside a transaction")?;
        let lsn = lsn_text(lsn);
        let value = json!({
            "op": op,
            "table": rel.name,
            "before": before,
            "after": after,
            "lsn": lsn,
            "commit_time": open.time.0,
            "xid": open.xid,
        });
        let header = |name: &str, value: &str| Header {
            name: name.to_owned(),
            value: value.as_bytes().to_vec(),
        };
        Ok(Event {
            key,
            value: serde_json::to_vec(&value).expect("JSON serialises"),
            timestamp: open.time.1,
            headers: vec![
                header("pg.op", op),
                header("pg.table", &rel.name),
                header("pg.lsn", &lsn),
            ],
        })
    }
}

#[derive(Clone, Copy)]
enum Side {
    Before,
    After,
}

/// The columns of `tuple` that `pick` chooses, as a JSON object (unchanged TOASTed values left
/// out).
fn row(
    rel: &Relation,
    tuple: &[Datum<'_>],
    pick: impl Fn(&RelColumn) -> bool,
) -> Result<Map<String, Value>, String> {
    if tuple.len() != rel.columns.len() {
        return Err(format!(
            "a row of {} with {} columns where its Relation message has {}",
            rel.name,
            tuple.len(),
            rel.columns.len()
        ));
    }
    let mut out = Map::new();
    for (c, d) in rel.columns.iter().zip(tuple) {
        if !pick(c) {
            continue;
        }
        let v = match d {
            Datum::Null => Value::Null,
            Datum::Unchanged => continue,
            Datum::Text(t) => typed(c.type_oid, t),
            Datum::Binary(b) => Value::String(hex::encode(b)),
        };
        out.insert(c.name.clone(), v);
    }
    Ok(out)
}

/// Type OIDs (`pg_type`) of the built-in types that become JSON other than strings.
mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const JSONB: u32 = 3802;
}

/// A column's text (as PostgreSQL's output function writes it) as JSON, by its type.
fn typed(type_oid: u32, text: &[u8]) -> Value {
    let s = String::from_utf8_lossy(text);
    let string = || Value::String(s.clone().into_owned());
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 => {
            s.parse::<i64>().map_or_else(|_| string(), Value::from)
        }
        oid::OID => s.parse::<u64>().map_or_else(|_| string(), Value::from),
        oid::FLOAT4 | oid::FLOAT8 => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(string, Value::Number),
        oid::BOOL => match &*s {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => string(),
        },
        oid::JSON | oid::JSONB => serde_json::from_slice(text).unwrap_or_else(|_| string()),
        // numeric stays text: exact, whatever its precision.
        _ => string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds pgoutput messages as the server writes them.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn new(kind: u8) -> Msg {
            Msg(vec![kind])
        }
        fn u8(mut self, v: u8) -> Msg {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Msg {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Msg {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Msg {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Msg {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        /// A tuple: `None` is NULL, `Some("\u{0}u")` unchanged TOAST, else text.
        fn tuple(mut self, cols: &[Option<&str>]) -> Msg {
            self = self.u16(cols.len() as u16);
            for c in cols {
                self = match c {
                    None => self.u8(b'n'),
                    Some("\u{0}u") => self.u8(b'u'),
                    Some(t) => {
                        let m = self.u8(b't').u32(t.len() as u32);
                        let mut m = m;
                        m.0.extend(t.as_bytes());
                        m
                    }
                };
            }
            self
        }
    }

    /// `public.t (id int4 key, n numeric, doc jsonb, ok bool, f float8, body text, big int8)`.
    fn relation(oid: u32, identity: u8) -> Vec<u8> {
        relation_with(oid, identity, false)
    }

    /// [`relation`], every column flagged as key if `all_key` (REPLICA IDENTITY FULL).
    fn relation_with(oid: u32, identity: u8, all_key: bool) -> Vec<u8> {
        let cols: [(u8, &str, u32); 7] = [
            (1, "id", 23),
            (0, "n", 1700),
            (0, "doc", 3802),
            (0, "ok", 16),
            (0, "f", 701),
            (0, "body", 25),
            (0, "big", 20),
        ];
        let mut m = Msg::new(b'R')
            .u32(oid)
            .s("public")
            .s("t")
            .u8(identity)
            .u16(cols.len() as u16);
        for (flags, name, ty) in cols {
            m = m
                .u8(flags | u8::from(all_key))
                .s(name)
                .u32(ty)
                .u32(u32::MAX);
        }
        m.0
    }

    fn begin(xid: u32) -> Vec<u8> {
        // 2024-01-02T03:04:05.000006Z in PostgreSQL's microseconds since 2000.
        let t = 1_704_164_645_000_006i64 - PG_EPOCH_US;
        Msg::new(b'B').u64(0x100).u64(t as u64).u32(xid).0
    }

    fn commit(end: u64) -> Vec<u8> {
        Msg::new(b'C').u8(0).u64(end - 8).u64(end).u64(0).0
    }

    fn value(e: &Event) -> Value {
        serde_json::from_slice(&e.value).unwrap()
    }

    fn key(e: &Event) -> Option<Value> {
        e.key.as_ref().map(|k| serde_json::from_slice(k).unwrap())
    }

    const ROW: [Option<&str>; 7] = [
        Some("7"),
        Some("12345678901234567890.000000001"),
        Some(r#"{"a": [1, 2], "b": "x"}"#),
        Some("t"),
        Some("1.5"),
        Some("it's \"quoted\"\nünïcødé"),
        None,
    ];

    fn feed_all(d: &mut Decoder, messages: &[Vec<u8>]) -> Vec<Transaction> {
        messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| d.feed(0x1000 + i as u64, m).unwrap())
            .collect()
    }

    #[test]
    fn an_insert_is_an_event_with_typed_columns_its_key_and_commit_time() {
        let mut d = Decoder::default();
        let txs = feed_all(
            &mut d,
            &[
                begin(42),
                relation(16384, b'd'),
                Msg::new(b'I').u32(16384).u8(b'N').tuple(&ROW).0,
                commit(0x2000),
            ],
        );
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].end_lsn, 0x2000);
        let e = &txs[0].events[0];
        assert_eq!(key(e), Some(json!({"id": 7})));
        assert_eq!(
            e.value,
            serde_json::to_vec(&json!({
                "op": "insert",
                "table": "public.t",
                "before": null,
                "after": {
                    "id": 7,
                    "n": "12345678901234567890.000000001",
                    "doc": {"a": [1, 2], "b": "x"},
                    "ok": true,
                    "f": 1.5,
                    "body": "it's \"quoted\"\nünïcødé",
                    "big": null,
                },
                "lsn": "0/1002",
                "commit_time": "2024-01-02T03:04:05.000006Z",
                "xid": 42,
            }))
            .unwrap(),
            "fields in this order"
        );
        assert_eq!(e.timestamp, 1_704_164_645_000);
        let headers: Vec<(&str, &[u8])> = e
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect();
        assert_eq!(
            headers,
            [
                ("pg.op", &b"insert"[..]),
                ("pg.table", b"public.t"),
                ("pg.lsn", b"0/1002")
            ]
        );
    }

    #[test]
    fn updates_and_deletes_carry_what_the_replica_identity_sends() {
        let mut d = Decoder::default();
        let mut changed = ROW;
        changed[5] = Some("\u{0}u"); // TOASTed and untouched: left out
        changed[4] = Some("NaN");
        let key_only = [Some("7"), None, None, None, None, None, None];
        let txs = feed_all(
            &mut d,
            &[
                begin(43),
                relation(16384, b'd'),
                // An update that kept its key: no old tuple.
                Msg::new(b'U').u32(16384).u8(b'N').tuple(&changed).0,
                // An update that changed its key from 6: the old key.
                Msg::new(b'U')
                    .u32(16384)
                    .u8(b'K')
                    .tuple(&[Some("6"), None, None, None, None, None, None])
                    .u8(b'N')
                    .tuple(&ROW)
                    .0,
                Msg::new(b'D').u32(16384).u8(b'K').tuple(&key_only).0,
                commit(0x3000),
            ],
        );
        let ev = &txs[0].events;
        assert_eq!(ev.len(), 3);
        let v0 = value(&ev[0]);
        assert_eq!(v0["op"], "update");
        assert_eq!(v0["before"], Value::Null);
        assert_eq!(v0["after"]["f"], "NaN");
        assert!(v0["after"].get("body").is_none(), "{v0}");
        assert_eq!(key(&ev[0]), Some(json!({"id": 7})));
        let v1 = value(&ev[1]);
        assert_eq!(v1["before"], json!({"id": 6}));
        assert_eq!(v1["after"]["id"], 7);
        assert_eq!(key(&ev[1]), Some(json!({"id": 7})), "the new key");
        let v2 = value(&ev[2]);
        assert_eq!(v2["op"], "delete");
        assert_eq!(v2["before"], json!({"id": 7}));
        assert_eq!(v2["after"], Value::Null);
        assert_eq!(key(&ev[2]), Some(json!({"id": 7})));
    }

    #[test]
    fn replica_identity_full_sends_the_old_row_keyed_by_the_primary_key() {
        let mut d = Decoder::default();
        // FULL flags every column as key.
        let r = relation_with(5, b'f', true);
        let delete = Msg::new(b'D').u32(5).u8(b'O').tuple(&ROW).0;
        let txs = feed_all(&mut d, &[begin(1), r.clone(), delete.clone(), commit(0x10)]);
        let e = &txs[0].events[0];
        assert_eq!(value(e)["before"]["body"], "it's \"quoted\"\nünïcødé");
        assert_eq!(
            key(e).unwrap().as_object().unwrap().len(),
            7,
            "no primary key: every column"
        );

        let mut d = Decoder::default();
        d.primary_keys.insert(5, vec!["id".into()]);
        let txs = feed_all(&mut d, &[begin(1), r, delete, commit(0x10)]);
        assert_eq!(key(&txs[0].events[0]), Some(json!({"id": 7})));
    }

    #[test]
    fn a_table_without_key_columns_gives_events_without_key() {
        let mut d = Decoder::default();
        let r = Msg::new(b'R')
            .u32(9)
            .s("")
            .s("log")
            .u8(b'd')
            .u16(1)
            .u8(0)
            .s("line")
            .u32(25)
            .u32(u32::MAX)
            .0;
        let txs = feed_all(
            &mut d,
            &[
                begin(2),
                r,
                Msg::new(b'I').u32(9).u8(b'N').tuple(&[Some("x")]).0,
                commit(0x20),
            ],
        );
        let e = &txs[0].events[0];
        assert_eq!(e.key, None);
        assert_eq!(value(e)["table"], "pg_catalog.log");
    }

    #[test]
    fn truncate_is_an_event_per_wanted_table_and_other_tables_are_left_out() {
        let mut d = Decoder {
            tables: Some(["public.t".to_owned()].into()),
            ..Decoder::default()
        };
        let other = Msg::new(b'R')
            .u32(8)
            .s("public")
            .s("other")
            .u8(b'd')
            .u16(1)
            .u8(1)
            .s("id")
            .u32(23)
            .u32(u32::MAX)
            .0;
        let txs = feed_all(
            &mut d,
            &[
                begin(3),
                relation(16384, b'd'),
                other,
                Msg::new(b'I').u32(8).u8(b'N').tuple(&[Some("1")]).0,
                Msg::new(b'T').u32(2).u8(0).u32(16384).u32(8).0,
                Msg::new(b'Y').u32(99).s("public").s("mood").0,
                Msg::new(b'O').u64(5).s("elsewhere").0,
                commit(0x30),
                // An empty transaction still ends (its position counts).
                begin(4),
                commit(0x40),
            ],
        );
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[0].events.len(), 1);
        let v = value(&txs[0].events[0]);
        assert_eq!(v["op"], "truncate");
        assert_eq!(v["table"], "public.t");
        assert_eq!(txs[0].events[0].key, None);
        assert!(txs[1].events.is_empty());
        assert_eq!(txs[1].end_lsn, 0x40);
    }

    #[test]
    fn malformed_messages_are_errors_that_say_what_is_wrong() {
        let mut d = Decoder::default();
        let insert = Msg::new(b'I').u32(16384).u8(b'N').tuple(&ROW).0;
        assert!(
            d.feed(1, &insert)
                .unwrap_err()
                .contains("outside a transaction")
                || d.feed(1, &insert).unwrap_err().contains("Relation message")
        );
        d.feed(2, &begin(1)).unwrap();
        assert!(
            d.feed(3, &insert)
                .unwrap_err()
                .contains("before its Relation message")
        );
        d.feed(4, &relation(16384, b'd')).unwrap();
        let cut = &insert[..insert.len() - 3];
        assert!(d.feed(5, cut).unwrap_err().contains("more were due"));
        let short = Msg::new(b'I').u32(16384).u8(b'N').tuple(&[Some("1")]).0;
        assert!(d.feed(6, &short).unwrap_err().contains("1 columns where"));
        assert!(
            d.feed(7, b"Z")
                .unwrap_err()
                .contains("unknown message type")
        );
        assert!(
            d.feed(8, b"S\0\0\0\x01\x01")
                .unwrap_err()
                .contains("streamed")
        );
        assert!(d.feed(9, &begin(2)).unwrap_err().contains("Begin inside"));
        d.abandon();
        d.feed(10, &begin(2)).unwrap();
    }

    #[test]
    fn lsns_and_times_are_written_as_postgresql_writes_them() {
        assert_eq!(lsn_text(0x1_6B37_4D48), "1/6B374D48");
        assert_eq!(lsn_text(0), "0/0");
        assert_eq!(
            commit_time(0),
            ("2000-01-01T00:00:00.000000Z".into(), 946_684_800_000)
        );
        assert_eq!(typed(oid::INT8, b"-9223372036854775808"), json!(i64::MIN));
        assert_eq!(typed(oid::OID, b"4294967295"), json!(4_294_967_295u64));
        assert_eq!(typed(oid::FLOAT4, b"-Infinity"), json!("-Infinity"));
        assert_eq!(
            typed(oid::JSON, b"[1, {\"a\": null}]"),
            json!([1, {"a": null}])
        );
        assert_eq!(typed(1700, b"1.10"), json!("1.10"));
        assert_eq!(
            typed(1184, b"2024-01-02 03:04:05+00"),
            json!("2024-01-02 03:04:05+00")
        );
    }
}
