#!/usr/bin/env bash
# The prepared GPU run of the tensor-core flash attention (issue 11), for a
# session with a GPU: tests against the CPU reference, compute-sanitizer
# memcheck and racecheck on the new kernels, the dev benchmark next to
# PyTorch SDPA, at more shapes and with longer limits than the combined run
# (tests/gpu/run_device.sh) can afford. Runs already-built binaries: a build
# folder, or a pack made by tests/gpu/pack.sh and unpacked (the GPU machine
# cannot configure dtrain; docs/gpu.md).
#
#   tests/gpu/check_attention.sh BUILD_DIR|PACK_DIR OUT_DIR
#
# Needs test_flash_attention, test_gpu_ops and dev_attention. Writes OUT_DIR/{check.log,
# nvidia-smi.txt, test.log, gpu_ops_attention.log, memcheck.log,
# racecheck.log, bench_bf16.log, bench_hs128.log, bench_full.log}. Budget:
# about 4 minutes on one H200. Every stage runs even when an earlier one
# failed; the exit status is non-zero when any stage failed.
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -f $BUILD/MANIFEST ]]; then  # a pack: flat bin/, its libraries on the path
  # shellcheck source=tests/gpu/pack_libs.sh
  source "$HERE/pack_libs.sh"
  IMAGE_DIRS=$(pack_libs_image_dirs "$BUILD")
  export LD_LIBRARY_PATH=$BUILD/lib${IMAGE_DIRS:+:$IMAGE_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  TEST=$BUILD/bin/test_flash_attention
  GPU_OPS=$BUILD/bin/test_gpu_ops
  BENCH=$BUILD/bin/dev_attention
  SDPA=$BUILD/scripts/attention_sdpa.py
else
  TEST=$BUILD/tests/gpu/test_flash_attention
  GPU_OPS=$BUILD/tests/gpu/test_gpu_ops
  BENCH=$BUILD/benchmarks/cuda_ops/dev/dev_attention
  SDPA=$HERE/../../benchmarks/cuda_ops/dev/attention_sdpa.py
fi
STATUS=0
: >"$OUT/check.log"

stage() {  # stage NAME TIMEOUT_S LOG COMMAND...
  local name=$1 limit=$2 log=$3 t0 rc
  shift 3
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/check.log"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  echo "   -> exit $rc after $(($(date +%s) - t0))s" | tee -a "$OUT/check.log"
  if [[ $rc -ne 0 ]]; then
    tail -n 40 "$log" | sed 's/^/   | /' | tee -a "$OUT/check.log"
    STATUS=1
  fi
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >>"$OUT/nvidia-smi.txt"
for f in "$TEST" "$GPU_OPS" "$BENCH"; do
  [[ -x $f ]] || { echo "check_attention.sh: missing $f (build it first)" | tee -a "$OUT/check.log"; STATUS=1; }
done

# 1. Every shape class against the CPU reference (exit 77 = no GPU seen: a failure here).
stage test 240 "$OUT/test.log" "$TEST" --durations yes
# The other implementations' attention case (the independent checks stay right).
stage gpu_ops_attention 120 "$OUT/gpu_ops_attention.log" "$GPU_OPS" "gpu ops: causal attention*"

# 2. compute-sanitizer on the small shapes (the new kernels, both masks and head sizes).
SANITIZER=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z $SANITIZER && -x $candidate ]] && SANITIZER=$candidate
done
if [[ -n $SANITIZER ]]; then
  stage memcheck 180 "$OUT/memcheck.log" "$SANITIZER" --tool memcheck --error-exitcode 3 "$TEST" "[sanitize]"
  stage racecheck 240 "$OUT/racecheck.log" "$SANITIZER" --tool racecheck --racecheck-report all --error-exitcode 3 \
    "$TEST" "[sanitize]"
else
  echo "== sanitizers skipped: no compute-sanitizer found" | tee -a "$OUT/check.log"
  STATUS=1
fi

# 3. The dev benchmark with PyTorch SDPA in the same call (issue 11's table).
stage bench_bf16 150 "$OUT/bench_bf16.log" "$BENCH" --sdpa-script "$SDPA" --B 8 --T 1024,2048 --NH 12 --hs 64 --dtype bf16
stage bench_hs128 90 "$OUT/bench_hs128.log" "$BENCH" --sdpa-script "$SDPA" --B 8 --T 2048 --NH 6 --hs 128 --dtype bf16
stage bench_full 60 "$OUT/bench_full.log" "$BENCH" --sdpa-script "$SDPA" --B 8 --T 1024 --NH 12 --hs 64 --full
cat "$OUT"/bench_*.log | grep -E '^(==|matmul|flash|tc|sdpa)' | tee -a "$OUT/check.log"

echo "check_attention.sh: status $STATUS (logs in $OUT)" | tee -a "$OUT/check.log"
exit $STATUS
