#!/usr/bin/env bash
# Hadoop for the HDFS tests, benchmarks and examples: a real NameNode and DataNode (Hadoop's
# MiniDFSCluster, WebHDFS on) in one JVM, and Hadoop's own SequenceFile reader and writer.
# Java is test infrastructure only: the jars come from Maven Central.
#
#   tools/hadoop/hadoop.sh fetch                      copy the jars into the cache, compile Hdfs.java
#   tools/hadoop/hadoop.sh hdfs DIR [PORT] [WATCH]    start HDFS keeping its data in DIR, the NameNode
#                                                     on 127.0.0.1:PORT (default: a free port);
#                                                     prints "namenode=hdfs://127.0.0.1:P
#                                                     webhdfs=127.0.0.1:H pid=PID". With WATCH (a
#                                                     PID), HDFS stops when that process ends.
#   tools/hadoop/hadoop.sh restart-namenode DIR       restart the NameNode of the HDFS in DIR
#   tools/hadoop/hadoop.sh stop DIR                   stop the HDFS started in DIR
#   tools/hadoop/hadoop.sh text URI...                print SequenceFiles (a file or a directory's
#                                                     visible files) as key<TAB>value, read by
#                                                     Hadoop's SequenceFile.Reader
#   tools/hadoop/hadoop.sh write URI N COMPRESSION [START]
#                                                     write N records (i, "record i"), i from
#                                                     START, with Hadoop's writer (NONE,
#                                                     RECORD, BLOCK; DefaultCodec, or
#                                                     RECORD:<codec class>)
#
# The cache is $GEARPUMP_HADOOP_LIBS (default ~/.cache/gearpump/hadoop-3.4.2-r1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="${GEARPUMP_HADOOP_LIBS:-$HOME/.cache/gearpump/hadoop-3.4.2-r1}"

fetch() {
  if [ -f "$libs/.complete" ] && [ "$libs/classes/Hdfs.class" -nt "$here/Hdfs.java" ]; then return 0; fi
  mkdir -p "$libs/classes"
  if [ ! -f "$libs/.fetched" ]; then
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime >&2
    touch "$libs/.fetched"
  fi
  javac -nowarn -d "$libs/classes" -cp "$libs/*" "$here/Hdfs.java" >&2
  touch "$libs/.complete"
}

java_run() {
  java -Dlog4j.configuration="file:$here/log4j.properties" -cp "$libs/classes:$libs/*" Hdfs "$@"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

hdfs() {
  local dir="$1" port="${2:-}" watch="${3:-}"
  [ -n "$port" ] && [ "$port" != 0 ] || port=$(free_port)
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  # The same HTTP port after a restart keeps webhdfs:// URLs valid.
  local http
  if [ -f "$dir/http.port" ]; then http=$(cat "$dir/http.port"); else http=$(free_port); echo "$http" > "$dir/http.port"; fi
  rm -f "$dir/restart-namenode"
  java -Xms128m -Xmx768m -XX:+UseSerialGC -Dlog4j.configuration="file:$here/log4j.properties" \
    -cp "$libs/classes:$libs/*" Hdfs cluster "$dir" "$port" "$http" > "$dir/hdfs.out" 2> "$dir/hdfs.log" &
  local pid=$!
  echo "$pid" > "$dir/hdfs.pid"
  if [ -n "$watch" ]; then
    ( while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done; kill "$pid" 2>/dev/null ) \
      > /dev/null 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 240); do
    if grep -q '^namenode=' "$dir/hdfs.out" 2>/dev/null; then
      echo "$(grep '^namenode=' "$dir/hdfs.out" | head -n 1) pid=$pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "HDFS did not start; see $dir/hdfs.log" >&2
  tail -n 20 "$dir/hdfs.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  return 1
}

restart_namenode() {
  local dir="$1" before
  before=$(grep -c 'the NameNode is back' "$dir/hdfs.out" || true)
  touch "$dir/restart-namenode"
  for _ in $(seq 1 240); do
    if [ "$(grep -c 'the NameNode is back' "$dir/hdfs.out" || true)" -gt "$before" ]; then echo "the NameNode is back"; return 0; fi
    sleep 0.25
  done
  echo "the NameNode did not come back; see $dir/hdfs.log" >&2
  return 1
}

stop() {
  local pid
  pid=$(cat "$1/hdfs.pid")
  kill "$pid" 2>/dev/null || true
}

case "${1:-}" in
  fetch) fetch ;;
  hdfs) shift; hdfs "$@" ;;
  restart-namenode) shift; restart_namenode "$@" ;;
  stop) shift; stop "$@" ;;
  text) shift; fetch; java_run text "$@" ;;
  write) shift; fetch; java_run write "$@" ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
