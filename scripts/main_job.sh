#!/usr/bin/env bash
# The README's main job, without the build: trains the tiny GPT preset on the
# built-in additions dataset (generated in memory, no download) on the CPU,
# data-parallel over 2 local ranks with ZeRO stage 3. scripts/main.sh builds
# and then runs this; tests/mainjob runs this same file and asserts the
# result the README states, so the two cannot drift apart.
#
# usage: scripts/main_job.sh BUILD_DIR [METRICS_FILE]   (default BUILD_DIR/train_gpt_metrics.jsonl)
set -euo pipefail
build=$(cd "$1" && pwd)
metrics=${2:-$build/train_gpt_metrics.jsonl}
# The tiny model's matrices are too small to gain from an OpenMP team, and a
# team on a busy machine loses a scheduler slice at every barrier (measured:
# 30 ms/step with one thread, 170-740 ms with two on loaded cores).
export OMP_NUM_THREADS=1
# The same kernels on every x86-64-v3 CPU: dtrain's AVX2 vector kernels (not
# the AVX-512 ones where a CPU has them) and OpenBLAS's Haswell GEMM kernel
# (not whatever it detects). With the thread count fixed too, the run computes
# the same bits on every such machine, so the result below is the result a
# fresh clone gets. Remove both to run the fastest kernels of this CPU.
export DTRAIN_CPU_ISA=avx2 OPENBLAS_CORETYPE=Haswell
# Two local ranks with ZeRO stage 3: each rank keeps half of the parameters,
# gradients and optimizer state (the memory ledger printed at the start and
# after step 1 shows it next to the ZeRO paper's formula); the global batch of
# 16 sequences is split 8 + 8, so the run learns as the single-process one does.
exec "$build/bin/dtrain-run" --nproc-per-node 2 "$build/examples/train_gpt/train_gpt" --zero 3 \
  --preset tiny --device cpu --batch 16 --seq-len 60 --steps 1500 --lr 3e-3 --seed 1337 --eval-every 250 \
  --metrics-out "$metrics" --prompt "12+34=" --sample-tokens 40
