#!/usr/bin/env bash
# Soak: WordCount on `gear local` (a master and 2 workers in one process, with the services)
# for DURATION seconds, an executor process SIGKILLed every KILL_EVERY seconds, the REST API
# polled all the while. Every 30 s it samples RSS, open file descriptors and threads of the
# daemon and of the application's AppMaster; at the end it prints the first, last and largest
# sample of each, how many kills happened and whether the application is still active.
#
#   tools/soak.sh [DURATION=600] [KILL_EVERY=60]
#
# Binaries come from BIN_DIR (default target/release: cargo build --release -p gear
# -p gearpump-examples --bin gear --bin wordcount).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-600}"
kill_every="${2:-60}"
bin="${BIN_DIR:-target/release}"
gear="$(realpath "$bin/gear")"
wordcount="$(realpath "$bin/wordcount")"
dir="$(mktemp -d /tmp/gearpump-soak.XXXXXX)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"; http="$(free_port)"
cat > "$dir/soak.conf" <<CONF
gearpump.cluster.masters = ["127.0.0.1:$port"]
gearpump.services.http = $http
gearpump.worker.slots = 8
# Every kill is a restart; the default budget (5) would end the application mid-soak.
gearpump.application.total-retries = 1000
CONF
cd "$dir"
"$gear" -conf soak.conf local -workernum 2 -services > local.out 2>&1 &
daemon=$!
pollers=()
cleanup() {
  kill "${pollers[@]}" 2>/dev/null || true
  kill "$daemon" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
api="http://127.0.0.1:$http/api/v1.0"
for _ in $(seq 100); do curl -sf "$api/master" >/dev/null && break; sleep 0.2; done
"$gear" -conf soak.conf app -jar "$wordcount" -split 2 -sum 2 > app.out 2>&1
# REST polled continuously, from two clients.
for route in master "appmaster/1?detail=true"; do
  ( while true; do curl -sf "$api/$route" >/dev/null || true; curl -sf "$api/appmasters" >/dev/null || true; done ) &
  pollers+=($!)
done
sample() { # pid → "rss_kb fds threads"
  local pid=$1
  [ -d "/proc/$pid" ] || { echo "- - -"; return; }
  echo "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status") $(ls "/proc/$pid/fd" | wc -l) $(awk '/Threads/ {print $2}' "/proc/$pid/status")"
}
role_pids() { # role → pids of this soak's application processes in that role
  for p in /proc/[0-9]*; do
    # Workers run their own copy of the binary, under the soak's directory.
    case "$(readlink "$p/exe" 2>/dev/null)" in "$dir"/*) ;; *) continue ;; esac
    tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qx "GEARPUMP_ROLE=$1" && basename "$p"
  done
}
echo "time_s daemon_rss_kb daemon_fds daemon_threads appmaster_rss_kb appmaster_fds appmaster_threads kills" > samples.txt
start=$(date +%s); kills=0; next_kill=$kill_every; next_sample=0
while true; do
  now=$(( $(date +%s) - start ))
  [ "$now" -ge "$duration" ] && break
  if [ "$now" -ge "$next_sample" ]; then
    am=$(role_pids appmaster | head -1)
    echo "$now $(sample "$daemon") $(sample "${am:-0}") $kills" >> samples.txt
    next_sample=$(( next_sample + 30 ))
  fi
  if [ "$now" -ge "$next_kill" ]; then
    victim=$(role_pids executor | shuf -n 1 || true)
    if [ -n "$victim" ]; then kill -9 "$victim" && kills=$((kills + 1)); fi
    next_kill=$(( next_kill + kill_every ))
  fi
  sleep 1
done
am=$(role_pids appmaster | head -1)
echo "$duration $(sample "$daemon") $(sample "${am:-0}") $kills" >> samples.txt
status=$(curl -sf "$api/appmaster/1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))' || echo unknown)
cat samples.txt
python3 - "$kills" "$status" <<'PY'
import sys
rows = [l.split() for l in open("samples.txt").read().splitlines()[1:]]
cols = {"daemon RSS (kB)": 1, "daemon FDs": 2, "daemon threads": 3, "AppMaster RSS (kB)": 4, "AppMaster FDs": 5, "AppMaster threads": 6}
for name, i in cols.items():
    vals = [int(r[i]) for r in rows if r[i] != "-"]
    if vals:
        print(f"{name}: first {vals[0]}, last {vals[-1]}, max {max(vals)}")
print(f"executor kills: {sys.argv[1]}; application status at the end: {sys.argv[2]}")
PY
echo "logs and samples in $dir"
