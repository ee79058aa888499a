//! 2-D max and average pooling over NCHW inputs, PyTorch semantics with `ceil_mode=False` and
//! no dilation. Each of the N·C planes is independent, so work is split across planes.

use crate::{threads, Float};
use rayon::prelude::*;

/// Output `(OH, OW)` of a pooling window over an `h`×`w` input: `floor((H + 2P − K) / S) + 1`
/// per axis. `None` if a size, kernel or stride is zero, if padding exceeds half the kernel
/// (which PyTorch rejects, and which guarantees every window holds a real input cell), or if
/// the window does not fit the padded input.
pub fn pool2d_output_size(
    h: usize,
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<(usize, usize)> {
    let axis = |input: usize, k: usize, s: usize, p: usize| -> Option<usize> {
        if input == 0 || k == 0 || s == 0 || p > k / 2 {
            return None;
        }
        (input + 2 * p).checked_sub(k).map(|room| room / s + 1)
    };
    Some((
        axis(h, kernel[0], stride[0], padding[0])?,
        axis(w, kernel[1], stride[1], padding[1])?,
    ))
}

/// One pooling window along one axis.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// Input cells `lo..hi` the window covers (padding excluded).
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    /// Cells counted by `count_include_pad`: the window clipped to the padded input.
    padded_len: usize,
}

/// The window of every output position along one axis, as PyTorch computes them.
fn spans(out_len: usize, in_len: usize, k: usize, s: usize, p: usize) -> Vec<Span> {
    (0..out_len)
        .map(|o| {
            let start = (o * s) as isize - p as isize;
            let end = (start + k as isize).min((in_len + p) as isize);
            Span {
                lo: start.max(0) as usize,
                hi: end.min(in_len as isize) as usize,
                padded_len: (end - start) as usize,
            }
        })
        .collect()
}

/// Sizes and windows of one pooling, validated once.
pub(crate) struct Geometry {
    pub(crate) planes: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) rows: Vec<Span>,
    pub(crate) cols: Vec<Span>,
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    /// Every window lies inside the input (no padding): the fast path of max pooling.
    pub(crate) unpadded: bool,
}

impl Geometry {
    pub(crate) fn new(
        x_shape: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        let [n, c, h, w] = x_shape;
        let (oh, ow) = pool2d_output_size(h, w, kernel, stride, padding).unwrap_or_else(|| {
            panic!("pool2d: no output for input {x_shape:?}, kernel {kernel:?}, stride {stride:?}, padding {padding:?}")
        });
        Geometry {
            planes: n * c,
            h,
            w,
            oh,
            ow,
            rows: spans(oh, h, kernel[0], stride[0], padding[0]),
            cols: spans(ow, w, kernel[1], stride[1], padding[1]),
            kernel,
            stride,
            unpadded: padding == [0, 0],
        }
    }
    pub(crate) fn in_plane(&self) -> usize {
        self.h * self.w
    }
    pub(crate) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    /// Roughly one operation per window cell.
    fn work(&self) -> usize {
        let cells = |spans: &[Span]| spans.iter().map(|s| s.hi - s.lo).sum::<usize>();
        self.planes * cells(&self.rows) * cells(&self.cols)
    }
}

/// Max pooling: `x` `[N, C, H, W]` gives the contiguous output `[N, C, OH, OW]` and, for each
/// output, the index `h·W + w` of its maximum within its input plane (as `return_indices`).
/// Padding never wins (it counts as −∞); a NaN in the window wins, as in PyTorch.
///
/// # Panics
/// If `x.len()` disagrees with `x_shape`, a plane has more than `u32::MAX` cells, or the
/// window is invalid (see [`pool2d_output_size`]).
pub fn max_pool2d_forward<T: Float>(
    x: &[T],
    x_shape: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> (Vec<T>, Vec<u32>) {
    let g = Geometry::new(x_shape, kernel, stride, padding);
    assert_eq!(
        x.len(),
        g.planes * g.in_plane(),
        "max_pool2d_forward: input length vs shape {x_shape:?}"
    );
    assert!(
        u32::try_from(g.in_plane()).is_ok(),
        "max_pool2d_forward: plane of {} cells overflows u32 indices",
        g.in_plane()
    );
    let mut out = vec![T::zero(); g.planes * g.out_plane()];
    let mut idx = vec![0u32; out.len()];
    if out.is_empty() {
        return (out, idx);
    }
    let plane = |(p, (out_p, idx_p)): (usize, (&mut [T], &mut [u32]))| {
        max_plane(&g, &x[p * g.in_plane()..][..g.in_plane()], out_p, idx_p);
    };
    let op = g.out_plane();
    if threads::worth_parallelising(g.work()) {
        // One run of planes per thread (as `threads::for_each_chunk_mut`, but over two outputs).
        let per_thread = g.planes.div_ceil(threads::num_threads());
        out.par_chunks_mut(op)
            .zip(idx.par_chunks_mut(op))
            .enumerate()
            .with_min_len(per_thread)
            .for_each(plane);
    } else {
        out.chunks_mut(op)
            .zip(idx.chunks_mut(op))
            .enumerate()
            .for_each(plane);
    }
    (out, idx)
}

fn max_plane<T: Float>(g: &Geometry, x: &[T], out: &mut [T], idx: &mut [u32]) {
    if g.unpadded {
        return max_plane_unpadded(g, x, out, idx);
    }
    let w = g.w;
    let cells = g
        .rows
        .iter()
        .flat_map(|r| g.cols.iter().map(move |c| (r, c)));
    for ((r, c), (out, idx)) in cells.zip(out.iter_mut().zip(idx.iter_mut())) {
        // PyTorch starts from −∞ at the window's first real cell, and replaces on `>` or NaN
        // (so the last NaN wins).
        let mut best = T::neg_infinity();
        let mut best_i = r.lo * w + c.lo;
        for iy in r.lo..r.hi {
            let row = &x[iy * w..][c.lo..c.hi];
            for (ix, &v) in (c.lo..).zip(row) {
                if v > best || v.is_nan() {
                    best = v;
                    best_i = iy * w + ix;
                }
            }
        }
        *out = best;
        *idx = best_i as u32;
    }
}

/// [`max_plane`] when every window is whole. A row of windows advances one window cell at a
/// time, so the compare-and-select chains of neighbouring windows are independent work, and
/// the index update is arithmetic rather than a branch: on activations the comparison is a
/// coin flip, and window-at-a-time code with mispredicted branches was several times slower.
/// Cells are visited in the same order as [`max_plane`] (row by row), so ties and NaNs resolve
/// the same way.
fn max_plane_unpadded<T: Float>(g: &Geometry, x: &[T], out: &mut [T], idx: &mut [u32]) {
    let (w, [kh, kw], [sh, sw]) = (g.w, g.kernel, g.stride);
    if [kh, kw, sh, sw] == [2, 2, 2, 2] {
        for (oy, (out_row, idx_row)) in out.chunks_exact_mut(g.ow).zip(idx.chunks_exact_mut(g.ow)).enumerate() {
            let top = 2 * oy * w;
            max_row_2x2(&x[top..][..2 * g.ow], &x[top + w..][..2 * g.ow], top as u32, (top + w) as u32, out_row, idx_row);
        }
        return;
    }
    for (oy, (out_row, idx_row)) in out.chunks_exact_mut(g.ow).zip(idx.chunks_exact_mut(g.ow)).enumerate() {
        let top = oy * sh * w;
        for (ox, (o, i)) in out_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
            // Starting from the first cell equals PyTorch's start from −∞ replaced by it.
            *o = x[top + ox * sw];
            *i = (top + ox * sw) as u32;
        }
        for ky in 0..kh {
            for kx in 0..kw {
                if ky == 0 && kx == 0 {
                    continue;
                }
                let first = top + ky * w + kx;
                let cells = &x[first..first + (g.ow - 1) * sw + 1];
                for (ox, (o, i)) in out_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
                    let v = cells[ox * sw];
                    let take = (v > *o) | v.is_nan();
                    *o = if take { v } else { *o };
                    let mask = (take as u32).wrapping_neg();
                    *i ^= (*i ^ (first + ox * sw) as u32) & mask;
                }
            }
        }
    }
}

/// One row of 2×2, stride-2 windows (the usual CNN pooling): rows `r0` and `r1` of the input
/// (starting at flat indices `i0` and `i1`), cells visited in [`max_plane`]'s order.
fn max_row_2x2<T: Float>(r0: &[T], r1: &[T], i0: u32, i1: u32, out: &mut [T], idx: &mut [u32]) {
    let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
    for (ox, ((o, i), (top, bottom))) in out.iter_mut().zip(idx.iter_mut()).zip(pairs).enumerate() {
        let x2 = 2 * ox as u32;
        let mut best = top[0];
        let mut best_i = i0 + x2;
        for (v, at) in [(top[1], i0 + x2 + 1), (bottom[0], i1 + x2), (bottom[1], i1 + x2 + 1)] {
            let take = (v > best) | v.is_nan();
            best = if take { v } else { best };
            best_i = if take { at } else { best_i };
        }
        *o = best;
        *i = best_i;
    }
}

/// Gradient of max pooling: routes each `grad_out` value (`[N, C, OH, OW]` with
/// `out_hw = [OH, OW]`) to the input cell `indices` names, giving `[N, C, H, W]`.
///
/// # Panics
/// If the lengths disagree with the shapes or an index lies outside its plane.
pub fn max_pool2d_backward<T: Float>(
    grad_out: &[T],
    indices: &[u32],
    x_shape: [usize; 4],
    out_hw: [usize; 2],
) -> Vec<T> {
    let [n, c, h, w] = x_shape;
    let (in_plane, out_plane) = (h * w, out_hw[0] * out_hw[1]);
    assert_eq!(
        grad_out.len(),
        n * c * out_plane,
        "max_pool2d_backward: grad_out length vs [{n}, {c}, {out_hw:?}]"
    );
    assert_eq!(
        indices.len(),
        grad_out.len(),
        "max_pool2d_backward: indices length"
    );
    let mut grad_x = vec![T::zero(); n * c * in_plane];
    if out_plane == 0 {
        return grad_x;
    }
    threads::for_each_chunk_mut(&mut grad_x, in_plane, grad_out.len(), |p, gx| {
        let go = &grad_out[p * out_plane..][..out_plane];
        let ix = &indices[p * out_plane..][..out_plane];
        for (&g, &i) in go.iter().zip(ix) {
            gx[i as usize] = gx[i as usize] + g;
        }
    });
    grad_x
}

/// Average pooling: `x` `[N, C, H, W]` gives the contiguous `[N, C, OH, OW]`. Each window sum
/// is divided by the window's size clipped to the padded input when `count_include_pad`, else
/// by the number of real input cells in it (PyTorch's rules). Sums accumulate in f64, as
/// PyTorch's CPU kernels accumulate in a wider type.
///
/// # Panics
/// If `x.len()` disagrees with `x_shape` or the window is invalid (see
/// [`pool2d_output_size`]).
pub fn avg_pool2d_forward<T: Float>(
    x: &[T],
    x_shape: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
) -> Vec<T> {
    let g = Geometry::new(x_shape, kernel, stride, padding);
    assert_eq!(
        x.len(),
        g.planes * g.in_plane(),
        "avg_pool2d_forward: input length vs shape {x_shape:?}"
    );
    let divisors = divisors(&g, count_include_pad);
    let mut out = vec![T::zero(); g.planes * g.out_plane()];
    threads::for_each_chunk_mut(&mut out, g.out_plane(), g.work(), |p, out_p| {
        let x_p = &x[p * g.in_plane()..][..g.in_plane()];
        let cells = g
            .rows
            .iter()
            .flat_map(|r| g.cols.iter().map(move |c| (r, c)));
        for (((r, c), o), &d) in cells.zip(out_p.iter_mut()).zip(&divisors) {
            let sum: f64 = (r.lo..r.hi)
                .flat_map(|iy| &x_p[iy * g.w..][c.lo..c.hi])
                .map(|&v| v.to_f64())
                .sum();
            *o = T::from_f64(sum / d);
        }
    });
    out
}

/// Gradient of average pooling: spreads each `grad_out` value (`[N, C, OH, OW]`) evenly over
/// its window's real input cells, divided as in [`avg_pool2d_forward`]; gives `[N, C, H, W]`.
///
/// # Panics
/// As [`avg_pool2d_forward`], or if `grad_out` has the wrong length.
pub fn avg_pool2d_backward<T: Float>(
    grad_out: &[T],
    x_shape: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
) -> Vec<T> {
    let g = Geometry::new(x_shape, kernel, stride, padding);
    assert_eq!(
        grad_out.len(),
        g.planes * g.out_plane(),
        "avg_pool2d_backward: grad_out length"
    );
    let divisors = divisors(&g, count_include_pad);
    let mut grad_x = vec![T::zero(); g.planes * g.in_plane()];
    threads::for_each_chunk_mut(&mut grad_x, g.in_plane(), g.work(), |p, gx| {
        let go = &grad_out[p * g.out_plane()..][..g.out_plane()];
        let cells = g
            .rows
            .iter()
            .flat_map(|r| g.cols.iter().map(move |c| (r, c)));
        for (((r, c), &go), &d) in cells.zip(go).zip(&divisors) {
            let share = T::from_f64(go.to_f64() / d);
            for iy in r.lo..r.hi {
                gx[iy * g.w..][c.lo..c.hi]
                    .iter_mut()
                    .for_each(|v| *v = *v + share);
            }
        }
    });
    grad_x
}

/// The divisor of every output position of a plane (the same for all planes).
fn divisors(g: &Geometry, count_include_pad: bool) -> Vec<f64> {
    g.rows
        .iter()
        .flat_map(|r| {
            g.cols.iter().map(move |c| {
                let cells = if count_include_pad {
                    r.padded_len * c.padded_len
                } else {
                    (r.hi - r.lo) * (c.hi - c.lo)
                };
                cells as f64
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::test_support::{assert_close, Rng};

    struct Case {
        x_shape: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    }

    /// Calls `f(plane, out_index_in_plane, [iy, ix] or None for padding)` for every cell of every
    /// window, straight from the definition: window `o` starts at `o·S − P` and is `K` long.
    fn for_each_window_cell(
        case: &Case,
        oh: usize,
        ow: usize,
        mut f: impl FnMut(usize, usize, Option<[usize; 2]>),
    ) {
        let [n, c, h, w] = case.x_shape;
        for p in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..case.kernel[0] {
                        for kx in 0..case.kernel[1] {
                            let iy = (oy * case.stride[0] + ky) as isize - case.padding[0] as isize;
                            let ix = (ox * case.stride[1] + kx) as isize - case.padding[1] as isize;
                            let inside =
                                (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                            f(
                                p,
                                oy * ow + ox,
                                inside.then_some([iy as usize, ix as usize]),
                            );
                        }
                    }
                }
            }
        }
    }

    fn random_case(rng: &mut Rng) -> Option<Case> {
        let kernel = [1 + rng.below(4), 1 + rng.below(4)];
        let case = Case {
            x_shape: [
                1 + rng.below(3),
                1 + rng.below(3),
                1 + rng.below(9),
                1 + rng.below(9),
            ],
            kernel,
            stride: [1 + rng.below(3), 1 + rng.below(3)],
            padding: [rng.below(kernel[0] / 2 + 1), rng.below(kernel[1] / 2 + 1)],
        };
        let [_, _, h, w] = case.x_shape;
        pool2d_output_size(h, w, case.kernel, case.stride, case.padding).map(|_| case)
    }

    fn check_case<T: Float>(rng: &mut Rng, case: &Case, tol: f64) {
        let Case {
            x_shape,
            kernel,
            stride,
            padding,
        } = *case;
        let [n, c, h, w] = x_shape;
        let (oh, ow) = pool2d_output_size(h, w, kernel, stride, padding).unwrap();
        let out_len = n * c * oh * ow;
        let x: Vec<T> = rng.vec(n * c * h * w);
        let go: Vec<T> = rng.vec(out_len);
        let what = format!("x {x_shape:?} k {kernel:?} s {stride:?} p {padding:?}");

        // Max: the reference keeps the first maximum; random data has no ties.
        let mut best = vec![(f64::NEG_INFINITY, 0usize); out_len];
        for_each_window_cell(case, oh, ow, |p, o, cell| {
            if let Some([iy, ix]) = cell {
                let v = x[p * h * w + iy * w + ix].to_f64();
                if v > best[p * oh * ow + o].0 {
                    best[p * oh * ow + o] = (v, iy * w + ix);
                }
            }
        });
        let (out, idx) = max_pool2d_forward(&x, x_shape, kernel, stride, padding);
        assert_close(
            &out,
            &best.iter().map(|b| b.0).collect::<Vec<_>>(),
            0.0,
            &format!("max fwd {what}"),
        );
        assert_eq!(
            idx,
            best.iter().map(|b| b.1 as u32).collect::<Vec<_>>(),
            "max indices {what}"
        );
        let mut want_gx = vec![0.0; x.len()];
        for (i, b) in best.iter().enumerate() {
            want_gx[(i / (oh * ow)) * h * w + b.1] += go[i].to_f64();
        }
        let gx = max_pool2d_backward(&go, &idx, x_shape, [oh, ow]);
        assert_close(&gx, &want_gx, tol, &format!("max bwd {what}"));

        for include_pad in [false, true] {
            // The divisor counts window cells inside the padded input (include_pad) or inside
            // the input proper.
            let mut sum = vec![0.0; out_len];
            let mut count = vec![0.0; out_len];
            for_each_window_cell(case, oh, ow, |p, o, cell| {
                let i = p * oh * ow + o;
                match cell {
                    Some([iy, ix]) => {
                        sum[i] += x[p * h * w + iy * w + ix].to_f64();
                        count[i] += 1.0;
                    }
                    None => count[i] += if include_pad { 1.0 } else { 0.0 },
                }
            });
            // With ceil_mode=False and padding ≤ K/2 no window reaches past the padded input,
            // so the "clip to the padded input" rule never shortens one here.
            let want: Vec<f64> = sum.iter().zip(&count).map(|(s, c)| s / c).collect();
            let out = avg_pool2d_forward(&x, x_shape, kernel, stride, padding, include_pad);
            assert_close(
                &out,
                &want,
                tol,
                &format!("avg fwd include_pad={include_pad} {what}"),
            );

            let mut want_gx = vec![0.0; x.len()];
            for_each_window_cell(case, oh, ow, |p, o, cell| {
                if let Some([iy, ix]) = cell {
                    let i = p * oh * ow + o;
                    want_gx[p * h * w + iy * w + ix] += go[i].to_f64() / count[i];
                }
            });
            let gx = avg_pool2d_backward(&go, x_shape, kernel, stride, padding, include_pad);
            assert_close(
                &gx,
                &want_gx,
                tol,
                &format!("avg bwd include_pad={include_pad} {what}"),
            );
        }
    }

    fn check_random<T: Float>(seed: u64, tol: f64) {
        let mut rng = Rng::new(seed);
        let mut checked = 0;
        while checked < 200 {
            if let Some(case) = random_case(&mut rng) {
                check_case::<T>(&mut rng, &case, tol);
                checked += 1;
            }
        }
    }

    #[test]
    fn pool_random_f32() {
        check_random::<f32>(31, 1e-6);
    }

    #[test]
    fn pool_random_f64() {
        check_random::<f64>(32, 1e-13);
    }

    #[test]
    fn pool_large_runs_threaded() {
        let mut rng = Rng::new(33);
        let case = Case {
            x_shape: [4, 16, 32, 32],
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        check_case::<f32>(&mut rng, &case, 1e-6);
    }

    #[test]
    fn max_pool_nan_and_padding() {
        // 1×1×2×3 input, 2×2 kernel, stride 1, padding 1: the corner window sees one real cell.
        let x = [-5.0f32, 1.0, f32::NAN, 2.0, -1.0, 0.5];
        let (out, idx) = max_pool2d_forward(&x, [1, 1, 2, 3], [2, 2], [1, 1], [1, 1]);
        assert_eq!((out[0], idx[0]), (-5.0, 0)); // padding never wins, even against -5
                                                 // Windows containing the NaN at (0, 2) report it.
        assert!(out[2].is_nan() && idx[2] == 2);
        assert!(out[3].is_nan() && idx[3] == 2);
        assert_eq!((out[5], idx[5]), (2.0, 3));
    }

    #[test]
    fn unpadded_fast_path_matches_the_general_one() {
        // Ties (small integers), NaNs and −∞ included; windows overlapping and not.
        let (h, w) = (9, 11);
        let x: Vec<f32> = (0..2 * h * w)
            .map(|i| match (i * 7919) % 23 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                k => (k % 5) as f32 - 2.0,
            })
            .collect();
        for (kernel, stride) in [([2, 2], [2, 2]), ([2, 2], [1, 1]), ([3, 3], [1, 1]), ([3, 3], [2, 2]), ([2, 3], [1, 2]), ([1, 1], [1, 1])] {
            let mut g = Geometry::new([1, 2, h, w], kernel, stride, [0, 0]);
            assert!(g.unpadded);
            let n = g.out_plane();
            let run = |g: &Geometry| {
                let (mut out, mut idx) = (vec![0.0f32; 2 * n], vec![0u32; 2 * n]);
                for p in 0..2 {
                    max_plane(g, &x[p * h * w..][..h * w], &mut out[p * n..][..n], &mut idx[p * n..][..n]);
                }
                (out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), idx)
            };
            let fast = run(&g);
            g.unpadded = false;
            assert_eq!(fast, run(&g), "kernel {kernel:?} stride {stride:?}");
        }
    }

    #[test]
    fn output_size_rules() {
        assert_eq!(
            pool2d_output_size(7, 8, [3, 2], [2, 2], [1, 0]),
            Some((4, 4))
        );
        assert_eq!(pool2d_output_size(7, 8, [3, 2], [2, 2], [2, 0]), None); // padding > K/2
        assert_eq!(pool2d_output_size(1, 8, [3, 2], [1, 1], [0, 0]), None); // window too big
        assert_eq!(pool2d_output_size(7, 8, [3, 2], [0, 2], [0, 0]), None);
    }
}
