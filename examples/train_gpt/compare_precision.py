#!/usr/bin/env python3
"""bf16 (or f16) training follows f32: runs train_gpt twice with the same seed
and data, once per precision, and compares the loss curves.

    python3 examples/train_gpt/compare_precision.py BUILD_DIR [--steps 300] [--precision bf16]

Two runs per precision: the tiny preset on the built-in additions, and a small
model (2 layers, width 64) on byte-tokenized text (this repository's docs).
The curves are compared as moving averages over --window steps (a single
step's loss depends on its batch; the smoothing keeps what the two models
learned, not which batch came next): the figure is the largest relative gap
max_t |avg_low(t) - avg_f32(t)| / avg_f32(t). The raw per-step gap is printed too.
Exit status 1 when a figure exceeds --limit (default 2%).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile


def run(exe, args, metrics):
    cmd = [exe] + args + ["--metrics-out", metrics, "--sample-tokens", "0", "--eval-every", "0"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("WORLD_SIZE", None)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(metrics) as f:
        rows = [json.loads(line) for line in f]
    return [r["loss"] for r in rows if "final" not in r]


def moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def gaps(ref, low, window):
    a, b = moving_average(ref, window), moving_average(low, window)
    smooth = max(abs(x - y) / x for x, y in zip(a, b))
    raw = max(abs(x - y) / x for x, y in zip(ref, low))
    return smooth, raw


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--limit", type=float, default=0.02)
    o = p.parse_args()
    exe = os.path.join(o.build, "examples", "train_gpt", "train_gpt")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = tempfile.mkdtemp(prefix="dtrain_precision_")
    corpus = os.path.join(work, "docs.txt")
    with open(corpus, "w") as out:
        for path in sorted(glob.glob(os.path.join(root, "docs", "*.md"))):
            with open(path) as f:
                out.write(f.read())
    steps = ["--steps", str(o.steps)]
    cases = {
        "tiny preset, built-in additions": ["--preset", "tiny"] + steps,
        "2 layers x 64 wide, byte-tokenized text": ["--preset", "tiny", "--n-layer", "2", "--n-embd", "64",
                                                    "--data", corpus, "--batch", "8", "--seq-len", "64"] + steps,
    }
    worst = 0.0
    for name, args in cases.items():
        ref = run(exe, args + ["--precision", "f32"], os.path.join(work, "f32.jsonl"))
        low = run(exe, args + ["--precision", o.precision], os.path.join(work, o.precision + ".jsonl"))
        smooth, raw = gaps(ref, low, o.window)
        worst = max(worst, smooth)
        print(f"{name}: {o.steps} steps, final loss f32 {ref[-1]:.4f} {o.precision} {low[-1]:.4f}; "
              f"largest gap of the {o.window}-step averages {100 * smooth:.2f}% (per step {100 * raw:.2f}%)")
    print(f"{'PASS' if worst <= o.limit else 'FAIL'}: {o.precision} follows f32 within {100 * worst:.2f}% "
          f"(limit {100 * o.limit:.0f}%)")
    return 0 if worst <= o.limit else 1


if __name__ == "__main__":
    sys.exit(main())
