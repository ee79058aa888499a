//! The GPU benchmarks of docs/cuda.md, TensorBrain beside PyTorch on the same GPU in one run:
//! SGEMM and HGEMM at 4096², the MNIST MLP and CNN training steps (batch 64, Adam), and an
//! elementwise chain (eager; PyTorch also under `torch.compile`).
//!
//!     cargo run --release --features cuda --example bench_cuda -- --pytorch
//!
//! Every timed region ends with a device synchronisation, so it measures the GPU's work, not
//! the launch queue. A row is the best of several repetitions after a warm-up (which also
//! compiles the kernels). `ratio` is PyTorch's time over ours, or our throughput over
//! PyTorch's: above 1 we are faster. PyTorch runs `benches/bench_cuda_pytorch.py`.

#[path = "serve/src/mnist_models.rs"]
mod mnist_models;
#[path = "common/bench.rs"]
mod bench;

use std::process::Command;

use clap::Parser;
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;

use bench::{best_of, elementwise_eager};
use mnist_models::{Cnn, Mlp};

#[derive(Parser, Debug)]
#[command(about = "GPU benchmarks, TensorBrain and PyTorch on the same device")]
struct Args {
    /// Run PyTorch's side too (benches/bench_cuda_pytorch.py).
    #[arg(long)]
    pytorch: bool,
    /// The Python that has torch with CUDA.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The GPU to measure.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

struct Row {
    name: &'static str,
    unit: &'static str,
    ours: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tensorbrain::cuda::synchronize(n).expect("synchronising the GPU");
    }
}

/// Best seconds of `reps` runs of `f`, each ending in a synchronisation.
fn timed(device: Device, reps: usize, mut f: impl FnMut()) -> f64 {
    best_of(reps, || {
        f();
        sync(device);
    })
}

fn gemm_tflops(device: Device, dtype: DType, n: usize) -> f64 {
    let a = Tensor::randn(&[n, n], DType::F32).to_device(device).to_dtype(dtype);
    let b = Tensor::randn(&[n, n], DType::F32).to_device(device).to_dtype(dtype);
    let secs = timed(device, 10, || {
        std::hint::black_box(a.matmul(&b));
    });
    2.0 * (n as f64).powi(3) / secs / 1e12
}

fn train_step_ms<M: Module>(device: Device, mut model: M, forward: impl Fn(&M, &Tensor) -> Tensor, steps: usize) -> f64 {
    model.train();
    model.to_device(device).expect("moving the model");
    let x = Tensor::randn(&[64, 1, 28, 28], DType::F32).to_device(device);
    let y = Tensor::from_vec((0..64).map(|i| (i % 10) as i64).collect::<Vec<i64>>(), &[64]).to_device(device);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 1e-3, ..Default::default() }).expect("an optimizer");
    let secs = timed(device, 3, || {
        for _ in 0..steps {
            opt.zero_grad();
            cross_entropy(&forward(&model, &x), &y).backward();
            opt.step().expect("an Adam step");
        }
    });
    secs / steps as f64 * 1e3
}

fn rows(device: Device) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut emit = |name, unit, ours| {
        println!("{name}: {ours:.3} {unit}");
        rows.push(Row { name, unit, ours });
    };
    emit("SGEMM 4096² f32", "TFLOP/s", gemm_tflops(device, DType::F32, 4096));
    emit("HGEMM 4096² f16", "TFLOP/s", gemm_tflops(device, DType::F16, 4096));
    emit("MNIST MLP train step b64", "ms", train_step_ms(device, Mlp::init(0), |m, x| m.forward_dyn(std::slice::from_ref(x)).unwrap(), 50));
    emit("MNIST CNN train step b64", "ms", train_step_ms(device, Cnn::init(0), |m, x| m.forward_dyn(std::slice::from_ref(x)).unwrap(), 20));
    let x = Tensor::randn(&[4096, 4096], DType::F32).to_device(device);
    let ms = timed(device, 10, || {
        std::hint::black_box(no_grad(|| elementwise_eager(&x)));
    }) * 1e3;
    emit("3× (x·sig(x)·.5+tanh x) 4096² fwd, eager", "ms", ms);
    rows
}

/// PyTorch's `ROW|name|value|unit` lines, by name.
fn pytorch(args: &Args) -> Result<Vec<(String, f64)>, String> {
    let out = Command::new(&args.python)
        .arg("benches/bench_cuda_pytorch.py")
        .arg("--device")
        .arg(args.device.to_string())
        .output()
        .map_err(|e| format!("running {} benches/bench_cuda_pytorch.py: {e}", args.python))?;
    if !out.status.success() {
        return Err(format!("benches/bench_cuda_pytorch.py failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ROW|"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Some((f.first()?.to_string(), f.get(1)?.parse().ok()?))
        })
        .collect())
}

fn main() {
    let args = Args::parse();
    let device = Device::Cuda(args.device);
    if let Err(e) = Tensor::zeros(&[1], DType::F32).try_to_device(device) {
        eprintln!("bench_cuda: {e}");
        std::process::exit(1);
    }
    manual_seed(0);
    let ours = rows(device);
    let theirs = if args.pytorch {
        match pytorch(&args) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bench_cuda: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Vec::new()
    };
    println!("\n| benchmark | unit | TensorBrain | PyTorch | ratio |\n|---|---|---|---|---|");
    for r in &ours {
        let t = theirs.iter().find(|(n, _)| n == r.name).map(|(_, v)| *v);
        let ratio = t.map(|t| if r.unit.ends_with("/s") { r.ours / t } else { t / r.ours });
        let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
        println!("| {} | {} | {:.3} | {} | {} |", r.name, r.unit, r.ours, fmt(t), fmt(ratio));
    }
    for (name, v) in theirs.iter().filter(|(n, _)| !ours.iter().any(|r| r.name == n)) {
        println!("| {name} (PyTorch only) | | — | {v:.3} | — |");
    }
}
