"""PyTorch's side of examples/bench_cuda.rs on the same GPU: the same rows, shapes and
repetitions, printing `ROW|name|value|unit`. Needs torch with CUDA."""

import argparse
import time

import torch
import torch.nn.functional as F

# The same MNIST models as the CPU benchmark (this directory is on sys.path when run as a script).
from bench_all_pytorch import Cnn, Mlp


def timed(reps, fn):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def emit(name, value, unit):
    print(f"ROW|{name}|{value}|{unit}", flush=True)


def gemm_tflops(dev, dtype, n):
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return 2 * n**3 / timed(10, lambda: a @ b) / 1e12


def train_step_ms(dev, model, steps):
    model = model.to(dev).train()
    x = torch.randn(64, 1, 28, 28, device=dev)
    y = (torch.arange(64) % 10).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    return timed(3, run) / steps * 1e3


def chain(x):
    h = x
    for _ in range(3):
        h = h * torch.sigmoid(h) * 0.5 + torch.tanh(h)
    return h


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", type=int, default=0)
    dev = torch.device("cuda", p.parse_args().device)
    # Full f32 GEMMs, as ours (no TF32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    emit("SGEMM 4096² f32", gemm_tflops(dev, torch.float32, 4096), "TFLOP/s")
    emit("HGEMM 4096² f16", gemm_tflops(dev, torch.float16, 4096), "TFLOP/s")
    emit("MNIST MLP train step b64", train_step_ms(dev, Mlp(), 50), "ms")
    emit("MNIST CNN train step b64", train_step_ms(dev, Cnn(), 20), "ms")
    x = torch.randn(4096, 4096, device=dev)
    with torch.no_grad():
        emit("3× (x·sig(x)·.5+tanh x) 4096² fwd, eager", timed(10, lambda: chain(x)) * 1e3, "ms")
        try:
            compiled = torch.compile(chain)
            emit("3× (x·sig(x)·.5+tanh x) 4096² fwd, torch.compile", timed(10, lambda: compiled(x)) * 1e3, "ms")
        except Exception as e:  # torch.compile needs a working Triton; say so rather than fail
            print(f"torch.compile unavailable: {e}", flush=True)


if __name__ == "__main__":
    main()
