#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes of dev/attention.cpp.

The baseline the tensor-core attention is measured against (issue 11): the
same B, T, heads, head size and dtype, timed the same way (CUDA events around
N calls after warm-up), FLOPs counted the same way (causal: half of the T x T
products; forward 2 GEMMs, backward 5). attention.cpp runs this script in the
same call; it can also run alone. Prints one JSON object per T on stdout, or
one object with "skipped" and the reason when torch or a GPU is missing.
"""
import argparse
import json
import sys


def flops_forward(b, t, nh, hs, causal):
    full = 4.0 * b * nh * t * t * hs  # 2 GEMMs of 2*T*T*hs each
    return full / 2 if causal else full


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=str, default="1024,2048", help="comma-separated sequence lengths")
    ap.add_argument("--NH", type=int, default=12)
    ap.add_argument("--hs", type=int, default=64)
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--full", action="store_true", help="full mask instead of causal")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(json.dumps({"impl": "sdpa", "skipped": f"torch is not importable: {e}"}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"impl": "sdpa", "skipped": "torch sees no CUDA device"}))
        return 0
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    causal = not a.full
    for t in [int(x) for x in a.T.split(",") if x]:
        gen = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (torch.rand(a.B, a.NH, t, a.hs, device="cuda", dtype=dt, generator=gen) * 2 - 1 for _ in range(3))
        for x in (q, k, v):
            x.requires_grad_(True)
        dout = torch.rand(a.B, a.NH, t, a.hs, device="cuda", dtype=dt, generator=gen) * 2 - 1

        def time_ms(fn):
            for _ in range(5):
                fn()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(a.iters):
                fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop) / a.iters

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def fwd_bwd():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            torch.autograd.grad(out, (q, k, v), dout)

        f_ms, fb_ms = time_ms(fwd), time_ms(fwd_bwd)
        flops = flops_forward(a.B, t, a.NH, a.hs, causal)
        b_ms = max(fb_ms - f_ms, 1e-9)
        print(json.dumps({
            "impl": "sdpa", "torch": torch.__version__, "B": a.B, "T": t, "NH": a.NH, "hs": a.hs,
            "dtype": a.dtype, "causal": causal, "fwd_ms": f_ms, "fwd_bwd_ms": fb_ms,
            "fwd_tflops": flops / (f_ms * 1e9), "bwd_tflops": 2.5 * flops / (b_ms * 1e9),
            "fwd_bwd_tflops": 3.5 * flops / (fb_ms * 1e9),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
