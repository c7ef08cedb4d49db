#!/usr/bin/env bash
# Packs a CUDA build of dtrain for the GPU machine, whose image has CUDA,
# cuBLAS, NCCL and PyTorch but cannot configure dtrain (no Gloo, libsodium or
# cblas headers) and cannot download anything (docs/gpu.md).
#
#   tests/gpu/pack.sh BUILD_DIR OUT.tar.xz [BINARY...]
#
# BINARY: paths relative to BUILD_DIR; by default every program the device
# run needs (tests/gpu/run_device.sh). The archive holds one folder,
# dtrain-gpu/, that works wherever it is unpacked:
#   bin/      the programs, flat
#   lib/      libdtrain and every shared library the programs load that the
#             GPU machine's image does not provide, found by walking `ldd` of
#             everything packed (no hand list to go stale)
#   scripts/  the PyTorch baselines the programs run (pytorch_gpt2.py,
#             attention_sdpa.py)
#   MANIFEST  revision, build folder, CUDA architectures, the libraries the
#             image must provide (CUDA, cuBLAS, NCCL: found there by
#             run_device.sh) and every packed file
# Libraries assumed present on the image (not packed): the C runtime (glibc,
# libstdc++, libgcc_s), the compression libraries of every Ubuntu base image,
# and the CUDA libraries (tests/gpu/pack_libs.sh). Fails when a library of a
# packed program cannot be found here.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT.tar.xz [BINARY...]" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/gpu/pack_libs.sh
source "$HERE/pack_libs.sh"
BUILD=$(cd "$1" && pwd)
OUT=$2
shift 2
BINARIES=("$@")
if [[ ${#BINARIES[@]} -eq 0 ]]; then
  BINARIES=(tests/gpu/test_gpu_runtime tests/gpu/test_loss_scaler tests/gpu/test_gpu_ops
    tests/gpu/test_flash_attention tests/gpu/test_attention_training benchmarks/cuda_ops/bench_cuda_ops
    benchmarks/cuda_ops/dev/dev_attention benchmarks/cuda_ops/bench_long_context
    bin/dtrain-bench benchmarks/train/bench_train examples/train_gpt/train_gpt)
fi
SCRIPTS=(benchmarks/train/pytorch_gpt2.py benchmarks/cuda_ops/dev/attention_sdpa.py)

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-pack.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
PACK=$STAGE/dtrain-gpu
mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/scripts"

for b in "${BINARIES[@]}"; do
  [[ -x $BUILD/$b ]] || { echo "pack.sh: missing $BUILD/$b (build it first)" >&2; exit 1; }
  cp "$BUILD/$b" "$PACK/bin/"
done
for f in "$BUILD"/libdtrain.so*; do cp -P "$f" "$PACK/lib/"; done
for s in "${SCRIPTS[@]}"; do cp "$ROOT/$s" "$PACK/scripts/"; done

# Every library the packed programs and libdtrain load (ldd lists the whole
# closure), by soname: packed unless the image provides it.
declare -A NEEDED_FROM_IMAGE=()
MISSING=()
for elf in "$PACK"/bin/* "$PACK"/lib/libdtrain.so*; do
  [[ -L $elf ]] && continue
  while read -r soname path; do
    if [[ $path == "not found" ]]; then
      MISSING+=("$soname (needed by $(basename "$elf"))")
    elif pack_libs_from_image "$soname"; then
      pack_libs_is_cuda "$soname" && NEEDED_FROM_IMAGE[$soname]=1
    elif [[ ! -e $PACK/lib/$soname ]]; then
      cp -L "$path" "$PACK/lib/$soname"
    fi
  done < <(pack_libs_resolved "$elf")
done
if [[ ${#MISSING[@]} -gt 0 ]]; then
  printf 'pack.sh: not found here: %s\n' "${MISSING[@]}" >&2
  exit 1
fi

{
  echo "revision $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) from $BUILD"
  # The architectures nvcc compiled for, as the build files name them.
  echo "cuda_architectures $(grep -ho 'arch=compute_[0-9a-z]*' "$BUILD"/build.ninja "$BUILD"/CMakeFiles/dtrain.dir/flags.make \
    2>/dev/null | sed 's/arch=compute_//' | sort -u | tr '\n' ' ')"
  for soname in "${!NEEDED_FROM_IMAGE[@]}"; do echo "from_image $soname"; done | sort
  (cd "$PACK" && find bin lib scripts -mindepth 1 | sort | sed 's/^/file /')
} >"$PACK/MANIFEST"

mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
XZ_OPT=${XZ_OPT:--6 -T0} tar -cJf "$OUT" -C "$STAGE" dtrain-gpu
echo "pack.sh: $(du -h "$OUT" | cut -f1) in $OUT ($(ls "$PACK/bin" | wc -l) programs, $(ls "$PACK/lib" | wc -l) libraries)"
