#!/usr/bin/env bash
# The word count as users run it (gearpump_examples::words: lines of ten words from a 10,000-word
# vocabulary, an owned String per word, hash partitioning by word, a running count per word),
# run side by side on this engine (Task API and DSL, embedded cluster), Timely Dataflow and Apache
# Flink (DataStream API on its local mini cluster), at parallelism 2; prints each run and the
# ratios of the best runs.
#
#   benches/wordcount_peers.sh [WORDS] [RUNS]      defaults: 50000000 words, 1 run of each
#
# Builds what it runs: wordcount_bench (release), the Timely peer (benches/peers/timely, a
# workspace of its own) and the Flink peer (benches/peers/flink: its jars fetched from Maven
# Central into ~/.cache/gearpump/flink-2.3.0, the job compiled with javac). Needs Java 17 and
# Maven for Flink, and /usr/bin/time for peak memory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
words="${1:-50000000}"
runs="${2:-1}"
p=2
flink_libs="${GEARPUMP_FLINK_LIBS:-$HOME/.cache/gearpump/flink-2.3.0}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== building" >&2
(cd "$root" && cargo build -q --release -p gearpump-examples --bin wordcount_bench)
(cd "$root/benches/peers/timely" && cargo build -q --release --locked)
if [ ! -f "$flink_libs/.complete" ]; then
  mkdir -p "$flink_libs"
  mvn -q -B -f "$root/benches/peers/flink/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$flink_libs" -DincludeScope=runtime >&2
  touch "$flink_libs/.complete"
fi
javac -d "$out/classes" -cp "$flink_libs/*" "$root/benches/peers/flink/src/main/java/gearpump/peers/WordCount.java"

# run NAME COMMAND...: one run; records "NAME words/s peak-KB wall-s" in $out/results.
run() {
  local name="$1"; shift
  /usr/bin/time -f "peak_kb=%M wall=%e" -o "$out/time" "$@" > "$out/stdout" 2> "$out/stderr" || {
    cat "$out/stdout" "$out/stderr" >&2; echo "$name failed" >&2; exit 1; }
  local line peak wall rate
  line=$(grep -E "throughput=" "$out/stdout" | tail -1)
  peak=$(sed 's/.*peak_kb=\([0-9]*\).*/\1/' "$out/time" | tail -1)
  wall=$(sed 's/.*wall=\([0-9.]*\).*/\1/' "$out/time" | tail -1)
  rate=$(echo "$line" | sed 's/.*throughput=\([0-9.]*\)M.*/\1/')
  # The rate over the whole process (start-up included), for the table's second figure.
  local whole
  whole=$(python3 -c "print(f'{$words / $wall / 1e6:.2f}')")
  echo "$name $rate $peak $wall $whole" >> "$out/results"
  printf '%-8s %s   (process: %ss, %sM words/s; peak %s MB)\n' "$name" "$line" "$wall" "$whole" "$((peak / 1024))" >&2
}

echo "== running: $words words, parallelism $p, $runs run(s) each" >&2
for _ in $(seq "$runs"); do
  run task "$root/target/release/wordcount_bench" -api task -words "$words" -parallelism "$p"
  run dsl "$root/target/release/wordcount_bench" -api dsl -words "$words" -parallelism "$p"
  run timely "$root/benches/peers/timely/target/release/wordcount-timely" "$words" "$p"
  run flink java -cp "$out/classes:$flink_libs/*" gearpump.peers.WordCount "$words" "$p"
done

python3 - "$out/results" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    name, rate, peak, wall, whole = line.split()
    r = best.setdefault(name, {"rate": 0.0, "peak": 0, "wall": 1e9, "whole": 0.0})
    r["rate"] = max(r["rate"], float(rate)); r["peak"] = max(r["peak"], int(peak))
    r["wall"] = min(r["wall"], float(wall)); r["whole"] = max(r["whole"], float(whole))
print(f"{'engine':8} {'M words/s':>10} {'process s':>10} {'peak MB':>8}")
for name in ("task", "dsl", "timely", "flink"):
    r = best[name]
    print(f"{name:8} {r['rate']:>10.2f} {r['wall']:>10.2f} {r['peak'] / 1024:>8.0f}")
t, f = best["timely"]["rate"], best["flink"]["rate"]
for name in ("task", "dsl"):
    r = best[name]
    print(f"{name}: {r['rate'] / t:.2f}x Timely, {r['rate'] / f:.2f}x Flink (its job time), "
          f"peak memory {r['peak'] / best['flink']['peak']:.3f} of Flink's")
PY
