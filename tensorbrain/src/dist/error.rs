//! The error type of collective and point-to-point operations.
//!
//! Every failure names this rank, the op, and — where one peer is to blame — that peer, because
//! in a job of N processes the first question is always "which one?".

use std::time::Duration;

pub type DistResult<T> = std::result::Result<T, DistError>;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The peer did not deliver within the group's timeout: it is hung, far slower, or not
    /// calling the same op.
    #[error("rank {rank}: {op} timed out after {after:?} waiting for rank {peer} (it is hung, much slower, or did not call {op}); raise the timeout with set_timeout if it is only slow")]
    Timeout { rank: usize, op: &'static str, peer: usize, after: Duration },

    /// The peer's end of the group is gone: the rank returned or panicked. Where the backend
    /// can tell, `peer` is the rank whose exit started it, not a survivor that failed on it.
    #[error("rank {rank}: {op} failed because rank {peer} has exited (returned or panicked) and will never answer")]
    PeerGone { rank: usize, op: &'static str, peer: usize },

    /// The peer sent a message for a different op: the ranks are not calling collectives in
    /// the same order.
    #[error("rank {rank}: {op} received a '{got}' message from rank {peer}; every rank must call the same collectives in the same order")]
    OpMismatch { rank: usize, op: &'static str, peer: usize, got: &'static str },

    /// Arguments that cannot work (a rank out of range, a shape that differs between ranks,
    /// an unsupported dtype).
    #[error("rank {rank}: {op}: {msg}")]
    Invalid { rank: usize, op: &'static str, msg: String },

    /// The launcher's environment does not describe a process group.
    #[error("dist::init: {0}")]
    Env(String),

    /// A collective did not complete within the group's timeout, and the backend cannot tell
    /// which rank held it up (NCCL runs a collective as one kernel across all ranks).
    #[error("rank {rank}: {op} timed out after {after:?}: at least one rank did not take part (hung, much slower, dead, or calling another op); the backend cannot tell which, and the communicator was aborted")]
    CollectiveTimeout { rank: usize, op: &'static str, after: Duration },

    /// Rank 0's launch rendezvous (handing out the NCCL id at MASTER_ADDR:MASTER_PORT) failed.
    #[error("rank {rank}: rendezvous at {addr}: {msg}")]
    Rendezvous { rank: usize, addr: String, msg: String },

    /// Ranks did not meet at MASTER_ADDR:MASTER_PORT within the timeout.
    #[error("rank {rank}: rendezvous at {addr} timed out after {after:?} waiting for rank(s) {}: {detail}", join_ranks(.missing))]
    RendezvousTimeout { rank: usize, addr: String, missing: Vec<usize>, after: Duration, detail: String },

    /// An error from the NCCL library, or from the CUDA calls that stage data for it.
    #[error("rank {rank}: {op}: {msg}")]
    Nccl { rank: usize, op: &'static str, msg: String },

    /// An error from the MPI library or its bindings.
    #[error("rank {rank}: {op}: MPI: {msg}")]
    Mpi { rank: usize, op: &'static str, msg: String },

    /// A tensor operation (forward, backward, optimizer step) failed inside a distributed run.
    #[error(transparent)]
    Tensor(#[from] crate::Error),
}

impl DistError {
    /// The peer rank this error blames, if one.
    pub fn peer(&self) -> Option<usize> {
        match self {
            DistError::Timeout { peer, .. } | DistError::PeerGone { peer, .. } | DistError::OpMismatch { peer, .. } => Some(*peer),
            DistError::RendezvousTimeout { missing, .. } if missing.len() == 1 => Some(missing[0]),
            _ => None,
        }
    }
}

fn join_ranks(ranks: &[usize]) -> String {
    ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}
