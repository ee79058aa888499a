//! Logical ops (`torch.logical_and`, ...): any dtype in, non-zero is true, bool out.

use tensorbrain_kernels::strided::{map_vec, zip_map_vec};

use super::panicking;
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{DType, Error, Result, StorageElement, Tensor};

impl Tensor {
    /// This tensor as bool (`x != 0`), without a copy when it already is.
    fn as_bool(&self) -> Result<Tensor> {
        self.try_to_dtype(DType::Bool)
    }

    fn logical_zip(&self, op: &'static str, rhs: &Tensor, f: fn(bool, bool) -> bool) -> Result<Tensor> {
        if self.device() != rhs.device() {
            return Err(Error::DeviceMismatch { op, lhs: self.device(), rhs: rhs.device() });
        }
        let shape = broadcast_shapes(op, self.shape(), rhs.shape())?;
        let (a, b) = (self.as_bool()?, rhs.as_bool()?);
        let (la, lb) = (a.layout().broadcast_to(&shape), b.layout().broadcast_to(&shape));
        let (sa, sb) = (a.storage(), b.storage());
        let out = zip_map_vec(sa.cpu()?.as_slice::<bool>(), la.offset, &la.strides, sb.cpu()?.as_slice::<bool>(), lb.offset, &lb.strides, &shape, f);
        Ok(Tensor::from_storage(bool::wrap(out), &shape))
    }

    pub fn try_logical_and(&self, rhs: &Tensor) -> Result<Tensor> {
        self.logical_zip("logical_and", rhs, |x, y| x & y)
    }

    pub fn try_logical_or(&self, rhs: &Tensor) -> Result<Tensor> {
        self.logical_zip("logical_or", rhs, |x, y| x | y)
    }

    pub fn try_logical_xor(&self, rhs: &Tensor) -> Result<Tensor> {
        self.logical_zip("logical_xor", rhs, |x, y| x ^ y)
    }

    pub fn try_logical_not(&self) -> Result<Tensor> {
        let b = self.as_bool()?;
        let l = b.layout();
        let s = b.storage();
        let out = map_vec(s.cpu()?.as_slice::<bool>(), l.offset, &l.shape, &l.strides, |x: bool| !x);
        Ok(Tensor::from_storage(bool::wrap(out), &l.shape))
    }

    /// `x != x` elementwise: true at NaN (always false for integers).
    pub fn try_isnan(&self) -> Result<Tensor> {
        self.try_ne(self)
    }

    /// True where the value is neither infinite nor NaN.
    pub fn try_isfinite(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Ok(Tensor::full(self.shape(), 1.0, DType::Bool));
        }
        let finite = self.try_abs()?.try_lt(&self.scalar_like(f64::INFINITY)?)?;
        Ok(finite)
    }

    /// True at `+inf` and `-inf`.
    pub fn try_isinf(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Ok(Tensor::full(self.shape(), 0.0, DType::Bool));
        }
        self.try_abs()?.try_eq(&self.scalar_like(f64::INFINITY)?)
    }
}

panicking! {
    /// Elementwise `and` of the truth values (non-zero is true), as a bool tensor.
    fn logical_and / try_logical_and(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `or` of the truth values, as a bool tensor.
    fn logical_or / try_logical_or(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `xor` of the truth values, as a bool tensor.
    fn logical_xor / try_logical_xor(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `not` of the truth values, as a bool tensor.
    fn logical_not / try_logical_not(&self) -> Tensor;
    /// True at NaN (`torch.isnan`).
    fn isnan / try_isnan(&self) -> Tensor;
    /// True where finite (`torch.isfinite`).
    fn isfinite / try_isfinite(&self) -> Tensor;
    /// True at infinities (`torch.isinf`).
    fn isinf / try_isinf(&self) -> Tensor;
}
