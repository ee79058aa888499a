//! Pooling over explicit windows: each output row (column) pools a list of input rows
//! (columns), so one kernel covers `ceil_mode`, dilation, `divisor_override` and adaptive
//! pooling. The fixed-window fast paths of plain pooling are in [`crate::pool`].

use crate::{threads, Float};

/// The input cells of every window along one axis, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AxisWindows(pub Vec<Vec<usize>>);

impl AxisWindows {
    /// Windows of `kernel` cells `dilation` apart, every `stride` cells, starting `padding`
    /// cells before the input; cells outside the input are left out (PyTorch's max pooling).
    pub fn strided(out_len: usize, in_len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> AxisWindows {
        AxisWindows(
            (0..out_len)
                .map(|o| {
                    let start = (o * stride) as isize - padding as isize;
                    (0..kernel).map(|k| start + (k * dilation) as isize).filter(|&i| i >= 0 && (i as usize) < in_len).map(|i| i as usize).collect()
                })
                .collect(),
        )
    }

    /// PyTorch's adaptive windows: `floor(o * in / out) .. ceil((o + 1) * in / out)`.
    pub fn adaptive(out_len: usize, in_len: usize) -> AxisWindows {
        AxisWindows(
            (0..out_len)
                .map(|o| {
                    let start = o * in_len / out_len;
                    let end = ((o + 1) * in_len).div_ceil(out_len);
                    (start..end).collect()
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Max pooling of `planes` planes of `h x w` over `rows x cols` windows: values and, per output,
/// the index `y * w + x` of the maximum in its plane. PyTorch's rule: start from −∞, replace on
/// `>` or NaN; an empty window gives −∞ at index 0.
pub fn max_pool_windows<T: Float>(x: &[T], planes: usize, hw: [usize; 2], rows: &AxisWindows, cols: &AxisWindows) -> (Vec<T>, Vec<u32>) {
    let (in_plane, out_plane) = (hw[0] * hw[1], rows.len() * cols.len());
    let mut best = vec![(T::zero(), 0u32); planes * out_plane];
    if out_plane > 0 {
        threads::for_each_chunk_mut(&mut best, out_plane, planes * in_plane.max(out_plane), |p, out_p| {
            let xp = &x[p * in_plane..][..in_plane];
            for (k, o) in out_p.iter_mut().enumerate() {
                let (r, c) = (&rows.0[k / cols.len()], &cols.0[k % cols.len()]);
                let mut v_best = T::neg_infinity();
                let mut i_best = r.first().zip(c.first()).map_or(0, |(&y, &x)| y * hw[1] + x);
                for &iy in r {
                    for &ix in c {
                        let v = xp[iy * hw[1] + ix];
                        if v > v_best || v.is_nan() {
                            v_best = v;
                            i_best = iy * hw[1] + ix;
                        }
                    }
                }
                *o = (v_best, i_best as u32);
            }
        });
    }
    best.into_iter().unzip()
}

/// Average pooling over windows, each output divided by its entry of `divisors` (one per
/// output cell of a plane). Sums accumulate in f64.
pub fn avg_pool_windows<T: Float>(x: &[T], planes: usize, hw: [usize; 2], rows: &AxisWindows, cols: &AxisWindows, divisors: &[f64]) -> Vec<T> {
    let (in_plane, out_plane) = (hw[0] * hw[1], rows.len() * cols.len());
    let mut out = vec![T::zero(); planes * out_plane];
    if out_plane == 0 {
        return out;
    }
    threads::for_each_chunk_mut(&mut out, out_plane, planes * in_plane.max(out_plane), |p, out_p| {
        let xp = &x[p * in_plane..][..in_plane];
        for (k, o) in out_p.iter_mut().enumerate() {
            let (r, c) = (&rows.0[k / cols.len()], &cols.0[k % cols.len()]);
            let sum: f64 = r.iter().flat_map(|&iy| c.iter().map(move |&ix| xp[iy * hw[1] + ix].to_f64())).sum();
            *o = T::from_f64(sum / divisors[k]);
        }
    });
    out
}

/// The adjoint of [`avg_pool_windows`]: each output gradient divided by its divisor and added
/// to every cell of its window.
pub fn avg_pool_windows_backward<T: Float>(g: &[T], planes: usize, hw: [usize; 2], rows: &AxisWindows, cols: &AxisWindows, divisors: &[f64]) -> Vec<T> {
    let (in_plane, out_plane) = (hw[0] * hw[1], rows.len() * cols.len());
    let mut gx = vec![T::zero(); planes * in_plane];
    if out_plane == 0 || in_plane == 0 {
        return gx;
    }
    threads::for_each_chunk_mut(&mut gx, in_plane, planes * in_plane.max(out_plane), |p, gp| {
        let go = &g[p * out_plane..][..out_plane];
        for (k, &v) in go.iter().enumerate() {
            let (r, c) = (&rows.0[k / cols.len()], &cols.0[k % cols.len()]);
            let share = T::from_f64(v.to_f64() / divisors[k]);
            for &iy in r {
                for &ix in c {
                    let cell = &mut gp[iy * hw[1] + ix];
                    *cell = *cell + share;
                }
            }
        }
    });
    gx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_windows_overlap_like_pytorch() {
        assert_eq!(AxisWindows::adaptive(3, 5).0, vec![vec![0, 1], vec![1, 2, 3], vec![3, 4]]);
        assert_eq!(AxisWindows::strided(2, 5, 2, 2, 0, 2).0, vec![vec![0, 2], vec![2, 4]]);
    }

    #[test]
    fn max_over_dilated_windows() {
        let x = [1.0f32, 5.0, 2.0, 4.0, 3.0]; // one plane 1 x 5
        let rows = AxisWindows(vec![vec![0]]);
        let cols = AxisWindows::strided(2, 5, 2, 2, 0, 2);
        let (v, i) = max_pool_windows(&x, 1, [1, 5], &rows, &cols);
        assert_eq!((v, i), (vec![2.0, 3.0], vec![2, 4]));
    }
}
