//! What the tensor runtime needs from one GPU: memory from the caching allocator, copies to and
//! from the host, and launches of the kernels of this module on raw device addresses.
//!
//! The runtime (`tensorbrain`'s CUDA storage) never sees cudarc types. It holds
//! [`DeviceBuffer`]s (an address and a size, given back to the allocator on drop) and describes
//! operands as (buffer, element offset, strides), as the CPU kernels take (slice, offset,
//! strides). Everything is ordered on one stream per device, the device's default stream, so a
//! block freed by a tensor can be reused at once by the next kernel: the stream runs that kernel
//! after every earlier use of the block.
//!
//! Host copies synchronise the stream: `to_vec` and `to_device(Cpu)` are the points where a
//! user waits for the GPU, as `tensor.cpu()` is in PyTorch.
//!
//! Nothing here has run on a GPU yet (docs/cuda.md); it compiles on machines without CUDA.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{result as drv, CudaFunction, PushKernelArg};

use super::alloc::{Block, CachingAllocator, CudaMemory, MemoryStats};
use super::codegen::{kernel_name, DType};
use super::driver::{Device, Stream};
use super::launch::{self, kernel_layout, WindowGeometry};
use super::module::KernelLibrary;
use super::CudaError;
use crate::fused::Program;

/// One device's state, created on first use and kept for the life of the process (contexts,
/// modules and cached memory are per process in PyTorch too).
pub struct CudaRuntime {
    device: Device,
    stream: Stream,
    library: KernelLibrary,
    sm_count: u32,
    alloc: Mutex<CachingAllocator<CudaMemory>>,
    /// cuBLAS is loaded on the first matmul, so a build without libcublas still runs
    /// everything else.
    blas: OnceLock<Result<CudaBlas, CudaError>>,
    /// cuBLAS handles are not thread-safe: one call at a time.
    blas_lock: Mutex<()>,
}

/// The runtime of device `ordinal`, created on first use; an error saying why there is none
/// (no driver, no such device, no NVRTC).
pub fn runtime(ordinal: usize) -> Result<&'static CudaRuntime, CudaError> {
    static RUNTIMES: OnceLock<Mutex<HashMap<usize, &'static CudaRuntime>>> = OnceLock::new();
    let mut map = RUNTIMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = map.get(&ordinal) {
        return Ok(rt);
    }
    let device = Device::new(ordinal)?;
    let stream = device.default_stream();
    let library = KernelLibrary::new(device.clone())?;
    let sm_count = library.sm_count()?;
    let alloc = Mutex::new(CachingAllocator::new(CudaMemory::new(&device)));
    let rt: &'static CudaRuntime = Box::leak(Box::new(CudaRuntime {
        device,
        stream,
        library,
        sm_count,
        alloc,
        blas: OnceLock::new(),
        blas_lock: Mutex::new(()),
    }));
    map.insert(ordinal, rt);
    Ok(rt)
}

/// Device memory handed out by a runtime's caching allocator; returned to it on drop.
pub struct DeviceBuffer {
    block: Option<Block>,
    rt: &'static CudaRuntime,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer(cuda:{}, {:#x}, {} bytes)", self.rt.ordinal(), self.ptr(), self.bytes())
    }
}

impl DeviceBuffer {
    pub fn ptr(&self) -> u64 {
        self.block.as_ref().map_or(0, |b| b.ptr)
    }

    /// Bytes asked for (the block may be larger: a size class).
    pub fn bytes(&self) -> usize {
        self.block.as_ref().map_or(0, |b| b.requested)
    }

    pub fn ordinal(&self) -> usize {
        self.rt.ordinal()
    }

    /// The address of element `offset` of a buffer of `dtype` elements.
    pub(crate) fn at(&self, dtype: DType, offset: usize) -> u64 {
        self.ptr() + (offset * dtype.size()) as u64
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            self.rt.alloc.lock().unwrap_or_else(|p| p.into_inner()).free(b);
        }
    }
}

/// An operand of an elementwise kernel: a buffer read at `offset` with `strides` (in elements,
/// 0 on broadcast dims) over the output's shape.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub buf: &'a DeviceBuffer,
    pub offset: usize,
    pub strides: &'a [usize],
}

/// One side of a GEMM: matrix `i` of the batch starts at `offset + i * batch_stride` (0 when the
/// operand is broadcast over the batch) and is row-major with row stride `ld` (`trans: false`),
/// or is the transpose of a row-major matrix with row stride `ld` (`trans: true`, i.e. its
/// columns are contiguous).
#[derive(Clone, Copy)]
pub struct GemmOperand<'a> {
    pub buf: &'a DeviceBuffer,
    pub offset: usize,
    pub ld: usize,
    pub trans: bool,
    pub batch_stride: usize,
}

impl CudaRuntime {
    pub fn ordinal(&self) -> usize {
        self.device.ordinal()
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.alloc.lock().unwrap_or_else(|p| p.into_inner()).stats()
    }

    /// Gives every cached block back to the driver (`torch.cuda.empty_cache()`).
    pub fn empty_cache(&self) -> Result<(), CudaError> {
        self.alloc.lock().unwrap_or_else(|p| p.into_inner()).empty_cache()
    }

    /// Waits for all work queued on this device.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize()
    }

    pub fn alloc(&'static self, bytes: usize) -> Result<DeviceBuffer, CudaError> {
        let block = self.alloc.lock().unwrap_or_else(|p| p.into_inner()).alloc(bytes, self.stream.id())?;
        Ok(DeviceBuffer { block: Some(block), rt: self })
    }

    fn bind(&self) -> Result<(), CudaError> {
        self.device.context().bind_to_thread().map_err(|e| CudaError::Driver { during: "binding the context".into(), error: format!("{e:?}") })
    }

    fn check(&self, during: impl FnOnce() -> String, r: Result<(), cudarc::driver::DriverError>) -> Result<(), CudaError> {
        r.map_err(|e| CudaError::Driver { during: during(), error: format!("{e:?}") })
    }

    /// A new buffer of `bytes` zero bytes (all-zero bits: 0 in every dtype), filled on the
    /// device.
    pub fn zeros(&'static self, bytes: usize) -> Result<DeviceBuffer, CudaError> {
        let buf = self.alloc(bytes)?;
        if bytes > 0 {
            self.bind()?;
            let stream = self.stream.cuda().cu_stream();
            // SAFETY: the block has at least `bytes` bytes; stream-ordered before any use.
            self.check(|| format!("zeroing {bytes} bytes on cuda:{}", self.ordinal()), unsafe { drv::memset_d8_async(buf.ptr(), 0, bytes, stream) })?;
        }
        Ok(buf)
    }

    /// A new buffer holding a copy of `bytes` bytes of `src` from byte `offset` (on the
    /// device, ordered after the work queued before it).
    pub fn copy_bytes(&'static self, src: &DeviceBuffer, offset: usize, bytes: usize) -> Result<DeviceBuffer, CudaError> {
        assert!(offset + bytes <= src.bytes(), "internal: copy past the end of a device buffer");
        let buf = self.alloc(bytes)?;
        if bytes > 0 {
            self.bind()?;
            let stream = self.stream.cuda().cu_stream();
            // SAFETY: both ranges are in bounds (checked above, and the new block has `bytes`).
            self.check(|| format!("copying {bytes} bytes within cuda:{}", self.ordinal()), unsafe {
                drv::memcpy_dtod_async(buf.ptr(), src.ptr() + offset as u64, bytes, stream)
            })?;
        }
        Ok(buf)
    }

    /// A new buffer holding `bytes` (a host-to-device copy; returns when the copy is done, so
    /// the host memory may be reused at once).
    pub fn upload(&'static self, bytes: &[u8]) -> Result<DeviceBuffer, CudaError> {
        let buf = self.alloc(bytes.len())?;
        if !bytes.is_empty() {
            self.bind()?;
            let stream = self.stream.cuda().cu_stream();
            // SAFETY: the block has at least `bytes.len()` bytes; the stream is synchronised
            // before `bytes` can go away.
            self.check(|| format!("copying {} bytes to cuda:{}", bytes.len(), self.ordinal()), unsafe {
                drv::memcpy_htod_async(buf.ptr(), bytes, stream)
            })?;
            self.stream.synchronize()?;
        }
        Ok(buf)
    }

    /// Overwrites `bytes.len()` bytes of `buf` from byte `offset` (an in-place update of a
    /// tensor's memory, after all queued work that reads it).
    pub fn upload_into(&self, buf: &DeviceBuffer, offset: usize, bytes: &[u8]) -> Result<(), CudaError> {
        assert!(offset + bytes.len() <= buf.bytes(), "internal: upload past the end of a device buffer");
        if bytes.is_empty() {
            return Ok(());
        }
        self.bind()?;
        let stream = self.stream.cuda().cu_stream();
        // SAFETY: in bounds (checked above); synchronised before `bytes` can go away.
        self.check(|| format!("copying {} bytes to cuda:{}", bytes.len(), self.ordinal()), unsafe {
            drv::memcpy_htod_async(buf.ptr() + offset as u64, bytes, stream)
        })?;
        self.stream.synchronize()
    }

    /// Copies `out.len()` bytes from `buf` at byte `offset` to the host, after all queued work.
    pub fn download(&self, buf: &DeviceBuffer, offset: usize, out: &mut [u8]) -> Result<(), CudaError> {
        assert!(offset + out.len() <= buf.bytes(), "internal: download past the end of a device buffer");
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        let stream = self.stream.cuda().cu_stream();
        // SAFETY: in bounds (checked above); synchronised before `out` is read.
        let len = out.len();
        self.check(|| format!("copying {len} bytes from cuda:{}", self.ordinal()), unsafe {
            drv::memcpy_dtoh_async(out, buf.ptr() + offset as u64, stream)
        })?;
        self.stream.synchronize()
    }

    /// `out[i] = f(x[i])` over `shape` with the hand-written kernel `name` of elementwise.cu
    /// (`copy` makes a strided view contiguous).
    pub fn unary(&'static self, name: &str, dtype: DType, shape: &[usize], x: Strided<'_>) -> Result<DeviceBuffer, CudaError> {
        self.elementwise(&format!("{name}_{}", dtype.suffix()), shape, &[(x.buf.at(dtype, x.offset), x.strides)], Scalars::None, dtype.size())
    }

    /// A contiguous copy of the strided view `x` of `width`-byte elements (1, 2, 4 or 8): any
    /// dtype.
    pub fn copy_strided(&'static self, width: usize, shape: &[usize], x: Strided<'_>) -> Result<DeviceBuffer, CudaError> {
        assert!(matches!(width, 1 | 2 | 4 | 8), "internal: a strided copy of {width}-byte elements");
        self.elementwise(&format!("copy_b{width}"), shape, &[(x.buf.ptr() + (x.offset * width) as u64, x.strides)], Scalars::None, width)
    }

    /// `out[i] = f(x[i]; p, q)` with a kernel of two scalar parameters (elementwise.cu
    /// `affine`, `pow_scalar`, `clamp`, `leaky_relu`, `elu`), rounded to `dtype`.
    pub fn unary_pq(&'static self, name: &str, dtype: DType, shape: &[usize], x: Strided<'_>, p: f64, q: f64) -> Result<DeviceBuffer, CudaError> {
        let scalars = match dtype {
            DType::F32 => Scalars::F32(p as f32, q as f32),
            DType::F64 => Scalars::F64(p, q),
        };
        self.elementwise(&format!("{name}_{}", dtype.suffix()), shape, &[(x.buf.at(dtype, x.offset), x.strides)], scalars, dtype.size())
    }

    /// `out[i] = f(a[i], b[i])` over `shape` (operands broadcast through their strides).
    pub fn binary(&'static self, name: &str, dtype: DType, shape: &[usize], a: Strided<'_>, b: Strided<'_>) -> Result<DeviceBuffer, CudaError> {
        let operands = [(a.buf.at(dtype, a.offset), a.strides), (b.buf.at(dtype, b.offset), b.strides)];
        self.elementwise(&format!("{name}_{}", dtype.suffix()), shape, &operands, Scalars::None, dtype.size())
    }

    /// A comparison (`eq`, `ne`, `lt`, `le`, `gt`, `ge`) of `a` and `b`: one byte 0/1 per
    /// element of `shape`.
    pub fn compare(&'static self, name: &str, dtype: DType, shape: &[usize], a: Strided<'_>, b: Strided<'_>) -> Result<DeviceBuffer, CudaError> {
        let operands = [(a.buf.at(dtype, a.offset), a.strides), (b.buf.at(dtype, b.offset), b.strides)];
        self.elementwise(&format!("{name}_{}", dtype.suffix()), shape, &operands, Scalars::None, 1)
    }

    /// `cond ? a : b` over `shape`, `cond` a buffer of bytes (0/1).
    pub fn select(&'static self, dtype: DType, shape: &[usize], cond: Strided<'_>, a: Strided<'_>, b: Strided<'_>) -> Result<DeviceBuffer, CudaError> {
        let operands = [(cond.buf.ptr() + cond.offset as u64, cond.strides), (a.buf.at(dtype, a.offset), a.strides), (b.buf.at(dtype, b.offset), b.strides)];
        self.elementwise(&format!("where_{}", dtype.suffix()), shape, &operands, Scalars::None, dtype.size())
    }

    /// Converts a strided view of `from` elements to a new contiguous buffer of `to` elements
    /// (`to_size` bytes each) with elementwise.cu's `cast_{from}_{to}`: from `f32`, `f64`,
    /// `i64`, `i32`, `u8` (also bool), `f16` or `bf16` to `f32`/`f64`, and from `f32`/`f64` to
    /// `f16`/`bf16`. `x_ptr` is the device address of the view's first element.
    pub fn cast(&'static self, from: &str, to: &str, to_size: usize, shape: &[usize], x_ptr: u64, strides: &[usize]) -> Result<DeviceBuffer, CudaError> {
        self.elementwise(&format!("cast_{from}_{to}"), shape, &[(x_ptr, strides)], Scalars::None, to_size)
    }

    /// Launches elementwise.cu's `kernel(n, shape, (ptr, strides)..., out)` over a new
    /// contiguous output of `out_size`-byte elements. Operands are (device address of the
    /// view's first element, strides in elements).
    fn elementwise(&'static self, kernel: &str, shape: &[usize], operands: &[(u64, &[usize])], scalars: Scalars, out_size: usize) -> Result<DeviceBuffer, CudaError> {
        self.launch_strided(kernel, || self.library.source_function("elementwise.cu", kernel), shape, operands, scalars, out_size)
    }

    /// The generated kernel of a fused elementwise `program` (kernels/src/fused.rs, compiled by
    /// NVRTC on first use and cached) over strided, broadcast `inputs` of `dtype`, giving a
    /// contiguous result of `shape`.
    pub fn fused(&'static self, program: &Program, dtype: DType, shape: &[usize], inputs: &[Strided<'_>]) -> Result<DeviceBuffer, CudaError> {
        assert_eq!(inputs.len(), program.n_inputs(), "internal: a fused program got the wrong number of inputs");
        let operands: Vec<(u64, &[usize])> = inputs.iter().map(|x| (x.buf.at(dtype, x.offset), x.strides)).collect();
        self.launch_strided(&kernel_name(program, dtype), || self.library.fused_function(program, dtype), shape, &operands, Scalars::None, dtype.size())
    }

    /// Launches a kernel of the elementwise form `(n, shape, [in_k, strides_k]..., [p, q], out)`
    /// over `shape`, looking the function up only when there is work.
    fn launch_strided(
        &'static self,
        kernel: &str,
        function: impl FnOnce() -> Result<CudaFunction, CudaError>,
        shape: &[usize],
        operands: &[(u64, &[usize])],
        scalars: Scalars,
        out_size: usize,
    ) -> Result<DeviceBuffer, CudaError> {
        let n: usize = shape.iter().product();
        let out = self.alloc(n * out_size)?;
        let Some(cfg) = launch::elementwise(n, self.sm_count) else { return Ok(out) };
        let strides: Vec<Vec<isize>> = operands.iter().map(|(_, s)| isize_strides(s)).collect();
        let views: Vec<(usize, &[isize])> = strides.iter().map(|s| (0, &s[..])).collect();
        let (kshape, st) = kernel_layout(shape, &views).map_err(|why| self.layout_error(kernel, why))?;
        let f = function()?;
        let ptrs: Vec<u64> = operands.iter().map(|(p, _)| *p).collect();
        let (op, total) = (out.ptr(), n as i64);
        let s = self.stream.cuda();
        let mut args = s.launch_builder(&f);
        args.arg(&total).arg(&kshape);
        for (p, st) in ptrs.iter().zip(&st) {
            args.arg(p).arg(st);
        }
        match &scalars {
            Scalars::None => {}
            Scalars::F32(p, q) => {
                args.arg(p).arg(q);
            }
            Scalars::F64(p, q) => {
                args.arg(p).arg(q);
            }
        }
        args.arg(&op);
        // SAFETY: the kernel reads `n` elements of each operand through its strides, within the
        // views the caller described, and writes `n` elements of `out`.
        self.check(|| format!("launching {kernel}"), unsafe { args.launch(cfg.config()).map(|_| ()) })?;
        Ok(out)
    }

    /// A per-row kernel `kernel` of `file` over a contiguous `[rows, cols]` input, writing
    /// `out_len` elements: `sum_rows`/`max_rows` (one per row) of reduce.cu, the forward
    /// kernels of softmax.cu (`rows * cols`).
    pub fn rows(&'static self, file: &str, kernel: &str, dtype: DType, x: &DeviceBuffer, offset: usize, rows: usize, cols: usize, out_len: usize) -> Result<DeviceBuffer, CudaError> {
        let out = self.alloc(out_len * dtype.size())?;
        let Some(cfg) = launch::rows(rows, cols) else { return Ok(out) };
        let f = self.library.source_function(file, &format!("{kernel}_{}", dtype.suffix()))?;
        let (xp, op, r, c) = (x.at(dtype, offset), out.ptr(), rows as i64, cols as i64);
        let s = self.stream.cuda();
        // SAFETY: the input holds rows*cols contiguous elements from `offset` (caller's layout),
        // the output `out_len`.
        self.check(|| format!("launching {kernel}"), unsafe {
            s.launch_builder(&f).arg(&xp).arg(&op).arg(&r).arg(&c).launch(cfg.config()).map(|_| ())
        })?;
        Ok(out)
    }

    /// The first index (i64) and the value of each row's maximum (`max: true`) or minimum of a
    /// contiguous `[rows, cols]` input (reduce.cu `argmax_rows`/`argmin_rows`, with the CPU's
    /// rule: the first NaN, else the first best value). `cols` must be positive.
    pub fn arg_rows(&'static self, max: bool, dtype: DType, x: &DeviceBuffer, offset: usize, rows: usize, cols: usize) -> Result<(DeviceBuffer, DeviceBuffer), CudaError> {
        assert!(cols > 0 || rows == 0, "internal: an arg reduction over empty rows");
        let (idx, vals) = (self.alloc(rows * 8)?, self.alloc(rows * dtype.size())?);
        let Some(cfg) = launch::rows(rows, cols) else { return Ok((idx, vals)) };
        let kernel = format!("{}_rows_{}", if max { "argmax" } else { "argmin" }, dtype.suffix());
        let f = self.library.source_function("reduce.cu", &kernel)?;
        let (xp, ip, vp, r, c) = (x.at(dtype, offset), idx.ptr(), vals.ptr(), rows as i64, cols as i64);
        let s = self.stream.cuda();
        // SAFETY: the input holds rows*cols contiguous elements from `offset`; the outputs hold
        // one index and one value per row.
        self.check(|| format!("launching {kernel}"), unsafe {
            s.launch_builder(&f).arg(&xp).arg(&ip).arg(&vp).arg(&r).arg(&c).launch(cfg.config()).map(|_| ())
        })?;
        Ok((idx, vals))
    }

    /// The backward of a softmax.cu forward (`softmax_bwd`/`log_softmax_bwd`) from the saved
    /// output `y` and the upstream gradient `dy`, both contiguous `[rows, cols]`.
    pub fn rows_backward(&'static self, kernel: &str, dtype: DType, y: (&DeviceBuffer, usize), dy: (&DeviceBuffer, usize), rows: usize, cols: usize) -> Result<DeviceBuffer, CudaError> {
        let out = self.alloc(rows * cols * dtype.size())?;
        let Some(cfg) = launch::rows(rows, cols) else { return Ok(out) };
        let f = self.library.source_function("softmax.cu", &format!("{kernel}_{}", dtype.suffix()))?;
        let (yp, dyp, op, r, c) = (y.0.at(dtype, y.1), dy.0.at(dtype, dy.1), out.ptr(), rows as i64, cols as i64);
        let s = self.stream.cuda();
        // SAFETY: all three hold rows*cols contiguous elements.
        self.check(|| format!("launching {kernel}"), unsafe {
            s.launch_builder(&f).arg(&yp).arg(&dyp).arg(&op).arg(&r).arg(&c).launch(cfg.config()).map(|_| ())
        })?;
        Ok(out)
    }

    fn blas(&self) -> Result<&CudaBlas, CudaError> {
        self.blas
            .get_or_init(|| {
                let stream = self.stream.cuda().clone();
                match catch_unwind(AssertUnwindSafe(|| CudaBlas::new(stream))) {
                    Ok(Ok(b)) => Ok(b),
                    Ok(Err(e)) => Err(CudaError::Driver { during: "creating a cuBLAS handle".into(), error: format!("{e:?}") }),
                    Err(_) => Err(CudaError::Driver {
                        during: "loading cuBLAS".into(),
                        error: "libcublas.so.12 / libcublasLt.so.12 could not be loaded (install the CUDA 12 runtime libraries, e.g. pip install nvidia-cublas-cu12, and put them on LD_LIBRARY_PATH)".into(),
                    }),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `c[i] = a[i] · b[i]` for `batch` row-major products of `[m, k] · [k, n]` into a new
    /// contiguous `[batch, m, n]` buffer, by cuBLAS (f32 in full f32 precision: TF32 is not
    /// enabled, so results match the CPU to f32 rounding).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(&'static self, dtype: DType, batch: usize, m: usize, k: usize, n: usize, a: GemmOperand<'_>, b: GemmOperand<'_>) -> Result<DeviceBuffer, CudaError> {
        let out = self.alloc(batch * m * n * dtype.size())?;
        if batch * m * n == 0 {
            return Ok(out);
        }
        if k == 0 {
            // An empty contraction is all zeros (cuBLAS would also write them, but k = 0 is an
            // invalid leading dimension for it).
            self.bind()?;
            let stream = self.stream.cuda().cu_stream();
            // SAFETY: `out` has `bytes()` bytes.
            self.check(|| "zeroing an empty product".into(), unsafe { drv::memset_d8_async(out.ptr(), 0, out.bytes(), stream) })?;
            return Ok(out);
        }
        let blas = self.blas()?;
        let _one_call = self.blas_lock.lock().unwrap_or_else(|p| p.into_inner());
        let plan = ColumnMajorGemm::new(m, n, (a.ld, a.trans, a.batch_stride), (b.ld, b.trans, b.batch_stride));
        let int = |v: usize, what: &str| -> Result<i32, CudaError> {
            i32::try_from(v).map_err(|_| CudaError::Driver { during: "a matmul".into(), error: format!("{what} = {v} exceeds cuBLAS's 32-bit sizes") })
        };
        let (mm, nn, kk) = (int(plan.m, "n")?, int(plan.n, "m")?, int(k, "k")?);
        let (lda, ldb, ldc) = (int(plan.lda, "a leading dimension")?, int(plan.ldb, "a leading dimension")?, int(n, "n")?);
        let count = int(batch, "the batch")?;
        let (sa, sb, sc) = (plan.stride_a as i64, plan.stride_b as i64, (m * n) as i64);
        // cuBLAS's first operand is our B (see ColumnMajorGemm).
        let (pa, pb, pc) = (b.buf.at(dtype, b.offset), a.buf.at(dtype, a.offset), out.ptr());
        let h = *blas.handle();
        let err = |e: cudarc::cublas::result::CublasError| CudaError::Driver { during: format!("cuBLAS gemm {m}x{k}x{n} (batch {batch})"), error: format!("{e:?}") };
        // TF32 tensor cores for f32 only when the user opted in (set_allow_tf32): they round the
        // operands to 10-bit mantissas, which full-f32 results must not silently get.
        let math = if dtype == DType::F32 && allow_tf32() { blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH } else { blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH };
        // SAFETY: a valid handle, used under `blas_lock`.
        unsafe { blas_sys::cublasSetMathMode(h, math) }.result().map_err(err)?;
        // SAFETY: the operands' views lie inside their buffers (the caller's layouts), `out`
        // holds batch*m*n elements; alpha/beta are host scalars (cuBLAS's default pointer mode).
        unsafe {
            match dtype {
                DType::F32 => {
                    let (alpha, beta) = (1f32, 0f32);
                    blas::sgemm_strided_batched(h, plan.op_a, plan.op_b, mm, nn, kk, &alpha, pa as *const f32, lda, sa, pb as *const f32, ldb, sb, &beta, pc as *mut f32, ldc, sc, count)
                }
                DType::F64 => {
                    let (alpha, beta) = (1f64, 0f64);
                    blas::dgemm_strided_batched(h, plan.op_a, plan.op_b, mm, nn, kk, &alpha, pa as *const f64, lda, sa, pb as *const f64, ldb, sb, &beta, pc as *mut f64, ldc, sc, count)
                }
            }
        }
        .map_err(err)?;
        Ok(out)
    }

    /// Launches `kernel` of `file` with `args` in order, on a grid sized for `n` independent
    /// elements (the kernels loop grid-stride, so any `n` is covered); nothing when `n == 0`.
    /// The typed launchers (window.rs) build the arguments; each states what its kernel reads
    /// and writes.
    pub(crate) fn launch_elements(&self, file: &str, kernel: &str, n: usize, args: &[KernelArg]) -> Result<(), CudaError> {
        let Some(cfg) = launch::elementwise(n, self.sm_count) else { return Ok(()) };
        let f = self.library.source_function(file, kernel)?;
        let s = self.stream.cuda();
        let mut b = s.launch_builder(&f);
        for a in args {
            match a {
                KernelArg::Ptr(v) => b.arg(v),
                KernelArg::I64(v) => b.arg(v),
                KernelArg::I32(v) => b.arg(v),
                KernelArg::F32(v) => b.arg(v),
                KernelArg::F64(v) => b.arg(v),
                KernelArg::Window(v) => b.arg(v),
            };
        }
        // SAFETY: the typed launchers pass device addresses inside buffers that hold what the
        // kernel reads and writes for these sizes (each says which).
        self.check(|| format!("launching {kernel}"), unsafe { b.launch(cfg.config()).map(|_| ()) })
    }

    fn layout_error(&self, kernel: &str, why: String) -> CudaError {
        CudaError::Driver { during: format!("preparing {kernel} on cuda:{}", self.ordinal()), error: why }
    }
}

static ALLOW_TF32: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets f32 matmuls use TF32 tensor cores (`torch.backends.cuda.matmul.allow_tf32`): about 8×
/// the throughput on Ampere and later, with operands rounded to 10-bit mantissas (products
/// agree with full f32 to about 1e-3 relative). Off by default, as in PyTorch.
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, std::sync::atomic::Ordering::Relaxed);
}

/// Whether f32 matmuls may use TF32 ([`set_allow_tf32`]).
pub fn allow_tf32() -> bool {
    ALLOW_TF32.load(std::sync::atomic::Ordering::Relaxed)
}

/// One argument of [`CudaRuntime::launch_elements`].
pub(crate) enum KernelArg {
    /// A device address.
    Ptr(u64),
    /// A `long long` (sizes).
    I64(i64),
    /// An `int` (flags).
    I32(i32),
    F32(f32),
    F64(f64),
    /// The geometry of a sliding-window kernel (conv.cu, pool.cu).
    Window(WindowGeometry),
}

/// Scalar kernel arguments after the operands, in the kernel's element type.
enum Scalars {
    None,
    F32(f32, f32),
    F64(f64, f64),
}

fn isize_strides(s: &[usize]) -> Vec<isize> {
    s.iter().map(|&v| v as isize).collect()
}

/// A row-major `C = A·B` as cuBLAS's column-major GEMM: a row-major matrix is the column-major
/// view of its transpose, so `Cᵀ = Bᵀ·Aᵀ` is computed with B as cuBLAS's first operand.
/// Pure arithmetic on the operands' layouts, tested on CPU below.
#[derive(Debug, PartialEq)]
struct ColumnMajorGemm {
    /// cuBLAS's (m, n): our (n, m).
    m: usize,
    n: usize,
    op_a: blas_sys::cublasOperation_t,
    op_b: blas_sys::cublasOperation_t,
    lda: usize,
    ldb: usize,
    stride_a: usize,
    stride_b: usize,
}

impl ColumnMajorGemm {
    /// `(ld, trans, batch_stride)` of our A and B.
    fn new(m: usize, n: usize, a: (usize, bool, usize), b: (usize, bool, usize)) -> Self {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        // Our row-major B [k, n] with row stride ld is column-major [n, k] with leading
        // dimension ld: cuBLAS's first operand as it is (N). A transposed B (columns
        // contiguous) is column-major [k, n], which cuBLAS reads transposed (T).
        let op = |trans: bool| if trans { CUBLAS_OP_T } else { CUBLAS_OP_N };
        ColumnMajorGemm { m: n, n: m, op_a: op(b.1), op_b: op(a.1), lda: b.0, ldb: a.0, stride_a: b.2, stride_b: a.2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_major_product_swaps_operands_for_cublas() {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        // C [5, 11] = A [5, 7] (row-major, ld 7, batched) · B [7, 11] given as Wᵀ of a [11, 4..]
        // row-major W (ld 4 is only a description here), shared by the batch.
        let p = ColumnMajorGemm::new(5, 11, (7, false, 35), (4, true, 0));
        assert_eq!(
            p,
            ColumnMajorGemm { m: 11, n: 5, op_a: CUBLAS_OP_T, op_b: CUBLAS_OP_N, lda: 4, ldb: 7, stride_a: 0, stride_b: 35 }
        );
    }
}
