//! Convolution forward, input gradient and weight gradient, timed apart, on the shapes of
//! `bench_fusion`'s conv row, the MNIST CNN and a ResNet-18 basic block's 3×3 conv.
//!
//! ```sh
//! cargo run --release -p tensorbrain-kernels --example conv_parts [-- --threads 2 --reps 9]
//! python3 benches/conv_parts_pytorch.py          # the same parts in PyTorch (oneDNN)
//! ```
//!
//! Each part runs `--reps` times round robin with the others and the median is printed, so load
//! on the machine shifts all columns alike.

mod common;

use std::time::Instant;

use common::{arg, median};
use tensorbrain_kernels::conv::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dParams};
use tensorbrain_kernels::threads::set_num_threads;

fn main() {
    let threads = arg("--threads", 2);
    let reps = arg("--reps", 9).max(1);
    set_num_threads(threads);
    // (what, x shape, weight shape, padding)
    let cases: [(&str, [usize; 4], [usize; 4], usize); 4] = [
        ("bench_fusion conv 16->32 3x3 32x32 b32", [32, 16, 32, 32], [32, 16, 3, 3], 1),
        ("MNIST CNN conv1 1->32 3x3 28x28 b64", [64, 1, 28, 28], [32, 1, 3, 3], 0),
        ("MNIST CNN conv2 32->64 3x3 26x26 b64", [64, 32, 26, 26], [64, 32, 3, 3], 0),
        ("ResNet block conv 64->64 3x3 56x56 b8", [8, 64, 56, 56], [64, 64, 3, 3], 1),
    ];
    println!("conv2d parts, {threads} thread(s), median ms of {reps} round-robin runs");
    println!("{:<42}{:>10}{:>12}{:>12}", "shape", "forward", "grad input", "grad weight");
    for (what, xs, ws, pad) in cases {
        let p = Conv2dParams { padding: [pad, pad], ..Default::default() };
        let x: Vec<f32> = (0..xs.iter().product::<usize>()).map(|i| ((i * 7919 % 1000) as f32) * 1e-3 - 0.5).collect();
        let w: Vec<f32> = (0..ws.iter().product::<usize>()).map(|i| ((i * 104729 % 1000) as f32) * 1e-3 - 0.5).collect();
        let b = vec![0.1f32; ws[0]];
        let y = conv2d_forward(&x, xs, &w, ws, Some(&b), &p);
        let go: Vec<f32> = (0..y.len()).map(|i| ((i * 31 % 1000) as f32) * 1e-3 - 0.5).collect();
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..=reps {
            let s = Instant::now();
            std::hint::black_box(conv2d_forward(&x, xs, &w, ws, Some(&b), &p));
            let f = s.elapsed().as_secs_f64();
            let s = Instant::now();
            std::hint::black_box(conv2d_backward_input(&go, &w, xs, ws, &p));
            let gi = s.elapsed().as_secs_f64();
            let s = Instant::now();
            std::hint::black_box(conv2d_backward_weight(&go, &x, xs, ws, &p));
            let gw = s.elapsed().as_secs_f64();
            if round > 0 {
                t[0].push(f);
                t[1].push(gi);
                t[2].push(gw);
            }
        }
        let [f, gi, gw] = t.map(|v| median(v) * 1e3);
        println!("{what:<42}{f:>10.3}{gi:>12.3}{gw:>12.3}");
    }
}
