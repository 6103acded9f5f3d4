#!/usr/bin/env bash
# Issue 14 on the GPU machine, in one bounded run (under 4 minutes): the GPU
# cases that show arena reuse, screectl get of GPU batches and the default
# memory limit, the whole GPU suite, then bench/handoff_gpu (every row of the
# issue's table) and torch.multiprocessing beside it.
#
#   bench/gpu_issue14.sh BUILD_DIR OUTDIR
#
# BUILD_DIR: a Release build with -DSCREE_CUDA=ON (bundled with
# tools/gpu-bundle when it holds gpu-env.sh). Logs go under OUTDIR; the
# summary is printed last.
set -uo pipefail
build=${1:?build dir}
out=${2:?out dir}
mkdir -p "$out"
build=$(cd "$build" && pwd)
[ -f "$build/gpu-env.sh" ] && source "$build/gpu-env.sh"
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader \
  | tee "$out/gpu.txt"
date -u +%Y-%m-%dT%H:%MZ >>"$out/gpu.txt"

# 1. Every case of test_cuda_ipc, one line each: the new ones (reuse_*, small_puts_*,
#    screectl_get_*, default_limit_*) and the old ones they could break
#    (exhaustion_* waits for emptied arenas now).
SCREE_GPU_TEST_ALARM=60 timeout 100 "$build/tests/gpu/test_cuda_ipc" >"$out/test_cuda_ipc.log" 2>&1
rc=$?
summary+=("test_cuda_ipc: exit $rc ($(grep -cE '^PASS' "$out/test_cuda_ipc.log") passed, $(grep -cE '^SKIP' "$out/test_cuda_ipc.log") skipped)")
while read -r line; do summary+=("  $line"); done \
  < <(grep -E '^(FAIL|SKIP|CRASH)' "$out/test_cuda_ipc.log"; \
      grep -E '^PASS (reuse|screectl_get|default_limit|small_puts)' "$out/test_cuda_ipc.log")

# 2. The rest of the GPU suite.
SCREE_GPU_TEST_ALARM=40 timeout 40 ctest --test-dir "$build" -L gpu -E '^test_cuda_ipc$' \
  --output-on-failure >"$out/ctest-gpu.log" 2>&1
summary+=("ctest -L gpu (other tests): $(grep -E 'tests passed|tests failed' "$out/ctest-gpu.log" || echo 'timed out')")

# 3. The handoff bench, then torch.multiprocessing for its ratio rows.
timeout 70 "$build/bench/handoff_gpu" "$build/daemon/screed" >"$out/handoff.md" \
  2>"$out/handoff.err"
summary+=("handoff_gpu: exit $?")
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout 30 python3 bench/handoff_torch.py --quick \
    --cached-attach-us "$(awk '/^cached_attach_us / {print $2}' "$out/handoff.md")" \
    >"$out/torch.md" 2>&1
  for k in 1MiB 1GiB 8GiB; do
    label=$(echo "$k" | sed 's/MiB/ MiB/; s/GiB/ GiB/')
    tp=$(awk -F'|' -v l=" $label " '$2 == l {gsub(/ /, "", $3); print $3}' "$out/torch.md")
    ca=$(awk -v k="cached_attach_us_$k" '$1 == k {print $2}' "$out/handoff.md")
    if [ -n "$tp" ] && [ -n "$ca" ]; then
      summary+=("row torch.mp / cached attach, $label: $tp / $ca = $(awk -v a="$tp" -v b="$ca" 'BEGIN {printf "%.1f", a / b}') [>= 20]")
    fi
  done
else
  summary+=("torch: not available, no torch.multiprocessing rows")
fi

echo
echo "== issue 14 summary =="
cat "$out/gpu.txt"
printf '%s\n' "${summary[@]}"
grep -E '^row ' "$out/handoff.md"
