//! Gradient clipping (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`).

use crate::ops::float_dispatch;
use crate::tensor::{Element, Error, Result, StorageElement, Tensor};

/// Scales the gradients of `params` so that their joint `norm_type`-norm (over all gradient
/// elements together) is at most `max_norm`, and returns the norm before clipping, like
/// `torch.nn.utils.clip_grad_norm_`: the factor is `max_norm / (total + 1e-6)`, applied when it
/// is below 1 (or NaN). `norm_type` is any p > 0 or `f64::INFINITY` (max-abs). Parameters
/// without a gradient are ignored; with none at all the norm is 0.
///
/// The norm is accumulated in f64. Clipped gradients are replaced by new tensors (PyTorch
/// scales them in place), so storage shared between gradients is never scaled twice.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64, norm_type: f64) -> Result<f64> {
    const OP: &str = "clip_grad_norm";
    if !(norm_type > 0.0) {
        return Err(Error::Msg(format!("{OP}: norm_type must be > 0 or infinity, got {norm_type}")));
    }
    if max_norm.is_nan() {
        return Err(Error::Msg(format!("{OP}: max_norm is NaN")));
    }
    let grads: Vec<(&Tensor, Tensor)> = params.iter().filter_map(|p| p.grad().map(|g| (p, g))).collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    let inf = norm_type == f64::INFINITY;
    let mut acc = 0.0f64;
    for (_, g) in &grads {
        let part = float_dispatch!(OP, g.dtype(), T => g.with_contiguous::<T, _>(|s| {
            if inf {
                s.iter().fold(0.0f64, |m, &x| {
                    let a = x.to_f64().abs();
                    if a > m || a.is_nan() { a } else { m }
                })
            } else if norm_type == 2.0 {
                s.iter().map(|&x| { let x = x.to_f64(); x * x }).sum::<f64>()
            } else if norm_type == 1.0 {
                s.iter().map(|&x| x.to_f64().abs()).sum::<f64>()
            } else {
                s.iter().map(|&x| x.to_f64().abs().powf(norm_type)).sum::<f64>()
            }
        })?);
        acc = if inf { if part > acc || part.is_nan() { part } else { acc } } else { acc + part };
    }
    let total = if inf {
        acc
    } else if norm_type == 2.0 {
        acc.sqrt()
    } else if norm_type == 1.0 {
        acc
    } else {
        acc.powf(1.0 / norm_type)
    };
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 || coef.is_nan() {
        for (p, g) in &grads {
            // Both factors are exact in f64, so one rounding gives PyTorch's product in the
            // gradient's dtype.
            let c = round_to(OP, g.dtype(), coef)?;
            p.set_grad(Some(map_grad(OP, g, |x| x * c)?));
        }
    }
    Ok(total)
}

/// Clamps every gradient element of `params` into `[-clip_value, clip_value]`
/// (`torch.nn.utils.clip_grad_value_`); `clip_value` must be >= 0. Gradients are replaced by
/// new tensors.
pub fn clip_grad_value(params: &[Tensor], clip_value: f64) -> Result<()> {
    const OP: &str = "clip_grad_value";
    if !(clip_value >= 0.0) {
        return Err(Error::Msg(format!("{OP}: clip_value must be >= 0, got {clip_value}")));
    }
    for p in params {
        if let Some(g) = p.grad() {
            let c = round_to(OP, g.dtype(), clip_value)?;
            // torch.clamp: NaN stays NaN.
            p.set_grad(Some(map_grad(OP, &g, |x| if x > c { c } else if x < -c { -c } else { x })?));
        }
    }
    Ok(())
}

/// `f` applied to each element of a float gradient (computed in f64, rounded once to the
/// gradient's dtype), as a new contiguous tensor of the same dtype.
fn map_grad(op: &'static str, g: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    let shape = g.shape().to_vec();
    let out = float_dispatch!(op, g.dtype(), T => {
        let v: Vec<T> = g.with_contiguous::<T, _>(|s| s.iter().map(|&x| T::from_f64(f(x.to_f64()))).collect())?;
        Tensor::from_storage(<T as StorageElement>::wrap(v), &shape)
    });
    Ok(out)
}

/// `v` rounded to `dtype`'s precision, as PyTorch converts a Python scalar for a kernel.
fn round_to(op: &'static str, dtype: crate::DType, v: f64) -> Result<f64> {
    Ok(float_dispatch!(op, dtype, T => T::from_f64(v).to_f64()))
}
