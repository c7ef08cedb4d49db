#!/usr/bin/env bash
# The README's main job: installs dependencies, builds dtrain, and runs the
# op-set demo (the model issue turns this into GPT training on 2 CPU ranks).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh build
./build/examples/ops_demo/ops_demo
