//! Distributed training on the in-process thread backend: collectives, failure detection, DDP
//! against single-process training, pipeline schedules against the unpipelined model, the
//! sampler, and the autograd gradient-ready hook DDP relies on.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tensorbrain::dist::{
    run_threads, DdpOptions, DistError, DistributedDataParallel, DistributedSampler, LaunchEnv, Pipeline, ProcessGroup, ReduceOp, Schedule,
};
use tensorbrain::nn::{mse_loss, Forward, Linear, ModuleExt, Sequential, Tanh};
use tensorbrain::optim::{Optimizer, Sgd, SgdOptions};
use tensorbrain::{DType, Generator, Tensor};

const T: Duration = Duration::from_secs(20);

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

// ---------------------------------------------------------------- collectives

#[test]
fn collectives_on_three_ranks() {
    // Three ranks and 7 elements: the ring's chunks are uneven, which is where off-by-ones hide.
    let results = run_threads(3, T, |g| {
        let r = g.rank() as f32;
        let t = Tensor::from_vec((0..7).map(|i| r * 10.0 + i as f32).collect::<Vec<f32>>(), &[7]);
        g.all_reduce(&t, ReduceOp::Sum).unwrap();
        let sum = t.to_vec::<f32>();
        let a = Tensor::from_vec(vec![g.rank() as f64; 5], &[5]);
        g.all_reduce(&a, ReduceOp::Avg).unwrap();
        let avg = a.to_vec::<f64>();
        let b = Tensor::from_vec(vec![g.rank() as f32 + 1.0; 4], &[2, 2]);
        g.broadcast(&b, 2).unwrap();
        let gathered: Vec<Vec<f32>> = g.all_gather(&Tensor::from_vec(vec![r; 2], &[2])).unwrap().iter().map(|t| t.to_vec()).collect();
        let rs = g.reduce_scatter(&Tensor::from_vec((0..6).map(|i| i as f32 + r).collect::<Vec<f32>>(), &[3, 2]), ReduceOp::Sum).unwrap();
        if g.rank() == 0 {
            g.send(&Tensor::from_vec(vec![1.5f32, 2.5, 3.5], &[3, 1]), 1).unwrap();
        }
        let received = if g.rank() == 1 { Some(g.recv(0).unwrap()) } else { None };
        g.barrier().unwrap();
        (sum, avg, b.to_vec::<f32>(), gathered, rs.shape().to_vec(), rs.to_vec::<f32>(), received.map(|t| (t.shape().to_vec(), t.to_vec::<f32>())))
    });
    for (rank, res) in results.into_iter().enumerate() {
        let (sum, avg, b, gathered, rs_shape, rs, received) = res.unwrap();
        assert_eq!(sum, (0..7).map(|i| 30.0 + 3.0 * i as f32).collect::<Vec<_>>(), "rank {rank} all_reduce sum");
        assert_eq!(avg, vec![1.0; 5], "rank {rank} all_reduce avg");
        assert_eq!(b, vec![3.0; 4], "rank {rank} broadcast from rank 2");
        assert_eq!(gathered, vec![vec![0.0; 2], vec![1.0; 2], vec![2.0; 2]], "rank {rank} all_gather");
        assert_eq!(rs_shape, vec![1, 2]);
        // Rows are [0,1], [2,3], [4,5] plus r on rank r; summed over ranks: 3*x + 3.
        assert_eq!(rs, vec![3.0 * (2 * rank) as f32 + 3.0, 3.0 * (2 * rank + 1) as f32 + 3.0], "rank {rank} reduce_scatter");
        if rank == 1 {
            assert_eq!(received, Some((vec![3, 1], vec![1.5, 2.5, 3.5])));
        }
    }
}

#[test]
fn mismatched_shapes_and_bad_ranks_are_errors() {
    let results = run_threads(2, T, |g| {
        let t = Tensor::from_vec(vec![1.0f32; 3 + g.rank()], &[3 + g.rank()]);
        let shape_err = g.all_reduce(&t, ReduceOp::Sum).unwrap_err().to_string();
        let rank_err = g.broadcast(&t, 5).unwrap_err().to_string();
        (shape_err, rank_err)
    });
    for (rank, r) in results.into_iter().enumerate() {
        let (shape_err, rank_err) = r.unwrap();
        // Rank 0 receives more elements than it expects and says so; rank 1's first ring step
        // happens to fit, so it learns of the failure when rank 0 stops answering.
        if rank == 0 {
            assert!(shape_err.contains("same shape"), "{shape_err}");
        } else {
            assert!(shape_err.contains("same shape") || shape_err.contains("rank 0 has exited"), "{shape_err}");
        }
        assert!(rank_err.contains("rank 5 is out of range") && rank_err.contains("2 ranks"), "{rank_err}");
    }
}

// ---------------------------------------------------------------- failures

#[test]
fn a_dead_rank_is_named_by_every_survivor_within_the_timeout() {
    let timeout = Duration::from_secs(5);
    let start = Instant::now();
    let results = run_threads(3, timeout, |g| {
        if g.rank() == 2 {
            panic!("rank 2 crashes before the all-reduce");
        }
        // However the threads are scheduled, a survivor may see the other survivor (which
        // failed on rank 2 and exited) go first; the error must still name rank 2.
        std::thread::sleep(Duration::from_millis(20));
        let t = Tensor::from_vec(vec![1.0f32; 64], &[64]);
        g.all_reduce(&t, ReduceOp::Sum)
    });
    let elapsed = start.elapsed();
    assert!(elapsed < timeout, "the survivors took {elapsed:?}: a dead peer must be detected at once, not by timeout");
    assert!(results[2].as_ref().unwrap_err().contains("rank 2 panicked"));
    for rank in 0..2 {
        let err = results[rank].as_ref().unwrap().as_ref().unwrap_err();
        assert!(matches!(err, DistError::PeerGone { peer: 2, .. }), "rank {rank}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("rank 2 has exited") && msg.contains("all_reduce"), "{msg}");
    }
}

#[test]
fn a_hung_rank_times_out_with_its_name() {
    let timeout = Duration::from_millis(500);
    let results = run_threads(2, timeout, move |g| {
        if g.rank() == 1 {
            // Alive (its channels stay open) but never joins the collective.
            std::thread::sleep(Duration::from_secs(3));
            return None;
        }
        let start = Instant::now();
        let err = g.broadcast(&Tensor::from_vec(vec![0.0f32; 4], &[4]), 1).unwrap_err();
        Some((err, start.elapsed()))
    });
    let (err, waited) = results[0].as_ref().unwrap().as_ref().unwrap();
    assert!(matches!(err, DistError::Timeout { peer: 1, op: "broadcast", .. }), "{err}");
    assert!(err.to_string().contains("waiting for rank 1"), "{err}");
    assert!(*waited >= timeout && *waited < timeout * 4, "waited {waited:?} for a {timeout:?} timeout");
}

// ---------------------------------------------------------------- DDP

fn mlp(seed: u64) -> Sequential {
    Sequential::new().add(Linear::<8, 16>::init(seed)).add(Tanh::init(0)).add(Linear::<16, 4>::init(seed + 1000))
}

/// 64 samples, the same on every rank.
fn dataset() -> (Tensor, Tensor) {
    let mut gen = Generator::new(7);
    (Tensor::randn_with(&[64, 8], DType::F32, &mut gen), Tensor::randn_with(&[64, 4], DType::F32, &mut gen))
}

fn sgd(params: Vec<Tensor>) -> Sgd {
    Sgd::new(params, SgdOptions { lr: 0.05, momentum: 0.9, ..Default::default() }).unwrap()
}

const STEPS: usize = 20;

/// One process, batch 64, 20 SGD steps.
fn reference_params() -> Vec<Vec<f32>> {
    let model = mlp(100);
    let mut opt = sgd(model.parameters());
    let (x, y) = dataset();
    for _ in 0..STEPS {
        opt.zero_grad();
        mse_loss(&model.forward(&x).unwrap(), &y).backward();
        opt.step().unwrap();
    }
    model.parameters().iter().map(|p| p.to_vec()).collect()
}

/// Two ranks, batch 32 each (rows rank*32..), 20 SGD steps; `accumulate` splits each local
/// batch in two micro-batches with `no_sync` on the first.
fn ddp_params(options: DdpOptions, accumulate: bool) -> Vec<(Vec<Vec<f32>>, usize, usize)> {
    run_threads(2, T, move |g| {
        let rank = g.rank();
        // Different initialisation per rank: DDP's broadcast must make them rank 0's (seed 100).
        let model = mlp(100 + 17 * rank as u64);
        let ddp = DistributedDataParallel::with_options(Box::new(g), model.parameters(), options.clone()).unwrap();
        let mut opt = sgd(model.parameters());
        let (x, y) = dataset();
        let (x, y) = (x.narrow(0, rank * 32, 32), y.narrow(0, rank * 32, 32));
        for _ in 0..STEPS {
            opt.zero_grad();
            if accumulate {
                ddp.no_sync(|| {
                    let loss = mse_loss(&model.forward(&x.narrow(0, 0, 16)).unwrap(), &y.narrow(0, 0, 16)).mul_scalar(0.5);
                    ddp.backward(&loss).unwrap();
                });
                let loss = mse_loss(&model.forward(&x.narrow(0, 16, 16)).unwrap(), &y.narrow(0, 16, 16)).mul_scalar(0.5);
                ddp.backward(&loss).unwrap();
            } else {
                ddp.backward(&mse_loss(&model.forward(&x).unwrap(), &y)).unwrap();
            }
            opt.step().unwrap();
        }
        let stats = ddp.last_step_stats();
        (model.parameters().iter().map(|p| p.to_vec()).collect(), stats.buckets, stats.launched_during_backward)
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

/// Small buckets, so the 4 parameters (2 KiB of gradients) span several of them.
fn small_buckets(overlap: bool) -> DdpOptions {
    DdpOptions { bucket_cap_bytes: 256, overlap, ..Default::default() }
}

#[test]
fn ddp_two_ranks_of_32_equal_one_process_of_64_after_20_steps() {
    let reference = reference_params();
    for overlap in [true, false] {
        let ranks = ddp_params(small_buckets(overlap), false);
        for (rank, (params, buckets, launched)) in ranks.iter().enumerate() {
            assert!(*buckets >= 2, "the test needs several buckets, got {buckets}");
            if overlap {
                assert!(*launched > 0, "with overlap, buckets must start during backward");
            } else {
                assert_eq!(*launched, 0, "without overlap, no bucket may start during backward");
            }
            for (i, (p, r)) in params.iter().zip(&reference).enumerate() {
                let d = max_diff(p, r);
                // f32, sums of 32 vs 64 terms in a different order: rounding only.
                assert!(d <= 1e-5, "overlap {overlap}, rank {rank}, parameter {i}: max |ddp - single| = {d:e} > 1e-5");
            }
        }
        assert_eq!(ranks[0].0, ranks[1].0, "replicas must stay bit-identical");
    }
    // Default options: 25 MiB buckets, so one bucket.
    let ranks = ddp_params(DdpOptions::default(), false);
    assert_eq!(ranks[0].1, 1);
    for (p, r) in ranks[0].0.iter().zip(&reference) {
        assert!(max_diff(p, r) <= 1e-5);
    }
}

/// A `#[model]` is one tape node; its generated backward reports each layer's gradients as
/// they are computed, so DDP can start all-reducing the head while the blocks' backward runs.
mod generated {
    use tensorbrain::prelude::*;

    #[model]
    pub struct Block {
        fc: Linear<16, 16>,
    }

    #[model]
    impl Block {
        pub fn forward(&self, x: tb![B, 16]) -> tb![B, 16] {
            x + self.fc(x).tanh()
        }
    }

    #[model]
    pub struct Net {
        input: Linear<8, 16>,
        blocks: [Block; 2],
        head: Linear<16, 4>,
    }

    #[model]
    impl Net {
        pub fn forward(&self, x: tb![B, 8]) -> tb![B, 4] {
            let mut h = self.input(x).tanh();
            for block in &self.blocks {
                h = block(h);
            }
            self.head(h)
        }
    }
}

fn net_loss(model: &generated::Net, x: &Tensor, y: &Tensor) -> Tensor {
    mse_loss(&model.forward_dyn(std::slice::from_ref(x)).unwrap(), y)
}

#[test]
fn ddp_overlaps_a_generated_backward_and_equals_one_process() {
    let (x, y) = dataset();
    let reference = {
        let model = generated::Net::init(100);
        let mut opt = sgd(model.parameters());
        for _ in 0..STEPS {
            opt.zero_grad();
            net_loss(&model, &x, &y).backward();
            opt.step().unwrap();
        }
        model.parameters().iter().map(|p| p.to_vec::<f32>()).collect::<Vec<_>>()
    };
    let ranks = run_threads(2, T, move |g| {
        let rank = g.rank();
        let model = generated::Net::init(100 + 17 * rank as u64);
        let ddp = DistributedDataParallel::with_options(Box::new(g), model.parameters(), small_buckets(true)).unwrap();
        let mut opt = sgd(model.parameters());
        let (x, y) = dataset();
        let (x, y) = (x.narrow(0, rank * 32, 32), y.narrow(0, rank * 32, 32));
        for _ in 0..STEPS {
            opt.zero_grad();
            ddp.backward(&net_loss(&model, &x, &y)).unwrap();
            opt.step().unwrap();
        }
        let params: Vec<Vec<f32>> = model.parameters().iter().map(|p| p.to_vec()).collect();
        (params, ddp.last_step_stats())
    });
    for (rank, r) in ranks.into_iter().enumerate() {
        let (params, stats) = r.unwrap();
        assert!(stats.buckets >= 4, "the test needs several buckets, got {}", stats.buckets);
        // Every bucket is launched inside backward either way; what reporting gradients layer
        // by layer changes is that the first buckets go while the blocks' gradients are
        // still being computed (before, all became ready when the model's node returned).
        assert!(stats.overlapped > 0, "rank {rank}: no bucket overlapped backward: {stats:?}");
        for (i, (p, r)) in params.iter().zip(&reference).enumerate() {
            let d = max_diff(p, r);
            assert!(d <= 1e-5, "rank {rank}, parameter {i}: max |ddp - single| = {d:e} > 1e-5");
        }
    }
}

#[test]
fn ddp_overlap_on_and_off_give_identical_parameters() {
    let on = ddp_params(small_buckets(true), false);
    let off = ddp_params(small_buckets(false), false);
    // The ring reduces each element in a fixed order whatever the timing, so not just close:
    // equal.
    assert_eq!(on[0].0, off[0].0);
}

#[test]
fn ddp_no_sync_accumulation_equals_the_full_batch() {
    let reference = reference_params();
    let ranks = ddp_params(small_buckets(true), true);
    for (rank, (params, ..)) in ranks.iter().enumerate() {
        for (i, (p, r)) in params.iter().zip(&reference).enumerate() {
            let d = max_diff(p, r);
            assert!(d <= 1e-5, "rank {rank}, parameter {i}: {d:e}");
        }
    }
}

#[test]
fn ddp_reports_a_rank_that_died_mid_training() {
    let results = run_threads(2, Duration::from_secs(5), |g| {
        let rank = g.rank();
        let model = mlp(1);
        let ddp = DistributedDataParallel::with_options(Box::new(g), model.parameters(), small_buckets(true)).unwrap();
        let (x, y) = dataset();
        for step in 0..3 {
            if rank == 1 && step == 1 {
                panic!("rank 1 runs out of memory");
            }
            model.zero_grad();
            ddp.backward(&mse_loss(&model.forward(&x).unwrap(), &y))?;
        }
        Ok::<(), DistError>(())
    });
    let err = results[0].as_ref().unwrap().as_ref().unwrap_err();
    assert_eq!(err.peer(), Some(1), "{err}");
    assert!(err.to_string().contains("rank 1 has exited"), "{err}");
}

#[test]
fn buckets_follow_reverse_parameter_order_and_the_cap() {
    let model = mlp(0);
    let params = model.parameters(); // w1 [16,8] 512 B, b1 64 B, w2 [4,16] 256 B, b2 16 B
    let b = tensorbrain::dist::make_buckets(&params, 256);
    let order: Vec<Vec<usize>> = b.iter().map(|b| b.params.clone()).collect();
    assert_eq!(order, vec![vec![3, 2], vec![1, 0]]);
    let one = tensorbrain::dist::make_buckets(&params, 1 << 20);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].numel, 16 * 8 + 16 + 4 * 16 + 4);
}

#[test]
fn checkpoint_is_written_by_rank_0_only_and_visible_after_the_barrier() {
    let dir = std::env::temp_dir().join(format!("tb-dist-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let p2 = path.clone();
    let results = run_threads(2, T, move |g| {
        let model = mlp(5 + g.rank() as u64);
        let rank = g.rank();
        let ddp = DistributedDataParallel::new(Box::new(g), model.parameters()).unwrap();
        ddp.save_on_rank0(&model, &p2).unwrap();
        // After the barrier every rank can load what rank 0 wrote.
        let mut other = mlp(99);
        other.load(&p2).unwrap();
        (rank, other.parameters()[0].to_vec::<f32>() == model.parameters()[0].to_vec::<f32>())
    });
    for r in results {
        let (rank, same) = r.unwrap();
        assert!(same, "rank {rank} loaded different weights");
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------- sampler

#[test]
fn sampler_shards_are_disjoint_cover_the_dataset_and_reshuffle_per_epoch() {
    for epoch in 0..3 {
        let shards: Vec<Vec<usize>> = (0..3)
            .map(|r| {
                let mut s = DistributedSampler::new(12, 3, r).unwrap().seed(4);
                s.set_epoch(epoch);
                s.indices()
            })
            .collect();
        let all: HashSet<usize> = shards.iter().flatten().copied().collect();
        assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 4]);
        assert_eq!(all, (0..12).collect(), "epoch {epoch}: shards must cover the dataset without overlap");
    }
    let at = |epoch| {
        let mut s = DistributedSampler::new(12, 3, 0).unwrap();
        s.set_epoch(epoch);
        s.indices()
    };
    assert_ne!(at(0), at(1), "set_epoch must reshuffle");
    assert_eq!(at(1), at(1));
    // 10 samples over 3 ranks: padded to 4 each by repeating 2 samples, or 3 each when dropping.
    let padded: Vec<Vec<usize>> = (0..3).map(|r| DistributedSampler::new(10, 3, r).unwrap().indices()).collect();
    assert!(padded.iter().all(|s| s.len() == 4));
    assert_eq!(padded.iter().flatten().copied().collect::<HashSet<_>>(), (0..10).collect());
    let dropped: Vec<Vec<usize>> = (0..3).map(|r| DistributedSampler::new(10, 3, r).unwrap().drop_last(true).indices()).collect();
    let set: HashSet<usize> = dropped.iter().flatten().copied().collect();
    assert!(dropped.iter().all(|s| s.len() == 3) && set.len() == 9, "drop_last shards must be equal and disjoint");
    let unshuffled = DistributedSampler::new(7, 2, 1).unwrap().shuffle(false).indices();
    assert_eq!(unshuffled, vec![1, 3, 5, 0], "rank 1 takes every second index, padding from the start");
    assert!(DistributedSampler::new(10, 2, 2).unwrap_err().to_string().contains("rank < num_replicas"));
}

// ---------------------------------------------------------------- launcher environment

#[test]
fn launch_env_reads_mpirun_and_torchrun_variables() {
    let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    let e = LaunchEnv::parse(env(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4")])).unwrap();
    assert_eq!((e.rank, e.world_size), (1, 4));
    assert!(e.launcher.contains("mpirun"));
    let e = LaunchEnv::parse(env(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap();
    assert_eq!((e.rank, e.world_size), (0, 2));
    let missing = LaunchEnv::parse(env(&[("RANK", "0")])).unwrap_err().to_string();
    assert!(missing.contains("WORLD_SIZE is missing"), "{missing}");
    let none = LaunchEnv::parse(env(&[])).unwrap_err().to_string();
    assert!(none.contains("OMPI_COMM_WORLD_RANK") && none.contains("RANK and WORLD_SIZE"), "{none}");
    let bad = LaunchEnv::parse(env(&[("RANK", "3"), ("WORLD_SIZE", "2")])).unwrap_err().to_string();
    assert!(bad.contains("expected 0 <= rank < world size"), "{bad}");
}

// ---------------------------------------------------------------- gradient-ready hook

#[test]
fn the_backward_hook_fires_once_per_leaf_when_its_gradient_is_final() {
    let mut gen = Generator::new(3);
    let x = Tensor::randn_with(&[5, 3], DType::F32, &mut gen);
    let w1 = Tensor::randn_with(&[3, 4], DType::F32, &mut gen).set_requires_grad(true);
    let w2 = Tensor::randn_with(&[4, 2], DType::F32, &mut gen).set_requires_grad(true);
    // w1 is used twice (early and late), so its gradient is final only at the very end.
    let h = x.matmul(&w1).tanh();
    let loss = h.matmul(&w2).sum_all().add(&h.matmul(&w1.transpose(0, 1)).sum_all());
    let mut seen: Vec<(u64, Vec<f32>)> = Vec::new();
    tensorbrain::autograd::backward_with_hook(&loss, None, &mut |leaf: &Tensor| {
        seen.push((leaf.id(), leaf.grad().expect("a ready leaf has its gradient").to_vec()));
        Ok(())
    })
    .unwrap();
    let ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(ids, vec![w2.id(), w1.id()], "each leaf once, in the order its gradient became final");
    assert_eq!(seen[0].1, w2.grad().unwrap().to_vec::<f32>());
    assert_eq!(seen[1].1, w1.grad().unwrap().to_vec::<f32>(), "the hook saw w1's final gradient");
    // And the gradients equal plain backward's.
    let (g1, g2) = (w1.grad().unwrap().to_vec::<f32>(), w2.grad().unwrap().to_vec::<f32>());
    w1.zero_grad();
    w2.zero_grad();
    loss.backward();
    assert_eq!(g1, w1.grad().unwrap().to_vec::<f32>());
    assert_eq!(g2, w2.grad().unwrap().to_vec::<f32>());
}

// ---------------------------------------------------------------- pipeline

fn stage0(seed: u64) -> Sequential {
    Sequential::new().add(Linear::<6, 12>::init(seed)).add(Tanh::init(0))
}

fn stage1(seed: u64) -> Sequential {
    Sequential::new().add(Linear::<12, 3>::init(seed))
}

fn pipe_data() -> (Tensor, Tensor) {
    let mut gen = Generator::new(11);
    (Tensor::randn_with(&[16, 6], DType::F32, &mut gen), Tensor::randn_with(&[16, 3], DType::F32, &mut gen))
}

#[test]
fn pipeline_gradients_equal_the_full_batch_for_gpipe_and_1f1b() {
    let (x, y) = pipe_data();
    let (s0, s1) = (stage0(1), stage1(2));
    mse_loss(&s1.forward(&s0.forward(&x).unwrap()).unwrap(), &y).backward();
    let reference: Vec<Vec<f32>> = s0.parameters().iter().chain(&s1.parameters()).map(|p| p.grad().unwrap().to_vec()).collect();

    for schedule in [Schedule::GPipe, Schedule::OneFOneB] {
        for m in [4usize, 8] {
            let results = run_threads(2, T, move |g| {
                let stages: Vec<Box<dyn Forward>> = vec![Box::new(stage0(1)), Box::new(stage1(2))];
                let pipe = Pipeline::new(Box::new(g), stages).unwrap();
                let (x, y) = pipe_data();
                let n = 16 / m;
                let stats = pipe
                    .step(schedule, m, Some(&x), &|j, out| Ok(mse_loss(out, &y.narrow(0, j * n, n)).mul_scalar(1.0 / m as f64)))
                    .unwrap();
                let grads: Vec<Vec<f32>> = pipe.stage().parameters().iter().map(|p| p.grad().unwrap().to_vec()).collect();
                (grads, stats)
            });
            let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
            let grads: Vec<&Vec<f32>> = results.iter().flat_map(|(g, _)| g).collect();
            assert_eq!(grads.len(), reference.len());
            for (i, (g, r)) in grads.iter().zip(&reference).enumerate() {
                let d = max_diff(g, r);
                assert!(d <= 1e-6, "{schedule:?}, m = {m}, parameter {i}: max |pipeline - full batch| = {d:e} > 1e-6");
            }
            for (i, (_, s)) in results.iter().enumerate() {
                let expected = match schedule {
                    Schedule::GPipe => m,
                    Schedule::OneFOneB => (2 - i).min(m),
                };
                assert_eq!(s.peak_live_micro_batches, expected, "{schedule:?} m = {m} stage {i}");
                assert_eq!(s.peak_live_activation_bytes, expected * s.activation_bytes_per_micro_batch);
                assert!((s.bubble_fraction - 1.0 / (m + 1) as f64).abs() < 1e-12);
            }
            // Stage 1's A: input [n, 12] + output [n, 3] f32.
            assert_eq!(results[1].1.activation_bytes_per_micro_batch, (16 / m) * (12 + 3) * 4);
            assert_eq!(results[1].1.losses.len(), m);
        }
    }
}

#[test]
fn one_f_one_b_peak_is_min_of_p_minus_i_and_m_on_four_stages() {
    for m in [2usize, 3, 6] {
        let results = run_threads(4, T, move |g| {
            let rank = g.rank() as u64;
            let pipe = Pipeline::from_stage(Box::new(g), Box::new(Sequential::new().add(Linear::<4, 4>::init(rank)).add(Tanh::init(0))));
            let x = Tensor::ones(&[m * 2, 4], DType::F32);
            let gpipe = pipe.step(Schedule::GPipe, m, Some(&x), &|_, out| Ok(out.sum_all())).unwrap();
            let ofob = pipe.step(Schedule::OneFOneB, m, Some(&x), &|_, out| Ok(out.sum_all())).unwrap();
            (gpipe.peak_live_micro_batches, ofob.peak_live_micro_batches, ofob.peak_live_activation_bytes, ofob.activation_bytes_per_micro_batch)
        });
        for (i, r) in results.into_iter().enumerate() {
            let (gpipe, ofob, bytes, a) = r.unwrap();
            assert_eq!(gpipe, m, "GPipe stage {i}, m = {m}");
            assert_eq!(ofob, (4 - i).min(m), "1F1B stage {i}, m = {m}");
            assert_eq!(bytes, ofob * a);
        }
    }
}
