//! Each IR pass on small graphs: node counts and structure before and after.

use tensorbrain_ir::autodiff::backward;
use tensorbrain_ir::op::ConvGeometry;
use tensorbrain_ir::passes::fusion::{fuse, program_of, FuseOptions, Instr, Kernel};
use tensorbrain_ir::passes::{self, const_nodes, cse, dce, fold_affine, fold_constants, optimize, remove_dropout, simplify, verify, FoldOptions};
use tensorbrain_ir::{shape, BinaryOp, Graph, NodeId, Op, ReduceOp, ScalarOp, Shape, UnaryOp};

/// A tiny graph builder for tests.
struct B(Graph);

impl B {
    fn new() -> B {
        B(Graph::new())
    }
    fn input(&mut self, name: &str, s: Shape) -> NodeId {
        self.0.add(Op::Input { name: name.into(), shape: s }, &[], name).unwrap()
    }
    fn param(&mut self, path: &str, s: Shape) -> NodeId {
        self.0.add(Op::Param { path: path.into(), shape: s }, &[], path).unwrap()
    }
    fn fill(&mut self, v: f64, s: Shape) -> NodeId {
        self.0.add(Op::Fill { value: v, shape: s }, &[], "").unwrap()
    }
    fn op(&mut self, op: Op, ins: &[NodeId]) -> NodeId {
        self.0.add(op, ins, "").unwrap()
    }
    fn un(&mut self, u: UnaryOp, x: NodeId) -> NodeId {
        self.op(Op::Unary(u), &[x])
    }
    fn bin(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
        self.op(Op::Binary(b), &[x, y])
    }
    fn sc(&mut self, op: ScalarOp, value: f64, x: NodeId) -> NodeId {
        self.op(Op::Scalar { op, value }, &[x])
    }
    fn done(mut self, outs: &[NodeId]) -> Graph {
        self.0.outputs = outs.to_vec();
        self.0
    }
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| pred(&n.op)).count()
}

fn out_op(g: &Graph) -> &Op {
    &g.nodes[g.outputs[0]].op
}

fn out_input(g: &Graph, k: usize) -> &Op {
    &g.nodes[g.nodes[g.outputs[0]].inputs[k]].op
}

/// x:[B,4] -> relu(x @ W^T + b)
fn linear_relu() -> Graph {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 4]);
    let w = b.param("fc.weight", shape![3, 4]);
    let bias = b.param("fc.bias", shape![3]);
    let wt = b.op(Op::Transpose { dim0: 0, dim1: 1 }, &[w]);
    let h = b.op(Op::Matmul, &[x, wt]);
    let h = b.bin(BinaryOp::Add, h, bias);
    let y = b.un(UnaryOp::Relu, h);
    b.done(&[y])
}

// ---- verify ----

#[test]
fn verify_accepts_forward_and_backward_graphs() {
    let g = linear_relu();
    verify(&g).unwrap();
    verify(&backward(&g).unwrap().graph).unwrap();
}

#[test]
fn verify_names_a_wrong_shape_and_a_forward_reference() {
    let mut g = linear_relu();
    g.nodes[5].shape = shape!["B", 7];
    let e = verify(&g).unwrap_err().message;
    assert!(e.contains("%5 = add") && e.contains("records shape [B, 7] but its inputs give [B, 3]"), "{e}");

    let mut g = linear_relu();
    g.nodes[4].inputs[0] = 6;
    let e = verify(&g).unwrap_err().message;
    assert!(e.contains("reads %6, which does not come before it"), "{e}");
}

// ---- dce ----

#[test]
fn dce_drops_unused_nodes_but_keeps_inputs() {
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let unused_in = b.input("unused", shape![2]);
    let p = b.param("p", shape![4]);
    let _dead = b.un(UnaryOp::Exp, p);
    let y = b.un(UnaryOp::Tanh, x);
    let g = b.done(&[y]);
    let d = dce(&g);
    assert_eq!(g.nodes.len(), 5);
    assert_eq!(d.nodes.len(), 3, "{d}");
    assert_eq!(d.inputs().len(), 2, "inputs stay: {d}");
    assert_eq!(count(&d, |o| matches!(o, Op::Param { .. } | Op::Unary(UnaryOp::Exp))), 0);
    assert!(matches!(out_op(&d), Op::Unary(UnaryOp::Tanh)));
    let _ = unused_in;
}

// ---- cse ----

#[test]
fn cse_merges_equal_nodes_and_commuted_adds_but_not_dropout() {
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let y = b.input("y", shape![4]);
    let e1 = b.un(UnaryOp::Exp, x);
    let e2 = b.un(UnaryOp::Exp, x);
    let a1 = b.bin(BinaryOp::Add, e1, y);
    let a2 = b.bin(BinaryOp::Add, y, e2);
    let s1 = b.bin(BinaryOp::Sub, e1, y);
    let s2 = b.bin(BinaryOp::Sub, y, e2);
    let m1 = b.op(Op::DropoutMask { p: 0.5 }, &[x]);
    let m2 = b.op(Op::DropoutMask { p: 0.5 }, &[x]);
    let t = b.bin(BinaryOp::Mul, a1, a2);
    let t = b.bin(BinaryOp::Mul, t, s1);
    let t = b.bin(BinaryOp::Mul, t, s2);
    let t = b.bin(BinaryOp::Mul, t, m1);
    let t = b.bin(BinaryOp::Mul, t, m2);
    let g = b.done(&[t]);
    let c = dce(&cse(&g));
    assert_eq!(count(&g, |o| matches!(o, Op::Unary(UnaryOp::Exp))), 2);
    assert_eq!(count(&c, |o| matches!(o, Op::Unary(UnaryOp::Exp))), 1, "{c}");
    assert_eq!(count(&c, |o| matches!(o, Op::Binary(BinaryOp::Add))), 1, "a+b and b+a merge: {c}");
    assert_eq!(count(&c, |o| matches!(o, Op::Binary(BinaryOp::Sub))), 2, "a-b and b-a do not: {c}");
    assert_eq!(count(&c, |o| matches!(o, Op::DropoutMask { .. })), 2, "random masks stay apart: {c}");
    verify(&c).unwrap();
}

// ---- constant folding ----

#[test]
fn fill_only_subgraphs_fold_to_one_fill() {
    let mut b = B::new();
    let x = b.input("x", shape![2, 3]);
    let two = b.fill(2.0, shape![2, 3]);
    let three = b.fill(3.0, shape![2, 3]);
    let s = b.bin(BinaryOp::Add, two, three); // 5
    let e = b.un(UnaryOp::Neg, s); // -5
    let m = b.op(Op::Reduce { op: ReduceOp::Sum, dims: vec![1], keepdim: true }, &[e]); // -15, [2,1]
    let y = b.bin(BinaryOp::Mul, x, m);
    let g = b.done(&[y]);
    let f = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(count(&f, |o| matches!(o, Op::Fill { .. })), 0, "the fill folded into a scalar op: {f}");
    assert_eq!(out_op(&f), &Op::Scalar { op: ScalarOp::Mul, value: -15.0 }, "{f}");
    assert_eq!(f.nodes.len(), 2);
}

#[test]
fn identities_fold_away() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 3]);
    let one = b.fill(1.0, shape![3]);
    let zero = b.fill(0.0, shape![]);
    let t = b.bin(BinaryOp::Mul, x, one);
    let t = b.bin(BinaryOp::Add, zero, t);
    let t = b.sc(ScalarOp::Mul, 1.0, t);
    let t = b.sc(ScalarOp::Add, 0.0, t);
    let t = b.bin(BinaryOp::Sub, t, zero);
    let t = b.bin(BinaryOp::Div, t, one);
    let t = b.sc(ScalarOp::Pow, 1.0, t);
    let y = b.un(UnaryOp::Exp, t);
    let g = b.done(&[y]);
    let f = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(f.nodes.len(), 2, "exp(x) is all that is left: {f}");
    assert_eq!(out_input(&f, 0), &Op::Input { name: "x".into(), shape: shape!["B", 3] });
}

#[test]
fn times_zero_folds_only_when_finite_is_assumed() {
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let zero = b.fill(0.0, shape![4]);
    let y = b.bin(BinaryOp::Mul, x, zero);
    let g = b.done(&[y]);
    let safe = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(out_op(&safe), &Op::Scalar { op: ScalarOp::Mul, value: 0.0 }, "inf * 0 is NaN, so x * 0 stays: {safe}");
    let fast = dce(&fold_constants(&g, &FoldOptions { assume_finite: true }));
    assert_eq!(out_op(&fast), &Op::Fill { value: 0.0, shape: shape![4] }, "{fast}");
}

#[test]
fn scalar_chains_merge() {
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let m = b.sc(ScalarOp::Mul, 2.0, x);
    let m = b.sc(ScalarOp::Mul, 3.0, m);
    let a = b.sc(ScalarOp::Add, 1.0, m);
    let a = b.sc(ScalarOp::Add, 2.0, a);
    let g = b.done(&[a]);
    let f = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(f.nodes.len(), 3, "{f}");
    assert_eq!(out_op(&f), &Op::Scalar { op: ScalarOp::Add, value: 3.0 });
    assert_eq!(out_input(&f, 0), &Op::Scalar { op: ScalarOp::Mul, value: 6.0 });

    // -(x * 2) * 0.5 is x * -1; (4 - x) + 1 is 5 - x.
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let m = b.sc(ScalarOp::Mul, 2.0, x);
    let n = b.un(UnaryOp::Neg, m);
    let h = b.sc(ScalarOp::Mul, 0.5, n);
    let r = b.sc(ScalarOp::RSub, 4.0, h);
    let r = b.sc(ScalarOp::Add, 1.0, r);
    let g = b.done(&[r]);
    let f = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(out_op(&f), &Op::Scalar { op: ScalarOp::RSub, value: 5.0 }, "{f}");
    assert_eq!(out_input(&f, 0), &Op::Scalar { op: ScalarOp::Mul, value: -1.0 }, "{f}");
}

#[test]
fn fills_become_scalar_ops_only_when_they_do_not_broadcast() {
    let mut b = B::new();
    let x = b.input("x", shape![4]);
    let c = b.fill(3.0, shape![2, 4]);
    let four = b.fill(4.0, shape![]);
    let three = b.fill(3.0, shape![]);
    let grown = b.bin(BinaryOp::Mul, x, c); // [2, 4]: must stay a binary op
    let q = b.bin(BinaryOp::Div, x, four); // exact: x * 0.25
    let r = b.bin(BinaryOp::Div, x, three); // not exact: stays a division
    let s = b.bin(BinaryOp::Sub, four, x); // 4 - x
    let t = b.bin(BinaryOp::Add, q, r);
    let t = b.bin(BinaryOp::Add, t, s);
    let y = b.bin(BinaryOp::Add, grown, t);
    let g = b.done(&[y]);
    let f = dce(&fold_constants(&g, &FoldOptions::default()));
    assert_eq!(count(&f, |o| matches!(o, Op::Binary(BinaryOp::Mul))), 1, "{f}");
    assert_eq!(count(&f, |o| matches!(o, Op::Binary(BinaryOp::Div))), 1, "{f}");
    assert_eq!(count(&f, |o| o == &Op::Scalar { op: ScalarOp::Mul, value: 0.25 }), 1, "{f}");
    assert_eq!(count(&f, |o| o == &Op::Scalar { op: ScalarOp::RSub, value: 4.0 }), 1, "{f}");
    verify(&f).unwrap();
}

// ---- algebraic simplification ----

#[test]
fn movement_and_sign_simplify() {
    let mut b = B::new();
    let x = b.input("x", shape![2, 3, 4]);
    let t = b.op(Op::Transpose { dim0: 0, dim1: 2 }, &[x]);
    let t = b.op(Op::Transpose { dim0: 2, dim1: 0 }, &[t]); // back to x
    let r = b.op(Op::Reshape { shape: shape![6, 4] }, &[t]);
    let r = b.op(Op::Reshape { shape: shape![24] }, &[r]); // one reshape of x
    let n = b.un(UnaryOp::Neg, r);
    let n = b.un(UnaryOp::Neg, n); // r
    let p = b.op(Op::Permute { dims: vec![1, 2, 0] }, &[x]);
    let p = b.op(Op::Permute { dims: vec![2, 0, 1] }, &[p]); // identity
    let pr = b.op(Op::Reshape { shape: shape![24] }, &[p]);
    let q = b.un(UnaryOp::Neg, pr);
    let y = b.bin(BinaryOp::Add, n, q); // n + (-pr) = n - pr
    let g = b.done(&[y]);
    let s = dce(&simplify(&g));
    assert_eq!(count(&s, |o| matches!(o, Op::Transpose { .. } | Op::Permute { .. })), 0, "{s}");
    assert_eq!(count(&s, |o| matches!(o, Op::Reshape { .. })), 2, "{s}");
    assert_eq!(count(&s, |o| matches!(o, Op::Unary(UnaryOp::Neg))), 0, "{s}");
    assert_eq!(out_op(&s), &Op::Binary(BinaryOp::Sub), "{s}");
    // With CSE the two reshapes of x are one.
    let c = dce(&cse(&s));
    assert_eq!(count(&c, |o| matches!(o, Op::Reshape { .. })), 1, "{c}");
    verify(&c).unwrap();
}

#[test]
fn transposes_of_different_dims_stay() {
    let mut b = B::new();
    let x = b.input("x", shape![2, 3, 4]);
    let t = b.op(Op::Transpose { dim0: 0, dim1: 1 }, &[x]);
    let t = b.op(Op::Transpose { dim0: 1, dim1: 2 }, &[t]);
    let g = b.done(&[t]);
    assert_eq!(dce(&simplify(&g)).nodes.len(), 3);
}

#[test]
fn optimize_shrinks_a_backward_graph_and_keeps_its_interface() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 4]);
    let w = b.param("w", shape![4, 4]);
    let h = b.op(Op::Matmul, &[x, w]);
    let s = b.un(UnaryOp::Sigmoid, h);
    let s = b.sc(ScalarOp::Mul, 2.0, s);
    let s = b.sc(ScalarOp::Mul, 0.5, s);
    let y = b.bin(BinaryOp::Sub, h, s);
    let y = b.op(Op::Reduce { op: ReduceOp::Mean, dims: vec![], keepdim: false }, &[y]);
    let g = b.done(&[y]);
    let bw = backward(&g).unwrap();
    let (o, report) = optimize(&bw.graph, &passes::Options::default()).unwrap();
    assert!(o.nodes.len() < bw.graph.nodes.len(), "{}\n->\n{o}", bw.graph);
    assert_eq!(o.outputs.len(), bw.graph.outputs.len());
    for (a, c) in bw.graph.outputs.iter().zip(&o.outputs) {
        assert_eq!(bw.graph.shape(*a), o.shape(*c));
    }
    // * 2 * 0.5 is gone in the forward and in its gradient.
    assert_eq!(count(&o, |op| matches!(op, Op::Scalar { op: ScalarOp::Mul, value } if *value == 2.0 || *value == 0.5)), 0, "{o}");
    assert!(!report.passes.is_empty());
}

// ---- freezing ----

#[test]
fn dropout_is_removed_in_eval() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 8]);
    let m = b.op(Op::DropoutMask { p: 0.1 }, &[x]);
    let d = b.bin(BinaryOp::Mul, x, m);
    let y = b.un(UnaryOp::Relu, d);
    let g = b.done(&[y]);
    let r = remove_dropout(&g);
    assert_eq!(r.nodes.len(), 2, "{r}");
    assert_eq!(count(&r, |o| matches!(o, Op::DropoutMask { .. } | Op::Binary(_))), 0);
}

fn conv_affine(scale: Shape) -> Graph {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 3, 8, 8]);
    let w = b.param("conv.weight", shape![4, 3, 3, 3]);
    let bias = b.param("conv.bias", shape![4]);
    let g = ConvGeometry { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
    let c = b.op(Op::Conv2d(g), &[x, w, bias]);
    let s = b.param("bn.scale", scale);
    let t = b.param("bn.shift", shape![4, 1, 1]);
    let y = b.bin(BinaryOp::Mul, c, s);
    let y = b.bin(BinaryOp::Add, y, t);
    let y = b.un(UnaryOp::Relu, y);
    b.done(&[y])
}

#[test]
fn per_channel_affine_folds_into_conv() {
    let g = conv_affine(shape![4, 1, 1]);
    let f = fold_affine(&g);
    verify(&f).unwrap();
    let c = const_nodes(&f);
    // relu(conv(x, w', b')): no Mul or Add on the activations any more.
    let conv = f.nodes[f.outputs[0]].inputs[0];
    assert!(matches!(f.nodes[conv].op, Op::Conv2d(_)), "{f}");
    assert!(c[f.nodes[conv].inputs[1]] && c[f.nodes[conv].inputs[2]], "folded weight and bias are constant subgraphs: {f}");
    let on_activations = f.nodes.iter().enumerate().filter(|(i, n)| matches!(n.op, Op::Binary(_)) && !c[*i]).count();
    assert_eq!(on_activations, 0, "{f}");
}

#[test]
fn per_position_scale_does_not_fold() {
    let g = conv_affine(shape![4, 8, 8]);
    let f = fold_affine(&g);
    let c = const_nodes(&f);
    let muls = f.nodes.iter().enumerate().filter(|(i, n)| n.op == Op::Binary(BinaryOp::Mul) && !c[*i]).count();
    assert_eq!(muls, 1, "a [C, H, W] scale is not per channel: {f}");
}

#[test]
fn affine_folds_through_a_linear_bias() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 4]);
    let w = b.param("fc.weight", shape![3, 4]);
    let bias = b.param("fc.bias", shape![3]);
    let wt = b.op(Op::Transpose { dim0: 0, dim1: 1 }, &[w]);
    let h = b.op(Op::Matmul, &[x, wt]);
    let h = b.bin(BinaryOp::Add, h, bias);
    let s = b.param("bn.scale", shape![3]);
    let t = b.param("bn.shift", shape![3]);
    let y = b.bin(BinaryOp::Mul, h, s);
    let y = b.bin(BinaryOp::Add, y, t);
    let g = b.done(&[y]);
    let f = fold_affine(&g);
    verify(&f).unwrap();
    let c = const_nodes(&f);
    // x @ W' + b'
    let out = &f.nodes[f.outputs[0]];
    assert_eq!(out.op, Op::Binary(BinaryOp::Add), "{f}");
    let (l, r) = (out.inputs[0], out.inputs[1]);
    let (mm, k) = if c[r] { (l, r) } else { (r, l) };
    assert!(c[k]);
    assert_eq!(f.nodes[mm].op, Op::Matmul, "{f}");
    assert!(c[f.nodes[mm].inputs[1]], "{f}");
}

#[test]
fn shared_conv_output_is_not_folded() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 3, 8, 8]);
    let w = b.param("conv.weight", shape![4, 3, 3, 3]);
    let g = ConvGeometry { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
    let c = b.op(Op::Conv2d(g), &[x, w]);
    let s = b.param("bn.scale", shape![4, 1, 1]);
    let y = b.bin(BinaryOp::Mul, c, s);
    let z = b.bin(BinaryOp::Add, y, c); // conv output used twice
    let gr = b.done(&[z]);
    assert_eq!(fold_affine(&gr), dce(&gr));
}

// ---- fusion ----

/// x * sigmoid(x) * 0.5 + tanh(x)
fn swish_tanh() -> Graph {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 16]);
    let s = b.un(UnaryOp::Sigmoid, x);
    let m = b.bin(BinaryOp::Mul, x, s);
    let h = b.sc(ScalarOp::Mul, 0.5, m);
    let t = b.un(UnaryOp::Tanh, x);
    let y = b.bin(BinaryOp::Add, h, t);
    b.done(&[y])
}

#[test]
fn elementwise_dag_fuses_into_one_kernel() {
    let g = swish_tanh();
    let f = fuse(&g, &FuseOptions::default());
    assert_eq!(f.kernel_count(), 1, "{f}");
    let node = &f.nodes[f.outputs[0]];
    let Kernel::Fused(p) = &node.kernel else { panic!("{f}") };
    assert_eq!(p.n_inputs, 1, "x is loaded once");
    assert_eq!(p.op_count(), 5);
    assert_eq!(node.members.len(), 5);
    assert_eq!(fuse(&g, &FuseOptions::none()).kernel_count(), 5);
    assert!(f.to_string().contains("sigmoid(v0)"), "{f}");
    assert!(f.to_dot().contains("orange"));
    assert!(f.fusion_report().contains("5 kernels before fusion, 1 after"), "{}", f.fusion_report());
}

#[test]
fn values_used_outside_the_group_or_as_outputs_are_materialised() {
    let mut b = B::new();
    let x = b.input("x", shape![16]);
    let e = b.un(UnaryOp::Exp, x);
    let s = b.op(Op::Reduce { op: ReduceOp::Sum, dims: vec![], keepdim: false }, &[e]);
    let a = b.sc(ScalarOp::Add, 1.0, e);
    let r = b.un(UnaryOp::Relu, a);
    let n = b.un(UnaryOp::Neg, r);
    let g = b.done(&[n, r, s]);
    let f = fuse(&g, &FuseOptions::default());
    // exp feeds a reduction and a group: its own kernel. relu is an output: its group ends
    // there. neg alone stays a plain op.
    assert!(f.nodes.iter().any(|n| n.kernel == Kernel::Op(Op::Unary(UnaryOp::Exp))), "{f}");
    assert!(f.nodes.iter().any(|n| n.kernel == Kernel::Op(Op::Unary(UnaryOp::Neg))), "{f}");
    let fused: Vec<_> = f.nodes.iter().filter(|n| matches!(n.kernel, Kernel::Fused(_))).collect();
    assert_eq!(fused.len(), 1, "{f}");
    assert_eq!(fused[0].members.len(), 2, "add 1 and relu: {f}");
    assert_eq!(f.kernel_count(), 4);
}

#[test]
fn broadcast_inputs_are_loaded_not_fused_and_smaller_shapes_stay_apart() {
    let mut b = B::new();
    let x = b.input("x", shape!["B", 8]);
    let v = b.input("v", shape![8]);
    let ev = b.un(UnaryOp::Exp, v); // [8]: smaller than the group, not fused into it
    let y = b.bin(BinaryOp::Mul, x, ev);
    let y = b.un(UnaryOp::Relu, y);
    let g = b.done(&[y]);
    let f = fuse(&g, &FuseOptions::default());
    assert_eq!(f.kernel_count(), 2, "{f}");
    let Kernel::Fused(p) = &f.nodes[f.outputs[0]].kernel else { panic!("{f}") };
    assert_eq!(p.n_inputs, 2);
}

#[test]
fn matmul_bias_relu_becomes_an_epilogue() {
    let g = linear_relu();
    let f = fuse(&g, &FuseOptions::default());
    assert_eq!(f.kernel_count(), 1, "{f}");
    let node = &f.nodes[f.outputs[0]];
    let Kernel::Epilogue { head, head_inputs, tail } = &node.kernel else { panic!("{f}") };
    assert_eq!(head, &Op::Matmul);
    assert_eq!(*head_inputs, 2);
    assert_eq!(tail.op_count(), 2, "add bias, relu");
    assert_eq!(node.inputs.len(), 3, "x, W^T, bias");
    // Without epilogues: matmul, then one fused add+relu kernel.
    let f2 = fuse(&g, &FuseOptions { elementwise: true, epilogue: false });
    assert_eq!(f2.kernel_count(), 2, "{f2}");
}

#[test]
fn backward_graphs_fuse_unary_backward_chains() {
    let g = swish_tanh();
    let bw = backward(&g).unwrap();
    let (o, _) = optimize(&bw.graph, &passes::Options::default()).unwrap();
    let unfused = fuse(&o, &FuseOptions::none()).kernel_count();
    let fused = fuse(&o, &FuseOptions::default());
    assert!(fused.kernel_count() * 3 <= unfused, "{unfused} -> {}:\n{fused}", fused.kernel_count());
    assert!(fused.nodes.iter().any(|n| matches!(&n.kernel, Kernel::Fused(p) if p.instrs.iter().any(|i| matches!(i, Instr::Binary(BinaryOp::Mul, ..))))));
}

#[test]
fn unary_backward_lowers_like_the_runtime_rule() {
    // tanh' = g * (1 - y*y)
    let p = program_of(&Op::UnaryBackward(UnaryOp::Tanh), 2);
    assert_eq!(
        p.instrs,
        vec![Instr::Input(0), Instr::Input(1), Instr::Binary(BinaryOp::Mul, 0, 0), Instr::Scalar(ScalarOp::RSub, 1.0, 2), Instr::Binary(BinaryOp::Mul, 1, 3)]
    );
    // relu' selects g where y > 0
    let p = program_of(&Op::UnaryBackward(UnaryOp::Relu), 2);
    assert!(matches!(p.instrs[p.out], Instr::Select { .. }), "{p}");
    // c / x is computed as x ** -1 * c
    let p = program_of(&Op::Scalar { op: ScalarOp::RDiv, value: 3.0 }, 1);
    assert_eq!(p.instrs[1..], [Instr::Scalar(ScalarOp::Pow, -1.0, 0), Instr::Scalar(ScalarOp::Mul, 3.0, 1)]);
}
