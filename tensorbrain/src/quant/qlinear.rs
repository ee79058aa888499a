//! `QLinear`: a Linear layer that runs on the integer GEMM. Weights are i8 (symmetric, per
//! channel or per tensor), packed once; activations are u8 (affine); products accumulate in
//! i32; the epilogue corrects for the activation zero point, scales, adds the bias, applies
//! ReLU and either writes f32 or requantizes to the next layer's u8 parameters, all in the
//! kernel's output stage.

use tensorbrain_kernels::int8::{self, Epilogue, Output, PackedI8};

use super::scheme::{Granularity, QDType, QParams, QSpec};
use crate::tensor::{DType, Element, Error, Result, Tensor};

/// How a layer gets its input's quantization parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum InputQuant {
    /// From each batch's min and max at run time (dynamic quantization).
    Dynamic,
    /// Fixed by calibration (static quantization).
    Static(QParams),
}

/// An activation between layers: f32, or u8 with its (per-tensor) parameters.
#[derive(Clone, Debug)]
pub enum Act {
    F32(Tensor),
    U8 { data: Tensor, scale: f32, zero: i32 },
    /// A u8 `[N, C, H, W]` value held channels-last: `data` is `[N, H, W, C]`. An int8
    /// convolution's GEMM writes its output this way, and the next convolution's im2col and a
    /// u8 max pool read it as it is, so no transposes happen between int8 convolutions.
    U8ChannelsLast { data: Tensor, scale: f32, zero: i32 },
}

impl Act {
    /// The value's shape (NCHW for a channels-last value).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Act::F32(t) | Act::U8 { data: t, .. } => t.shape().to_vec(),
            Act::U8ChannelsLast { data, .. } => match *data.shape() {
                [n, h, w, c] => vec![n, c, h, w],
                _ => unreachable!("channels-last values are 4-D"),
            },
        }
    }

    pub fn is_u8(&self) -> bool {
        !matches!(self, Act::F32(_))
    }

    /// The value with a channels-last u8 tensor transposed back to `[N, C, H, W]`.
    pub fn channels_first(self) -> Act {
        match self {
            Act::U8ChannelsLast { data, scale, zero } => {
                let [n, h, w, c] = data.shape().try_into().expect("channels-last values are 4-D");
                let nchw = with_data(&data, |v: &[u8]| int8::pixels_last_to_channels_first(v, n, h * w, c)).expect(HOST_VALUES);
                Act::U8 { data: Tensor::from_vec(nchw, &[n, c, h, w]), scale, zero }
            }
            other => other,
        }
    }

    /// The value as f32 (dequantizing u8), in its logical layout.
    pub fn into_f32(self) -> Tensor {
        match self.channels_first() {
            Act::F32(t) => t,
            Act::U8 { data, scale, zero } => {
                let mut out = vec![0f32; data.numel()];
                with_data(&data, |q: &[u8]| int8::dequantize_u8(q, scale, zero, &mut out)).expect(HOST_VALUES);
                Tensor::from_vec(out, data.shape())
            }
            Act::U8ChannelsLast { .. } => unreachable!("made channels-first above"),
        }
    }
}

/// A quantized Linear (+ optional fused ReLU).
#[derive(Clone, Debug)]
pub struct QLinear {
    name: String,
    packed: PackedI8,
    weight_params: QParams,
    bias: Option<Vec<f32>>,
    relu: bool,
    input: InputQuant,
    /// `Some`: requantize the output to these u8 parameters; `None`: f32 output.
    output: Option<QParams>,
}

impl QLinear {
    /// Quantizes an f32 weight `[out, in]` (symmetric i8, with `granularity` per tensor or per
    /// output channel) and packs it.
    ///
    /// # Errors
    /// If the weight is not a finite 2-D f32 tensor, the bias length differs from `out`, or
    /// the parameters are not per-tensor u8 for activations.
    pub fn from_f32(
        name: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        granularity: Granularity,
        input: InputQuant,
        output: Option<QParams>,
    ) -> Result<QLinear> {
        if weight.rank() != 2 || weight.dtype() != DType::F32 {
            return Err(Error::Msg(format!("QLinear {name}: weight must be a 2-D f32 tensor [out, in], got {} {:?}", weight.dtype(), weight.shape())));
        }
        let (n, k) = (weight.shape()[0], weight.shape()[1]);
        let w = weight.to_vec::<f32>();
        if let Some(bad) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::Msg(format!("QLinear {name}: weight value {} at [{}, {}] is not finite", w[bad], bad / k, bad % k)));
        }
        let weight_params = weight_qparams(&w, k, granularity)?;
        let q = super::ops::quantize(weight, &weight_params)?.to_vec::<i8>();
        let bias = bias.map(|b| b.to_vec::<f32>());
        QLinear::from_parts(name, &q, n, k, weight_params, bias, relu, input, output)
    }

    /// Builds the layer from already quantized weights (`[n, k]` row-major i8), e.g. loaded
    /// from safetensors.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: &str,
        weight_i8: &[i8],
        n: usize,
        k: usize,
        weight_params: QParams,
        bias: Option<Vec<f32>>,
        relu: bool,
        input: InputQuant,
        output: Option<QParams>,
    ) -> Result<QLinear> {
        if weight_i8.len() != n * k {
            return Err(Error::Msg(format!("QLinear {name}: {} weights for [{n}, {k}]", weight_i8.len())));
        }
        if !weight_params.is_symmetric_i8() {
            return Err(Error::Msg(format!("QLinear {name}: weights must be symmetric i8 (zero points 0), got {weight_params:?}")));
        }
        let per_channel = weight_params.axis.is_some();
        if (per_channel && weight_params.scales.len() != n) || (!per_channel && weight_params.scales.len() != 1) {
            return Err(Error::Msg(format!("QLinear {name}: {} weight scales for {n} output channels", weight_params.scales.len())));
        }
        if let Some(b) = &bias {
            if b.len() != n {
                return Err(Error::Msg(format!("QLinear {name}: bias has {} values for {n} outputs", b.len())));
            }
        }
        for p in [if let InputQuant::Static(p) = &input { Some(p) } else { None }, output.as_ref()].into_iter().flatten() {
            if p.dtype != QDType::U8 || p.axis.is_some() {
                return Err(Error::Msg(format!("QLinear {name}: activations take per-tensor u8 parameters, got {p:?}")));
            }
        }
        Ok(QLinear {
            name: name.to_string(),
            packed: PackedI8::pack(weight_i8, n, k),
            weight_params,
            bias,
            relu,
            input,
            output,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn in_features(&self) -> usize {
        self.packed.k()
    }
    pub fn out_features(&self) -> usize {
        self.packed.n()
    }
    pub fn relu(&self) -> bool {
        self.relu
    }
    pub fn input_quant(&self) -> &InputQuant {
        &self.input
    }
    pub fn output_params(&self) -> Option<&QParams> {
        self.output.as_ref()
    }
    pub fn weight_params(&self) -> &QParams {
        &self.weight_params
    }
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// The i8 weights, `[out, in]` row-major.
    pub fn weight_i8(&self) -> Vec<i8> {
        self.packed.unpack()
    }
    /// Bytes of weights and per-channel data (what the layer costs on disk).
    pub fn weight_bytes(&self) -> usize {
        self.packed.n() * self.packed.k() + 4 * (self.weight_params.scales.len() + self.bias.as_ref().map_or(0, Vec::len))
    }

    /// Runs the layer on `[..., in]` input: f32 (quantized here, with the calibrated or the
    /// batch's parameters) or u8 already in this layer's input parameters.
    ///
    /// # Errors
    /// On a width mismatch, NaN/Inf in a dynamic input, or u8 input whose parameters differ
    /// from the calibrated ones.
    pub fn forward(&self, x: &Act) -> Result<Act> {
        if let Act::U8ChannelsLast { .. } = x {
            return self.forward(&x.clone().channels_first());
        }
        let k = self.in_features();
        let shape = x.shape().to_vec();
        if shape.last() != Some(&k) {
            return Err(Error::Msg(format!("QLinear {}: input must be [..., {k}], got {shape:?}", self.name)));
        }
        let m = shape[..shape.len() - 1].iter().product::<usize>();
        let n = self.out_features();
        let mut out_shape = shape.clone();
        *out_shape.last_mut().expect("rank >= 1") = n;
        let run = |a: &[u8], a_scale: f32, a_zero: i32| -> Act {
            let scales: Vec<f32> = (0..n).map(|j| a_scale * self.weight_params.get(j).0).collect();
            let epilogue = Epilogue { a_zero, scales: &scales, bias: self.bias.as_deref(), relu: self.relu };
            match &self.output {
                None => {
                    let mut out = vec![0f32; m * n];
                    int8::qgemm(m, a, k, &self.packed, Output::F32 { out: &mut out, epilogue }, n);
                    Act::F32(Tensor::from_vec(out, &out_shape))
                }
                Some(p) => {
                    let (out_scale, out_zero) = p.get(0);
                    let mut out = vec![0u8; m * n];
                    int8::qgemm(m, a, k, &self.packed, Output::U8 { out: &mut out, epilogue, out_scale, out_zero }, n);
                    Act::U8 { data: Tensor::from_vec(out, &out_shape), scale: out_scale, zero: out_zero }
                }
            }
        };
        match x {
            Act::U8 { data, scale, zero } => {
                if let InputQuant::Static(p) = &self.input {
                    if p.get(0) != (*scale, *zero) {
                        return Err(Error::Msg(format!(
                            "QLinear {}: u8 input has scale {scale} zero {zero}, but the layer was calibrated for {:?}",
                            self.name,
                            p.get(0)
                        )));
                    }
                }
                Ok(with_data(data, |a: &[u8]| run(a, *scale, *zero))?)
            }
            Act::F32(t) => {
                let (q, scale, zero) = self.quantize_input(t)?;
                Ok(run(&q, scale, zero))
            }
            Act::U8ChannelsLast { .. } => unreachable!("made channels-first above"),
        }
    }

    /// Quantizes an f32 input with the layer's calibrated parameters, or the batch's own range.
    pub(crate) fn quantize_input(&self, t: &Tensor) -> Result<(Vec<u8>, f32, i32)> {
        if t.dtype() != DType::F32 {
            return Err(Error::Msg(format!("QLinear {}: input must be f32 or quantized u8, got {}", self.name, t.dtype())));
        }
        with_data(t, |x: &[f32]| {
            let (scale, zero) = match &self.input {
                InputQuant::Static(p) => p.get(0),
                InputQuant::Dynamic => {
                    let (lo, hi) = int8::min_max(x)
                        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
                        .ok_or_else(|| Error::Msg(format!("QLinear {}: the input holds NaN or Inf (or is empty)", self.name)))?;
                    QParams::from_range(QSpec::ACTIVATIONS, &[lo], &[hi])?.get(0)
                }
            };
            let mut q = vec![0u8; x.len()];
            int8::quantize_u8(x, scale, zero, &mut q);
            Ok((q, scale, zero))
        })?
    }
}

/// Symmetric i8 parameters for a weight held as rows of `k` values, one row per output
/// channel: one scale for the whole weight, or one per row (axis 0).
pub(super) fn weight_qparams(w: &[f32], k: usize, granularity: Granularity) -> Result<QParams> {
    let (spec, (mins, maxs)): (QSpec, (Vec<f32>, Vec<f32>)) = match granularity {
        Granularity::PerTensor => {
            let (lo, hi) = int8::min_max(w).unwrap_or((0.0, 0.0));
            (QSpec::WEIGHTS_PER_TENSOR, (vec![lo], vec![hi]))
        }
        Granularity::PerChannel { .. } => {
            (QSpec::WEIGHTS_PER_CHANNEL, w.chunks(k.max(1)).map(|row| int8::min_max(row).unwrap_or((0.0, 0.0))).unzip())
        }
    };
    QParams::from_range(spec, &mins, &maxs)
}

/// Quantized values are made on the CPU by the runner (`Tensor::from_vec`), so reading them
/// cannot meet device memory.
const HOST_VALUES: &str = "quantized values live in host memory";

/// Runs `f` on a tensor's elements without copying when it is contiguous.
pub(super) fn with_data<T: Element, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    if t.is_contiguous() && t.dtype() == T::DTYPE {
        let storage = t.storage();
        let all = storage.cpu()?.as_slice::<T>();
        let off = t.layout().offset;
        Ok(f(&all[off..off + t.numel()]))
    } else {
        Ok(f(&t.try_to_vec::<T>()?))
    }
}
