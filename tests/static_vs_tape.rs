//! The generated backward of a `#[model]` (one tape node running generated code) gives the
//! same gradients as the dynamic tape running the same layers op by op (rtol 1e-5), for an
//! MLP, a CNN, a residual block and a nested model.

use tensorbrain::autograd::grad;
use tensorbrain::prelude::*;

#[model]
pub struct Mlp {
    fc1: Linear<20, 32>,
    fc2: Linear<32, 5>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 20]) -> tb![B, 5] {
        self.fc2(self.fc1(x).relu())
    }
}

#[model]
pub struct Cnn {
    conv1: Conv2d<2, 4, 3, 1, 1>,
    pool: MaxPool2d<2>,
    conv2: Conv2d<4, 6, 3>,
    avg: AvgPool2d<2>,
    flat: Flatten,
    fc: Linear<24, 3>,
}

#[model]
impl Cnn {
    pub fn forward(&self, x: tb![B, 2, 12, 12]) -> tb![B, 3] {
        let h = self.pool(self.conv1(x).relu());
        let h = self.avg(self.conv2(h).tanh());
        self.fc(self.flat(h)).log_softmax(1)
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

#[model]
pub struct Deep {
    input: Linear<6, 8>,
    blocks: [Block; 2],
    head: Linear<8, 3>,
}

#[model]
impl Deep {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 3] {
        let mut h = self.input(x);
        for block in &self.blocks {
            h = block(h);
        }
        self.head(h).softmax(-1)
    }
}

fn eager_mlp(m: &Mlp, x: &Tensor) -> Tensor {
    m.fc2.forward(&m.fc1.forward(x).unwrap().relu()).unwrap()
}

fn eager_cnn(m: &Cnn, x: &Tensor) -> Tensor {
    let h = m.pool.forward(&m.conv1.forward(x).unwrap().relu()).unwrap();
    let h = m.avg.forward(&m.conv2.forward(&h).unwrap().tanh()).unwrap();
    m.fc.forward(&m.flat.forward(&h).unwrap()).unwrap().log_softmax(1)
}

fn eager_block(b: &Block, x: &Tensor) -> Tensor {
    x + &(b.fc.forward(&b.norm.forward(x).unwrap()).unwrap().gelu() * 0.5)
}

fn eager_deep(m: &Deep, x: &Tensor) -> Tensor {
    let mut h = m.input.forward(x).unwrap();
    for b in &m.blocks {
        h = eager_block(b, &h);
    }
    m.head.forward(&h).unwrap().softmax(-1)
}

/// Gradients of `sum(out * w)` with respect to the input and every parameter.
fn gradients(out: &Tensor, x: &Tensor, params: &[Tensor]) -> Vec<Vec<f32>> {
    let w = Tensor::randn(out.shape(), DType::F32);
    let loss = (out * &w).sum_all();
    let mut wrt = vec![x.clone()];
    wrt.extend(params.iter().cloned());
    grad(&loss, &wrt, None, false).unwrap().into_iter().map(|g| g.expect("every input gets a gradient").to_vec::<f32>()).collect()
}

fn assert_close(name: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "{name}: gradient {i} sizes");
        for (p, q) in x.iter().zip(y) {
            let err = (p - q).abs();
            worst = worst.max(err / (1e-6 + 1e-5 * q.abs()));
            assert!(err <= 1e-6 + 1e-5 * q.abs(), "{name}: gradient {i}: static {p} vs tape {q}");
        }
    }
    println!("{name}: {} gradients agree, worst error {worst:.3} of the tolerance", a.len());
}

fn check<M: ModuleExt>(name: &str, model: &M, x: Tensor, static_fwd: impl Fn(&Tensor) -> Tensor, eager_fwd: impl Fn(&Tensor) -> Tensor) {
    manual_seed(7);
    let x = x.set_requires_grad(true);
    let params = model.parameters();
    let out_static = static_fwd(&x);
    assert_eq!(out_static.grad_fn_name(), Some(name), "the static forward is one tape node");
    let g_static = gradients(&out_static, &x, &params);
    manual_seed(7);
    let out_eager = eager_fwd(&x);
    assert_ne!(out_eager.grad_fn_name(), Some(name));
    let g_eager = gradients(&out_eager, &x, &params);
    assert_close(name, &g_static, &g_eager);
    // The forward values agree too.
    let (a, b) = (out_static.to_vec::<f32>(), out_eager.to_vec::<f32>());
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-6 + 1e-5 * q.abs()));
}

#[test]
fn mlp_static_backward_equals_tape() {
    let m = Mlp::init(1);
    check("Mlp", &m, Tensor::randn(&[4, 20], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_mlp(&m, x));
}

#[test]
fn cnn_static_backward_equals_tape() {
    let m = Cnn::init(2);
    check("Cnn", &m, Tensor::randn(&[3, 2, 12, 12], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_cnn(&m, x));
}

#[test]
fn residual_block_static_backward_equals_tape() {
    let m = Block::init(3);
    check("Block", &m, Tensor::randn(&[5, 8], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_block(&m, x));
}

#[test]
fn nested_model_static_backward_equals_tape() {
    let m = Deep::init(4);
    check("Deep", &m, Tensor::randn(&[5, 6], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_deep(&m, x));
}

/// The generated backward hands each Linear weight a contiguous gradient ((gᵀ·x)ᵀ through the
/// transpose's rule), as the tape does, not a transposed view the optimizer would copy.
#[test]
fn linear_weight_gradients_come_out_contiguous() {
    let m = Mlp::init(6);
    let x = Tensor::randn(&[4, 20], DType::F32);
    m.forward_dyn(&[x]).unwrap().sum_all().backward();
    for (name, p) in m.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name} has no gradient"));
        assert!(g.is_contiguous(), "{name}: gradient strides {:?}", g.layout().strides);
    }
}

#[test]
fn typed_forward_composes_with_eager_loss() {
    let m = Mlp::init(5);
    let x: tb![_, 20] = Tensor::randn(&[3, 20], DType::F32).typed().unwrap();
    let loss = m.forward(x).relu().mean(&[], false);
    loss.backward();
    for (name, p) in m.named_parameters() {
        assert!(p.grad().is_some(), "{name} has no gradient");
    }
}

#[test]
fn dynamic_path_checks_declared_shapes() {
    let m = Mlp::init(0);
    let err = m.forward_dyn(&[Tensor::zeros(&[2, 21], DType::F32)]).unwrap_err().to_string();
    assert!(err.contains("input `x` must have shape [B, 20], got [2, 21]"), "{err}");
}

#[test]
fn graph_lists_forward_and_generated_backward() {
    let m = Mlp::init(0);
    let g = m.graph();
    let text = g.graph.to_string();
    assert!(text.contains("matmul"), "{text}");
    assert!(text.contains("relu_backward"), "{text}");
    assert!(g.graph.to_dot().starts_with("digraph"));
    // Forward saves what backward needs and not the output.
    assert!(!g.saved().contains(&g.forward_output));
}

/// One block, called twice in `forward`: its parameters get the sum of both calls' gradients.
#[model]
pub struct Shared {
    block: Block,
    head: Linear<8, 3>,
}

#[model]
impl Shared {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 3] {
        self.head(self.block(self.block(x)))
    }
}

#[test]
fn a_nested_model_called_twice_gets_both_calls_gradients() {
    let m = Shared::init(6);
    let eager = |x: &Tensor| m.head.forward(&eager_block(&m.block, &eager_block(&m.block, x))).unwrap();
    check("Shared", &m, Tensor::randn(&[5, 8], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), eager);
}

// --- gradient-ready points ---------------------------------------------------------------------

#[model]
pub struct Mlp3 {
    fc1: Linear<6, 16>,
    fc2: Linear<16, 16>,
    fc3: Linear<16, 3>,
}

#[model]
impl Mlp3 {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 3] {
        self.fc3(self.fc2(self.fc1(x).tanh()).tanh())
    }
}

/// The generated backward hands each layer's gradients to the tape as it finishes them, so the
/// gradient-ready hook sees the last layer first, while the model's backward is still running
/// (earlier layers have no gradient yet), and the gradients are those of plain backward.
#[test]
fn generated_backward_makes_parameters_ready_layer_by_layer() {
    let m = Mlp3::init(8);
    let params = m.parameters();
    let x = Tensor::randn(&[5, 6], DType::F32);
    let w = Tensor::randn(&[5, 3], DType::F32);
    let loss = (&m.forward_dyn(&[x.clone()]).unwrap() * &w).sum_all();
    assert_eq!(loss.grad_fn_name(), Some("sum"));
    // For each hook call: which parameter, and how many parameters had a gradient by then.
    let mut seen: Vec<(usize, usize)> = Vec::new();
    tensorbrain::autograd::backward_with_hook(&loss, None, &mut |leaf: &Tensor| {
        let k = params.iter().position(|p| p.id() == leaf.id()).expect("only parameters are leaves");
        seen.push((k, params.iter().filter(|p| p.grad().is_some()).count()));
        Ok(())
    })
    .unwrap();
    let mut once: Vec<usize> = seen.iter().map(|s| s.0).collect();
    once.sort();
    assert_eq!(once, (0..params.len()).collect::<Vec<_>>(), "each parameter ready once: {seen:?}");
    let at = |p: &Tensor| seen.iter().position(|s| params[s.0].id() == p.id()).unwrap();
    let (first, last) = (&m.fc1.parameters()[0], &m.fc3.parameters()[0]);
    assert!(at(last) < at(first), "fc3's weight must be ready before fc1's: {seen:?}");
    assert!(seen[0].1 < params.len(), "the first parameter must be ready before the model's backward ends: {seen:?}");

    let hooked: Vec<Vec<f32>> = params.iter().map(|p| p.grad().unwrap().to_vec()).collect();
    m.zero_grad();
    loss.backward();
    let plain: Vec<Vec<f32>> = params.iter().map(|p| p.grad().unwrap().to_vec()).collect();
    assert_eq!(hooked, plain, "reporting gradients early changes none of them");
    let eager = m.fc3.forward(&m.fc2.forward(&m.fc1.forward(&x).unwrap().tanh()).unwrap().tanh()).unwrap();
    let taped = grad(&(&eager * &w).sum_all(), &params, None, false).unwrap();
    let taped: Vec<Vec<f32>> = taped.into_iter().map(|g| g.unwrap().to_vec()).collect();
    assert_close("Mlp3", &plain, &taped);
}
