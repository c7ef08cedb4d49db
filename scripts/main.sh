#!/usr/bin/env bash
# The README's main job: installs dependencies, builds dtrain, and trains the
# tiny GPT preset on the built-in additions dataset (generated in memory, no
# download) on the CPU for about a minute. Watch the loss fall from ~5.5
# (ln 256) and the held-out sums get answered; metrics go to
# build/train_gpt_metrics.jsonl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh build
./build/examples/train_gpt/train_gpt --preset tiny --device cpu --batch 16 --seq-len 60 --steps 800 \
  --lr 3e-3 --eval-every 100 --metrics-out build/train_gpt_metrics.jsonl --prompt "12+34=" --sample-tokens 40
