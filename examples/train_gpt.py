"""train_gpt.py: examples/train_gpt (the C++ program) written with dtrain's Python API.

    python examples/train_gpt.py                                   # tiny preset, built-in additions, CPU
    python examples/train_gpt.py --data input.txt --steps 200      # a text file, byte tokens
    python -m dtrain.run --nproc-per-node 2 examples/train_gpt.py --zero 1 --grad-accum 2

Same options, output lines and --metrics-out JSON Lines as the C++ train_gpt. One
loop serves one process and many: the data-parallel engine at world size 1
simply does not communicate. Data: omitted -> integer additions generated in
memory (held-out sums are scored by greedy decoding); a text file -> byte
tokens; a glob of llm.c token shards -> those.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import time

import numpy as np

import dtrain


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="train a GPT-2 family model with dtrain")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, gpt2-124m, gpt2-350m")
    for field in ("n-layer", "n-head", "n-embd", "vocab-size", "max-seq-len"):
        p.add_argument(f"--{field}", type=int, help=f"override the preset's {field.replace('-', ' ')}")
    p.add_argument("--checkpoint-activations", action="store_true", help="recompute each block's forward in backward")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--batch", type=int, default=16, help="global batch: sequences per step over all ranks")
    p.add_argument("--seq-len", type=int, default=60, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay after warm-up)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm (0: off)")
    p.add_argument("--seed", type=int, default=1337, help="seed for weights and built-in data")
    p.add_argument("--data", default="", help="text file or glob of token shards (omitted: built-in additions)")
    p.add_argument("--digits", type=int, default=2, help="operand digits of the built-in additions")
    p.add_argument("--eval-every", type=int, default=250, help="evaluate every N steps (0: at the end only)")
    p.add_argument("--eval-problems", type=int, default=200, help="held-out sums scored per evaluation")
    p.add_argument("--eval-batches", type=int, default=4, help="validation batches per evaluation")
    p.add_argument("--metrics-out", default="", help="write JSON Lines metrics to this file")
    p.add_argument("--sample-tokens", type=int, default=48, help="tokens to sample at the end (0: none)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--prompt", default="12+34=", help="prompt of the final sample")
    p.add_argument("--zero", type=int, default=0, choices=range(4), help="ZeRO stage: 0 (DDP), 1, 2 or 3")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--precision", default="f32", help="f32; bf16 or f16 (mixed precision, GPU only)")
    return p.parse_args(argv)


def make_data(args, rank: int, world: int):
    """(train loader, validation loader or None, AdditionDataset or None)."""
    def loader(sources):
        return dtrain.data.DataLoader(sources, args.batch, args.seq_len, rank=rank, world_size=world)

    if not args.data:
        additions = dtrain.data.AdditionDataset(args.digits)
        needed = args.steps * args.batch * args.seq_len + args.batch * args.seq_len + 1
        problems = max(20000, min(needed // 8, 500000))
        train = dtrain.data.MemoryTokens(additions.train_tokens(problems, args.seed), "built-in additions")
        val = dtrain.data.MemoryTokens(additions.held_out_tokens(4000, args.seed + 1), "held out")
        return loader([train]), loader([val]), additions
    if args.data.endswith(".bin") or "*" in args.data:
        return dtrain.data.DataLoader.from_pattern(args.data, args.batch, args.seq_len, rank=rank,
                                                   world_size=world), None, None
    with open(args.data, "rb") as f:
        tokens = np.frombuffer(f.read(), np.uint8).astype(np.uint16)
    n_val = len(tokens) // 10
    if n_val < args.batch * args.seq_len + 1:
        return loader([dtrain.data.MemoryTokens(tokens, args.data)]), None, None
    return (loader([dtrain.data.MemoryTokens(tokens[:-n_val], args.data)]),
            loader([dtrain.data.MemoryTokens(tokens[-n_val:], args.data + " (last 10%)")]), None)


def evaluate(args, model, engine, val, additions) -> dict:
    result = {}
    if val is not None:
        val.position = dtrain.data.LoaderPosition()
        n = max(1, min(args.eval_batches, val.batches_per_epoch))
        result["val_loss"] = engine.average(sum(model(*val.next()) for _ in range(n)) / n)
    if additions is not None:
        pairs = additions.held_out(args.eval_problems, 7)

        def decode(prompts, max_new):
            out = []
            for i in range(0, len(prompts), 64):  # chunks bound the activation memory
                out += dtrain.nn.generate_greedy_batch(model, prompts[i:i + 64], max_new, ord("\n"))
            return out

        score, base = additions.evaluate(pairs, decode), additions.baseline(pairs)
        result.update(accuracy_exact=score.exact, accuracy_digits=score.digits, baseline_digits=base.digits)
    return result


def eval_line(step: int, e: dict) -> str:
    line = f"eval @ step {step}:"
    if "val_loss" in e:
        line += f" val loss {e['val_loss']:.4f}"
    if "accuracy_exact" in e:
        line += (f" | held-out sums: exact {100 * e['accuracy_exact']:.1f}%, digits {100 * e['accuracy_digits']:.1f}% "
                 f"(format-only baseline {100 * e['baseline_digits']:.1f}%)")
    return line


def main(argv=None) -> None:
    args = parse_args(argv)
    with dtrain.process_group() as comm, contextlib.ExitStack() as files:
        rank, world, lead = comm.rank, comm.size, comm.rank == 0
        device = args.device
        if device == "cuda" and world > 1:  # one GPU per local rank
            device = f"cuda:{dtrain.job_env()['local_rank']}"
        if args.batch % (world * args.grad_accum):
            raise dtrain.DtrainValueError(f"--batch {args.batch} must be divisible by world size x --grad-accum = "
                                          f"{world} x {args.grad_accum}")
        overrides = {k: v for k, v in (("n_layer", args.n_layer), ("n_head", args.n_head), ("n_embd", args.n_embd),
                                       ("vocab_size", args.vocab_size), ("max_seq_len", args.max_seq_len)) if v}
        model = dtrain.nn.gpt(args.preset, device=device, seed=args.seed,
                              checkpoint_activations=args.checkpoint_activations, **overrides)
        train, val, additions = make_data(args, rank, world)
        engine = dtrain.parallel.DataParallel(model, comm, stage=args.zero, grad_accumulation=args.grad_accum,
                                              precision=args.precision)
        opt = dtrain.optim.AdamW(engine.param_groups(args.weight_decay))
        schedule = dtrain.optim.CosineSchedule(max_lr=args.lr, min_lr=args.lr * 0.1,
                                               warmup_steps=min(args.warmup, args.steps // 2), total_steps=args.steps)
        metrics = files.enter_context(open(args.metrics_out, "w")) if lead and args.metrics_out else None
        if lead:
            print(f"model: {model.config}, {model.num_parameters / 1e6:.2f}M parameters, device {device}")
            print(f"data: {args.data or 'built-in additions'}, global batch {args.batch} x {args.seq_len} tokens "
                  f"= {world} rank(s) x {args.grad_accum} micro-step(s)")
            print(f"engine: {engine!r}")
            for name, p in model.named_parameters():
                if name.startswith("blocks.0."):
                    print(f"  {name}: {p.shape} {p.dtype.name} on {p.device}")

        micro = args.batch // world // args.grad_accum
        total_ms = total_tokens = 0.0
        loss = float("nan")
        last_eval: dict = {}
        for step in range(args.steps):
            start = time.perf_counter()
            x, y = train.next()
            loss_sum = 0.0
            for m in range(args.grad_accum):
                # Every micro-step but the last accumulates locally; the engine syncs on the last.
                with engine.no_sync() if m + 1 < args.grad_accum else contextlib.nullcontext():
                    loss_sum += model(x.narrow(m * micro, micro), y.narrow(m * micro, micro),
                                      grad_scale=engine.grad_scale)
                    model.backward()
            lr = schedule(step)
            result = engine.step(opt, lr, max_grad_norm=args.grad_clip)
            step_ms = (time.perf_counter() - start) * 1000
            loss = engine.average(loss_sum / args.grad_accum)
            tok_s = args.batch * args.seq_len / (step_ms / 1000)
            if step > 0:  # the first step allocates; leave it out of the average
                total_ms += step_ms
                total_tokens += args.batch * args.seq_len
            record = dict(step=step + 1, loss=loss, tokens_per_s=tok_s, step_ms=step_ms, lr=lr,
                          grad_norm=result.grad_norm)
            if lead:
                print(f"step {step + 1:5d}/{args.steps} | loss {loss:.4f} | lr {lr:.2e} | norm {result.grad_norm:.3f} "
                      f"| {step_ms:7.1f} ms | {tok_s:9.0f} tok/s", flush=True)
            if (args.eval_every > 0 and (step + 1) % args.eval_every == 0) or step + 1 == args.steps:
                last_eval = evaluate(args, model, engine, val, additions)
                record.update(last_eval)
                if lead:
                    print(eval_line(step + 1, last_eval), flush=True)
            if metrics:
                metrics.write(json.dumps(record) + "\n")

        ledger = engine.ledger(opt)
        if metrics:
            metrics.write(json.dumps(dict(final=True, steps=args.steps, final_loss=loss,
                                          tokens_per_s=total_tokens / (total_ms / 1000) if total_ms else 0.0,
                                          parameters=model.num_parameters, config=str(model.config),
                                          zero_stage=args.zero, world_size=world, model_state_bytes=ledger.model_state,
                                          **last_eval)) + "\n")
        if args.sample_tokens > 0 and args.prompt:  # every rank runs it (ZeRO-3 gathers)
            out = dtrain.nn.generate(model, dtrain.data.encode_bytes(args.prompt), args.sample_tokens,
                                     temperature=args.temperature, seed=args.seed)
            if lead:
                kind = "temperature" if args.temperature > 0 else "greedy"
                print(f"sample ({kind}): {args.prompt}{dtrain.data.decode_bytes(out)}")
        if lead and not math.isfinite(loss):
            raise dtrain.DtrainError(f"training diverged: final loss {loss}")


if __name__ == "__main__":
    main()
