//! Quantize, dequantize and requantize runtime tensors, with PyTorch's rounding:
//! `q = clamp(zero + round_half_even(x · (1/scale)), qmin, qmax)` (the reciprocal taken in f32,
//! as fbgemm does) and `x = (q - zero) · scale`.

use super::scheme::{QDType, QParams};
use crate::tensor::{DType, Error, Result, Tensor};

/// Quantizes an f32 tensor to u8 or i8 (`params.dtype`), per tensor or per channel.
///
/// # Errors
/// If `x` is not f32, the channel axis is out of range, or the parameter count does not match
/// the axis' size.
pub fn quantize(x: &Tensor, params: &QParams) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        return Err(Error::Msg(format!("quantize: expected an f32 tensor, got {}", x.dtype())));
    }
    let channel = channel_of(x.shape(), params, "quantize")?;
    let values = x.to_vec::<f32>();
    let (qmin, qmax) = params.dtype.range();
    let inv: Vec<f32> = params.scales.iter().map(|s| 1.0 / s).collect();
    let q = values.iter().enumerate().map(|(i, &v)| {
        let c = channel(i);
        let z = params.zero_points[c];
        (tensorbrain_kernels::int8::round_half_even(v * inv[c]) + z as f32).clamp(qmin as f32, qmax as f32) as i32
    });
    Ok(match params.dtype {
        QDType::U8 => Tensor::from_vec(q.map(|v| v as u8).collect::<Vec<u8>>(), x.shape()),
        QDType::I8 => Tensor::from_vec(q.map(|v| v as i8).collect::<Vec<i8>>(), x.shape()),
    })
}

/// The real values of a quantized tensor, as f32.
///
/// # Errors
/// If `q`'s dtype is not `params.dtype`, or the parameters do not fit its shape.
pub fn dequantize(q: &Tensor, params: &QParams) -> Result<Tensor> {
    let channel = channel_of(q.shape(), params, "dequantize")?;
    let ints = integers(q, params.dtype, "dequantize")?;
    let out: Vec<f32> = ints
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = channel(i);
            (v - params.zero_points[c]) as f32 * params.scales[c]
        })
        .collect();
    Ok(Tensor::from_vec(out, q.shape()))
}

/// Re-expresses a quantized tensor in other parameters: `quantize(dequantize(q, from), to)`
/// without the f32 tensor in between.
pub fn requantize(q: &Tensor, from: &QParams, to: &QParams) -> Result<Tensor> {
    quantize(&dequantize(q, from)?, to)
}

fn integers(q: &Tensor, dtype: QDType, op: &str) -> Result<Vec<i32>> {
    if q.dtype() != dtype.dtype() {
        return Err(Error::Msg(format!("{op}: the parameters are for {}, but the tensor is {}", dtype.dtype(), q.dtype())));
    }
    Ok(match dtype {
        QDType::U8 => q.to_vec::<u8>().into_iter().map(i32::from).collect(),
        QDType::I8 => q.to_vec::<i8>().into_iter().map(i32::from).collect(),
    })
}

/// Maps a flat (row-major) index to its channel's parameter index.
pub(super) fn channel_of(shape: &[usize], params: &QParams, op: &str) -> Result<impl Fn(usize) -> usize> {
    if params.scales.len() != params.zero_points.len() {
        return Err(Error::Msg(format!("{op}: {} scales but {} zero points", params.scales.len(), params.zero_points.len())));
    }
    let (size, inner) = match params.axis {
        None => {
            if params.scales.len() != 1 {
                return Err(Error::Msg(format!("{op}: per-tensor parameters need one scale, got {}", params.scales.len())));
            }
            (1, 1)
        }
        Some(axis) => {
            let size = *shape.get(axis).ok_or_else(|| {
                Error::Msg(format!("{op}: channel axis {axis} is out of range for shape {shape:?}"))
            })?;
            if params.scales.len() != size {
                return Err(Error::Msg(format!(
                    "{op}: {} per-channel scales for axis {axis} of size {size} (shape {shape:?})",
                    params.scales.len()
                )));
            }
            (size, shape[axis + 1..].iter().product::<usize>())
        }
    };
    Ok(move |i: usize| if size == 1 { 0 } else { (i / inner) % size })
}
