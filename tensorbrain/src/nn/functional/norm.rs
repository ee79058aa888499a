//! Normalisation as functions of runtime tensors (`F.layer_norm`, `F.group_norm`,
//! `F.instance_norm`, `F.batch_norm`, `F.normalize`): shapes and options are ordinary values,
//! so code whose sizes are known only at run time can use them. Composed of differentiable ops.

use crate::autograd::no_grad;
use crate::tensor::{Error, Result, Tensor};

fn err(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{op}: {msg}"))
}

fn check_float(op: &str, x: &Tensor) -> Result<()> {
    if !x.dtype().is_float() {
        return Err(err(op, format!("input must be a float tensor, got {} of shape {:?}", x.dtype(), x.shape())));
    }
    Ok(())
}

/// `(x - mean) / sqrt(var + eps)` over `dims` (biased variance), with the dims kept.
fn standardize(x: &Tensor, dims: &[isize], eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = x.try_mean(dims, true)?;
    let centred = x.try_sub(&mean)?;
    let var = centred.try_square()?.try_mean(dims, true)?;
    let rstd = var.try_add_scalar(eps)?.try_rsqrt()?;
    Ok((centred.try_mul(&rstd)?, mean, var))
}

/// `t` (shape `[C]`) shaped to broadcast along dim 1 of a rank-`rank` tensor.
fn channel_view(t: &Tensor, rank: usize) -> Result<Tensor> {
    let mut view = vec![1isize; rank];
    view[1] = -1;
    t.try_reshape(&view)
}

fn check_channel_param(op: &str, what: &str, t: Option<&Tensor>, c: usize) -> Result<()> {
    if let Some(t) = t {
        if t.shape() != [c] {
            return Err(err(op, format!("{what} must have shape [{c}] (one per channel), got {:?}", t.shape())));
        }
    }
    Ok(())
}

/// Layer normalisation over the trailing `normalized_shape` dims (`F.layer_norm`), with an
/// optional elementwise `weight` and `bias` of that shape.
pub fn try_layer_norm(x: &Tensor, normalized_shape: &[usize], weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    const OP: &str = "layer_norm";
    check_float(OP, x)?;
    let k = normalized_shape.len();
    if k == 0 || k > x.rank() || x.shape()[x.rank() - k..] != *normalized_shape {
        return Err(err(OP, format!("normalized_shape {normalized_shape:?} must be non-empty and match the input's trailing dims, input {:?}", x.shape())));
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.shape() != normalized_shape {
                return Err(err(OP, format!("{what} must have shape {normalized_shape:?}, got {:?}", t.shape())));
            }
        }
    }
    let dims: Vec<isize> = (x.rank() - k..x.rank()).map(|d| d as isize).collect();
    let (mut y, _, _) = standardize(x, &dims, eps)?;
    if let Some(w) = weight {
        y = y.try_mul(w)?;
    }
    if let Some(b) = bias {
        y = y.try_add(b)?;
    }
    Ok(y)
}

/// Group normalisation (`F.group_norm`): `[N, C, *]` split into `num_groups` groups of channels,
/// each normalised over its channels and spatial dims, then a per-channel affine.
pub fn try_group_norm(x: &Tensor, num_groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    const OP: &str = "group_norm";
    check_float(OP, x)?;
    if x.rank() < 2 {
        return Err(err(OP, format!("expected an input [N, C, *], got {:?}", x.shape())));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if num_groups == 0 || c % num_groups != 0 {
        return Err(err(OP, format!("num_groups ({num_groups}) must divide the number of channels ({c})")));
    }
    check_channel_param(OP, "weight", weight, c)?;
    check_channel_param(OP, "bias", bias, c)?;
    let grouped = x.try_reshape(&[n as isize, num_groups as isize, -1])?;
    let (y, _, _) = standardize(&grouped, &[2], eps)?;
    let mut y = y.try_reshape(&x.shape().iter().map(|&d| d as isize).collect::<Vec<_>>())?;
    if let Some(w) = weight {
        y = y.try_mul(&channel_view(w, x.rank())?)?;
    }
    if let Some(b) = bias {
        y = y.try_add(&channel_view(b, x.rank())?)?;
    }
    Ok(y)
}

/// Running statistics a normalisation may use (eval) and update (training).
pub struct RunningStats<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
}

/// Updates running statistics in place: `r = (1 - momentum) r + momentum * batch`, with the
/// unbiased batch variance (PyTorch's rule).
fn update_running(stats: &RunningStats, mean: &Tensor, var: &Tensor, count: usize, momentum: f64) -> Result<()> {
    no_grad(|| -> Result<()> {
        let unbiased = var.try_mul_scalar(count as f64 / (count as f64 - 1.0).max(1.0))?;
        let dt = stats.mean.dtype();
        let m = stats.mean.try_mul_scalar(1.0 - momentum)?.try_add(&mean.try_mul_scalar(momentum)?.try_to_dtype(dt)?)?;
        let v = stats.var.try_mul_scalar(1.0 - momentum)?.try_add(&unbiased.try_mul_scalar(momentum)?.try_to_dtype(dt)?)?;
        stats.mean.try_copy_from(&m)?;
        stats.var.try_copy_from(&v)
    })
}

/// Batch normalisation (`F.batch_norm`) of `[N, C, *]` over every dim but the channel dim. In
/// training (or without running statistics) the batch's statistics are used and, if given,
/// the running ones are updated in place with `momentum`; otherwise the running ones are used.
#[allow(clippy::too_many_arguments)]
pub fn try_batch_norm(
    x: &Tensor,
    running: Option<RunningStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "batch_norm";
    check_float(OP, x)?;
    if x.rank() < 2 {
        return Err(err(OP, format!("expected an input [N, C, *], got {:?}", x.shape())));
    }
    let c = x.shape()[1];
    check_channel_param(OP, "weight", weight, c)?;
    check_channel_param(OP, "bias", bias, c)?;
    if let Some(r) = &running {
        check_channel_param(OP, "running_mean", Some(r.mean), c)?;
        check_channel_param(OP, "running_var", Some(r.var), c)?;
    }
    let dims: Vec<isize> = std::iter::once(0).chain(2..x.rank() as isize).collect();
    let mut y = if training || running.is_none() {
        let count = x.numel() / c.max(1);
        if training && count <= 1 {
            return Err(err(OP, format!("training needs more than 1 value per channel, got input {:?}", x.shape())));
        }
        let (y, mean, var) = standardize(x, &dims, eps)?;
        if let (true, Some(r)) = (training, &running) {
            update_running(r, &mean.try_reshape(&[-1])?, &var.try_reshape(&[-1])?, count, momentum)?;
        }
        y
    } else {
        let r = running.as_ref().expect("checked above");
        let mean = channel_view(&r.mean.try_to_dtype(x.dtype())?, x.rank())?;
        let var = channel_view(&r.var.try_to_dtype(x.dtype())?, x.rank())?;
        x.try_sub(&mean)?.try_mul(&var.try_add_scalar(eps)?.try_rsqrt()?)?
    };
    if let Some(w) = weight {
        y = y.try_mul(&channel_view(w, x.rank())?)?;
    }
    if let Some(b) = bias {
        y = y.try_add(&channel_view(b, x.rank())?)?;
    }
    Ok(y)
}

/// Instance normalisation (`F.instance_norm`): each `(sample, channel)` of `[N, C, *]`
/// normalised over its spatial dims. With `use_input_stats` (the default in PyTorch) the
/// instance statistics are used and running ones, if given, updated with their mean over the
/// batch; otherwise the running ones are used.
#[allow(clippy::too_many_arguments)]
pub fn try_instance_norm(
    x: &Tensor,
    running: Option<RunningStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    use_input_stats: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "instance_norm";
    check_float(OP, x)?;
    if x.rank() < 3 {
        return Err(err(OP, format!("expected an input [N, C, *] with spatial dims, got {:?}", x.shape())));
    }
    let c = x.shape()[1];
    check_channel_param(OP, "weight", weight, c)?;
    check_channel_param(OP, "bias", bias, c)?;
    let spatial: Vec<isize> = (2..x.rank() as isize).collect();
    let mut y = if use_input_stats {
        let count: usize = x.shape()[2..].iter().product();
        if count <= 1 {
            return Err(err(OP, format!("needs more than 1 spatial element per channel, got input {:?}", x.shape())));
        }
        let (y, mean, var) = standardize(x, &spatial, eps)?;
        if let Some(r) = &running {
            check_channel_param(OP, "running_mean", Some(r.mean), c)?;
            let m = mean.try_flatten(1, -1)?.try_mean(&[0], false)?;
            let v = var.try_flatten(1, -1)?.try_mean(&[0], false)?;
            update_running(r, &m, &v, count, momentum)?;
        }
        y
    } else {
        let r = running.as_ref().ok_or_else(|| err(OP, "use_input_stats=false needs running statistics"))?;
        let mean = channel_view(&r.mean.try_to_dtype(x.dtype())?, x.rank())?;
        let var = channel_view(&r.var.try_to_dtype(x.dtype())?, x.rank())?;
        x.try_sub(&mean)?.try_mul(&var.try_add_scalar(eps)?.try_rsqrt()?)?
    };
    if let Some(w) = weight {
        y = y.try_mul(&channel_view(w, x.rank())?)?;
    }
    if let Some(b) = bias {
        y = y.try_add(&channel_view(b, x.rank())?)?;
    }
    Ok(y)
}

/// `x / max(||x||_p, eps)` along `dim` (`F.normalize`).
pub fn try_normalize(x: &Tensor, p: f64, dim: isize, eps: f64) -> Result<Tensor> {
    check_float("normalize", x)?;
    let norm = x.try_vector_norm(p, &[dim], true)?;
    x.try_div(&norm.try_clamp(Some(eps), None)?)
}
