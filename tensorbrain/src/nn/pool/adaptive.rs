//! Adaptive average pooling to a fixed output size (`torch.nn.AdaptiveAvgPool2d`).
//!
//! Output cell `i` along a dim of size `n` averages input rows `floor(i·n/out)` up to
//! `ceil((i+1)·n/out)` (PyTorch's rule; windows may overlap). Windows are products of a row
//! range and a column range, so the pooling is separable: `P_h · x · P_wᵀ` with averaging
//! matrices `P_h: [OH, H]` and `P_w: [OW, W]`. Two matmuls give the forward, their transposes
//! the backward, and the tape differentiates it like any matmul.

use crate::autograd::no_grad;
use crate::nn::static_model::one_input;
use crate::nn::{GradReady, Module, StaticModel};
use crate::ops::Generator;
use crate::tensor::{DType, Device, Error, Result, Tensor};

/// Averages `[N, C, H, W]` (or `[C, H, W]`) down to `[N, C, OH, OW]` for any `H`, `W`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdaptiveAvgPool2d<const OH: usize, const OW: usize>;

/// The averaging matrices a `#[model]`'s generated backward needs.
pub struct AdaptiveAvgPoolSaved {
    rows: Tensor,
    cols: Tensor,
}

/// `[out, n]`: row `i` holds `1/len` over PyTorch's window for output `i`.
fn averaging_matrix(out: usize, n: usize, dtype: DType, device: Device) -> Result<Tensor> {
    let mut m = vec![0.0f64; out * n];
    for i in 0..out {
        let start = i * n / out;
        let end = ((i + 1) * n).div_ceil(out);
        let len = (end - start) as f64;
        for j in start..end {
            m[i * n + j] = 1.0 / len;
        }
    }
    Tensor::from_vec(m, &[out, n]).try_to_dtype(dtype)?.try_to_device(device)
}

impl<const OH: usize, const OW: usize> Module for AdaptiveAvgPool2d<OH, OW> {
    fn init_with(_: &mut Generator) -> Self {
        AdaptiveAvgPool2d
    }
    fn visit_params(&self, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
    fn visit_params_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Tensor)) {}
    fn collect_params(&self, _: &mut Vec<Tensor>) {}
    fn param_count(&self) -> usize {
        0
    }
}

impl<const OH: usize, const OW: usize> AdaptiveAvgPool2d<OH, OW> {
    fn forward_saving(&self, x: &Tensor) -> Result<(Tensor, AdaptiveAvgPoolSaved)> {
        if !(x.rank() == 3 || x.rank() == 4) || x.shape().iter().rev().take(2).any(|&d| d == 0) || OH == 0 || OW == 0 {
            return Err(Error::Msg(format!(
                "AdaptiveAvgPool2d<{OH}, {OW}>: expected input [N, C, H, W] or [C, H, W] with H, W > 0 (and OH, OW > 0), got {:?}",
                x.shape()
            )));
        }
        if !x.dtype().is_float() {
            return Err(Error::Msg(format!("AdaptiveAvgPool2d<{OH}, {OW}>: input must be a float tensor, got {}", x.dtype())));
        }
        let (h, w) = (x.shape()[x.rank() - 2], x.shape()[x.rank() - 1]);
        let rows = averaging_matrix(OH, h, x.dtype(), x.device())?;
        let cols = averaging_matrix(OW, w, x.dtype(), x.device())?;
        let y = rows.try_matmul(&x.try_matmul(&cols.try_t()?)?)?;
        Ok((y, AdaptiveAvgPoolSaved { rows, cols }))
    }

    /// Pools `[N, C, H, W]` (or `[C, H, W]`) to `[N, C, OH, OW]`; gradients flow through the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_saving(x)?.0)
    }
}

impl<const OH: usize, const OW: usize> StaticModel for AdaptiveAvgPool2d<OH, OW> {
    type Saved = AdaptiveAvgPoolSaved;

    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
        no_grad(|| self.forward(one_input("AdaptiveAvgPool2d", inputs)?))
    }

    fn forward_train(&self, inputs: &[Tensor], _input_grads: bool) -> Result<(Tensor, Self::Saved)> {
        no_grad(|| self.forward_saving(one_input("AdaptiveAvgPool2d", inputs)?))
    }

    fn backward(s: &Self::Saved, grad: &Tensor, _ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        let dx = s.rows.try_t()?.try_matmul(&grad.try_matmul(&s.cols)?)?;
        Ok((vec![Some(dx)], vec![]))
    }
}
