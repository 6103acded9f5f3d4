#!/usr/bin/env bash
# One device call: GPU tests, the full benchmark, then the tile variants.
# Run from the worktree root on the GPU machine: bench/attention_gpu_run.sh BUILD_DIR OUTDIR
set -uo pipefail
source "$(dirname "$0")/gpu_run_common.sh"
if command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$lib" | grep -oE "HMMA[.A-Z0-9]*|LDSM[.A-Z0-9]*|LDGSTS[.A-Z0-9]*|LDL|STL" | sort | uniq -c | tee "$out/sass.txt"
fi
timeout 200 ctest --test-dir "$build" -L gpu --output-on-failure 2>&1 | tee "$out/ctest.log" | tail -40
timeout 300 python3 bench/attention.py --lib "$lib" --json "$out/attention.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log" | grep -v '^{'
for v in ${VARIANTS:-}; do
  timeout 60 python3 bench/attention.py --lib "$lib" --scree-only --variant "$v" --cases ${VARIANT_CASES:-0,2,3} --json "$out/variant$v.json" 2>&1 | grep -E '^\|' | tail -n +3 | sed "s/^/variant $v: /"
done
