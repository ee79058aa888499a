//! Root-mean-square normalisation over the last dim (`torch.nn.RMSNorm`): no centring, a
//! learned scale, `y = x / sqrt(mean(x²) + eps) · weight`.

use std::marker::PhantomData;

use crate::autograd::no_grad;
use crate::nn::static_model::one_input;
use crate::nn::{join, GradReady, Module, StaticModel};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Error, Result, Tensor};

/// RMS norm over a last dim of size `D`, with a learned scale (initialised to 1).
pub type RMSNorm<const D: usize> = RMSNormOf<Const<D>>;

/// [`RMSNorm`] with its size as a type.
pub struct RMSNormOf<D: Size> {
    pub weight: Tensor,
    /// `None` (the default) uses the machine epsilon of the input's dtype, as PyTorch does
    /// for `eps=None` (`f32::EPSILON` for f32 inputs).
    pub eps: Option<f64>,
    _size: PhantomData<D>,
}

/// What the generated backward of a `#[model]` needs from an RMS norm call.
pub struct RMSNormSaved {
    /// `x · rstd`.
    xhat: Tensor,
    /// `1 / sqrt(mean(x²) + eps)` with the last dim kept.
    rstd: Tensor,
    weight: Tensor,
}

/// PyTorch's `torch.finfo(dtype).eps`.
fn machine_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        DType::F16 => 0.000_976_562_5,
        DType::BF16 => 0.007_812_5,
        _ => f32::EPSILON as f64,
    }
}

impl<D: Size> Module for RMSNormOf<D> {
    fn init_with(_: &mut Generator) -> Self {
        RMSNormOf { weight: Tensor::ones(&[D::N], DType::F32).set_requires_grad(true), eps: None, _size: PhantomData }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
}

impl<D: Size> RMSNormOf<D> {
    fn forward_saving(&self, x: &Tensor) -> Result<(Tensor, RMSNormSaved)> {
        let d = D::N;
        if x.rank() == 0 || x.shape()[x.rank() - 1] != d {
            return Err(Error::Msg(format!("RMSNorm<{d}>: expected input [.., {d}] (last dim {d}), got {:?}", x.shape())));
        }
        if !x.dtype().is_float() {
            return Err(Error::Msg(format!("RMSNorm<{d}>: input must be a float tensor, got {}", x.dtype())));
        }
        let eps = self.eps.unwrap_or_else(|| machine_eps(x.dtype()));
        let rstd = x.try_mul(x)?.try_mean(&[-1], true)?.try_add_scalar(eps)?.try_rsqrt()?;
        let xhat = x.try_mul(&rstd)?;
        let y = xhat.try_mul(&self.weight)?;
        Ok((y, RMSNormSaved { xhat, rstd, weight: self.weight.clone() }))
    }

    /// Normalises `[.., D]`; gradients flow through the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_saving(x)?.0)
    }
}

impl<D: Size> StaticModel for RMSNormOf<D> {
    type Saved = RMSNormSaved;

    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
        no_grad(|| self.forward(one_input("RMSNorm", inputs)?))
    }

    fn forward_train(&self, inputs: &[Tensor], _input_grads: bool) -> Result<(Tensor, Self::Saved)> {
        no_grad(|| self.forward_saving(one_input("RMSNorm", inputs)?))
    }

    fn backward(s: &Self::Saved, grad: &Tensor, ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        // y = xhat·w with xhat = x·rstd: dx = rstd·(g·w - xhat·mean(g·w·xhat)) over the last dim.
        let g_xhat = grad.try_mul(&s.weight)?;
        let mean_gx = g_xhat.try_mul(&s.xhat)?.try_mean(&[-1], true)?;
        let dx = g_xhat.try_sub(&s.xhat.try_mul(&mean_gx)?)?.try_mul(&s.rstd)?;
        let lead: Vec<isize> = (0..grad.rank() as isize - 1).collect();
        let gx = grad.try_mul(&s.xhat)?;
        // With no leading dims there is nothing to sum (an empty dim list would sum all).
        let dw = if lead.is_empty() { gx } else { gx.try_sum(&lead, false)? };
        ready.report(0, &dw)?;
        Ok((vec![Some(dx)], vec![Some(dw)]))
    }
}
