#!/usr/bin/env bash
# The one prepared command for the GPU machine (issues 10 and 11): runs a
# packed dtrain build (tests/gpu/pack.sh) through every GPU check and
# benchmark within 4 minutes of one H200 (docs/gpu.md).
#
#   tests/gpu/run_device.sh PACK OUT_DIR
#
# PACK: the .tar.xz pack.sh wrote (unpacked into a temporary folder here), or
# an unpacked dtrain-gpu/ folder (or the folder holding it). Stages, in order,
# each under its own time limit and all under one budget (DTRAIN_DEVICE_BUDGET_S,
# default 225 s, unpacking included; a stage gets what is left when that is
# less than its limit):
#   start        every packed program starts (--help): no library missing
#   test_*       the GPU test programs; a skip (exit 77) is a failure when a GPU is
#                visible (without one they still run their CPU cases)
#   memcheck_flash, racecheck_flash, memcheck_gpu_ops
#                compute-sanitizer on the GPU kernel tests' short shapes
#   train_vs_pytorch
#                GPT-2 124M in bf16, B=16, T=1024: dtrain-bench's train suite
#                with PyTorch (benchmarks/train/pytorch_gpt2.py) in the same call
#   comm_cuda, kernels_cuda
#                dtrain-bench --quick --suite comm (raw NCCL beside dtrain, up
#                to 8 MiB) and --suite kernels on the GPU
#   bench_cuda_ops, attention_vs_sdpa
#                the op benchmark (attention rows with PyTorch SDPA in the same
#                call); the tensor-core attention versions next to SDPA
#   comm_cpu     dtrain-bench's CPU comm path (runs without a GPU too)
#   long_context GPT-2 124M at T=8192 per attention path with its peak memory
#                (bench_long_context; last, on what the budget has left)
# With no GPU visible (or DTRAIN_RUN_DEVICE_NO_GPU=1) the GPU stages are
# recorded as "no GPU: skipped" and the rest runs. Every stage runs whatever an earlier one did; each writes
# OUT_DIR/<stage>.log, and OUT_DIR/summary.txt (the table) and summary.json
# close the run. Exit status 1 when any check failed, 2 on bad usage.
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 PACK(.tar.xz or folder) OUT_DIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/gpu/pack_libs.sh
source "$HERE/pack_libs.sh"
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
START=$(date +%s)
BUDGET=${DTRAIN_DEVICE_BUDGET_S:-225}

if [[ -f $1 ]]; then
  UNPACK=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-gpu.XXXXXX")
  tar -xJf "$1" -C "$UNPACK" || { echo "run_device.sh: cannot unpack $1" >&2; exit 2; }
  PACK=$UNPACK/dtrain-gpu
elif [[ -f $1/MANIFEST ]]; then
  PACK=$(cd "$1" && pwd)
else
  PACK=$(cd "$1/dtrain-gpu" 2>/dev/null && pwd) || { echo "run_device.sh: no pack at $1" >&2; exit 2; }
fi
[[ -f $PACK/MANIFEST ]] || { echo "run_device.sh: $PACK has no MANIFEST (not made by pack.sh)" >&2; exit 2; }
BIN=$PACK/bin
SCRIPTS=$PACK/scripts
IMAGE_DIRS=$(pack_libs_image_dirs "$PACK" 2>"$OUT/libraries.log")
# PyTorch (started by dtrain-bench and dev_attention) runs with the image's
# own library path, so no packed library (libgomp, OpenBLAS) or toolkit
# folder shadows the ones its wheels bring.
PYTHON=$OUT/python3-image
printf '#!/usr/bin/env bash\nLD_LIBRARY_PATH=%q exec python3 "$@"\n' "${LD_LIBRARY_PATH:-}" >"$PYTHON"
chmod +x "$PYTHON"
export LD_LIBRARY_PATH=$PACK/lib${IMAGE_DIRS:+:$IMAGE_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$OUT/libraries.log"

GPU=0
if [[ ${DTRAIN_RUN_DEVICE_NO_GPU:-0} == 1 ]]; then
  echo "DTRAIN_RUN_DEVICE_NO_GPU=1: GPU stages skipped" >"$OUT/nvidia-smi.txt"
elif nvidia-smi -L >"$OUT/nvidia-smi.txt" 2>&1 && grep -q '^GPU ' "$OUT/nvidia-smi.txt"; then
  GPU=1
  nvidia-smi >>"$OUT/nvidia-smi.txt" 2>&1
fi
SANITIZER=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z $SANITIZER && -x $candidate ]] && SANITIZER=$candidate
done

: >"$OUT/run.log"
NAMES=()
declare -A VERDICT SECONDS_TAKEN NOTE
FAILED=0
say() { echo "$*" | tee -a "$OUT/run.log"; }
record() {  # record NAME VERDICT SECONDS NOTE
  NAMES+=("$1")
  VERDICT[$1]=$2
  SECONDS_TAKEN[$1]=$3
  NOTE[$1]=$4
  [[ $2 == failed ]] && FAILED=1
  say "   -> $1: $2 (${3}s) $4"
}

# stage NAME LIMIT_S KIND COMMAND...: runs COMMAND with its output in
# OUT/NAME.log. KIND: gpu (skipped without a GPU), cpu, or test (a GPU test
# program: it runs without a GPU too, for its CPU cases, and its exit 77 then
# reads "no GPU: skipped"). Exit 0 passes; 77 fails when a GPU is visible;
# 124/137 is a timeout.
stage() {
  local name=$1 limit=$2 needs=$3 t0 rc left verdict note=""
  shift 3
  if [[ $needs == gpu && $GPU -eq 0 ]]; then
    echo "no GPU: skipped" >"$OUT/$name.log"
    record "$name" skipped 0 "no GPU: skipped"
    return
  fi
  left=$((BUDGET - ($(date +%s) - START)))
  if [[ $left -lt 5 ]]; then
    echo "not run: the ${BUDGET}s budget was spent" >"$OUT/$name.log"
    record "$name" failed 0 "not run: budget spent"
    return
  fi
  [[ $left -lt $limit ]] && limit=$left
  say "== $name (limit ${limit}s): $*"
  t0=$(date +%s)
  timeout --signal=TERM --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  case $rc in
    0)
      verdict=ok
      # The benchmarks exit 0 when they see no device ("nothing to measure").
      if [[ $needs == gpu && $GPU -eq 1 ]] && grep -q 'nothing to measure' "$OUT/$name.log"; then
        verdict=failed note="the program saw no GPU although nvidia-smi shows one"
      fi
      ;;
    77)
      if [[ $GPU -eq 1 ]]; then
        verdict=failed note="exit 77: the program saw no GPU although nvidia-smi shows one"
      else
        verdict=skipped note="no GPU: skipped (exit 77 after its CPU cases)"
      fi
      ;;
    124 | 137) verdict=failed note="timed out after ${limit}s" ;;
    *) verdict=failed note="exit $rc" ;;
  esac
  if [[ $verdict == failed ]]; then tail -n 25 "$OUT/$name.log" | sed 's/^/   | /' | tee -a "$OUT/run.log"; fi
  record "$name" "$verdict" $(($(date +%s) - t0)) "$note"
}

# Every packed program must start: a missing library shows here first.
# (Exported: `timeout` runs it in a child bash.)
start_all() {
  local b rc=0
  for b in "$BIN"/*; do
    if "$b" --help >/dev/null 2>"$OUT/start.$(basename "$b").err"; then
      echo "started: $(basename "$b")"
    else
      echo "FAILED to start: $(basename "$b")"
      cat "$OUT/start.$(basename "$b").err"
      rc=1
    fi
    rm -f "$OUT/start.$(basename "$b").err"
  done
  return $rc
}
export -f start_all
export BIN OUT
# The programs named are all packed (a pack of a subset runs the stages it can).
have() { for b in "$@"; do [[ -x $BIN/$b ]] || return 1; done; }

PACK_REV=$(awk '$1 == "revision" { print $2 }' "$PACK/MANIFEST")
say "run_device.sh: pack $PACK_REV, GPU visible: $GPU, budget ${BUDGET}s"
SCRIPTS_REV=$(git -C "$HERE" rev-parse HEAD 2>/dev/null || true)
if [[ -n $SCRIPTS_REV && $SCRIPTS_REV != "$PACK_REV" ]]; then
  say "note: these scripts are at $SCRIPTS_REV, the pack was built at $PACK_REV"
fi
stage start 20 cpu bash -c start_all

for t in test_gpu_runtime test_loss_scaler test_gpu_ops test_flash_attention test_attention_training; do
  have "$t" || continue
  limit=15
  [[ $t == test_gpu_ops || $t == test_flash_attention || $t == test_attention_training ]] && limit=30
  stage "$t" "$limit" test "$BIN/$t" --durations yes
done

if [[ $GPU -eq 1 && -z $SANITIZER ]]; then
  echo "no compute-sanitizer on this machine" >"$OUT/memcheck.log"
  record memcheck failed 0 "no compute-sanitizer found"
else
  SAN=("${SANITIZER:-compute-sanitizer}" --error-exitcode 3)  # skipped without a GPU
  have test_flash_attention && stage memcheck_flash 30 gpu "${SAN[@]}" --tool memcheck "$BIN/test_flash_attention" "[sanitize]"
  have test_flash_attention && stage racecheck_flash 35 gpu "${SAN[@]}" --tool racecheck --racecheck-report all \
    "$BIN/test_flash_attention" "[sanitize]"
  have test_gpu_ops && stage memcheck_gpu_ops 30 gpu "${SAN[@]}" --tool memcheck "$BIN/test_gpu_ops" "~*fallback*"
fi

have dtrain-bench && stage train_vs_pytorch 60 gpu "$BIN/dtrain-bench" --suite train --device cuda \
  --preset gpt2-124m --precision bf16 --batch 16 --seq-len 1024 --steps 10 --zero-stage 0 \
  --pytorch-script "$SCRIPTS/pytorch_gpt2.py" --python "$PYTHON" --out "$OUT/train-report"
# --max-bytes 8M: the latency goal is stated at 8 B and 8 MiB (raw NCCL beside dtrain).
have dtrain-bench && stage comm_cuda 25 gpu "$BIN/dtrain-bench" --quick --suite comm --device cuda --max-bytes 8M \
  --out "$OUT/comm-report"
have dtrain-bench && stage kernels_cuda 25 gpu "$BIN/dtrain-bench" --quick --suite kernels --device cuda \
  --out "$OUT/kernels-report"
have bench_cuda_ops && stage bench_cuda_ops 40 gpu "$BIN/bench_cuda_ops" --quick \
  --python "$PYTHON" --sdpa-script "$SCRIPTS/attention_sdpa.py" --metrics-out "$OUT/bench_cuda_ops.jsonl"
have dev_attention && stage attention_vs_sdpa 25 gpu "$BIN/dev_attention" --python "$PYTHON" \
  --sdpa-script "$SCRIPTS/attention_sdpa.py" \
  --B 8 --T 1024 --NH 12 --hs 64 --dtype bf16
# The CPU path of the comm suite: the pack's dtrain-bench runs here too.
have dtrain-bench && stage comm_cpu 20 cpu "$BIN/dtrain-bench" --quick --suite comm --device cpu --max-bytes 64K
# Last, with what the budget has left: T=8192 training, each attention path's peak (matmul may run out of memory).
have bench_long_context && stage long_context 60 gpu "$BIN/bench_long_context"

TOTAL=$(($(date +%s) - START))
{
  printf '%-20s %-8s %6s  %s\n' stage verdict seconds note
  for n in "${NAMES[@]}"; do printf '%-20s %-8s %6s  %s\n' "$n" "${VERDICT[$n]}" "${SECONDS_TAKEN[$n]}" "${NOTE[$n]}"; done
  printf 'total %ss, GPU visible: %s, status: %s\n' "$TOTAL" "$GPU" "$([[ $FAILED -eq 0 ]] && echo ok || echo FAILED)"
} >"$OUT/summary.txt"
{
  printf '{"total_s": %s, "gpu_visible": %s, "failed": %s, "stages": [' "$TOTAL" \
    "$([[ $GPU -eq 1 ]] && echo true || echo false)" "$([[ $FAILED -eq 1 ]] && echo true || echo false)"
  sep=""
  for n in "${NAMES[@]}"; do
    printf '%s{"name": "%s", "verdict": "%s", "seconds": %s, "note": "%s"}' "$sep" "$n" "${VERDICT[$n]}" \
      "${SECONDS_TAKEN[$n]}" "${NOTE[$n]//\"/\'}"
    sep=", "
  done
  printf ']}\n'
} >"$OUT/summary.json"
# The figures worth reading first, after the table.
grep -hE '^# (train|pytorch|comm|dtrain per-call)|^(sdpa|tc|flash)' "$OUT"/train_vs_pytorch.log "$OUT"/comm_cuda.log \
  "$OUT"/attention_vs_sdpa.log 2>/dev/null | head -n 40 >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
[[ -n ${UNPACK:-} ]] && rm -rf "$UNPACK"
exit $FAILED
