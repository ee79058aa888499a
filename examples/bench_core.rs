//! Core benchmarks: SGEMM throughput, elementwise bandwidth and the tape's per-op overhead,
//! each beside a baseline measured in the same run (a naive triple loop for SGEMM; PyTorch
//! for everything with `--pytorch`, which runs benches/bench_core_pytorch.py).
//!
//!     cargo run --release --example bench_core [-- --pytorch]
//!
//! Timings are best-of-N wall clock: the machine is shared and noisy, and the best run is the
//! one least disturbed.

use std::process::Command;

use tensorbrain::prelude::*;
use tensorbrain::set_num_threads;

#[path = "common/bench.rs"]
mod bench;
use bench::best_of;

fn sgemm_gflops(n: usize) -> f64 {
    let a = Tensor::randn(&[n, n], DType::F32);
    let b = Tensor::randn(&[n, n], DType::F32);
    let reps = (2e9 / (2.0 * (n as f64).powi(3))).clamp(3.0, 50.0) as usize;
    2.0 * (n as f64).powi(3) / best_of(reps, || drop(a.matmul(&b))) / 1e9
}

/// The textbook i-k-j loop, to show what the GEMM kernel buys.
fn naive_sgemm_gflops(n: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32).collect();
    let b = a.clone();
    let mut c = vec![0f32; n * n];
    let secs = best_of(3, || {
        c.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                for j in 0..n {
                    c[i * n + j] += aik * b[k * n + j];
                }
            }
        }
        std::hint::black_box(&c);
    });
    2.0 * (n as f64).powi(3) / secs / 1e9
}

fn add_gbps(n: usize) -> f64 {
    let a = Tensor::randn(&[n], DType::F32);
    let b = Tensor::randn(&[n], DType::F32);
    // Read two operands, write one result.
    3.0 * 4.0 * n as f64 / best_of(20, || drop(&a + &b)) / 1e9
}

fn tape_ns(requires_grad: bool) -> f64 {
    let a = Tensor::randn(&[4, 4], DType::F32).set_requires_grad(requires_grad);
    let b = Tensor::randn(&[4, 4], DType::F32).set_requires_grad(requires_grad);
    let iters = 200_000;
    best_of(5, || {
        for _ in 0..iters {
            std::hint::black_box(&a * &b);
        }
    }) / iters as f64
        * 1e9
}

fn main() {
    let with_pytorch = std::env::args().any(|a| a == "--pytorch");
    manual_seed(0);
    let sizes = [256, 512, 1024, 2048];
    let mut rows: Vec<(String, f64, Option<f64>)> = Vec::new();
    let threads = [1, 2];
    for n in sizes {
        let mut v = [0.0; 2];
        for (i, &t) in threads.iter().enumerate() {
            set_num_threads(t);
            v[i] = sgemm_gflops(n);
        }
        rows.push((format!("SGEMM {n}x{n} GFLOP/s"), v[0], Some(v[1])));
    }
    set_num_threads(1);
    rows.push(("naive i-k-j SGEMM 256 GFLOP/s".into(), naive_sgemm_gflops(256), None));
    let mut v = [0.0; 2];
    for (i, &t) in threads.iter().enumerate() {
        set_num_threads(t);
        v[i] = add_gbps(1 << 24);
    }
    rows.push(("add 16M f32 GB/s".into(), v[0], Some(v[1])));
    set_num_threads(1);
    rows.push(("4x4 mul, grad off (ns/op)".into(), tape_ns(false), None));
    rows.push(("4x4 mul, grad on (ns/op)".into(), tape_ns(true), None));
    set_num_threads(0);

    println!("TensorBrain bench_core ({} cores available)", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("{:<34}{:>12}{:>12}", "measurement", "1 thread", "2 threads");
    for (name, one, two) in &rows {
        match two {
            Some(two) => println!("{name:<34}{one:>12.1}{two:>12.1}"),
            None => println!("{name:<34}{one:>12.1}"),
        }
    }
    if with_pytorch {
        println!();
        let status = Command::new("python3").arg("benches/bench_core_pytorch.py").status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("could not run benches/bench_core_pytorch.py (needs `pip install torch`, run from the repo root)");
        }
    }
}
