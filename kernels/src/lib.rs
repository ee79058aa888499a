//! TensorBrain's compute kernels.
//!
//! This crate is the only place that knows about hardware. Kernels work on plain slices plus
//! shapes and strides; they know nothing of tensors, autograd or devices. The runtime crate
//! (`tensorbrain`) owns layouts and dispatch and calls in here.

pub mod cpu;
pub mod fast_math;
pub mod float;
pub mod fused;
pub mod fused_scalar;
pub mod gemm;
pub mod index;
pub mod int;
pub mod attention;
pub mod batch_norm;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod conv;
pub mod pool;
pub mod pool_window;
pub mod remap;
pub mod row_sum;
pub mod scan;
pub mod scatter;
pub mod threads;
pub mod transpose;
pub mod strided;

pub use float::Float;
pub mod int8;
