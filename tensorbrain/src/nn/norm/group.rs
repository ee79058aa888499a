//! Group normalisation (`torch.nn.GroupNorm`): the `C` channels of `[N, C, *]` split into `G`
//! groups, each sample's group normalised over its channels and spatial positions, then a
//! per-channel affine (PyTorch's defaults: eps 1e-5, affine with weight 1 and bias 0).

use std::marker::PhantomData;

use crate::nn::functional::try_group_norm;
use crate::nn::{join, Forward, Module};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Error, Result, Tensor};

/// `nn.GroupNorm(G, C)`: `G` groups over `C` channels (PyTorch's argument order).
pub type GroupNorm<const G: usize, const C: usize> = GroupNormOf<G, Const<C>>;

/// [`GroupNorm`] with its channel count as a type.
pub struct GroupNormOf<const G: usize, C: Size> {
    /// Per-channel scale, `[C]` (`None` without affine).
    pub weight: Option<Tensor>,
    /// Per-channel shift, `[C]` (`None` without affine).
    pub bias: Option<Tensor>,
    pub eps: f64,
    _channels: PhantomData<C>,
}

impl<const G: usize, C: Size> GroupNormOf<G, C> {
    /// The layer without learned scale and shift (`affine=False`).
    pub fn without_affine(mut self) -> Self {
        self.weight = None;
        self.bias = None;
        self
    }

    /// The layer with another `eps` (added to the variance).
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Normalises `[N, C, *]` (rank 2 or more); gradients flow through the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() < 2 || x.shape()[1] != C::N {
            return Err(Error::Msg(format!("{}: expected input [N, {}, *], got {:?}", self.kind(), C::N, x.shape())));
        }
        try_group_norm(x, G, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}

impl<const G: usize, C: Size> Module for GroupNormOf<G, C> {
    fn init_with(_: &mut Generator) -> Self {
        const { assert!(G > 0 && C::N % G == 0, "GroupNorm<G, C>: the number of groups G must divide the number of channels C") };
        GroupNormOf {
            weight: Some(Tensor::ones(&[C::N], DType::F32).set_requires_grad(true)),
            bias: Some(Tensor::zeros(&[C::N], DType::F32).set_requires_grad(true)),
            eps: 1e-5,
            _channels: PhantomData,
        }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if let Some(w) = &self.weight {
            f(&join(prefix, "weight"), w);
        }
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        if let Some(w) = &mut self.weight {
            f(&join(prefix, "weight"), w);
        }
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn kind(&self) -> String {
        format!("GroupNorm<{G}, {}>", C::N)
    }
}

impl<const G: usize, C: Size> Forward for GroupNormOf<G, C> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        GroupNormOf::forward(self, x)
    }
}
