//! The dynamic batcher: one thread that owns the model, takes requests from a bounded queue,
//! stacks those that arrive within `max_wait` of each other (up to `max_batch` rows) along the
//! batch dim, runs one forward, and splits the result back per request.
//!
//! The queue is bounded so that overload turns into fast 429s at the door instead of growing
//! memory and latency without limit; its depth is a gauge.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tensorbrain::Tensor;
use tokio::sync::oneshot;

use crate::decode::InferRequest;
use crate::error::ApiError;
use crate::metrics as m;
use crate::tensor_data::TensorData;

/// The forward the batcher runs: inputs in signature order, batch stacked along dim 0.
pub type InferFn = Box<dyn FnMut(&[Tensor]) -> tensorbrain::Result<Tensor> + Send>;

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most rows in one forward.
    pub max_batch: usize,
    /// How long the first request of a batch may wait for company.
    pub max_wait: Duration,
    /// Requests that may wait in the queue; one more gets a 429.
    pub queue: usize,
    /// Whether requests can be stacked (the signature has a leading batch symbol).
    pub batchable: bool,
}

/// One request's output and where its time went.
#[derive(Debug)]
pub struct Completed {
    pub output: TensorData,
    pub shape: Vec<usize>,
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// Rows in the forward this request was part of.
    pub batch_rows: usize,
}

pub type Reply = Result<Completed, ApiError>;

struct Job {
    request: InferRequest,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
}

/// The handlers' end of the queue.
#[derive(Clone)]
pub struct BatchQueue {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    alive: Arc<AtomicBool>,
}

impl BatchQueue {
    /// Queues a request; the receiver yields its result. A full queue is a 429 at once.
    pub fn submit(&self, request: InferRequest, deadline: Instant) -> Result<oneshot::Receiver<Reply>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Job { request, enqueued: Instant::now(), deadline, reply };
        // Count before sending so the batcher's decrement never runs first.
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        match self.tx.try_send(job) {
            Ok(()) => {
                m::queue_depth(depth);
                Ok(rx)
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ApiError::queue_full(self.capacity),
                    TrySendError::Disconnected(_) => ApiError::unavailable("the compute thread has stopped"),
                })
            }
        }
    }

    /// Whether a submit would find the queue full (checked before decoding a request, so that
    /// overload is refused at the cost of reading the body only).
    pub fn is_full(&self) -> bool {
        self.depth.load(Ordering::Relaxed) >= self.capacity
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// False once the compute thread has exited (it never should while the server runs).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// Starts the batcher thread. It runs until every [`BatchQueue`] clone is dropped and the
/// queue is drained, then exits (graceful shutdown joins it).
pub fn spawn(infer: InferFn, config: BatchConfig) -> std::io::Result<(BatchQueue, JoinHandle<()>)> {
    assert!(config.max_batch >= 1 && config.queue >= 1, "max_batch and queue must be at least 1");
    let (tx, rx) = sync_channel(config.queue);
    let depth = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(AtomicBool::new(true));
    let queue = BatchQueue { tx, depth: depth.clone(), capacity: config.queue, alive: alive.clone() };
    let handle = std::thread::Builder::new().name("tensorbrain-batcher".into()).spawn(move || {
        Batcher { infer, config, rx, depth, carry: None }.run();
        alive.store(false, Ordering::Relaxed);
    })?;
    Ok((queue, handle))
}

struct Batcher {
    infer: InferFn,
    config: BatchConfig,
    rx: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    /// A job taken from the queue that did not fit in the last batch.
    carry: Option<Job>,
}

impl Batcher {
    fn run(&mut self) {
        while let Some(batch) = self.next_batch() {
            self.run_batch(batch);
        }
    }

    fn take(&self, job: Job) -> Job {
        let depth = self.depth.fetch_sub(1, Ordering::Relaxed) - 1;
        m::queue_depth(depth);
        job
    }

    /// Waits for a first job, then gathers more until `max_batch` rows or until `max_wait`
    /// after the first job arrived. `None` when the queue is closed and empty.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        let first = match self.carry.take() {
            Some(job) => job,
            None => self.take(self.rx.recv().ok()?),
        };
        let mut rows = first.request.rows;
        let close_at = first.enqueued + self.config.max_wait;
        let mut batch = vec![first];
        while self.config.batchable && rows < self.config.max_batch {
            let next = match self.rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= close_at {
                        break;
                    }
                    match self.rx.recv_timeout(close_at - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let next = self.take(next);
            if rows + next.request.rows > self.config.max_batch {
                self.carry = Some(next);
                break;
            }
            rows += next.request.rows;
            batch.push(next);
        }
        Some(batch)
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let now = Instant::now();
        // Requests whose client gave up or whose deadline passed are not worth computing.
        let mut live = Vec::with_capacity(batch.len());
        for job in batch {
            if job.reply.is_closed() {
                continue;
            }
            if now >= job.deadline {
                let _ = job.reply.send(Err(ApiError::deadline_exceeded(job.deadline - job.enqueued)));
                continue;
            }
            live.push(job);
        }
        // Stack only requests whose non-batch dims agree (a model may take `[B, T]` with any T).
        let mut groups: Vec<Vec<Job>> = Vec::new();
        for job in live {
            let group = groups.iter_mut().find(|g| self.config.batchable && same_trailing_dims(&g[0].request.shapes, &job.request.shapes));
            match group {
                Some(g) => g.push(job),
                None => groups.push(vec![job]),
            }
        }
        for group in groups {
            self.run_group(group);
        }
    }

    fn run_group(&mut self, group: Vec<Job>) {
        let started = Instant::now();
        let rows: usize = group.iter().map(|j| j.request.rows).sum();
        let result = catch_unwind(AssertUnwindSafe(|| forward(&mut self.infer, &group, rows)));
        let compute_time = started.elapsed();
        m::batch(rows, compute_time);
        let output = match result {
            Ok(Ok(out)) => out,
            Ok(Err(message)) => return fail_all(group, ApiError::internal(message)),
            Err(panic) => {
                let message = format!("the model panicked: {}", panic_message(&*panic));
                eprintln!("tensorbrain-serve: {message} (the server keeps serving)");
                return fail_all(group, ApiError::internal(message));
            }
        };
        let (data, shape) = output;
        if group.len() == 1 {
            let job = group.into_iter().next().expect("one job");
            return reply(job, data, shape, started, compute_time, rows);
        }
        let per_row: usize = shape[1..].iter().product();
        let mut offset = 0;
        for job in group {
            let n = job.request.rows;
            let mut job_shape = shape.clone();
            job_shape[0] = n;
            let piece = data.slice(offset * per_row, (offset + n) * per_row);
            offset += n;
            reply(job, piece, job_shape, started, compute_time, rows);
        }
    }
}

/// Stacks the group's inputs, runs the model, and checks the output has one row per input row.
fn forward(infer: &mut InferFn, group: &[Job], rows: usize) -> Result<(TensorData, Vec<usize>), String> {
    let n_inputs = group[0].request.inputs.len();
    let mut tensors = Vec::with_capacity(n_inputs);
    for k in 0..n_inputs {
        let (data, shape) = if group.len() == 1 {
            (group[0].request.inputs[k].clone(), group[0].request.shapes[k].clone())
        } else {
            let pieces: Vec<&TensorData> = group.iter().map(|j| &j.request.inputs[k]).collect();
            let mut shape = group[0].request.shapes[k].clone();
            shape[0] = rows;
            (TensorData::concat(&pieces), shape)
        };
        tensors.push(data.into_tensor(&shape).map_err(|e| e.to_string())?);
    }
    let out = infer(&tensors).map_err(|e| format!("the model failed: {e}"))?;
    if group.len() > 1 && out.shape().first() != Some(&rows) {
        return Err(format!("the model returned shape {:?} for a batch of {rows}; expected {rows} rows", out.shape()));
    }
    Ok((TensorData::from_tensor(&out), out.shape().to_vec()))
}

fn reply(job: Job, output: TensorData, shape: Vec<usize>, started: Instant, compute_time: Duration, batch_rows: usize) {
    let queue_time = started.saturating_duration_since(job.enqueued);
    m::queue_time(queue_time);
    // The client may have gone; then there is no one to tell.
    let _ = job.reply.send(Ok(Completed { output, shape, queue_time, compute_time, batch_rows }));
}

fn fail_all(group: Vec<Job>, error: ApiError) {
    for job in group {
        let _ = job.reply.send(Err(error.clone()));
    }
}

fn same_trailing_dims(a: &[Vec<usize>], b: &[Vec<usize>]) -> bool {
    a.iter().zip(b).all(|(x, y)| x[1..] == y[1..])
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
