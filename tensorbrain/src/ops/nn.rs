//! Neural-network ops: softmax and log-softmax, 2-D convolution, max and average pooling.
//!
//! Every backward pass here is itself a recorded op whose backward is expressed with the
//! forward ops again (the adjoint of a linear map's adjoint is the map), so gradients of
//! gradients work through all of them.

use std::sync::Arc;

use half::{bf16, f16};
use rayon::prelude::*;
use tensorbrain_kernels::cpu::CpuLevel;
use tensorbrain_kernels::conv::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dParams};
use tensorbrain_kernels::pool::{avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward, pool2d_output_size};
use tensorbrain_kernels::strided::PARALLEL_THRESHOLD;
use num_traits::{Float as _, One, Zero};
use tensorbrain_kernels::Float;

use super::binary::check_same;
use super::{device, float_dispatch, on_device, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::layout::normalize_dim;
use crate::tensor::{Element, Error, Result, StorageElement, Tensor};

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax

/// An element type and the type its softmax is computed in (f32 for the half types, as
/// PyTorch's CPU kernels do).
trait SoftmaxElem: Element + Copy + Send + Sync {
    type Acc: Float;
    /// Whether `Acc` is the element type itself, so exponentials can be stored in the output
    /// between passes without rounding.
    const EXACT: bool;
    fn up(self) -> Self::Acc;
    fn down(a: Self::Acc) -> Self;
    /// `exp` in `Acc`: for f32 the vectorisable polynomial of `tensorbrain_kernels::fast_math`
    /// in its fused multiply-add form (within `EXP_FMA_ULP`; one instruction per multiply-add
    /// at the AVX2 and AVX-512 levels, a libm `fmaf` at the portable one, the same bits on
    /// every level), libm for f64.
    fn exp_acc(a: Self::Acc) -> Self::Acc;
}

impl SoftmaxElem for f32 {
    type Acc = f32;
    const EXACT: bool = true;
    #[inline(always)]
    fn up(self) -> f32 {
        self
    }
    #[inline(always)]
    fn down(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    fn exp_acc(a: f32) -> f32 {
        tensorbrain_kernels::fast_math::exp_f32_fma(a)
    }
}

impl SoftmaxElem for f64 {
    type Acc = f64;
    const EXACT: bool = true;
    #[inline(always)]
    fn up(self) -> f64 {
        self
    }
    #[inline(always)]
    fn down(a: f64) -> f64 {
        a
    }
    #[inline(always)]
    fn exp_acc(a: f64) -> f64 {
        a.exp()
    }
}

impl SoftmaxElem for f16 {
    type Acc = f32;
    const EXACT: bool = false;
    #[inline(always)]
    fn up(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn down(a: f32) -> f16 {
        f16::from_f32(a)
    }
    #[inline(always)]
    fn exp_acc(a: f32) -> f32 {
        tensorbrain_kernels::fast_math::exp_f32_fma(a)
    }
}

impl SoftmaxElem for bf16 {
    type Acc = f32;
    const EXACT: bool = false;
    #[inline(always)]
    fn up(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn down(a: f32) -> bf16 {
        bf16::from_f32(a)
    }
    #[inline(always)]
    fn exp_acc(a: f32) -> f32 {
        tensorbrain_kernels::fast_math::exp_f32_fma(a)
    }
}

/// Independent accumulators for a row's max and sum: one AVX-512 register (two AVX2 ones) of
/// f32. A single accumulator is a loop-carried dependency that the compiler may not reorder,
/// so the row, `exp` included, ran one element at a time (5× PyTorch's time on [256, 1000]).
const LANES: usize = 16;

/// The largest element of a row, NaNs skipped (as a running `if v > max` skips them).
#[inline(always)]
fn row_max<T: SoftmaxElem>(x: &[T]) -> T::Acc {
    let neg_inf = <T::Acc as num_traits::Float>::neg_infinity();
    let larger = |m: T::Acc, v: T::Acc| if v > m { v } else { m };
    let mut lanes = [neg_inf; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        let chunk: &[T; LANES] = chunk.try_into().expect("chunks_exact gives LANES elements");
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = larger(*m, v.up());
        }
    }
    for (m, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *m = larger(*m, v.up());
    }
    lanes.into_iter().fold(neg_inf, larger)
}

/// Σ exp(x - max) over a row, also writing each exponential to `out` when `store`.
#[inline(always)]
fn row_exp_sum<T: SoftmaxElem>(x: &[T], out: &mut [T], max: T::Acc, store: bool) -> T::Acc {
    let mut lanes = [T::Acc::zero(); LANES];
    let mut x_chunks = x.chunks_exact(LANES);
    let mut out_chunks = out.chunks_exact_mut(LANES);
    for (xc, oc) in (&mut x_chunks).zip(&mut out_chunks) {
        let xc: &[T; LANES] = xc.try_into().expect("chunks_exact gives LANES elements");
        let oc: &mut [T; LANES] = oc.try_into().expect("chunks_exact gives LANES elements");
        for ((s, &v), o) in lanes.iter_mut().zip(xc).zip(oc) {
            let e = T::exp_acc(v.up() - max);
            *s = *s + e;
            if store {
                *o = T::down(e);
            }
        }
    }
    for ((s, &v), o) in lanes.iter_mut().zip(x_chunks.remainder()).zip(out_chunks.into_remainder()) {
        let e = T::exp_acc(v.up() - max);
        *s = *s + e;
        if store {
            *o = T::down(e);
        }
    }
    lanes.into_iter().fold(T::Acc::zero(), |a, b| a + b)
}

/// Softmax of one contiguous row: max-subtracted, so large inputs do not overflow.
#[inline(always)]
fn softmax_row<T: SoftmaxElem>(x: &[T], out: &mut [T], log: bool) {
    let max = row_max(x);
    if log {
        let lse = row_exp_sum(x, out, max, false).ln();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = T::down(v.up() - max - lse);
        }
        return;
    }
    let inv = T::Acc::one() / row_exp_sum(x, out, max, T::EXACT);
    for (o, &v) in out.iter_mut().zip(x) {
        let e = if T::EXACT { o.up() } else { T::exp_acc(v.up() - max) };
        *o = T::down(e * inv);
    }
}

/// Softmax over the middle dim of a contiguous `[len, inner]` block (the reduced dim is not
/// the last): every pass runs along rows of `inner` contiguous columns, which vectorises.
/// `scratch` holds `2 * inner` accumulators.
#[inline(always)]
fn softmax_block<T: SoftmaxElem>(x: &[T], out: &mut [T], inner: usize, log: bool, scratch: &mut Vec<T::Acc>) {
    scratch.clear();
    scratch.resize(inner, <T::Acc as num_traits::Float>::neg_infinity());
    scratch.resize(2 * inner, T::Acc::zero());
    let (max, sum) = scratch.split_at_mut(inner);
    for row in x.chunks_exact(inner) {
        for (m, &v) in max.iter_mut().zip(row) {
            let v = v.up();
            *m = if v > *m { v } else { *m };
        }
    }
    for (xr, or) in x.chunks_exact(inner).zip(out.chunks_exact_mut(inner)) {
        for (((s, &m), &v), o) in sum.iter_mut().zip(max.iter()).zip(xr).zip(or.iter_mut()) {
            let e = T::exp_acc(v.up() - m);
            *s = *s + e;
            if T::EXACT && !log {
                *o = T::down(e);
            }
        }
    }
    if log {
        // x - max - ln(sum), in PyTorch's order of operations.
        sum.iter_mut().for_each(|s| *s = s.ln());
        for (xr, or) in x.chunks_exact(inner).zip(out.chunks_exact_mut(inner)) {
            for (((o, &v), &m), &l) in or.iter_mut().zip(xr).zip(max.iter()).zip(sum.iter()) {
                *o = T::down(v.up() - m - l);
            }
        }
    } else {
        sum.iter_mut().for_each(|s| *s = T::Acc::one() / *s);
        for (xr, or) in x.chunks_exact(inner).zip(out.chunks_exact_mut(inner)) {
            for (((o, &v), &m), &inv) in or.iter_mut().zip(xr).zip(max.iter()).zip(sum.iter()) {
                let e = if T::EXACT { o.up() } else { T::exp_acc(v.up() - m) };
                *o = T::down(e * inv);
            }
        }
    }
}

/// One `[len, inner]` block of softmax on `level` (supported by this CPU): the same code
/// compiled for AVX2+FMA or AVX-512, so that its `exp` runs 8 or 16 lanes at a time.
fn softmax_on_level<T: SoftmaxElem>(level: CpuLevel, x: &[T], out: &mut [T], inner: usize, log: bool, scratch: &mut Vec<T::Acc>) {
    #[inline(always)]
    fn any<T: SoftmaxElem>(x: &[T], out: &mut [T], inner: usize, log: bool, scratch: &mut Vec<T::Acc>) {
        if inner == 1 {
            softmax_row(x, out, log)
        } else {
            softmax_block(x, out, inner, log, scratch)
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<T: SoftmaxElem>(x: &[T], out: &mut [T], inner: usize, log: bool, scratch: &mut Vec<T::Acc>) {
        any(x, out, inner, log, scratch)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn avx512<T: SoftmaxElem>(x: &[T], out: &mut [T], inner: usize, log: bool, scratch: &mut Vec<T::Acc>) {
        any(x, out, inner, log, scratch)
    }
    match level {
        // SAFETY: `active_level` only returns levels this CPU supports.
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => unsafe { avx512(x, out, inner, log, scratch) },
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => unsafe { avx2(x, out, inner, log, scratch) },
        _ => any(x, out, inner, log, scratch),
    }
}

/// Softmax of a contiguous `[outer, len, inner]` array along `len`, in parallel over the
/// outer blocks when large.
fn softmax_kernel<T: SoftmaxElem>(x: &[T], len: usize, inner: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    let block = len * inner;
    if block == 0 {
        return out;
    }
    let level = tensorbrain_kernels::cpu::active_level();
    let run = |scratch: &mut Vec<T::Acc>, (xb, ob): (&[T], &mut [T])| softmax_on_level(level, xb, ob, inner, log, scratch);
    if x.len() >= PARALLEL_THRESHOLD && x.len() > block {
        let min_blocks = (PARALLEL_THRESHOLD / block).max(1);
        x.par_chunks(block).zip(out.par_chunks_mut(block)).with_min_len(min_blocks).for_each_init(Vec::new, run);
    } else {
        let mut scratch = Vec::new();
        x.chunks(block).zip(out.chunks_mut(block)).for_each(|p| run(&mut scratch, p));
    }
    out
}

impl Tensor {
    fn softmax_impl(&self, op: &'static str, dim: isize, log: bool) -> Result<Tensor> {
        let d = normalize_dim(op, dim, self.rank())?;
        let shape = self.shape();
        let len = shape.get(d).copied().unwrap_or(1);
        let inner: usize = shape.iter().skip(d + 1).product();
        #[cfg(feature = "cuda")]
        if super::on_device(self) {
            return crate::cuda::softmax(self, d, op == "log_softmax");
        }
        float_dispatch!(op, self.dtype(), T => {
            let v = self.with_contiguous::<T, _>(|x| softmax_kernel(x, len, inner, log))?;
            Ok(Tensor::from_storage(T::wrap(v), shape))
        })
    }

    /// Softmax along `dim`: `exp(x) / sum(exp(x))`, computed max-subtracted.
    pub fn try_softmax(&self, dim: isize) -> Result<Tensor> {
        let out = self.softmax_impl("softmax", dim, false)?;
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("softmax", out, &[self], move |g, _| {
            // Recompute y when the backward is being recorded so the saved output does not
            // keep this node alive through its own graph.
            let y = if is_grad_enabled() { x.try_softmax(dim)? } else { saved.clone() };
            Ok(vec![Some(softmax_backward(&y, g, dim)?)])
        }))
    }

    /// Log-softmax along `dim`: `x - max - ln(sum(exp(x - max)))`.
    pub fn try_log_softmax(&self, dim: isize) -> Result<Tensor> {
        let out = self.softmax_impl("log_softmax", dim, true)?;
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("log_softmax", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_log_softmax(dim)? } else { saved.clone() };
            Ok(vec![Some(log_softmax_backward(&y, g, dim)?)])
        }))
    }
}

/// The input gradient of softmax from its output `y`: `y * (g - sum(g * y))`.
pub(crate) fn softmax_backward(y: &Tensor, g: &Tensor, dim: isize) -> Result<Tensor> {
    let s = g.try_mul(y)?.try_sum(&[dim], true)?;
    y.try_mul(&g.try_sub(&s)?)
}

/// The input gradient of log-softmax from its output `y`: `g - exp(y) * sum(g)`.
pub(crate) fn log_softmax_backward(y: &Tensor, g: &Tensor, dim: isize) -> Result<Tensor> {
    let s = g.try_sum(&[dim], true)?;
    g.try_sub(&y.try_exp()?.try_mul(&s)?)
}

/// The input gradient of conv2d for an input of `x_shape` (used by generated backward code).
pub(crate) fn conv2d_input_gradient(g: &Tensor, w: &Tensor, x_shape: &[usize], p: &Conv2dParams) -> Result<Tensor> {
    conv2d_input_grad(g, w, shape4(x_shape), *p)
}

/// The weight gradient of conv2d for a weight of `w_shape` (used by generated backward code).
pub(crate) fn conv2d_weight_gradient(g: &Tensor, x: &Tensor, w_shape: &[usize], p: &Conv2dParams) -> Result<Tensor> {
    conv2d_weight_grad(g, x, shape4(w_shape), *p)
}

/// The input gradient of max pooling, given the pooled input `x` (the argmax is recomputed,
/// so a training forward saves `x` rather than indices).
pub(crate) fn max_pool2d_input_gradient(x: &Tensor, g: &Tensor, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Result<Tensor> {
    let x_shape = shape4(x.shape());
    let win = PoolWindow { kernel, stride, padding, count_include_pad: false };
    let idx = if on_device(x) {
        let out_hw = [g.shape()[2], g.shape()[3]];
        MaxIndices::Device(crate::autograd::no_grad(|| device::max_pool2d(x, out_hw, &win))?.1, win)
    } else {
        MaxIndices::Host(Arc::new(float_dispatch!("max_pool2d_backward", x.dtype(), T => {
            x.with_contiguous::<T, _>(|xd| max_pool2d_forward(xd, x_shape, kernel, stride, padding).1)?
        })))
    };
    max_pool_scatter(g, &idx, x_shape)
}

/// The input gradient of average pooling over `x` (only its shape is read).
pub(crate) fn avg_pool2d_input_gradient(x: &Tensor, g: &Tensor, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], count_include_pad: bool) -> Result<Tensor> {
    avg_pool_backward_op(g, shape4(x.shape()), PoolWindow { kernel, stride, padding, count_include_pad })
}

// ---------------------------------------------------------------------------------------------
// conv2d

pub(crate) fn shape4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// Runs `f` on the 4-D `[N, C, H, W]` form of a 3-D `[C, H, W]` or 4-D input, restoring the
/// input's rank on the result.
pub(crate) fn with_batch_dim(op: &'static str, x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match x.rank() {
        4 => f(x),
        3 => f(&x.try_unsqueeze(0)?)?.try_squeeze(Some(0)),
        _ => Err(Error::invalid(op, x.shape(), "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input")),
    }
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch's `F.conv2d`) of an `[N, C, H, W]` (or
    /// `[C, H, W]`) input with an `[O, C/groups, KH, KW]` weight and optional `[O]` bias.
    pub fn try_conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        check_same(OP, self, weight)?;
        if let Some(b) = bias {
            check_same(OP, self, b)?;
        }
        let p = Conv2dParams { stride, padding, dilation, groups };
        with_batch_dim(OP, self, |x| {
            check_conv(x, weight, bias, &p)?;
            conv2d_op(x, weight, bias, p)
        })
    }
}

/// Validates shapes and parameters with messages naming both shapes (the kernels panic).
fn check_conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<()> {
    const OP: &str = "conv2d";
    let (xs, ws) = (x.shape(), w.shape());
    if ws.len() != 4 {
        return Err(Error::invalid(OP, xs, format!("weight must be 4-D [out_channels, in_channels/groups, kH, kW], got {ws:?}")));
    }
    if p.groups == 0 {
        return Err(Error::invalid(OP, xs, "groups must be positive"));
    }
    if p.stride.contains(&0) || p.dilation.contains(&0) {
        return Err(Error::invalid(OP, xs, format!("stride {:?} and dilation {:?} must be positive", p.stride, p.dilation)));
    }
    let (c, o, g) = (xs[1], ws[0], p.groups);
    if c % g != 0 || o % g != 0 {
        return Err(Error::invalid(OP, xs, format!("groups ({g}) must divide both the input channels ({c}) and the weight's output channels ({o}, weight {ws:?})")));
    }
    if ws[1] * g != c {
        return Err(Error::invalid(
            OP,
            xs,
            format!("weight {ws:?} expects {} input channels ({} per group x {g} groups), but the input has {c}", ws[1] * g, ws[1]),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [o] {
            return Err(Error::invalid(OP, xs, format!("bias must have shape [{o}] (the weight {ws:?} has {o} output channels), got {:?}", b.shape())));
        }
    }
    if p.output_size(xs[2], xs[3], ws[2], ws[3]).is_none() {
        let kh = p.dilation[0] * (ws[2].max(1) - 1) + 1;
        let kw = p.dilation[1] * (ws[3].max(1) - 1) + 1;
        return Err(Error::invalid(
            OP,
            xs,
            format!(
                "empty output: the (dilated) kernel {kh}x{kw} of weight {ws:?} is larger than the padded input {}x{} (padding {:?})",
                xs[2] + 2 * p.padding[0],
                xs[3] + 2 * p.padding[1],
                p.padding
            ),
        ));
    }
    Ok(())
}

/// conv2d of 4-D `x` by `w` (+ `bias`), all of element type `T`, not recorded, with
/// `then(s, out_s)` run on each sample's output as soon as it is computed (see
/// `tensorbrain_kernels::conv::conv2d_forward_then`): compiled graphs fuse their conv
/// epilogues through it. Shapes are validated as by [`Tensor::try_conv2d`].
pub(crate) fn conv2d_forward_then<T: Element + Float>(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams, then: impl Fn(usize, &mut [T]) + Sync + Send) -> Result<Tensor> {
    const OP: &str = "conv2d";
    check_same(OP, x, w)?;
    if let Some(b) = bias {
        check_same(OP, x, b)?;
    }
    if x.rank() != 4 || x.dtype() != T::DTYPE {
        return Err(Error::invalid(OP, x.shape(), format!("the fused conv takes a 4-D {:?} input, got {:?}", T::DTYPE, x.dtype())));
    }
    check_conv(x, w, bias, &p)?;
    let (x_shape, w_shape) = (shape4(x.shape()), shape4(w.shape()));
    let (oh, ow) = p.output_size(x_shape[2], x_shape[3], w_shape[2], w_shape[3]).expect("validated");
    let v = x.with_contiguous::<T, _>(|xd| {
        w.with_contiguous::<T, _>(|wd| match bias {
            Some(b) => b.with_contiguous::<T, _>(|bd| tensorbrain_kernels::conv::conv2d_forward_then(xd, x_shape, wd, w_shape, Some(bd), &p, &then)),
            None => Ok(tensorbrain_kernels::conv::conv2d_forward_then(xd, x_shape, wd, w_shape, None, &p, &then)),
        })
    })???;
    Ok(Tensor::from_storage(T::wrap(v), &[x_shape[0], w_shape[0], oh, ow]))
}

/// The conv2d forward on validated 4-D operands, recorded.
fn conv2d_op(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    let (x_shape, w_shape) = (shape4(x.shape()), shape4(w.shape()));
    let (oh, ow) = p.output_size(x_shape[2], x_shape[3], w_shape[2], w_shape[3]).expect("validated");
    let out_shape = [x_shape[0], w_shape[0], oh, ow];
    let out = if on_device(x) {
        device::conv2d(x, w, bias, &p)?
    } else {
        float_dispatch!("conv2d", x.dtype(), T => {
            let v = x.with_contiguous::<T, _>(|xd| {
                w.with_contiguous::<T, _>(|wd| match bias {
                    Some(b) => b.with_contiguous::<T, _>(|bd| conv2d_forward(xd, x_shape, wd, w_shape, Some(bd), &p)),
                    None => Ok(conv2d_forward(xd, x_shape, wd, w_shape, None, &p)),
                })
            })???;
            Tensor::from_storage(T::wrap(v), &out_shape)
        })
    };
    let (xc, wc) = (x.clone(), w.clone());
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    Ok(record("conv2d", out, &inputs, move |g, need| {
        let mut grads = vec![
            if need[0] { Some(conv2d_input_grad(g, &wc, x_shape, p)?) } else { None },
            if need[1] { Some(conv2d_weight_grad(g, &xc, w_shape, p)?) } else { None },
        ];
        if need.len() > 2 {
            grads.push(if need[2] { Some(g.try_sum(&[0, 2, 3], false)?) } else { None });
        }
        Ok(grads)
    }))
}

/// The input gradient of conv2d (a transposed convolution of `g` by `w`), recorded: it is
/// bilinear in `g` and `w`, with adjoints conv2d (for `g`) and the weight gradient (for `w`).
fn conv2d_input_grad(g: &Tensor, w: &Tensor, x_shape: [usize; 4], p: Conv2dParams) -> Result<Tensor> {
    let w_shape = shape4(w.shape());
    check_same("conv2d_backward_input", g, w)?;
    let out = if on_device(g) {
        device::conv2d_input_grad(g, w, x_shape, &p)?
    } else {
        float_dispatch!("conv2d_backward_input", g.dtype(), T => {
            let v = g.with_contiguous::<T, _>(|gd| w.with_contiguous::<T, _>(|wd| conv2d_backward_input(gd, wd, x_shape, w_shape, &p)))??;
            Tensor::from_storage(T::wrap(v), &x_shape)
        })
    };
    let (gc, wc) = (g.clone(), w.clone());
    Ok(record("conv2d_backward_input", out, &[g, w], move |u, need| {
        Ok(vec![
            if need[0] { Some(conv2d_op(u, &wc, None, p)?) } else { None },
            if need[1] { Some(conv2d_weight_grad(&gc, u, w_shape, p)?) } else { None },
        ])
    }))
}

/// The weight gradient of conv2d (`g` correlated with `x`, summed over the batch), recorded:
/// bilinear in `g` and `x`, with adjoints conv2d (for `g`) and the input gradient (for `x`).
fn conv2d_weight_grad(g: &Tensor, x: &Tensor, w_shape: [usize; 4], p: Conv2dParams) -> Result<Tensor> {
    let x_shape = shape4(x.shape());
    check_same("conv2d_backward_weight", g, x)?;
    let out = if on_device(g) {
        device::conv2d_weight_grad(g, x, w_shape, &p)?
    } else {
        float_dispatch!("conv2d_backward_weight", g.dtype(), T => {
            let v = g.with_contiguous::<T, _>(|gd| x.with_contiguous::<T, _>(|xd| conv2d_backward_weight(gd, xd, x_shape, w_shape, &p)))??;
            Tensor::from_storage(T::wrap(v), &w_shape)
        })
    };
    let (gc, xc) = (g.clone(), x.clone());
    Ok(record("conv2d_backward_weight", out, &[g, x], move |v, need| {
        Ok(vec![
            if need[0] { Some(conv2d_op(&xc, v, None, p)?) } else { None },
            if need[1] { Some(conv2d_input_grad(&gc, v, x_shape, p)?) } else { None },
        ])
    }))
}

// ---------------------------------------------------------------------------------------------
// pooling

/// Validates a pooling window on a 4-D input, giving the output `(OH, OW)`.
fn check_pool(op: &'static str, x: &Tensor, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Result<(usize, usize)> {
    let s = x.shape();
    if kernel.contains(&0) || stride.contains(&0) {
        return Err(Error::invalid(op, s, format!("kernel_size {kernel:?} and stride {stride:?} must be positive")));
    }
    if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
        return Err(Error::invalid(op, s, format!("padding {padding:?} must be at most half of kernel_size {kernel:?}")));
    }
    pool2d_output_size(s[2], s[3], kernel, stride, padding).ok_or_else(|| {
        Error::invalid(
            op,
            s,
            format!("empty output: kernel_size {kernel:?} is larger than the padded input {}x{} (padding {padding:?})", s[2] + 2 * padding[0], s[3] + 2 * padding[1]),
        )
    })
}

impl Tensor {
    /// 2-D max pooling over an `[N, C, H, W]` (or `[C, H, W]`) input (`F.max_pool2d` with
    /// dilation 1 and `ceil_mode=False`). Padding counts as −∞.
    pub fn try_max_pool2d(&self, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Result<Tensor> {
        with_batch_dim("max_pool2d", self, |x| Ok(max_pool_plain(x, kernel_size, stride, padding)?.0))
    }

    /// 2-D average pooling over an `[N, C, H, W]` (or `[C, H, W]`) input (`F.avg_pool2d` with
    /// `ceil_mode=False`); `count_include_pad` divides by the padded window size.
    pub fn try_avg_pool2d(&self, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2], count_include_pad: bool) -> Result<Tensor> {
        with_batch_dim("avg_pool2d", self, |x| {
            check_pool("avg_pool2d", x, kernel_size, stride, padding)?;
            avg_pool_op(x, PoolWindow { kernel: kernel_size, stride, padding, count_include_pad })
        })
    }
}

/// Max pooling of a 4-D input with a plain window: the values (recorded) and where each
/// maximum lies.
pub(crate) fn max_pool_plain(x: &Tensor, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Result<(Tensor, MaxIndices)> {
    let (oh, ow) = check_pool("max_pool2d", x, kernel_size, stride, padding)?;
    let x_shape = shape4(x.shape());
    let out_shape = [x_shape[0], x_shape[1], oh, ow];
    let win = PoolWindow { kernel: kernel_size, stride, padding, count_include_pad: false };
    let (out, idx) = if on_device(x) {
        let (out, idx) = device::max_pool2d(x, [oh, ow], &win)?;
        (out, MaxIndices::Device(idx, win))
    } else {
        float_dispatch!("max_pool2d", x.dtype(), T => {
            let (v, idx) = x.with_contiguous::<T, _>(|xd| max_pool2d_forward(xd, x_shape, kernel_size, stride, padding))?;
            (Tensor::from_storage(T::wrap(v), &out_shape), MaxIndices::Host(Arc::new(idx)))
        })
    };
    let saved = idx.clone();
    Ok((record("max_pool2d", out, &[x], move |g, _| Ok(vec![Some(max_pool_scatter(g, &saved, x_shape)?)])), idx))
}

/// Where each max-pool output's maximum lies in its input plane: indices on the host for a
/// CPU pooling, an i64 tensor on the device (with its window, which the device kernels need)
/// for a GPU one.
#[derive(Clone)]
pub(crate) enum MaxIndices {
    Host(Arc<Vec<u32>>),
    Device(Tensor, PoolWindow),
}

/// Routes each gradient of a max-pool output to its input cell (recorded: linear in `g`, its
/// adjoint gathers at the same indices).
pub(crate) fn max_pool_scatter(g: &Tensor, idx: &MaxIndices, x_shape: [usize; 4]) -> Result<Tensor> {
    let out_hw = [g.shape()[2], g.shape()[3]];
    let out = match idx {
        MaxIndices::Device(i, win) => device::max_pool2d_scatter(g, i, x_shape, win)?,
        MaxIndices::Host(idx) => float_dispatch!("max_pool2d_backward", g.dtype(), T => {
            let v = g.with_contiguous::<T, _>(|gd| max_pool2d_backward(gd, idx, x_shape, out_hw))?;
            Tensor::from_storage(T::wrap(v), &x_shape)
        }),
    };
    let (idx, out_shape) = (idx.clone(), shape4(g.shape()));
    Ok(record("max_pool2d_backward", out, &[g], move |u, _| Ok(vec![Some(max_pool_gather(u, &idx, out_shape)?)])))
}

/// `out[plane, o] = u[plane, idx[plane, o]]`: the adjoint of [`max_pool_scatter`], recorded.
fn max_pool_gather(u: &Tensor, indices: &MaxIndices, out_shape: [usize; 4]) -> Result<Tensor> {
    let x_shape = shape4(u.shape());
    let (in_plane, out_plane) = (x_shape[2] * x_shape[3], out_shape[2] * out_shape[3]);
    let out = match indices {
        MaxIndices::Device(i, win) => device::max_pool2d_gather(u, i, win)?,
        MaxIndices::Host(idx) => float_dispatch!("max_pool2d_gather", u.dtype(), T => {
            let v = u.with_contiguous::<T, _>(|ud| {
                let mut v = vec![T::default(); idx.len()];
                if out_plane > 0 {
                    for (p, (o, ix)) in v.chunks_mut(out_plane).zip(idx.chunks(out_plane)).enumerate() {
                        let src = &ud[p * in_plane..][..in_plane];
                        o.iter_mut().zip(ix).for_each(|(o, &i)| *o = src[i as usize]);
                    }
                }
                v
            })?;
            Tensor::from_storage(T::wrap(v), &out_shape)
        }),
    };
    let idx = indices.clone();
    Ok(record("max_pool2d_gather", out, &[u], move |g, _| Ok(vec![Some(max_pool_scatter(g, &idx, x_shape)?)])))
}

/// A plain pooling window (no dilation, `ceil_mode=False`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolWindow {
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
    pub(crate) count_include_pad: bool,
}

/// Average pooling of a validated 4-D input, recorded (its backward is its adjoint, whose
/// backward is this op again).
fn avg_pool_op(x: &Tensor, w: PoolWindow) -> Result<Tensor> {
    let x_shape = shape4(x.shape());
    let (oh, ow) = pool2d_output_size(x_shape[2], x_shape[3], w.kernel, w.stride, w.padding).expect("validated");
    let out_shape = [x_shape[0], x_shape[1], oh, ow];
    let out = if on_device(x) {
        device::avg_pool2d(x, [oh, ow], &w)?
    } else {
        float_dispatch!("avg_pool2d", x.dtype(), T => {
            let v = x.with_contiguous::<T, _>(|xd| avg_pool2d_forward(xd, x_shape, w.kernel, w.stride, w.padding, w.count_include_pad))?;
            Tensor::from_storage(T::wrap(v), &out_shape)
        })
    };
    Ok(record("avg_pool2d", out, &[x], move |g, _| Ok(vec![Some(avg_pool_backward_op(g, x_shape, w)?)])))
}

fn avg_pool_backward_op(g: &Tensor, x_shape: [usize; 4], w: PoolWindow) -> Result<Tensor> {
    let out = if on_device(g) {
        device::avg_pool2d_backward(g, x_shape, &w)?
    } else {
        float_dispatch!("avg_pool2d_backward", g.dtype(), T => {
            let v = g.with_contiguous::<T, _>(|gd| avg_pool2d_backward(gd, x_shape, w.kernel, w.stride, w.padding, w.count_include_pad))?;
            Tensor::from_storage(T::wrap(v), &x_shape)
        })
    };
    Ok(record("avg_pool2d_backward", out, &[g], move |u, _| Ok(vec![Some(avg_pool_op(u, w)?)])))
}

panicking! {
    /// Softmax along `dim` (negative counts from the end).
    fn softmax / try_softmax(&self, dim: isize) -> Tensor;
    /// Log-softmax along `dim` (negative counts from the end).
    fn log_softmax / try_log_softmax(&self, dim: isize) -> Tensor;
    /// 2-D convolution (`F.conv2d`): input `[N, C, H, W]` or `[C, H, W]`, weight
    /// `[O, C/groups, KH, KW]`, optional bias `[O]`.
    fn conv2d / try_conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Tensor;
    /// 2-D max pooling (`F.max_pool2d`, dilation 1, `ceil_mode=False`).
    fn max_pool2d / try_max_pool2d(&self, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Tensor;
    /// 2-D average pooling (`F.avg_pool2d`, `ceil_mode=False`).
    fn avg_pool2d / try_avg_pool2d(&self, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2], count_include_pad: bool) -> Tensor;
}
