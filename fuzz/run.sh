#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (what `cargo fuzz build`
# does, without needing cargo-fuzz or a nightly compiler) and runs each for SECONDS (default
# 20). A crash stops the run; its input is left in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
targets=(data_frame control_message config rest_json redact seqfile)
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# With an explicit --target, RUSTFLAGS leave build scripts uninstrumented (as cargo-fuzz does).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --locked --bins --target "$host"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${seconds}s"
  "target/$host/release/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" \
    -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|INFO: Running|.*(panicked|ERROR|SUMMARY))" || true
  if compgen -G "artifacts/$t/crash-*" >/dev/null; then
    echo "fuzz target $t crashed; inputs in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
