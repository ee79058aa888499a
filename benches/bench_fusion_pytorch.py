"""PyTorch eager baseline for `cargo run --release --example bench_fusion`: the same models,
shapes and steps, best of N, with the same thread count (2).

    pip install torch && python3 benches/bench_fusion_pytorch.py
"""
import time

import torch
import torch.nn.functional as F

THREADS = 2


def best_ms(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def row(name, reps, fn):
    print(f"{name:<34}{best_ms(fn, reps):>10.3f}")


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads")
    print(f"{'model (best ms per step)':<34}{'eager':>10}")

    # MLP 784-256-10, batch 64, log_softmax.
    fc1, fc2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 10)
    params = list(fc1.parameters()) + list(fc2.parameters())
    x = torch.randn(64, 784)

    def mlp(x):
        return F.log_softmax(fc2(F.relu(fc1(x))), 1)

    def mlp_fwd():
        with torch.no_grad():
            mlp(x)

    def mlp_step():
        torch.autograd.grad(mlp(x).mean(), params)

    row("MLP 784-256-10 b64 forward", 200, mlp_fwd)
    row("MLP 784-256-10 b64 fwd+bwd", 100, mlp_step)

    # conv 16->32 3x3 + per-channel affine (batch norm in eval) + relu, batch 32, 32x32.
    w = (torch.randn(32, 16, 3, 3) * 0.1).requires_grad_()
    b = torch.randn(32).requires_grad_()
    scale = (torch.randn(32, 1, 1).abs() + 0.5).requires_grad_()
    shift = torch.randn(32, 1, 1).requires_grad_()
    xc = torch.randn(32, 16, 32, 32)
    xg = xc.clone().requires_grad_()

    def conv(x):
        return F.relu(F.conv2d(x, w, b, padding=1) * scale + shift)

    def conv_fwd():
        with torch.no_grad():
            conv(xc)

    def conv_step():
        torch.autograd.grad(conv(xg).mean(), [xg, w, b, scale, shift])

    row("conv+affine+relu b32 forward", 20, conv_fwd)
    row("conv+affine+relu b32 fwd+bwd", 10, conv_step)

    # Three stages of x * sigmoid(x) * 0.5 + tanh(x) on [256, 2048].
    xe = torch.randn(256, 2048)
    xeg = xe.clone().requires_grad_()

    def ew(h):
        for _ in range(3):
            h = h * torch.sigmoid(h) * 0.5 + torch.tanh(h)
        return h

    def ew_fwd():
        with torch.no_grad():
            ew(xe)

    def ew_step():
        torch.autograd.grad(ew(xeg).mean(), [xeg])

    row("3x (x*sig(x)*.5+tanh x) fwd", 20, ew_fwd)
    row("3x (x*sig(x)*.5+tanh x) fwd+bwd", 10, ew_step)


if __name__ == "__main__":
    main()
