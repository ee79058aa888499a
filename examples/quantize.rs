//! INT8 post-training quantization of a `#[model]`: accuracy (f32 vs dynamic vs static) and
//! speed (the int8 GEMM against our f32 SGEMM on the same shapes, and whole MLPs), measured in
//! one run.
//!
//!     cargo run --release --example quantize -- --bench
//!     cargo run --release --example quantize -- --bench --steps 2000 --threads 1
//!
//! Accuracy: the reference MLP (784-256-10) trained for `--steps` Adam steps (batch 64) on
//! MNIST's training split, evaluated on the full test split. Data from `--data DIR`, else
//! `$TENSORBRAIN_DATA/mnist`, else `../shared/data/mnist`.
//! Speed: GOP/s of u8×i8→i32 GEMM on every CPU level this machine has, against f32 SGEMM
//! (the `gemm` crate, AVX-512/AVX2/FMA) on the same m×k×n; and the 784-1024-1024-10 MLP at
//! batch 1 and 64, f32 (the code `#[model]` generated, fused) vs int8 dynamic vs int8 static.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use tensorbrain::data::{dataset_dir, mnist, Split};
use tensorbrain::nn::loss::cross_entropy;
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;
use tensorbrain::quant::{self, ObserverKind, QuantConfig};
use tensorbrain_kernels::int8::{qgemm_with_level, CpuLevel, Output, PackedI8};

#[derive(Parser)]
struct Args {
    /// Print the accuracy and speed tables.
    #[arg(long)]
    bench: bool,
    /// Adam steps for the accuracy model.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Kernel threads (0: all).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    data: Option<PathBuf>,
}

/// 784-256-10 with ReLU: the reference MLP.
#[model]
pub struct Mlp {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        self.fc2(self.fc1(x.flatten(1)).relu())
    }
}

/// The larger MLP where compute, not overhead, dominates.
#[model]
pub struct Wide {
    fc1: Linear<784, 1024>,
    fc2: Linear<1024, 1024>,
    fc3: Linear<1024, 10>,
}

#[model]
impl Wide {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc3(self.fc2(self.fc1(x).relu()).relu())
    }
}

/// Median seconds per call of each function, calling them in turn (round robin) until
/// `budget` has passed, so that load from other processes hits every contender alike and
/// their ratios stay fair on a busy machine.
fn time_each(budget: Duration, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    fs.iter_mut().for_each(|f| f());
    let mut samples = vec![Vec::new(); fs.len()];
    let start = Instant::now();
    while start.elapsed() < budget || samples[0].len() < 5 {
        for (f, s) in fs.iter_mut().zip(&mut samples) {
            let t = Instant::now();
            f();
            s.push(t.elapsed().as_secs_f64());
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

/// A second model with the same weights and buffers, in eval mode (models are not `Clone`).
fn copy_of<M: ModuleExt>(from: &M, mut to: M) -> M {
    let src: std::collections::HashMap<String, Tensor> = from.state_dict().into_iter().collect();
    to.visit_params_mut("", &mut |n, t| *t = src[n].clone());
    to.visit_buffers_mut("", &mut |n, t| *t = src[n].clone());
    to.eval();
    to
}

fn accuracy(model: &Mlp, x: &Tensor, y: &[i64]) -> f64 {
    let logits = no_grad(|| model.forward_dyn(&[x.clone()])).expect("forward");
    let pred = logits.try_argmax(Some(1), false).expect("argmax").to_vec::<i64>();
    100.0 * pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len() as f64
}

fn accuracy_table(args: &Args) -> tensorbrain::Result<()> {
    let dir = dataset_dir("mnist", args.data.as_deref());
    let (train_x, train_y) = mnist::load(&dir, Split::Train)?;
    let (test_x, test_y) = mnist::load(&dir, Split::Test)?;
    let test_y = test_y.to_vec::<i64>();
    manual_seed(0);
    let mut model = Mlp::init(0);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 1e-3, ..Default::default() })?;
    let n = train_x.shape()[0];
    for step in 0..args.steps {
        let at = (step * 64) % (n - 64);
        opt.zero_grad();
        let loss = cross_entropy(&model.forward_dyn(&[train_x.try_narrow(0, at, 64)?])?, &train_y.try_narrow(0, at, 64)?);
        loss.backward();
        opt.step()?;
    }
    model.eval();
    let graph = model.graph();
    let calib: Vec<Vec<Tensor>> = (0..8).map(|i| Ok(vec![train_x.try_narrow(0, n - 64 * (i + 1), 64)?])).collect::<tensorbrain::Result<_>>()?;
    let f32_acc = accuracy(&model, &test_x, &test_y);
    println!("\nAccuracy: MNIST MLP 784-256-10, {} Adam steps, full test split (10 000 images)", args.steps);
    println!("| model | accuracy | vs f32 |\n|---|---:|---:|");
    println!("| f32 | {f32_acc:.2}% | |");
    let configs = [
        ("int8 dynamic", QuantConfig::dynamic()),
        ("int8 static, min-max", QuantConfig::static_ptq()),
        ("int8 static, percentile 99.99", QuantConfig::static_ptq().with_observer(ObserverKind::Percentile { percentile: 99.99 })),
        ("int8 static, MSE", QuantConfig::static_ptq().with_observer(ObserverKind::Mse)),
    ];
    for (name, config) in configs {
        let mut q = copy_of(&model, Mlp::init(0));
        quant::quantize(&mut q, &graph, &calib, &config)?;
        let acc = accuracy(&q, &test_x, &test_y);
        println!("| {name} | {acc:.2}% | {:+.2} |", acc - f32_acc);
    }
    Ok(())
}

fn gemm_table() {
    let budget = Duration::from_millis(600);
    println!("\nGEMM, y[m×n] = x[m×k]·W[n×k]ᵀ, {} thread(s); GOP/s counts 2·m·n·k", tensorbrain::num_threads());
    println!("| m×k×n | f32 GOP/s, Wᵀ strided (as Linear) | f32 GOP/s, Wᵀ contiguous | int8 level | int8 GOP/s | int8 / best f32 |");
    println!("|---|---:|---:|---|---:|---:|");
    for (m, k, n) in [(1, 1024, 1024), (64, 784, 1024), (64, 1024, 1024), (256, 1024, 1024)] {
        let ops = 2.0 * (m * n * k) as f64;
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5).collect();
        let mut c = vec![0f32; m * n];
        let a8: Vec<u8> = (0..m * k).map(|i| (i * 31 % 251) as u8).collect();
        let w8: Vec<i8> = (0..n * k).map(|i| (i * 17 % 253) as u8 as i8).collect();
        let packed = PackedI8::pack(&w8, n, k);
        let levels = CpuLevel::supported();
        let mut outs = vec![vec![0i32; m * n]; levels.len()];
        // W is [n, k] row-major: f32 reads it as the k×n matrix Wᵀ through strides, as Linear does.
        let mut f32_gemm = || {
            tensorbrain_kernels::gemm::matmul(m, k, n, &a, 0, k as isize, 1, &w, 0, 1, k as isize, &mut c, n as isize, 1, false);
            black_box(&c);
        };
        let mut int8: Vec<Box<dyn FnMut()>> = levels
            .iter()
            .zip(outs.iter_mut())
            .map(|(&level, out)| {
                let (a8, packed) = (&a8, &packed);
                Box::new(move || {
                    qgemm_with_level(level, m, a8, k, packed, Output::I32(out), n);
                    black_box(&out);
                }) as Box<dyn FnMut()>
            })
            .collect();
        // The same product with Wᵀ stored contiguously (k×n), the layout SGEMM likes best.
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let mut c2 = vec![0f32; m * n];
        let mut f32_contiguous = || {
            tensorbrain_kernels::gemm::matmul(m, k, n, &a, 0, k as isize, 1, &wt, 0, n as isize, 1, &mut c2, n as isize, 1, false);
            black_box(&c2);
        };
        let mut all: Vec<&mut dyn FnMut()> = vec![&mut f32_gemm, &mut f32_contiguous];
        all.extend(int8.iter_mut().map(|f| &mut **f as &mut dyn FnMut()));
        let secs = time_each(budget, &mut all);
        let best_f32 = secs[0].min(secs[1]);
        for (level, s) in levels.iter().zip(&secs[2..]) {
            println!(
                "| {m}×{k}×{n} | {:.1} | {:.1} | {level} | {:.1} | {:.2}× |",
                ops / secs[0] / 1e9,
                ops / secs[1] / 1e9,
                ops / s / 1e9,
                best_f32 / s
            );
        }
    }
}

fn mlp_table() -> tensorbrain::Result<()> {
    let budget = Duration::from_millis(1500);
    manual_seed(1);
    let mut model = Wide::init(1);
    model.eval();
    let graph = model.graph();
    let calib = vec![vec![Tensor::rand(&[64, 784], DType::F32)]];
    let mut dynamic = copy_of(&model, Wide::init(0));
    quant::quantize(&mut dynamic, &graph, &[], &QuantConfig::dynamic())?;
    let mut fixed = copy_of(&model, Wide::init(0));
    let plan = quant::quantize(&mut fixed, &graph, &calib, &QuantConfig::static_ptq())?;
    let dir = std::env::temp_dir();
    let (f32_path, int8_path) = (dir.join("tb-wide-f32.safetensors"), dir.join("tb-wide-int8.safetensors"));
    tensorbrain::checkpoint::save_safetensors(&f32_path, &model.named_parameters())?;
    plan.save(&int8_path)?;
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    println!("\nMLP 784-1024-1024-10, {} thread(s), ms per batch (median)", tensorbrain::num_threads());
    println!("| batch | f32 (generated, fused) | int8 dynamic | int8 static | static speed-up |\n|---:|---:|---:|---:|---:|");
    for batch in [1, 64] {
        let x = Tensor::rand(&[batch, 784], DType::F32);
        let run = |m: &Wide| drop(black_box(no_grad(|| m.forward_dyn(&[x.clone()])).expect("forward")));
        let secs = time_each(budget, &mut [&mut || run(&model), &mut || run(&dynamic), &mut || run(&fixed)]);
        let (f, d, s) = (secs[0], secs[1], secs[2]);
        println!("| {batch} | {:.3} | {:.3} | {:.3} | {:.2}× |", f * 1e3, d * 1e3, s * 1e3, f / s);
    }
    println!("\nOn disk: f32 {:.2} MB, int8 {:.2} MB", size(&f32_path), size(&int8_path));
    std::fs::remove_file(&f32_path).ok();
    std::fs::remove_file(&int8_path).ok();
    Ok(())
}

fn main() -> tensorbrain::Result<()> {
    let args = Args::parse();
    if args.threads > 0 {
        tensorbrain::set_num_threads(args.threads);
    }
    println!("int8 kernels: {} (best of {:?}; pin with TENSORBRAIN_CPU)", tensorbrain_kernels::int8::active_level(), CpuLevel::supported());
    if !args.bench {
        println!("pass --bench to print the accuracy and speed tables");
        return Ok(());
    }
    gemm_table();
    mlp_table()?;
    accuracy_table(&args)
}
