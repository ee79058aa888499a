//! Robust regression and count losses: `SmoothL1Loss`, `HuberLoss` and `PoissonNllLoss`, with
//! PyTorch's formulas and reductions.

use super::{check_pair, reduce, Reduction};
use crate::tensor::{Error, Result, Tensor};

/// `F.smooth_l1_loss`: `0.5 d² / beta` where `|d| < beta`, else `|d| - 0.5 beta`
/// (`beta = 0` is the L1 loss).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothL1Loss {
    pub beta: f64,
    pub reduction: Reduction,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss { beta: 1.0, reduction: Reduction::Mean }
    }
}

impl SmoothL1Loss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "smooth_l1_loss";
        check_pair(OP, input, target)?;
        if !(self.beta >= 0.0) {
            return Err(Error::Msg(format!("{OP}: beta must be >= 0, got {}", self.beta)));
        }
        let d = input.try_sub(target)?;
        let a = d.try_abs()?;
        if self.beta == 0.0 {
            return reduce(a, self.reduction);
        }
        let small = a.try_lt(&a.scalar_like(self.beta)?)?;
        let quad = d.try_square()?.try_mul_scalar(0.5 / self.beta)?;
        let lin = a.try_sub_scalar(0.5 * self.beta)?;
        reduce(Tensor::try_where_cond(&small, &quad, &lin)?, self.reduction)
    }
}

/// `F.huber_loss`: `0.5 d²` where `|d| < delta`, else `delta (|d| - 0.5 delta)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HuberLoss {
    pub delta: f64,
    pub reduction: Reduction,
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss { delta: 1.0, reduction: Reduction::Mean }
    }
}

impl HuberLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn delta(mut self, delta: f64) -> Self {
        self.delta = delta;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "huber_loss";
        check_pair(OP, input, target)?;
        if !(self.delta > 0.0) {
            return Err(Error::Msg(format!("{OP}: delta must be > 0, got {}", self.delta)));
        }
        let d = input.try_sub(target)?;
        let a = d.try_abs()?;
        let small = a.try_lt(&a.scalar_like(self.delta)?)?;
        let quad = d.try_square()?.try_mul_scalar(0.5)?;
        let lin = a.try_sub_scalar(0.5 * self.delta)?.try_mul_scalar(self.delta)?;
        reduce(Tensor::try_where_cond(&small, &quad, &lin)?, self.reduction)
    }
}

/// `F.poisson_nll_loss`: with `log_input`, `exp(x) - t x`; else `x - t log(x + eps)`. With
/// `full`, Stirling's term `t log t - t + 0.5 log(2 pi t)` is added where `t > 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoissonNllLoss {
    pub log_input: bool,
    pub full: bool,
    pub eps: f64,
    pub reduction: Reduction,
}

impl Default for PoissonNllLoss {
    fn default() -> Self {
        PoissonNllLoss { log_input: true, full: false, eps: 1e-8, reduction: Reduction::Mean }
    }
}

impl PoissonNllLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn log_input(mut self, log_input: bool) -> Self {
        self.log_input = log_input;
        self
    }
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "poisson_nll_loss";
        check_pair(OP, input, target)?;
        let mut loss = if self.log_input {
            input.try_exp()?.try_sub(&target.try_mul(input)?)?
        } else {
            input.try_sub(&target.try_mul(&input.try_add_scalar(self.eps)?.try_log()?)?)?
        };
        if self.full {
            // The target-only term, where t > 1 (0 elsewhere), as PyTorch adds it.
            let big = target.try_gt(&target.scalar_like(1.0)?)?;
            let safe = Tensor::try_where_cond(&big, target, &target.scalar_like(2.0)?)?;
            let stirling = safe
                .try_mul(&safe.try_log()?)?
                .try_sub(&safe)?
                .try_add(&safe.try_mul_scalar(2.0 * std::f64::consts::PI)?.try_log()?.try_mul_scalar(0.5)?)?;
            loss = loss.try_add(&Tensor::try_where_cond(&big, &stirling, &target.scalar_like(0.0)?)?)?;
        }
        reduce(loss, self.reduction)
    }
}
