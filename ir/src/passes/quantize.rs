//! The int8 rewrite of a frozen graph, in quantize/dequantize ("QDQ") form, and the clean-up
//! that keeps activations u8 between int8 layers.
//!
//! [`insert_int8`] replaces each chosen chain (a Linear or a convolution with its bias, folded
//! batch norm and ReLU) by one int8 op reading its input through an explicit
//! [`Op::Quantize`], with an f32 output. [`fold_qdq`] then removes the f32 round trips between
//! int8 ops: a quantization of an int8 layer's output becomes that layer's requantizing
//! epilogue, quantizations move up through the ops that commute with them (max pooling,
//! flattening), and `quantize(dequantize(q))` becomes `q` or one requantization. What is left
//! in f32 is exactly what has to be.

use std::collections::HashMap;

use super::{cse, dce, rewrite, users};
use crate::graph::{Graph, NodeId};
use crate::op::{Op, PoolKind, QLayerOp, QuantParams};
use crate::ShapeError;

/// One chain to replace: old node `node` (the chain's last node, whose value the int8 op
/// produces) becomes `op` applied to `input`, quantized to `quantize_input` first when given
/// (static quantization), else passed as f32 (dynamic quantization, embeddings).
#[derive(Clone, Debug)]
pub struct Replacement {
    pub node: NodeId,
    pub input: NodeId,
    pub op: Op,
    pub quantize_input: Option<QuantParams>,
}

/// The graph with each replacement made and the nodes only the replaced chains read removed.
///
/// # Errors
/// If a replacement's op does not give the replaced node's shape.
pub fn insert_int8(g: &Graph, replacements: &[Replacement]) -> Result<Graph, ShapeError> {
    let by_node: HashMap<NodeId, &Replacement> = replacements.iter().map(|r| (r.node, r)).collect();
    let mut failure = None;
    let out = rewrite(g, |rw, i| {
        let r = by_node.get(&i)?;
        let old = &rw.old.nodes[i];
        let mut x = rw.map[r.input];
        if let Some(p) = r.quantize_input {
            let shape = rw.new.nodes[x].shape.clone();
            x = rw.add_shaped(Op::Quantize(p), &[x], &[], shape, &old.label);
        }
        let (label, shape) = (old.label.clone(), old.shape.clone());
        match r.op.infer_shape(&[&rw.new.nodes[x].shape]) {
            Ok(s) if s == shape || shape.is_unknown() => {}
            Ok(s) => failure = Some(ShapeError::new(format!("int8 {} gives {s} where %{i} ({label}) is {shape}", r.op.name()))),
            Err(e) => failure = Some(e),
        }
        Some(rw.add_shaped(r.op.clone(), &[x], &[], shape, &label))
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(dce(&out)),
    }
}

/// Removes f32 round trips between int8 ops, to a fixed point (see the module docs). The
/// graph computes the same function: each rule only moves a quantization to where it is
/// exact (quantization is monotonic, so it commutes with max; it is elementwise, so with
/// flattening) or merges two roundings into the one the int8 epilogue already does.
pub fn fold_qdq(g: &Graph) -> Graph {
    let mut cur = dce(&cse(g));
    // Each round moves a quantization at least one node up or removes one; graphs are small.
    for _ in 0..cur.nodes.len().max(1) {
        let next = dce(&cse(&fold_once(&cur)));
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Whether a quantization commutes with the op: `quantize(op(y)) == op(quantize(y))`.
fn commutes_with_quantize(op: &Op) -> bool {
    matches!(op, Op::Pool2d { kind: PoolKind::Max, .. } | Op::Flatten { .. })
}

fn fold_once(g: &Graph) -> Graph {
    let users = users(g);
    let mut shape_ref = vec![false; g.nodes.len()];
    g.nodes.iter().flat_map(|n| &n.shape_of).for_each(|&a| shape_ref[a] = true);
    // Whether old node `a`'s value is read only by node `i` (so it may change form).
    let only_read_by = |a: NodeId, i: NodeId| users[a] == [i] && !shape_ref[a] && !g.outputs.contains(&a);
    rewrite(g, |rw, i| {
        let Op::Quantize(p) = rw.old.nodes[i].op else { return None };
        let a = rw.old.nodes[i].inputs[0];
        let producer = &rw.old.nodes[a];
        let shape = rw.old.nodes[i].shape.clone();
        let label = rw.old.nodes[i].label.clone();
        match &producer.op {
            Op::Dequantize(from) => {
                let q = rw.map[producer.inputs[0]];
                if *from == p {
                    Some(q)
                } else {
                    Some(rw.add_shaped(Op::Requantize { from: *from, to: p }, &[q], &[], shape, &label))
                }
            }
            Op::Requantize { from, .. } if only_read_by(a, i) => {
                let q = rw.map[producer.inputs[0]];
                Some(rw.add_shaped(Op::Requantize { from: *from, to: p }, &[q], &[], shape, &label))
            }
            Op::QLinear(l) if l.output.is_none() && only_read_by(a, i) => {
                let op = Op::QLinear(QLayerOp { output: Some(p), ..l.clone() });
                let x = rw.map[producer.inputs[0]];
                Some(rw.add_shaped(op, &[x], &[], shape, &producer.label))
            }
            Op::QConv2d { layer, kernel, geometry } if layer.output.is_none() && only_read_by(a, i) => {
                let op = Op::QConv2d { layer: QLayerOp { output: Some(p), ..layer.clone() }, kernel: *kernel, geometry: *geometry };
                let x = rw.map[producer.inputs[0]];
                Some(rw.add_shaped(op, &[x], &[], shape, &producer.label))
            }
            op if commutes_with_quantize(op) && only_read_by(a, i) => {
                let y = rw.map[producer.inputs[0]];
                let y_shape = rw.new.nodes[y].shape.clone();
                let q = rw.add_shaped(Op::Quantize(p), &[y], &[], y_shape, &label);
                Some(rw.add_shaped(op.clone(), &[q], &[], shape, &producer.label))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ConvGeometry, PoolGeometry, UnaryOp};
    use crate::passes::verify;
    use crate::shape;

    const P1: QuantParams = QuantParams { scale: 0.05, zero_point: 3 };
    const P2: QuantParams = QuantParams { scale: 0.1, zero_point: 0 };

    fn qlinear(layer: &str, out: usize, input: Option<QuantParams>) -> Op {
        Op::QLinear(QLayerOp { layer: layer.into(), out, relu: true, input, output: None })
    }

    /// x -> fc1 (Linear 8->6, relu) -> fc2 (6->4) as the frozen graph holds it.
    fn mlp() -> (Graph, NodeId, NodeId, NodeId) {
        let mut g = Graph::new();
        let x = g.add(Op::Input { name: "x".into(), shape: shape!["B", 8] }, &[], "x").unwrap();
        let w1 = g.add(Op::Param { path: "fc1.weight_t".into(), shape: shape![8, 6] }, &[], "").unwrap();
        let h = g.add(Op::Matmul, &[x, w1], "fc1").unwrap();
        let h = g.add(Op::Unary(UnaryOp::Relu), &[h], "fc1").unwrap();
        let w2 = g.add(Op::Param { path: "fc2.weight_t".into(), shape: shape![6, 4] }, &[], "").unwrap();
        let y = g.add(Op::Matmul, &[h, w2], "fc2").unwrap();
        g.outputs = vec![y];
        (g, x, h, y)
    }

    fn ops(g: &Graph) -> Vec<String> {
        g.nodes.iter().map(|n| n.op.name()).collect()
    }

    #[test]
    fn static_mlp_keeps_u8_between_layers() {
        let (g, x, h, y) = mlp();
        let reps = [
            Replacement { node: h, input: x, op: qlinear("fc1", 6, Some(P1)), quantize_input: Some(P1) },
            Replacement { node: y, input: h, op: qlinear("fc2", 4, Some(P2)), quantize_input: Some(P2) },
        ];
        let q = insert_int8(&g, &reps).unwrap();
        verify(&q).unwrap();
        // Both weights are gone (the layers hold them); fc1's output is quantized for fc2.
        assert_eq!(q.nodes.len(), 5, "{:?}", ops(&q));
        let folded = fold_qdq(&q);
        verify(&folded).unwrap();
        let Op::QLinear(fc1) = &folded.nodes[2].op else { panic!("{:?}", ops(&folded)) };
        assert_eq!(fc1.output, Some(P2), "fc1 requantizes to fc2's input parameters");
        assert!(matches!(&folded.nodes[3].op, Op::QLinear(l) if l.layer == "fc2" && l.output.is_none()));
        assert_eq!(folded.nodes.len(), 4, "{:?}", ops(&folded));
        assert_eq!(folded.shape(folded.outputs[0]), &shape!["B", 4]);
    }

    #[test]
    fn a_layer_output_read_in_f32_too_stays_f32() {
        let (mut g, x, h, y) = mlp();
        // The hidden value is also a graph output: fc1 must give f32.
        g.outputs.push(h);
        let reps = [
            Replacement { node: h, input: x, op: qlinear("fc1", 6, Some(P1)), quantize_input: Some(P1) },
            Replacement { node: y, input: h, op: qlinear("fc2", 4, Some(P2)), quantize_input: Some(P2) },
        ];
        let folded = fold_qdq(&insert_int8(&g, &reps).unwrap());
        let names = ops(&folded);
        assert!(names.iter().any(|n| n.starts_with("quantize")), "{names:?}");
        assert!(folded.nodes.iter().all(|n| !matches!(&n.op, Op::QLinear(l) if l.output.is_some())), "{names:?}");
    }

    #[test]
    fn quantization_moves_through_max_pool_and_flatten() {
        let mut g = Graph::new();
        let x = g.add(Op::Input { name: "x".into(), shape: shape!["B", 1, 8, 8] }, &[], "x").unwrap();
        let w = g.add(Op::Param { path: "conv.weight".into(), shape: shape![4, 1, 3, 3] }, &[], "").unwrap();
        let geometry = ConvGeometry { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
        let c = g.add(Op::Conv2d(geometry), &[x, w], "conv").unwrap();
        let pool = PoolGeometry { kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
        let p = g.add(Op::Pool2d { kind: PoolKind::Max, geometry: pool, count_include_pad: false }, &[c], "pool").unwrap();
        let f = g.add(Op::Flatten { start: 1 }, &[p], "flat").unwrap();
        let w2 = g.add(Op::Param { path: "fc.weight_t".into(), shape: shape![64, 10] }, &[], "").unwrap();
        let y = g.add(Op::Matmul, &[f, w2], "fc").unwrap();
        g.outputs = vec![y];
        let conv = Op::QConv2d { layer: QLayerOp { layer: "conv".into(), out: 4, relu: false, input: Some(P1), output: None }, kernel: [3, 3], geometry };
        let reps = [
            Replacement { node: c, input: x, op: conv, quantize_input: Some(P1) },
            Replacement { node: y, input: f, op: qlinear("fc", 10, Some(P2)), quantize_input: Some(P2) },
        ];
        let folded = fold_qdq(&insert_int8(&g, &reps).unwrap());
        verify(&folded).unwrap();
        let names = ops(&folded);
        assert_eq!(names.iter().filter(|n| n.starts_with("quantize")).count(), 1, "only the graph input is quantized: {names:?}");
        assert!(matches!(&folded.nodes[2].op, Op::QConv2d { layer, .. } if layer.output == Some(P2)), "{names:?}");
    }

    #[test]
    fn quantize_of_dequantize_cancels_or_requantizes() {
        let mut g = Graph::new();
        let x = g.add(Op::Input { name: "x".into(), shape: shape![3] }, &[], "x").unwrap();
        let q = g.add(Op::Quantize(P1), &[x], "").unwrap();
        let d = g.add(Op::Dequantize(P1), &[q], "").unwrap();
        let same = g.add(Op::Quantize(P1), &[d], "").unwrap();
        let other = g.add(Op::Quantize(P2), &[d], "").unwrap();
        let a = g.add(Op::Dequantize(P1), &[same], "").unwrap();
        let b = g.add(Op::Dequantize(P2), &[other], "").unwrap();
        g.outputs = vec![a, b];
        let folded = fold_qdq(&g);
        verify(&folded).unwrap();
        assert_eq!(ops(&folded), vec!["input x", "quantize s0.05 z3", "dequantize s0.05 z3", "requantize s0.05 z3 -> s0.1 z0", "dequantize s0.1 z0"]);
    }

    #[test]
    fn a_replacement_of_the_wrong_width_is_refused() {
        let (g, x, h, _) = mlp();
        let err = insert_int8(&g, &[Replacement { node: h, input: x, op: qlinear("fc1", 7, None), quantize_input: None }]).unwrap_err();
        assert!(err.message.contains("qlinear fc1"), "{}", err.message);
    }
}
