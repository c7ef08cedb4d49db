#!/usr/bin/env bash
# Runs dtrain-bench --quick with 2 ranks as a user would, then checks what it
# wrote: report.json valid against the schema, plots that are real PNGs.
#   run_bench.sh BENCH DTRAIN_RUN PYTHON REPORT_DIR WORK_DIR LAUNCHER SUITE
# LAUNCHER: dtrain-run, or mpirun (Open MPI: proves the OMPI_COMM_WORLD_*
# path of init_process_group). SUITE: all; stragglers (then rank 1 is
# slowed by DTRAIN_BENCH_SLOW_RANK and must be named, rank 0 must not); or
# comm-cut (a row bound of 0.5 ms: rows must be cut short, reported, and the
# run must go on to the end).
set -euo pipefail
bench=$1 dtrain_run=$2 python=$3 report_dir=$4 work=$5 launcher=$6 suite=$7
out=$work/$launcher-$suite
rm -rf "$out"
mkdir -p "$out"
args=(--quick --suite "$suite" --out "$out")
if [[ $suite == comm-cut ]]; then
  args=(--quick --suite comm --ops all_reduce,all_gather --row-seconds 0.0005 --out "$out")
fi
export OMP_NUM_THREADS=1
if [[ $suite == stragglers ]]; then
  export DTRAIN_BENCH_SLOW_RANK=1:4
fi
start=$(date +%s)
set +e
case $launcher in
  dtrain-run)
    "$dtrain_run" --nproc-per-node 2 "$bench" "${args[@]}" > "$out/stdout.txt" 2>&1
    ;;
  mpirun)
    if ! command -v mpirun > /dev/null; then
      echo "mpirun not found: install Open MPI (openmpi-bin; scripts/install-deps.sh does)"
      exit 1
    fi
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    extra=()
    [[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
    # --oversubscribe: 2 ranks even where Open MPI counts fewer slots;
    # loopback TCP only, as a CI container has no fast fabric to find.
    # The store wants a job secret; dtrain-run makes one for its own jobs.
    DTRAIN_AUTH_TOKEN=$("$dtrain_run" --new-token)
    export DTRAIN_AUTH_TOKEN
    mpirun -np 2 --oversubscribe "${extra[@]}" --mca btl self,tcp --mca btl_tcp_if_include lo \
      -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT="$port" -x OMP_NUM_THREADS -x DTRAIN_AUTH_TOKEN \
      "$bench" "${args[@]}" > "$out/stdout.txt" 2>&1
    ;;
  *)
    echo "unknown launcher $launcher"
    exit 2
    ;;
esac
rc=$?
set -e
cat "$out/stdout.txt"
echo "== dtrain-bench exited with $rc after $(( $(date +%s) - start )) s"
# 0: no check failed; 1: a check failed (a verdict, on a shared machine
# possible); anything else is a crash or a usage error.
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
  exit 1
fi
"$python" "$report_dir/dtrain_report.py" bench "$out"
"$python" - "$out" "$suite" "$rc" "$launcher" << 'PY'
import json, os, sys
out, suite, rc, launcher = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
report = json.load(open(os.path.join(out, "report.json")))
env = report["environment"]
assert env["world_size"] == 2, env["world_size"]
assert len(env["ranks"]) == 2
want_launcher = "openmpi" if launcher == "mpirun" else "torchrun"
assert env["launcher"] == want_launcher, (env["launcher"], want_launcher)
assert (report["overall"] == "failed") == (rc == 1), (report["overall"], rc)
pngs = ["checks.png"] + (["busbw.png"] if suite in ("all", "comm-cut") else [])
for name in pngs:
    data = open(os.path.join(out, name), "rb").read()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", name
summary = open(os.path.join(out, "summary.md")).read()
assert "checks.png" in summary and "| suite | check |" in summary
suites = {c["suite"] for c in report["checks"]}
if suite == "all":
    for s in ("kernels", "comm", "train", "stragglers"):
        assert s in suites, (s, suites)
    comm = report["rows"]["comm"]
    assert {r["op"] for r in comm} == {"all_reduce", "reduce_scatter", "all_gather", "all_to_all", "broadcast"}
    assert all(r["wrong"] == 0 for r in comm), "a collective returned wrong values"
    assert report["rows"]["train"][0]["tokens_per_s"] > 0
    assert env["duration_s"] < 120, env["duration_s"]
elif suite == "comm-cut":
    rows = report["rows"]["comm"]
    assert {r["op"] for r in rows} == {"all_reduce", "all_gather"}, "the run stopped early"
    assert max(r["bytes"] for r in rows) == 2 << 20, "the largest quick row (2 MiB) is missing"
    assert any(r["cut_short"] for r in rows), "no row was cut short at a 0.5 ms bound"
    assert all(r["calls"] >= 1 for r in rows)
    bound = [c for c in report["checks"] if c["name"] == "rows finished within their time bound"][0]
    assert bound["verdict"] == "below expectation" and "cut short" in bound["detail"], bound
else:
    slow = [s["rank"] for s in report["stragglers"]["slow_ranks"]]
    assert slow == [1], "rank 1 was slowed 4x and should be the only straggler named, got %s" % slow
    check = [c for c in report["checks"] if c["name"].startswith("slowest rank")][0]
    assert check["verdict"] != "ok" and "rank 1" in check["detail"], check
print("run_bench: %s %s: report valid, %d checks, overall %s, plots %s" % (
    launcher, suite, len(report["checks"]), report["overall"], ", ".join(pngs)))
PY
