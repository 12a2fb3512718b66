#!/usr/bin/env bash
# File connector throughput (100-byte records; exactly-once sink, then the source) on a local
# directory, HDFS (hdfs:// natively and webhdfs://; Hadoop's MiniDFSCluster: one NameNode and one
# DataNode in a JVM on this machine) and S3 (moto's server, a Python emulator: a floor, not
# what a real S3 does). Release build:
#   cargo build --release -p gearpump-examples --bin files_bench && benches/files.sh [RECORDS]
# Needs Java 17 and Maven (tools/hadoop/hadoop.sh) and python3 with moto[server] (as .ci/run
# installs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release/files_bench"
records="${1:-2000000}"
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
hdfs=$(bash "$root/tools/hadoop/hadoop.sh" hdfs "$dir/hdfs" 0 $$)
pids+=("$(echo "$hdfs" | sed 's/.*pid=//')")
nn=$(echo "$hdfs" | sed 's/.*namenode=\([^ ]*\).*/\1/')
web=$(echo "$hdfs" | sed 's/.*webhdfs=\([^ ]*\).*/\1/')
s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
python3 -m moto.server -H 127.0.0.1 -p "$s3port" > "$dir/moto.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$s3port/" && break; sleep 0.1; done
curl -s -X PUT "http://127.0.0.1:$s3port/bench" > /dev/null
s3="s3://bench/files?endpoint=http://127.0.0.1:$s3port&region=us-east-1&access_key_id=test&secret_access_key=test"
for format in text seq; do
  for url in "$dir/local-$format" "$nn/bench-$format" "webhdfs://$web/web-$format" "${s3/files/files-$format}"; do
    echo "== $(echo "$url" | sed 's/?.*//') ($format)"
    "$bin" -url "$url" -records "$records" -format "$format" -checkpointDir "$dir/ckpt" 2>/dev/null | grep -E '^(write|read)'
  done
done
