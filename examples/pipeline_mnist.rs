//! Pipeline-parallel training on MNIST with `dist::Pipeline`: an MLP (784-384-384-384-10)
//! cut into one stage per rank; micro-batches flow forward through the ranks and their
//! gradients flow back, under the GPipe or the 1F1B schedule.
//!
//! Ranks are threads in this process by default:
//!
//!     cargo run --release --example pipeline_mnist -- --world 2 --schedule 1f1b --micro-batches 8
//!     cargo run --release --example pipeline_mnist -- --memory-table   # GPipe and 1F1B, m = 4, 8, 16
//!
//! or processes under an MPI launcher (build with the `mpi` feature):
//!
//!     cargo build --release --example pipeline_mnist --features mpi
//!     mpirun -np 2 target/release/examples/pipeline_mnist --mpi
//!
//! Every rank reads the data (the first stage needs the images, the last the labels) and draws
//! the same batches. Each stage steps its own optimizer. `--checkpoint DIR` saves every stage
//! at the end (`stage-<i>-of-<p>.safetensors`); `--resume DIR` starts from such a checkpoint
//! and refuses one written by a pipeline with another number of stages.
//! The data is read from `--data DIR`, else `$TENSORBRAIN_DATA/mnist`, else `../shared/data/mnist`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tensorbrain::data::{dataset_dir, mnist, Split};
use tensorbrain::dist::{DistError, DistResult, Pipeline, PipelineStats, ProcessGroup, Schedule};
use tensorbrain::nn::{cross_entropy, Linear, ModuleExt, ReLU, Sequential};
use tensorbrain::optim::{Optimizer, Sgd, SgdOptions};
use tensorbrain::{DType, Tensor};

#[derive(Parser, Debug, Clone)]
#[command(about = "Pipeline-parallel MNIST (GPipe or 1F1B)")]
struct Args {
    /// Ranks (threads) in this process, one stage each (2 to 4); ignored with --mpi.
    #[arg(long, default_value_t = 2)]
    world: usize,
    /// Join the process group described by the launcher's environment (mpirun) instead.
    #[arg(long)]
    mpi: bool,
    #[arg(long, value_enum, default_value_t = Sched::OneFOneB)]
    schedule: Sched,
    /// Micro-batches per step (m).
    #[arg(long, default_value_t = 8)]
    micro_batches: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Kernel threads per rank.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Save every stage here after training.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Start from the stages saved here.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Instead of training: peak live activation bytes per stage for GPipe and 1F1B with
    /// m = 4, 8, 16, against the formulas, and the bubble.
    #[arg(long)]
    memory_table: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Sched {
    Gpipe,
    #[value(name = "1f1b")]
    OneFOneB,
}

impl From<Sched> for Schedule {
    fn from(s: Sched) -> Schedule {
        match s {
            Sched::Gpipe => Schedule::GPipe,
            Sched::OneFOneB => Schedule::OneFOneB,
        }
    }
}

/// The model's four blocks, 784-384-384-384-10 with ReLUs, and which of them each stage of a
/// 2-, 3- or 4-stage pipeline runs: the first block has as many weights as the other three
/// together, so two stages get one block and three.
fn stage(rank: usize, world: usize) -> Sequential {
    let blocks: [fn(u64) -> Sequential; 4] = [
        |s| Sequential::new().add(Linear::<784, 384>::init(s)).add(ReLU::init(0)),
        |s| Sequential::new().add(Linear::<384, 384>::init(s)).add(ReLU::init(0)),
        |s| Sequential::new().add(Linear::<384, 384>::init(s)).add(ReLU::init(0)),
        |s| Sequential::new().add(Linear::<384, 10>::init(s)),
    ];
    let splits: &[std::ops::Range<usize>] = match world {
        2 => &[0..1, 1..4],
        3 => &[0..1, 1..2, 2..4],
        _ => &[0..1, 1..2, 2..3, 3..4],
    };
    splits[rank].clone().fold(Sequential::new(), |seq, b| seq.add(blocks[b](b as u64 + 1)))
}

/// The batch of `step`: the same on every rank.
fn batch_indices(step: usize, batch: usize, n: usize) -> Tensor {
    let idx: Vec<i64> = (0..batch).map(|k| ((step * batch + k) * 7919 % n) as i64).collect();
    Tensor::from_vec(idx, &[batch])
}

fn pipeline(group: Box<dyn ProcessGroup>) -> DistResult<Pipeline> {
    let (rank, world) = (group.rank(), group.world_size());
    if !(2..=4).contains(&world) {
        return Err(DistError::Invalid { rank, op: "pipeline_mnist", msg: format!("{world} ranks: this model has 4 blocks, so use 2 to 4 stages") });
    }
    Ok(Pipeline::from_stage(group, Box::new(stage(rank, world))))
}

/// One training step; the last stage's loss is the mean over the batch.
fn train_step(pipe: &Pipeline, opt: &mut Sgd, data: &[Tensor; 4], args: &Args, schedule: Schedule, m: usize, step: usize) -> DistResult<PipelineStats> {
    let [x, y, ..] = data;
    let idx = batch_indices(step, args.batch, x.shape()[0]);
    let g = pipe.group();
    let input = (g.rank() == 0).then(|| x.index_select(0, &idx).reshape(&[args.batch as isize, 784]));
    let labels = y.index_select(0, &idx);
    let batch = args.batch;
    let loss_fn = |j: usize, out: &Tensor| -> tensorbrain::Result<Tensor> {
        let (a, b) = (j * batch / m, (j + 1) * batch / m);
        // The micro-batch's share of the full batch's mean.
        Ok(cross_entropy(out, &labels.narrow(0, a, b - a)).mul_scalar((b - a) as f64 / batch as f64))
    };
    opt.zero_grad();
    let stats = pipe.step(schedule, m, input.as_ref(), &loss_fn)?;
    opt.step()?;
    Ok(stats)
}

/// Test accuracy on the first 2000 test images: a forward through the stages, no gradients.
fn evaluate(pipe: &Pipeline, data: &[Tensor; 4]) -> DistResult<Option<f64>> {
    let [.., tx, ty] = data;
    let g = pipe.group();
    let (rank, world) = (g.rank(), g.world_size());
    let n = 2000.min(tx.shape()[0]);
    let input = if rank == 0 { tx.narrow(0, 0, n).reshape(&[n as isize, 784]) } else { g.recv(rank - 1)? };
    let out = tensorbrain::autograd::no_grad(|| pipe.stage().forward(&input))?;
    if rank + 1 < world {
        g.send(&out, rank + 1)?;
        return Ok(None);
    }
    let pred = out.argmax(Some(-1), false).to_vec::<i64>();
    let truth = ty.narrow(0, 0, n).to_vec::<i64>();
    Ok(Some(pred.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / n as f64))
}

fn train(group: Box<dyn ProcessGroup>, data: Arc<[Tensor; 4]>, args: &Args) -> DistResult<()> {
    let mut pipe = pipeline(group)?;
    let (rank, world) = (pipe.group().rank(), pipe.group().world_size());
    if let Some(dir) = &args.resume {
        pipe.load_stage(dir)?;
    }
    let mut opt = Sgd::new(pipe.stage().parameters(), SgdOptions { lr: args.lr, momentum: 0.9, ..Default::default() })?;
    let last = rank + 1 == world;
    let bar = if last { ProgressBar::new(args.steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed}<{eta}]").expect("valid template"));
    let mut wait = 0.0;
    let mut loss = f64::NAN;
    for step in 0..args.steps {
        let stats = train_step(&pipe, &mut opt, &data, args, args.schedule.into(), args.micro_batches, step)?;
        loss = stats.losses.iter().sum();
        wait += stats.wait_fraction;
        bar.set_message(format!("loss {loss:.4}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let accuracy = evaluate(&pipe, &data)?;
    if let Some(dir) = &args.checkpoint {
        pipe.save_stage(dir)?;
    }
    if let Some(acc) = accuracy {
        println!(
            "{world} stages, {:?}, m = {}: last loss {loss:.4}, test accuracy {:.2}%, last stage waited {:.0}% of each step (ideal bubble {:.0}%)",
            Schedule::from(args.schedule),
            args.micro_batches,
            acc * 100.0,
            wait / args.steps.max(1) as f64 * 100.0,
            (world - 1) as f64 / (args.micro_batches + world - 1) as f64 * 100.0
        );
    }
    Ok(())
}

/// Peak live activation bytes per stage against the formulas (GPipe m·A, 1F1B min(p−i, m)·A),
/// every stage's figures gathered on rank 0.
fn memory_table(group: Box<dyn ProcessGroup>, data: Arc<[Tensor; 4]>, args: &Args) -> DistResult<()> {
    let pipe = pipeline(group)?;
    let (rank, p) = (pipe.group().rank(), pipe.group().world_size());
    let mut opt = Sgd::new(pipe.stage().parameters(), SgdOptions { lr: args.lr, ..Default::default() })?;
    if rank == 0 {
        println!("| schedule | m | stage | A (KiB) | peak live (KiB) | formula (KiB) | peak / formula | waited | bubble (p-1)/(m+p-1) |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    for schedule in [Schedule::GPipe, Schedule::OneFOneB] {
        for m in [4, 8, 16] {
            let mut s = PipelineStats::default();
            for step in 0..3 {
                s = train_step(&pipe, &mut opt, &data, args, schedule, m, step)?;
            }
            let mine = Tensor::from_vec(vec![s.peak_live_activation_bytes as f64, s.activation_bytes_per_micro_batch as f64, s.wait_fraction], &[3]);
            let all = pipe.group().all_gather(&mine)?;
            if rank == 0 {
                for (i, t) in all.iter().enumerate() {
                    let v = t.to_vec::<f64>();
                    let live = match schedule {
                        Schedule::GPipe => m,
                        Schedule::OneFOneB => (p - i).min(m),
                    };
                    let formula = live as f64 * v[1];
                    println!(
                        "| {schedule:?} | {m} | {i} | {:.1} | {:.1} | {:.1} ({live}·A) | {:.3} | {:.0}% | {:.0}% |",
                        v[1] / 1024.0,
                        v[0] / 1024.0,
                        formula / 1024.0,
                        v[0] / formula,
                        v[2] * 100.0,
                        (p - 1) as f64 / (m + p - 1) as f64 * 100.0
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
    if args.batch % args.micro_batches != 0 && !args.memory_table {
        eprintln!("pipeline_mnist: --batch {} must be a multiple of --micro-batches {}", args.batch, args.micro_batches);
        return ExitCode::FAILURE;
    }
    let dir = dataset_dir("mnist", args.data.as_deref());
    let load = || -> tensorbrain::Result<[Tensor; 4]> {
        let (x, y) = mnist::load(&dir, Split::Train)?;
        let (tx, ty) = mnist::load(&dir, Split::Test)?;
        Ok([x.to_dtype(DType::F32), y, tx.to_dtype(DType::F32), ty])
    };
    let data = match load() {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("pipeline_mnist: {e}");
            return ExitCode::FAILURE;
        }
    };
    let a = args.clone();
    let run = move |g: Box<dyn ProcessGroup>| if a.memory_table { memory_table(g, data.clone(), &a) } else { train(g, data.clone(), &a) };
    let results: Vec<Result<(), String>> = if args.mpi {
        vec![tensorbrain::dist::init().and_then(run).map_err(|e| e.to_string())]
    } else {
        tensorbrain::dist::run_threads(args.world, tensorbrain::dist::DEFAULT_TIMEOUT, move |g| run(Box::new(g)).map_err(|e| e.to_string()))
            .into_iter()
            .map(|r| r.and_then(|x| x))
            .collect()
    };
    match results.into_iter().find_map(Result::err) {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("pipeline_mnist: {e}");
            ExitCode::FAILURE
        }
    }
}
