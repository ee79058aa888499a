//! Instance normalisation (`torch.nn.InstanceNorm1d/2d`): each sample's channel normalised
//! over its spatial positions. PyTorch's defaults: eps 1e-5, momentum 0.1, no affine and no
//! running statistics; [`InstanceNormOf::with_affine`] and
//! [`InstanceNormOf::tracking_running_stats`] turn them on, under PyTorch's names (`weight`,
//! `bias`, `running_mean`, `running_var`, `num_batches_tracked`) so state dicts load.
//!
//! With running statistics, training mode normalises with the instance statistics and folds
//! their mean over the batch into the running ones; eval mode normalises with the running ones.
//! Like PyTorch, instance norm never advances `num_batches_tracked` (it is saved and loaded).

use std::marker::PhantomData;

use crate::nn::functional::{try_instance_norm, RunningStats};
use crate::nn::{join, Forward, Module};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Error, Result, Tensor};

/// Instance norm of `[N, C, L]` (or unbatched `[C, L]`).
pub type InstanceNorm1d<const C: usize> = InstanceNormOf<Const<C>, 1>;
/// Instance norm of `[N, C, H, W]` (or unbatched `[C, H, W]`).
pub type InstanceNorm2d<const C: usize> = InstanceNormOf<Const<C>, 2>;

/// Instance norm over `SPATIAL` trailing dims after `[N, C]`; use the aliases
/// [`InstanceNorm1d`] and [`InstanceNorm2d`].
pub struct InstanceNormOf<C: Size, const SPATIAL: usize> {
    /// Per-channel scale, `[C]`, with affine.
    pub weight: Option<Tensor>,
    /// Per-channel shift, `[C]`, with affine.
    pub bias: Option<Tensor>,
    /// `[C]`, when tracking running statistics.
    pub running_mean: Option<Tensor>,
    /// `[C]`, when tracking running statistics.
    pub running_var: Option<Tensor>,
    /// i64 scalar, when tracking running statistics (kept for state-dict compatibility).
    pub num_batches_tracked: Option<Tensor>,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
    pub eps: f64,
    training: bool,
    _channels: PhantomData<C>,
}

impl<C: Size, const SPATIAL: usize> InstanceNormOf<C, SPATIAL> {
    /// With a learned per-channel scale (ones) and shift (zeros): `affine=True`.
    pub fn with_affine(mut self) -> Self {
        self.weight = Some(Tensor::ones(&[C::N], DType::F32).set_requires_grad(true));
        self.bias = Some(Tensor::zeros(&[C::N], DType::F32).set_requires_grad(true));
        self
    }

    /// With running statistics (mean 0, variance 1): `track_running_stats=True`.
    pub fn tracking_running_stats(mut self) -> Self {
        self.running_mean = Some(Tensor::zeros(&[C::N], DType::F32));
        self.running_var = Some(Tensor::ones(&[C::N], DType::F32));
        self.num_batches_tracked = Some(Tensor::zeros(&[], DType::I64));
        self
    }

    /// The layer with another `eps` (added to the variance).
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Normalises `[N, C, *spatial]` or the unbatched `[C, *spatial]`; gradients flow through
    /// the tape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let batched = x.rank() == SPATIAL + 2;
        let channels = if batched || x.rank() == SPATIAL + 1 { x.shape()[batched as usize] } else { usize::MAX };
        if channels != C::N {
            let spatial = if SPATIAL == 1 { "L" } else { "H, W" };
            return Err(Error::Msg(format!("{}: expected input [N, {c}, {spatial}] or [{c}, {spatial}], got {:?}", self.kind(), x.shape(), c = C::N)));
        }
        if !batched {
            return self.forward(&x.try_unsqueeze(0)?)?.try_squeeze(Some(0));
        }
        let running = match (&self.running_mean, &self.running_var) {
            (Some(mean), Some(var)) => Some(RunningStats { mean, var }),
            _ => None,
        };
        let use_input_stats = self.training || running.is_none();
        try_instance_norm(x, running, self.weight.as_ref(), self.bias.as_ref(), use_input_stats, self.momentum, self.eps)
    }
}

impl<C: Size, const SPATIAL: usize> Module for InstanceNormOf<C, SPATIAL> {
    fn init_with(_: &mut Generator) -> Self {
        InstanceNormOf {
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            num_batches_tracked: None,
            momentum: 0.1,
            eps: 1e-5,
            training: true,
            _channels: PhantomData,
        }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, t) in [("weight", &self.weight), ("bias", &self.bias)] {
            if let Some(t) = t {
                f(&join(prefix, name), t);
            }
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (name, t) in [("weight", &mut self.weight), ("bias", &mut self.bias)] {
            if let Some(t) = t {
                f(&join(prefix, name), t);
            }
        }
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, t) in [("running_mean", &self.running_mean), ("running_var", &self.running_var), ("num_batches_tracked", &self.num_batches_tracked)] {
            if let Some(t) = t {
                f(&join(prefix, name), t);
            }
        }
    }
    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (name, t) in [
            ("running_mean", &mut self.running_mean),
            ("running_var", &mut self.running_var),
            ("num_batches_tracked", &mut self.num_batches_tracked),
        ] {
            if let Some(t) = t {
                f(&join(prefix, name), t);
            }
        }
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn kind(&self) -> String {
        format!("InstanceNorm{SPATIAL}d<{}>", C::N)
    }
}

impl<C: Size, const SPATIAL: usize> Forward for InstanceNormOf<C, SPATIAL> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        InstanceNormOf::forward(self, x)
    }
}
