//! [`DistributedSampler`]: which dataset indices each rank trains on, like
//! `torch.utils.data.DistributedSampler`.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::error::{DistError, DistResult};

/// Shards `0..len` over `num_replicas` ranks: every epoch the order is (optionally) shuffled
/// with `seed + epoch` — the same permutation on every rank — then either padded by repeating
/// indices from the start (default) or truncated (`drop_last`) so all shards are the same size,
/// and rank `r` takes positions `r, r + num_replicas, ...`. Equal shard sizes matter: a rank
/// with one batch more would wait forever in an all-reduce the others never call.
#[derive(Clone, Debug)]
pub struct DistributedSampler {
    len: usize,
    num_replicas: usize,
    rank: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    epoch: u64,
    /// Samples of this epoch's global order already trained on (a resumed run).
    position: usize,
}

impl DistributedSampler {
    /// Shuffling on, seed 0, padding (PyTorch's defaults).
    pub fn new(len: usize, num_replicas: usize, rank: usize) -> DistResult<Self> {
        if num_replicas == 0 || rank >= num_replicas {
            return Err(DistError::Invalid {
                rank,
                op: "DistributedSampler",
                msg: format!("rank {rank} with {num_replicas} replicas: expected num_replicas >= 1 and rank < num_replicas"),
            });
        }
        Ok(DistributedSampler { len, num_replicas, rank, shuffle: true, seed: 0, drop_last: false, epoch: 0, position: 0 })
    }

    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Must be the same on every rank.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Drop the tail that does not divide evenly instead of padding with repeated samples.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Call at the start of every epoch (on every rank) to get a new shuffle; starts the epoch
    /// from its beginning.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.position = 0;
    }

    /// Resumes the current epoch after its first `position` samples, counted in the epoch's
    /// global order over all ranks (steps taken × global batch): rank `r` of `W` trains on
    /// positions `r, r + W, ...`, so after `k` samples per rank the first `k·W` are done.
    ///
    /// The global order depends on the seed and the epoch, not on the number of ranks, so a
    /// run saved by one world size resumes under another: the rest of the epoch is shared
    /// out among the new ranks, and every sample is still seen once per epoch.
    pub fn set_position(&mut self, position: usize) -> DistResult<()> {
        if position > self.len {
            return Err(DistError::Invalid {
                rank: self.rank,
                op: "DistributedSampler::set_position",
                msg: format!("position {position} is past the end of an epoch of {} samples", self.len),
            });
        }
        self.position = position;
        Ok(())
    }

    /// The rank whose shard this is.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Where this epoch resumes (0 unless [`set_position`](Self::set_position) was called).
    pub fn position(&self) -> usize {
        self.position
    }

    /// Samples per rank in what is left of this epoch.
    pub fn num_samples(&self) -> usize {
        let left = self.len - self.position;
        if self.drop_last {
            left / self.num_replicas
        } else {
            left.div_ceil(self.num_replicas)
        }
    }

    /// This rank's indices for (the rest of) the current epoch.
    pub fn indices(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(self.epoch));
            order.shuffle(&mut rng);
        }
        order.drain(..self.position);
        let total = self.num_samples() * self.num_replicas;
        if total <= order.len() {
            order.truncate(total);
        } else if !order.is_empty() {
            // Pad by repeating from the start (possibly several times for tiny datasets).
            let mut i = 0;
            while order.len() < total {
                order.push(order[i]);
                i += 1;
            }
        }
        order.into_iter().skip(self.rank).step_by(self.num_replicas).collect()
    }
}
