//! Indexing on a GPU: `index_select` (every dtype, by element width) and `index_add` (f32,
//! f64) of index.cu. `ops::index` checks the indices on the host first, as for CPU tensors, so
//! an out-of-range index is the same error on either device; these functions are not recorded.

use tensorbrain_kernels::cuda::index::{IndexAddPlan, IndexedDims};

use super::{kernel_dtype, via_f32, with_dense, wrap};
use crate::tensor::{Result, Tensor};

fn dims(shape: &[usize], d: usize) -> IndexedDims {
    IndexedDims { outer: shape[..d].iter().product(), n: shape[d], inner: shape[d + 1..].iter().product() }
}

/// The entries of `x` at the checked i64 `index` (1-D, on `x`'s device) along dim `d`.
pub(crate) fn index_select(x: &Tensor, d: usize, index: &Tensor) -> Result<Tensor> {
    const OP: &str = "index_select";
    let m = index.numel();
    let mut out_shape = x.shape().to_vec();
    out_shape[d] = m;
    let width = x.dtype().size_in_bytes();
    let buf = with_dense(OP, &[x, index], |rt, o| rt.index_select(width, o[0], o[1], dims(x.shape(), d), m))?;
    Ok(wrap(buf, x.dtype(), &out_shape))
}

/// `base` with the rows of `src` added at the checked indices `idx` (host values) along dim
/// `d`, in the CPU kernel's order of addition.
pub(crate) fn index_add(base: &Tensor, d: usize, idx: &[i64], src: &Tensor) -> Result<Tensor> {
    if let Some(r) = via_f32(&[base, src], |t| index_add(&t[0], d, idx, &t[1])) {
        return r;
    }
    const OP: &str = "index_add";
    let dt = kernel_dtype(OP, base.dtype(), base.device())?;
    let size = base.dtype().size_in_bytes();
    let d_base = dims(base.shape(), d);
    let plan = IndexAddPlan::new(idx, d_base.n);
    // A fresh copy of the base, then the sources added into it in place.
    let out = with_dense(OP, &[base, src], |rt, o| {
        let out = rt.copy_bytes(o[0].0, o[0].1 * size, base.numel() * size)?;
        rt.index_add_into(dt, &out, o[1], &plan, d_base)?;
        Ok(out)
    })?;
    Ok(wrap(out, base.dtype(), base.shape()))
}
