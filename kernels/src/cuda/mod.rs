//! The CUDA backend (feature `cuda`). Every piece of code that talks to an NVIDIA driver, NVRTC
//! or device memory lives under this module; the rest of the crate stays CPU-only.
//!
//! All CUDA libraries are loaded at run time (cudarc's `dynamic-loading`), so a build with this
//! feature runs on machines without CUDA: asking for a device there returns
//! [`CudaError::NoDriver`], never a panic.
//!
//! What has run where is written down in docs/cuda.md: the NVRTC compile of every kernel source
//! is tested on CPU machines; nothing here has yet run on a GPU.

pub mod alloc;
pub mod codegen;
pub mod driver;
pub mod error;
mod half_convert;
pub mod index;
pub mod launch;
pub mod module;
pub mod nccl;
pub mod nvrtc;
pub mod optim;
pub mod runtime;
pub mod sources;
pub mod window;

pub use error::CudaError;

/// The cudarc version this backend is built on, for code that launches kernels (its
/// `PushKernelArg` trait, `CudaSlice`).
pub use cudarc;
