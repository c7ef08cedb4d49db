#!/usr/bin/env bash
# ctest bench:pytorch_baseline: benchmarks/train/pytorch_gpt2.py's argument
# handling and its answer on a CPU (the figure when torch is importable here,
# else the one "skipped" line), and the train suite running it in the same
# call (--pytorch on) and printing its line. torch is not installed for this
# test (too big); a GPU session runs the real comparison (tests/gpu/run_device.sh).
#   pytorch_baseline.sh BENCH PYTHON SCRIPT WORK_DIR
set -uo pipefail
bench=$1 python=$2 script=$3 work=$4
mkdir -p "$work"
fail() {
  echo "pytorch_baseline: FAILED: $*"
  exit 1
}

"$python" "$script" --preset tiny --seq-len 4096 >"$work/long.txt" 2>&1
[[ $? -eq 2 ]] || fail "--seq-len 4096 on tiny was not refused with exit 2"
grep -q "position table (128)" "$work/long.txt" || fail "the refusal does not name the position table"
"$python" "$script" --batch 0 >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "--batch 0 was not refused with exit 2"

"$python" "$script" --device cpu --preset tiny --batch 2 --seq-len 16 --steps 2 --warmup 1 --precision f32 \
  >"$work/cpu.json" || fail "the CPU run exited non-zero"
[[ $(wc -l <"$work/cpu.json") -eq 1 ]] || fail "the CPU run printed more than one line"
if "$python" -c 'import torch' 2>/dev/null; then
  "$python" - "$work/cpu.json" <<'PY' || fail "the CPU run's figures are wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["impl"] == "pytorch" and r["preset"] == "tiny" and r["tokens_per_s"] > 0 and r["step_ms_median"] > 0, r
# tiny: 2 blocks of 12*128^2 + 13*128 parameters, token table 256*128, position table 128*128, final LayerNorm
assert r["params"] == 2 * (12 * 128 * 128 + 13 * 128) + 256 * 128 + 128 * 128 + 2 * 128, r["params"]
PY
  echo "pytorch_baseline: torch is importable here: the CPU run measured $(cat "$work/cpu.json")"
else
  grep -q '"skipped": "torch is not importable' "$work/cpu.json" || fail "no 'torch is not importable' line"
  echo "pytorch_baseline: torch is not importable here: the script said so in one line"
fi

"$bench" --quick --suite train --device cpu --batch 2 --seq-len 16 --steps 2 --pytorch on \
  --pytorch-script "$script" --python "$python" >"$work/train.txt" 2>&1
grep -qE '^# pytorch(: skipped \(torch is not importable| .* dtrain / pytorch = )' "$work/train.txt" ||
  { cat "$work/train.txt"; fail "the train suite printed no PyTorch line"; }
"$bench" --quick --suite train --device cpu --batch 2 --seq-len 16 --steps 2 >"$work/auto.txt" 2>&1
grep -q '^# pytorch' "$work/auto.txt" && fail "--pytorch auto ran PyTorch on a CPU"
echo "pytorch_baseline: ok"
