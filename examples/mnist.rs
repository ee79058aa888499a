//! Train a `#[model]` on MNIST or Fashion-MNIST with the [`Trainer`]: an MLP (784-256-10) or
//! the CNN of pytorch/examples (two 3x3 convolutions, max-pool, dropout, two linear layers).
//!
//!     cargo run --release --example mnist -- --model mlp --epochs 10
//!     cargo run --release --example mnist -- --model cnn --epochs 4
//!     cargo run --release --example mnist -- --model cnn --dataset fashion --epochs 4
//!
//! Both use Adam (lr 1e-3, batch 64) with the learning rate decayed to zero along a cosine.
//! The data is read from `--data DIR`, else `$TENSORBRAIN_DATA/mnist` (or `fashion-mnist`), else
//! `../shared/data/mnist`; a missing file is an error that says what to get and where.
//! Progress bars show loss and samples/s; each epoch prints a line and rewrites
//! `runs/<name>.csv` and `runs/<name>.png` (loss and accuracy curves), and saves a training
//! checkpoint in `runs/<name>/ckpt-<number>-epoch<epoch>/` (all-or-nothing: a save that fails
//! or is killed leaves the previous one intact; the last `--keep-last` are kept) that
//! `--resume` continues from, bit for bit. The checkpoint's `model.safetensors` loads into the
//! same model in PyTorch (`benches/mnist_pytorch.py`).
//! `--bench` prints only the timing table (seconds per epoch, samples/s).
//! `--device cuda` trains on a GPU (a build with `--features cuda`; docs/cuda.md lists the ops
//! that run there, which include both models'; never yet run on a GPU).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tensorbrain::checkpoint::CheckpointDir;
use tensorbrain::data::{dataset_dir, fashion_mnist, mnist, DataLoader, Split, TensorDataset};
use tensorbrain::optim::lr_scheduler::CosineAnnealingLR;
use tensorbrain::optim::{Adam, AdamOptions};
use tensorbrain::prelude::*;
use tensorbrain::train::{classification, Precision, SchedulerStep, Trainer};

// The models live beside the serving binaries, which load this example's checkpoints.
#[path = "serve/src/mnist_models.rs"]
mod mnist_models;
use mnist_models::{Cnn, Mlp};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Arch {
    Mlp,
    Cnn,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dataset {
    Mnist,
    Fashion,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Compute {
    F32,
    Bf16,
    F16,
}

#[derive(Parser, Debug)]
#[command(about = "Train an MLP or a CNN on MNIST / Fashion-MNIST")]
struct Args {
    #[arg(long, value_enum, default_value = "mlp")]
    model: Arch,
    #[arg(long, value_enum, default_value = "mnist")]
    dataset: Dataset,
    /// Directory with the four IDX files (default: $TENSORBRAIN_DATA/mnist or fashion-mnist if
    /// TENSORBRAIN_DATA is set, else ../shared/data/mnist or fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, value_enum, default_value = "f32")]
    precision: Compute,
    /// Where to train: cpu, cuda or cuda:N (needs `--features cuda` and an NVIDIA driver).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Threads for kernels (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where logs, plots and checkpoints go.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue from the newest checkpoint in <out>/<name>/ (give the same --epochs: the
    /// learning-rate schedule spans the run it was built for).
    #[arg(long)]
    resume: bool,
    /// How many of the newest checkpoints to keep in <out>/<name>/.
    #[arg(long, default_value_t = 2)]
    keep_last: usize,
    /// Print only a timing table.
    #[arg(long)]
    bench: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a split, normalised with MNIST's usual mean and std (Fashion-MNIST's for it).
fn load(args: &Args, split: Split) -> tensorbrain::Result<(Tensor, Tensor)> {
    let (name, (mean, std)) = match args.dataset {
        Dataset::Mnist => ("mnist", (0.1307, 0.3081)),
        Dataset::Fashion => ("fashion-mnist", (0.2860, 0.3530)),
    };
    let dir = dataset_dir(name, args.data.as_deref());
    let (x, y) = match args.dataset {
        Dataset::Mnist => mnist::load(&dir, split)?,
        Dataset::Fashion => fashion_mnist::load(&dir, split)?,
    };
    Ok((x.add_scalar(-mean).mul_scalar(1.0 / std), y))
}

fn run(args: &Args) -> tensorbrain::Result<()> {
    if let Some(n) = args.threads {
        tensorbrain::set_num_threads(n);
    }
    let (train_x, train_y) = load(args, Split::Train)?;
    let (test_x, test_y) = load(args, Split::Test)?;
    let train = DataLoader::builder(TensorDataset::new(vec![train_x, train_y])?).batch_size(args.batch_size).shuffle(true).seed(args.seed).build()?;
    let test = DataLoader::builder(TensorDataset::new(vec![test_x, test_y])?).batch_size(1000).build()?;
    // Said here, before the learning-rate schedule is sized by the number of batches.
    train.check_not_empty("the training data")?;
    test.check_not_empty("the test data")?;
    let name = format!("{}-{}", format!("{:?}", args.model).to_lowercase(), format!("{:?}", args.dataset).to_lowercase());
    manual_seed(args.seed);
    match args.model {
        Arch::Mlp => {
            let mut model = Mlp::init(args.seed);
            train_model(args, &name, &mut model, &train, &test, |m: &Mlp, x: &Tensor| m.forward_dyn(std::slice::from_ref(x)))
        }
        Arch::Cnn => {
            let mut model = Cnn::init(args.seed);
            train_model(args, &name, &mut model, &train, &test, |m: &Cnn, x: &Tensor| m.forward_dyn(std::slice::from_ref(x)))
        }
    }
}

fn train_model<M: Module>(
    args: &Args,
    name: &str,
    model: &mut M,
    train: &DataLoader,
    test: &DataLoader,
    forward: impl Fn(&M, &Tensor) -> tensorbrain::Result<Tensor>,
) -> tensorbrain::Result<()> {
    if !args.bench {
        println!("{}", model.summary());
    }
    // The model moves before the optimizer takes its parameters (as in PyTorch).
    model.to_device(args.device)?;
    // Adam with the learning rate decayed to zero along a cosine over the whole run.
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: args.lr, ..Default::default() })?;
    let schedule = CosineAnnealingLR::new(&mut opt, args.epochs * train.len(), 0.0)?;
    let precision = match args.precision {
        Compute::F32 => Precision::F32,
        Compute::Bf16 => Precision::Bf16,
        Compute::F16 => Precision::F16,
    };
    let ckpt = args.out.join(name);
    let mut trainer = Trainer::new(model, opt)
        .scheduler(schedule, SchedulerStep::Batch)
        .precision(precision)
        .progress(!args.bench)
        .device(args.device)
        .top_k(3)
        .log_csv(args.out.join(format!("{name}.csv")))
        .plot(args.out.join(format!("{name}.png")))
        .checkpoints(CheckpointDir::new(&ckpt).keep_last(args.keep_last));
    if args.resume {
        let from = trainer.resume(&ckpt)?;
        println!("resumed from {} after epoch {}", from.display(), trainer.epoch());
    }
    let history = trainer.fit(train, Some(test), args.epochs, &classification(forward))?;
    if args.bench {
        println!("| model | epoch | seconds | samples/s | test accuracy |");
        println!("|---|---|---|---|---|");
        for r in &history.epochs {
            println!("| {name} | {} | {:.2} | {:.0} | {:.2}% |", r.epoch, r.seconds, r.samples_per_second, 100.0 * r.eval_accuracy.unwrap_or(0.0));
        }
    } else if let Some(last) = history.last() {
        let saved = CheckpointDir::new(&ckpt).latest()?.unwrap_or(ckpt);
        println!(
            "test accuracy {:.2}% after epoch {}; log {}/{name}.csv, plot {}/{name}.png, checkpoint {}",
            100.0 * last.eval_accuracy.unwrap_or(0.0),
            last.epoch,
            args.out.display(),
            args.out.display(),
            saved.display()
        );
    }
    Ok(())
}
