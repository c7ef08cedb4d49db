#!/usr/bin/env bash
# The README's test command: installs dependencies, checks formatting, builds
# dtrain (with CUDA when nvcc is present), runs the whole suite, installs the
# Python package into a fresh virtual environment and runs pytest against it,
# then rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs the
# suite again, and the comm tests once more under ThreadSanitizer.
# GPU tests report "Skipped" (with the reason) on machines without a GPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)
start=$(date +%s)

bash scripts/install-deps.sh

echo "== clang-format (the project's .clang-format; clang-tidy: scripts/lint.sh) =="
if git rev-parse --git-dir > /dev/null 2>&1; then
  git ls-files -z '*.cpp' '*.h' '*.cu' '*.cuh' | xargs -0 -r clang-format --dry-run -Werror
  echo "clang-format: clean"
fi

echo "== build (release) =="
bash scripts/build.sh build
echo "== tests (release) =="
(cd build && ctest -j "$jobs" --output-on-failure --timeout 600)

echo "== python (fresh venv, pip install ., pytest against the installed package) =="
bash scripts/test_python.sh

echo "== build (address + undefined sanitizers, CPU only) =="
# -O1 -g1 (line tables, enough for sanitizer stack traces): measured to compile
# in 0.55x the time of RelWithDebInfo's -O2 -g, the largest stage of this script.
sanitize_flags="-O1 -g1 -DNDEBUG"
bash scripts/build.sh build-sanitize -DDTRAIN_WITH_CUDA=OFF -DDTRAIN_SANITIZE=address,undefined \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$sanitize_flags" -DDTRAIN_BUILD_BENCHMARKS=OFF
echo "== tests (sanitizers) =="
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp
(cd build-sanitize && ctest -j "$jobs" --output-on-failure --timeout 900 -LE no-sanitize)

echo "== build (thread sanitizer, CPU only, comm tests) =="
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTRAIN_WERROR=ON -DDTRAIN_WITH_CUDA=OFF \
  -DDTRAIN_SANITIZE=thread -DDTRAIN_BUILD_BENCHMARKS=OFF > build-tsan.configure.log 2>&1 || {
  cat build-tsan.configure.log
  exit 1
}
cmake --build build-tsan -j "$jobs" -t test_comm comm_worker dtrain-run
echo "== tests (thread sanitizer: label comm) =="
# Gloo and libstdc++ are not built with TSan: tests/tsan.supp silences races
# inside them only. atexit_sleep_ms=0: the failure tests time every exit.
(cd build-tsan && TSAN_OPTIONS="suppressions=$root/tests/tsan.supp atexit_sleep_ms=0" \
  ctest -L comm -j "$jobs" --output-on-failure --timeout 900)

echo "== all tests passed in $(( $(date +%s) - start )) s =="
