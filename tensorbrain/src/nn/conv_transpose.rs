//! `torch.nn.ConvTranspose2d` as a layer: the gradient of a convolution with respect to its
//! input, used to upsample (decoders, GAN generators, U-Nets).

use std::marker::PhantomData;

use super::runtime::uniform_param;
use super::{join, Forward, Module};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{Error, Result, Tensor};

/// Transposed 2-D convolution from `C_IN` to `C_OUT` channels with a `K x K` kernel, stride
/// `S`, padding `P` and output padding `OP` (PyTorch's argument order). An `[N, C_IN, H, W]`
/// input gives `[N, C_OUT, (H - 1)·S - 2·P + K + OP, ...]`.
pub type ConvTranspose2d<const C_IN: usize, const C_OUT: usize, const K: usize, const S: usize = 1, const P: usize = 0, const OP: usize = 0> =
    ConvTranspose2dOf<Const<C_IN>, Const<C_OUT>, K, S, P, OP>;

/// [`ConvTranspose2d`] with its channel counts as types.
pub struct ConvTranspose2dOf<CI: Size, CO: Size, const K: usize, const S: usize = 1, const P: usize = 0, const OP: usize = 0> {
    /// `[C_IN, C_OUT, K, K]` (PyTorch's layout for transposed convolutions).
    pub weight: Tensor,
    /// `[C_OUT]`.
    pub bias: Option<Tensor>,
    _sizes: PhantomData<(CI, CO)>,
}

impl<CI: Size, CO: Size, const K: usize, const S: usize, const P: usize, const OP: usize> ConvTranspose2dOf<CI, CO, K, S, P, OP> {
    /// The layer without a bias (`bias=False`).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// Upsamples `[N, C_IN, H, W]` (or `[C_IN, H, W]`); gradients flow through the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let channels = match x.rank() {
            4 => x.shape()[1],
            3 => x.shape()[0],
            _ => usize::MAX,
        };
        if channels != CI::N {
            return Err(Error::Msg(format!("{}: expected input [N, {c}, H, W] or [{c}, H, W], got {:?}", self.kind(), x.shape(), c = CI::N)));
        }
        x.try_conv_transpose2d(&self.weight, self.bias.as_ref(), [S, S], [P, P], [OP, OP], 1, [1, 1])
    }
}

impl<CI: Size, CO: Size, const K: usize, const S: usize, const P: usize, const OP: usize> Module for ConvTranspose2dOf<CI, CO, K, S, P, OP> {
    fn init_with(gen: &mut Generator) -> Self {
        const { assert!(K > 0 && S > 0 && OP < S, "ConvTranspose2d: the kernel size and stride must be positive and the output padding below the stride") };
        // PyTorch: kaiming_uniform(a=sqrt(5)) for the weight and U(±1/sqrt(fan_in)) for the
        // bias, where fan_in is computed from the weight's dim 1 (C_OUT here) times K·K.
        let bound = 1.0 / ((CO::N * K * K) as f64).sqrt();
        ConvTranspose2dOf { weight: uniform_param(&[CI::N, CO::N, K, K], bound, gen), bias: Some(uniform_param(&[CO::N], bound, gen)), _sizes: PhantomData }
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
        format!("ConvTranspose2d<{}, {}, {K}, {S}, {P}, {OP}>", CI::N, CO::N)
    }
}

impl<CI: Size, CO: Size, const K: usize, const S: usize, const P: usize, const OP: usize> Forward for ConvTranspose2dOf<CI, CO, K, S, P, OP> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ConvTranspose2dOf::forward(self, x)
    }
}
