#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for TensorBrain's losses and layers.

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate_nn.py

Writes tests/parity/fixtures/nn_modules.safetensors in the format of FORMAT.md (cases in the
`cases` metadata; `<case>/in<i>`, `out`, `gout`, `grad<i>`), read by tensorbrain/tests/losses.rs
and tensorbrain/tests/norm_layers.rs. Extra per-case tensors: batch norm's running statistics
before (`<case>/running_mean0`, `running_var0`) and after (`running_mean1`, `running_var1`) the
call. `op` names the loss or layer; `args` its options (null = not set). Deterministic: fixed
seed, fixed case order, one thread.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import Family, TOL_F32  # noqa: E402

TOL_NORM = (1e-5, 2e-6)  # normalised outputs and their gradients (reductions, then rsqrt)
REDUCTIONS = ["mean", "sum", "none"]


def gen_losses(fam):
    add = fam.add
    logits2 = torch.randn(6, 5)
    target2 = torch.tensor([0, 3, 1, 4, 1, 2])
    logits3 = torch.randn(3, 4, 2)
    target3 = torch.tensor([[1, 0], [3, 1], [2, 1]])
    weight5 = torch.rand(5) + 0.5
    weight4 = torch.rand(4) + 0.5
    unbatched = torch.randn(5)
    # ignore_index 1 is a real class in the targets above, so ignoring it changes the result.
    for shape_tag, x, t, w in [("2d", logits2, target2, weight5), ("3d", logits3, target3, weight4)]:
        for red in REDUCTIONS:
            for use_w in (False, True):
                for ignore in (-100, 1):
                    for smooth in (0.0, 0.1):
                        name = f"ce_{shape_tag}_{red}_w{int(use_w)}_i{ignore}_s{smooth}"
                        args = {"reduction": red, "weight": use_w, "ignore_index": ignore, "label_smoothing": smooth}
                        inputs = [x, t] + ([w] if use_w else [])
                        add(name, "cross_entropy", args, inputs,
                            lambda v, red=red, use_w=use_w, ignore=ignore, smooth=smooth: F.cross_entropy(
                                v[0], v[1], weight=v[2] if use_w else None, ignore_index=ignore,
                                label_smoothing=smooth, reduction=red),
                            grad=[True, False] + ([False] if use_w else []), tol=TOL_F32)
        for red in REDUCTIONS:
            for use_w in (False, True):
                for ignore in (-100, 1):
                    name = f"nll_{shape_tag}_{red}_w{int(use_w)}_i{ignore}"
                    args = {"reduction": red, "weight": use_w, "ignore_index": ignore}
                    logp = torch.log_softmax(x, 1)
                    inputs = [logp, t] + ([w] if use_w else [])
                    add(name, "nll_loss", args, inputs,
                        lambda v, red=red, use_w=use_w, ignore=ignore: F.nll_loss(
                            v[0], v[1], weight=v[2] if use_w else None, ignore_index=ignore, reduction=red),
                        grad=[True, False] + ([False] if use_w else []), tol=TOL_F32)
    for red in REDUCTIONS:
        add(f"ce_unbatched_{red}", "cross_entropy", {"reduction": red, "weight": False, "ignore_index": -100, "label_smoothing": 0.1},
            [unbatched, torch.tensor(3)], lambda v, red=red: F.cross_entropy(v[0], v[1], label_smoothing=0.1, reduction=red),
            grad=[True, False], tol=TOL_F32)
    # Probability targets.
    probs = torch.softmax(torch.randn(6, 5), 1)
    for red in REDUCTIONS:
        for use_w in (False, True):
            for smooth in (0.0, 0.2):
                name = f"ce_prob_{red}_w{int(use_w)}_s{smooth}"
                args = {"reduction": red, "weight": use_w, "ignore_index": -100, "label_smoothing": smooth}
                inputs = [logits2, probs] + ([weight5] if use_w else [])
                add(name, "cross_entropy", args, inputs,
                    lambda v, red=red, use_w=use_w, smooth=smooth: F.cross_entropy(
                        v[0], v[1], weight=v[2] if use_w else None, label_smoothing=smooth, reduction=red),
                    grad=[True, True] + ([False] if use_w else []), tol=TOL_F32)

    x = torch.randn(4, 3)
    y = torch.randn(4, 3)
    for red in REDUCTIONS:
        add(f"mse_{red}", "mse_loss", {"reduction": red}, [x, y], lambda v, red=red: F.mse_loss(v[0], v[1], reduction=red), tol=TOL_F32)
        add(f"l1_{red}", "l1_loss", {"reduction": red}, [x, y], lambda v, red=red: F.l1_loss(v[0], v[1], reduction=red), tol=TOL_F32)

    p = torch.rand(4, 3) * 0.9 + 0.05
    t = torch.rand(4, 3)
    bw = torch.rand(3) + 0.5
    for red in REDUCTIONS:
        for use_w in (False, True):
            add(f"bce_{red}_w{int(use_w)}", "binary_cross_entropy", {"reduction": red, "weight": use_w},
                [p, t] + ([bw] if use_w else []),
                lambda v, red=red, use_w=use_w: F.binary_cross_entropy(v[0], v[1], weight=v[2] if use_w else None, reduction=red),
                grad=[True, True] + ([False] if use_w else []), tol=TOL_F32)
    # Logits include large magnitudes, where the naive formula overflows.
    z = torch.cat([torch.randn(3, 3) * 3, torch.tensor([[40.0, -40.0, 0.0]])])
    tz = (torch.rand(4, 3) < 0.5).float()
    pw = torch.rand(3) * 2 + 0.5
    for red in REDUCTIONS:
        for use_w in (False, True):
            for use_pw in (False, True):
                add(f"bcel_{red}_w{int(use_w)}_p{int(use_pw)}", "binary_cross_entropy_with_logits",
                    {"reduction": red, "weight": use_w, "pos_weight": use_pw},
                    [z, tz] + ([bw] if use_w else []) + ([pw] if use_pw else []),
                    lambda v, red=red, use_w=use_w, use_pw=use_pw: F.binary_cross_entropy_with_logits(
                        v[0], v[1], weight=v[2] if use_w else None,
                        pos_weight=v[2 + use_w] if use_pw else None, reduction=red),
                    grad=[True, True] + [False] * (use_w + use_pw), tol=TOL_F32)


def add_batch_norm(fam, name, x, training):
    c = x.shape[1]
    weight = torch.rand(c) + 0.5
    bias = torch.randn(c)
    rm0 = torch.randn(c) * 0.1
    rv0 = torch.rand(c) + 0.5
    rm, rv = rm0.clone(), rv0.clone()
    spatial = 2 if x.dim() == 4 else 1
    fam.add(name, f"batch_norm{spatial}d", {"training": training}, [x, weight, bias],
            lambda v: F.batch_norm(v[0], rm, rv, v[1], v[2], training=training, momentum=0.1, eps=1e-5),
            tol=TOL_NORM)
    fam._put(f"{name}/running_mean0", rm0)
    fam._put(f"{name}/running_var0", rv0)
    fam._put(f"{name}/running_mean1", rm)
    fam._put(f"{name}/running_var1", rv)


def gen_layers(fam):
    for training in (True, False):
        tag = "train" if training else "eval"
        add_batch_norm(fam, f"bn1d_nc_{tag}", torch.randn(5, 3) * 2 + 1, training)
        add_batch_norm(fam, f"bn1d_ncl_{tag}", torch.randn(4, 3, 5) * 2 - 1, training)
        add_batch_norm(fam, f"bn2d_{tag}", torch.randn(2, 4, 3, 5) * 1.5 + 0.5, training)

    x = torch.randn(2, 3, 6)
    w = torch.rand(6) + 0.5
    fam.add("rms_default_eps", "rms_norm", {"eps": None}, [x, w], lambda v: F.rms_norm(v[0], (6,), v[1]), tol=TOL_NORM)
    fam.add("rms_eps", "rms_norm", {"eps": 1e-2}, [x * 0.05, w], lambda v: F.rms_norm(v[0], (6,), v[1], eps=1e-2), tol=TOL_NORM)

    x = torch.randn(2, 3, 7, 5)
    for oh, ow in [(3, 2), (1, 1), (4, 4), (7, 5), (9, 6)]:
        fam.add(f"adaptive_avg_{oh}x{ow}", "adaptive_avg_pool2d", {"output_size": [oh, ow]}, [x],
                lambda v, oh=oh, ow=ow: F.adaptive_avg_pool2d(v[0], (oh, ow)), tol=TOL_F32)
    fam.add("adaptive_avg_unbatched", "adaptive_avg_pool2d", {"output_size": [2, 3]}, [x[0]],
            lambda v: F.adaptive_avg_pool2d(v[0], (2, 3)), tol=TOL_F32)

    x = torch.randn(3, 4) * 2
    fam.add("elu", "elu", {"alpha": 0.5}, [x], lambda v: F.elu(v[0], 0.5), tol=TOL_F32)
    fam.add("leaky_relu", "leaky_relu", {"negative_slope": 0.2}, [x], lambda v: F.leaky_relu(v[0], 0.2), tol=TOL_F32)
    fam.add("softmax", "softmax", {"dim": 0}, [x], lambda v: F.softmax(v[0], 0), tol=TOL_F32)
    fam.add("log_softmax", "log_softmax", {"dim": -1}, [x], lambda v: F.log_softmax(v[0], -1), tol=TOL_F32)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    fam = Family("nn_modules", 20240611)
    gen_losses(fam)
    gen_layers(fam)
    path = fam.save()
    print(f"torch {torch.__version__}: {len(fam.cases)} cases, {os.path.getsize(path)} bytes in {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
