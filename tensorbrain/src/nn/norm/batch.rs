//! Batch normalisation over the channel dim (dim 1): `BatchNorm1d<C>` for `[N, C]` or
//! `[N, C, L]`, `BatchNorm2d<C>` for `[N, C, H, W]`, as in PyTorch (momentum 0.1, eps 1e-5,
//! affine, tracking running statistics).
//!
//! Training mode normalises with the batch's statistics (biased variance) and updates the
//! running statistics in place (unbiased variance), under names PyTorch uses (`running_mean`,
//! `running_var`, `num_batches_tracked`) so checkpoints carry them. Eval mode normalises with
//! the running statistics.

use std::marker::PhantomData;

use crate::autograd::no_grad;
use crate::nn::static_model::one_input;
use crate::nn::{join, GradReady, Module, StaticModel};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Element, Error, Result, Tensor};
use tensorbrain_kernels::batch_norm::{batch_norm_train_backward, batch_norm_train_forward};
use tensorbrain_kernels::Float;

/// Batch norm over `SPATIAL` trailing dims after `[N, C]`; use the aliases [`BatchNorm1d`] and
/// [`BatchNorm2d`].
pub struct BatchNormOf<C: Size, const SPATIAL: usize> {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// i64 scalar: training steps taken.
    pub num_batches_tracked: Tensor,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
    pub eps: f64,
    training: bool,
    _channels: PhantomData<C>,
}

/// Batch norm over `[N, C]` or `[N, C, L]`.
pub type BatchNorm1d<const C: usize> = BatchNormOf<Const<C>, 1>;
/// Batch norm over `[N, C, H, W]`.
pub type BatchNorm2d<const C: usize> = BatchNormOf<Const<C>, 2>;
/// Batch norm with a literal channel count over `SPATIAL` trailing dims.
pub type BatchNorm<const C: usize, const SPATIAL: usize> = BatchNormOf<Const<C>, SPATIAL>;

/// What the generated backward of a `#[model]` needs from a batch norm call.
pub struct BatchNormSaved {
    /// The normalised input.
    xhat: Tensor,
    /// `1 / sqrt(var + eps)`, shaped `[1, C, 1, ..]`.
    rstd: Tensor,
    /// The weight, shaped `[1, C, 1, ..]`.
    weight: Tensor,
    /// Reduced dims (all but the channel dim).
    dims: Vec<isize>,
    /// Whether the batch's statistics were used (training) rather than the running ones.
    batch_stats: bool,
}

impl<C: Size, const SPATIAL: usize> Module for BatchNormOf<C, SPATIAL> {
    fn init_with(_: &mut Generator) -> Self {
        Self {
            weight: Tensor::ones(&[C::N], DType::F32).set_requires_grad(true),
            bias: Tensor::zeros(&[C::N], DType::F32).set_requires_grad(true),
            running_mean: Tensor::zeros(&[C::N], DType::F32),
            running_var: Tensor::ones(&[C::N], DType::F32),
            num_batches_tracked: Tensor::zeros(&[], DType::I64),
            momentum: 0.1,
            eps: 1e-5,
            training: true,
            _channels: PhantomData,
        }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
        f(&join(prefix, "num_batches_tracked"), &self.num_batches_tracked);
    }
    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
        f(&join(prefix, "num_batches_tracked"), &mut self.num_batches_tracked);
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn kind(&self) -> String {
        format!("BatchNorm{SPATIAL}d<{}>", C::N)
    }
}

impl<C: Size, const SPATIAL: usize> BatchNormOf<C, SPATIAL> {
    /// Whether the layer is in training mode (batch statistics, running-statistics updates).
    pub fn is_training(&self) -> bool {
        self.training
    }

    fn expected(&self) -> &'static str {
        if SPATIAL == 1 {
            "[N, C] or [N, C, L]"
        } else {
            "[N, C, H, W]"
        }
    }

    /// The dims statistics are taken over, after checking the input's shape.
    fn reduce_dims(&self, x: &Tensor) -> Result<Vec<isize>> {
        let rank_ok = if SPATIAL == 1 { x.rank() == 2 || x.rank() == 3 } else { x.rank() == SPATIAL + 2 };
        if !rank_ok || x.shape()[1] != C::N {
            return Err(Error::Msg(format!("{}: expected input {} with C = {}, got {:?}", self.kind(), self.expected(), C::N, x.shape())));
        }
        if !x.dtype().is_float() {
            return Err(Error::Msg(format!("{}: input must be a float tensor, got {}", self.kind(), x.dtype())));
        }
        Ok(std::iter::once(0).chain(2..x.rank() as isize).collect())
    }

    /// `[C]` reshaped to broadcast along dim 1 of a rank-`rank` tensor.
    fn channel_view(t: &Tensor, rank: usize) -> Result<Tensor> {
        let mut view = vec![1isize; rank];
        view[1] = C::N as isize;
        t.try_reshape(&view)
    }

    /// The forward pass with the current grad mode (the tape records it when it is on), and
    /// what a hand-written backward needs.
    fn forward_saving(&self, x: &Tensor) -> Result<(Tensor, BatchNormSaved)> {
        let dims = self.reduce_dims(x)?;
        let rank = x.rank();
        let count: usize = x.numel() / C::N;
        let (xhat, rstd) = if self.training {
            if count <= 1 {
                return Err(Error::Msg(format!(
                    "{}: training needs more than 1 value per channel to take batch statistics, got input {:?}",
                    self.kind(),
                    x.shape()
                )));
            }
            if let Some(fused) = self.forward_fused(x, &dims, count) {
                return fused;
            }
            let mean = x.try_mean(&dims, true)?;
            let centred = x.try_sub(&mean)?;
            let var = centred.try_mul(&centred)?.try_mean(&dims, true)?;
            self.update_running_stats(&mean, &var, count)?;
            let rstd = var.try_add_scalar(self.eps)?.try_rsqrt()?;
            (centred.try_mul(&rstd)?, rstd)
        } else {
            let mean = Self::channel_view(&self.running_mean.try_to_dtype(x.dtype())?, rank)?;
            let var = Self::channel_view(&self.running_var.try_to_dtype(x.dtype())?, rank)?;
            let rstd = var.try_add_scalar(self.eps)?.try_rsqrt()?;
            (x.try_sub(&mean)?.try_mul(&rstd)?, rstd)
        };
        let weight = Self::channel_view(&self.weight, rank)?;
        let y = xhat.try_mul(&weight)?.try_add(&Self::channel_view(&self.bias, rank)?)?;
        Ok((y, BatchNormSaved { xhat, rstd, weight, dims, batch_stats: self.training }))
    }

    /// The training-mode forward as one kernel (`kernels::batch_norm`) when nothing records
    /// it (the tape needs the eager ops to differentiate twice) and the dtypes are f32 or f64;
    /// `None` otherwise.
    fn forward_fused(&self, x: &Tensor, dims: &[isize], count: usize) -> Option<Result<(Tensor, BatchNormSaved)>> {
        // The fused kernel reads host memory: tensors on a GPU take the eager ops.
        if crate::autograd::is_grad_enabled() || self.weight.dtype() != x.dtype() || self.bias.dtype() != x.dtype() || x.device() != crate::tensor::Device::Cpu {
            return None;
        }
        match x.dtype() {
            DType::F32 => Some(self.forward_fused_as::<f32>(x, dims, count)),
            DType::F64 => Some(self.forward_fused_as::<f64>(x, dims, count)),
            _ => None,
        }
    }

    fn forward_fused_as<T: Float + Element>(&self, x: &Tensor, dims: &[isize], count: usize) -> Result<(Tensor, BatchNormSaved)> {
        let (shape, rank) = (x.shape().to_vec(), x.rank());
        let nc = [shape[0], C::N, count / shape[0].max(1)];
        let f = x.with_contiguous::<T, _>(|xd| {
            self.weight.with_contiguous::<T, _>(|w| self.bias.with_contiguous::<T, _>(|b| batch_norm_train_forward(xd, nc, w, b, self.eps)))
        })???;
        self.update_running_stats(&Tensor::from_vec(f.mean, &[C::N]), &Tensor::from_vec(f.var, &[C::N]), count)?;
        let rstd = Self::channel_view(&Tensor::from_vec(f.rstd.iter().map(|&r| <T as Float>::from_f64(r)).collect::<Vec<T>>(), &[C::N]), rank)?;
        let saved = BatchNormSaved {
            xhat: Tensor::from_vec(f.xhat, &shape),
            rstd,
            weight: Self::channel_view(&self.weight, rank)?,
            dims: dims.to_vec(),
            batch_stats: true,
        };
        Ok((Tensor::from_vec(f.y, &shape), saved))
    }

    /// `running = (1 - momentum)·running + momentum·batch`, with the unbiased variance.
    fn update_running_stats(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        no_grad(|| {
            let m = self.momentum;
            let dtype = self.running_mean.dtype();
            let mean = mean.try_reshape(&[C::N as isize])?.try_to_dtype(dtype)?;
            let unbiased = var.try_reshape(&[C::N as isize])?.try_mul_scalar(count as f64 / (count - 1) as f64)?.try_to_dtype(dtype)?;
            self.running_mean.try_copy_from(&self.running_mean.try_mul_scalar(1.0 - m)?.try_add(&mean.try_mul_scalar(m)?)?)?;
            self.running_var.try_copy_from(&self.running_var.try_mul_scalar(1.0 - m)?.try_add(&unbiased.try_mul_scalar(m)?)?)?;
            let steps = self.num_batches_tracked.item::<i64>() + 1;
            self.num_batches_tracked.try_copy_from(&Tensor::full(&[], steps as f64, DType::I64))
        })
    }

    /// Normalises `x` (`[N, C]`/`[N, C, L]` for 1d, `[N, C, H, W]` for 2d). Gradients flow
    /// through the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_saving(x)?.0)
    }
}

impl<C: Size, const SPATIAL: usize> StaticModel for BatchNormOf<C, SPATIAL> {
    type Saved = BatchNormSaved;

    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
        no_grad(|| self.forward(one_input(&self.kind(), inputs)?))
    }

    fn forward_train(&self, inputs: &[Tensor], _input_grads: bool) -> Result<(Tensor, Self::Saved)> {
        no_grad(|| self.forward_saving(one_input(&self.kind(), inputs)?))
    }

    fn backward(s: &Self::Saved, grad: &Tensor, ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        if let Some(fused) = backward_fused(s, grad) {
            let (dx, params) = fused?;
            ready.report_all(&params)?;
            return Ok((vec![Some(dx)], params));
        }
        let g_xhat = grad.try_mul(&s.weight)?;
        let dx = if s.batch_stats {
            // d/dx of (x - mean)·rstd with batch statistics:
            // rstd·(g - mean(g) - xhat·mean(g·xhat)), per channel.
            let mean_g = g_xhat.try_mean(&s.dims, true)?;
            let mean_gx = g_xhat.try_mul(&s.xhat)?.try_mean(&s.dims, true)?;
            g_xhat.try_sub(&mean_g)?.try_sub(&s.xhat.try_mul(&mean_gx)?)?.try_mul(&s.rstd)?
        } else {
            g_xhat.try_mul(&s.rstd)?
        };
        let params = vec![Some(grad.try_mul(&s.xhat)?.try_sum(&s.dims, false)?), Some(grad.try_sum(&s.dims, false)?)];
        ready.report_all(&params)?;
        Ok((vec![Some(dx)], params))
    }
}

/// The batch-statistics backward as one kernel (`kernels::batch_norm`) when nothing records it
/// and every operand is f32 or f64 of one dtype; `None` otherwise.
fn backward_fused(s: &BatchNormSaved, grad: &Tensor) -> Option<Result<(Tensor, Vec<Option<Tensor>>)>> {
    let dtype = grad.dtype();
    let same = [&s.xhat, &s.rstd, &s.weight].iter().all(|t| t.dtype() == dtype);
    if !s.batch_stats || crate::autograd::is_grad_enabled() || !same || grad.shape() != s.xhat.shape() || grad.rank() < 2 || grad.device() != crate::tensor::Device::Cpu {
        return None;
    }
    match dtype {
        DType::F32 => Some(backward_fused_as::<f32>(s, grad)),
        DType::F64 => Some(backward_fused_as::<f64>(s, grad)),
        _ => None,
    }
}

fn backward_fused_as<T: Float + Element>(s: &BatchNormSaved, grad: &Tensor) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    let shape = grad.shape().to_vec();
    let (n, c) = (shape[0], shape[1]);
    let nc = [n, c, shape[2..].iter().product()];
    let b = grad.with_contiguous::<T, _>(|g| {
        s.xhat.with_contiguous::<T, _>(|h| s.weight.with_contiguous::<T, _>(|w| s.rstd.with_contiguous::<T, _>(|r| batch_norm_train_backward(g, h, nc, w, r))))
    })????;
    let params = vec![Some(Tensor::from_vec(b.dweight, &[c])), Some(Tensor::from_vec(b.dbias, &[c]))];
    Ok((Tensor::from_vec(b.dx, &shape), params))
}
