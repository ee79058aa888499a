//! `matmul` on a GPU: the same plan as the CPU (batch broadcasting, 1-D operands as rows or
//! columns) mapped onto one strided-batched cuBLAS call. Operands go in with their own
//! strides when cuBLAS can read them (row-major or transposed matrices, a batch that is one
//! stride or broadcast); otherwise they are first made contiguous on the device.

use tensorbrain_kernels::cuda::runtime::GemmOperand;

use super::{contiguous, device_error, kernel_dtype, runtime, with_buffer, wrap};
use crate::tensor::{Layout, Result, Tensor};

/// How cuBLAS reads one operand: `(ld, trans, batch_stride)` (see `GemmOperand`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatrixAccess {
    pub ld: usize,
    pub trans: bool,
    pub batch_stride: usize,
}

/// How cuBLAS can read `l`, a `[batch.., rows, cols]` view, or `None` if it cannot (then the
/// operand is copied to a contiguous buffer first). Strides of size-1 dims do not matter and
/// are replaced by valid leading dimensions (cuBLAS requires `ld >= max(1, rows of the
/// column-major view)`).
pub(crate) fn matrix_access(l: &Layout) -> Option<MatrixAccess> {
    let r = l.rank();
    let (rows, cols) = (l.shape[r - 2], l.shape[r - 1]);
    let (rs, cs) = (l.strides[r - 2], l.strides[r - 1]);
    let batch_stride = batch_stride(&l.shape[..r - 2], &l.strides[..r - 2])?;
    if cs == 1 || cols == 1 {
        let ld = if rows == 1 { cols.max(1) } else { rs };
        if ld >= cols.max(1) {
            return Some(MatrixAccess { ld, trans: false, batch_stride });
        }
    }
    if rs == 1 || rows == 1 {
        let ld = if cols == 1 { rows.max(1) } else { cs };
        if ld >= rows.max(1) {
            return Some(MatrixAccess { ld, trans: true, batch_stride });
        }
    }
    None
}

/// The one stride that walks the batch dims in row-major order, 0 when every batch dim is
/// broadcast; `None` when the batch dims cannot be walked by one stride.
fn batch_stride(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let dims: Vec<(usize, usize)> = shape.iter().zip(strides).filter(|(&n, _)| n != 1).map(|(&n, &s)| (n, s)).collect();
    let Some(&(_, last)) = dims.last() else { return Some(0) };
    if dims.iter().all(|&(_, s)| s == 0) {
        return Some(0);
    }
    let mut want = last;
    for &(n, s) in dims.iter().rev() {
        if s != want {
            return None;
        }
        want = s * n;
    }
    Some(last)
}

/// `a · b` for operands already viewed as `[batch.., m, k]` and `[batch.., k, n]` (`la`,
/// `lb`), giving a contiguous tensor of `out_shape` (which has `batch·m·n` elements).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(a: &Tensor, b: &Tensor, la: &Layout, lb: &Layout, m: usize, k: usize, n: usize, out_shape: &[usize]) -> Result<Tensor> {
    let device = a.device();
    let dt = kernel_dtype("matmul", a.dtype(), device)?;
    let rt = runtime(device, "matmul")?;
    let batch: usize = la.shape[..la.rank() - 2].iter().product();
    // An operand cuBLAS cannot read as it is becomes a contiguous copy of its broadcast view.
    let readable = |t: &Tensor, l: &Layout| -> Result<(Tensor, Layout, MatrixAccess)> {
        if let Some(acc) = matrix_access(l) {
            return Ok((t.clone(), l.clone(), acc));
        }
        let dense = contiguous(&t.view_with(l.clone()))?;
        let dl = dense.layout().clone();
        let acc = matrix_access(&dl).expect("a contiguous matrix stack is readable");
        Ok((dense, dl, acc))
    };
    let (ta, la, aa) = readable(a, la)?;
    let (tb, lb, ab) = readable(b, lb)?;
    let buf = with_buffer(&ta, |ba| {
        with_buffer(&tb, |bb| {
            let ga = GemmOperand { buf: ba, offset: la.offset, ld: aa.ld, trans: aa.trans, batch_stride: aa.batch_stride };
            let gb = GemmOperand { buf: bb, offset: lb.offset, ld: ab.ld, trans: ab.trans, batch_stride: ab.batch_stride };
            rt.gemm(dt, batch, m, k, n, ga, gb)
        })
    })
    .map_err(|e| device_error("matmul", device, e))?;
    Ok(wrap(buf, a.dtype(), out_shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(shape: &[usize], strides: &[usize], offset: usize) -> Layout {
        Layout { shape: shape.into(), strides: strides.into(), offset }
    }

    #[test]
    fn row_major_and_transposed_matrices_are_read_in_place() {
        // [3, 4] row-major.
        assert_eq!(matrix_access(&layout(&[3, 4], &[4, 1], 0)), Some(MatrixAccess { ld: 4, trans: false, batch_stride: 0 }));
        // A [4, 3] matrix's transpose: columns contiguous.
        assert_eq!(matrix_access(&layout(&[3, 4], &[1, 3], 0)), Some(MatrixAccess { ld: 3, trans: true, batch_stride: 0 }));
        // Rows of a wider matrix (a slice of columns): ld is the parent's row length.
        assert_eq!(matrix_access(&layout(&[3, 4], &[10, 1], 2)), Some(MatrixAccess { ld: 10, trans: false, batch_stride: 0 }));
        // A stride-2 column walk cannot be read by cuBLAS.
        assert_eq!(matrix_access(&layout(&[3, 4], &[8, 2], 0)), None);
    }

    #[test]
    fn vectors_lifted_to_matrices_get_valid_leading_dimensions() {
        // A 1-D left operand as a row [1, k] with stride 0 on the size-1 dim.
        assert_eq!(matrix_access(&layout(&[1, 5], &[0, 1], 0)), Some(MatrixAccess { ld: 5, trans: false, batch_stride: 0 }));
        // A 1-D right operand as a column [k, 1].
        assert_eq!(matrix_access(&layout(&[5, 1], &[1, 0], 0)), Some(MatrixAccess { ld: 1, trans: false, batch_stride: 0 }));
        // A strided column (every other element) is a transposed row of ld 2... read as
        // row-major with ld = its stride.
        assert_eq!(matrix_access(&layout(&[5, 1], &[2, 0], 0)), Some(MatrixAccess { ld: 2, trans: false, batch_stride: 0 }));
    }

    #[test]
    fn batches_need_one_stride_or_a_broadcast() {
        // [2, 3, 3, 4] contiguous: batch dims merge into one stride of 12.
        assert_eq!(matrix_access(&layout(&[2, 3, 3, 4], &[36, 12, 4, 1], 0)).unwrap().batch_stride, 12);
        // Broadcast over the batch (an expanded weight).
        assert_eq!(matrix_access(&layout(&[2, 3, 3, 4], &[0, 0, 4, 1], 0)).unwrap().batch_stride, 0);
        // Size-1 batch dims are ignored.
        assert_eq!(matrix_access(&layout(&[1, 6, 3, 4], &[999, 12, 4, 1], 0)).unwrap().batch_stride, 12);
        // Half broadcast, half not: no single stride.
        assert_eq!(matrix_access(&layout(&[2, 3, 3, 4], &[12, 0, 4, 1], 0)), None);
        // A permuted batch (heads before batch): no single stride.
        assert_eq!(matrix_access(&layout(&[2, 3, 3, 4], &[12, 24, 4, 1], 0)), None);
    }
}
