//! Copy, gather and scatter kernels: strided-to-strided copies (cat, pad), `index_select`,
//! `index_add`, `gather` and `scatter_add`.
//!
//! Index slices are `i64` and must already be validated by the caller (every value in
//! `0..size`); an out-of-range value panics on the slice bound check, never reads out of bounds.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::strided::{for_each_row, Rows, PARALLEL_THRESHOLD};

/// Addition for every element type; integers wrap, as in PyTorch.
pub trait Accumulate: Copy + Send + Sync {
    fn acc(self, other: Self) -> Self;
}

macro_rules! acc_float {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            #[inline(always)]
            fn acc(self, other: Self) -> Self {
                self + other
            }
        }
    )*};
}
macro_rules! acc_int {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            #[inline(always)]
            fn acc(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
        }
    )*};
}
acc_float!(f32, f64, f16, bf16);
acc_int!(i64, i32, i16, i8, u8);

/// Bool addition is `or`, as in PyTorch.
impl Accumulate for bool {
    #[inline(always)]
    fn acc(self, other: Self) -> Self {
        self | other
    }
}

/// Copies the strided view `(src_offset, shape, src_strides)` of `src` into the strided view
/// `(dst_offset, shape, dst_strides)` of `dst`. The destination view must not overlap itself.
pub fn copy_strided<T: Copy>(
    src: &[T],
    src_offset: usize,
    src_strides: &[usize],
    dst: &mut [T],
    dst_offset: usize,
    dst_strides: &[usize],
    shape: &[usize],
) {
    let plan = Rows::new(shape, [src_strides, dst_strides], [src_offset, dst_offset]);
    let n = plan.inner;
    let [ss, ds] = plan.inner_strides;
    for r in 0..plan.rows {
        let [so, d0] = plan.row_offsets(r);
        if ss == 1 && ds == 1 {
            dst[d0..d0 + n].copy_from_slice(&src[so..so + n]);
        } else {
            for i in 0..n {
                dst[d0 + i * ds] = src[so + i * ss];
            }
        }
    }
}

/// `out[o, j, :] = src[o, idx[j], :]` for a contiguous `src` of shape `[outer, n, inner]` and a
/// contiguous `out` of shape `[outer, idx.len(), inner]`.
pub fn index_select<T: Copy + Send + Sync>(src: &[T], outer: usize, n: usize, inner: usize, idx: &[i64], out: &mut [T]) {
    let m = idx.len();
    let block = m * inner;
    if block == 0 || outer == 0 {
        return;
    }
    let one = |o: usize, dst: &mut [T]| {
        let s = &src[o * n * inner..(o + 1) * n * inner];
        if inner == 1 {
            for (d, &k) in dst.iter_mut().zip(idx) {
                *d = s[k as usize];
            }
        } else {
            for (d, &k) in dst.chunks_mut(inner).zip(idx) {
                let k = k as usize;
                d.copy_from_slice(&s[k * inner..(k + 1) * inner]);
            }
        }
    };
    if out.len() >= PARALLEL_THRESHOLD && outer > 1 {
        out.par_chunks_mut(block).enumerate().for_each(|(o, dst)| one(o, dst));
    } else {
        out.chunks_mut(block).enumerate().for_each(|(o, dst)| one(o, dst));
    }
}

/// `out[o, idx[j], :] += src[o, j, :]` for a contiguous `out` of shape `[outer, n, inner]` and a
/// contiguous `src` of shape `[outer, idx.len(), inner]`. Repeated indices accumulate.
pub fn index_add<T: Accumulate>(out: &mut [T], outer: usize, n: usize, inner: usize, idx: &[i64], src: &[T]) {
    let m = idx.len();
    if outer == 0 || m == 0 || inner == 0 || n == 0 {
        return;
    }
    let one = |dst: &mut [T], s: &[T]| {
        for (j, &k) in idx.iter().enumerate() {
            let k = k as usize;
            let d = &mut dst[k * inner..(k + 1) * inner];
            for (d, &v) in d.iter_mut().zip(&s[j * inner..(j + 1) * inner]) {
                *d = d.acc(v);
            }
        }
    };
    if src.len() >= PARALLEL_THRESHOLD && outer > 1 {
        out.par_chunks_mut(n * inner).zip(src.par_chunks(m * inner)).for_each(|(d, s)| one(d, s));
    } else {
        out.chunks_mut(n * inner).zip(src.chunks(m * inner)).for_each(|(d, s)| one(d, s));
    }
}

/// `torch.gather`: for each position `p` of `shape` (the index's shape, row-major),
/// `out[p] = src[offset + sum_k p_k * strides[k] + idx[p] * dim_stride]`, where `strides` has 0
/// at the gathered dim. `idx` and `out` are contiguous with `shape`.
pub fn gather<T: Copy + Send + Sync>(
    src: &[T],
    offset: usize,
    strides: &[usize],
    dim_stride: usize,
    idx: &[i64],
    shape: &[usize],
    out: &mut [T],
) {
    let idx_strides = contiguous_strides(shape);
    let plan = Rows::new(shape, [strides, &idx_strides], [offset, 0]);
    let [ss, is] = plan.inner_strides;
    for_each_row(&plan, out, |[so, io], row| {
        for (i, d) in row.iter_mut().enumerate() {
            *d = src[so + i * ss + idx[io + i * is] as usize * dim_stride];
        }
    });
}

/// `torch.scatter_add` into a contiguous `out`: for each position `p` of `shape` (the index's
/// shape, row-major), `out[sum_k p_k * out_strides[k] + idx[p] * dim_stride] += src[...]`, where
/// `out_strides` has 0 at the scattered dim and `src` is read through its own strides. `idx`
/// is contiguous with `shape`. Runs serially: different positions may hit the same element.
#[allow(clippy::too_many_arguments)]
pub fn scatter_add<T: Accumulate>(
    out: &mut [T],
    out_strides: &[usize],
    dim_stride: usize,
    src: &[T],
    src_offset: usize,
    src_strides: &[usize],
    idx: &[i64],
    shape: &[usize],
) {
    let idx_strides = contiguous_strides(shape);
    let plan = Rows::new(shape, [out_strides, src_strides, &idx_strides], [0, src_offset, 0]);
    let [os, ss, is] = plan.inner_strides;
    for r in 0..plan.rows {
        let [oo, so, io] = plan.row_offsets(r);
        for i in 0..plan.inner {
            let o = oo + i * os + idx[io + i * is] as usize * dim_stride;
            out[o] = out[o].acc(src[so + i * ss]);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_between_strided_views() {
        // A [2, 3] source transposed into the interior of a [4, 3] buffer (rows 1..3, cols 0..2)
        let src = [1, 2, 3, 4, 5, 6]; // [2, 3]; view as [3, 2] with strides [1, 3]
        let mut dst = [0; 12]; // [4, 3]
        copy_strided(&src, 0, &[1, 3], &mut dst, 3, &[3, 1], &[3, 2]);
        assert_eq!(dst, [0, 0, 0, 1, 4, 0, 2, 5, 0, 3, 6, 0]);
    }

    #[test]
    fn index_select_and_add_are_adjoint() {
        let src: Vec<f64> = (0..12).map(|x| x as f64).collect(); // [2, 3, 2]
        let idx = [2i64, 0, 2];
        let mut out = vec![0.0; 12];
        index_select(&src, 2, 3, 2, &idx, &mut out);
        assert_eq!(out, [4., 5., 0., 1., 4., 5., 10., 11., 6., 7., 10., 11.]);
        let mut back = vec![0.0; 12];
        index_add(&mut back, 2, 3, 2, &idx, &out);
        assert_eq!(back, [0., 1., 0., 0., 8., 10., 6., 7., 0., 0., 20., 22.]);
    }

    #[test]
    fn gather_and_scatter_along_rows() {
        let src = [1, 2, 3, 4, 5, 6]; // [2, 3]
        let idx = [2i64, 0, 1, 1]; // [2, 2], gather along dim 1
        let mut out = [0; 4];
        gather(&src, 0, &[3, 0], 1, &idx, &[2, 2], &mut out);
        assert_eq!(out, [3, 1, 5, 5]);
        let mut acc = [0u8; 6];
        scatter_add(&mut acc, &[3, 0], 1, &[250u8, 1, 2, 3], 0, &[2, 1], &idx, &[2, 2]);
        assert_eq!(acc, [1, 0, 250, 0, 5, 0]);
        let mut wrap = [10u8; 1];
        scatter_add(&mut wrap, &[0], 1, &[250u8], 0, &[1], &[0], &[1]);
        assert_eq!(wrap, [4]);
    }
}
