#!/usr/bin/env bash
# usage: check_install.sh BUILD_DIR CONSUMER_SRC SCRATCH_DIR [CXX_FLAGS]
set -euo pipefail
build=$1 consumer=$2 scratch=$3 flags=${4:-}
rm -rf "$scratch"
cmake --install "$build" --prefix "$scratch/prefix" > "$scratch.install.log" 2>&1 || { cat "$scratch.install.log"; exit 1; }
test -f "$scratch/prefix/include/dtrain/tensor.h"
ls "$scratch"/prefix/lib*/cmake/dtrain/dtrainConfig.cmake > /dev/null
cmake -S "$consumer" -B "$scratch/build" -DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_CXX_FLAGS="$flags" > /dev/null
cmake --build "$scratch/build" > /dev/null
# Installed programs start from the prefix alone (RPATH $ORIGIN/../lib).
"$scratch/prefix/bin/dtrain-run" --help > /dev/null
out=$("$scratch/build/consumer")
echo "$out"
grep -q "consumer ok" <<<"$out"
