//! The PostgreSQL sink: a batch of the input's events becomes rows of a table in one
//! transaction that also moves the sink's input positions in `flowgate_sink_positions`.
//!
//! Rows go in with `COPY ... FROM STDIN` in text format (values are data, never SQL; names are
//! quoted): straight into the table for `mode = "insert"`, into a temporary staging table and
//! then one `INSERT ... SELECT DISTINCT ON (...) ... ON CONFLICT ... DO UPDATE` for
//! `mode = "upsert"` (the last event of a key in a batch wins). A row the database refuses is
//! found (the `COPY` error names its line; else the batch is halved until it is alone), sent to
//! the dead-letter topic with the database's error, and the batch is written without it.

use std::io::Write;
use std::time::{Duration, Instant};

use postgres::{Client, Transaction};
use serde_json::Value;

use super::{
    Column, Error, FIRST_BACKOFF, MAX_BACKOFF, columns, connect, describe, missing_columns,
    quote_ident, quote_table,
};
use crate::config::{FieldSource, PostgresMode, PostgresSink};
use crate::connect::SinkCtx;
use crate::connect::common::{
    Batch, Fields, Gather, Refused, Row, Written, back_off, dead_letter, dead_target, log_id,
};
use crate::flow::producer::Target;

/// The table in which each PostgreSQL sink keeps its input positions, one row per sink.
pub const POSITIONS_TABLE: &str = "flowgate_sink_positions";
/// The staging table of an upserting sink (temporary: one per connection).
const STAGING: &str = "flowgate_staging";
/// The staging table's column giving each row's place in its batch.
const SEQ: &str = "flowgate seq";

/// The sink's positions as the database holds them.
struct Saved {
    positions: Vec<u64>,
}

/// How a column's value is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// As text (PostgreSQL parses it by the column's type).
    Text,
    /// A number is milliseconds since 1970, written as an RFC 3339 time.
    Time,
}

/// The SQL of one connection's writes.
struct Sql {
    /// `COPY ... FROM STDIN`.
    copy: String,
    /// Upsert: `TRUNCATE` of the staging table, and the merge into the table.
    upsert: Option<(String, String)>,
}

/// One connection to the database and what the sink writes through it.
struct Writer<'a> {
    ctx: &'a SinkCtx,
    cfg: &'a PostgresSink,
    client: Client,
    sql: Sql,
    cells: Vec<Cell>,
    /// The log the sink reads (see `log_id`).
    log: String,
}

/// Runs the sink until the pipeline stops (or, bounded, its input is done).
pub(crate) fn run(ctx: &SinkCtx, cfg: &PostgresSink) -> Result<(), Error> {
    let name = &ctx.config.name;
    let url = cfg.url.resolve().map_err(Error::Url)?;
    let dead = dead_target(ctx, &cfg.dead_letter_topic)?;
    let log = log_id(ctx)?;
    let mut writer = match Writer::open(ctx, cfg, &url, &log)? {
        Some(w) => w,
        None => return Ok(()),
    };
    let saved = writer.saved()?;
    let mut gather = Gather::open(ctx, None, cfg.batch_size, cfg.linger)?;
    let mut expected = match saved {
        Some(s) => {
            gather.rewind(ctx, &s.positions)?;
            s.positions
        }
        None => {
            // No position before the first checkpoint means "everything is mine": the first
            // positions are written before the first row.
            let p = gather.positions();
            writer.first_positions(&p)?;
            p
        }
    };
    let mut written = Written::new(ctx);
    let mut maker = Maker {
        cfg,
        cells: writer.cells.clone(),
        input: &ctx.config.input,
        upsert: writer.sql.upsert.is_some(),
    };
    // Two threads: this one reads the next batch and makes its lines while the writer's
    // thread commits the one before (the database parses and syncs meanwhile). One batch is in
    // the writer's hands at a time; after a failure the next one, made for positions that did
    // not come about, is dropped, and the input is read again from the database's positions.
    loop {
        let (w, end) = pipelined(
            ctx,
            writer,
            &maker,
            &mut gather,
            &mut expected,
            &dead,
            &mut written,
        );
        writer = w;
        match end? {
            End::Done => break,
            End::Moved => {
                tracing::warn!(sink = %name, "the positions in {POSITIONS_TABLE} are not those this sink wrote last (its row was changed or deleted, or another instance of this sink writes to the same database): reading on from the database's positions");
                expected = writer.resume(&mut gather, &expected)?;
            }
            End::Lost(e) if !ctx.ctl.bounded() => {
                tracing::error!(sink = %name, "{e}; reconnecting");
                metrics::counter!("flowgate_db_errors_total", "step" => name.clone()).increment(1);
                writer = match Writer::open(ctx, cfg, &url, &log)? {
                    Some(w) => w,
                    None => return Ok(()),
                };
                // The table's column types as the new connection found them.
                maker.cells.clone_from(&writer.cells);
                maker.upsert = writer.sql.upsert.is_some();
                expected = writer.resume(&mut gather, &expected)?;
            }
            End::Lost(e) => return Err(e),
        }
    }
    tracing::info!(sink = %name, "PostgreSQL sink done: {}", written.summary("rows"));
    Ok(())
}

/// Why a run of [`pipelined`] ended.
enum End {
    /// The input is done, or the sink is to stop.
    Done,
    /// The positions in the database were not those a batch starts at.
    Moved,
    /// The connection failed (trying again later may work).
    Lost(Error),
}

/// Reads and makes batches in this thread and commits them in a writer thread that owns
/// `writer`, one batch ahead, until the input is done or a commit does not go through; gives
/// the writer back with why it ended (an error of the log or a refusal that is not transient
/// as the outer error).
#[allow(
    clippy::too_many_arguments,
    reason = "the sink's state, lent to one run of its two threads"
)]
fn pipelined<'a>(
    ctx: &'a SinkCtx,
    mut writer: Writer<'a>,
    maker: &Maker<'_>,
    gather: &mut Gather,
    expected: &mut Vec<u64>,
    dead: &Target,
    written: &mut Written,
) -> (Writer<'a>, Result<End, Error>) {
    std::thread::scope(|scope| {
        let (jobs, take) = std::sync::mpsc::sync_channel::<Job>(0);
        let (give, results) = std::sync::mpsc::sync_channel::<(Job, Result<Outcome, Error>)>(1);
        let thread = std::thread::Builder::new()
            .name(format!("sink {} writer", ctx.config.name))
            .spawn_scoped(scope, move || {
                for mut job in take {
                    let r = writer.commit(&mut job, dead);
                    if give.send((job, r)).is_err() {
                        break;
                    }
                }
                writer
            })
            .expect("a thread starts");
        let end = (|| -> Result<End, Error> {
            let mut in_flight = false;
            loop {
                let batch = gather.next(ctx)?;
                let last = batch.last;
                let next = (!batch.rows.is_empty()).then(|| maker.job(batch));
                if in_flight {
                    in_flight = false;
                    let (done, r) = results.recv().expect("the writer answers each batch");
                    match r {
                        Ok(Outcome::Written { rows, took }) => {
                            written.batch(ctx, rows, took);
                            *expected = done.batch.positions;
                        }
                        Ok(Outcome::Moved) => return Ok(End::Moved),
                        Err(e) if e.transient() => return Ok(End::Lost(e)),
                        Err(e) => return Err(e),
                    }
                }
                if let Some(mut job) = next {
                    job.expected = expected.clone();
                    jobs.send(job).expect("the writer takes each batch");
                    in_flight = true;
                }
                if last && !in_flight {
                    return Ok(End::Done);
                }
                if last {
                    // The last batch is in the writer's hands: its outcome decides.
                    let (done, r) = results.recv().expect("the writer answers each batch");
                    return match r {
                        Ok(Outcome::Written { rows, took }) => {
                            written.batch(ctx, rows, took);
                            *expected = done.batch.positions;
                            Ok(End::Done)
                        }
                        Ok(Outcome::Moved) => Ok(End::Moved),
                        Err(e) if e.transient() => Ok(End::Lost(e)),
                        Err(e) => Err(e),
                    };
                }
            }
        })();
        drop(jobs);
        // A batch still with the writer (this thread stopped on a log error) is finished first.
        drop(results);
        let writer = thread.join().expect("the writer thread does not panic");
        (writer, end)
    })
}

/// What became of a batch.
enum Outcome {
    /// Committed, with this many rows (the refused ones are dead letters), in this long.
    Written { rows: u64, took: Duration },
    /// Not written: the positions in the database were not those the batch starts at.
    Moved,
}

impl<'a> Writer<'a> {
    /// Connects (retrying while the database is away, unless the run is bounded), makes the
    /// positions table, and checks the table and columns. `None` when the sink stopped first.
    fn open(
        ctx: &'a SinkCtx,
        cfg: &'a PostgresSink,
        url: &str,
        log: &str,
    ) -> Result<Option<Writer<'a>>, Error> {
        let name = &ctx.config.name;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match Writer::try_open(ctx, cfg, url, log) {
                Ok(w) => {
                    metrics::gauge!("flowgate_db_up", "step" => name.clone()).set(1.0);
                    *ctx.stats.down.lock().expect("not poisoned") = None;
                    return Ok(Some(w));
                }
                Err(e) if e.transient() && !ctx.ctl.bounded() => {
                    metrics::gauge!("flowgate_db_up", "step" => name.clone()).set(0.0);
                    *ctx.stats.down.lock().expect("not poisoned") = Some(e.to_string());
                    tracing::error!(sink = %name, "{e}; retrying in {backoff:?}");
                    back_off(&mut backoff, MAX_BACKOFF, || ctx.halted());
                    if ctx.halted() {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_open(
        ctx: &'a SinkCtx,
        cfg: &'a PostgresSink,
        url: &str,
        log: &str,
    ) -> Result<Writer<'a>, Error> {
        let mut client = connect(url)?;
        ensure_positions_table(&mut client)?;
        let have = columns(&mut client, &cfg.table)?.ok_or_else(|| {
            Error::Invalid(format!(
                "table {} does not exist; create it (CREATE TABLE {} (...)) with the columns the sink maps: {}",
                cfg.table,
                quote_table(&cfg.table),
                cfg.columns
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if let Some(problem) = missing_columns(
            &cfg.table,
            cfg.columns.iter().map(|(c, _)| c.as_str()),
            &have,
        ) {
            return Err(Error::Invalid(format!(
                "{problem}; fix `columns` of sink `{}`",
                ctx.config.name
            )));
        }
        let cells = cfg
            .columns
            .iter()
            .map(|(c, _)| cell_kind(&have, c))
            .collect();
        let table = quote_table(&cfg.table);
        let cols = cfg
            .columns
            .iter()
            .map(|(c, _)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match &cfg.mode {
            PostgresMode::Insert => Sql {
                copy: format!("COPY {table} ({cols}) FROM STDIN"),
                upsert: None,
            },
            PostgresMode::Upsert { conflict } => {
                client
                    .batch_execute(&format!(
                        "CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS SELECT {cols} FROM {table} WITH NO DATA; \
                         ALTER TABLE {STAGING} ADD COLUMN IF NOT EXISTS {} bigint",
                        quote_ident(SEQ)
                    ))
                    .map_err(|e| Error::db(format!("cannot make the staging table for {}", cfg.table), e))?;
                let target = conflict
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                let set: Vec<String> = cfg
                    .columns
                    .iter()
                    .filter(|(c, _)| !conflict.contains(c))
                    .map(|(c, _)| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                    .collect();
                let action = if set.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    format!("DO UPDATE SET {}", set.join(", "))
                };
                Sql {
                    copy: format!("COPY {STAGING} ({cols}, {}) FROM STDIN", quote_ident(SEQ)),
                    upsert: Some((
                        format!("TRUNCATE {STAGING}"),
                        format!(
                            "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({target}) {cols} FROM {STAGING} \
                             ORDER BY {target}, {} DESC ON CONFLICT ({target}) {action}",
                            quote_ident(SEQ)
                        ),
                    )),
                }
            }
        };
        Ok(Writer {
            ctx,
            cfg,
            client,
            sql,
            cells,
            log: log.to_owned(),
        })
    }

    /// The positions the database holds for this sink; `None` when it holds none for this log.
    fn saved(&mut self) -> Result<Option<Saved>, Error> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT log, positions FROM {POSITIONS_TABLE} WHERE pipeline = $1 AND sink = $2"
                ),
                &[&self.ctx.pipeline, &self.ctx.config.name],
            )
            .map_err(|e| Error::db(format!("cannot read {POSITIONS_TABLE}"), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let log: String = row.get(0);
        let text: String = row.get(1);
        let positions: Vec<u64> = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "the positions of sink `{}` in {POSITIONS_TABLE} are not readable ({e}): {text:?}; delete that row to write the input from its start again",
                self.ctx.config.name
            ))
        })?;
        if log != self.log {
            tracing::warn!(sink = %self.ctx.config.name, "the positions in {POSITIONS_TABLE} are of another log (the data directory was made anew): starting at the sink's `start`");
            return Ok(None);
        }
        if positions.len() != self.ctx.partitions as usize {
            return Err(Error::Invalid(format!(
                "the positions of sink `{}` in {POSITIONS_TABLE} are for {} input partitions, and its input `{}` has {}; delete that row to write the input from its start again",
                self.ctx.config.name,
                positions.len(),
                self.ctx.config.input,
                self.ctx.partitions
            )));
        }
        Ok(Some(Saved { positions }))
    }

    /// Writes the first positions of this sink (for this log).
    fn first_positions(&mut self, positions: &[u64]) -> Result<(), Error> {
        let text = serde_json::to_string(positions).expect("serialises");
        self.client
            .execute(
                &format!(
                    "INSERT INTO {POSITIONS_TABLE} (pipeline, sink, log, positions) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (pipeline, sink) DO UPDATE SET log = EXCLUDED.log, positions = EXCLUDED.positions, updated_at = now()"
                ),
                &[&self.ctx.pipeline, &self.ctx.config.name, &self.log, &text],
            )
            .map_err(|e| Error::db(format!("cannot write {POSITIONS_TABLE}"), e))?;
        Ok(())
    }

    /// After a reconnection (or positions that moved): the input is read on from the positions
    /// the database holds, which are the expected ones from now on.
    /// Without positions there (the row was deleted, or is another log's), the input is read
    /// again from `from`, where the batch that did not go through started.
    fn resume(&mut self, gather: &mut Gather, from: &[u64]) -> Result<Vec<u64>, Error> {
        let positions = match self.saved()? {
            Some(s) => s.positions,
            None => {
                self.first_positions(from)?;
                from.to_vec()
            }
        };
        gather.rewind(self.ctx, &positions)?;
        Ok(positions)
    }

    /// Writes a prepared batch in one transaction with its end positions, if the database's
    /// positions are still the job's `expected`; refused rows go to `dead` before the commit (a
    /// crash in between dead-letters them again: twice rather than never).
    fn commit(&mut self, job: &mut Job, dead: &Target) -> Result<Outcome, Error> {
        let started = Instant::now();
        let table = &self.cfg.table;
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| Error::db("cannot begin a transaction", e))?;
        // A deferred constraint would refuse the whole batch at COMMIT, naming no row: checked
        // at each statement instead, it refuses the row that breaks it.
        tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .map_err(|e| Error::db("cannot begin a transaction", e))?;
        let moved = tx
            .execute(
                &format!(
                    "UPDATE {POSITIONS_TABLE} SET positions = $4, updated_at = now() \
                     WHERE pipeline = $1 AND sink = $2 AND log = $3 AND positions = $5"
                ),
                &[
                    &self.ctx.pipeline,
                    &self.ctx.config.name,
                    &self.log,
                    &serde_json::to_string(&job.batch.positions).expect("serialises"),
                    &serde_json::to_string(&job.expected).expect("serialises"),
                ],
            )
            .map_err(|e| Error::db(format!("cannot write {POSITIONS_TABLE}"), e))?;
        if moved != 1 {
            return Ok(Outcome::Moved);
        }
        let rows_err = |e| Error::db(format!("cannot write rows into {table}"), e);
        let lines = &mut job.lines;
        tx.batch_execute("SAVEPOINT flowgate").map_err(rows_err)?;
        let loaded = (|| {
            if let Some((truncate, _)) = &self.sql.upsert {
                tx.batch_execute(truncate)?;
            }
            let mut w = tx.copy_in(&self.sql.copy)?;
            // A write the server stopped (it refused the copy): `finish` says why.
            let _ = w.write_all(&lines.buf);
            w.finish()?;
            if let Some((_, merge)) = &self.sql.upsert {
                tx.batch_execute(merge)?;
            }
            Ok(())
        })();
        let failed = match loaded {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT flowgate")
                    .map_err(rows_err)?;
                Vec::new()
            }
            Err(e) if !super::refuses_a_row(&e) => return Err(rows_err(e)),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT flowgate")
                    .map_err(rows_err)?;
                let mut failed = Vec::new();
                if let Some(l) = copy_line(&e).filter(|l| (1..=lines.rows.len()).contains(l)) {
                    let (i, _) = lines.rows.remove(l - 1);
                    failed.push((i, describe(&e)));
                }
                failed.extend(put(&mut tx, &self.sql, lines).map_err(rows_err)?);
                failed
            }
        };
        let batch = &job.batch;
        let mut refused = std::mem::take(&mut job.refused);
        let written = (batch.rows.len() - refused.len() - failed.len()) as u64;
        refused.extend(failed.into_iter().map(|(i, why)| {
            (
                i,
                "refused",
                format!("PostgreSQL refused the row for table {table}: {why}"),
            )
        }));
        if !refused.is_empty() {
            let rows = refused
                .into_iter()
                .map(|(i, kind, why)| Refused {
                    row: batch.rows[i].clone(),
                    kind,
                    why,
                })
                .collect();
            dead_letter(self.ctx, dead, rows)?;
        }
        tx.commit()
            .map_err(|e| Error::db(format!("cannot commit rows into {table}"), e))?;
        Ok(Outcome::Written {
            rows: written,
            took: started.elapsed(),
        })
    }
}

/// A batch made ready for its transaction: its `COPY` text, and the rows that have none.
struct Job {
    batch: Batch,
    lines: Lines,
    /// Rows with no line: their index in the batch, and why.
    refused: Vec<(usize, &'static str, String)>,
    /// The positions the database must hold for this batch to be written (those it starts at).
    expected: Vec<u64>,
}

/// What makes a batch's lines (read by the sink's thread while its writer commits the batch
/// before).
struct Maker<'a> {
    cfg: &'a PostgresSink,
    cells: Vec<Cell>,
    input: &'a str,
    upsert: bool,
}

impl Maker<'_> {
    fn job(&self, batch: Batch) -> Job {
        let mut refused = Vec::new();
        let mut lines = Lines {
            buf: Vec::with_capacity(batch.rows.iter().map(|r| r.event.value.len() + 64).sum()),
            rows: Vec::with_capacity(batch.rows.len()),
        };
        for (i, row) in batch.rows.iter().enumerate() {
            let start = lines.buf.len();
            let seq = self.upsert.then_some(i);
            match line(self.cfg, &self.cells, self.input, row, seq, &mut lines.buf) {
                Ok(()) => lines.rows.push((i, start..lines.buf.len())),
                Err(why) => {
                    lines.buf.truncate(start);
                    refused.push((i, "format", why));
                }
            }
        }
        Job {
            batch,
            lines,
            refused,
            expected: Vec::new(),
        }
    }
}

/// Makes the positions table if it is not there (two sinks starting at once may race to make
/// it: the loser finds it made).
fn ensure_positions_table(client: &mut Client) -> Result<(), Error> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (\
         pipeline text NOT NULL, sink text NOT NULL, log text NOT NULL, positions text NOT NULL, \
         updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, sink))"
    );
    match client.batch_execute(&sql) {
        Ok(()) => Ok(()),
        Err(e)
            if e.code().is_some_and(|c| {
                *c == postgres::error::SqlState::UNIQUE_VIOLATION
                    || *c == postgres::error::SqlState::DUPLICATE_TABLE
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::db(format!("cannot make table {POSITIONS_TABLE}"), e)),
    }
}

/// How a value for column `name` is written, by its type.
fn cell_kind(have: &[Column], name: &str) -> Cell {
    match have.iter().find(|c| c.name == name) {
        Some(c) if c.ty.starts_with("timestamp") => Cell::Time,
        _ => Cell::Text,
    }
}

/// A batch's `COPY` text: every line in one buffer, and each line's row and place in it.
struct Lines {
    buf: Vec<u8>,
    rows: Vec<(usize, std::ops::Range<usize>)>,
}

/// Appends the `COPY` text line of `row` (with its place `seq` in the batch, for the staging
/// table) to `out`; an error saying why the row has no such line (`out` may then hold part of
/// it).
fn line(
    cfg: &PostgresSink,
    cells: &[Cell],
    input: &str,
    row: &Row,
    seq: Option<usize>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut fields = Fields::new(input, row);
    for (i, ((column, source), cell)) in cfg.columns.iter().zip(cells).enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        let v = fields.get(source)?;
        if v.is_null()
            && let PostgresMode::Upsert { conflict } = &cfg.mode
            && conflict.contains(column)
        {
            // `DISTINCT ON` would take every such row for one key, and keep one of them.
            return Err(format!(
                "column `{column}` is in the upsert's `conflict` key and {source} is missing or null: a row without its whole key cannot be merged"
            ));
        }
        write_cell(out, &v, *cell, source).map_err(|why| format!("column `{column}`: {why}"))?;
    }
    if let Some(s) = seq {
        out.push(b'\t');
        out.extend_from_slice(s.to_string().as_bytes());
    }
    out.push(b'\n');
    Ok(())
}

/// Writes `v` as one cell of a `COPY` text line.
fn write_cell(
    out: &mut Vec<u8>,
    v: &Value,
    cell: Cell,
    source: &FieldSource,
) -> Result<(), String> {
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::String(s) => escape(out, s, source)?,
        Value::Number(n) if cell == Cell::Time => match n.as_i64() {
            Some(ms) => {
                let t = std::time::UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms.max(0) as u64))
                    .ok_or_else(|| format!("{ms} ms is not a time"))?;
                out.extend_from_slice(humantime::format_rfc3339_millis(t).to_string().as_bytes());
            }
            None => escape(out, &n.to_string(), source)?,
        },
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Array(_) | Value::Object(_) => escape(out, &v.to_string(), source)?,
    }
    Ok(())
}

/// `s` escaped for `COPY` text format.
fn escape(out: &mut Vec<u8>, s: &str, source: &FieldSource) -> Result<(), String> {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => {
                return Err(format!(
                    "{source} holds a NUL character (\\u0000), which PostgreSQL cannot store in text"
                ));
            }
            _ => out.push(b),
        }
    }
    Ok(())
}

/// Loads `lines` in the open transaction: returns the refused ones (index and the database's
/// error), having written the others. A refused `COPY` names the line it stopped at, which is
/// taken out; any other refusal halves the set until the refused row is alone. Each try is
/// under a savepoint, so a refusal undoes only that try.
fn put(
    tx: &mut Transaction<'_>,
    sql: &Sql,
    lines: &Lines,
) -> Result<Vec<(usize, String)>, postgres::Error> {
    let mut refused = Vec::new();
    let mut work: Vec<Vec<&(usize, std::ops::Range<usize>)>> = vec![lines.rows.iter().collect()];
    while let Some(mut set) = work.pop() {
        if set.is_empty() {
            continue;
        }
        tx.batch_execute("SAVEPOINT flowgate")?;
        match load(tx, sql, lines, &set) {
            Ok(()) => tx.batch_execute("RELEASE SAVEPOINT flowgate")?,
            Err(e) if !super::refuses_a_row(&e) => return Err(e),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT flowgate")?;
                if set.len() == 1 {
                    refused.push((set[0].0, describe(&e)));
                } else if let Some(line) = copy_line(&e).filter(|l| (1..=set.len()).contains(l)) {
                    let bad = set.remove(line - 1);
                    refused.push((bad.0, describe(&e)));
                    work.push(set);
                } else {
                    let right = set.split_off(set.len() / 2);
                    work.push(right);
                    work.push(set);
                }
            }
        }
    }
    refused.sort_unstable_by_key(|(i, _)| *i);
    Ok(refused)
}

/// One try: `COPY` the lines `set` of `lines` (into the table, or into the staging table and
/// merged).
fn load(
    tx: &mut Transaction<'_>,
    sql: &Sql,
    lines: &Lines,
    set: &[&(usize, std::ops::Range<usize>)],
) -> Result<(), postgres::Error> {
    if let Some((truncate, _)) = &sql.upsert {
        tx.batch_execute(truncate)?;
    }
    let mut some = Vec::with_capacity(set.iter().map(|(_, r)| r.len()).sum());
    for (_, r) in set {
        some.extend_from_slice(&lines.buf[r.clone()]);
    }
    let mut w = tx.copy_in(&sql.copy)?;
    // A write the server stopped (it refused the copy): `finish` says why.
    let _ = w.write_all(&some);
    w.finish()?;
    if let Some((_, merge)) = &sql.upsert {
        tx.batch_execute(merge)?;
    }
    Ok(())
}

/// The line of a `COPY` error's context (`COPY t, line 3, column c: ...`), counted from 1.
fn copy_line(e: &postgres::Error) -> Option<usize> {
    let at = e.as_db_error()?.where_()?;
    let rest = &at[at.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DbUrl, FieldSource};
    use crate::event::{Event, Header};

    fn cfg(columns: &[(&str, FieldSource)]) -> PostgresSink {
        PostgresSink {
            url: DbUrl::Literal(String::new()),
            table: "t".into(),
            columns: columns
                .iter()
                .map(|(c, s)| ((*c).to_owned(), s.clone()))
                .collect(),
            mode: PostgresMode::Insert,
            batch_size: 10,
            linger: Duration::ZERO,
            dead_letter_topic: "dead".into(),
        }
    }

    /// The line of `r` read from input `in`.
    fn text(
        c: &PostgresSink,
        cells: &[Cell],
        r: &Row,
        seq: Option<usize>,
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        line(c, cells, "in", r, seq, &mut out).map(|()| out)
    }

    fn row(value: &str) -> Row {
        Row {
            at: (2, 7),
            event: Event {
                key: Some(b"k1".to_vec()),
                value: value.as_bytes().to_vec(),
                timestamp: 1_700_000_000_123,
                headers: vec![Header {
                    name: "src".into(),
                    value: b"web".to_vec(),
                }],
            },
        }
    }

    #[test]
    fn a_row_is_a_copy_line_with_each_value_escaped() {
        let c = cfg(&[
            ("id", FieldSource::Value(vec!["id".into()])),
            ("name", FieldSource::Value(vec!["name".into()])),
            ("body", FieldSource::Value(vec![])),
            ("k", FieldSource::Key),
            ("at", FieldSource::Timestamp),
            ("ts", FieldSource::Timestamp),
            ("src", FieldSource::Header("src".into())),
            ("gone", FieldSource::Value(vec!["nope".into()])),
            ("pos", FieldSource::Position),
        ]);
        let cells = [
            Cell::Text,
            Cell::Text,
            Cell::Text,
            Cell::Text,
            Cell::Text,
            Cell::Time,
            Cell::Text,
            Cell::Text,
            Cell::Text,
        ];
        let r = row(r#"{"id":1,"name":"a\tb\\c'); DROP TABLE t; --\n"}"#);
        let got = String::from_utf8(text(&c, &cells, &r, None).unwrap()).unwrap();
        assert_eq!(
            got,
            "1\ta\\tb\\\\c'); DROP TABLE t; --\\n\t{\"id\":1,\"name\":\"a\\\\tb\\\\\\\\c'); DROP TABLE t; --\\\\n\"}\tk1\t1700000000123\t2023-11-14T22:13:20.123Z\tweb\t\\N\t{\"topic\":\"in\",\"partition\":2,\"offset\":7}\n"
        );
        let got = String::from_utf8(text(&c, &cells, &r, Some(4)).unwrap()).unwrap();
        assert!(got.ends_with("\t4\n"), "{got}");
    }

    #[test]
    fn an_upsert_row_without_its_whole_key_is_refused() {
        let mut c = cfg(&[
            ("id", FieldSource::Value(vec!["id".into()])),
            ("name", FieldSource::Value(vec!["name".into()])),
        ]);
        c.mode = PostgresMode::Upsert {
            conflict: vec!["id".into()],
        };
        let cells = [Cell::Text, Cell::Text];
        assert_eq!(
            text(&c, &cells, &row(r#"{"name":"a"}"#), Some(0)).unwrap_err(),
            "column `id` is in the upsert's `conflict` key and value.id is missing or null: a row without its whole key cannot be merged"
        );
        // A NULL outside the key is a NULL.
        assert_eq!(
            text(&c, &cells, &row(r#"{"id":1}"#), Some(0)).unwrap(),
            b"1\t\\N\t0\n"
        );
    }

    #[test]
    fn a_row_without_a_value_for_a_column_says_why() {
        let c = cfg(&[("name", FieldSource::Value(vec!["name".into()]))]);
        assert_eq!(
            text(&c, &[Cell::Text], &row(r#"{"name":"a\u0000b"}"#), None).unwrap_err(),
            "column `name`: value.name holds a NUL character (\\u0000), which PostgreSQL cannot store in text"
        );
        let e = text(&c, &[Cell::Text], &row("not json"), None).unwrap_err();
        assert!(e.starts_with("the event's value is not JSON"), "{e}");
    }
}
