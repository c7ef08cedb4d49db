#!/usr/bin/env bash
# A 2-rank train_gpt run's --metrics-out file, turned into plots with one
# command (dtrain_report.py train): loss, tokens/s and per-rank memory PNGs
# and a summary that shows them.
#   train_plots.sh TRAIN_GPT DTRAIN_RUN PYTHON REPORT_DIR WORK_DIR
set -euo pipefail
train_gpt=$1 dtrain_run=$2 python=$3 report_dir=$4 work=$5/train-plots
rm -rf "$work"
mkdir -p "$work"
export OMP_NUM_THREADS=1
"$dtrain_run" --nproc-per-node 2 "$train_gpt" --steps 4 --batch 4 --seq-len 20 --n-embd 32 --eval-every 2 \
  --eval-problems 20 --metrics-out "$work/metrics.jsonl" > "$work/train.txt" 2>&1 || { cat "$work/train.txt"; exit 1; }
"$python" "$report_dir/dtrain_report.py" train "$work/metrics.jsonl" --out "$work/plots"
"$python" - "$work/plots" << 'PY'
import os, sys
out = sys.argv[1]
for name in ("loss.png", "tokens_per_s.png", "memory.png"):
    data = open(os.path.join(out, name), "rb").read()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", name
summary = open(os.path.join(out, "summary.md")).read()
assert "![memory.png](memory.png)" in summary and "| final_loss |" in summary, summary
print("train_plots: loss, tokens/s and memory plots written")
PY
