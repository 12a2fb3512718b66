#!/usr/bin/env bash
# Recovery time on a real cluster: a master and two workers (release build) run MessageCount;
# an executor process is SIGKILLed three times; the AppMaster logs, for each recovery, the time
# from the failure to the restarted tasks and to the clock moving again; the script prints when
# it sent each SIGKILL, to compare with the AppMaster's log.
#   cargo build --release -p gear -p gearpump-examples && benches/recovery.sh
set -euo pipefail
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
"$bin/gear" -conf c.conf app -executors 2 -jar "$bin/message_count" -messages 8000000 -countTask 2 -pace 400000 -output "$dir"
for round in 1 2 3; do
  sleep 4
  # The executors of application 1 are the children of the workers that are not the AppMaster.
  # The newest executors, as the AppMaster logged them.
  exe=$(sed 's/\x1b\[[0-9;]*m//g' w*/logs/app1/appmaster.log | grep "Executor registered" | sed 's/.*pid=//' | tail -1)
  kill -9 "$exe"
  echo "round $round: SIGKILL executor $exe at $(date -u +%H:%M:%S.%6N)"
done
sleep 4
grep -h "Tasks restarted\|The clock moves again" w*/logs/app1/appmaster.log | sed 's/\x1b\[[0-9;]*m//g'
"$bin/gear" -conf c.conf kill -appid 1 || true
