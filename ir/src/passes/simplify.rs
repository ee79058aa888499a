//! Algebraic simplification of movement and sign ops:
//!
//! - `transpose(transpose(x))` over the same pair of dims is `x`; `transpose(i, i)` is `x`;
//!   permutations compose, and an identity permutation is `x`.
//! - A reshape (`reshape`, `flatten`, `reshape_as`) of a reshape reshapes the original; a
//!   reshape, expand, `sum_to` or `expand_as` to the shape the value already has is the value.
//! - `-(-x)` is `x`, and `a + (-b)` is `a - b`.

use super::{rewrite, Rewriter};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, Op, UnaryOp};

/// The simplified graph (run [`super::dce`] after it).
pub fn simplify(g: &Graph) -> Graph {
    rewrite(g, simplify_node)
}

fn is_reshape(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. } | Op::Flatten { .. } | Op::ReshapeAs)
}

fn simplify_node(rw: &mut Rewriter, i: NodeId) -> Option<NodeId> {
    let n = rw.old.nodes[i].clone();
    let ins = rw.inputs(i);
    let Some(&x) = ins.first() else { return None };
    let inner = rw.new.nodes[x].clone();
    let same_shape = rw.new.shape(x) == &n.shape && !n.shape.is_unknown();
    match &n.op {
        Op::Unary(UnaryOp::Neg) => match inner.op {
            Op::Unary(UnaryOp::Neg) => Some(inner.inputs[0]),
            _ => None,
        },
        Op::Binary(BinaryOp::Add) => {
            // a + (-b) = a - b, (-a) + b = b - a
            let neg = |id: NodeId| match rw.new.nodes[id].op {
                Op::Unary(UnaryOp::Neg) => Some(rw.new.nodes[id].inputs[0]),
                _ => None,
            };
            let (a, b) = (ins[0], ins[1]);
            let pair = match (neg(a), neg(b)) {
                (_, Some(nb)) => Some((a, nb)),
                (Some(na), None) => Some((b, na)),
                _ => None,
            }?;
            rw.add(Op::Binary(BinaryOp::Sub), &[pair.0, pair.1], &n.label).filter(|&id| rw.new.shape(id) == &n.shape)
        }
        Op::Transpose { dim0, dim1 } => {
            if dim0 == dim1 {
                return Some(x);
            }
            match inner.op {
                Op::Transpose { dim0: a, dim1: b } if (a, b) == (*dim0, *dim1) || (b, a) == (*dim0, *dim1) => Some(inner.inputs[0]),
                _ => None,
            }
        }
        Op::Permute { dims } => {
            let composed: Vec<usize> = match &inner.op {
                // permute(permute(y, p), q)[i] = y dim p[q[i]]
                Op::Permute { dims: p } => dims.iter().map(|&q| p[q]).collect(),
                _ if dims.iter().enumerate().all(|(k, &d)| k == d) => return Some(x),
                _ => return None,
            };
            let y = inner.inputs[0];
            if composed.iter().enumerate().all(|(k, &d)| k == d) {
                return Some(y);
            }
            rw.add(Op::Permute { dims: composed }, &[y], &n.label)
        }
        op if is_reshape(op) => {
            if same_shape {
                return Some(x);
            }
            if !is_reshape(&inner.op) {
                return None;
            }
            let y = inner.inputs[0];
            if rw.new.shape(y) == &n.shape && !n.shape.is_unknown() {
                return Some(y);
            }
            match op {
                Op::Reshape { .. } => Some(rw.add_shaped(n.op.clone(), &[y], &[], n.shape.clone(), &n.label)),
                Op::ReshapeAs => {
                    let like: Vec<NodeId> = n.shape_of.iter().map(|&a| rw.map[a]).collect();
                    Some(rw.add_shaped(Op::ReshapeAs, &[y], &like, n.shape.clone(), &n.label))
                }
                // flatten(reshape(y)) is a reshape of y to the flattened shape (the run time
                // resolves one symbolic dim).
                _ if n.shape.0.iter().filter(|d| d.known().is_none()).count() <= 1 && !n.shape.is_unknown() => {
                    Some(rw.add_shaped(Op::Reshape { shape: n.shape.clone() }, &[y], &[], n.shape.clone(), &n.label))
                }
                _ => None,
            }
        }
        Op::Expand { .. } | Op::ExpandAs | Op::SumTo if same_shape => Some(x),
        _ => None,
    }
}
