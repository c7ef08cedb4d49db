#!/usr/bin/env bash
# Runs the README's main job (scripts/main_job.sh, the very command line
# scripts/main.sh runs) and asserts what the README states about it: the
# loss falls from ~ln 256 and at least MIN_EXACT of the held-out sums are
# answered exactly at the end. Every loss must be finite.
# usage: check_main_job.sh SOURCE_DIR BUILD_DIR WORK_DIR MIN_EXACT
set -euo pipefail
src=$1 build=$2 work=$3 min_exact=$4
mkdir -p "$work"
metrics=$work/main_job_metrics.jsonl
rm -f "$metrics"
bash "$src/scripts/main_job.sh" "$build" "$metrics"
python3 - "$metrics" "$min_exact" << 'PY'
import json, math, sys
path, min_exact = sys.argv[1], float(sys.argv[2])
rows = [json.loads(line) for line in open(path)]
steps = [r for r in rows if not r.get("final")]
final = [r for r in rows if r.get("final")]
assert final, "no final summary in " + path
final = final[-1]
bad = [r["step"] for r in steps if not math.isfinite(r["loss"])]
assert not bad, f"non-finite loss at steps {bad[:5]}"
first, last = steps[0]["loss"], final["final_loss"]
exact = final["accuracy_exact"]
print(f"main job: {len(steps)} steps, loss {first:.3f} -> {last:.3f}, held-out exact {100 * exact:.1f}% "
      f"(README states >= {100 * min_exact:.0f}%), digits {100 * final['accuracy_digits']:.1f}%, "
      f"baseline digits {100 * final['baseline_digits']:.1f}%")
assert len(steps) == final["steps"], "a step is missing from the metrics"
assert first > 5.0, f"first loss {first}: expected ~ln 256 = 5.55"
assert math.isfinite(last) and last < 1.2, f"final loss {last}"
assert exact >= min_exact, f"held-out exact {exact} is below the README's {min_exact}"
PY
