#!/usr/bin/env bash
# ctest bench:report_baselines: the GPU baselines' fields in report.json
# (raw NCCL per comm row, the 8 B / 8 MiB latency list, PyTorch per train row)
# pass the schema and reach summary.md, before a GPU run first writes them.
# A CPU run's report gets the fields a GPU run would add (the values are
# placeholders: this checks the schema and the summary, not the figures);
# a PyTorch entry without its figures must fail the schema.
#   report_baselines.sh BENCH PYTHON REPORT_DIR WORK_DIR
set -euo pipefail
bench=$1 python=$2 report_dir=$3 work=$4/report-baselines
rm -rf "$work"
mkdir -p "$work/run"
export OMP_NUM_THREADS=1
"$bench" --quick --suite all --row-seconds 0.2 --out "$work/run" >"$work/stdout.txt" 2>&1 ||
  { cat "$work/stdout.txt"; exit 1; }
"$python" - "$work/run/report.json" "$report_dir" <<'PY'
import copy, json, os, subprocess, sys
path, report_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, report_dir)
import dtrain_report  # noqa: E402
r = json.load(open(path))
comm = [row for row in r["rows"]["comm"] if not row["in_place"]]
assert comm and all(row["raw_nccl_time_us"] is None for row in comm), "a CPU run filled raw NCCL fields"
train = r["rows"]["train"][0]
assert train["pytorch"] is None and train["peak_memory_bytes"] > 0, train
for row in comm:
    row.update(raw_nccl_time_us=row["time_us"] / 2, raw_nccl_b2b_time_us=row["time_us"] / 3,
               raw_nccl_busbw_gbps=1.5, dtrain_over_raw_nccl=2.0)
r["comm"]["latency_vs_raw_nccl"] = [{"op": "all_reduce", "bytes": 8, "dtrain_us": 22.0, "raw_nccl_us": 20.0}]
train["pytorch"] = {"impl": "pytorch", "torch": "2.x", "device": "cuda:0", "preset": train["preset"],
                    "batch": train["batch_per_rank"], "seq_len": train["seq_len"], "precision": "bf16",
                    "step_ms_median": 10.0, "tokens_per_s": 1000.0, "peak_memory_bytes": 2**30,
                    "dtrain_over_pytorch": 0.5}
assert not dtrain_report.validate(r), dtrain_report.validate(r)
broken = copy.deepcopy(r)
del broken["rows"]["train"][0]["pytorch"]["tokens_per_s"]
assert dtrain_report.validate(broken), "a PyTorch entry without tokens/s passed the schema"
json.dump(r, open(path, "w"))
subprocess.run([sys.executable, os.path.join(report_dir, "dtrain_report.py"), "bench", os.path.dirname(path)],
               check=True)
summary = open(os.path.join(os.path.dirname(path), "summary.md")).read()
for needle in ("dtrain next to raw NCCL", "| all_reduce | 8 |", "all_reduce 8 B: dtrain 22.0 us, raw NCCL 20.0 us (+10.0%)",
               "Training next to PyTorch 2.x", "| PyTorch | 1000 | 10 | 1 |", "dtrain / PyTorch tokens/s: 0.5"):
    assert needle in summary, (needle, summary)
print("report_baselines: the baseline fields validate and reach summary.md")
PY
