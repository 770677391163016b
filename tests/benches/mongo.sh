#!/usr/bin/env bash
# The MongoDB sink benchmark: documents per second into FerretDB (a MongoDB wire-compatible
# server on PostgreSQL, not mongod: see tests/src/mongo.rs), Flowgate against pymongo alone.
#
# For each batch size B (--batches, default 1000,5000), --runs times in turn:
#   flowgate  `flowgate run --bounded` of a pipeline file source (N JSON events) -> mongodb sink
#             (mode insert, batch-size B, a fresh data directory and a dropped collection);
#             docs/s = N / wall time of the whole process (start, reading the file into the log,
#             writing); p50/p99 = the sink's write latency per batch, from its final log line.
#   pymongo   insert_many of the same N documents (the same _id and fields) in batches of B,
#             unordered (tests/benches/mongo_bench.py insert); docs/s = N / time of the inserts
#             alone (the documents are read and decoded before the clock starts); p50/p99 per
#             insert_many call.
# Then the medians of each side and their ratio (flowgate / pymongo). Every run's collection is
# counted afterwards and must hold N documents.
#
#   tests/benches/mongo.sh [--port 27017] [--events 200000] [--batches 1000,5000] [--runs 3]
#                          [--no-build]   (FLOWGATE_BIN: another flowgate binary)
#
# The server: one answering on 127.0.0.1:PORT is used as it is (its database `bench` is
# written); otherwise PostgreSQL (tests/db/db.sh pg-bin) and FerretDB (tests/db/db.sh ferretdb,
# with the flags of tests/src/mongo.rs) are started with their data in target/mongo-bench and
# stopped at the end. Work files (events, pipelines, data directories, logs) are in
# target/mongo-bench-work. Not run in CI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
db_sh=$root/tests/db/db.sh
client=$root/tests/db/mongo.py
helper=$here/mongo_bench.py
flowgate=${FLOWGATE_BIN:-$root/target/release/flowgate}
work=$root/target/mongo-bench-work
server_dir=$root/target/mongo-bench

port=27017 events=200000 batches=1000,5000 runs=3 build=1
while [ $# -gt 0 ]; do
  case "$1" in
  --port) port=$2; shift ;;
  --events) events=$2; shift ;;
  --batches) batches=$2; shift ;;
  --runs) runs=$2; shift ;;
  --no-build) build= ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
  shift
done
url=mongodb://127.0.0.1:$port/
say() { echo "mongo.sh: $*" >&2; }

if [ -n "$build" ]; then
  (cd "$root" && cargo build --release -p flowgate)
fi
[ -x "$flowgate" ] || {
  say "$flowgate is missing: cargo build --release -p flowgate"
  exit 1
}
python3 -c 'import pymongo' 2>/dev/null || {
  say "python3 cannot import pymongo: run scripts/install-test-deps"
  exit 1
}

# The server: the one on the port, or PostgreSQL + FerretDB of our own.
pg_pid= ferret_pid=
stop_servers() {
  [ -n "$ferret_pid" ] && kill "$ferret_pid" 2>/dev/null && wait "$ferret_pid" 2>/dev/null || true
  if [ -n "$pg_pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$server_dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}
trap stop_servers EXIT
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if python3 "$client" --url "$url" ping --deadline 2 2>/dev/null; then
  say "using the server on $url"
else
  "$db_sh" check mongo
  pg_bin=$("$db_sh" pg-bin)
  ferretdb=$("$db_sh" ferretdb)
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rm -rf "$server_dir"
  mkdir -p "$server_dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$server_dir"
  say "starting PostgreSQL on 127.0.0.1:$pg_port and FerretDB on $url (in $server_dir)"
  as_pg "$pg_bin/initdb" -D "$server_dir/pg" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$server_dir/initdb.log"
  as_pg "$pg_bin/pg_ctl" -D "$server_dir/pg" -l "$server_dir/pg.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" start >/dev/null
  pg_pid=1
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE ferretdb" >/dev/null
  # The flags of tests/src/mongo.rs; pool_max_conns: see FERRETDB_POOL_MAX_CONNS there.
  "$ferretdb" --handler=postgresql \
    "--postgresql-url=postgres://postgres@127.0.0.1:$pg_port/ferretdb?pool_max_conns=50" \
    "--listen-addr=127.0.0.1:$port" "--state-dir=$server_dir/state" \
    --debug-addr=- --telemetry=disable --log-level=warn --log-format=text \
    >"$server_dir/ferretdb.log" 2>&1 &
  ferret_pid=$!
  python3 "$client" --url "$url" ping --deadline 60 || {
    say "FerretDB did not answer; the end of $server_dir/ferretdb.log:"
    tail -20 "$server_dir/ferretdb.log" >&2
    exit 1
  }
fi

rm -rf "$work"
mkdir -p "$work"
say "making $events events"
python3 "$helper" make "$events" "$work/events.ndjson" "$work/docs.jsonl"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-7s %-9s %4s %12s %10s %10s\n' batch side run docs/s p50_ms p99_ms
IFS=, read -ra sizes <<<"$batches"
summary=()
for b in "${sizes[@]}"; do
  : >"$work/fg-$b" && : >"$work/py-$b"
  for r in $(seq 1 "$runs"); do
    # Flowgate.
    dir=$work/run-$b-$r
    mkdir -p "$dir"
    cat >"$dir/pipeline.toml" <<TOML
name = "mongo-bench"

[topics.in]
partitions = 1

[sources.file]
type = "file"
topic = "in"
path = "$work/events.ndjson"

[sinks.docs]
type = "mongodb"
input = "in"
url = "$url"
database = "bench"
collection = "flowgate"
batch-size = $b
TOML
    python3 "$client" --url "$url" drop bench flowgate
    began=$(date +%s.%N)
    FLOWGATE_DATA_DIR=$dir/data FLOWGATE_LOG=info NO_COLOR=1 "$flowgate" run --bounded "$dir/pipeline.toml" 2>"$dir/run.log" || {
      say "flowgate run failed; the end of $dir/run.log:"
      tail -20 "$dir/run.log" >&2
      exit 1
    }
    ended=$(date +%s.%N)
    n=$(python3 "$client" --url "$url" count bench flowgate)
    [ "$n" -eq "$events" ] || { say "flowgate wrote $n documents of $events"; exit 1; }
    line=$(grep -m1 'MongoDB sink done' "$dir/run.log")
    p50=$(sed -n 's/.*p50 \([0-9.]*\) ms.*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$line")
    rate=$(awk -v n="$events" -v a="$began" -v z="$ended" 'BEGIN { printf "%.0f", n / (z - a) }')
    echo "$rate $p99" >>"$work/fg-$b"
    printf '%-7s %-9s %4s %12s %10s %10s\n' "$b" flowgate "$r" "$rate" "$p50" "$p99"

    # pymongo.
    out=$(python3 "$helper" insert "$url" bench pymongo "$work/docs.jsonl" --batch "$b")
    read -r rate p50 p99 < <(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(round(d["inserted"] / d["seconds"]), "%.1f" % d["p50_ms"], "%.1f" % d["p99_ms"])' "$out")
    echo "$rate $p99" >>"$work/py-$b"
    printf '%-7s %-9s %4s %12s %10s %10s\n' "$b" pymongo "$r" "$rate" "$p50" "$p99"
  done
  fg=$(cut -d' ' -f1 "$work/fg-$b" | median)
  py=$(cut -d' ' -f1 "$work/py-$b" | median)
  fg99=$(cut -d' ' -f2 "$work/fg-$b" | median)
  py99=$(cut -d' ' -f2 "$work/py-$b" | median)
  summary+=("$(awk -v b="$b" -v f="$fg" -v p="$py" -v f99="$fg99" -v p99="$py99" 'BEGIN { printf "batch %-6s flowgate %8.0f docs/s (p99 %s ms)   pymongo %8.0f docs/s (p99 %s ms)   ratio %.2f", b, f, f99, p, p99, f / p }')")
done
echo
echo "medians of $runs runs, $events documents each:"
printf '%s\n' "${summary[@]}"
