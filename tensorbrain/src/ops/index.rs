//! Indexing ops: `index_select`, `index_add`, `gather`, `scatter_add` and `masked_fill`.
//!
//! Index tensors are i64. Every index is checked before a kernel runs: a negative or too large
//! value is [`Error::IndexOutOfBounds`] naming the op (PyTorch's negative indices are not
//! accepted).

use tensorbrain_kernels::index as k;
use tensorbrain_kernels::strided::zip_map;

use super::binary::check_same;
use super::{any_dispatch, device, on_device, panicking};
use crate::autograd::record;
use crate::tensor::layout::{broadcast_shapes, contiguous_strides, normalize_dim};
use crate::tensor::{DType, Element, Error, Result, StorageElement, Tensor};

/// Checks an index tensor's dtype and device against the indexed tensor.
pub(crate) fn check_index(op: &'static str, input: &Tensor, index: &Tensor) -> Result<()> {
    if index.dtype() != DType::I64 {
        return Err(Error::DType { op, got: index.dtype(), expected: "i64 for the index tensor" });
    }
    if index.device() != input.device() {
        return Err(Error::DeviceMismatch { op, lhs: input.device(), rhs: index.device() });
    }
    Ok(())
}

/// Runs `f` on the index's elements (contiguous) after checking each lies in `0..size`.
pub(crate) fn with_checked_index<R>(op: &'static str, index: &Tensor, dim: usize, size: usize, f: impl FnOnce(&[i64]) -> Result<R>) -> Result<R> {
    index.with_contiguous::<i64, _>(|idx| {
        if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i as usize >= size) {
            return Err(Error::IndexOutOfBounds { op, index: bad, dim, size });
        }
        f(idx)
    })?
}

/// An index tensor's values on the host, where they are checked (for a GPU tensor, one
/// download: the bounds check needs the values, as PyTorch's device-side asserts would).
fn on_host(index: &Tensor) -> Result<Tensor> {
    index.detach().try_to_device(crate::tensor::Device::Cpu)
}

/// `(outer, inner)`: the element counts before and after `dim`.
pub(crate) fn outer_inner(shape: &[usize], dim: usize) -> (usize, usize) {
    (shape[..dim].iter().product(), shape[dim + 1..].iter().product())
}

impl Tensor {
    /// The entries at `index` (1-D i64) along `dim`, like `torch.index_select`. Repeated indices
    /// repeat entries (and accumulate in the gradient).
    pub fn try_index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_select";
        check_index(OP, self, index)?;
        if index.rank() > 1 {
            return Err(Error::invalid(OP, self.shape(), format!("index must be 1-D, got shape {:?}", index.shape())));
        }
        if self.rank() == 0 {
            normalize_dim(OP, dim, 0)?;
            if index.numel() != 1 {
                return Err(Error::invalid(OP, self.shape(), format!("index of a 0-d tensor must hold one value, got {}", index.numel())));
            }
            return self.try_reshape(&[1])?.try_index_select(0, &index.try_reshape(&[1])?)?.try_reshape(&[]);
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let shape = self.shape().to_vec();
        let (outer, inner) = outer_inner(&shape, d);
        let n = shape[d];
        let mut out_shape = shape.clone();
        out_shape[d] = index.numel();
        let out = if on_device(self) {
            with_checked_index(OP, &on_host(index)?, d, n, |_| device::index_select(self, d, index))?
        } else {
            with_checked_index(OP, index, d, n, |idx| {
                any_dispatch!(self.dtype(), T => {
                    let mut out = vec![T::default(); out_shape.iter().product()];
                    self.with_contiguous::<T, _>(|src| k::index_select(src, outer, n, inner, idx, &mut out))?;
                    Ok(Tensor::from_storage(T::wrap(out), &out_shape))
                })
            })?
        };
        let index = index.clone();
        Ok(record(OP, out, &[self], move |g, _| {
            Ok(vec![Some(Tensor::try_zeros_on(&shape, g.dtype(), g.device())?.try_index_add(d as isize, &index, g)?)])
        }))
    }

    /// `self` with `src`'s entries added at `index` (1-D i64) along `dim`, out of place
    /// (`torch.index_add`). `src` has `self`'s shape except `index.len()` at `dim`.
    pub fn try_index_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_add";
        check_index(OP, self, index)?;
        check_same(OP, self, src)?;
        if index.rank() > 1 {
            return Err(Error::invalid(OP, self.shape(), format!("index must be 1-D, got shape {:?}", index.shape())));
        }
        if self.rank() == 0 {
            normalize_dim(OP, dim, 0)?;
            return self
                .try_reshape(&[1])?
                .try_index_add(0, &index.try_reshape(&[-1])?, &src.try_reshape(&[-1])?)?
                .try_reshape(&[]);
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let shape = self.shape().to_vec();
        let mut want = shape.clone();
        want[d] = index.numel();
        if src.shape() != want.as_slice() {
            return Err(Error::shape(OP, self.shape(), src.shape(), "do not fit: source must match self except index.len() at dim"));
        }
        let (outer, inner) = outer_inner(&shape, d);
        let n = shape[d];
        let out = if on_device(self) {
            with_checked_index(OP, &on_host(index)?, d, n, |idx| device::index_add(self, d, idx, src))?
        } else {
            with_checked_index(OP, index, d, n, |idx| {
                any_dispatch!(self.dtype(), T => {
                    let mut out = self.with_contiguous::<T, _>(|s| s.to_vec())?;
                    src.with_contiguous::<T, _>(|s| k::index_add(&mut out, outer, n, inner, idx, s))?;
                    Ok(Tensor::from_storage(T::wrap(out), &shape))
                })
            })?
        };
        let index = index.clone();
        Ok(record(OP, out, &[self, src], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.clone()) } else { None },
                if need[1] { Some(g.try_index_select(d as isize, &index)?) } else { None },
            ])
        }))
    }

    /// `out[i][j] = self[i][index[i][j]]` (for `dim = 1`), like `torch.gather`. `index` (i64)
    /// has `self`'s rank and is no larger than `self` on the other dims; the output has
    /// `index`'s shape.
    pub fn try_gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        const OP: &str = "gather";
        check_index(OP, self, index)?;
        if index.rank() != self.rank() {
            return Err(Error::shape(OP, self.shape(), index.shape(), "differ in rank: the index must have the input's rank"));
        }
        if self.rank() == 0 {
            normalize_dim(OP, dim, 0)?;
            return self.try_reshape(&[1])?.try_gather(0, &index.try_reshape(&[1])?)?.try_reshape(&[]);
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        if let Some(bad) = (0..self.rank()).find(|&i| i != d && index.shape()[i] > self.shape()[i]) {
            return Err(Error::invalid(
                OP,
                self.shape(),
                format!("index shape {:?} is larger than the input at dim {bad} (only dim {d} may be larger)", index.shape()),
            ));
        }
        let shape = self.shape().to_vec();
        let l = self.layout();
        let mut strides = l.strides.clone();
        strides[d] = 0;
        let idx_shape = index.shape().to_vec();
        let out = with_checked_index(OP, index, d, shape[d], |idx| {
            any_dispatch!(self.dtype(), T => {
                let mut out = vec![T::default(); idx.len()];
                let s = self.storage();
                k::gather(s.cpu()?.as_slice::<T>(), l.offset, &strides, l.strides[d], idx, &idx_shape, &mut out);
                Ok(Tensor::from_storage(T::wrap(out), &idx_shape))
            })
        })?;
        let index = index.clone();
        Ok(record(OP, out, &[self], move |g, _| {
            Ok(vec![Some(Tensor::zeros(&shape, g.dtype()).try_scatter_add(d as isize, &index, g)?)])
        }))
    }

    /// `self` with each `src[i][j]` added at `[i][index[i][j]]` (for `dim = 1`), out of place,
    /// like `torch.scatter_add`. `index` (i64) has the same rank, is no larger than `src`, and
    /// no larger than `self` on dims other than `dim`.
    pub fn try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        const OP: &str = "scatter_add";
        check_index(OP, self, index)?;
        check_same(OP, self, src)?;
        if index.rank() != self.rank() || src.rank() != self.rank() {
            return Err(Error::invalid(
                OP,
                self.shape(),
                format!("index {:?} and src {:?} must have the input's rank", index.shape(), src.shape()),
            ));
        }
        if self.rank() == 0 {
            normalize_dim(OP, dim, 0)?;
            let (i, s) = (index.try_reshape(&[1])?, src.try_reshape(&[1])?);
            return self.try_reshape(&[1])?.try_scatter_add(0, &i, &s)?.try_reshape(&[]);
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let (is, ss, xs) = (index.shape(), src.shape(), self.shape());
        if let Some(bad) = (0..self.rank()).find(|&i| is[i] > ss[i] || (i != d && is[i] > xs[i])) {
            return Err(Error::invalid(
                OP,
                self.shape(),
                format!(
                    "index shape {is:?} is larger than src {ss:?} or the input at dim {bad} (it must fit in src, and in the input except at dim {d})"
                ),
            ));
        }
        let shape = self.shape().to_vec();
        let idx_shape = index.shape().to_vec();
        let src_shape = src.shape().to_vec();
        let mut out_strides = contiguous_strides(&shape);
        let dim_stride = out_strides[d];
        out_strides[d] = 0;
        let out = with_checked_index(OP, index, d, shape[d], |idx| {
            any_dispatch!(self.dtype(), T => {
                let mut out = self.with_contiguous::<T, _>(|s| s.to_vec())?;
                let (s, l) = (src.storage(), src.layout());
                k::scatter_add(&mut out, &out_strides, dim_stride, s.cpu()?.as_slice::<T>(), l.offset, &l.strides, idx, &idx_shape);
                Ok(Tensor::from_storage(T::wrap(out), &shape))
            })
        })?;
        let index = index.clone();
        Ok(record(OP, out, &[self, src], move |g, need| {
            let gsrc = if need[1] {
                let gs = g.try_gather(d as isize, &index)?;
                if gs.shape() == src_shape.as_slice() {
                    Some(gs)
                } else {
                    // Entries of src outside the index's extent were never read.
                    let pad: Vec<usize> = (0..src_shape.len()).rev().flat_map(|i| [0, src_shape[i] - idx_shape[i]]).collect();
                    Some(gs.try_pad(&pad, 0.0)?)
                }
            } else {
                None
            };
            Ok(vec![if need[0] { Some(g.clone()) } else { None }, gsrc])
        }))
    }

    /// `value` where `mask` (bool, or 0/1 u8; broadcastable) is true, `self` elsewhere
    /// (`masked_fill`).
    /// Like PyTorch's out-of-place form, `self` and `mask` broadcast together.
    pub fn try_masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        const OP: &str = "masked_fill";
        let mask = &super::binary::bool_mask(OP, mask)?;
        if mask.device() != self.device() {
            return Err(Error::DeviceMismatch { op: OP, lhs: self.device(), rhs: mask.device() });
        }
        let shape = broadcast_shapes(OP, self.shape(), mask.shape())?;
        let (lx, lm) = (self.layout().broadcast_to(&shape), mask.layout().broadcast_to(&shape));
        let out = if on_device(self) {
            // where(mask, value, self) with elementwise.cu's select (float dtypes).
            let v = Tensor::full(&[], value, self.dtype()).try_to_device(self.device())?;
            crate::autograd::no_grad(|| Tensor::try_where_cond(mask, &v, self))?
        } else { any_dispatch!(self.dtype(), T => {
            let v = <T as Element>::from_f64(value);
            let (sx, sm) = (self.storage(), mask.storage());
            let mut out = vec![T::default(); shape.iter().product()];
            zip_map(sx.cpu()?.as_slice::<T>(), lx.offset, &lx.strides, sm.cpu()?.as_slice::<bool>(), lm.offset, &lm.strides, &shape, &mut out,
                |x: T, m: bool| if m { v } else { x });
            Tensor::from_storage(T::wrap(out), &shape)
        }) };
        let (mask, self_shape) = (mask.clone(), self.shape().to_vec());
        Ok(record(OP, out, &[self], move |g, _| Ok(vec![Some(g.try_masked_fill(&mask, 0.0)?.sum_to_shape(&self_shape)?)])))
    }
}

panicking! {
    /// Selects entries along `dim` at a 1-D i64 `index` (`torch.index_select`).
    fn index_select / try_index_select(&self, dim: isize, index: &Tensor) -> Tensor;
    /// Adds `src` at a 1-D i64 `index` along `dim`, out of place (`torch.index_add`).
    fn index_add / try_index_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor;
    /// Gathers along `dim` at an i64 `index` of the same rank (`torch.gather`).
    fn gather / try_gather(&self, dim: isize, index: &Tensor) -> Tensor;
    /// Adds `src` at an i64 `index` along `dim`, out of place (`torch.scatter_add`).
    fn scatter_add / try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor;
    /// Writes `value` where the bool `mask` is true (`Tensor.masked_fill`).
    fn masked_fill / try_masked_fill(&self, mask: &Tensor, value: f64) -> Tensor;
}
