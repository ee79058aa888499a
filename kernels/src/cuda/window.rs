//! Launchers of the sliding-window kernels: im2col/col2im (conv.cu) and max/average pooling
//! (pool.cu). Each takes its operands as (buffer, element offset) of contiguous NCHW data, with
//! the sizes in a [`WindowGeometry`], and returns a new buffer that the kernel fills entirely
//! (one thread per output element, no zero-fill needed).

use super::codegen::DType;
use super::launch::WindowGeometry;
use super::runtime::{CudaRuntime, DeviceBuffer, KernelArg};
use super::CudaError;

/// A contiguous operand: `buf` from element `offset`.
pub type Operand<'a> = (&'a DeviceBuffer, usize);

fn count(g: &WindowGeometry, what: Counted) -> usize {
    let v = match what {
        Counted::Input => g.n * g.c * g.h * g.w,
        Counted::Output => g.n * g.c * g.oh * g.ow,
        Counted::Columns => g.c * g.kh * g.kw * g.n * g.oh * g.ow,
    };
    v as usize
}

#[derive(Clone, Copy)]
enum Counted {
    /// `[n, c, h, w]`
    Input,
    /// `[n, c, oh, ow]` (pooling keeps the channels)
    Output,
    /// `[c * kh * kw, n * oh * ow]`
    Columns,
}

impl CudaRuntime {
    /// The im2col columns `[C*KH*KW, N*OH*OW]` of `x` `[N, C, H, W]` (padding reads as 0).
    pub fn im2col(&'static self, dtype: DType, x: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel("conv.cu", "im2col", dtype, &[x], count(&g, Counted::Columns), None, g)
    }

    /// The input gradient `[N, C, H, W]` from column gradients `[C*KH*KW, N*OH*OW]`: each cell
    /// sums the columns that read it.
    pub fn col2im(&'static self, dtype: DType, cols: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel("conv.cu", "col2im", dtype, &[cols], count(&g, Counted::Input), None, g)
    }

    /// Max pooling of `x` `[N, C, H, W]`: the values `[N, C, OH, OW]` and the i64 index within
    /// its plane of each maximum.
    pub fn max_pool2d(&'static self, dtype: DType, x: Operand<'_>, g: WindowGeometry) -> Result<(DeviceBuffer, DeviceBuffer), CudaError> {
        let n = count(&g, Counted::Output);
        let idx = self.alloc(n * 8)?;
        let out = self.window_kernel("pool.cu", "max_pool2d_fwd", dtype, &[x], n, Some(&idx), g)?;
        Ok((out, idx))
    }

    /// The input gradient of max pooling from `dy` `[N, C, OH, OW]` and the forward's indices.
    pub fn max_pool2d_backward(&'static self, dtype: DType, dy: Operand<'_>, idx: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel_i64_first("max_pool2d_bwd", dtype, dy, idx, count(&g, Counted::Input), g)
    }

    /// `out[p, o] = u[p, idx[p, o]]` for `u` `[N, C, H, W]`: the adjoint of the backward.
    pub fn max_pool2d_gather(&'static self, dtype: DType, u: Operand<'_>, idx: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel_i64_first("max_pool2d_gather", dtype, u, idx, count(&g, Counted::Output), g)
    }

    /// Average pooling of `x` `[N, C, H, W]` (`g.flag` = count_include_pad).
    pub fn avg_pool2d(&'static self, dtype: DType, x: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel("pool.cu", "avg_pool2d_fwd", dtype, &[x], count(&g, Counted::Output), None, g)
    }

    /// The input gradient of average pooling from `dy` `[N, C, OH, OW]`.
    pub fn avg_pool2d_backward(&'static self, dtype: DType, dy: Operand<'_>, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        self.window_kernel("pool.cu", "avg_pool2d_bwd", dtype, &[dy], count(&g, Counted::Input), None, g)
    }

    /// `kernel(inputs..., out, [extra_out], g)` writing `out_len` elements of `dtype`.
    #[allow(clippy::too_many_arguments)]
    fn window_kernel(
        &'static self,
        file: &str,
        kernel: &str,
        dtype: DType,
        inputs: &[Operand<'_>],
        out_len: usize,
        extra_out: Option<&DeviceBuffer>,
        g: WindowGeometry,
    ) -> Result<DeviceBuffer, CudaError> {
        let out = self.alloc(out_len * dtype.size())?;
        let mut args: Vec<KernelArg> = inputs.iter().map(|(b, off)| KernelArg::Ptr(b.at(dtype, *off))).collect();
        args.push(KernelArg::Ptr(out.ptr()));
        args.extend(extra_out.map(|b| KernelArg::Ptr(b.ptr())));
        args.push(KernelArg::Window(g));
        self.launch_elements(file, &format!("{kernel}_{}", dtype.suffix()), out_len, &args)?;
        Ok(out)
    }

    /// `kernel(values, idx, out, g)` of pool.cu, `idx` holding i64 indices.
    fn window_kernel_i64_first(&'static self, kernel: &str, dtype: DType, values: Operand<'_>, idx: Operand<'_>, out_len: usize, g: WindowGeometry) -> Result<DeviceBuffer, CudaError> {
        let out = self.alloc(out_len * dtype.size())?;
        let args = [
            KernelArg::Ptr(values.0.at(dtype, values.1)),
            KernelArg::Ptr(idx.0.ptr() + (idx.1 * 8) as u64),
            KernelArg::Ptr(out.ptr()),
            KernelArg::Window(g),
        ];
        self.launch_elements("pool.cu", &format!("{kernel}_{}", dtype.suffix()), out_len, &args)?;
        Ok(out)
    }
}
