//! Static (generated backward, one tape node per model) against the dynamic tape running the
//! same layers op by op: forward+backward time per step, best of N, same thread count. Then a
//! generic model instantiated at the literal model's sizes against the literal model: sizes as
//! type parameters must cost nothing at run time.
//!
//!     cargo run --release --example bench_static

use std::time::Instant;

use tensorbrain::autograd::grad;
use tensorbrain::prelude::*;

#[model]
pub struct Mlp {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

#[model]
pub struct Cnn {
    conv1: Conv2d<1, 16, 5>,
    pool: MaxPool2d<2>,
    conv2: Conv2d<16, 32, 5>,
    flat: Flatten,
    fc: Linear<512, 10>,
}

#[model]
impl Cnn {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool(self.conv1(x).relu());
        let h = self.pool(self.conv2(h).relu());
        self.fc(self.flat(h)).log_softmax(1)
    }
}

/// A narrow, deep chain of cheap ops where per-op overhead shows.
#[model]
pub struct Small {
    a: Linear<16, 16>,
    b: Linear<16, 16>,
    c: Linear<16, 16>,
    d: Linear<16, 4>,
}

#[model]
impl Small {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 4] {
        let h = self.a(x).tanh() * 0.5 + 0.1;
        let h = self.b(h).sigmoid() - 0.5;
        let h = self.c(h).gelu() * 2.0;
        self.d(h).softmax(1)
    }
}

/// The MLP generic in all three sizes: `GenericMlp<Const<784>, Const<256>, Const<10>>`.
#[model]
pub struct GenericMlp<I: Dim, H: Dim, O: Dim> {
    fc1: Linear<I, H>,
    fc2: Linear<H, O>,
}

#[model]
impl<I: Dim, H: Dim, O: Dim> GenericMlp<I, H, O> {
    pub fn forward(&self, x: tb![B, I]) -> tb![B, O] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

/// Self-attention with the head split written symbolically (`D / H`) or with numbers.
#[model]
pub struct GenericAttention<D: Dim, H: Dim> {
    q: Linear<D, D>,
    k: Linear<D, D>,
    v: Linear<D, D>,
    out: Linear<D, D>,
}

#[model]
impl<D: Dim, H: Dim> GenericAttention<D, H> {
    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let q = self.q(x).reshape([B, T, H, D / H]).transpose(1, 2);
        let k = self.k(x).reshape([B, T, H, D / H]).transpose(1, 2);
        let v = self.v(x).reshape([B, T, H, D / H]).transpose(1, 2);
        let mixed = (q.matmul(k.transpose(2, 3)) * 0.125).softmax(-1).matmul(v);
        self.out(mixed.transpose(1, 2).reshape([B, T, D]))
    }
}

#[model]
pub struct LiteralAttention {
    q: Linear<64, 64>,
    k: Linear<64, 64>,
    v: Linear<64, 64>,
    out: Linear<64, 64>,
}

#[model]
impl LiteralAttention {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, T, 64] {
        let q = self.q(x).reshape([B, T, 4, 16]).transpose(1, 2);
        let k = self.k(x).reshape([B, T, 4, 16]).transpose(1, 2);
        let v = self.v(x).reshape([B, T, 4, 16]).transpose(1, 2);
        let mixed = (q.matmul(k.transpose(2, 3)) * 0.125).softmax(-1).matmul(v);
        self.out(mixed.transpose(1, 2).reshape([B, T, 64]))
    }
}

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn step(out: Tensor, params: &[Tensor]) {
    let loss = out.mean(&[], false);
    std::hint::black_box(grad(&loss, params, None, false).unwrap());
}

fn row(name: &str, reps: usize, static_step: impl FnMut(), tape_step: impl FnMut()) {
    let s = best_ms(reps, static_step);
    let t = best_ms(reps, tape_step);
    println!("{name:<28}{s:>12.3}{t:>12.3}{:>10.2}x", t / s);
}

/// Generic against literal, interleaved so machine noise hits both alike.
fn generic_row(name: &str, reps: usize, mut generic: impl FnMut(), mut literal: impl FnMut()) {
    let (mut g, mut l) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        g = g.min(best_ms(reps, &mut generic));
        l = l.min(best_ms(reps, &mut literal));
    }
    println!("{name:<28}{g:>12.3}{l:>12.3}{:>10.2}x", l / g);
}

fn main() {
    manual_seed(0);
    println!("forward+backward per step, best of N (ms); {} threads", tensorbrain::num_threads());
    println!("{:<28}{:>12}{:>12}{:>11}", "model", "static", "tape", "speed-up");

    let mlp = Mlp::init(0);
    let p = mlp.parameters();
    let x = Tensor::randn(&[64, 784], DType::F32);
    row(
        "MLP 784-256-10, batch 64",
        50,
        || step(mlp.forward_dyn(&[x.clone()]).unwrap(), &p),
        || step(mlp.fc2.forward(&mlp.fc1.forward(&x).unwrap().relu()).unwrap().log_softmax(1), &p),
    );

    let cnn = Cnn::init(0);
    let p = cnn.parameters();
    let x = Tensor::randn(&[64, 1, 28, 28], DType::F32);
    row(
        "CNN (2 conv), batch 64",
        10,
        || step(cnn.forward_dyn(&[x.clone()]).unwrap(), &p),
        || {
            let h = cnn.pool.forward(&cnn.conv1.forward(&x).unwrap().relu()).unwrap();
            let h = cnn.pool.forward(&cnn.conv2.forward(&h).unwrap().relu()).unwrap();
            step(cnn.fc.forward(&cnn.flat.forward(&h).unwrap()).unwrap().log_softmax(1), &p)
        },
    );

    let small = Small::init(0);
    let p = small.parameters();
    let x = Tensor::randn(&[8, 16], DType::F32);
    row(
        "4-layer 16-wide, batch 8",
        2000,
        || step(small.forward_dyn(&[x.clone()]).unwrap(), &p),
        || {
            let h = &(&small.a.forward(&x).unwrap().tanh() * 0.5) + 0.1;
            let h = &small.b.forward(&h).unwrap().sigmoid() - 0.5;
            let h = &small.c.forward(&h).unwrap().gelu() * 2.0;
            step(small.d.forward(&h).unwrap().softmax(1), &p)
        },
    );

    println!();
    println!("{:<28}{:>12}{:>12}{:>11}", "model (static fwd+bwd)", "generic", "literal", "ratio");
    let gen_mlp = GenericMlp::<Const<784>, Const<256>, Const<10>>::init(0);
    let (pg, pl) = (gen_mlp.parameters(), mlp.parameters());
    let x = Tensor::randn(&[64, 784], DType::F32);
    generic_row("MLP 784-256-10, batch 64", 50, || step(gen_mlp.forward_dyn(&[x.clone()]).unwrap(), &pg), || step(mlp.forward_dyn(&[x.clone()]).unwrap(), &pl));
    let gen_attn = GenericAttention::<Const<64>, Const<4>>::init(0);
    let lit_attn = LiteralAttention::init(0);
    let (pg, pl) = (gen_attn.parameters(), lit_attn.parameters());
    let x = Tensor::randn(&[8, 32, 64], DType::F32);
    generic_row(
        "attention 64/4, b8 t32",
        50,
        || step(gen_attn.forward_dyn(&[x.clone()]).unwrap(), &pg),
        || step(lit_attn.forward_dyn(&[x.clone()]).unwrap(), &pl),
    );
}
