#!/usr/bin/env bash
# Creates (or reuses) the virtual environment dtrain_report.py runs in:
#   bash benchmarks/report/make_venv.sh VENV_DIR [PYTHON]
# Installs requirements.txt from PyPI. A stamp file holding the requirements
# makes a second call with unchanged requirements return at once, so tests can
# call it freely; a half-made environment (pip interrupted) is rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:?usage: make_venv.sh VENV_DIR [PYTHON]}
python=${2:-python3}
stamp=$venv/.dtrain-report-requirements
if [[ -x $venv/bin/python ]] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
# Several tests may start at once: one makes the environment, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9> "$venv.lock"
flock 9
if [[ -x $venv/bin/python ]] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
echo "make_venv: $venv ready ($("$venv/bin/python" -c 'import matplotlib, jsonschema; print("matplotlib", matplotlib.__version__)'))"
