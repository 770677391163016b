//! The PostgreSQL sink against a real PostgreSQL 15 server: rows read back with `psql`
//! (PostgreSQL's own `row_to_json`), never with Flowgate's code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowgate_tests::fixture::{Fixture, eventually, sigterm, wait_exit};
use flowgate_tests::postgres::Postgres;
use serde_json::{Value, json};

/// The table every test writes (in a database of its own).
const TABLE: &str = "CREATE TABLE orders (\
    id bigint, name text, amount numeric(12, 2), body jsonb, k text, at timestamptz, \
    src text, pos jsonb, note text DEFAULT 'none')";

/// The sink's columns for [`TABLE`].
const COLUMNS: &str = "[sinks.db.columns]\nid = \"value.id\"\nname = \"value.name\"\namount = \"value.amount\"\nbody = \"value\"\nk = \"key\"\nat = \"timestamp\"\nsrc = \"header.src\"\npos = \"position\"\n";

/// NDJSON event `i`: key, value with nested fields, a header, a timestamp.
fn event(i: u64) -> Value {
    json!({
        "key": format!("k{i}"),
        "value": {"id": i, "name": format!("n{i}"), "amount": format!("{}.{:02}", i % 1000, i % 100), "tags": {"even": i.is_multiple_of(2)}},
        "timestamp": 1_700_000_000_000u64 + i,
        "headers": {"src": "web"},
    })
}

fn write_events(f: &Fixture, events: impl Iterator<Item = Value>) {
    let mut text = String::new();
    for e in events {
        text.push_str(&e.to_string());
        text.push('\n');
    }
    std::fs::write(f.path("events.ndjson"), text).unwrap();
}

/// A pipeline: the file `events.ndjson` → topic `orders` (`partitions`) → the postgres sink
/// with `sink` keys; dead letters to an NDJSON file.
fn pipeline(name: &str, delivery: &str, url: &str, sink: &str, partitions: u32) -> String {
    format!(
        "name = \"{name}\"\ndelivery = \"{delivery}\"\ncommit-interval = \"100ms\"\n\n\
         [topics.orders]\npartitions = {partitions}\n\n\
         [sources.events]\ntype = \"file\"\npath = \"events.ndjson\"\ntopic = \"orders\"\n\n\
         [sinks.db]\ntype = \"postgres\"\ninput = \"orders\"\nurl = \"{url}\"\ntable = \"orders\"\n{sink}\n\n\
         [sinks.dead]\ntype = \"file\"\ninput = \"dead-letters\"\npath = \"dead.ndjson\"\n"
    )
}

fn database(pg: &Postgres, name: &str) -> String {
    let url = pg.create_database(name);
    pg.psql_in(name, TABLE);
    url
}

#[test]
fn a_hundred_thousand_events_become_rows_field_by_field() {
    let _t = crate::Timer::start("pg_sink hundred thousand");
    const N: u64 = 100_000;
    let pg = Postgres::shared();
    let url = database(pg, "pg_sink_bulk");
    let f = Fixture::new(&pipeline(
        "pg-bulk",
        "at-least-once",
        &url,
        &format!("batch-size = 5000\n{COLUMNS}"),
        2,
    ));
    write_events(&f, (0..N).map(event));
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("PostgreSQL sink done"),
        "no summary line: {log}"
    );
    let rows = pg.rows_in(
        "pg_sink_bulk",
        "SELECT id, name, amount::text AS amount, body, k, \
         (extract(epoch FROM at) * 1000)::bigint AS at_ms, src, pos, note FROM orders ORDER BY id",
    );
    assert_eq!(rows.len() as u64, N, "rows in the table");
    let mut offsets: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let i = i as u64;
        let e = event(i);
        assert_eq!(r["id"], json!(i));
        assert_eq!(r["name"], e["value"]["name"], "row {i}");
        assert_eq!(r["amount"], e["value"]["amount"], "row {i}");
        assert_eq!(r["body"], e["value"], "row {i}: the whole value as jsonb");
        assert_eq!(r["k"], e["key"], "row {i}");
        assert_eq!(
            r["at_ms"], e["timestamp"],
            "row {i}: the timestamp as timestamptz"
        );
        assert_eq!(r["src"], json!("web"), "row {i}");
        assert_eq!(
            r["note"],
            json!("none"),
            "row {i}: an unmapped column keeps its default"
        );
        assert_eq!(r["pos"]["topic"], json!("orders"), "row {i}");
        offsets
            .entry(r["pos"]["partition"].as_u64().unwrap())
            .or_default()
            .push(r["pos"]["offset"].as_u64().unwrap());
    }
    // Each input position once, none missing.
    for (p, mut o) in offsets {
        o.sort_unstable();
        let n = o.len() as u64;
        assert_eq!(o, (0..n).collect::<Vec<_>>(), "offsets of partition {p}");
    }
    let positions = pg.rows_in(
        "pg_sink_bulk",
        "SELECT pipeline, sink, positions FROM flowgate_sink_positions",
    );
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert_eq!(positions[0]["pipeline"], json!("pg-bulk"));
    assert_eq!(positions[0]["sink"], json!("db"));
    let ends: Vec<u64> = serde_json::from_str(positions[0]["positions"].as_str().unwrap()).unwrap();
    assert_eq!(ends.iter().sum::<u64>(), N, "positions {ends:?}");

    // Run again: nothing is written twice.
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    assert_eq!(
        pg.psql_in("pg_sink_bulk", "SELECT count(*) FROM orders"),
        N.to_string()
    );
}

#[test]
fn an_upsert_keeps_one_row_per_key_with_the_last_event() {
    let _t = crate::Timer::start("pg_sink upsert");
    let pg = Postgres::shared();
    let url = pg.create_database("pg_sink_upsert");
    pg.psql_in(
        "pg_sink_upsert",
        "CREATE TABLE orders (id bigint PRIMARY KEY, name text, seen bigint)",
    );
    let f = Fixture::new(&pipeline(
        "pg-upsert",
        "at-least-once",
        &url,
        "mode = \"upsert\"\nconflict = [\"id\"]\nbatch-size = 300\n[sinks.db.columns]\nid = \"value.id\"\nname = \"value.name\"\nseen = \"value.seen\"\n",
        1,
    ));
    // 1,000 events over 100 ids: each id ten times, in batches of 300 (so an id repeats inside
    // a batch and across batches).
    write_events(
        &f,
        (0..1000u64).map(|i| json!({"value": {"id": i % 100, "name": format!("v{i}"), "seen": i}})),
    );
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    let rows = pg.rows_in(
        "pg_sink_upsert",
        "SELECT id, name, seen FROM orders ORDER BY id",
    );
    assert_eq!(rows.len(), 100);
    for (id, r) in rows.iter().enumerate() {
        let last = 900 + id as u64;
        assert_eq!(
            r,
            &json!({"id": id, "name": format!("v{last}"), "seen": last})
        );
    }
}

#[expect(
    clippy::print_stderr,
    reason = "reports the kills (see them with --nocapture)"
)]
/// Kills `flowgate run` (SIGKILL) 12 times while it writes 300,000 events, then runs it to the
/// end: each input event's row is there exactly once. The first run dies within 50 ms of its
/// start, before the sink wrote anything; each later one once the sink committed a batch more
/// than there was at its start, plus 0 to 60 ms (seeded: `FLOWGATE_PG_KILL_SEED`), so every kill
/// lands while rows are written, however fast or loaded the machine is.
fn killed_during_writes(delivery: &str, db: &str) {
    const N: u64 = 300_000;
    const CYCLES: usize = 12;
    let pg = Postgres::shared();
    let url = database(pg, db);
    let f = Fixture::new(&pipeline(
        &format!("pg-kill-{db}"),
        delivery,
        &url,
        &format!("batch-size = 2000\nlinger = \"5ms\"\n{COLUMNS}"),
        3,
    ));
    write_events(&f, (0..N).map(event));
    let seed = std::env::var("FLOWGATE_PG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = flowgate_tests::Rng(seed);
    let count = || -> u64 {
        pg.psql_in(db, "SELECT count(*) FROM orders")
            .parse()
            .unwrap()
    };
    // The rows after each kill.
    let mut after_kill: Vec<u64> = Vec::new();
    for cycle in 0..CYCLES {
        let before = count();
        let mut child = f.spawn(&["--bounded"], cycle);
        if cycle > 0 {
            assert!(
                eventually(Duration::from_secs(120), || count() > before),
                "cycle {cycle}: no batch written in 120 s: {}",
                f.stderr(cycle)
            );
        }
        let extra = Duration::from_millis(rng.below(if cycle == 0 { 50 } else { 60 }));
        if let Some(status) = wait_exit(&mut child, extra) {
            panic!(
                "cycle {cycle}: the run ended by itself ({status}) before its kill: {}",
                f.stderr(cycle)
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        after_kill.push(count());
    }
    assert_eq!(
        after_kill[0], 0,
        "the first run wrote rows before it was killed"
    );
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    // Each input position exactly once (the sink's own guarantee, in both modes).
    let dup = pg.psql_in(
        db,
        "SELECT count(*) FROM (SELECT pos FROM orders GROUP BY pos HAVING count(*) > 1) d",
    );
    assert_eq!(dup, "0", "input positions written twice");
    let ids = pg.psql_in(db, "SELECT count(DISTINCT id) FROM orders");
    assert_eq!(ids, N.to_string(), "events missing from the table");
    let rows: u64 = pg
        .psql_in(db, "SELECT count(*) FROM orders")
        .parse()
        .unwrap();
    if delivery == "exactly-once" {
        // The source appended each line once, too: a row per event.
        assert_eq!(rows, N, "rows");
    }
    let per_partition = pg.rows_in(
        db,
        "SELECT (pos->>'partition')::int AS p, count(*) AS n, max((pos->>'offset')::bigint) AS last \
         FROM orders GROUP BY 1 ORDER BY 1",
    );
    for r in &per_partition {
        assert_eq!(
            r["n"].as_u64().unwrap(),
            r["last"].as_u64().unwrap() + 1,
            "a gap in partition {}: {r}",
            r["p"]
        );
    }
    eprintln!(
        "pg_sink kill ({delivery}): {CYCLES} kills (FLOWGATE_PG_KILL_SEED={seed}), rows after each: {after_kill:?}; {rows} rows for {N} events"
    );
}

#[test]
fn killed_during_writes_each_event_lands_once_at_least_once() {
    let _t = crate::Timer::start("pg_sink kill at-least-once");
    killed_during_writes("at-least-once", "pg_sink_kill_alo");
}

#[test]
fn killed_during_writes_each_event_lands_once_exactly_once() {
    let _t = crate::Timer::start("pg_sink kill exactly-once");
    killed_during_writes("exactly-once", "pg_sink_kill_eos");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the catch-up time (see it with --nocapture)"
)]
fn the_database_restarted_mid_run_loses_nothing() {
    let _t = crate::Timer::start("pg_sink database restart");
    const N: u64 = 40_000;
    let pg = Postgres::new();
    let url = database(&pg, "pg_sink_restart");
    let f = Fixture::new(&pipeline(
        "pg-restart",
        "at-least-once",
        &url,
        &format!("batch-size = 500\nlinger = \"5ms\"\n{COLUMNS}"),
        1,
    ));
    write_events(&f, (0..N).map(event));
    let mut child = f.spawn(&[], 0);
    let count = || {
        pg.try_psql_in("pg_sink_restart", "SELECT count(*) FROM orders")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    assert!(
        eventually(Duration::from_secs(120), || count().is_some_and(|n| n > 0)),
        "no rows: {}",
        f.stderr(0)
    );
    pg.stop();
    assert!(
        eventually(Duration::from_secs(60), || f
            .stderr(0)
            .contains("reconnecting")
            || f.stderr(0).contains("retrying in")),
        "the sink did not notice the database was gone: {}",
        f.stderr(0)
    );
    pg.start();
    let began = Instant::now();
    assert!(
        eventually(Duration::from_secs(180), || count() == Some(N)),
        "{:?} rows of {N} after the restart: {}",
        count(),
        f.stderr(0)
    );
    eprintln!(
        "pg_sink restart: caught up {:.1?} after the database came back",
        began.elapsed()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended: {}",
        f.stderr(0)
    );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}: {}", f.stderr(0));
    let dup = pg.psql_in(
        "pg_sink_restart",
        "SELECT count(*) FROM (SELECT pos FROM orders GROUP BY pos HAVING count(*) > 1) d",
    );
    assert_eq!(dup, "0", "input positions written twice");
}

#[test]
fn hostile_and_bad_values_land_as_data_or_as_dead_letters_with_the_reason() {
    let _t = crate::Timer::start("pg_sink bad input");
    let pg = Postgres::shared();
    let url = pg.create_database("pg_sink_bad");
    pg.psql_in(
        "pg_sink_bad",
        "CREATE TABLE orders (id bigint, name text, amount numeric(8, 2) CHECK (amount >= 0), body jsonb); \
         CREATE TABLE \"Robert'); DROP TABLE orders; --\" (id bigint)",
    );
    let hostile = "'); DROP TABLE orders; --";
    let huge = "x".repeat(2 << 20);
    let events = vec![
        json!({"value": {"id": 1, "name": hostile, "amount": 1}}),
        json!({"value": {"id": 2, "name": "quote ' double \" backslash \\ tab \t newline \n cr \r", "amount": 2}}),
        json!({"value": {"id": 3, "name": "nul \u{0} byte", "amount": 3}}),
        json!({"value": {"id": 4, "name": huge, "amount": 4}}),
        json!({"value": {"id": 5, "name": "wrong type", "amount": "abc"}}),
        json!({"value": {"id": 6, "name": "missing amount"}}),
        json!({"value": {"id": 7, "name": "check violated", "amount": -5}}),
        json!({"value": "this value is not JSON"}),
        json!({"value": {"id": 9, "name": "unicode ✓ 😀 ü", "amount": 9}}),
        json!({"value": {"id": "ten", "name": "id of the wrong type", "amount": 10}}),
        json!({"value": {"id": 11, "name": "$1 and ${x} and %s and ?", "amount": 11}}),
        json!({"value": {"id": 12, "name": "too big", "amount": 123456789}}),
    ];
    let f = Fixture::new(&pipeline(
        "pg-bad",
        "at-least-once",
        &url,
        "[sinks.db.columns]\nid = \"value.id\"\nname = \"value.name\"\namount = \"value.amount\"\nbody = \"value\"\n",
        1,
    ));
    write_events(&f, events.into_iter());
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    // The table is there, and the other table whose name is SQL too.
    let rows = pg.rows_in(
        "pg_sink_bad",
        "SELECT id, name, amount::text AS amount FROM orders ORDER BY id",
    );
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 4, 6, 9, 11], "rows written: {rows:?}");
    assert_eq!(rows[0]["name"], json!(hostile), "SQL in a value is text");
    assert_eq!(
        rows[1]["name"],
        json!("quote ' double \" backslash \\ tab \t newline \n cr \r")
    );
    assert_eq!(
        rows[2]["name"].as_str().unwrap().len(),
        huge.len(),
        "the 2 MiB string whole"
    );
    assert_eq!(rows[3]["amount"], Value::Null, "a missing field is NULL");
    assert_eq!(rows[4]["name"], json!("unicode ✓ 😀 ü"));
    assert_eq!(rows[5]["name"], json!("$1 and ${x} and %s and ?"));
    assert_eq!(
        pg.psql_in(
            "pg_sink_bad",
            "SELECT count(*) FROM \"Robert'); DROP TABLE orders; --\""
        ),
        "0"
    );

    // Each refused event is a dead letter with the reason.
    let dead = f.lines("dead.ndjson");
    let reasons: BTreeMap<String, (String, String)> = dead
        .iter()
        .map(|d| {
            let h = &d["headers"];
            // The file sink writes a JSON value as JSON, other bytes as a string.
            let id = d["value"]
                .get("id")
                .map_or_else(|| "not json".to_owned(), Value::to_string);
            (
                id,
                (
                    h["flowgate-error-kind"].as_str().unwrap().to_owned(),
                    h["flowgate-error"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let want: [(&str, &str, &str); 6] = [
        ("3", "format", "holds a NUL character"),
        ("5", "refused", "invalid input syntax for type numeric"),
        ("7", "refused", "violates check constraint"),
        ("not json", "format", "the event's value is not JSON"),
        ("\"ten\"", "refused", "invalid input syntax for type bigint"),
        ("12", "refused", "numeric field overflow"),
    ];
    assert_eq!(reasons.len(), want.len(), "dead letters: {reasons:#?}");
    for (id, kind, why) in want {
        let (k, w) = reasons
            .get(id)
            .unwrap_or_else(|| panic!("no dead letter for {id}: {reasons:#?}"));
        assert_eq!(k, kind, "kind of {id}: {w}");
        assert!(w.contains(why), "reason of {id}: {w}");
    }
    for d in &dead {
        assert_eq!(d["headers"]["flowgate-sink"], json!("db"));
        assert_eq!(d["headers"]["flowgate-topic"], json!("orders"));
    }
}

#[test]
fn a_missing_table_or_column_is_named_by_validate_and_run() {
    let _t = crate::Timer::start("pg_sink missing table or column");
    let pg = Postgres::shared();
    let url = pg.create_database("pg_sink_missing");
    pg.psql_in(
        "pg_sink_missing",
        "CREATE TABLE orders (id bigint, name text)",
    );
    let f = Fixture::new(&pipeline(
        "pg-missing",
        "at-least-once",
        &url,
        "[sinks.db.columns]\nid = \"value.id\"\nnmae = \"value.name\"\n",
        1,
    ));
    write_events(&f, (0..3).map(event));
    let out = f.command(&["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: sink `db`: table orders has no column `nmae`; its columns are: id, name; fix `columns`"),
        "{err}"
    );
    let (status, log) = f.run_bounded();
    assert!(!status.success());
    assert!(
        log.contains("table orders has no column `nmae`; its columns are: id, name"),
        "{log}"
    );

    let f = Fixture::new(
        &pipeline(
            "pg-missing",
            "at-least-once",
            &url,
            "table = \"order\"\n[sinks.db.columns]\nid = \"value.id\"\n",
            1,
        )
        .replace("table = \"orders\"\n", ""),
    );
    write_events(&f, (0..3).map(event));
    let out = f.command(&["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: sink `db`: table order does not exist"),
        "{err}"
    );
    let (status, log) = f.run_bounded();
    assert!(!status.success());
    assert!(
        log.contains("table order does not exist; create it"),
        "{log}"
    );

    // An unreachable database: validate warns and the file is valid; a bounded run fails
    // naming it.
    let f = Fixture::new(&pipeline(
        "pg-missing",
        "at-least-once",
        "postgres://postgres@127.0.0.1:1/none",
        "[sinks.db.columns]\nid = \"value.id\"\n",
        1,
    ));
    write_events(&f, (0..3).map(event));
    let out = f.command(&["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: sink `db`: cannot connect to postgres://postgres@127.0.0.1:1/none"),
        "{err}"
    );
}

#[test]
fn a_refusal_that_is_not_about_a_row_stops_the_sink_instead_of_dead_lettering_every_row() {
    let _t = crate::Timer::start("pg_sink refusal of the sink");
    let pg = Postgres::shared();
    let url = pg.create_database("pg_sink_no_index");
    // An upsert on `id` without a unique index over it: PostgreSQL refuses every batch
    // (SQLSTATE 42P10), which no row can mend.
    pg.psql_in(
        "pg_sink_no_index",
        "CREATE TABLE orders (id bigint, name text)",
    );
    let f = Fixture::new(&pipeline(
        "pg-no-index",
        "at-least-once",
        &url,
        "mode = \"upsert\"\nconflict = [\"id\"]\n[sinks.db.columns]\nid = \"value.id\"\nname = \"value.name\"\n",
        1,
    ));
    write_events(&f, (0..50).map(event));
    let (status, log) = f.run_bounded();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification"
        ),
        "{log}"
    );
    assert!(f.lines("dead.ndjson").is_empty(), "rows were dead-lettered");
    assert_eq!(
        pg.psql_in("pg_sink_no_index", "SELECT count(*) FROM orders"),
        "0"
    );
    // With the index, the same input is written from where it stopped: all of it.
    pg.psql_in("pg_sink_no_index", "CREATE UNIQUE INDEX ON orders (id)");
    let (status, log) = f.run_bounded();
    assert!(status.success(), "{status}: {log}");
    assert_eq!(
        pg.psql_in("pg_sink_no_index", "SELECT count(*) FROM orders"),
        "50"
    );
}
