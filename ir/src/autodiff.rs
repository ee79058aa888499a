//! Reverse-mode autodiff as a pass: extends a forward graph with the nodes that compute the
//! gradient of its output with respect to its inputs and parameters.
//!
//! Each op's derivative rule is written once here, in IR ops. The `#[model]` macro emits Rust
//! for the result (the generated backward); the runtime interpreter can execute it directly.

use std::collections::BTreeSet;

use crate::graph::{Graph, Node, NodeId};
use crate::op::{BinaryOp, Op, ReduceOp, ScalarOp, UnaryOp};
use crate::shape::ShapeError;

/// A forward graph extended with its backward pass.
#[derive(Clone, Debug)]
pub struct Backward {
    /// Forward nodes `0..forward_len`, then the backward nodes.
    pub graph: Graph,
    pub forward_len: usize,
    /// The forward output being differentiated.
    pub forward_output: NodeId,
    /// The input node holding the gradient of the forward output.
    pub grad_output: NodeId,
    /// For each forward input and parameter (in graph order), the node holding its gradient,
    /// or `None` when the output does not depend on it (or inputs were not asked for).
    pub grads: Vec<(NodeId, Option<NodeId>)>,
    /// Which forward nodes gradients flow through.
    pub needs: Vec<bool>,
}

impl Backward {
    /// Forward nodes whose values the backward nodes read: what a training forward must save.
    pub fn saved(&self) -> BTreeSet<NodeId> {
        self.graph.nodes[self.forward_len..]
            .iter()
            .flat_map(|n| n.inputs.iter().copied())
            .filter(|&i| i < self.forward_len)
            .collect()
    }

    /// Forward nodes whose shapes (only) the backward nodes read.
    pub fn saved_shapes(&self) -> BTreeSet<NodeId> {
        self.graph.nodes[self.forward_len..]
            .iter()
            .flat_map(|n| n.shape_of.iter().copied())
            .filter(|&i| i < self.forward_len)
            .collect()
    }
}

/// Builds the backward pass of `forward`'s first output, with respect to its inputs and
/// parameters.
pub fn backward(forward: &Graph) -> Result<Backward, ShapeError> {
    backward_with(forward, true)
}

/// Like [`backward`]; with `inputs_need_grad` false only parameters get gradients, which
/// saves work (and saved tensors) when the inputs are data.
pub fn backward_with(forward: &Graph, inputs_need_grad: bool) -> Result<Backward, ShapeError> {
    let out = *forward.outputs.first().ok_or_else(|| ShapeError::new("the graph has no output"))?;
    let mut g = forward.clone();
    let n = forward.nodes.len();

    // Which nodes depend on an input or parameter (only those get gradients).
    let mut needs = vec![false; n];
    for (i, node) in forward.nodes.iter().enumerate() {
        needs[i] = match node.op {
            Op::Input { .. } => inputs_need_grad,
            // A nested model holds parameters the IR does not see.
            Op::Param { .. } | Op::Call { .. } => true,
            Op::DropoutMask { .. } | Op::Fill { .. } => false,
            _ => node.inputs.iter().any(|&j| needs[j]),
        };
    }
    // Embedding indices are integers: no gradient flows to them.
    for node in &forward.nodes {
        if let Op::Embedding = node.op {
            let idx = node.inputs[1];
            if matches!(forward.nodes[idx].op, Op::Input { .. }) {
                needs[idx] = false;
            }
        }
    }

    let grad_output = g.push(Node {
        op: Op::Input { name: "grad_output".into(), shape: forward.shape(out).clone() },
        inputs: vec![],
        shape_of: vec![],
        shape: forward.shape(out).clone(),
        label: "gradient of the output".into(),
    });
    let mut grad: Vec<Option<NodeId>> = vec![None; n];
    grad[out] = Some(grad_output);

    for i in (0..n).rev() {
        let Some(gi) = grad[i] else { continue };
        if !needs[i] {
            continue;
        }
        let node = forward.nodes[i].clone();
        let contributions = rule(&mut g, &node, i, gi, &needs)?;
        for (input, contribution) in contributions {
            if !needs[input] {
                continue;
            }
            grad[input] = Some(match grad[input] {
                None => contribution,
                Some(prev) => g.add(Op::Binary(BinaryOp::Add), &[prev, contribution], "accumulate")?,
            });
        }
    }

    let leaves: Vec<NodeId> = (0..n).filter(|&i| matches!(forward.nodes[i].op, Op::Input { .. } | Op::Param { .. })).collect();
    let grads: Vec<(NodeId, Option<NodeId>)> = leaves.iter().map(|&i| (i, if needs[i] { grad[i] } else { None })).collect();
    g.outputs = grads.iter().filter_map(|&(_, gi)| gi).collect();
    Ok(Backward { graph: g, forward_len: n, forward_output: out, grad_output, grads, needs })
}

/// The dims node `id` swaps, when it is a transpose of the last two dims of its input.
fn swapped_last_two(g: &Graph, id: NodeId) -> Option<(usize, usize)> {
    let Op::Transpose { dim0, dim1 } = g.nodes[id].op else { return None };
    let r = g.shape(id).rank();
    (r >= 2 && dim0.min(dim1) == r - 2 && dim0.max(dim1) == r - 1).then_some((dim0, dim1))
}

/// `grad` reduced to the shape of node `like` if broadcasting made it larger.
fn sum_to(g: &mut Graph, grad: NodeId, like: NodeId, label: &str) -> Result<NodeId, ShapeError> {
    let shape = g.shape(like);
    if g.shape(grad) == shape && !shape.is_unknown() {
        return Ok(grad);
    }
    g.add_with_shapes(Op::SumTo, &[grad], &[like], label)
}

/// The gradient contributions of one node: `(input node, gradient node)` pairs.
fn rule(g: &mut Graph, node: &Node, y: NodeId, gy: NodeId, needs: &[bool]) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
    let x = |k: usize| node.inputs[k];
    let label = format!("d {}", if node.label.is_empty() { node.op.name() } else { node.label.clone() });
    let l = label.as_str();
    Ok(match &node.op {
        Op::Input { .. } | Op::Param { .. } | Op::Fill { .. } | Op::DropoutMask { .. } => vec![],
        Op::Unary(u) => {
            let s = if u.grad_from_output() { y } else { x(0) };
            vec![(x(0), g.add(Op::UnaryBackward(*u), &[s, gy], l)?)]
        }
        Op::Binary(b) => {
            let (a, bb) = (x(0), x(1));
            let (sa, sb) = (a, bb);
            let mut out = Vec::new();
            match b {
                BinaryOp::Add | BinaryOp::Sub => {
                    if needs[a] {
                        out.push((a, sum_to(g, gy, sa, l)?));
                    }
                    if needs[bb] {
                        let gb = if *b == BinaryOp::Sub { g.add(Op::Unary(UnaryOp::Neg), &[gy], l)? } else { gy };
                        out.push((bb, sum_to(g, gb, sb, l)?));
                    }
                }
                BinaryOp::Mul => {
                    if needs[a] {
                        let t = g.add(Op::Binary(BinaryOp::Mul), &[gy, bb], l)?;
                        out.push((a, sum_to(g, t, sa, l)?));
                    }
                    if needs[bb] {
                        let t = g.add(Op::Binary(BinaryOp::Mul), &[gy, a], l)?;
                        out.push((bb, sum_to(g, t, sb, l)?));
                    }
                }
                BinaryOp::Div => {
                    let ga = g.add(Op::Binary(BinaryOp::Div), &[gy, bb], l)?;
                    if needs[a] {
                        out.push((a, sum_to(g, ga, sa, l)?));
                    }
                    if needs[bb] {
                        // -(g / b) * (a / b)
                        let q = g.add(Op::Binary(BinaryOp::Div), &[a, bb], l)?;
                        let t = g.add(Op::Binary(BinaryOp::Mul), &[ga, q], l)?;
                        let t = g.add(Op::Unary(UnaryOp::Neg), &[t], l)?;
                        out.push((bb, sum_to(g, t, sb, l)?));
                    }
                }
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    return Err(ShapeError::new(format!("{} has no static derivative rule yet; use the eager tape", b.method())))
                }
            }
            out
        }
        Op::Scalar { op, value } => {
            let c = *value;
            let gx = match op {
                ScalarOp::Add => gy,
                ScalarOp::Mul => g.add(Op::Scalar { op: ScalarOp::Mul, value: c }, &[gy], l)?,
                ScalarOp::RSub => g.add(Op::Unary(UnaryOp::Neg), &[gy], l)?,
                ScalarOp::Pow => {
                    let p = g.add(Op::Scalar { op: ScalarOp::Pow, value: c - 1.0 }, &[x(0)], l)?;
                    let p = g.add(Op::Scalar { op: ScalarOp::Mul, value: c }, &[p], l)?;
                    g.add(Op::Binary(BinaryOp::Mul), &[gy, p], l)?
                }
                ScalarOp::RDiv => {
                    let p = g.add(Op::Scalar { op: ScalarOp::Pow, value: -2.0 }, &[x(0)], l)?;
                    let p = g.add(Op::Scalar { op: ScalarOp::Mul, value: -c }, &[p], l)?;
                    g.add(Op::Binary(BinaryOp::Mul), &[gy, p], l)?
                }
            };
            vec![(x(0), gx)]
        }
        Op::Matmul => {
            let (a, b) = (x(0), x(1));
            let (sa, sb) = (g.shape(a).clone(), g.shape(b).clone());
            let unknown = sa.is_unknown() || sb.is_unknown();
            if !unknown && (sa.rank() < 2 || sb.rank() < 2) {
                return Err(ShapeError::new(format!("static backward of matmul needs operands of rank >= 2, got {sa} and {sb}")));
            }
            if unknown {
                return Err(ShapeError::new("static backward of matmul needs known ranks; apply matmul before calling nested models"));
            }
            let mut out = Vec::new();
            if needs[a] {
                let r = sb.rank();
                let bt = g.add(Op::Transpose { dim0: r - 2, dim1: r - 1 }, &[b], l)?;
                let t = g.add(Op::Matmul, &[gy, bt], l)?;
                out.push((a, sum_to(g, t, a, l)?));
            }
            if needs[b] {
                let r = sa.rank();
                let same_batch = sa.rank() == sb.rank() && sa.0[..r - 2] == sb.0[..r - 2];
                let t = match swapped_last_two(g, b) {
                    // B = Wᵀ (a Linear's weight): Aᵀ·gy is computed as (gyᵀ·A)ᵀ, which the
                    // transpose's rule unwraps, so W's gradient comes out contiguous instead
                    // of as a transposed view the optimizer would copy element by element.
                    Some((d0, d1)) if same_batch => {
                        let gy_t = g.add(Op::Transpose { dim0: r - 2, dim1: r - 1 }, &[gy], l)?;
                        let w_grad = g.add(Op::Matmul, &[gy_t, a], l)?;
                        g.add(Op::Transpose { dim0: d0, dim1: d1 }, &[w_grad], l)?
                    }
                    _ => {
                        let at = g.add(Op::Transpose { dim0: r - 2, dim1: r - 1 }, &[a], l)?;
                        g.add(Op::Matmul, &[at, gy], l)?
                    }
                };
                out.push((b, sum_to(g, t, b, l)?));
            }
            out
        }
        Op::Transpose { dim0, dim1 } => match g.nodes[gy].op {
            // The gradient is itself a transpose over the same dims: its input is the answer.
            Op::Transpose { dim0: a, dim1: b } if (a, b) == (*dim0, *dim1) || (b, a) == (*dim0, *dim1) => vec![(x(0), g.nodes[gy].inputs[0])],
            _ => vec![(x(0), g.add(Op::Transpose { dim0: *dim0, dim1: *dim1 }, &[gy], l)?)],
        },
        Op::Permute { dims } => {
            let mut inverse = vec![0; dims.len()];
            for (i, &d) in dims.iter().enumerate() {
                inverse[d] = i;
            }
            vec![(x(0), g.add(Op::Permute { dims: inverse }, &[gy], l)?)]
        }
        Op::Reshape { .. } | Op::Flatten { .. } | Op::ReshapeAs => vec![(x(0), g.add_with_shapes(Op::ReshapeAs, &[gy], &[x(0)], l)?)],
        Op::Expand { .. } | Op::ExpandAs => vec![(x(0), sum_to(g, gy, x(0), l)?)],
        Op::SumTo => vec![(x(0), g.add_with_shapes(Op::ExpandAs, &[gy], &[x(0)], l)?)],
        Op::Reduce { op: op @ (ReduceOp::Sum | ReduceOp::Mean), dims, keepdim } => {
            let mean = *op == ReduceOp::Mean;
            vec![(x(0), g.add_with_shapes(Op::ReduceBackward { mean, dims: dims.clone(), keepdim: *keepdim }, &[gy], &[x(0)], l)?)]
        }
        Op::Reduce { op: ReduceOp::Max | ReduceOp::Min, dims, keepdim } => {
            vec![(x(0), g.add(Op::ReduceMaxBackward { dims: dims.clone(), keepdim: *keepdim }, &[x(0), y, gy], l)?)]
        }
        Op::Softmax { dim } => vec![(x(0), g.add(Op::SoftmaxBackward { dim: *dim }, &[y, gy], l)?)],
        Op::LogSoftmax { dim } => vec![(x(0), g.add(Op::LogSoftmaxBackward { dim: *dim }, &[y, gy], l)?)],
        Op::Conv2d(geom) => {
            let mut out = Vec::new();
            if needs[x(0)] {
                out.push((x(0), g.add_with_shapes(Op::Conv2dBackwardInput(*geom), &[gy, x(1)], &[x(0)], l)?));
            }
            if needs[x(1)] {
                out.push((x(1), g.add_with_shapes(Op::Conv2dBackwardWeight(*geom), &[gy, x(0)], &[x(1)], l)?));
            }
            if node.inputs.len() == 3 && needs[x(2)] {
                out.push((x(2), g.add(Op::Reduce { op: ReduceOp::Sum, dims: vec![0, 2, 3], keepdim: false }, &[gy], l)?));
            }
            out
        }
        Op::Pool2d { kind, geometry, count_include_pad } => {
            vec![(x(0), g.add(Op::Pool2dBackward { kind: *kind, geometry: *geometry, count_include_pad: *count_include_pad }, &[x(0), gy], l)?)]
        }
        Op::Embedding => vec![(x(0), g.add_with_shapes(Op::EmbeddingBackward, &[x(1), gy], &[x(0)], l)?)],
        Op::Concat { dim } => {
            let mut out = Vec::new();
            for (k, &inp) in node.inputs.iter().enumerate() {
                // The slice's offset and length are the inputs' sizes, read at run time.
                let mut like = vec![inp];
                like.extend(&node.inputs[..k]);
                out.push((inp, g.add_with_shapes(Op::ConcatBackward { dim: *dim }, &[gy], &like, l)?));
            }
            out
        }
        Op::Narrow { dim, start, .. } => {
            vec![(x(0), g.add_with_shapes(Op::NarrowBackward { dim: *dim, start: *start }, &[gy], &[x(0)], l)?)]
        }
        Op::Call { path, .. } => {
            vec![(x(0), g.add_with_shapes(Op::CallBackward { path: path.clone(), forward: y }, &[gy], &[x(0)], l)?)]
        }
        other => return Err(ShapeError::new(format!("{} is a backward op and has no derivative rule", other.name()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape;

    /// x:[B,4] -> relu(x @ W^T + b), the shape of a Linear layer.
    fn linear_relu() -> Graph {
        let mut g = Graph::new();
        let x = g.add(Op::Input { name: "x".into(), shape: shape!["B", 4] }, &[], "x").unwrap();
        let w = g.add(Op::Param { path: "fc.weight".into(), shape: shape![3, 4] }, &[], "").unwrap();
        let b = g.add(Op::Param { path: "fc.bias".into(), shape: shape![3] }, &[], "").unwrap();
        let wt = g.add(Op::Transpose { dim0: 0, dim1: 1 }, &[w], "fc").unwrap();
        let h = g.add(Op::Matmul, &[x, wt], "fc").unwrap();
        let h = g.add(Op::Binary(BinaryOp::Add), &[h, b], "fc").unwrap();
        let y = g.add(Op::Unary(UnaryOp::Relu), &[h], "relu").unwrap();
        g.outputs = vec![y];
        g
    }

    #[test]
    fn gradients_have_their_leaves_shapes() {
        let f = linear_relu();
        let bw = backward(&f).unwrap();
        assert_eq!(bw.grads.len(), 3);
        for (leaf, grad) in &bw.grads {
            assert_eq!(bw.graph.shape(grad.unwrap()), f.shape(*leaf), "{}", bw.graph);
        }
        // The bias gradient is the batch sum of the relu gradient.
        let gb = bw.grads[2].1.unwrap();
        assert!(matches!(bw.graph.nodes[gb].op, Op::SumTo));
    }

    #[test]
    fn data_inputs_skip_their_gradient_and_its_saved_tensors() {
        let f = linear_relu();
        let all = backward(&f).unwrap();
        let params_only = backward_with(&f, false).unwrap();
        assert!(params_only.grads[0].1.is_none());
        assert!(params_only.graph.nodes.len() < all.graph.nodes.len());
        // dX = g W needs W (through its transpose); without it only x is read for dW.
        assert!(all.saved().contains(&3));
        assert!(!params_only.saved().contains(&3));
    }

    #[test]
    fn saves_only_what_backward_reads() {
        let bw = backward(&linear_relu()).unwrap();
        let saved = bw.saved();
        // x, W^T (through W), the relu input and output; not the bias.
        assert!(saved.contains(&0));
        assert!(!saved.contains(&2), "bias is not needed by backward: {saved:?}");
    }
}
