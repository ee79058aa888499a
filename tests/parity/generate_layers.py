#!/usr/bin/env python3
"""Generate PyTorch fixtures for the layers of issue 11: GroupNorm, InstanceNorm1d/2d,
ConvTranspose2d, EmbeddingBag, and MaxPool2d/AvgPool2d with rectangular kernels, stride,
padding and the other constructor options.

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate_layers.py

Writes tests/parity/fixtures/nn_layers.safetensors in the format of FORMAT.md (the `Family`
class of generate.py), replayed by tensorbrain/tests/layers_parity.rs. Each case runs an
`nn` module through `torch.func.functional_call`, so its parameters are inputs and get
gradients: `args["inputs"]` names every input in order, `"x"` for the layer's input,
`"offsets"`/`"per_sample_weights"` for EmbeddingBag's extra arguments, and otherwise the
state-dict name of a parameter (the Rust test loads them by those names). Layers that track
running statistics also store `<case>/running_mean0`, `running_var0` (before the call) and
`running_mean1`, `running_var1` (after). Deterministic: fixed seed and case order, one thread.
"""

import os
import sys

import torch
import torch.nn as nn
from torch.func import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import F64, TOL_F32, Family, randn  # noqa: E402

TOL_NORM = (1e-5, 2e-6)  # normalised outputs and their gradients (reductions, then rsqrt)


def add_layer(fam, name, layer, config, module, x, extra=None, tol=TOL_F32, training=True, dtype=torch.float32):
    """One case: `module(x, **extra)` with the module's parameters as inputs after x."""
    module = module.to(dtype)
    module.train(training)
    params = dict(module.named_parameters())
    for pname, p in params.items():  # PyTorch's norm inits are ones/zeros: use random values.
        with torch.no_grad():
            scale_like = pname == "weight" and p.dim() == 1
            p.copy_(torch.randn(p.shape, dtype=dtype) * 0.5 + (1.0 if scale_like else 0.0))
    buffers = {k: v.clone() for k, v in module.named_buffers()}
    if "running_mean" in buffers:
        buffers["running_mean"] = torch.randn(buffers["running_mean"].shape, dtype=dtype) * 0.1
        buffers["running_var"] = torch.rand(buffers["running_var"].shape, dtype=dtype) + 0.5
        before = {k: buffers[k].clone() for k in ("running_mean", "running_var")}
    extra = extra or {}
    names = ["x"] + list(extra) + list(params)
    inputs = [x] + list(extra.values()) + [p.detach().clone() for p in params.values()]
    grad = [t.is_floating_point() and (n == "x" or n in params) for n, t in zip(names, inputs)]
    n_extra = len(extra)

    def run(v):
        state = dict(zip(params, v[1 + n_extra:]))
        state.update(buffers)
        kwargs = dict(zip(list(extra), v[1:1 + n_extra]))
        return functional_call(module, state, (v[0],), kwargs)

    args = dict(config, layer=layer, inputs=names, training=training)
    fam.add(name, layer, args, inputs, run, grad=grad, tol=tol)
    if "running_mean" in buffers:
        fam._put(f"{name}/running_mean0", before["running_mean"])
        fam._put(f"{name}/running_var0", before["running_var"])
        fam._put(f"{name}/running_mean1", buffers["running_mean"])
        fam._put(f"{name}/running_var1", buffers["running_var"])


def gen_norms(fam):
    add_layer(fam, "group_norm_g2_c6", "group_norm", {"groups": 2, "channels": 6, "eps": 1e-5, "affine": True},
              nn.GroupNorm(2, 6), randn(2, 6, 3, 4), tol=TOL_NORM)
    add_layer(fam, "group_norm_g3_c6_no_affine", "group_norm", {"groups": 3, "channels": 6, "eps": 1e-3, "affine": False},
              nn.GroupNorm(3, 6, eps=1e-3, affine=False), randn(3, 6, 5), tol=TOL_NORM)
    add_layer(fam, "group_norm_g6_c6_2d", "group_norm", {"groups": 6, "channels": 6, "eps": 1e-5, "affine": True},
              nn.GroupNorm(6, 6), randn(4, 6, 1, 3), tol=TOL_NORM)
    add_layer(fam, "group_norm_g2_c4_f64", "group_norm", {"groups": 2, "channels": 4, "eps": 1e-5, "affine": True},
              nn.GroupNorm(2, 4), randn(2, 4, 3, 2, dtype=F64), dtype=F64)

    add_layer(fam, "instance_norm2d_default", "instance_norm2d", {"channels": 3, "affine": False, "track": False},
              nn.InstanceNorm2d(3), randn(2, 3, 4, 5), tol=TOL_NORM)
    add_layer(fam, "instance_norm2d_affine", "instance_norm2d", {"channels": 3, "affine": True, "track": False},
              nn.InstanceNorm2d(3, affine=True), randn(2, 3, 4, 5), tol=TOL_NORM)
    add_layer(fam, "instance_norm2d_unbatched", "instance_norm2d", {"channels": 3, "affine": True, "track": False},
              nn.InstanceNorm2d(3, affine=True), randn(3, 2, 4), tol=TOL_NORM)
    for training in (True, False):
        tag = "train" if training else "eval"
        add_layer(fam, f"instance_norm1d_track_{tag}", "instance_norm1d", {"channels": 3, "affine": True, "track": True},
                  nn.InstanceNorm1d(3, affine=True, track_running_stats=True), randn(4, 3, 6) * 2 + 1, training=training, tol=TOL_NORM)
    add_layer(fam, "instance_norm1d_f64", "instance_norm1d", {"channels": 2, "affine": True, "track": False},
              nn.InstanceNorm1d(2, affine=True), randn(3, 2, 5, dtype=F64), dtype=F64)


def gen_conv_transpose(fam):
    tol = (1e-5, 1e-5)
    add_layer(fam, "conv_transpose2d_k3_s2_p1_op1", "conv_transpose2d", {"in": 3, "out": 2, "k": 3, "s": 2, "p": 1, "op": 1, "bias": True},
              nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), randn(2, 3, 4, 5), tol=tol)
    add_layer(fam, "conv_transpose2d_k2_no_bias", "conv_transpose2d", {"in": 2, "out": 4, "k": 2, "s": 1, "p": 0, "op": 0, "bias": False},
              nn.ConvTranspose2d(2, 4, 2, bias=False), randn(1, 2, 3, 3), tol=tol)
    add_layer(fam, "conv_transpose2d_k4_s2_p1", "conv_transpose2d", {"in": 2, "out": 3, "k": 4, "s": 2, "p": 1, "op": 0, "bias": True},
              nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), randn(2, 3, 3), tol=tol)
    add_layer(fam, "conv_transpose2d_k3_s2_f64", "conv_transpose2d", {"in": 2, "out": 2, "k": 3, "s": 2, "p": 0, "op": 1, "bias": True},
              nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=1), randn(1, 2, 3, 2, dtype=F64), dtype=F64)


def gen_embedding_bag(fam):
    ids2 = torch.tensor([[0, 2, 5], [2, 2, 1]])
    ids1 = torch.tensor([1, 2, 4, 5, 4, 3, 2, 0])
    offsets = torch.tensor([0, 3, 3, 6])
    for mode in ("mean", "sum", "max"):
        add_layer(fam, f"embedding_bag_2d_{mode}", "embedding_bag", {"num": 6, "dim": 4, "mode": mode, "padding_idx": None},
                  nn.EmbeddingBag(6, 4, mode=mode), ids2)
        add_layer(fam, f"embedding_bag_offsets_{mode}_padding", "embedding_bag", {"num": 6, "dim": 4, "mode": mode, "padding_idx": 2},
                  nn.EmbeddingBag(6, 4, mode=mode, padding_idx=2), ids1, extra={"offsets": offsets})
    add_layer(fam, "embedding_bag_weighted_sum", "embedding_bag", {"num": 6, "dim": 4, "mode": "sum", "padding_idx": None},
              nn.EmbeddingBag(6, 4, mode="sum"), ids1, extra={"offsets": offsets, "per_sample_weights": randn(8)})


def gen_pooling(fam):
    x = randn(2, 3, 7, 6)
    max_cases = [
        ("max_pool2d_rect", dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
        ("max_pool2d_square_pad", dict(kernel_size=3, stride=2, padding=1)),
        ("max_pool2d_dilation_ceil", dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=True)),
    ]
    for name, o in max_cases:
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
        add_layer(fam, name, "max_pool2d", cfg, nn.MaxPool2d(**o), x)
    avg_cases = [
        ("avg_pool2d_rect", dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
        ("avg_pool2d_exclude_pad", dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), count_include_pad=False)),
        ("avg_pool2d_ceil_divisor", dict(kernel_size=(2, 3), stride=(2, 2), padding=(0, 1), ceil_mode=True, divisor_override=4)),
    ]
    for name, o in avg_cases:
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
        add_layer(fam, name, "avg_pool2d", cfg, nn.AvgPool2d(**o), x)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    fam = Family("nn_layers", 20261201)
    gen_norms(fam)
    gen_conv_transpose(fam)
    gen_embedding_bag(fam)
    gen_pooling(fam)
    path = fam.save()
    print(f"torch {torch.__version__}: {len(fam.cases)} cases, {os.path.getsize(path)} bytes in {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
