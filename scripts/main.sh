#!/usr/bin/env bash
# The README's main job: installs dependencies, builds dtrain, and trains the
# tiny GPT preset on the built-in additions dataset (generated in memory, no
# download) on the CPU for about a minute, data-parallel over 2 local ranks
# with ZeRO stage 3 (the command line is scripts/main_job.sh). Watch the loss
# fall from ~5.5 (ln 256) and the held-out sums, never seen in training, get
# answered: at least 95% exactly by step 1500 (asserted by the test suite,
# tests/mainjob). Metrics (rank 0) go to build/train_gpt_metrics.jsonl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh build
bash scripts/main_job.sh build build/train_gpt_metrics.jsonl
