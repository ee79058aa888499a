//! Distributed training: process groups, data parallelism (DDP), pipeline parallelism.
//!
//! - [`ProcessGroup`]: collectives (all-reduce, broadcast, all-gather, reduce-scatter) and
//!   point-to-point send/recv, each with a timeout that turns a hung or dead peer into an error
//!   naming that peer and the op.
//! - Backends: [`ThreadGroup`] (ranks as threads in one process; tests, examples); with the
//!   `mpi` feature, `MpiGroup` (processes under `mpirun`); with the `cuda` feature, `NcclGroup`
//!   (one process per GPU, launched torchrun-style). [`init`] picks one from the launcher's
//!   environment (see [`Backend`]).
//! - [`DistributedDataParallel`], [`DistributedSampler`], [`pipeline`] schedules.

mod env;
mod error;
mod group;
mod init;
mod payload;
pub mod rendezvous;
mod ring;
mod thread;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "cuda")]
mod nccl;

pub use env::{LaunchEnv, TorchrunEnv, RDZV_PORT_ENV};
pub use error::{DistError, DistResult};
pub use init::{init, Backend, BACKEND_ENV};
pub use group::{ProcessGroup, ReduceOp, DEFAULT_TIMEOUT};
pub use payload::{Elem, Payload};
pub use thread::{run_threads, ThreadGroup};
#[cfg(feature = "mpi")]
pub use self::mpi::MpiGroup;
#[cfg(feature = "cuda")]
pub use self::nccl::NcclGroup;

mod checkpoint;
mod ddp;
pub mod pipeline;
mod sampler;

pub use checkpoint::{load_pipeline_stage, resume_sampler, save_pipeline_stage};

pub use ddp::{make_buckets, save_on_rank0, Bucket, DdpOptions, DdpStepStats, DistributedDataParallel};
pub use pipeline::{Pipeline, PipelineStats, Schedule};
pub use sampler::DistributedSampler;
