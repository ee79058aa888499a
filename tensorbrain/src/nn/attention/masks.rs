//! The masks an attention layer takes, in `nn.MultiheadAttention`'s conventions.

use crate::ops::attention::{AttentionOptions, Causal};
use crate::tensor::{DType, Error, Result, Tensor};

/// Masks for one attention call, with PyTorch's layer conventions (note: the opposite of
/// `scaled_dot_product_attention`'s boolean mask):
/// - `key_padding_mask`: `[B, S]`, true (nonzero) marks a padding key to ignore;
/// - `attn_mask`: `[L, S]` or `[B, 1, L, S]`-broadcastable; boolean true marks a pair that may
///   not attend, a float mask is added to the scores;
/// - `causal`: hides later keys without a mask tensor.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMasks<'a> {
    pub key_padding_mask: Option<&'a Tensor>,
    pub attn_mask: Option<&'a Tensor>,
    pub causal: Causal,
}

impl<'a> AttentionMasks<'a> {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn causal() -> Self {
        AttentionMasks { causal: Causal::UpperLeft, ..Default::default() }
    }

    pub fn key_padding(mask: &'a Tensor) -> Self {
        AttentionMasks { key_padding_mask: Some(mask), ..Default::default() }
    }

    pub fn with_key_padding(mut self, mask: Option<&'a Tensor>) -> Self {
        self.key_padding_mask = mask;
        self
    }

    pub fn with_causal(mut self, causal: Causal) -> Self {
        self.causal = causal;
        self
    }

    /// The options for `scaled_dot_product_attention`: one mask tensor (boolean where both
    /// masks are boolean, else additive), broadcast rather than expanded.
    pub fn to_options(&self, batch: usize, src_len: usize) -> Result<AttentionOptions> {
        let mut opts = AttentionOptions::new().causal(self.causal);
        let padding = match self.key_padding_mask {
            None => None,
            Some(m) => {
                if m.shape() != [batch, src_len] {
                    return Err(Error::Msg(format!(
                        "attention: key_padding_mask must be [batch, source_len] = [{batch}, {src_len}], got {:?}",
                        m.shape()
                    )));
                }
                Some(crate::ops::attention::key_padding_to_attn_mask(m)?)
            }
        };
        let attn = match self.attn_mask {
            None => None,
            Some(m) if is_boolean(m.dtype()) => Some(m.try_eq(&Tensor::zeros(&[], m.dtype()).try_on(m.device())?)?),
            Some(m) => Some(m.clone()),
        };
        let mask = match (padding, attn) {
            (None, None) => None,
            (Some(p), None) => Some(p),
            (None, Some(a)) => Some(a),
            (Some(p), Some(a)) => {
                // Both: one additive mask (-inf wherever either hides a pair).
                let hidden = |m: &Tensor| m.try_eq(&Tensor::zeros(&[], m.dtype()).try_on(m.device())?);
                let base = if is_boolean(a.dtype()) { Tensor::try_zeros_on(a.shape(), DType::F32, a.device())?.try_masked_fill(&hidden(&a)?, f64::NEG_INFINITY)? } else { a };
                Some(base.try_masked_fill(&hidden(&p)?, f64::NEG_INFINITY)?)
            }
        };
        if let Some(m) = mask {
            opts = opts.mask(&m);
        }
        Ok(opts)
    }
}

/// Masks given as bool, or as u8 the way older code and PyTorch's byte masks write them.
fn is_boolean(dtype: DType) -> bool {
    matches!(dtype, DType::Bool | DType::U8)
}
