"""The alpha-beta cost model of bucketed ring all-reduce, and what it projects for DDP scaling.

A ring all-reduce of n bytes over p ranks takes 2(p-1) steps, each a latency alpha plus n/p
bytes at beta seconds per byte:

    T(n, p) = 2(p-1) * alpha + 2(p-1)/p * n * beta

DDP cuts the G gradient bytes into k buckets and all-reduces each one as soon as backward has
produced it, on one communication stream, while backward (B seconds, taken as producing
gradients evenly) goes on. Bucket j is ready at j*B/k and the buckets go out in order, so
communication ends at max_j (j*B/k + (k-j+1)*T(G/k, p)), and what is left after backward is

    exposed = max(B/k + k*T - B, T)

With forward F, a step costs F + B + exposed, and the scaling efficiency is
(F + B) / (F + B + exposed). Optimiser and data loading are left out (they scale perfectly).

    python benches/alpha_beta.py --check-alpha-us 25 --check-beta-ns 0.35 --check-grad-mb 0.397 --check-backward-ms 1.0

--check-* predicts the exposed time of one measured run (from the fitted alpha and beta of
this machine), to compare with what ddp_mnist reported; the table projects to 8 and 64 GPUs
over links whose alpha and beta are typical published figures, not measured here.
"""

import argparse

# (name, alpha seconds per step, beta seconds per byte). Typical figures, stated as assumptions:
# NVLink 4 (H100 SXM): NCCL reaches ~360 GB/s bus bandwidth per GPU inside a node, ~5 us per
#   step.
# 100 Gb/s Ethernet: 12.5 GB/s line rate, ~11 GB/s achieved; ~20 us per step (RoCE-class).
LINKS = {
    "nvlink": (5e-6, 1 / 360e9),
    "100gbe": (20e-6, 1 / 11e9),
}


def ring(nbytes, p, alpha, beta):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta


def exposed(grad_bytes, buckets, p, alpha, beta, backward):
    t = ring(grad_bytes / buckets, p, alpha, beta)
    return max(backward / buckets + buckets * t - backward, t)


def efficiency(grad_bytes, bucket_bytes, p, alpha, beta, forward, backward):
    k = max(1, round(grad_bytes / bucket_bytes))
    e = exposed(grad_bytes, k, p, alpha, beta, backward)
    return (forward + backward) / (forward + backward + e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-alpha-us", type=float)
    ap.add_argument("--check-beta-ns", type=float)
    ap.add_argument("--check-grad-mb", type=float, help="gradient MB of the measured run")
    ap.add_argument("--check-backward-ms", type=float)
    ap.add_argument("--check-buckets", type=int, default=1)
    ap.add_argument("--check-ranks", type=int, default=2)
    args = ap.parse_args()
    if args.check_alpha_us is not None:
        t = exposed(args.check_grad_mb * 1e6, args.check_buckets, args.check_ranks, args.check_alpha_us * 1e-6,
                    args.check_beta_ns * 1e-9, args.check_backward_ms * 1e-3)
        print(f"predicted exposed communication: {t * 1e3:.3f} ms per step")

    # Workloads: gradient bytes; compute per step (forward, backward) on one GPU is a
    # parameter, as a third of it forward.
    workloads = [("MNIST CNN (1.2 M params, 4.8 MB)", 4.8e6), ("ResNet-50-sized (25.6 M params, 102 MB)", 102.4e6),
                 ("GPT-2-medium-sized (355 M params, 1.42 GB)", 1.42e9)]
    computes = [0.010, 0.050, 0.200]
    print("\n| workload | link | GPUs | " + " | ".join(f"step {c * 1e3:.0f} ms" for c in computes) + " |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in computes) + " |")
    # A flat ring runs at its slowest link: 64 GPUs (8 nodes of 8) cross the network.
    setups = [("8 GPUs, one node, NVLink", 8, "nvlink"), ("8 nodes × 1 GPU, 100 Gb/s Ethernet", 8, "100gbe"),
              ("8 nodes × 8 GPUs, flat ring over 100 Gb/s Ethernet", 64, "100gbe")]
    for name, grad in workloads:
        for label, p, link in setups:
            alpha, beta = LINKS[link]
            cells = [efficiency(grad, 25 * 2**20, p, alpha, beta, c / 3, 2 * c / 3) for c in computes]
            print(f"| {name} | {label} | {p} | " + " | ".join(f"{e:.2f}" for e in cells) + " |")

if __name__ == "__main__":
    main()
