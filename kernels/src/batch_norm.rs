//! Batch normalisation in training mode over `[N, C, S]` (`S`: the spatial dims flattened),
//! forward and backward, each in one sweep over the channels.
//!
//! Composed of eager ops, the forward took seven passes over the activation (mean, subtract,
//! square, mean, scale, weight, bias) and five allocations of it, the backward ten: in a ResNet
//! basic block's training step on the tape (64 channels, 56×56, batch 8) they and their
//! zero-fills were about a quarter of the time. Here one channel's `N·S` values (100 KB in
//! that block) are read from memory once and revisited from cache: the forward takes the mean,
//! then the variance around it (two passes, as the eager path did, so no cancellation), then
//! writes `xhat` and `y`; the backward sums `g` and `g·xhat`, then writes `dx`.
//!
//! Sums are taken in f64 over [`LANES`] independent accumulators, which LLVM vectorises (a single
//! running sum is a chain of dependent adds).

use crate::{threads, Float};
use rayon::prelude::*;

/// Independent partial sums per reduction.
const LANES: usize = 16;

/// `Σ f(v[i])` in f64, over [`LANES`] accumulators.
#[inline]
fn lane_sum<T: Float>(v: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f(x.to_f64());
        }
    }
    rest.iter().fold(acc.iter().sum::<f64>(), |s, &x| s + f(x.to_f64()))
}

/// `Σ f(a[i], b[i])` in f64, over [`LANES`] accumulators.
#[inline]
fn lane_sum2<T: Float>(a: &[T], b: &[T], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += f(x[i].to_f64(), y[i].to_f64());
        }
    }
    ra.iter().zip(rb).fold(acc.iter().sum::<f64>(), |s, (&x, &y)| s + f(x.to_f64(), y.to_f64()))
}

/// A pointer that threads writing disjoint channels may share.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used to write disjoint index sets (one set of channels per thread).
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The `len` elements from `start`.
    ///
    /// # Safety
    /// The range must lie in the buffer and no other thread may touch it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: the caller vouches for bounds and exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Runs `f(channel)` for every channel, split into one contiguous run of channels per thread of
/// the kernel budget when `work` is worth it.
fn for_each_channel(c: usize, work: usize, f: impl Fn(usize) + Sync + Send) {
    let ranges = threads::split_range(c, work);
    if ranges.len() <= 1 {
        (0..c).for_each(f);
    } else {
        ranges.into_par_iter().for_each(|r| r.for_each(&f));
    }
}

/// What the training-mode forward produces.
pub struct BatchNormForward<T> {
    /// `xhat·weight + bias`, `[N, C, S]`.
    pub y: Vec<T>,
    /// `(x - mean)·rstd`, `[N, C, S]`.
    pub xhat: Vec<T>,
    /// Per channel: the batch mean, the biased variance and `1/sqrt(var + eps)`.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub rstd: Vec<f64>,
}

/// Training-mode batch norm of `x` (`[N, C, S]`, contiguous) with per-channel `weight` and
/// `bias`, normalising with the batch's statistics.
///
/// # Panics
/// If the lengths disagree with the shape.
pub fn batch_norm_train_forward<T: Float>(x: &[T], [n, c, s]: [usize; 3], weight: &[T], bias: &[T], eps: f64) -> BatchNormForward<T> {
    let len = n * c * s;
    assert_eq!(x.len(), len, "batch_norm: input length vs shape [{n}, {c}, {s}]");
    assert!(weight.len() == c && bias.len() == c, "batch_norm: weight and bias need {c} values");
    let count = (n * s) as f64;
    let (mut y, mut xhat) = (Vec::<T>::with_capacity(len), Vec::<T>::with_capacity(len));
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    let (yp, xp) = (Shared(y.as_mut_ptr()), Shared(xhat.as_mut_ptr()));
    let (mp, vp) = (Shared(mean.as_mut_ptr()), Shared(var.as_mut_ptr()));
    for_each_channel(c, len, |ch| {
        let plane = |i: usize| &x[(i * c + ch) * s..][..s];
        let m = (0..n).map(|i| lane_sum(plane(i), |v| v)).sum::<f64>() / count;
        let v = (0..n).map(|i| lane_sum(plane(i), |v| (v - m) * (v - m))).sum::<f64>() / count;
        let (m_t, r_t) = (T::from_f64(m), T::from_f64(1.0 / (v + eps).sqrt()));
        let (w, b) = (weight[ch], bias[ch]);
        for i in 0..n {
            let start = (i * c + ch) * s;
            // SAFETY: channel `ch`'s planes belong to this call alone, and lie in `0..len`.
            let (yo, xo) = unsafe { (yp.slice(start, s), xp.slice(start, s)) };
            for ((yo, xo), &xv) in yo.iter_mut().zip(xo.iter_mut()).zip(plane(i)) {
                let h = (xv - m_t) * r_t;
                *xo = h;
                *yo = h * w + b;
            }
        }
        // SAFETY: element `ch` of the statistics is written by this call alone.
        unsafe {
            mp.slice(ch, 1)[0] = m;
            vp.slice(ch, 1)[0] = v;
        }
    });
    // SAFETY: every channel wrote all of its `n` planes, which together cover `0..len`.
    unsafe {
        y.set_len(len);
        xhat.set_len(len);
    }
    let rstd = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
    BatchNormForward { y, xhat, mean, var, rstd }
}

/// What the training-mode backward produces: the input gradient `[N, C, S]` and the weight's
/// and bias's (`Σ g·xhat` and `Σ g` per channel).
pub struct BatchNormBackward<T> {
    pub dx: Vec<T>,
    pub dweight: Vec<T>,
    pub dbias: Vec<T>,
}

/// The gradients of [`batch_norm_train_forward`] given `g` (the gradient of `y`), the saved
/// `xhat`, the per-channel `weight` and `rstd`:
/// `dx = weight·rstd·(g - mean(g) - xhat·mean(g·xhat))`, means over the channel's `N·S` values.
///
/// # Panics
/// If the lengths disagree with the shape.
pub fn batch_norm_train_backward<T: Float>(g: &[T], xhat: &[T], [n, c, s]: [usize; 3], weight: &[T], rstd: &[T]) -> BatchNormBackward<T> {
    let len = n * c * s;
    assert!(g.len() == len && xhat.len() == len, "batch_norm backward: gradient and xhat need {len} values");
    assert!(weight.len() == c && rstd.len() == c, "batch_norm backward: weight and rstd need {c} values");
    let count = (n * s) as f64;
    let mut dx = Vec::<T>::with_capacity(len);
    let (mut dweight, mut dbias) = (vec![T::zero(); c], vec![T::zero(); c]);
    let (dxp, dwp, dbp) = (Shared(dx.as_mut_ptr()), Shared(dweight.as_mut_ptr()), Shared(dbias.as_mut_ptr()));
    for_each_channel(c, len, |ch| {
        let at = |i: usize| (i * c + ch) * s;
        let sum_g = (0..n).map(|i| lane_sum(&g[at(i)..][..s], |v| v)).sum::<f64>();
        let sum_gx = (0..n).map(|i| lane_sum2(&g[at(i)..][..s], &xhat[at(i)..][..s], |a, b| a * b)).sum::<f64>();
        let (mg, mgx) = (T::from_f64(sum_g / count), T::from_f64(sum_gx / count));
        let k = weight[ch] * rstd[ch];
        for i in 0..n {
            // SAFETY: channel `ch`'s planes belong to this call alone, and lie in `0..len`.
            let out = unsafe { dxp.slice(at(i), s) };
            for ((o, &gv), &h) in out.iter_mut().zip(&g[at(i)..][..s]).zip(&xhat[at(i)..][..s]) {
                *o = (gv - mg - h * mgx) * k;
            }
        }
        // SAFETY: element `ch` of the parameter gradients is written by this call alone.
        unsafe {
            dwp.slice(ch, 1)[0] = T::from_f64(sum_gx);
            dbp.slice(ch, 1)[0] = T::from_f64(sum_g);
        }
    });
    // SAFETY: every channel wrote all of its `n` planes, which together cover `0..len`.
    unsafe { dx.set_len(len) };
    BatchNormBackward { dx, dweight, dbias }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::test_support::Rng;

    /// The textbook formulas in f64, one value at a time.
    fn reference(x: &[f64], [n, c, s]: [usize; 3], w: &[f64], b: &[f64], g: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let idx = |i: usize, ch: usize, j: usize| (i * c + ch) * s + j;
        let count = (n * s) as f64;
        let (mut y, mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let vals = || (0..n).flat_map(move |i| (0..s).map(move |j| idx(i, ch, j)));
            let m = vals().map(|k| x[k]).sum::<f64>() / count;
            let v = vals().map(|k| (x[k] - m).powi(2)).sum::<f64>() / count;
            let r = 1.0 / (v + eps).sqrt();
            db[ch] = vals().map(|k| g[k]).sum();
            dw[ch] = vals().map(|k| g[k] * (x[k] - m) * r).sum();
            for k in vals() {
                let h = (x[k] - m) * r;
                y[k] = h * w[ch] + b[ch];
                dx[k] = w[ch] * r * (g[k] - db[ch] / count - h * dw[ch] / count);
            }
        }
        (y, dx, dw, db)
    }

    fn check<T: Float>(shape: [usize; 3], tol: f64) {
        let mut rng = Rng::new(31);
        let len = shape.iter().product();
        let x: Vec<T> = rng.vec(len);
        // An offset mean, so that a one-pass variance would lose digits.
        let x: Vec<T> = x.iter().map(|&v| v + T::from_f64(3.0)).collect();
        let (w, b, g): (Vec<T>, Vec<T>, Vec<T>) = (rng.vec(shape[1]), rng.vec(shape[1]), rng.vec(len));
        fn f64s<T: Float>(v: &[T]) -> Vec<f64> {
            v.iter().map(|&x| Float::to_f64(x)).collect()
        }
        let (want_y, want_dx, want_dw, want_db) = reference(&f64s(&x), shape, &f64s(&w), &f64s(&b), &f64s(&g), 1e-5);
        let fwd = batch_norm_train_forward(&x, shape, &w, &b, 1e-5);
        let rstd: Vec<T> = fwd.rstd.iter().map(|&r| T::from_f64(r)).collect();
        let bwd = batch_norm_train_backward(&g, &fwd.xhat, shape, &w, &rstd);
        let close = |got: &[T], want: &[f64], what: &str| {
            assert_eq!(got.len(), want.len(), "{what} length");
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!((Float::to_f64(*a) - b).abs() <= tol * (1.0 + b.abs()), "{what} {shape:?} [{i}]: {a:?} vs {b}");
            }
        };
        close(&fwd.y, &want_y, "y");
        close(&bwd.dx, &want_dx, "dx");
        close(&bwd.dweight, &want_dw, "dweight");
        close(&bwd.dbias, &want_db, "dbias");
    }

    #[test]
    fn matches_the_formulas() {
        // Odd spatial sizes leave a remainder after the 16-lane sums; the large shape goes
        // through the per-thread channel split.
        for shape in [[2, 3, 5], [3, 4, 17], [1, 2, 33], [8, 16, 64 * 64]] {
            check::<f64>(shape, 1e-12);
            check::<f32>(shape, 2e-4);
        }
    }
}
