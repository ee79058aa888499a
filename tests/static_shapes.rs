//! The static-shape promise on real model shapes: nested models, generic sizes, helpers and
//! attention over symbolic lengths. Each generated backward equals the dynamic tape running
//! the same layers op by op (rtol 1e-5), and models that compile never panic on a shape.

use tensorbrain::autograd::grad;
use tensorbrain::prelude::*;
use tensorbrain::shape::{self, Shape};

// --- nested: Stem -> [Block; 3] -> head, no annotations -------------------------------------

#[model]
pub struct Stem {
    fc: Linear<6, 8>,
}

#[model]
impl Stem {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 8] {
        self.fc(x).tanh()
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
pub struct Nested {
    stem: Stem,
    blocks: [Block; 3],
    head: Linear<8, 3>,
}

#[model]
impl Nested {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 3] {
        let mut h = self.stem(x);
        for block in &self.blocks {
            h = block(h);
        }
        // A layer right after nested models: their output shapes are known here.
        self.head(h).log_softmax(-1)
    }
}

fn eager_block(b: &Block, x: &Tensor) -> Tensor {
    x + &(b.fc.forward(&b.norm.forward(x).unwrap()).unwrap().gelu() * 0.5)
}

fn eager_nested(m: &Nested, x: &Tensor) -> Tensor {
    let mut h = m.stem.fc.forward(x).unwrap().tanh();
    for b in &m.blocks {
        h = eager_block(b, &h);
    }
    m.head.forward(&h).unwrap().log_softmax(-1)
}

// --- generic: Ffn<D> inside Wide<C> at D = 2C ------------------------------------------------

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, { 4 * D }>,
    down: Linear<{ D * 4 }, D>,
}

#[model]
impl<D: Dim> Ffn<D> {
    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        x + self.down(self.up(x).relu())
    }
}

#[model]
pub struct Wide<C: Dim> {
    inp: Linear<C, { 2 * C }>,
    ffn: Ffn<{ 2 * C }>,
    out: Linear<{ C + C }, C>,
}

#[model]
impl<C: Dim> Wide<C> {
    pub fn forward(&self, x: tb![B, T, C]) -> tb![B, T, C] {
        self.out(self.ffn(self.inp(x)))
    }
}

fn eager_wide<C: tensorbrain::shape::Size>(m: &Wide<C>, x: &Tensor) -> Tensor {
    let h = m.inp.forward(x).unwrap();
    let f = &h + &m.ffn.down.forward(&m.ffn.up.forward(&h).unwrap().relu()).unwrap();
    m.out.forward(&f).unwrap()
}

// --- attention over symbolic B and T, generic in width and heads ------------------------------

/// Any-shape helper: a `#[model] fn`, inlined into the graph.
#[model]
pub fn swish<S: Shape>(x: shape::Tensor<S>) -> shape::Tensor<S> {
    &x * &x.sigmoid()
}

#[model]
pub struct EncoderBlock<D: Dim, H: Dim> {
    norm1: LayerNorm<D>,
    q: Linear<D, D>,
    k: Linear<D, D>,
    v: Linear<D, D>,
    proj: Linear<D, D>,
    norm2: LayerNorm<D>,
    ffn: Ffn<D>,
}

#[model]
impl<D: Dim, H: Dim> EncoderBlock<D, H> {
    fn heads(&self, x: tb![B, T, D]) -> tb![B, H, T, { D / H }] {
        x.reshape([B, T, H, D / H]).transpose(1, 2)
    }

    fn attention(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let (q, k, v) = (self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x)));
        let scores = q.matmul(k.transpose(2, 3)) * 0.5;
        let mixed = scores.softmax(-1).matmul(v);
        self.proj(mixed.transpose(1, 2).reshape([B, T, D]))
    }

    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let h = x + self.attention(self.norm1(x));
        swish(self.ffn(self.norm2(h)))
    }
}

fn eager_encoder<D: tensorbrain::shape::Size, H: tensorbrain::shape::Size>(m: &EncoderBlock<D, H>, x: &Tensor) -> Tensor {
    let (b, t, d, heads) = (x.shape()[0] as isize, x.shape()[1] as isize, D::N as isize, H::N as isize);
    let split = |y: Tensor| y.reshape(&[b, t, heads, d / heads]).transpose(1, 2);
    let n = m.norm1.forward(x).unwrap();
    let (q, k, v) = (split(m.q.forward(&n).unwrap()), split(m.k.forward(&n).unwrap()), split(m.v.forward(&n).unwrap()));
    let scores = q.matmul(&k.transpose(2, 3)) * 0.5;
    let mixed = scores.softmax(-1).matmul(&v).transpose(1, 2).reshape(&[b, t, d]);
    let h = x + &m.proj.forward(&mixed).unwrap();
    let n2 = m.norm2.forward(&h).unwrap();
    let f = &n2 + &m.ffn.down.forward(&m.ffn.up.forward(&n2).unwrap().relu()).unwrap();
    &f * &f.sigmoid()
}

// --- generic depth: [Block<D>; L] run in sequence ----------------------------------------------

#[model]
pub struct GBlock<D: Dim> {
    norm: LayerNorm<D>,
    fc: Linear<D, D>,
}

#[model]
impl<D: Dim> GBlock<D> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        x + self.fc(self.norm(x)).tanh()
    }
}

#[model]
pub struct Deep<D: Dim, const L: usize> {
    blocks: [GBlock<D>; L],
    head: Linear<D, 2>,
}

#[model]
impl<D: Dim, const L: usize> Deep<D, L> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, 2] {
        let mut h = x;
        for block in &self.blocks {
            h = block(h);
        }
        self.head(h)
    }
}

fn eager_deep<D: tensorbrain::shape::Size, const L: usize>(m: &Deep<D, L>, x: &Tensor) -> Tensor {
    let mut h = x.clone();
    for b in &m.blocks {
        h = &h + &b.fc.forward(&b.norm.forward(&h).unwrap()).unwrap().tanh();
    }
    m.head.forward(&h).unwrap()
}

// --- the checks ------------------------------------------------------------------------------

/// Gradients of `sum(out * w)` with respect to the input and every parameter.
fn gradients(out: &Tensor, x: &Tensor, params: &[Tensor]) -> Vec<Vec<f32>> {
    let w = Tensor::randn(out.shape(), DType::F32);
    let loss = (out * &w).sum_all();
    let mut wrt = vec![x.clone()];
    wrt.extend(params.iter().cloned());
    grad(&loss, &wrt, None, false).unwrap().into_iter().map(|g| g.expect("every input gets a gradient").to_vec::<f32>()).collect()
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
    let g_eager = gradients(&out_eager, &x, &params);
    assert_eq!(g_static.len(), g_eager.len());
    for (i, (a, b)) in g_static.iter().zip(&g_eager).enumerate() {
        assert_eq!(a.len(), b.len(), "{name}: gradient {i} sizes");
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-5 + 1e-5 * q.abs(), "{name}: gradient {i}: static {p} vs tape {q}");
        }
    }
    let (a, b) = (out_static.to_vec::<f32>(), out_eager.to_vec::<f32>());
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-5 + 1e-5 * q.abs()), "{name}: outputs differ");
}

#[test]
fn nested_models_static_backward_equals_tape() {
    let m = Nested::init(1);
    check("Nested", &m, Tensor::randn(&[5, 6], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_nested(&m, x));
}

#[test]
fn generic_models_static_backward_equals_tape_at_two_sizes() {
    let m = Wide::<Const<4>>::init(2);
    assert_eq!(m.ffn.up.weight.shape(), &[32, 8]);
    check("Wide", &m, Tensor::randn(&[2, 3, 4], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_wide(&m, x));
    let m = Wide::<tensorbrain::typenum::U6>::init(3);
    assert_eq!(m.ffn.up.weight.shape(), &[48, 12]);
    check("Wide", &m, Tensor::randn(&[1, 4, 6], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_wide(&m, x));
}

#[test]
fn attention_over_symbolic_lengths_static_backward_equals_tape() {
    let m = EncoderBlock::<Const<8>, Const<2>>::init(4);
    // Two different sequence lengths through the same compiled model.
    for t in [3, 6] {
        check("EncoderBlock", &m, Tensor::randn(&[2, t, 8], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_encoder(&m, x));
    }
}

#[test]
fn generic_depth_static_backward_equals_tape() {
    let m = Deep::<Const<5>, 3>::init(6);
    check("Deep", &m, Tensor::randn(&[4, 5], DType::F32), |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_deep(&m, x));
    // Data input without gradient: only the parameters' gradients, through every block.
    let x = Tensor::randn(&[4, 5], DType::F32);
    let loss = m.forward_dyn(&[x]).unwrap().sum_all();
    let g = grad(&loss, &m.parameters(), None, false).unwrap();
    assert!(g.iter().all(|g| g.is_some()), "every block's parameters get gradients");
}

#[test]
fn typed_forward_over_symbolic_lengths() {
    let m = EncoderBlock::<Const<8>, Const<4>>::init(5);
    let x: tb![_, _, 8] = Tensor::randn(&[3, 5, 8], DType::F32).typed().unwrap();
    assert_eq!(m.forward(x).shape(), &[3, 5, 8]);
}

#[test]
fn wrong_inputs_on_the_dynamic_path_are_errors_that_name_the_model() {
    let m = Wide::<Const<4>>::init(0);
    let e = m.forward_dyn(&[Tensor::randn(&[2, 3, 5], DType::F32)]).unwrap_err().to_string();
    assert!(e.contains("Wide::forward") && e.contains("[B, T, 4]"), "{e}");
    let e = m.forward_dyn(&[Tensor::randn(&[2, 4], DType::F32)]).unwrap_err().to_string();
    assert!(e.contains("[B, T, 4]"), "{e}");
}
