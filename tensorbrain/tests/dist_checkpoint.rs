//! Distributed state that outlives a step: DDP's buffer synchronisation, resuming a
//! data-parallel run under another world size, pipeline stage checkpoints, and the pipeline
//! schedule a backend cannot run (1F1B where sends wait for their receive).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use tensorbrain::checkpoint::{TrainingCheckpoint, TrainingState};
use tensorbrain::dist::{resume_sampler, run_threads, DdpOptions, DistributedDataParallel, DistributedSampler, Pipeline, ProcessGroup};
use tensorbrain::nn::{mse_loss, BatchNorm1d, Forward, Linear, ModuleExt, Sequential, Tanh};
use tensorbrain::optim::{Optimizer, Sgd, SgdOptions};
use tensorbrain::train::History;
use tensorbrain::{DType, Generator, Tensor};

const T: Duration = Duration::from_secs(20);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn bn_model(seed: u64) -> Sequential {
    Sequential::new().add(Linear::<8, 16>::init(seed)).add(BatchNorm1d::<16>::init(0)).add(Tanh::init(0)).add(Linear::<16, 4>::init(seed + 1))
}

/// Each rank trains 5 steps on its own rows; returns every rank's buffers (as f64).
fn buffers_after_training(broadcast_buffers: bool) -> Vec<Vec<Vec<f64>>> {
    run_threads(2, T, move |g| {
        let rank = g.rank();
        let model = bn_model(3);
        let options = DdpOptions { broadcast_buffers, ..Default::default() };
        let ddp = DistributedDataParallel::for_module(Box::new(g), &model, options).unwrap();
        assert_eq!(ddp.buffers().len(), 3, "running_mean, running_var, num_batches_tracked");
        let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
        // Rank 1's data has another mean and scale, so its running statistics differ.
        let mut gen = Generator::new(40 + rank as u64);
        let x = Tensor::randn_with(&[16, 8], DType::F32, &mut gen).mul_scalar(1.0 + rank as f64).add_scalar(rank as f64);
        let y = Tensor::randn_with(&[16, 4], DType::F32, &mut gen);
        for _ in 0..5 {
            opt.zero_grad();
            ddp.backward(&mse_loss(&model.forward(&x).unwrap(), &y)).unwrap();
            opt.step().unwrap();
        }
        ddp.buffers().iter().map(|b| b.to_dtype(DType::F64).to_vec::<f64>()).collect::<Vec<_>>()
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

#[test]
fn ddp_copies_rank_0s_buffers_to_every_rank_after_each_step() {
    let synced = buffers_after_training(true);
    assert_eq!(synced[0], synced[1], "with broadcast_buffers every rank holds rank 0's running statistics");
    assert_eq!(synced[0][2], vec![5.0], "num_batches_tracked (an i64 buffer) counts the 5 steps");
    // The control: without it the ranks' statistics differ, so the check above can fail.
    let apart = buffers_after_training(false);
    assert_ne!(apart[0][0], apart[1][0], "running means should differ without synchronisation");
    assert_eq!(apart[0], synced[0], "rank 0's own statistics do not depend on the broadcast");
}

#[test]
fn a_resumed_epoch_covers_the_rest_once_under_another_world_size() {
    let len = 103;
    // Two ranks of 4 samples took 3 steps: 24 samples of epoch 1's global order are done.
    let mut seen = HashSet::new();
    for rank in 0..2 {
        let mut s = DistributedSampler::new(len, 2, rank).unwrap().seed(9);
        s.set_epoch(1);
        seen.extend(s.indices().into_iter().take(3 * 4));
    }
    assert_eq!(seen.len(), 24);
    // Three ranks resume: the rest of the epoch, each sample once, none of the done ones
    // (padding repeats samples only to even out the last shard).
    let mut rest = Vec::new();
    for rank in 0..3 {
        let mut s = DistributedSampler::new(len, 3, rank).unwrap().seed(9).drop_last(true);
        s.set_epoch(1);
        s.set_position(24).unwrap();
        assert_eq!(s.num_samples(), (len - 24) / 3);
        rest.extend(s.indices());
    }
    let unique: HashSet<usize> = rest.iter().copied().collect();
    assert_eq!(unique.len(), rest.len(), "a resumed sample appears twice");
    assert!(unique.is_disjoint(&seen), "a resumed run repeats samples the saved run had trained on");
    assert_eq!(seen.len() + rest.len(), 24 + (len - 24) / 3 * 3);
    // set_epoch starts the next epoch from its beginning again.
    let mut s = DistributedSampler::new(len, 3, 0).unwrap();
    s.set_position(24).unwrap();
    s.set_epoch(2);
    assert_eq!(s.position(), 0);
    let past = DistributedSampler::new(len, 3, 0).unwrap().set_position(104).unwrap_err().to_string();
    assert!(past.contains("position 104") && past.contains("103 samples"), "{past}");
}

#[test]
fn a_ddp_checkpoint_resumes_under_any_world_size_with_the_same_global_batch() {
    let dir = temp_dir("ddp-resume");
    let d = dir.clone();
    // Two ranks save after epoch 0 plus 5 steps of a global batch of 12.
    let saved = run_threads(2, T, move |g| {
        let model = bn_model(1 + g.rank() as u64);
        let ddp = DistributedDataParallel::for_module(Box::new(g), &model, DdpOptions::default()).unwrap();
        let opt = Sgd::new(model.parameters(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
        let state = TrainingState::new(0, 5, (0, 0), History::default());
        let path = ddp.save_checkpoint(&d, &model.state_dict(), &opt.state_dict(), &state, 60, 12).unwrap();
        (path, model.parameters()[0].to_vec::<f32>())
    });
    let saved: Vec<_> = saved.into_iter().map(|r| r.unwrap()).collect();
    assert!(saved[0].0.is_some() && saved[1].0.is_none(), "rank 0 alone writes");
    let ckpt = TrainingCheckpoint::load(&dir).unwrap();
    let dp = ckpt.state.data_parallel.clone().expect("a DDP checkpoint records its run");
    assert_eq!((dp.world_size, dp.global_batch, dp.epoch_position), (2, 12, 60));
    let mut restored = bn_model(77);
    restored.load_state_dict(ckpt.model.clone(), "test").unwrap();
    assert_eq!(restored.parameters()[0].to_vec::<f32>(), saved[0].1);

    // Three ranks of 4 keep the global batch: they resume where the two ranks stopped.
    let mut sampler = DistributedSampler::new(100, 3, 2).unwrap();
    resume_sampler(&mut sampler, &ckpt.state, 3, 12).unwrap();
    assert_eq!(sampler.position(), 60);
    // Three ranks of 6 would change the optimisation: refused, naming both.
    let err = resume_sampler(&mut sampler, &ckpt.state, 3, 18).unwrap_err().to_string();
    assert!(err.contains("global batch of 12 (2 ranks × 6)") && err.contains("18 (3 ranks × 6)") && err.contains("4 per rank"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

fn stage(seed: u64, rank: usize) -> Box<dyn Forward> {
    match rank {
        0 => Box::new(Sequential::new().add(Linear::<6, 12>::init(seed)).add(Tanh::init(0))),
        1 => Box::new(Sequential::new().add(Linear::<12, 3>::init(seed))),
        _ => Box::new(Sequential::new().add(Linear::<3, 3>::init(seed))),
    }
}

#[test]
fn pipeline_stages_round_trip_and_another_stage_count_is_refused() {
    let dir = temp_dir("pipe-ckpt");
    let d = dir.clone();
    let saved = run_threads(2, T, move |g| {
        let rank = g.rank();
        let pipe = Pipeline::from_stage(Box::new(g), stage(10 + rank as u64, rank));
        let path = pipe.save_stage(&d).unwrap();
        // A fresh stage with other weights loads the saved ones back.
        let mut fresh = Pipeline::from_stage(Box::new(tensorbrain::dist::ThreadGroup::new(2).remove(rank)), stage(99, rank));
        let before = fresh.stage().parameters()[0].to_vec::<f32>();
        let want = pipe.stage().parameters()[0].to_vec::<f32>();
        assert_ne!(before, want);
        fresh.load_stage(&d).unwrap();
        assert_eq!(fresh.stage().parameters()[0].to_vec::<f32>(), want);
        path
    });
    for (rank, r) in saved.into_iter().enumerate() {
        assert!(r.unwrap().ends_with(format!("stage-{rank}-of-2.safetensors")));
    }
    let d = dir.clone();
    let errors = run_threads(3, T, move |g| {
        let rank = g.rank();
        let mut pipe = Pipeline::from_stage(Box::new(g), stage(1, rank));
        pipe.load_stage(&d).unwrap_err().to_string()
    });
    for e in errors {
        let e = e.unwrap();
        assert!(e.contains("pipeline of 2 stages") && e.contains("this run has 3 ranks"), "{e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_group_of_one_can_save_and_resume_too() {
    // The single-process path goes through the same code (ThreadGroup of one rank).
    let dir = temp_dir("one-rank");
    let g = tensorbrain::dist::ThreadGroup::new(1).pop().unwrap();
    assert_eq!(g.world_size(), 1);
    let model = bn_model(2);
    let ddp = DistributedDataParallel::for_module(Box::new(g), &model, DdpOptions::default()).unwrap();
    let opt = Sgd::new(model.parameters(), SgdOptions::default()).unwrap();
    let state = TrainingState::new(3, 0, (0, 0), History::default());
    ddp.save_checkpoint(&dir, &model.state_dict(), &opt.state_dict(), &state, 0, 8).unwrap().unwrap();
    let ckpt = TrainingCheckpoint::load(&dir).unwrap();
    let mut sampler = DistributedSampler::new(50, 2, 0).unwrap();
    resume_sampler(&mut sampler, &ckpt.state, 2, 8).unwrap();
    assert_eq!(sampler.position(), 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// A thread rank whose sends claim to wait for the receiver, as NCCL's do.
struct UnbufferedSends(tensorbrain::dist::ThreadGroup);

impl ProcessGroup for UnbufferedSends {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn world_size(&self) -> usize {
        self.0.world_size()
    }
    fn timeout(&self) -> Duration {
        self.0.timeout()
    }
    fn set_timeout(&mut self, timeout: Duration) {
        self.0.set_timeout(timeout)
    }
    fn send_payload(&self, op: &'static str, dst: usize, data: tensorbrain::dist::Payload) -> tensorbrain::dist::DistResult<()> {
        self.0.send_payload(op, dst, data)
    }
    fn recv_payload(&self, op: &'static str, src: usize) -> tensorbrain::dist::DistResult<tensorbrain::dist::Payload> {
        self.0.recv_payload(op, src)
    }
    fn sends_are_buffered(&self) -> bool {
        false
    }
}

#[test]
fn one_f_one_b_is_refused_at_once_where_sends_wait_for_their_receive() {
    use tensorbrain::dist::Schedule;
    let results = run_threads(2, T, |g| {
        let rank = g.rank();
        let pipe = Pipeline::from_stage(Box::new(UnbufferedSends(g)), stage(5, rank));
        let x = Tensor::ones(&[8, 6], DType::F32);
        let loss = |_: usize, out: &Tensor| Ok(out.sum(&[0, 1], false));
        let refused = pipe.step(Schedule::OneFOneB, 4, Some(&x), &loss).unwrap_err().to_string();
        // GPipe never has two neighbours sending to each other, so it runs.
        pipe.step(Schedule::GPipe, 4, Some(&x), &loss).unwrap();
        refused
    });
    for r in results {
        let e = r.unwrap();
        assert!(e.contains("1F1B needs sends that return before the peer receives") && e.contains("GPipe"), "{e}");
    }
}
