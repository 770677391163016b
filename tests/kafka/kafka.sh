#!/usr/bin/env bash
# The Apache Kafka broker of the tests: a single node in KRaft mode (broker and controller in one
# JVM) on 127.0.0.1, from the jars that tests/kafka/pom.xml pins, run by the machine's Java 17.
# The test harness (tests/src/kafka.rs) runs it through `run`; a developer starts one by hand:
#
#   scripts/install-test-deps                   # once: Java, Maven, the jars, confluent-kafka
#   tests/kafka/kafka.sh start                  # a broker on 127.0.0.1:9092, data in target/kafka-dev
#   tests/kafka/kafka.sh topics --create --topic in --partitions 3
#   tests/kafka/kafka.sh console-producer --topic in --reader-property parse.key=true --reader-property key.separator=:
#   tests/kafka/kafka.sh console-consumer --topic in --from-beginning --formatter-property print.key=true
#   tests/kafka/kafka.sh consumer-groups --describe --all-groups
#   tests/kafka/kafka.sh stop
#
# Commands:
#   install                   copy the jars (Maven, dependency:copy-dependencies) unless present
#   libs                      print the jar folder; fails, naming the install command, if missing
#   check                     fails with the install command if java or the jars are missing
#   start [DIR] [PORT] [CPORT]
#                             format DIR (once) and start a broker in the background on PORT
#                             (controller on CPORT, default PORT+1); returns when it answers a
#                             metadata request (deadline FLOWGATE_KAFKA_START_TIMEOUT, 120 s).
#                             Defaults: DIR target/kafka-dev, PORT 9092.
#   stop [DIR]                stop the broker started in DIR (SIGTERM; SIGKILL after 60 s)
#   run DIR PORT CPORT [HOST] format DIR (once), then exec the broker in the foreground: what the
#                             harness runs, so that the JVM is its own child process; clients
#                             reach it on HOST (default 127.0.0.1; the address of a veth when
#                             a test runs a process in a network namespace)
#   wait PORT [SECONDS]       wait until a broker on 127.0.0.1:PORT answers (default 120 s)
#   topics ARGS...            Kafka's tools (their --help lists the options); --bootstrap-server
#   console-producer ARGS...  is added (127.0.0.1:$FLOWGATE_KAFKA_PORT, default 9092) unless given
#   console-consumer ARGS...
#   consumer-groups ARGS...
#
# Environment: FLOWGATE_KAFKA_LIBS (the jar folder; default
# ~/.cache/flowgate/kafka-<version>/libs), FLOWGATE_KAFKA_PORT (the tools' broker), JAVA (java).
#
# The broker is set up for tests: replication factor 1 everywhere, no automatic topic creation,
# one partition by default, no initial rebalance delay, coordinators with 4 partitions (quick first
# group and transaction), timed-out transactions aborted within a second of their timeout, and
# session timeouts down to 1 s allowed (clients still default to Kafka's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
libs=${FLOWGATE_KAFKA_LIBS:-$HOME/.cache/flowgate/kafka-$version/libs}
java=${JAVA:-java}
cluster_id=Zmxvd2dhdGUtdGVzdHMtMQ # base64url of "flowgate-tests-1": a fixed id, no random one
install_hint="run scripts/install-test-deps (Java 17 and Maven first: apt-get install -y openjdk-17-jre-headless maven)"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

check() {
  command -v "$java" >/dev/null || die "java is not installed; $install_hint"
  local major
  major=$("$java" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1)
  [ "${major:-0}" -ge 17 ] || die "Kafka $version needs Java 17 or newer, $java is ${major:-unknown}; $install_hint"
  [ -f "$libs/.complete" ] || die "the Kafka $version jars are not in $libs; $install_hint"
}

install() {
  [ -f "$libs/.complete" ] && return 0
  command -v "$java" >/dev/null || die "java is missing: apt-get install -y openjdk-17-jre-headless maven"
  command -v mvn >/dev/null || die "mvn is missing: apt-get install -y openjdk-17-jre-headless maven"
  # Copied beside the folder, then renamed: an interrupted copy is never taken for a complete one.
  local partial="$libs.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$libs")"
  local log
  log=$(mktemp)
  if ! (cd "$here" && mvn -q -B dependency:copy-dependencies "-Dkafka.libs=$partial") >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "Maven could not copy the Kafka $version jars (its output is above)"
  fi
  rm -f "$log"
  touch "$partial/.complete"
  rm -rf "$libs"
  mv "$partial" "$libs"
}

# Writes DIR/server.properties for a broker on HOST:PORT, its controller on 127.0.0.1:CPORT.
configure() {
  local dir=$1 port=$2 cport=$3 host=${4:-127.0.0.1}
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Written by tests/kafka/kafka.sh: a single-node test broker (KRaft, broker and controller).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Tests create their topics; a typo is an error, not a new topic.
auto.create.topics.enable=false
num.partitions=1
# Test records carry old timestamps (1970 and on): no deletion by age, or a retention check would
# empty a topic mid-test. A topic that tests retention sets its own retention.ms.
log.retention.ms=-1

# After a kill, the restarted broker waits for its previous registration's session to expire
# before it serves (9 s by default): a short session makes that 2 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2000

# No waiting for more members before the first assignment; short sessions allowed.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500

# A transaction whose producer died is aborted within a second of its transaction.timeout.ms
# (default check every 10 s), so read_committed readers are not held back long after a kill.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
EOF
}

# The JVM's options: a small heap (the tests' traffic is modest, and builds run beside it), the
# GC settings of Kafka's own start script.
jvm_opts=(-Xmx512m -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true)

format() {
  local dir=$1
  [ -f "$dir/data/meta.properties" ] && return 0
  "$java" "${jvm_opts[@]}" "-Dlog4j2.configurationFile=$here/log4j2-tools.properties" -cp "$libs/*" \
    kafka.tools.StorageTool format --config "$dir/server.properties" \
    --cluster-id "$cluster_id" --standalone >"$dir/format.log" 2>&1 ||
    die "formatting $dir/data failed: $(cat "$dir/format.log")"
}

# Waits until a broker on 127.0.0.1:PORT answers a metadata request listing a registered broker
# (one that can take a topic), or fails after SECONDS or when process PID is gone.
wait_ready() {
  local port=$1 seconds=${2:-120} pid=${3:-}
  local deadline=$((SECONDS + seconds))
  # The port first (cheap, bash's /dev/tcp), then the metadata request (a Python client).
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: the broker exited before it listened on 127.0.0.1:$port" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "kafka.sh: nothing listens on 127.0.0.1:$port after ${seconds}s" >&2
      return 1
    fi
    sleep 0.1 # between tries of a wait bounded by the deadline above
  done
  python3 "$here/admin.py" --bootstrap "127.0.0.1:$port" --deadline $((deadline - SECONDS + 1)) ready
}

# Runs one of Kafka's tools (a main class), with --bootstrap-server unless the arguments give one.
tool() {
  local class=$1 a given=
  shift
  check
  for a in "$@"; do
    case "$a" in --bootstrap-server | --bootstrap-server=*) given=1 ;; esac
  done
  [ -n "$given" ] || set -- --bootstrap-server "127.0.0.1:${FLOWGATE_KAFKA_PORT:-9092}" "$@"
  exec "$java" "${jvm_opts[@]}" "-Dlog4j2.configurationFile=$here/log4j2-tools.properties" \
    -cp "$libs/*" "$class" "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
install) install ;;
libs)
  check
  echo "$libs"
  ;;
check) check ;;
run)
  [ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: kafka.sh run DIR PORT CONTROLLER_PORT [HOST]"
  check
  configure "$@"
  format "$1"
  exec "$java" "${jvm_opts[@]}" "-Dlog4j2.configurationFile=$here/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$1/server.properties"
  ;;
start)
  dir=${1:-$root/target/kafka-dev}
  port=${2:-9092}
  cport=${3:-$((port + 1))}
  check
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    die "a broker already runs from $dir (pid $(cat "$dir/broker.pid")); tests/kafka/kafka.sh stop $dir"
  fi
  t=$SECONDS
  nohup "$0" run "$dir" "$port" "$cport" >>"$dir/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/broker.pid"
  if ! wait_ready "$port" "${FLOWGATE_KAFKA_START_TIMEOUT:-120}" "$!"; then
    tail -n 30 "$dir/broker.log" >&2
    exit 1
  fi
  echo "kafka $version ready on 127.0.0.1:$port in $((SECONDS - t))s (data $dir, log $dir/broker.log, pid $(cat "$dir/broker.pid"))"
  ;;
stop)
  dir=${1:-$root/target/kafka-dev}
  [ -f "$dir/broker.pid" ] || die "no broker.pid in $dir"
  pid=$(cat "$dir/broker.pid")
  if kill -TERM "$pid" 2>/dev/null; then
    deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "the broker did not stop in 60 s: killed" >&2
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$dir/broker.pid"
  echo "kafka stopped ($dir)"
  ;;
wait)
  [ $# -ge 1 ] || die "usage: kafka.sh wait PORT [SECONDS]"
  wait_ready "$1" "${2:-120}"
  ;;
topics) tool org.apache.kafka.tools.TopicCommand "$@" ;;
console-producer) tool org.apache.kafka.tools.ConsoleProducer "$@" ;;
console-consumer) tool org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
consumer-groups) tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
