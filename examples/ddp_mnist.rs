//! Data-parallel training on MNIST with `DistributedDataParallel`: an MLP (784-128-10), or
//! with `--model cnn` the CNN of pytorch/examples/mnist (without dropout, so that runs compare
//! exactly; `benches/ddp_gloo.py` is the same model under PyTorch DDP).
//!
//! Ranks are threads in this process by default (the `ThreadGroup` backend):
//!
//!     cargo run --release --example ddp_mnist -- --world 2 --steps 300
//!     cargo run --release --example ddp_mnist -- --world 2 --no-overlap
//!
//! or processes under an MPI launcher (build with the `mpi` feature; needs Open MPI or MPICH):
//!
//!     cargo build --release --example ddp_mnist --features mpi
//!     mpirun -np 2 target/release/examples/ddp_mnist --mpi
//!
//! The global batch (`--batch`, default 128) is split over the ranks, so every run follows the
//! same optimisation path and only the speed changes. Each rank reads its shard of the data
//! through a `DistributedSampler`; rank 0 reports samples/s (after `--warmup` steps), the
//! exposed communication time per step, and test accuracy on the first 2000 test images.
//! Kernels run single-threaded (`--threads 1`) so that N ranks use N cores and the comparison
//! between world sizes is about data parallelism, not about one rank's thread pool.
//! The data is read from `--data DIR`, else `$TENSORBRAIN_DATA/mnist`, else `../shared/data/mnist`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tensorbrain::data::{dataset_dir, mnist, Split};
use tensorbrain::checkpoint::{TrainingCheckpoint, TrainingState};
use tensorbrain::dist::{resume_sampler, DdpOptions, DistError, DistResult, DistributedDataParallel, DistributedSampler, ProcessGroup};
use tensorbrain::nn::{cross_entropy, Conv2d, Flatten, Linear, MaxPool2d, ModuleExt, ReLU, Sequential};
use tensorbrain::optim::{Optimizer, Sgd, SgdOptions};
use tensorbrain::train::History;
use tensorbrain::Tensor;

#[derive(Parser, Debug, Clone)]
#[command(about = "Data-parallel MNIST with DistributedDataParallel")]
struct Args {
    /// Ranks (threads) in this process; ignored with --mpi.
    #[arg(long, default_value_t = 2)]
    world: usize,
    /// Join the process group described by the launcher's environment (mpirun) instead.
    #[arg(long)]
    mpi: bool,
    /// Global batch size, split evenly over the ranks.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Steps before timing starts.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// All-reduce after backward instead of during it.
    #[arg(long)]
    no_overlap: bool,
    /// Bucket size in KiB (PyTorch's default is 25 MiB; this model's gradients are 397 KiB).
    #[arg(long, default_value_t = 25 * 1024)]
    bucket_kib: usize,
    /// Kernel threads per process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Model::Mlp)]
    model: Model,
    /// Save a training checkpoint here at the end (rank 0 writes; world size, global batch
    /// and position in the epoch are recorded).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Resume from the newest checkpoint here; `--steps` counts from the start of the run, so
    /// a checkpoint at step 100 with `--steps 300` trains 200 more. Any world size can resume
    /// it with the same `--batch`.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Instead of training: time `all_reduce` (sum, f32) from 1 KiB to 64 MiB and fit the
    /// α-β model T(n) = 2(p-1)·α + 2(p-1)/p · n·β of a ring all-reduce to the medians.
    #[arg(long)]
    allreduce_bench: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    /// 784-128-10 with ReLU.
    Mlp,
    /// conv 1→32 3×3, ReLU, conv 32→64 3×3, ReLU, 2×2 max pool, 9216→128, ReLU, 128→10.
    Cnn,
}

impl Model {
    /// The model, its weights seeded from `seed` (ranks differ on purpose: DDP broadcasts
    /// rank 0's weights at the start).
    fn build(self, seed: u64) -> Sequential {
        match self {
            Model::Mlp => Sequential::new().add(Linear::<784, 128>::init(seed)).add(ReLU::init(0)).add(Linear::<128, 10>::init(1000 + seed)),
            Model::Cnn => Sequential::new()
                .add(Conv2d::<1, 32, 3>::init(seed))
                .add(ReLU::init(0))
                .add(Conv2d::<32, 64, 3>::init(1000 + seed))
                .add(ReLU::init(0))
                .add(MaxPool2d::<2, 2>::init(0))
                .add(Flatten::init(0))
                .add(Linear::<9216, 128>::init(2000 + seed))
                .add(ReLU::init(0))
                .add(Linear::<128, 10>::init(3000 + seed)),
        }
    }

    /// The input shape for `n` images.
    fn input_shape(self, n: usize) -> Vec<isize> {
        match self {
            Model::Mlp => vec![n as isize, 784],
            Model::Cnn => vec![n as isize, 1, 28, 28],
        }
    }
}

struct Report {
    samples_per_s: f64,
    exposed_comm: Duration,
    backward: Duration,
    last_loss: f32,
    accuracy: Option<f64>,
    buckets: usize,
}

fn train(group: Box<dyn ProcessGroup>, data: Arc<[Tensor; 4]>, args: &Args) -> DistResult<Report> {
    let (rank, world) = (group.rank(), group.world_size());
    let [x, y, test_x, test_y] = &*data;
    if args.batch % world != 0 {
        return Err(DistError::Invalid { rank, op: "ddp_mnist", msg: format!("--batch {} must be divisible by the world size {world}", args.batch) });
    }
    let local = args.batch / world;
    let mut model = args.model.build(rank as u64);
    let options = DdpOptions { overlap: !args.no_overlap, bucket_cap_bytes: args.bucket_kib * 1024, ..Default::default() };
    let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: args.lr, momentum: 0.9, ..Default::default() })?;
    let n = x.shape()[0];
    let mut sampler = DistributedSampler::new(n, world, rank)?.seed(0).drop_last(true);
    let (mut step, mut epoch) = (0, 0);
    if let Some(dir) = &args.resume {
        // Every rank reads the checkpoint (rank 0's broadcast below would fix the parameters,
        // but the optimizer's momentum is per rank).
        let ckpt = TrainingCheckpoint::load(dir)?;
        model.load_state_dict(ckpt.model, &dir.display().to_string())?;
        opt.load_state_dict(&ckpt.optimizer)?;
        resume_sampler(&mut sampler, &ckpt.state, world, args.batch)?;
        (step, epoch) = (ckpt.state.step as usize, ckpt.state.epoch as u64);
        if rank == 0 {
            let saved_by = ckpt.state.data_parallel.as_ref().map_or(1, |d| d.world_size);
            eprintln!("resumed {} at step {step}, epoch {epoch}, {} samples into it (saved by {saved_by} rank(s), resumed by {world})", dir.display(), sampler.position());
        }
    } else {
        sampler.set_epoch(0);
    }
    let ddp = DistributedDataParallel::for_module(group, &model, options)?;
    if sampler.num_samples() < local && sampler.position() == 0 {
        return Err(DistError::Invalid { rank, op: "ddp_mnist", msg: format!("each rank's shard has {} samples, fewer than its batch of {local}", sampler.num_samples()) });
    }
    let first_step = step;
    let (mut start, mut exposed, mut backward) = (Instant::now(), Duration::ZERO, Duration::ZERO);
    // NaN if no step ran (--steps 0).
    #[allow(unused_assignments)]
    let mut last_loss = f32::NAN;
    // Samples of the current epoch's global order trained on (for the checkpoint).
    let mut position = sampler.position();
    'outer: loop {
        for chunk in sampler.indices().chunks_exact(local) {
            if step >= args.steps {
                break 'outer;
            }
            if step == first_step + args.warmup {
                start = Instant::now();
                (exposed, backward) = (Duration::ZERO, Duration::ZERO);
            }
            let idx = Tensor::from_vec(chunk.iter().map(|&i| i as i64).collect::<Vec<i64>>(), &[local]);
            let xb = x.try_index_select(0, &idx)?.try_reshape(&args.model.input_shape(local))?;
            let yb = y.try_index_select(0, &idx)?;
            opt.zero_grad();
            let loss = cross_entropy(&model.forward(&xb)?, &yb);
            ddp.backward(&loss)?;
            opt.step()?;
            let s = ddp.last_step_stats();
            exposed += s.exposed_comm_time;
            backward += s.backward_time;
            last_loss = loss.item::<f32>();
            step += 1;
            position += args.batch;
        }
        epoch += 1;
        sampler.set_epoch(epoch);
        position = 0;
    }
    if let Some(dir) = &args.checkpoint {
        let state = TrainingState::new(epoch as usize, step as u64, (0, 0), History::default());
        if let Some(path) = ddp.save_checkpoint(dir, &model.state_dict(), &opt.state_dict(), &state, position, args.batch)? {
            eprintln!("saved {} (step {step}, epoch {epoch}, {position} samples into it)", path.display());
        }
    }
    let timed = (args.steps.saturating_sub(first_step + args.warmup)).max(1);
    let secs = start.elapsed().as_secs_f64();
    let accuracy = (rank == 0).then(|| {
        let m = 2000.min(test_x.shape()[0]);
        let logits = tensorbrain::autograd::no_grad(|| model.forward(&test_x.narrow(0, 0, m).reshape(&args.model.input_shape(m))))?;
        let pred = logits.argmax(Some(-1), false).to_vec::<i64>();
        let truth = test_y.narrow(0, 0, m).to_vec::<i64>();
        Ok::<f64, tensorbrain::Error>(pred.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / m as f64)
    });
    let accuracy = accuracy.transpose()?;
    Ok(Report {
        samples_per_s: (timed * args.batch) as f64 / secs,
        exposed_comm: exposed / timed as u32,
        backward: backward / timed as u32,
        last_loss,
        accuracy,
        buckets: ddp.buckets().len(),
    })
}

/// Medians of `all_reduce` times by message size, on every rank; rank 0 prints them with the
/// least-squares fit of the ring's α-β model.
fn allreduce_bench(group: Box<dyn ProcessGroup>) -> DistResult<()> {
    let (rank, p) = (group.rank(), group.world_size());
    let mut rows = Vec::new();
    for log4 in 0..9 {
        let bytes = 1024usize << (2 * log4);
        let t = Tensor::ones(&[bytes / 4], tensorbrain::DType::F32);
        let reps = (64 >> log4).max(5);
        group.all_reduce(&t, tensorbrain::dist::ReduceOp::Sum)?; // warm-up
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            group.barrier()?;
            let start = Instant::now();
            group.all_reduce(&t, tensorbrain::dist::ReduceOp::Sum)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        rows.push((bytes as f64, times[reps / 2]));
    }
    if rank == 0 {
        // T = a + b·n with a = 2(p-1)α and b = 2(p-1)/p·β, fitted to relative residuals
        // (weights 1/T²) so that the small messages set α and the large ones β.
        let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, y) in &rows {
            let w = 1.0 / (y * y);
            (sw, sx, sy, sxx, sxy) = (sw + w, sx + w * x, sy + w * y, sxx + w * x * x, sxy + w * x * y);
        }
        let b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
        let a = (sy - b * sx) / sw;
        let steps = 2.0 * (p as f64 - 1.0);
        let (alpha, beta) = (a / steps, b * p as f64 / steps);
        println!("| bytes | median ms | model ms |\n| ---: | ---: | ---: |");
        for (x, y) in &rows {
            println!("| {x:.0} | {:.4} | {:.4} |", y * 1e3, (a + b * x) * 1e3);
        }
        println!(
            "ring all-reduce on {p} ranks: alpha = {:.1} us per step, beta = {:.3} ns/byte ({:.2} GB/s per link)",
            alpha * 1e6,
            beta * 1e9,
            1.0 / beta / 1e9
        );
    }
    Ok(())
}

/// Runs `f` on every rank: this process's rank under an MPI launcher (`--mpi`), else
/// `--world` thread ranks. One result per rank run here.
fn on_ranks<R: Send + 'static>(args: &Args, f: impl Fn(Box<dyn ProcessGroup>) -> DistResult<R> + Send + Sync + 'static) -> Vec<Result<R, String>> {
    if args.mpi {
        return vec![tensorbrain::dist::init().and_then(|g| f(g)).map_err(|e| e.to_string())];
    }
    tensorbrain::dist::run_threads(args.world, tensorbrain::dist::DEFAULT_TIMEOUT, move |g| f(Box::new(g)).map_err(|e| e.to_string()))
        .into_iter()
        .map(|r| r.and_then(|x| x))
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
    if args.allreduce_bench {
        return match on_ranks(&args, allreduce_bench).into_iter().find_map(Result::err) {
            None => ExitCode::SUCCESS,
            Some(e) => {
                eprintln!("ddp_mnist: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dir = dataset_dir("mnist", args.data.as_deref());
    let load = || -> tensorbrain::Result<[Tensor; 4]> {
        let (x, y) = mnist::load(&dir, Split::Train)?;
        let (tx, ty) = mnist::load(&dir, Split::Test)?;
        Ok([x, y, tx, ty])
    };
    let data = match load() {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("ddp_mnist: {e}");
            return ExitCode::FAILURE;
        }
    };
    let a = args.clone();
    let reports = on_ranks(&args, move |g| train(g, data.clone(), &a));
    let mut ok = true;
    for r in &reports {
        match r {
            Ok(rep) if rep.accuracy.is_some() => println!(
                "{:?} world {} overlap {} buckets {}: {:.0} samples/s, backward {:.2} ms/step, exposed comm {:.2} ms/step, last loss {:.4}, test accuracy {:.2}%",
                args.model,
                if args.mpi { "mpi".to_string() } else { args.world.to_string() },
                !args.no_overlap,
                rep.buckets,
                rep.samples_per_s,
                rep.backward.as_secs_f64() * 1e3,
                rep.exposed_comm.as_secs_f64() * 1e3,
                rep.last_loss,
                rep.accuracy.unwrap_or(0.0) * 100.0
            ),
            // The other ranks' times: an exposed time much larger than rank 0's says a rank
            // waited for a slower one.
            Ok(rep) => println!(
                "  another rank: {:.0} samples/s, backward {:.2} ms/step, exposed comm {:.2} ms/step",
                rep.samples_per_s,
                rep.backward.as_secs_f64() * 1e3,
                rep.exposed_comm.as_secs_f64() * 1e3
            ),
            Err(e) => {
                eprintln!("ddp_mnist: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
