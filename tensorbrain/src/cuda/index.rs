//! Indexing on a GPU: `index_select` (every dtype, by element width) and `index_add` (f32,
//! f64) of index.cu. `ops::index` checks the indices on the host first, as for CPU tensors, so
//! an out-of-range index is the same error on either device; these functions are not recorded.

use tensorbrain_kernels::cuda::index::{IndexAddPlan, IndexedDims};

use super::{contiguous, device_error, kernel_dtype, runtime, via_f32, with_buffer, wrap};
use crate::tensor::{Result, Tensor};

fn dims(shape: &[usize], d: usize) -> IndexedDims {
    IndexedDims { outer: shape[..d].iter().product(), n: shape[d], inner: shape[d + 1..].iter().product() }
}

/// The entries of `x` at the checked i64 `index` (1-D, on `x`'s device) along dim `d`.
pub(crate) fn index_select(x: &Tensor, d: usize, index: &Tensor) -> Result<Tensor> {
    const OP: &str = "index_select";
    let device = x.device();
    let rt = runtime(device, OP)?;
    let (x, index) = (contiguous(x)?, contiguous(index)?);
    let m = index.numel();
    let mut out_shape = x.shape().to_vec();
    out_shape[d] = m;
    let width = x.dtype().size_in_bytes();
    let buf = with_buffer(&x, |b| with_buffer(&index, |i| rt.index_select(width, (b, x.layout().offset), (i, index.layout().offset), dims(x.shape(), d), m)))
        .map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, x.dtype(), &out_shape))
}

/// `base` with the rows of `src` added at the checked indices `idx` (host values) along dim
/// `d`, in the CPU kernel's order of addition.
pub(crate) fn index_add(base: &Tensor, d: usize, idx: &[i64], src: &Tensor) -> Result<Tensor> {
    if let Some(r) = via_f32(&[base, src], |t| index_add(&t[0], d, idx, &t[1])) {
        return r;
    }
    const OP: &str = "index_add";
    let device = base.device();
    let dt = kernel_dtype(OP, base.dtype(), device)?;
    let rt = runtime(device, OP)?;
    let (base, src) = (contiguous(base)?, contiguous(src)?);
    let size = base.dtype().size_in_bytes();
    let d_base = dims(base.shape(), d);
    let plan = IndexAddPlan::new(idx, d_base.n);
    let out = with_buffer(&base, |b| rt.copy_bytes(b, base.layout().offset * size, base.numel() * size)).map_err(|e| device_error(OP, device, e))?;
    with_buffer(&src, |s| rt.index_add_into(dt, &out, (s, src.layout().offset), &plan, d_base)).map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(out, base.dtype(), base.shape()))
}
