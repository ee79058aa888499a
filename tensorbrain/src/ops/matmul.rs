//! Matrix products: `matmul` with `torch.matmul`'s rank rules and batch broadcasting, its
//! `mm`/`bmm` special cases, and `linear`.
//!
//! Operands go to the GEMM kernel with their own strides and offsets, so transposed, permuted,
//! sliced and expanded operands multiply without a copy: a broadcast batch dim is just a
//! repeated offset.

use tensorbrain_kernels::gemm::{batched_matmul, matmul as gemm_matmul};

use super::binary::check_same;
use super::{float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::{broadcast_shapes, Layout};
use crate::tensor::{try_zeroed, Dims, Error, Result, StorageElement, Tensor};

/// How one `matmul` call maps onto GEMM.
struct Plan {
    /// Broadcast batch shape.
    batch: Dims,
    m: usize,
    k: usize,
    n: usize,
    /// `[batch.., m, k]` and `[batch.., k, n]` views of the operands (1-D operands get a
    /// size-1 dim with stride 0).
    la: Layout,
    lb: Layout,
    /// The shape `torch.matmul` returns (the size-1 dims of 1-D operands removed).
    out_shape: Vec<usize>,
}

fn plan(a: &Tensor, b: &Tensor) -> Result<Plan> {
    let (sa, sb) = (a.shape(), b.shape());
    let (ra, rb) = (sa.len(), sb.len());
    if ra == 0 || rb == 0 {
        return Err(Error::shape("matmul", sa, sb, "cannot be multiplied: both arguments need at least 1 dimension (got a 0-d tensor)"));
    }
    let la = as_matrices(a.layout(), true);
    let lb = as_matrices(b.layout(), false);
    let (m, k) = (la.shape[la.rank() - 2], la.shape[la.rank() - 1]);
    let (k2, n) = (lb.shape[lb.rank() - 2], lb.shape[lb.rank() - 1]);
    if k != k2 {
        let why = match (ra, rb) {
            (1, 1) => "cannot be multiplied: 1-D operands must have the same length",
            _ => "cannot be multiplied: the inner dimensions differ (the last dim of the first must equal the second-to-last dim of the second, or its only dim if 1-D)",
        };
        return Err(Error::shape("matmul", sa, sb, why));
    }
    let batch = broadcast_shapes("matmul", &la.shape[..la.rank() - 2], &lb.shape[..lb.rank() - 2])
        .map_err(|_| Error::shape("matmul", sa, sb, "cannot be multiplied: the batch dimensions (all but the last two) do not broadcast"))?;
    let mut out_shape: Vec<usize> = batch.to_vec();
    if ra >= 2 {
        out_shape.push(m);
    }
    if rb >= 2 {
        out_shape.push(n);
    }
    let full = |r: usize, c: usize| -> Vec<usize> { batch.iter().copied().chain([r, c]).collect() };
    let la = la.broadcast_to(&full(m, k));
    let lb = lb.broadcast_to(&full(k, n));
    Ok(Plan { batch, m, k, n, la, lb, out_shape })
}

/// The layout as a stack of matrices: a 1-D left operand becomes a row `[1, k]`, a 1-D right
/// operand a column `[k, 1]`.
fn as_matrices(l: &Layout, left: bool) -> Layout {
    if l.rank() >= 2 {
        return l.clone();
    }
    let (len, stride) = (l.shape[0], l.strides[0]);
    if left {
        Layout { shape: [1, len].into_iter().collect(), strides: [0, stride].into_iter().collect(), offset: l.offset }
    } else {
        Layout { shape: [len, 1].into_iter().collect(), strides: [stride, 0].into_iter().collect(), offset: l.offset }
    }
}

/// Storage offsets of every matrix pair of the batch, in row-major batch order.
fn batch_offsets(p: &Plan) -> Vec<(usize, usize)> {
    let nb: usize = p.batch.iter().product();
    let rank = p.batch.len();
    let mut offsets = Vec::with_capacity(nb);
    let mut idx = vec![0usize; rank];
    let (mut oa, mut ob) = (p.la.offset, p.lb.offset);
    for _ in 0..nb {
        offsets.push((oa, ob));
        // Odometer step over the batch index, moving both offsets along.
        for d in (0..rank).rev() {
            idx[d] += 1;
            oa += p.la.strides[d];
            ob += p.lb.strides[d];
            if idx[d] < p.batch[d] {
                break;
            }
            oa -= p.la.strides[d] * p.batch[d];
            ob -= p.lb.strides[d] * p.batch[d];
            idx[d] = 0;
        }
    }
    offsets
}

/// When only the left operand is batched and its `[batch.., m]` dims merge into one strided
/// dim, the whole product is one `[batch·m, k] · [k, n]` GEMM over that `[batch·m, k]` view.
fn folded(a: &Tensor, b: &Tensor, p: &Plan) -> Option<(usize, Layout)> {
    if a.rank() < 3 || b.rank() > 2 {
        return None;
    }
    let rows = p.batch.iter().product::<usize>() * p.m;
    Some((rows, a.layout().reshape_view(&[rows, p.k])?))
}

impl Tensor {
    /// Matrix product with `torch.matmul` semantics: 1-D·1-D is a dot product (0-d result),
    /// a 1-D operand is treated as a row (left) or column (right) vector whose dim is then
    /// removed, and dims before the last two are batch dims that broadcast.
    pub fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same("matmul", self, rhs)?;
        let p = plan(self, rhs)?;
        let (m, k, n) = (p.m, p.k, p.n);
        let r = p.la.rank();
        let (a_cs, b_rs, b_cs) = (p.la.strides[r - 1] as isize, p.lb.strides[r - 2] as isize, p.lb.strides[r - 1] as isize);
        #[cfg(feature = "cuda")]
        let on_gpu = super::on_device(self).then(|| {
            use crate::tensor::DType;
            if matches!(self.dtype(), DType::F16 | DType::BF16) {
                // f16/bf16 on a GPU: an f32 GEMM (f32 accumulation, as PyTorch's half GEMMs)
                // rounded once to the half type.
                let half = self.dtype();
                crate::autograd::no_grad(|| self.try_to_dtype(DType::F32)?.try_matmul(&rhs.try_to_dtype(DType::F32)?)?.try_to_dtype(half))
            } else {
                crate::cuda::matmul(self, rhs, &p.la, &p.lb, m, k, n, &p.out_shape)
            }
        });
        #[cfg(not(feature = "cuda"))]
        let on_gpu: Option<Result<Tensor>> = None;
        let out = if let Some(out) = on_gpu { out? } else { float_dispatch!("matmul", self.dtype(), T => {
            let (sa, sb) = (self.storage(), rhs.storage());
            let (a, b) = (sa.cpu()?.as_slice::<T>(), sb.cpu()?.as_slice::<T>());
            let mut c = try_zeroed::<T>("matmul", &p.out_shape)?;
            if !c.is_empty() {
                if let Some((rows, l)) = folded(self, rhs, &p) {
                    let (rs, cs) = (l.strides[0] as isize, l.strides[1] as isize);
                    gemm_matmul(rows, k, n, a, l.offset, rs, cs, b, p.lb.offset, b_rs, b_cs, &mut c, n as isize, 1, false);
                } else {
                    let offsets = batch_offsets(&p);
                    let a_rs = p.la.strides[r - 2] as isize;
                    batched_matmul(m, k, n, a, a_rs, a_cs, b, b_rs, b_cs, &offsets, &mut c, false);
                }
            }
            Tensor::from_storage(T::wrap(c), &p.out_shape)
        }) };

        let (a, b) = (self.clone(), rhs.clone());
        let (batch, out_shape) = (p.batch.to_vec(), p.out_shape.clone());
        Ok(record("matmul", out, &[self, rhs], move |g, need| {
            matmul_backward(&a, &b, g, need, &batch, [m, k, n], &out_shape)
        }))
    }

    /// Matrix product of two 2-D tensors (`torch.mm`).
    pub fn try_mm(&self, rhs: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || rhs.rank() != 2 {
            return Err(Error::shape("mm", self.shape(), rhs.shape(), "cannot be multiplied: mm needs two 2-D tensors (use matmul for other ranks)"));
        }
        self.try_matmul(rhs)
    }

    /// Batched matrix product of two 3-D tensors with equal batch sizes (`torch.bmm`).
    pub fn try_bmm(&self, rhs: &Tensor) -> Result<Tensor> {
        if self.rank() != 3 || rhs.rank() != 3 || self.shape()[0] != rhs.shape()[0] {
            return Err(Error::shape("bmm", self.shape(), rhs.shape(), "cannot be multiplied: bmm needs two 3-D tensors with the same batch size (use matmul to broadcast)"));
        }
        self.try_matmul(rhs)
    }

    /// `self · weightᵀ + bias` (PyTorch's `F.linear`): `self` is `[.., in]`, `weight` is
    /// `[out, in]` (or `[in]`, giving no output dim), `bias` broadcasts to the output.
    pub fn try_linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        if self.rank() == 0 || weight.rank() == 0 || weight.rank() > 2 {
            return Err(Error::shape("linear", self.shape(), weight.shape(), "cannot be combined: linear needs an input of at least 1 dim and a weight [out_features, in_features]"));
        }
        if self.shape()[self.rank() - 1] != weight.shape()[weight.rank() - 1] {
            return Err(Error::shape("linear", self.shape(), weight.shape(), "do not match: the input's last dim must equal in_features (the weight's last dim)"));
        }
        let y = self.try_matmul(&weight.try_t()?)?;
        let Some(bias) = bias else { return Ok(y) };
        match broadcast_shapes("linear", y.shape(), bias.shape()) {
            Ok(s) if s.as_slice() == y.shape() => y.try_add(bias),
            _ => Err(Error::shape("linear", weight.shape(), bias.shape(), "do not match: the bias (second) must broadcast to the output [.., out_features] of the weight (first)")),
        }
    }
}

/// dA = g·Bᵀ and dB = Aᵀ·g, with 1-D operands lifted to matrices and broadcast batch dims
/// summed back. Written with tensor ops, so it can itself be differentiated.
fn matmul_backward(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    need: &[bool],
    batch: &[usize],
    [m, k, n]: [usize; 3],
    out_shape: &[usize],
) -> Result<Vec<Option<Tensor>>> {
    debug_assert_eq!(g.shape(), out_shape);
    let dims = |v: &[usize]| -> Vec<isize> { v.iter().map(|&d| d as isize).collect() };
    let full: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
    let g2 = g.try_reshape(&dims(&full))?;
    let a2 = if a.rank() == 1 { a.try_unsqueeze(0)? } else { a.clone() };
    let b2 = if b.rank() == 1 { b.try_unsqueeze(-1)? } else { b.clone() };
    let rows = batch.iter().product::<usize>() * m;
    let ga = if need[0] {
        let full_ga = g2.try_matmul(&b2.try_transpose(-1, -2)?)?;
        Some(full_ga.sum_to_shape(a2.shape())?.try_reshape(&dims(a.shape()))?)
    } else {
        None
    };
    let gb = if need[1] {
        // B = Wᵀ, a transposed view of a contiguous [n, k] (a Linear's weight): dB is computed
        // as (gᵀ·A)ᵀ, so that the transpose's backward hands W a contiguous gradient instead of
        // a transposed view that the optimizer would then copy element by element.
        let b_is_transposed = b2.rank() == 2 && k > 1 && n > 1 && b2.layout().strides.as_slice() == [1, k];
        let gb2 = if b2.rank() == 2 && (a2.rank() > 2 || b_is_transposed) {
            // B is shared by the whole batch: fold the batch into the contraction instead of
            // computing one product per item and summing them.
            let (af, gf) = if a2.rank() > 2 { (a2.try_reshape(&[rows as isize, k as isize])?, g2.try_reshape(&[rows as isize, n as isize])?) } else { (a2.clone(), g2.clone()) };
            if b_is_transposed {
                gf.try_t()?.try_matmul(&af)?.try_t()?
            } else {
                af.try_t()?.try_matmul(&gf)?
            }
        } else {
            a2.try_transpose(-1, -2)?.try_matmul(&g2)?.sum_to_shape(b2.shape())?
        };
        Some(gb2.try_reshape(&dims(b.shape()))?)
    } else {
        None
    };
    Ok(vec![ga, gb])
}

panicking! {
    /// Matrix product with `torch.matmul` semantics (dot, matrix-vector, batched with
    /// broadcasting).
    fn matmul / try_matmul(&self, rhs: &Tensor) -> Tensor;
    /// Matrix product of two 2-D tensors (`torch.mm`).
    fn mm / try_mm(&self, rhs: &Tensor) -> Tensor;
    /// Batched product of two 3-D tensors (`torch.bmm`).
    fn bmm / try_bmm(&self, rhs: &Tensor) -> Tensor;
    /// `self · weightᵀ + bias` (`F.linear`).
    fn linear / try_linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor;
}
