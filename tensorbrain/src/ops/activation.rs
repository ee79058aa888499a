//! More activations with PyTorch's forward formulas and derivatives (including their choices at
//! the kinks): `hardtanh`, `relu6`, `selu`, `celu`, `mish`, `hardswish`, `hardsigmoid`,
//! `logsigmoid`, `softsign`, and `softplus` with `beta` and `threshold`.
//!
//! Not in the graph IR (so not yet usable in a `#[model]` forward); each records its backward
//! with differentiable ops, so double backward works.

use tensorbrain_kernels::strided::map_vec;
use tensorbrain_kernels::Float;

use super::unary::{math_map, OpMath};
use super::{float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// SELU's constants (Klambauer et al.), as in PyTorch.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Tensor {
    /// `cond ? g : 0`.
    fn keep_where(g: &Tensor, cond: &Tensor) -> Result<Tensor> {
        Tensor::try_where_cond(cond, g, &g.scalar_like(0.0)?)
    }

    fn gt_scalar(&self, v: f64) -> Result<Tensor> {
        self.try_gt(&self.scalar_like(v)?)
    }

    fn lt_scalar(&self, v: f64) -> Result<Tensor> {
        self.try_lt(&self.scalar_like(v)?)
    }

    /// Clamps into `[min_val, max_val]` (`F.hardtanh`); the gradient is 1 strictly inside and
    /// 0 at the bounds, as in PyTorch.
    pub fn try_hardtanh(&self, min_val: f64, max_val: f64) -> Result<Tensor> {
        if !(min_val <= max_val) {
            return Err(Error::invalid("hardtanh", self.shape(), format!("min_val ({min_val}) must not exceed max_val ({max_val})")));
        }
        let out = math_map!(self, "hardtanh", |x| {
            let (lo, hi) = (M::from_f64(min_val), M::from_f64(max_val));
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        })?;
        let x = self.clone();
        Ok(record("hardtanh", out, &[self], move |g, _| {
            let inside = x.gt_scalar(min_val)?.try_logical_and(&x.lt_scalar(max_val)?)?;
            Ok(vec![Some(Tensor::keep_where(g, &inside)?)])
        }))
    }

    /// `min(max(x, 0), 6)` (`F.relu6`).
    pub fn try_relu6(&self) -> Result<Tensor> {
        self.try_hardtanh(0.0, 6.0)
    }

    /// `scale * (x > 0 ? x : alpha * (e^x - 1))` with PyTorch's constants (`F.selu`); the
    /// gradient at 0 is `scale * alpha`.
    pub fn try_selu(&self) -> Result<Tensor> {
        let out = math_map!(self, "selu", |x| {
            let y = if x > M::zero() { x } else { M::from_f64(SELU_ALPHA) * x.exp_m1() };
            M::from_f64(SELU_SCALE) * y
        })?;
        let x = self.clone();
        Ok(record("selu", out, &[self], move |g, _| Ok(vec![Some(elu_like_backward(&x, g, SELU_ALPHA * SELU_SCALE, 1.0, SELU_SCALE)?)])))
    }

    /// `x > 0 ? x : alpha * (e^(x/alpha) - 1)` (`F.celu`); the gradient at 0 is 1.
    pub fn try_celu(&self, alpha: f64) -> Result<Tensor> {
        if alpha == 0.0 {
            return Err(Error::invalid("celu", self.shape(), "alpha must not be 0 (it divides the input)"));
        }
        let out = math_map!(self, "celu", |x| if x > M::zero() { x } else { M::from_f64(alpha) * (x / M::from_f64(alpha)).exp_m1() })?;
        let x = self.clone();
        Ok(record("celu", out, &[self], move |g, _| Ok(vec![Some(elu_like_backward(&x, g, 1.0, 1.0 / alpha, 1.0)?)])))
    }

    /// `x * tanh(softplus(x))` (`F.mish`).
    pub fn try_mish(&self) -> Result<Tensor> {
        let out = math_map!(self, "mish", |x| x * x.exp().ln_1p().tanh())?;
        let x = self.clone();
        Ok(record("mish", out, &[self], move |g, _| {
            // tanh(sp) + x * sigmoid(x) * (1 - tanh(sp)²), as PyTorch's mish_backward.
            let t = x.try_softplus()?.try_tanh()?;
            let d = x.try_sigmoid()?.try_mul(&x)?.try_mul(&t.try_square()?.try_rsub_scalar(1.0)?)?.try_add(&t)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    /// `x * relu6(x + 3) / 6` (`F.hardswish`); PyTorch's gradient: 0 at or below -3, `x / 3 +
    /// 1/2` strictly inside (-3, 3), 1 at or above 3 (PyTorch 2.15's rule at the kinks).
    pub fn try_hardswish(&self) -> Result<Tensor> {
        let out = math_map!(self, "hardswish", |x| {
            let three = M::from_f64(3.0);
            if x < -three {
                M::zero()
            } else if x > three {
                x
            } else {
                x * (x + three) / M::from_f64(6.0)
            }
        })?;
        let x = self.clone();
        Ok(record("hardswish", out, &[self], move |g, _| {
            let mid = g.try_mul(&x.try_div_scalar(3.0)?.try_add_scalar(0.5)?)?;
            let d = Tensor::try_where_cond(&x.lt_scalar(3.0)?.try_logical_not()?, g, &mid)?;
            Ok(vec![Some(Tensor::keep_where(&d, &x.gt_scalar(-3.0)?)?)])
        }))
    }

    /// `relu6(x + 3) / 6` (`F.hardsigmoid`); gradient `1/6` strictly inside (-3, 3), else 0.
    /// The `1/6` of the gradient is rounded to f32 for every dtype, as PyTorch's CPU kernel
    /// does (its constant is the float literal `1.0f / 6.0f`), so f64 gradients match it.
    pub fn try_hardsigmoid(&self) -> Result<Tensor> {
        let out = math_map!(self, "hardsigmoid", |x| {
            let three = M::from_f64(3.0);
            if x <= -three {
                M::zero()
            } else if x >= three {
                M::one()
            } else {
                x / M::from_f64(6.0) + M::from_f64(0.5)
            }
        })?;
        let x = self.clone();
        Ok(record("hardsigmoid", out, &[self], move |g, _| {
            let inside = x.gt_scalar(-3.0)?.try_logical_and(&x.lt_scalar(3.0)?)?;
            Ok(vec![Some(Tensor::keep_where(&g.try_mul_scalar((1.0f32 / 6.0) as f64)?, &inside)?)])
        }))
    }

    /// `log(sigmoid(x))`, computed as `min(x, 0) - log1p(e^-|x|)` so it never overflows
    /// (`F.logsigmoid`).
    pub fn try_logsigmoid(&self) -> Result<Tensor> {
        let out = math_map!(self, "logsigmoid", |x| x.min(M::zero()) - (-x.abs()).exp().ln_1p())?;
        let x = self.clone();
        Ok(record("logsigmoid", out, &[self], move |g, _| Ok(vec![Some(g.try_mul(&x.try_neg()?.try_sigmoid()?)?)])))
    }

    /// `x / (1 + |x|)` (`F.softsign`).
    pub fn try_softsign(&self) -> Result<Tensor> {
        self.try_div(&self.try_abs()?.try_add_scalar(1.0)?)
    }

    /// `log(1 + e^(beta x)) / beta`, and `x` where `beta * x > threshold`
    /// (`F.softplus(x, beta, threshold)`).
    pub fn try_softplus_with(&self, beta: f64, threshold: f64) -> Result<Tensor> {
        if beta == 1.0 && threshold == 20.0 {
            return self.try_softplus();
        }
        if beta == 0.0 {
            return Err(Error::invalid("softplus", self.shape(), "beta must not be 0 (it divides the result)"));
        }
        let out = math_map!(self, "softplus", |x| {
            let bx = x * M::from_f64(beta);
            if bx > M::from_f64(threshold) {
                x
            } else {
                bx.exp().ln_1p() / M::from_f64(beta)
            }
        })?;
        let x = self.clone();
        Ok(record("softplus", out, &[self], move |g, _| {
            let bx = x.try_mul_scalar(beta)?;
            let linear = bx.gt_scalar(threshold)?;
            Ok(vec![Some(Tensor::try_where_cond(&linear, g, &g.try_mul(&bx.try_sigmoid()?)?)?)])
        }))
    }
}

/// The gradient of an ELU-shaped op `scale * (x > 0 ? x : c * (e^(s x) - 1))`, as PyTorch's
/// `elu_backward` on the input: `x <= 0 ? g * neg_coef * e^(s x) : g * scale`, where
/// `neg_coef = scale * c * s` is passed premultiplied. The exponent takes `min(x, 0)` so the
/// unused branch never overflows.
fn elu_like_backward(x: &Tensor, g: &Tensor, neg_coef: f64, input_scale: f64, scale: f64) -> Result<Tensor> {
    let nonpos = x.try_le(&x.scalar_like(0.0)?)?;
    let e = Tensor::try_where_cond(&nonpos, x, &x.scalar_like(0.0)?)?.try_mul_scalar(input_scale)?.try_exp()?;
    let neg = g.try_mul(&e)?.try_mul_scalar(neg_coef)?;
    Tensor::try_where_cond(&nonpos, &neg, &g.try_mul_scalar(scale)?)
}

panicking! {
    /// Clamps into `[min_val, max_val]` (`F.hardtanh`).
    fn hardtanh / try_hardtanh(&self, min_val: f64, max_val: f64) -> Tensor;
    /// `min(max(x, 0), 6)` (`F.relu6`).
    fn relu6 / try_relu6(&self) -> Tensor;
    /// Scaled ELU (`F.selu`).
    fn selu / try_selu(&self) -> Tensor;
    /// Continuously differentiable ELU (`F.celu`).
    fn celu / try_celu(&self, alpha: f64) -> Tensor;
    /// `x * tanh(softplus(x))` (`F.mish`).
    fn mish / try_mish(&self) -> Tensor;
    /// `x * relu6(x + 3) / 6` (`F.hardswish`).
    fn hardswish / try_hardswish(&self) -> Tensor;
    /// `relu6(x + 3) / 6` (`F.hardsigmoid`).
    fn hardsigmoid / try_hardsigmoid(&self) -> Tensor;
    /// `log(sigmoid(x))`, stable (`F.logsigmoid`).
    fn logsigmoid / try_logsigmoid(&self) -> Tensor;
    /// `x / (1 + |x|)` (`F.softsign`).
    fn softsign / try_softsign(&self) -> Tensor;
    /// `F.softplus(x, beta, threshold)`.
    fn softplus_with / try_softplus_with(&self, beta: f64, threshold: f64) -> Tensor;
}
