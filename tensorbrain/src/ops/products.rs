//! Products built on `matmul`: `addmm`, `baddbmm`, `addmv`, `outer`, `dot`, `mv` and
//! `tensordot`. All are compositions of differentiable ops.

use super::panicking;
use crate::tensor::layout::normalize_dim;
use crate::tensor::{Error, Result, Tensor};

impl Tensor {
    /// `beta * self + alpha * (m1 · m2)` on `[n, m]` and `[m, p]` matrices, `self` broadcasting
    /// to `[n, p]` (`torch.addmm`). With `beta == 0`, `self` is ignored (NaN in it does not
    /// propagate), as in PyTorch.
    pub fn try_addmm(&self, m1: &Tensor, m2: &Tensor, beta: f64, alpha: f64) -> Result<Tensor> {
        let prod = m1.try_mm(m2)?;
        scaled_sum("addmm", self, &prod, beta, alpha)
    }

    /// `beta * self + alpha * (b1 · b2)` on batches `[B, n, m]` and `[B, m, p]`
    /// (`torch.baddbmm`).
    pub fn try_baddbmm(&self, b1: &Tensor, b2: &Tensor, beta: f64, alpha: f64) -> Result<Tensor> {
        let prod = b1.try_bmm(b2)?;
        scaled_sum("baddbmm", self, &prod, beta, alpha)
    }

    /// `beta * self + alpha * (mat · vec)` (`torch.addmv`).
    pub fn try_addmv(&self, mat: &Tensor, vec: &Tensor, beta: f64, alpha: f64) -> Result<Tensor> {
        let prod = mat.try_mv(vec)?;
        scaled_sum("addmv", self, &prod, beta, alpha)
    }

    /// The outer product of two 1-D tensors (`torch.outer`).
    pub fn try_outer(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 1 || other.rank() != 1 {
            return Err(Error::shape("outer", self.shape(), other.shape(), "must both be 1-D"));
        }
        self.try_unsqueeze(1)?.try_mul(&other.try_unsqueeze(0)?)
    }

    /// The dot product of two 1-D tensors of equal length (`torch.dot`).
    pub fn try_dot(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 1 || other.rank() != 1 || self.shape() != other.shape() {
            return Err(Error::shape("dot", self.shape(), other.shape(), "must be 1-D and of equal length"));
        }
        self.try_matmul(other)
    }

    /// Matrix-vector product of `[n, m]` and `[m]` (`torch.mv`).
    pub fn try_mv(&self, vec: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || vec.rank() != 1 {
            return Err(Error::shape("mv", self.shape(), vec.shape(), "must be a matrix and a vector"));
        }
        self.try_matmul(vec)
    }

    /// Contracts `dims_self` of `self` with `dims_other` of `other` (pairwise, equal sizes),
    /// like `torch.tensordot(a, b, dims=(dims_self, dims_other))`: the result has `self`'s
    /// free dims followed by `other`'s.
    pub fn try_tensordot(&self, other: &Tensor, dims_self: &[isize], dims_other: &[isize]) -> Result<Tensor> {
        const OP: &str = "tensordot";
        if dims_self.len() != dims_other.len() {
            return Err(Error::shape(OP, self.shape(), other.shape(), "need as many contracted dims on each side"));
        }
        let da: Vec<usize> = dims_self.iter().map(|&d| normalize_dim(OP, d, self.rank())).collect::<Result<_>>()?;
        let db: Vec<usize> = dims_other.iter().map(|&d| normalize_dim(OP, d, other.rank())).collect::<Result<_>>()?;
        for (&a, &b) in da.iter().zip(&db) {
            if self.shape()[a] != other.shape()[b] {
                return Err(Error::invalid(
                    OP,
                    self.shape(),
                    format!("dim {a} (size {}) cannot contract with dim {b} (size {}) of the other tensor {:?}", self.shape()[a], other.shape()[b], other.shape()),
                ));
            }
        }
        let free_a: Vec<usize> = (0..self.rank()).filter(|d| !da.contains(d)).collect();
        let free_b: Vec<usize> = (0..other.rank()).filter(|d| !db.contains(d)).collect();
        let size = |t: &Tensor, ds: &[usize]| ds.iter().map(|&d| t.shape()[d]).product::<usize>() as isize;
        let perm_a: Vec<isize> = free_a.iter().chain(&da).map(|&d| d as isize).collect();
        let perm_b: Vec<isize> = db.iter().chain(&free_b).map(|&d| d as isize).collect();
        let a2 = self.try_permute(&perm_a)?.try_reshape(&[size(self, &free_a), size(self, &da)])?;
        let b2 = other.try_permute(&perm_b)?.try_reshape(&[size(other, &db), size(other, &free_b)])?;
        let out_shape: Vec<isize> = free_a.iter().map(|&d| self.shape()[d] as isize).chain(free_b.iter().map(|&d| other.shape()[d] as isize)).collect();
        a2.try_matmul(&b2)?.try_reshape(&out_shape)
    }

    /// `tensordot` over the last `n` dims of `self` and the first `n` of `other`
    /// (`torch.tensordot(a, b, dims=n)`).
    pub fn try_tensordot_n(&self, other: &Tensor, n: usize) -> Result<Tensor> {
        if n > self.rank() || n > other.rank() {
            return Err(Error::shape("tensordot", self.shape(), other.shape(), "have fewer dims than the contraction count"));
        }
        let da: Vec<isize> = (self.rank() - n..self.rank()).map(|d| d as isize).collect();
        let db: Vec<isize> = (0..n).map(|d| d as isize).collect();
        self.try_tensordot(other, &da, &db)
    }
}

/// `beta * input + alpha * prod`, with `input` broadcasting to `prod`'s shape.
fn scaled_sum(op: &'static str, input: &Tensor, prod: &Tensor, beta: f64, alpha: f64) -> Result<Tensor> {
    let shape = crate::tensor::layout::broadcast_shapes(op, input.shape(), prod.shape())?;
    if shape.as_slice() != prod.shape() {
        return Err(Error::shape(op, input.shape(), prod.shape(), "do not fit: the input must broadcast to the product's shape"));
    }
    let p = if alpha == 1.0 { prod.clone() } else { prod.try_mul_scalar(alpha)? };
    if beta == 0.0 {
        return Ok(p);
    }
    let i = if beta == 1.0 { input.clone() } else { input.try_mul_scalar(beta)? };
    p.try_add(&i)
}

panicking! {
    /// `beta * self + alpha * (m1 · m2)` (`torch.addmm`).
    fn addmm / try_addmm(&self, m1: &Tensor, m2: &Tensor, beta: f64, alpha: f64) -> Tensor;
    /// `beta * self + alpha * (b1 · b2)` batched (`torch.baddbmm`).
    fn baddbmm / try_baddbmm(&self, b1: &Tensor, b2: &Tensor, beta: f64, alpha: f64) -> Tensor;
    /// `beta * self + alpha * (mat · vec)` (`torch.addmv`).
    fn addmv / try_addmv(&self, mat: &Tensor, vec: &Tensor, beta: f64, alpha: f64) -> Tensor;
    /// Outer product of two vectors (`torch.outer`).
    fn outer / try_outer(&self, other: &Tensor) -> Tensor;
    /// Dot product of two vectors (`torch.dot`).
    fn dot / try_dot(&self, other: &Tensor) -> Tensor;
    /// Matrix-vector product (`torch.mv`).
    fn mv / try_mv(&self, vec: &Tensor) -> Tensor;
    /// Contracts the given dims pairwise (`torch.tensordot`).
    fn tensordot / try_tensordot(&self, other: &Tensor, dims_self: &[isize], dims_other: &[isize]) -> Tensor;
    /// Contracts the last `n` dims of `self` with the first `n` of `other`.
    fn tensordot_n / try_tensordot_n(&self, other: &Tensor, n: usize) -> Tensor;
}
