//! Inference-time rewrites: dropout removal and folding per-channel affine layers (batch norm
//! in eval mode is one: `y * scale + shift` with constant `scale` and `shift`) into the weight
//! and bias of the preceding conv or linear layer.
//!
//! These passes only restructure the graph so that the folded weights are *constant
//! subgraphs* (made of parameters and fills only, see [`const_nodes`]); the runtime's freezing
//! step then evaluates those subgraphs once with the parameter values and replaces each by a
//! new parameter.

use super::{dce, fill_value, rewrite, users, Rewriter};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, Op};
use crate::shape::{Dim, Shape};

/// Dropout in eval mode: `x * dropout_mask(x)` becomes `x`; any other use of a mask becomes a
/// fill of ones.
pub fn remove_dropout(g: &Graph) -> Graph {
    let out = rewrite(g, |rw, i| {
        let n = &rw.old.nodes[i];
        match &n.op {
            Op::Binary(BinaryOp::Mul) => {
                let ins = rw.inputs(i);
                let is_mask = |id: NodeId| matches!(rw.new.nodes[id].op, Op::DropoutMask { .. });
                let other = if is_mask(ins[1]) { ins[0] } else if is_mask(ins[0]) { ins[1] } else { return None };
                (rw.new.shape(other) == &n.shape).then_some(other)
            }
            Op::DropoutMask { .. } if n.shape.numel().is_some() => {
                let s = n.shape.clone();
                Some(rw.add_shaped(Op::Fill { value: 1.0, shape: s.clone() }, &[], &[], s, &n.label))
            }
            _ => None,
        }
    });
    dce(&out)
}

/// Nodes whose value depends only on parameters and fills (and so can be computed once, given
/// the parameter values).
pub fn const_nodes(g: &Graph) -> Vec<bool> {
    let mut c = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        c[i] = match n.op {
            Op::Param { .. } | Op::Fill { .. } => true,
            Op::Input { .. } | Op::DropoutMask { .. } | Op::Call { .. } | Op::CallBackward { .. } => false,
            _ => !n.inputs.is_empty() && n.inputs.iter().chain(&n.shape_of).all(|&a| c[a]),
        };
    }
    c
}

/// Folds constant per-channel scales and shifts that follow a conv or a matmul into its
/// weight and bias:
///
/// - `conv(x, w, b) * s` is `conv(x, w * s', b * s'')` and `conv(x, w, b) + t` is
///   `conv(x, w, b + t'')`, where `s`, `t` are constant and vary only along the channel dim
///   (`[C, 1, 1]`, `[1, C, 1, 1]` or scalar-like) and `'`/`''` reshape them to `[C, 1, 1, 1]`/`[C]`;
/// - `(x @ w) * s` is `x @ (w * s)` for a constant 2-D `w` and a constant `s` that varies only
///   along the last dim;
/// - `(y + b) * s` is `y * s + b * s`, and `(y + b) + t` is `y + (b + t)` for constants `b`,
///   `s`, `t`, so the rules above reach through a linear layer's bias.
///
/// The intermediate values must have no other users. Repeats until nothing changes; the
/// folded weights are constant subgraphs for the runtime to evaluate.
pub fn fold_affine(g: &Graph) -> Graph {
    let mut cur = dce(g);
    for _ in 0..=g.nodes.len() {
        let next = dce(&fold_affine_once(&cur));
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// The size along which `s` varies when broadcast against `out` at axis `axis` (counted in
/// `out`), if it varies along no other axis: `Some(1)` for scalar-like, `Some(C)` per channel.
fn per_axis(s: &Shape, out: &Shape, axis: usize) -> Option<usize> {
    if s.rank() > out.rank() {
        return None;
    }
    let lead = out.rank() - s.rank();
    let mut size = 1;
    for (k, d) in s.0.iter().enumerate() {
        let n = d.known()?;
        if n == 1 {
            continue;
        }
        if lead + k != axis || out.0[axis] != Dim::Known(n) {
            return None;
        }
        size = n;
    }
    Some(size)
}

fn fold_affine_once(g: &Graph) -> Graph {
    let c = const_nodes(g);
    let users = users(g);
    let single = |id: NodeId| users[id].len() == 1 && !g.outputs.contains(&id);
    let mut done = false;
    rewrite(g, |rw, i| {
        if done {
            return None;
        }
        let n = &rw.old.nodes[i];
        let Op::Binary(b @ (BinaryOp::Mul | BinaryOp::Add)) = n.op else { return None };
        let (l, r) = (n.inputs[0], n.inputs[1]);
        // `y op k` with constant k and a single-use y.
        let (y, k) = if c[r] && !c[l] {
            (l, r)
        } else if c[l] && !c[r] {
            (r, l)
        } else {
            return None;
        };
        if !single(y) || g.shape(y) != &n.shape {
            return None;
        }
        let label = n.label.clone();
        let res = match (&g.nodes[y].op, b) {
            (Op::Conv2d(_), _) => fold_into_conv(rw, y, k, b, &label),
            (Op::Matmul, BinaryOp::Mul) => fold_into_matmul(rw, y, k, &c, &label),
            (Op::Binary(BinaryOp::Add), _) => {
                // (y2 + b0) op k with constant b0
                let (l2, r2) = (g.nodes[y].inputs[0], g.nodes[y].inputs[1]);
                let (y2, b0) = if c[r2] && !c[l2] {
                    (l2, r2)
                } else if c[l2] && !c[r2] {
                    (r2, l2)
                } else {
                    return None;
                };
                // Only worth it when the scale or shift then reaches a conv or matmul.
                if g.shape(y2) != &n.shape || !single(y2) || !matches!(g.nodes[y2].op, Op::Conv2d(_) | Op::Matmul) {
                    return None;
                }
                let (ny2, nb0, nk) = (rw.map[y2], rw.map[b0], rw.map[k]);
                match b {
                    BinaryOp::Mul => {
                        let scaled = rw.add(Op::Binary(BinaryOp::Mul), &[ny2, nk], &label)?;
                        let bias = rw.add(Op::Binary(BinaryOp::Mul), &[nb0, nk], &label)?;
                        rw.add(Op::Binary(BinaryOp::Add), &[scaled, bias], &label)
                    }
                    _ => {
                        let bias = rw.add(Op::Binary(BinaryOp::Add), &[nb0, nk], &label)?;
                        rw.add(Op::Binary(BinaryOp::Add), &[ny2, bias], &label)
                    }
                }
            }
            _ => None,
        };
        let res = res.filter(|&id| rw.new.shape(id) == &rw.old.nodes[i].shape);
        if res.is_some() {
            // One rewrite per round: use counts change with each.
            done = true;
        }
        res
    })
}

/// Reshapes constant `k` (already in the new graph) to `shape` if it is not that shape.
fn reshape_to(rw: &mut Rewriter, k: NodeId, shape: Shape, label: &str) -> Option<NodeId> {
    if rw.new.shape(k) == &shape {
        return Some(k);
    }
    rw.add(Op::Reshape { shape }, &[k], label)
}

fn fold_into_conv(rw: &mut Rewriter, conv: NodeId, k: NodeId, b: BinaryOp, label: &str) -> Option<NodeId> {
    let node = rw.old.nodes[conv].clone();
    let Op::Conv2d(geom) = node.op else { return None };
    let out = &node.shape;
    let channels = out.0[1].known()?;
    let size = per_axis(rw.old.shape(k), out, 1)?;
    let (x, w) = (rw.map[node.inputs[0]], rw.map[node.inputs[1]]);
    let bias = node.inputs.get(2).map(|&b| rw.map[b]);
    let kk = rw.map[k];
    let k1 = reshape_to(rw, kk, Shape(vec![Dim::Known(size)]), label)?;
    let channel_bias = |rw: &mut Rewriter, v: NodeId| -> Option<NodeId> {
        if size == channels {
            Some(v)
        } else {
            rw.add(Op::Expand { shape: Shape(vec![Dim::Known(channels)]) }, &[v], label)
        }
    };
    let (w2, b2) = match b {
        BinaryOp::Mul => {
            let k4 = reshape_to(rw, kk, Shape(vec![Dim::Known(size), Dim::Known(1), Dim::Known(1), Dim::Known(1)]), label)?;
            let w2 = rw.add(Op::Binary(BinaryOp::Mul), &[w, k4], label)?;
            let b2 = match bias {
                Some(bb) => Some(rw.add(Op::Binary(BinaryOp::Mul), &[bb, k1], label)?),
                None => None,
            };
            (w2, b2)
        }
        _ => {
            let b2 = match bias {
                Some(bb) => rw.add(Op::Binary(BinaryOp::Add), &[bb, k1], label)?,
                None => channel_bias(rw, k1)?,
            };
            (w, Some(b2))
        }
    };
    let mut ins = vec![x, w2];
    ins.extend(b2);
    rw.add(Op::Conv2d(geom), &ins, &node.label)
}

fn fold_into_matmul(rw: &mut Rewriter, mm: NodeId, k: NodeId, c: &[bool], label: &str) -> Option<NodeId> {
    let node = rw.old.nodes[mm].clone();
    let (xa, wa) = (node.inputs[0], node.inputs[1]);
    let ws = rw.old.shape(wa).clone();
    if ws.rank() != 2 || !c[wa] {
        return None;
    }
    let out = &node.shape;
    let size = per_axis(rw.old.shape(k), out, out.rank() - 1)?;
    let kk = rw.map[k];
    let k1 = reshape_to(rw, kk, Shape(vec![Dim::Known(size)]), label)?;
    let (nx, nw) = (rw.map[xa], rw.map[wa]);
    let w2 = rw.add(Op::Binary(BinaryOp::Mul), &[nw, k1], label)?;
    if rw.new.shape(w2) != &ws {
        return None;
    }
    rw.add(Op::Matmul, &[nx, w2], &node.label)
}

/// Whether `id` is a fill of exactly `v`.
pub fn is_fill_of(g: &Graph, id: NodeId, v: f64) -> bool {
    fill_value(g, id) == Some(v)
}
