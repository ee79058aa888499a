//! INT8 quantization of `#[model]`s: accuracy (f32 vs dynamic vs static vs quantization-aware
//! training) and speed (the int8 GEMM against our f32 SGEMM on the same shapes; whole models
//! f32 unfused, f32 fused, int8 dynamic, int8 static, and PyTorch's f32, `quantize_dynamic` and
//! static fbgemm on the same architectures), measured in one run.
//!
//!     cargo run --release --example quantize -- --bench --pytorch python3
//!     cargo run --release --example quantize -- --bench --threads 1 --skip-accuracy
//!
//! Accuracy: an MLP (784-256-10) and a CNN (two 3x3 convolutions with max-pool, two linear
//! layers) trained for `--steps` Adam steps (batch 64) on MNIST's training split, and the CNN on
//! Fashion-MNIST, evaluated on the full test splits. QAT fine-tunes the trained f32 weights for
//! `--qat-steps` more steps with fake quantization, then converts with the ranges it learnt.
//! Data from `--data DIR` (holding `mnist/` and `fashion-mnist/`), else `$TENSORBRAIN_DATA`,
//! else `../shared/data`.
//! Speed: `--pytorch PYTHON` runs `benches/quantize_pytorch.py` with that interpreter (it needs
//! torch) right after our rows, with the same thread count, so both sides share one run.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tensorbrain::compile::{self, Options};
use tensorbrain::data::{dataset_dir, fashion_mnist, mnist, Split};
use tensorbrain::ir::autodiff::Backward;
use tensorbrain::nn::loss::cross_entropy;
use tensorbrain::nn::{run_static, StaticModel};
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;
use tensorbrain::quant::{ObserverKind, Qat, QuantConfig, Quantize};
use tensorbrain_kernels::int8::{qgemm_with_level, CpuLevel, Output, PackedI8};

#[derive(Parser)]
struct Args {
    /// Print the accuracy and speed tables.
    #[arg(long)]
    bench: bool,
    /// Adam steps (batch 64) for each accuracy model.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Quantization-aware fine-tuning steps after `--steps`.
    #[arg(long, default_value_t = 300)]
    qat_steps: usize,
    /// Kernel threads (0: all).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A folder holding `mnist/` and `fashion-mnist/`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A Python with torch: adds PyTorch's rows to the speed table (benches/quantize_pytorch.py).
    #[arg(long)]
    pytorch: Option<String>,
    /// Only the speed tables.
    #[arg(long)]
    skip_accuracy: bool,
    /// Leave out the GEMM table.
    #[arg(long)]
    skip_gemm: bool,
    /// The models of the speed table (for profiling one).
    #[arg(long, value_delimiter = ',', default_value = "mlp,wide,ffn,cnn")]
    models: Vec<String>,
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

/// Two 3x3 convolutions (16 and 32 channels) with ReLU and 2x2 max-pool, then 1568-128-10.
#[model]
pub struct Cnn {
    conv1: Conv2d<1, 16, 3, 1, 1>,
    pool1: MaxPool2d<2>,
    conv2: Conv2d<16, 32, 3, 1, 1>,
    pool2: MaxPool2d<2>,
    fc1: Linear<1568, 128>,
    fc2: Linear<128, 10>,
}

#[model]
impl Cnn {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool1(self.conv1(x).relu());
        let h = self.pool2(self.conv2(h).relu()).flatten(1);
        self.fc2(self.fc1(h).relu())
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

/// A transformer's feed-forward block, 512-2048-512.
#[model]
pub struct Ffn {
    up: Linear<512, 2048>,
    down: Linear<2048, 512>,
}

#[model]
impl Ffn {
    pub fn forward(&self, x: tb![B, 512]) -> tb![B, 512] {
        self.down(self.up(x).relu())
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

/// A fresh model's parameters, copied so that training it leaves `from` alone.
fn deep_copy_of<M: ModuleExt>(from: &M, mut to: M) -> M {
    let src: std::collections::HashMap<String, Tensor> = from.state_dict().into_iter().collect();
    to.visit_params_mut("", &mut |n, t| *t = Tensor::from_vec(src[n].to_vec::<f32>(), src[n].shape()).set_requires_grad(true));
    to
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_message(what.to_string());
    bar.set_style(ProgressStyle::with_template("{msg:<28} {bar:30} {pos}/{len} steps, loss {prefix}").expect("template"));
    bar
}

/// Adam (batch 64) over the training split; `forward` is the model's own or QAT's.
fn train(steps: usize, lr: f64, params: Vec<Tensor>, data: &(Tensor, Tensor), what: &str, mut forward: impl FnMut(Tensor) -> tensorbrain::Result<Tensor>) -> tensorbrain::Result<()> {
    let (x, y) = data;
    let n = x.shape()[0];
    let mut opt = Adam::new(params, AdamOptions { lr, ..Default::default() })?;
    let bar = progress(steps, what);
    for step in 0..steps {
        let at = (step * 64 + 31 * (step / (n / 64))) % (n - 64);
        opt.zero_grad();
        let loss = cross_entropy(&forward(x.try_narrow(0, at, 64)?)?, &y.try_narrow(0, at, 64)?);
        loss.backward();
        opt.step()?;
        if step % 50 == 0 {
            bar.set_prefix(format!("{:.3}", loss.item::<f32>()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn accuracy<M: StaticModel>(model: &M, x: &Tensor, y: &[i64]) -> tensorbrain::Result<f64> {
    let mut correct = 0;
    for at in (0..y.len()).step_by(1000) {
        let len = 1000.min(y.len() - at);
        let logits = no_grad(|| run_static(model, &[x.try_narrow(0, at, len)?]))?;
        let pred = logits.try_argmax(Some(1), false)?.to_vec::<i64>();
        correct += pred.iter().zip(&y[at..at + len]).filter(|(p, t)| p == t).count();
    }
    Ok(100.0 * correct as f64 / y.len() as f64)
}

/// One accuracy row: f32, then each quantization of the same trained weights.
fn accuracy_row<M: StaticModel + ModuleExt>(
    args: &Args,
    name: &str,
    fresh: impl Fn() -> M,
    graph_of: impl Fn(&M) -> Backward,
    train_set: &(Tensor, Tensor),
    test_set: &(Tensor, Tensor),
) -> tensorbrain::Result<String> {
    manual_seed(0);
    let model = fresh();
    train(args.steps, 1e-3, model.parameters(), train_set, &format!("{name}: f32"), |x| run_static(&model, &[x]))?;
    let mut model = model;
    model.eval();
    let graph = graph_of(&model);
    let (test_x, test_y) = (&test_set.0, test_set.1.to_vec::<i64>());
    let n = train_set.0.shape()[0];
    let calib: Vec<Vec<Tensor>> = (0..8).map(|i| Ok(vec![train_set.0.try_narrow(0, n - 64 * (i + 1), 64)?])).collect::<tensorbrain::Result<_>>()?;
    let f32_acc = accuracy(&model, test_x, &test_y)?;
    let mut cells = vec![format!("{f32_acc:.2}%")];
    for config in [QuantConfig::dynamic(), QuantConfig::static_ptq(), QuantConfig::static_ptq().with_observer(ObserverKind::Mse)] {
        let mut q = copy_of(&model, fresh());
        q.quantize(&calib, &config)?;
        let acc = accuracy(&q, test_x, &test_y)?;
        cells.push(format!("{acc:.2}% ({:+.2})", acc - f32_acc));
    }
    // QAT: fine-tune a copy of the trained weights with fake quantization, then convert.
    let mut q = deep_copy_of(&model, fresh());
    let mut qat = Qat::prepare(&q, &graph, &QuantConfig::static_ptq())?;
    let params = q.parameters();
    train(args.qat_steps, 1e-4, params, train_set, &format!("{name}: QAT"), |x| qat.forward(&q, &[x]))?;
    q.eval();
    let graph = graph_of(&q);
    qat.convert(&mut q, &graph)?;
    let acc = accuracy(&q, test_x, &test_y)?;
    cells.push(format!("{acc:.2}% ({:+.2})", acc - f32_acc));
    // The same extra steps without fake quantization: how much of QAT's gain is training.
    let more = deep_copy_of(&model, fresh());
    train(args.qat_steps, 1e-4, more.parameters(), train_set, &format!("{name}: f32, more steps"), |x| run_static(&more, &[x]))?;
    let mut more = more;
    more.eval();
    cells.push(format!("{:.2}%", accuracy(&more, test_x, &test_y)?));
    Ok(format!("| {name} | {} |", cells.join(" | ")))
}

fn accuracy_table(args: &Args) -> tensorbrain::Result<()> {
    let root = args.data.clone();
    let mnist_dir = dataset_dir("mnist", root.as_ref().map(|r| r.join("mnist")).as_deref());
    let fashion_dir = dataset_dir("fashion-mnist", root.as_ref().map(|r| r.join("fashion-mnist")).as_deref());
    let mnist = (mnist::load(&mnist_dir, Split::Train)?, mnist::load(&mnist_dir, Split::Test)?);
    let fashion = (fashion_mnist::load(&fashion_dir, Split::Train)?, fashion_mnist::load(&fashion_dir, Split::Test)?);
    let mut rows = Vec::new();
    rows.push(accuracy_row(args, "MNIST MLP 784-256-10", || Mlp::init(0), Mlp::graph, &mnist.0, &mnist.1)?);
    rows.push(accuracy_row(args, "MNIST CNN", || Cnn::init(0), Cnn::graph, &mnist.0, &mnist.1)?);
    rows.push(accuracy_row(args, "Fashion-MNIST CNN", || Cnn::init(0), Cnn::graph, &fashion.0, &fashion.1)?);
    println!(
        "\nAccuracy on the full test splits (10 000 images); f32 trained {} Adam steps, QAT {} more with fake quantization",
        args.steps, args.qat_steps
    );
    println!("| model | f32 | int8 dynamic | int8 static, min-max | int8 static, MSE | int8 QAT | f32 after the QAT steps |\n|---|---:|---:|---:|---:|---:|---:|");
    rows.iter().for_each(|r| println!("{r}"));
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

/// PyTorch's timings for one (model, batch): f32, dynamic, static, in ms.
#[derive(Clone, Copy)]
struct TorchRow {
    f32_ms: f64,
    dynamic_ms: f64,
    static_ms: f64,
}

/// Runs benches/quantize_pytorch.py with `python` and reads its JSON lines.
fn pytorch_rows(python: &str, threads: usize, models: &[String]) -> Result<Vec<(String, usize, TorchRow)>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/quantize_pytorch.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--json", "--threads", &threads.to_string(), "--batches", "1,64", "--models", &models.join(",")])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run `{python} {}`: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("`{python} {}` failed ({}); it needs torch (pip install torch)", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |line: &str| -> Option<(String, usize, TorchRow)> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let ms = |key: &str| v[key].as_f64();
        let row = TorchRow { f32_ms: ms("f32_ms")?, dynamic_ms: ms("dynamic_ms")?, static_ms: ms("static_ms")? };
        Some((v["model"].as_str()?.to_string(), usize::try_from(v["batch"].as_u64()?).ok()?, row))
    };
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(row)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("could not read the script's JSON lines:\n{text}"))
}

/// Our timings for one model at batch 1 and 64: f32 unfused (the IR run op by op), f32 fused
/// (the code `#[model]` generated), int8 dynamic, int8 static; ms per batch.
fn our_rows<M: StaticModel + ModuleExt>(name: &str, fresh: impl Fn() -> M, graph_of: impl Fn(&M) -> Backward, input: &[usize]) -> tensorbrain::Result<Vec<(String, usize, [f64; 4])>> {
    let budget = Duration::from_millis(1500);
    manual_seed(1);
    let mut model = fresh();
    model.eval();
    let graph = graph_of(&model);
    let unfused = compile::compile_model(&model, &graph, &Options::unfused())?;
    let shape = |b: usize| std::iter::once(b).chain(input.iter().copied()).collect::<Vec<_>>();
    let calib: Vec<Vec<Tensor>> = (0..4).map(|_| vec![Tensor::rand(&shape(64), DType::F32)]).collect();
    let mut dynamic = copy_of(&model, fresh());
    dynamic.quantize(Vec::<Tensor>::new(), &QuantConfig::dynamic())?;
    let mut fixed = copy_of(&model, fresh());
    fixed.quantize(&calib, &QuantConfig::static_ptq())?;
    let mut rows = Vec::new();
    for batch in [1, 64] {
        let x = Tensor::rand(&shape(batch), DType::F32);
        let run = |m: &M| drop(black_box(no_grad(|| run_static(m, &[x.clone()])).expect("forward")));
        let secs = time_each(budget, &mut [
            &mut || drop(black_box(no_grad(|| unfused.forward(&[x.clone()])).expect("forward"))),
            &mut || run(&model),
            &mut || run(&dynamic),
            &mut || run(&fixed),
        ]);
        rows.push((name.to_string(), batch, [secs[0] * 1e3, secs[1] * 1e3, secs[2] * 1e3, secs[3] * 1e3]));
    }
    Ok(rows)
}

fn speed_table(args: &Args) -> tensorbrain::Result<()> {
    let threads = tensorbrain::num_threads();
    let mut ours = Vec::new();
    let wanted = |m: &str| args.models.iter().any(|w| w == m);
    if wanted("mlp") {
        ours.extend(our_rows("mlp", || Mlp::init(1), Mlp::graph, &[1, 28, 28])?);
    }
    if wanted("wide") {
        ours.extend(our_rows("wide", || Wide::init(1), Wide::graph, &[784])?);
    }
    if wanted("ffn") {
        ours.extend(our_rows("ffn", || Ffn::init(1), Ffn::graph, &[512])?);
    }
    if wanted("cnn") {
        ours.extend(our_rows("cnn", || Cnn::init(1), Cnn::graph, &[1, 28, 28])?);
    }
    let torch = match &args.pytorch {
        Some(python) => match pytorch_rows(python, threads, &args.models) {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("PyTorch rows left out: {e}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    println!("\nWhole models, {threads} thread(s), ms per batch (median, round robin); mlp 784-256-10, wide 784-1024-1024-10, ffn 512-2048-512, cnn as in the accuracy table");
    println!("| model | batch | f32 unfused | f32 fused | int8 dynamic | int8 static | static vs f32 unfused | PyTorch f32 | PyTorch dynamic | PyTorch static (fbgemm) | ours static vs PyTorch static |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, batch, [unfused, fused, dynamic, fixed]) in &ours {
        let t = torch.iter().find(|(n, b, _)| n == name && b == batch).map(|r| r.2);
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        println!(
            "| {name} | {batch} | {unfused:.3} | {fused:.3} | {dynamic:.3} | {fixed:.3} | {:.2}× | {} | {} | {} | {} |",
            unfused / fixed,
            cell(t.map(|t| t.f32_ms)),
            cell(t.map(|t| t.dynamic_ms)),
            cell(t.map(|t| t.static_ms)),
            t.map_or("–".to_string(), |t| format!("{:.2}×", t.static_ms / fixed)),
        );
    }
    Ok(())
}

/// f32 and int8 checkpoints of the wide MLP on disk.
fn size_table() -> tensorbrain::Result<()> {
    manual_seed(1);
    let mut model = Wide::init(1);
    model.eval();
    let mut fixed = copy_of(&model, Wide::init(0));
    let plan = fixed.quantize([Tensor::rand(&[64, 784], DType::F32)], &QuantConfig::static_ptq())?;
    let dir = std::env::temp_dir();
    let (f32_path, int8_path) = (dir.join("tb-wide-f32.safetensors"), dir.join("tb-wide-int8.safetensors"));
    tensorbrain::checkpoint::save_safetensors(&f32_path, &model.named_parameters())?;
    plan.save(&int8_path)?;
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    println!("\nOn disk, MLP 784-1024-1024-10: f32 {:.2} MB, int8 {:.2} MB", size(&f32_path), size(&int8_path));
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
    if !args.skip_gemm {
        gemm_table();
    }
    speed_table(&args)?;
    size_table()?;
    if !args.skip_accuracy {
        accuracy_table(&args)?;
    }
    Ok(())
}
