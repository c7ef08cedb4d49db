#!/bin/sh
# Builds the store-parser fuzz target with clang++-14 (libFuzzer + ASan +
# UBSan) and runs it briefly. Exit 77 (skipped) when clang++-14 is missing.
# usage: run_fuzz.sh SOURCE_DIR WORK_DIR SECONDS
set -eu
src=$1 work=$2 seconds=$3
clang=$(command -v clang++-14 || true)
if [ -z "$clang" ]; then
  echo "SKIPPED: clang++-14 (Debian clang-14 + libclang-rt-14-dev) is not installed"
  exit 77
fi
mkdir -p "$work/corpus"
# Seeds: one valid frame body of a few types (type byte + fields).
printf '\013\001\000\000\000k' > "$work/corpus/get"
printf '\012\001\000\000\000k\002\000\000\000vv' > "$work/corpus/set"
printf '\015\002\000\000\000\001\000\000\000a\001\000\000\000b' > "$work/corpus/check"
"$clang" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$src/src" "$src/tests/comm/fuzz_store_protocol.cpp" "$src/src/comm/store_protocol.cpp" \
  -o "$work/fuzz_store_protocol"
"$work/fuzz_store_protocol" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$work/corpus" 2>&1 | tail -n 15
