#!/usr/bin/env bash
# The PostgreSQL change source benchmark: how fast `flowgate run` turns the changes of a
# pgbench write load into durable events of its log.
#
# 1. A PostgreSQL 15 server of its own (initdb into target/cdc-bench/pg, wal_level = logical,
#    on a free port of 127.0.0.1), `pgbench -i` tables, a publication of the four pgbench tables
#    and a logical slot made after the initial load (so only the benchmark's changes are in it).
# 2. The load: pgbench's TPC-B-like transactions (3 updates and 1 insert each: 4 row changes),
#    `--clients` connections, until the slot holds `--changes` changes. Its own rate is printed.
# 3. The server's decoding alone: pg_logical_slot_peek_binary_changes over all of it with
#    pgoutput, counted in SQL (what the SQL decoding functions cost before Flowgate sees a
#    byte: the ceiling of this design).
# 4. `--runs` times: a copy of the slot (pg_copy_logical_replication_slot: the same changes
#    each run), a fresh data directory, and `flowgate run --bounded` of a pipeline with the
#    postgres-cdc source and nothing else (each batch appended, synced, checkpointed, then the
#    slot advanced). changes/s = changes / wall time of the whole process (start, connect,
#    read, append, sync, stop); the run's own count of events appended must be the changes
#    written, and the slot must be confirmed to the end.
#
#   tests/benches/cdc.sh [--changes 200000] [--runs 3] [--clients 4] [--batch-size 10000]
#                        [--delivery at-least-once|exactly-once] [--flowgate PATH] [--no-build]
#
# The Flowgate binary is target/release/flowgate, built first unless --no-build; --flowgate
# takes another (e.g. target/debug/flowgate: figures of an unoptimised build). PostgreSQL's
# binaries: /usr/lib/postgresql/15/bin, or FLOWGATE_POSTGRES_BIN. Run as root, the server runs as
# the `postgres` user. The server is stopped and its directory removed at the end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
pg_bin=${FLOWGATE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
work=$root/target/cdc-bench
flowgate=$root/target/release/flowgate

changes=200000 runs=3 clients=4 batch_size=10000 delivery=at-least-once build=1
while [ $# -gt 0 ]; do
  case "$1" in
  --changes) changes=$2; shift ;;
  --runs) runs=$2; shift ;;
  --clients) clients=$2; shift ;;
  --batch-size) batch_size=$2; shift ;;
  --delivery) delivery=$2; shift ;;
  --flowgate) flowgate=$(realpath "$2"); build=; shift ;;
  --no-build) build= ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
  shift
done
say() { echo "cdc.sh: $*" >&2; }

if [ -n "$build" ]; then
  (cd "$root" && cargo build --release -p flowgate)
fi
[ -x "$flowgate" ] || { say "$flowgate is missing: cargo build --release -p flowgate"; exit 1; }

# The server, as the `postgres` user when run as root (PostgreSQL refuses root).
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf "$work"
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$work/pg"
data=$work/pg/data
"${as_pg[@]}" "$pg_bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$work/pg/initdb.log"
cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
wal_level = logical
max_replication_slots = $((runs + 4))
max_wal_size = 4GB
shared_buffers = 256MB
EOF
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$work/pg/postgres.log" -w start >/dev/null
stop() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop EXIT

url="postgresql://postgres@127.0.0.1:$port/bench"
sql() { "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d bench -c "$1"; }
"$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres bench
"$pg_bin/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$port" -U postgres bench 2>"$work/pgbench-init.log"
sql "CREATE PUBLICATION bench FOR TABLE pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history" >/dev/null
sql "SELECT 1 FROM pg_create_logical_replication_slot('bench_base', 'pgoutput')" >/dev/null

# The load: 4 row changes a transaction.
per_client=$(((changes + 4 * clients - 1) / (4 * clients)))
say "load: pgbench, $clients clients x $per_client transactions"
"$pg_bin/pgbench" -n -c "$clients" -j "$clients" -t "$per_client" -h 127.0.0.1 -p "$port" -U postgres bench >"$work/pgbench.log" 2>&1
load_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.log" | head -1)
total=$((per_client * clients * 4))
wal=$(sql "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) FROM pg_replication_slots WHERE slot_name = 'bench_base'")
say "load: $total changes, $load_tps transactions/s ($(python3 -c "print(round($load_tps * 4))") changes/s), $wal of WAL"

# The server's decoding alone.
sql "SELECT 1 FROM pg_copy_logical_replication_slot('bench_base', 'bench_decode')" >/dev/null
t0=$(date +%s.%N)
decoded=$(sql "SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68)) FROM pg_logical_slot_peek_binary_changes('bench_decode', NULL, NULL, 'proto_version', '1', 'publication_names', 'bench')")
t1=$(date +%s.%N)
decode_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
say "server decoding alone (one peek of everything): $decoded changes in ${decode_s}s, $(python3 -c "print(round($decoded / ($t1 - $t0)))") changes/s"
[ "$decoded" = "$total" ] || { say "the slot holds $decoded changes, $total were written"; exit 1; }

results=()
for r in $(seq 1 "$runs"); do
  dir=$work/run-$r
  mkdir -p "$dir"
  sql "SELECT 1 FROM pg_copy_logical_replication_slot('bench_base', 'bench_run_$r')" >/dev/null
  cat >"$dir/pipeline.toml" <<EOF
name = "cdcbench"
delivery = "$delivery"

[topics.changes]
partitions = 1

[sources.pg]
type = "postgres-cdc"
topic = "changes"
url = "$url"
tables = ["pgbench_accounts", "pgbench_tellers", "pgbench_branches", "pgbench_history"]
slot = "bench_run_$r"
publication = "bench"
batch-size = $batch_size
EOF
  t0=$(date +%s.%N)
  FLOWGATE_DATA_DIR=$dir/data FLOWGATE_LOG=info NO_COLOR=1 "$flowgate" run --bounded "$dir/pipeline.toml" 2>"$dir/run.log" </dev/null
  t1=$(date +%s.%N)
  appended=$(sed -n 's/^ *source pg: \([0-9]*\) events appended.*/\1/p' "$dir/run.log")
  [ "$appended" = "$total" ] || { say "run $r appended ${appended:-no} events, $total were written (see $dir/run.log)"; exit 1; }
  left=$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), confirmed_flush_lsn) > 1048576 FROM pg_replication_slots WHERE slot_name = 'bench_run_$r'")
  [ "$left" = f ] || { say "run $r did not confirm its slot to the end (see $dir/run.log)"; exit 1; }
  secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  rate=$(python3 -c "print(round($total / ($t1 - $t0)))")
  say "run $r: $total changes in ${secs}s: $rate changes/s"
  results+=("$rate")
  sql "SELECT pg_drop_replication_slot('bench_run_$r')" >/dev/null
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
echo "cdc: $total changes (pgbench, $clients clients, $load_tps tps), delivery $delivery, batch-size $batch_size, $(basename "$flowgate")"
echo "cdc: server decoding alone ${decode_s}s; flowgate runs (changes/s): ${results[*]}; median $median"
