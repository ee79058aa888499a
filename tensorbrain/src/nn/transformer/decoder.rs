//! `nn.TransformerDecoderLayer` and `nn.TransformerDecoder` (batch-first), with incremental
//! decoding over a KV cache.

use super::config::TransformerConfig;
use super::feed_forward::FeedForward;
use super::self_attention::SelfAttention;
use crate::nn::attention::{AttentionMasks, KvCache, LayerCache, MultiheadAttention, MultiheadAttentionOptions};
use crate::nn::runtime::{dropout, DynLayerNorm, DEFAULT_WIDTH};
use crate::nn::{join, Module};
use crate::ops::Generator;
use crate::tensor::{Error, Result, Tensor};

/// Self-attention, cross-attention over the encoder's output (`multihead_attn`) and
/// feed-forward, each with a residual and a layer norm.
pub struct TransformerDecoderLayer {
    pub self_attn: SelfAttention,
    pub multihead_attn: MultiheadAttention,
    pub feed_forward: FeedForward,
    pub norm1: DynLayerNorm,
    pub norm2: DynLayerNorm,
    pub norm3: DynLayerNorm,
    norm_first: bool,
    dropout: f64,
    training: bool,
}

/// Where the self-attention gets its keys: the whole target, or a cache plus new positions.
enum SelfKeys<'c> {
    Full,
    Cached(&'c mut LayerCache),
}

impl TransformerDecoderLayer {
    pub fn new(cfg: &TransformerConfig, gen: &mut Generator) -> Result<Self> {
        let cross = MultiheadAttentionOptions { bias: cfg.bias, dropout: cfg.dropout, ..Default::default() };
        Ok(TransformerDecoderLayer {
            self_attn: SelfAttention::new(cfg, gen)?,
            multihead_attn: MultiheadAttention::new(cfg.d_model, cfg.nhead, cross, gen)?,
            feed_forward: FeedForward::new(cfg.d_model, cfg.dim_feedforward, cfg.activation, cfg.bias, cfg.dropout, gen),
            norm1: DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps),
            norm2: DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps),
            norm3: DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps),
            norm_first: cfg.norm_first,
            dropout: cfg.dropout,
            training: true,
        })
    }

    /// `tgt` `[B, T, d]` attending to itself (`tgt_masks`: usually causal, plus target
    /// padding) and to `memory` `[B, S, d]` (`memory_masks`: source padding).
    pub fn forward(&self, tgt: &Tensor, memory: &Tensor, tgt_masks: &AttentionMasks, memory_masks: &AttentionMasks) -> Result<Tensor> {
        let memory_kv = self.memory_kv(memory)?;
        self.run(tgt, &memory_kv, SelfKeys::Full, tgt_masks, memory_masks)
    }

    /// The cross-attention keys and values of `memory` (computed once per sequence when
    /// decoding step by step).
    pub fn memory_kv(&self, memory: &Tensor) -> Result<(Tensor, Tensor)> {
        self.multihead_attn.project_kv(memory, memory)
    }

    /// New target positions `tgt` `[B, L, d]` given the cached self-attention keys of the
    /// earlier ones (appended to `cache`) and precomputed [`Self::memory_kv`].
    pub fn forward_cached(&self, tgt: &Tensor, memory_kv: &(Tensor, Tensor), cache: &mut LayerCache, tgt_masks: &AttentionMasks, memory_masks: &AttentionMasks) -> Result<Tensor> {
        self.run(tgt, memory_kv, SelfKeys::Cached(cache), tgt_masks, memory_masks)
    }

    fn run(&self, tgt: &Tensor, memory_kv: &(Tensor, Tensor), keys: SelfKeys, tgt_masks: &AttentionMasks, memory_masks: &AttentionMasks) -> Result<Tensor> {
        let drop = |t: Tensor| dropout(&t, self.dropout, self.training);
        let mut keys = keys;
        let mut sa = |x: &Tensor| match &mut keys {
            SelfKeys::Full => self.self_attn.forward(x, tgt_masks),
            SelfKeys::Cached(c) => self.self_attn.forward_cached(x, c, tgt_masks),
        };
        let ca = |x: &Tensor| self.multihead_attn.forward_with_kv(x, &memory_kv.0, &memory_kv.1, memory_masks);
        if self.norm_first {
            let x = tgt.try_add(&drop(sa(&self.norm1.forward(tgt)?)?)?)?;
            let x = x.try_add(&drop(ca(&self.norm2.forward(&x)?)?)?)?;
            x.try_add(&drop(self.feed_forward.forward(&self.norm3.forward(&x)?)?)?)
        } else {
            let x = self.norm1.forward(&tgt.try_add(&drop(sa(tgt)?)?)?)?;
            let x = self.norm2.forward(&x.try_add(&drop(ca(&x)?)?)?)?;
            self.norm3.forward(&x.try_add(&drop(self.feed_forward.forward(&x)?)?)?)
        }
    }
}

impl Module for TransformerDecoderLayer {
    /// `nn.TransformerDecoderLayer(512, 8)`.
    fn init_with(gen: &mut Generator) -> Self {
        TransformerDecoderLayer::new(&TransformerConfig::new(DEFAULT_WIDTH, 8), gen).expect("valid default")
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.self_attn.visit(&join(prefix, "self_attn"), f);
        self.multihead_attn.visit_params(&join(prefix, "multihead_attn"), f);
        self.feed_forward.visit(prefix, f);
        self.norm1.visit_params(&join(prefix, "norm1"), f);
        self.norm2.visit_params(&join(prefix, "norm2"), f);
        self.norm3.visit_params(&join(prefix, "norm3"), f);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.self_attn.visit_mut(&join(prefix, "self_attn"), f);
        self.multihead_attn.visit_params_mut(&join(prefix, "multihead_attn"), f);
        self.feed_forward.visit_mut(prefix, f);
        self.norm1.visit_params_mut(&join(prefix, "norm1"), f);
        self.norm2.visit_params_mut(&join(prefix, "norm2"), f);
        self.norm3.visit_params_mut(&join(prefix, "norm3"), f);
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.self_attn.set_training(training);
        self.multihead_attn.set_training(training);
        self.feed_forward.set_training(training);
    }
    fn kind(&self) -> String {
        "TransformerDecoderLayer".into()
    }
}

/// A stack of decoder layers (`layers.0.`, ...) with an optional final `norm`.
pub struct TransformerDecoder {
    pub layers: Vec<TransformerDecoderLayer>,
    pub norm: Option<DynLayerNorm>,
}

impl TransformerDecoder {
    pub fn new(cfg: &TransformerConfig, num_layers: usize, final_norm: bool, gen: &mut Generator) -> Result<Self> {
        let layers = (0..num_layers).map(|_| TransformerDecoderLayer::new(cfg, gen)).collect::<Result<_>>()?;
        Ok(TransformerDecoder { layers, norm: final_norm.then(|| DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps)) })
    }

    fn finish(&self, x: Tensor) -> Result<Tensor> {
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }

    pub fn forward(&self, tgt: &Tensor, memory: &Tensor, tgt_masks: &AttentionMasks, memory_masks: &AttentionMasks) -> Result<Tensor> {
        let mut x = tgt.clone();
        for layer in &self.layers {
            x = layer.forward(&x, memory, tgt_masks, memory_masks)?;
        }
        self.finish(x)
    }

    /// Every layer's cross-attention keys and values of `memory`.
    pub fn memory_kv(&self, memory: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        self.layers.iter().map(|l| l.memory_kv(memory)).collect()
    }

    /// An empty cache with one slot per layer.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// New positions `tgt` `[B, L, d]` after the `cache.len()` cached ones.
    pub fn forward_cached(&self, tgt: &Tensor, memory_kv: &[(Tensor, Tensor)], cache: &mut KvCache, tgt_masks: &AttentionMasks, memory_masks: &AttentionMasks) -> Result<Tensor> {
        if memory_kv.len() != self.layers.len() || cache.layers.len() != self.layers.len() {
            return Err(Error::Msg(format!(
                "TransformerDecoder: {} layers but {} memory key/value pairs and {} cache slots",
                self.layers.len(),
                memory_kv.len(),
                cache.layers.len()
            )));
        }
        let mut x = tgt.clone();
        for ((layer, kv), c) in self.layers.iter().zip(memory_kv).zip(&mut cache.layers) {
            x = layer.forward_cached(&x, kv, c, tgt_masks, memory_masks)?;
        }
        self.finish(x)
    }

    /// KV cache floats per target position over all layers' self-attention.
    pub fn cache_floats_per_token(&self) -> usize {
        self.layers.iter().map(|l| l.self_attn.cache_floats_per_token()).sum()
    }
}

impl Module for TransformerDecoder {
    /// Six `nn.TransformerDecoderLayer(512, 8)` layers, as `nn.Transformer`'s decoder.
    fn init_with(gen: &mut Generator) -> Self {
        TransformerDecoder::new(&TransformerConfig::new(DEFAULT_WIDTH, 8), 6, true, gen).expect("valid default")
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit_params(&join(&join(prefix, "layers"), &i.to_string()), f);
        }
        if let Some(n) = &self.norm {
            n.visit_params(&join(prefix, "norm"), f);
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_params_mut(&join(&join(prefix, "layers"), &i.to_string()), f);
        }
        if let Some(n) = &mut self.norm {
            n.visit_params_mut(&join(prefix, "norm"), f);
        }
    }
    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(training));
    }
    fn kind(&self) -> String {
        format!("TransformerDecoder({} layers)", self.layers.len())
    }
}
