#!/usr/bin/env python3
"""PyTorch's training step on dtrain's GPT presets: the baseline of issue 10.

The same model as dtrain's presets (src/nn/gpt.cpp): learned position table,
pre-LayerNorm blocks (eps 1e-5, with bias), GELU (tanh approximation), linear
layers with bias, the output head tied to the token table, init N(0, 0.02)
with the residual projections scaled by 1/sqrt(2 n_layer). Trained the way
dtrain-bench's train suite trains: random tokens (the targets are the inputs,
as there), cross-entropy, AdamW (lr 1e-4, betas 0.9/0.95, weight decay 0.1 on
matrices), gradient clipping at 1.0; bf16 autocast by default, fused AdamW and
scaled_dot_product_attention on a GPU, torch.compile with --compile.

Warm-up steps, then the median step time, tokens/s and the peak memory
(torch.cuda.max_memory_allocated) as one JSON line on stdout; or one line
with "skipped" and the reason when torch or the device is missing (exit 0).
dtrain-bench's train suite runs it in the same call (--pytorch-script) and
prints its figure next to dtrain's.

    python3 pytorch_gpt2.py                                   # gpt2-124m, B=16, T=1024, bf16, CUDA
    python3 pytorch_gpt2.py --device cpu --preset tiny --batch 2 --seq-len 32 --steps 2
"""
import argparse
import json
import math
import statistics
import sys
import time

PRESETS = {  # n_layer, n_head, n_embd, vocab_size, max_seq_len (src/nn/gpt.cpp)
    "tiny": (2, 4, 128, 256, 128),
    "gpt2-124m": (12, 12, 768, 50257, 1024),
    "gpt2-350m": (24, 16, 1024, 50257, 1024),
}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-124m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's position table (1024 for GPT-2)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16", help="autocast dtype")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = ap.parse_args(argv)
    if a.seq_len is None:
        a.seq_len = PRESETS[a.preset][4]
    for name in ("batch", "seq_len", "steps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0:
        ap.error("--warmup must be at least 0")
    if a.seq_len > PRESETS[a.preset][4]:
        ap.error(f"--seq-len {a.seq_len} is longer than {a.preset}'s position table ({PRESETS[a.preset][4]})")
    return a


def skipped(reason):
    print(json.dumps({"impl": "pytorch", "skipped": reason}), flush=True)
    return 0


def build_model(torch, preset, device):
    nn = torch.nn
    F = torch.nn.functional
    n_layer, n_head, n_embd, vocab, max_t = PRESETS[preset]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(n_embd, eps=1e-5), nn.LayerNorm(n_embd, eps=1e-5)
            self.qkv, self.proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
            self.fc, self.fc_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(max_t, n_embd)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)
            residual_std = 0.02 / math.sqrt(2 * n_layer)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.dim() == 1:
                    nn.init.ones_(p)
                else:
                    nn.init.normal_(p, 0.0, residual_std if name.endswith(("proj.weight", "fc_proj.weight")) else 0.02)

        def forward(self, tokens, targets):
            t = tokens.shape[1]
            x = self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # the head tied to the token table
            return F.cross_entropy(logits.float().view(-1, vocab), targets.view(-1))

    return GPT().to(device)


def run(a):
    try:
        import torch
    except ImportError as e:
        return skipped(f"torch is not importable: {e}")
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        return skipped("torch sees no CUDA device")
    torch.manual_seed(0)
    model = build_model(torch, a.preset, device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), **({"fused": True} if cuda else {}))
    step_model = torch.compile(model) if a.compile else model
    vocab = PRESETS[a.preset][3]
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (a.batch, a.seq_len), generator=gen).to(device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = step_model(tokens, tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    loss = None
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "device": str(device), "preset": a.preset, "params": params,
        "batch": a.batch, "seq_len": a.seq_len, "precision": a.precision, "compile": a.compile,
        "warmup": a.warmup, "steps": a.steps, "step_ms_median": step_s * 1e3,
        "tokens_per_s": a.batch * a.seq_len / step_s, "loss": float(loss.item()),
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
    }), flush=True)
    return 0


def main(argv=None):
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
