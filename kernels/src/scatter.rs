//! `scatter` (assignment) and `scatter_reduce` along one dim, in the layout convention of
//! [`crate::index::scatter_add`]: for each position `p` of the index's shape, the target is
//! `out[sum_k p_k * out_strides[k] + idx[p] * dim_stride]` (with `out_strides` 0 at the scattered
//! dim) and the value `src[src_offset + sum_k p_k * src_strides[k]]`.

use crate::strided::Rows;
use crate::Float;

/// How `scatter_reduce` combines the values that land on one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScatterReduce {
    Sum,
    Prod,
    Mean,
    Amax,
    Amin,
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i].max(1);
    }
    strides
}

/// Calls `f(target, source)` for every scattered element, in row-major index order.
#[allow(clippy::too_many_arguments)]
fn for_each_target(out_strides: &[usize], dim_stride: usize, src_offset: usize, src_strides: &[usize], idx: &[i64], shape: &[usize], mut f: impl FnMut(usize, usize)) {
    let idx_strides = contiguous_strides(shape);
    let plan = Rows::new(shape, [out_strides, src_strides, &idx_strides], [0, src_offset, 0]);
    let [os, ss, is] = plan.inner_strides;
    for r in 0..plan.rows {
        let [oo, so, io] = plan.row_offsets(r);
        for i in 0..plan.inner {
            f(oo + i * os + idx[io + i * is] as usize * dim_stride, so + i * ss);
        }
    }
}

/// `torch.scatter`: writes each source value to its target (the last write wins where indices
/// repeat, as on PyTorch's CPU backend).
#[allow(clippy::too_many_arguments)]
pub fn scatter<T: Copy>(out: &mut [T], out_strides: &[usize], dim_stride: usize, src: &[T], src_offset: usize, src_strides: &[usize], idx: &[i64], shape: &[usize]) {
    for_each_target(out_strides, dim_stride, src_offset, src_strides, idx, shape, |o, s| out[o] = src[s]);
}

/// `torch.scatter_reduce`: combines source values into `out` with `reduce`. With
/// `include_self` the existing value takes part; without it an element that receives values is
/// reset first (elements that receive none keep their value). `Mean` divides by the number of
/// values combined. NaN propagates through `Amax` and `Amin`.
#[allow(clippy::too_many_arguments)]
pub fn scatter_reduce<T: Float>(
    out: &mut [T],
    out_strides: &[usize],
    dim_stride: usize,
    src: &[T],
    src_offset: usize,
    src_strides: &[usize],
    idx: &[i64],
    shape: &[usize],
    reduce: ScatterReduce,
    include_self: bool,
) {
    let mut count = vec![if include_self { 1u32 } else { 0 }; out.len()];
    for_each_target(out_strides, dim_stride, src_offset, src_strides, idx, shape, |o, s| {
        let v = src[s];
        if count[o] == 0 {
            out[o] = v;
        } else {
            let a = out[o];
            out[o] = match reduce {
                ScatterReduce::Sum | ScatterReduce::Mean => a + v,
                ScatterReduce::Prod => a * v,
                ScatterReduce::Amax => {
                    if a.is_nan() || v.is_nan() {
                        T::nan()
                    } else if v > a {
                        v
                    } else {
                        a
                    }
                }
                ScatterReduce::Amin => {
                    if a.is_nan() || v.is_nan() {
                        T::nan()
                    } else if v < a {
                        v
                    } else {
                        a
                    }
                }
            };
        }
        count[o] += 1;
    });
    if reduce == ScatterReduce::Mean {
        for (o, &c) in out.iter_mut().zip(&count) {
            if c > 1 {
                *o = *o / T::from_f64(c as f64);
            }
        }
    }
}

/// `out[o, idx[j], :] = src[o, j, :]` for a contiguous `out` of shape `[outer, n, inner]` and a
/// contiguous `src` of shape `[outer, idx.len(), inner]` (`index_copy`; the last write wins
/// where indices repeat).
pub fn index_copy<T: Copy>(out: &mut [T], outer: usize, n: usize, inner: usize, idx: &[i64], src: &[T]) {
    let m = idx.len();
    if outer == 0 || m == 0 || inner == 0 || n == 0 {
        return;
    }
    for (dst, s) in out.chunks_mut(n * inner).zip(src.chunks(m * inner)) {
        for (j, &k) in idx.iter().enumerate() {
            let k = k as usize;
            dst[k * inner..(k + 1) * inner].copy_from_slice(&s[j * inner..(j + 1) * inner]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_reduce_along_rows() {
        // out [1, 3], index [1, 4] along dim 1, src [1, 4]
        let mut out = [10.0f64, 20.0, 30.0];
        let idx = [0i64, 2, 0, 2];
        let src = [1.0, 2.0, 3.0, 4.0];
        scatter_reduce(&mut out, &[3, 0], 1, &src, 0, &[4, 1], &idx, &[1, 4], ScatterReduce::Mean, true);
        assert_eq!(out, [(10.0 + 1.0 + 3.0) / 3.0, 20.0, (30.0 + 2.0 + 4.0) / 3.0]);
        let mut out = [10.0f64, 20.0, 30.0];
        scatter_reduce(&mut out, &[3, 0], 1, &src, 0, &[4, 1], &idx, &[1, 4], ScatterReduce::Amax, false);
        assert_eq!(out, [3.0, 20.0, 4.0]);
        let mut out = [0.0f64; 3];
        scatter(&mut out, &[3, 0], 1, &src, 0, &[4, 1], &idx, &[1, 4]);
        assert_eq!(out, [3.0, 0.0, 4.0]);
    }
}
