#!/usr/bin/env bash
# An Apache Kafka broker (KRaft, no ZooKeeper) for the Kafka tests, benchmarks and examples.
# Java is test infrastructure only: the broker comes from Maven Central.
#
#   tools/kafka/kafka.sh fetch                      copy the broker's jars into the cache
#   tools/kafka/kafka.sh start DIR [PORT] [WATCH]   format DIR, start a broker on 127.0.0.1:PORT
#                                                   (default: a free port); prints
#                                                   "bootstrap=127.0.0.1:PORT pid=PID". With
#                                                   WATCH (a PID), the broker is stopped when
#                                                   that process ends.
#   tools/kafka/kafka.sh stop DIR                   stop the broker started in DIR
#   tools/kafka/kafka.sh topic BOOTSTRAP NAME PARTITIONS   create a topic
#
# The cache is $GEARPUMP_KAFKA_LIBS (default ~/.cache/gearpump/kafka-4.1.1-r2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="${GEARPUMP_KAFKA_LIBS:-$HOME/.cache/gearpump/kafka-4.1.1-r2}"

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  touch "$libs/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir="$1" port="${2:-}" watch="${3:-}"
  [ -n "$port" ] && [ "$port" != 0 ] || port=$(free_port)
  local controller
  controller=$(free_port)
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
# Keep records whatever their timestamps (tests and replays use old ones).
log.retention.ms=-1
EOF
  local cp="$libs/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    # A new directory; a restarted broker keeps its data.
    java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
      -c "$dir/server.properties" > "$dir/format.log" 2>&1
  fi
  java -Xms256m -Xmx512m -XX:+UseSerialGC -cp "$cp" kafka.Kafka "$dir/server.properties" > "$dir/broker.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/broker.pid"
  if [ -n "$watch" ]; then
    # Stops the broker when the process that asked for it ends (a test binary).
    ( while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done; kill "$pid" 2>/dev/null ) \
      > /dev/null 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "bootstrap=127.0.0.1:$port pid=$pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "the Kafka broker did not start; see $dir/broker.log" >&2
  kill "$pid" 2>/dev/null || true
  return 1
}

stop() {
  local pid
  pid=$(cat "$1/broker.pid")
  kill "$pid" 2>/dev/null || true
}

topic() {
  fetch
  java -cp "$libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --create --topic "$2" \
    --partitions "$3" --replication-factor 1
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  topic) shift; topic "$@" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
