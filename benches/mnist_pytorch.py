"""The PyTorch side of `cargo run --release --example mnist -- --bench`: the same models,
optimizer (Adam, lr 1e-3, cosine decay per batch to 0), batch size (64) and thread count,
timed the same way (seconds for the training pass of each epoch; evaluation not counted).

    python3 benches/mnist_pytorch.py --model mlp --epochs 3 --threads 2
    python3 benches/mnist_pytorch.py --model cnn --epochs 1 --threads 2

With --tensorbrain-checkpoint runs/mlp-mnist/ckpt-000003-epoch3/model.safetensors (the checkpoint
the example names when it finishes) it instead loads a checkpoint written by TensorBrain into the
PyTorch model and reports its test accuracy.
"""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class Cnn(nn.Module):
    """pytorch/examples/mnist, without the final log_softmax (cross_entropy applies it)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = torch.flatten(self.dropout1(F.max_pool2d(x, 2)), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(directory, split, mean, std):
    prefix = "train" if split == "train" else "t10k"
    find = lambda stem: next(os.path.join(directory, stem + ext) for ext in (".gz", "") if os.path.exists(os.path.join(directory, stem + ext)))
    x = read_idx(find(f"{prefix}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    x = (torch.from_numpy(x).unsqueeze(1) - mean) / std
    return x, torch.from_numpy(y)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(y), 1000))
    model.train()
    return correct / len(y)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--dataset", choices=["mnist", "fashion"], default="mnist")
    p.add_argument("--data")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tensorbrain-checkpoint")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    directory, mean, std = {"mnist": ("../shared/data/mnist", 0.1307, 0.3081), "fashion": ("../shared/data/fashion-mnist", 0.2860, 0.3530)}[a.dataset]
    directory = a.data or directory
    train_x, train_y = load(directory, "train", mean, std)
    test_x, test_y = load(directory, "test", mean, std)
    model = {"mlp": Mlp, "cnn": Cnn}[a.model]()
    name = f"{a.model}-{a.dataset}"

    if a.tensorbrain_checkpoint:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(a.tensorbrain_checkpoint))
        print(f"{name}: TensorBrain checkpoint {a.tensorbrain_checkpoint} in PyTorch: test accuracy {100 * evaluate(model, test_x, test_y):.2f}%")
        return

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps_per_epoch = (len(train_y) + a.batch_size - 1) // a.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * steps_per_epoch, 0.0)
    print(f"| model (PyTorch {torch.__version__}, {a.threads} threads) | epoch | seconds | samples/s | test accuracy |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for epoch in range(1, a.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(train_y), generator=g)
        for i in range(0, len(train_y), a.batch_size):
            idx = order[i : i + a.batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(train_x[idx]), train_y[idx]).backward()
            opt.step()
            sched.step()
        seconds = time.perf_counter() - start
        print(f"| {name} | {epoch} | {seconds:.2f} | {len(train_y) / seconds:.0f} | {100 * evaluate(model, test_x, test_y):.2f}% |", flush=True)


if __name__ == "__main__":
    main()
