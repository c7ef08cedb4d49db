#!/usr/bin/env bash
# Checks an unpacked GPU pack (tests/gpu/pack.sh) on a machine without a GPU,
# so that a missing library is found here rather than in a GPU session:
#
#   tests/gpu/check_pack.sh PACK_DIR
#
# 1. With LD_LIBRARY_PATH as run_device.sh builds it, every library of every
#    packed program and library resolves into PACK_DIR/lib or is one the GPU
#    machine's image provides (pack_libs.sh); one that resolves anywhere else
#    here (the system folder, the build folder) would be missing there.
# 2. As root, where mount namespaces work: the system library folder is
#    replaced by one holding only the libraries the image provides, the build
#    folder is hidden, and every packed program must still start (--help).
#    DTRAIN_PACK_HIDE=0 skips this part.
# Exit 0 when both pass, 1 otherwise (each problem named).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PACK_DIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/gpu/pack_libs.sh
source "$HERE/pack_libs.sh"
PACK=$(cd "$1" && pwd)
[[ -f $PACK/MANIFEST ]] || { echo "check_pack.sh: $PACK has no MANIFEST" >&2; exit 2; }
IMAGE_DIRS=$(pack_libs_image_dirs "$PACK")
export LD_LIBRARY_PATH=$PACK/lib${IMAGE_DIRS:+:$IMAGE_DIRS}
STATUS=0

ELFS=()
for f in "$PACK"/bin/* "$PACK"/lib/*; do
  [[ -L $f ]] && continue
  [[ $(head -c 4 "$f" | od -An -c | tr -d ' ') == 177ELF ]] && ELFS+=("$f")
done
for elf in "${ELFS[@]}"; do
  while read -r soname path; do
    if [[ $path == "not found" ]]; then
      echo "check_pack.sh: $(basename "$elf") needs $soname: not found"
      STATUS=1
    elif [[ $path != "$PACK/lib/"* ]] && ! pack_libs_from_image "$soname"; then
      echo "check_pack.sh: $(basename "$elf") needs $soname, found here at $path but not in the pack" \
        "(the GPU machine's image lacks it)"
      STATUS=1
    fi
  done < <(pack_libs_resolved "$elf")
done
echo "check_pack.sh: libraries of ${#ELFS[@]} programs and libraries checked with ldd: $([[ $STATUS -eq 0 ]] && echo ok || echo FAILED)"

if [[ ${DTRAIN_PACK_HIDE:-1} == 0 || $(id -u) -ne 0 ]] || ! unshare -m true 2>/dev/null; then
  echo "check_pack.sh: start check with the system libraries hidden: not run (needs root and mount namespaces)"
  exit $STATUS
fi
LIBC=$(ldconfig -p | awk '$1 == "libc.so.6" && /x86-64|64bit/ { print $NF; exit }')
SYSLIB=$(dirname "$(readlink -f "$LIBC")")
BUILD=$(awk '$1 == "packed" { print $NF }' "$PACK/MANIFEST")
BASE=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-image-libs.XXXXXX")
trap 'rm -rf "$BASE"' EXIT
for f in "$SYSLIB"/*.so*; do
  name=$(basename "$f")
  pack_libs_from_image "$name" && cp -L "$f" "$BASE/$name" 2>/dev/null
done
RESULT=$BASE.result
# In the namespace only builtins run besides the programs under test: every
# other tool needs libraries that are hidden there.
BASE_ERR="$BASE.err" unshare -m bash -c '
  # The build folder first: after the bind mount, mount itself cannot start.
  if [[ -d $3 ]]; then mount -t tmpfs none "$3" || exit 3; fi
  mount --bind "$1" "$2" || exit 3
  shift 3
  for b in "$@"; do
    if "$b" --help >/dev/null 2>"$BASE_ERR"; then echo "ok $b"; else echo "FAILED $b"; fi
    while IFS= read -r line; do echo "   | $line"; done <"$BASE_ERR"
  done
' hide "$BASE" "$SYSLIB" "${BUILD:-/nonexistent}" "$PACK"/bin/* >"$RESULT" 2>&1
rc=$?
if [[ $rc -ne 0 ]] || grep -q '^FAILED' "$RESULT"; then
  echo "check_pack.sh: with only the image's libraries visible, programs failed to start:"
  cat "$RESULT"
  STATUS=1
else
  echo "check_pack.sh: $(grep -c '^ok' "$RESULT") programs start with $SYSLIB reduced to the image's libraries" \
    "and the build folder hidden"
fi
rm -f "$RESULT" "$BASE.err"
exit $STATUS
