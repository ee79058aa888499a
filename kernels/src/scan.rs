//! Scans (cumulative sums, products, log-sum-exps) and sorting along one axis.
//!
//! Inputs are contiguous `[outer, len, inner]` arrays; the scanned or sorted axis is the middle
//! one. Work is split across the `outer` blocks when large.

use rayon::prelude::*;

use crate::strided::PARALLEL_THRESHOLD;

/// Runs `f(block_in, block_out)` over the `[len, inner]` blocks, in parallel when large.
fn for_blocks<T: Sync, U: Send>(x: &[T], out: &mut [U], block_in: usize, block_out: usize, f: impl Fn(&[T], &mut [U]) + Sync + Send) {
    if block_in == 0 || block_out == 0 {
        return;
    }
    if x.len() >= PARALLEL_THRESHOLD && x.len() > block_in {
        x.par_chunks(block_in).zip(out.par_chunks_mut(block_out)).for_each(|(a, b)| f(a, b));
    } else {
        x.chunks(block_in).zip(out.chunks_mut(block_out)).for_each(|(a, b)| f(a, b));
    }
}

/// Inclusive scan along the middle axis: `out[o, i, j] = finish(acc)` where
/// `acc = step(... step(init, x[o, 0, j]) ..., x[o, i, j])`, walking `i` upward, or downward
/// when `reverse`. The accumulator type `A` may be wider than `T` (f64 for float sums, as
/// PyTorch's CPU kernels accumulate).
#[allow(clippy::too_many_arguments)]
pub fn scan<T: Copy + Sync + Send + Default, A: Copy + Send + Sync>(
    x: &[T],
    len: usize,
    inner: usize,
    reverse: bool,
    init: A,
    step: impl Fn(A, T) -> A + Sync + Send,
    finish: impl Fn(A) -> T + Sync + Send,
) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    let block = len * inner;
    for_blocks(x, &mut out, block, block, |xb, ob| {
        let mut acc = vec![init; inner];
        let mut run = |i: usize| {
            let (xr, or) = (&xb[i * inner..(i + 1) * inner], &mut ob[i * inner..(i + 1) * inner]);
            for ((a, &v), o) in acc.iter_mut().zip(xr).zip(or) {
                *a = step(*a, v);
                *o = finish(*a);
            }
        };
        if reverse {
            (0..len).rev().for_each(&mut run);
        } else {
            (0..len).for_each(&mut run);
        }
    });
    out
}

/// The stable order of one row: `NaN` counts as larger than every number (PyTorch's sort),
/// ties keep their input order.
fn cmp_nan_last<T: PartialOrd>(a: &T, b: &T) -> std::cmp::Ordering {
    #[allow(clippy::eq_op)]
    let (an, bn) = (a != a, b != b);
    match (an, bn) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Stable sort along the middle axis: sorted values and the indices (along the axis) they came
/// from. `descending` reverses the order but keeps ties in input order, like
/// `torch.sort(stable=True)`.
pub fn sort<T: Copy + PartialOrd + Send + Sync + Default>(x: &[T], len: usize, inner: usize, descending: bool) -> (Vec<T>, Vec<i64>) {
    topk(x, len, inner, len, descending)
}

/// The first `k` entries of the stable sort along the middle axis (`torch.topk` with
/// `sorted=True`; `largest` sorts descending).
pub fn topk<T: Copy + PartialOrd + Send + Sync + Default>(x: &[T], len: usize, inner: usize, k: usize, largest: bool) -> (Vec<T>, Vec<i64>) {
    let outer = if len * inner == 0 { 0 } else { x.len() / (len * inner) };
    let mut values = vec![T::default(); outer * k * inner];
    let mut indices = vec![0i64; outer * k * inner];
    if k == 0 || inner == 0 {
        return (values, indices);
    }
    let block_in = len * inner;
    let block_out = k * inner;
    let pairs: Vec<(Vec<T>, Vec<i64>)> = {
        let run = |xb: &[T]| {
            let mut vals = vec![T::default(); block_out];
            let mut idxs = vec![0i64; block_out];
            let mut order: Vec<usize> = Vec::with_capacity(len);
            for j in 0..inner {
                order.clear();
                order.extend(0..len);
                let key = |i: &usize| xb[i * inner + j];
                order.sort_by(|a, b| {
                    let o = cmp_nan_last(&key(a), &key(b));
                    if largest {
                        o.reverse()
                    } else {
                        o
                    }
                });
                for (r, &i) in order.iter().take(k).enumerate() {
                    vals[r * inner + j] = key(&i);
                    idxs[r * inner + j] = i as i64;
                }
            }
            (vals, idxs)
        };
        if x.len() >= PARALLEL_THRESHOLD && outer > 1 {
            x.par_chunks(block_in).map(run).collect()
        } else {
            x.chunks(block_in).map(run).collect()
        }
    };
    for (o, (v, i)) in pairs.into_iter().enumerate() {
        values[o * block_out..(o + 1) * block_out].copy_from_slice(&v);
        indices[o * block_out..(o + 1) * block_out].copy_from_slice(&i);
    }
    (values, indices)
}

/// The gradient of `cumprod` along the middle axis, exact where the input holds zeros:
/// `grad[i] = sum_{k >= i} g[k] * prod_{j <= k, j != i} x[j]`, in O(len) per row.
pub fn cumprod_backward(x: &[f64], g: &[f64], len: usize, inner: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    let block = len * inner;
    if block == 0 {
        return out;
    }
    for ((xb, gb), ob) in x.chunks(block).zip(g.chunks(block)).zip(out.chunks_mut(block)) {
        for j in 0..inner {
            let at = |i: usize| i * inner + j;
            let first_zero = (0..len).find(|&i| xb[at(i)] == 0.0).unwrap_or(len);
            // Before the first zero: sum_{i <= k < z} g[k] * prefix[k] / x[i], accumulated
            // from the end of the zero-free run.
            let mut prefix = vec![1.0; len + 1];
            for i in 0..len {
                prefix[i + 1] = prefix[i] * xb[at(i)];
            }
            let mut tail = 0.0;
            for i in (0..first_zero).rev() {
                tail += gb[at(i)] * prefix[i + 1];
                ob[at(i)] = tail / xb[at(i)];
            }
            if first_zero < len {
                // At the first zero: sum_{k >= z} g[k] * prefix[z] * prod_{z < j <= k} x[j].
                let z = first_zero;
                let (mut run, mut acc) = (prefix[z], 0.0);
                for k in z..len {
                    if k > z {
                        run *= xb[at(k)];
                    }
                    acc += gb[at(k)] * run;
                }
                ob[at(z)] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumsum_along_the_middle_axis() {
        // [1, 3, 2]: rows (1, 2), (3, 4), (5, 6)
        let x = [1.0f32, 2., 3., 4., 5., 6.];
        let out = scan(&x, 3, 2, false, 0.0f64, |a, v| a + v as f64, |a| a as f32);
        assert_eq!(out, [1., 2., 4., 6., 9., 12.]);
        let rev = scan(&x, 3, 2, true, 0.0f64, |a, v| a + v as f64, |a| a as f32);
        assert_eq!(rev, [9., 12., 8., 10., 5., 6.]);
    }

    #[test]
    fn sort_puts_nan_last_and_is_stable() {
        let x = [3.0f64, f64::NAN, 1.0, 3.0, -2.0];
        let (v, i) = sort(&x, 5, 1, false);
        assert_eq!(&i, &[4, 2, 0, 3, 1]);
        assert!(v[4].is_nan());
        let (_, i) = sort(&x, 5, 1, true);
        assert_eq!(&i, &[1, 0, 3, 2, 4]);
        let (v, i) = topk(&x, 5, 1, 2, false);
        assert_eq!((v, i), (vec![-2.0, 1.0], vec![4, 2]));
    }

    #[test]
    fn cumprod_gradient_with_zeros() {
        let x = [2.0, 0.0, 3.0, 0.0];
        let g = [1.0, 1.0, 1.0, 1.0];
        // out = [2, 0, 0, 0]; d/dx0 = 1; d/dx1 = 2 + 2*3 + 2*3*0 = 8; d/dx2 = 0; d/dx3 = 0.
        assert_eq!(cumprod_backward(&x, &g, 4, 1), [1.0, 8.0, 0.0, 0.0]);
    }
}
