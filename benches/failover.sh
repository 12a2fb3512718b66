#!/usr/bin/env bash
# Master failover time: three `gear master` processes and two workers on 127.0.0.1, WordCount
# running; the leader is SIGKILLed and a new WordCount submitted at once. Prints, per round,
# the time from the SIGKILL to the master's acceptance of that submission ("Application <id>
# submitted"), which covers the election, the client finding the new leader, the upload of the
# binary to a majority and the committed submission. The killed master is restarted after
# each round.
#
#   cargo build --release -p gear -p gearpump-examples && benches/failover.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
gear=$root/target/release/gear
wordcount=$root/target/release/wordcount
rounds=${1:-3}
dir=$(mktemp -d /tmp/gearpump-failover-XXXXXX)
pids=()
keep=""
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ -n "$keep" ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

ports=($(python3 -c 'import socket
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'))
cat > "$dir/gear.conf" <<EOF
gearpump.cluster.masters = ["127.0.0.1:${ports[0]}", "127.0.0.1:${ports[1]}", "127.0.0.1:${ports[2]}"]
gearpump.worker.slots = 20
EOF
master_pid=()
start_master() {
  mkdir -p "$dir/m$1"
  (cd "$dir/m$1" && exec "$gear" -conf "$dir/gear.conf" master -ip 127.0.0.1 -port "${ports[$1]}" >> master.out 2>&1) &
  master_pid[$1]=$!
  pids+=($!)
}
for i in 0 1 2; do start_master "$i"; done
for i in 0 1; do
  mkdir -p "$dir/w$i"
  (cd "$dir/w$i" && exec "$gear" -conf "$dir/gear.conf" worker > worker.out 2>&1) &
  pids+=($!)
done
sleep 2
(cd "$dir" && "$gear" -conf gear.conf app -namePrefix first -jar "$wordcount" -split 1 -sum 1 > /dev/null 2>&1)

# The master whose log last says it leads.
leader() {
  local best="" at=""
  for i in 0 1 2; do
    local line
    line=$(grep -h "Leading the masters" "$dir/m$i/master.out" 2>/dev/null | tail -n 1 | cut -c1-27)
    if [ -n "$line" ] && kill -0 "${master_pid[$i]}" 2>/dev/null && [[ "$line" > "$at" ]]; then
      best=$i; at=$line
    fi
  done
  echo "$best"
}

for round in $(seq 1 "$rounds"); do
  sleep 3
  l=$(leader)
  kill -9 "${master_pid[$l]}"
  t0=$(date +%s%N)
  accepted=""
  while IFS= read -r line; do
    if [ -z "$accepted" ] && [[ "$line" == *" submitted;"* ]]; then accepted=$(date +%s%N); fi
  done < <(cd "$dir" && "$gear" -conf gear.conf app -namePrefix "round$round" -jar "$wordcount" -split 1 -sum 1 2>&1 | tee "$dir/round$round.out")
  if [ -z "$accepted" ]; then echo "round $round: the submission was not accepted"; keep=1; exit 1; fi
  echo "round $round: killed master ${ports[$l]}; submission accepted $(( (accepted - t0) / 1000000 )) ms after the SIGKILL"
  start_master "$l"
done
