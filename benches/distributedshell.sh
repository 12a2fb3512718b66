#!/usr/bin/env bash
# Round trip of a DistributedShell command on a local cluster (release build): `gear local
# -workernum N` runs the master and N workers; distributedshell runs one executor on each; the
# client (a new process each time: resolve the app id at the master, connect to the AppMaster,
# which asks every executor to run `true` and gathers the answers) is timed RUNS times.
#   cargo build --release -p gear -p gearpump-examples && benches/distributedshell.sh [RUNS] [WORKERS]
set -euo pipefail
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release"
runs=${1:-50}
workers=${2:-2}
dir=$(mktemp -d)
cd "$dir"
port=$((20000 + RANDOM % 20000))
printf 'gearpump.cluster.masters = ["127.0.0.1:%s"]\n' "$port" > c.conf
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; cd /; rm -rf "$dir"; }
trap cleanup EXIT
"$bin/gear" -conf c.conf local -workernum "$workers" > local.out 2>&1 & pid=$!
sleep 1
"$bin/gear" -conf c.conf app -jar "$bin/distributedshell" > app.out 2>&1
python3 - "$bin/distributedshell_client" "$runs" "$workers" <<'PY'
import subprocess, sys, time
client, runs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cmd = [client, "-conf", "c.conf", "-appid", "1", "-command", "true"]
# Until every worker has its executor.
for _ in range(200):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.count("== worker") == workers:
        break
    time.sleep(0.1)
times = []
for _ in range(runs):
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    times.append((time.perf_counter() - t) * 1000)
    assert out.returncode == 0 and out.stdout.count("== worker") == workers, out
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{runs} commands on {workers} workers: p50 {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, p99 {pick(0.99):.1f} ms, max {times[-1]:.1f} ms")
PY
