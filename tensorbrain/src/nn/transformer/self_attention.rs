//! A layer's self-attention: multi-head or latent, behind one interface.

use super::config::{SelfAttentionKind, TransformerConfig};
use crate::nn::attention::{AttentionMasks, LayerCache, MultiHeadLatentAttention, MultiheadAttention, MultiheadAttentionOptions};
use crate::nn::Module;
use crate::ops::Generator;
use crate::tensor::{Error, Result, Tensor};

/// Multi-head or latent self-attention (its parameters sit under `self_attn.` either way).
pub enum SelfAttention {
    MultiHead(MultiheadAttention),
    Latent(MultiHeadLatentAttention),
}

impl SelfAttention {
    pub fn new(cfg: &TransformerConfig, gen: &mut Generator) -> Result<Self> {
        Ok(match cfg.self_attention {
            SelfAttentionKind::MultiHead => {
                let opts = MultiheadAttentionOptions { bias: cfg.bias, dropout: cfg.dropout, ..Default::default() };
                SelfAttention::MultiHead(MultiheadAttention::new(cfg.d_model, cfg.nhead, opts, gen)?)
            }
            SelfAttentionKind::Latent(mla) => {
                if mla.hidden_size != cfg.d_model || mla.num_heads != cfg.nhead {
                    return Err(Error::Msg(format!(
                        "latent attention config (hidden_size {}, {} heads) must match the layer's d_model {} and nhead {}",
                        mla.hidden_size, mla.num_heads, cfg.d_model, cfg.nhead
                    )));
                }
                SelfAttention::Latent(MultiHeadLatentAttention::new(mla, gen)?)
            }
        })
    }

    pub fn forward(&self, x: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        match self {
            SelfAttention::MultiHead(a) => a.forward_self(x, masks),
            SelfAttention::Latent(a) => a.forward(x, masks),
        }
    }

    /// New positions `x` against the cached prefix (appending theirs).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache, masks: &AttentionMasks) -> Result<Tensor> {
        match self {
            SelfAttention::MultiHead(a) => a.forward_cached(x, cache, masks),
            SelfAttention::Latent(a) => a.forward_cached(x, cache, masks),
        }
    }

    /// Floats its KV cache holds per position.
    pub fn cache_floats_per_token(&self) -> usize {
        match self {
            SelfAttention::MultiHead(a) => a.cache_floats_per_token(),
            SelfAttention::Latent(a) => a.cache_floats_per_token(),
        }
    }

    fn module(&self) -> &dyn Module {
        match self {
            SelfAttention::MultiHead(a) => a,
            SelfAttention::Latent(a) => a,
        }
    }

    fn module_mut(&mut self) -> &mut dyn Module {
        match self {
            SelfAttention::MultiHead(a) => a,
            SelfAttention::Latent(a) => a,
        }
    }

    pub(crate) fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.module().visit_params(prefix, f)
    }

    pub(crate) fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.module_mut().visit_params_mut(prefix, f)
    }

    pub(crate) fn set_training(&mut self, training: bool) {
        self.module_mut().set_training(training)
    }
}
