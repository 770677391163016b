-- The tables of the warehouse walk-through (examples/warehouse.toml):
--   psql "$WAREHOUSE_PG" -f examples/warehouse.sql

-- Orders as they are now: one row per order, upserted by its number.
CREATE TABLE IF NOT EXISTS orders (
    order_id   bigint PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12, 2) NOT NULL CHECK (amount >= 0),
    note       text,
    ordered_at timestamptz NOT NULL
);

-- Sales per customer and minute of event time, upserted as each window fires (a late order
-- fires its window again, and the row is updated).
CREATE TABLE IF NOT EXISTS sales_per_minute (
    customer text NOT NULL,
    minute   timestamptz NOT NULL,
    orders   bigint NOT NULL,
    revenue  numeric(14, 2) NOT NULL,
    PRIMARY KEY (customer, minute)
);

-- Customers, whose changes flow the other way: into MongoDB, PII redacted.
CREATE TABLE IF NOT EXISTS customers (
    id    bigint PRIMARY KEY,
    name  text NOT NULL,
    email text,
    city  text
);
-- Updates and deletes carry the whole row before the change, not only its key.
ALTER TABLE customers REPLICA IDENTITY FULL;
