//! [`DataLoader`]: batches of a [`Dataset`], shuffled per epoch, collated, and produced on
//! background threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::Rng;

use super::{sample_seed, Dataset, Sample};
use crate::ops::{any_dispatch, Generator};
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// Turns the samples of a batch into the batch's tensors.
pub type CollateFn = Arc<dyn Fn(Vec<Sample>) -> Result<Vec<Tensor>> + Send + Sync>;

/// Stacks each field of the samples along a new dimension 0: field `f` of the batch has shape
/// `[n, ...shape of field f]`. Every sample needs the same number of fields, and each field
/// the same shape and dtype in every sample (PyTorch's `default_collate` for tensors).
pub fn default_collate(samples: Vec<Sample>) -> Result<Vec<Tensor>> {
    let Some(first) = samples.first() else {
        return Err(Error::Msg("collate: the batch has no samples".into()));
    };
    let fields = first.len();
    if let Some((j, s)) = samples.iter().enumerate().find(|(_, s)| s.len() != fields) {
        return Err(Error::Msg(format!(
            "collate: sample {j} of the batch has {} fields but sample 0 has {fields}; every sample needs the same fields",
            s.len()
        )));
    }
    let n = samples.len();
    let mut out = Vec::with_capacity(fields);
    for f in 0..fields {
        let (shape, dtype) = (first[f].shape(), first[f].dtype());
        if let Some((j, t)) = samples.iter().enumerate().find(|(_, s)| s[f].shape() != shape || s[f].dtype() != dtype) {
            return Err(Error::Msg(format!(
                "collate: field {f} of sample {j} of the batch has shape {:?} and dtype {} but sample 0's has shape {shape:?} and dtype {dtype}; \
                 the default collate stacks each field along a new dimension 0, so they must match (resize or pad the samples, or pass your own collate)",
                t[f].shape(),
                t[f].dtype()
            )));
        }
        let numel: usize = shape.iter().product();
        let mut batch_shape = Vec::with_capacity(shape.len() + 1);
        batch_shape.push(n);
        batch_shape.extend_from_slice(shape);
        let stacked = any_dispatch!(dtype, T => {
            let mut data: Vec<T> = Vec::with_capacity(n * numel);
            for s in &samples {
                s[f].with_contiguous::<T, _>(|x| data.extend_from_slice(x))?;
            }
            Tensor::from_storage(T::wrap(data), &batch_shape)
        });
        out.push(stacked);
    }
    Ok(out)
}

/// Iterates a [`Dataset`] in batches (PyTorch's `DataLoader` over a map-style dataset).
///
/// Each call of [`iter`](DataLoader::iter) (or `for batch in &loader`) runs one epoch and
/// advances the epoch counter. With shuffling, epoch `e`'s order is a permutation drawn from a
/// generator seeded with `seed + e`, so runs are reproducible; random transforms get a
/// generator seeded from `(seed, e, sample index)`. With `num_workers > 0`, batches are built
/// on that many background threads, each keeping up to `prefetch` finished batches queued,
/// and yielded in order. Dropping the iterator early stops and joins the threads.
pub struct DataLoader {
    cfg: Config,
    epoch: AtomicU64,
}

#[derive(Clone)]
struct Config {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    collate: CollateFn,
    num_workers: usize,
    prefetch: usize,
}

/// Options of a [`DataLoader`]; see [`DataLoader::builder`].
pub struct DataLoaderBuilder {
    cfg: Config,
}

impl DataLoaderBuilder {
    /// Samples per batch (default 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.cfg.batch_size = n;
        self
    }

    /// Visit the samples in a new random order each epoch (default false: in index order).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.cfg.shuffle = on;
        self
    }

    /// The seed of the shuffling and of random transforms (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.seed = seed;
        self
    }

    /// Takes the seed from a generator (its creation seed, see [`Generator::seed`]).
    pub fn generator(self, g: &Generator) -> Self {
        self.seed(g.seed())
    }

    /// Skip the last batch when it would be smaller than `batch_size` (default false).
    pub fn drop_last(mut self, on: bool) -> Self {
        self.cfg.drop_last = on;
        self
    }

    /// How batches are made from samples (default [`default_collate`]).
    pub fn collate(mut self, f: impl Fn(Vec<Sample>) -> Result<Vec<Tensor>> + Send + Sync + 'static) -> Self {
        self.cfg.collate = Arc::new(f);
        self
    }

    /// Background threads building batches (default 0: batches are built by the iterating
    /// thread when asked for, as in PyTorch).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.cfg.num_workers = n;
        self
    }

    /// Finished batches each worker may keep queued ahead of the consumer (default 2,
    /// PyTorch's `prefetch_factor`).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.cfg.prefetch = n;
        self
    }

    /// The loader, or an error for a batch size or prefetch of 0.
    pub fn build(self) -> Result<DataLoader> {
        if self.cfg.batch_size == 0 {
            return Err(Error::Msg("DataLoader: batch_size must be at least 1".into()));
        }
        if self.cfg.prefetch == 0 {
            return Err(Error::Msg("DataLoader: prefetch must be at least 1".into()));
        }
        Ok(DataLoader { cfg: self.cfg, epoch: AtomicU64::new(0) })
    }
}

impl DataLoader {
    /// Starts configuring a loader over `dataset`.
    pub fn builder(dataset: impl Dataset + 'static) -> DataLoaderBuilder {
        DataLoaderBuilder {
            cfg: Config {
                dataset: Arc::new(dataset),
                batch_size: 1,
                shuffle: false,
                seed: 0,
                drop_last: false,
                collate: Arc::new(default_collate),
                num_workers: 0,
                prefetch: 2,
            },
        }
    }

    /// A loader with the default options and `batch_size`.
    pub fn new(dataset: impl Dataset + 'static, batch_size: usize) -> Result<DataLoader> {
        Self::builder(dataset).batch_size(batch_size).build()
    }

    /// The number of batches in an epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.cfg.dataset.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An error if an epoch would have no batches (an empty dataset, or `drop_last` with a
    /// batch larger than the dataset), naming `what` (e.g. "the training data"), the dataset
    /// size and the batch size. A loop over no batches would report a loss of 0, not a mistake.
    pub fn check_not_empty(&self, what: &str) -> Result<()> {
        if !self.is_empty() {
            return Ok(());
        }
        let (n, b) = (self.cfg.dataset.len(), self.cfg.batch_size);
        let why = if n == 0 {
            format!("the dataset has 0 samples (batch size {b})")
        } else {
            format!("the dataset has {n} samples, fewer than the batch size {b}, and drop_last drops that partial batch")
        };
        Err(Error::Msg(format!("{what} has no batches: {why}")))
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    /// Background threads per epoch (0: batches are built on the iterating thread).
    pub fn num_workers(&self) -> usize {
        self.cfg.num_workers
    }

    /// The dataset being loaded.
    pub fn dataset(&self) -> &dyn Dataset {
        &*self.cfg.dataset
    }

    /// The epoch the next [`iter`](DataLoader::iter) will run.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Sets the epoch the next [`iter`](DataLoader::iter) will run (to resume a run).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The order in which epoch `epoch` visits the dataset's indices (all of them, including
    /// those a `drop_last` epoch leaves out).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.cfg.dataset.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.cfg.shuffle {
            // Fisher-Yates from a generator seeded with seed + epoch.
            let mut g = Generator::new(self.cfg.seed.wrapping_add(epoch));
            for i in (1..n).rev() {
                let j = g.rng.gen_range(0..=i);
                order.swap(i, j);
            }
        }
        order
    }

    /// Runs the next epoch: an iterator over its batches, each `Ok(fields)` or the error of
    /// the sample or collate that failed (iteration can go on after an error).
    pub fn iter(&self) -> DataLoaderIter {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed);
        self.iter_epoch(epoch)
    }

    /// The batches of epoch `epoch`, without touching the epoch counter.
    pub fn iter_epoch(&self, epoch: u64) -> DataLoaderIter {
        let total = self.len();
        let job = Arc::new(EpochJob { cfg: self.cfg.clone(), order: self.order(epoch), epoch });
        let workers = self.cfg.num_workers.min(total);
        let mode = if workers == 0 {
            Mode::Inline(job)
        } else {
            let stop = Arc::new(AtomicBool::new(false));
            let mut receivers = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers);
            for k in 0..workers {
                let (tx, rx) = sync_channel(self.cfg.prefetch);
                let (job, stop) = (job.clone(), stop.clone());
                let handle = std::thread::Builder::new()
                    .name(format!("tensorbrain-data-{k}"))
                    .spawn(move || {
                        // Worker k builds batches k, k + workers, ...; the consumer takes them
                        // round-robin, so they come out in order.
                        for b in (k..total).step_by(workers) {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let batch = job.batch(b);
                            if tx.send(batch).is_err() {
                                break; // the iterator was dropped
                            }
                        }
                    })
                    .expect("DataLoader: cannot spawn a worker thread");
                receivers.push(rx);
                handles.push(handle);
            }
            Mode::Workers { receivers, stop, handles }
        };
        DataLoaderIter { epoch, next: 0, total, mode }
    }
}

impl IntoIterator for &DataLoader {
    type Item = Result<Vec<Tensor>>;
    type IntoIter = DataLoaderIter;
    fn into_iter(self) -> DataLoaderIter {
        self.iter()
    }
}

/// What one epoch needs to build any of its batches.
struct EpochJob {
    cfg: Config,
    order: Vec<usize>,
    epoch: u64,
}

impl EpochJob {
    fn batch(&self, b: usize) -> Result<Vec<Tensor>> {
        let bs = self.cfg.batch_size;
        let indices = &self.order[b * bs..((b + 1) * bs).min(self.order.len())];
        let run = || -> Result<Vec<Tensor>> {
            let mut samples = Vec::with_capacity(indices.len());
            for &i in indices {
                let mut g = Generator::new(sample_seed(self.cfg.seed, self.epoch, i));
                let s = self.cfg.dataset.get_with(i, &mut g).map_err(|e| Error::Msg(format!("DataLoader: batch {b}, sample {i}: {e}")))?;
                samples.push(s);
            }
            (self.cfg.collate)(samples).map_err(|e| Error::Msg(format!("DataLoader: batch {b} (samples {indices:?}): {e}")))
        };
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Err(Error::Msg(format!("DataLoader: batch {b} (samples {indices:?}) panicked: {msg}")))
        })
    }
}

enum Mode {
    Inline(Arc<EpochJob>),
    Workers { receivers: Vec<Receiver<Result<Vec<Tensor>>>>, stop: Arc<AtomicBool>, handles: Vec<JoinHandle<()>> },
}

/// The batches of one epoch of a [`DataLoader`].
pub struct DataLoaderIter {
    epoch: u64,
    next: usize,
    total: usize,
    mode: Mode,
}

impl DataLoaderIter {
    /// The epoch being iterated.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The number of worker threads still running (0 once they have all finished).
    pub fn live_workers(&self) -> usize {
        match &self.mode {
            Mode::Inline(_) => 0,
            Mode::Workers { handles, .. } => handles.iter().filter(|h| !h.is_finished()).count(),
        }
    }
}

impl Iterator for DataLoaderIter {
    type Item = Result<Vec<Tensor>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        self.next += 1;
        Some(match &self.mode {
            Mode::Inline(job) => job.batch(b),
            Mode::Workers { receivers, .. } => match receivers[b % receivers.len()].recv() {
                Ok(batch) => batch,
                Err(_) => {
                    self.next = self.total;
                    Err(Error::Msg(format!("DataLoader: worker {} stopped before producing batch {b}", b % receivers.len())))
                }
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for DataLoaderIter {}

impl Drop for DataLoaderIter {
    fn drop(&mut self) {
        if let Mode::Workers { receivers, stop, handles } = &mut self.mode {
            stop.store(true, Ordering::Relaxed);
            // Unblocks workers waiting to send: their send fails and they return.
            receivers.clear();
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
