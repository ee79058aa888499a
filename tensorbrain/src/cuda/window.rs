//! Convolution and pooling on a GPU: the sliding-window kernels of conv.cu and pool.cu, with
//! the convolutions' contractions done by cuBLAS through the device `matmul`.
//!
//! A convolution unrolls its input into columns `[C*KH*KW, N*OH*OW]` (im2col), so that for
//! each of the `G` groups
//! * the forward is `W_g [O/G, C/G*KH*KW] · cols_g`,
//! * the weight gradient is `dY_g [O/G, N*OH*OW] · cols_gᵀ` (the batch sum is inside the
//!   contraction),
//! * the input gradient is `col2im(W_gᵀ · dY_g)`,
//!
//! each one batched GEMM over the groups. These functions are not recorded: `ops::nn` records
//! the conv and pooling ops once, for either device, and its backward rules call back here.

use tensorbrain_kernels::conv::Conv2dParams;
use tensorbrain_kernels::cuda::launch::WindowGeometry;

use super::{contiguous, kernel_dtype, via_f32, with_dense, wrap};
use crate::autograd::no_grad;
use crate::ops::nn::PoolWindow;
use crate::tensor::{DType, Result, Tensor};

fn geometry(x_shape: [usize; 4], out_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], flag: bool) -> WindowGeometry {
    let i = |v: usize| v as i64;
    WindowGeometry {
        n: i(x_shape[0]),
        c: i(x_shape[1]),
        h: i(x_shape[2]),
        w: i(x_shape[3]),
        oh: i(out_hw[0]),
        ow: i(out_hw[1]),
        kh: i(kernel[0]),
        kw: i(kernel[1]),
        sh: i(stride[0]),
        sw: i(stride[1]),
        ph: i(padding[0]),
        pw: i(padding[1]),
        dh: i(dilation[0]),
        dw: i(dilation[1]),
        flag: i64::from(flag),
    }
}

/// The geometry of a validated convolution of `x_shape` by `w_shape`, and its output size.
fn conv_geometry(x_shape: [usize; 4], w_shape: [usize; 4], p: &Conv2dParams) -> ([usize; 2], WindowGeometry) {
    let (oh, ow) = p.output_size(x_shape[2], x_shape[3], w_shape[2], w_shape[3]).expect("internal: a validated convolution");
    ([oh, ow], geometry(x_shape, [oh, ow], [w_shape[2], w_shape[3]], p.stride, p.padding, p.dilation, false))
}

fn dims(t: &Tensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn reshape(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let s: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    t.try_reshape(&s)
}

/// The columns of `x` for a convolution by `w_shape`, viewed `[G, C/G*KH*KW, N*OH*OW]`.
fn im2col(x: &Tensor, w_shape: [usize; 4], p: &Conv2dParams) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let dt = kernel_dtype(OP, x.dtype(), x.device())?;
    let x_shape = dims(x);
    let ([oh, ow], g) = conv_geometry(x_shape, w_shape, p);
    let buf = with_dense(OP, &[x], |rt, o| rt.im2col(dt, o[0], g))?;
    let groups = p.groups;
    let rows = x_shape[1] * w_shape[2] * w_shape[3];
    wrap(buf, x.dtype(), &[rows, x_shape[0] * oh * ow]).try_reshape(&[groups as isize, (rows / groups) as isize, -1])
}

/// `dy` `[N, O, OH, OW]` as `[G, O/G, N*OH*OW]` (channels first, then the batch).
fn grad_by_group(dy: &Tensor, groups: usize) -> Result<Tensor> {
    let [n, o, oh, ow] = dims(dy);
    let moved = contiguous(&reshape(dy, &[n, o, oh * ow])?.try_transpose(0, 1)?)?;
    reshape(&moved, &[groups, o / groups, n * oh * ow])
}

/// The weight `[O, C/G, KH, KW]` as `[G, O/G, C/G*KH*KW]`.
fn weight_by_group(w: &Tensor, groups: usize) -> Result<Tensor> {
    let [o, cg, kh, kw] = dims(w);
    reshape(&contiguous(w)?, &[groups, o / groups, cg * kh * kw])
}

/// conv2d of a validated 4-D `x` by `w` (+ `bias`), on their GPU.
pub(crate) fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let mut all = vec![x, w];
    all.extend(bias);
    if let Some(r) = via_f32(&all, |t| conv2d(&t[0], &t[1], t.get(2), p)) {
        return r;
    }
    no_grad(|| {
        let (x_shape, w_shape) = (dims(x), dims(w));
        let ([oh, ow], _) = conv_geometry(x_shape, w_shape, p);
        let (n, o) = (x_shape[0], w_shape[0]);
        let cols = im2col(x, w_shape, p)?;
        let y = weight_by_group(w, p.groups)?.try_matmul(&cols)?; // [G, O/G, N*OH*OW]
        let y = contiguous(&reshape(&y, &[o, n, oh * ow])?.try_transpose(0, 1)?)?;
        let y = reshape(&y, &[n, o, oh, ow])?;
        match bias {
            Some(b) => y.try_add(&reshape(b, &[1, o, 1, 1])?),
            None => Ok(y),
        }
    })
}

/// The input gradient `[N, C, H, W]` of conv2d from `dy` and the weight.
pub(crate) fn conv2d_input_grad(dy: &Tensor, w: &Tensor, x_shape: [usize; 4], p: &Conv2dParams) -> Result<Tensor> {
    if let Some(r) = via_f32(&[dy, w], |t| conv2d_input_grad(&t[0], &t[1], x_shape, p)) {
        return r;
    }
    const OP: &str = "conv2d_backward_input";
    no_grad(|| {
        let dt = kernel_dtype(OP, dy.dtype(), dy.device())?;
        let (_, g) = conv_geometry(x_shape, dims(w), p);
        // [G, C/G*KH*KW, N*OH*OW], which is [C*KH*KW, N*OH*OW] once contiguous.
        let dcols = weight_by_group(w, p.groups)?.try_transpose(-1, -2)?.try_matmul(&grad_by_group(dy, p.groups)?)?;
        let buf = with_dense(OP, &[&dcols], |rt, o| rt.col2im(dt, o[0], g))?;
        Ok(wrap(buf, dy.dtype(), &x_shape))
    })
}

/// The weight gradient `[O, C/G, KH, KW]` of conv2d from `dy` and the input.
pub(crate) fn conv2d_weight_grad(dy: &Tensor, x: &Tensor, w_shape: [usize; 4], p: &Conv2dParams) -> Result<Tensor> {
    if let Some(r) = via_f32(&[dy, x], |t| conv2d_weight_grad(&t[0], &t[1], w_shape, p)) {
        return r;
    }
    no_grad(|| {
        let cols = im2col(x, w_shape, p)?;
        let dw = grad_by_group(dy, p.groups)?.try_matmul(&cols.try_transpose(-1, -2)?)?; // [G, O/G, C/G*KH*KW]
        reshape(&dw, &w_shape)
    })
}

fn pool_geometry(x_shape: [usize; 4], out_hw: [usize; 2], w: &PoolWindow) -> WindowGeometry {
    geometry(x_shape, out_hw, w.kernel, w.stride, w.padding, [1, 1], w.count_include_pad)
}

/// Max pooling of a validated 4-D `x` to `[N, C, OH, OW]`: the values and the i64 index of
/// each maximum within its plane, both on `x`'s GPU.
pub(crate) fn max_pool2d(x: &Tensor, out_hw: [usize; 2], win: &PoolWindow) -> Result<(Tensor, Tensor)> {
    if matches!(x.dtype(), DType::F16 | DType::BF16) {
        // A maximum is exact in f32; the values round back exactly.
        let (values, idx) = max_pool2d(&super::cast(x, DType::F32)?, out_hw, win)?;
        return Ok((super::cast(&values, x.dtype())?, idx));
    }
    const OP: &str = "max_pool2d";
    let dt = kernel_dtype(OP, x.dtype(), x.device())?;
    let x_shape = dims(x);
    let g = pool_geometry(x_shape, out_hw, win);
    let (vals, idx) = with_dense(OP, &[x], |rt, o| rt.max_pool2d(dt, o[0], g))?;
    let out_shape = [x_shape[0], x_shape[1], out_hw[0], out_hw[1]];
    Ok((wrap(vals, x.dtype(), &out_shape), wrap(idx, DType::I64, &out_shape)))
}

/// The input gradient `[N, C, H, W]` of max pooling: each `dy` routed to its maximum's cell.
pub(crate) fn max_pool2d_scatter(dy: &Tensor, idx: &Tensor, x_shape: [usize; 4], win: &PoolWindow) -> Result<Tensor> {
    if let Some(r) = via_f32(&[dy], |t| max_pool2d_scatter(&t[0], idx, x_shape, win)) {
        return r;
    }
    const OP: &str = "max_pool2d_backward";
    let dt = kernel_dtype(OP, dy.dtype(), dy.device())?;
    let g = pool_geometry(x_shape, [dy.shape()[2], dy.shape()[3]], win);
    let buf = with_dense(OP, &[dy, idx], |rt, o| rt.max_pool2d_backward(dt, o[0], o[1], g))?;
    Ok(wrap(buf, dy.dtype(), &x_shape))
}

/// `out[p, o] = u[p, idx[p, o]]` for `u` `[N, C, H, W]`: the adjoint of [`max_pool2d_scatter`].
pub(crate) fn max_pool2d_gather(u: &Tensor, idx: &Tensor, win: &PoolWindow) -> Result<Tensor> {
    if let Some(r) = via_f32(&[u], |t| max_pool2d_gather(&t[0], idx, win)) {
        return r;
    }
    const OP: &str = "max_pool2d_gather";
    let dt = kernel_dtype(OP, u.dtype(), u.device())?;
    let out_shape = dims(idx);
    let g = pool_geometry(dims(u), [out_shape[2], out_shape[3]], win);
    let buf = with_dense(OP, &[u, idx], |rt, o| rt.max_pool2d_gather(dt, o[0], o[1], g))?;
    Ok(wrap(buf, u.dtype(), &out_shape))
}

/// Average pooling of a validated 4-D `x` to `[N, C, OH, OW]`.
pub(crate) fn avg_pool2d(x: &Tensor, out_hw: [usize; 2], win: &PoolWindow) -> Result<Tensor> {
    if let Some(r) = via_f32(&[x], |t| avg_pool2d(&t[0], out_hw, win)) {
        return r;
    }
    const OP: &str = "avg_pool2d";
    let dt = kernel_dtype(OP, x.dtype(), x.device())?;
    let x_shape = dims(x);
    let g = pool_geometry(x_shape, out_hw, win);
    let buf = with_dense(OP, &[x], |rt, o| rt.avg_pool2d(dt, o[0], g))?;
    Ok(wrap(buf, x.dtype(), &[x_shape[0], x_shape[1], out_hw[0], out_hw[1]]))
}

/// The input gradient `[N, C, H, W]` of average pooling from `dy` `[N, C, OH, OW]`.
pub(crate) fn avg_pool2d_backward(dy: &Tensor, x_shape: [usize; 4], win: &PoolWindow) -> Result<Tensor> {
    if let Some(r) = via_f32(&[dy], |t| avg_pool2d_backward(&t[0], x_shape, win)) {
        return r;
    }
    const OP: &str = "avg_pool2d_backward";
    let dt = kernel_dtype(OP, dy.dtype(), dy.device())?;
    let g = pool_geometry(x_shape, [dy.shape()[2], dy.shape()[3]], win);
    let buf = with_dense(OP, &[dy], |rt, o| rt.avg_pool2d_backward(dt, o[0], g))?;
    Ok(wrap(buf, dy.dtype(), &x_shape))
}
