//! Tensors on a GPU (feature `cuda`): moving tensors between host and device, and the ops
//! that have CUDA kernels.
//!
//! The split follows candle: the kernels and everything that talks to the driver live in
//! `tensorbrain_kernels::cuda` (`runtime.rs`: allocator, copies, launches on raw device
//! addresses); this module only turns tensors (storage, layout, dtype) into those calls and
//! wraps the results as tensors. Ops reach it from their CPU entry points (the `float_map!`
//! and `float_zip!` macros, `matmul`, `sum`/`max`, softmax, `contiguous`), so autograd, which
//! records the same ops, runs on the GPU unchanged: a backward rule written with tensor ops
//! runs wherever its inputs are.
//!
//! An op without a CUDA kernel returns [`Error::NoDeviceKernel`] (or, where the op is known,
//! [`Error::DeviceOp`] naming it) instead of reading memory it cannot see. docs/cuda.md lists
//! what runs on a GPU. None of this has run on a GPU yet; it builds and its CPU-side logic is
//! tested on machines without CUDA.

mod fused;
mod index;
mod matmul;
mod optim;
mod window;

use std::sync::{Arc, RwLock};

use tensorbrain_kernels::cuda::codegen::DType as KernelDType;
use tensorbrain_kernels::cuda::runtime::{self as rt, CudaRuntime, DeviceBuffer, Strided};
use tensorbrain_kernels::cuda::CudaError;

pub use tensorbrain_kernels::cuda::alloc::MemoryStats;
pub use tensorbrain_kernels::cuda::runtime::{allow_tf32, set_allow_tf32};

pub(crate) use fused::{fused, runs_on_device as fused_runs_on_device};
pub(crate) use index::{index_add, index_select};
pub(crate) use matmul::matmul;
pub(crate) use optim::adam_step;
pub(crate) use window::{avg_pool2d, avg_pool2d_backward, conv2d, conv2d_input_grad, conv2d_weight_grad, max_pool2d, max_pool2d_gather, max_pool2d_scatter};

use crate::autograd::record;
use crate::ops::reduce::ReducePlan;
use crate::tensor::CudaStorage;
use crate::tensor::{CpuStorage, DType, Device, Error, Layout, Result, Storage, Tensor};

/// Number of CUDA devices the driver sees; 0 without a driver.
pub fn device_count() -> usize {
    tensorbrain_kernels::cuda::driver::device_count().unwrap_or(0)
}

/// Whether `Device::Cuda(0)` can hold tensors on this machine.
pub fn is_available() -> bool {
    device_count() > 0
}

/// The caching allocator's statistics for device `ordinal` (`torch.cuda.memory_stats`):
/// bytes allocated and reserved, their peaks, cache hits.
pub fn memory_stats(ordinal: usize) -> Result<MemoryStats> {
    Ok(runtime(Device::Cuda(ordinal), "memory_stats")?.memory_stats())
}

/// Returns device `ordinal`'s cached free blocks to the driver (`torch.cuda.empty_cache`).
pub fn empty_cache(ordinal: usize) -> Result<()> {
    let rt = runtime(Device::Cuda(ordinal), "empty_cache")?;
    rt.empty_cache().map_err(|e| device_error("empty_cache", Device::Cuda(ordinal), e))
}

/// Waits until all work queued on device `ordinal` has finished (`torch.cuda.synchronize`).
pub fn synchronize(ordinal: usize) -> Result<()> {
    let rt = runtime(Device::Cuda(ordinal), "synchronize")?;
    rt.synchronize().map_err(|e| device_error("synchronize", Device::Cuda(ordinal), e))
}

fn runtime(device: Device, op: &'static str) -> Result<&'static CudaRuntime> {
    match device {
        Device::Cuda(n) => rt::runtime(n).map_err(|e| Error::DeviceUnavailable { op, device, why: e.to_string() }),
        Device::Cpu => unreachable!("internal: the CUDA runtime asked for the CPU"),
    }
}

fn device_error(op: &'static str, device: Device, e: CudaError) -> Error {
    Error::DeviceOp { op, device, why: e.to_string() }
}

/// The kernels' element type: the hand-written kernels exist for f32 and f64.
fn kernel_dtype(op: &'static str, dtype: DType, device: Device) -> Result<KernelDType> {
    match dtype {
        DType::F32 => Ok(KernelDType::F32),
        DType::F64 => Ok(KernelDType::F64),
        other => Err(Error::DeviceOp { op, device, why: format!("the CUDA kernels take f32 and f64 tensors, this one is {other}") }),
    }
}

/// An op this backend has no kernel for.
pub(crate) fn unsupported(op: &'static str, device: Device) -> Error {
    Error::DeviceOp {
        op,
        device,
        why: "no CUDA kernel for this op yet (docs/cuda.md lists the ops that run on a GPU); move the input with .to_device(Device::Cpu) first".into(),
    }
}

/// A contiguous tensor over a new device buffer.
fn wrap(buf: DeviceBuffer, dtype: DType, shape: &[usize]) -> Tensor {
    let device = Device::Cuda(buf.ordinal());
    let len = shape.iter().product();
    let storage = Storage::Cuda(CudaStorage { buf, dtype, len });
    Tensor::from_parts(Arc::new(RwLock::new(storage)), Layout::contiguous(shape), dtype, device)
}

/// The device buffer of a GPU tensor's storage (under the caller's lock).
fn device_buffer(s: &Storage) -> &DeviceBuffer {
    match s {
        Storage::Cuda(c) => &c.buf,
        Storage::Cpu(_) => unreachable!("internal: a GPU tensor in host memory"),
    }
}

/// Runs `f` on the device buffer behind `t`.
fn with_buffer<R>(t: &Tensor, f: impl FnOnce(&DeviceBuffer) -> R) -> R {
    let storage = t.storage();
    match &*storage {
        Storage::Cuda(c) => {
            debug_assert_eq!(c.dtype, t.dtype(), "internal: a view's dtype differs from its storage's");
            debug_assert!(t.numel() == 0 || t.layout().offset < c.len, "internal: a view starts past its storage");
            f(&c.buf)
        }
        Storage::Cpu(_) => unreachable!("internal: a CUDA op got a tensor in host memory"),
    }
}

/// Runs a kernel launcher `f` with the runtime of `xs`' device (that of `xs[0]`) and each of
/// `xs` made contiguous, as (device buffer, element offset) under a read lock; a driver error is
/// reported as `op`'s.
fn with_dense<R>(op: &'static str, xs: &[&Tensor], f: impl FnOnce(&'static CudaRuntime, &[(&DeviceBuffer, usize)]) -> Result<R, CudaError>) -> Result<R> {
    let device = xs[0].device();
    let rt = runtime(device, op)?;
    let dense: Vec<Tensor> = xs.iter().map(|t| contiguous(t)).collect::<Result<_>>()?;
    let guards: Vec<_> = dense.iter().map(|t| t.storage()).collect();
    let operands: Vec<(&DeviceBuffer, usize)> = guards.iter().zip(&dense).map(|(g, t)| (device_buffer(g), t.layout().offset)).collect();
    f(rt, &operands).map_err(|e| device_error(op, device, e))
}

// ---- Moving tensors ----------------------------------------------------------------------

/// `t` on `device`, recorded so that the gradient goes back to `t`'s device.
pub(crate) fn to_device(t: &Tensor, device: Device) -> Result<Tensor> {
    let from = t.device();
    let out = match (from, device) {
        (Device::Cpu, Device::Cuda(_)) => upload(t, device)?,
        (Device::Cuda(_), Device::Cpu) => download(t)?,
        (Device::Cuda(_), Device::Cuda(_)) => upload(&download(t)?, device)?,
        (Device::Cpu, Device::Cpu) => t.clone(),
    };
    Ok(record("to_device", out, &[t], move |g, _| Ok(vec![Some(g.try_to_device(from)?)])))
}

fn upload(t: &Tensor, device: Device) -> Result<Tensor> {
    let rt = runtime(device, "to_device")?;
    let dense = if t.is_contiguous() { t.clone() } else { t.try_contiguous_copy()? };
    let size = dense.dtype().size_in_bytes();
    let (start, len) = (dense.layout().offset * size, dense.numel() * size);
    let storage = dense.storage();
    let bytes = &storage.cpu()?.as_bytes()[start..start + len];
    let buf = rt.upload(bytes).map_err(|e| device_error("to_device", device, e))?;
    Ok(wrap(buf, t.dtype(), t.shape()))
}

fn download(t: &Tensor) -> Result<Tensor> {
    let dense = contiguous(t)?;
    let rt = runtime(t.device(), "to_device")?;
    let size = dense.dtype().size_in_bytes();
    let mut bytes = vec![0u8; dense.numel() * size];
    with_buffer(&dense, |buf| rt.download(buf, dense.layout().offset * size, &mut bytes))
        .map_err(|e| device_error("to_device", t.device(), e))?;
    Ok(Tensor::from_storage(CpuStorage::from_bytes(dense.dtype(), &bytes), dense.shape()))
}

/// Runs an optimizer's host update `step(p, g)` for a parameter `p` on a GPU: `p` and its
/// gradient are copied to the host, updated there by the same code as CPU parameters (every
/// optimizer, bit for bit), and `p`'s device memory is overwritten with the result. The
/// optimizer's state (momenta, second moments) stays on the host. This is two copies of each
/// parameter per step: correct for every optimizer today; the fused Adam kernel (adam.cu) is
/// the fast path still to be wired in (docs/cuda.md).
pub(crate) fn step_on_host(p: &Tensor, g: &Tensor, step: impl FnOnce(&Tensor, &Tensor) -> Result<()>) -> Result<()> {
    const OP: &str = "optimizer step";
    let device = p.device();
    if !p.is_contiguous() {
        return Err(Error::DeviceOp { op: OP, device, why: format!("a parameter on a GPU must be contiguous (shape {:?}, strides {:?})", p.shape(), p.strides()) });
    }
    let host = crate::autograd::no_grad(|| -> Result<(Tensor, Tensor)> { Ok((download(&p.detach())?, g.detach().try_to_device(Device::Cpu)?)) })?;
    step(&host.0, &host.1)?;
    write_from_host(OP, p, &host.0)
}

/// Overwrites the elements of `dst`, a contiguous tensor on a GPU, with those of `host`, a
/// contiguous host tensor of its shape and dtype: an in-place update that every tensor sharing
/// `dst`'s storage sees.
pub(crate) fn write_from_host(op: &'static str, dst: &Tensor, host: &Tensor) -> Result<()> {
    let device = dst.device();
    if !dst.is_contiguous() {
        return Err(Error::DeviceOp { op, device, why: format!("in-place writes on a GPU need a contiguous destination (shape {:?}, strides {:?})", dst.shape(), dst.strides()) });
    }
    debug_assert!(host.is_contiguous() && host.shape() == dst.shape() && host.dtype() == dst.dtype());
    let rt = runtime(device, op)?;
    let size = dst.dtype().size_in_bytes();
    let src = host.storage();
    let start = host.layout().offset * size;
    let bytes = &src.cpu()?.as_bytes()[start..start + host.numel() * size];
    let target = dst.storage_mut();
    match &*target {
        Storage::Cuda(c) => rt.upload_into(&c.buf, dst.layout().offset * size, bytes).map_err(|e| device_error(op, device, e)),
        Storage::Cpu(_) => unreachable!("internal: a tensor on {device} in host memory"),
    }
}

/// A row-major copy of `x` on its device (itself when it already is), for any dtype.
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "contiguous";
    if x.is_contiguous() {
        return Ok(x.clone());
    }
    let device = x.device();
    let rt = runtime(device, OP)?;
    let l = x.layout();
    let buf = with_buffer(x, |buf| rt.copy_strided(x.dtype().size_in_bytes(), &l.shape, Strided { buf, offset: l.offset, strides: &l.strides }))
        .map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, x.dtype(), &l.shape))
}

/// A tensor of zeros of `shape` and `dtype` on `device`, filled there (no upload).
pub(crate) fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
    const OP: &str = "zeros";
    let rt = runtime(device, OP)?;
    let bytes = shape.iter().product::<usize>() * dtype.size_in_bytes();
    let buf = rt.zeros(bytes).map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, dtype, shape))
}

// ---- Elementwise -------------------------------------------------------------------------

/// The op names of elementwise.cu's unary kernels (the names the CPU ops use).
const UNARY: &[&str] = &[
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "softplus",
    "log1p", "square", "reciprocal", "erf", "sign", "copy",
];

/// The op names of elementwise.cu's binary kernels.
const BINARY: &[&str] = &["add", "sub", "mul", "div", "maximum", "minimum", "pow"];

/// `op(x)` elementwise, for the ops elementwise.cu has.
pub(crate) fn unary(op: &'static str, x: &Tensor) -> Result<Tensor> {
    if let Some(r) = via_f32(&[x], |t| unary(op, &t[0])) {
        return r;
    }
    let device = x.device();
    let Some(&name) = UNARY.iter().find(|&&n| n == op) else { return Err(unsupported(op, device)) };
    let dt = kernel_dtype(op, x.dtype(), device)?;
    let rt = runtime(device, op)?;
    let l = x.layout();
    let buf = with_buffer(x, |buf| rt.unary(name, dt, &l.shape, Strided { buf, offset: l.offset, strides: &l.strides }))
        .map_err(|e| device_error(op, device, e))?;
    Ok(wrap(buf, x.dtype(), &l.shape))
}

/// The unary kernels with two scalar parameters (elementwise.cu `TB_UNARY_PQ`).
const UNARY_PQ: &[&str] = &["affine", "pow_scalar", "clamp", "leaky_relu", "elu"];

/// `kernel(x; p, q)` elementwise: `affine` is `p·x + q` (add_scalar, mul_scalar), the others
/// are named after their op.
pub(crate) fn unary_pq(kernel: &'static str, x: &Tensor, p: f64, q: f64) -> Result<Tensor> {
    if let Some(r) = via_f32(&[x], |t| unary_pq(kernel, &t[0], p, q)) {
        return r;
    }
    let device = x.device();
    let Some(&name) = UNARY_PQ.iter().find(|&&n| n == kernel) else { return Err(unsupported(kernel, device)) };
    let dt = kernel_dtype(kernel, x.dtype(), device)?;
    let rt = runtime(device, kernel)?;
    let l = x.layout();
    let buf = with_buffer(x, |buf| rt.unary_pq(name, dt, &l.shape, Strided { buf, offset: l.offset, strides: &l.strides }, p, q))
        .map_err(|e| device_error(kernel, device, e))?;
    Ok(wrap(buf, x.dtype(), &l.shape))
}

/// `op(a, b)` elementwise over the broadcast `shape`, for the ops elementwise.cu has.
pub(crate) fn binary(op: &'static str, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if let Some(r) = via_f32(&[a, b], |t| binary(op, &t[0], &t[1], shape)) {
        return r;
    }
    let Some(&name) = BINARY.iter().find(|&&n| n == op) else { return Err(unsupported(op, a.device())) };
    broadcast_pair(op, a, b, shape, a.dtype(), |rt, dt, x, y| rt.binary(name, dt, shape, x, y))
}

/// A comparison (`eq`, `ne`, `lt`, `le`, `gt`, `ge`) over the broadcast `shape`: a bool tensor.
pub(crate) fn compare(op: &'static str, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if let Some(r) = via_f32(&[a, b], |t| compare(op, &t[0], &t[1], shape)) {
        return r;
    }
    broadcast_pair(op, a, b, shape, DType::Bool, |rt, dt, x, y| rt.compare(op, dt, shape, x, y))
}

/// Runs `launch` on `a` and `b` viewed over the broadcast `shape`, giving an `out_dtype`
/// tensor of that shape: the part binary ops and comparisons share.
fn broadcast_pair(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    out_dtype: DType,
    launch: impl FnOnce(&'static CudaRuntime, KernelDType, Strided<'_>, Strided<'_>) -> std::result::Result<DeviceBuffer, CudaError>,
) -> Result<Tensor> {
    let device = a.device();
    let dt = kernel_dtype(op, a.dtype(), device)?;
    let rt = runtime(device, op)?;
    let (la, lb) = (a.layout().broadcast_to(shape), b.layout().broadcast_to(shape));
    let buf = with_buffer(a, |ba| {
        with_buffer(b, |bb| launch(rt, dt, Strided { buf: ba, offset: la.offset, strides: &la.strides }, Strided { buf: bb, offset: lb.offset, strides: &lb.strides }))
    })
    .map_err(|e| device_error(op, device, e))?;
    Ok(wrap(buf, out_dtype, shape))
}

/// `cond ? a : b` over the broadcast `shape` (`cond` bool, `a` and `b` of one float dtype).
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if let Some(r) = via_f32(&[a, b], |t| select(cond, &t[0], &t[1], shape)) {
        return r;
    }
    const OP: &str = "where_cond";
    let device = a.device();
    let dt = kernel_dtype(OP, a.dtype(), device)?;
    let rt = runtime(device, OP)?;
    let (lc, la, lb) = (cond.layout().broadcast_to(shape), a.layout().broadcast_to(shape), b.layout().broadcast_to(shape));
    let buf = with_buffer(cond, |bc| {
        with_buffer(a, |ba| {
            with_buffer(b, |bb| {
                rt.select(
                    dt,
                    shape,
                    Strided { buf: bc, offset: lc.offset, strides: &lc.strides },
                    Strided { buf: ba, offset: la.offset, strides: &la.strides },
                    Strided { buf: bb, offset: lb.offset, strides: &lb.strides },
                )
            })
        })
    })
    .map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, a.dtype(), shape))
}

/// `x` converted to `dtype` on its device: to f32 or f64 from f32, f64, i64, i32, u8 or bool.
pub(crate) fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    const OP: &str = "to_dtype";
    let device = x.device();
    let name = |d: DType| match d {
        DType::F32 => Some("f32"),
        DType::F64 => Some("f64"),
        DType::F16 => Some("f16"),
        DType::BF16 => Some("bf16"),
        DType::I64 => Some("i64"),
        DType::I32 => Some("i32"),
        DType::U8 | DType::Bool => Some("u8"),
        _ => None,
    };
    let is_half = |d: DType| matches!(d, DType::F16 | DType::BF16);
    let (from, to) = (x.dtype(), dtype);
    // Kernels exist into f32/f64 from every dtype above, and from f32/f64 into f16/bf16; a
    // conversion between the two half types goes through f32 (exact in that direction).
    if is_half(from) && is_half(to) {
        return cast(&cast(x, DType::F32)?, to);
    }
    let supported = match (name(from), name(to)) {
        (Some(_), Some(_)) if matches!(to, DType::F32 | DType::F64) => true,
        (Some(_), Some(_)) => is_half(to) && matches!(from, DType::F32 | DType::F64),
        _ => false,
    };
    if !supported {
        return Err(Error::DeviceOp { op: OP, device, why: format!("no conversion from {from} to {to} on a GPU yet (conversions give f32 or f64, or f16/bf16 from a float)") });
    }
    let rt = runtime(device, OP)?;
    let l = x.layout();
    let at = l.offset * from.size_in_bytes();
    let (f, t) = (name(from).expect("checked"), name(to).expect("checked"));
    let buf = with_buffer(x, |buf| rt.cast(f, t, to.size_in_bytes(), &l.shape, buf.ptr() + at as u64, &l.strides)).map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, dtype, &l.shape))
}

/// For f16/bf16 operands, which the compute kernels do not take: `f` runs on f32 copies and a
/// float result is rounded back to the half type, once (how the CPU computes half ops: in f32,
/// rounded at the end). `None` when no operand is half, so the caller runs its kernel.
fn via_f32(xs: &[&Tensor], f: impl FnOnce(&[Tensor]) -> Result<Tensor>) -> Option<Result<Tensor>> {
    let half = xs.iter().map(|t| t.dtype()).find(|d| matches!(d, DType::F16 | DType::BF16))?;
    Some((|| {
        let up: Vec<Tensor> = xs.iter().map(|t| if t.dtype() == half { cast(t, DType::F32) } else { Ok((*t).clone()) }).collect::<Result<_>>()?;
        let y = f(&up)?;
        if y.dtype() == DType::F32 {
            cast(&y, half)
        } else {
            Ok(y)
        }
    })())
}

// ---- Reductions and softmax --------------------------------------------------------------

/// `sum` or `max` of `x` over `plan`'s dims: the kept dims are moved first and the reduced
/// ones last (one strided copy), then reduce.cu folds each row.
pub(crate) fn reduce(op: &'static str, x: &Tensor, plan: &ReducePlan) -> Result<Tensor> {
    if let Some(r) = via_f32(&[x], |t| reduce(op, &t[0], plan)) {
        return r;
    }
    let device = x.device();
    let kernel = match op {
        "sum" => "sum_rows",
        "max" => "max_rows",
        _ => return Err(unsupported(op, device)),
    };
    let dt = kernel_dtype(op, x.dtype(), device)?;
    let rt = runtime(device, op)?;
    if op == "max" && plan.row_len == 0 && plan.rows > 0 {
        return Err(Error::invalid(op, x.shape(), "max of an empty dimension has no identity (as in PyTorch)"));
    }
    let rows_view = x.view_with(x.layout().permute(&plan.perm));
    let rows = contiguous(&rows_view)?;
    let buf = with_buffer(&rows, |buf| rt.rows("reduce.cu", kernel, dt, buf, rows.layout().offset, plan.rows, plan.row_len, plan.rows))
        .map_err(|e| device_error(op, device, e))?;
    Ok(wrap(buf, x.dtype(), &plan.out_shape))
}

/// Softmax or log-softmax over dim `d`: over the last dim directly, over another dim by moving
/// it last (a strided copy) and back.
/// The first index (i64) of each reduced row's maximum (`max`) or minimum under `plan`
/// (argmax/argmin over one dim, or over everything), with the CPU's rule for ties and NaN.
pub(crate) fn arg_reduce(x: &Tensor, plan: &ReducePlan, max: bool) -> Result<Tensor> {
    let op = if max { "argmax" } else { "argmin" };
    if matches!(x.dtype(), DType::F16 | DType::BF16) {
        // Widening is exact, so the indices are the half tensor's.
        return arg_reduce(&cast(x, DType::F32)?, plan, max);
    }
    let dt = kernel_dtype(op, x.dtype(), x.device())?;
    let rows = x.view_with(x.layout().permute(&plan.perm));
    let (idx, _values) = with_dense(op, &[&rows], |rt, o| rt.arg_rows(max, dt, o[0].0, o[0].1, plan.rows, plan.row_len))?;
    Ok(wrap(idx, DType::I64, &plan.out_shape))
}

pub(crate) fn softmax(x: &Tensor, d: usize, log: bool) -> Result<Tensor> {
    if let Some(r) = via_f32(&[x], |t| softmax(&t[0], d, log)) {
        return r;
    }
    let op = if log { "log_softmax" } else { "softmax" };
    let device = x.device();
    let dt = kernel_dtype(op, x.dtype(), device)?;
    let rt = runtime(device, op)?;
    let last = x.rank().saturating_sub(1);
    if x.rank() == 0 {
        // One element: softmax 1, log-softmax 0 (computed by the same kernel over one column).
        let one = x.try_reshape(&[1, 1])?;
        return softmax(&one, 1, log)?.try_reshape(&[]);
    }
    let moved = if d == last { x.clone() } else { x.try_transpose(d as isize, last as isize)? };
    let dense = contiguous(&moved)?;
    let cols = dense.shape()[last];
    let rows = if cols == 0 { 0 } else { dense.numel() / cols };
    let buf = with_buffer(&dense, |buf| rt.rows("softmax.cu", op, dt, buf, dense.layout().offset, rows, cols, dense.numel()))
        .map_err(|e| device_error(op, device, e))?;
    let y = wrap(buf, x.dtype(), dense.shape());
    if d == last {
        Ok(y)
    } else {
        contiguous(&y.try_transpose(d as isize, last as isize)?)
    }
}

impl CpuStorage {
    /// Host storage of `dtype` from little-endian bytes (what a device copy returns).
    pub(crate) fn from_bytes(dtype: DType, bytes: &[u8]) -> CpuStorage {
        use bytemuck::pod_collect_to_vec as cast;
        match dtype {
            DType::F32 => CpuStorage::F32(cast(bytes)),
            DType::F64 => CpuStorage::F64(cast(bytes)),
            DType::F16 => CpuStorage::F16(cast(bytes)),
            DType::BF16 => CpuStorage::BF16(cast(bytes)),
            DType::I64 => CpuStorage::I64(cast(bytes)),
            DType::I32 => CpuStorage::I32(cast(bytes)),
            DType::U8 => CpuStorage::U8(bytes.to_vec()),
            DType::I16 => CpuStorage::I16(cast(bytes)),
            DType::I8 => CpuStorage::I8(cast(bytes)),
            DType::Bool => CpuStorage::Bool(bytes.iter().map(|&b| b != 0).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bytes_round_trip_for_every_dtype() {
        for t in [
            Tensor::from_vec(vec![1.5f32, -2.0, 3.25], &[3]),
            Tensor::from_vec(vec![1.5f64, -2.0], &[2]),
            Tensor::from_vec(vec![7i64, -9], &[2]),
            Tensor::from_vec(vec![true, false, true], &[3]),
            Tensor::from_vec(vec![3u8, 250], &[2]),
        ] {
            let back = CpuStorage::from_bytes(t.dtype(), t.storage().cpu().unwrap().as_bytes());
            assert_eq!(back.as_bytes(), t.storage().cpu().unwrap().as_bytes(), "{}", t.dtype());
            assert_eq!(back.dtype(), t.dtype());
        }
    }

    /// Without a driver (the CI machines), moving a tensor to a GPU is an error naming the
    /// driver library; with one, the tensor comes back unchanged.
    #[test]
    fn moving_to_a_gpu_is_an_error_without_a_driver_and_a_round_trip_with_one() {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).transpose(0, 1);
        match x.try_to_device(Device::Cuda(0)) {
            Err(e) => {
                assert!(!is_available());
                let msg = e.to_string();
                assert!(msg.starts_with("to_device: device cuda:0 is not available: no CUDA driver found (libcuda.so.1)"), "{msg}");
            }
            Ok(on_gpu) => {
                assert_eq!(on_gpu.device(), Device::Cuda(0));
                assert_eq!(on_gpu.to_vec::<f32>(), x.to_vec::<f32>());
            }
        }
    }

    #[test]
    fn only_the_kernels_that_exist_are_dispatched() {
        // Every unary and binary name must be a kernel of elementwise.cu (for f32 and f64).
        let src = tensorbrain_kernels::cuda::sources::full_source("elementwise.cu").expect("elementwise.cu");
        for name in UNARY.iter().chain(BINARY).chain(UNARY_PQ) {
            assert!(src.contains(&format!("({name}, ")), "elementwise.cu has no kernel {name}");
        }
        for name in ["eq", "ne", "lt", "le", "gt", "ge"] {
            assert!(src.contains(&format!("TB_COMPARE({name}, ")), "elementwise.cu has no comparison {name}");
        }
        assert!(src.contains("void where_f32(") && src.contains("void where_f64("));
    }
}
