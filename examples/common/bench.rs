//! Pieces the benchmark examples share (`bench_all`, `bench_fusion`, `bench_core`): timing, and
//! the models of the fused-kernel rows, so every table measures the same thing.

#![allow(dead_code)] // each example uses part of it

use std::time::Instant;

use tensorbrain::autograd::grad;
use tensorbrain::compile::{GraphBuilder, Params};
use tensorbrain::ir::Graph;
use tensorbrain::prelude::*;

/// Best wall-clock seconds of `reps` runs of `f`, after one warm-up run.
pub fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// [`best_of`] in milliseconds.
pub fn best_ms(reps: usize, f: impl FnMut()) -> f64 {
    best_of(reps, f) * 1e3
}

/// The gradients of `out`'s mean with respect to `wrt`: one tape training step.
pub fn tape_step(out: Tensor, wrt: &[Tensor]) {
    let loss = out.mean(&[], false);
    std::hint::black_box(grad(&loss, wrt, None, false).unwrap());
}

/// conv 16->32 3x3 + per-channel affine (batch norm in eval) + relu, batch 32, 32×32.
pub fn conv_block() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[32, 16, 32, 32]);
    let h = b.conv2d(x, "conv", 16, 32, 3, 1, 1);
    let h = b.channel_affine(h, "bn", 32);
    let y = b.relu(h);
    b.finish(&[y])
}

/// Random parameters for [`conv_block`].
pub fn conv_block_params() -> Params {
    [
        ("conv.weight", Tensor::randn(&[32, 16, 3, 3], DType::F32) * 0.1),
        ("conv.bias", Tensor::randn(&[32], DType::F32)),
        ("bn.scale", Tensor::randn(&[32, 1, 1], DType::F32).abs() + 0.5),
        ("bn.shift", Tensor::randn(&[32, 1, 1], DType::F32)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Three stages of `x * sigmoid(x) * 0.5 + tanh(x)` on `[rows, cols]`.
pub fn elementwise_block(rows: usize, cols: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let mut h = b.input("x", &[rows, cols]);
    for _ in 0..3 {
        let s = b.sigmoid(h);
        let m = b.mul(h, s);
        let m = b.mul_scalar(m, 0.5);
        let t = b.tanh(h);
        h = b.add(m, t);
    }
    b.finish(&[h])
}

/// [`elementwise_block`] as eager ops (on the tape when `x` requires grad).
pub fn elementwise_eager(x: &Tensor) -> Tensor {
    let mut h = x.clone();
    for _ in 0..3 {
        h = &(&(&h * &h.sigmoid()) * 0.5) + &h.tanh();
    }
    h
}
