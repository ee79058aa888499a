//! SGEMM throughput by operand layout: what `Linear`'s and the convolutions' `x·Wᵀ` costs
//! against the same product with the weight stored transposed.
//!
//! ```sh
//! cargo run --release -p tensorbrain-kernels --example gemm_layouts [-- --threads 2 --reps 7]
//! ```
//!
//! For each shape m×k×n (MLPs at several batch sizes, square products, a convolution's im2col
//! product and its weight gradient) it times C = A·B with B given as `Linear` gives it (Wᵀ, a
//! column-major view of a row-major `[n, k]` weight) straight through the `gemm` crate (which
//! packs it in place) and through our `matmul` (which transposes it first from 8 rows of A
//! up), and with B stored row-major. Contenders run in turn, round robin, and the median of `--reps` runs
//! is reported, so load on the machine shifts all columns alike; compare within a row.

mod common;

use std::time::Instant;

use common::{arg, median};
use tensorbrain_kernels::gemm::matmul_with_threads;

/// Seconds for one product straight through the `gemm` crate, B strided as (b_rs, b_cs).
#[allow(clippy::too_many_arguments)]
fn time_gemm_crate(threads: usize, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], b_rs: isize, b_cs: isize, c: &mut [f32]) -> f64 {
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let start = Instant::now();
    // SAFETY: a is m×k row-major, b a k×n view inside its slice, c m×n row-major.
    unsafe {
        gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize, b.as_ptr(), b_cs, b_rs, 1.0, 1.0, false, false, false, par);
    }
    start.elapsed().as_secs_f64()
}

/// Seconds for one product, B strided as (b_rs, b_cs).
#[allow(clippy::too_many_arguments)]
fn time_one(threads: usize, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], b_rs: isize, b_cs: isize, c: &mut [f32]) -> f64 {
    let start = Instant::now();
    matmul_with_threads(threads, m, k, n, a, 0, k as isize, 1, b, 0, b_rs, b_cs, c, n as isize, 1, false);
    start.elapsed().as_secs_f64()
}

fn main() {
    let threads = arg("--threads", 1);
    let reps = arg("--reps", 7).max(1);
    let shapes: [(usize, usize, usize, &str); 12] = [
        (32, 1024, 144, "conv weight grad 16->32 3x3 on 32x32: gW = dY·colᵀ"),
        (16, 1024, 1024, "MLP 1024-1024, batch 16"),
        (2, 1024, 1024, "MLP 1024-1024, batch 2"),
        (4, 1024, 1024, "MLP 1024-1024, batch 4"),
        (64, 784, 256, "MLP 784-256 fc1, batch 64"),
        (64, 1024, 1024, "MLP 1024-1024, batch 64"),
        (64, 2048, 512, "MLP 2048-512, batch 64"),
        (256, 1024, 1024, "MLP 1024-1024, batch 256"),
        (512, 512, 512, "square 512"),
        (1024, 1024, 1024, "square 1024"),
        (6272, 288, 64, "conv 3x3 32->64 on 14x14, batch 32 (im2col)"),
        (1, 1024, 1024, "batch 1"),
    ];
    println!("SGEMM GFLOP/s, {threads} thread(s), median of {reps} round-robin runs\n");
    println!("| m×k×n | what | Wᵀ view, gemm crate | Wᵀ view, ours | B row-major, ours | ours / gemm crate on Wᵀ |");
    println!("|---|---|---:|---:|---:|---:|");
    for (m, k, n, what) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32) * 1e-3 - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729 % 1000) as f32) * 1e-3 - 0.5).collect();
        // The same matrix B = Wᵀ stored row-major [k, n].
        let mut b_rm = vec![0.0f32; k * n];
        for j in 0..n {
            for i in 0..k {
                b_rm[i * n + j] = w[j * k + i];
            }
        }
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let (mut t_crate, mut t_view, mut t_rm) = (Vec::new(), Vec::new(), Vec::new());
        let mut results = Vec::new();
        // One warm-up of each, then the timed rounds.
        for round in 0..=reps {
            let tc = time_gemm_crate(threads, m, k, n, &a, &w, 1, k as isize, &mut c);
            results.push(c.clone());
            let tv = time_one(threads, m, k, n, &a, &w, 1, k as isize, &mut c);
            results.push(c.clone());
            let tr = time_one(threads, m, k, n, &a, &b_rm, n as isize, 1, &mut c);
            results.push(c.clone());
            if round > 0 {
                t_crate.push(tc);
                t_view.push(tv);
                t_rm.push(tr);
            }
            // Both layouts compute the same product.
            let want = &results[0];
            for got in &results[1..] {
                let worst = got.iter().zip(want).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "layouts disagree at {m}x{k}x{n}: {worst}");
            }
            results.clear();
        }
        let gflops = |t: Vec<f64>| flops / median(t) / 1e9;
        let (g, v, r) = (gflops(t_crate), gflops(t_view), gflops(t_rm));
        println!("| {m}×{k}×{n} | {what} | {g:.1} | {v:.1} | {r:.1} | {:.2}× |", v / g);
    }
}
