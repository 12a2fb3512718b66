#!/usr/bin/env bash
# Dynamic DAG change time on a real cluster: a master and two workers (release build) run
# WordCount (Split 1 → Sum 2); Sum is rescaled N times (2 → 3 → 2 …) with `gear dynamicdag`.
# For each change: the wall time of the `gear dynamicdag` call (until the masters recorded
# it), and from the AppMaster's log the time from the request to the new DAG's tasks running
# ("The new DAG runs") and to the clock moving again with them ("The clock moves again").
#   cargo build --release -p gear -p gearpump-examples && benches/dynamic_dag.sh [N]
set -euo pipefail
rounds=${1:-20}
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release"
dir=$(mktemp -d)
cd "$dir"
port=$((20000 + RANDOM % 20000))
printf 'gearpump.cluster.masters = ["127.0.0.1:%s"]\ngearpump.worker.slots = 8\n' "$port" > c.conf
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$bin/gear" -conf c.conf master -ip 127.0.0.1 -port "$port" > master.out 2>&1 & pids+=($!)
sleep 0.5
for w in 0 1; do mkdir -p "w$w"; (cd "w$w" && exec "$bin/gear" -conf ../c.conf worker > worker.out 2>&1) & pids+=($!); done
sleep 1
"$bin/gear" -conf c.conf app -jar "$bin/wordcount" -split 1 -sum 2
sleep 3
sum=1
calls=()
for i in $(seq 1 "$rounds"); do
  n=$(( i % 2 == 1 ? 3 : 2 ))
  t0=$(date +%s%N)
  "$bin/gear" -conf c.conf dynamicdag -appid 1 -rescale "$sum" -parallelism "$n" > /dev/null
  calls+=($(( ($(date +%s%N) - t0) / 1000000 )))
  sum=$((sum + 1))   # the rescaled Sum is the next processor id
  sleep 2
done
log=$(ls w*/logs/app1/appmaster.log | head -1)
clean() { sed 's/\x1b\[[0-9;]*m//g' "$log"; }
ms() { sed -E 's/.*'"$1"'=([0-9.]+)(ms|s|µs).*/\1 \2/' | awk '{ v = $1; if ($2 == "s") v *= 1000; if ($2 == "µs") v /= 1000; printf "%.1f\n", v }'; }
stats() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "none"; exit } printf "n=%d median=%.1f ms p90=%.1f ms max=%.1f ms\n", NR, a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR] }'; }
echo "gear dynamicdag call (until recorded):  $(printf '%s\n' "${calls[@]}" | stats)"
echo "request → new DAG's tasks running:      $(clean | grep 'The new DAG runs' | ms since_asked | stats)"
echo "request → clock moving with the new DAG: $(clean | grep 'The clock moves again' | ms since | stats)"
"$bin/gear" -conf c.conf kill -appid 1 || true
