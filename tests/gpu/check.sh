#!/usr/bin/env bash
# GPU check: configure and build dtrain with CUDA, run the GPU tests and the
# CUDA op benchmark, and write logs and JSON to the directory given.
#
#   tests/gpu/check.sh OUT_DIR
#
# Writes OUT_DIR/{check.log, nvidia-smi.txt, configure.log, build.log,
# test.log, ctest-junit.xml, memcheck.log (when compute-sanitizer exists),
# bench.log, bench_cuda_ops.jsonl, summary.json}. Builds only
# the targets it runs, for the GPU's own architecture, so that it finishes in
# a few minutes on one H200 with 16 cores (budget: 8 minutes). Every stage
# runs even when an earlier one failed (the figures are worth having); the
# exit status is non-zero when any stage failed or a test failed.
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DTRAIN_GPU_BUILD_DIR:-$ROOT/build-gpu}
JOBS=$(nproc 2>/dev/null || echo 8)
START=$(date +%s)
declare -A RC DUR

stage() {  # stage NAME TIMEOUT_S LOG COMMAND...
  local name=$1 limit=$2 log=$3
  shift 3
  local t0
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/check.log"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$log" 2>&1
  RC[$name]=$?
  DUR[$name]=$(($(date +%s) - t0))
  echo "   -> exit ${RC[$name]} after ${DUR[$name]}s" | tee -a "$OUT/check.log"
  if [[ ${RC[$name]} -ne 0 ]]; then tail -n 30 "$log" | sed 's/^/   | /'; fi
}

: >"$OUT/check.log"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >>"$OUT/nvidia-smi.txt"
# Build for this GPU only (compute capability 9.0 -> "90"); both supported
# architectures when it cannot be read.
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
GPU_SEEN=1
[[ $ARCH =~ ^[0-9]+$ ]] || { ARCH="80;90"; GPU_SEEN=0; }
GEN=Ninja
command -v ninja >/dev/null || GEN="Unix Makefiles"

stage configure 120 "$OUT/configure.log" \
  cmake -S "$ROOT" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DDTRAIN_WITH_CUDA=ON -DDTRAIN_WERROR=ON \
  "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" -DDTRAIN_BUILD_EXAMPLES=OFF -DDTRAIN_BUILD_BENCHMARKS=ON -DDTRAIN_BUILD_TESTS=ON
TARGETS=(test_core test_gpu_runtime test_loss_scaler test_gpu_ops bench_cuda_ops)
stage build 300 "$OUT/build.log" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
stage test 180 "$OUT/test.log" \
  ctest --test-dir "$BUILD" -R '^(test_core|test_gpu_runtime|test_loss_scaler|test_gpu_ops):' --output-on-failure \
  --timeout 120 --output-junit "$OUT/ctest-junit.xml"
# Tests that ctest reports as skipped on a GPU machine would mean the GPU was not seen.
SKIPPED=$(grep -c '\*\*\*Skipped' "$OUT/test.log" 2>/dev/null || true)
# Out-of-bounds and misaligned accesses in the kernels, when the toolkit has
# compute-sanitizer (informational: recorded, does not change the status).
SANITIZER=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z $SANITIZER && -x $candidate ]] && SANITIZER=$candidate
done
if [[ -n $SANITIZER && ${RC[build]} -eq 0 ]]; then
  stage memcheck 90 "$OUT/memcheck.log" "$SANITIZER" --tool memcheck --error-exitcode 3 \
    "$BUILD/tests/gpu/test_gpu_ops" "~*fallback*"
else
  echo "== memcheck skipped: no compute-sanitizer in this toolkit" | tee -a "$OUT/check.log"
fi
stage bench 150 "$OUT/bench.log" "$BUILD/benchmarks/cuda_ops/bench_cuda_ops" --metrics-out "$OUT/bench_cuda_ops.jsonl"
if [[ ${RC[bench]} -ne 0 ]]; then
  # A crash or timeout in the full run: keep what it wrote, then try the quick one.
  [[ -f $OUT/bench_cuda_ops.jsonl ]] && mv "$OUT/bench_cuda_ops.jsonl" "$OUT/bench_cuda_ops.partial.jsonl"
  stage bench_quick 60 "$OUT/bench_quick.log" "$BUILD/benchmarks/cuda_ops/bench_cuda_ops" --quick \
    --metrics-out "$OUT/bench_cuda_ops.jsonl"
fi

TOTAL=$(($(date +%s) - START))
python3 - "$OUT" "$TOTAL" "$SKIPPED" "$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$(for k in "${!RC[@]}"; do echo "$k=${RC[$k]}:${DUR[$k]}"; done)" <<'PY' || true
import json, sys
out, total, skipped, rev, stages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0), sys.argv[4], sys.argv[5]
summary = {"revision": rev, "total_s": total, "skipped_tests": skipped, "stages": {}}
for item in stages.split():
    name, rest = item.split("=", 1)
    rc, dur = rest.split(":")
    summary["stages"][name] = {"exit": int(rc), "seconds": int(dur)}
try:
    with open(f"{out}/bench_cuda_ops.jsonl") as f:
        finals = [json.loads(l) for l in f if l.strip() and json.loads(l).get("final")]
    summary["bench"] = finals[-1] if finals else None
except OSError:
    summary["bench"] = None
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps(summary, indent=2))
PY

STATUS=0
for k in configure build test; do [[ ${RC[$k]:-1} -eq 0 ]] || STATUS=1; done
if [[ $GPU_SEEN -eq 1 && $SKIPPED -gt 0 ]]; then
  echo "check.sh: nvidia-smi shows a GPU but $SKIPPED test(s) skipped: the tests did not see it" | tee -a "$OUT/check.log"
  STATUS=1
fi
[[ ${RC[bench]:-1} -eq 0 || ${RC[bench_quick]:-1} -eq 0 ]] || STATUS=1
echo "check.sh: done in ${TOTAL}s, status $STATUS (logs in $OUT)"
exit $STATUS
