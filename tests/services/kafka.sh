#!/usr/bin/env bash
# The real Apache Kafka broker for the Kafka tests: one KRaft process (broker and controller) on a free loopback
# port, with its data in a temporary folder.
#
#   tests/services/kafka.sh            fetches Kafka's jars once per machine (Maven, cached under
#                                      ${EDDY_TOOLS:-~/.cache/eddy-tools}/kafka-<version>), starts a broker, waits
#                                      until it answers, and prints three lines: `127.0.0.1:<port>`, its PID file,
#                                      and `127.0.0.1:<port>` of a second listener that wants SASL/PLAIN logins
#                                      (users `acme` and `globex`, passwords `acme-secret` and `globex-secret`: test
#                                      tenants' credentials)
#   tests/services/kafka.sh fetch      only fetches the jars
#   tests/services/kafka.sh stop FILE  stops the broker of PID file FILE and removes its data folder
#   tests/services/kafka.sh restart FILE [DELAY]
#                                      kills that broker (SIGKILL), waits DELAY seconds and starts it again on the
#                                      same ports with the same data
#   tests/services/kafka.sh topics BROKERS NAME[:PARTITIONS] ...
#                                      creates topics (the broker creates none by itself)
#   tests/services/kafka.sh produce BROKERS TOPIC
#                                      sends each line of standard input as a record
#   tests/services/kafka.sh consume BROKERS TOPIC [SECONDS]
#                                      prints what committed transactions wrote (read_committed) until SECONDS
#                                      (5 by default) pass without a record
#
# EDDY_KAFKA_PORT chooses the broker's port (the examples in udfs/jobs use 9092); a free one otherwise.
# With EDDY_KAFKA_OWNER_PID set, the broker is also stopped when that process ends (tests that start a broker
# for themselves have no hook that runs when they exit).
#
# Typical use: { read -r EDDY_KAFKA_BROKERS; read -r pidfile; } < <(tests/services/kafka.sh); export EDDY_KAFKA_BROKERS
set -euo pipefail

version=4.1.1
slf4j=2.0.17
home="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}/kafka-$version"

fetch() {
  if [ -f "$home/libs/.complete" ]; then
    return
  fi
  mkdir -p "$home"
  cat > "$home/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>eddy.tests</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>$slf4j</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$home/libs"
  # Progress goes to stderr: stdout carries only what the caller reads.
  (cd "$home" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$home/libs") >&2
  touch "$home/libs/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

answers() {
  # Whether the broker's port accepts connections.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  fetch
  command -v java >/dev/null || { echo "kafka.sh: java is not installed (Kafka $version needs Java 17+)" >&2; exit 1; }
  local dir port controller sasl
  dir="$(mktemp -d "${TMPDIR:-/tmp}/eddy-kafka-XXXXXX")"
  port="${EDDY_KAFKA_PORT:-$(free_port)}"
  controller="$(free_port)"
  sasl="$(free_port)"
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,SASL_PLAINTEXT://127.0.0.1:$sasl
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$sasl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_acme="acme-secret" user_globex="globex-secret";
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$controller
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.ms=-1
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
EOF
  local cluster
  cluster="$(python3 -c 'import uuid,base64;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  java -cp "$home/libs/*" kafka.tools.StorageTool format --standalone -t "$cluster" \
    -c "$dir/server.properties" > "$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; rm -rf "$dir"; exit 1; }
  launch "$dir" "$port" || { rm -rf "$dir"; exit 1; }
  if [ -n "${EDDY_KAFKA_OWNER_PID:-}" ]; then
    # Watches the PID file rather than the process: `restart` replaces the process.
    nohup bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2" ]; do sleep 1; done; [ -f "$2" ] && "$3" stop "$2"' \
      _ "$EDDY_KAFKA_OWNER_PID" "$dir/kafka.pid" "$(readlink -f "$0")" > /dev/null 2>&1 < /dev/null &
  fi
  echo "127.0.0.1:$port"
  echo "$dir/kafka.pid"
  echo "127.0.0.1:$sasl"
}

# Starts the broker of folder $1 (formatted, with its server.properties) and waits until port $2 answers.
launch() {
  local dir="$1" port="$2" pid waited=0
  nohup java -Xmx512m -Xms128m -XX:+UseSerialGC -cp "$home/libs/*" \
    kafka.Kafka "$dir/server.properties" >> "$dir/broker.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$dir/kafka.pid"
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka.sh: the broker exited before answering; its log:" >&2
      tail -n 40 "$dir/broker.log" >&2
      return 1
    fi
    if [ "$waited" -ge 600 ]; then
      echo "kafka.sh: the broker did not answer on 127.0.0.1:$port within 60 s" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Kills the broker of PID file $1 as a crash would (SIGKILL) and starts it again on the same ports and data.
restart() {
  local pidfile="$1" dir pid port
  [ -f "$pidfile" ] || { echo "kafka.sh: no PID file $pidfile" >&2; exit 1; }
  dir="$(dirname "$pidfile")"
  pid="$(cat "$pidfile")"
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  port="$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$dir/server.properties")"
  # The ports may linger a moment after the kill.
  sleep "${2:-0}"
  launch "$dir" "$port"
  echo "127.0.0.1:$port"
}

stop() {
  local pidfile="$1" pid dir
  [ -f "$pidfile" ] || { echo "kafka.sh: no PID file $pidfile" >&2; exit 1; }
  dir="$(dirname "$pidfile")"
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # Only a folder this script made is removed.
  case "$dir" in
    */eddy-kafka-*) rm -rf "$dir" ;;
  esac
}

# Runs KafkaTool.java (next to this script) with the broker's client jar.
tool() {
  fetch
  java -cp "$home/libs/*" "$(dirname "$(readlink -f "$0")")/KafkaTool.java" "$@" 2> >(grep -v '^SLF4J:' >&2)
}

case "${1:-start}" in
  start) start ;;
  fetch) fetch; echo "$home/libs" ;;
  stop) stop "${2:?usage: kafka.sh stop PIDFILE}" ;;
  restart) restart "${2:?usage: kafka.sh restart PIDFILE [DELAY]}" "${3:-0}" ;;
  topics | produce | consume) tool "$@" ;;
  *) echo "usage: kafka.sh [start|fetch|stop PIDFILE|restart PIDFILE [DELAY]|topics|produce|consume ...]" >&2; exit 2 ;;
esac
