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
