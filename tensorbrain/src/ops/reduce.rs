//! Reductions over any set of axes, with `keepdim`.

use tensorbrain_kernels::strided::{copy, reduce_rows};

use super::{float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::normalize_dim;
use crate::tensor::{Element, Error, Result, Tensor};

/// How a reduction maps input to output: the input is viewed with the reduced dims moved last,
/// so each output element reduces one contiguous row of `row_len` elements.
pub(crate) struct ReducePlan {
    /// Reduced dims, sorted and unique.
    pub dims: Vec<usize>,
    /// Input dims in kept-then-reduced order.
    pub perm: Vec<usize>,
    pub rows: usize,
    pub row_len: usize,
    /// The output shape (without the reduced dims unless `keepdim`).
    pub out_shape: Vec<usize>,
    /// The output shape with reduced dims kept as 1 (what gradients broadcast from).
    pub keep_shape: Vec<usize>,
}

impl ReducePlan {
    /// `dims` empty means every dim (PyTorch's `dim=None`).
    pub fn new(op: &'static str, shape: &[usize], dims: &[isize], keepdim: bool) -> Result<ReducePlan> {
        let rank = shape.len();
        let mut red: Vec<usize> = if dims.is_empty() {
            (0..rank).collect()
        } else {
            dims.iter().map(|&d| normalize_dim(op, d, rank)).collect::<Result<_>>()?
        };
        red.sort_unstable();
        if red.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid(op, shape, format!("dim appears more than once in {dims:?}")));
        }
        let red: Vec<usize> = red.into_iter().filter(|&d| d < rank).collect();
        let kept: Vec<usize> = (0..rank).filter(|d| !red.contains(d)).collect();
        let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
        let keep_shape: Vec<usize> = (0..rank).map(|d| if red.contains(&d) { 1 } else { shape[d] }).collect();
        let out_shape = if keepdim { keep_shape.clone() } else { kept.iter().map(|&d| shape[d]).collect() };
        Ok(ReducePlan {
            rows: kept.iter().map(|&d| shape[d]).product(),
            row_len: red.iter().map(|&d| shape[d]).product(),
            dims: red,
            perm,
            out_shape,
            keep_shape,
        })
    }
}

impl Tensor {
    /// Runs `f` on the input's elements arranged as `plan.rows` contiguous rows.
    pub(crate) fn with_reduce_rows<T: Element, R>(&self, plan: &ReducePlan, f: impl FnOnce(&[T]) -> R) -> R {
        let l = self.layout().permute(&plan.perm);
        let storage = self.storage();
        let src = storage.cpu().as_slice::<T>();
        if l.is_contiguous() {
            f(&src[l.offset..l.offset + l.numel()])
        } else {
            let mut buf = vec![T::default(); l.numel()];
            copy(src, l.offset, &l.shape, &l.strides, &mut buf);
            f(&buf)
        }
    }

    /// Broadcasts a reduced gradient (in the plan's output shape) back to this tensor's shape.
    pub(crate) fn expand_reduced(g: &Tensor, plan: &ReducePlan, shape: &[usize]) -> Result<Tensor> {
        let keep: Vec<isize> = plan.keep_shape.iter().map(|&d| d as isize).collect();
        let target: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        g.try_reshape(&keep)?.try_expand(&target)
    }

    /// Sum over `dims` (all dims if empty).
    pub fn try_sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("sum", self.shape(), dims, keepdim)?;
        let out = float_dispatch!("sum", self.dtype(), T => {
            let v = self.with_reduce_rows::<T, _>(&plan, |src| {
                reduce_rows(src, plan.row_len, plan.rows, |row| {
                    // Accumulate in f64: sums over many f32 values stay within PyTorch's
                    // (pairwise-summed) result.
                    T::from_f64(row.iter().map(|&x| x.to_f64()).sum::<f64>())
                })
            });
            Tensor::from_vec(v, &plan.out_shape)
        });
        let shape = self.shape().to_vec();
        Ok(record("sum", out, &[self], move |g, _| Ok(vec![Some(Tensor::expand_reduced(g, &plan, &shape)?)])))
    }

    /// Sum of every element, as a 0-d tensor.
    pub fn try_sum_all(&self) -> Result<Tensor> {
        self.try_sum(&[], false)
    }

    /// Mean over `dims` (all dims if empty).
    pub fn try_mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("mean", self.shape(), dims, keepdim)?;
        // An empty reduction gives NaN, as 0/0 does in PyTorch.
        self.try_sum(dims, keepdim)?.try_mul_scalar(1.0 / plan.row_len as f64)
    }
}

panicking! {
    /// Sum over `dims` (all dims when empty), keeping them as size 1 if `keepdim`.
    fn sum / try_sum(&self, dims: &[isize], keepdim: bool) -> Tensor;
    fn sum_all / try_sum_all(&self) -> Tensor;
    /// Mean over `dims` (all dims when empty).
    fn mean / try_mean(&self, dims: &[isize], keepdim: bool) -> Tensor;
}
