#!/usr/bin/env bash
# The PostgreSQL sink benchmark (docs/BENCHMARKS.md, "PostgreSQL"), on one server in one run:
# rows per second into a table through `flowgate run --bounded` (an NDJSON file source -> the
# postgres sink; a fresh data directory each run; the whole process timed, from start to exit,
# including reading the file into the log) against `psql`'s `\copy` of the same rows from a file
# in COPY's text format into the same table (the database's own bulk loader: the limit of this
# server here). The two run in turn (psql, Flowgate, psql, ...), the table emptied before each,
# and the ratio is taken pair by pair; the median is printed, with the sink's p99 commit latency
# (from its summary log line) and the batch sizes tried.
#
#   tests/benches/postgres.sh [--rows 500000] [--runs 5] [--batches 1000,10000,50000]
#                             [--mode insert|upsert] [--url postgres://...] [--no-build]
#
# The server: --url is used as it is (its database flowgate_bench is made again); otherwise a
# PostgreSQL 15 (Debian's, as the tests use) is made with initdb in target/pg-bench, started on a
# free port of 127.0.0.1 and stopped at the end. The work files are in target/pg-bench-work.
set -euo pipefail
cd "$(dirname "$0")/../.."

rows=500000
runs=5
batches=1000,10000,50000
mode=insert
url=
build=1
while [ $# -gt 0 ]; do
  case $1 in
    --rows) rows=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --url) url=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

pg_bin=${FLOWGATE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$pg_bin/psql" ] || { echo "no PostgreSQL 15 in $pg_bin: run scripts/install-test-deps" >&2; exit 1; }
work=target/pg-bench-work
rm -rf "$work"
mkdir -p "$work"

if [ "$build" = 1 ]; then
  cargo build --release -p flowgate
fi
flowgate=target/release/flowgate

started=
if [ -z "$url" ]; then
  dir=$PWD/target/pg-bench
  rm -rf "$dir"
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c max_wal_size=4GB" start >/dev/null
  started=$dir
  trap '"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$started/data" -m fast stop >/dev/null' EXIT
  url="postgres://postgres@127.0.0.1:$port/flowgate_bench"
fi
admin_url=${url%/*}/postgres
psql() { "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
psql "$admin_url" -c "DROP DATABASE IF EXISTS flowgate_bench" -c "CREATE DATABASE flowgate_bench"
psql "$url" -c "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2), note text, at timestamptz)"

# The same rows twice: NDJSON events for Flowgate, COPY text for psql.
python3 - "$rows" "$work" <<'EOF'
import json, sys, datetime
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/events.ndjson", "w") as ev, open(f"{work}/rows.copy", "w") as cp:
    for i in range(n):
        ts = 1767225600000 + i
        customer = f"customer-{i % 5000}"
        amount = f"{i % 100000 / 100:.2f}"
        note = f"order {i} for {customer}, shipped by ground"
        ev.write(json.dumps({"key": customer, "value": {"id": i, "customer": customer, "amount": float(amount), "note": note}, "timestamp": ts}) + "\n")
        at = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds")
        cp.write(f"{i}\t{customer}\t{amount}\t{note}\t{at}\n")
EOF

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

conflict=
[ "$mode" = upsert ] && conflict=$'mode = "upsert"\nconflict = ["id"]'

printf 'PostgreSQL sink benchmark: %s rows, mode %s, %s runs per batch size\n' "$rows" "$mode" "$runs"
printf '%-10s %14s %14s %8s %14s\n' batch psql_rows/s flowgate_rows/s ratio p99_commit_ms
for batch in ${batches//,/ }; do
  cat >"$work/pipeline.toml" <<EOF
name = "pg-bench"
[topics.orders]
partitions = 1
[sources.events]
type = "file"
path = "events.ndjson"
topic = "orders"
[sinks.db]
type = "postgres"
input = "orders"
url = "$url"
table = "orders"
batch-size = $batch
$conflict
[sinks.db.columns]
id = "value.id"
customer = "value.customer"
amount = "value.amount"
note = "value.note"
at = "timestamp"
EOF
  : >"$work/ratios" ; : >"$work/psql" ; : >"$work/flowgate" ; : >"$work/p99"
  for run in $(seq "$runs"); do
    psql "$url" -c "TRUNCATE orders" -c "DROP TABLE IF EXISTS flowgate_sink_positions"
    t0=$(now)
    psql "$url" -c "\\copy orders (id, customer, amount, note, at) FROM '$work/rows.copy'"
    t1=$(now)
    psql "$url" -c "TRUNCATE orders" -c "DROP TABLE IF EXISTS flowgate_sink_positions"
    rm -rf "$work/data"
    t2=$(now)
    FLOWGATE_LOG=info NO_COLOR=1 "$flowgate" run --bounded "$work/pipeline.toml" --data-dir "$work/data" 2>"$work/run.log" >/dev/null
    t3=$(now)
    got=$(psql "$url" -c "SELECT count(*) FROM orders")
    [ "$got" = "$rows" ] || { echo "flowgate wrote $got rows of $rows" >&2; tail -20 "$work/run.log" >&2; exit 1; }
    p=$(awk -v n="$rows" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}'); echo "$p" >>"$work/psql"
    f=$(awk -v n="$rows" -v a="$t2" -v b="$t3" 'BEGIN {print n / (b - a)}'); echo "$f" >>"$work/flowgate"
    awk -v p="$p" -v f="$f" 'BEGIN {print f / p}' >>"$work/ratios"
    sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' "$work/run.log" | tail -n 1 >>"$work/p99"
  done
  printf '%-10s %14.0f %14.0f %8.2f %14s\n' "$batch" "$(median <"$work/psql")" "$(median <"$work/flowgate")" \
    "$(median <"$work/ratios")" "$(median <"$work/p99")"
done
