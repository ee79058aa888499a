//! `QConv2d`: a convolution on the int8 GEMM. The u8 input is unfolded by im2col (padding is
//! the zero point, i.e. real 0) in tap-major column order, multiplied by the i8 weight held as
//! `[O, KH·KW·C]` with the same fused epilogue as [`QLinear`], and the `[N·OH·OW, O]` result
//! is laid back out as NCHW. Saved weights keep PyTorch's `[O, C, KH, KW]` order.

use tensorbrain_ir::op::ConvGeometry;
use tensorbrain_kernels::int8::{im2col_u8_nhwc, im2col_u8_taps, pixels_last_to_channels_first, weight_taps_major, ConvShape};

use super::qlinear::{with_data, Act, InputQuant, QLinear};
use super::scheme::{Granularity, QParams};
use crate::tensor::{Error, Result, Tensor};

/// A quantized Conv2d (+ optional fused ReLU); groups must be 1.
#[derive(Clone, Debug)]
pub struct QConv2d {
    /// The weight as `[O, KH·KW·C]` (tap-major) with the epilogue, run on im2col rows.
    linear: QLinear,
    in_channels: usize,
    kernel: [usize; 2],
    geometry: ConvGeometry,
}

impl QConv2d {
    /// Quantizes an f32 `[O, C, KH, KW]` weight.
    ///
    /// # Errors
    /// If the weight is not 4-D, the convolution is grouped, or as [`QLinear::from_f32`].
    #[allow(clippy::too_many_arguments)]
    pub fn from_f32(
        name: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        geometry: ConvGeometry,
        granularity: Granularity,
        input: InputQuant,
        output: Option<QParams>,
    ) -> Result<QConv2d> {
        let (o, c, kernel) = conv_dims(name, weight.shape(), geometry)?;
        let taps = weight_taps_major(&weight.try_contiguous()?.to_vec::<f32>(), o, c, kernel[0] * kernel[1], false);
        let flat = Tensor::from_vec(taps, &[o, c * kernel[0] * kernel[1]]);
        let linear = QLinear::from_f32(name, &flat, bias, relu, granularity, input, output)?;
        Ok(QConv2d { linear, in_channels: c, kernel, geometry })
    }

    /// Builds the layer from an already quantized `[O, C, KH, KW]` weight (flattened row-major).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: &str,
        weight_i8: &[i8],
        weight_shape: &[usize],
        weight_params: QParams,
        bias: Option<Vec<f32>>,
        relu: bool,
        geometry: ConvGeometry,
        input: InputQuant,
        output: Option<QParams>,
    ) -> Result<QConv2d> {
        let (o, c, kernel) = conv_dims(name, weight_shape, geometry)?;
        if weight_i8.len() != o * c * kernel[0] * kernel[1] {
            return Err(Error::Msg(format!("QConv2d {name}: {} weights for {weight_shape:?}", weight_i8.len())));
        }
        let weight_i8 = weight_taps_major(weight_i8, o, c, kernel[0] * kernel[1], false);
        let linear = QLinear::from_parts(name, &weight_i8, o, c * kernel[0] * kernel[1], weight_params, bias, relu, input, output)?;
        Ok(QConv2d { linear, in_channels: c, kernel, geometry })
    }

    /// The GEMM part (weights, scales, bias, activation parameters).
    pub fn linear(&self) -> &QLinear {
        &self.linear
    }

    /// The i8 weights in `[O, C, KH, KW]` order (as saved, and as PyTorch holds them).
    pub fn weight_i8(&self) -> Vec<i8> {
        let [o, c, kh, kw] = self.weight_shape();
        weight_taps_major(&self.linear.weight_i8(), o, c, kh * kw, true)
    }

    /// `[O, C, KH, KW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.linear.out_features(), self.in_channels, self.kernel[0], self.kernel[1]]
    }

    /// Runs the convolution on NCHW input (f32, or u8 in this layer's input parameters, held
    /// channels-first or channels-last). An f32 output is NCHW; a u8 output stays
    /// channels-last ([`Act::U8ChannelsLast`]).
    ///
    /// # Errors
    /// On a shape mismatch, or as [`QLinear::forward`].
    pub fn forward(&self, x: &Act) -> Result<Act> {
        let name = self.linear.name();
        let shape = x.shape().to_vec();
        if shape.len() != 4 || shape[1] != self.in_channels {
            return Err(Error::Msg(format!("QConv2d {name}: input must be [N, {}, H, W], got {shape:?}", self.in_channels)));
        }
        let g = self.geometry;
        let s = ConvShape {
            batch: shape[0],
            channels: shape[1],
            height: shape[2],
            width: shape[3],
            kernel: self.kernel,
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
        };
        let ((oh, ow), (m, k)) = match (s.output_size(), s.gemm_mk()) {
            (Some(o), Some(mk)) => (o, mk),
            _ => return Err(Error::Msg(format!("QConv2d {name}: the {:?} kernel does not fit input {shape:?}", self.kernel))),
        };
        let (cols, scale, zero) = match x {
            Act::U8ChannelsLast { data, scale, zero } => (with_data(data, |d: &[u8]| im2col_u8_nhwc(d, &s, *zero as u8))?, *scale, *zero),
            Act::U8 { data, scale, zero } => (with_data(data, |d: &[u8]| im2col_u8_taps(d, &s, *zero as u8))?, *scale, *zero),
            Act::F32(t) => {
                let (q, scale, zero) = self.linear.quantize_input(t)?;
                (im2col_u8_taps(&q, &s, zero as u8), scale, zero)
            }
        };
        let rows = Act::U8 { data: Tensor::from_vec(cols, &[m, k]), scale, zero };
        let o = self.linear.out_features();
        let out_shape = [shape[0], o, oh, ow];
        Ok(match self.linear.forward(&rows)? {
            Act::F32(y) => Act::F32(Tensor::from_vec(with_data(&y, |v: &[f32]| pixels_last_to_channels_first(v, shape[0], oh * ow, o))?, &out_shape)),
            // u8 stays channels-last, as the GEMM wrote it: the next int8 layer reads it so.
            Act::U8 { data, scale, zero } => Act::U8ChannelsLast { data: data.try_reshape(&[shape[0] as isize, oh as isize, ow as isize, o as isize])?, scale, zero },
            Act::U8ChannelsLast { .. } => unreachable!("the GEMM writes u8 rows"),
        })
    }
}

fn conv_dims(name: &str, shape: &[usize], g: ConvGeometry) -> Result<(usize, usize, [usize; 2])> {
    if shape.len() != 4 {
        return Err(Error::Msg(format!("QConv2d {name}: weight must be [O, C, KH, KW], got {shape:?}")));
    }
    if g.groups != 1 {
        return Err(Error::Msg(format!("QConv2d {name}: grouped convolutions (groups {}) are not supported", g.groups)));
    }
    Ok((shape[0], shape[1], [shape[2], shape[3]]))
}
