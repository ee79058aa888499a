"""PyTorch DDP (gloo backend) on MNIST: the baseline of `examples/ddp_mnist.rs`.

The same models (the MLP 784-128-10, or the pytorch/examples CNN without dropout), the same
optimiser (SGD, lr 0.05, momentum 0.9), the same global batch split over the ranks, the same
sampler (DistributedSampler, seed 0, drop_last) and the same launch shape: `--world` processes
with `--threads` intra-op threads each. Rank 0 prints samples/s after `--warmup` steps, in the
same line format as ddp_mnist.

    python benches/ddp_gloo.py --model cnn --world 2 --threads 1 --steps 60 --warmup 10
    python benches/ddp_gloo.py --model cnn --world 1 --threads 2 ...   # one process, two threads

Needs torch and numpy. MNIST is read from the idx.gz files of --data (as ddp_mnist reads them).
"""

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from mnist_pytorch import read_idx  # benches/ is on the path when this script runs


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def build(model):
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def allreduce_bench(rank, world):
    """Medians of gloo's all_reduce (sum, f32) from 1 KiB to 64 MiB, printed by rank 0."""
    rows = []
    for log4 in range(9):
        nbytes = 1024 << (2 * log4)
        t = torch.ones(nbytes // 4)
        reps = max(64 >> log4, 5)
        dist.all_reduce(t)
        times = []
        for _ in range(reps):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - start)
        times.sort()
        rows.append((nbytes, times[reps // 2]))
    if rank == 0:
        x = np.array([r[0] for r in rows], dtype=np.float64)
        y = np.array([r[1] for r in rows])
        b, a = np.polyfit(x, y, 1, w=1 / y)  # relative residuals: small messages set alpha
        steps = 2 * (world - 1)
        alpha, beta = a / steps, b * world / steps
        print("| bytes | median ms | model ms |\n| ---: | ---: | ---: |")
        for n, t in rows:
            print(f"| {n} | {t * 1e3:.4f} | {(a + b * n) * 1e3:.4f} |")
        print(f"gloo all-reduce on {world} ranks: alpha = {alpha * 1e6:.1f} us per step, beta = {beta * 1e9:.3f} ns/byte ({1 / beta / 1e9:.2f} GB/s per link)", flush=True)


def run(rank, args, port):
    torch.set_num_threads(args.threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    if args.allreduce_bench:
        allreduce_bench(rank, args.world)
        dist.destroy_process_group()
        return
    torch.manual_seed(rank)
    x, y = load(args.data, "train")
    x = x.unsqueeze(1)  # [N, 1, 28, 28]
    model = nn.parallel.DistributedDataParallel(build(args.model), bucket_cap_mb=args.bucket_kib / 1024)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    local = args.batch // args.world
    sampler = torch.utils.data.DistributedSampler(range(len(x)), num_replicas=args.world, rank=rank, shuffle=True, seed=0, drop_last=True)
    step, epoch, start, loss = 0, 0, time.perf_counter(), None
    while step < args.steps:
        sampler.set_epoch(epoch)
        idx = torch.tensor(list(iter(sampler)))
        for i in range(0, len(idx) - local + 1, local):
            if step == args.steps:
                break
            if step == args.warmup:
                start = time.perf_counter()
            chunk = idx[i : i + local]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[chunk]), y[chunk])
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
    secs = time.perf_counter() - start
    timed = max(args.steps - min(args.warmup, args.steps), 1)
    if rank == 0:
        tx, ty = load(args.data, "test")
        with torch.no_grad():
            pred = model.module(tx[:2000].unsqueeze(1)).argmax(1)
        acc = (pred == ty[:2000]).float().mean().item() * 100
        print(
            f"pytorch-gloo {args.model} world {args.world} threads {args.threads}: "
            f"{timed * args.batch / secs:.0f} samples/s, last loss {loss.item():.4f}, test accuracy {acc:.2f}%",
            flush=True,
        )
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--bucket-kib", type=int, default=25 * 1024)
    p.add_argument("--data", default=os.environ.get("TENSORBRAIN_DATA", "../shared/data") + "/mnist")
    p.add_argument("--port", type=int, default=29511)
    p.add_argument("--allreduce-bench", action="store_true", help="time all_reduce by size and fit the ring's alpha-beta model instead of training")
    args = p.parse_args()
    if args.batch % args.world:
        raise SystemExit(f"--batch {args.batch} must be divisible by --world {args.world}")
    if args.world == 1:
        run(0, args, args.port)
    else:
        mp.spawn(run, args=(args, args.port), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
