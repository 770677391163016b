#!/usr/bin/env bash
# The Kafka benchmark (docs/BENCHMARKS.md, "Kafka"), on one broker in one run:
#
# 1. Throughput, Kafka -> one per-batch WASM map (plugins/rust/uppercase) -> Kafka, through
#    `flowgate run --bounded` (Kafka source, one stage, Kafka sink; a fresh data directory each
#    run), against the native copier target/release/kafka-copy (tests/src/bin/kafka-copy.rs:
#    rdkafka consume -> to_ascii_uppercase -> produce, nothing else). At-least-once and
#    exactly-once, 100-byte and 1 KiB values. events/s = records / wall time of the whole
#    process; the two sides run in turn (Flowgate, native, Flowgate, ...) and the ratio is taken
#    pair by pair.
# 2. End-to-end latency at a steady rate (default: half of Flowgate's median at-least-once
#    100-byte throughput of step 1): `kafka-copy feed` writes records carrying their send time,
#    `flowgate run` (or `kafka-copy copy --stream`) copies them, `kafka-copy latency` reads the
#    output and prints p50/p99/max of receipt time - send time.
# 3. Ingest: Kafka -> Flowgate's log only (a pipeline with the Kafka source and nothing else).
#
#   tests/benches/kafka.sh [--port 9092] [--runs 5] [--small 2000000] [--large 400000]
#                          [--partitions 3] [--only throughput,latency,ingest] [--rate R]
#                          [--latency-seconds 20] [--client-defaults] [--no-build] [--no-check]
#
# The broker: one answering on 127.0.0.1:PORT is used as it is (its topics bench-* are deleted and
# made again); otherwise one is started with its data in target/kafka-bench (tests/kafka/kafka.sh)
# and stopped at the end. The work files (pipelines, data directories, logs) are in
# target/kafka-bench-work. Every timed run's output topic is read back (read_committed) and must
# hold each input record once, upper-cased (--no-check skips that).
#
# Both sides' consumers get fetch.queue.backoff.ms=10: with librdkafka's default (1000 ms) a
# consumer whose local queue passes queued.min.messages (100,000 per partition) stops fetching
# that partition for a second, which caps both sides near 130,000 records/s on this machine and
# hides the difference; --client-defaults measures with the defaults.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
kafka_sh=$root/tests/kafka/kafka.sh
admin=$root/tests/kafka/admin.py
flowgate=$root/target/release/flowgate
copier=$root/target/release/kafka-copy
plugin=$root/plugins/target/wasm32-wasip2/release/uppercase.wasm
work=$root/target/kafka-bench-work

port=9092 runs=5 small=2000000 large=400000 partitions=3 only=throughput,latency,ingest
rate= latency_seconds=20 client_defaults= build=1 check=1
while [ $# -gt 0 ]; do
  case "$1" in
  --port) port=$2; shift ;;
  --runs) runs=$2; shift ;;
  --small) small=$2; shift ;;
  --large) large=$2; shift ;;
  --partitions) partitions=$2; shift ;;
  --only) only=$2; shift ;;
  --rate) rate=$2; shift ;;
  --latency-seconds) latency_seconds=$2; shift ;;
  --client-defaults) client_defaults=1 ;;
  --no-build) build= ;;
  --no-check) check= ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
  shift
done
brokers=127.0.0.1:$port
wants() { [[ ",$only," == *",$1,"* ]]; }
say() { echo "kafka.sh: $*" >&2; }

if [ -n "$build" ]; then
  (cd "$root" && cargo build --release -p flowgate && cargo build --release -p flowgate-tests --bin kafka-copy)
fi
[ -f "$plugin" ] || {
  say "$plugin is missing: cargo build -p flowgate-tests builds the plugins"
  exit 1
}

started_broker=
if "$kafka_sh" wait "$port" 5 2>/dev/null; then
  say "using the broker on $brokers"
else
  "$kafka_sh" start "$root/target/kafka-bench" "$port" >&2
  started_broker=1
fi
cleanup() {
  [ -z "$started_broker" ] || "$kafka_sh" stop "$root/target/kafka-bench" >&2 || true
}
trap cleanup EXIT

rm -rf "$work"
mkdir -p "$work"

if [ -n "$client_defaults" ]; then
  consumer_props=
  source_props='{}'
else
  consumer_props=fetch.queue.backoff.ms=10
  source_props='{ "fetch.queue.backoff.ms" = 10 }'
fi
export KAFKA_COPY_CONSUMER=$consumer_props

topic_new() { # NAME: (re)made empty with $partitions partitions
  python3 "$admin" --bootstrap "$brokers" delete "$1" 2>/dev/null || true
  python3 "$admin" --bootstrap "$brokers" create "$1" --partitions "$partitions"
}
topic_delete() { python3 "$admin" --bootstrap "$brokers" delete "$1" 2>/dev/null || true; }

# pipeline FILE DELIVERY INPUT OUTPUT [source-only]: the benchmark's pipeline file.
pipeline() {
  local file=$1 delivery=$2 input=$3 output=$4 only_source=${5:-}
  cat >"$file" <<EOF
name = "kafka-bench"
delivery = "$delivery"

[topics.in]
partitions = $partitions

[topics.upper]
partitions = $partitions

[sources.kafka]
type = "kafka"
brokers = "$brokers"
topics = ["$input"]
topic = "in"
properties = $source_props
EOF
  [ -n "$only_source" ] && return 0
  cat >>"$file" <<EOF

[stages.upper]
plugin = "$plugin"
input = "in"
output = "upper"

[sinks.kafka]
type = "kafka"
brokers = "$brokers"
input = "upper"
topic = "$output"
EOF
}

# timed LOG CMD...: runs CMD (output to LOG), prints its wall seconds; fails if CMD fails.
timed() {
  local log=$1 t0 t1
  shift
  t0=$EPOCHREALTIME
  if ! "$@" >>"$log" 2>&1; then
    say "failed: $* (log $log):"
    tail -n 20 "$log" >&2
    exit 1
  fi
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# stats N...: min median max of the numbers.
stats() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s %s %s\n", v[1], m, v[NR] }'
}
fmt_rate() { awk -v r="$1" 'BEGIN { if (r >= 1e6) printf "%.2f M", r / 1e6; else printf "%.0f k", r / 1e3 }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

check_output() { # TOPIC COUNT
  [ -z "$check" ] || "$copier" check --brokers "$brokers" --topic "$1" --count "$2" 2>>"$work/check.log" >/dev/null || {
    say "output check failed for $1 (expected $2 records):"
    tail -n 3 "$work/check.log" >&2
    exit 1
  }
}

declare -A count=([100]=$small [1024]=$large)
table=()
peak_alo_100=

if wants throughput || wants ingest; then
  for size in 100 1024; do
    topic_new "bench-in-$size"
    say "filling bench-in-$size with ${count[$size]} records of $size bytes"
    "$copier" fill --brokers "$brokers" --topic "bench-in-$size" --count "${count[$size]}" \
      --size "$size" --partitions "$partitions" 2>>"$work/fill.log"
  done
fi

if wants throughput; then
  for delivery in at-least-once exactly-once; do
    flag=
    [ "$delivery" = exactly-once ] && flag=--exactly-once
    for size in 100 1024; do
      n=${count[$size]}
      file=$work/$delivery-$size.toml
      pipeline "$file" "$delivery" "bench-in-$size" bench-out-flowgate
      fg=() nat=() ratio=()
      load_before=$(load)
      for run in $(seq 1 "$runs"); do
        topic_new bench-out-flowgate
        data=$work/data-$delivery-$size-$run
        t=$(timed "$work/flowgate.log" "$flowgate" run --bounded "$file" --data-dir "$data" --no-watch)
        rm -rf "$data"
        check_output bench-out-flowgate "$n"
        topic_new bench-out-native
        u=$(timed "$work/native.log" "$copier" copy --brokers "$brokers" --from "bench-in-$size" \
          --to bench-out-native $flag)
        check_output bench-out-native "$n"
        fg+=("$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t }')")
        nat+=("$(awk -v n="$n" -v t="$u" 'BEGIN { printf "%.0f", n / t }')")
        ratio+=("$(awk -v t="$t" -v u="$u" 'BEGIN { printf "%.3f", u / t }')")
        say "$delivery $size B run $run: flowgate ${t}s, native ${u}s"
      done
      read -r fmin fmed fmax < <(stats "${fg[@]}")
      read -r nmin nmed nmax < <(stats "${nat[@]}")
      read -r rmin rmed rmax < <(stats "${ratio[@]}")
      [ "$delivery/$size" = at-least-once/100 ] && peak_alo_100=$fmed
      table+=("| $delivery | $size B | $n | $(fmt_rate "$fmin") / **$(fmt_rate "$fmed")** / $(fmt_rate "$fmax") | $(fmt_rate "$nmin") / **$(fmt_rate "$nmed")** / $(fmt_rate "$nmax") | $rmin / **$rmed** / $rmax | $load_before → $(load) |")
      topic_delete bench-out-flowgate
      topic_delete bench-out-native
    done
  done
  echo
  echo "Throughput, Kafka -> uppercase (per batch) -> Kafka, $runs runs per side, min / median / max:"
  echo
  echo "| delivery | value | records | Flowgate events/s | native events/s | Flowgate / native | load (1, 5, 15 min) |"
  echo "|---|---|---:|---:|---:|---:|---|"
  printf '%s\n' "${table[@]}"
fi

if wants ingest; then
  file=$work/ingest.toml
  pipeline "$file" at-least-once bench-in-100 - source-only
  ing=()
  for run in $(seq 1 "$runs"); do
    data=$work/data-ingest-$run
    t=$(timed "$work/flowgate.log" "$flowgate" run --bounded "$file" --data-dir "$data" --no-watch)
    rm -rf "$data"
    ing+=("$(awk -v n="$small" -v t="$t" 'BEGIN { printf "%.0f", n / t }')")
  done
  read -r imin imed imax < <(stats "${ing[@]}")
  echo
  echo "Ingest, Kafka -> Flowgate's log (source only), $small records of 100 B, $runs runs:" \
    "$(fmt_rate "$imin") / **$(fmt_rate "$imed")** / $(fmt_rate "$imax") events/s (load $(load))"
fi

if wants latency; then
  if [ -z "$rate" ]; then
    [ -n "$peak_alo_100" ] || {
      say "--only latency needs --rate (or run throughput first: half of its at-least-once 100 B median)"
      exit 1
    }
    rate=$((peak_alo_100 / 2))
  fi
  measured=$((rate * latency_seconds))
  lat=()
  for delivery in at-least-once exactly-once; do
    flag=
    [ "$delivery" = exactly-once ] && flag=--exactly-once
    for side in flowgate native; do
      topic_new bench-lat-in
      topic_new bench-lat-out
      if [ $side = flowgate ]; then
        file=$work/latency-$delivery.toml
        pipeline "$file" "$delivery" bench-lat-in bench-lat-out
        "$flowgate" run "$file" --data-dir "$work/data-latency-$delivery" --no-watch >>"$work/latency-flowgate.log" 2>&1 &
      else
        "$copier" copy --brokers "$brokers" --from bench-lat-in --to bench-lat-out --stream $flag \
          >>"$work/latency-native.log" 2>&1 &
      fi
      copy_pid=$!
      "$copier" latency --brokers "$brokers" --topic bench-lat-out --count "$measured" \
        --timeout $((latency_seconds + 60)) >"$work/latency-$delivery-$side.txt" 2>>"$work/latency.log" &
      latency_pid=$!
      sleep 2 # the copier's start (the feed's warm-up covers the rest)
      "$copier" feed --brokers "$brokers" --topic bench-lat-in --rate "$rate" \
        --seconds "$latency_seconds" --warmup 3 --size 100 2>>"$work/latency.log"
      if ! wait "$latency_pid"; then
        say "latency measurement failed ($delivery, $side):"
        tail -n 5 "$work/latency.log" >&2
        kill -TERM "$copy_pid" 2>/dev/null || true
        exit 1
      fi
      kill -TERM "$copy_pid" 2>/dev/null || true
      wait "$copy_pid" 2>/dev/null || true
      rm -rf "$work/data-latency-$delivery"
      read -r p50 p99 max n <"$work/latency-$delivery-$side.txt"
      lat+=("| $delivery | $side | $rate | $n | $p50 ms | **$p99 ms** | $max ms | $(load) |")
    done
  done
  topic_delete bench-lat-in
  topic_delete bench-lat-out
  echo
  echo "End-to-end latency, send -> read from the output topic (read_committed), 100 B records:"
  echo
  echo "| delivery | copier | events/s | records timed | p50 | p99 | max | load |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${lat[@]}"
fi

if wants throughput || wants ingest; then
  topic_delete bench-in-100
  topic_delete bench-in-1024
fi
