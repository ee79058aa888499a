"""PyTorch's side of `cargo run --release --example bench_all -- --pytorch`: the same models,
shapes, steps and repetition counts as examples/bench_all.rs, printing `ROW|name|value|unit`
lines under the same names. bench_all runs it once per round and thread count.

    pip install torch && python3 benches/bench_all_pytorch.py --threads 2
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def best_of(reps, fn):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def ms(reps, fn):
    return best_of(reps, fn) * 1e3


def emit(name, value, unit):
    print(f"ROW|{name}|{value}|{unit}", flush=True)


def sgemm_rows():
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        flop = 2.0 * n**3
        reps = int(min(max(4e9 / flop, 3), 20))
        emit(f"SGEMM {n}²", flop / best_of(reps, lambda: a @ b) / 1e9, "GFLOP/s")
    x, w = torch.randn(64, 784), torch.randn(256, 784)
    wt = w.t()
    emit("SGEMM 64×784 · (256×784)ᵀ", 2.0 * 64 * 784 * 256 / best_of(200, lambda: x @ wt) / 1e9, "GFLOP/s")


def grad_step(out, wrt):
    torch.autograd.grad(out.mean(), wrt)


def mlp_rows():
    fc1, fc2 = nn.Linear(784, 256), nn.Linear(256, 10)
    params = list(fc1.parameters()) + list(fc2.parameters())
    x = torch.randn(64, 784)
    step = lambda: grad_step(F.log_softmax(fc2(F.relu(fc1(x))), 1), params)
    # PyTorch has one path; it stands against both of ours.
    t = ms(200, step)
    emit("MLP 784-256-10 b64 fwd+bwd, #[model]", t, "ms")
    emit("MLP 784-256-10 b64 fwd+bwd, tape", ms(200, step), "ms")


def conv_rows():
    w = (torch.randn(32, 16, 3, 3) * 0.1).requires_grad_()
    b = torch.randn(32).requires_grad_()
    scale = (torch.randn(32, 1, 1).abs() + 0.5).requires_grad_()
    shift = torch.randn(32, 1, 1).requires_grad_()
    x = torch.randn(32, 16, 32, 32)
    xg = x.clone().requires_grad_()
    conv = lambda x: F.relu(F.conv2d(x, w, b, padding=1) * scale + shift)

    def fwd():
        with torch.no_grad():
            conv(x)

    emit("conv+affine+relu b32 fwd, fused", ms(20, fwd), "ms")
    emit("conv+affine+relu b32 fwd, unfused", ms(20, fwd), "ms")
    emit("conv+affine+relu b32 fwd+bwd, fused", ms(10, lambda: grad_step(conv(xg), [xg, w, b, scale, shift])), "ms")


def elementwise_rows():
    x = torch.randn(256, 2048)
    xg = x.clone().requires_grad_()

    def ew(h):
        for _ in range(3):
            h = h * torch.sigmoid(h) * 0.5 + torch.tanh(h)
        return h

    def fwd():
        with torch.no_grad():
            ew(x)

    emit("3× (x·sig(x)·.5+tanh x) fwd, fused", ms(20, fwd), "ms")
    step = lambda: grad_step(ew(xg), [xg])
    emit("3× (x·sig(x)·.5+tanh x) fwd+bwd, fused", ms(10, step), "ms")
    emit("3× (x·sig(x)·.5+tanh x) fwd+bwd, tape", ms(10, step), "ms")


class BasicBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(64, 64, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(64)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


def resnet_block_row():
    block = BasicBlock().train()
    x = torch.randn(8, 64, 56, 56).requires_grad_()
    wrt = list(block.parameters()) + [x]
    emit("ResNet basic block 64ch 56² b8 fwd+bwd, tape", ms(5, lambda: grad_step(block(x), wrt)), "ms")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = torch.flatten(self.dropout1(F.max_pool2d(x, 2)), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


def train_samples_per_s(model, steps):
    model.train()
    x = torch.randn(64, 1, 28, 28)
    y = torch.arange(64) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    secs = best_of(3, lambda: [step() for _ in range(steps)])
    return steps * 64 / secs


def training_rows():
    emit("MNIST CNN train b64", train_samples_per_s(Cnn(), 5), "samples/s")
    emit("MNIST MLP train b64", train_samples_per_s(Mlp(), 50), "samples/s")


def tape_overhead_row():
    a, b = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    iters = 100_000

    def loop():
        for _ in range(iters):
            a * b

    emit("4×4 mul, grad on", best_of(3, loop) / iters * 1e9, "ns")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="", help="only the groups whose name contains this")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    groups = [
        ("sgemm", sgemm_rows),
        ("mlp", mlp_rows),
        ("conv", conv_rows),
        ("elementwise", elementwise_rows),
        ("resnet", resnet_block_row),
        ("mnist", training_rows),
        ("tape", tape_overhead_row),
    ]
    for name, group in groups:
        if args.only.lower() in name:
            group()


if __name__ == "__main__":
    main()
