#!/usr/bin/env bash
# Everything that needs the GPU, in one device call: the GPU tests, the Python
# suite (its GPU tests included), the GPU handoff beside torch.multiprocessing,
# the padded<->packed conversions and the attention benchmark.
#
#   bench/gpu_all.sh BUILD_DIR PYSITE OUTDIR [stages]
#
# BUILD_DIR is a Release CUDA build bundled with tools/gpu-bundle, PYSITE a
# folder where `pip install --target` put the scree package built for the GPU
# machine's Python. stages: any of tests python handoff bridges attention
# cudnn (default: all but cudnn, the uniform batches beside cuDNN of
# bench/attention.py --cudnn). Each stage writes its log under OUTDIR; the
# last lines printed are the summary.
set -uo pipefail
build=${1:?build dir}
pysite=${2:?python site}
out=${3:?out dir}
stages=${4:-tests python handoff bridges attention}
mkdir -p "$out"
# Absolute: tests start Python children in other directories.
build=$(cd "$build" && pwd)
pysite=$(cd "$pysite" && pwd)
source "$build/gpu-env.sh"
export PYTHONUNBUFFERED=1
summary=()
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

for stage in $stages; do
  case $stage in
  tests)
    # 480 s: the attention accuracy tests (seven processes, one per kernel
    # choice) add an estimated minute and a half (not yet measured).
    SCREE_GPU_TEST_ALARM=120 timeout 480 ctest --test-dir "$build" -L gpu --output-on-failure \
      >"$out/ctest.log" 2>&1
    summary+=("ctest -L gpu: $(grep -E 'tests passed' "$out/ctest.log")")
    ;;
  python)
    PYTHONPATH="$pysite" SCREE_BUILD_DIR="$build" SCREE_REQUIRE_NATIVE=1 \
      timeout 400 python3 -m pytest -q -rs tests/python >"$out/pytest.log" 2>&1
    summary+=("pytest: $(tail -1 "$out/pytest.log")")
    ;;
  handoff)
    timeout 300 "$build/bench/handoff_gpu" "$build/daemon/screed" >"$out/handoff.md" 2>&1
    cached=$(awk '/^cached_attach_us/ {print $2}' "$out/handoff.md")
    timeout 240 python3 bench/handoff_torch.py --cached-attach-us "${cached:-0}" \
      >>"$out/handoff.md" 2>&1
    summary+=("handoff: $(grep -E '^ratio' "$out/handoff.md" | tr '\n' ';')")
    ;;
  bridges)
    PYTHONPATH="$pysite" timeout 240 python3 bench/bridges_gpu.py --out "$out/bridges.json" \
      2>&1 | tail -20
    summary+=("bridges: exit ${PIPESTATUS[0]}")
    ;;
  attention)
    timeout 300 python3 bench/attention.py --lib "$build/kernels/libscreekernels.so" \
      --json "$out/attention.json" >"$out/attention.log" 2>&1
    summary+=("attention: exit $?")
    ;;
  cudnn)
    timeout 300 python3 bench/attention.py --lib "$build/kernels/libscreekernels.so" --cudnn \
      --json "$out/cudnn.json" >"$out/cudnn.log" 2>&1
    summary+=("cudnn: exit $?")
    ;;
  esac
done
printf '%s\n' "${summary[@]}"
