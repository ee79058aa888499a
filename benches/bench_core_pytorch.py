"""PyTorch baseline for `cargo run --release --example bench_core`: the same measurements,
printed as the same table, so the two can be put side by side from one session.

    pip install torch && python3 benches/bench_core_pytorch.py
"""
import time

import torch


def best_of(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sgemm(n, threads):
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    reps = max(3, int(2e9 / (2 * n**3)))
    return 2 * n**3 / best_of(lambda: a @ b, min(reps, 50)) / 1e9


def add_gbps(n, threads):
    # `a + b` allocates its result, as TensorBrain's does.
    torch.set_num_threads(threads)
    a, b = torch.randn(n), torch.randn(n)
    return 3 * 4 * n / best_of(lambda: a + b, 20) / 1e9


def tape_ns(requires_grad, iters=100_000):
    torch.set_num_threads(1)
    a = torch.randn(4, 4, requires_grad=requires_grad)
    b = torch.randn(4, 4, requires_grad=requires_grad)
    for _ in range(1000):
        a * b
    t = time.perf_counter()
    for _ in range(iters):
        a * b
    return (time.perf_counter() - t) / iters * 1e9


if __name__ == "__main__":
    print(f"PyTorch {torch.__version__}")
    print(f"{'measurement':<34}{'1 thread':>12}{'2 threads':>12}")
    for n in (256, 512, 1024, 2048):
        print(f"{f'SGEMM {n}x{n} GFLOP/s':<34}{sgemm(n, 1):>12.1f}{sgemm(n, 2):>12.1f}")
    n = 1 << 24
    print(f"{'add 16M f32 GB/s':<34}{add_gbps(n, 1):>12.1f}{add_gbps(n, 2):>12.1f}")
    print(f"{'4x4 mul, grad off (ns/op)':<34}{tape_ns(False):>12.0f}")
    print(f"{'4x4 mul, grad on (ns/op)':<34}{tape_ns(True):>12.0f}")
