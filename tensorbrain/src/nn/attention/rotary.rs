//! Rotary position embeddings (RoPE, Su et al. 2021): each pair of channels of a query or key
//! at position `p` is rotated by the angle `p · base^(-2i/d)`, so that `q·k` depends on the
//! positions only through their difference.

use crate::tensor::{DType, Error, Result, Tensor};

/// How channels are paired for rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RopeStyle {
    /// Channel `i` with `i + d/2` (GPT-NeoX and Hugging Face LLaMA's `rotate_half`).
    #[default]
    Half,
    /// Channel `2i` with `2i + 1` (the paper, Meta's LLaMA and DeepSeek's reference code).
    Interleaved,
}

/// RoPE over the last dim (`dim`, even) of `[.., T, dim]` tensors. No parameters.
#[derive(Clone, Debug)]
pub struct RotaryEmbedding {
    dim: usize,
    base: f64,
    style: RopeStyle,
}

impl RotaryEmbedding {
    /// `base` is 10000 in most models.
    pub fn new(dim: usize, base: f64, style: RopeStyle) -> Result<Self> {
        if dim == 0 || dim % 2 != 0 {
            return Err(Error::Msg(format!("RotaryEmbedding: the rotated dim must be even and positive, got {dim}")));
        }
        Ok(RotaryEmbedding { dim, base, style })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `cos` and `sin` tables `[len, dim]` for positions `offset..offset + len`, laid out to
    /// match the pairing (each frequency repeated for both members of a pair).
    pub fn tables(&self, offset: usize, len: usize, dtype: DType) -> (Tensor, Tensor) {
        let half = self.dim / 2;
        let mut cos = Vec::with_capacity(len * self.dim);
        let mut sin = Vec::with_capacity(len * self.dim);
        for p in offset..offset + len {
            let angle = |i: usize| p as f64 * self.base.powf(-2.0 * i as f64 / self.dim as f64);
            for c in 0..self.dim {
                let i = match self.style {
                    RopeStyle::Half => c % half,
                    RopeStyle::Interleaved => c / 2,
                };
                cos.push(angle(i).cos());
                sin.push(angle(i).sin());
            }
        }
        let t = |v: Vec<f64>| Tensor::from_vec(v, &[len, self.dim]).to_dtype(dtype);
        (t(cos), t(sin))
    }

    /// Rotates `x` `[.., T, dim]` whose first position is `offset` (the number of cached
    /// positions when decoding): `x · cos + rotate(x) · sin`. Differentiable in `x`.
    pub fn forward(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let r = x.rank();
        if r < 2 || x.shape()[r - 1] != self.dim {
            return Err(Error::Msg(format!("RotaryEmbedding(dim={}): expected [.., len, {}], got {:?}", self.dim, self.dim, x.shape())));
        }
        let (cos, sin) = self.tables(offset, x.shape()[r - 2], x.dtype());
        let (cos, sin) = (cos.try_on(x.device())?, sin.try_on(x.device())?);
        x.try_mul(&cos)?.try_add(&self.rotate(x)?.try_mul(&sin)?)
    }

    /// The partner channel of each channel, negated for the first of each pair:
    /// `[-x2, x1]` for halves, `[-x1, x0, -x3, x2, ..]` interleaved.
    fn rotate(&self, x: &Tensor) -> Result<Tensor> {
        let half = self.dim / 2;
        match self.style {
            RopeStyle::Half => {
                let x1 = x.try_narrow(-1, 0, half)?;
                let x2 = x.try_narrow(-1, half, half)?;
                Tensor::try_cat(&[&x2.try_neg()?, &x1], -1)
            }
            RopeStyle::Interleaved => {
                let mut pairs: Vec<isize> = x.shape()[..x.rank() - 1].iter().map(|&d| d as isize).collect();
                pairs.extend([half as isize, 2]);
                let p = x.try_reshape(&pairs)?;
                let even = p.try_narrow(-1, 0, 1)?;
                let odd = p.try_narrow(-1, 1, 1)?;
                let rotated = Tensor::try_cat(&[&odd.try_neg()?, &even], -1)?;
                let back: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
                rotated.try_reshape(&back)
            }
        }
    }
}
