//! More indexing: `scatter` (tensor and value), `scatter_reduce`, advanced indexing `index` and
//! `index_put` over leading dims, `index_copy`, `index_fill`, `masked_select`,
//! `take_along_dim` and a scaled `index_add`, with PyTorch's gradients.

use tensorbrain_kernels::scatter::{index_copy, scatter, scatter_reduce};

use super::binary::bool_mask;
use super::index::{check_index, outer_inner, with_checked_index};
use super::{any_dispatch, float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::{broadcast_shapes, contiguous_strides, normalize_dim};
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// The reduction of [`Tensor::try_scatter_reduce`] (`reduce=` in PyTorch).
pub use tensorbrain_kernels::scatter::ScatterReduce as Reduce;

/// Validates a scatter along `dim`: `index` (i64) has `self`'s rank, fits in `src_shape`, and
/// fits in `self` except along `dim`. Returns `(dim, out_strides with 0 at dim, dim stride)`.
fn scatter_geometry(op: &'static str, x: &Tensor, dim: isize, index: &Tensor, src_shape: &[usize]) -> Result<(usize, Vec<usize>, usize)> {
    check_index(op, x, index)?;
    if index.rank() != x.rank() || src_shape.len() != x.rank() {
        return Err(Error::invalid(op, x.shape(), format!("index {:?} and src {src_shape:?} must have the input's rank", index.shape())));
    }
    let d = normalize_dim(op, dim, x.rank().max(1))?;
    let (is, xs) = (index.shape(), x.shape());
    if let Some(bad) = (0..x.rank()).find(|&i| is[i] > src_shape[i] || (i != d && is[i] > xs[i])) {
        return Err(Error::invalid(
            op,
            x.shape(),
            format!("index shape {is:?} is larger than src {src_shape:?} or the input at dim {bad} (it must fit in src, and in the input except at dim {d})"),
        ));
    }
    let mut strides: Vec<usize> = contiguous_strides(xs).to_vec();
    let dim_stride = strides.get(d).copied().unwrap_or(1);
    if let Some(s) = strides.get_mut(d) {
        *s = 0;
    }
    Ok((d, strides, dim_stride))
}

/// `g` gathered at `index` along `d`, zero-padded to `src_shape` (entries of src outside the
/// index's extent were never read).
fn gather_to(g: &Tensor, d: usize, index: &Tensor, src_shape: &[usize]) -> Result<Tensor> {
    let gs = g.try_gather(d as isize, index)?;
    if gs.shape() == src_shape {
        return Ok(gs);
    }
    let is = index.shape();
    let pad: Vec<usize> = (0..src_shape.len()).rev().flat_map(|i| [0, src_shape[i] - is[i]]).collect();
    gs.try_pad(&pad, 0.0)
}

impl Tensor {
    /// `self` with `src[i][j]` written at `[i][index[i][j]]` (for `dim = 1`), out of place
    /// (`torch.scatter`). Repeated indices: the last write wins (PyTorch leaves it unspecified).
    pub fn try_scatter(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        const OP: &str = "scatter";
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: src.dtype() });
        }
        let (d, out_strides, dim_stride) = scatter_geometry(OP, self, dim, index, src.shape())?;
        let shape = self.shape().to_vec();
        let idx_shape = index.shape().to_vec();
        let out = with_checked_index(OP, index, d, shape.get(d).copied().unwrap_or(1), |idx| {
            any_dispatch!(self.dtype(), T => {
                let mut out = self.with_contiguous::<T, _>(|s| s.to_vec())?;
                let (s, l) = (src.storage(), src.layout());
                scatter(&mut out, &out_strides, dim_stride, s.cpu()?.as_slice::<T>(), l.offset, &l.strides, idx, &idx_shape);
                Ok(Tensor::from_storage(T::wrap(out), &shape))
            })
        })?;
        let (index, src_shape) = (index.clone(), src.shape().to_vec());
        Ok(record(OP, out, &[self, src], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.try_scatter_value(d as isize, &index, 0.0)?) } else { None },
                if need[1] { Some(gather_to(g, d, &index, &src_shape)?) } else { None },
            ])
        }))
    }

    /// `self` with `value` written at `index` along `dim` (`torch.scatter(x, dim, index, value)`).
    pub fn try_scatter_value(&self, dim: isize, index: &Tensor, value: f64) -> Result<Tensor> {
        let src = Tensor::full(index.shape(), value, self.dtype());
        let out = crate::autograd::no_grad(|| self.try_scatter(dim, index, &src))?;
        let d = normalize_dim("scatter", dim, self.rank().max(1))?;
        let index = index.clone();
        Ok(record("scatter", out, &[self], move |g, _| Ok(vec![Some(g.try_scatter_value(d as isize, &index, 0.0)?)])))
    }

    /// Combines `src` into `self` at `index` along `dim` with `reduce` (`torch.scatter_reduce`):
    /// `Sum`, `Prod`, `Mean`, `Amax` or `Amin`; `include_self` says whether `self`'s values take
    /// part. Float tensors. Gradients follow PyTorch (ties of `amax`/`amin` share evenly; `prod`
    /// is exact with a single zero per group).
    pub fn try_scatter_reduce(&self, dim: isize, index: &Tensor, src: &Tensor, reduce: Reduce, include_self: bool) -> Result<Tensor> {
        const OP: &str = "scatter_reduce";
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: src.dtype() });
        }
        let (d, out_strides, dim_stride) = scatter_geometry(OP, self, dim, index, src.shape())?;
        let shape = self.shape().to_vec();
        let idx_shape = index.shape().to_vec();
        let out = with_checked_index(OP, index, d, shape.get(d).copied().unwrap_or(1), |idx| -> Result<Tensor> {
            Ok(float_dispatch!(OP, self.dtype(), T => {
                let mut out = self.with_contiguous::<T, _>(|s| s.to_vec())?;
                let (s, l) = (src.storage(), src.layout());
                scatter_reduce(&mut out, &out_strides, dim_stride, s.cpu()?.as_slice::<T>(), l.offset, &l.strides, idx, &idx_shape, reduce, include_self);
                Tensor::from_storage(T::wrap(out), &shape)
            }))
        })?;
        let (x, s, index, result) = (self.clone(), src.clone(), index.clone(), out.detach());
        Ok(record(OP, out, &[self, src], move |g, need| {
            let (gs, gsrc) = scatter_reduce_backward(&x.detach(), &s.detach(), &index, &result, g, d as isize, reduce, include_self)?;
            Ok(vec![need[0].then_some(gs), need[1].then_some(gsrc)])
        }))
    }

    /// Advanced indexing over the leading dims, `x[i0, i1, ..]` with i64 index tensors that
    /// broadcast together (`Tensor.__getitem__` with tensors): the result has the indices'
    /// broadcast shape followed by the remaining dims. Negative indices count from the end.
    pub fn try_index(&self, indices: &[&Tensor]) -> Result<Tensor> {
        let (flat_index, bshape, rest) = self.linear_index("index", indices)?;
        let rows: usize = self.shape()[..indices.len()].iter().product();
        let mut flat_shape = vec![rows as isize];
        flat_shape.extend(rest.iter().map(|&d| d as isize));
        let picked = self.try_reshape(&flat_shape)?.try_index_select(0, &flat_index)?;
        let out_shape: Vec<isize> = bshape.iter().chain(&rest).map(|&d| d as isize).collect();
        picked.try_reshape(&out_shape)
    }

    /// `x[i0, i1, ..] = values` (or `+=` with `accumulate`) out of place
    /// (`Tensor.index_put`): `values` broadcasts to the indexed shape. Without `accumulate`,
    /// repeated indices keep the last value.
    pub fn try_index_put(&self, indices: &[&Tensor], values: &Tensor, accumulate: bool) -> Result<Tensor> {
        const OP: &str = "index_put";
        let (flat_index, bshape, rest) = self.linear_index(OP, indices)?;
        let rows: usize = self.shape()[..indices.len()].iter().product();
        let target: Vec<isize> = bshape.iter().chain(&rest).map(|&d| d as isize).collect();
        let values = values.try_to_dtype(self.dtype())?;
        let values = values.try_expand(&target).map_err(|_| {
            Error::shape(OP, &target.iter().map(|&d| d as usize).collect::<Vec<_>>(), values.shape(), "do not fit: values must broadcast to the indexed shape (first)")
        })?;
        let mut flat_shape = vec![rows as isize];
        flat_shape.extend(rest.iter().map(|&d| d as isize));
        let mut vflat = vec![flat_index.numel() as isize];
        vflat.extend(rest.iter().map(|&d| d as isize));
        let x2 = self.try_reshape(&flat_shape)?;
        let v2 = values.try_reshape(&vflat)?;
        let out = if accumulate { x2.try_index_add(0, &flat_index, &v2)? } else { x2.try_index_copy(0, &flat_index, &v2)? };
        out.try_reshape(&self.shape().iter().map(|&d| d as isize).collect::<Vec<_>>())
    }

    /// The flattened row index of `x[i0, i1, ..]` over the leading `indices.len()` dims, the
    /// indices' broadcast shape, and the remaining dims.
    fn linear_index(&self, op: &'static str, indices: &[&Tensor]) -> Result<(Tensor, Vec<usize>, Vec<usize>)> {
        if indices.is_empty() || indices.len() > self.rank() {
            return Err(Error::invalid(op, self.shape(), format!("{} index tensors given for a tensor of rank {} (1 to {} allowed)", indices.len(), self.rank(), self.rank())));
        }
        let mut bshape: Vec<usize> = indices[0].shape().to_vec();
        for t in indices {
            check_index(op, self, t)?;
            bshape = broadcast_shapes(op, &bshape, t.shape())?.to_vec();
        }
        let lead = &self.shape()[..indices.len()];
        let strides = contiguous_strides(lead);
        let n: usize = bshape.iter().product();
        let mut lin = vec![0i64; n];
        let target: Vec<isize> = bshape.iter().map(|&d| d as isize).collect();
        for (k, t) in indices.iter().enumerate() {
            let size = lead[k] as i64;
            let v = t.try_expand(&target)?.to_vec::<i64>();
            for (l, &i) in lin.iter_mut().zip(&v) {
                if i < -size || i >= size {
                    return Err(Error::IndexOutOfBounds { op, index: i, dim: k, size: size as usize });
                }
                *l += (if i < 0 { i + size } else { i }) * strides[k] as i64;
            }
        }
        Ok((Tensor::from_vec(lin, &[n]), bshape, self.shape()[indices.len()..].to_vec()))
    }

    /// `self` with the slices at `index` (1-D i64) along `dim` replaced by `src`'s, out of place
    /// (`torch.index_copy`).
    pub fn try_index_copy(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_copy";
        check_index(OP, self, index)?;
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: src.dtype() });
        }
        if index.rank() > 1 || self.rank() == 0 {
            return Err(Error::invalid(OP, self.shape(), format!("needs a 1-D index and an input with dims, got index {:?}", index.shape())));
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
        let out = with_checked_index(OP, index, d, n, |idx| {
            any_dispatch!(self.dtype(), T => {
                let mut out = self.with_contiguous::<T, _>(|s| s.to_vec())?;
                src.with_contiguous::<T, _>(|s| index_copy(&mut out, outer, n, inner, idx, s))?;
                Ok(Tensor::from_storage(T::wrap(out), &shape))
            })
        })?;
        let index = index.clone();
        Ok(record(OP, out, &[self, src], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.try_index_fill(d as isize, &index, 0.0)?) } else { None },
                if need[1] { Some(g.try_index_select(d as isize, &index)?) } else { None },
            ])
        }))
    }

    /// `self` with the slices at `index` along `dim` set to `value` (`torch.index_fill`).
    pub fn try_index_fill(&self, dim: isize, index: &Tensor, value: f64) -> Result<Tensor> {
        let d = normalize_dim("index_fill", dim, self.rank().max(1))?;
        if self.rank() == 0 {
            return self.try_reshape(&[1])?.try_index_fill(0, &index.try_reshape(&[-1])?, value)?.try_reshape(&[]);
        }
        let mut src_shape = self.shape().to_vec();
        src_shape[d] = index.numel();
        let src = Tensor::full(&src_shape, value, self.dtype());
        let out = crate::autograd::no_grad(|| self.try_index_copy(dim, &index.try_reshape(&[-1])?, &src))?;
        let index = index.clone();
        Ok(record("index_fill", out, &[self], move |g, _| Ok(vec![Some(g.try_index_fill(d as isize, &index, 0.0)?)])))
    }

    /// `self + alpha * (src added at index along dim)` (`torch.index_add(.., alpha=alpha)`).
    pub fn try_index_add_scaled(&self, dim: isize, index: &Tensor, src: &Tensor, alpha: f64) -> Result<Tensor> {
        if alpha == 1.0 {
            return self.try_index_add(dim, index, src);
        }
        self.try_index_add(dim, index, &src.try_mul_scalar(alpha)?.try_to_dtype(self.dtype())?)
    }

    /// The elements where `mask` (bool, broadcasting with `self`) is true, as a 1-D tensor in
    /// row-major order (`torch.masked_select`).
    pub fn try_masked_select(&self, mask: &Tensor) -> Result<Tensor> {
        const OP: &str = "masked_select";
        let mask = bool_mask(OP, mask)?;
        let shape = broadcast_shapes(OP, self.shape(), mask.shape())?;
        let target: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        let m = mask.try_expand(&target)?.to_vec::<bool>();
        let positions: Vec<i64> = m.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i as i64).collect();
        let n = positions.len();
        self.try_expand(&target)?.try_reshape(&[-1])?.try_index_select(0, &Tensor::from_vec(positions, &[n]))
    }

    /// `torch.take_along_dim`: gathers along `dim` with `indices` broadcast against `self` on the
    /// other dims; with `None`, both are flattened.
    pub fn try_take_along_dim(&self, indices: &Tensor, dim: Option<isize>) -> Result<Tensor> {
        const OP: &str = "take_along_dim";
        check_index(OP, self, indices)?;
        let Some(dim) = dim else {
            return self.try_reshape(&[-1])?.try_gather(0, &indices.try_reshape(&[-1])?);
        };
        if indices.rank() != self.rank() {
            return Err(Error::shape(OP, self.shape(), indices.shape(), "differ in rank: the indices must have the input's rank"));
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let mut xs: Vec<usize> = self.shape().to_vec();
        let mut is: Vec<usize> = indices.shape().to_vec();
        for k in 0..self.rank() {
            if k == d {
                continue;
            }
            let b = broadcast_shapes(OP, &[xs[k]], &[is[k]])?[0];
            xs[k] = b;
            is[k] = b;
        }
        let sig = |v: &[usize]| v.iter().map(|&x| x as isize).collect::<Vec<_>>();
        self.try_expand(&sig(&xs))?.try_gather(d as isize, &indices.try_expand(&sig(&is))?.try_contiguous()?)
    }
}

/// PyTorch's `scatter_reduce_backward`: `(grad_self, grad_src)`.
#[allow(clippy::too_many_arguments)]
fn scatter_reduce_backward(
    x: &Tensor,
    src: &Tensor,
    index: &Tensor,
    result: &Tensor,
    g: &Tensor,
    dim: isize,
    reduce: Reduce,
    include_self: bool,
) -> Result<(Tensor, Tensor)> {
    let dt = g.dtype();
    let eq0 = |t: &Tensor| t.try_eq(&Tensor::zeros(&[], t.dtype()));
    let (mut grad_self, grad_src) = match reduce {
        Reduce::Sum => (g.clone(), g.try_gather(dim, index)?),
        Reduce::Mean => {
            let base = if include_self { Tensor::ones(g.shape(), dt) } else { Tensor::zeros(g.shape(), dt) };
            let n = base.try_scatter_add(dim, index, &Tensor::ones(index.shape(), dt))?;
            let n = n.try_masked_fill(&eq0(&n)?, 1.0)?;
            let gn = g.try_div(&n)?;
            (gn.clone(), gn.try_gather(dim, index)?)
        }
        Reduce::Amax | Reduce::Amin => {
            let value = result.try_gather(dim, index)?;
            let self_is = x.try_eq(result)?.try_to_dtype(dt)?;
            let src_is = src.narrow_to(index)?.try_eq(&value)?.try_to_dtype(dt)?;
            let count = self_is.try_scatter_add(dim, index, &src_is)?;
            let share = g.try_div(&count)?;
            (self_is.try_mul(&share)?, src_is.try_mul(&share.try_gather(dim, index)?)?)
        }
        Reduce::Prod => {
            // Exact with one zero per group: divide by the element where it is non-zero,
            // recompute the product without it where it is the zero (PyTorch's approach).
            let masked_self = x.try_masked_fill(&eq0(x)?, 1.0)?;
            let masked_self_result = masked_self.try_scatter_reduce(dim, index, src, Reduce::Prod, include_self)?.detach();
            let grad_self = g.try_mul(&masked_self_result)?.try_div(&masked_self)?;
            let s = src.narrow_to(index)?;
            let src_zero = eq0(&s)?;
            let zeros_per_target = Tensor::zeros(x.shape(), dt).try_scatter_add(dim, index, &src_zero.try_to_dtype(dt)?)?.try_gather(dim, index)?;
            let single_zero = src_zero.try_logical_and(&zeros_per_target.try_eq(&Tensor::ones(&[], dt))?)?;
            let masked_src = s.try_masked_fill(&single_zero, 1.0)?;
            let masked_src_result = x.try_scatter_reduce(dim, index, &masked_src, Reduce::Prod, include_self)?.detach();
            let at_zero = g.try_mul(&masked_src_result)?.try_gather(dim, index)?;
            let elsewhere = g.try_mul(result)?.try_gather(dim, index)?.try_div(&s.try_masked_fill(&src_zero, 1.0)?)?;
            (grad_self, Tensor::try_where_cond(&single_zero, &at_zero, &elsewhere)?)
        }
    };
    if !include_self {
        grad_self = grad_self.try_scatter_value(dim, index, 0.0)?;
    }
    let grad_src = if grad_src.shape() == src.shape() {
        grad_src
    } else {
        let is = index.shape();
        let pad: Vec<usize> = (0..src.rank()).rev().flat_map(|i| [0, src.shape()[i] - is[i]]).collect();
        grad_src.try_pad(&pad, 0.0)?
    };
    Ok((grad_self, grad_src))
}

impl Tensor {
    /// The leading `index.shape()` block of `self` (what a scatter reads of its source).
    fn narrow_to(&self, index: &Tensor) -> Result<Tensor> {
        let mut t = self.clone();
        for (d, &n) in index.shape().iter().enumerate() {
            if t.shape()[d] != n {
                t = t.try_narrow(d as isize, 0, n)?;
            }
        }
        Ok(t)
    }
}

panicking! {
    /// Writes `src` at `index` along `dim`, out of place (`torch.scatter`).
    fn scatter / try_scatter(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor;
    /// Writes `value` at `index` along `dim` (`torch.scatter` with a value).
    fn scatter_value / try_scatter_value(&self, dim: isize, index: &Tensor, value: f64) -> Tensor;
    /// Reduces `src` into `self` at `index` (`torch.scatter_reduce`).
    fn scatter_reduce / try_scatter_reduce(&self, dim: isize, index: &Tensor, src: &Tensor, reduce: Reduce, include_self: bool) -> Tensor;
    /// `x[i0, i1, ..]` with index tensors over the leading dims.
    fn index / try_index(&self, indices: &[&Tensor]) -> Tensor;
    /// `x[i0, i1, ..] = values` (or `+=`), out of place (`index_put`).
    fn index_put / try_index_put(&self, indices: &[&Tensor], values: &Tensor, accumulate: bool) -> Tensor;
    /// Replaces slices at `index` along `dim` (`torch.index_copy`).
    fn index_copy / try_index_copy(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor;
    /// Fills slices at `index` along `dim` (`torch.index_fill`).
    fn index_fill / try_index_fill(&self, dim: isize, index: &Tensor, value: f64) -> Tensor;
    /// `index_add` with `alpha` (`torch.index_add(.., alpha=alpha)`).
    fn index_add_scaled / try_index_add_scaled(&self, dim: isize, index: &Tensor, src: &Tensor, alpha: f64) -> Tensor;
    /// Elements where `mask` is true, flattened (`torch.masked_select`).
    fn masked_select / try_masked_select(&self, mask: &Tensor) -> Tensor;
    /// Gathers along `dim` with broadcasting (`torch.take_along_dim`).
    fn take_along_dim / try_take_along_dim(&self, indices: &Tensor, dim: Option<isize>) -> Tensor;
}
