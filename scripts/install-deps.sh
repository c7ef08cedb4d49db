#!/usr/bin/env bash
# Installs every system package dtrain builds and tests with (Debian 12).
# Safe to run again: apt skips what is already there.
# Python packages (matplotlib, jsonschema for dtrain-bench's plots) come from
# PyPI, not apt: benchmarks/report/make_venv.sh, which ctest runs as a fixture.
# Open MPI is here for the test that launches dtrain-bench with mpirun.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libopenblas-dev libgloo-dev libsodium-dev
  nlohmann-json3-dev libcli11-dev catch2 pybind11-dev
  clang-14 libclang-rt-14-dev clang-format clang-tidy iproute2 procps python3
  python3-venv python3-dev libdlpack-dev
  openmpi-bin libopenmpi-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
