#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for TensorBrain's parity tests.

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate.py

Writes tests/parity/fixtures/<family>.safetensors for every family. The file format is
described in tests/parity/FORMAT.md. Generation is deterministic: each family re-seeds the
PyTorch generator and adds its cases in a fixed order.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

F32 = torch.float32
F64 = torch.float64

# Default tolerances.
TOL_F32 = (1e-5, 1e-6)
TOL_LOOSE = (1e-4, 1e-5)  # accumulations, transcendental-heavy ops
TOL_F64 = (1e-10, 1e-12)
TOL_EXACT = (0.0, 0.0)

DTYPE_NAMES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------------------------
# Input helpers (all draw from the global torch generator, so call order matters).
# --------------------------------------------------------------------------------------------

def randn(*shape, dtype=F32, scale=1.0):
    return torch.randn(shape, dtype=dtype) * scale


def uniform(*shape, lo=0.0, hi=1.0, dtype=F32):
    return torch.rand(shape, dtype=dtype) * (hi - lo) + lo


def positive(*shape, lo=0.2, hi=3.0, dtype=F32):
    """Strictly positive values (log/sqrt/rsqrt/pow base)."""
    return uniform(*shape, lo=lo, hi=hi, dtype=dtype)


def nonzero(*shape, lo=0.5, hi=2.0, dtype=F32):
    """Random sign, magnitude in [lo, hi] (denominators, prod inputs)."""
    mag = uniform(*shape, lo=lo, hi=hi, dtype=dtype)
    sign = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0).to(dtype)
    return mag * sign


def away(x, points, margin=0.1):
    """Push values within `margin` of any kink point out to distance `margin`."""
    x = x.clone()
    for p in points:
        d = x - p
        near = d.abs() < margin
        x = torch.where(near, p + torch.where(d >= 0, margin, -margin).to(x.dtype), x)
    return x


def distinct(*shape, dtype=F32, gap=0.25):
    """Values that are pairwise distinct by at least `gap` (no ties for max/min/argmax)."""
    n = 1
    for s in shape:
        n *= s
    perm = torch.randperm(n).to(dtype)
    vals = (perm - (n - 1) / 2.0) * gap
    return vals.reshape(*shape)


def small_ints(*shape, lo=-2, hi=2, dtype=F32):
    """Integer-valued floats so that equality comparisons are sometimes true."""
    return torch.randint(lo, hi + 1, shape).to(dtype)


def mask(*shape):
    return (torch.rand(shape) < 0.5).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Views (the same mini-language as FORMAT.md).
# --------------------------------------------------------------------------------------------

def apply_views(t, views):
    for v in views:
        kind = v[0]
        if kind == "transpose":
            t = t.transpose(v[1], v[2])
        elif kind == "permute":
            t = t.permute(*v[1])
        elif kind == "slice":
            dim, start, end, step = v[1], v[2], v[3], v[4]
            idx = [slice(None)] * t.dim()
            idx[dim] = slice(start, end, step)
            t = t[tuple(idx)]
        elif kind == "expand":
            t = t.expand(v[1])
        else:
            raise ValueError(f"unknown view {kind}")
    return t


# --------------------------------------------------------------------------------------------
# A family of cases collected into one safetensors file.
# --------------------------------------------------------------------------------------------

class Family:
    def __init__(self, name, seed):
        self.name = name
        self.cases = []
        self.tensors = {}
        self.names = set()
        torch.manual_seed(seed)

    def _put(self, key, t):
        self.tensors[key] = t.detach().contiguous().clone()

    def add(self, name, op, args, inputs, fn, views=None, grad=None, tol=None, mixed=False):
        """Record one case.

        inputs: list of stored (pre-view) tensors.
        fn:     callable(list of viewed inputs) -> output tensor.
        views:  {input index: [view, ...]}.
        grad:   list of bools; default: every floating input, if the output is floating.
        tol:    (rtol, atol); default per dtype.
        mixed:  inputs of several float dtypes (type promotion cases): skip the f32/f64 check.
        """
        assert name not in self.names, f"duplicate case {self.name}/{name}"
        self.names.add(name)
        views = views or {}
        is_f64 = name.endswith("_f64")
        for i, t in enumerate(inputs):
            if t.is_floating_point() and not mixed:
                want = F64 if is_f64 else F32
                assert t.dtype == want, f"{name}: in{i} is {t.dtype}, expected {want}"

        leaves = []
        for t in inputs:
            leaf = t.detach().clone()
            leaves.append(leaf)

        if grad is None:
            grad = [t.is_floating_point() for t in inputs]
        grad = list(grad)
        assert len(grad) == len(inputs)
        for leaf, g in zip(leaves, grad):
            if g:
                leaf.requires_grad_(True)

        viewed = [apply_views(leaf, views.get(i, [])) for i, leaf in enumerate(leaves)]
        out = fn(viewed)

        if not out.is_floating_point() or not out.requires_grad:
            grad = [False] * len(inputs)

        for i, t in enumerate(inputs):
            self._put(f"{name}/in{i}", t)
        self._put(f"{name}/out", out)

        if any(grad):
            gout = torch.randn(out.shape, dtype=F64 if out.dtype == F64 else F32).to(out.dtype)
            wrt = [leaf for leaf, g in zip(leaves, grad) if g]
            grads = torch.autograd.grad((out * gout).sum(), wrt, allow_unused=True)
            self._put(f"{name}/gout", gout)
            gi = iter(grads)
            for i, g in enumerate(grad):
                if g:
                    gr = next(gi)
                    if gr is None:
                        gr = torch.zeros_like(leaves[i])
                    assert gr.shape == inputs[i].shape
                    self._put(f"{name}/grad{i}", gr)

        if tol is None:
            tol = TOL_F64 if is_f64 else TOL_F32
        elif is_f64:
            tol = TOL_F64
        case = {
            "name": name,
            "op": op,
            "args": args,
            "inputs": len(inputs),
            "grad": grad,
            "rtol": float(tol[0]),
            "atol": float(tol[1]),
        }
        if views:
            case["views"] = {str(k): v for k, v in sorted(views.items())}
        self.cases.append(case)

    def save(self):
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, f"{self.name}.safetensors")
        meta = {"cases": json.dumps(self.cases, allow_nan=False)}
        save_file(self.tensors, path, metadata=meta)
        return path


# --------------------------------------------------------------------------------------------
# unary
# --------------------------------------------------------------------------------------------

UNARY_FNS = {
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "abs": torch.abs,
    "neg": torch.neg,
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "silu": F.silu,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}

UNARY_LOOSE = {"gelu", "gelu_tanh", "softplus"}


def unary_input(op, *shape, dtype=F32):
    if op in ("log", "sqrt", "rsqrt"):
        return positive(*shape, dtype=dtype)
    if op == "exp":
        return randn(*shape, dtype=dtype, scale=1.5)
    if op in ("abs", "relu"):
        return away(randn(*shape, dtype=dtype, scale=2.0), [0.0])
    return randn(*shape, dtype=dtype, scale=2.0)


def gen_unary():
    fam = Family("unary", 1)
    for op, f in UNARY_FNS.items():
        tol = TOL_LOOSE if op in UNARY_LOOSE else None
        fn = lambda xs, f=f: f(xs[0])
        fam.add(f"{op}_plain", op, {}, [unary_input(op, 3, 4)], fn, tol=tol)
        fam.add(f"{op}_scalar", op, {}, [unary_input(op)], fn, tol=tol)
        fam.add(f"{op}_size1", op, {}, [unary_input(op, 1, 5, 1)], fn, tol=tol)
        fam.add(f"{op}_size0", op, {}, [unary_input(op, 0, 3)], fn, tol=tol)
        fam.add(f"{op}_transposed", op, {}, [unary_input(op, 2, 3, 4)], fn,
                views={0: [["transpose", 0, 2]]}, tol=tol)
        fam.add(f"{op}_slice_step", op, {}, [unary_input(op, 4, 6)], fn,
                views={0: [["slice", 1, 1, 6, 2]]}, tol=tol)
        fam.add(f"{op}_expand", op, {}, [unary_input(op, 3, 1)], fn,
                views={0: [["expand", [2, 3, 4]]]}, tol=tol)
    # softplus threshold region (x > 20 returns x) and far negative tail.
    x = torch.tensor([-30.0, -21.0, -5.0, 0.5, 5.0, 19.0, 21.0, 30.0])
    fam.add("softplus_large", "softplus", {}, [x], lambda xs: F.softplus(xs[0]), tol=TOL_LOOSE)
    for op in ("exp", "log", "sqrt", "rsqrt", "sin", "tanh", "sigmoid", "relu", "silu", "abs"):
        f = UNARY_FNS[op]
        fam.add(f"{op}_plain_f64", op, {}, [unary_input(op, 3, 4, dtype=F64)],
                lambda xs, f=f: f(xs[0]))

    # elu
    for i, alpha in enumerate([1.0, 0.5]):
        fam.add(f"elu_alpha{i}", "elu", {"alpha": alpha},
                [away(randn(3, 4, scale=2.0), [0.0])], lambda xs, a=alpha: F.elu(xs[0], a))
    fam.add("elu_transposed", "elu", {"alpha": 1.0}, [away(randn(4, 3, scale=2.0), [0.0])],
            lambda xs: F.elu(xs[0], 1.0), views={0: [["transpose", 0, 1]]})
    fam.add("elu_scalar", "elu", {"alpha": 1.0}, [torch.tensor(-0.7)], lambda xs: F.elu(xs[0], 1.0))
    fam.add("elu_size0", "elu", {"alpha": 1.0}, [randn(2, 0)], lambda xs: F.elu(xs[0], 1.0))
    fam.add("elu_plain_f64", "elu", {"alpha": 1.0}, [away(randn(3, 4, dtype=F64, scale=2.0), [0.0])],
            lambda xs: F.elu(xs[0], 1.0))

    # leaky_relu
    for i, ns in enumerate([0.01, 0.2]):
        fam.add(f"leaky_relu_slope{i}", "leaky_relu", {"negative_slope": ns},
                [away(randn(3, 4, scale=2.0), [0.0])], lambda xs, ns=ns: F.leaky_relu(xs[0], ns))
    fam.add("leaky_relu_slice_step", "leaky_relu", {"negative_slope": 0.1},
            [away(randn(6, 4, scale=2.0), [0.0])], lambda xs: F.leaky_relu(xs[0], 0.1),
            views={0: [["slice", 0, 0, 6, 3]]})
    fam.add("leaky_relu_size0", "leaky_relu", {"negative_slope": 0.1}, [randn(0, 3)],
            lambda xs: F.leaky_relu(xs[0], 0.1))

    # clamp
    for i, (lo, hi) in enumerate([(-0.5, 0.5), (None, 0.3), (-0.2, None), (-1.0, 1.5)]):
        pts = [p for p in (lo, hi) if p is not None]
        fam.add(f"clamp_{i}", "clamp", {"min": lo, "max": hi},
                [away(randn(4, 5, scale=1.5), pts)],
                lambda xs, lo=lo, hi=hi: torch.clamp(xs[0], lo, hi))
    fam.add("clamp_transposed", "clamp", {"min": -0.5, "max": 0.5},
            [away(randn(2, 3, 4, scale=1.5), [-0.5, 0.5])],
            lambda xs: torch.clamp(xs[0], -0.5, 0.5), views={0: [["permute", [2, 0, 1]]]})
    fam.add("clamp_scalar", "clamp", {"min": -0.5, "max": 0.5}, [torch.tensor(0.9)],
            lambda xs: torch.clamp(xs[0], -0.5, 0.5))
    fam.add("clamp_size0", "clamp", {"min": -0.5, "max": 0.5}, [randn(0, 2)],
            lambda xs: torch.clamp(xs[0], -0.5, 0.5))
    fam.add("clamp_plain_f64", "clamp", {"min": -0.5, "max": 0.5},
            [away(randn(3, 4, dtype=F64, scale=1.5), [-0.5, 0.5])],
            lambda xs: torch.clamp(xs[0], -0.5, 0.5))

    # pow_scalar
    pow_cases = [
        ("sq_mixed_sign", 2.0, lambda: randn(3, 4, scale=1.5)),
        ("cube_mixed_sign", 3.0, lambda: randn(3, 4, scale=1.5)),
        ("neg_int_mixed_sign", -1.0, lambda: nonzero(3, 4)),
        ("half", 0.5, lambda: positive(3, 4)),
        ("neg_frac", -1.5, lambda: positive(3, 4)),
        ("frac", 2.5, lambda: positive(3, 4)),
    ]
    for tag, e, mk in pow_cases:
        fam.add(f"pow_scalar_{tag}", "pow_scalar", {"exponent": e}, [mk()],
                lambda xs, e=e: torch.pow(xs[0], e), tol=TOL_LOOSE)
    fam.add("pow_scalar_transposed", "pow_scalar", {"exponent": 1.7}, [positive(4, 3)],
            lambda xs: torch.pow(xs[0], 1.7), views={0: [["transpose", 1, 0]]}, tol=TOL_LOOSE)
    fam.add("pow_scalar_size0", "pow_scalar", {"exponent": 2.0}, [randn(0, 4)],
            lambda xs: torch.pow(xs[0], 2.0), tol=TOL_LOOSE)
    fam.add("pow_scalar_frac_f64", "pow_scalar", {"exponent": 2.5}, [positive(3, 4, dtype=F64)],
            lambda xs: torch.pow(xs[0], 2.5))

    # add_scalar / mul_scalar
    for op, f in (("add_scalar", torch.add), ("mul_scalar", torch.mul)):
        fn = lambda v, f=f: (lambda xs: f(xs[0], v))
        fam.add(f"{op}_plain", op, {"value": 2.5}, [randn(3, 4)], fn(2.5))
        fam.add(f"{op}_negative", op, {"value": -0.75}, [randn(3, 4)], fn(-0.75))
        fam.add(f"{op}_scalar", op, {"value": 1.5}, [randn()], fn(1.5))
        fam.add(f"{op}_size0", op, {"value": 1.5}, [randn(0, 3)], fn(1.5))
        fam.add(f"{op}_transposed", op, {"value": 3.0}, [randn(2, 3, 4)], fn(3.0),
                views={0: [["transpose", -1, 0]]})
        fam.add(f"{op}_expand", op, {"value": -2.0}, [randn(1, 4)], fn(-2.0),
                views={0: [["expand", [3, 4]]]})
        fam.add(f"{op}_plain_f64", op, {"value": 0.1}, [randn(3, 4, dtype=F64)], fn(0.1))

    # to_dtype: rounding is exact; values span several magnitudes (incl. f16 subnormals).
    def wide(*shape, dtype=F32):
        mag = torch.pow(10.0, uniform(*shape, lo=-6.0, hi=4.0, dtype=F64)).to(dtype)
        return mag * torch.where(torch.rand(shape) < 0.5, -1.0, 1.0).to(dtype)

    def to(dt):
        return lambda xs: xs[0].to(DTYPE_NAMES[dt])

    fam.add("to_dtype_f16", "to_dtype", {"dtype": "f16"}, [wide(5, 8)], to("f16"), tol=TOL_EXACT)
    fam.add("to_dtype_bf16", "to_dtype", {"dtype": "bf16"}, [wide(5, 8)], to("bf16"), tol=TOL_EXACT)
    fam.add("to_dtype_f64_from_f32", "to_dtype", {"dtype": "f64"}, [randn(3, 4)], to("f64"), tol=TOL_EXACT)
    fam.add("to_dtype_f32_identity", "to_dtype", {"dtype": "f32"}, [randn(3, 4)], to("f32"),
            tol=TOL_EXACT)
    fam.add("to_dtype_f16_transposed", "to_dtype", {"dtype": "f16"}, [randn(4, 3, scale=10.0)],
            to("f16"), views={0: [["transpose", 0, 1]]}, tol=TOL_EXACT)
    fam.add("to_dtype_bf16_scalar", "to_dtype", {"dtype": "bf16"}, [torch.tensor(3.14159265)],
            to("bf16"), tol=TOL_EXACT)
    fam.add("to_dtype_f16_size0", "to_dtype", {"dtype": "f16"}, [randn(0, 3)], to("f16"),
            tol=TOL_EXACT)
    fam.add("to_dtype_to_f32_f64", "to_dtype", {"dtype": "f32"}, [randn(3, 4, dtype=F64)], to("f32"))
    return fam


# --------------------------------------------------------------------------------------------
# binary
# --------------------------------------------------------------------------------------------

BINARY_FNS = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}

CMP_FNS = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}


def binary_inputs(op, sa, sb, dtype=F32):
    if op == "div":
        return [randn(*sa, dtype=dtype, scale=2.0), nonzero(*sb, dtype=dtype)]
    if op == "pow":
        return [positive(*sa, lo=0.5, hi=2.0, dtype=dtype), randn(*sb, dtype=dtype)]
    if op in ("maximum", "minimum"):
        while True:
            a, b = randn(*sa, dtype=dtype), randn(*sb, dtype=dtype)
            # no exact ties anywhere in the broadcast (gradient is ambiguous at ties)
            if not bool((torch.broadcast_tensors(a, b)[0] == torch.broadcast_tensors(a, b)[1]).any()):
                return [a, b]
    return [randn(*sa, dtype=dtype, scale=2.0), randn(*sb, dtype=dtype, scale=2.0)]


def gen_binary():
    fam = Family("binary", 2)
    shapes = [
        ("plain", [3, 4], [3, 4]),
        ("bcast_3d_2d", [3, 1, 4], [2, 4]),
        ("bcast_rank", [4], [2, 3, 4]),
        ("scalar_rhs", [2, 3], []),
        ("scalar_lhs", [], [2, 3]),
        ("scalar_both", [], []),
        ("size1", [1, 3], [2, 1]),
        ("size0", [0, 3], [1, 3]),
        ("size0_both", [2, 0], [2, 0]),
    ]
    for op, f in BINARY_FNS.items():
        tol = TOL_LOOSE if op == "pow" else None
        fn = lambda xs, f=f: f(xs[0], xs[1])
        for tag, sa, sb in shapes:
            fam.add(f"{op}_{tag}", op, {}, binary_inputs(op, sa, sb), fn, tol=tol)
        # non-contiguous: transposed lhs
        a, _ = binary_inputs(op, [4, 3], [1])
        _, b = binary_inputs(op, [1], [3, 4])
        fam.add(f"{op}_transposed_lhs", op, {}, [a, b], fn, views={0: [["transpose", 0, 1]]}, tol=tol)
        # non-contiguous: expanded lhs, strided slice rhs
        a, _ = binary_inputs(op, [3, 1], [1])
        _, b = binary_inputs(op, [1], [3, 8])
        fam.add(f"{op}_expand_slice", op, {}, [a, b], fn,
                views={0: [["expand", [3, 4]]], 1: [["slice", 1, 0, 8, 2]]}, tol=tol)
        # both permuted, then broadcast
        a, _ = binary_inputs(op, [4, 2, 3], [1])
        _, b = binary_inputs(op, [1], [4, 3])
        fam.add(f"{op}_permuted_bcast", op, {}, [a, b], fn,
                views={0: [["permute", [1, 2, 0]]], 1: [["transpose", 0, 1]]}, tol=tol)
    for op in ("add", "sub", "mul", "div", "pow", "maximum"):
        f = BINARY_FNS[op]
        fn = lambda xs, f=f: f(xs[0], xs[1])
        fam.add(f"{op}_plain_f64", op, {}, binary_inputs(op, [3, 4], [3, 4], dtype=F64), fn)
        fam.add(f"{op}_bcast_f64", op, {}, binary_inputs(op, [3, 1, 4], [2, 4], dtype=F64), fn)

    # comparisons: integer-valued floats so that equality happens.
    for op, f in CMP_FNS.items():
        fn = lambda xs, f=f: f(xs[0], xs[1])
        fam.add(f"{op}_plain", op, {}, [small_ints(3, 4), small_ints(3, 4)], fn)
        fam.add(f"{op}_bcast", op, {}, [small_ints(3, 1, 4), small_ints(2, 4)], fn)
        fam.add(f"{op}_scalar_rhs", op, {}, [small_ints(2, 3), small_ints()], fn)
        fam.add(f"{op}_transposed", op, {}, [small_ints(4, 3), small_ints(3, 4)], fn,
                views={0: [["transpose", 0, 1]]})
        fam.add(f"{op}_size0", op, {}, [small_ints(0, 3), small_ints(1, 3)], fn)
        fam.add(f"{op}_plain_f64", op, {}, [small_ints(3, 4, dtype=F64), small_ints(3, 4, dtype=F64)], fn)

    # where_cond
    wfn = lambda xs: torch.where(xs[0].bool(), xs[1], xs[2])
    fam.add("where_cond_plain", "where_cond", {}, [mask(3, 4), randn(3, 4), randn(3, 4)], wfn)
    fam.add("where_cond_bcast", "where_cond", {}, [mask(3, 1), randn(1, 4), randn()], wfn)
    fam.add("where_cond_bcast_cond", "where_cond", {}, [mask(4), randn(2, 3, 4), randn(3, 1)], wfn)
    fam.add("where_cond_scalar_cond", "where_cond", {}, [torch.tensor(1, dtype=torch.uint8),
                                                          randn(2, 3), randn(2, 3)], wfn)
    fam.add("where_cond_transposed", "where_cond", {}, [mask(3, 4), randn(4, 3), randn(3, 4)], wfn,
            views={1: [["transpose", 0, 1]]})
    fam.add("where_cond_size0", "where_cond", {}, [mask(0, 3), randn(0, 3), randn(1, 3)], wfn)
    fam.add("where_cond_plain_f64", "where_cond", {},
            [mask(3, 4), randn(3, 4, dtype=F64), randn(3, 4, dtype=F64)], wfn)
    return fam


# --------------------------------------------------------------------------------------------
# reduce
# --------------------------------------------------------------------------------------------

def _norm_dims(x, dims):
    if not dims:
        return list(range(x.dim()))
    return sorted({d % x.dim() for d in dims})


def r_sum(x, dims, keepdim):
    return torch.sum(x, dim=_norm_dims(x, dims), keepdim=keepdim)


def r_mean(x, dims, keepdim):
    return torch.mean(x, dim=_norm_dims(x, dims), keepdim=keepdim)


def r_prod(x, dims, keepdim):
    out = x
    for d in reversed(_norm_dims(x, dims)):
        out = torch.prod(out, dim=d, keepdim=keepdim)
    return out


def r_max(x, dims, keepdim):
    return torch.amax(x, dim=_norm_dims(x, dims), keepdim=keepdim)


def r_min(x, dims, keepdim):
    return torch.amin(x, dim=_norm_dims(x, dims), keepdim=keepdim)


def r_lse(x, dims, keepdim):
    return torch.logsumexp(x, dim=_norm_dims(x, dims), keepdim=keepdim)


REDUCE_FNS = {"sum": r_sum, "mean": r_mean, "prod": r_prod, "max": r_max, "min": r_min,
              "logsumexp": r_lse}


def reduce_input(op, *shape, dtype=F32):
    if op == "prod":
        return nonzero(*shape, lo=0.6, hi=1.5, dtype=dtype)
    if op in ("max", "min"):
        return distinct(*shape, dtype=dtype)
    if op == "logsumexp":
        return randn(*shape, dtype=dtype, scale=3.0)
    return randn(*shape, dtype=dtype)


def gen_reduce():
    fam = Family("reduce", 3)
    configs = [
        ("all", [], False),
        ("all_keepdim", [], True),
        ("dim1", [1], False),
        ("dimneg1_keepdim", [-1], True),
        ("dims02", [0, 2], False),
        ("dims0neg1_keepdim", [0, -1], True),
        ("dims_all_explicit", [0, 1, 2], False),
    ]
    for op, f in REDUCE_FNS.items():
        tol = None if op in ("max", "min") else TOL_LOOSE
        for tag, dims, kd in configs:
            fam.add(f"{op}_{tag}", op, {"dims": dims, "keepdim": kd}, [reduce_input(op, 2, 3, 4)],
                    lambda xs, f=f, d=dims, k=kd: f(xs[0], d, k), tol=tol)
        fam.add(f"{op}_transposed", op, {"dims": [1], "keepdim": False}, [reduce_input(op, 4, 3, 2)],
                lambda xs, f=f: f(xs[0], [1], False), views={0: [["transpose", 0, 2]]}, tol=tol)
        fam.add(f"{op}_slice_step", op, {"dims": [0], "keepdim": True}, [reduce_input(op, 6, 5)],
                lambda xs, f=f: f(xs[0], [0], True), views={0: [["slice", 0, 1, 6, 2]]}, tol=tol)
        fam.add(f"{op}_size1", op, {"dims": [1], "keepdim": False}, [reduce_input(op, 3, 1, 4)],
                lambda xs, f=f: f(xs[0], [1], False), tol=tol)
        fam.add(f"{op}_1d", op, {"dims": [0], "keepdim": False}, [reduce_input(op, 7)],
                lambda xs, f=f: f(xs[0], [0], False), tol=tol)
        # reducing a non-empty dim of an empty tensor -> empty output (valid for every op)
        fam.add(f"{op}_size0_other", op, {"dims": [1], "keepdim": False}, [reduce_input(op, 0, 3)],
                lambda xs, f=f: f(xs[0], [1], False), tol=tol)
        fam.add(f"{op}_all_f64", op, {"dims": [], "keepdim": False},
                [reduce_input(op, 3, 4, dtype=F64)], lambda xs, f=f: f(xs[0], [], False))
        fam.add(f"{op}_dim0_f64", op, {"dims": [0], "keepdim": True},
                [reduce_input(op, 3, 4, dtype=F64)], lambda xs, f=f: f(xs[0], [0], True))
    # reducing over an empty dim: sum -> 0, prod -> 1
    fam.add("sum_size0_reduced", "sum", {"dims": [0], "keepdim": False}, [randn(0, 3)],
            lambda xs: r_sum(xs[0], [0], False), tol=TOL_LOOSE)
    fam.add("prod_size0_reduced", "prod", {"dims": [0], "keepdim": False}, [randn(0, 3)],
            lambda xs: r_prod(xs[0], [0], False), tol=TOL_LOOSE)
    fam.add("sum_larger", "sum", {"dims": [-1], "keepdim": False}, [randn(4, 64)],
            lambda xs: r_sum(xs[0], [-1], False), tol=TOL_LOOSE)

    # var / std
    vs_configs = [
        ("all", [], False, 1),
        ("all_keepdim_c0", [], True, 0),
        ("dim1", [1], False, 1),
        ("dimneg1_keepdim_c0", [-1], True, 0),
        ("dims02", [0, 2], False, 1),
        ("dims0neg1_keepdim", [0, -1], True, 1),
    ]
    for op, f in (("var", torch.var), ("std", torch.std)):
        def mk(dims, kd, c, f=f):
            return lambda xs: f(xs[0], dim=_norm_dims(xs[0], dims), correction=c, keepdim=kd)
        for tag, dims, kd, c in vs_configs:
            fam.add(f"{op}_{tag}", op, {"dims": dims, "keepdim": kd, "correction": c},
                    [randn(2, 3, 4)], mk(dims, kd, c), tol=TOL_LOOSE)
        fam.add(f"{op}_transposed", op, {"dims": [0], "keepdim": False, "correction": 1},
                [randn(4, 5)], mk([0], False, 1), views={0: [["transpose", 0, 1]]}, tol=TOL_LOOSE)
        fam.add(f"{op}_size1", op, {"dims": [-1], "keepdim": False, "correction": 0},
                [randn(1, 6)], mk([-1], False, 0), tol=TOL_LOOSE)
        fam.add(f"{op}_all_f64", op, {"dims": [], "keepdim": False, "correction": 1},
                [randn(3, 4, dtype=F64)], mk([], False, 1))
        fam.add(f"{op}_dim1_f64", op, {"dims": [1], "keepdim": True, "correction": 0},
                [randn(3, 4, dtype=F64)], mk([1], True, 0))

    # argmax / argmin
    for op, f in (("argmax", torch.argmax), ("argmin", torch.argmin)):
        def mk(dim, kd, f=f):
            return lambda xs: f(xs[0], dim=dim, keepdim=kd)
        fam.add(f"{op}_all", op, {"dim": None, "keepdim": False}, [distinct(3, 4)], mk(None, False))
        fam.add(f"{op}_all_keepdim", op, {"dim": None, "keepdim": True}, [distinct(2, 3, 4)],
                mk(None, True))
        fam.add(f"{op}_dim1", op, {"dim": 1, "keepdim": False}, [distinct(2, 3, 4)], mk(1, False))
        fam.add(f"{op}_dimneg1_keepdim", op, {"dim": -1, "keepdim": True}, [distinct(2, 3, 4)],
                mk(-1, True))
        fam.add(f"{op}_dim0", op, {"dim": 0, "keepdim": False}, [distinct(5, 3)], mk(0, False))
        fam.add(f"{op}_transposed", op, {"dim": 1, "keepdim": False}, [distinct(4, 3)],
                mk(1, False), views={0: [["transpose", 0, 1]]})
        fam.add(f"{op}_size1", op, {"dim": 0, "keepdim": False}, [distinct(1, 4)], mk(0, False))
        fam.add(f"{op}_1d", op, {"dim": 0, "keepdim": False}, [distinct(9)], mk(0, False))
        fam.add(f"{op}_dim1_f64", op, {"dim": 1, "keepdim": False}, [distinct(3, 5, dtype=F64)],
                mk(1, False))
    return fam


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------

def gen_matmul():
    fam = Family("matmul", 4)
    fn = lambda xs: torch.matmul(xs[0], xs[1])
    L = TOL_LOOSE
    cases = [
        ("1d_1d", [4], [4], None),
        ("1d_2d", [4], [4, 3], None),
        ("2d_1d", [3, 4], [4], None),
        ("2d_2d", [3, 4], [4, 5], None),
        ("3d_2d", [2, 3, 4], [4, 5], None),
        ("2d_3d", [3, 4], [2, 4, 5], None),
        ("3d_3d", [2, 3, 4], [2, 4, 5], None),
        ("1d_3d", [4], [2, 4, 3], None),
        ("3d_1d", [2, 3, 4], [4], None),
        ("bcast_batch", [2, 1, 3, 4], [5, 4, 2], None),
        ("bcast_batch_size1", [1, 3, 4], [2, 4, 2], None),
        ("size1", [1, 4], [4, 1], None),
        ("size1_k", [3, 1], [1, 5], None),
        ("size0_m", [0, 4], [4, 3], None),
        ("size0_k", [3, 0], [0, 5], None),
        ("size0_batch", [0, 2, 3], [3, 2], None),
        ("larger", [8, 32], [32, 16], None),
        ("transposed_lhs", [4, 3], [4, 5], {0: [["transpose", 0, 1]]}),
        ("transposed_rhs", [3, 4], [5, 4], {1: [["transpose", 0, 1]]}),
        ("transposed_both", [4, 3], [5, 4], {0: [["transpose", 0, 1]], 1: [["transpose", 0, 1]]}),
        ("batched_transposed", [2, 4, 3], [2, 5, 4],
         {0: [["transpose", -1, -2]], 1: [["transpose", -2, -1]]}),
        ("permuted_batch", [3, 2, 4], [4, 5], {0: [["permute", [1, 0, 2]]]}),
        ("expanded_lhs", [1, 3, 4], [2, 4, 5], {0: [["expand", [2, 3, 4]]]}),
        ("sliced_rhs", [3, 4], [4, 10], {1: [["slice", 1, 0, 10, 2]]}),
    ]
    for tag, sa, sb, views in cases:
        fam.add(tag, "matmul", {}, [randn(*sa), randn(*sb)], fn, views=views, tol=L)
    for tag, sa, sb in (("2d_2d_f64", [3, 4], [4, 5]), ("bcast_batch_f64", [2, 1, 3, 4], [5, 4, 2]),
                        ("1d_1d_f64", [6], [6])):
        fam.add(tag, "matmul", {}, [randn(*sa, dtype=F64), randn(*sb, dtype=F64)], fn)
    fam.add("transposed_lhs_f64", "matmul", {}, [randn(4, 3, dtype=F64), randn(4, 5, dtype=F64)], fn,
            views={0: [["transpose", 0, 1]]})
    return fam


# --------------------------------------------------------------------------------------------
# movement
# --------------------------------------------------------------------------------------------

def gen_movement():
    fam = Family("movement", 5)

    # reshape
    def reshape(shape):
        return lambda xs: xs[0].reshape(shape)
    for tag, s_in, shape, views in [
        ("plain", [2, 3, 4], [6, 4], None),
        ("infer", [2, 3, 4], [4, -1], None),
        ("infer_first", [2, 3, 4], [-1, 2, 2], None),
        ("to_1d", [3, 4], [-1], None),
        ("to_scalar", [1, 1], [], None),
        ("from_scalar", [], [1, 1], None),
        ("add_size1", [6], [1, 6, 1], None),
        ("size0", [0, 3], [3, 0], None),
        ("size0_infer", [0, 4], [-1, 2], None),
        ("transposed", [3, 4], [2, 6], {0: [["transpose", 0, 1]]}),
        ("permuted", [2, 3, 4], [4, 6], {0: [["permute", [2, 0, 1]]]}),
        ("sliced", [4, 6], [6, 2], {0: [["slice", 1, 0, 6, 2]]}),
    ]:
        fam.add(f"reshape_{tag}", "reshape", {"shape": shape}, [randn(*s_in)], reshape(shape), views=views)
    fam.add("reshape_plain_f64", "reshape", {"shape": [4, 3]}, [randn(3, 4, dtype=F64)], reshape([4, 3]))

    # flatten
    for tag, s_in, sd, ed, views in [
        ("all", [2, 3, 4], 0, -1, None),
        ("tail", [2, 3, 4], 1, 2, None),
        ("head", [2, 3, 4, 5], 0, 1, None),
        ("middle_neg", [2, 3, 4, 5], -3, -2, None),
        ("noop", [2, 3], 1, 1, None),
        ("size0", [2, 0, 3], 1, 2, None),
        ("transposed", [2, 3, 4], 0, 1, {0: [["transpose", 0, 2]]}),
    ]:
        fam.add(f"flatten_{tag}", "flatten", {"start_dim": sd, "end_dim": ed}, [randn(*s_in)],
                lambda xs, a=sd, b=ed: torch.flatten(xs[0], a, b), views=views)

    # squeeze / unsqueeze
    for tag, s_in, dim in [("all", [1, 3, 1, 2], None), ("dim0", [1, 3, 2], 0),
                           ("dimneg", [3, 1, 2], -2), ("all_size0", [1, 0, 1], None),
                           ("all_to_scalar", [1, 1], None)]:
        fam.add(f"squeeze_{tag}", "squeeze", {"dim": dim}, [randn(*s_in)],
                (lambda xs: xs[0].squeeze()) if dim is None else (lambda xs, d=dim: xs[0].squeeze(d)))
    fam.add("squeeze_transposed", "squeeze", {"dim": 1}, [randn(3, 1, 2)],
            lambda xs: xs[0].squeeze(1), views={0: [["permute", [2, 1, 0]]]})
    for tag, s_in, dim in [("front", [2, 3], 0), ("middle", [2, 3], 1), ("end_neg", [2, 3], -1),
                           ("neg2", [2, 3], -2), ("scalar", [], 0), ("size0", [0, 3], 1)]:
        fam.add(f"unsqueeze_{tag}", "unsqueeze", {"dim": dim}, [randn(*s_in)],
                lambda xs, d=dim: xs[0].unsqueeze(d))
    fam.add("unsqueeze_transposed", "unsqueeze", {"dim": 1}, [randn(3, 4)],
            lambda xs: xs[0].unsqueeze(1), views={0: [["transpose", 0, 1]]})

    # transpose / permute
    for tag, s_in, a, b in [("2d", [3, 4], 0, 1), ("3d_outer", [2, 3, 4], 0, 2), ("neg", [2, 3, 4], -1, -2),
                            ("same", [2, 3], 1, 1), ("size0", [0, 3], 0, 1), ("size1", [1, 4, 1], 0, 2)]:
        fam.add(f"transpose_{tag}", "transpose", {"dim0": a, "dim1": b}, [randn(*s_in)],
                lambda xs, a=a, b=b: xs[0].transpose(a, b))
    fam.add("transpose_of_sliced", "transpose", {"dim0": 0, "dim1": 1}, [randn(6, 4)],
            lambda xs: xs[0].transpose(0, 1), views={0: [["slice", 0, 0, 6, 2]]})
    for tag, s_in, dims in [("3d", [2, 3, 4], [2, 0, 1]), ("4d", [2, 3, 4, 5], [0, 3, 1, 2]),
                            ("identity", [2, 3], [0, 1]), ("neg", [2, 3, 4], [-1, 0, -2]),
                            ("size0", [2, 0, 3], [1, 2, 0])]:
        fam.add(f"permute_{tag}", "permute", {"dims": dims}, [randn(*s_in)],
                lambda xs, d=dims: xs[0].permute(*d))
    fam.add("permute_of_transposed", "permute", {"dims": [1, 2, 0]}, [randn(2, 3, 4)],
            lambda xs: xs[0].permute(1, 2, 0), views={0: [["transpose", 0, 1]]})

    # expand
    for tag, s_in, shape in [("size1", [3, 1], [3, 4]), ("new_dims", [3, 1], [2, 3, 4]),
                             ("keep", [3, 1], [2, -1, 4]), ("scalar", [], [2, 3]),
                             ("noop", [2, 3], [2, 3]), ("to_size0", [1, 3], [0, 3])]:
        fam.add(f"expand_{tag}", "expand", {"shape": shape}, [randn(*s_in)],
                lambda xs, s=shape: xs[0].expand(s))
    fam.add("expand_transposed", "expand", {"shape": [2, 4, 3]}, [randn(3, 4)],
            lambda xs: xs[0].expand(2, 4, 3), views={0: [["transpose", 0, 1]]})

    # contiguous
    fam.add("contiguous_plain", "contiguous", {}, [randn(3, 4)], lambda xs: xs[0].contiguous())
    fam.add("contiguous_transposed", "contiguous", {}, [randn(3, 4)], lambda xs: xs[0].contiguous(),
            views={0: [["transpose", 0, 1]]})
    fam.add("contiguous_permuted", "contiguous", {}, [randn(2, 3, 4)], lambda xs: xs[0].contiguous(),
            views={0: [["permute", [2, 0, 1]]]})
    fam.add("contiguous_sliced", "contiguous", {}, [randn(5, 6)], lambda xs: xs[0].contiguous(),
            views={0: [["slice", 0, 1, 5, 2], ["slice", 1, 0, 6, 3]]})
    fam.add("contiguous_expanded", "contiguous", {}, [randn(3, 1)], lambda xs: xs[0].contiguous(),
            views={0: [["expand", [2, 3, 4]]]})
    fam.add("contiguous_transposed_f64", "contiguous", {}, [randn(3, 4, dtype=F64)],
            lambda xs: xs[0].contiguous(), views={0: [["transpose", 0, 1]]})

    # slice (op)
    def slc(dim, start, end, step):
        def f(xs):
            idx = [slice(None)] * xs[0].dim()
            idx[dim] = slice(start, end, step)
            return xs[0][tuple(idx)]
        return f
    for tag, s_in, dim, start, end, step, views in [
        ("plain", [5, 4], 0, 1, 4, 1, None),
        ("step2", [6, 4], 0, 0, 6, 2, None),
        ("step3_uneven", [4, 8], 1, 1, 8, 3, None),
        ("neg_dim", [2, 3, 6], -1, 2, 5, 1, None),
        ("full", [3, 4], 1, 0, 4, 1, None),
        ("empty", [3, 4], 1, 2, 2, 1, None),
        ("size0", [0, 4], 1, 1, 3, 1, None),
        ("of_transposed", [4, 6], 0, 1, 5, 2, {0: [["transpose", 0, 1]]}),
        ("of_sliced", [8, 3], 0, 1, 3, 1, {0: [["slice", 0, 0, 8, 2]]}),
    ]:
        fam.add(f"slice_{tag}", "slice", {"dim": dim, "start": start, "end": end, "step": step},
                [randn(*s_in)], slc(dim, start, end, step), views=views)

    # cat / stack
    for tag, shapes, dim, views in [
        ("dim0", [[2, 3], [4, 3]], 0, None),
        ("dim1", [[2, 3], [2, 1], [2, 2]], 1, None),
        ("neg", [[2, 3, 2], [2, 3, 4]], -1, None),
        ("one", [[2, 3]], 0, None),
        ("with_size0", [[2, 3], [0, 3], [1, 3]], 0, None),
        ("transposed", [[3, 2], [2, 4]], 1, {0: [["transpose", 0, 1]]}),
        ("expanded", [[1, 3], [2, 3]], 0, {0: [["expand", [3, 3]]]}),
    ]:
        fam.add(f"cat_{tag}", "cat", {"dim": dim}, [randn(*s) for s in shapes],
                lambda xs, d=dim: torch.cat(xs, d), views=views)
    fam.add("cat_dim1_f64", "cat", {"dim": 1}, [randn(2, 3, dtype=F64), randn(2, 2, dtype=F64)],
            lambda xs: torch.cat(xs, 1))
    for tag, shapes, dim, views in [
        ("dim0", [[2, 3], [2, 3]], 0, None),
        ("dim1", [[2, 3], [2, 3], [2, 3]], 1, None),
        ("neg", [[2, 3], [2, 3]], -1, None),
        ("scalars", [[], [], []], 0, None),
        ("size0", [[0, 3], [0, 3]], 1, None),
        ("transposed", [[3, 2], [2, 3]], 0, {0: [["transpose", 0, 1]]}),
    ]:
        fam.add(f"stack_{tag}", "stack", {"dim": dim}, [randn(*s) for s in shapes],
                lambda xs, d=dim: torch.stack(xs, d), views=views)

    # split / chunk: compare only the piece at `index`
    for tag, s_in, size, dim, index, views in [
        ("first", [6, 3], 2, 0, 0, None),
        ("middle", [6, 3], 2, 0, 1, None),
        ("last_uneven", [7, 3], 3, 0, 2, None),
        ("neg_dim", [2, 5], 2, -1, 1, None),
        ("whole", [2, 3], 5, 1, 0, None),
        ("transposed", [3, 6], 4, 0, 1, {0: [["transpose", 0, 1]]}),
    ]:
        fam.add(f"split_{tag}", "split", {"split_size": size, "dim": dim, "index": index},
                [randn(*s_in)], lambda xs, s=size, d=dim, i=index: torch.split(xs[0], s, d)[i],
                views=views)
    for tag, s_in, chunks, dim, index, views in [
        ("even", [6, 3], 3, 0, 1, None),
        ("uneven_last", [7, 3], 3, 0, 2, None),
        ("uneven_first", [2, 7], 3, 1, 0, None),
        ("neg_dim", [2, 3, 4], 2, -1, 1, None),
        ("one", [3, 2], 1, 0, 0, None),
        ("transposed", [4, 6], 2, 0, 1, {0: [["transpose", 0, 1]]}),
    ]:
        fam.add(f"chunk_{tag}", "chunk", {"chunks": chunks, "dim": dim, "index": index},
                [randn(*s_in)], lambda xs, c=chunks, d=dim, i=index: torch.chunk(xs[0], c, d)[i],
                views=views)

    # pad (constant)
    for tag, s_in, pad, value, views in [
        ("last", [2, 3], [1, 2], 0.0, None),
        ("last2", [2, 3, 4], [1, 0, 2, 1], 0.0, None),
        ("value", [3, 4], [2, 2], -1.5, None),
        ("three_dims", [2, 2, 3], [1, 1, 0, 1, 1, 0], 0.5, None),
        ("zero", [2, 3], [0, 0], 0.0, None),
        ("size0", [0, 3], [1, 1], 0.0, None),
        ("from_size0", [2, 0], [1, 2], 3.0, None),
        ("transposed", [4, 3], [1, 1, 2, 0], 0.0, {0: [["transpose", 0, 1]]}),
    ]:
        fam.add(f"pad_{tag}", "pad", {"pad": pad, "value": value}, [randn(*s_in)],
                lambda xs, p=pad, v=value: F.pad(xs[0], p, value=v), views=views)
    fam.add("pad_last2_f64", "pad", {"pad": [1, 1, 1, 1], "value": 0.25}, [randn(2, 3, dtype=F64)],
            lambda xs: F.pad(xs[0], [1, 1, 1, 1], value=0.25))
    return fam


# --------------------------------------------------------------------------------------------
# index
# --------------------------------------------------------------------------------------------

def idx(*vals):
    return torch.tensor(vals, dtype=torch.int64)


def gen_index():
    fam = Family("index", 6)
    I64 = torch.int64

    # index_select (in1: 1-D int64 index; duplicates accumulate in the gradient)
    for tag, s_in, dim, index, views in [
        ("dim0", [5, 3], 0, idx(4, 0, 2), None),
        ("dim1_dups", [3, 5], 1, idx(1, 1, 4, 0, 1), None),
        ("neg_dim", [2, 3, 4], -1, idx(3, 0), None),
        ("empty_index", [4, 3], 0, torch.zeros(0, dtype=I64), None),
        ("size0_other", [0, 4], 1, idx(2, 3), None),
        ("transposed", [4, 3], 0, idx(2, 0, 2), {0: [["transpose", 0, 1]]}),
        ("sliced", [6, 4], 1, idx(0, 3, 1), {0: [["slice", 0, 0, 6, 2]]}),
    ]:
        fam.add(f"index_select_{tag}", "index_select", {"dim": dim}, [randn(*s_in), index],
                lambda xs, d=dim: torch.index_select(xs[0], d, xs[1]), views=views)
    fam.add("index_select_dim0_f64", "index_select", {"dim": 0}, [randn(5, 3, dtype=F64), idx(1, 3, 1)],
            lambda xs: torch.index_select(xs[0], 0, xs[1]))

    # gather (index has the same rank; index.size(d) <= input.size(d) for d != dim)
    def gidx(shape, hi):
        return torch.randint(0, hi, shape, dtype=I64)
    for tag, s_in, dim, s_idx, views in [
        ("dim0", [4, 3], 0, [5, 3], None),
        ("dim1", [3, 4], 1, [3, 6], None),
        ("neg_dim", [2, 3, 4], -1, [2, 3, 2], None),
        ("dim1_3d", [2, 5, 3], 1, [2, 4, 3], None),
        ("smaller_index", [4, 5], 1, [2, 3], None),
        ("size0_index", [3, 4], 1, [3, 0], None),
        ("transposed", [4, 3], 1, [3, 5], {0: [["transpose", 0, 1]]}),
    ]:
        x = randn(*s_in)
        xv = apply_views(x, views[0]) if views else x
        index = gidx(s_idx, xv.shape[dim])
        fam.add(f"gather_{tag}", "gather", {"dim": dim}, [x, index],
                lambda xs, d=dim: torch.gather(xs[0], d, xs[1]), views=views)
    fam.add("gather_dim1_f64", "gather", {"dim": 1}, [randn(3, 4, dtype=F64), gidx([3, 5], 4)],
            lambda xs: torch.gather(xs[0], 1, xs[1]))

    # scatter_add (in0 self, in1 index, in2 src); index shape == src shape unless tagged
    for tag, s_self, dim, s_src, views in [
        ("dim0", [3, 4], 0, [5, 4], None),
        ("dim1", [3, 4], 1, [3, 6], None),
        ("neg_dim", [2, 3, 4], -1, [2, 3, 5], None),
        ("size0_src", [3, 4], 0, [0, 4], None),
        ("transposed_self", [4, 3], 1, [3, 5], {0: [["transpose", 0, 1]]}),
    ]:
        s = randn(*s_self)
        sv = apply_views(s, views[0]) if views else s
        index = gidx(s_src, sv.shape[dim])
        fam.add(f"scatter_add_{tag}", "scatter_add", {"dim": dim}, [s, index, randn(*s_src)],
                lambda xs, d=dim: torch.scatter_add(xs[0], d, xs[1], xs[2]), views=views)
    # (index smaller than src is allowed by the forward but PyTorch's own backward rejects it,
    # so no such case.)
    fam.add("scatter_add_dim1_f64", "scatter_add", {"dim": 1},
            [randn(3, 4, dtype=F64), gidx([3, 6], 4), randn(3, 6, dtype=F64)],
            lambda xs: torch.scatter_add(xs[0], 1, xs[1], xs[2]))

    # masked_fill (in1: u8 mask broadcastable to in0)
    def mf(v):
        return lambda xs: xs[0].masked_fill(xs[1].bool(), v)
    fam.add("masked_fill_plain", "masked_fill", {"value": 0.0}, [randn(3, 4), mask(3, 4)], mf(0.0))
    fam.add("masked_fill_bcast_row", "masked_fill", {"value": -1.5}, [randn(3, 4), mask(1, 4)], mf(-1.5))
    fam.add("masked_fill_bcast_rank", "masked_fill", {"value": 2.0}, [randn(2, 3, 4), mask(3, 1)], mf(2.0))
    fam.add("masked_fill_scalar_mask", "masked_fill", {"value": 7.0},
            [randn(2, 3), torch.tensor(1, dtype=torch.uint8)], mf(7.0))
    fam.add("masked_fill_size0", "masked_fill", {"value": 1.0}, [randn(0, 3), mask(1, 3)], mf(1.0))
    fam.add("masked_fill_transposed", "masked_fill", {"value": -3.0}, [randn(4, 3), mask(3, 4)], mf(-3.0),
            views={0: [["transpose", 0, 1]]})
    fam.add("masked_fill_large_neg", "masked_fill", {"value": -1e9}, [randn(2, 5), mask(2, 5)], mf(-1e9))
    fam.add("masked_fill_plain_f64", "masked_fill", {"value": 0.1}, [randn(3, 4, dtype=F64), mask(3, 4)],
            mf(0.1))
    return fam


# --------------------------------------------------------------------------------------------
# nn
# --------------------------------------------------------------------------------------------

def gen_nn():
    fam = Family("nn", 7)
    L = TOL_LOOSE

    # softmax / log_softmax
    for op, f in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        def mk(dim, f=f):
            return lambda xs: f(xs[0], dim=dim)
        for tag, s_in, dim, views in [
            ("last", [3, 5], -1, None),
            ("dim0", [3, 5], 0, None),
            ("3d_middle", [2, 4, 3], 1, None),
            ("3d_neg2", [2, 4, 3], -2, None),
            ("size1", [4, 1], -1, None),
            ("1d", [6], 0, None),
            ("size0", [0, 4], -1, None),
            ("transposed", [5, 3], -1, {0: [["transpose", 0, 1]]}),
            ("wide_range", [2, 8], -1, None),
        ]:
            x = randn(*s_in, scale=10.0 if tag == "wide_range" else 2.0)
            fam.add(f"{op}_{tag}", op, {"dim": dim}, [x], mk(dim), views=views, tol=L)
        fam.add(f"{op}_last_f64", op, {"dim": -1}, [randn(3, 5, dtype=F64, scale=2.0)], mk(-1))
        fam.add(f"{op}_dim0_f64", op, {"dim": 0}, [randn(4, 3, dtype=F64, scale=2.0)], mk(0))

    # conv2d: in0 x [N,C,H,W], in1 weight [O,C/groups,kh,kw], in2 bias [O] (optional)
    conv_cases = [
        # tag, x shape, w shape, bias, stride, padding, dilation, groups, views
        ("basic", [2, 3, 6, 6], [4, 3, 3, 3], True, [1, 1], [0, 0], [1, 1], 1, None),
        ("no_bias", [2, 3, 6, 6], [4, 3, 3, 3], False, [1, 1], [0, 0], [1, 1], 1, None),
        ("stride2", [1, 2, 7, 7], [3, 2, 3, 3], True, [2, 2], [0, 0], [1, 1], 1, None),
        ("stride_asym", [1, 2, 7, 8], [3, 2, 3, 2], True, [2, 3], [0, 0], [1, 1], 1, None),
        ("padding", [1, 2, 5, 5], [3, 2, 3, 3], True, [1, 1], [1, 1], [1, 1], 1, None),
        ("padding_asym", [1, 2, 5, 4], [2, 2, 3, 3], False, [1, 1], [2, 1], [1, 1], 1, None),
        ("dilation", [1, 2, 7, 7], [2, 2, 3, 3], True, [1, 1], [0, 0], [2, 2], 1, None),
        ("dilation_asym", [1, 2, 7, 7], [2, 2, 3, 3], False, [1, 1], [1, 0], [2, 1], 1, None),
        ("all_params", [2, 2, 9, 8], [3, 2, 3, 3], True, [2, 1], [1, 2], [2, 1], 1, None),
        ("groups2", [1, 4, 5, 5], [6, 2, 3, 3], True, [1, 1], [0, 0], [1, 1], 2, None),
        ("groups2_no_bias", [2, 4, 6, 5], [4, 2, 2, 2], False, [2, 1], [1, 0], [1, 1], 2, None),
        ("depthwise", [1, 3, 5, 5], [3, 1, 3, 3], True, [1, 1], [1, 1], [1, 1], 3, None),
        ("depthwise_mult", [2, 2, 6, 6], [4, 1, 3, 3], False, [2, 2], [1, 1], [1, 1], 2, None),
        ("kernel1x1", [2, 3, 4, 4], [5, 3, 1, 1], True, [1, 1], [0, 0], [1, 1], 1, None),
        ("kernel_asym", [1, 2, 6, 6], [3, 2, 2, 3], True, [1, 1], [0, 1], [1, 1], 1, None),
        ("kernel_full", [1, 2, 3, 3], [2, 2, 3, 3], True, [1, 1], [0, 0], [1, 1], 1, None),
        ("batch0", [0, 2, 5, 5], [3, 2, 3, 3], True, [1, 1], [0, 0], [1, 1], 1, None),
        # NHWC storage permuted to NCHW
        ("x_permuted", [2, 6, 6, 3], [4, 3, 3, 3], True, [1, 1], [1, 1], [1, 1], 1,
         {0: [["permute", [0, 3, 1, 2]]]}),
        ("w_transposed", [1, 3, 5, 5], [3, 4, 3, 3], True, [1, 1], [0, 0], [1, 1], 1,
         {1: [["transpose", 0, 1]]}),
    ]
    for tag, sx, sw, bias, st, pd, dl, g, views in conv_cases:
        inputs = [randn(*sx), randn(*sw, scale=0.5)]
        if bias:
            inputs.append(randn(sw[0] if not views or 1 not in views else sw[1]))
        fam.add(f"conv2d_{tag}", "conv2d",
                {"stride": st, "padding": pd, "dilation": dl, "groups": g}, inputs,
                lambda xs, st=st, pd=pd, dl=dl, g=g: F.conv2d(
                    xs[0], xs[1], xs[2] if len(xs) > 2 else None, st, pd, dl, g),
                views=views, tol=L)
    for tag, sx, sw, bias, st, pd, dl, g in [
        ("basic_f64", [2, 3, 6, 6], [4, 3, 3, 3], True, [1, 1], [0, 0], [1, 1], 1),
        ("all_params_f64", [1, 4, 8, 8], [4, 2, 3, 3], True, [2, 1], [1, 1], [1, 2], 2),
    ]:
        inputs = [randn(*sx, dtype=F64), randn(*sw, dtype=F64, scale=0.5)]
        if bias:
            inputs.append(randn(sw[0], dtype=F64))
        fam.add(f"conv2d_{tag}", "conv2d",
                {"stride": st, "padding": pd, "dilation": dl, "groups": g}, inputs,
                lambda xs, st=st, pd=pd, dl=dl, g=g: F.conv2d(
                    xs[0], xs[1], xs[2] if len(xs) > 2 else None, st, pd, dl, g))

    # pooling (distinct inputs: no ties inside a max window)
    pool_cases = [
        # tag, x shape, kernel, stride, padding, views
        ("k2s2", [2, 2, 6, 6], [2, 2], [2, 2], [0, 0], None),
        ("k3s2", [1, 2, 7, 7], [3, 3], [2, 2], [0, 0], None),
        ("k3s1_overlap", [1, 1, 5, 5], [3, 3], [1, 1], [0, 0], None),
        ("k3s2p1", [1, 2, 6, 6], [3, 3], [2, 2], [1, 1], None),
        ("asym", [1, 2, 7, 6], [3, 2], [1, 2], [1, 0], None),
        ("k2s1p1", [2, 1, 4, 5], [2, 2], [1, 1], [1, 1], None),
        ("uneven_drop", [1, 1, 7, 5], [2, 2], [2, 2], [0, 0], None),
        ("x_permuted", [1, 6, 6, 2], [2, 2], [2, 2], [0, 0], {0: [["permute", [0, 3, 1, 2]]]}),
    ]
    for tag, sx, k, st, pd, views in pool_cases:
        fam.add(f"max_pool2d_{tag}", "max_pool2d", {"kernel_size": k, "stride": st, "padding": pd},
                [distinct(*sx, gap=0.1)],
                lambda xs, k=k, st=st, pd=pd: F.max_pool2d(xs[0], k, st, pd), views=views)
    fam.add("max_pool2d_k3s2p1_f64", "max_pool2d",
            {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]},
            [distinct(1, 2, 6, 6, dtype=F64, gap=0.1)],
            lambda xs: F.max_pool2d(xs[0], [3, 3], [2, 2], [1, 1]))
    for tag, sx, k, st, pd, views in pool_cases:
        cips = [True, False] if pd != [0, 0] else [True]
        for cip in cips:
            name = f"avg_pool2d_{tag}" + ("" if cip else "_no_count_pad")
            fam.add(name, "avg_pool2d",
                    {"kernel_size": k, "stride": st, "padding": pd, "count_include_pad": cip},
                    [randn(*sx)],
                    lambda xs, k=k, st=st, pd=pd, cip=cip: F.avg_pool2d(
                        xs[0], k, st, pd, count_include_pad=cip), views=views, tol=L)
    fam.add("avg_pool2d_k3s2p1_f64", "avg_pool2d",
            {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "count_include_pad": False},
            [randn(1, 2, 6, 6, dtype=F64)],
            lambda xs: F.avg_pool2d(xs[0], [3, 3], [2, 2], [1, 1], count_include_pad=False))
    return fam


# --------------------------------------------------------------------------------------------
# creation (no inputs, no gradients)
# --------------------------------------------------------------------------------------------

def gen_creation():
    fam = Family("creation", 8)

    def add(name, op, args, fn):
        fam.add(name, op, args, [], lambda xs: fn(), grad=[])

    for tag, s, e, st, dt in [
        ("int_range", 0.0, 5.0, 1.0, "f32"),
        ("start_step", 2.0, 11.0, 3.0, "f32"),
        ("frac_step", -1.0, 1.5, 0.25, "f32"),
        ("uneven_end", 0.0, 3.3, 0.7, "f32"),
        ("neg_step", 5.0, -1.0, -1.5, "f32"),
        ("empty", 3.0, 3.0, 1.0, "f32"),
        ("frac_step_f64", 0.0, 2.0, 0.125, "f64"),
        ("uneven_end_f64", 0.0, 3.3, 0.7, "f64"),
    ]:
        add(f"arange_{tag}", "arange", {"start": s, "end": e, "step": st, "dtype": dt},
            lambda s=s, e=e, st=st, dt=dt: torch.arange(s, e, st, dtype=DTYPE_NAMES[dt]))
    for tag, s, e, n, dt in [
        ("unit", 0.0, 1.0, 5, "f32"),
        ("odd", -2.0, 3.0, 7, "f32"),
        ("descending", 5.0, -5.0, 11, "f32"),
        ("many", 0.0, 1.0, 50, "f32"),
        ("one", 1.5, 4.0, 1, "f32"),
        ("zero", 0.0, 1.0, 0, "f32"),
        ("many_f64", -1.0, 1.0, 33, "f64"),
    ]:
        add(f"linspace_{tag}", "linspace", {"start": s, "end": e, "steps": n, "dtype": dt},
            lambda s=s, e=e, n=n, dt=dt: torch.linspace(s, e, n, dtype=DTYPE_NAMES[dt]))
    for tag, n, dt in [("3", 3, "f32"), ("1", 1, "f32"), ("0", 0, "f32"), ("5_f64", 5, "f64")]:
        add(f"eye_{tag}", "eye", {"n": n, "dtype": dt}, lambda n=n, dt=dt: torch.eye(n, dtype=DTYPE_NAMES[dt]))
    for op, f in (("zeros", torch.zeros), ("ones", torch.ones)):
        for tag, shape, dt in [("2d", [2, 3], "f32"), ("scalar", [], "f32"), ("size0", [0, 3], "f32"),
                               ("3d", [2, 1, 3], "f32"), ("2d_f64", [3, 2], "f64")]:
            add(f"{op}_{tag}", op, {"shape": shape, "dtype": dt},
                lambda f=f, shape=shape, dt=dt: f(shape, dtype=DTYPE_NAMES[dt]))
    for tag, shape, v, dt in [("2d", [2, 3], 1.5, "f32"), ("scalar", [], -2.0, "f32"),
                              ("size0", [2, 0], 3.0, "f32"), ("inexact", [4], 0.1, "f32"),
                              ("inexact_f64", [3], 0.1, "f64")]:
        add(f"full_{tag}", "full", {"shape": shape, "value": v, "dtype": dt},
            lambda shape=shape, v=v, dt=dt: torch.full(shape, v, dtype=DTYPE_NAMES[dt]))
    return fam


# --------------------------------------------------------------------------------------------

GENERATORS = [gen_unary, gen_binary, gen_reduce, gen_matmul, gen_movement, gen_index, gen_nn,
              gen_creation]


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    total_bytes = 0
    total_cases = 0
    print(f"torch {torch.__version__}; writing to {os.path.relpath(OUT_DIR)}")
    for gen in GENERATORS:
        fam = gen()
        path = fam.save()
        size = os.path.getsize(path)
        total_bytes += size
        total_cases += len(fam.cases)
        ops = {}
        for c in fam.cases:
            ops[c["op"]] = ops.get(c["op"], 0) + 1
        print(f"{fam.name:9s} {len(fam.cases):4d} cases {size:9d} bytes  "
              + " ".join(f"{k}:{v}" for k, v in ops.items()))
    print(f"total     {total_cases:4d} cases {total_bytes:9d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
