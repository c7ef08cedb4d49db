#!/usr/bin/env bash
# usage: scripts/build.sh BUILD_DIR [extra cmake args...]
# Configures (Ninja, Release, warnings as errors) and builds dtrain.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDTRAIN_WERROR=ON "$@" > "$dir.configure.log" 2>&1 \
  || { cat "$dir.configure.log"; exit 1; }
grep -E "^-- dtrain:" "$dir.configure.log" || true
cmake --build "$dir" -j "$(nproc)"
