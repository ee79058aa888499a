//! Order statistics along a dim: `sort`, `argsort`, `topk`, `kthvalue` and `median`. NaN sorts
//! as larger than every number, as in PyTorch; sorting is stable (ties keep their input order).
//! Gradients of the values go back to the positions they came from.

use tensorbrain_kernels::scan::{sort, topk};

use super::{any_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::{Error, Result, StorageElement, Tensor};

impl Tensor {
    /// `k` entries along `dim` in sorted order, as `(values, i64 indices)`, gradient-tracked.
    fn sorted_part(&self, op: &'static str, dim: isize, k: usize, descending: bool) -> Result<(Tensor, Tensor)> {
        let (d, len, inner) = self.axis_split(op, dim)?;
        if k > len {
            return Err(Error::invalid(op, self.shape(), format!("k ({k}) is larger than dim {d} of size {len}")));
        }
        let mut out_shape = self.shape().to_vec();
        if let Some(s) = out_shape.get_mut(d) {
            *s = k;
        }
        let (values, indices) = any_dispatch!(self.dtype(), T => {
            let (v, i) = self.with_contiguous::<T, _>(|v| {
                if k == len {
                    sort(v, len, inner, descending)
                } else {
                    topk(v, len, inner, k, descending)
                }
            })?;
            (Tensor::from_storage(T::wrap(v), &out_shape), Tensor::from_vec(i, &out_shape))
        });
        let values = self.record_selected(op, values, &indices, d)?;
        Ok((values, indices))
    }

    /// Records `values = self` gathered at `indices` along `d`: the gradient is scattered back.
    fn record_selected(&self, op: &'static str, values: Tensor, indices: &Tensor, d: usize) -> Result<Tensor> {
        let (idx, shape) = (indices.clone(), self.shape().to_vec());
        let rank0 = self.rank() == 0;
        Ok(record(op, values, &[self], move |g, _| {
            if rank0 {
                return Ok(vec![Some(g.clone())]);
            }
            Ok(vec![Some(Tensor::zeros(&shape, g.dtype()).try_scatter_add(d as isize, &idx, g)?)])
        }))
    }

    /// Sorts along `dim` (stably), returning `(values, indices)` like `torch.sort(stable=True)`.
    pub fn try_sort(&self, dim: isize, descending: bool) -> Result<(Tensor, Tensor)> {
        let len = self.axis_split("sort", dim)?.1;
        self.sorted_part("sort", dim, len, descending)
    }

    /// The indices that sort along `dim` (`torch.argsort(stable=True)`).
    pub fn try_argsort(&self, dim: isize, descending: bool) -> Result<Tensor> {
        Ok(crate::autograd::no_grad(|| self.try_sort(dim, descending))?.1)
    }

    /// The `k` largest (or smallest) entries along `dim`, sorted, with their indices
    /// (`torch.topk`). Among equal values the earlier index comes first.
    pub fn try_topk(&self, k: usize, dim: isize, largest: bool) -> Result<(Tensor, Tensor)> {
        self.sorted_part("topk", dim, k, largest)
    }

    /// The `k`-th smallest entry (1-based) along `dim` and its index (`torch.kthvalue`).
    pub fn try_kthvalue(&self, k: usize, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let (d, len, _) = self.axis_split("kthvalue", dim)?;
        if k == 0 || k > len {
            return Err(Error::invalid("kthvalue", self.shape(), format!("k ({k}) must be in 1..={len} (the size of dim {d})")));
        }
        let (v, i) = self.sorted_part("kthvalue", dim, k, false)?;
        squeeze_pick(&v, &i, d, k - 1, keepdim, self.rank())
    }

    /// The lower median along `dim` (the `(n - 1) / 2`-th smallest) and its index
    /// (`torch.median(x, dim)`); a slice holding NaN gives NaN.
    pub fn try_median_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let (d, len, _) = self.axis_split("median", dim)?;
        if len == 0 {
            return Err(Error::invalid("median", self.shape(), format!("cannot take the median of dim {d} of size 0")));
        }
        // NaN sorts last, so a row's first NaN sits at position (number of non-NaN values).
        let nan_count = crate::autograd::no_grad(|| -> Result<Tensor> { self.try_isnan()?.try_sum(&[d as isize], true) })?;
        let (v, i) = self.sorted_part("median", dim, len, false)?;
        let mid = (len - 1) / 2;
        let has_nan = nan_count.to_vec::<i64>().iter().any(|&c| c > 0);
        if !has_nan {
            return squeeze_pick(&v, &i, d, mid, keepdim, self.rank());
        }
        // Rows with NaN pick their first NaN (position len - nan_count in the sorted order).
        let pos: Vec<i64> = nan_count.to_vec::<i64>().iter().map(|&c| if c > 0 { (len as i64) - c } else { mid as i64 }).collect();
        let pos = Tensor::from_vec(pos, nan_count.shape());
        let (v, i) = (v.try_gather(d as isize, &pos)?, i.try_gather(d as isize, &pos)?);
        if keepdim || self.rank() == 0 {
            Ok((v, i))
        } else {
            Ok((v.try_squeeze(Some(d as isize))?, i.try_squeeze(Some(d as isize))?))
        }
    }

    /// The lower median of all elements (`torch.median(x)`); NaN if any element is NaN. The
    /// gradient is split evenly among the elements equal to the median, as in PyTorch.
    pub fn try_median(&self) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(Error::invalid("median", self.shape(), "median of an empty tensor is undefined"));
        }
        let flat = self.detach().try_reshape(&[-1])?;
        let (v, _) = flat.try_median_dim(0, false)?;
        let (x, result) = (self.clone(), v.clone());
        Ok(record("median", v, &[self], move |g, _| {
            let mask = if result.try_isnan()?.try_item::<bool>()? { x.try_isnan()? } else { x.try_eq(&result)? };
            let mask = mask.try_to_dtype(g.dtype())?;
            let count = mask.try_sum_all()?;
            Ok(vec![Some(mask.try_mul(&g.try_div(&count)?)?)])
        }))
    }
}

/// Entry `pos` along `d` of sorted values and indices, keeping the dim if asked.
fn squeeze_pick(v: &Tensor, i: &Tensor, d: usize, pos: usize, keepdim: bool, rank: usize) -> Result<(Tensor, Tensor)> {
    if rank == 0 {
        return Ok((v.clone(), i.clone()));
    }
    let (v, i) = (v.try_narrow(d as isize, pos, 1)?, i.try_narrow(d as isize, pos, 1)?);
    if keepdim {
        Ok((v, i))
    } else {
        Ok((v.try_squeeze(Some(d as isize))?, i.try_squeeze(Some(d as isize))?))
    }
}

panicking! {
    /// Stable sort along `dim`: `(values, indices)`.
    fn sort / try_sort(&self, dim: isize, descending: bool) -> (Tensor, Tensor);
    /// Indices that sort along `dim`.
    fn argsort / try_argsort(&self, dim: isize, descending: bool) -> Tensor;
    /// The `k` largest (or smallest) entries along `dim` with their indices.
    fn topk / try_topk(&self, k: usize, dim: isize, largest: bool) -> (Tensor, Tensor);
    /// The `k`-th smallest entry along `dim` and its index.
    fn kthvalue / try_kthvalue(&self, k: usize, dim: isize, keepdim: bool) -> (Tensor, Tensor);
    /// Lower median along `dim` and its index.
    fn median_dim / try_median_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor);
    /// Lower median of all elements.
    fn median / try_median(&self) -> Tensor;
}
