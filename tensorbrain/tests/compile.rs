//! The graph compiler end to end: optimised and fused graphs give the same outputs and
//! gradients as the unoptimised interpreter and as the dynamic tape (rtol 1e-5), for an MLP,
//! a CNN with a per-channel affine (batch-norm-like) layer and a residual block; freezing,
//! epilogues, dtypes, statistics and error messages.

use tensorbrain::autograd::grad;
use tensorbrain::compile::{self, compile, compile_model, freeze, training_graph, CompiledGraph, GraphBuilder, Options, Params};
use tensorbrain::ir::autodiff::backward;
use tensorbrain::ir::passes::fusion::Kernel;
use tensorbrain::ir::{BinaryOp, Graph, Op, PoolKind, ScalarOp, UnaryOp};
use tensorbrain::prelude::*;

// ---- helpers ----

fn close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{name}: shapes");
    let (a, b) = (got.to_dtype(DType::F64).to_vec::<f64>(), want.to_dtype(DType::F64).to_vec::<f64>());
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!((p - q).abs() <= 1e-6 + 1e-5 * q.abs(), "{name}[{i}]: {p} vs {q}");
    }
}

fn close_all(name: &str, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{name}: output counts");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        close(&format!("{name} output {k}"), g, w);
    }
}

/// Runs `g` optimised+fused and as the plain interpreter; checks they agree and that fusion
/// launched fewer kernels. Returns the fused outputs.
fn fused_vs_unfused(name: &str, g: &Graph, inputs: &[Tensor], params: &Params) -> (Vec<Tensor>, CompiledGraph, CompiledGraph) {
    let fast = compile(g, &Options::default()).unwrap();
    let slow = compile(g, &Options::unfused()).unwrap();
    let (a, sa) = fast.profile(inputs, params).unwrap();
    let (b, sb) = slow.profile(inputs, params).unwrap();
    close_all(name, &a, &b);
    assert_eq!(sa.kernels, fast.kernel_count());
    assert!(sa.kernels < sb.kernels, "{name}: {} kernels fused vs {} unfused\n{}", sa.kernels, sb.kernels, fast.fused());
    assert!(sa.bytes < sb.bytes, "{name}: {} bytes fused vs {} unfused", sa.bytes, sb.bytes);
    (a, fast, slow)
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(shape, DType::F32)
}

fn params_of(list: &[(&str, Tensor)]) -> Params {
    list.iter().map(|(p, t)| (p.to_string(), t.clone())).collect()
}

/// Gradients of `sum(out * w)` by the tape.
fn tape_grads(out: &Tensor, w: &Tensor, wrt: &[Tensor]) -> Vec<Tensor> {
    let loss = (out * w).sum_all();
    grad(&loss, wrt, None, false).unwrap().into_iter().map(|g| g.expect("every leaf gets a gradient")).collect()
}

// ---- models ----

#[model]
pub struct Mlp {
    fc1: Linear<20, 32>,
    fc2: Linear<32, 5>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 20]) -> tb![B, 5] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

#[model]
pub struct Block {
    norm: LayerNorm<8>,
    fc: Linear<8, 8>,
}

#[model]
impl Block {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        x + self.fc(self.norm(x)).gelu() * 0.5
    }
}

/// Compiled model vs unoptimised compiled model vs the tape, forward and every gradient.
fn check_model<M: ModuleExt>(name: &str, model: &M, graph: &tensorbrain::ir::autodiff::Backward, x: Tensor, eager: impl Fn(&Tensor) -> Tensor) {
    let fast = compile_model(model, graph, &Options::default()).unwrap();
    let slow = compile_model(model, graph, &Options::unfused()).unwrap();
    assert!(fast.train.kernel_count() < slow.train.kernel_count(), "{name}: {} vs {}", fast.train.kernel_count(), slow.train.kernel_count());
    let y = fast.forward(&[x.clone()]).unwrap();
    close(&format!("{name} forward"), &y, &slow.forward(&[x.clone()]).unwrap());

    let w = randn(y.shape());
    let a = fast.forward_backward(&[x.clone()], &w).unwrap();
    let b = slow.forward_backward(&[x.clone()], &w).unwrap();
    close(&format!("{name} train output"), &a.output, &b.output);
    close(&format!("{name} train output vs inference"), &a.output, &y);
    let (xa, xb) = (a.input_grads[0].as_ref().unwrap(), b.input_grads[0].as_ref().unwrap());
    close(&format!("{name} d input"), xa, xb);
    assert_eq!(a.param_grads.len(), model.named_parameters().len());
    for ((pa, ga), (pb, gb)) in a.param_grads.iter().zip(&b.param_grads) {
        assert_eq!(pa, pb);
        close(&format!("{name} d {pa}"), ga.as_ref().unwrap(), gb.as_ref().unwrap());
    }

    // The tape agrees.
    let xt = x.set_requires_grad(true);
    let out = eager(&xt);
    close(&format!("{name} forward vs tape"), &y, &out);
    let mut wrt = vec![xt.clone()];
    wrt.extend(model.named_parameters().into_iter().map(|(_, p)| p));
    let g = tape_grads(&out, &w, &wrt);
    close(&format!("{name} d input vs tape"), xa, &g[0]);
    for ((p, ga), gt) in a.param_grads.iter().zip(&g[1..]) {
        close(&format!("{name} d {p} vs tape"), ga.as_ref().unwrap(), gt);
    }
}

#[test]
fn mlp_fused_equals_unfused_and_tape() {
    let m = Mlp::init(1);
    let eager = |x: &Tensor| m.fc2.forward(&m.fc1.forward(x).unwrap().relu()).unwrap().log_softmax(1);
    check_model("mlp", &m, &m.graph(), randn(&[6, 20]), eager);
    // Forward: two matmul epilogues and a log_softmax.
    let c = compile_model(&m, &m.graph(), &Options::default()).unwrap();
    let epilogues = c.forward.fused().nodes.iter().filter(|n| matches!(n.kernel, Kernel::Epilogue { .. })).count();
    assert_eq!(epilogues, 2, "{}", c.forward.fused());
    assert_eq!(c.forward.kernel_count(), 3, "{}", c.forward.fused());
}

#[test]
fn residual_block_fused_equals_unfused_and_tape() {
    let m = Block::init(3);
    let eager = |x: &Tensor| x + &(m.fc.forward(&m.norm.forward(x).unwrap()).unwrap().gelu() * 0.5);
    check_model("block", &m, &m.graph(), randn(&[5, 8]), eager);
}

/// conv -> per-channel affine (batch norm in eval) -> relu -> max pool -> flatten -> linear ->
/// log_softmax.
fn cnn_graph() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[3, 2, 8, 8]);
    let h = b.conv2d(x, "conv", 2, 4, 3, 1, 1);
    let h = b.channel_affine(h, "bn", 4);
    let h = b.relu(h);
    let h = b.pool2d(h, PoolKind::Max, 2, 2);
    let h = b.flatten(h, 1);
    let h = b.linear(h, "fc", 64, 5);
    let y = b.log_softmax(h, 1);
    b.finish(&[y])
}

fn cnn_params() -> Params {
    manual_seed(11);
    params_of(&[
        ("conv.weight", randn(&[4, 2, 3, 3]) * 0.3),
        ("conv.bias", randn(&[4])),
        ("bn.scale", randn(&[4, 1, 1]).abs() + 0.5),
        ("bn.shift", randn(&[4, 1, 1])),
        ("fc.weight", randn(&[5, 64]) * 0.2),
        ("fc.bias", randn(&[5])),
    ])
}

fn cnn_eager(p: &Params, x: &Tensor) -> Tensor {
    let h = x.conv2d(&p["conv.weight"], Some(&p["conv.bias"]), [1, 1], [1, 1], [1, 1], 1);
    let h = (h * &p["bn.scale"] + &p["bn.shift"]).relu();
    let h = h.max_pool2d([2, 2], [2, 2], [0, 0]).flatten(1, -1);
    h.linear(&p["fc.weight"], Some(&p["fc.bias"])).log_softmax(1)
}

#[test]
fn cnn_with_channel_affine_fused_equals_unfused_and_tape() {
    let g = cnn_graph();
    let params = cnn_params();
    let x = randn(&[3, 2, 8, 8]);
    let (y, fast, _) = fused_vs_unfused("cnn forward", &g, &[x.clone()], &params);
    // conv + affine + relu is one epilogue kernel.
    assert!(
        fast.fused().nodes.iter().any(|n| matches!(&n.kernel, Kernel::Epilogue { head: Op::Conv2d(_), tail, .. } if tail.op_count() == 3)),
        "{}",
        fast.fused()
    );

    let bw = backward(&g).unwrap();
    let tg = training_graph(&bw);
    let w = randn(y[0].shape());
    let (train, _, _) = fused_vs_unfused("cnn train", &tg, &[x.clone(), w.clone()], &params);
    close("cnn train output", &train[0], &y[0]);

    // Against the tape: leaves are x then parameters in graph order.
    let leaves: Vec<String> = bw
        .grads
        .iter()
        .map(|(leaf, _)| match &bw.graph.nodes[*leaf].op {
            Op::Param { path, .. } => path.clone(),
            other => other.name(),
        })
        .collect();
    let xt = x.set_requires_grad(true);
    let pt: Params = params.iter().map(|(k, v)| (k.clone(), v.detach().set_requires_grad(true))).collect();
    let out = cnn_eager(&pt, &xt);
    close("cnn forward vs tape", &y[0], &out);
    let mut wrt = vec![xt];
    wrt.extend(leaves[1..].iter().map(|path| pt[path].clone()));
    let g_tape = tape_grads(&out, &w, &wrt);
    assert_eq!(train.len(), 1 + g_tape.len());
    for (k, (a, b)) in train[1..].iter().zip(&g_tape).enumerate() {
        close(&format!("cnn d {} vs tape", leaves[k]), a, b);
    }
}

#[test]
fn freezing_folds_the_affine_into_the_conv() {
    let g = cnn_graph();
    let params = cnn_params();
    let x = randn(&[3, 2, 8, 8]);
    let want = compile(&g, &Options::unfused()).unwrap().run(&[x.clone()], &params).unwrap();
    let (frozen, fp) = freeze(&g, &params).unwrap();
    // No Mul/Add by a parameter on the activations: conv weights and bias absorbed them.
    let muls = frozen.nodes.iter().filter(|n| matches!(n.op, Op::Binary(BinaryOp::Mul))).count();
    assert_eq!(muls, 0, "{frozen}");
    assert!(fp.keys().any(|k| k.starts_with("frozen.")), "{:?}", fp.keys().collect::<Vec<_>>());
    assert!(!fp.contains_key("bn.scale"), "the scale is folded away");
    let c = compile(&frozen, &Options::default()).unwrap();
    close_all("frozen", &c.run(&[x.clone()], &fp).unwrap(), &want);
    let unfrozen = compile(&g, &Options::default()).unwrap();
    assert!(c.kernel_count() <= unfrozen.kernel_count());
    // conv + relu: the epilogue is just the relu now.
    assert!(c.fused().nodes.iter().any(|n| matches!(&n.kernel, Kernel::Epilogue { head: Op::Conv2d(_), tail, .. } if tail.op_count() == 1)), "{}", c.fused());
}

#[test]
fn freezing_a_linear_with_affine_and_dropout() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[4, 6]);
    let h = b.linear(x, "fc", 6, 3);
    let s = b.param("bn.scale", &[3]);
    let t = b.param("bn.shift", &[3]);
    let h = b.mul(h, s);
    let h = b.add(h, t);
    let h = b.dropout(h, 0.5);
    let y = b.tanh(h);
    let g = b.finish(&[y]);
    manual_seed(3);
    let p = params_of(&[("fc.weight", randn(&[3, 6])), ("fc.bias", randn(&[3])), ("bn.scale", randn(&[3])), ("bn.shift", randn(&[3]))]);
    let xv = randn(&[4, 6]);
    let want = xv.linear(&p["fc.weight"], Some(&p["fc.bias"])).mul(&p["bn.scale"]).add(&p["bn.shift"]).tanh();
    let (frozen, fp) = freeze(&g, &p).unwrap();
    assert!(!frozen.nodes.iter().any(|n| matches!(n.op, Op::DropoutMask { .. })), "{frozen}");
    let c = compile(&frozen, &Options::default()).unwrap();
    assert_eq!(c.kernel_count(), 1, "matmul with a bias+tanh epilogue:\n{}", c.fused());
    close("frozen linear", &c.run(&[xv], &fp).unwrap()[0], &want);
}

#[test]
fn compiled_model_freeze_matches_forward() {
    let m = Mlp::init(9);
    let c = compile_model(&m, &m.graph(), &Options::default()).unwrap();
    let x = randn(&[7, 20]);
    let (frozen, fp) = c.freeze(&Options::default()).unwrap();
    close("frozen mlp", &frozen.run(&[x.clone()], &fp).unwrap()[0], &c.forward(&[x]).unwrap());
}

// ---- fused kernels ----

/// x * sigmoid(x) * 0.5 + tanh(x * b) with b broadcast, x possibly transposed.
fn swish_graph(rows: usize, cols: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[rows, cols]);
    let v = b.input("b", &[cols]);
    let s = b.sigmoid(x);
    let m = b.mul(x, s);
    let h = b.mul_scalar(m, 0.5);
    let xb = b.mul(x, v);
    let t = b.tanh(xb);
    let y = b.add(h, t);
    b.finish(&[y])
}

fn swish_eager(x: &Tensor, v: &Tensor) -> Tensor {
    &(&(x * &x.sigmoid()) * 0.5) + &(x * v).tanh()
}

#[test]
fn elementwise_chain_is_one_kernel_with_broadcast_and_strided_inputs() {
    let g = swish_graph(300, 70);
    let v = randn(&[70]);
    // A transposed (non-contiguous) input, large enough to split across threads.
    let x = randn(&[70, 300]).t();
    assert!(!x.is_contiguous());
    let (y, fast, _) = fused_vs_unfused("swish", &g, &[x.clone(), v.clone()], &Params::new());
    assert_eq!(fast.kernel_count(), 1);
    close("swish vs eager", &y[0], &swish_eager(&x, &v));
    // A sliced input with an offset.
    let big = randn(&[301, 70]);
    let xs = big.narrow(0, 1, 300);
    let y = fast.run(&[xs.clone(), v.clone()], &Params::new()).unwrap();
    close("swish sliced", &y[0], &swish_eager(&xs, &v));
}

#[test]
fn every_unary_backward_fuses_like_the_runtime_rule() {
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Abs,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Silu,
        UnaryOp::Softplus,
        UnaryOp::Log1p,
        UnaryOp::Square,
        UnaryOp::Reciprocal,
        UnaryOp::Erf,
        UnaryOp::Elu(0.7),
        UnaryOp::LeakyRelu(0.1),
    ];
    for u in ops {
        // y = u(x) * 2 + 1; the backward has u's backward in a fused chain.
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[5, 40]);
        let y = b.unary(u, x);
        let y = b.mul_scalar(y, 2.0);
        let y = b.add_scalar(y, 1.0);
        let g = b.finish(&[y]);
        let tg = training_graph(&backward(&g).unwrap());
        // Positive inputs for log/sqrt, with zeros and negatives elsewhere.
        let raw = randn(&[5, 40]);
        let x = if matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Reciprocal | UnaryOp::Log1p) { raw.abs() + 0.1 } else { raw };
        let x = if matches!(u, UnaryOp::Relu | UnaryOp::Abs | UnaryOp::LeakyRelu(_) | UnaryOp::Elu(_)) {
            // exact zeros hit the ties of the rules
            x.mul(&x.gt(&Tensor::full(&[], -1.0, DType::F32)).to_dtype(DType::F32))
        } else {
            x
        };
        let w = randn(&[5, 40]);
        let out = compile(&tg, &Options::default()).unwrap().run(&[x.clone(), w.clone()], &Params::new()).unwrap();
        let reference = compile(&tg, &Options::unfused()).unwrap().run(&[x.clone(), w.clone()], &Params::new()).unwrap();
        close_all(u.method(), &out, &reference);
        let xt = x.set_requires_grad(true);
        let yt = (tensorbrain::exec::apply(&Op::Unary(u), &[&xt], &[]).unwrap() * 2.0) + 1.0;
        close(&format!("{} vs tape", u.method()), &out[1], &tape_grads(&yt, &w, &[xt])[0]);
    }
}

#[test]
fn f64_runs_fused_and_half_types_fall_back() {
    let g = swish_graph(8, 16);
    let fast = compile(&g, &Options::default()).unwrap();
    let slow = compile(&g, &Options::unfused()).unwrap();
    for dt in [DType::F64, DType::F16, DType::BF16] {
        let x = Tensor::randn(&[8, 16], dt);
        let v = Tensor::randn(&[16], dt);
        let a = fast.run(&[x.clone(), v.clone()], &Params::new()).unwrap();
        let b = slow.run(&[x, v], &Params::new()).unwrap();
        assert_eq!(a[0].dtype(), dt);
        close_all(&format!("{dt:?}"), &a, &b);
    }
}

#[test]
fn matmul_epilogue_over_many_row_blocks_and_batched_input() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[3, 200, 48]);
    let h = b.linear(x, "fc", 48, 100);
    let h = b.relu(h);
    let r = b.input("r", &[3, 200, 100]);
    let y = b.add(h, r); // residual
    let g = b.finish(&[y]);
    let p = params_of(&[("fc.weight", randn(&[100, 48])), ("fc.bias", randn(&[100]))]);
    let (xv, rv) = (randn(&[3, 200, 48]), randn(&[3, 200, 100]));
    let (y, fast, _) = fused_vs_unfused("linear epilogue", &g, &[xv.clone(), rv.clone()], &p);
    assert_eq!(fast.kernel_count(), 1, "{}", fast.fused());
    close("linear epilogue vs eager", &y[0], &(xv.linear(&p["fc.weight"], Some(&p["fc.bias"])).relu() + &rv));
}

/// The epilogue runs inside the conv kernel, sample by sample (6 samples, so both threads get
/// several and the tail's broadcast inputs are read at every sample's offset).
#[test]
fn conv_epilogue_in_sample_chunks() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[6, 3, 32, 32]);
    let h = b.conv2d(x, "conv", 3, 16, 3, 1, 1);
    let h = b.channel_affine(h, "bn", 16);
    let y = b.relu(h);
    let g = b.finish(&[y]);
    manual_seed(5);
    let p = params_of(&[("conv.weight", randn(&[16, 3, 3, 3])), ("conv.bias", randn(&[16])), ("bn.scale", randn(&[16, 1, 1])), ("bn.shift", randn(&[16, 1, 1]))]);
    let xv = randn(&[6, 3, 32, 32]);
    let (_, fast, _) = fused_vs_unfused("conv epilogue", &g, &[xv], &p);
    assert_eq!(fast.kernel_count(), 1, "{}", fast.fused());
}

#[test]
fn time_kernels_times_every_kernel_of_a_run() {
    let g = cnn_graph();
    let tg = training_graph(&backward(&g).unwrap());
    let x = randn(&[3, 2, 8, 8]);
    let w = randn(&[3, 5]);
    let c = compile(&tg, &Options::default()).unwrap();
    let times = c.time_kernels(&[x.clone(), w.clone()], &cnn_params()).unwrap();
    let (_, stats) = c.profile(&[x, w], &cnn_params()).unwrap();
    assert_eq!(times.len(), stats.kernels, "{times:?}");
    assert!(times.windows(2).all(|p| p[0].node < p[1].node), "execution order: {times:?}");
    for t in &times {
        assert!(t.seconds >= 0.0 && t.seconds < 10.0, "{t:?}");
        assert_eq!(t.out_shape, c.fused().nodes[t.node].shape.0.iter().map(|d| d.known().unwrap()).collect::<Vec<_>>(), "{t:?}");
    }
    assert!(times.iter().any(|t| t.name.starts_with("conv2d_backward_weight")), "{times:?}");
    // In inference the conv carries its affine + relu as an epilogue.
    let forward = compile(&g, &Options::default()).unwrap();
    let names: Vec<String> = forward.time_kernels(&[randn(&[3, 2, 8, 8])], &cnn_params()).unwrap().into_iter().map(|t| t.name).collect();
    assert!(names.iter().any(|n| n.starts_with("conv2d") && n.ends_with("+epilogue")), "{names:?}");
}

#[test]
fn constant_folding_runs_before_fusion() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[4, 4]);
    let two = b.fill(2.0, &[4, 4]);
    let three = b.fill(3.0, &[]);
    let k = b.mul(two, three);
    let y = b.mul(x, k); // x * 6
    let y = b.mul_scalar(y, 0.5); // x * 3
    let t = b.transpose(y, 0, 1);
    let t = b.transpose(t, 1, 0);
    let n = b.neg(t);
    let n = b.neg(n);
    let g = b.finish(&[n]);
    let c = compile(&g, &Options::default()).unwrap();
    assert_eq!(c.optimized().nodes.len(), 2, "{}", c.optimized());
    assert_eq!(c.optimized().nodes[1].op, Op::Scalar { op: ScalarOp::Mul, value: 3.0 });
    let xv = randn(&[4, 4]);
    close("folded", &c.run(&[xv.clone()], &Params::new()).unwrap()[0], &(&xv * 3.0));
    assert!(c.report().contains("kernels"), "{}", c.report());
}

// ---- inspection and errors ----

#[test]
fn report_dot_and_kernel_counts() {
    let m = Mlp::init(0);
    let c = compile_model(&m, &m.graph(), &Options::default()).unwrap();
    let u = compile_model(&m, &m.graph(), &Options::unfused()).unwrap();
    let r = c.train.report();
    assert!(r.contains("epilogue") && r.contains("kernels before fusion"), "{r}");
    assert!(c.train.fused().to_dot().starts_with("digraph"));
    assert!(c.train.fused().to_string().contains("matmul + epilogue"), "{}", c.train.fused());
    assert!(c.train.kernel_count() < u.train.kernel_count());
    assert!(c.forward.kernel_count() < u.forward.kernel_count());
}

#[test]
fn bad_inputs_and_parameters_are_reported() {
    let g = cnn_graph();
    let c = compile(&g, &Options::default()).unwrap();
    let e = c.run(&[], &cnn_params()).unwrap_err().to_string();
    assert!(e.contains("takes 1 inputs (x), got 0"), "{e}");
    let e = c.run(&[randn(&[3, 2, 8, 9])], &cnn_params()).unwrap_err().to_string();
    assert!(e.contains("input `x` must have shape [3, 2, 8, 8], got [3, 2, 8, 9]"), "{e}");
    let mut p = cnn_params();
    p.remove("bn.shift");
    let e = c.run(&[randn(&[3, 2, 8, 8])], &p).unwrap_err().to_string();
    assert!(e.contains("no value for parameter `bn.shift`"), "{e}");
    let mut p = cnn_params();
    p.insert("fc.bias".into(), randn(&[6]));
    let e = c.run(&[randn(&[3, 2, 8, 8])], &p).unwrap_err().to_string();
    assert!(e.contains("parameter `fc.bias` must have shape [5], got [6]"), "{e}");
    let mut bad = g.clone();
    bad.nodes[1].shape = tensorbrain::ir::Shape(vec![]);
    let e = compile(&bad, &Options::default()).unwrap_err().to_string();
    assert!(e.starts_with("compile: "), "{e}");
}

#[test]
fn fused_kernel_program_from_the_kernels_crate() {
    use tensorbrain_kernels::fused::{eval_range, eval_vec, BinaryFn, Instr, Operand, Program, UnaryFn};
    // out = relu(in0 + in1[j]) on [4, 300]; then in place: out = out * 2 - in1
    let p = Program::new(&[Instr::Load(0), Instr::Load(1), Instr::Binary(BinaryFn::Add, 0, 1), Instr::Unary(UnaryFn::Relu, 2)], 2, 3).unwrap();
    let a: Vec<f32> = (0..1200).map(|i| (i as f32 * 0.1).sin()).collect();
    let bias: Vec<f32> = (0..300).map(|j| j as f32 * 0.001 - 0.1).collect();
    let ops = [Operand::Strided { data: &a, offset: 0, strides: &[300, 1] }, Operand::Strided { data: &bias, offset: 0, strides: &[0, 1] }];
    let mut out = eval_vec(&p, &ops, &[4, 300]);
    for i in 0..4 {
        for j in 0..300 {
            assert_eq!(out[i * 300 + j], (a[i * 300 + j] + bias[j]).max(0.0));
        }
    }
    let q = Program::new(
        &[Instr::Load(0), Instr::Scalar(tensorbrain_kernels::fused::ScalarFn::Mul, 2.0, 0), Instr::Load(1), Instr::Binary(BinaryFn::Sub, 1, 2)],
        2,
        3,
    )
    .unwrap();
    let before = out.clone();
    let ops = [Operand::Output, Operand::Strided { data: &bias, offset: 0, strides: &[0, 1] }];
    // Rows 1..3 only.
    eval_range(&q, &ops, &[4, 300], 300, &mut out[300..900]);
    for (k, (&o, &b)) in out.iter().zip(&before).enumerate() {
        let want = if (300..900).contains(&k) { b * 2.0 - bias[k % 300] } else { b };
        assert_eq!(o, want, "{k}");
    }
}

#[test]
fn nested_model_calls_are_rejected() {
    let mut g = Graph::new();
    let x = g.add(Op::Input { name: "x".into(), shape: tensorbrain::ir::shape![2, 3] }, &[], "x").unwrap();
    let y = g.add(Op::Call { path: "inner".into(), out: tensorbrain::ir::shape![2, 3] }, &[x], "inner").unwrap();
    g.outputs = vec![y];
    let e = compile::compile(&g, &Options::default()).unwrap_err().to_string();
    assert!(e.contains("call inner calls a nested model"), "{e}");
}

#[test]
fn large_backward_graphs_agree_and_param_only_training_drops_the_input_gradient() {
    // 65536 elements: one long row, split across threads by the strided kernels.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[64, 1024]);
    let s = b.param("s", &[1024]);
    let h = b.mul(x, s);
    let y = b.relu(h);
    let y = b.sigmoid(y);
    let g = b.finish(&[y]);
    let bw = backward(&g).unwrap();
    let p = params_of(&[("s", randn(&[1024]))]);
    let (xv, w) = (randn(&[64, 1024]), randn(&[64, 1024]));
    let (all, _, _) = fused_vs_unfused("large backward", &training_graph(&bw), &[xv.clone(), w.clone()], &p);
    let only = compile(&compile::param_training_graph(&bw), &Options::default()).unwrap();
    let out = only.run(&[xv, w], &p).unwrap();
    assert_eq!(out.len(), 2, "output and d s");
    close("d s", &out[1], &all[2]);
    assert!(only.kernel_count() < compile(&training_graph(&bw), &Options::default()).unwrap().kernel_count());
}
