#!/usr/bin/env bash
# The scale-out benchmark (docs/BENCHMARKS.md, "More than one process"; docs/scaling.md), on one
# broker in one run:
#
# 1. Throughput of one pipeline, in -> three per-batch WASM maps (plugins/rust/uppercase) -> out,
#    every topic 6 partitions, the input written before the run (RECORDS records of 100 bytes):
#    - embedded: the embedded log, `flowgate run --bounded` (the input put there by
#      `flowgate produce`), the whole process timed;
#    - kafka-bounded: the same file on the Kafka log, `run --bounded`, the whole process timed;
#    - kafka-1, kafka-2, kafka-3: 1, 2 or 3 `flowgate run` processes (unbounded, sharing the
#      stages' partitions through their groups) started together, timed until a read_committed
#      reader (`kafka-copy wait`) has every output record.
#    events/s = records / seconds; ratios are taken within one round (embedded, kafka-bounded,
#    kafka-1, kafka-2, kafka-3, then again), so the machine's load hits all alike.
# 2. Rebalance pause: while one process runs, a second joins, then leaves (SIGTERM), --cycles
#    times; each stage partition that moves is paused from the giving-up line of its old owner
#    to the serving line of its new one (both in the processes' logs). p50/p99/max over all.
# 3. State restore: a stage with keyed state (plugins/rust/state-count) over K distinct keys,
#    run to its end, then run again: the restart's "keyed state restored" lines give the bytes
#    and the time of each partition's restore; ms per MB.
#
#   tests/benches/cluster.sh [--port 9092] [--records 1000000] [--rounds 3] [--cycles 5]
#                            [--keys 1000000] [--only throughput,rebalance,restore] [--no-build]
#
# The broker: one answering on 127.0.0.1:PORT is used; otherwise one is started with its data in
# target/cluster-bench and stopped at the end. Work files: target/cluster-bench-work. Every
# throughput run's output is checked (`kafka-copy check`: each record once, upper case).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
kafka_sh=$root/tests/kafka/kafka.sh
flowgate=$root/target/release/flowgate
copier=$root/target/release/kafka-copy
upper=$root/plugins/target/wasm32-wasip2/release/uppercase.wasm
count=$root/plugins/target/wasm32-wasip2/release/state_count.wasm
work=$root/target/cluster-bench-work

port=9092 records=1000000 rounds=3 cycles=5 keys=1000000 only=throughput,rebalance,restore build=1
while [ $# -gt 0 ]; do
  case "$1" in
  --port) port=$2; shift ;;
  --records) records=$2; shift ;;
  --rounds) rounds=$2; shift ;;
  --cycles) cycles=$2; shift ;;
  --keys) keys=$2; shift ;;
  --only) only=$2; shift ;;
  --no-build) build= ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
  shift
done
brokers=127.0.0.1:$port
wants() { [[ ",$only," == *",$1,"* ]]; }
say() { echo "cluster.sh: $*" >&2; }

if [ -n "$build" ]; then
  (cd "$root" && cargo build --release -p flowgate && cargo build --release -p flowgate-tests --bin kafka-copy)
fi
for f in "$upper" "$count"; do
  [ -f "$f" ] || { say "$f is missing: cargo build -p flowgate-tests builds the plugins"; exit 1; }
done

started_broker=
if "$kafka_sh" wait "$port" 5 2>/dev/null; then
  say "using the broker on $brokers"
else
  rm -rf "$root/target/cluster-bench"
  "$kafka_sh" start "$root/target/cluster-bench" "$port" >&2
  started_broker=1
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -z "$started_broker" ] || "$kafka_sh" stop "$root/target/cluster-bench" >&2 || true
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work"
export FLOWGATE_CACHE_DIR=$work/cache FLOWGATE_LOG=${FLOWGATE_LOG:-info} NO_COLOR=1

topics() { # PREFIX: the pipeline's Kafka topics, 6 partitions each
  for t in in t1 t2 out; do
    FLOWGATE_KAFKA_PORT=$port "$kafka_sh" topics --create --if-not-exists --topic "$1$t" --partitions 6 >/dev/null
  done
}

# pipeline NAME LOG-TABLE: in -> 3 x uppercase -> out.
pipeline() {
  cat <<EOF
name = "$1"
$2
[topics.in]
partitions = 6
external = true
[topics.t1]
partitions = 6
[topics.t2]
partitions = 6
[topics.out]
partitions = 6
[stages.s1]
plugin = "$upper"
input = "in"
output = "t1"
[stages.s2]
plugin = "$upper"
input = "t1"
output = "t2"
[stages.s3]
plugin = "$upper"
input = "t2"
output = "out"
EOF
}
kafka_log() { printf '[log]\nbackend = "kafka"\nbrokers = "%s"\ntopic-prefix = "%s"\nsession-timeout = "%s"\n' "$brokers" "$1" "${2:-6s}"; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$1"; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(round(int(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

if wants throughput; then
  # The embedded run's input, once: the same records as kafka-copy fill makes (100 bytes).
  python3 -c "
import sys
v = 'x' * 100
with open(sys.argv[1], 'w') as f:
    for i in range($records):
        f.write('{\"value\":\"%s\",\"timestamp\":%d}\n' % (v, 1000 + i))
" "$work/in.ndjson"
  printf '%-6s %-14s %10s %12s\n' round run seconds events/s
  results=()
  for r in $(seq 1 "$rounds"); do
    # embedded
    d=$work/e$r && mkdir -p "$d"
    pipeline "bench-e$r" "" >"$d/p.toml"
    "$flowgate" topic create in --partitions 6 --data-dir "$d/data" >/dev/null
    "$flowgate" produce in -i "$work/in.ndjson" --data-dir "$d/data" >/dev/null
    t0=$(now)
    "$flowgate" run --bounded "$d/p.toml" --data-dir "$d/data" 2>"$d/run.log" >/dev/null
    t=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)")
    grep -q "stage s3: $records in" "$d/run.log" || { say "embedded round $r: not every record went through"; tail "$d/run.log" >&2; exit 1; }
    printf '%-6s %-14s %10s %12s\n' "$r" embedded "$(secs "$t")" "$(rate "$records" "$t")"
    results+=("$r embedded $t")
    # kafka-bounded
    prefix=bench-b$r. && topics "$prefix"
    "$copier" fill --brokers "$brokers" --topic "${prefix}in" --count "$records" --size 100 --partitions 6 >/dev/null
    d=$work/b$r && mkdir -p "$d"
    pipeline "bench-b$r" "$(kafka_log "$prefix")" >"$d/p.toml"
    t0=$(now)
    "$flowgate" run --bounded "$d/p.toml" --data-dir "$d/data" 2>"$d/run.log" >/dev/null
    t=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)")
    "$copier" check --brokers "$brokers" --topic "${prefix}out" --count "$records" 2>/dev/null
    printf '%-6s %-14s %10s %12s\n' "$r" kafka-bounded "$(secs "$t")" "$(rate "$records" "$t")"
    results+=("$r kafka-bounded $t")
    for n in 1 2 3; do
      prefix=bench-k$n-$r. && topics "$prefix"
      "$copier" fill --brokers "$brokers" --topic "${prefix}in" --count "$records" --size 100 --partitions 6 >/dev/null
      d=$work/k$n-$r && mkdir -p "$d"
      pipeline "bench-k$n-$r" "$(kafka_log "$prefix")" >"$d/p.toml"
      pids=()
      t0=$(now)
      for i in $(seq 1 "$n"); do
        "$flowgate" run --no-watch "$d/p.toml" --data-dir "$d/data-$i" 2>"$d/run-$i.log" >/dev/null &
        pids+=($!)
      done
      "$copier" wait --brokers "$brokers" --topic "${prefix}out" --count "$records" --timeout 900 >/dev/null
      t=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)")
      for p in "${pids[@]}"; do kill -TERM "$p"; done
      for p in "${pids[@]}"; do wait "$p" || true; done
      pids=()
      "$copier" check --brokers "$brokers" --topic "${prefix}out" --count "$records" 2>/dev/null
      printf '%-6s %-14s %10s %12s\n' "$r" "kafka-$n" "$(secs "$t")" "$(rate "$records" "$t")"
      results+=("$r kafka-$n $t")
    done
  done
  printf '%s\n' "${results[@]}" | python3 -c "
import sys, statistics
rounds = {}
for line in sys.stdin:
    r, run, t = line.split()
    rounds.setdefault(r, {})[run] = float(t)
def ratio(a, b):
    xs = [v[b] / v[a] for v in rounds.values()]  # throughput of a over b = time b / time a
    return f'{statistics.median(xs):.2f} (min {min(xs):.2f}, max {max(xs):.2f})'
print('ratios of events/s, median of the rounds:')
print('  kafka-bounded / embedded :', ratio('kafka-bounded', 'embedded'))
print('  kafka-2 / kafka-1        :', ratio('kafka-2', 'kafka-1'))
print('  kafka-3 / kafka-1        :', ratio('kafka-3', 'kafka-1'))
"
fi

if wants rebalance; then
  # One process runs on a steady input; a second joins, then leaves, $cycles times.
  prefix=bench-rb. && topics "$prefix"
  d=$work/rb && mkdir -p "$d"
  pipeline bench-rb "$(kafka_log "$prefix" 6s)" >"$d/p.toml"
  "$copier" feed --brokers "$brokers" --topic "${prefix}in" --rate 20000 --seconds $((cycles * 12 + 20)) --size 100 >/dev/null 2>&1 &
  feeder=$!
  pids=($feeder)
  "$flowgate" run --no-watch "$d/p.toml" --data-dir "$d/data-a" 2>"$d/a.log" >/dev/null &
  a=$!
  pids+=($a)
  until grep -q "stage serves its partitions" "$d/a.log"; do sleep 0.1; done
  for c in $(seq 1 "$cycles"); do
    "$flowgate" run --no-watch "$d/p.toml" --data-dir "$d/data-b" 2>"$d/b-$c.log" >/dev/null &
    b=$!
    until [ "$(grep -c "stage serves its partitions" "$d/b-$c.log")" -ge 3 ]; do sleep 0.1; done
    sleep 3
    kill -TERM "$b" && wait "$b" || true
    sleep 3
  done
  kill -TERM "$a" && wait "$a" || true
  kill "$feeder" 2>/dev/null || true
  pids=()
  python3 - "$d" <<'EOF'
import glob, re, statistics, sys
from datetime import datetime
d = sys.argv[1]
def events(path):
    out = []
    for line in open(path):
        m = re.match(r"(\S+Z) .*(giving up partitions|stage serves its partitions)", line)
        if not m:
            continue
        t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        parts = re.search(r"partitions=\[([0-9, ]*)\]", line)
        stage = re.search(r"(?:stage=|topic=bench-rb\.)(\S+)", line)
        out.append((t, m.group(2), stage.group(1) if stage else "?", [int(p) for p in parts.group(1).split(",") if p.strip()] if parts else []))
    return out
logs = [events(f) for f in [f"{d}/a.log"] + sorted(glob.glob(f"{d}/b-*.log"))]
stage_of_topic = {"in": "s1", "t1": "s2", "t2": "s3"}
gives, serves = [], []
for log in logs:
    for t, kind, what, parts in log:
        if kind.startswith("giving"):
            gives.append((t, stage_of_topic.get(what, what), parts))
        else:
            serves.append((t, what, parts))
pauses = []
for t, stage, parts in gives:
    for p in parts:
        later = [s for s in serves if s[1] == stage and p in s[2] and s[0] >= t]
        if later:
            pauses.append((min(later)[0] - t) * 1000)
if not pauses:
    sys.exit("cluster.sh: no partition moved")
pauses.sort()
p99 = pauses[min(len(pauses) - 1, int(len(pauses) * 0.99))]
print(f"rebalance pause per moved stage partition: {len(pauses)} moves, p50 {statistics.median(pauses):.0f} ms, p99 {p99:.0f} ms, max {pauses[-1]:.0f} ms")
EOF
fi

if wants restore; then
  prefix=bench-rs. 
  for t in in counts; do FLOWGATE_KAFKA_PORT=$port "$kafka_sh" topics --create --if-not-exists --topic "$prefix$t" --partitions 6 >/dev/null; done
  python3 "$root/tests/kafka/produce.py" --bootstrap "$brokers" --topic "${prefix}in" --generate "$keys" >/dev/null
  d=$work/rs && mkdir -p "$d"
  cat >"$d/p.toml" <<EOF
name = "bench-rs"
$(kafka_log "$prefix")
[topics.in]
partitions = 6
external = true
[topics.counts]
partitions = 6
[stages.count]
plugin = "$count"
input = "in"
output = "counts"
state = true
EOF
  "$flowgate" run --bounded "$d/p.toml" --data-dir "$d/data" 2>"$d/first.log" >/dev/null
  "$flowgate" run --bounded "$d/p.toml" --data-dir "$d/data" 2>"$d/again.log" >/dev/null
  python3 - "$d/again.log" <<'EOF'
import re, sys
total_bytes = total_ms = wall_ms = 0
n = 0
for line in open(sys.argv[1]):
    if "keyed state restored" not in line:
        continue
    b = int(re.search(r"bytes=(\d+)", line).group(1))
    took = re.search(r"took=([0-9.]+)(ms|s|µs|us)", line)
    ms = float(took.group(1)) * {"ms": 1, "s": 1000, "µs": 0.001, "us": 0.001}[took.group(2)]
    total_bytes += b; total_ms += ms; wall_ms = max(wall_ms, ms); n += 1
if not n:
    sys.exit("cluster.sh: no restore logged")
mb = total_bytes / 1e6
print(f"state restore: {n} partitions side by side, {mb:.1f} MB of state, all restored {wall_ms:.0f} ms after they began ({wall_ms / mb:.0f} ms per MB); {total_ms / mb:.0f} ms per MB summed over the partitions")
EOF
fi
