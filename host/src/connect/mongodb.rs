//! The MongoDB sink: each event of the input becomes a document of a collection, written in
//! batches through the `mongodb` crate's synchronous client.
//!
//! **Exactly-once by idempotence.** Every document has an `_id` that a replay of its event gives
//! again: the value of the sink's `id` source, else the event's coordinates (the Kafka record's
//! `kafka:<topic>/<partition>/<offset>` when the event came from a Kafka source, else its place
//! in the sink's input with the log's id, `<log id>:<input topic>/<partition>/<offset>`). The
//! sink checkpoints its input
//! positions in the log after each written batch; after a crash it reads on from the last
//! checkpoint, and what it writes again lands on the same `_id`s: `mode = "insert"` finds them
//! there (MongoDB's duplicate-key error 11000, counted as written) and `mode = "replace"`
//! replaces them with the same document. A first checkpoint is saved before the first write.
//!
//! **Bad documents are dead letters** (kind `format`: no document can be made of the event, it
//! is not a JSON object, it has no `id`, a field name holds a NUL character, it is over 16 MiB of
//! BSON; kind `refused`: the server refused it, with the server's message); the rest of their
//! batch is written. A batch the server refuses as a whole for a reason that is not the sink's
//! settings is written one document at a time, so that only the refused documents are left out.
//!
//! **Outages are waited out**: a network error, no server to select, a server shutting down or
//! not primary: the sink marks itself down (`flowgate_db_up{step}` 0, `flowgate status`), backs
//! off, and writes the same batch again. A bounded run fails instead when the server cannot be
//! reached at its start, or stays away for [`BOUNDED_OUTAGE`].

use std::time::{Duration, Instant};

use ::mongodb::bson::{Bson, DateTime, Decimal128, Document, doc};
use ::mongodb::error::{ErrorKind, IndexedWriteError, WriteFailure};
use ::mongodb::options::ClientOptions;
use ::mongodb::sync::{Client, Collection, Database};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{FieldSource, MongoMode, MongoSink, redact_url};
use crate::connect::SinkCtx;
use crate::connect::common::{
    Fields, Gather, Refused, Row, Written, back_off, dead_letter, dead_target, log_id,
};
use crate::connect::kafka::{OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER};
use crate::log::LogError;

/// MongoDB's largest document (`maxBsonObjectSize`).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Most statements in one `update` command of a replacing sink. FerretDB (the wire-compatible
/// server the tests run against) keeps a backend connection per statement until the command
/// ends, from a pool of 50 by default: a command of 50 statements or more never returns, and
/// nothing after it does either. MongoDB takes 100,000; the cost of staying under FerretDB's
/// limit is a round trip per 40 documents.
const UPDATE_STATEMENTS: usize = 40;
/// Most bytes of documents in one `update` command (a command is one BSON document, at most
/// 16 MiB and a little more).
const UPDATE_BYTES: usize = 12 * 1024 * 1024;
/// How long choosing a server may take before a write counts as failed (unless the URL sets
/// `serverSelectionTimeoutMS`).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take (unless the URL sets `connectTimeoutMS`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed write; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// See [`FIRST_BACKOFF`].
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a bounded run waits for a server that went away after the run reached it.
pub const BOUNDED_OUTAGE: Duration = Duration::from_secs(60);
/// MongoDB's duplicate-key error: the document is there already.
const DUPLICATE_KEY: i32 = 11000;
/// Server error codes of a server away or busy for now: host unreachable or not found, network
/// timeout, shutdown in progress, primary stepped down, time limit exceeded, socket exception,
/// not writable primary (and its older codes), interrupted at shutdown or by a replica set
/// change, not primary or secondary, read concern majority not yet available.
const TRANSIENT_CODES: [i32; 15] = [
    6, 7, 89, 91, 189, 262, 9001, 10107, 13435, 10058, 11600, 11602, 13436, 134, 63,
];
/// Server error codes that are about the sink's settings, never about a document:
/// unauthorized, authentication failed, user not found, invalid namespace, command not
/// supported on a view, Atlas' own errors.
const SETTINGS_CODES: [i32; 6] = [13, 18, 11, 73, 166, 8000];

/// What went wrong in a MongoDB sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is missing or not one.
    #[error("{0}")]
    Url(String),
    /// A request to the server failed.
    #[error("{what}: {}", describe(error))]
    Mongo {
        /// What was being done.
        what: String,
        /// The server's or the client's error.
        error: ::mongodb::error::Error,
    },
    /// The server took the request but not its writes for now (a write concern error).
    #[error("{0}")]
    Unavailable(String),
    /// The sink is not as it should be (a name the server refuses, positions of another input).
    #[error("{0}")]
    Invalid(String),
    /// The sink's checkpoint cannot be read.
    #[error(
        "checkpoint {name} is not readable ({error}); delete checkpoints/{name}.ckpt in the data directory to write the input from the sink's `start` again"
    )]
    Checkpoint {
        /// The checkpoint's name.
        name: String,
        /// What is wrong with it.
        error: serde_json::Error,
    },
    /// Reading the input, a dead letter or a checkpoint failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Error {
    fn mongo(what: impl Into<String>, error: ::mongodb::error::Error) -> Error {
        Error::Mongo {
            what: what.into(),
            error,
        }
    }

    /// Trying again later may work: the server is away or busy.
    fn transient(&self) -> bool {
        match self {
            Error::Mongo { error, .. } => transient(error),
            Error::Unavailable(_) => true,
            Error::Url(_) | Error::Invalid(_) | Error::Checkpoint { .. } | Error::Log(_) => false,
        }
    }
}

/// The server or the connection is away or busy, as opposed to refusing what was sent.
fn transient(e: &::mongodb::error::Error) -> bool {
    if e.contains_label(::mongodb::error::RETRYABLE_WRITE_ERROR)
        || e.contains_label(::mongodb::error::SYSTEM_OVERLOADED_ERROR)
    {
        return true;
    }
    match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(c) => {
            TRANSIENT_CODES.contains(&c.code) || backend_away(c.code, &c.message)
        }
        ErrorKind::InsertMany(i) => i.write_concern_error.is_some(),
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => false,
    }
}

/// A document's write error that is FerretDB's backend (PostgreSQL) being away, not the
/// document: FerretDB answers each document of a write with `InternalError` (code 1) and the
/// backend's connection error then. Dead-lettering those would empty the batch into the
/// dead-letter topic during an outage of the storage, so they are retried as the batch.
fn backend_away(code: i32, message: &str) -> bool {
    code == 1
        && [
            "SQLSTATE 08",
            "SQLSTATE 57P",
            "connection refused",
            "unexpected EOF",
            "broken pipe",
            "connection reset",
            "closed pool",
        ]
        .iter()
        .any(|m| message.contains(m))
}

/// The error is about the sink's settings (credentials, rights, names): every document would
/// meet it.
fn about_settings(e: &::mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Authentication { .. } | ErrorKind::InvalidTlsConfig { .. } => true,
        ErrorKind::Command(c) => SETTINGS_CODES.contains(&c.code),
        _ => false,
    }
}

/// A client's or server's error, short: the server's message and code, and what to change
/// when it is about the sink's settings.
fn describe(e: &::mongodb::error::Error) -> String {
    let text = match &*e.kind {
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        ErrorKind::InsertMany(i) => {
            let mut parts = Vec::new();
            if let Some(w) = &i.write_concern_error {
                parts.push(format!(
                    "write concern error: {} (code {})",
                    w.message, w.code
                ));
            }
            if let Some(first) = i.write_errors.as_ref().and_then(|w| w.first()) {
                parts.push(write_error(first));
            }
            parts.join("; ")
        }
        other => other.to_string(),
    };
    let hint = match &*e.kind {
        ErrorKind::Authentication { .. } => Some(
            "check the user name and password in the sink's `url` (or `url-env`), and its `authSource` and `authMechanism` options",
        ),
        ErrorKind::Command(c) if c.code == 18 || c.code == 11 => Some(
            "check the user name and password in the sink's `url` (or `url-env`), and its `authSource` option",
        ),
        ErrorKind::Command(c) if c.code == 13 => Some(
            "the user of the sink's `url` may not write there: grant it the readWrite role on the sink's `database`",
        ),
        ErrorKind::Command(c) if c.code == 73 => {
            Some("change the sink's `database` or `collection` to a name the server takes")
        }
        _ => None,
    };
    match hint {
        Some(h) => format!("{text}; {h}"),
        None => text,
    }
}

/// A document's write error as the server gave it.
fn write_error(w: &IndexedWriteError) -> String {
    match &w.code_name {
        Some(name) => format!("{} (code {} {name})", w.message, w.code),
        None => format!("{} (code {})", w.message, w.code),
    }
}

/// The sink's checkpoint: where its input is read on from.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    positions: Vec<u64>,
}

/// A document to write, and the row of the batch it is made of.
struct Doc {
    /// The row's place in its batch.
    at: usize,
    /// The `_id`, as JSON text (the key of a replacing sink's batch).
    id_key: String,
    doc: Document,
    /// BSON bytes.
    size: usize,
}

/// Runs the sink until the pipeline stops (or, bounded, its input is done).
pub(crate) fn run(ctx: &SinkCtx, cfg: &MongoSink) -> Result<(), Error> {
    let name = &ctx.config.name;
    check_names(name, cfg)?;
    let url = cfg.url.resolve().map_err(Error::Url)?;
    let client = client(&url)?;
    let db = client.database(&cfg.database);
    let coll = db.collection::<Document>(&cfg.collection);
    let dead = dead_target(ctx, &cfg.dead_letter_topic)?;
    let log = log_id(ctx)?;
    let ckpt = format!("{}.sink.{}", ctx.pipeline, name);
    let saved = load_checkpoint(ctx, &ckpt)?;
    let mut gather = Gather::open(ctx, saved.as_deref(), cfg.batch_size, cfg.linger)?;
    if saved.is_none() {
        // No position before the first checkpoint means "everything is mine": the first
        // positions are saved before the first document.
        save_checkpoint(ctx, &ckpt, &gather.positions())?;
    }
    let mut link = Link::new(ctx, &url, cfg);
    // First contact, before any event: a wrong URL, credentials or server show at once.
    loop {
        match db.run_command(doc! {"ping": 1}).run() {
            Ok(_) => break,
            Err(e) => {
                let e = Error::mongo(format!("cannot reach {}", redact_url(&url)), e);
                if !link.failed(e)? {
                    return Ok(());
                }
            }
        }
    }
    link.up();

    let mut done = Written::new(ctx);
    loop {
        let batch = gather.next(ctx)?;
        if !batch.rows.is_empty() {
            let started = Instant::now();
            let (docs, mut refused) = documents(ctx, cfg, &log, &batch.rows);
            let failed = loop {
                let tried = match cfg.mode {
                    MongoMode::Insert => insert(&coll, &docs),
                    MongoMode::Replace => replace(&db, cfg, &docs),
                };
                match tried {
                    Ok(failed) => break failed,
                    Err(e) => {
                        if !link.failed(e)? {
                            // Stopping while the server is away: the batch is not checkpointed,
                            // the next run writes it.
                            return Ok(());
                        }
                    }
                }
            };
            link.up();
            refused.extend(failed.into_iter().map(|(i, why)| Refused {
                row: batch.rows[docs[i].at].clone(),
                kind: "refused",
                why: format!(
                    "MongoDB refused the document for {}.{}: {why}",
                    cfg.database, cfg.collection
                ),
            }));
            let n = (batch.rows.len() - refused.len()) as u64;
            // Dead letters before the checkpoint: a crash in between sends them again (twice
            // rather than never).
            dead_letter(ctx, &dead, refused)?;
            save_checkpoint(ctx, &ckpt, &batch.positions)?;
            done.batch(ctx, n, started.elapsed());
        }
        if batch.last {
            break;
        }
    }
    tracing::info!(sink = %name, "MongoDB sink done: {}", done.summary("documents"));
    Ok(())
}

/// The sink's connection state: up, or down since when, with the wait before the next try.
struct Link<'a> {
    ctx: &'a SinkCtx,
    url: String,
    /// `database.collection`, for messages.
    target: String,
    reached: bool,
    down_since: Option<Instant>,
    backoff: Duration,
}

impl<'a> Link<'a> {
    fn new(ctx: &'a SinkCtx, url: &str, cfg: &MongoSink) -> Link<'a> {
        Link {
            ctx,
            url: redact_url(url),
            target: format!("{}.{}", cfg.database, cfg.collection),
            reached: false,
            down_since: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The server answered.
    fn up(&mut self) {
        let name = &self.ctx.config.name;
        let was_down = self.down_since.take();
        if let Some(since) = was_down {
            tracing::info!(sink = %name, "MongoDB at {} answers again after {:.1?}", self.url, since.elapsed());
        }
        if !self.reached || was_down.is_some() {
            metrics::gauge!("flowgate_db_up", "step" => name.clone()).set(1.0);
            *self.ctx.stats.down.lock().expect("not poisoned") = None;
        }
        self.reached = true;
        self.backoff = FIRST_BACKOFF;
    }

    /// A request failed with `e`: `Err` when it is not worth retrying (not transient, or a
    /// bounded run that cannot wait longer); else waits and says whether to try again (`false`:
    /// the sink is to stop).
    fn failed(&mut self, e: Error) -> Result<bool, Error> {
        let ctx = self.ctx;
        let name = &ctx.config.name;
        if !e.transient() {
            return Err(e);
        }
        let since = *self.down_since.get_or_insert_with(Instant::now);
        metrics::gauge!("flowgate_db_up", "step" => name.clone()).set(0.0);
        metrics::counter!("flowgate_db_errors_total", "step" => name.clone()).increment(1);
        if ctx.ctl.bounded() && !self.reached {
            return Err(Error::Invalid(format!(
                "{e}; a bounded run does not wait for the server: start it, or fix the sink's `url`"
            )));
        }
        if ctx.ctl.bounded() && since.elapsed() >= BOUNDED_OUTAGE {
            return Err(Error::Invalid(format!(
                "{e}; MongoDB at {} has been away for {:.0?}, longer than a bounded run waits ({BOUNDED_OUTAGE:?})",
                self.url,
                since.elapsed()
            )));
        }
        *ctx.stats.down.lock().expect("not poisoned") = Some(e.to_string());
        tracing::error!(sink = %name, target = %self.target, "{e}; retrying in {:?}", self.backoff);
        back_off(&mut self.backoff, MAX_BACKOFF, || ctx.halted());
        Ok(!ctx.halted())
    }
}

/// A client for `url` (it connects on first use).
fn client(url: &str) -> Result<Client, Error> {
    let shown = redact_url(url);
    if url.starts_with("mongodb+srv://") {
        return Err(Error::Url(format!(
            "{shown}: this build of Flowgate cannot look up the DNS SRV records a mongodb+srv:// URL names (the mongodb crate's `dns-resolver` feature is off); write the hosts out instead: mongodb://host1:27017,host2:27017/?replicaSet=<name>&tls=true"
        )));
    }
    let mut options = ClientOptions::parse(url).run().map_err(|e| {
        Error::Url(format!(
            "{shown} is not a MongoDB URL ({}); write mongodb://[user:password@]host[:port][/?options]",
            e.kind
        ))
    })?;
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    options
        .app_name
        .get_or_insert_with(|| "flowgate".to_owned());
    Client::with_options(options)
        .map_err(|e| Error::mongo(format!("cannot make a MongoDB client for {shown}"), e))
}

/// Refuses database and collection names no MongoDB server takes, naming the setting.
fn check_names(sink: &str, cfg: &MongoSink) -> Result<(), Error> {
    let db = &cfg.database;
    if let Some(c) = db.chars().find(|c| "/\\. \"$*<>:|?\0".contains(*c)) {
        return Err(Error::Invalid(format!(
            "`database` {db:?} of sink `{sink}` is not a MongoDB database name: it holds {c:?}; a database name has none of / \\ . \" $ * < > : | ?, spaces or NUL"
        )));
    }
    if db.len() >= 64 {
        return Err(Error::Invalid(format!(
            "`database` of sink `{sink}` is {} bytes long; a MongoDB database name has fewer than 64",
            db.len()
        )));
    }
    let coll = &cfg.collection;
    if let Some(c) = coll.chars().find(|c| "$\0".contains(*c)) {
        return Err(Error::Invalid(format!(
            "`collection` {coll:?} of sink `{sink}` is not a MongoDB collection name: it holds {c:?}; a collection name has no $ and no NUL"
        )));
    }
    if coll.starts_with("system.") {
        return Err(Error::Invalid(format!(
            "`collection` {coll:?} of sink `{sink}`: names starting with `system.` are the server's own; choose another"
        )));
    }
    if db.len() + 1 + coll.len() > 255 {
        return Err(Error::Invalid(format!(
            "`database` and `collection` of sink `{sink}` make a namespace of {} bytes; MongoDB takes at most 255",
            db.len() + 1 + coll.len()
        )));
    }
    Ok(())
}

fn load_checkpoint(ctx: &SinkCtx, name: &str) -> Result<Option<Vec<u64>>, Error> {
    let Some(bytes) = ctx.log.load_checkpoint(name)? else {
        return Ok(None);
    };
    let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|error| Error::Checkpoint {
        name: name.to_owned(),
        error,
    })?;
    if c.positions.len() != ctx.partitions as usize {
        return Err(Error::Invalid(format!(
            "checkpoint {name} holds positions for {} input partitions, and the sink's input `{}` has {}; delete checkpoints/{name}.ckpt in the data directory to write the input from the sink's `start` again",
            c.positions.len(),
            ctx.config.input,
            ctx.partitions
        )));
    }
    Ok(Some(c.positions))
}

fn save_checkpoint(ctx: &SinkCtx, name: &str, positions: &[u64]) -> Result<(), Error> {
    let c = Checkpoint {
        positions: positions.to_vec(),
    };
    ctx.log
        .save_checkpoint(name, &serde_json::to_vec(&c).expect("serialises"))?;
    Ok(())
}

/// The documents of `rows`, and the rows that make none (with why).
fn documents(ctx: &SinkCtx, cfg: &MongoSink, log: &str, rows: &[Row]) -> (Vec<Doc>, Vec<Refused>) {
    let mut docs = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for (at, row) in rows.iter().enumerate() {
        match document(cfg, log, &ctx.config.input, row) {
            Ok((id_key, doc, size)) => docs.push(Doc {
                at,
                id_key,
                doc,
                size,
            }),
            Err(why) => refused.push(Refused {
                row: row.clone(),
                kind: "format",
                why,
            }),
        }
    }
    (docs, refused)
}

/// The document of `row` (with its `_id` as JSON text, and its size in BSON bytes); an error
/// saying why it has none.
fn document(
    cfg: &MongoSink,
    log: &str,
    input: &str,
    row: &Row,
) -> Result<(String, Document, usize), String> {
    let mut fields = Fields::new(input, row);
    let (id_key, id) = match &cfg.id {
        Some(source) => {
            let v = fields.get(source)?;
            if v.is_null() {
                return Err(format!(
                    "the event has no `_id`: its `id` ({source}) is missing or null"
                ));
            }
            (v.to_string(), to_bson(&v, source, source)?)
        }
        None => {
            let c = coordinates(log, input, row);
            (Value::String(c.clone()).to_string(), Bson::String(c))
        }
    };
    let whole = FieldSource::Value(Vec::new());
    let value = match fields.value()? {
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "the event's value is {}, not a JSON object: a MongoDB document is an object",
                json_kind(other)
            ));
        }
    };
    let mut doc = Document::new();
    doc.insert("_id", id);
    for (k, v) in value {
        if k == "_id" {
            // The sink's `_id` wins (write id = "value._id" to keep the event's own).
            continue;
        }
        check_key(k, &whole)?;
        doc.insert(k.clone(), to_bson(v, &whole, &whole)?);
    }
    for (name, source) in &cfg.fields {
        let b = match source {
            FieldSource::Timestamp => Bson::DateTime(DateTime::from_millis(row.event.timestamp)),
            _ => to_bson(&*fields.get(source)?, source, source)?,
        };
        doc.insert(name.clone(), b);
    }
    let size = doc_size(&doc);
    if size > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the document is {size} bytes of BSON, over MongoDB's limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)"
        ));
    }
    Ok((id_key, doc, size))
}

/// The event's coordinates: the Kafka record's when its Kafka source said them in its headers,
/// else its place in the sink's input.
fn coordinates(log: &str, input: &str, row: &Row) -> String {
    let h = &row.event.headers;
    let text =
        |name| crate::connect::common::header(h, name).and_then(|v| std::str::from_utf8(v).ok());
    if let (Some(topic), Some(p), Some(o)) = (
        text(TOPIC_HEADER),
        text(PARTITION_HEADER),
        text(OFFSET_HEADER),
    ) && let (Ok(p), Ok(o)) = (p.parse::<i32>(), o.parse::<i64>())
    {
        return format!("kafka:{topic}/{p}/{o}");
    }
    // The log's id too: a data directory made anew starts its offsets at 0 again, and its
    // events are not the documents of the old one's.
    format!("{log}:{input}/{}/{}", row.at.0, row.at.1)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field name BSON can hold (it is NUL-terminated).
fn check_key(k: &str, source: &FieldSource) -> Result<(), String> {
    if k.contains('\0') {
        return Err(format!(
            "{source} has a field name with a NUL character ({k:?}), which a BSON field name cannot hold"
        ));
    }
    Ok(())
}

/// `v` as BSON: integers as Int32 when they fit, else Int64 (above i64's range, Decimal128),
/// other numbers as Double, objects as documents. `source` names where it came from, `inner`
/// the source whose nested names are checked.
fn to_bson(v: &Value, source: &FieldSource, inner: &FieldSource) -> Result<Bson, String> {
    Ok(match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(small) => Bson::Int32(small),
                    Err(_) => Bson::Int64(i),
                }
            } else if n.is_u64() {
                n.to_string()
                    .parse::<Decimal128>()
                    .map(Bson::Decimal128)
                    .map_err(|e| format!("{source}: the number {n} does not fit BSON ({e})"))?
            } else {
                Bson::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(
            a.iter()
                .map(|x| to_bson(x, source, inner))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut d = Document::new();
            for (k, x) in m {
                check_key(k, inner)?;
                d.insert(k.clone(), to_bson(x, source, inner)?);
            }
            Bson::Document(d)
        }
    })
}

/// The size of `d` in BSON bytes.
fn doc_size(d: &Document) -> usize {
    5 + d
        .iter()
        .map(|(k, v)| 2 + k.len() + value_size(v))
        .sum::<usize>()
}

fn value_size(v: &Bson) -> usize {
    match v {
        Bson::Null => 0,
        Bson::Boolean(_) => 1,
        Bson::Int32(_) => 4,
        Bson::Int64(_) | Bson::Double(_) | Bson::DateTime(_) => 8,
        Bson::Decimal128(_) => 16,
        Bson::String(s) => 5 + s.len(),
        Bson::Document(d) => doc_size(d),
        Bson::Array(a) => {
            5 + a
                .iter()
                .enumerate()
                .map(|(i, x)| 2 + digits(i) + value_size(x))
                .sum::<usize>()
        }
        other => doc! {"": other.clone()}.to_vec().map_or(0, |b| b.len() - 7),
    }
}

fn digits(i: usize) -> usize {
    i.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Inserts `docs` unordered: the refused ones (index in `docs`, the server's error), the
/// others written; a document there already (duplicate `_id`) counts as written.
fn insert(coll: &Collection<Document>, docs: &[Doc]) -> Result<Vec<(usize, String)>, Error> {
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let e = match coll
        .insert_many(docs.iter().map(|d| &d.doc))
        .ordered(false)
        .run()
    {
        Ok(_) => return Ok(Vec::new()),
        Err(e) => e,
    };
    let what = || format!("cannot insert into {}", coll.namespace());
    if let ErrorKind::InsertMany(im) = &*e.kind
        && im.write_concern_error.is_none()
        && im.write_errors.as_ref().is_some_and(|w| !w.is_empty())
    {
        let mut refused = Vec::new();
        for w in im.write_errors.iter().flatten() {
            if w.code == DUPLICATE_KEY {
                continue;
            }
            if SETTINGS_CODES.contains(&w.code) {
                return Err(Error::mongo(what(), e.clone()));
            }
            if TRANSIENT_CODES.contains(&w.code) || backend_away(w.code, &w.message) {
                return Err(Error::Unavailable(format!(
                    "{}: the server's storage is away: {}",
                    what(),
                    write_error(w)
                )));
            }
            refused.push((w.index, write_error(w)));
        }
        refused.sort_unstable_by_key(|(i, _)| *i);
        return Ok(refused);
    }
    if transient(&e) || about_settings(&e) {
        return Err(Error::mongo(what(), e));
    }
    // Refused as a whole, for a reason about documents: each alone, so that only the refused
    // ones are left out.
    if docs.len() == 1 {
        return Ok(vec![(0, describe(&e))]);
    }
    one_by_one(docs, |d| insert(coll, d))
}

/// Writes each of `docs` alone with `write`.
fn one_by_one(
    docs: &[Doc],
    mut write: impl FnMut(&[Doc]) -> Result<Vec<(usize, String)>, Error>,
) -> Result<Vec<(usize, String)>, Error> {
    let mut refused = Vec::new();
    for i in 0..docs.len() {
        for (_, why) in write(&docs[i..=i])? {
            refused.push((i, why));
        }
    }
    Ok(refused)
}

/// Replaces (upserts) `docs` by `_id`, in `update` commands of fewer than
/// [`UPDATE_STATEMENTS`] statements, unordered; within the batch the last document of an
/// `_id` wins (the earlier ones count as written, unless it is refused: then they are refused
/// with it). The refused ones are returned as by [`insert`].
fn replace(db: &Database, cfg: &MongoSink, docs: &[Doc]) -> Result<Vec<(usize, String)>, Error> {
    let mut last: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        last.insert(&d.id_key, i);
    }
    let mut refused = Vec::new();
    let mut chunk: Vec<usize> = Vec::new();
    let mut bytes = 0;
    let keep: Vec<usize> = (0..docs.len())
        .filter(|i| last[docs[*i].id_key.as_str()] == *i)
        .collect();
    for (n, &i) in keep.iter().enumerate() {
        chunk.push(i);
        bytes += docs[i].size;
        let full = chunk.len() >= UPDATE_STATEMENTS
            || keep
                .get(n + 1)
                .is_none_or(|&next| bytes + docs[next].size > UPDATE_BYTES);
        if full {
            refused.extend(update(db, cfg, docs, &chunk)?);
            chunk.clear();
            bytes = 0;
        }
    }
    // The earlier events of an `_id` whose last one was refused were not written either: they
    // are dead letters too, rather than counted as written.
    let refused_ids: std::collections::HashMap<&str, String> = refused
        .iter()
        .map(|(i, why)| (docs[*i].id_key.as_str(), why.clone()))
        .collect();
    for (i, d) in docs.iter().enumerate() {
        if last[d.id_key.as_str()] != i
            && let Some(why) = refused_ids.get(d.id_key.as_str())
        {
            refused.push((
                i,
                format!("a later event of this _id in the batch was refused, so this one was not written either: {why}"),
            ));
        }
    }
    refused.sort_unstable_by_key(|(i, _)| *i);
    Ok(refused)
}

/// One `update` command of upserts for `docs[i]`, `i` in `chunk`.
fn update(
    db: &Database,
    cfg: &MongoSink,
    docs: &[Doc],
    chunk: &[usize],
) -> Result<Vec<(usize, String)>, Error> {
    let what = || {
        format!(
            "cannot replace documents in {}.{}",
            cfg.database, cfg.collection
        )
    };
    let updates: Vec<Bson> = chunk
        .iter()
        .map(|&i| {
            let d = &docs[i].doc;
            Bson::Document(doc! {
                "q": {"_id": d.get("_id").cloned().unwrap_or(Bson::Null)},
                "u": d.clone(),
                "upsert": true,
            })
        })
        .collect();
    let reply = match db
        .run_command(doc! {"update": cfg.collection.as_str(), "updates": updates, "ordered": false})
        .run()
    {
        Ok(r) => r,
        Err(e) if transient(&e) || about_settings(&e) => return Err(Error::mongo(what(), e)),
        Err(e) if chunk.len() == 1 => return Ok(vec![(chunk[0], describe(&e))]),
        Err(_) => {
            let mut refused = Vec::new();
            for &i in chunk {
                refused.extend(update(db, cfg, docs, &[i])?);
            }
            return Ok(refused);
        }
    };
    if let Ok(w) = reply.get_document("writeConcernError") {
        return Err(Error::Unavailable(format!(
            "{}: write concern error: {}",
            what(),
            w.get_str("errmsg").unwrap_or_default()
        )));
    }
    let mut refused = Vec::new();
    if let Ok(errors) = reply.get_array("writeErrors") {
        for e in errors {
            let Some(e) = e.as_document() else { continue };
            let index = match e.get("index") {
                Some(Bson::Int32(i)) => *i as usize,
                Some(Bson::Int64(i)) => *i as usize,
                _ => continue,
            };
            let code = match e.get("code") {
                Some(Bson::Int32(c)) => *c,
                Some(Bson::Int64(c)) => *c as i32,
                _ => 0,
            };
            let Some(&at) = chunk.get(index) else {
                continue;
            };
            let message = e.get_str("errmsg").unwrap_or_default();
            if TRANSIENT_CODES.contains(&code) || backend_away(code, message) {
                return Err(Error::Unavailable(format!(
                    "{}: {message} (code {code})",
                    what()
                )));
            }
            if SETTINGS_CODES.contains(&code) {
                return Err(Error::Invalid(format!(
                    "{}: {message} (code {code})",
                    what()
                )));
            }
            refused.push((at, format!("{message} (code {code})")));
        }
    }
    // A refused statement may have stopped the unordered command there (FerretDB does, and
    // says nothing of the statements it did not run; mongod goes on): the others are sent
    // again one by one (an upsert by `_id` done twice is done once).
    if !refused.is_empty() && chunk.len() > 1 {
        let failed: std::collections::HashSet<usize> = refused.iter().map(|(at, _)| *at).collect();
        for &i in chunk {
            if !failed.contains(&i) {
                refused.extend(update(db, cfg, docs, &[i])?);
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbUrl;
    use crate::event::{Event, Header};

    fn cfg(id: Option<FieldSource>, fields: &[(&str, FieldSource)]) -> MongoSink {
        MongoSink {
            url: DbUrl::Literal("mongodb://127.0.0.1".into()),
            database: "d".into(),
            collection: "c".into(),
            id,
            mode: MongoMode::Insert,
            fields: fields
                .iter()
                .map(|(n, s)| ((*n).to_owned(), s.clone()))
                .collect(),
            batch_size: 10,
            linger: Duration::ZERO,
            dead_letter_topic: "dead".into(),
        }
    }

    fn row(value: &str, headers: &[(&str, &str)]) -> Row {
        Row {
            at: (2, 7),
            event: Event {
                key: Some(b"k1".to_vec()),
                value: value.as_bytes().to_vec(),
                timestamp: 1_700_000_000_123,
                headers: headers
                    .iter()
                    .map(|(n, v)| Header {
                        name: (*n).to_owned(),
                        value: v.as_bytes().to_vec(),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn a_document_is_the_value_with_its_id_and_fields() {
        let c = cfg(
            None,
            &[
                ("key", FieldSource::Key),
                ("at", FieldSource::Timestamp),
                ("src", FieldSource::Header("src".into())),
                ("gone", FieldSource::Header("nope".into())),
            ],
        );
        let r = row(
            r#"{"_id":"theirs","n":1,"big":5000000000,"huge":18446744073709551615,"f":0.5,"s":"a\u0000b","a":[1,{"x":null}],"o":{"t":true}}"#,
            &[("src", "web")],
        );
        let (key, d, size) = document(&c, "L", "in", &r).unwrap();
        assert_eq!(key, "\"L:in/2/7\"");
        let want = doc! {
            "_id": "L:in/2/7",
            "n": 1,
            "big": 5_000_000_000_i64,
            "huge": "18446744073709551615".parse::<Decimal128>().unwrap(),
            "f": 0.5,
            "s": "a\u{0}b",
            "a": [1, {"x": Bson::Null}],
            "o": {"t": true},
            "key": "k1",
            "at": DateTime::from_millis(1_700_000_000_123),
            "src": "web",
            "gone": Bson::Null,
        };
        assert_eq!(d, want);
        assert_eq!(size, d.to_vec().unwrap().len());
    }

    #[test]
    fn the_id_is_the_kafka_records_or_the_id_source() {
        let c = cfg(None, &[]);
        let r = row(
            "{}",
            &[
                (TOPIC_HEADER, "orders"),
                (PARTITION_HEADER, "3"),
                (OFFSET_HEADER, "42"),
            ],
        );
        let (_, d, _) = document(&c, "L", "in", &r).unwrap();
        assert_eq!(d.get_str("_id").unwrap(), "kafka:orders/3/42");

        let c = cfg(Some(FieldSource::Value(vec!["id".into()])), &[]);
        let (key, d, _) = document(&c, "L", "in", &row(r#"{"id":12}"#, &[])).unwrap();
        assert_eq!((key.as_str(), d.get("_id")), ("12", Some(&Bson::Int32(12))));
        let e = document(&c, "L", "in", &row(r#"{"other":1}"#, &[])).unwrap_err();
        assert_eq!(
            e,
            "the event has no `_id`: its `id` (value.id) is missing or null"
        );
    }

    #[test]
    fn an_event_without_a_document_says_why() {
        let c = cfg(None, &[]);
        let e = document(&c, "L", "in", &row("[1,2]", &[])).unwrap_err();
        assert_eq!(
            e,
            "the event's value is an array, not a JSON object: a MongoDB document is an object"
        );
        let e = document(&c, "L", "in", &row("not json", &[])).unwrap_err();
        assert!(e.starts_with("the event's value is not JSON"), "{e}");
        let e = document(&c, "L", "in", &row(r#"{"o":{"a\u0000":1}}"#, &[])).unwrap_err();
        assert_eq!(
            e,
            "value has a field name with a NUL character (\"a\\0\"), which a BSON field name cannot hold"
        );
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_DOCUMENT_BYTES));
        let e = document(&c, "L", "in", &row(&big, &[])).unwrap_err();
        assert!(e.contains("over MongoDB's limit of 16777216 bytes"), "{e}");
    }

    #[test]
    fn names_no_server_takes_are_refused() {
        let mut c = cfg(None, &[]);
        c.database = "a.b".into();
        let e = check_names("s", &c).unwrap_err().to_string();
        assert!(e.starts_with("`database` \"a.b\" of sink `s`"), "{e}");
        c.database = "d".into();
        c.collection = "x$y".into();
        assert!(check_names("s", &c).is_err());
        c.collection = "system.users".into();
        assert!(check_names("s", &c).is_err());
        c.collection = "orders".into();
        assert!(check_names("s", &c).is_ok());
    }

    #[test]
    fn urls_that_cannot_work_say_what_to_write() {
        let e = client("mongodb+srv://u:secret@cluster.example.net/")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mongodb://host1:27017"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = client("http://h/").err().unwrap().to_string();
        assert!(e.contains("is not a MongoDB URL"), "{e}");
    }
}
