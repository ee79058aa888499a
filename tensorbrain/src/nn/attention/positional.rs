//! Absolute position embeddings added to token embeddings: the fixed sinusoids of "Attention
//! Is All You Need" and a learned table (BERT, GPT-2).

use crate::nn::runtime::DEFAULT_WIDTH;
use crate::nn::{join, Module};
use crate::ops::Generator;
use crate::tensor::{DType, Error, Result, Tensor};

/// `pe[p, 2i] = sin(p / 10000^(2i/d))`, `pe[p, 2i+1] = cos(p / 10000^(2i/d))`, added to
/// `[B, T, d]` inputs. No parameters.
#[derive(Clone, Debug)]
pub struct SinusoidalPositionalEncoding {
    dim: usize,
}

impl SinusoidalPositionalEncoding {
    pub fn new(dim: usize) -> Self {
        SinusoidalPositionalEncoding { dim }
    }

    /// The table `[len, dim]` for positions `offset..offset + len`.
    pub fn table(&self, offset: usize, len: usize) -> Tensor {
        let d = self.dim;
        let mut v = Vec::with_capacity(len * d);
        for p in offset..offset + len {
            for c in 0..d {
                let angle = p as f64 / 10000f64.powf((c - c % 2) as f64 / d as f64);
                v.push(if c % 2 == 0 { angle.sin() } else { angle.cos() });
            }
        }
        Tensor::from_vec(v, &[len, d]).to_dtype(DType::F32)
    }

    /// `x + pe` for `x` `[B, T, dim]` starting at position `offset`.
    pub fn forward(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        if x.rank() != 3 || x.shape()[2] != self.dim {
            return Err(Error::Msg(format!("SinusoidalPositionalEncoding(dim={}): expected [batch, len, {}], got {:?}", self.dim, self.dim, x.shape())));
        }
        x.try_add(&self.table(offset, x.shape()[1]).try_to_dtype(x.dtype())?.try_on(x.device())?)
    }
}

/// A learned `[max_len, dim]` table (`weight`, N(0, 1) like `nn.Embedding`), added to inputs.
pub struct LearnedPositionalEmbedding {
    pub weight: Tensor,
}

impl LearnedPositionalEmbedding {
    pub fn new(max_len: usize, dim: usize, gen: &mut Generator) -> Self {
        LearnedPositionalEmbedding { weight: Tensor::randn_with(&[max_len, dim], DType::F32, gen).set_requires_grad(true) }
    }

    pub fn max_len(&self) -> usize {
        self.weight.shape()[0]
    }

    /// `x + weight[offset..offset + T]` for `x` `[B, T, dim]`.
    pub fn forward(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (max_len, dim) = (self.weight.shape()[0], self.weight.shape()[1]);
        if x.rank() != 3 || x.shape()[2] != dim {
            return Err(Error::Msg(format!("LearnedPositionalEmbedding({max_len}, {dim}): expected [batch, len, {dim}], got {:?}", x.shape())));
        }
        let t = x.shape()[1];
        if offset + t > max_len {
            return Err(Error::Msg(format!("LearnedPositionalEmbedding: positions {offset}..{} exceed the table's {max_len}", offset + t)));
        }
        x.try_add(&self.weight.try_narrow(0, offset, t)?)
    }
}

impl Module for LearnedPositionalEmbedding {
    fn init_with(gen: &mut Generator) -> Self {
        LearnedPositionalEmbedding::new(DEFAULT_WIDTH, DEFAULT_WIDTH, gen)
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
}
