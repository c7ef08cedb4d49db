#!/usr/bin/env bash
# The Python tests, as CI runs them: a fresh virtual environment, `pip install .`
# (scikit-build-core and pybind11 from PyPI, build isolation), then pytest
# against the installed package from outside the source tree, so the tests
# see what a user's `pip install` gives, never the build tree.
#
#   bash scripts/test_python.sh [pytest args...]
#
# Environment: PYTHON (interpreter, default python3), DTRAIN_WITH_CUDA (default
# OFF here: the suite's CUDA cases need a GPU, which CI machines lack; AUTO
# builds CUDA when nvcc is found, as a plain `pip install .` does), JOBS,
# ISOLATED=1 (pip's build isolation, as a user's `pip install .`; by default
# the build requirements are installed from PyPI into the fresh environment
# first and used from there, whose fixed path lets ccache reuse the extension's
# objects). The CMake build folder (build/<wheel tag>, pyproject.toml) is kept
# between runs, so a second run rebuilds only what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)
python=${PYTHON:-python3}
venv=$root/build/venv-test
export DTRAIN_WITH_CUDA=${DTRAIN_WITH_CUDA:-OFF}
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)}

echo "== fresh virtual environment ($("$python" --version)) =="
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip

echo "== pip install .[test] (CUDA: $DTRAIN_WITH_CUDA) =="
if [[ ${ISOLATED:-0} == 1 ]]; then
  "$venv/bin/python" -m pip install -q "$root[test]"
else
  "$venv/bin/python" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.10"
  "$venv/bin/python" -m pip install -q --no-build-isolation "$root[test]"
fi

echo "== pytest (installed package) =="
cd "$venv"
"$venv/bin/python" -m pytest -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" "$root/python/tests" "$@"
echo "== python tests passed in $(( $(date +%s) - start )) s =="
