//! Layers, losses and the `Module` trait.

mod activation;
pub mod attention;
mod conv_transpose;
mod embedding_bag;
mod forward;
pub mod functional;
mod layers;
pub mod loss;
mod module;
mod norm;
mod pool;
pub mod runtime;
mod sequential;
mod signature;
mod static_model;
mod tape_static;
pub mod transformer;

pub use activation::{LeakyReLU, LogSoftmax, Softmax, ELU};
pub use forward::Forward;
pub use layers::{AvgPool2d, Conv2d, Conv2dOf, Dropout, Embedding, EmbeddingOf, Flatten, LayerNorm, LayerNormOf, Linear, LinearOf, MaxPool2d, ReLU, SiLU, Sigmoid, Tanh, GELU};
pub use loss::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss, try_binary_cross_entropy,
    try_binary_cross_entropy_with_logits, try_cross_entropy, try_l1_loss, try_mse_loss, try_nll_loss, BceLoss, BceWithLogitsLoss,
    CrossEntropyLoss, L1Loss, MseLoss, NllLoss, Reduction,
};
pub use module::{join, Module, ModuleExt, Summary, SummaryRow};
pub use norm::{BatchNorm, BatchNormOf, BatchNorm1d, BatchNorm2d, BatchNormSaved, RMSNorm, RMSNormOf, RMSNormSaved};
pub use pool::{AdaptiveAvgPool2d, AdaptiveAvgPoolSaved};
pub use sequential::Sequential;
pub use conv_transpose::{ConvTranspose2d, ConvTranspose2dOf};
pub use embedding_bag::{EmbeddingBag, EmbeddingBagOf};
pub use norm::{GroupNorm, GroupNormOf, InstanceNorm1d, InstanceNorm2d, InstanceNormOf};
pub use pool::{AvgPool2dWith, MaxPool2dWith};
pub use tape_static::{tape_backward, tape_forward_train, TapeSaved};
pub use signature::{ModelSignature, Signature, TensorSpec};
pub use static_model::{add_grads, call_infer, call_train, check_inputs, count_params, run_static, AsParam, DimCheck, GradReady, InferenceOverride, NestedSaved, StaticModel};
