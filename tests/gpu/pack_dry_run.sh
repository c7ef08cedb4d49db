#!/usr/bin/env bash
# ctest gpu:pack_dry_run: the GPU machine's path, rehearsed without a GPU on a
# few programs, so the pack cannot rot between GPU sessions (docs/gpu.md):
# pack.sh packs them, check_pack.sh finds every library they need in the pack
# (and starts them with the system's other libraries hidden, as root),
# run_device.sh runs the pack with the GPU stages reported as skipped; with
# one program broken it runs every stage and exits 1; and a pack with one
# library removed must be refused.
#
#   tests/gpu/pack_dry_run.sh BUILD_DIR
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(cd "$1" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-pack-dry-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() {
  echo "pack_dry_run: FAILED: $*"
  exit 1
}
t0=$(date +%s)

# A fast compression level: this checks the contents, not the size.
XZ_OPT="-0 -T0" bash "$HERE/pack.sh" "$BUILD" "$WORK/pack.tar.xz" tests/gpu/test_loss_scaler bin/dtrain-bench \
  benchmarks/cuda_ops/bench_cuda_ops || fail "pack.sh"
mkdir -p "$WORK/unpacked"
tar -xJf "$WORK/pack.tar.xz" -C "$WORK/unpacked" || fail "unpacking"
grep -q '^from_image libcudart.so' "$WORK/unpacked/dtrain-gpu/MANIFEST" || fail "MANIFEST names no CUDA runtime"
[[ -f $WORK/unpacked/dtrain-gpu/lib/libgloo.so.0 ]] || fail "Gloo (loaded by dtrain-bench) was not packed"

bash "$HERE/check_pack.sh" "$WORK/unpacked/dtrain-gpu" || fail "check_pack.sh on the pack"

DTRAIN_RUN_DEVICE_NO_GPU=1 bash "$HERE/run_device.sh" "$WORK/pack.tar.xz" "$WORK/out"
rc=$?
[[ $rc -eq 0 ]] || fail "run_device.sh exited $rc"
summary=$WORK/out/summary.txt
grep -qE '^start +ok' "$summary" || fail "the start stage did not pass"
grep -qE '^test_loss_scaler +skipped .*no GPU: skipped' "$summary" || fail "the GPU test was not reported as skipped"
grep -qE '^comm_cpu +ok' "$summary" || fail "the CPU comm stage did not pass"
grep -q '^# comm: 1 ranks, cpu' "$WORK/out/comm_cpu.log" || fail "the CPU comm stage printed no table"
if grep -qE ' failed ' "$summary"; then fail "a stage failed"; fi

# A broken program: its stages fail, the others still run, the exit is 1.
printf '#!/bin/sh\nexit 3\n' >"$WORK/unpacked/dtrain-gpu/bin/dtrain-bench"
DTRAIN_RUN_DEVICE_NO_GPU=1 bash "$HERE/run_device.sh" "$WORK/unpacked/dtrain-gpu" "$WORK/broken" >/dev/null 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "run_device.sh exited $rc with a broken dtrain-bench (want 1)"
grep -qE '^start +failed' "$WORK/broken/summary.txt" || fail "the start stage passed a program that cannot start"
grep -qE '^comm_cpu +failed .*exit 3' "$WORK/broken/summary.txt" || fail "comm_cpu did not fail with exit 3"
grep -qE '^test_loss_scaler +skipped' "$WORK/broken/summary.txt" || fail "the run stopped at the first failure"

# The check must refuse a pack that lacks a library its programs load.
rm "$WORK/unpacked/dtrain-gpu/lib/libgloo.so.0"
if DTRAIN_PACK_HIDE=0 bash "$HERE/check_pack.sh" "$WORK/unpacked/dtrain-gpu" >"$WORK/missing.log" 2>&1; then
  cat "$WORK/missing.log"
  fail "check_pack.sh passed a pack without libgloo.so.0"
fi
grep -q 'libgloo.so.0' "$WORK/missing.log" || fail "check_pack.sh did not name libgloo.so.0"

echo "pack_dry_run: ok in $(($(date +%s) - t0)) s"
