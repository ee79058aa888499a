"""PyTorch baseline for `cargo run --release -p tensorbrain-kernels --example conv_parts`: the
convolution's forward, input gradient and weight gradient timed apart on the same shapes, with
the same thread count, median of round-robin runs.

    pip install torch && python3 benches/conv_parts_pytorch.py [--threads 2 --reps 9]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

CASES = [
    ("bench_fusion conv 16->32 3x3 32x32 b32", (32, 16, 32, 32), (32, 16, 3, 3), 1),
    ("MNIST CNN conv1 1->32 3x3 28x28 b64", (64, 1, 28, 28), (32, 1, 3, 3), 0),
    ("MNIST CNN conv2 32->64 3x3 26x26 b64", (64, 32, 26, 26), (64, 32, 3, 3), 0),
    ("ResNet block conv 64->64 3x3 56x56 b8", (8, 64, 56, 56), (64, 64, 3, 3), 1),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"PyTorch {torch.__version__} conv2d parts, {a.threads} thread(s), median ms of {a.reps} round-robin runs")
    print(f"{'shape':<42}{'forward':>10}{'grad input':>12}{'grad weight':>12}")
    for what, xs, ws, pad in CASES:
        x, w, b = torch.randn(xs), torch.randn(ws), torch.randn(ws[0])
        y = F.conv2d(x, w, b, padding=pad)
        go = torch.randn_like(y)
        parts = [
            lambda: F.conv2d(x, w, b, padding=pad),
            lambda: torch.nn.grad.conv2d_input(xs, w, go, padding=pad),
            lambda: torch.nn.grad.conv2d_weight(x, ws, go, padding=pad),
        ]
        times = [[], [], []]
        with torch.no_grad():
            for rnd in range(a.reps + 1):
                for i, f in enumerate(parts):
                    t = time.perf_counter()
                    f()
                    if rnd > 0:
                        times[i].append(time.perf_counter() - t)
        f, gi, gw = (statistics.median(t) * 1e3 for t in times)
        print(f"{what:<42}{f:>10.3f}{gi:>12.3f}{gw:>12.3f}")


if __name__ == "__main__":
    main()
