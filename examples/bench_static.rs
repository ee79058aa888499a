//! Static (generated backward, one tape node per model) against the dynamic tape running the
//! same layers op by op: forward+backward time per step, best of N, same thread count.
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
}
