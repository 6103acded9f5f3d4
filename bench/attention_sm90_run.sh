#!/usr/bin/env bash
# One device call for the Hopper attention kernel: the GPU tests under every
# kernel choice, the sm90 switches (kernels/NOTES.md) timed side by side with
# the mma.sync kernels, then the full table beside the peers.
# Run from the directory holding the build on the GPU machine:
#   bench/attention_sm90_run.sh BUILD_DIR OUTDIR
set -uo pipefail
source "$(dirname "$0")/gpu_run_common.sh"
timeout 100 ctest --test-dir "$build" -R test_attention_cuda --timeout 60 --output-on-failure >"$out/ctest.log" 2>&1
grep -E "tests passed|Passed|Failed|\*\*\*|seed=" "$out/ctest.log" | head -20
for env in "SCREE_ATTN_SM90_LOOP=1" "SCREE_ATTN_SM90_PERSIST=0" "SCREE_ATTN_SM90_QBUF=1"; do
  echo "== test with $env"
  env $env SCREE_ATTN_SM90=2 SCREE_ATTN_SM90_MIN_SEQLEN=0 timeout 60 "$build/tests/test_attention_cuda" --jobs 1 2>&1 | tail -1
done | tee "$out/vtests.log"
for env in "SCREE_ATTN_SM90=1" "SCREE_ATTN_SM90_LOOP=1" "SCREE_ATTN_SM90_PERSIST=0" "SCREE_ATTN_SM90=0"; do
  echo "== $env"
  env $env SCREE_ATTN_SM90_MIN_SEQLEN=0 timeout 60 python3 bench/attention.py --lib "$lib" --scree-only 2>&1 |
    grep -E '^\| d|rror' | cut -d'|' -f2,6
done | tee "$out/variants.log"
timeout 150 python3 bench/attention.py --lib "$lib" --json "$out/attention.json" 2>&1 | grep -E '^\||rror' | tee "$out/full.log"
