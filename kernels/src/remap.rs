//! Separable index maps: each output index along dim `d` reads input index `maps[d][i]`. Flip,
//! roll, repeat, tile, `repeat_interleave`, reflect/replicate/circular padding and nearest
//! interpolation are all such maps; the gradient of one is the scatter-add through the same
//! maps ([`scatter_add_axes`]).

use rayon::prelude::*;

use crate::index::Accumulate;
use crate::strided::PARALLEL_THRESHOLD;

/// Storage offset of the start of output row `row` (every index but the last).
#[inline]
fn row_base(mut row: usize, offset: usize, strides: &[usize], maps: &[Vec<usize>]) -> usize {
    let mut base = offset;
    for d in (0..maps.len().saturating_sub(1)).rev() {
        let n = maps[d].len();
        base += maps[d][row % n] * strides[d];
        row /= n;
    }
    base
}

/// `out[i_0, .., i_k] = src[offset + sum_d maps[d][i_d] * strides[d]]` into a contiguous `out`
/// of shape `[maps[0].len(), .., maps[k].len()]`. Every map entry must index its input dim.
pub fn gather_axes<T: Copy + Send + Sync>(src: &[T], offset: usize, strides: &[usize], maps: &[Vec<usize>], out: &mut [T]) {
    let Some(last) = maps.last() else {
        if let Some(o) = out.first_mut() {
            *o = src[offset];
        }
        return;
    };
    let inner = last.len();
    if inner == 0 || out.is_empty() {
        return;
    }
    let s = strides[maps.len() - 1];
    let fill = |r: usize, row: &mut [T]| {
        let base = row_base(r, offset, strides, maps);
        for (o, &i) in row.iter_mut().zip(last) {
            *o = src[base + i * s];
        }
    };
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(inner).enumerate().for_each(|(r, row)| fill(r, row));
    } else {
        out.chunks_mut(inner).enumerate().for_each(|(r, row)| fill(r, row));
    }
}

/// The adjoint of [`gather_axes`]: `dst[sum_d maps[d][i_d] * dst_strides[d]] += g[i]` for a
/// contiguous `g` of the maps' shape. Serial, since different positions may hit one element.
pub fn scatter_add_axes<T: Accumulate>(g: &[T], maps: &[Vec<usize>], dst: &mut [T], dst_strides: &[usize]) {
    let Some(last) = maps.last() else {
        if let (Some(d), Some(&v)) = (dst.first_mut(), g.first()) {
            *d = d.acc(v);
        }
        return;
    };
    let inner = last.len();
    if inner == 0 {
        return;
    }
    let s = dst_strides[maps.len() - 1];
    for (r, row) in g.chunks(inner).enumerate() {
        let base = row_base(r, 0, dst_strides, maps);
        for (&v, &i) in row.iter().zip(last) {
            let k = base + i * s;
            dst[k] = dst[k].acc(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_repeats_a_matrix() {
        let src = [1, 2, 3, 4, 5, 6]; // [2, 3]
        let mut out = [0; 6];
        gather_axes(&src, 0, &[3, 1], &[vec![1, 0], vec![0, 1, 2]], &mut out);
        assert_eq!(out, [4, 5, 6, 1, 2, 3]);
        let mut out = [0; 12];
        gather_axes(&src, 0, &[3, 1], &[vec![0, 1], vec![0, 1, 2, 0, 1, 2]], &mut out);
        assert_eq!(out, [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6]);
    }

    #[test]
    fn scatter_is_the_adjoint() {
        let g = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]; // [1, 6] from a [1, 3] repeated twice
        let mut dst = [0.0; 3];
        scatter_add_axes(&g, &[vec![0], vec![0, 1, 2, 0, 1, 2]], &mut dst, &[3, 1]);
        assert_eq!(dst, [2.0, 2.0, 2.0]);
    }
}
