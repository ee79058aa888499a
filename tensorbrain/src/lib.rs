//! TensorBrain: a deep learning framework for Rust.
//!
//! The runtime is a dynamic tensor library with tape-based autograd ([`Tensor`]), running on
//! kernels from `tensorbrain-kernels`. See the README for the tour.

pub mod autograd;
pub mod data;
pub mod ops;
pub mod optim;
pub mod tensor;

pub use ops::{manual_seed, Generator};
pub use tensor::{DType, Device, Error, Layout, Result, Tensor};
pub use tensorbrain_kernels::threads::{num_threads, set_num_threads};

/// The names most programs need.
pub mod prelude {
    pub use crate::autograd::{no_grad, no_grad_guard};
    pub use crate::{manual_seed, DType, Device, Tensor};
}
