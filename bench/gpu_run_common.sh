# Sourced by the one-call GPU scripts that take BUILD_DIR and OUTDIR
# (attention_gpu_run.sh, attention_sm90_run.sh): sets build, out and lib
# (the kernels library), makes OUTDIR, loads the bundled build's
# environment and records the device in OUTDIR/gpu.txt.
build=${1:-build-gpu}
out=${2:-${OUT:-/tmp/out}}
mkdir -p "$out"
source "$build/gpu-env.sh"
export PYTHONUNBUFFERED=1
lib=$build/kernels/libscreekernels.so
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
