//! More shape ops: `diagonal` and `diag_embed`, `tril`/`triu`, `movedim`, `select`, `unbind`.
//! `diagonal`, `select` and `movedim` are views.

use tensorbrain_kernels::strided::copy_into;

use super::{any_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::{normalize_dim, Layout};
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// The layout of `diagonal(offset, d1, d2)` over `l`: dims `d1` and `d2` removed and the
/// diagonal appended last.
fn diagonal_layout(l: &Layout, offset: isize, d1: usize, d2: usize) -> Layout {
    let (n1, n2) = (l.shape[d1] as isize, l.shape[d2] as isize);
    let len = if offset >= 0 { n1.min(n2 - offset) } else { (n1 + offset).min(n2) }.max(0) as usize;
    let mut shape: Vec<usize> = Vec::with_capacity(l.rank() - 1);
    let mut strides: Vec<usize> = Vec::with_capacity(l.rank() - 1);
    for d in 0..l.rank() {
        if d != d1 && d != d2 {
            shape.push(l.shape[d]);
            strides.push(l.strides[d]);
        }
    }
    shape.push(len);
    strides.push(l.strides[d1] + l.strides[d2]);
    let numel: usize = shape.iter().product();
    let start = if offset >= 0 { offset as usize * l.strides[d2] } else { (-offset) as usize * l.strides[d1] };
    Layout { shape: shape.into(), strides: strides.into(), offset: l.offset + if numel > 0 { start } else { 0 } }
}

impl Tensor {
    /// The diagonal of the `dim1`-`dim2` planes, `offset` above (positive) or below the main
    /// one, as a view with the diagonal as the last dim (`torch.diagonal`).
    pub fn try_diagonal(&self, offset: isize, dim1: isize, dim2: isize) -> Result<Tensor> {
        const OP: &str = "diagonal";
        let d1 = normalize_dim(OP, dim1, self.rank())?;
        let d2 = normalize_dim(OP, dim2, self.rank())?;
        if self.rank() < 2 {
            return Err(Error::invalid(OP, self.shape(), "needs at least 2 dims"));
        }
        if d1 == d2 {
            return Err(Error::invalid(OP, self.shape(), format!("dim1 and dim2 must differ, both are {d1}")));
        }
        let out = self.view_with(diagonal_layout(self.layout(), offset, d1, d2));
        let shape = self.shape().to_vec();
        Ok(record(OP, out, &[self], move |g, _| Ok(vec![Some(g.diagonal_scatter(&shape, offset, d1, d2)?)])))
    }

    /// Zeros of `shape` with `self` written onto the `(offset, d1, d2)` diagonal: the adjoint of
    /// `diagonal`, recorded with `diagonal` as its own adjoint.
    fn diagonal_scatter(&self, shape: &[usize], offset: isize, d1: usize, d2: usize) -> Result<Tensor> {
        let view = diagonal_layout(&Layout::contiguous(shape), offset, d1, d2);
        let out = any_dispatch!(self.dtype(), T => {
            let mut buf = vec![T::default(); shape.iter().product()];
            self.with_contiguous::<T, _>(|src| copy_into(src, &mut buf, view.offset, &view.shape, &view.strides))?;
            Tensor::from_storage(T::wrap(buf), shape)
        });
        Ok(record("diagonal_backward", out, &[self], move |g, _| Ok(vec![Some(g.try_diagonal(offset, d1 as isize, d2 as isize)?)])))
    }

    /// A tensor whose `(offset, dim1, dim2)` diagonals hold the last dim of `self`, zeros
    /// elsewhere (`torch.diag_embed`).
    pub fn try_diag_embed(&self, offset: isize, dim1: isize, dim2: isize) -> Result<Tensor> {
        const OP: &str = "diag_embed";
        if self.rank() == 0 {
            return Err(Error::invalid(OP, self.shape(), "needs at least 1 dim"));
        }
        let rank = self.rank() + 1;
        let (d1, d2) = (normalize_dim(OP, dim1, rank)?, normalize_dim(OP, dim2, rank)?);
        if d1 == d2 {
            return Err(Error::invalid(OP, self.shape(), format!("dim1 and dim2 must differ, both are {d1}")));
        }
        let n = self.shape()[self.rank() - 1] + offset.unsigned_abs();
        let mut shape: Vec<usize> = self.shape()[..self.rank() - 1].to_vec();
        let (lo, hi) = (d1.min(d2), d1.max(d2));
        shape.insert(lo, n);
        shape.insert(hi, n);
        self.diagonal_scatter(&shape, offset, d1, d2)
    }

    /// `self` with the elements above the `diagonal`-th diagonal of the last two dims set to 0
    /// (`torch.tril`).
    pub fn try_tril(&self, diagonal: isize) -> Result<Tensor> {
        self.triangle("tril", diagonal, true)
    }

    /// `self` with the elements below the `diagonal`-th diagonal set to 0 (`torch.triu`).
    pub fn try_triu(&self, diagonal: isize) -> Result<Tensor> {
        self.triangle("triu", diagonal, false)
    }

    fn triangle(&self, op: &'static str, k: isize, lower: bool) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::invalid(op, self.shape(), "needs at least 2 dims (a matrix or a batch of matrices)"));
        }
        let (rows, cols) = (self.shape()[self.rank() - 2], self.shape()[self.rank() - 1]);
        let keep: Vec<bool> = (0..rows * cols)
            .map(|p| {
                let (i, j) = ((p / cols.max(1)) as isize, (p % cols.max(1)) as isize);
                if lower {
                    j - i <= k
                } else {
                    j - i >= k
                }
            })
            .collect();
        let mask = Tensor::from_vec(keep, &[rows, cols]);
        Tensor::try_where_cond(&mask, self, &Tensor::zeros(&[], self.dtype()))
    }

    /// Moves dims `source` to positions `destination`, keeping the others in order
    /// (`torch.movedim`); a view.
    pub fn try_movedim(&self, source: &[isize], destination: &[isize]) -> Result<Tensor> {
        const OP: &str = "movedim";
        if source.len() != destination.len() {
            return Err(Error::invalid(OP, self.shape(), format!("source {source:?} and destination {destination:?} must have the same length")));
        }
        let r = self.rank();
        let src: Vec<usize> = source.iter().map(|&d| normalize_dim(OP, d, r)).collect::<Result<_>>()?;
        let dst: Vec<usize> = destination.iter().map(|&d| normalize_dim(OP, d, r)).collect::<Result<_>>()?;
        for v in [&src, &dst] {
            if (0..v.len()).any(|i| v[..i].contains(&v[i])) {
                return Err(Error::invalid(OP, self.shape(), format!("repeated dim in source {source:?} or destination {destination:?}")));
            }
        }
        let mut perm = vec![usize::MAX; r];
        for (&s, &d) in src.iter().zip(&dst) {
            perm[d] = s;
        }
        let mut rest = (0..r).filter(|d| !src.contains(d));
        for p in perm.iter_mut().filter(|p| **p == usize::MAX) {
            *p = rest.next().expect("as many free dims as free slots");
        }
        self.try_permute(&perm.iter().map(|&d| d as isize).collect::<Vec<_>>())
    }

    /// The slice at `index` of `dim`, with that dim removed (`torch.select`, `x[:, i]`); a
    /// negative index counts from the end.
    pub fn try_select(&self, dim: isize, index: isize) -> Result<Tensor> {
        let d = normalize_dim("select", dim, self.rank())?;
        if self.rank() == 0 {
            return Err(Error::invalid("select", self.shape(), "cannot select from a 0-d tensor"));
        }
        let n = self.shape()[d];
        let i = if index < 0 { index + n as isize } else { index };
        if i < 0 || i as usize >= n {
            return Err(Error::IndexOutOfBounds { op: "select", index: index as i64, dim: d, size: n });
        }
        self.try_narrow(d as isize, i as usize, 1)?.try_squeeze(Some(d as isize))
    }

    /// Every slice along `dim`, each with that dim removed (`torch.unbind`).
    pub fn try_unbind(&self, dim: isize) -> Result<Vec<Tensor>> {
        let d = normalize_dim("unbind", dim, self.rank())?;
        if self.rank() == 0 {
            return Err(Error::invalid("unbind", self.shape(), "cannot unbind a 0-d tensor"));
        }
        (0..self.shape()[d]).map(|i| self.try_select(d as isize, i as isize)).collect()
    }
}

panicking! {
    /// Diagonal of the `dim1`-`dim2` planes as a view (`torch.diagonal`).
    fn diagonal / try_diagonal(&self, offset: isize, dim1: isize, dim2: isize) -> Tensor;
    /// Embeds the last dim on diagonals (`torch.diag_embed`).
    fn diag_embed / try_diag_embed(&self, offset: isize, dim1: isize, dim2: isize) -> Tensor;
    /// Lower triangle (`torch.tril`).
    fn tril / try_tril(&self, diagonal: isize) -> Tensor;
    /// Upper triangle (`torch.triu`).
    fn triu / try_triu(&self, diagonal: isize) -> Tensor;
    /// Moves dims (`torch.movedim`).
    fn movedim / try_movedim(&self, source: &[isize], destination: &[isize]) -> Tensor;
    /// `x[.., index, ..]` along `dim` (`torch.select`).
    fn select / try_select(&self, dim: isize, index: isize) -> Tensor;
    /// Slices along `dim` (`torch.unbind`).
    fn unbind / try_unbind(&self, dim: isize) -> Vec<Tensor>;
}
