//! The settings of a transformer layer, with `nn.TransformerEncoderLayer`'s defaults.

use super::feed_forward::Activation;
use crate::nn::attention::MlaConfig;

/// Which self-attention a layer uses.
#[derive(Clone, Copy, Debug, Default)]
pub enum SelfAttentionKind {
    /// `nn.MultiheadAttention` (`d_model` wide, `nhead` heads).
    #[default]
    MultiHead,
    /// DeepSeek-V2's latent attention with RoPE; its `hidden_size` and `num_heads` must be
    /// `d_model` and `nhead`.
    Latent(MlaConfig),
}

/// Sizes and options of a transformer layer (PyTorch's defaults: `dim_feedforward` 2048,
/// dropout 0.1, ReLU, `layer_norm_eps` 1e-5, post-norm, biases).
#[derive(Clone, Copy, Debug)]
pub struct TransformerConfig {
    pub d_model: usize,
    pub nhead: usize,
    pub dim_feedforward: usize,
    pub dropout: f64,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// Pre-norm (`x + f(norm(x))`) instead of post-norm (`norm(x + f(x))`).
    pub norm_first: bool,
    pub bias: bool,
    pub self_attention: SelfAttentionKind,
}

impl TransformerConfig {
    pub fn new(d_model: usize, nhead: usize) -> Self {
        TransformerConfig {
            d_model,
            nhead,
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            layer_norm_eps: 1e-5,
            norm_first: false,
            bias: true,
            self_attention: SelfAttentionKind::MultiHead,
        }
    }

    pub fn dim_feedforward(mut self, d: usize) -> Self {
        self.dim_feedforward = d;
        self
    }

    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }

    pub fn norm_first(mut self, on: bool) -> Self {
        self.norm_first = on;
        self
    }

    pub fn layer_norm_eps(mut self, eps: f64) -> Self {
        self.layer_norm_eps = eps;
        self
    }

    pub fn latent_attention(mut self, mla: MlaConfig) -> Self {
        self.self_attention = SelfAttentionKind::Latent(mla);
        self
    }
}
