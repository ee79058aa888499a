//! Convolution variants on top of the 2-D kernels: `conv1d`, `conv_transpose2d` and
//! `conv_transpose1d`, `padding="same"`/`"valid"` and padding modes (reflect, replicate,
//! circular), and `unfold`/`fold` (im2col / col2im). Groups and dilation work everywhere.
//!
//! A transposed convolution is the input gradient of a convolution, so it runs on the same
//! kernel and its gradients are the forward convolution and the weight gradient, all recorded.

use tensorbrain_kernels::conv::Conv2dParams;

use super::nn::conv2d_input_gradient;
use super::remap::PadMode;
use crate::tensor::{Error, Result, Tensor};

/// How a convolution pads its input (`padding=` in PyTorch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding<const N: usize> {
    /// The same number of cells on both sides of each spatial dim.
    Explicit([usize; N]),
    /// Output size equals input size (stride 1 only); an odd total goes to the end, as in
    /// PyTorch.
    Same,
    /// No padding.
    Valid,
}

/// Options of an `N`-D convolution: `Conv2dOptions::new().stride([2, 2]).padding(Padding::Same)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvOptions<const N: usize> {
    pub stride: [usize; N],
    pub padding: Padding<N>,
    pub dilation: [usize; N],
    pub groups: usize,
    /// What the padding holds (`padding_mode=` of `nn.Conv2d`): zeros, or a [`PadMode`].
    pub padding_mode: PadMode,
}

pub type Conv1dOptions = ConvOptions<1>;
pub type Conv2dOptions = ConvOptions<2>;

impl<const N: usize> Default for ConvOptions<N> {
    fn default() -> Self {
        ConvOptions { stride: [1; N], padding: Padding::Explicit([0; N]), dilation: [1; N], groups: 1, padding_mode: PadMode::Constant(0.0) }
    }
}

impl<const N: usize> ConvOptions<N> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stride(mut self, stride: [usize; N]) -> Self {
        self.stride = stride;
        self
    }
    pub fn padding(mut self, padding: Padding<N>) -> Self {
        self.padding = padding;
        self
    }
    pub fn dilation(mut self, dilation: [usize; N]) -> Self {
        self.dilation = dilation;
        self
    }
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn padding_mode(mut self, mode: PadMode) -> Self {
        self.padding_mode = mode;
        self
    }
}

/// `(before, after)` padding of each spatial dim for a kernel of `kernel` cells.
fn pad_amounts<const N: usize>(op: &'static str, x: &Tensor, o: &ConvOptions<N>, kernel: [usize; N]) -> Result<[(usize, usize); N]> {
    Ok(match o.padding {
        Padding::Explicit(p) => p.map(|p| (p, p)),
        Padding::Valid => [(0, 0); N],
        Padding::Same => {
            if o.stride.iter().any(|&s| s != 1) {
                return Err(Error::invalid(op, x.shape(), format!("padding=\"same\" needs stride 1, got {:?}", o.stride)));
            }
            let mut out = [(0, 0); N];
            for i in 0..N {
                let total = o.dilation[i] * (kernel[i].max(1) - 1);
                out[i] = (total / 2, total - total / 2);
            }
            out
        }
    })
}

/// Pads `x`'s trailing spatial dims explicitly (for asymmetric or non-zero padding); the
/// convolution itself then pads nothing.
fn pad_input<const N: usize>(x: &Tensor, amounts: &[(usize, usize); N], mode: PadMode) -> Result<Tensor> {
    let pad: Vec<usize> = amounts.iter().rev().flat_map(|&(a, b)| [a, b]).collect();
    x.try_pad_mode(&pad, mode)
}

impl Tensor {
    /// 2-D convolution with [`Conv2dOptions`]: `padding="same"`, padding modes, groups and
    /// dilation (`F.conv2d`, and `nn.Conv2d`'s `padding_mode`).
    pub fn try_conv2d_with(&self, weight: &Tensor, bias: Option<&Tensor>, o: &Conv2dOptions) -> Result<Tensor> {
        const OP: &str = "conv2d";
        if weight.rank() != 4 {
            return Err(Error::invalid(OP, self.shape(), format!("weight must be 4-D [out_channels, in_channels/groups, kH, kW], got {:?}", weight.shape())));
        }
        let kernel = [weight.shape()[2], weight.shape()[3]];
        let amounts = pad_amounts(OP, self, o, kernel)?;
        let symmetric_zeros = amounts.iter().all(|&(a, b)| a == b) && o.padding_mode == PadMode::Constant(0.0);
        if symmetric_zeros {
            let padding = amounts.map(|(a, _)| a);
            return self.try_conv2d(weight, bias, o.stride, padding, o.dilation, o.groups);
        }
        let padded = pad_input(self, &amounts, o.padding_mode)?;
        padded.try_conv2d(weight, bias, o.stride, [0, 0], o.dilation, o.groups)
    }

    /// 1-D convolution (`F.conv1d`): input `[N, C, L]` or `[C, L]`, weight `[O, C/groups, K]`,
    /// optional bias `[O]`.
    pub fn try_conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize, dilation: usize, groups: usize) -> Result<Tensor> {
        let o = Conv1dOptions::new().stride([stride]).padding(Padding::Explicit([padding])).dilation([dilation]).groups(groups);
        self.try_conv1d_with(weight, bias, &o)
    }

    /// 1-D convolution with [`Conv1dOptions`].
    pub fn try_conv1d_with(&self, weight: &Tensor, bias: Option<&Tensor>, o: &Conv1dOptions) -> Result<Tensor> {
        const OP: &str = "conv1d";
        if !(self.rank() == 2 || self.rank() == 3) {
            return Err(Error::invalid(OP, self.shape(), "expected a 2-D [C, L] or 3-D [N, C, L] input"));
        }
        if weight.rank() != 3 {
            return Err(Error::invalid(OP, self.shape(), format!("weight must be 3-D [out_channels, in_channels/groups, K], got {:?}", weight.shape())));
        }
        let o2 = Conv2dOptions {
            stride: [1, o.stride[0]],
            padding: match o.padding {
                Padding::Explicit([p]) => Padding::Explicit([0, p]),
                Padding::Same => Padding::Same,
                Padding::Valid => Padding::Valid,
            },
            dilation: [1, o.dilation[0]],
            groups: o.groups,
            padding_mode: o.padding_mode,
        };
        let y = self.try_unsqueeze(-2)?.try_conv2d_with(&weight.try_unsqueeze(-2)?, bias, &o2).map_err(|e| rename(e, OP))?;
        y.try_squeeze(Some(-2))
    }

    /// 2-D transposed convolution (`F.conv_transpose2d`): input `[N, C_in, H, W]` (or
    /// `[C_in, H, W]`), weight `[C_in, C_out/groups, kH, kW]`, optional bias `[C_out]`. The output
    /// is `(H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1` high (and
    /// likewise wide); `output_padding` must be below the stride.
    #[allow(clippy::too_many_arguments)]
    pub fn try_conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
        groups: usize,
        dilation: [usize; 2],
    ) -> Result<Tensor> {
        const OP: &str = "conv_transpose2d";
        match self.rank() {
            4 => {}
            3 => {
                return self.try_unsqueeze(0)?.try_conv_transpose2d(weight, bias, stride, padding, output_padding, groups, dilation)?.try_squeeze(Some(0));
            }
            _ => return Err(Error::invalid(OP, self.shape(), "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input")),
        }
        let (xs, ws) = (self.shape(), weight.shape());
        if ws.len() != 4 {
            return Err(Error::invalid(OP, xs, format!("weight must be 4-D [in_channels, out_channels/groups, kH, kW], got {ws:?}")));
        }
        if groups == 0 || stride.contains(&0) || dilation.contains(&0) {
            return Err(Error::invalid(OP, xs, format!("groups ({groups}), stride {stride:?} and dilation {dilation:?} must be positive")));
        }
        if ws[0] != xs[1] || xs[1] % groups != 0 {
            return Err(Error::invalid(OP, xs, format!("weight {ws:?} expects {} input channels (divisible by groups {groups}), but the input has {}", ws[0], xs[1])));
        }
        if output_padding[0] >= stride[0] || output_padding[1] >= stride[1] {
            return Err(Error::invalid(OP, xs, format!("output_padding {output_padding:?} must be smaller than the stride {stride:?}")));
        }
        let c_out = ws[1] * groups;
        let mut out_hw = [0usize; 2];
        for i in 0..2 {
            let full = (xs[2 + i] as isize - 1) * stride[i] as isize - 2 * padding[i] as isize + (dilation[i] * (ws[2 + i].max(1) - 1)) as isize + output_padding[i] as isize + 1;
            if full <= 0 || xs[2 + i] == 0 {
                return Err(Error::invalid(OP, xs, format!("empty output: input {xs:?} with weight {ws:?}, stride {stride:?} and padding {padding:?} gives size {full} on dim {}", 2 + i)));
            }
            out_hw[i] = full as usize;
        }
        if let Some(b) = bias {
            if b.shape() != [c_out] {
                return Err(Error::invalid(OP, xs, format!("bias must have shape [{c_out}] (out_channels), got {:?}", b.shape())));
            }
        }
        let p = Conv2dParams { stride, padding, dilation, groups };
        let y = conv2d_input_gradient(self, weight, &[xs[0], c_out, out_hw[0], out_hw[1]], &p)?;
        match bias {
            Some(b) => y.try_add(&b.try_reshape(&[1, c_out as isize, 1, 1])?),
            None => Ok(y),
        }
    }

    /// 1-D transposed convolution (`F.conv_transpose1d`): input `[N, C_in, L]` (or
    /// `[C_in, L]`), weight `[C_in, C_out/groups, K]`.
    #[allow(clippy::too_many_arguments)]
    pub fn try_conv_transpose1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        output_padding: usize,
        groups: usize,
        dilation: usize,
    ) -> Result<Tensor> {
        if !(self.rank() == 2 || self.rank() == 3) || weight.rank() != 3 {
            return Err(Error::invalid(
                "conv_transpose1d",
                self.shape(),
                format!("expected a [C, L] or [N, C, L] input and a 3-D weight, got weight {:?}", weight.shape()),
            ));
        }
        let y = self
            .try_unsqueeze(-2)?
            .try_conv_transpose2d(&weight.try_unsqueeze(-2)?, bias, [1, stride], [0, padding], [0, output_padding], groups, [1, dilation])
            .map_err(|e| rename(e, "conv_transpose1d"))?;
        y.try_squeeze(Some(-2))
    }

    /// Sliding `kernel_size` blocks of an `[N, C, H, W]` input as columns, `[N, C*kH*kW, L]`
    /// (`F.unfold`, im2col). Computed as a grouped convolution with one-hot filters, so the
    /// gradient is that convolution's.
    pub fn try_unfold(&self, kernel_size: [usize; 2], dilation: [usize; 2], padding: [usize; 2], stride: [usize; 2]) -> Result<Tensor> {
        const OP: &str = "unfold";
        if self.rank() != 4 && self.rank() != 3 {
            return Err(Error::invalid(OP, self.shape(), "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input"));
        }
        let batched = if self.rank() == 3 { self.try_unsqueeze(0)? } else { self.clone() };
        let c = batched.shape()[1];
        let w = one_hot_filters(c, kernel_size, self.dtype())?;
        let y = batched.try_conv2d(&w, None, stride, padding, dilation, c).map_err(|e| rename(e, OP))?;
        let cols = y.try_flatten(2, 3)?;
        if self.rank() == 3 {
            cols.try_squeeze(Some(0))
        } else {
            Ok(cols)
        }
    }

    /// Sums columns `[N, C*kH*kW, L]` back into an `[N, C, H, W]` image of `output_size`
    /// (`F.fold`, col2im): the adjoint of [`Tensor::try_unfold`].
    pub fn try_fold(&self, output_size: [usize; 2], kernel_size: [usize; 2], dilation: [usize; 2], padding: [usize; 2], stride: [usize; 2]) -> Result<Tensor> {
        const OP: &str = "fold";
        if self.rank() != 3 && self.rank() != 2 {
            return Err(Error::invalid(OP, self.shape(), "expected a 2-D [C*kH*kW, L] or 3-D [N, C*kH*kW, L] input"));
        }
        let x = if self.rank() == 2 { self.try_unsqueeze(0)? } else { self.clone() };
        let k = kernel_size[0] * kernel_size[1];
        let (n, ck, l) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        if k == 0 || ck % k != 0 {
            return Err(Error::invalid(OP, self.shape(), format!("dim 1 ({ck}) must be a multiple of kH*kW ({k})")));
        }
        let c = ck / k;
        let p = Conv2dParams { stride, padding, dilation, groups: c };
        let Some((oh, ow)) = p.output_size(output_size[0], output_size[1], kernel_size[0], kernel_size[1]) else {
            return Err(Error::invalid(OP, self.shape(), format!("no blocks fit output_size {output_size:?} with kernel {kernel_size:?}, padding {padding:?}")));
        };
        if oh * ow != l {
            return Err(Error::invalid(OP, self.shape(), format!("expected {} blocks ({oh}x{ow}) for output_size {output_size:?}, got {l}", oh * ow)));
        }
        let w = one_hot_filters(c, kernel_size, self.dtype())?;
        let cols = x.try_reshape(&[n as isize, ck as isize, oh as isize, ow as isize])?;
        let img = conv2d_input_gradient(&cols, &w, &[n, c, output_size[0], output_size[1]], &p)?;
        if self.rank() == 2 {
            img.try_squeeze(Some(0))
        } else {
            Ok(img)
        }
    }
}

/// `[C*K, 1, kH, kW]` filters where filter `c*K + k` picks kernel cell `k` (one-hot), for
/// unfold and fold as grouped convolutions.
fn one_hot_filters(c: usize, kernel: [usize; 2], dtype: crate::tensor::DType) -> Result<Tensor> {
    let k = kernel[0] * kernel[1];
    let eye = Tensor::eye(k, dtype).try_reshape(&[k as isize, 1, kernel[0] as isize, kernel[1] as isize])?;
    eye.try_repeat(&[c, 1, 1, 1])
}

/// An error of the 2-D op that implements `op`, renamed so the message names what was called.
fn rename(e: Error, op: &'static str) -> Error {
    match e {
        Error::InvalidArgument { shape, msg, .. } => Error::InvalidArgument { op, shape, msg },
        Error::ShapeMismatch { lhs, rhs, why, .. } => Error::ShapeMismatch { op, lhs, rhs, why },
        other => other,
    }
}

super::panicking! {
    /// 2-D convolution with options (`padding="same"`, padding modes, groups, dilation).
    fn conv2d_with / try_conv2d_with(&self, weight: &Tensor, bias: Option<&Tensor>, o: &Conv2dOptions) -> Tensor;
    /// 1-D convolution (`F.conv1d`).
    fn conv1d / try_conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize, dilation: usize, groups: usize) -> Tensor;
    /// 1-D convolution with options.
    fn conv1d_with / try_conv1d_with(&self, weight: &Tensor, bias: Option<&Tensor>, o: &Conv1dOptions) -> Tensor;
    /// 2-D transposed convolution (`F.conv_transpose2d`).
    fn conv_transpose2d / try_conv_transpose2d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: [usize; 2], padding: [usize; 2], output_padding: [usize; 2], groups: usize, dilation: [usize; 2]) -> Tensor;
    /// 1-D transposed convolution (`F.conv_transpose1d`).
    fn conv_transpose1d / try_conv_transpose1d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize, output_padding: usize, groups: usize, dilation: usize) -> Tensor;
    /// Sliding blocks as columns (`F.unfold`).
    fn unfold / try_unfold(&self, kernel_size: [usize; 2], dilation: [usize; 2], padding: [usize; 2], stride: [usize; 2]) -> Tensor;
    /// Columns summed back into an image (`F.fold`).
    fn fold / try_fold(&self, output_size: [usize; 2], kernel_size: [usize; 2], dilation: [usize; 2], padding: [usize; 2], stride: [usize; 2]) -> Tensor;
}
