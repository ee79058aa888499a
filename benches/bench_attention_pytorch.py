#!/usr/bin/env python3
"""PyTorch twin of `cargo run --release --example bench_attention -- --bench`: the same
shapes (batch 2, 8 heads of 64, causal) through F.scaled_dot_product_attention and the
materialised math, and nn.TransformerEncoderLayer(512, 8, pre-norm, dropout 0), medians.

    pip install torch
    python3 benches/bench_attention_pytorch.py --threads N
"""

import argparse
import math
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--memory", default=None)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
B, H, D = 2, 8, 64


def qkv(t):
    return [torch.randn(B, H, t, D, requires_grad=True) for _ in range(3)]


def math_sdpa(q, k, v):
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    t = q.shape[-2]
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def timeit(f):
    f()
    t0 = time.perf_counter()
    f()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = min(max(int(0.5 / once), 1), 50)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


if a.memory:
    q, k, v = qkv(2048)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = (sdpa if a.memory == "tiled" else math_sdpa)(q, k, v)
    out.sum().backward()
    print(f"{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024:.1f}")
    sys.exit(0)

print(f"{'what':<28} {'T':>6} {'PyTorch sdpa':>14} {'PyTorch math':>14}")
for t in [128, 512, 2048]:
    q, k, v = qkv(t)
    fb = lambda f: timeit(lambda: f(q, k, v).sum().backward())
    print(f"{'sdpa fwd+bwd':<28} {t:>6} {fb(sdpa) * 1e3:>11.2f} ms {fb(math_sdpa) * 1e3:>11.2f} ms")
    with torch.inference_mode():
        qi, ki, vi = q.detach(), k.detach(), v.detach()
        ti, ri = timeit(lambda: sdpa(qi, ki, vi)), timeit(lambda: math_sdpa(qi, ki, vi))
    print(f"{'sdpa inference':<28} {t:>6} {B * t / ti:>8.0f} tok/s {B * t / ri:>8.0f} tok/s")
    layer = nn.TransformerEncoderLayer(512, 8, dropout=0.0, batch_first=True, norm_first=True)
    x = torch.randn(B, t, 512, requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(t)
    enc = timeit(lambda: layer(x, src_mask=mask, is_causal=True).sum().backward())
    print(f"{'encoder layer fwd+bwd':<28} {t:>6} {enc * 1e3:>11.2f} ms")
mem = lambda m: subprocess.run([sys.executable, __file__, "--memory", m, "--threads", str(a.threads)], capture_output=True, text=True).stdout.strip()
print(f"\npeak memory of one causal fwd+bwd at T = 2048: sdpa +{mem('tiled')} MiB, math +{mem('reference')} MiB")
