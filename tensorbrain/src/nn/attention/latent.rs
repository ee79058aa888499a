//! Multi-head latent attention (DeepSeek-V2, 2024): keys and values are reconstructed from a
//! small shared latent `c = RMSNorm(W_DKV x)` (`kv_lora_rank` wide), and position enters only
//! through a separate RoPE key shared by all heads, so a decoder caches `kv_lora_rank +
//! qk_rope_head_dim` floats per token instead of multi-head attention's `2 · heads · head_dim`.
//!
//! Parameter names follow Hugging Face's `DeepseekV2Attention` (`q_proj` or `q_a_proj`,
//! `q_a_layernorm`, `q_b_proj`; `kv_a_proj_with_mqa`, `kv_a_layernorm`, `kv_b_proj`, `o_proj`).
//! RoPE pairs channels as `rotate_half` does ([`RopeStyle::Half`]).
//!
//! Training runs the direct form (keys and values expanded per head); decoding with a cache
//! runs the absorbed form: the key up-projection is folded into the query and the value
//! up-projection applied after attention, so attention runs over the cached latent itself.

use super::cache::LayerCache;
use super::masks::AttentionMasks;
use super::rotary::{RopeStyle, RotaryEmbedding};
use crate::nn::runtime::{DynLinear, DynRMSNorm};
use crate::nn::{join, Module};
use crate::ops::attention::{try_scaled_dot_product_attention, Causal};
use crate::ops::Generator;
use crate::tensor::{Error, Result, Tensor};

/// Sizes of a [`MultiHeadLatentAttention`] (Hugging Face `DeepseekV2Config` names).
#[derive(Clone, Copy, Debug)]
pub struct MlaConfig {
    pub hidden_size: usize,
    pub num_heads: usize,
    /// Low-rank query compression (`None`: one `q_proj`, as DeepSeek-V2-Lite).
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub rope_theta: f64,
    /// Biases on `q_a_proj`/`q_proj`, `kv_a_proj_with_mqa` and `o_proj` (`attention_bias`).
    pub bias: bool,
    pub rms_norm_eps: f64,
    /// Dropout on the attention probabilities, in training.
    pub dropout: f64,
}

impl MlaConfig {
    /// A configuration with `hidden_size / num_heads`-wide heads: half of each query/key head
    /// without position, a 32-wide (or narrower) RoPE part, and a latent of `hidden_size / 2`.
    pub fn for_width(hidden_size: usize, num_heads: usize) -> Self {
        let head = hidden_size / num_heads.max(1);
        let rope = (head / 2).clamp(2, 32) & !1;
        MlaConfig {
            hidden_size,
            num_heads,
            q_lora_rank: None,
            kv_lora_rank: hidden_size / 2,
            qk_nope_head_dim: head,
            qk_rope_head_dim: rope,
            v_head_dim: head,
            rope_theta: 10000.0,
            bias: false,
            rms_norm_eps: 1e-6,
            dropout: 0.0,
        }
    }

    fn q_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

enum QueryProj {
    Direct(DynLinear),
    LowRank { a: DynLinear, norm: DynRMSNorm, b: DynLinear },
}

/// DeepSeek-V2's multi-head latent attention (self-attention over `[B, T, hidden]`).
pub struct MultiHeadLatentAttention {
    cfg: MlaConfig,
    q: QueryProj,
    pub kv_a_proj_with_mqa: DynLinear,
    pub kv_a_layernorm: DynRMSNorm,
    pub kv_b_proj: DynLinear,
    pub o_proj: DynLinear,
    rope: RotaryEmbedding,
    training: bool,
}

/// The per-call projections: queries split into their content and RoPE parts, and the new
/// positions' normalised latent and rotated shared key.
struct Projected {
    q_nope: Tensor,
    q_pe: Tensor,
    latent: Tensor,
    k_pe: Tensor,
}

impl MultiHeadLatentAttention {
    pub fn new(cfg: MlaConfig, gen: &mut Generator) -> Result<Self> {
        if cfg.num_heads == 0 || cfg.kv_lora_rank == 0 || cfg.v_head_dim == 0 {
            return Err(Error::Msg(format!("MultiHeadLatentAttention: heads, kv_lora_rank and v_head_dim must be positive, got {cfg:?}")));
        }
        let h = cfg.num_heads;
        let q = match cfg.q_lora_rank {
            None => QueryProj::Direct(DynLinear::new(cfg.hidden_size, h * cfg.q_head_dim(), cfg.bias, gen)),
            Some(r) => QueryProj::LowRank {
                a: DynLinear::new(cfg.hidden_size, r, cfg.bias, gen),
                norm: DynRMSNorm::new(r, cfg.rms_norm_eps),
                b: DynLinear::new(r, h * cfg.q_head_dim(), false, gen),
            },
        };
        Ok(MultiHeadLatentAttention {
            q,
            kv_a_proj_with_mqa: DynLinear::new(cfg.hidden_size, cfg.kv_lora_rank + cfg.qk_rope_head_dim, cfg.bias, gen),
            kv_a_layernorm: DynRMSNorm::new(cfg.kv_lora_rank, cfg.rms_norm_eps),
            kv_b_proj: DynLinear::new(cfg.kv_lora_rank, h * (cfg.qk_nope_head_dim + cfg.v_head_dim), false, gen),
            o_proj: DynLinear::new(h * cfg.v_head_dim, cfg.hidden_size, cfg.bias, gen),
            rope: RotaryEmbedding::new(cfg.qk_rope_head_dim, cfg.rope_theta, RopeStyle::Half)?,
            cfg,
            training: true,
        })
    }

    pub fn config(&self) -> &MlaConfig {
        &self.cfg
    }

    /// KV cache floats per position: the latent and the shared RoPE key.
    pub fn cache_floats_per_token(&self) -> usize {
        self.cfg.kv_lora_rank + self.cfg.qk_rope_head_dim
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        if x.rank() != 3 || x.shape()[2] != self.cfg.hidden_size {
            return Err(Error::Msg(format!(
                "MultiHeadLatentAttention(hidden_size={}): expected [batch, len, {}], got {:?}",
                self.cfg.hidden_size,
                self.cfg.hidden_size,
                x.shape()
            )));
        }
        Ok(())
    }

    fn project(&self, x: &Tensor, offset: usize) -> Result<Projected> {
        let c = &self.cfg;
        let (b, l) = (x.shape()[0] as isize, x.shape()[1] as isize);
        let q = match &self.q {
            QueryProj::Direct(p) => p.forward(x)?,
            QueryProj::LowRank { a, norm, b } => b.forward(&norm.forward(&a.forward(x)?)?)?,
        };
        let q = q.try_reshape(&[b, l, c.num_heads as isize, c.q_head_dim() as isize])?.try_transpose(1, 2)?;
        let q_nope = q.try_narrow(-1, 0, c.qk_nope_head_dim)?;
        let q_pe = self.rope.forward(&q.try_narrow(-1, c.qk_nope_head_dim, c.qk_rope_head_dim)?, offset)?;
        let compressed = self.kv_a_proj_with_mqa.forward(x)?;
        let latent = self.kv_a_layernorm.forward(&compressed.try_narrow(-1, 0, c.kv_lora_rank)?)?;
        let k_pe = self.rope.forward(&compressed.try_narrow(-1, c.kv_lora_rank, c.qk_rope_head_dim)?, offset)?;
        Ok(Projected { q_nope, q_pe, latent, k_pe })
    }

    fn options(&self, masks: &AttentionMasks, batch: usize, src_len: usize) -> Result<crate::ops::attention::AttentionOptions> {
        let mut opts = masks.to_options(batch, src_len)?.scale(1.0 / (self.cfg.q_head_dim() as f64).sqrt());
        if self.training {
            opts.dropout_p = self.cfg.dropout;
        }
        Ok(opts)
    }

    /// `[B, H, L, dv]` heads to `o_proj` output `[B, L, hidden]`.
    fn merge(&self, heads: &Tensor) -> Result<Tensor> {
        let (b, l) = (heads.shape()[0] as isize, heads.shape()[2] as isize);
        let merged = heads.try_transpose(1, 2)?.try_reshape(&[b, l, (self.cfg.num_heads * self.cfg.v_head_dim) as isize])?;
        self.o_proj.forward(&merged)
    }

    /// Self-attention over `x` `[B, T, hidden]` (positions `0..T`), in the direct form.
    pub fn forward(&self, x: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        self.check_input(x)?;
        let c = &self.cfg;
        let p = self.project(x, 0)?;
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let kv = self.kv_b_proj.forward(&p.latent)?;
        let kv = kv.try_reshape(&[b as isize, l as isize, c.num_heads as isize, (c.qk_nope_head_dim + c.v_head_dim) as isize])?.try_transpose(1, 2)?;
        let k_nope = kv.try_narrow(-1, 0, c.qk_nope_head_dim)?;
        let v = kv.try_narrow(-1, c.qk_nope_head_dim, c.v_head_dim)?;
        let k_pe = p.k_pe.try_unsqueeze(1)?.try_expand(&[b as isize, c.num_heads as isize, l as isize, c.qk_rope_head_dim as isize])?;
        let q = Tensor::try_cat(&[&p.q_nope, &p.q_pe], -1)?;
        let k = Tensor::try_cat(&[&k_nope, &k_pe], -1)?;
        let heads = try_scaled_dot_product_attention(&q, &k, &v, &self.options(masks, b, l)?)?;
        self.merge(&heads)
    }

    /// One decoding step in the absorbed form: `x` `[B, L, hidden]` holds the new positions;
    /// `cache` holds (and receives) the normalised latent `[B, T, kv_lora_rank]` and the
    /// rotated RoPE key `[B, T, qk_rope_head_dim]` of every earlier position.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache, masks: &AttentionMasks) -> Result<Tensor> {
        self.check_input(x)?;
        let c = &self.cfg;
        let p = self.project(x, cache.len())?;
        let latent = cache.append(0, &p.latent, 1)?;
        let k_pe = cache.append(1, &p.k_pe, 1)?;
        // kv_b_proj.weight rows are [head][k_nope | v], each against the latent.
        let w = self.kv_b_proj.weight.try_reshape(&[c.num_heads as isize, (c.qk_nope_head_dim + c.v_head_dim) as isize, c.kv_lora_rank as isize])?;
        let w_uk = w.try_narrow(1, 0, c.qk_nope_head_dim)?;
        let w_uv = w.try_narrow(1, c.qk_nope_head_dim, c.v_head_dim)?;
        // q_nope · (W_uk c) = (W_ukᵀ q_nope) · c: queries meet the latent directly.
        let q = Tensor::try_cat(&[&p.q_nope.try_matmul(&w_uk)?, &p.q_pe], -1)?;
        let k = Tensor::try_cat(&[&latent, &k_pe], -1)?.try_unsqueeze(1)?;
        let v = latent.try_unsqueeze(1)?;
        let causal = if masks.causal == Causal::None { Causal::None } else { Causal::LowerRight };
        let opts = self.options(&AttentionMasks { causal, ..*masks }, x.shape()[0], latent.shape()[1])?;
        let in_latent = try_scaled_dot_product_attention(&q, &k, &v, &opts)?;
        self.merge(&in_latent.try_matmul(&w_uv.try_transpose(-1, -2)?)?)
    }
}

impl Module for MultiHeadLatentAttention {
    /// A 512-wide, 8-head layer ([`MlaConfig::for_width`]).
    fn init_with(gen: &mut Generator) -> Self {
        MultiHeadLatentAttention::new(MlaConfig::for_width(crate::nn::runtime::DEFAULT_WIDTH, 8), gen).expect("valid default")
    }

    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match &self.q {
            QueryProj::Direct(p) => p.visit_params(&join(prefix, "q_proj"), f),
            QueryProj::LowRank { a, norm, b } => {
                a.visit_params(&join(prefix, "q_a_proj"), f);
                norm.visit_params(&join(prefix, "q_a_layernorm"), f);
                b.visit_params(&join(prefix, "q_b_proj"), f);
            }
        }
        self.kv_a_proj_with_mqa.visit_params(&join(prefix, "kv_a_proj_with_mqa"), f);
        self.kv_a_layernorm.visit_params(&join(prefix, "kv_a_layernorm"), f);
        self.kv_b_proj.visit_params(&join(prefix, "kv_b_proj"), f);
        self.o_proj.visit_params(&join(prefix, "o_proj"), f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        match &mut self.q {
            QueryProj::Direct(p) => p.visit_params_mut(&join(prefix, "q_proj"), f),
            QueryProj::LowRank { a, norm, b } => {
                a.visit_params_mut(&join(prefix, "q_a_proj"), f);
                norm.visit_params_mut(&join(prefix, "q_a_layernorm"), f);
                b.visit_params_mut(&join(prefix, "q_b_proj"), f);
            }
        }
        self.kv_a_proj_with_mqa.visit_params_mut(&join(prefix, "kv_a_proj_with_mqa"), f);
        self.kv_a_layernorm.visit_params_mut(&join(prefix, "kv_a_layernorm"), f);
        self.kv_b_proj.visit_params_mut(&join(prefix, "kv_b_proj"), f);
        self.o_proj.visit_params_mut(&join(prefix, "o_proj"), f);
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn kind(&self) -> String {
        format!("MultiHeadLatentAttention(hidden={}, heads={}, kv_lora_rank={})", self.cfg.hidden_size, self.cfg.num_heads, self.cfg.kv_lora_rank)
    }
}
