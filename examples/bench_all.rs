//! Every CPU benchmark of the project in one table, TensorBrain beside PyTorch, measured in the
//! same run: SGEMM, the MLP and CNN training steps of MNIST, the fused blocks of
//! `bench_fusion`, a ResNet-18 basic block and the tape's per-op cost.
//!
//!     cargo run --release --example bench_all -- --pytorch
//!
//! Each configuration (thread count × SIMD level) runs in its own process, so the level pinned
//! with `TENSORBRAIN_CPU` and the thread pool are fresh. Runs are interleaved, ours then
//! PyTorch's, round after round (`--rounds`, 3 by default), and the table gives each row's
//! median over the rounds with the spread (min–max), so one disturbed run cannot decide a row.
//! Within a run a row is the best of several repetitions. `ratio` is PyTorch's time over ours
//! (or our throughput over PyTorch's): above 1 we are faster.
//!
//! PyTorch runs `benches/bench_all_pytorch.py` with `--python` (default `python3`; it needs
//! `pip install torch`). Without `--pytorch` only our columns are printed.

#[path = "serve/src/mnist_models.rs"]
mod mnist_models;
#[path = "common/bench.rs"]
mod bench;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tensorbrain::compile::{compile, training_graph, CompiledGraph, Options, Params};
use tensorbrain::ir::autodiff::backward;
use tensorbrain_kernels::cpu::CpuLevel;
use tensorbrain::nn::{GradReady, StaticModel};
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;

use bench::{best_ms, best_of, conv_block, conv_block_params, elementwise_block, elementwise_eager, tape_step};
use mnist_models::{Cnn, Mlp};

#[derive(Parser, Debug)]
#[command(about = "All CPU benchmarks, TensorBrain and PyTorch interleaved in one run")]
struct Args {
    /// Run PyTorch's side too (benches/bench_all_pytorch.py).
    #[arg(long)]
    pytorch: bool,
    /// The Python that has torch installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Rounds of interleaved runs; the table shows medians over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    threads: Vec<usize>,
    /// SIMD levels to measure (scalar, avx2, avx512), comma-separated; default: every level
    /// this CPU supports.
    #[arg(long, value_delimiter = ',')]
    levels: Vec<String>,
    /// Only the benchmark groups whose name contains this (case-insensitive): sgemm, mlp,
    /// conv, elementwise, resnet, mnist, tape.
    #[arg(long)]
    only: Option<String>,
    /// Internal: run the benchmarks once in this process and print `ROW` lines.
    #[arg(long, hide = true)]
    worker: bool,
}

/// One measurement as a worker prints it: `ROW|name|value|unit`.
const ROW_TAG: &str = "ROW|";

/// Units where more is better; times (ms, ns) are better smaller.
fn higher_is_better(unit: &str) -> bool {
    unit.ends_with("/s")
}

fn main() {
    let args = Args::parse();
    if args.worker {
        let threads = args.threads.first().copied().unwrap_or(1);
        tensorbrain::set_num_threads(threads);
        manual_seed(0);
        run_rows(args.only.as_deref(), &mut |name, value, unit| println!("{ROW_TAG}{name}|{value}|{unit}"));
        return;
    }
    if let Err(e) = orchestrate(&args) {
        eprintln!("bench_all: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Orchestration: child processes, interleaved rounds, the table.

/// Which program produced a column: ours at a SIMD level, or PyTorch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Ours(CpuLevel),
    PyTorch,
}

impl Side {
    fn label(&self) -> String {
        match self {
            Side::Ours(level) => format!("ours {level}"),
            Side::PyTorch => "PyTorch".into(),
        }
    }
}

/// (threads, side, row) -> one value per round, and each row's unit.
#[derive(Default)]
struct Results {
    values: BTreeMap<(usize, Side, String), Vec<f64>>,
    units: BTreeMap<String, String>,
    order: Vec<String>,
}

fn orchestrate(args: &Args) -> Result<(), String> {
    let levels: Vec<CpuLevel> = if args.levels.is_empty() {
        CpuLevel::supported()
    } else {
        args.levels.iter().map(|l| CpuLevel::parse(l).ok_or_else(|| format!("unknown SIMD level {l:?}; expected scalar, avx2 or avx512"))).collect::<Result<_, _>>()?
    };
    if let Some(l) = levels.iter().find(|l| !l.is_supported()) {
        return Err(format!("this CPU cannot run the {l} level (it needs {})", l.required_features()));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/bench_all_pytorch.py");
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let mut sides: Vec<Side> = levels.iter().map(|&l| Side::Ours(l)).collect();
    if args.pytorch {
        sides.push(Side::PyTorch);
    }
    let runs = args.rounds * args.threads.len() * sides.len();
    let bar = ProgressBar::new(runs as u64).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}").expect("a valid template"));
    let mut results = Results::default();
    for round in 0..args.rounds {
        for &threads in &args.threads {
            for side in &sides {
                bar.set_message(format!("round {}: {} threads, {}", round + 1, threads, side.label()));
                let mut cmd = match side {
                    Side::Ours(level) => {
                        let mut c = Command::new(&me);
                        c.args(["--worker", "--threads", &threads.to_string()]);
                        if let Some(only) = &args.only {
                            c.args(["--only", only]);
                        }
                        c.env(tensorbrain_kernels::cpu::ENV_VAR, level.name());
                        c
                    }
                    Side::PyTorch => {
                        let mut c = Command::new(&args.python);
                        c.arg(&script).args(["--threads", &threads.to_string()]);
                        if let Some(only) = &args.only {
                            c.args(["--only", only]);
                        }
                        c
                    }
                };
                let out = cmd.output().map_err(|e| format!("could not start {}: {e}", side.label()))?;
                if !out.status.success() {
                    return Err(format!("{} ({threads} threads) failed: {}\n{}", side.label(), out.status, String::from_utf8_lossy(&out.stderr)));
                }
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let Some(rest) = line.strip_prefix(ROW_TAG) else { continue };
                    let parts: Vec<&str> = rest.split('|').collect();
                    let [name, value, unit] = parts[..] else { return Err(format!("malformed row from {}: {line:?}", side.label())) };
                    let value: f64 = value.parse().map_err(|_| format!("malformed value from {}: {line:?}", side.label()))?;
                    if !results.units.contains_key(name) {
                        results.order.push(name.to_string());
                    }
                    results.units.insert(name.to_string(), unit.to_string());
                    results.values.entry((threads, side.clone(), name.to_string())).or_default().push(value);
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    print_table(args, &levels, &sides, &results);
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `median (min–max)`.
fn cell(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    format!("{} ({}–{})", fmt_value(median(v)), fmt_value(lo), fmt_value(hi))
}

fn print_table(args: &Args, levels: &[CpuLevel], sides: &[Side], r: &Results) {
    println!(
        "TensorBrain vs PyTorch, {} round(s) interleaved; median (min–max) over rounds, each the best of several repetitions; ratio = ours at {} vs PyTorch, > 1 means ours is faster",
        args.rounds,
        levels.last().map_or("-".into(), |l| l.to_string())
    );
    println!("(the SIMD level pins TensorBrain's own kernels; the gemm crate's f32 micro-kernels dispatch on their own)\n");
    for &threads in &args.threads {
        print!("| {threads} thread(s) | unit |");
        for s in sides {
            print!(" {} |", s.label());
        }
        if args.pytorch {
            print!(" ratio |");
        }
        println!();
        println!("|---|---|{}", "---|".repeat(sides.len() + args.pytorch as usize));
        for name in &r.order {
            let unit = &r.units[name];
            print!("| {name} | {unit} |");
            for s in sides {
                match r.values.get(&(threads, s.clone(), name.clone())) {
                    Some(v) => print!(" {} |", cell(v)),
                    None => print!(" - |"),
                }
            }
            if args.pytorch {
                let ours = levels.last().and_then(|&l| r.values.get(&(threads, Side::Ours(l), name.clone())));
                let torch = r.values.get(&(threads, Side::PyTorch, name.clone()));
                match (ours, torch) {
                    (Some(o), Some(t)) => {
                        let ratio = if higher_is_better(unit) { median(o) / median(t) } else { median(t) / median(o) };
                        print!(" {ratio:.2} |");
                    }
                    _ => print!(" - |"),
                }
            }
            println!();
        }
        println!();
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmarks, as one worker process runs them. Row names must match
// benches/bench_all_pytorch.py's.

type Emit<'a> = dyn FnMut(&str, f64, &str) + 'a;

/// The benchmark groups, by the name `--only` matches.
const GROUPS: [(&str, fn(&mut Emit<'_>)); 7] = [
    ("sgemm", sgemm_rows),
    ("mlp", mlp_rows),
    ("conv", conv_rows),
    ("elementwise", elementwise_rows),
    ("resnet", resnet_block_row),
    ("mnist", training_rows),
    ("tape", tape_overhead_row),
];

fn run_rows(only: Option<&str>, emit: &mut Emit<'_>) {
    for (name, group) in GROUPS {
        if only.map_or(true, |o| name.contains(&o.to_lowercase())) {
            group(emit);
        }
    }
}

fn sgemm_rows(emit: &mut Emit<'_>) {
    for n in [1024usize, 2048] {
        let a = Tensor::randn(&[n, n], DType::F32);
        let b = Tensor::randn(&[n, n], DType::F32);
        let flop = 2.0 * (n as f64).powi(3);
        let reps = (4e9 / flop).clamp(3.0, 20.0) as usize;
        emit(&format!("SGEMM {n}²"), flop / best_of(reps, || drop(a.matmul(&b))) / 1e9, "GFLOP/s");
    }
    // The Linear layer of a batch-64 MLP: x · Wᵀ with W stored [out, in].
    let x = Tensor::randn(&[64, 784], DType::F32);
    let w = Tensor::randn(&[256, 784], DType::F32);
    let wt = w.t();
    let flop = 2.0 * 64.0 * 784.0 * 256.0;
    emit("SGEMM 64×784 · (256×784)ᵀ", flop / best_of(200, || drop(x.matmul(&wt))) / 1e9, "GFLOP/s");
}

/// The MLP of `bench_fusion` (784-256-10, log_softmax), batch 64: the training step as
/// `#[model]` generated it (fused kernels as Rust) and as the tape runs it.
#[model]
pub struct MlpLogits {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl MlpLogits {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

fn mlp_rows(emit: &mut Emit<'_>) {
    let mlp = MlpLogits::init(0);
    let x = Tensor::randn(&[64, 784], DType::F32);
    let go = Tensor::full(&[64, 10], 1.0 / 640.0, DType::F32);
    emit(
        "MLP 784-256-10 b64 fwd+bwd, #[model]",
        best_ms(200, || {
            let (_, saved) = mlp.forward_train(std::slice::from_ref(&x), false).unwrap();
            std::hint::black_box(<MlpLogits as StaticModel>::backward(&saved, &go, &mut GradReady::none()).unwrap());
        }),
        "ms",
    );
    let params = mlp.parameters();
    emit("MLP 784-256-10 b64 fwd+bwd, tape", best_ms(200, || tape_step(mlp.fc2.forward(&mlp.fc1.forward(&x).unwrap().relu()).unwrap().log_softmax(1), &params)), "ms");
}

fn run_ms(reps: usize, g: &CompiledGraph, inputs: &[Tensor], p: &Params) -> f64 {
    best_ms(reps, || {
        std::hint::black_box(g.run(inputs, p).unwrap());
    })
}

fn conv_rows(emit: &mut Emit<'_>) {
    let g = conv_block();
    let p = conv_block_params();
    let x = Tensor::randn(&[32, 16, 32, 32], DType::F32);
    let fused = compile(&g, &Options::default()).unwrap();
    let unfused = compile(&g, &Options::unfused()).unwrap();
    emit("conv+affine+relu b32 fwd, fused", run_ms(20, &fused, &[x.clone()], &p), "ms");
    emit("conv+affine+relu b32 fwd, unfused", run_ms(20, &unfused, &[x.clone()], &p), "ms");
    let tg = compile(&training_graph(&backward(&g).unwrap()), &Options::default()).unwrap();
    let go = Tensor::full(&[32, 32, 32, 32], 1.0 / (32.0f64).powi(4), DType::F32);
    emit("conv+affine+relu b32 fwd+bwd, fused", run_ms(10, &tg, &[x, go], &p), "ms");
}

fn elementwise_rows(emit: &mut Emit<'_>) {
    let g = elementwise_block(256, 2048);
    let x = Tensor::randn(&[256, 2048], DType::F32);
    let none = Params::new();
    emit("3× (x·sig(x)·.5+tanh x) fwd, fused", run_ms(20, &compile(&g, &Options::default()).unwrap(), &[x.clone()], &none), "ms");
    let tg = compile(&training_graph(&backward(&g).unwrap()), &Options::default()).unwrap();
    let go = Tensor::full(&[256, 2048], 1.0 / (256.0 * 2048.0), DType::F32);
    emit("3× (x·sig(x)·.5+tanh x) fwd+bwd, fused", run_ms(10, &tg, &[x.clone(), go], &none), "ms");
    let xg = x.detach().set_requires_grad(true);
    emit("3× (x·sig(x)·.5+tanh x) fwd+bwd, tape", best_ms(10, || tape_step(elementwise_eager(&xg), std::slice::from_ref(&xg))), "ms");
}

/// ResNet-18's basic block at its first stage's size: 64 channels, 56×56.
#[model]
pub struct BasicBlock {
    conv1: Conv2d<64, 64, 3, 1, 1>,
    bn1: BatchNorm2d<64>,
    conv2: Conv2d<64, 64, 3, 1, 1>,
    bn2: BatchNorm2d<64>,
}

#[model]
impl BasicBlock {
    pub fn forward(&self, x: tb![N, 64, H, W]) -> tb![N, 64, H, W] {
        let h = self.bn1(self.conv1(x)).relu();
        (x + self.bn2(self.conv2(h))).relu()
    }
}

fn resnet_block_row(emit: &mut Emit<'_>) {
    let mut block = BasicBlock::init(0);
    block.train();
    let x = Tensor::randn(&[8, 64, 56, 56], DType::F32).set_requires_grad(true);
    let mut wrt = block.parameters();
    wrt.push(x.clone());
    emit("ResNet basic block 64ch 56² b8 fwd+bwd, tape", best_ms(5, || tape_step(block.forward_dyn(std::slice::from_ref(&x)).unwrap(), &wrt)), "ms");
}

/// Adam steps on random MNIST-shaped batches of 64 (what one epoch of `examples/mnist` spends
/// its time on), in samples per second.
fn train_samples_per_s<M: Module>(model: &mut M, steps: usize, forward: impl Fn(&M, &Tensor) -> Tensor) -> f64 {
    model.train();
    let x = Tensor::randn(&[64, 1, 28, 28], DType::F32);
    let y = Tensor::from_vec((0..64).map(|i| (i % 10) as i64).collect::<Vec<i64>>(), &[64]);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 1e-3, ..Default::default() }).unwrap();
    let mut step = |model: &M| {
        opt.zero_grad();
        let loss = cross_entropy(&forward(model, &x), &y);
        loss.backward();
        opt.step().unwrap();
    };
    step(model);
    let secs = best_of(3, || {
        for _ in 0..steps {
            step(model);
        }
    });
    (steps * 64) as f64 / secs
}

fn training_rows(emit: &mut Emit<'_>) {
    let mut cnn = Cnn::init(0);
    emit("MNIST CNN train b64", train_samples_per_s(&mut cnn, 5, |m, x| m.forward_dyn(std::slice::from_ref(x)).unwrap()), "samples/s");
    let mut mlp = Mlp::init(0);
    emit("MNIST MLP train b64", train_samples_per_s(&mut mlp, 50, |m, x| m.forward_dyn(std::slice::from_ref(x)).unwrap()), "samples/s");
}

fn tape_overhead_row(emit: &mut Emit<'_>) {
    let a = Tensor::randn(&[4, 4], DType::F32).set_requires_grad(true);
    let b = Tensor::randn(&[4, 4], DType::F32).set_requires_grad(true);
    let iters = 100_000;
    let secs = best_of(3, || {
        for _ in 0..iters {
            std::hint::black_box(&a * &b);
        }
    });
    emit("4×4 mul, grad on", secs / iters as f64 * 1e9, "ns");
}
