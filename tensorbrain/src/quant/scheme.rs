//! Quantization parameters as data: the scheme, the granularity, the integer type, and the
//! scale / zero point computed from an observed range exactly as PyTorch's observers do.

use crate::tensor::{DType, Error, Result, Tensor};

/// How real values map to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Zero maps to a fixed integer (0 for i8, 128 for u8) and the range is symmetric around it.
    Symmetric,
    /// The observed [min, max] (stretched to include 0) maps onto the whole integer range.
    Affine,
}

/// One scale for the whole tensor, or one per slice along an axis (output channels of a
/// weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    PerTensor,
    PerChannel { axis: usize },
}

/// The integer type of quantized values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QDType {
    /// 0..=255 (PyTorch's `quint8`): activations.
    U8,
    /// -128..=127 (`qint8`): weights.
    I8,
}

impl QDType {
    pub fn range(self) -> (i32, i32) {
        match self {
            QDType::U8 => (0, 255),
            QDType::I8 => (-128, 127),
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            QDType::U8 => DType::U8,
            QDType::I8 => DType::I8,
        }
    }
}

/// What to compute parameters for: PyTorch's `(dtype, qscheme)` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QSpec {
    pub dtype: QDType,
    pub scheme: Scheme,
    pub granularity: Granularity,
}

impl QSpec {
    /// Activations: u8, affine, per tensor (PyTorch's default activation observer).
    pub const ACTIVATIONS: QSpec = QSpec { dtype: QDType::U8, scheme: Scheme::Affine, granularity: Granularity::PerTensor };
    /// Weights: i8, symmetric, one scale per output channel (PyTorch's x86 default).
    pub const WEIGHTS_PER_CHANNEL: QSpec =
        QSpec { dtype: QDType::I8, scheme: Scheme::Symmetric, granularity: Granularity::PerChannel { axis: 0 } };
    /// Weights: i8, symmetric, one scale (PyTorch's fbgemm default).
    pub const WEIGHTS_PER_TENSOR: QSpec = QSpec { dtype: QDType::I8, scheme: Scheme::Symmetric, granularity: Granularity::PerTensor };
}

/// Scales and zero points: one of each per tensor, or one per channel along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    pub dtype: QDType,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
    /// `None` for per-tensor parameters.
    pub axis: Option<usize>,
}

/// The smallest scale PyTorch allows (`torch.finfo(torch.float32).eps`).
pub const MIN_SCALE: f32 = f32::EPSILON;

impl QParams {
    pub fn per_tensor(dtype: QDType, scale: f32, zero_point: i32) -> QParams {
        QParams { dtype, scales: vec![scale], zero_points: vec![zero_point], axis: None }
    }

    /// Parameters for observed ranges (`mins[c]`, `maxs[c]` per channel, one pair per tensor),
    /// following PyTorch's `_calculate_qparams`: the range is widened to include 0, symmetric
    /// schemes use `max|x| / ((qmax - qmin) / 2)`, affine ones `(max - min) / (qmax - qmin)`
    /// with `zero = qmin - round(min / scale)`; scales are at least [`MIN_SCALE`].
    ///
    /// # Errors
    /// If a bound is NaN or infinite, or a min exceeds its max.
    pub fn from_range(spec: QSpec, mins: &[f32], maxs: &[f32]) -> Result<QParams> {
        if mins.len() != maxs.len() || mins.is_empty() {
            return Err(Error::Msg(format!("quant: {} minima for {} maxima", mins.len(), maxs.len())));
        }
        let (qmin, qmax) = spec.dtype.range();
        let mut scales = Vec::with_capacity(mins.len());
        let mut zeros = Vec::with_capacity(mins.len());
        for (c, (&lo, &hi)) in mins.iter().zip(maxs).enumerate() {
            if !lo.is_finite() || !hi.is_finite() {
                return Err(Error::Msg(format!("quant: range [{lo}, {hi}] (channel {c}) is not finite; the observed data held NaN or Inf")));
            }
            if lo > hi {
                return Err(Error::Msg(format!("quant: range [{lo}, {hi}] (channel {c}) has min > max")));
            }
            let (neg, pos) = (lo.min(0.0), hi.max(0.0));
            let (scale, zero) = match spec.scheme {
                Scheme::Symmetric => {
                    let scale = ((-neg).max(pos) / ((qmax - qmin) as f32 / 2.0)).max(MIN_SCALE);
                    (scale, if spec.dtype == QDType::U8 { 128 } else { 0 })
                }
                Scheme::Affine => {
                    let scale = ((pos - neg) / (qmax - qmin) as f32).max(MIN_SCALE);
                    let zero = qmin - (neg / scale).round_ties_even() as i32;
                    (scale, zero.clamp(qmin, qmax))
                }
            };
            scales.push(scale);
            zeros.push(zero);
        }
        let axis = match spec.granularity {
            Granularity::PerTensor => None,
            Granularity::PerChannel { axis } => Some(axis),
        };
        Ok(QParams { dtype: spec.dtype, scales, zero_points: zeros, axis })
    }

    /// The (scale, zero point) of channel `c` (the only pair for per-tensor parameters).
    pub fn get(&self, c: usize) -> (f32, i32) {
        if self.axis.is_none() {
            (self.scales[0], self.zero_points[0])
        } else {
            (self.scales[c], self.zero_points[c])
        }
    }

    /// Whether every zero point is 0 (the integer GEMM needs symmetric weights).
    pub fn is_symmetric_i8(&self) -> bool {
        self.dtype == QDType::I8 && self.zero_points.iter().all(|&z| z == 0)
    }

    /// Scales and zero points as tensors (`[C]` f32 and i32), for safetensors.
    pub fn to_tensors(&self) -> (Tensor, Tensor) {
        let n = self.scales.len();
        (Tensor::from_vec(self.scales.clone(), &[n]), Tensor::from_vec(self.zero_points.clone(), &[n]))
    }

    /// Reads parameters back from [`QParams::to_tensors`]'s tensors.
    pub fn from_tensors(dtype: QDType, axis: Option<usize>, scales: &Tensor, zero_points: &Tensor) -> Result<QParams> {
        if scales.rank() != 1 || zero_points.shape() != scales.shape() {
            return Err(Error::Msg(format!(
                "quant: scales {:?} and zero points {:?} must be 1-D of one length",
                scales.shape(),
                zero_points.shape()
            )));
        }
        if axis.is_none() && scales.numel() != 1 {
            return Err(Error::Msg(format!("quant: per-tensor parameters need one scale, got {}", scales.numel())));
        }
        let scales = scales.to_vec::<f32>();
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Msg(format!("quant: scale {bad} is not finite and positive")));
        }
        let (qmin, qmax) = dtype.range();
        let zero_points = zero_points.to_vec::<i32>();
        if let Some(bad) = zero_points.iter().find(|z| !(qmin..=qmax).contains(*z)) {
            return Err(Error::Msg(format!("quant: zero point {bad} is outside {qmin}..={qmax}")));
        }
        Ok(QParams { dtype, scales, zero_points, axis })
    }
}
