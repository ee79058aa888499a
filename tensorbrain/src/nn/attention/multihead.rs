//! Multi-head attention with `nn.MultiheadAttention`'s parameters (`in_proj_weight`,
//! `in_proj_bias`, `out_proj.weight`, `out_proj.bias`; `q_proj_weight`, `k_proj_weight`,
//! `v_proj_weight` when keys or values have their own width), so state dicts load both ways.

use super::cache::LayerCache;
use super::masks::AttentionMasks;
use crate::nn::runtime::{xavier_uniform, zeros_param, DynLinear, DEFAULT_WIDTH};
use crate::nn::{join, Module};
use crate::ops::attention::{try_scaled_dot_product_attention, Causal};
use crate::ops::Generator;
use crate::tensor::{Error, Result, Tensor};

/// The optional settings of [`MultiheadAttention::new`] (PyTorch's keyword arguments).
#[derive(Clone, Copy, Debug)]
pub struct MultiheadAttentionOptions {
    /// Biases on the input and output projections.
    pub bias: bool,
    /// Width of the keys (default: `embed_dim`).
    pub kdim: Option<usize>,
    /// Width of the values (default: `embed_dim`).
    pub vdim: Option<usize>,
    /// Dropout on the attention probabilities, in training.
    pub dropout: f64,
}

impl Default for MultiheadAttentionOptions {
    fn default() -> Self {
        MultiheadAttentionOptions { bias: true, kdim: None, vdim: None, dropout: 0.0 }
    }
}

/// Input projections: one packed `[3E, E]` weight when queries, keys and values share the
/// width, three separate ones otherwise (as PyTorch stores them).
enum InProj {
    Packed(Tensor),
    Separate { q: Tensor, k: Tensor, v: Tensor },
}

/// `nn.MultiheadAttention` (batch-first): `forward(query, key, value, masks)`.
pub struct MultiheadAttention {
    embed_dim: usize,
    num_heads: usize,
    in_proj: InProj,
    pub in_proj_bias: Option<Tensor>,
    pub out_proj: DynLinear,
    dropout: f64,
    training: bool,
}

impl MultiheadAttention {
    /// PyTorch's initialisation: Xavier-uniform input projections, zero biases, the default
    /// `Linear` init for `out_proj.weight`.
    pub fn new(embed_dim: usize, num_heads: usize, options: MultiheadAttentionOptions, gen: &mut Generator) -> Result<Self> {
        if num_heads == 0 || embed_dim % num_heads != 0 {
            return Err(Error::Msg(format!(
                "MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}): the head dim would be {embed_dim}/{num_heads}"
            )));
        }
        let (kdim, vdim) = (options.kdim.unwrap_or(embed_dim), options.vdim.unwrap_or(embed_dim));
        let in_proj = if kdim == embed_dim && vdim == embed_dim {
            InProj::Packed(xavier_uniform([3 * embed_dim, embed_dim], gen))
        } else {
            let q = xavier_uniform([embed_dim, embed_dim], gen);
            let k = xavier_uniform([embed_dim, kdim], gen);
            let v = xavier_uniform([embed_dim, vdim], gen);
            InProj::Separate { q, k, v }
        };
        let in_proj_bias = options.bias.then(|| zeros_param(&[3 * embed_dim]));
        let out_proj = DynLinear::new(embed_dim, embed_dim, options.bias, gen);
        if let Some(b) = &out_proj.bias {
            crate::autograd::no_grad(|| b.copy_from(&Tensor::zeros(b.shape(), b.dtype())));
        }
        Ok(MultiheadAttention { embed_dim, num_heads, in_proj, in_proj_bias, out_proj, dropout: options.dropout, training: true })
    }

    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Rows `which*E..(which+1)*E` of the packed weight (0 = query, 1 = key, 2 = value), or
    /// the separate weight; and the matching bias slice.
    fn projection(&self, which: usize) -> Result<(Tensor, Option<Tensor>)> {
        let e = self.embed_dim as isize;
        let w = match &self.in_proj {
            InProj::Packed(w) => w.try_narrow(0, which * self.embed_dim, self.embed_dim)?,
            InProj::Separate { q, k, v } => [q, k, v][which].clone(),
        };
        let b = match &self.in_proj_bias {
            Some(b) => Some(b.try_slice(0, which as isize * e, (which as isize + 1) * e, 1)?),
            None => None,
        };
        Ok((w, b))
    }

    fn project(&self, x: &Tensor, which: usize) -> Result<Tensor> {
        let (w, b) = self.projection(which)?;
        x.try_linear(&w, b.as_ref()).map_err(|e| Error::Msg(format!("MultiheadAttention ({} input): {e}", ["query", "key", "value"][which])))
    }

    /// `[B, T, E]` to the `[B, H, T, Dh]` view of its heads (no copy).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        x.try_reshape(&[s[0] as isize, s[1] as isize, self.num_heads as isize, self.head_dim() as isize])?.try_transpose(1, 2)
    }

    /// Keys and values `[B, H, S, Dh]` for a source sequence (cross-attention computes these
    /// once per decode).
    pub fn project_kv(&self, key: &Tensor, value: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.split_heads(&self.project(key, 1)?)?, self.split_heads(&self.project(value, 2)?)?))
    }

    fn check_input(&self, query: &Tensor) -> Result<()> {
        if query.rank() != 3 || query.shape()[2] != self.embed_dim {
            return Err(Error::Msg(format!(
                "MultiheadAttention(embed_dim={}, num_heads={}): expected query [batch, len, {}], got {:?}",
                self.embed_dim,
                self.num_heads,
                self.embed_dim,
                query.shape()
            )));
        }
        Ok(())
    }

    /// Attention of `query` `[B, L, E]` over `key` `[B, S, kdim]` and `value` `[B, S, vdim]`,
    /// giving `[B, L, E]`.
    pub fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        self.check_input(query)?;
        if key.rank() != 3 || value.rank() != 3 || key.shape()[..2] != value.shape()[..2] || key.shape()[0] != query.shape()[0] {
            return Err(Error::Msg(format!(
                "MultiheadAttention: key {:?} and value {:?} must be [batch, source_len, dim] with the query's batch ({:?})",
                key.shape(),
                value.shape(),
                query.shape()
            )));
        }
        let q = self.split_heads(&self.project(query, 0)?)?;
        let (k, v) = if query.shares_storage(key) && key.shares_storage(value) && matches!(self.in_proj, InProj::Packed(_)) && query.shape() == key.shape() {
            self.self_kv(query)?
        } else {
            self.project_kv(key, value)?
        };
        self.attend(&q, &k, &v, masks)
    }

    /// Attention of `query` `[B, L, E]` over keys and values already projected by
    /// [`Self::project_kv`].
    pub fn forward_with_kv(&self, query: &Tensor, k: &Tensor, v: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        self.check_input(query)?;
        let q = self.split_heads(&self.project(query, 0)?)?;
        self.attend(&q, k, v, masks)
    }

    /// Self-attention: `forward(x, x, x, masks)`.
    pub fn forward_self(&self, x: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        self.forward(x, x, x, masks)
    }

    fn self_kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.project_kv(x, x)
    }

    /// Attention over precomputed heads `[B, H, S, Dh]` (and the output projection).
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, masks: &AttentionMasks) -> Result<Tensor> {
        let (b, l, s) = (q.shape()[0], q.shape()[2], k.shape()[2]);
        let mut opts = masks.to_options(b, s)?;
        if self.training {
            opts.dropout_p = self.dropout;
        }
        let heads = try_scaled_dot_product_attention(q, k, v, &opts)?;
        let merged = heads.try_transpose(1, 2)?.try_reshape(&[b as isize, l as isize, self.embed_dim as isize])?;
        self.out_proj.forward(&merged)
    }

    /// One decoding step of self-attention: `x` `[B, L, E]` holds the new positions, `cache`
    /// the earlier ones' keys and values (appended to here). Causality is aligned at the
    /// bottom right, so each new position sees the whole prefix and itself.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache, masks: &AttentionMasks) -> Result<Tensor> {
        self.check_input(x)?;
        let q = self.split_heads(&self.project(x, 0)?)?;
        let (k_new, v_new) = self.self_kv(x)?;
        let k = cache.append(0, &k_new, 2)?;
        let v = cache.append(1, &v_new, 2)?;
        let causal = if masks.causal == Causal::None { Causal::None } else { Causal::LowerRight };
        self.attend(&q, &k, &v, &AttentionMasks { causal, ..*masks })
    }

    /// KV cache floats per position: keys and values of every head.
    pub fn cache_floats_per_token(&self) -> usize {
        2 * self.embed_dim
    }

    pub fn set_dropout(&mut self, p: f64) {
        self.dropout = p;
    }
}

impl Module for MultiheadAttention {
    /// `nn.Transformer`'s default: 512 wide, 8 heads.
    fn init_with(gen: &mut Generator) -> Self {
        MultiheadAttention::new(DEFAULT_WIDTH, 8, MultiheadAttentionOptions::default(), gen).expect("512 is divisible by 8")
    }

    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match &self.in_proj {
            InProj::Packed(w) => f(&join(prefix, "in_proj_weight"), w),
            InProj::Separate { q, k, v } => {
                f(&join(prefix, "q_proj_weight"), q);
                f(&join(prefix, "k_proj_weight"), k);
                f(&join(prefix, "v_proj_weight"), v);
            }
        }
        if let Some(b) = &self.in_proj_bias {
            f(&join(prefix, "in_proj_bias"), b);
        }
        self.out_proj.visit_params(&join(prefix, "out_proj"), f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        match &mut self.in_proj {
            InProj::Packed(w) => f(&join(prefix, "in_proj_weight"), w),
            InProj::Separate { q, k, v } => {
                f(&join(prefix, "q_proj_weight"), q);
                f(&join(prefix, "k_proj_weight"), k);
                f(&join(prefix, "v_proj_weight"), v);
            }
        }
        if let Some(b) = &mut self.in_proj_bias {
            f(&join(prefix, "in_proj_bias"), b);
        }
        self.out_proj.visit_params_mut(&join(prefix, "out_proj"), f);
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn kind(&self) -> String {
        format!("MultiheadAttention(embed_dim={}, num_heads={})", self.embed_dim, self.num_heads)
    }
}
