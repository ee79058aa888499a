//! Pooling with every PyTorch option — `ceil_mode`, dilation, `return_indices`,
//! `divisor_override` — adaptive max pooling, 1-D pooling, and `interpolate` (nearest,
//! nearest-exact, linear/bilinear with or without `align_corners`).
//!
//! Options beyond the plain case run the window-list kernels of `kernels::pool_window`; the
//! plain case keeps the tuned kernels behind `max_pool2d`/`avg_pool2d`.

use std::sync::Arc;

use tensorbrain_kernels::pool_window::{avg_pool_windows, avg_pool_windows_backward, max_pool_windows, AxisWindows};

use super::nn::{max_pool_plain, max_pool_scatter, shape4, with_batch_dim, MaxIndices};
use super::{float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::{DType, Error, Result, StorageElement, Tensor};

/// Options of `F.max_pool2d`/`nn.MaxPool2d` (and 1-D with `N = 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolOptions<const N: usize> {
    pub kernel_size: [usize; N],
    /// Defaults to `kernel_size`.
    pub stride: [usize; N],
    pub padding: [usize; N],
    pub dilation: [usize; N],
    pub ceil_mode: bool,
}

impl<const N: usize> MaxPoolOptions<N> {
    pub fn new(kernel_size: [usize; N]) -> Self {
        MaxPoolOptions { kernel_size, stride: kernel_size, padding: [0; N], dilation: [1; N], ceil_mode: false }
    }
    pub fn stride(mut self, stride: [usize; N]) -> Self {
        self.stride = stride;
        self
    }
    pub fn padding(mut self, padding: [usize; N]) -> Self {
        self.padding = padding;
        self
    }
    pub fn dilation(mut self, dilation: [usize; N]) -> Self {
        self.dilation = dilation;
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
}

/// Options of `F.avg_pool2d`/`nn.AvgPool2d` (and 1-D with `N = 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolOptions<const N: usize> {
    pub kernel_size: [usize; N],
    /// Defaults to `kernel_size`.
    pub stride: [usize; N],
    pub padding: [usize; N],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    /// Divide every window by this instead of its size.
    pub divisor_override: Option<usize>,
}

impl<const N: usize> AvgPoolOptions<N> {
    pub fn new(kernel_size: [usize; N]) -> Self {
        AvgPoolOptions { kernel_size, stride: kernel_size, padding: [0; N], ceil_mode: false, count_include_pad: true, divisor_override: None }
    }
    pub fn stride(mut self, stride: [usize; N]) -> Self {
        self.stride = stride;
        self
    }
    pub fn padding(mut self, padding: [usize; N]) -> Self {
        self.padding = padding;
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
    pub fn divisor_override(mut self, divisor: usize) -> Self {
        self.divisor_override = Some(divisor);
        self
    }
}

/// PyTorch's `pooling_output_shape`, with its checks.
#[allow(clippy::too_many_arguments)]
fn pool_out_len(op: &'static str, x: &Tensor, axis: usize, input: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Result<usize> {
    if k == 0 || s == 0 || d == 0 {
        return Err(Error::invalid(op, x.shape(), format!("kernel_size ({k}), stride ({s}) and dilation ({d}) must be positive")));
    }
    let effective = d * (k - 1) + 1;
    if p > effective / 2 {
        return Err(Error::invalid(op, x.shape(), format!("padding ({p}) must be at most half of the (dilated) kernel size ({effective}) on spatial dim {axis}")));
    }
    let room = (input + 2 * p) as isize - effective as isize;
    let mut out = if ceil { (room + s as isize - 1).div_euclid(s as isize) + 1 } else { room.div_euclid(s as isize) + 1 };
    if ceil && (out - 1) * s as isize >= (input + p) as isize {
        out -= 1;
    }
    if out <= 0 || input == 0 {
        return Err(Error::invalid(op, x.shape(), format!("output size is too small: spatial dim {axis} of size {input} with kernel {k}, dilation {d}, padding {p} gives {out}")));
    }
    Ok(out as usize)
}

fn require_float(op: &'static str, x: &Tensor) -> Result<()> {
    if x.dtype().is_float() {
        Ok(())
    } else {
        Err(Error::DType { op, got: x.dtype(), expected: "a floating-point dtype" })
    }
}

/// Runs a 2-D pooling on the 4-D form of a 3-D `[C, H, W]` or 4-D input, returning values and
/// indices with the input's rank.
fn with_batch_dim2(op: &'static str, x: &Tensor, f: impl FnOnce(&Tensor) -> Result<(Tensor, Tensor)>) -> Result<(Tensor, Tensor)> {
    match x.rank() {
        4 => f(x),
        3 => {
            let (v, i) = f(&x.try_unsqueeze(0)?)?;
            Ok((v.try_squeeze(Some(0))?, i.try_squeeze(Some(0))?))
        }
        _ => Err(Error::invalid(op, x.shape(), "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input")),
    }
}

/// Max pooling of a 4-D input over explicit windows: values (recorded) and i64 indices.
fn max_pool_over(x: &Tensor, rows: &AxisWindows, cols: &AxisWindows) -> Result<(Tensor, Tensor)> {
    let xs = shape4(x.shape());
    let out_shape = [xs[0], xs[1], rows.len(), cols.len()];
    let (out, idx) = float_dispatch!("max_pool2d", x.dtype(), T => {
        let (v, idx) = x.with_contiguous::<T, _>(|xd| max_pool_windows(xd, xs[0] * xs[1], [xs[2], xs[3]], rows, cols))?;
        (Tensor::from_storage(T::wrap(v), &out_shape), idx)
    });
    let indices = Tensor::from_vec(idx.iter().map(|&i| i as i64).collect::<Vec<_>>(), &out_shape);
    let idx = MaxIndices::Host(Arc::new(idx));
    let values = record("max_pool2d", out, &[x], move |g, _| Ok(vec![Some(max_pool_scatter(g, &idx, xs)?)]));
    Ok((values, indices))
}

/// Max pooling of a 4-D input on a GPU, which has the plain window's kernel (no dilation, no
/// `ceil_mode`): values (recorded) and i64 indices, both on the device.
fn max_pool_on_device(x: &Tensor, o: &MaxPoolOptions<2>) -> Result<(Tensor, Tensor)> {
    if o.dilation != [1, 1] || o.ceil_mode {
        return Err(Error::DeviceOp {
            op: "max_pool2d",
            device: x.device(),
            why: format!("the CUDA kernel pools plain windows; dilation {:?} and ceil_mode={} are not supported there yet (move the input to the CPU)", o.dilation, o.ceil_mode),
        });
    }
    match max_pool_plain(x, o.kernel_size, o.stride, o.padding)? {
        (values, MaxIndices::Device(idx, _)) => Ok((values, idx)),
        (_, MaxIndices::Host(_)) => unreachable!("internal: a device max pool returned host indices"),
    }
}

/// Average pooling of a 4-D input over explicit windows with per-output divisors, recorded (its
/// adjoint is recorded with this op as its own adjoint).
fn avg_pool_over(x: &Tensor, rows: Arc<AxisWindows>, cols: Arc<AxisWindows>, divisors: Arc<Vec<f64>>) -> Result<Tensor> {
    let xs = shape4(x.shape());
    let out_shape = [xs[0], xs[1], rows.len(), cols.len()];
    let out = float_dispatch!("avg_pool2d", x.dtype(), T => {
        let v = x.with_contiguous::<T, _>(|xd| avg_pool_windows(xd, xs[0] * xs[1], [xs[2], xs[3]], &rows, &cols, &divisors))?;
        Tensor::from_storage(T::wrap(v), &out_shape)
    });
    Ok(record("avg_pool2d", out, &[x], move |g, _| Ok(vec![Some(avg_pool_adjoint(g, xs, rows.clone(), cols.clone(), divisors.clone())?)])))
}

fn avg_pool_adjoint(g: &Tensor, xs: [usize; 4], rows: Arc<AxisWindows>, cols: Arc<AxisWindows>, divisors: Arc<Vec<f64>>) -> Result<Tensor> {
    let out = float_dispatch!("avg_pool2d_backward", g.dtype(), T => {
        let v = g.with_contiguous::<T, _>(|gd| avg_pool_windows_backward(gd, xs[0] * xs[1], [xs[2], xs[3]], &rows, &cols, &divisors))?;
        Tensor::from_storage(T::wrap(v), &xs)
    });
    Ok(record("avg_pool2d_backward", out, &[g], move |u, _| Ok(vec![Some(avg_pool_over(u, rows.clone(), cols.clone(), divisors.clone())?)])))
}

/// Average pooling windows along one axis: the real cells and the padded length of each.
fn avg_axis(out_len: usize, input: usize, k: usize, s: usize, p: usize) -> (AxisWindows, Vec<usize>) {
    let mut cells = Vec::with_capacity(out_len);
    let mut padded = Vec::with_capacity(out_len);
    for o in 0..out_len {
        let start = (o * s) as isize - p as isize;
        let end = (start + k as isize).min((input + p) as isize);
        padded.push((end - start) as usize);
        cells.push((start.max(0) as usize..end.min(input as isize).max(0) as usize).collect());
    }
    (AxisWindows(cells), padded)
}

impl Tensor {
    /// Max pooling with every option (`F.max_pool2d(.., return_indices=True)`): values and the
    /// i64 index `h * W + w` of each maximum within its plane. Input `[N, C, H, W]` or
    /// `[C, H, W]`.
    pub fn try_max_pool2d_with(&self, o: &MaxPoolOptions<2>) -> Result<(Tensor, Tensor)> {
        const OP: &str = "max_pool2d";
        require_float(OP, self)?;
        if super::on_device(self) {
            return with_batch_dim2(OP, self, |x| max_pool_on_device(x, o));
        }
        with_batch_dim2(OP, self, |x| {
            let s = x.shape();
            let mut windows = Vec::with_capacity(2);
            for a in 0..2 {
                let out = pool_out_len(OP, x, a, s[2 + a], o.kernel_size[a], o.stride[a], o.padding[a], o.dilation[a], o.ceil_mode)?;
                windows.push(AxisWindows::strided(out, s[2 + a], o.kernel_size[a], o.stride[a], o.padding[a], o.dilation[a]));
            }
            max_pool_over(x, &windows[0], &windows[1])
        })
    }

    /// Average pooling with every option (`F.avg_pool2d` with `ceil_mode`, `count_include_pad`,
    /// `divisor_override`). Input `[N, C, H, W]` or `[C, H, W]`.
    pub fn try_avg_pool2d_with(&self, o: &AvgPoolOptions<2>) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        require_float(OP, self)?;
        if o.divisor_override == Some(0) {
            return Err(Error::invalid(OP, self.shape(), "divisor_override must be non-zero"));
        }
        if !o.ceil_mode && o.divisor_override.is_none() && o.padding.iter().zip(&o.kernel_size).all(|(&p, &k)| p <= k / 2) {
            // The plain case: the tuned kernel.
            return self.try_avg_pool2d(o.kernel_size, o.stride, o.padding, o.count_include_pad);
        }
        with_batch_dim(OP, self, |x| {
            let s = x.shape();
            let mut axes = Vec::with_capacity(2);
            for a in 0..2 {
                if o.padding[a] > o.kernel_size[a] / 2 {
                    return Err(Error::invalid(OP, x.shape(), format!("padding {:?} must be at most half of kernel_size {:?}", o.padding, o.kernel_size)));
                }
                let out = pool_out_len(OP, x, a, s[2 + a], o.kernel_size[a], o.stride[a], o.padding[a], 1, o.ceil_mode)?;
                axes.push(avg_axis(out, s[2 + a], o.kernel_size[a], o.stride[a], o.padding[a]));
            }
            let (rows, pr) = axes.remove(0);
            let (cols, pc) = axes.remove(0);
            let divisors: Vec<f64> = (0..rows.len() * cols.len())
                .map(|k| {
                    let (r, c) = (k / cols.len(), k % cols.len());
                    match o.divisor_override {
                        Some(d) => d as f64,
                        None if o.count_include_pad => (pr[r] * pc[c]) as f64,
                        None => (rows.0[r].len() * cols.0[c].len()) as f64,
                    }
                })
                .collect();
            avg_pool_over(x, Arc::new(rows), Arc::new(cols), Arc::new(divisors))
        })
    }

    /// Adaptive max pooling to `output_size` (`F.adaptive_max_pool2d(.., return_indices=True)`):
    /// values and i64 indices.
    pub fn try_adaptive_max_pool2d(&self, output_size: [usize; 2]) -> Result<(Tensor, Tensor)> {
        const OP: &str = "adaptive_max_pool2d";
        require_float(OP, self)?;
        with_batch_dim2(OP, self, |x| {
            let s = x.shape();
            if s[2] == 0 || s[3] == 0 || output_size.contains(&0) {
                return Err(Error::invalid(OP, x.shape(), format!("input spatial size and output_size {output_size:?} must be non-zero")));
            }
            max_pool_over(x, &AxisWindows::adaptive(output_size[0], s[2]), &AxisWindows::adaptive(output_size[1], s[3]))
        })
    }

    /// 1-D max pooling of `[N, C, L]` or `[C, L]` with values and i64 indices
    /// (`F.max_pool1d(.., return_indices=True)`).
    pub fn try_max_pool1d_with(&self, o: &MaxPoolOptions<1>) -> Result<(Tensor, Tensor)> {
        check_1d("max_pool1d", self)?;
        let o2 = MaxPoolOptions { kernel_size: [1, o.kernel_size[0]], stride: [1, o.stride[0]], padding: [0, o.padding[0]], dilation: [1, o.dilation[0]], ceil_mode: o.ceil_mode };
        let (v, i) = self.try_unsqueeze(-2)?.try_max_pool2d_with(&o2)?;
        Ok((v.try_squeeze(Some(-2))?, i.try_squeeze(Some(-2))?))
    }

    /// `F.max_pool1d(x, kernel_size, stride, padding)`.
    pub fn try_max_pool1d(&self, kernel_size: usize, stride: usize, padding: usize) -> Result<Tensor> {
        Ok(self.try_max_pool1d_with(&MaxPoolOptions::new([kernel_size]).stride([stride]).padding([padding]))?.0)
    }

    /// 1-D average pooling of `[N, C, L]` or `[C, L]` (`F.avg_pool1d`).
    pub fn try_avg_pool1d_with(&self, o: &AvgPoolOptions<1>) -> Result<Tensor> {
        check_1d("avg_pool1d", self)?;
        let o2 = AvgPoolOptions {
            kernel_size: [1, o.kernel_size[0]],
            stride: [1, o.stride[0]],
            padding: [0, o.padding[0]],
            ceil_mode: o.ceil_mode,
            count_include_pad: o.count_include_pad,
            divisor_override: o.divisor_override,
        };
        self.try_unsqueeze(-2)?.try_avg_pool2d_with(&o2)?.try_squeeze(Some(-2))
    }

    /// `F.avg_pool1d(x, kernel_size, stride, padding)`.
    pub fn try_avg_pool1d(&self, kernel_size: usize, stride: usize, padding: usize) -> Result<Tensor> {
        self.try_avg_pool1d_with(&AvgPoolOptions::new([kernel_size]).stride([stride]).padding([padding]))
    }

    /// Resizes the spatial dims (all after the first two) to `size`, or by `scale_factor`
    /// (`F.interpolate`). Nearest modes copy through an index map; linear modes are separable
    /// matrix products along each spatial dim, so every mode is differentiable.
    pub fn try_interpolate(&self, size: Option<&[usize]>, scale_factor: Option<&[f64]>, mode: Interpolation) -> Result<Tensor> {
        const OP: &str = "interpolate";
        if self.rank() < 3 {
            return Err(Error::invalid(OP, self.shape(), "expected a [N, C, spatial...] input with at least one spatial dim"));
        }
        let spatial = self.rank() - 2;
        let (outs, scales): (Vec<usize>, Vec<Option<f64>>) = match (size, scale_factor) {
            (Some(s), None) if s.len() == spatial => (s.to_vec(), vec![None; spatial]),
            (None, Some(f)) if f.len() == spatial => {
                if f.iter().any(|&v| !(v > 0.0) || !v.is_finite()) {
                    return Err(Error::invalid(OP, self.shape(), format!("scale_factor {f:?} must be positive and finite")));
                }
                (self.shape()[2..].iter().zip(f).map(|(&n, &v)| (n as f64 * v).floor() as usize).collect(), f.iter().map(|&v| Some(v)).collect())
            }
            _ => {
                return Err(Error::invalid(
                    OP,
                    self.shape(),
                    format!("give exactly one of size and scale_factor, with one entry per spatial dim ({spatial}); got size {size:?}, scale_factor {scale_factor:?}"),
                ))
            }
        };
        if outs.contains(&0) || self.shape()[2..].contains(&0) {
            return Err(Error::invalid(OP, self.shape(), format!("input and output sizes must be non-zero, output {outs:?}")));
        }
        match mode {
            Interpolation::Nearest | Interpolation::NearestExact => {
                let mut maps: Vec<Vec<usize>> = self.shape()[..2].iter().map(|&n| (0..n).collect()).collect();
                for (a, (&o, &sc)) in outs.iter().zip(&scales).enumerate() {
                    let n = self.shape()[2 + a];
                    maps.push(nearest_map(n, o, sc, mode == Interpolation::NearestExact, self.dtype()));
                }
                self.try_remap("interpolate", maps)
            }
            Interpolation::Linear { align_corners } => {
                let mut y = self.clone();
                for (a, (&o, &sc)) in outs.iter().zip(&scales).enumerate() {
                    let n = self.shape()[2 + a];
                    let m = linear_matrix(n, o, sc, align_corners, self.dtype())?;
                    // [.., n] · [n, o] along the moved spatial dim.
                    let d = (2 + a) as isize;
                    y = y.try_movedim(&[d], &[-1])?.try_matmul(&m)?.try_movedim(&[-1], &[d])?;
                }
                y.try_contiguous()
            }
        }
    }
}

/// `F.interpolate`'s `mode` (with `align_corners` for the linear modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `"nearest"`: `floor(dst * in / out)`.
    Nearest,
    /// `"nearest-exact"`: `floor((dst + 0.5) * in / out)`.
    NearestExact,
    /// `"linear"`, `"bilinear"`, `"trilinear"` (by the number of spatial dims).
    Linear { align_corners: bool },
}

/// The scale PyTorch uses along one dim: `1 / scale_factor` when one was given, else `in / out`,
/// computed in the dtype's op-math precision (f32 for f32 and the half types).
fn source_scale(n: usize, o: usize, scale_factor: Option<f64>, dtype: DType) -> f64 {
    let s = match scale_factor {
        Some(f) => 1.0 / f,
        None => n as f64 / o as f64,
    };
    if dtype == DType::F64 {
        s
    } else {
        s as f32 as f64
    }
}

fn nearest_map(n: usize, o: usize, scale_factor: Option<f64>, exact: bool, dtype: DType) -> Vec<usize> {
    let scale = source_scale(n, o, scale_factor, dtype);
    let f32_math = dtype != DType::F64;
    (0..o)
        .map(|i| {
            let pos = if exact { (i as f64 + 0.5) * scale } else { i as f64 * scale };
            let pos = if f32_math { (pos as f32).floor() as f64 } else { pos.floor() };
            (pos.max(0.0) as usize).min(n - 1)
        })
        .collect()
}

/// The `[n, o]` matrix of 1-D linear interpolation (its column `j` holds output `j`'s weights).
fn linear_matrix(n: usize, o: usize, scale_factor: Option<f64>, align_corners: bool, dtype: DType) -> Result<Tensor> {
    let mut m = vec![0.0f64; n * o];
    let scale = if align_corners {
        if o > 1 {
            (n as f64 - 1.0) / (o as f64 - 1.0)
        } else {
            0.0
        }
    } else {
        source_scale(n, o, scale_factor, dtype)
    };
    let f32_math = dtype != DType::F64;
    for j in 0..o {
        // In the dtype's op-math precision, operation by operation, as PyTorch computes it.
        let src = if f32_math {
            let sc = scale as f32;
            (if align_corners { j as f32 * sc } else { ((j as f32 + 0.5) * sc - 0.5).max(0.0) }) as f64
        } else if align_corners {
            j as f64 * scale
        } else {
            ((j as f64 + 0.5) * scale - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(n - 1);
        let i1 = if i0 + 1 < n { i0 + 1 } else { i0 };
        let l1 = if f32_math { (src as f32 - i0 as f32) as f64 } else { src - i0 as f64 };
        m[i0 * o + j] += 1.0 - l1;
        m[i1 * o + j] += l1;
    }
    Tensor::from_vec(m, &[n, o]).try_to_dtype(dtype)
}

fn check_1d(op: &'static str, x: &Tensor) -> Result<()> {
    if x.rank() == 2 || x.rank() == 3 {
        Ok(())
    } else {
        Err(Error::invalid(op, x.shape(), "expected a 2-D [C, L] or 3-D [N, C, L] input"))
    }
}

panicking! {
    /// Max pooling with all options, returning `(values, indices)`.
    fn max_pool2d_with / try_max_pool2d_with(&self, o: &MaxPoolOptions<2>) -> (Tensor, Tensor);
    /// Average pooling with all options.
    fn avg_pool2d_with / try_avg_pool2d_with(&self, o: &AvgPoolOptions<2>) -> Tensor;
    /// Adaptive max pooling, returning `(values, indices)`.
    fn adaptive_max_pool2d / try_adaptive_max_pool2d(&self, output_size: [usize; 2]) -> (Tensor, Tensor);
    /// 1-D max pooling with all options, returning `(values, indices)`.
    fn max_pool1d_with / try_max_pool1d_with(&self, o: &MaxPoolOptions<1>) -> (Tensor, Tensor);
    /// `F.max_pool1d`.
    fn max_pool1d / try_max_pool1d(&self, kernel_size: usize, stride: usize, padding: usize) -> Tensor;
    /// 1-D average pooling with all options.
    fn avg_pool1d_with / try_avg_pool1d_with(&self, o: &AvgPoolOptions<1>) -> Tensor;
    /// `F.avg_pool1d`.
    fn avg_pool1d / try_avg_pool1d(&self, kernel_size: usize, stride: usize, padding: usize) -> Tensor;
    /// `F.interpolate`.
    fn interpolate / try_interpolate(&self, size: Option<&[usize]>, scale_factor: Option<&[f64]>, mode: Interpolation) -> Tensor;
}
