"""Python overhead per call: a small collective and a tiny-preset training
step, each timed from Python and from C++ in the same process, on the same
objects, one right after the other.

    python benchmarks/python/overhead.py                                   # one process
    python -m dtrain.run --nproc-per-node 2 benchmarks/python/overhead.py  # a real 2-rank all-reduce

How it is measured. The C++ side is dtrain._C._bench: the same loop written in
C++ (all_reduce(t).wait() `iters` times; train_gpt's step: next batch,
zero_grad, forward, backward, grad norm, clipped AdamW step), timed with
steady_clock inside C++. The Python side runs that loop through the bindings
(for the collective, on a NumPy array, so the zero-copy conversion is
included), timed with perf_counter. Python and C++ rounds alternate (one
training step per round by default, so both sides see the same machine
state); the figures are the median and the minimum over the rounds. These
machines are shared and noisy: the minimum is the cost with the least
interference, the median what a run typically sees. The ratio is Python
time / C++ time; the goal at the tiny step is under 1.05.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import dtrain
from dtrain._C import _bench


def alternate(rounds: int, python_round, cpp_round):
    """((median, min) of the Python rounds, (median, min) of the C++ rounds)."""
    py, cpp = [], []
    for i in range(rounds):
        if i % 2:  # alternate which side goes first, too
            cpp.append(cpp_round())
            py.append(python_round())
        else:
            py.append(python_round())
            cpp.append(cpp_round())
    return (statistics.median(py), min(py)), (statistics.median(cpp), min(cpp))


def report(name: str, unit: str, scale: float, py, cpp, goal: float | None = None) -> str:
    line = (f"{name}: Python {py[0] * scale:9.2f} {unit} (min {py[1] * scale:.2f}), "
            f"C++ {cpp[0] * scale:9.2f} {unit} (min {cpp[1] * scale:.2f}); "
            f"ratio median {py[0] / cpp[0]:.3f}, min {py[1] / cpp[1]:.3f}")
    if goal is not None:
        line += f" ({'meets' if py[1] / cpp[1] < goal else 'MISSES'} the < {goal} goal at the minimum)"
    return line


def collective(comm, elements: int, iters: int, rounds: int):
    x = np.ones(elements, np.float32)
    t = dtrain.from_numpy(x)

    def python_round():
        start = time.perf_counter()
        for _ in range(iters):
            comm.all_reduce(x).wait()
        return (time.perf_counter() - start) / iters

    def cpp_round():
        return _bench.all_reduce_loop(comm, t, iters) / iters

    python_round()  # warm-up (connections, first allocations)
    return alternate(rounds, python_round, cpp_round)


def training_step(comm, steps: int, rounds: int):
    model = dtrain.nn.gpt("tiny", seed=1)
    tokens = dtrain.data.AdditionDataset(2).train_tokens(50000, 1)
    loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(tokens)], global_batch=16, seq_len=60)
    opt = dtrain.optim.AdamW(model, weight_decay=0.1)
    sched = dtrain.optim.CosineSchedule(max_lr=3e-3, min_lr=3e-4, warmup_steps=20, total_steps=10000)
    step = [0]

    def python_round():
        start = time.perf_counter()
        for _ in range(steps):
            x, y = loader.next()
            model.zero_grad()
            model(x, y)
            model.backward()
            norm = dtrain.optim.grad_norm(opt.grads())
            opt.step(sched(step[0]), dtrain.optim.clip_scale(norm, 1.0))
            step[0] += 1
        return (time.perf_counter() - start) / steps

    def cpp_round():
        seconds = _bench.train_loop(model, loader, opt, sched, step[0], steps, 1.0)
        step[0] += steps
        return seconds / steps

    python_round()
    return alternate(rounds, python_round, cpp_round)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", type=int, default=256, help="all-reduce size (f32 elements)")
    p.add_argument("--iters", type=int, default=200, help="collectives per round")
    p.add_argument("--steps", type=int, default=1, help="training steps per round")
    p.add_argument("--rounds", type=int, default=15, help="collective rounds per side")
    p.add_argument("--step-rounds", type=int, default=30, help="training-step rounds per side")
    args = p.parse_args()
    with dtrain.process_group() as comm:
        lead = comm.rank == 0
        py, cpp = collective(comm, args.elements, args.iters, args.rounds)
        if lead:
            print(report(f"all_reduce {args.elements} x f32, {comm.size} rank(s)", "us/call", 1e6, py, cpp),
                  flush=True)
        py, cpp = training_step(comm, args.steps, args.step_rounds)
        if lead:
            print(report("tiny training step (batch 16 x 60)", "ms/step", 1e3, py, cpp, goal=1.05), flush=True)


if __name__ == "__main__":
    main()
