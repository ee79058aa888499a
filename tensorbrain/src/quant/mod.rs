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
//! - [`QEmbedding`]: an i8 embedding table with per-row scales (weight-only, as PyTorch's
//!   dynamic quantization of `nn.Embedding`).
//! - [`QuantizedGraph`]: a frozen `#[model]` graph (batch norms folded into the preceding
//!   conv/linear) rewritten into int8 IR ops (`quantize`, `qlinear`/`qconv2d` with fused
//!   epilogues, `requantize`, `dequantize`, `qembedding`) by `ir::passes::insert_int8`, then
//!   `ir::passes::fold_qdq`, which removes the dequantize→quantize round trips between int8
//!   ops. Everything else stays f32 (listed in the [`QuantReport`]). Dynamic mode (activation
//!   ranges per batch) or static mode (ranges from calibration, activations u8 between
//!   consecutive int8 layers, through max pooling and flattening). Saved to and loaded from
//!   safetensors.
//! - [`Quantize`]: `model.quantize(&loader, &QuantConfig::static_ptq())` and
//!   `model.load_quantized(path)` on any `#[model]`, installed as its inference forward; the
//!   free functions [`quantize`] / [`load_quantized`] take the graph explicitly.
//! - [`Qat`]: quantization-aware training (fake quantization with the straight-through
//!   estimator), then conversion to the same int8 graph with the learnt ranges.
//!
//! Not yet: grouped convolutions (they stay f32 and the report says so), nested `#[model]`
//! calls in the graph other than batch norms, average pooling on u8 (it runs in f32).

mod chains;
mod config;
mod model;
pub mod observer;
pub mod ops;
mod qconv;
mod qembedding;
mod qlinear;
pub mod qat;
mod report;
mod runner;
pub mod scheme;

pub use chains::{ChannelAffine, KeptF32, BATCH_NORM_EPS};
pub use config::{Mode, QuantConfig};
pub use model::{install, load_quantized, quantize, CalibrationBatch, Quantize};
pub use observer::{Observer, ObserverKind};
pub use ops::{dequantize, quantize as quantize_tensor, requantize};
pub use qat::{fake_quantize, Qat};
pub use qconv::QConv2d;
pub use qembedding::QEmbedding;
pub use qlinear::{Act, InputQuant, QLinear};
pub use report::{QuantReport, QuantizedLayer};
pub use runner::{QLayer, QuantizedGraph};
pub use scheme::{Granularity, QDType, QParams, QSpec, Scheme};
