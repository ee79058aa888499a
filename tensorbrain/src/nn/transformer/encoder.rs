//! `nn.TransformerEncoderLayer` and `nn.TransformerEncoder` (batch-first).

use super::config::TransformerConfig;
use super::feed_forward::FeedForward;
use super::self_attention::SelfAttention;
use crate::nn::attention::AttentionMasks;
use crate::nn::runtime::{dropout, DynLayerNorm, DEFAULT_WIDTH};
use crate::nn::{join, Module};
use crate::ops::Generator;
use crate::tensor::{Result, Tensor};

/// Self-attention then feed-forward, each with a residual connection and a layer norm
/// (after the residual, or before the sublayer with `norm_first`).
pub struct TransformerEncoderLayer {
    pub self_attn: SelfAttention,
    pub feed_forward: FeedForward,
    pub norm1: DynLayerNorm,
    pub norm2: DynLayerNorm,
    norm_first: bool,
    dropout: f64,
    training: bool,
}

impl TransformerEncoderLayer {
    pub fn new(cfg: &TransformerConfig, gen: &mut Generator) -> Result<Self> {
        Ok(TransformerEncoderLayer {
            self_attn: SelfAttention::new(cfg, gen)?,
            feed_forward: FeedForward::new(cfg.d_model, cfg.dim_feedforward, cfg.activation, cfg.bias, cfg.dropout, gen),
            norm1: DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps),
            norm2: DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps),
            norm_first: cfg.norm_first,
            dropout: cfg.dropout,
            training: true,
        })
    }

    /// `src` `[B, S, d_model]`; `masks` as `src_key_padding_mask` / `src_mask` / `is_causal`.
    pub fn forward(&self, src: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        let drop = |t: Tensor| dropout(&t, self.dropout, self.training);
        if self.norm_first {
            let x = src.try_add(&drop(self.self_attn.forward(&self.norm1.forward(src)?, masks)?)?)?;
            x.try_add(&drop(self.feed_forward.forward(&self.norm2.forward(&x)?)?)?)
        } else {
            let x = self.norm1.forward(&src.try_add(&drop(self.self_attn.forward(src, masks)?)?)?)?;
            self.norm2.forward(&x.try_add(&drop(self.feed_forward.forward(&x)?)?)?)
        }
    }
}

impl Module for TransformerEncoderLayer {
    /// `nn.TransformerEncoderLayer(512, 8)`.
    fn init_with(gen: &mut Generator) -> Self {
        TransformerEncoderLayer::new(&TransformerConfig::new(DEFAULT_WIDTH, 8), gen).expect("valid default")
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.self_attn.visit(&join(prefix, "self_attn"), f);
        self.feed_forward.visit(prefix, f);
        self.norm1.visit_params(&join(prefix, "norm1"), f);
        self.norm2.visit_params(&join(prefix, "norm2"), f);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.self_attn.visit_mut(&join(prefix, "self_attn"), f);
        self.feed_forward.visit_mut(prefix, f);
        self.norm1.visit_params_mut(&join(prefix, "norm1"), f);
        self.norm2.visit_params_mut(&join(prefix, "norm2"), f);
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.self_attn.set_training(training);
        self.feed_forward.set_training(training);
    }
    fn kind(&self) -> String {
        "TransformerEncoderLayer".into()
    }
}

/// A stack of encoder layers (`layers.0.`, `layers.1.`, ...) with an optional final `norm`
/// (pre-norm stacks need one).
pub struct TransformerEncoder {
    pub layers: Vec<TransformerEncoderLayer>,
    pub norm: Option<DynLayerNorm>,
}

impl TransformerEncoder {
    pub fn new(cfg: &TransformerConfig, num_layers: usize, final_norm: bool, gen: &mut Generator) -> Result<Self> {
        let layers = (0..num_layers).map(|_| TransformerEncoderLayer::new(cfg, gen)).collect::<Result<_>>()?;
        Ok(TransformerEncoder { layers, norm: final_norm.then(|| DynLayerNorm::new(cfg.d_model, cfg.layer_norm_eps)) })
    }

    pub fn forward(&self, src: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        let mut x = src.clone();
        for layer in &self.layers {
            x = layer.forward(&x, masks)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

impl Module for TransformerEncoder {
    /// Six `nn.TransformerEncoderLayer(512, 8)` layers, as `nn.Transformer`'s encoder.
    fn init_with(gen: &mut Generator) -> Self {
        TransformerEncoder::new(&TransformerConfig::new(DEFAULT_WIDTH, 8), 6, true, gen).expect("valid default")
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
        format!("TransformerEncoder({} layers)", self.layers.len())
    }
}
