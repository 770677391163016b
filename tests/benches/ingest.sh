#!/usr/bin/env bash
# HTTP ingest measured with wrk (Debian's package): keep-alive clients posting NDJSON bodies of
# 1,000 events and of 1 event to a running `flowgate run` (release build; an http source into a
# topic of 2 partitions, which no stage reads: ingest alone; every answer after the sync), and, as
# the ceiling of the HTTP stack and wrk on this machine, `GET /health`. wrk and flowgate share
# the machine's cores. Prints Markdown rows; fails if any answer is not 200.
#
# Usage: tests/benches/ingest.sh [--seconds S] [--connections C] [--baseline FLOWGATE_BINARY]
#   --baseline measures another build of flowgate the same way in the same run, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=5
connections=16
baseline=
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --seconds S, --connections C, --baseline BINARY)" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "no wrk: apt-get install wrk (scripts/install-test-deps installs it)" >&2; exit 1; }
cargo build --release --quiet -p flowgate

dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
cat >"$dir/pipeline.toml" <<TOML
name = "ingest-bench"

[http]
listen = "127.0.0.1:0"
max-body = "16MiB"

[topics.in]
partitions = 2

[sources.api]
type = "http"
topic = "in"

# One event a second elsewhere: a step that keeps a --baseline build from before ingest-only
# runs served on running (it would end at once); it costs the measured one nothing.
[sources.tick]
type = "generator"
topic = "ticks"
rate = 1
TOML
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
for n in (1, 1000):
    with open(f"{d}/body{n}.ndjson", "w") as f:
        for i in range(n):
            f.write(json.dumps({"key": f"user-{i % 100}", "value": {"id": i, "user": f"u{i % 1000}", "action": "click", "keep": i % 2 == 0}}) + "\n")
PY
cat >"$dir/post.lua" <<'LUA'
local f = io.open(os.getenv("BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
LUA

# wrk's requests/s, failing on any answer that is not 2xx or on socket errors.
run() {
  local out
  out=$(env "$@")
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "wrk saw failed requests:" >&2
    echo "$out" >&2
    exit 1
  fi
  sed -n 's/^Requests\/sec: *//p' <<<"$out"
}

# Starts `$1 run` on a fresh data directory; sets pid and addr.
start() {
  rm -rf "$dir/data"
  FLOWGATE_DATA_DIR="$dir/data" "$1" run --no-watch "$dir/pipeline.toml" 2>"$dir/run.log" &
  pid=$!
  addr=
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/.*HTTP server listening.*addr=\([^ ]*\).*/\1/p' "$dir/run.log")
    [ -n "$addr" ] && return
    kill -0 "$pid" 2>/dev/null || { cat "$dir/run.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "flowgate did not listen in 60 s:" >&2
  cat "$dir/run.log" >&2
  exit 1
}

# Requests/s of binary $1 for the three loads: "bulk single health".
measure() {
  start "$1"
  # A warm-up (the log's first segments), not reported.
  BODY="$dir/body1000.ndjson" wrk -t2 -c"$connections" -d1s -s "$dir/post.lua" "http://$addr/topics/in/events" >/dev/null
  local bulk single health
  bulk=$(run BODY="$dir/body1000.ndjson" wrk -t2 -c"$connections" -d"${seconds}s" -s "$dir/post.lua" "http://$addr/topics/in/events")
  single=$(run BODY="$dir/body1.ndjson" wrk -t2 -c"$connections" -d"${seconds}s" -s "$dir/post.lua" "http://$addr/topics/in/events")
  health=$(run wrk -t2 -c"$connections" -d"${seconds}s" "http://$addr/health")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "$bulk $single $health"
}

read -r bulk single health < <(measure target/release/flowgate)
if [ -n "$baseline" ]; then
  read -r b_bulk b_single b_health < <(measure "$baseline")
fi
python3 - "$connections" "$seconds" "$(wc -c <"$dir/body1000.ndjson")" "$bulk" "$single" "$health" ${baseline:+"$b_bulk" "$b_single" "$b_health"} <<'PY'
import sys
c, s, size = sys.argv[1:4]
now = [float(x) for x in sys.argv[4:7]]
base = [float(x) for x in sys.argv[7:10]] or None
rows = [("NDJSON bodies of 1,000 events (%s bytes)" % f"{int(size):,}", 1000), ("NDJSON bodies of 1 event", 1), ("GET /health (no event: the HTTP stack and wrk)", 0)]
head = f"| HTTP ingest (wrk, {c} keep-alive connections, {s} s each) | requests/s | events/s |"
line = "|---|---:|---:|"
if base:
    head += " baseline requests/s | baseline events/s | ratio |"
    line += "---:|---:|---:|"
print(head)
print(line)
for (name, n), r, b in zip(rows, now, base or [None] * 3):
    fmt = lambda e: (f"{e / 1e6:.2f} M" if e >= 1e6 else f"{e / 1e3:.1f} k") if n else ""
    ev = fmt(r * n)
    out = f"| {name} | {r:,.0f} | {ev} |"
    if base:
        bev = fmt(b * n)
        out += f" {b:,.0f} | {bev} | {r / b:.2f}× |"
    print(out)
PY
