#!/usr/bin/env python3
"""Plots and a summary for dtrain's measurements, so a user looks at a run
instead of reading JSON.

  dtrain_report.py bench DIR               # DIR/report.json from dtrain-bench --out DIR:
                                           #   validates it against report.schema.json, writes
                                           #   busbw.png, checks.png and summary.md into DIR
  dtrain_report.py train METRICS --out DIR # a train_gpt --metrics-out file: loss.png,
                                           #   tokens_per_s.png, memory.png (when the file has
                                           #   memory figures) and summary.md into DIR
  dtrain_report.py validate REPORT         # only the schema check

Needs matplotlib and jsonschema (benchmarks/report/requirements.txt;
make_venv.sh makes an environment with them). Exit code 1 when the report
does not match the schema or the input cannot be read.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "report.schema.json")

VERDICT_COLOURS = {"ok": "#2e7d32", "below expectation": "#f9a825", "failed": "#c62828"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def validate(report):
    import jsonschema

    with open(SCHEMA) as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(report), key=lambda e: list(e.path))
    return ["%s: %s" % ("/".join(str(p) for p in e.path) or "(top)", e.message) for e in errors]


def load_report(path):
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    with open(path) as f:
        return json.load(f), path


def plot_busbw(report, out):
    """Bus bandwidth against message size, one line per collective (out of place, in place dashed)."""
    rows = report["rows"].get("comm", [])
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    ops = sorted({r["op"] for r in rows})
    for i, op in enumerate(ops):
        colour = "C%d" % i
        for in_place, style in ((False, "-"), (True, "--")):
            pts = sorted((r["bytes"], r["busbw_gbps"]) for r in rows if r["op"] == op and r["in_place"] == in_place)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", markersize=3, color=colour,
                        label="%s%s" % (op, " (in place)" if in_place else ""))
        cut = [(r["bytes"], r["busbw_gbps"]) for r in rows if r["op"] == op and r["cut_short"]]
        if cut:
            ax.plot([c[0] for c in cut], [c[1] for c in cut], "x", color="black", markersize=8)
    env = report["environment"]
    ax.set_xscale("log", base=2)
    positive = [r["busbw_gbps"] for r in rows if r["busbw_gbps"] > 0]
    if positive and min(positive) < max(positive) / 100:
        ax.set_yscale("log")  # small messages are latency-bound: orders of magnitude below the large ones
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title("collectives, %d rank(s) on %s (x = row cut short)" % (env["world_size"], env["device"]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = os.path.join(out, "busbw.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_checks(report, out):
    """Achieved against the reference (ratio) for every check that has one, coloured by verdict."""
    checks = [c for c in report["checks"] if c["ratio"] is not None]
    if not checks:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(checks) + 1.5))
    names = ["%s: %s" % (c["suite"], c["name"]) for c in checks]
    ratios = [c["ratio"] for c in checks]
    ax.barh(range(len(checks)), ratios, color=[VERDICT_COLOURS[c["verdict"]] for c in checks])
    for i, c in enumerate(checks):
        ax.plot([c["ok_at"], c["ok_at"]], [i - 0.4, i + 0.4], color="black", linewidth=1)
    ax.set_yticks(range(len(checks)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set_xlabel("achieved / reference (black tick: ok threshold)")
    ax.set_title("dtrain-bench checks: overall %s" % report["overall"])
    fig.tight_layout()
    path = os.path.join(out, "checks.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(x):
    return "-" if x is None else ("%.4g" % x)


def baseline_lines(report):
    """The baselines measured beside dtrain in the same run, as markdown
    tables: raw NCCL per comm row on a GPU (per-call latency and nccl-tests'
    back-to-back figure), the 8 B / 8 MiB latency goal, PyTorch per train row."""
    lines = []
    nccl = [r for r in report["rows"].get("comm", []) if r.get("raw_nccl_time_us") is not None]
    if nccl:
        lines += ["", "dtrain next to raw NCCL (out of place; per call = issue + wait, median):", "",
                  "| op | bytes | dtrain per call (us) | raw NCCL per call (us) | dtrain / raw | "
                  "raw NCCL back to back (us) | raw NCCL busbw (GB/s) | dtrain busbw (GB/s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in nccl:
            lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                r["op"], r["bytes"], fmt(r["time_us"]), fmt(r["raw_nccl_time_us"]), fmt(r["dtrain_over_raw_nccl"]),
                fmt(r["raw_nccl_b2b_time_us"]), fmt(r["raw_nccl_busbw_gbps"]), fmt(r["busbw_gbps"])))
    points = (report.get("comm") or {}).get("latency_vs_raw_nccl") or []
    if points:
        lines += ["", "Per-call latency goal (within 10% of raw NCCL at 8 B and 8 MiB):", ""]
        lines += ["- %s %d B: dtrain %.1f us, raw NCCL %.1f us (%+.1f%%)" % (
            p["op"], p["bytes"], p["dtrain_us"], p["raw_nccl_us"], (p["dtrain_us"] / p["raw_nccl_us"] - 1) * 100)
            for p in points]
    for r in report["rows"].get("train", []):
        t = r.get("pytorch")
        if not isinstance(t, dict):
            continue
        if "skipped" in t:
            lines += ["", "PyTorch baseline (%s): skipped, %s" % (r["preset"], t["skipped"])]
            continue
        gib = lambda b: b / 2**30 if b else None  # noqa: E731
        lines += ["", "Training next to PyTorch %s (%s, B=%d, T=%d, %s):" % (
            t.get("torch", "?"), r["preset"], t["batch"], t["seq_len"], t.get("precision", "?")), "",
            "| | tokens/s | step (ms, median) | peak memory (GiB) |", "|---|---:|---:|---:|",
            "| dtrain | %s | %s | %s |" % (fmt(r["tokens_per_s"]), fmt(r.get("step_ms_median")),
                                          fmt(gib(r.get("peak_memory_bytes")))),
            "| PyTorch | %s | %s | %s |" % (fmt(t["tokens_per_s"]), fmt(t["step_ms_median"]),
                                           fmt(gib(t.get("peak_memory_bytes")))),
            "", "dtrain / PyTorch tokens/s: %s" % fmt(t.get("dtrain_over_pytorch"))]
    return lines


def bench(args):
    report, path = load_report(args.dir)
    errors = validate(report)
    if errors:
        print("dtrain_report: %s does not match %s:" % (path, SCHEMA), file=sys.stderr)
        for e in errors[:20]:
            print("  " + e, file=sys.stderr)
        return 1
    out = args.out or os.path.dirname(path)
    os.makedirs(out, exist_ok=True)
    plots = [p for p in (plot_checks(report, out), plot_busbw(report, out)) if p]
    env = report["environment"]
    first = env["ranks"][0]
    lines = [
        "# dtrain-bench: %s" % report["overall"],
        "",
        "dtrain %s (%s), %s, %d rank(s) via %s, device %s, host %s (%s), %.0f s%s." % (
            env["dtrain_version"], env["git_revision"], env["started_at"], env["world_size"], env["launcher"],
            env["device"], first["host"], first["cpu"]["model"], env["duration_s"], ", quick" if env["quick"] else ""),
        "",
        "| suite | check | value | unit | reference | ratio | ok at | verdict |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for c in report["checks"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | **%s** |" % (
            c["suite"], c["name"], fmt(c["value"]), c["unit"], fmt(c["reference"]), fmt(c["ratio"]),
            fmt(c["ok_at"]) if c["ratio"] is not None else "-", c["verdict"]))
    details = [c for c in report["checks"] if c["detail"]]
    if details:
        lines += ["", "Notes:", ""] + ["- %s / %s: %s" % (c["suite"], c["name"], c["detail"]) for c in details]
    lines += baseline_lines(report)
    lines += [""] + ["![%s](%s)" % (os.path.basename(p), os.path.basename(p)) for p in plots]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("dtrain_report: %s valid; wrote %s and summary.md in %s" % (
        os.path.basename(path), ", ".join(os.path.basename(p) for p in plots), out))
    return 0


def read_metrics(path):
    steps, final = [], None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise SystemExit("dtrain_report: %s line %d is not JSON: %s" % (path, n, e))
            if rec.get("final"):
                final = rec
            elif "step" in rec:
                steps.append(rec)
    if not steps:
        raise SystemExit("dtrain_report: %s has no step records (is it a train_gpt --metrics-out file?)" % path)
    return steps, final


def line_plot(out, name, steps, series, ylabel, title):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, ys in series:
        xs = [s["step"] for s, y in zip(steps, ys) if y is not None]
        ax.plot(xs, [y for y in ys if y is not None], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train(args):
    steps, final = read_metrics(args.metrics)
    out = args.out or os.path.dirname(os.path.abspath(args.metrics))
    os.makedirs(out, exist_ok=True)
    plots = [line_plot(out, "loss.png", steps, [("train", [s.get("loss") for s in steps]),
                                                ("validation", [s.get("val_loss") for s in steps])]
                       if any("val_loss" in s for s in steps) else [("train", [s.get("loss") for s in steps])],
                       "loss", "loss"),
             line_plot(out, "tokens_per_s.png", steps, [("tokens/s", [s.get("tokens_per_s") for s in steps])],
                       "tokens/s", "throughput")]
    memory = None
    if any("rank_peak_bytes" in s for s in steps):
        ranks = max(len(s.get("rank_peak_bytes", [])) for s in steps)
        memory = [("rank %d" % r, [s["rank_peak_bytes"][r] / 2**20 if len(s.get("rank_peak_bytes", [])) > r else None
                                   for s in steps]) for r in range(ranks)]
    elif any("peak_bytes" in s for s in steps):
        memory = [("peak", [s.get("peak_bytes", 0) / 2**20 if "peak_bytes" in s else None for s in steps])]
    if memory:
        plots.append(line_plot(out, "memory.png", steps, memory, "peak memory (MiB)", "memory per rank"))
    lines = ["# training run: %s" % os.path.basename(args.metrics), ""]
    if final:
        lines += ["| figure | value |", "|---|---|"] + ["| %s | %s |" % (k, v) for k, v in final.items() if k != "final"]
    if not memory:
        lines += ["", "This file has no memory figures (a multi-rank run writes rank_peak_bytes)."]
    lines += [""] + ["![%s](%s)" % (os.path.basename(p), os.path.basename(p)) for p in plots]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("dtrain_report: %d steps; wrote %s and summary.md in %s" % (
        len(steps), ", ".join(os.path.basename(p) for p in plots), out))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="plots and summary of a dtrain-bench report")
    b.add_argument("dir", help="the --out folder of dtrain-bench (or its report.json)")
    b.add_argument("--out", help="where to write (default: next to report.json)")
    t = sub.add_parser("train", help="plots of a train_gpt --metrics-out file")
    t.add_argument("metrics", help="JSON Lines file written by train_gpt --metrics-out")
    t.add_argument("--out", help="where to write (default: next to the file)")
    v = sub.add_parser("validate", help="check a report.json against the schema")
    v.add_argument("report")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench(args)
    if args.command == "train":
        return train(args)
    report, path = load_report(args.report)
    errors = validate(report)
    for e in errors:
        print("  " + e, file=sys.stderr)
    print("dtrain_report: %s %s" % (path, "does not match the schema" if errors else "is valid"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
