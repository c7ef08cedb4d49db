#!/usr/bin/env bash
# usage: scripts/lint.sh [BUILD_DIR]   (default: build)
# 1. clang-format --dry-run -Werror over the tracked C++/CUDA sources (.clang-format).
# 2. clang-tidy (.clang-tidy, every finding an error) over the tracked host .cpp
#    files that BUILD_DIR/compile_commands.json compiles, two at a time.
#    .cu files are left out: clang cannot parse them with this toolkit.
# Exits non-zero when either step finds something; prints what it found.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${1:-build}
db="$build/compile_commands.json"
[[ -f "$db" ]] || { echo "lint: $db not found; configure first: cmake -S . -B $build -G Ninja" >&2; exit 2; }
for tool in clang-format clang-tidy python3; do
  command -v "$tool" > /dev/null || { echo "lint: $tool is not installed" >&2; exit 2; }
done
status=0

echo "== clang-format =="
if git ls-files -z '*.cpp' '*.h' '*.cu' '*.cuh' | xargs -0 -r clang-format --dry-run -Werror; then
  echo "clang-format: clean"
else
  echo "clang-format: findings above (fix with clang-format -i FILE)"
  status=1
fi

echo "== clang-tidy ($db) =="
# Tracked .cpp files that the build compiles (others have no flags to parse with).
files=$(git ls-files '*.cpp' | python3 -c '
import json, os, sys
compiled = {os.path.realpath(e["file"]) for e in json.load(open(sys.argv[1]))}
for line in sys.stdin:
    path = line.strip()
    if os.path.realpath(path) in compiled:
        print(path)
' "$db")
count=$(printf '%s\n' "$files" | grep -c . || true)
# Each file's output is printed as one piece so the two jobs do not interleave.
if printf '%s\n' "$files" | grep . | xargs -r -P 2 -n 1 sh -c '
  out=$(clang-tidy -p "$1" --quiet --warnings-as-errors="*" "$2" 2>&1) && exit 0
  printf "%s\n" "$out" | grep -v "^[0-9]* warnings\? generated\.$"
  exit 1' lint-tidy "$build"; then
  echo "clang-tidy: clean ($count files)"
else
  echo "clang-tidy: findings above ($count files checked)"
  status=1
fi
exit $status
