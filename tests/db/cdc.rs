//! The PostgreSQL change source (`type = "postgres-cdc"`) end to end: changes written by `psql`
//! to a real PostgreSQL 15, read by `flowgate run` into a one-partition topic, written out by a
//! file sink, and checked against a model of what was written, change by change, in commit
//! order.
//!
//! - `kill_9_*`: 10,000 changes (one transaction of 1,000 inserts, then inserts, updates,
//!   updates that change the key and deletes in transactions of 1 to 5) written in chunks
//!   between bounded runs that are killed with SIGKILL (the first before it has written any
//!   checkpoint). Exactly-once: each change once. At-least-once: none missing.
//! - `database_killed_mid_run`: the server is killed (SIGKILL to every process) and started
//!   again while the source reads; no change is lost (nor repeated: the source skips what the
//!   slot gives again).
//! - `types_keys_truncate_and_bad_settings`: column types, tables without a primary key,
//!   REPLICA IDENTITY FULL, TRUNCATE; a missing table, a publication without the table and a
//!   role without REPLICATION are clear errors. `wal_level_replica_is_a_clear_error` on a server
//!   of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowgate_tests::Timer;
use flowgate_tests::fixture::{Fixture, eventually, sigterm, wait_exit};
use flowgate_tests::postgres::Postgres;
use flowgate_tests::{Delivery, Rng};
use serde_json::{Value, json};

/// How long a run may take to show what is waited for.
const DEADLINE: Duration = Duration::from_secs(120);

/// The log line of a source that has its slot and reads it.
const READING: &str = "reading replication slot";

/// A pipeline: the change source of `tables` → topic `changes` (one partition, so the file
/// keeps the commit order) → `out.ndjson`.
fn pipeline(name: &str, delivery: Delivery, url: &str, tables: &[&str], extra: &str) -> String {
    let tables: Vec<String> = tables.iter().map(|t| format!("{t:?}")).collect();
    format!(
        r#"name = "{name}"
delivery = "{}"
commit-interval = "200ms"

[topics.changes]
partitions = 1

[sources.pg]
type = "postgres-cdc"
url = "{url}"
tables = [{}]
topic = "changes"
poll-interval = "50ms"
{extra}
[sinks.out]
type = "file"
input = "changes"
path = "out.ndjson"
"#,
        delivery.as_str(),
        tables.join(", ")
    )
}

/// A change as the model expects it.
#[derive(Clone, Debug, PartialEq)]
struct Change {
    op: &'static str,
    key: Value,
    before: Value,
    after: Value,
}

/// A change as the sink wrote it, with its LSN.
#[derive(Debug)]
struct Seen {
    change: Change,
    lsn: String,
    table: String,
}

fn seen(line: &Value) -> Seen {
    let v = &line["value"];
    let key = match line.get("key") {
        Some(Value::String(k)) => serde_json::from_str(k).unwrap_or_else(|e| panic!("{k}: {e}")),
        None => Value::Null,
        other => panic!("key {other:?}"),
    };
    assert_eq!(line["headers"]["pg.op"], v["op"], "{line}");
    assert_eq!(line["headers"]["pg.table"], v["table"], "{line}");
    assert_eq!(line["headers"]["pg.lsn"], v["lsn"], "{line}");
    assert!(v["xid"].is_u64(), "{line}");
    assert!(
        v["commit_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );
    Seen {
        change: Change {
            op: match v["op"].as_str() {
                Some("insert") => "insert",
                Some("update") => "update",
                Some("delete") => "delete",
                Some("truncate") => "truncate",
                other => panic!("op {other:?} in {line}"),
            },
            key,
            before: v["before"].clone(),
            after: v["after"].clone(),
        },
        lsn: v["lsn"].as_str().unwrap().to_owned(),
        table: v["table"].as_str().unwrap().to_owned(),
    }
}

/// `X/Y` as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The load of the crash tests: SQL chunks and the changes they make, in commit order.
struct Load {
    chunks: Vec<String>,
    changes: Vec<Change>,
}

/// 1,000 inserts in one transaction, then `rest` changes in chunks of `per_chunk`.
fn load(seed: u64, rest: usize, per_chunk: usize) -> Load {
    let mut rng = Rng(seed | 1);
    let mut rows: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut changes = Vec::new();
    let row = |id: i64, n: i64, note: &str| json!({"id": id, "n": n, "note": note});
    let mut chunks = vec![
        "BEGIN;\nINSERT INTO items SELECT g, g * 10, 'bulk ' || g FROM generate_series(1, 1000) g;\nCOMMIT;\n"
            .to_owned(),
    ];
    for id in 1..=1000 {
        let note = format!("bulk {id}");
        changes.push(Change {
            op: "insert",
            key: json!({"id": id}),
            before: Value::Null,
            after: row(id, id * 10, &note),
        });
        rows.insert(id, (id * 10, note));
    }
    let mut next_id = 1001i64;
    let mut sql = String::new();
    let mut in_chunk = 0;
    let mut made = 0;
    while made < rest {
        let size = (1 + rng.below(5) as usize).min(rest - made);
        sql.push_str("BEGIN;\n");
        for _ in 0..size {
            let i = made;
            made += 1;
            let pick = |rng: &mut Rng, rows: &BTreeMap<i64, (i64, String)>| {
                let k = rng.below(rows.len() as u64) as usize;
                *rows.keys().nth(k).unwrap()
            };
            match rng.below(10) {
                _ if rows.len() < 10 => {}
                0..=3 => {}
                4..=6 => {
                    let id = pick(&mut rng, &rows);
                    let (n, _) = rows[&id].clone();
                    let note = if i % 7 == 0 {
                        format!("it's \"{i}\"")
                    } else {
                        format!("upd {i}")
                    };
                    sql.push_str(&format!(
                        "UPDATE items SET n = n + 1, note = '{}' WHERE id = {id};\n",
                        note.replace('\'', "''")
                    ));
                    changes.push(Change {
                        op: "update",
                        key: json!({"id": id}),
                        before: Value::Null,
                        after: row(id, n + 1, &note),
                    });
                    rows.insert(id, (n + 1, note));
                    continue;
                }
                7 => {
                    let id = pick(&mut rng, &rows);
                    let (n, note) = rows.remove(&id).unwrap();
                    let new = next_id;
                    next_id += 1;
                    sql.push_str(&format!("UPDATE items SET id = {new} WHERE id = {id};\n"));
                    changes.push(Change {
                        op: "update",
                        key: json!({"id": new}),
                        before: json!({"id": id}),
                        after: row(new, n, &note),
                    });
                    rows.insert(new, (n, note));
                    continue;
                }
                _ => {
                    let id = pick(&mut rng, &rows);
                    rows.remove(&id);
                    sql.push_str(&format!("DELETE FROM items WHERE id = {id};\n"));
                    changes.push(Change {
                        op: "delete",
                        key: json!({"id": id}),
                        before: json!({"id": id}),
                        after: Value::Null,
                    });
                    continue;
                }
            }
            let id = next_id;
            next_id += 1;
            let note = format!("new {i} ünïcødé");
            sql.push_str(&format!(
                "INSERT INTO items VALUES ({id}, {i}, '{note}');\n"
            ));
            changes.push(Change {
                op: "insert",
                key: json!({"id": id}),
                before: Value::Null,
                after: row(id, i as i64, &note),
            });
            rows.insert(id, (i as i64, note));
        }
        sql.push_str("COMMIT;\n");
        in_chunk += size;
        if in_chunk >= per_chunk || made == rest {
            chunks.push(std::mem::take(&mut sql));
            in_chunk = 0;
        }
    }
    Load { chunks, changes }
}

/// Compares what the sink wrote with the model: exactly (each once, in commit order), or, if
/// `repeats` may happen, the first of each change in order. Returns the repeats.
fn check(lines: &[Value], want: &[Change], exact: bool) -> usize {
    let mut firsts = Vec::new();
    let mut lsns = BTreeSet::new();
    let mut repeats = 0;
    let mut last = 0u64;
    for l in lines {
        let s = seen(l);
        assert_eq!(s.table, "public.items");
        let at = lsn(&s.lsn);
        let id = (at, s.change.key.to_string());
        if !lsns.insert(id) {
            repeats += 1;
            continue;
        }
        assert!(
            at > last,
            "a change at {} after one at {last:X} (not commit order)",
            s.lsn
        );
        last = at;
        firsts.push(s.change);
    }
    let first_wrong = firsts.iter().zip(want).position(|(a, b)| a != b);
    if let Some(i) = first_wrong {
        panic!(
            "change {i} of {}: got {:?}, want {:?}",
            want.len(),
            firsts[i],
            want[i]
        );
    }
    assert_eq!(
        firsts.len(),
        want.len(),
        "changes written (the first of each): {} of {}",
        firsts.len(),
        want.len()
    );
    if exact {
        assert_eq!(repeats, 0, "exactly-once: changes written twice");
    }
    repeats
}

#[expect(
    clippy::print_stderr,
    reason = "reports the kills and the repeats (see them with --nocapture)"
)]
fn kill_9(delivery: Delivery) {
    let pg = Postgres::shared();
    let db = format!("cdc_kill_{}", delivery.as_str().replace('-', "_"));
    let url = pg.create_database(&db);
    // Slots are the server's, not a database's: a name of this test's own. They are made
    // here, before the first run (which is killed at once), so that no change is written
    // before the slot is there.
    let slot = format!("{db}_slot");
    pg.psql_in(
        &db,
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY, n bigint NOT NULL, note text);\n\
             CREATE PUBLICATION kill_pub FOR TABLE items;\n\
             SELECT 1 FROM pg_create_logical_replication_slot('{slot}', 'pgoutput');\n\
             SELECT 1 FROM pg_copy_logical_replication_slot('{slot}', '{slot}_behind');\n\
             SELECT 1 FROM pg_copy_logical_replication_slot('{slot}', '{slot}_behind2');"
        ),
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let load = load(seed, 9_000, 1_000);
    assert_eq!(load.changes.len(), 10_000);
    let f = Fixture::new(&pipeline(
        "kill",
        delivery,
        &url,
        &["items"],
        &format!("slot = \"{slot}\"\npublication = \"kill_pub\"\nbatch-size = 500\n"),
    ));
    let checkpoint = f.path("data/checkpoints/kill.source.pg.ckpt");
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut kills = 0;
    let mut early = Vec::new();
    let began = Instant::now();
    for (n, chunk) in load.chunks.iter().enumerate() {
        pg.psql_in(&db, chunk);
        let mut child = f.spawn(&["--bounded"], n);
        if n == 0 {
            // Before the run has written any checkpoint.
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            early.push(format!(
                "run 0 killed at once (source checkpoint written: {})",
                checkpoint.exists()
            ));
            continue;
        }
        let had = f.lines("out.ndjson").len();
        let ended = if n % 2 == 1 {
            // Just after the first new change reaches the file: mid-run.
            eventually(DEADLINE, || {
                f.lines("out.ndjson").len() > had || child.try_wait().unwrap().is_some()
            });
            child.try_wait().unwrap()
        } else {
            wait_exit(&mut child, Duration::from_millis(100 + rng.below(600)))
        };
        match ended {
            Some(status) => assert!(status.success(), "{status}: {}", f.stderr(n)),
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        if n == 4 {
            // A checkpoint from the middle of the run, for the replay below.
            std::fs::copy(&checkpoint, f.path("middle.ckpt")).unwrap();
        }
    }
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{status}: {stderr}");
    let lines = f.lines("out.ndjson");
    let repeats = check(&lines, &load.changes, delivery == Delivery::ExactlyOnce);
    // The slot was confirmed up to the end: a new run reads nothing.
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(f.lines("out.ndjson").len(), lines.len());
    let lag = pg.psql_in(
        &db,
        &format!("SELECT pg_current_wal_flush_lsn() >= confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    );
    assert_eq!(lag, "t");
    // A slot left behind (as one is when the source dies between the append and the slot's
    // advance, or when the server crashes before it saved the advance) gives every change
    // again: all of them are in the log already, and skipped.
    let toml = std::fs::read_to_string(f.path("pipeline.toml")).unwrap();
    std::fs::write(
        f.path("pipeline.toml"),
        toml.replace(
            &format!("slot = \"{slot}\""),
            &format!("slot = \"{slot}_behind\""),
        ),
    )
    .unwrap();
    let (status, stderr) = f.run_bounded();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("changes already in the log skipped"),
        "{stderr}"
    );
    assert_eq!(f.lines("out.ndjson").len(), lines.len());
    if delivery == Delivery::ExactlyOnce {
        // The source dies after its appends were durable, before their checkpoint was saved
        // (the checkpoint from the middle put back) and before the slot moved: the slot gives
        // the second half again, the log has it already (its exactly-once markers say so),
        // and none of it is appended twice.
        std::fs::copy(f.path("middle.ckpt"), &checkpoint).unwrap();
        std::fs::write(
            f.path("pipeline.toml"),
            toml.replace(
                &format!("slot = \"{slot}\""),
                &format!("slot = \"{slot}_behind2\""),
            ),
        )
        .unwrap();
        let (status, stderr) = f.run_bounded();
        assert!(status.success(), "{status}: {stderr}");
        assert!(stderr.contains("exactly-once: replaying"), "{stderr}");
        check(&f.lines("out.ndjson"), &load.changes, true);
    }
    let replays = (1..load.chunks.len())
        .filter(|&n| f.stderr(n).contains("exactly-once: replaying"))
        .count();
    eprintln!(
        "cdc kill -9 {}: {} changes, {} chunks, {kills} kills, {repeats} repeats, {replays} runs replaying past their checkpoint, seed {seed}, {:.1?}; {}",
        delivery.as_str(),
        load.changes.len(),
        load.chunks.len(),
        began.elapsed(),
        early.join("; ")
    );
}

#[test]
fn kill_9_exactly_once_writes_each_change_once() {
    let _t = Timer::start("db", "cdc kill -9 exactly-once");
    kill_9(Delivery::ExactlyOnce);
}

#[test]
fn kill_9_at_least_once_loses_no_change() {
    let _t = Timer::start("db", "cdc kill -9 at-least-once");
    kill_9(Delivery::AtLeastOnce);
}

/// Waits until run `n` logs `line`, failing if it exits first.
fn wait_for_log(f: &Fixture, n: usize, child: &mut std::process::Child, line: &str) {
    let ok = eventually(DEADLINE, || {
        f.stderr(n).contains(line) || child.try_wait().unwrap().is_some()
    });
    let log = f.stderr(n);
    assert!(ok && log.contains(line), "no {line:?} in: {log}");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports how long the outage took (see it with --nocapture)"
)]
fn database_killed_mid_run_loses_no_change() {
    let _t = Timer::start("db", "cdc database killed mid-run");
    let pg = Postgres::new();
    let url = pg.create_database("cdc_restart");
    pg.psql_in(
        "cdc_restart",
        "CREATE TABLE items (id int PRIMARY KEY, n bigint NOT NULL, note text)",
    );
    let load = load(7, 3_000, 1_000);
    let f = Fixture::new(&pipeline(
        "restart",
        Delivery::AtLeastOnce,
        &url,
        &["items"],
        "batch-size = 300\n",
    ));
    let mut child = f.spawn(&[], 0);
    // It makes the publication and the slot.
    wait_for_log(&f, 0, &mut child, READING);
    let (first, rest) = load.chunks.split_at(2);
    for c in first {
        pg.psql_in("cdc_restart", c);
    }
    assert!(eventually(DEADLINE, || !f.lines("out.ndjson").is_empty()));
    let down = Instant::now();
    pg.kill();
    pg.start();
    let outage = down.elapsed();
    for c in rest {
        pg.psql_in("cdc_restart", c);
    }
    let all = eventually(DEADLINE, || {
        f.lines("out.ndjson").len() >= load.changes.len()
    });
    sigterm(&child);
    let status = wait_exit(&mut child, DEADLINE).expect("flowgate run stops on SIGTERM");
    let log = f.stderr(0);
    assert!(all, "not all changes after the restart: {log}");
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("reconnecting"), "{log}");
    // Not even repeated: the slot's position may go back with the crash, but the source skips
    // what it gives again.
    check(&f.lines("out.ndjson"), &load.changes, true);
    eprintln!(
        "cdc database killed: server back after {outage:.1?}, {} changes",
        load.changes.len()
    );
}

#[test]
fn types_keys_truncate_and_bad_settings() {
    let _t = Timer::start("db", "cdc types, keys, truncate, bad settings");
    let pg = Postgres::shared();
    let db = "cdc_types";
    let url = pg.create_database(db);
    pg.psql_in(
        db,
        "CREATE TABLE typed (id bigint PRIMARY KEY, n numeric, doc jsonb, ok boolean, \
           at timestamptz, body text, f double precision, small smallint);\n\
         CREATE TABLE nokey (line text);\n\
         CREATE TABLE full_nokey (a int, b text);\n\
         ALTER TABLE full_nokey REPLICA IDENTITY FULL;\n\
         CREATE TABLE full_pk (id int PRIMARY KEY, b text);\n\
         ALTER TABLE full_pk REPLICA IDENTITY FULL;",
    );
    let f = Fixture::new(&pipeline(
        "types",
        Delivery::ExactlyOnce,
        &url,
        &["typed", "public.nokey", "full_nokey", "full_pk"],
        "",
    ));
    let mut child = f.spawn(&[], 0);
    wait_for_log(&f, 0, &mut child, READING);
    let body = "it's \"quoted\"\nline two\t☃ ünïcødé \\ end";
    pg.psql_in(
        db,
        &format!(
            "INSERT INTO typed VALUES (1, 12345678901234567890.123456789, '{{\"a\": [1, 2.5, null], \"b\": {{\"c\": \"d\"}}}}', true, \
               '2024-02-29 12:34:56.789+00', '{}', 1.5, -3);\n\
             INSERT INTO typed (id) VALUES (2);\n\
             UPDATE typed SET ok = false, f = 'NaN' WHERE id = 1;\n\
             INSERT INTO nokey VALUES ('no key here');\n\
             INSERT INTO full_nokey VALUES (1, 'x');\n\
             UPDATE full_nokey SET b = 'y' WHERE a = 1;\n\
             DELETE FROM full_nokey;\n\
             INSERT INTO full_pk VALUES (5, 'p');\n\
             DELETE FROM full_pk;\n\
             TRUNCATE typed, nokey;",
            body.replace('\'', "''")
        ),
    );
    let want = 11;
    let done = eventually(DEADLINE, || f.lines("out.ndjson").len() >= want);
    sigterm(&child);
    let status = wait_exit(&mut child, DEADLINE).expect("flowgate run stops on SIGTERM");
    assert!(done && status.success(), "{status}: {}", f.stderr(0));
    let lines = f.lines("out.ndjson");
    let got: Vec<Seen> = lines.iter().map(seen).collect();
    assert_eq!(got.len(), want, "{lines:#?}");
    let row1 = json!({
        "id": 1,
        "n": "12345678901234567890.123456789",
        "doc": {"a": [1, 2.5, null], "b": {"c": "d"}},
        "ok": true,
        "at": "2024-02-29 12:34:56.789+00",
        "body": body,
        "f": 1.5,
        "small": -3,
    });
    fn c(s: &Seen) -> (&str, Change) {
        (s.table.as_str(), s.change.clone())
    }
    let change = |op, key, before, after| Change {
        op,
        key,
        before,
        after,
    };
    assert_eq!(
        c(&got[0]),
        (
            "public.typed",
            change("insert", json!({"id": 1}), Value::Null, row1.clone())
        )
    );
    let nulls = json!({"id": 2, "n": null, "doc": null, "ok": null, "at": null, "body": null, "f": null, "small": null});
    assert_eq!(
        c(&got[1]),
        (
            "public.typed",
            change("insert", json!({"id": 2}), Value::Null, nulls)
        )
    );
    let mut row1b = row1.clone();
    row1b["ok"] = json!(false);
    row1b["f"] = json!("NaN");
    assert_eq!(
        c(&got[2]),
        (
            "public.typed",
            change("update", json!({"id": 1}), Value::Null, row1b)
        )
    );
    // No primary key, default replica identity: no key (inserts only: PostgreSQL refuses
    // updates and deletes of such a table in a publication).
    assert_eq!(
        c(&got[3]),
        (
            "public.nokey",
            change(
                "insert",
                Value::Null,
                Value::Null,
                json!({"line": "no key here"})
            )
        )
    );
    // REPLICA IDENTITY FULL without a primary key: the whole row is the key, and `before`.
    let x = json!({"a": 1, "b": "x"});
    let y = json!({"a": 1, "b": "y"});
    assert_eq!(
        c(&got[4]),
        (
            "public.full_nokey",
            change("insert", x.clone(), Value::Null, x.clone())
        )
    );
    assert_eq!(
        c(&got[5]),
        (
            "public.full_nokey",
            change("update", y.clone(), x.clone(), y.clone())
        )
    );
    assert_eq!(
        c(&got[6]),
        (
            "public.full_nokey",
            change("delete", y.clone(), y, Value::Null)
        )
    );
    // REPLICA IDENTITY FULL with a primary key: keyed by it, the whole old row in `before`.
    let p = json!({"id": 5, "b": "p"});
    assert_eq!(
        c(&got[7]),
        (
            "public.full_pk",
            change("insert", json!({"id": 5}), Value::Null, p.clone())
        )
    );
    assert_eq!(
        c(&got[8]),
        (
            "public.full_pk",
            change("delete", json!({"id": 5}), p, Value::Null)
        )
    );
    // TRUNCATE: one event per table, no key, no rows.
    let truncated: Vec<(&str, Change)> = got[9..].iter().map(c).collect();
    assert_eq!(
        truncated,
        [
            (
                "public.typed",
                change("truncate", Value::Null, Value::Null, Value::Null)
            ),
            (
                "public.nokey",
                change("truncate", Value::Null, Value::Null, Value::Null)
            ),
        ]
    );
    assert!(lsn(&got[10].lsn) > lsn(&got[0].lsn));
    // A timestamp of the commit's time, in milliseconds.
    let ts = lines[0]["timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - 600_000..=now).contains(&ts), "{ts} vs {now}");

    // Bad settings: each a clear error, before anything is read.
    let bad = |name: &str, tables: &[&str], url: &str, extra: &str, says: &[&str]| {
        let f = Fixture::new(&pipeline(name, Delivery::AtLeastOnce, url, tables, extra));
        let (status, stderr) = f.run_bounded();
        assert!(!status.success(), "{name}: {stderr}");
        for s in says {
            assert!(stderr.contains(s), "{name}: no {s:?} in: {stderr}");
        }
    };
    bad(
        "missing",
        &["typed", "nope"],
        &url,
        "",
        &["table nope does not exist in database cdc_types"],
    );
    pg.psql_in(db, "CREATE PUBLICATION narrow FOR TABLE typed");
    bad(
        "narrow",
        &["typed", "nokey"],
        &url,
        "publication = \"narrow\"\n",
        &[
            "publication narrow does not publish \"public\".\"nokey\"",
            "ALTER PUBLICATION \"narrow\" ADD TABLE \"public\".\"nokey\"",
        ],
    );
    pg.psql_in(
        db,
        "CREATE ROLE plain LOGIN;\n\
         CREATE TABLE owned (id int PRIMARY KEY);\n\
         ALTER TABLE owned OWNER TO plain;\n\
         GRANT CREATE ON DATABASE cdc_types TO plain;",
    );
    let plain = url.replace("postgres@", "plain@");
    bad(
        "plain",
        &["owned"],
        &plain,
        "",
        &[
            "role plain may not use replication slots",
            "ALTER ROLE \"plain\" REPLICATION",
        ],
    );
}

#[test]
fn wal_level_replica_is_a_clear_error() {
    let _t = Timer::start("db", "cdc wal_level replica");
    let pg = Postgres::new();
    pg.psql("ALTER SYSTEM SET wal_level = replica");
    pg.stop();
    pg.start();
    assert_eq!(pg.psql("SHOW wal_level"), "replica");
    let url = pg.create_database("cdc_wal");
    pg.psql_in("cdc_wal", "CREATE TABLE t (id int PRIMARY KEY)");
    let f = Fixture::new(&pipeline("wal", Delivery::AtLeastOnce, &url, &["t"], ""));
    let (status, stderr) = f.run_bounded();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("wal_level is replica")
            && stderr.contains("ALTER SYSTEM SET wal_level = logical"),
        "{stderr}"
    );
}
