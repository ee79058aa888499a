//! Data-parallel training of an MLP (784-128-10) on MNIST with `DistributedDataParallel`.
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
use tensorbrain::dist::{DdpOptions, DistError, DistResult, DistributedDataParallel, DistributedSampler, ProcessGroup};
use tensorbrain::nn::{cross_entropy, Linear, ModuleExt, ReLU, Sequential};
use tensorbrain::optim::{Optimizer, Sgd, SgdOptions};
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
    // Different seeds per rank on purpose: DDP broadcasts rank 0's weights at the start.
    let model = Sequential::new().add(Linear::<784, 128>::init(rank as u64)).add(ReLU::init(0)).add(Linear::<128, 10>::init(1000 + rank as u64));
    let options = DdpOptions { overlap: !args.no_overlap, bucket_cap_bytes: args.bucket_kib * 1024, ..Default::default() };
    let ddp = DistributedDataParallel::with_options(group, model.parameters(), options)?;
    let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: args.lr, momentum: 0.9, ..Default::default() })?;
    let n = x.shape()[0];
    let mut sampler = DistributedSampler::new(n, world, rank)?.seed(0).drop_last(true);
    if sampler.num_samples() < local {
        return Err(DistError::Invalid { rank, op: "ddp_mnist", msg: format!("each rank's shard has {} samples, fewer than its batch of {local}", sampler.num_samples()) });
    }
    let (mut step, mut epoch) = (0, 0);
    let (mut start, mut exposed, mut backward) = (Instant::now(), Duration::ZERO, Duration::ZERO);
    // NaN if no step ran (--steps 0).
    #[allow(unused_assignments)]
    let mut last_loss = f32::NAN;
    'outer: loop {
        sampler.set_epoch(epoch);
        for chunk in sampler.indices().chunks_exact(local) {
            if step == args.steps {
                break 'outer;
            }
            if step == args.warmup {
                start = Instant::now();
                (exposed, backward) = (Duration::ZERO, Duration::ZERO);
            }
            let idx = Tensor::from_vec(chunk.iter().map(|&i| i as i64).collect::<Vec<i64>>(), &[local]);
            let xb = x.try_index_select(0, &idx)?.try_reshape(&[local as isize, 784])?;
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
        }
        epoch += 1;
    }
    let timed = (args.steps - args.warmup.min(args.steps)).max(1);
    let secs = start.elapsed().as_secs_f64();
    let accuracy = (rank == 0).then(|| {
        let m = 2000.min(test_x.shape()[0]);
        let logits = tensorbrain::autograd::no_grad(|| model.forward(&test_x.narrow(0, 0, m).reshape(&[m as isize, 784])))?;
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

fn main() -> ExitCode {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
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
    let reports: Vec<Result<Report, String>> = if args.mpi {
        match tensorbrain::dist::init() {
            Ok(g) => vec![train(g, data, &args).map_err(|e| e.to_string())],
            Err(e) => vec![Err(e.to_string())],
        }
    } else {
        let a = args.clone();
        tensorbrain::dist::run_threads(args.world, tensorbrain::dist::DEFAULT_TIMEOUT, move |g| train(Box::new(g), data.clone(), &a).map_err(|e| e.to_string()))
            .into_iter()
            .map(|r| r.and_then(|x| x))
            .collect()
    };
    let mut ok = true;
    for r in &reports {
        match r {
            Ok(rep) if rep.accuracy.is_some() => println!(
                "world {} overlap {} buckets {}: {:.0} samples/s, backward {:.2} ms/step, exposed comm {:.2} ms/step, last loss {:.4}, test accuracy {:.2}%",
                if args.mpi { "mpi".to_string() } else { args.world.to_string() },
                !args.no_overlap,
                rep.buckets,
                rep.samples_per_s,
                rep.backward.as_secs_f64() * 1e3,
                rep.exposed_comm.as_secs_f64() * 1e3,
                rep.last_loss,
                rep.accuracy.unwrap_or(0.0) * 100.0
            ),
            Ok(_) => {}
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
