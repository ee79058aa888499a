#!/usr/bin/env python3
"""Generate PyTorch fixtures for the ops of issue 11 (dtypes and promotion, the edge cases, and
the ops added with them).

Run from the repository root:

    pip install torch safetensors numpy
    python3 tests/parity/generate_ops.py [family ...]

Writes tests/parity/fixtures/<family>.safetensors in the format of FORMAT.md (the `Family`
class of generate.py), replayed by `tests/parity.rs` through `tests/parity/ops_dispatch.rs`.
Deterministic: each family re-seeds the generator and adds its cases in a fixed order. With
family names as arguments only those files are rewritten.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import (  # noqa: E402
    F32, F64, TOL_EXACT, TOL_F32, TOL_LOOSE, Family, away, distinct, nonzero, positive, randn, uniform,
)

I64, I32, I16, I8, U8, BOOL = torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool


def ints(*shape, lo=-9, hi=9, dtype=I64):
    return torch.randint(lo, hi + 1, shape).to(dtype)


def bools(*shape):
    return torch.rand(shape) < 0.5


# --------------------------------------------------------------------------------------------
# edge cases (issue 11's bugs), checked against PyTorch's own numbers
# --------------------------------------------------------------------------------------------

def gen_edge():
    fam = Family("edge", 20)
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    for lo, hi in [(-0.5, 0.5), (-0.5, None), (None, 0.5)]:
        fam.add(f"clamp_at_bounds_{lo}_{hi}", "clamp", {"min": lo, "max": hi}, [x],
                lambda v, lo=lo, hi=hi: torch.clamp(v[0], lo, hi))
    fam.add("std_zero_deviation", "std", {"dims": [], "keepdim": False, "correction": 1},
            [torch.tensor([1.5, 1.5, 1.5])], lambda v: v[0].std())
    fam.add("std_zero_deviation_rows", "std", {"dims": [1], "keepdim": False, "correction": 1},
            [torch.tensor([[2.0, 2.0], [1.0, 3.0]])], lambda v: v[0].std(1))
    for n in (1, 2):
        for c in (2, 3):
            vals = torch.tensor([1.0, 3.0][:n], dtype=F64)
            for f in ("var", "std"):
                fam.add(f"{f}_n{n}_c{c}_all_f64", f, {"dims": [], "keepdim": False, "correction": c}, [vals],
                        lambda v, f=f, c=c: getattr(torch, f)(v[0], correction=c))
                fam.add(f"{f}_n{n}_c{c}_dim0_f64", f, {"dims": [0], "keepdim": False, "correction": c}, [vals],
                        lambda v, f=f, c=c: getattr(torch, f)(v[0], dim=0, correction=c))
    # Views of empty tensors, and an empty view at an offset.
    fam.add("view_empty_transposed", "reshape", {"shape": [6, 0]}, [torch.zeros(2, 3, 0)],
            lambda v: v[0].view(6, 0), views={0: [["transpose", 0, 1]]})
    fam.add("sum_empty_at_offset", "sum", {"dims": [], "keepdim": False}, [torch.zeros(5, 0)],
            lambda v: v[0].sum(), views={0: [["slice", 0, 4, 5, 1]]})
    fam.add("log_softmax_empty_at_offset", "log_softmax", {"dim": 1}, [torch.zeros(5, 0)],
            lambda v: v[0].log_softmax(1), views={0: [["slice", 0, 4, 5, 1]]})
    return fam


# --------------------------------------------------------------------------------------------
# dtypes and promotion
# --------------------------------------------------------------------------------------------

def gen_dtypes():
    fam = Family("dtypes", 21)
    add = lambda *a, **k: fam.add(*a, mixed=True, **k)  # noqa: E731
    # Integer arithmetic, every integer dtype, with broadcasting and a non-contiguous view.
    for dt, tag in [(I64, "i64"), (I32, "i32"), (I16, "i16"), (I8, "i8"), (U8, "u8")]:
        lo = 0 if dt == U8 else -9
        a, b = ints(3, 4, lo=lo, dtype=dt), ints(4, lo=lo, dtype=dt)
        for op, f in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("maximum", torch.maximum),
                      ("minimum", torch.minimum)]:
            add(f"{op}_{tag}", op, {}, [a, b], lambda v, f=f: f(v[0], v[1]))
        add(f"div_{tag}", "div", {}, [a, nonzero_ints(4, dt)], lambda v: torch.div(v[0], v[1]))
        add(f"eq_{tag}_transposed", "eq", {}, [a, ints(4, 3, lo=lo, dtype=dt)], lambda v: torch.eq(v[0], v[1]),
            views={1: [["transpose", 0, 1]]})
    # Overflow wraps: i8 127 + 1, u8 0 - 1, i16 mul.
    add("add_i8_wraps", "add", {}, [torch.tensor([127, -128, 5], dtype=I8), torch.tensor([1, -1, 3], dtype=I8)],
        lambda v: v[0] + v[1])
    add("sub_u8_wraps", "sub", {}, [torch.tensor([0, 200, 5], dtype=U8), torch.tensor([1, 100, 7], dtype=U8)],
        lambda v: v[0] - v[1])
    add("mul_i16_wraps", "mul", {}, [torch.tensor([300, -300, 7], dtype=I16), torch.tensor([300, 300, -7], dtype=I16)],
        lambda v: v[0] * v[1])
    add("pow_i64", "pow", {}, [ints(2, 3, lo=-3, hi=3), ints(2, 3, lo=0, hi=4)], lambda v: torch.pow(v[0], v[1]))
    add("pow_i64_negative_exponents", "pow", {}, [torch.tensor([2, 1, -1, -1, 0, 3]), torch.tensor([-1, -5, -3, -2, 2, -2])],
        lambda v: torch.pow(v[0], v[1]))
    # Bool: + is or, * is and.
    add("add_bool", "add", {}, [bools(2, 3), bools(2, 3)], lambda v: v[0] + v[1])
    add("mul_bool", "mul", {}, [bools(2, 3), bools(3)], lambda v: v[0] * v[1])
    # Promotion between tensors (gradients flow back to each input's own dtype).
    add("add_f32_f64", "add", {}, [randn(3, 4), randn(3, 4, dtype=F64)], lambda v: v[0] + v[1])
    add("mul_f64_f32_bcast", "mul", {}, [randn(3, 1, dtype=F64), randn(4)], lambda v: v[0] * v[1])
    add("add_i64_f32", "add", {}, [ints(3, 4), randn(3, 4)], lambda v: v[0] + v[1])
    add("add_f32_bool", "add", {}, [randn(3, 4), bools(3, 4)], lambda v: v[0] + v[1])
    add("mul_u8_i8", "mul", {}, [ints(5, lo=0, dtype=U8), ints(5, dtype=I8)], lambda v: v[0] * v[1])
    add("add_i32_i64", "add", {}, [ints(3, dtype=I32), ints(3)], lambda v: v[0] + v[1])
    add("add_f16_0d_f64", "add", {}, [randn(3).to(torch.float16), torch.tensor(1.5, dtype=F64)],
        lambda v: v[0] + v[1], grad=[False, False])
    add("add_i32_0d_f64", "add", {}, [ints(3, dtype=I32), torch.tensor(0.25, dtype=F64)], lambda v: v[0] + v[1])
    add("add_i32_0d_i64", "add", {}, [ints(3, dtype=I32), torch.tensor(7)], lambda v: v[0] + v[1])
    add("add_0d_f32_0d_f64", "add", {}, [torch.tensor(0.5), torch.tensor(0.25, dtype=F64)], lambda v: v[0] + v[1])
    add("div_f32_i64", "div", {}, [randn(3, 4), nonzero_ints(4, I64)], lambda v: v[0] / v[1])
    add("maximum_bf16_f16", "maximum", {}, [randn(4).to(torch.bfloat16), randn(4).to(torch.float16)],
        lambda v: torch.maximum(v[0], v[1]), grad=[False, False], tol=TOL_EXACT)
    add("pow_i64_f32", "pow", {}, [ints(4, lo=1, hi=4), randn(4)], lambda v: torch.pow(v[0], v[1]), tol=TOL_LOOSE)
    # Comparisons give bool and promote.
    add("lt_i64_f32", "lt", {}, [ints(3, 4), randn(3, 4, scale=5.0)], lambda v: v[0] < v[1])
    add("ge_f64_f32", "ge", {}, [randn(3, 4, dtype=F64), randn(4)], lambda v: v[0] >= v[1])
    add("eq_bool_u8", "eq", {}, [bools(6), ints(6, lo=0, hi=1, dtype=U8)], lambda v: v[0] == v[1])
    add("ne_nan", "ne", {}, [torch.tensor([float("nan"), 1.0, 2.0]), torch.tensor([float("nan"), 1.0, 3.0])],
        lambda v: v[0] != v[1])
    # where with a bool condition and mixed branches.
    add("where_f32_f64", "where_cond", {}, [bools(3, 4), randn(3, 4), randn(4, dtype=F64)],
        lambda v: torch.where(v[0], v[1], v[2]))
    add("where_i64_f32", "where_cond", {}, [bools(3, 1), ints(3, 4), randn(1, 4)], lambda v: torch.where(v[0], v[1], v[2]))
    add("where_scalar_f32", "where_scalar", {"value": 0.5}, [bools(3, 4), randn(3, 4)],
        lambda v: torch.where(v[0], v[1], 0.5))
    add("where_scalar_i64_int", "where_scalar", {"value": -1}, [bools(5), ints(5)], lambda v: torch.where(v[0], v[1], -1))
    add("where_scalar_i64_float", "where_scalar", {"value": 0.5}, [bools(5), ints(5)],
        lambda v: torch.where(v[0], v[1], 0.5))
    # Scalars: an int keeps integer tensors integral, a float makes them f32.
    for tag, t in [("i64", ints(3, 4)), ("i16", ints(3, 4, dtype=I16)), ("u8", ints(3, 4, lo=0, dtype=U8))]:
        add(f"add_scalar_int_{tag}", "add_scalar_typed", {"value": 3}, [t], lambda v: v[0] + 3)
        add(f"add_scalar_float_{tag}", "add_scalar_typed", {"value": 0.5}, [t], lambda v: v[0] + 0.5)
        add(f"mul_scalar_int_{tag}", "mul_scalar_typed", {"value": -2}, [t], lambda v: v[0] * -2)
        add(f"sub_scalar_int_{tag}", "sub_scalar", {"value": 4}, [t], lambda v: v[0] - 4)
        add(f"rsub_scalar_int_{tag}", "rsub_scalar", {"value": 4}, [t], lambda v: 4 - v[0])
        add(f"div_scalar_int_{tag}", "div_scalar", {"value": 4}, [t], lambda v: v[0] / 4)
        add(f"pow_scalar_int_{tag}", "pow_scalar_typed", {"value": 2}, [t], lambda v: v[0] ** 2)
    add("add_scalar_int_f16", "add_scalar_typed", {"value": 3}, [randn(4).to(torch.float16)], lambda v: v[0] + 3,
        grad=[False])
    add("mul_scalar_bool_bool", "mul_scalar_typed", {"value": True}, [bools(4)], lambda v: v[0] * True)
    add("add_scalar_int_bool", "add_scalar_typed", {"value": 2}, [bools(4)], lambda v: v[0] + 2)
    add("add_scalar_float_0d_i64", "add_scalar_typed", {"value": 0.5}, [torch.tensor(3)], lambda v: v[0] + 0.5)
    add("mul_scalar_int_f32", "mul_scalar_typed", {"value": 3}, [randn(3, 4)], lambda v: v[0] * 3)
    # Unary float ops on integers compute in f32; neg and abs stay integral.
    add("exp_i64", "exp", {}, [ints(5, lo=-3, hi=3)], lambda v: torch.exp(v[0]))
    add("sqrt_u8", "sqrt", {}, [ints(5, lo=0, hi=50, dtype=U8)], lambda v: torch.sqrt(v[0]))
    add("neg_i32", "neg", {}, [ints(5, dtype=I32)], lambda v: torch.neg(v[0]))
    add("abs_i8", "abs", {}, [ints(5, dtype=I8)], lambda v: torch.abs(v[0]))
    # Reductions of integers and bools sum to i64.
    add("sum_i32", "sum", {"dims": [1], "keepdim": False}, [ints(3, 4, dtype=I32)], lambda v: v[0].sum(1))
    add("sum_bool", "sum", {"dims": [], "keepdim": False}, [bools(3, 4)], lambda v: v[0].sum())
    add("prod_i16", "prod", {"dims": [0], "keepdim": True}, [ints(3, 4, lo=-3, hi=3, dtype=I16)], lambda v: v[0].prod(0, keepdim=True))
    add("max_bool", "max", {"dims": [1], "keepdim": False}, [bools(3, 4)], lambda v: v[0].amax(1))
    add("argmax_i8", "argmax", {"dim": 1, "keepdim": False}, [ints(3, 4, dtype=I8)], lambda v: v[0].argmax(1))
    # Logical ops.
    add("logical_and_f32_i64", "logical_and", {}, [small(3, 4), ints(4, lo=-1, hi=1)], lambda v: torch.logical_and(v[0], v[1]))
    add("logical_or_bool", "logical_or", {}, [bools(3, 4), bools(3, 1)], lambda v: torch.logical_or(v[0], v[1]))
    add("logical_xor_u8", "logical_xor", {}, [ints(6, lo=0, hi=2, dtype=U8), ints(6, lo=0, hi=2, dtype=U8)],
        lambda v: torch.logical_xor(v[0], v[1]))
    add("logical_not_f32", "logical_not", {}, [small(2, 3)], lambda v: torch.logical_not(v[0]))
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -2.5])
    for op in ("isnan", "isinf", "isfinite"):
        add(f"{op}_f32", op, {}, [special], lambda v, op=op: getattr(torch, op)(v[0]))
    # Conversions: exact for i64 above 2^53, wrapping into narrow integers, bool is x != 0.
    big = torch.tensor([2**53 + 1, -(2**62) - 3, 2**63 - 1, 123456789012345678], dtype=I64)
    add("to_dtype_i64_f64", "to_dtype_any", {"dtype": "f64"}, [big], lambda v: v[0].to(F64))
    add("to_dtype_i64_f32", "to_dtype_any", {"dtype": "f32"}, [big], lambda v: v[0].to(F32))
    add("to_dtype_i64_i32", "to_dtype_any", {"dtype": "i32"}, [big], lambda v: v[0].to(I32))
    add("to_dtype_i64_i8", "to_dtype_any", {"dtype": "i8"}, [big], lambda v: v[0].to(I8))
    add("to_dtype_i64_u8", "to_dtype_any", {"dtype": "u8"}, [torch.tensor([-1, 256, 300, 7])], lambda v: v[0].to(U8))
    add("to_dtype_f32_i16", "to_dtype_any", {"dtype": "i16"}, [torch.tensor([-2.7, 2.7, 1000.5, -0.5])],
        lambda v: v[0].to(I16))
    add("to_dtype_f32_bool", "to_dtype_any", {"dtype": "bool"}, [special], lambda v: v[0].to(BOOL))
    add("to_dtype_bool_f16", "to_dtype_any", {"dtype": "f16"}, [bools(5)], lambda v: v[0].to(torch.float16))
    add("to_dtype_i64_f16", "to_dtype_any", {"dtype": "f16"}, [torch.tensor([2049, 65519, 70000, -3])],
        lambda v: v[0].to(torch.float16))
    add("to_dtype_i8_i64_transposed", "to_dtype_any", {"dtype": "i64"}, [ints(3, 4, dtype=I8)],
        lambda v: v[0].to(I64), views={0: [["transpose", 0, 1]]})
    return fam


def nonzero_ints(n, dtype):
    v = torch.randint(1, 6, (n,))
    if dtype != U8:
        v = v * torch.where(torch.rand(n) < 0.5, -1, 1)
    return v.to(dtype)


def small(*shape):
    """Floats that are exactly 0 about a third of the time."""
    return torch.randint(-1, 2, shape).to(F32) * 0.5



# --------------------------------------------------------------------------------------------
# elementwise math and activations
# --------------------------------------------------------------------------------------------

def standard_views(fam, tag, op, args, make, fn, tol=None, f64=True):
    """plain, 0-d, size-0, transposed, sliced and expanded inputs, and an f64 case."""
    fam.add(f"{tag}_plain", op, args, [make(3, 4)], fn, tol=tol)
    fam.add(f"{tag}_scalar", op, args, [make()], fn, tol=tol)
    fam.add(f"{tag}_size0", op, args, [make(0, 3)], fn, tol=tol)
    fam.add(f"{tag}_transposed", op, args, [make(2, 3, 4)], fn, views={0: [["transpose", 0, 2]]}, tol=tol)
    fam.add(f"{tag}_slice_step", op, args, [make(4, 6)], fn, views={0: [["slice", 1, 1, 6, 2]]}, tol=tol)
    fam.add(f"{tag}_expand", op, args, [make(3, 1)], fn, views={0: [["expand", [2, 3, 4]]]}, tol=tol)
    if f64:
        fam.add(f"{tag}_plain_f64", op, args, [make(3, 4, dtype=F64)], fn)


def gen_math():
    fam = Family("math", 22)
    rng = lambda lo, hi: (lambda *s, dtype=F32: uniform(*s, lo=lo, hi=hi, dtype=dtype))  # noqa: E731
    unary = [
        ("expm1", torch.expm1, rng(-2, 2)),
        ("exp2", torch.exp2, rng(-3, 3)),
        ("log2", torch.log2, rng(0.2, 5)),
        ("log10", torch.log10, rng(0.2, 5)),
        ("tan", torch.tan, rng(-1.2, 1.2)),
        ("atan", torch.atan, rng(-4, 4)),
        ("asin", torch.asin, rng(-0.95, 0.95)),
        ("acos", torch.acos, rng(-0.95, 0.95)),
        ("sinh", torch.sinh, rng(-3, 3)),
        ("cosh", torch.cosh, rng(-3, 3)),
        ("sign", torch.sign, lambda *s, dtype=F32: small(*s).to(dtype) if s else torch.tensor(-0.5, dtype=dtype)),
        ("floor", torch.floor, rng(-4, 4)),
        ("ceil", torch.ceil, rng(-4, 4)),
        ("round", torch.round, rng(-4, 4)),
        ("trunc", torch.trunc, rng(-4, 4)),
    ]
    for op, f, make in unary:
        standard_views(fam, op, op, {}, make, lambda v, f=f: f(v[0]), tol=TOL_LOOSE)
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 2.51, -2.5])
    fam.add("round_ties", "round", {}, [ties], lambda v: torch.round(v[0]))
    fam.add("sign_special", "sign", {}, [torch.tensor([float("nan"), -0.0, 0.0, 2.0, -3.0, float("inf")])],
            lambda v: torch.sign(v[0]))
    fam.add("floor_i64", "floor", {}, [ints(5)], lambda v: torch.floor(v[0]))
    fam.add("sign_i32", "sign", {}, [ints(5, dtype=I32)], lambda v: torch.sign(v[0]))
    binary = [
        ("atan2", torch.atan2, lambda *s, dtype=F32: randn(*s, dtype=dtype), lambda *s, dtype=F32: randn(*s, dtype=dtype)),
        ("remainder", torch.remainder, lambda *s, dtype=F32: randn(*s, dtype=dtype, scale=4.0), lambda *s, dtype=F32: nonzero(*s, dtype=dtype)),
        ("fmod", torch.fmod, lambda *s, dtype=F32: randn(*s, dtype=dtype, scale=4.0), lambda *s, dtype=F32: nonzero(*s, dtype=dtype)),
        # torch.floor_divide has no derivative; div(rounding_mode="floor") is the same values with a
        # zero gradient, which is what TensorBrain's floor_divide gives.
        ("floor_divide", lambda a, b: torch.div(a, b, rounding_mode="floor"), lambda *s, dtype=F32: randn(*s, dtype=dtype, scale=4.0),
         lambda *s, dtype=F32: nonzero(*s, dtype=dtype)),
        ("div_trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"), lambda *s, dtype=F32: randn(*s, dtype=dtype, scale=4.0),
         lambda *s, dtype=F32: nonzero(*s, dtype=dtype)),
        ("hypot", torch.hypot, lambda *s, dtype=F32: randn(*s, dtype=dtype), lambda *s, dtype=F32: randn(*s, dtype=dtype)),
        ("copysign", torch.copysign, lambda *s, dtype=F32: nonzero(*s, dtype=dtype), lambda *s, dtype=F32: randn(*s, dtype=dtype)),
    ]
    for op, f, ma, mb in binary:
        fn = lambda v, f=f: f(v[0], v[1])  # noqa: E731
        fam.add(f"{op}_plain", op, {}, [ma(3, 4), mb(3, 4)], fn, tol=TOL_LOOSE)
        fam.add(f"{op}_bcast", op, {}, [ma(3, 1, 4), mb(2, 4)], fn, tol=TOL_LOOSE)
        fam.add(f"{op}_scalar_rhs", op, {}, [ma(2, 3), mb()], fn, tol=TOL_LOOSE)
        fam.add(f"{op}_size0", op, {}, [ma(0, 3), mb(3)], fn, tol=TOL_LOOSE)
        fam.add(f"{op}_transposed", op, {}, [ma(4, 3), mb(3, 4)], fn, views={0: [["transpose", 0, 1]]}, tol=TOL_LOOSE)
        fam.add(f"{op}_plain_f64", op, {}, [ma(3, 4, dtype=F64), mb(3, 4, dtype=F64)], fn)
    fam.add("copysign_signed_zeros", "copysign", {}, [torch.tensor([1.0, 2.0, -3.0, 0.0]), torch.tensor([-0.0, 0.0, 1.0, -1.0])],
            lambda v: torch.copysign(v[0], v[1]))
    for op, f in [("remainder", torch.remainder), ("fmod", torch.fmod), ("floor_divide", lambda a, b: torch.div(a, b, rounding_mode="floor")),
                  ("div_trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"))]:
        fam.add(f"{op}_i64", op, {}, [ints(3, 4), nonzero_ints(4, I64)], lambda v, f=f: f(v[0], v[1]), mixed=True)
        fam.add(f"{op}_i64_f32", op, {}, [ints(3, 4), nonzero(4)], lambda v, f=f: f(v[0], v[1]), mixed=True, tol=TOL_LOOSE)
    return fam


def gen_activations():
    fam = Family("activations", 23)
    wide = lambda *s, dtype=F32: randn(*s, dtype=dtype, scale=4.0)  # noqa: E731
    acts = [
        ("hardtanh", {"min_val": -1.0, "max_val": 1.0}, lambda x: F.hardtanh(x, -1.0, 1.0), [-1.0, 1.0]),
        ("hardtanh_narrow", {"min_val": -0.5, "max_val": 2.0}, lambda x: F.hardtanh(x, -0.5, 2.0), [-0.5, 2.0]),
        ("relu6", {}, F.relu6, [0.0, 6.0]),
        ("selu", {}, F.selu, [0.0]),
        ("celu", {"alpha": 1.0}, lambda x: F.celu(x, 1.0), [0.0]),
        ("celu_alpha", {"alpha": 0.5}, lambda x: F.celu(x, 0.5), [0.0]),
        ("mish", {}, F.mish, []),
        ("hardswish", {}, F.hardswish, [-3.0, 3.0]),
        ("hardsigmoid", {}, F.hardsigmoid, [-3.0, 3.0]),
        ("logsigmoid", {}, F.logsigmoid, []),
        ("softsign", {}, F.softsign, [0.0]),
        ("softplus_with", {"beta": 2.0, "threshold": 5.0}, lambda x: F.softplus(x, 2.0, 5.0), [2.5]),
        ("softplus_with_default", {"beta": 1.0, "threshold": 20.0}, lambda x: F.softplus(x, 1.0, 20.0), []),
    ]
    for tag, args, f, kinks in acts:
        op = "softplus_with" if tag.startswith("softplus") else tag.split("_")[0] if tag.startswith(("hardtanh", "celu")) else tag
        make = lambda *s, dtype=F32, kinks=kinks: away(wide(*s, dtype=dtype), kinks, 0.05)  # noqa: E731
        standard_views(fam, tag, op, args, make, lambda v, f=f: f(v[0]), tol=TOL_LOOSE)
        if kinks:
            # PyTorch's choice of derivative at each kink point.
            fam.add(f"{tag}_at_kinks", op, args, [torch.tensor(kinks + [k + 1e-3 for k in kinks] + [k - 1e-3 for k in kinks])],
                    lambda v, f=f: f(v[0]), tol=TOL_LOOSE)
    fam.add("logsigmoid_extreme", "logsigmoid", {}, [torch.tensor([-100.0, -30.0, 0.0, 30.0, 100.0])], lambda v: F.logsigmoid(v[0]))
    fam.add("mish_extreme", "mish", {}, [torch.tensor([-30.0, -5.0, 0.0, 25.0, 90.0])], lambda v: F.mish(v[0]), tol=TOL_LOOSE)
    return fam


# --------------------------------------------------------------------------------------------
# reductions, scans and order statistics
# --------------------------------------------------------------------------------------------

def gen_scans():
    fam = Family("scans", 24)
    for op, f in [("cumsum", torch.cumsum), ("cumprod", torch.cumprod), ("logcumsumexp", torch.logcumsumexp)]:
        make = (lambda *s, dtype=F32: nonzero(*s, dtype=dtype, lo=0.5, hi=1.5)) if op == "cumprod" else (lambda *s, dtype=F32: randn(*s, dtype=dtype))
        for dim in (0, 1, -1):
            fam.add(f"{op}_dim{dim}", op, {"dim": dim}, [make(3, 4)], lambda v, f=f, d=dim: f(v[0], d), tol=TOL_LOOSE)
        fam.add(f"{op}_transposed", op, {"dim": 1}, [make(4, 3, 2)], lambda v, f=f: f(v[0], 1), views={0: [["transpose", 0, 2]]}, tol=TOL_LOOSE)
        fam.add(f"{op}_size0", op, {"dim": 1}, [make(0, 3)], lambda v, f=f: f(v[0], 1), tol=TOL_LOOSE)
        fam.add(f"{op}_scalar", op, {"dim": 0}, [make()], lambda v, f=f: f(v[0], 0), tol=TOL_LOOSE)
        fam.add(f"{op}_dim1_f64", op, {"dim": 1}, [make(3, 5, dtype=F64)], lambda v, f=f: f(v[0], 1))
    fam.add("cumsum_i32", "cumsum", {"dim": 0}, [ints(4, 3, dtype=I32)], lambda v: torch.cumsum(v[0], 0))
    fam.add("cumsum_bool", "cumsum", {"dim": 0}, [bools(6)], lambda v: torch.cumsum(v[0], 0))
    fam.add("cumprod_one_zero_f64", "cumprod", {"dim": 1}, [torch.tensor([[2.0, 0.0, 3.0, 0.5], [1.5, -2.0, 0.0, 4.0]], dtype=F64)],
            lambda v: torch.cumprod(v[0], 1))
    fam.add("cumprod_two_zeros_f64", "cumprod", {"dim": 0}, [torch.tensor([0.5, 0.0, 3.0, 0.0, 2.0], dtype=F64)],
            lambda v: torch.cumprod(v[0], 0))
    fam.add("logcumsumexp_inf", "logcumsumexp", {"dim": 0}, [torch.tensor([-float("inf"), -float("inf"), 1.0, 50.0, -3.0])],
            lambda v: torch.logcumsumexp(v[0], 0), grad=[False])
    # sort / argsort / topk / kthvalue / median: distinct values so gradients are unambiguous.
    for desc in (False, True):
        for idx in (0, 1):
            fam.add(f"sort_d{int(desc)}_i{idx}", "sort", {"dim": 1, "descending": desc, "index": idx}, [distinct(3, 5)],
                    lambda v, desc=desc, idx=idx: torch.sort(v[0], dim=1, descending=desc, stable=True)[idx])
    fam.add("sort_dim0_transposed", "sort", {"dim": 0, "descending": False, "index": 0}, [distinct(4, 3)],
            lambda v: torch.sort(v[0], dim=0, stable=True)[0], views={0: [["transpose", 0, 1]]})
    nan_row = torch.tensor([[3.0, float("nan"), 1.0, 3.0, -2.0]])
    for desc in (False, True):
        fam.add(f"sort_nan_ties_d{int(desc)}", "sort", {"dim": 1, "descending": desc, "index": 1}, [nan_row],
                lambda v, desc=desc: torch.sort(v[0], dim=1, descending=desc, stable=True)[1])
    fam.add("sort_i64", "sort", {"dim": 0, "descending": True, "index": 0}, [ints(7)], lambda v: torch.sort(v[0], dim=0, descending=True, stable=True)[0])
    fam.add("argsort_plain", "argsort", {"dim": -1, "descending": False}, [distinct(2, 6)], lambda v: torch.argsort(v[0], dim=-1, stable=True))
    fam.add("sort_plain_f64", "sort", {"dim": 1, "descending": False, "index": 0}, [distinct(3, 4, dtype=F64)],
            lambda v: torch.sort(v[0], dim=1, stable=True)[0])
    for k, largest in [(2, True), (3, False), (0, True), (5, True)]:
        for idx in (0, 1):
            fam.add(f"topk_k{k}_l{int(largest)}_i{idx}", "topk", {"k": k, "dim": 1, "largest": largest, "index": idx}, [distinct(3, 5)],
                    lambda v, k=k, largest=largest, idx=idx: torch.topk(v[0], k, 1, largest=largest)[idx])
    fam.add("topk_dim0_f64", "topk", {"k": 2, "dim": 0, "largest": True, "index": 0}, [distinct(4, 3, dtype=F64)],
            lambda v: torch.topk(v[0], 2, 0)[0])
    for idx in (0, 1):
        fam.add(f"kthvalue_i{idx}", "kthvalue", {"k": 2, "dim": 1, "keepdim": False, "index": idx}, [distinct(3, 5)],
                lambda v, idx=idx: torch.kthvalue(v[0], 2, 1)[idx])
        fam.add(f"median_dim_i{idx}", "median_dim", {"dim": 1, "keepdim": True, "index": idx}, [distinct(3, 4)],
                lambda v, idx=idx: torch.median(v[0], 1, keepdim=True)[idx])
        fam.add(f"median_dim_nan_i{idx}", "median_dim", {"dim": 1, "keepdim": False, "index": idx},
                [torch.tensor([[1.0, float("nan"), 3.0, float("nan")], [4.0, 2.0, 3.0, 1.0]])],
                lambda v, idx=idx: torch.median(v[0], 1)[idx], grad=[False])
    fam.add("median_all_odd", "median", {}, [distinct(3, 5)], lambda v: torch.median(v[0]))
    fam.add("median_all_even_ties", "median", {}, [torch.tensor([[1.0, 3.0, 2.0], [2.0, 5.0, 2.0]])], lambda v: torch.median(v[0]))
    fam.add("median_all_f64", "median", {}, [distinct(2, 3, dtype=F64)], lambda v: torch.median(v[0]))
    # vector norms
    for ordv in (2.0, 1.0, float("inf"), -float("inf"), 0.0, 3.0, 0.5):
        tag = str(ordv).replace("-inf", "minf").replace(".", "p")
        make = lambda *s: away(randn(*s), [0.0], 0.1)  # noqa: E731
        fam.add(f"vector_norm_{tag}_all", "vector_norm", {"ord": ordv_json(ordv), "dims": [], "keepdim": False}, [make(3, 4)],
                lambda v, o=ordv: torch.linalg.vector_norm(v[0], o), tol=TOL_LOOSE)
        fam.add(f"vector_norm_{tag}_dim1", "vector_norm", {"ord": ordv_json(ordv), "dims": [1], "keepdim": True}, [make(3, 4)],
                lambda v, o=ordv: torch.linalg.vector_norm(v[0], o, dim=1, keepdim=True), tol=TOL_LOOSE)
    fam.add("vector_norm_2_zero_row", "vector_norm", {"ord": 2.0, "dims": [1], "keepdim": False},
            [torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])], lambda v: torch.linalg.vector_norm(v[0], 2, dim=1))
    fam.add("vector_norm_3_zero_row", "vector_norm", {"ord": 3.0, "dims": [1], "keepdim": False},
            [torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])], lambda v: torch.linalg.vector_norm(v[0], 3, dim=1))
    fam.add("vector_norm_inf_ties", "vector_norm", {"ord": ordv_json(float("inf")), "dims": [], "keepdim": False},
            [torch.tensor([1.0, -3.0, 3.0, 2.0])], lambda v: torch.linalg.vector_norm(v[0], float("inf")))
    fam.add("vector_norm_transposed", "vector_norm", {"ord": 2.0, "dims": [0, 2], "keepdim": False}, [randn(2, 3, 4)],
            lambda v: torch.linalg.vector_norm(v[0], 2, dim=(0, 2)), views={0: [["transpose", 0, 1]]}, tol=TOL_LOOSE)
    fam.add("vector_norm_size0", "vector_norm", {"ord": 2.0, "dims": [1], "keepdim": False}, [randn(3, 0)],
            lambda v: torch.linalg.vector_norm(v[0], 2, dim=1))
    fam.add("vector_norm_2_all_f64", "vector_norm", {"ord": 2.0, "dims": [], "keepdim": False}, [randn(3, 4, dtype=F64)],
            lambda v: torch.linalg.vector_norm(v[0], 2))
    for idx in (0, 1):
        fam.add(f"aminmax_dim_i{idx}", "aminmax", {"dim": 1, "keepdim": False, "index": idx}, [distinct(3, 4)],
                lambda v, idx=idx: torch.aminmax(v[0], dim=1)[idx])
        fam.add(f"aminmax_all_i{idx}", "aminmax", {"dim": None, "keepdim": False, "index": idx}, [distinct(3, 4)],
                lambda v, idx=idx: torch.aminmax(v[0])[idx], grad=[False])
    with_nan = torch.tensor([[1.0, float("nan"), 2.0], [float("nan"), float("nan"), 0.5]])
    fam.add("nansum_dim1", "nansum", {"dims": [1], "keepdim": False}, [with_nan], lambda v: torch.nansum(v[0], 1))
    fam.add("nansum_all", "nansum", {"dims": [], "keepdim": False}, [with_nan], lambda v: torch.nansum(v[0]))
    fam.add("nansum_plain_f64", "nansum", {"dims": [0], "keepdim": True}, [randn(3, 4, dtype=F64)], lambda v: torch.nansum(v[0], 0, keepdim=True))
    fam.add("count_nonzero_dim0", "count_nonzero", {"dims": [0]}, [small(4, 3)], lambda v: torch.count_nonzero(v[0], 0))
    fam.add("count_nonzero_all_i64", "count_nonzero", {"dims": []}, [ints(5, lo=-1, hi=1)], lambda v: torch.count_nonzero(v[0]))
    for op, f in [("all", torch.all), ("any", torch.any)]:
        fam.add(f"{op}_dim1", op, {"dims": [1], "keepdim": False}, [small(4, 3)], lambda v, f=f: f(v[0], 1))
        fam.add(f"{op}_all_bool", op, {"dims": [], "keepdim": False}, [bools(5)], lambda v, f=f: f(v[0]))
        fam.add(f"{op}_empty", op, {"dims": [1], "keepdim": True}, [torch.zeros(2, 0)], lambda v, f=f: f(v[0], 1, keepdim=True))
    return fam


def ordv_json(o):
    """Infinite orders travel as strings (JSON has no infinity)."""
    if o == float("inf"):
        return "inf"
    if o == -float("inf"):
        return "-inf"
    return o


# --------------------------------------------------------------------------------------------
# products
# --------------------------------------------------------------------------------------------

def gen_products():
    fam = Family("products", 25)
    eqs = [
        ("mm", "ij,jk->ik", [(3, 4), (4, 5)]),
        ("bmm", "bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
        ("diag", "ii->i", [(4, 4)]),
        ("trace", "ii", [(3, 3)]),
        ("transpose", "ij->ji", [(3, 4)]),
        ("dot", "i,i->", [(5,), (5,)]),
        ("outer", "i,j->ij", [(3,), (4,)]),
        ("ellipsis", "...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
        ("attention", "bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        ("hadamard", "ij,ij->ij", [(3, 4), (3, 4)]),
        ("implicit", "ij,jk", [(3, 4), (4, 2)]),
        ("chain", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
        ("sum_all", "ijk->", [(2, 3, 4)]),
        ("sum_one", "ijk->ik", [(2, 3, 4)]),
        ("batch_diag", "bii->bi", [(2, 3, 3)]),
        ("bilinear", "bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
        ("spaces", " ij , jk -> ik ", [(2, 3), (3, 2)]),
        ("size0", "ij,jk->ik", [(0, 3), (3, 2)]),
    ]
    for tag, eq, shapes in eqs:
        fam.add(f"einsum_{tag}", "einsum", {"equation": eq}, [randn(*s) for s in shapes],
                lambda v, eq=eq: torch.einsum(eq, *v), tol=TOL_LOOSE)
    fam.add("einsum_transposed", "einsum", {"equation": "ij,jk->ik"}, [randn(4, 3), randn(4, 5)],
            lambda v: torch.einsum("ij,jk->ik", *v), views={0: [["transpose", 0, 1]]}, tol=TOL_LOOSE)
    fam.add("einsum_mm_f64", "einsum", {"equation": "ij,jk->ik"}, [randn(3, 4, dtype=F64), randn(4, 2, dtype=F64)],
            lambda v: torch.einsum("ij,jk->ik", *v))
    for beta, alpha in [(1.0, 1.0), (0.5, 2.0), (0.0, 1.5)]:
        inp = randn(3, 5) if beta != 0.0 else torch.full((3, 5), float("nan"))
        fam.add(f"addmm_b{beta}_a{alpha}", "addmm", {"beta": beta, "alpha": alpha}, [inp, randn(3, 4), randn(4, 5)],
                lambda v, b=beta, a=alpha: torch.addmm(v[0], v[1], v[2], beta=b, alpha=a), tol=TOL_LOOSE,
                grad=[beta != 0.0, True, True])
    fam.add("addmm_bcast", "addmm", {"beta": 1.0, "alpha": 1.0}, [randn(5), randn(3, 4), randn(4, 5)],
            lambda v: torch.addmm(v[0], v[1], v[2]), tol=TOL_LOOSE)
    fam.add("addmm_transposed_f64", "addmm", {"beta": 0.5, "alpha": -1.0}, [randn(3, 5, dtype=F64), randn(4, 3, dtype=F64), randn(4, 5, dtype=F64)],
            lambda v: torch.addmm(v[0], v[1], v[2], beta=0.5, alpha=-1.0), views={1: [["transpose", 0, 1]]})
    fam.add("baddbmm", "baddbmm", {"beta": 0.5, "alpha": 2.0}, [randn(2, 3, 5), randn(2, 3, 4), randn(2, 4, 5)],
            lambda v: torch.baddbmm(v[0], v[1], v[2], beta=0.5, alpha=2.0), tol=TOL_LOOSE)
    fam.add("baddbmm_bcast", "baddbmm", {"beta": 1.0, "alpha": 1.0}, [randn(1, 5), randn(2, 3, 4), randn(2, 4, 5)],
            lambda v: torch.baddbmm(v[0], v[1], v[2]), tol=TOL_LOOSE)
    fam.add("addmv", "addmv", {"beta": 2.0, "alpha": 0.5}, [randn(3), randn(3, 4), randn(4)],
            lambda v: torch.addmv(v[0], v[1], v[2], beta=2.0, alpha=0.5), tol=TOL_LOOSE)
    fam.add("outer", "outer", {}, [randn(3), randn(4)], lambda v: torch.outer(v[0], v[1]))
    fam.add("outer_size0", "outer", {}, [randn(0), randn(4)], lambda v: torch.outer(v[0], v[1]))
    fam.add("dot", "dot", {}, [randn(6), randn(6)], lambda v: torch.dot(v[0], v[1]), tol=TOL_LOOSE)
    fam.add("mv", "mv", {}, [randn(3, 4), randn(4)], lambda v: torch.mv(v[0], v[1]), tol=TOL_LOOSE)
    fam.add("tensordot_lists", "tensordot", {"dims_self": [1, 0], "dims_other": [0, 2]}, [randn(3, 4, 2), randn(4, 5, 3)],
            lambda v: torch.tensordot(v[0], v[1], dims=([1, 0], [0, 2])), tol=TOL_LOOSE)
    fam.add("tensordot_n2", "tensordot_n", {"n": 2}, [randn(2, 3, 4), randn(3, 4, 5)],
            lambda v: torch.tensordot(v[0], v[1], dims=2), tol=TOL_LOOSE)
    fam.add("tensordot_n0_f64", "tensordot_n", {"n": 0}, [randn(2, 3, dtype=F64), randn(4, dtype=F64)],
            lambda v: torch.tensordot(v[0], v[1], dims=0))
    return fam


# --------------------------------------------------------------------------------------------
# shape ops
# --------------------------------------------------------------------------------------------

def gen_shape():
    fam = Family("shape", 26)
    fam.add("flip_dims", "flip", {"dims": [0, 2]}, [randn(2, 3, 4)], lambda v: torch.flip(v[0], [0, 2]))
    fam.add("flip_transposed", "flip", {"dims": [-1]}, [randn(3, 4)], lambda v: torch.flip(v[0], [-1]), views={0: [["transpose", 0, 1]]})
    fam.add("flip_size0", "flip", {"dims": [0]}, [randn(0, 3)], lambda v: torch.flip(v[0], [0]))
    fam.add("flip_i64", "flip", {"dims": [0]}, [ints(5)], lambda v: torch.flip(v[0], [0]))
    fam.add("flip_plain_f64", "flip", {"dims": [1]}, [randn(3, 4, dtype=F64)], lambda v: torch.flip(v[0], [1]))
    fam.add("roll_dims", "roll", {"shifts": [1, -2], "dims": [0, 1]}, [randn(3, 4)], lambda v: torch.roll(v[0], (1, -2), (0, 1)))
    fam.add("roll_flat", "roll", {"shifts": [5], "dims": []}, [randn(3, 4)], lambda v: torch.roll(v[0], 5))
    fam.add("roll_same_dim_twice", "roll", {"shifts": [1, 2], "dims": [1, 1]}, [randn(2, 5)], lambda v: torch.roll(v[0], (1, 2), (1, 1)))
    fam.add("roll_expanded", "roll", {"shifts": [1], "dims": [0]}, [randn(1, 4)], lambda v: torch.roll(v[0], 1, 0),
            views={0: [["expand", [3, 4]]]})
    fam.add("repeat_more_dims", "repeat", {"repeats": [2, 1, 3]}, [randn(2, 3)], lambda v: v[0].repeat(2, 1, 3))
    fam.add("repeat_zero", "repeat", {"repeats": [0, 2]}, [randn(2, 3)], lambda v: v[0].repeat(0, 2))
    fam.add("repeat_plain_f64", "repeat", {"repeats": [2, 2]}, [randn(2, 3, dtype=F64)], lambda v: v[0].repeat(2, 2))
    fam.add("tile_short", "tile", {"reps": [3]}, [randn(2, 3)], lambda v: torch.tile(v[0], (3,)))
    fam.add("repeat_interleave_dim", "repeat_interleave", {"repeats": 2, "dim": 1}, [randn(2, 3)],
            lambda v: torch.repeat_interleave(v[0], 2, dim=1))
    fam.add("repeat_interleave_flat", "repeat_interleave", {"repeats": 3, "dim": None}, [randn(2, 2)],
            lambda v: torch.repeat_interleave(v[0], 3))
    fam.add("repeat_interleave_counts", "repeat_interleave_counts", {"dim": 0}, [randn(3, 2), torch.tensor([2, 0, 3])],
            lambda v: torch.repeat_interleave(v[0], v[1], dim=0))
    for mode in ("reflect", "replicate", "circular"):
        fam.add(f"pad_{mode}_1d", "pad_mode", {"pad": [2, 1], "mode": mode}, [randn(2, 3, 5)],
                lambda v, m=mode: F.pad(v[0], (2, 1), mode=m))
        fam.add(f"pad_{mode}_2d", "pad_mode", {"pad": [1, 2, 2, 0], "mode": mode}, [randn(2, 2, 4, 3)],
                lambda v, m=mode: F.pad(v[0], (1, 2, 2, 0), mode=m))
        fam.add(f"pad_{mode}_2d_unbatched", "pad_mode", {"pad": [1, 1, 1, 1], "mode": mode}, [randn(2, 3, 3)],
                lambda v, m=mode: F.pad(v[0], (1, 1, 1, 1), mode=m), views={0: [["transpose", 1, 2]]})
        fam.add(f"pad_{mode}_2d_f64", "pad_mode", {"pad": [1, 1, 1, 1], "mode": mode}, [randn(1, 1, 3, 3, dtype=F64)],
                lambda v, m=mode: F.pad(v[0], (1, 1, 1, 1), mode=m))
    fam.add("pad_constant", "pad_mode", {"pad": [1, 0, 0, 2], "mode": "constant", "value": 0.5}, [randn(2, 3)],
            lambda v: F.pad(v[0], (1, 0, 0, 2), value=0.5))
    for op, f in [("tril", torch.tril), ("triu", torch.triu)]:
        for k in (0, 1, -1):
            fam.add(f"{op}_k{k}", op, {"diagonal": k}, [randn(2, 3, 4)], lambda v, f=f, k=k: f(v[0], k))
        fam.add(f"{op}_transposed", op, {"diagonal": 0}, [randn(4, 3)], lambda v, f=f: f(v[0]), views={0: [["transpose", 0, 1]]})
        fam.add(f"{op}_i64", op, {"diagonal": 0}, [ints(3, 3)], lambda v, f=f: f(v[0]))
    fam.add("movedim_one", "movedim", {"source": [0], "destination": [2]}, [randn(2, 3, 4)], lambda v: torch.movedim(v[0], 0, 2))
    fam.add("movedim_two", "movedim", {"source": [0, 1], "destination": [-1, 0]}, [randn(2, 3, 4)],
            lambda v: torch.movedim(v[0], (0, 1), (-1, 0)))
    for off, d1, d2 in [(0, 0, 1), (1, 0, 1), (-1, 0, 1), (0, 1, 2), (2, 2, 0), (5, 0, 1)]:
        fam.add(f"diagonal_o{off}_{d1}{d2}", "diagonal", {"offset": off, "dim1": d1, "dim2": d2}, [randn(3, 4, 5)],
                lambda v, o=off, a=d1, b=d2: torch.diagonal(v[0], o, a, b))
    fam.add("diagonal_transposed_f64", "diagonal", {"offset": 0, "dim1": -2, "dim2": -1}, [randn(2, 3, 3, dtype=F64)],
            lambda v: torch.diagonal(v[0], 0, -2, -1), views={0: [["transpose", 0, 2]]})
    fam.add("diag_embed", "diag_embed", {"offset": 0, "dim1": -2, "dim2": -1}, [randn(2, 3)], lambda v: torch.diag_embed(v[0]))
    fam.add("diag_embed_offset", "diag_embed", {"offset": 1, "dim1": 0, "dim2": 2}, [randn(2, 3)],
            lambda v: torch.diag_embed(v[0], 1, 0, 2))
    fam.add("select_neg", "select", {"dim": 1, "index": -1}, [randn(2, 3, 4)], lambda v: v[0].select(1, -1))
    fam.add("unbind_1", "unbind", {"dim": 0, "index": 1}, [randn(3, 4)], lambda v: torch.unbind(v[0], 0)[1])
    fam.add("unbind_transposed", "unbind", {"dim": 1, "index": 2}, [randn(4, 3)], lambda v: torch.unbind(v[0], 1)[2],
            views={0: [["transpose", 0, 1]]})
    return fam


# --------------------------------------------------------------------------------------------
# indexing
# --------------------------------------------------------------------------------------------

def perm_index(rows, cols, n):
    """An index of shape [rows, cols] with distinct values in 0..n per row."""
    return torch.stack([torch.randperm(n)[:cols] for _ in range(rows)])


def gen_indexing():
    fam = Family("indexing", 27)
    x, src = randn(3, 5), randn(3, 4)
    idx = perm_index(3, 4, 5)
    fam.add("scatter_dim1", "scatter", {"dim": 1}, [x, idx, src], lambda v: torch.scatter(v[0], 1, v[1], v[2]))
    fam.add("scatter_dim0_small_index", "scatter", {"dim": 0}, [randn(4, 3), perm_index(2, 2, 4).t().contiguous(), randn(3, 3)],
            lambda v: torch.scatter(v[0], 0, v[1], v[2]), grad=[True, False, False])
    fam.add("scatter_plain_f64", "scatter", {"dim": 1}, [randn(3, 5, dtype=F64), idx, randn(3, 4, dtype=F64)],
            lambda v: torch.scatter(v[0], 1, v[1], v[2]))
    fam.add("scatter_value", "scatter_value", {"dim": 1, "value": -2.5}, [x, idx], lambda v: torch.scatter(v[0], 1, v[1], -2.5))
    dup = torch.tensor([[0, 2, 0, 2], [1, 1, 1, 4], [3, 0, 3, 0]])
    vals = distinct(3, 4)
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        for inc in (True, False):
            fam.add(f"scatter_reduce_{reduce}_s{int(inc)}", "scatter_reduce", {"dim": 1, "reduce": reduce, "include_self": inc},
                    [distinct(3, 5) * 0.3 + 0.1, dup, vals],
                    lambda v, r=reduce, i=inc: torch.scatter_reduce(v[0], 1, v[1], v[2], r, include_self=i), tol=TOL_LOOSE)
    fam.add("scatter_reduce_prod_zero", "scatter_reduce", {"dim": 0, "reduce": "prod", "include_self": True},
            [torch.tensor([2.0, 0.0, 3.0]), torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0.0, 4.0, 5.0, 0.0, 0.0])],
            lambda v: torch.scatter_reduce(v[0], 0, v[1], v[2], "prod"), tol=TOL_LOOSE)
    fam.add("scatter_reduce_mean_f64", "scatter_reduce", {"dim": 1, "reduce": "mean", "include_self": False},
            [randn(3, 5, dtype=F64), dup, randn(3, 4, dtype=F64)],
            lambda v: torch.scatter_reduce(v[0], 1, v[1], v[2], "mean", include_self=False))
    t = randn(4, 5, 2)
    fam.add("index_one", "index", {}, [t, torch.tensor([3, 0, 3, -1])], lambda v: v[0][v[1]])
    fam.add("index_two_bcast", "index", {}, [t, torch.tensor([[0], [2]]), torch.tensor([1, 4, -5])], lambda v: v[0][v[1], v[2]])
    fam.add("index_transposed", "index", {}, [randn(5, 4), torch.tensor([1, 2])], lambda v: v[0][v[1]], views={0: [["transpose", 0, 1]]})
    fam.add("index_empty", "index", {}, [t, torch.zeros(0, dtype=I64)], lambda v: v[0][v[1]])
    fam.add("index_plain_f64", "index", {}, [randn(4, 3, dtype=F64), torch.tensor([2, 2, 0])], lambda v: v[0][v[1]])
    fam.add("index_put_set", "index_put", {"accumulate": False}, [randn(4, 3), torch.tensor([0, 2]), randn(2, 3)],
            lambda v: v[0].index_put((v[1],), v[2]))
    fam.add("index_put_bcast_values", "index_put", {"accumulate": False}, [randn(4, 3), torch.tensor([3, 1]), torch.tensor([0, 2]), randn(1)],
            lambda v: v[0].index_put((v[1], v[2]), v[3]))
    fam.add("index_put_accumulate_dups", "index_put", {"accumulate": True}, [randn(4, 3), torch.tensor([1, 1, 3, 1]), randn(4, 3)],
            lambda v: v[0].index_put((v[1],), v[2], accumulate=True))
    fam.add("index_put_plain_f64", "index_put", {"accumulate": True}, [randn(3, 2, dtype=F64), torch.tensor([2, 0]), torch.tensor([1, 1]),
            randn(2, dtype=F64)], lambda v: v[0].index_put((v[1], v[2]), v[3], accumulate=True))
    fam.add("index_copy", "index_copy", {"dim": 1}, [randn(3, 5), torch.tensor([4, 0, 2]), randn(3, 3)],
            lambda v: v[0].index_copy(1, v[1], v[2]))
    fam.add("index_fill", "index_fill", {"dim": 0, "value": 7.5}, [randn(4, 3), torch.tensor([1, 3])],
            lambda v: v[0].index_fill(0, v[1], 7.5))
    fam.add("index_add_scaled", "index_add_scaled", {"dim": 0, "alpha": -2.0}, [randn(4, 3), torch.tensor([1, 3, 1]), randn(3, 3)],
            lambda v: v[0].index_add(0, v[1], v[2], alpha=-2.0))
    fam.add("masked_select_bcast", "masked_select", {}, [randn(3, 4), bools(1, 4)], lambda v: torch.masked_select(v[0], v[1]))
    fam.add("masked_select_transposed", "masked_select", {}, [randn(4, 3), bools(3, 4)], lambda v: torch.masked_select(v[0], v[1]),
            views={0: [["transpose", 0, 1]]})
    fam.add("masked_select_plain_f64", "masked_select", {}, [randn(2, 3, dtype=F64), bools(2, 3)], lambda v: torch.masked_select(v[0], v[1]))
    fam.add("take_along_dim_1", "take_along_dim", {"dim": 1}, [randn(3, 4), torch.randint(0, 4, (3, 2))],
            lambda v: torch.take_along_dim(v[0], v[1], 1))
    fam.add("take_along_dim_bcast", "take_along_dim", {"dim": 0}, [randn(4, 1), torch.randint(0, 4, (2, 3))],
            lambda v: torch.take_along_dim(v[0], v[1], 0))
    fam.add("take_along_dim_flat", "take_along_dim", {"dim": None}, [randn(3, 4), torch.tensor([11, 0, 5])],
            lambda v: torch.take_along_dim(v[0], v[1]))
    return fam


# --------------------------------------------------------------------------------------------
# convolution, pooling, interpolation
# --------------------------------------------------------------------------------------------

def gen_conv():
    fam = Family("conv", 28)
    tol = TOL_LOOSE
    for tag, (s, p, d, g) in {"plain": (1, 0, 1, 1), "stride2_pad1": (2, 1, 1, 1), "dilated": (1, 2, 2, 1), "groups": (1, 1, 1, 2)}.items():
        fam.add(f"conv1d_{tag}", "conv1d", {"stride": s, "padding": p, "dilation": d, "groups": g},
                [randn(2, 4, 9), randn(6, 4 // g, 3), randn(6)], lambda v, s=s, p=p, d=d, g=g: F.conv1d(v[0], v[1], v[2], s, p, d, g), tol=tol)
    fam.add("conv1d_unbatched_nobias", "conv1d", {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}, [randn(3, 7), randn(2, 3, 2)],
            lambda v: F.conv1d(v[0], v[1]), tol=tol)
    fam.add("conv1d_transposed_f64", "conv1d", {"stride": 1, "padding": 1, "dilation": 1, "groups": 1},
            [randn(2, 5, 3, dtype=F64), randn(4, 3, 3, dtype=F64)], lambda v: F.conv1d(v[0], v[1], padding=1),
            views={0: [["transpose", 1, 2]]})
    for k in (3, 4):
        for d in (1, 2):
            fam.add(f"conv2d_same_k{k}_d{d}", "conv2d_with", {"padding": "same", "dilation": [d, d], "stride": [1, 1], "groups": 1, "mode": "zeros"},
                    [randn(1, 2, 6, 5), randn(3, 2, k, k), randn(3)], lambda v, d=d: F.conv2d(v[0], v[1], v[2], padding="same", dilation=d), tol=tol)
    fam.add("conv1d_same_even", "conv1d_with", {"padding": "same", "dilation": [1], "stride": [1], "groups": 1, "mode": "zeros"},
            [randn(2, 3, 7), randn(2, 3, 4)], lambda v: F.conv1d(v[0], v[1], padding="same"), tol=tol)
    fam.add("conv2d_valid", "conv2d_with", {"padding": "valid", "dilation": [1, 1], "stride": [2, 1], "groups": 1, "mode": "zeros"},
            [randn(1, 2, 6, 5), randn(3, 2, 3, 2)], lambda v: F.conv2d(v[0], v[1], stride=(2, 1), padding="valid"), tol=tol)
    for mode in ("reflect", "replicate", "circular"):
        conv = torch.nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode)
        w, b = randn(3, 2, 3, 3), randn(3)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        fam.add(f"conv2d_mode_{mode}", "conv2d_with", {"padding": [1, 2], "dilation": [1, 1], "stride": [1, 1], "groups": 1, "mode": mode},
                [randn(2, 2, 5, 6), w, b],
                lambda v, m=mode: F.conv2d(F.pad(v[0], (2, 2, 1, 1), mode=m), v[1], v[2]), tol=tol)
    for tag, (s, p, op_, g, d) in {"plain": ((1, 1), (0, 0), (0, 0), 1, (1, 1)), "stride2": ((2, 2), (1, 1), (1, 1), 1, (1, 1)),
                                   "groups_dilation": ((2, 1), (0, 1), (1, 0), 2, (2, 1)), "asym": ((3, 2), (1, 0), (2, 1), 1, (1, 2))}.items():
        fam.add(f"conv_transpose2d_{tag}", "conv_transpose2d",
                {"stride": list(s), "padding": list(p), "output_padding": list(op_), "groups": g, "dilation": list(d)},
                [randn(2, 4, 3, 4), randn(4, 6 // g, 3, 2), randn(6)],
                lambda v, s=s, p=p, op_=op_, g=g, d=d: F.conv_transpose2d(v[0], v[1], v[2], s, p, op_, g, d), tol=tol)
    fam.add("conv_transpose2d_f64", "conv_transpose2d", {"stride": [2, 2], "padding": [1, 0], "output_padding": [1, 0], "groups": 1, "dilation": [1, 1]},
            [randn(1, 2, 3, 3, dtype=F64), randn(2, 3, 3, 3, dtype=F64)], lambda v: F.conv_transpose2d(v[0], v[1], None, 2, (1, 0), (1, 0)))
    fam.add("conv_transpose1d", "conv_transpose1d", {"stride": 2, "padding": 1, "output_padding": 1, "groups": 1, "dilation": 1},
            [randn(2, 3, 5), randn(3, 2, 4), randn(2)], lambda v: F.conv_transpose1d(v[0], v[1], v[2], 2, 1, 1), tol=tol)
    for tag, (k, d, p, s) in {"plain": ((2, 2), (1, 1), (0, 0), (1, 1)), "strided": ((3, 2), (1, 2), (1, 0), (2, 1))}.items():
        fam.add(f"unfold_{tag}", "unfold", {"kernel_size": list(k), "dilation": list(d), "padding": list(p), "stride": list(s)},
                [randn(2, 3, 5, 6)], lambda v, k=k, d=d, p=p, s=s: F.unfold(v[0], k, d, p, s))
        x = F.unfold(randn(2, 3, 5, 6), k, d, p, s)
        fam.add(f"fold_{tag}", "fold", {"output_size": [5, 6], "kernel_size": list(k), "dilation": list(d), "padding": list(p), "stride": list(s)},
                [randn(*x.shape)], lambda v, k=k, d=d, p=p, s=s: F.fold(v[0], (5, 6), k, d, p, s), tol=tol)
    fam.add("unfold_f64", "unfold", {"kernel_size": [2, 3], "dilation": [1, 1], "padding": [1, 1], "stride": [1, 2]},
            [randn(1, 2, 4, 4, dtype=F64)], lambda v: F.unfold(v[0], (2, 3), 1, 1, (1, 2)))
    return fam


def gen_pool():
    fam = Family("pool", 29)
    x = lambda *s, dtype=F32: distinct(*s, dtype=dtype)  # noqa: E731  (no ties: max gradients are unambiguous)
    cases = {
        "ceil": dict(kernel_size=[3, 3], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=True),
        "dilated": dict(kernel_size=[2, 3], stride=[1, 2], padding=[1, 1], dilation=[2, 2], ceil_mode=False),
        "dilated_ceil": dict(kernel_size=[3, 2], stride=[2, 3], padding=[1, 0], dilation=[2, 1], ceil_mode=True),
        "plain": dict(kernel_size=[2, 2], stride=[2, 2], padding=[0, 0], dilation=[1, 1], ceil_mode=False),
    }
    for tag, o in cases.items():
        for idx in (0, 1):
            fam.add(f"max_pool2d_{tag}_i{idx}", "max_pool2d_with", dict(o, index=idx), [x(2, 2, 7, 8)],
                    lambda v, o=o, idx=idx: F.max_pool2d(v[0], o["kernel_size"], o["stride"], o["padding"], o["dilation"], o["ceil_mode"], True)[idx])
    fam.add("max_pool2d_unbatched_f64", "max_pool2d_with", dict(cases["dilated_ceil"], index=0), [x(2, 6, 5, dtype=F64)],
            lambda v: F.max_pool2d(v[0], (3, 2), (2, 3), (1, 0), (2, 1), True))
    fam.add("max_pool2d_transposed", "max_pool2d_with", dict(cases["ceil"], index=0), [x(2, 1, 8, 7)],
            lambda v: F.max_pool2d(v[0], 3, 2, 0, 1, True), views={0: [["transpose", 2, 3]]})
    avg = {
        "ceil": dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=True, count_include_pad=True, divisor_override=None),
        "ceil_nopad_count": dict(kernel_size=[3, 2], stride=[2, 2], padding=[1, 1], ceil_mode=True, count_include_pad=False, divisor_override=None),
        "divisor": dict(kernel_size=[2, 3], stride=[1, 2], padding=[0, 1], ceil_mode=False, count_include_pad=True, divisor_override=4),
        "plain_exclude": dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=False, count_include_pad=False, divisor_override=None),
    }
    for tag, o in avg.items():
        fam.add(f"avg_pool2d_{tag}", "avg_pool2d_with", o, [randn(2, 2, 7, 8)],
                lambda v, o=o: F.avg_pool2d(v[0], o["kernel_size"], o["stride"], o["padding"], o["ceil_mode"], o["count_include_pad"], o["divisor_override"]))
    fam.add("avg_pool2d_ceil_f64", "avg_pool2d_with", avg["ceil_nopad_count"], [randn(1, 2, 5, 5, dtype=F64)],
            lambda v: F.avg_pool2d(v[0], (3, 2), 2, 1, True, False))
    for out in ([3, 2], [1, 1], [5, 7], [4, 9]):
        for idx in (0, 1):
            fam.add(f"adaptive_max_pool2d_{out[0]}x{out[1]}_i{idx}", "adaptive_max_pool2d", {"output_size": out, "index": idx}, [x(2, 2, 5, 7)],
                    lambda v, out=out, idx=idx: F.adaptive_max_pool2d(v[0], out, True)[idx])
    for idx in (0, 1):
        fam.add(f"max_pool1d_i{idx}", "max_pool1d_with", {"kernel_size": [3], "stride": [2], "padding": [1], "dilation": [2], "ceil_mode": True, "index": idx},
                [x(2, 3, 11)], lambda v, idx=idx: F.max_pool1d(v[0], 3, 2, 1, 2, True, True)[idx])
    fam.add("avg_pool1d", "avg_pool1d_with", {"kernel_size": [3], "stride": [2], "padding": [1], "ceil_mode": True, "count_include_pad": False,
            "divisor_override": None}, [randn(2, 3, 10)], lambda v: F.avg_pool1d(v[0], 3, 2, 1, True, False))
    interp = [
        ("nearest_size", dict(size=[5, 7], scale_factor=None, mode="nearest"), (2, 2, 3, 4)),
        ("nearest_scale", dict(size=None, scale_factor=[2.0, 1.5], mode="nearest"), (1, 2, 3, 4)),
        ("nearest_down", dict(size=[2, 3], scale_factor=None, mode="nearest"), (1, 2, 5, 7)),
        ("nearest_exact", dict(size=[5, 3], scale_factor=None, mode="nearest-exact"), (1, 2, 3, 4)),
        ("bilinear", dict(size=[5, 7], scale_factor=None, mode="bilinear", align_corners=False), (2, 2, 3, 4)),
        ("bilinear_align", dict(size=[5, 7], scale_factor=None, mode="bilinear", align_corners=True), (2, 2, 3, 4)),
        ("bilinear_scale", dict(size=None, scale_factor=[1.7, 0.6], mode="bilinear", align_corners=False), (1, 1, 4, 5)),
        ("bilinear_down", dict(size=[2, 3], scale_factor=None, mode="bilinear", align_corners=False), (1, 2, 5, 7)),
        ("linear_1d", dict(size=[9], scale_factor=None, mode="linear", align_corners=False), (2, 3, 4)),
        ("nearest_1d", dict(size=[6], scale_factor=None, mode="nearest"), (2, 3, 4)),
    ]
    for tag, o, shape in interp:
        kw = {k: v for k, v in o.items() if k != "align_corners" or o["mode"] in ("linear", "bilinear")}
        fam.add(f"interpolate_{tag}", "interpolate", dict(o, align_corners=o.get("align_corners", False)), [randn(*shape)],
                lambda v, kw=kw: F.interpolate(v[0], **kw), tol=TOL_LOOSE)
    fam.add("interpolate_bilinear_f64", "interpolate", dict(size=[4, 6], scale_factor=None, mode="bilinear", align_corners=False),
            [randn(1, 1, 3, 4, dtype=F64)], lambda v: F.interpolate(v[0], size=(4, 6), mode="bilinear", align_corners=False))
    return fam


# --------------------------------------------------------------------------------------------
# nn.functional on runtime tensors: norms and embeddings
# --------------------------------------------------------------------------------------------

def gen_functional():
    fam = Family("functional", 30)
    tol = (1e-5, 2e-6)
    x = randn(2, 3, 4, 5)
    fam.add("layer_norm_2dims", "layer_norm", {"normalized_shape": [4, 5], "eps": 1e-5, "affine": True},
            [x, randn(4, 5), randn(4, 5)], lambda v: F.layer_norm(v[0], (4, 5), v[1], v[2]), tol=tol)
    fam.add("layer_norm_no_affine_eps", "layer_norm", {"normalized_shape": [5], "eps": 1e-2, "affine": False},
            [x], lambda v: F.layer_norm(v[0], (5,), eps=1e-2), tol=tol)
    fam.add("layer_norm_transposed_f64", "layer_norm", {"normalized_shape": [3], "eps": 1e-5, "affine": True},
            [randn(3, 4, dtype=F64), randn(3, dtype=F64), randn(3, dtype=F64)], lambda v: F.layer_norm(v[0], (3,), v[1], v[2]),
            views={0: [["transpose", 0, 1]]})
    for g in (1, 3):
        fam.add(f"group_norm_g{g}", "group_norm", {"num_groups": g, "eps": 1e-5, "affine": True},
                [randn(2, 6, 3, 2), randn(6), randn(6)], lambda v, g=g: F.group_norm(v[0], g, v[1], v[2]), tol=tol)
    fam.add("group_norm_no_affine_3d", "group_norm", {"num_groups": 2, "eps": 1e-3, "affine": False},
            [randn(3, 4, 5)], lambda v: F.group_norm(v[0], 2, eps=1e-3), tol=tol)
    fam.add("group_norm_f64", "group_norm", {"num_groups": 2, "eps": 1e-5, "affine": True},
            [randn(2, 4, 3, dtype=F64), randn(4, dtype=F64), randn(4, dtype=F64)], lambda v: F.group_norm(v[0], 2, v[1], v[2]))
    fam.add("instance_norm_affine", "instance_norm", {"eps": 1e-5, "affine": True, "running": False},
            [randn(2, 3, 4, 5), randn(3), randn(3)], lambda v: F.instance_norm(v[0], weight=v[1], bias=v[2]), tol=tol)
    rm, rv = randn(3), torch.rand(3) + 0.5
    fam.add("instance_norm_eval_running", "instance_norm", {"eps": 1e-5, "affine": False, "running": True},
            [randn(2, 3, 6), rm, rv], lambda v: F.instance_norm(v[0], v[1], v[2], use_input_stats=False), grad=[True, False, False], tol=tol)
    fam.add("batch_norm_train_no_running", "batch_norm", {"eps": 1e-5, "affine": True, "running": False, "training": True, "momentum": 0.1},
            [randn(4, 3, 5), randn(3), randn(3)], lambda v: F.batch_norm(v[0], None, None, v[1], v[2], True), tol=tol)
    fam.add("batch_norm_eval", "batch_norm", {"eps": 1e-3, "affine": True, "running": True, "training": False, "momentum": 0.1},
            [randn(4, 3, 2, 2), randn(3), randn(3), rm, rv], lambda v: F.batch_norm(v[0], v[3], v[4], v[1], v[2], False, 0.1, 1e-3),
            grad=[True, True, True, False, False], tol=tol)
    fam.add("batch_norm_train_f64", "batch_norm", {"eps": 1e-5, "affine": False, "running": False, "training": True, "momentum": 0.1},
            [randn(5, 2, dtype=F64)], lambda v: F.batch_norm(v[0], None, None, training=True))
    for p, dim in [(2.0, 1), (1.0, 0), (3.0, -1)]:
        fam.add(f"normalize_p{p}_d{dim}", "normalize", {"p": p, "dim": dim, "eps": 1e-12}, [randn(3, 4)],
                lambda v, p=p, dim=dim: F.normalize(v[0], p, dim), tol=TOL_LOOSE)
    fam.add("normalize_zero_row", "normalize", {"p": 2.0, "dim": 1, "eps": 1e-6}, [torch.tensor([[0.0, 0.0], [3.0, 4.0]])],
            lambda v: F.normalize(v[0], 2.0, 1, 1e-6))
    w = randn(6, 4)
    ids = torch.tensor([[0, 2, 5], [2, 2, 1]])
    fam.add("embedding_plain", "embedding", {"padding_idx": None, "max_norm": None}, [ids, w], lambda v: F.embedding(v[0], v[1]))
    fam.add("embedding_padding", "embedding", {"padding_idx": 2, "max_norm": None}, [ids, w], lambda v: F.embedding(v[0], v[1], padding_idx=2))
    fam.add("embedding_padding_neg", "embedding", {"padding_idx": -1, "max_norm": None}, [ids, w], lambda v: F.embedding(v[0], v[1], padding_idx=-1))
    fam.add("embedding_max_norm", "embedding", {"padding_idx": None, "max_norm": 1.0}, [ids, randn(6, 4, scale=2.0)],
            lambda v: F.embedding(v[0], v[1].detach().clone(), max_norm=1.0), grad=[False, False])
    fam.add("one_hot", "one_hot", {"num_classes": 5}, [torch.tensor([[0, 3], [4, 1]])], lambda v: F.one_hot(v[0], 5))
    fam.add("one_hot_infer", "one_hot", {"num_classes": None}, [torch.tensor([2, 0, 1])], lambda v: F.one_hot(v[0]))
    bag_ids = torch.tensor([1, 2, 4, 5, 4, 3, 2, 0])
    offsets = torch.tensor([0, 3, 3, 6])
    for mode in ("sum", "mean", "max"):
        fam.add(f"embedding_bag_{mode}", "embedding_bag", {"mode": mode, "padding_idx": None, "weights": False, "offsets": True},
                [bag_ids, w, offsets], lambda v, m=mode: F.embedding_bag(v[0], v[1], v[2], mode=m))
        fam.add(f"embedding_bag_2d_{mode}", "embedding_bag", {"mode": mode, "padding_idx": 2, "weights": False, "offsets": False},
                [ids, w], lambda v, m=mode: F.embedding_bag(v[0], v[1], mode=m, padding_idx=2))
    fam.add("embedding_bag_weighted", "embedding_bag", {"mode": "sum", "padding_idx": None, "weights": True, "offsets": True},
            [bag_ids, w, offsets, randn(8)], lambda v: F.embedding_bag(v[0], v[1], v[2], mode="sum", per_sample_weights=v[3]))
    return fam


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------

def gen_losses():
    fam = Family("losses", 31)
    tol = (1e-5, 2e-6)
    for red in ("mean", "sum", "none"):
        x, t = randn(3, 4, scale=2.0), randn(3, 4, scale=2.0)
        for beta in (1.0, 0.5, 0.0):
            fam.add(f"smooth_l1_{red}_b{beta}", "smooth_l1_loss", {"reduction": red, "beta": beta}, [x, t],
                    lambda v, r=red, b=beta: F.smooth_l1_loss(v[0], v[1], reduction=r, beta=b), tol=tol)
        for delta in (1.0, 0.3):
            fam.add(f"huber_{red}_d{delta}", "huber_loss", {"reduction": red, "delta": delta}, [x, t],
                    lambda v, r=red, d=delta: F.huber_loss(v[0], v[1], reduction=r, delta=d), tol=tol)
        logp = torch.log_softmax(randn(3, 5), 1)
        p = torch.softmax(randn(3, 5), 1)
        for kl_red in (["batchmean"] if red == "mean" else []) + [red]:
            fam.add(f"kl_div_{kl_red}", "kl_div", {"reduction": kl_red, "log_target": False}, [logp, p],
                    lambda v, r=kl_red: F.kl_div(v[0], v[1], reduction=r), tol=tol)
            fam.add(f"kl_div_{kl_red}_log_target", "kl_div", {"reduction": kl_red, "log_target": True}, [logp, torch.log(p)],
                    lambda v, r=kl_red: F.kl_div(v[0], v[1], reduction=r, log_target=True), tol=tol)
        a, b = randn(4, 6), randn(4, 6)
        y = torch.tensor([1.0, -1.0, -1.0, 1.0])
        for margin in (0.0, 0.3):
            fam.add(f"cosine_embedding_{red}_m{margin}", "cosine_embedding_loss", {"reduction": red, "margin": margin}, [a, b, y],
                    lambda v, r=red, m=margin: F.cosine_embedding_loss(v[0], v[1], v[2], margin=m, reduction=r), grad=[True, True, False], tol=tol)
        x1, x2, yr = randn(6), randn(6), torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
        fam.add(f"margin_ranking_{red}", "margin_ranking_loss", {"reduction": red, "margin": 0.25}, [x1, x2, yr],
                lambda v, r=red: F.margin_ranking_loss(v[0], v[1], v[2], margin=0.25, reduction=r), grad=[True, True, False], tol=tol)
        for log_input, full in ((True, False), (False, False), (True, True)):
            inp = randn(3, 4) if log_input else uniform(3, 4, lo=0.1, hi=3.0)
            tgt = torch.randint(0, 6, (3, 4)).float()
            fam.add(f"poisson_nll_{red}_l{int(log_input)}_f{int(full)}", "poisson_nll_loss", {"reduction": red, "log_input": log_input, "full": full},
                    [inp, tgt], lambda v, r=red, li=log_input, fu=full: F.poisson_nll_loss(v[0], v[1], log_input=li, full=fu, reduction=r),
                    grad=[True, False], tol=tol)
        fam.add(f"soft_margin_{red}", "soft_margin_loss", {"reduction": red}, [randn(3, 4), torch.where(torch.rand(3, 4) < 0.5, -1.0, 1.0)],
                lambda v, r=red: F.soft_margin_loss(v[0], v[1], reduction=r), grad=[True, False], tol=tol)
        an, po, ne = randn(4, 5), randn(4, 5), randn(4, 5)
        for p_, swap in ((2.0, False), (1.0, True)):
            fam.add(f"triplet_{red}_p{p_}_s{int(swap)}", "triplet_margin_loss", {"reduction": red, "margin": 1.5, "p": p_, "swap": swap},
                    [an, po, ne], lambda v, r=red, p_=p_, sw=swap: F.triplet_margin_loss(v[0], v[1], v[2], margin=1.5, p=p_, swap=sw, reduction=r), tol=tol)
    fam.add("smooth_l1_f64", "smooth_l1_loss", {"reduction": "mean", "beta": 0.7}, [randn(3, 4, dtype=F64), randn(3, 4, dtype=F64)],
            lambda v: F.smooth_l1_loss(v[0], v[1], beta=0.7))
    fam.add("kl_div_zero_target", "kl_div", {"reduction": "sum", "log_target": False}, [torch.log_softmax(randn(2, 3), 1), torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])],
            lambda v: F.kl_div(v[0], v[1], reduction="sum"), grad=[True, False], tol=tol)
    for dim, eps in ((1, 1e-8), (0, 1e-8)):
        fam.add(f"cosine_similarity_d{dim}", "cosine_similarity", {"dim": dim, "eps": eps}, [randn(3, 4), randn(3, 4)],
                lambda v, d=dim, e=eps: F.cosine_similarity(v[0], v[1], d, e), tol=tol)
    fam.add("cosine_similarity_bcast", "cosine_similarity", {"dim": -1, "eps": 1e-8}, [randn(3, 1, 4), randn(2, 4)],
            lambda v: F.cosine_similarity(v[0], v[1], -1), tol=tol)
    fam.add("cosine_similarity_small_norm", "cosine_similarity", {"dim": 1, "eps": 0.5}, [randn(2, 3, scale=0.1), randn(2, 3)],
            lambda v: F.cosine_similarity(v[0], v[1], 1, 0.5), tol=tol)
    fam.add("pairwise_distance", "pairwise_distance", {"p": 2.0, "eps": 1e-6, "keepdim": False}, [randn(4, 3), randn(4, 3)],
            lambda v: F.pairwise_distance(v[0], v[1]), tol=tol)
    fam.add("pairwise_distance_p1_keep", "pairwise_distance", {"p": 1.0, "eps": 1e-6, "keepdim": True}, [randn(4, 3), randn(1, 3)],
            lambda v: F.pairwise_distance(v[0], v[1], 1.0, keepdim=True), tol=tol)
    return fam

FAMILIES = {
    "edge": gen_edge,
    "dtypes": gen_dtypes,
    "math": gen_math,
    "activations": gen_activations,
    "scans": gen_scans,
    "products": gen_products,
    "shape": gen_shape,
    "indexing": gen_indexing,
    "conv": gen_conv,
    "pool": gen_pool,
    "functional": gen_functional,
    "losses": gen_losses,
}


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(FAMILIES)
    for name in names:
        fam = FAMILIES[name]()
        path = fam.save()
        print(f"{name}: {len(fam.cases)} cases, {os.path.getsize(path)} bytes -> {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
