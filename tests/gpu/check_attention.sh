#!/usr/bin/env bash
# The prepared GPU run of the tensor-core flash attention (issue 11), for a
# session with a GPU: tests against the CPU reference, compute-sanitizer
# memcheck and racecheck on the new kernels, the dev benchmark next to
# PyTorch SDPA. Runs already-built binaries (the GPU machine cannot configure
# dtrain: build with CUDA where it can, pack with tests/gpu/pack_attention.sh,
# unpack there; see /work/shared/BUILD-NOTES.md).
#
#   tests/gpu/check_attention.sh BUILD_DIR OUT_DIR
#
# Needs in BUILD_DIR: tests/gpu/test_flash_attention, tests/gpu/test_gpu_ops,
# benchmarks/cuda_ops/dev/dev_attention. Writes OUT_DIR/{check.log,
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
TEST=$BUILD/tests/gpu/test_flash_attention
GPU_OPS=$BUILD/tests/gpu/test_gpu_ops
BENCH=$BUILD/benchmarks/cuda_ops/dev/dev_attention
SDPA=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/benchmarks/cuda_ops/dev/attention_sdpa.py
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
