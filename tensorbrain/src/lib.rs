//! TensorBrain: a deep learning framework for Rust.
//!
//! The runtime is a dynamic tensor library with tape-based autograd ([`Tensor`]), running on
//! kernels from `tensorbrain-kernels`. See the README for the tour.

// Generated code names this crate `::tensorbrain`, also from inside it (tests, examples).
extern crate self as tensorbrain;

pub mod autograd;
pub mod checkpoint;
pub mod compile;
pub mod data;
pub mod dist;
pub mod decoding;
pub mod exec;
#[cfg(feature = "ndarray")]
pub mod interop;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod shape;
pub mod tensor;
/// Tensors on a GPU: moving them, memory statistics (feature `cuda`).
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod text;
pub mod train;
pub mod quant;

pub use ops::{manual_seed, Generator};
pub use ops::promote::Scalar;
pub use tensor::{DType, Device, Error, Layout, Result, Tensor};
pub use half::{bf16, f16};
/// The `ndarray` crate this build converts to and from (so versions match).
#[cfg(feature = "ndarray")]
pub use ndarray;
pub use tensorbrain_kernels::threads::{num_threads, set_num_threads};
/// Type-level numbers: `Ffn::<typenum::U64>` instantiates a model generic over a size.
pub use typenum;
/// The graph IR, shared with the `#[model]` macro.
pub use tensorbrain_ir as ir;
pub use tensorbrain_macros::{model, tb};
#[doc(hidden)]
pub use tensorbrain_macros::{__model_fn, __model_impl, __model_struct};

/// The names most programs need.
pub mod prelude {
    pub use crate::autograd::{no_grad, no_grad_guard};
    pub use crate::nn::{
        AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, Forward, LayerNorm, LeakyReLU, Linear,
        LogSoftmax, MaxPool2d, Module, ModuleExt, RMSNorm, ReLU, Sequential, Softmax, ELU, GELU,
    };
    pub use crate::nn::{AvgPool2dWith, ConvTranspose2d, EmbeddingBag, GroupNorm, InstanceNorm1d, InstanceNorm2d, MaxPool2dWith, SiLU, Sigmoid, Tanh};
    pub use crate::nn::{
        binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss, BceLoss, BceWithLogitsLoss,
        CrossEntropyLoss, L1Loss, MseLoss, NllLoss, Reduction,
    };
    pub use crate::shape::{Const, Dim, Dyn};
    pub use crate::{manual_seed, model, tb, DType, Device, Tensor};
}
