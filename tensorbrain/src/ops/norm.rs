//! Vector norms and the remaining reductions: `vector_norm` / `norm` (any order, with
//! PyTorch's subgradients), `aminmax`, `nansum`, `count_nonzero`, `all` and `any`.

use super::panicking;
use crate::autograd::{no_grad, record};
use crate::tensor::{DType, Error, Result, Tensor};

impl Tensor {
    /// The `ord`-norm over `dims` (all dims if empty), like `torch.linalg.vector_norm`: `ord`
    /// may be any real, `f64::INFINITY` (max |x|), `-f64::INFINITY` (min |x|) or 0 (the count of
    /// non-zeros). The gradient follows PyTorch's `norm_backward`: 0 where the norm is 0 (for
    /// `ord >= 1`), ties of the infinity norm share the gradient evenly.
    pub fn try_vector_norm(&self, ord: f64, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        const OP: &str = "vector_norm";
        if ord.is_nan() {
            return Err(Error::invalid(OP, self.shape(), "ord must not be NaN"));
        }
        if !self.dtype().is_float() {
            return Err(Error::DType { op: OP, got: self.dtype(), expected: "a floating-point dtype (as torch.linalg.vector_norm)" });
        }
        let norm = no_grad(|| -> Result<Tensor> {
            let a = self.try_abs()?;
            if ord == f64::INFINITY {
                a.try_max(dims, keepdim)
            } else if ord == f64::NEG_INFINITY {
                a.try_min(dims, keepdim)
            } else if ord == 0.0 {
                a.try_ne(&a.scalar_like(0.0)?)?.try_to_dtype(self.dtype())?.try_sum(dims, keepdim)
            } else if ord == 1.0 {
                a.try_sum(dims, keepdim)
            } else if ord == 2.0 {
                a.try_square()?.try_sum(dims, keepdim)?.try_sqrt()
            } else {
                a.try_pow_scalar(ord)?.try_sum(dims, keepdim)?.try_pow_scalar(1.0 / ord)
            }
        })?;
        let (x, saved, dims) = (self.clone(), norm.detach(), dims.to_vec());
        Ok(record(OP, norm, &[self], move |g, _| {
            // The norm and g with the reduced dims kept, to broadcast against x.
            let keep = |t: &Tensor| -> Result<Tensor> {
                if keepdim {
                    return Ok(t.clone());
                }
                let mut shape: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
                let red: Vec<usize> = if dims.is_empty() { (0..x.rank()).collect() } else { dims.iter().map(|&d| crate::tensor::layout::normalize_dim(OP, d, x.rank())).collect::<Result<_>>()? };
                for d in red {
                    shape[d] = 1;
                }
                t.try_reshape(&shape)
            };
            let (n, g) = (keep(&if crate::autograd::is_grad_enabled() { x.try_vector_norm(ord, &dims, keepdim)? } else { saved.clone() })?, keep(g)?);
            Ok(vec![Some(norm_backward(&x, &n, &g, ord, &dims)?)])
        }))
    }

    /// `torch.norm(x, p, dim)` for vectors: the same as [`Tensor::try_vector_norm`] (`p = 2` is
    /// the Frobenius norm over all dims).
    pub fn try_norm(&self, p: f64, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.try_vector_norm(p, dims, keepdim)
    }

    /// `(min, max)` over `dim` (every dim for `None`), like `torch.aminmax`.
    pub fn try_aminmax(&self, dim: Option<isize>, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let dims: Vec<isize> = dim.into_iter().collect();
        Ok((self.try_min(&dims, keepdim)?, self.try_max(&dims, keepdim)?))
    }

    /// Sum over `dims` treating NaN as 0 (`torch.nansum`); NaN positions get no gradient.
    pub fn try_nansum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return self.try_sum(dims, keepdim);
        }
        let nan = self.try_isnan()?;
        Tensor::try_where_cond(&nan, &self.scalar_like(0.0)?, self)?.try_sum(dims, keepdim)
    }

    /// The number of non-zero elements over `dims` (all if empty), as i64
    /// (`torch.count_nonzero`).
    pub fn try_count_nonzero(&self, dims: &[isize]) -> Result<Tensor> {
        self.try_to_dtype(DType::Bool)?.try_sum(dims, false)
    }

    /// Whether every element over `dims` (all if empty) is non-zero, as bool (`torch.all`); an
    /// empty reduction is true.
    pub fn try_all(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let zeros = self.try_logical_not()?.try_sum(dims, keepdim)?;
        zeros.try_eq(&Tensor::scalar(0i64))
    }

    /// Whether any element over `dims` (all if empty) is non-zero, as bool (`torch.any`); an
    /// empty reduction is false.
    pub fn try_any(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let nonzero = self.try_to_dtype(DType::Bool)?.try_sum(dims, keepdim)?;
        nonzero.try_gt(&Tensor::scalar(0i64))
    }
}

/// PyTorch's `norm_backward` for the `ord`-norm `n` of `x` (both shaped to broadcast), given
/// the output gradient `g` (shaped like `n`). Written with differentiable ops.
fn norm_backward(x: &Tensor, n: &Tensor, g: &Tensor, ord: f64, dims: &[isize]) -> Result<Tensor> {
    let zero_norm = || n.try_eq(&n.scalar_like(0.0)?);
    let sgn = x.try_sign()?;
    if ord == 0.0 {
        return x.try_mul_scalar(0.0);
    }
    if ord == 1.0 {
        return sgn.try_mul(g);
    }
    if ord == 2.0 {
        return x.try_mul(&g.try_div(n)?.try_masked_fill(&zero_norm()?, 0.0)?);
    }
    if ord.is_infinite() {
        let mask = x.try_abs()?.try_eq(n)?.try_to_dtype(x.dtype())?;
        let count = mask.try_sum(dims, true)?;
        return sgn.try_mul(&g.try_div(&count)?.try_mul(&mask)?);
    }
    let a = x.try_abs()?;
    if ord < 1.0 {
        let zero_x = x.try_eq(&x.scalar_like(0.0)?)?;
        let d = a.try_pow_scalar(ord - 1.0)?.try_masked_fill(&zero_x, 0.0)?;
        return sgn.try_mul(&d)?.try_mul(g)?.try_mul(&n.try_pow_scalar(1.0 - ord)?);
    }
    let scaled = if ord < 2.0 { sgn.try_mul(&a.try_pow_scalar(ord - 1.0)?)? } else { x.try_mul(&a.try_pow_scalar(ord - 2.0)?)? };
    scaled.try_mul(g)?.try_div(&n.try_pow_scalar(ord - 1.0)?)?.try_masked_fill(&zero_norm()?, 0.0)
}

panicking! {
    /// The `ord`-norm over `dims` (`torch.linalg.vector_norm`).
    fn vector_norm / try_vector_norm(&self, ord: f64, dims: &[isize], keepdim: bool) -> Tensor;
    /// The `p`-norm over `dims` (`torch.norm` for vectors).
    fn norm / try_norm(&self, p: f64, dims: &[isize], keepdim: bool) -> Tensor;
    /// `(min, max)` over `dim` (`torch.aminmax`).
    fn aminmax / try_aminmax(&self, dim: Option<isize>, keepdim: bool) -> (Tensor, Tensor);
    /// Sum ignoring NaN (`torch.nansum`).
    fn nansum / try_nansum(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Count of non-zero elements (`torch.count_nonzero`).
    fn count_nonzero / try_count_nonzero(&self, dims: &[isize]) -> Tensor;
    /// Whether every element is non-zero (`torch.all`).
    fn all / try_all(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Whether any element is non-zero (`torch.any`).
    fn any / try_any(&self, dims: &[isize], keepdim: bool) -> Tensor;
}
