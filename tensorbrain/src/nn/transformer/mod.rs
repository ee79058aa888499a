//! Transformer layers configured at run time with `nn.TransformerEncoderLayer` /
//! `nn.TransformerDecoderLayer`'s parameter names (`self_attn.in_proj_weight`,
//! `multihead_attn.*`, `linear1`, `linear2`, `norm1`..`norm3`), pre- or post-norm, with a
//! ReLU, GELU or SwiGLU feed-forward and multi-head or latent self-attention. Batch-first.

mod config;
mod decoder;
mod encoder;
mod feed_forward;
mod self_attention;

pub use config::{SelfAttentionKind, TransformerConfig};
pub use decoder::{TransformerDecoder, TransformerDecoderLayer};
pub use encoder::{TransformerEncoder, TransformerEncoderLayer};
pub use feed_forward::{Activation, FeedForward};
pub use self_attention::SelfAttention;
