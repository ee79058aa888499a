//! [`DistributedDataParallel`]: every rank holds a full replica; gradients are averaged over
//! ranks in buckets, each all-reduced by a communication thread as soon as backward has
//! produced its last gradient, so communication overlaps the rest of backward.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::{DistError, DistResult};
use super::group::{ProcessGroup, ReduceOp};
use super::payload::Payload;
use crate::tensor::{DType, Tensor};

/// How DDP groups and schedules gradient communication.
#[derive(Clone, Debug)]
pub struct DdpOptions {
    /// A bucket closes once it holds at least this many bytes of gradients (PyTorch's
    /// `bucket_cap_mb`, default 25 MiB). Fewer, larger buckets cost less latency; smaller ones
    /// start earlier.
    pub bucket_cap_bytes: usize,
    /// All-reduce buckets while backward runs (true) or only after it returns (false).
    /// Results are identical; only timing differs.
    pub overlap: bool,
    /// Copy rank 0's parameters to every rank when DDP is created, so replicas start equal
    /// whatever their initialisation.
    pub broadcast_parameters: bool,
    /// Copy rank 0's buffers (batch norm's running statistics, ...) to every rank when DDP is
    /// created and after every synchronised backward, as PyTorch's `broadcast_buffers`: each
    /// rank updates them from its own shard of the batch, so without this the replicas'
    /// running statistics drift apart and evaluation depends on the rank.
    pub broadcast_buffers: bool,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions { bucket_cap_bytes: 25 * 1024 * 1024, overlap: true, broadcast_parameters: true, broadcast_buffers: true }
    }
}

/// A group of parameters all-reduced together (indices into the DDP's parameter list).
#[derive(Clone, Debug)]
pub struct Bucket {
    pub params: Vec<usize>,
    pub numel: usize,
    pub dtype: DType,
}

/// What the last synchronised backward did, to check and measure overlap.
#[derive(Clone, Debug, Default)]
pub struct DdpStepStats {
    /// Buckets handed to the communication thread before backward returned.
    pub launched_during_backward: usize,
    /// Of those, the buckets launched while other parameters' gradients were still to come,
    /// whose all-reduce could overlap the rest of backward. Zero when every gradient becomes
    /// ready at the same moment, as for a model whose backward finished its parameters all at
    /// once.
    pub overlapped: usize,
    pub buckets: usize,
    /// Time spent in backward (including the hooks that launch buckets).
    pub backward_time: Duration,
    /// Time from the end of backward until every bucket was reduced: the communication that
    /// was not hidden behind backward.
    pub exposed_comm_time: Duration,
}

type GroupCall = Box<dyn FnOnce(&mut dyn ProcessGroup) + Send>;

enum Job {
    AllReduce { bucket: usize, data: Payload },
    Call(GroupCall),
}

/// Data-parallel training over a [`ProcessGroup`]: wrap a model's parameters, call
/// [`backward`](Self::backward) instead of `loss.backward()`, then step the optimizer as usual.
pub struct DistributedDataParallel {
    params: Vec<Tensor>,
    /// The module's buffers (only with [`for_module`](Self::for_module)).
    buffers: Vec<Tensor>,
    buckets: Vec<Bucket>,
    /// Parameter id -> its bucket.
    bucket_of: HashMap<u64, usize>,
    rank: usize,
    world_size: usize,
    options: DdpOptions,
    sync: AtomicBool,
    jobs: Option<Sender<Job>>,
    results: Mutex<Receiver<(usize, DistResult<Payload>)>>,
    worker: Option<JoinHandle<()>>,
    last: Mutex<DdpStepStats>,
}

/// Splits parameters into buckets in reverse order (the order backward produces gradients),
/// closing a bucket when it reaches `cap` bytes or the dtype changes.
pub fn make_buckets(params: &[Tensor], cap: usize) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut bytes = 0;
    for (i, p) in params.iter().enumerate().rev() {
        let open = buckets.last().is_some_and(|b| b.dtype == p.dtype() && bytes < cap);
        if !open {
            buckets.push(Bucket { params: Vec::new(), numel: 0, dtype: p.dtype() });
            bytes = 0;
        }
        let b = buckets.last_mut().expect("just pushed");
        b.params.push(i);
        b.numel += p.numel();
        bytes += p.numel() * p.dtype().size_in_bytes();
    }
    buckets
}

impl DistributedDataParallel {
    /// Takes over `group` (moved into the communication thread) for `params` (e.g.
    /// `model.parameters()`), with default options.
    pub fn new(group: Box<dyn ProcessGroup>, params: Vec<Tensor>) -> DistResult<Self> {
        Self::with_options(group, params, DdpOptions::default())
    }

    /// DDP over `module`'s parameters and buffers (see [`DdpOptions::broadcast_buffers`]).
    pub fn for_module<M: crate::nn::Module>(group: Box<dyn ProcessGroup>, module: &M, options: DdpOptions) -> DistResult<Self> {
        let mut params = Vec::new();
        module.collect_params(&mut params);
        let mut buffers = Vec::new();
        module.visit_buffers("", &mut |_, b| buffers.push(b.clone()));
        Self::build(group, params, buffers, options)
    }

    /// DDP over `params` alone: buffers, if the model has any, are not synchronised (use
    /// [`for_module`](Self::for_module) for that).
    pub fn with_options(group: Box<dyn ProcessGroup>, params: Vec<Tensor>, options: DdpOptions) -> DistResult<Self> {
        Self::build(group, params, Vec::new(), options)
    }

    fn build(mut group: Box<dyn ProcessGroup>, params: Vec<Tensor>, buffers: Vec<Tensor>, options: DdpOptions) -> DistResult<Self> {
        let (rank, world_size) = (group.rank(), group.world_size());
        for (i, p) in params.iter().enumerate() {
            if !matches!(p.dtype(), DType::F32 | DType::F64) {
                return Err(DistError::Invalid { rank, op: "DistributedDataParallel", msg: format!("parameter {i} has dtype {} (expected f32 or f64)", p.dtype()) });
            }
        }
        let buckets = make_buckets(&params, options.bucket_cap_bytes);
        let bucket_of = buckets.iter().enumerate().flat_map(|(b, bk)| bk.params.iter().map(move |&i| (b, i))).map(|(b, i)| (params[i].id(), b)).collect();
        let (jobs, job_rx) = channel::<Job>();
        let (res_tx, results) = channel();
        let worker = std::thread::Builder::new()
            .name(format!("ddp-comm-rank-{rank}"))
            .spawn(move || {
                // Jobs run in arrival order; the main thread launches buckets in index order, so
                // every rank issues the same sequence of collectives.
                for job in job_rx {
                    match job {
                        Job::AllReduce { bucket, mut data } => {
                            let r = group.all_reduce_payload(&mut data, ReduceOp::Avg).map(|_| data);
                            if res_tx.send((bucket, r)).is_err() {
                                return;
                            }
                        }
                        Job::Call(f) => f(group.as_mut()),
                    }
                }
            })
            .map_err(|e| DistError::Invalid { rank, op: "DistributedDataParallel", msg: format!("cannot spawn the communication thread: {e}") })?;
        let ddp = DistributedDataParallel {
            params,
            buffers,
            buckets,
            bucket_of,
            rank,
            world_size,
            options,
            sync: AtomicBool::new(true),
            jobs: Some(jobs),
            results: Mutex::new(results),
            worker: Some(worker),
            last: Mutex::new(DdpStepStats::default()),
        };
        if ddp.options.broadcast_parameters {
            let params = ddp.params.clone();
            ddp.with_group(move |g| params.iter().try_for_each(|p| g.broadcast(p, 0)))??;
        }
        ddp.sync_buffers()?;
        Ok(ddp)
    }

    /// Copies rank 0's buffers to every rank (nothing without buffers or with
    /// `broadcast_buffers` off). Integer buffers (batch norm's `num_batches_tracked`) travel
    /// as f64, exact below 2^53.
    pub fn sync_buffers(&self) -> DistResult<()> {
        if !self.options.broadcast_buffers || self.buffers.is_empty() {
            return Ok(());
        }
        let buffers = self.buffers.clone();
        self.with_group(move |g| {
            buffers.iter().try_for_each(|b| {
                if matches!(b.dtype(), DType::F32 | DType::F64) {
                    return g.broadcast(b, 0);
                }
                let wide = b.try_to_dtype(DType::F64)?;
                g.broadcast(&wide, 0)?;
                crate::autograd::no_grad(|| b.try_copy_from(&wide.try_to_dtype(b.dtype())?)).map_err(DistError::from)
            })
        })?
    }

    /// The buffers [`sync_buffers`](Self::sync_buffers) copies from rank 0.
    pub fn buffers(&self) -> &[Tensor] {
        &self.buffers
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    pub fn last_step_stats(&self) -> DdpStepStats {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `f` on the process group, on the communication thread (after any collectives
    /// already queued), and returns its result: barriers, metric all-reduces, ...
    pub fn with_group<R: Send + 'static>(&self, f: impl FnOnce(&mut dyn ProcessGroup) -> R + Send + 'static) -> DistResult<R> {
        let (tx, rx) = channel();
        self.submit(Job::Call(Box::new(move |g: &mut dyn ProcessGroup| {
            let _ = tx.send(f(g));
        })))?;
        rx.recv().map_err(|_| self.comm_gone("with_group"))
    }

    fn comm_gone(&self, op: &'static str) -> DistError {
        DistError::Invalid { rank: self.rank, op, msg: "the DDP communication thread has stopped (it panicked)".into() }
    }

    fn submit(&self, job: Job) -> DistResult<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| self.comm_gone("submit"))?;
        jobs.send(job).map_err(|_| self.comm_gone("submit"))
    }

    /// Runs `f` without gradient synchronisation: backward calls inside only accumulate
    /// local gradients (gradient accumulation); the next synchronised backward averages the
    /// accumulated sum. Like PyTorch's `with ddp.no_sync():`.
    pub fn no_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = self.sync.swap(false, Ordering::SeqCst);
        struct Restore<'a>(&'a AtomicBool, bool);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.store(self.1, Ordering::SeqCst);
            }
        }
        let _restore = Restore(&self.sync, before);
        f()
    }

    /// The bucket's gradients, flattened (zeros for a parameter backward never reached, so
    /// every rank contributes the same layout).
    fn flatten(&self, b: usize) -> Payload {
        let bucket = &self.buckets[b];
        let grads = bucket.params.iter().map(|&i| self.params[i].grad());
        match bucket.dtype {
            DType::F64 => {
                let mut v = Vec::with_capacity(bucket.numel);
                for (g, &i) in grads.zip(&bucket.params) {
                    match g {
                        Some(g) => v.extend(g.to_vec::<f64>()),
                        None => v.resize(v.len() + self.params[i].numel(), 0.0),
                    }
                }
                Payload::F64(v)
            }
            _ => {
                let mut v = Vec::with_capacity(bucket.numel);
                for (g, &i) in grads.zip(&bucket.params) {
                    match g {
                        Some(g) => v.extend(g.to_vec::<f32>()),
                        None => v.resize(v.len() + self.params[i].numel(), 0.0),
                    }
                }
                Payload::F32(v)
            }
        }
    }

    /// Writes an averaged bucket back into its parameters' `.grad`.
    fn unflatten(&self, b: usize, data: Payload) -> DistResult<()> {
        let mut offset = 0;
        for &i in &self.buckets[b].params {
            let p = &self.params[i];
            let n = p.numel();
            let g = match &data {
                Payload::F32(v) => Tensor::try_from_vec(v[offset..offset + n].to_vec(), p.shape())?,
                Payload::F64(v) => Tensor::try_from_vec(v[offset..offset + n].to_vec(), p.shape())?,
            };
            p.set_grad(Some(g));
            offset += n;
        }
        Ok(())
    }

    /// `loss.backward()` followed by averaging every parameter's gradient over all ranks
    /// (unless inside [`no_sync`](Self::no_sync)). With `overlap`, bucket `k` is all-reduced
    /// as soon as its gradients are final and buckets `0..k` have been launched.
    pub fn backward(&self, loss: &Tensor) -> DistResult<()> {
        if !self.sync.load(Ordering::SeqCst) {
            return Ok(loss.try_backward()?);
        }
        let nb = self.buckets.len();
        let mut waiting: Vec<usize> = self.buckets.iter().map(|b| b.params.len()).collect();
        let mut outstanding: usize = waiting.iter().sum();
        let mut overlapped = 0;
        let mut next = 0;
        let mut launch_error: Option<DistError> = None;
        let start = Instant::now();
        {
            let mut launch_ready = |next: &mut usize, waiting: &[usize], outstanding: usize| -> crate::Result<()> {
                // Launch in bucket order only, so every rank issues the same collective sequence
                // even if their gradients became ready in different orders.
                while *next < nb && waiting[*next] == 0 {
                    if let Err(e) = self.submit(Job::AllReduce { bucket: *next, data: self.flatten(*next) }) {
                        let msg = e.to_string();
                        launch_error = Some(e);
                        return Err(crate::Error::Msg(msg));
                    }
                    *next += 1;
                    overlapped += usize::from(outstanding > 0);
                }
                Ok(())
            };
            let overlap = self.options.overlap;
            let mut hook = |leaf: &Tensor| -> crate::Result<()> {
                if let Some(&b) = self.bucket_of.get(&leaf.id()) {
                    waiting[b] -= 1;
                    outstanding -= 1;
                    if overlap {
                        launch_ready(&mut next, &waiting, outstanding)?;
                    }
                }
                Ok(())
            };
            let r = crate::autograd::backward_with_hook(loss, None, &mut hook);
            drop(hook);
            if let Some(e) = launch_error.take() {
                return Err(e);
            }
            r?;
        }
        let launched_during_backward = next;
        let backward_time = start.elapsed();
        // Buckets not launched yet: overlap off, or parameters that received no gradient.
        for b in next..nb {
            self.submit(Job::AllReduce { bucket: b, data: self.flatten(b) })?;
        }
        let results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let mut first_error = None;
        for _ in 0..nb {
            let (b, r) = results.recv().map_err(|_| self.comm_gone("all_reduce"))?;
            match r {
                Ok(data) => self.unflatten(b, data)?,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // After the gradients, so that the broadcast is queued behind the buckets and every
        // rank issues the same sequence of collectives.
        self.sync_buffers()?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            DdpStepStats { launched_during_backward, overlapped, buckets: nb, backward_time, exposed_comm_time: start.elapsed() - backward_time };
        Ok(())
    }

    /// Saves `module` to `path` on rank 0 only (the replicas are identical), then waits at a
    /// barrier so that no rank reads the file before it is complete.
    pub fn save_on_rank0<M: crate::nn::ModuleExt>(&self, module: &M, path: impl AsRef<Path>) -> DistResult<()> {
        let saved = if self.rank == 0 { module.save(path.as_ref()) } else { Ok(()) };
        // Barrier even if saving failed, so the other ranks are not left waiting; then report.
        let barrier = self.with_group(|g| g.barrier())?;
        saved?;
        barrier
    }
}

/// Rank-0-only checkpointing for code that drives a process group directly: saves on rank 0,
/// then a barrier.
pub fn save_on_rank0<M: crate::nn::ModuleExt>(group: &dyn ProcessGroup, module: &M, path: impl AsRef<Path>) -> DistResult<()> {
    let saved = if group.rank() == 0 { module.save(path.as_ref()) } else { Ok(()) };
    let barrier = group.barrier();
    saved?;
    barrier
}

impl Drop for DistributedDataParallel {
    fn drop(&mut self) {
        // Closing the job channel ends the communication thread, which drops the group.
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
