//! The [`ProcessGroup`] trait: the collectives every backend implements.

use std::time::Duration;

use super::error::{DistError, DistResult};
use super::payload::Payload;
use crate::tensor::Tensor;

/// How `all_reduce` and `reduce_scatter` combine the ranks' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the world size (DDP's gradient averaging).
    Avg,
}

/// The default for every op's timeout: long enough for a slow step, short enough that a dead
/// job does not sit for hours.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A group of `world_size` ranks that exchange tensors.
///
/// Tensors must be f32 or f64 and on the CPU. Collectives must be called by every rank in the
/// same order; a peer that is hung, dead or calling a different op turns into a [`DistError`]
/// naming that peer and the op within [`timeout`](ProcessGroup::timeout), never a hang.
pub trait ProcessGroup: Send {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    fn timeout(&self) -> Duration;
    fn set_timeout(&mut self, timeout: Duration);

    /// Point-to-point: sends a flat payload to `dst`. Backends implement this and `recv_payload`;
    /// the collectives below are built on them unless a backend has native ones.
    fn send_payload(&self, op: &'static str, dst: usize, data: Payload) -> DistResult<()>;
    /// Receives the next payload from `src`, checking it was sent by the same `op`.
    fn recv_payload(&self, op: &'static str, src: usize) -> DistResult<Payload>;

    /// Waits (up to the timeout) until every payload this rank sent has been delivered. Each
    /// collective ends with it. Backends whose sends complete on their own need nothing; over
    /// MPI a large send only moves while its sender is inside an MPI call, so a collective
    /// that returned with its last send still queued would leave the peer waiting until this
    /// rank next called MPI: a whole forward and backward later, in DDP.
    fn flush_sends(&self, _op: &'static str) -> DistResult<()> {
        Ok(())
    }

    /// Whether `send` returns before the peer receives (the message is buffered or in
    /// flight). Schedules in which two neighbours send to each other at once (1F1B's steady
    /// state) need it; a backend whose send waits for the matching receive (NCCL) would wait
    /// there until the timeout.
    fn sends_are_buffered(&self) -> bool {
        true
    }

    /// Sums (or averages) `tensor` over all ranks, in place: every rank ends with the same values.
    fn all_reduce(&self, tensor: &Tensor, op: ReduceOp) -> DistResult<()> {
        let mut data = Payload::from_tensor(self.rank(), "all_reduce", tensor)?;
        super::ring::all_reduce(self, &mut data, op)?;
        data.write_into(self.rank(), "all_reduce", tensor)
    }

    /// All-reduce on a flat buffer (what DDP's buckets use, without a tensor round trip).
    fn all_reduce_payload(&self, data: &mut Payload, op: ReduceOp) -> DistResult<()> {
        super::ring::all_reduce(self, data, op)
    }

    /// Copies `root`'s `tensor` into every other rank's `tensor` (same shape and dtype on all).
    fn broadcast(&self, tensor: &Tensor, root: usize) -> DistResult<()> {
        const OP: &str = "broadcast";
        check_rank(self, OP, root)?;
        if self.rank() == root {
            let data = Payload::from_tensor(self.rank(), OP, tensor)?;
            for dst in (0..self.world_size()).filter(|&r| r != root) {
                self.send_payload(OP, dst, data.clone())?;
            }
            self.flush_sends(OP)
        } else {
            let data = self.recv_payload(OP, root)?;
            data.write_into(self.rank(), OP, tensor)
        }
    }

    /// Every rank's `tensor` (same shape on all), in rank order.
    fn all_gather(&self, tensor: &Tensor) -> DistResult<Vec<Tensor>> {
        const OP: &str = "all_gather";
        let mine = Payload::from_tensor(self.rank(), OP, tensor)?;
        let chunks = super::ring::all_gather(self, OP, mine)?;
        chunks.into_iter().map(|c| c.into_tensor(self.rank(), OP, tensor.shape())).collect()
    }

    /// Reduces `tensor` (leading dimension divisible by the world size) over all ranks and
    /// returns this rank's slice of the result: rows `rank * n / world .. (rank + 1) * n / world`.
    fn reduce_scatter(&self, tensor: &Tensor, op: ReduceOp) -> DistResult<Tensor> {
        const OP: &str = "reduce_scatter";
        let world = self.world_size();
        let rows = tensor.shape().first().copied().unwrap_or(0);
        if rows % world != 0 {
            return Err(DistError::Invalid {
                rank: self.rank(),
                op: OP,
                msg: format!("the leading dimension ({rows}) of shape {:?} must be divisible by the world size {world}", tensor.shape()),
            });
        }
        let data = Payload::from_tensor(self.rank(), OP, tensor)?;
        let chunk = super::ring::reduce_scatter(self, OP, data, op)?;
        let mut shape = tensor.shape().to_vec();
        shape[0] = rows / world;
        chunk.into_tensor(self.rank(), OP, &shape)
    }

    /// Sends `tensor` (any shape, f32/f64) to `dst`; the shape travels with it.
    fn send(&self, tensor: &Tensor, dst: usize) -> DistResult<()> {
        check_rank(self, "send", dst)?;
        let data = Payload::from_tensor(self.rank(), "send", tensor)?;
        let shape = Payload::shape_header(tensor.shape());
        self.send_payload("send", dst, shape)?;
        self.send_payload("send", dst, data)
    }

    /// Receives the next tensor that `src` sent with [`send`](ProcessGroup::send).
    fn recv(&self, src: usize) -> DistResult<Tensor> {
        check_rank(self, "recv", src)?;
        let shape = self.recv_payload("send", src)?.into_shape(self.rank(), "recv")?;
        let data = self.recv_payload("send", src)?;
        data.into_tensor(self.rank(), "recv", &shape)
    }

    /// Returns once every rank has called `barrier`.
    fn barrier(&self) -> DistResult<()> {
        const OP: &str = "barrier";
        // Everyone tells everyone: O(world²) empty messages, fine for the group sizes a barrier
        // is used at, and a missing rank is named directly by whoever waits on it.
        for dst in (0..self.world_size()).filter(|&r| r != self.rank()) {
            self.send_payload(OP, dst, Payload::F64(Vec::new()))?;
        }
        for src in (0..self.world_size()).filter(|&r| r != self.rank()) {
            self.recv_payload(OP, src)?;
        }
        self.flush_sends(OP)
    }
}

/// Op names in a fixed order. Backends that carry the op inside a message (MPI's tag, NCCL's
/// header) send its index, so a rank that receives another op's message can say which op.
#[cfg(any(feature = "mpi", feature = "cuda"))]
const OP_NAMES: [&str; 8] = ["send", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier", "pipeline", "other"];

/// The index of `op` in the wire table; ops not listed share the last entry, "other".
#[cfg(any(feature = "mpi", feature = "cuda"))]
pub(crate) fn op_index(op: &str) -> usize {
    OP_NAMES.iter().position(|&o| o == op).unwrap_or(OP_NAMES.len() - 1)
}

/// The op with wire index `i`, or "unknown" for an index no backend sends.
#[cfg(any(feature = "mpi", feature = "cuda"))]
pub(crate) fn op_name(i: usize) -> &'static str {
    OP_NAMES.get(i).copied().unwrap_or("unknown")
}

pub(crate) fn check_rank<G: ProcessGroup + ?Sized>(g: &G, op: &'static str, peer: usize) -> DistResult<()> {
    if peer >= g.world_size() {
        return Err(DistError::Invalid {
            rank: g.rank(),
            op,
            msg: format!("peer rank {peer} is out of range for a world of {} ranks (expected 0..{})", g.world_size(), g.world_size()),
        });
    }
    if peer == g.rank() && (op == "send" || op == "recv") {
        return Err(DistError::Invalid { rank: g.rank(), op, msg: format!("rank {peer} cannot {op} to or from itself") });
    }
    Ok(())
}
