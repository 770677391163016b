//! PostgreSQL and MongoDB sinks and the PostgreSQL change source: their settings, read from
//! their shapes in `keys` and checked. Whether the tables and columns exist is asked of the
//! database by `flowgate validate` and at start (`connect`); nothing here reaches a server.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::keys::{MongoSinkFile, PostgresCdcFile, PostgresSinkFile};
use super::span::Collector;
use super::types::{DbUrl, FieldSource, MongoSink, PostgresCdcSource, PostgresMode, PostgresSink};

/// The dead-letter topic without `dead-letter-topic` (the same as a stage's).
const DEAD_LETTERS: &str = "dead-letters";
/// Rows per transaction of a PostgreSQL sink without `batch-size`.
const PG_BATCH: usize = 10_000;
/// Documents per write of a MongoDB sink without `batch-size`.
const MONGO_BATCH: usize = 1_000;
/// The largest `batch-size`.
const MAX_BATCH: usize = 1_000_000;
/// How long a batch waits for more without `linger`.
const LINGER: Duration = Duration::from_millis(100);
/// The hint for a field source that is not one.
const FIELD_HELP: &str = "write value (the whole JSON value), value.<field>[.<field>...], key, timestamp, header.<name>, headers or position";

/// A sink of type `postgres`; `at` is its table. A setting with a problem is reported and left
/// empty, as for Kafka.
pub(super) fn postgres_sink(
    c: &mut Collector<'_>,
    what: &str,
    at: Range<usize>,
    p: PostgresSinkFile,
) -> PostgresSink {
    let url = url(c, what, &at, "postgres", p.url, p.url_env);
    let table = name(
        c,
        what,
        &at,
        "table",
        "postgres",
        p.table,
        "the table's name, or schema.name",
    );
    let columns = match p.columns {
        None => {
            c.add(
                at.clone(),
                format!("{what} (type postgres) has no `columns`"),
                Some("map each column to where its value comes from, e.g. columns = { id = \"value.id\", body = \"value\", at = \"timestamp\" }".into()),
            );
            Vec::new()
        }
        Some(m) => {
            if m.get_ref().is_empty() {
                c.add(
                    m.span(),
                    format!("{what}: `columns` is empty"),
                    Some("map at least one column, e.g. columns = { id = \"value.id\" }".into()),
                );
            }
            mapping(c, what, "columns", m.into_inner())
        }
    };
    let mode = match (p.mode.as_ref().map(|m| m.get_ref().as_str()), p.conflict) {
        (None | Some("insert"), None) => PostgresMode::Insert,
        (None | Some("insert"), Some(k)) => {
            c.add(
                k.span(),
                format!("{what}: `conflict` is for mode = \"upsert\", and the mode is insert"),
                Some("add mode = \"upsert\", or remove `conflict`".into()),
            );
            PostgresMode::Insert
        }
        (Some("upsert"), None) => {
            c.add(
                p.mode.as_ref().map_or(at.clone(), Spanned::span),
                format!("{what}: mode = \"upsert\" needs `conflict`, the columns of the unique key"),
                Some("add conflict = [\"<column>\", ...]: the columns of the table's primary key or of a unique index".into()),
            );
            PostgresMode::Upsert {
                conflict: Vec::new(),
            }
        }
        (Some("upsert"), Some(k)) => {
            let span = k.span();
            let conflict: Vec<String> = k
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect();
            if conflict.is_empty() {
                c.add(
                    span.clone(),
                    format!("{what}: `conflict` is an empty list"),
                    Some("name the columns of the unique key".into()),
                );
            }
            for k in &conflict {
                if !columns.iter().any(|(col, _)| col == k) {
                    c.add(
                        span.clone(),
                        format!("{what}: conflict column `{k}` is not one of `columns`"),
                        Some(format!("map `{k}` in columns, e.g. {k} = \"value.{k}\"")),
                    );
                }
            }
            PostgresMode::Upsert { conflict }
        }
        (Some(other), _) => {
            c.add(
                p.mode.as_ref().expect("matched").span(),
                format!("{what}: unknown mode {other:?}"),
                Some("use mode = \"insert\" (each event a new row) or \"upsert\" (with conflict = [...])".into()),
            );
            PostgresMode::Insert
        }
    };
    PostgresSink {
        url,
        table,
        columns,
        mode,
        batch_size: batch_size(c, what, p.batch_size, PG_BATCH),
        linger: p.linger.map_or(LINGER, |d| d.0),
        dead_letter_topic: p
            .dead_letter_topic
            .map_or_else(|| DEAD_LETTERS.to_owned(), Spanned::into_inner),
    }
}

/// A sink of type `mongodb`; `at` is its table.
pub(super) fn mongo_sink(
    c: &mut Collector<'_>,
    what: &str,
    at: Range<usize>,
    m: MongoSinkFile,
) -> MongoSink {
    let url = url(c, what, &at, "mongodb", m.url, m.url_env);
    let database = name(
        c,
        what,
        &at,
        "database",
        "mongodb",
        m.database,
        "the database's name",
    );
    let collection = name(
        c,
        what,
        &at,
        "collection",
        "mongodb",
        m.collection,
        "the collection's name",
    );
    let id = m.id.and_then(|s| {
        let span = s.span();
        field_source(s.get_ref()).or_else(|| {
            c.add(
                span,
                format!("{what}: `id` {:?} is not a field source", s.get_ref()),
                Some(format!(
                    "{FIELD_HELP}; or leave `id` out for the event's coordinates"
                )),
            );
            None
        })
    });
    let fields = m
        .fields
        .map(|f| mapping(c, what, "fields", f.into_inner()))
        .unwrap_or_default();
    for (name, _) in &fields {
        if name == "_id" {
            c.add(
                at.clone(),
                format!("{what}: `fields` may not set `_id`"),
                Some("write id = \"<field source>\" instead".into()),
            );
        }
    }
    MongoSink {
        url,
        database,
        collection,
        id,
        mode: m.mode,
        fields,
        batch_size: batch_size(c, what, m.batch_size, MONGO_BATCH),
        linger: m.linger.map_or(LINGER, |d| d.0),
        dead_letter_topic: m
            .dead_letter_topic
            .map_or_else(|| DEAD_LETTERS.to_owned(), Spanned::into_inner),
    }
}

/// A source of type `postgres-cdc`; `at` is its table; `pipeline` and `name` make the default
/// slot and publication names.
pub(super) fn postgres_cdc(
    c: &mut Collector<'_>,
    what: &str,
    at: Range<usize>,
    pipeline: &str,
    source: &str,
    p: PostgresCdcFile,
) -> PostgresCdcSource {
    let url = url(c, what, &at, "postgres-cdc", p.url, p.url_env);
    let tables = match p.tables {
        None => {
            c.add(
                at.clone(),
                format!("{what} (type postgres-cdc) has no `tables`"),
                Some("add tables = [\"<table>\", ...] (name or schema.name): the tables whose changes are read".into()),
            );
            Vec::new()
        }
        Some(t) => {
            if t.get_ref().is_empty() {
                c.add(
                    t.span(),
                    format!("{what}: `tables` is an empty list"),
                    Some("name at least one table".into()),
                );
            }
            t.into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect()
        }
    };
    // Slot names are 1 to 63 of a-z, 0-9 and _; the defaults are made of the pipeline's and the
    // source's names.
    let default = slot_name(&format!("flowgate_{pipeline}_{source}"));
    let slot = match p.slot {
        None => default.clone(),
        Some(s) => {
            let n = s.get_ref();
            let ok = (1..=63).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                c.add(
                    s.span(),
                    format!("{what}: slot name {n:?} is not valid: use 1 to 63 of a-z, 0-9 and _"),
                    Some(format!("or leave `slot` out for {default}")),
                );
            }
            s.into_inner()
        }
    };
    let publication = match p.publication {
        None => default,
        Some(s) if s.get_ref().is_empty() => {
            c.add(
                s.span(),
                format!("{what}: `publication` is empty"),
                Some(format!("name it, or leave it out for {default}")),
            );
            default
        }
        Some(s) => s.into_inner(),
    };
    PostgresCdcSource {
        url,
        tables,
        slot,
        publication,
        poll_interval: p.poll_interval.map_or(Duration::from_millis(100), |d| d.0),
        batch_size: batch_size(c, what, p.batch_size, PG_BATCH),
    }
}

/// `name` lowered, with every character that a slot name may not hold made `_`, cut to 63.
fn slot_name(name: &str) -> String {
    name.chars()
        .map(|ch| match ch.to_ascii_lowercase() {
            ch @ ('a'..='z' | '0'..='9' | '_') => ch,
            _ => '_',
        })
        .take(63)
        .collect()
}

/// `url` or `url-env`: exactly one.
fn url(
    c: &mut Collector<'_>,
    what: &str,
    at: &Range<usize>,
    kind: &str,
    url: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
) -> DbUrl {
    match (url, env) {
        (Some(u), Some(e)) => {
            c.add(
                e.span(),
                format!("{what} has both `url` and `url-env`"),
                Some("keep one: url = \"...\", or url-env = \"<variable>\" to read it from the environment".into()),
            );
            DbUrl::Literal(u.into_inner())
        }
        (None, None) => {
            let example = if kind == "mongodb" {
                "mongodb://127.0.0.1:27017"
            } else {
                "postgres://user@127.0.0.1:5432/db"
            };
            c.add(
                at.clone(),
                format!("{what} (type {kind}) has no `url`"),
                Some(format!("add url = \"{example}\", or url-env = \"<variable>\" to read it from the environment (keeps a password out of the file)")),
            );
            DbUrl::Literal(String::new())
        }
        (Some(u), None) => {
            if u.get_ref().trim().is_empty() {
                c.add(u.span(), format!("{what}: `url` is empty"), None);
            }
            DbUrl::Literal(u.into_inner())
        }
        (None, Some(e)) => {
            if e.get_ref().trim().is_empty() {
                c.add(
                    e.span(),
                    format!("{what}: `url-env` is empty"),
                    Some("name the environment variable that holds the URL".into()),
                );
            }
            DbUrl::Env(e.into_inner())
        }
    }
}

/// A required, non-empty name (`key`).
#[allow(clippy::too_many_arguments, reason = "each is a part of the message")]
fn name(
    c: &mut Collector<'_>,
    what: &str,
    at: &Range<usize>,
    key: &str,
    kind: &str,
    value: Option<Spanned<String>>,
    hint: &str,
) -> String {
    match value {
        None => {
            c.add(
                at.clone(),
                format!("{what} (type {kind}) has no `{key}`"),
                Some(format!("add {key} = \"...\": {hint}")),
            );
            String::new()
        }
        Some(v) if v.get_ref().trim().is_empty() => {
            c.add(
                v.span(),
                format!("{what}: `{key}` is empty"),
                Some(format!("write {hint}")),
            );
            String::new()
        }
        Some(v) => v.into_inner(),
    }
}

fn batch_size(
    c: &mut Collector<'_>,
    what: &str,
    size: Option<Spanned<usize>>,
    default: usize,
) -> usize {
    match size {
        None => default,
        Some(s) if (1..=MAX_BATCH).contains(s.get_ref()) => s.into_inner(),
        Some(s) => {
            c.add(
                s.span(),
                format!(
                    "{what}: batch-size = {} is out of range: it must be from 1 to {MAX_BATCH}",
                    s.get_ref()
                ),
                Some(format!("leave it out for {default}")),
            );
            default
        }
    }
}

/// `columns` or `fields`: each name → its field source.
fn mapping(
    c: &mut Collector<'_>,
    what: &str,
    key: &str,
    m: BTreeMap<Spanned<String>, Spanned<String>>,
) -> Vec<(String, FieldSource)> {
    let mut out = Vec::new();
    for (name, source) in m {
        match field_source(source.get_ref()) {
            Some(f) => out.push((name.into_inner(), f)),
            None => c.add(
                source.span(),
                format!(
                    "{what}: {key} `{}` = {:?} is not a field source",
                    name.get_ref(),
                    source.get_ref()
                ),
                Some(FIELD_HELP.into()),
            ),
        }
    }
    out
}

/// `value`, `value.a.b`, `key`, `timestamp`, `header.<name>`, `headers` or `position`.
pub(super) fn field_source(s: &str) -> Option<FieldSource> {
    Some(match s {
        "value" => FieldSource::Value(Vec::new()),
        "key" => FieldSource::Key,
        "timestamp" => FieldSource::Timestamp,
        "headers" => FieldSource::Headers,
        "position" => FieldSource::Position,
        _ => {
            if let Some(path) = s.strip_prefix("value.") {
                let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
                if parts.iter().any(String::is_empty) {
                    return None;
                }
                FieldSource::Value(parts)
            } else if let Some(h) = s.strip_prefix("header.") {
                if h.is_empty() {
                    return None;
                }
                FieldSource::Header(h.to_owned())
            } else {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{Case, Files, expect_each};
    use crate::config::types::{
        DbUrl, FieldSource, MongoMode, MongoSink, PostgresCdcSource, PostgresMode, PostgresSink,
        SinkKind, SourceKind,
    };

    fn sink(kind: &str, keys: &str) -> String {
        format!(
            "[sources.gen]\ntype = \"generator\"\ntopic = \"in\"\n\n[sinks.d]\ntype = \"{kind}\"\ninput = \"in\"\n{keys}\n"
        )
    }

    fn case<'a>(name: &'a str, text: String, message: &str, help: Option<&'a str>) -> Case<'a> {
        (name, text, message.to_owned(), help)
    }

    #[test]
    fn a_postgres_sink_with_its_settings() {
        let f = Files::new();
        let c = f.ok(&sink(
            "postgres",
            "url = \"postgres://u:secret@h/db\"\ntable = \"shop.orders\"\nmode = \"upsert\"\nconflict = [\"id\"]\nbatch-size = 500\nlinger = \"20ms\"\n[sinks.d.columns]\nid = \"value.id\"\ncity = \"value.address.city\"\nbody = \"value\"\nk = \"key\"\nat = \"timestamp\"\nsrc = \"header.source\"\nhs = \"headers\"\npos = \"position\"",
        ));
        let SinkKind::Postgres(p) = &c.sinks["d"].kind else {
            panic!("not a postgres sink: {:?}", c.sinks["d"].kind);
        };
        assert_eq!(
            *p,
            PostgresSink {
                url: DbUrl::Literal("postgres://u:secret@h/db".into()),
                table: "shop.orders".into(),
                columns: vec![
                    ("at".into(), FieldSource::Timestamp),
                    ("body".into(), FieldSource::Value(vec![])),
                    (
                        "city".into(),
                        FieldSource::Value(vec!["address".into(), "city".into()])
                    ),
                    ("hs".into(), FieldSource::Headers),
                    ("id".into(), FieldSource::Value(vec!["id".into()])),
                    ("k".into(), FieldSource::Key),
                    ("pos".into(), FieldSource::Position),
                    ("src".into(), FieldSource::Header("source".into())),
                ],
                mode: PostgresMode::Upsert {
                    conflict: vec!["id".into()]
                },
                batch_size: 500,
                linger: Duration::from_millis(20),
                dead_letter_topic: "dead-letters".into(),
            }
        );
        assert!(
            !format!("{:?}", p.url).contains("secret"),
            "the password shows in {:?}",
            p.url
        );
    }

    #[test]
    fn a_mongodb_sink_and_a_cdc_source_with_their_defaults() {
        let f = Files::new();
        let c = f.ok(&sink(
            "mongodb",
            "url-env = \"MONGO_URL\"\ndatabase = \"shop\"\ncollection = \"raw\"",
        ));
        assert_eq!(
            c.sinks["d"].kind,
            SinkKind::Mongo(MongoSink {
                url: DbUrl::Env("MONGO_URL".into()),
                database: "shop".into(),
                collection: "raw".into(),
                id: None,
                mode: MongoMode::Insert,
                fields: vec![],
                batch_size: 1000,
                linger: Duration::from_millis(100),
                dead_letter_topic: "dead-letters".into(),
            })
        );
        let c = f.ok("[sources.Changes-1]\ntype = \"postgres-cdc\"\ntopic = \"in\"\nurl = \"postgres://h/db\"\ntables = [\"orders\"]\n\n[sinks.out]\ntype = \"stdout\"\ninput = \"in\"\n");
        assert_eq!(
            c.sources["Changes-1"].kind,
            SourceKind::PostgresCdc(PostgresCdcSource {
                url: DbUrl::Literal("postgres://h/db".into()),
                tables: vec!["orders".into()],
                slot: "flowgate_p_changes_1".into(),
                publication: "flowgate_p_changes_1".into(),
                poll_interval: Duration::from_millis(100),
                batch_size: 10_000,
            })
        );
    }

    #[test]
    fn each_database_setting_problem_is_named_with_what_to_write() {
        let cases = [
            case("no url", sink("postgres", "table = \"t\"\ncolumns = { a = \"value\" }"), "[sinks.d] (type postgres) has no `url`", Some("add url = \"postgres://user@127.0.0.1:5432/db\", or url-env = \"<variable>\" to read it from the environment (keeps a password out of the file)")),
            case("url and url-env", sink("postgres", "url = \"postgres://h/d\"\nurl-env = \"X\"\ntable = \"t\"\ncolumns = { a = \"value\" }"), "[sinks.d] has both `url` and `url-env`", Some("keep one: url = \"...\", or url-env = \"<variable>\" to read it from the environment")),
            case("no table", sink("postgres", "url = \"postgres://h/d\"\ncolumns = { a = \"value\" }"), "[sinks.d] (type postgres) has no `table`", Some("add table = \"...\": the table's name, or schema.name")),
            case("no columns", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\""), "[sinks.d] (type postgres) has no `columns`", Some("map each column to where its value comes from, e.g. columns = { id = \"value.id\", body = \"value\", at = \"timestamp\" }")),
            case("a bad field source", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\ncolumns = { a = \"values.x\" }"), "[sinks.d]: columns `a` = \"values.x\" is not a field source", Some("write value (the whole JSON value), value.<field>[.<field>...], key, timestamp, header.<name>, headers or position")),
            case("an empty path part", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\ncolumns = { a = \"value..x\" }"), "[sinks.d]: columns `a` = \"value..x\" is not a field source", Some("write value (the whole JSON value), value.<field>[.<field>...], key, timestamp, header.<name>, headers or position")),
            case("upsert without conflict", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\nmode = \"upsert\"\ncolumns = { a = \"value\" }"), "[sinks.d]: mode = \"upsert\" needs `conflict`, the columns of the unique key", Some("add conflict = [\"<column>\", ...]: the columns of the table's primary key or of a unique index")),
            case("conflict without upsert", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\nconflict = [\"a\"]\ncolumns = { a = \"value\" }"), "[sinks.d]: `conflict` is for mode = \"upsert\", and the mode is insert", Some("add mode = \"upsert\", or remove `conflict`")),
            case("an unmapped conflict column", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\nmode = \"upsert\"\nconflict = [\"id\"]\ncolumns = { a = \"value\" }"), "[sinks.d]: conflict column `id` is not one of `columns`", Some("map `id` in columns, e.g. id = \"value.id\"")),
            case("an unknown mode", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\nmode = \"merge\"\ncolumns = { a = \"value\" }"), "[sinks.d]: unknown mode \"merge\"", Some("use mode = \"insert\" (each event a new row) or \"upsert\" (with conflict = [...])")),
            case("batch-size 0", sink("postgres", "url = \"postgres://h/d\"\ntable = \"t\"\nbatch-size = 0\ncolumns = { a = \"value\" }"), "[sinks.d]: batch-size = 0 is out of range: it must be from 1 to 1000000", Some("leave it out for 10000")),
            case("no collection", sink("mongodb", "url = \"mongodb://h\"\ndatabase = \"d\""), "[sinks.d] (type mongodb) has no `collection`", Some("add collection = \"...\": the collection's name")),
            case("a bad id", sink("mongodb", "url = \"mongodb://h\"\ndatabase = \"d\"\ncollection = \"c\"\nid = \"offset\""), "[sinks.d]: `id` \"offset\" is not a field source", Some("write value (the whole JSON value), value.<field>[.<field>...], key, timestamp, header.<name>, headers or position; or leave `id` out for the event's coordinates")),
            case("_id in fields", sink("mongodb", "url = \"mongodb://h\"\ndatabase = \"d\"\ncollection = \"c\"\nfields = { _id = \"key\" }"), "[sinks.d]: `fields` may not set `_id`", Some("write id = \"<field source>\" instead")),
            case("no tables", "[sources.c]\ntype = \"postgres-cdc\"\ntopic = \"in\"\nurl = \"postgres://h/d\"\n\n[sinks.o]\ntype = \"stdout\"\ninput = \"in\"\n".into(), "[sources.c] (type postgres-cdc) has no `tables`", Some("add tables = [\"<table>\", ...] (name or schema.name): the tables whose changes are read")),
            case("a bad slot", "[sources.c]\ntype = \"postgres-cdc\"\ntopic = \"in\"\nurl = \"postgres://h/d\"\ntables = [\"t\"]\nslot = \"My-Slot\"\n\n[sinks.o]\ntype = \"stdout\"\ninput = \"in\"\n".into(), "[sources.c]: slot name \"My-Slot\" is not valid: use 1 to 63 of a-z, 0-9 and _", Some("or leave `slot` out for flowgate_p_c")),
        ];
        expect_each(&Files::new(), &cases);
    }

    #[test]
    fn a_password_in_a_url_is_redacted() {
        assert_eq!(
            crate::config::types::redact_url("postgres://me:pa:ss@h:5432/db"),
            "postgres://me:***@h:5432/db"
        );
        assert_eq!(
            crate::config::types::redact_url("postgres://me@h/db"),
            "postgres://me@h/db"
        );
        assert_eq!(
            crate::config::types::redact_url("mongodb://h"),
            "mongodb://h"
        );
    }
}
