//! Cumulative ops along one dim: `cumsum`, `cumprod` and `logcumsumexp`, with PyTorch's
//! gradients (exact for `cumprod` at zeros, and computed in log space for `logcumsumexp`).

use tensorbrain_kernels::scan::{cumprod_backward, scan};
use tensorbrain_kernels::Float;

use super::{float_dispatch, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::layout::normalize_dim;
use crate::tensor::{DType, Element, Error, Result, StorageElement, Tensor};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scan {
    Sum,
    Prod,
    LogSumExp,
}

/// `log(e^a + e^b)`, exact for equal infinities (PyTorch's `_log_add_exp_helper`).
#[inline]
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo != hi || lo.is_finite() {
        hi + (lo - hi).exp().ln_1p()
    } else {
        a
    }
}

impl Tensor {
    /// `(dim, len, inner)` of a scan along `dim` (a 0-d tensor scans as one element).
    pub(crate) fn axis_split(&self, op: &'static str, dim: isize) -> Result<(usize, usize, usize)> {
        let d = normalize_dim(op, dim, self.rank())?;
        let len = self.shape().get(d).copied().unwrap_or(1);
        let inner = self.shape().iter().skip(d + 1).product();
        Ok((d, len, inner))
    }

    /// The forward scan (no gradient recorded). Integers and bools sum and multiply in i64.
    fn scan_values(&self, op: &'static str, dim: isize, kind: Scan, reverse: bool) -> Result<Tensor> {
        let (_, len, inner) = self.axis_split(op, dim)?;
        if !self.dtype().is_float() {
            if kind == Scan::LogSumExp {
                return Err(Error::DType { op, got: self.dtype(), expected: "a floating-point dtype" });
            }
            let x = self.try_to_dtype(DType::I64)?;
            let v = x.with_contiguous::<i64, _>(|v| match kind {
                Scan::Sum => scan(v, len, inner, reverse, 0i64, |a, x| a.wrapping_add(x), |a| a),
                _ => scan(v, len, inner, reverse, 1i64, |a, x| a.wrapping_mul(x), |a| a),
            })?;
            return Ok(Tensor::from_vec(v, self.shape()));
        }
        float_dispatch!(op, self.dtype(), T => {
            let v = self.with_contiguous::<T, _>(|v| match kind {
                // Accumulated in f64, as PyTorch's CPU kernels accumulate floats in double.
                Scan::Sum => scan(v, len, inner, reverse, 0.0f64, |a, x: T| a + Float::to_f64(x), <T as Float>::from_f64),
                Scan::Prod => scan(v, len, inner, reverse, 1.0f64, |a, x: T| a * Float::to_f64(x), <T as Float>::from_f64),
                Scan::LogSumExp => scan(v, len, inner, reverse, f64::NEG_INFINITY, |a, x: T| log_add_exp(a, Float::to_f64(x)), <T as Float>::from_f64),
            })?;
            Ok(Tensor::from_storage(T::wrap(v), self.shape()))
        })
    }

    /// Running sums along `dim` (`torch.cumsum`); integers and bools give i64.
    pub fn try_cumsum(&self, dim: isize) -> Result<Tensor> {
        self.cumsum_dir(dim, false)
    }

    /// Sums from each position to the end along `dim` (the adjoint of `cumsum`).
    fn cumsum_dir(&self, dim: isize, reverse: bool) -> Result<Tensor> {
        let out = self.scan_values("cumsum", dim, Scan::Sum, reverse)?;
        Ok(record("cumsum", out, &[self], move |g, _| Ok(vec![Some(g.cumsum_dir(dim, !reverse)?)])))
    }

    /// Running products along `dim` (`torch.cumprod`); integers and bools give i64. The
    /// gradient is exact where the input holds zeros.
    pub fn try_cumprod(&self, dim: isize) -> Result<Tensor> {
        let out = self.scan_values("cumprod", dim, Scan::Prod, false)?;
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("cumprod", out, &[self], move |g, _| {
            let has_zero = x.try_eq(&x.scalar_like(0.0)?)?.try_sum_all()?.try_item::<i64>()? > 0;
            if has_zero {
                return Ok(vec![Some(cumprod_grad_at_zeros(&x, g, dim)?)]);
            }
            // sum_{k >= i} g_k out_k / x_i, differentiable again.
            let y = if is_grad_enabled() { x.try_cumprod(dim)? } else { saved.clone() };
            Ok(vec![Some(g.try_mul(&y)?.cumsum_dir(dim, true)?.try_div(&x)?)])
        }))
    }

    /// `log(cumsum(exp(x)))` along `dim`, computed stably (`torch.logcumsumexp`).
    pub fn try_logcumsumexp(&self, dim: isize) -> Result<Tensor> {
        self.logcumsumexp_dir(dim, false)
    }

    fn logcumsumexp_dir(&self, dim: isize, reverse: bool) -> Result<Tensor> {
        let out = self.scan_values("logcumsumexp", dim, Scan::LogSumExp, reverse)?;
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("logcumsumexp", out, &[self], move |g, _| {
            // grad_j = sum_{i >= j} g_i e^(x_j - out_i), split by the sign of g and summed in
            // log space (PyTorch's logcumsumexp_backward), so no exponential overflows.
            let y = if is_grad_enabled() { x.logcumsumexp_dir(dim, reverse)? } else { saved.clone() };
            let part = |sign: f64| -> Result<Tensor> {
                let gs = g.try_mul_scalar(sign)?;
                let keep = gs.try_gt(&gs.scalar_like(0.0)?)?;
                let safe = Tensor::try_where_cond(&keep, &gs, &gs.scalar_like(1.0)?)?;
                let log_g = Tensor::try_where_cond(&keep, &safe.try_log()?, &gs.scalar_like(f64::NEG_INFINITY)?)?;
                log_g.try_sub(&y)?.logcumsumexp_dir(dim, !reverse)?.try_add(&x)?.try_exp()
            };
            // A sign with no entries contributes exactly 0; skipping it also keeps its all -inf
            // intermediate (whose own derivative is NaN) out of double backward.
            let has = |sign: f64| -> Result<bool> { Ok(g.try_mul_scalar(sign)?.try_gt(&g.scalar_like(0.0)?)?.try_any(&[], false)?.item::<bool>()) };
            let grad = match (has(1.0)?, has(-1.0)?) {
                (true, true) => part(1.0)?.try_sub(&part(-1.0)?)?,
                (true, false) => part(1.0)?,
                (false, true) => part(-1.0)?.try_neg()?,
                (false, false) => g.try_mul_scalar(0.0)?,
            };
            Ok(vec![Some(grad)])
        }))
    }
}

/// The first-order gradient of `cumprod` when the input holds zeros (computed in f64 by the
/// kernel); asking for its derivative is an error.
fn cumprod_grad_at_zeros(x: &Tensor, g: &Tensor, dim: isize) -> Result<Tensor> {
    let (_, len, inner) = x.axis_split("cumprod", dim)?;
    let xv = x.try_contiguous()?.to_vec::<f64>();
    let gv = g.try_contiguous()?.to_vec::<f64>();
    let v = cumprod_backward(&xv, &gv, len, inner);
    let out = float_dispatch!("cumprod", x.dtype(), T => {
        Tensor::from_vec(v.into_iter().map(<T as Element>::from_f64).collect::<Vec<T>>(), x.shape())
    });
    Ok(record("cumprod_backward", out, &[x, g], |_, _| {
        Err(Error::Autograd("cumprod: second derivatives at inputs that hold zeros are not implemented".into()))
    }))
}

panicking! {
    /// Running sums along `dim` (`torch.cumsum`).
    fn cumsum / try_cumsum(&self, dim: isize) -> Tensor;
    /// Running products along `dim` (`torch.cumprod`).
    fn cumprod / try_cumprod(&self, dim: isize) -> Tensor;
    /// `log(cumsum(exp(x)))` along `dim`, stably (`torch.logcumsumexp`).
    fn logcumsumexp / try_logcumsumexp(&self, dim: isize) -> Tensor;
}
