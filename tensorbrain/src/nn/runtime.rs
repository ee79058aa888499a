//! Layers whose sizes are chosen at run time (`DynLinear::new(in, out, bias, gen)`), as in
//! PyTorch, for models built from configuration (transformers, pretrained checkpoints). They
//! name and initialise their parameters like the typed layers (`Linear<IN, OUT>`, ...), so a
//! typed layer can wrap one.
//!
//! `Module::init_with` needs sizes it cannot be given, so for these layers it builds the
//! 512-wide default of PyTorch's `nn.Transformer` (`d_model = 512`); real models call `new`.

use super::{join, Module};
use crate::ops::Generator;
use crate::tensor::{DType, Error, Result, Tensor};

/// PyTorch's `nn.Transformer` width, the size `init_with` uses.
pub const DEFAULT_WIDTH: usize = 512;

/// `U(-bound, bound)` as a parameter.
pub(crate) fn uniform_param(shape: &[usize], bound: f64, gen: &mut Generator) -> Tensor {
    Tensor::rand_with(shape, DType::F32, gen).mul_scalar(2.0 * bound).add_scalar(-bound).set_requires_grad(true)
}

/// Glorot/Xavier uniform for a `[fan_out, fan_in]` weight (`nn.init.xavier_uniform_`).
pub(crate) fn xavier_uniform(shape: [usize; 2], gen: &mut Generator) -> Tensor {
    let bound = (6.0 / (shape[0] + shape[1]) as f64).sqrt();
    uniform_param(&shape, bound, gen)
}

pub(crate) fn zeros_param(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32).set_requires_grad(true)
}

/// Inverted dropout with probability `p` when `training` (identity otherwise).
pub fn dropout(x: &Tensor, p: f64, training: bool) -> Result<Tensor> {
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    if !(0.0..1.0).contains(&p) {
        return Err(Error::Msg(format!("dropout: p must be in [0, 1), got {p}")));
    }
    // The mask is drawn on the host (the same generator stream on every device, so a seeded
    // run drops the same units on a GPU) and moved to `x`'s device.
    let keep = Tensor::rand(x.shape(), x.dtype()).try_ge(&Tensor::full(&[], p, x.dtype()))?.try_to_dtype(x.dtype())?;
    let keep = keep.try_on(x.device())?;
    x.try_mul(&keep)?.try_mul_scalar(1.0 / (1.0 - p))
}

/// `y = x Wᵀ + b` with `W: [out_features, in_features]` (`nn.Linear`).
pub struct DynLinear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl DynLinear {
    /// PyTorch's default initialisation: `U(±1/sqrt(in_features))` for weight and bias.
    pub fn new(in_features: usize, out_features: usize, bias: bool, gen: &mut Generator) -> Self {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let weight = uniform_param(&[out_features, in_features], bound, gen);
        let bias = bias.then(|| uniform_param(&[out_features], bound, gen));
        DynLinear { weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// `[.., in_features]` to `[.., out_features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_linear(&self.weight, self.bias.as_ref())
    }
}

impl Module for DynLinear {
    fn init_with(gen: &mut Generator) -> Self {
        DynLinear::new(DEFAULT_WIDTH, DEFAULT_WIDTH, true, gen)
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn kind(&self) -> String {
        format!("Linear({}, {})", self.in_features(), self.out_features())
    }
}

/// Layer normalisation over the last dim with a learned scale and shift (`nn.LayerNorm`).
pub struct DynLayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl DynLayerNorm {
    pub fn new(dim: usize, eps: f64) -> Self {
        DynLayerNorm { weight: Tensor::ones(&[dim], DType::F32).set_requires_grad(true), bias: zeros_param(&[dim]), eps }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.weight.shape()[0];
        if x.rank() == 0 || x.shape()[x.rank() - 1] != d {
            return Err(Error::Msg(format!("LayerNorm({d}): expected input [.., {d}], got {:?}", x.shape())));
        }
        let mean = x.try_mean(&[-1], true)?;
        let xc = x.try_sub(&mean)?;
        let var = xc.try_mul(&xc)?.try_mean(&[-1], true)?;
        let xn = xc.try_mul(&var.try_add_scalar(self.eps)?.try_rsqrt()?)?;
        xn.try_mul(&self.weight)?.try_add(&self.bias)
    }
}

impl Module for DynLayerNorm {
    fn init_with(_: &mut Generator) -> Self {
        DynLayerNorm::new(DEFAULT_WIDTH, 1e-5)
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }
    fn kind(&self) -> String {
        format!("LayerNorm({})", self.weight.shape()[0])
    }
}

/// Root-mean-square normalisation over the last dim with a learned scale (`nn.RMSNorm`).
pub struct DynRMSNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl DynRMSNorm {
    pub fn new(dim: usize, eps: f64) -> Self {
        DynRMSNorm { weight: Tensor::ones(&[dim], DType::F32).set_requires_grad(true), eps }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.weight.shape()[0];
        if x.rank() == 0 || x.shape()[x.rank() - 1] != d {
            return Err(Error::Msg(format!("RMSNorm({d}): expected input [.., {d}], got {:?}", x.shape())));
        }
        let rstd = x.try_mul(x)?.try_mean(&[-1], true)?.try_add_scalar(self.eps)?.try_rsqrt()?;
        x.try_mul(&rstd)?.try_mul(&self.weight)
    }
}

impl Module for DynRMSNorm {
    fn init_with(_: &mut Generator) -> Self {
        DynRMSNorm::new(DEFAULT_WIDTH, 1e-6)
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
    fn kind(&self) -> String {
        format!("RMSNorm({})", self.weight.shape()[0])
    }
}

/// A lookup table of `num_embeddings` vectors of size `dim` (`nn.Embedding`, N(0, 1) init).
pub struct DynEmbedding {
    pub weight: Tensor,
}

impl DynEmbedding {
    pub fn new(num_embeddings: usize, dim: usize, gen: &mut Generator) -> Self {
        DynEmbedding { weight: Tensor::randn_with(&[num_embeddings, dim], DType::F32, gen).set_requires_grad(true) }
    }

    /// i64 indices of any shape to `[.., dim]`.
    pub fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        let dim = self.weight.shape()[1] as isize;
        let rows = self.weight.try_index_select(0, &indices.try_reshape(&[-1])?)?;
        let mut shape: Vec<isize> = indices.shape().iter().map(|&d| d as isize).collect();
        shape.push(dim);
        rows.try_reshape(&shape)
    }
}

impl Module for DynEmbedding {
    fn init_with(gen: &mut Generator) -> Self {
        DynEmbedding::new(DEFAULT_WIDTH, DEFAULT_WIDTH, gen)
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
    fn kind(&self) -> String {
        format!("Embedding({}, {})", self.weight.shape()[0], self.weight.shape()[1])
    }
}
