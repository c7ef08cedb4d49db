#!/usr/bin/env bash
# Builds one libFuzzer target with clang++-14 (libFuzzer + ASan + UBSan, every
# sanitizer finding fatal) and runs it. Fails (non-zero) when the fuzzer finds
# a crash, a leak, a timeout or undefined behaviour: the fuzzer's own exit
# status is the test's, nothing is piped through a command that could hide it.
# Exit 77 (skipped) only when clang++-14 is missing.
#
# usage: run_fuzz.sh NAME WORK_DIR BUDGET SEED_DIR -- CLANG_ARGS...
#   BUDGET: seconds (e.g. 5) or runs=N (e.g. runs=10000000)
#   SEED_DIR: committed seed inputs (copied; the fuzzer's finds go to WORK_DIR)
#   CLANG_ARGS: the target's sources and include directories
set -euo pipefail
name=$1 work=$2 budget=$3 seeds=$4
shift 4
[[ ${1:-} == "--" ]] && shift
clang=$(command -v clang++-14 || true)
if [[ -z $clang ]]; then
  echo "SKIPPED: clang++-14 (Debian clang-14 + libclang-rt-14-dev) is not installed"
  exit 77
fi
mkdir -p "$work/corpus-$name" "$work/findings-$name"
cp -n "$seeds"/* "$work/corpus-$name"/ 2> /dev/null || true
bin="$work/fuzz_$name"
"$clang" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all "$@" -o "$bin"
if [[ $budget == runs=* ]]; then
  limit=(-runs="${budget#runs=}")
else
  limit=(-max_total_time="$budget")
fi
log="$work/fuzz_$name.log"
status=0
"$bin" "${limit[@]}" -max_len=4096 -timeout=10 -print_final_stats=1 -artifact_prefix="$work/findings-$name/" \
  "$work/corpus-$name" > "$log" 2>&1 || status=$?
tail -n 25 "$log"
if [[ $status -ne 0 ]]; then
  echo "FUZZ FAILURE: $name exited $status; the input is in $work/findings-$name/ (full log: $log)"
  exit 1
fi
echo "fuzz $name: no crash ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1))"
