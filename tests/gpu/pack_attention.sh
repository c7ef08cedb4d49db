#!/usr/bin/env bash
# Packs what tests/gpu/check_attention.sh runs, for the GPU machine, which
# has CUDA, cuBLAS and NCCL but cannot configure dtrain (no Gloo, libsodium
# or cblas headers; /work/shared/BUILD-NOTES.md):
#
#   tests/gpu/pack_attention.sh BUILD_DIR OUT.tar.xz
#
# The archive holds the test and benchmark binaries and libdtrain under
# BUILD_DIR's absolute path (binaries carry an RPATH to it), and the non-CUDA
# shared libraries they load in BUILD_DIR/packed-libs. On the GPU machine:
#
#   tar -xJf OUT.tar.xz -C /
#   export LD_LIBRARY_PATH=BUILD_DIR/packed-libs:$(dirname "$(find / -xdev -name libcublasLt.so.13 | head -n1)")
#   tests/gpu/check_attention.sh BUILD_DIR OUT_DIR
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT.tar.xz" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
OUT=$2
BINARIES=(tests/gpu/test_flash_attention tests/gpu/test_gpu_ops benchmarks/cuda_ops/dev/dev_attention)
for b in "${BINARIES[@]}"; do
  [[ -x $BUILD/$b ]] || { echo "pack_attention.sh: missing $BUILD/$b (build it first)" >&2; exit 1; }
done
# The libraries the GPU machine's image lacks (BUILD-NOTES), found where this machine has them.
LIBS=(libgloo.so.0 libhiredis.so.0.14 libibverbs.so.1 libnl-3.so.200 libnl-route-3.so.200 libsodium.so.23
  libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1)
mkdir -p "$BUILD/packed-libs"
for lib in "${LIBS[@]}"; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
  [[ -n $path ]] || { echo "pack_attention.sh: $lib not found by ldconfig" >&2; exit 1; }
  cp -L "$path" "$BUILD/packed-libs/$lib"
done
FILES=()
for b in "${BINARIES[@]}"; do FILES+=("$BUILD/$b"); done
for f in "$BUILD"/libdtrain.so*; do FILES+=("$f"); done
FILES+=("$BUILD/packed-libs")
tar -cJf "$OUT" -C / "${FILES[@]#/}"
echo "pack_attention.sh: $(du -h "$OUT" | cut -f1) in $OUT"
