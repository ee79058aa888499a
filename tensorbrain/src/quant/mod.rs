//! INT8 post-training quantization with integer kernels.
//!
//! - Quantization as data ([`scheme`]): symmetric or affine, per tensor or per output
//!   channel, u8 activations and i8 weights; scales and zero points computed from observed
//!   ranges as PyTorch's observers compute them, stored as ordinary tensors.
//! - Calibration observers ([`observer`]): min-max, moving-average min-max, histogram
//!   percentile and histogram MSE.
//! - [`quantize`](ops::quantize) / [`dequantize`](ops::dequantize) / [`requantize`](ops::requantize)
//!   on runtime tensors, with PyTorch's rounding (half to even, then clamp).
//! - [`QLinear`]: i8 weights packed once, u8 × i8 → i32 on the AVX-512 VNNI / AVX2 / scalar
//!   GEMM of `tensorbrain_kernels::int8`, with bias, ReLU and requantization fused into the
//!   kernel's output stage.
//! - [`QConv2d`]: Conv2d (+ReLU) through im2col into the same GEMM (groups = 1).
//! - [`QuantizedGraph`]: a frozen `#[model]` graph (batch norms folded into the preceding
//!   conv/linear) with every Linear (+bias)(+ReLU) and Conv2d (+ReLU) chain replaced by an
//!   int8 layer and everything else left f32 (listed in the [`QuantReport`]);
//!   dynamic mode (activation ranges per batch) or static mode (ranges from calibration,
//!   activations u8 between consecutive int8 layers). Saved to and loaded from safetensors.
//! - [`quantize`] / [`load_quantized`]: the same on a `#[model]`, installed as its inference
//!   forward.
//! - [`Qat`]: quantization-aware training (fake quantization with the straight-through
//!   estimator), then conversion to the same int8 graph with the learnt ranges.
//!
//! Static graphs keep u8 activations through max pooling and flattening between int8 layers.
//! Not yet: grouped convolutions (they stay f32 and the report says so), nested `#[model]`
//! calls in the graph other than batch norms, average pooling on u8 (it runs in f32), int8
//! embeddings.

mod chains;
mod config;
mod model;
pub mod observer;
pub mod ops;
mod qconv;
mod qlinear;
pub mod qat;
mod report;
mod runner;
pub mod scheme;

pub use chains::{ChannelAffine, KeptF32, BATCH_NORM_EPS};
pub use config::{Mode, QuantConfig};
pub use model::{install, load_quantized, quantize};
pub use observer::{Observer, ObserverKind};
pub use ops::{dequantize, quantize as quantize_tensor, requantize};
pub use qat::{fake_quantize, Qat};
pub use qconv::QConv2d;
pub use qlinear::{Act, InputQuant, QLinear};
pub use report::{QuantReport, QuantizedLayer};
pub use runner::{QLayer, QuantizedGraph};
pub use scheme::{Granularity, QDType, QParams, QSpec, Scheme};
