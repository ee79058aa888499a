//! Attention layers configured at run time, PyTorch-style: [`MultiheadAttention`]
//! (`nn.MultiheadAttention`'s parameter names), [`MultiHeadLatentAttention`] (DeepSeek-V2's
//! low-rank KV with a decoupled RoPE key), [`RotaryEmbedding`], sinusoidal and learned
//! positional embeddings, and the KV caches for incremental decoding.
//!
//! Tensors are batch-first, `[batch, len, embed]` (PyTorch's `batch_first=True`).

mod cache;
mod latent;
mod masks;
mod multihead;
mod positional;
mod rotary;

pub use crate::ops::attention::{
    key_padding_to_attn_mask, scaled_dot_product_attention, scaled_dot_product_attention_reference, try_scaled_dot_product_attention,
    try_scaled_dot_product_attention_reference, AttentionOptions, Causal,
};
pub use cache::{KvCache, LayerCache};
pub use latent::{MlaConfig, MultiHeadLatentAttention};
pub use masks::AttentionMasks;
pub use multihead::{MultiheadAttention, MultiheadAttentionOptions};
pub use positional::{LearnedPositionalEmbedding, SinusoidalPositionalEncoding};
pub use rotary::{RopeStyle, RotaryEmbedding};
