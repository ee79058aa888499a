//! Constant folding.
//!
//! - Subgraphs of `Fill`s fold to one `Fill` (a fill is one repeated value, so elementwise ops,
//!   movement and reductions of fills are fills).
//! - Identities: `x * 1`, `x + 0`, `x - 0`, `x / 1`, `x ** 1` become `x`. `x * 0` becomes a
//!   zero fill only with [`FoldOptions::assume_finite`] (for an infinite or NaN `x` it is NaN).
//! - A binary op with a fill operand that does not broadcast the other becomes a scalar op:
//!   `x * fill(3)` is `x * 3`, `fill(2) - x` is `2 - x`.
//! - Chains of scalar ops merge: `(x * 2) * 3` is `x * 6`, `(x + 1) + 2` is `x + 3`,
//!   `-(x * c)` is `x * -c`, `(c - x) + d` is `(c + d) - x`.
//!
//! Nodes are visited in order and see already-folded inputs, so whole chains fold in one run.

use super::{fill_value, rewrite, Rewriter};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, Op, ReduceOp, ScalarOp, UnaryOp};
use crate::shape::Shape;

/// What constant folding may assume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldOptions {
    /// Values are finite, so `x * 0` is `0` (the "fast math" assumption; off by default).
    pub assume_finite: bool,
}

/// Folds constants and merges scalar chains (run [`super::dce`] after it).
pub fn fold_constants(g: &Graph, opts: &FoldOptions) -> Graph {
    rewrite(g, |rw, i| fold_node(rw, i, opts))
}

fn known(s: &Shape) -> bool {
    s.0.iter().all(|d| d.known().is_some())
}

fn fill(rw: &mut Rewriter, value: f64, shape: &Shape, label: &str) -> NodeId {
    rw.add_shaped(Op::Fill { value, shape: shape.clone() }, &[], &[], shape.clone(), label)
}

fn fold_node(rw: &mut Rewriter, i: NodeId, opts: &FoldOptions) -> Option<NodeId> {
    let n = rw.old.nodes[i].clone();
    let ins = rw.inputs(i);
    let label = n.label.as_str();
    if matches!(n.op, Op::Input { .. } | Op::Param { .. } | Op::Fill { .. }) {
        return None;
    }
    // A computation on fills only is a fill.
    let vals: Option<Vec<f64>> = ins.iter().map(|&a| fill_value(&rw.new, a)).collect();
    if let Some(vals) = vals.filter(|v| !v.is_empty()) {
        if known(&n.shape) {
            let in_shapes: Vec<&Shape> = ins.iter().map(|&a| rw.new.shape(a)).collect();
            if let Some(v) = eval_const(&n.op, &vals, &in_shapes, &n.shape) {
                return Some(fill(rw, v, &n.shape, label));
            }
        }
    }
    match &n.op {
        Op::Scalar { op, value } => Some(emit_scalar(rw, ins[0], *op, *value, label, opts)),
        Op::Unary(UnaryOp::Neg) => match rw.new.nodes[ins[0]].op {
            Op::Scalar { op: ScalarOp::Mul, value } => {
                let y = rw.new.nodes[ins[0]].inputs[0];
                Some(emit_scalar(rw, y, ScalarOp::Mul, -value, label, opts))
            }
            _ => None,
        },
        Op::Binary(b) => {
            let (a, c) = (ins[0], ins[1]);
            let (fa, fc) = (fill_value(&rw.new, a), fill_value(&rw.new, c));
            // The fill must not broadcast the other operand up.
            let keeps = |x: NodeId| rw.new.shape(x) == &n.shape;
            match (b, fa, fc) {
                (BinaryOp::Add, Some(v), None) if keeps(c) => Some(emit_scalar(rw, c, ScalarOp::Add, v, label, opts)),
                (BinaryOp::Add, None, Some(v)) if keeps(a) => Some(emit_scalar(rw, a, ScalarOp::Add, v, label, opts)),
                (BinaryOp::Sub, None, Some(v)) if keeps(a) => Some(emit_scalar(rw, a, ScalarOp::Add, -v, label, opts)),
                (BinaryOp::Sub, Some(v), None) if keeps(c) => Some(emit_scalar(rw, c, ScalarOp::RSub, v, label, opts)),
                (BinaryOp::Mul, Some(v), None) if keeps(c) => Some(emit_scalar(rw, c, ScalarOp::Mul, v, label, opts)),
                (BinaryOp::Mul, None, Some(v)) if keeps(a) => Some(emit_scalar(rw, a, ScalarOp::Mul, v, label, opts)),
                (BinaryOp::Div, None, Some(v)) if keeps(a) && v == 1.0 => Some(a),
                // x / 2^k is exactly x * 2^-k; other divisors would round differently.
                (BinaryOp::Div, None, Some(v)) if keeps(a) && is_power_of_two(v) => Some(emit_scalar(rw, a, ScalarOp::Mul, 1.0 / v, label, opts)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_power_of_two(v: f64) -> bool {
    v != 0.0 && v.is_finite() && {
        let (m, _) = frexp(v.abs());
        m == 0.5
    }
}

/// Mantissa in [0.5, 1) and exponent.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(v * 2f64.powi(64));
        return (m, e - 64);
    }
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp - 1022)
}

/// `op(x, c)` with identities removed and scalar chains merged.
fn emit_scalar(rw: &mut Rewriter, x: NodeId, op: ScalarOp, c: f64, label: &str, opts: &FoldOptions) -> NodeId {
    match (op, c) {
        (ScalarOp::Mul, v) if v == 1.0 => return x,
        (ScalarOp::Add, v) if v == 0.0 => return x,
        (ScalarOp::Pow, v) if v == 1.0 => return x,
        (ScalarOp::Mul, v) if v == 0.0 && opts.assume_finite && known(rw.new.shape(x)) => {
            let s = rw.new.shape(x).clone();
            return fill(rw, 0.0, &s, label);
        }
        _ => {}
    }
    let inner = rw.new.nodes[x].clone();
    match (op, &inner.op) {
        (ScalarOp::Mul, Op::Scalar { op: ScalarOp::Mul, value }) => return emit_scalar(rw, inner.inputs[0], ScalarOp::Mul, value * c, label, opts),
        (ScalarOp::Add, Op::Scalar { op: ScalarOp::Add, value }) => return emit_scalar(rw, inner.inputs[0], ScalarOp::Add, value + c, label, opts),
        // (v - y) + c = (v + c) - y
        (ScalarOp::Add, Op::Scalar { op: ScalarOp::RSub, value }) => return emit_scalar(rw, inner.inputs[0], ScalarOp::RSub, value + c, label, opts),
        // (-y) * c = y * -c
        (ScalarOp::Mul, Op::Unary(UnaryOp::Neg)) => return emit_scalar(rw, inner.inputs[0], ScalarOp::Mul, -c, label, opts),
        // c - (-y) = y + c
        (ScalarOp::RSub, Op::Unary(UnaryOp::Neg)) => return emit_scalar(rw, inner.inputs[0], ScalarOp::Add, c, label, opts),
        _ => {}
    }
    if let Some(v) = fill_value(&rw.new, x) {
        let s = rw.new.shape(x).clone();
        if let Some(r) = eval_const(&Op::Scalar { op, value: c }, &[v], &[&s], &s) {
            return fill(rw, r, &s, label);
        }
    }
    rw.add(Op::Scalar { op, value: c }, &[x], label).expect("scalar ops keep their input's shape")
}

fn numel(s: &Shape) -> Option<f64> {
    s.numel().map(|n| n as f64)
}

/// The value of `op` applied to fills of `vals`, if it is a fill and computable here.
pub fn eval_const(op: &Op, vals: &[f64], ins: &[&Shape], out: &Shape) -> Option<f64> {
    let v = vals[0];
    Some(match op {
        Op::Unary(u) => unary_f64(*u, v)?,
        Op::Scalar { op, value: c } => match op {
            ScalarOp::Add => v + c,
            ScalarOp::Mul => v * c,
            ScalarOp::Pow => v.powf(*c),
            ScalarOp::RSub => c - v,
            ScalarOp::RDiv => c / v,
        },
        Op::Binary(b) => {
            let w = vals[1];
            match b {
                BinaryOp::Add => v + w,
                BinaryOp::Sub => v - w,
                BinaryOp::Mul => v * w,
                BinaryOp::Div => v / w,
                BinaryOp::Maximum | BinaryOp::Minimum if v.is_nan() || w.is_nan() => f64::NAN,
                BinaryOp::Maximum => v.max(w),
                BinaryOp::Minimum => v.min(w),
            }
        }
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Transpose { .. } | Op::Permute { .. } | Op::Expand { .. } | Op::ExpandAs | Op::ReshapeAs | Op::Narrow { .. } => v,
        Op::Concat { .. } if vals.iter().all(|&w| w.to_bits() == v.to_bits()) => v,
        Op::Reduce { op: ReduceOp::Sum, .. } | Op::SumTo => v * (numel(ins[0])? / numel(out)?),
        Op::Reduce { op: ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min, .. } if numel(ins[0])? > 0.0 => v,
        Op::ReduceBackward { mean: false, .. } => v,
        Op::ReduceBackward { mean: true, .. } => v / (numel(out)? / numel(ins[0])?),
        Op::Matmul => {
            let k = ins[0].0.last()?.known()? as f64;
            v * vals[1] * k
        }
        Op::Softmax { dim } => 1.0 / ins[0].0[*dim].known()? as f64,
        Op::LogSoftmax { dim } => -(ins[0].0[*dim].known()? as f64).ln(),
        _ => return None,
    })
}

/// A unary op on one f64, where it has an exact std implementation (not erf or gelu).
pub fn unary_f64(u: UnaryOp, x: f64) -> Option<f64> {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    Some(match u {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sig(x),
        UnaryOp::Relu => {
            if x <= 0.0 {
                0.0
            } else {
                x
            }
        }
        UnaryOp::Silu => x * sig(x),
        UnaryOp::Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        UnaryOp::Log1p => x.ln_1p(),
        UnaryOp::Square => x * x,
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Elu(a) => {
            if x > 0.0 {
                x
            } else {
                a * x.exp_m1()
            }
        }
        UnaryOp::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh()),
        UnaryOp::Gelu | UnaryOp::Erf => return None,
    })
}
