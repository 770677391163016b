//! The walk-through `examples/warehouse.toml` as it is written (its plugin paths pointed at the
//! test build's plugins, its HTTP port at a free one), against the harness's PostgreSQL and
//! FerretDB (a MongoDB wire-compatible server, not mongod): orders over HTTP into a table, a
//! collection and a per-minute table; a table's changes into a collection.

use std::time::Duration;

use flowgate_tests::fixture::{Fixture, eventually, http, listen_addr, sigterm, wait_exit};
use flowgate_tests::mongo::Mongo;
use flowgate_tests::plugins::{JSON_SCHEMA, PII_REDACT, WINDOW_STATS};
use flowgate_tests::postgres::Postgres;
use serde_json::{Value, json};

const DB: &str = "warehouse_walkthrough";
const MONGO_DB: &str = "warehouse_walkthrough";
const WAIT: Duration = Duration::from_secs(120);

fn example(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_warehouse_walk_through_runs_as_written() {
    let _t = crate::Timer::start("warehouse walk-through");
    let pg = Postgres::shared();
    let mongo = Mongo::shared();
    let url = pg.create_database(DB);
    pg.psql_in(DB, &example("warehouse.sql"));
    let pipeline = example("warehouse.toml")
        .replace(
            "../plugins/target/wasm32-wasip2/release/pii_redact.wasm",
            PII_REDACT,
        )
        .replace(
            "../plugins/target/wasm32-wasip2/release/json_schema.wasm",
            JSON_SCHEMA,
        )
        .replace(
            "../plugins/target/wasm32-wasip2/release/window_stats.wasm",
            WINDOW_STATS,
        )
        .replace("listen = \"127.0.0.1:9465\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "database = \"warehouse\"",
            &format!("database = \"{MONGO_DB}\""),
        );
    let f = Fixture::new(&pipeline);
    let log = std::fs::File::create(f.path("run-0.log")).unwrap();
    let mut child = f
        .command(&["run"])
        .env("WAREHOUSE_PG", &url)
        .env("WAREHOUSE_MONGO", mongo.url())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = listen_addr(&f, 0, &mut child);

    // The change source made its slot: changes from now on are read.
    assert!(
        eventually(WAIT, || {
            pg.psql_in(
            DB,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'flowgate_warehouse_customer_changes'"
        ) == "1"
        }),
        "no replication slot: {}",
        f.stderr(0)
    );
    pg.psql_in(
        DB,
        "INSERT INTO customers VALUES (1, 'Alice', 'alice@example.com', 'Paris'), (2, 'Bob', 'bob@example.com', 'Oslo'); \
         UPDATE customers SET city = 'Lyon' WHERE id = 1; DELETE FROM customers WHERE id = 2",
    );

    let (status, _, body) = http(
        &addr,
        "POST",
        "/topics/orders/events",
        &[("content-type", "application/x-ndjson")],
        example("orders.ndjson").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");

    // Orders: eight valid ones (order 4's amount is negative), redacted, a row each.
    assert!(
        eventually(WAIT, || pg.psql_in(DB, "SELECT count(*) FROM orders")
            == "8"),
        "orders: {}\n{}",
        pg.psql_in(DB, "SELECT count(*) FROM orders"),
        f.stderr(0)
    );
    let rows = pg.rows_in(
        DB,
        "SELECT order_id, customer, amount::text AS amount, note, (extract(epoch FROM ordered_at) * 1000)::bigint AS at FROM orders ORDER BY order_id",
    );
    let ids: Vec<u64> = rows
        .iter()
        .map(|r| r["order_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(
        rows[0],
        json!({"order_id": 1, "customer": "alice", "amount": "25.00", "note": "ship to [EMAIL]", "at": 1767225600000u64})
    );
    assert_eq!(rows[1]["note"], json!("call [PHONE]"));

    // The same orders as documents, by order number.
    assert!(
        eventually(WAIT, || mongo.count(MONGO_DB, "orders") == 8),
        "documents: {}\n{}",
        mongo.count(MONGO_DB, "orders"),
        f.stderr(0)
    );
    let docs = mongo.find(MONGO_DB, "orders");
    let one = docs
        .iter()
        .find(|d| d["_id"] == json!(1))
        .unwrap_or_else(|| panic!("no order 1: {docs:?}"));
    assert_eq!(one["note"], json!("ship to [EMAIL]"));
    assert_eq!(one["customer"], json!("alice"));
    assert_eq!(
        one["received"],
        json!({"$date": "2026-01-01T00:00:00Z"}),
        "the event time as a date"
    );

    // Alice's first minute (orders 1 and 3) and second (order 5) fired: later orders moved
    // the watermark past them.
    let minute = |start: &str| {
        pg.rows_in(
            DB,
            &format!(
                "SELECT orders, revenue::text AS revenue FROM sales_per_minute \
                 WHERE customer = 'alice' AND minute = '{start}'"
            ),
        )
    };
    assert!(
        eventually(WAIT, || minute("2026-01-01T00:01:00Z").len() == 1),
        "per-minute rows: {:?}\n{}",
        pg.rows_in(DB, "SELECT * FROM sales_per_minute"),
        f.stderr(0)
    );
    assert_eq!(
        minute("2026-01-01T00:00:00Z"),
        [json!({"orders": 2, "revenue": "65.00"})]
    );
    assert_eq!(
        minute("2026-01-01T00:01:00Z"),
        [json!({"orders": 1, "revenue": "15.00"})]
    );

    // The customers' changes: the latest of each, redacted, by primary key.
    let customers = || mongo.find(MONGO_DB, "customers");
    assert!(
        eventually(WAIT, || {
            let c = customers();
            c.len() == 2 && c.iter().all(|d| d["op"] != json!("insert"))
        }),
        "customers: {:?}\n{}",
        customers(),
        f.stderr(0)
    );
    let c = customers();
    let by_op = |op: &str| -> Value {
        c.iter()
            .find(|d| d["op"] == json!(op))
            .cloned()
            .unwrap_or_else(|| panic!("no {op}: {c:?}"))
    };
    let alice = by_op("update");
    assert_eq!(alice["after"]["city"], json!("Lyon"));
    assert_eq!(alice["after"]["email"], json!("[EMAIL]"));
    assert_eq!(alice["before"]["city"], json!("Paris"));
    let bob = by_op("delete");
    assert_eq!(bob["before"]["name"], json!("Bob"));
    assert_eq!(bob["after"], Value::Null);

    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}: {}", f.stderr(0));
}
