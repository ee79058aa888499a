//! Reductions over any set of axes, with `keepdim`: sum, mean, prod, max/min (PyTorch's
//! amax/amin), var/std, logsumexp, argmax/argmin and max_dim/min_dim.
//!
//! Forward passes read the input in place whenever its layout allows. The input is seen as
//! `[outer, reduced, inner]` (an [`Ori`]): reductions over trailing dims fold contiguous rows;
//! reductions over leading or middle dims of a contiguous tensor (a bias gradient summed over
//! the batch) add whole rows into an accumulator row, which vectorises. Other layouts are copied
//! once into kept-then-reduced order.

use std::any::TypeId;
use std::ops::Range;

use rayon::prelude::*;
use tensorbrain_kernels::strided::{copy, reduce_rows, PARALLEL_THRESHOLD};
use tensorbrain_kernels::row_sum;
use tensorbrain_kernels::threads::num_threads;

use super::{any_dispatch, float_dispatch, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::layout::normalize_dim;
use crate::tensor::{Element, Error, Result, Tensor};

/// How a reduction maps input to output: the input is viewed with the reduced dims moved last,
/// so each output element reduces one contiguous row of `row_len` elements.
#[derive(Clone, Debug)]
pub(crate) struct ReducePlan {
    /// Reduced dims, sorted and unique.
    pub dims: Vec<usize>,
    /// Input dims in kept-then-reduced order.
    pub perm: Vec<usize>,
    pub rows: usize,
    pub row_len: usize,
    /// The output shape (without the reduced dims unless `keepdim`).
    pub out_shape: Vec<usize>,
    /// The output shape with reduced dims kept as 1 (what gradients broadcast from).
    pub keep_shape: Vec<usize>,
}

impl ReducePlan {
    /// `dims` empty means every dim (PyTorch's `dim=None`).
    pub fn new(op: &'static str, shape: &[usize], dims: &[isize], keepdim: bool) -> Result<ReducePlan> {
        let rank = shape.len();
        let mut red: Vec<usize> = if dims.is_empty() {
            (0..rank).collect()
        } else {
            dims.iter().map(|&d| normalize_dim(op, d, rank)).collect::<Result<_>>()?
        };
        red.sort_unstable();
        if let Some(w) = red.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(op, shape, format!("dim {} appears more than once in dims {dims:?}", w[0])));
        }
        let red: Vec<usize> = red.into_iter().filter(|&d| d < rank).collect();
        let kept: Vec<usize> = (0..rank).filter(|d| !red.contains(d)).collect();
        let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
        let keep_shape: Vec<usize> = (0..rank).map(|d| if red.contains(&d) { 1 } else { shape[d] }).collect();
        let out_shape = if keepdim { keep_shape.clone() } else { kept.iter().map(|&d| shape[d]).collect() };
        Ok(ReducePlan {
            rows: kept.iter().map(|&d| shape[d]).product(),
            row_len: red.iter().map(|&d| shape[d]).product(),
            dims: red,
            perm,
            out_shape,
            keep_shape,
        })
    }

    /// For reductions with no identity (max, min, argmax): an error if a reduced dim is empty.
    fn check_nonempty(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        match self.dims.iter().find(|&&d| shape[d] == 0) {
            Some(d) => Err(Error::invalid(
                op,
                shape,
                format!("cannot reduce over dim {d} of size 0: {op} of no elements is undefined"),
            )),
            None => Ok(()),
        }
    }

    /// The reduced dims as signed dims, for calling reductions again in backward rules.
    fn signed_dims(&self) -> Vec<isize> {
        self.dims.iter().map(|&d| d as isize).collect()
    }

    fn keep_shape_signed(&self) -> Vec<isize> {
        self.keep_shape.iter().map(|&d| d as isize).collect()
    }

    /// A tensor of the input's `shape` from elements in kept-then-reduced (row) order: a
    /// contiguous buffer viewed through the inverse permutation.
    fn rows_to_tensor<T: Element>(&self, v: Vec<T>, shape: &[usize]) -> Tensor {
        let pshape: Vec<usize> = self.perm.iter().map(|&d| shape[d]).collect();
        let mut inverse = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inverse[p] = i;
        }
        let t = Tensor::from_vec(v, &pshape);
        t.view_with(t.layout().permute(&inverse))
    }
}

// ------------------------------------------------------------------------------------------
// Kernels
// ------------------------------------------------------------------------------------------

/// A reduction's input as `[o, r, i]` contiguous elements: output `oo * i + ii` folds
/// `src[(oo * r + rr) * i + ii]` over `rr`. `i == 1` is the row case.
#[derive(Clone, Copy, Debug)]
struct Ori {
    o: usize,
    r: usize,
    i: usize,
}

/// Below this many outputs a large reduction splits inside outputs rather than across them.
const MIN_PAR_OUTPUTS: usize = 8;
/// Smallest column block a parallel column reduction hands to one task.
const COL_BLOCK: usize = 256;

/// Folds one contiguous row with 8 independent accumulators (so LLVM can vectorise and the
/// rounding error of long sums grows slower), combined at the end.
#[inline(always)]
fn fold_row<T: Copy, A: Copy>(row: &[T], init: A, step: &impl Fn(A, T) -> A, combine: &impl Fn(A, A) -> A) -> A {
    const LANES: usize = 8;
    let mut lanes = [init; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            lanes[l] = step(lanes[l], c[l]);
        }
    }
    let mut acc = lanes[0];
    for &lane in &lanes[1..] {
        acc = combine(acc, lane);
    }
    for &x in chunks.remainder() {
        acc = step(acc, x);
    }
    acc
}

/// The general reduction kernel. `init(k)` is output `k`'s starting accumulator and must be an
/// identity of `combine` (it may carry per-output data such as a mean, which `combine` keeps);
/// `step` adds one element. Results are deterministic: how work is split depends only on the
/// sizes, never on the thread count.
fn fold<T, A, I, S, C>(src: &[T], ori: Ori, init: I, step: S, combine: C) -> Vec<A>
where
    T: Copy + Sync,
    A: Copy + Send + Sync,
    I: Fn(usize) -> A + Sync,
    S: Fn(A, T) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    fold_with_rows(src, ori, init, &step, &combine, |row, acc| fold_row(row, acc, &step, &combine))
}

/// [`fold`], with contiguous rows (or pieces of them) folded by `fold_row(row, acc)`, which
/// must give what `step` over the row's elements from `acc` would, give or take rounding.
fn fold_with_rows<T, A, I, S, C, R>(src: &[T], ori: Ori, init: I, step: S, combine: C, fold_row: R) -> Vec<A>
where
    T: Copy + Sync,
    A: Copy + Send + Sync,
    I: Fn(usize) -> A + Sync,
    S: Fn(A, T) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
    R: Fn(&[T], A) -> A + Sync,
{
    let Ori { o, r, i } = ori;
    let n_out = o * i;
    if n_out == 0 {
        return Vec::new();
    }
    if r == 0 {
        return (0..n_out).map(init).collect();
    }
    // `big` decides how the work is cut (and so the order of the sums); `parallel` only
    // whether the pieces run on several threads, so the thread count never changes a result.
    let big = n_out * r >= PARALLEL_THRESHOLD;
    let parallel = big && num_threads() > 1;
    if i == 1 {
        let row = |k: usize| fold_row(&src[k * r..(k + 1) * r], init(k));
        if !big || o >= MIN_PAR_OUTPUTS || r < PARALLEL_THRESHOLD {
            return map_indices(o, parallel, row);
        }
        // A few long rows: split each row into fixed chunks, combine the partials in order.
        return (0..o)
            .map(|k| {
                let row = &src[k * r..(k + 1) * r];
                let partials = map_indices(r.div_ceil(PARALLEL_THRESHOLD), parallel, |c| {
                    fold_row(&row[c * PARALLEL_THRESHOLD..((c + 1) * PARALLEL_THRESHOLD).min(r)], init(k))
                });
                partials.into_iter().reduce(&combine).unwrap_or_else(|| init(k))
            })
            .collect();
    }

    // Column case: add rows of `i` elements into an accumulator row per outer index.
    let accumulate = |oo: usize, rows: Range<usize>, j0: usize, acc: &mut [A]| {
        let n = acc.len();
        let row = |rr: usize| {
            let base = (oo * r + rr) * i + j0;
            &src[base..base + n]
        };
        // Four rows per pass over the accumulator: a quarter of the loads and stores of it.
        let mut rr = rows.start;
        while rr + 4 <= rows.end {
            let (r0, r1, r2, r3) = (row(rr), row(rr + 1), row(rr + 2), row(rr + 3));
            for (j, a) in acc.iter_mut().enumerate() {
                *a = step(step(step(step(*a, r0[j]), r1[j]), r2[j]), r3[j]);
            }
            rr += 4;
        }
        for rr in rr..rows.end {
            for (a, &x) in acc.iter_mut().zip(row(rr)) {
                *a = step(*a, x);
            }
        }
    };
    let mut out: Vec<A> = (0..n_out).map(&init).collect();
    if !big || !parallel && (o >= MIN_PAR_OUTPUTS || i >= 2 * COL_BLOCK) {
        // Every output accumulated over all rows in order: what the parallel splits below
        // do too, a block of outputs per task.
        for (oo, acc) in out.chunks_mut(i).enumerate() {
            accumulate(oo, 0..r, 0, acc);
        }
    } else if o >= MIN_PAR_OUTPUTS {
        out.par_chunks_mut(i).enumerate().for_each(|(oo, acc)| accumulate(oo, 0..r, 0, acc));
    } else if i >= 2 * COL_BLOCK {
        // Wide rows: each task owns a block of columns for all rows.
        let block = COL_BLOCK.max(i.div_ceil(64));
        for (oo, acc) in out.chunks_mut(i).enumerate() {
            acc.par_chunks_mut(block).enumerate().for_each(|(b, acc)| accumulate(oo, 0..r, b * block, acc));
        }
    } else {
        // Few narrow outputs over many rows: fold blocks of rows (in parallel where allowed),
        // then combine the partial accumulators in order.
        let rows_per = (PARALLEL_THRESHOLD / n_out).max(1);
        let partials: Vec<Vec<A>> = map_indices(r.div_ceil(rows_per), parallel, |c| {
            let rows = c * rows_per..((c + 1) * rows_per).min(r);
            let mut acc: Vec<A> = (0..n_out).map(&init).collect();
            for (oo, a) in acc.chunks_mut(i).enumerate() {
                accumulate(oo, rows.clone(), 0, a);
            }
            acc
        });
        for p in partials {
            for (a, b) in out.iter_mut().zip(p) {
                *a = combine(*a, b);
            }
        }
    }
    out
}

/// The f64 sum of a contiguous row: f32 rows by the SIMD kernel, other types in [`fold_row`].
fn f64_row_sum<T: Element>(row: &[T]) -> f64 {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked just above), so the cast is an identity.
        let row = unsafe { std::slice::from_raw_parts(row.as_ptr().cast::<f32>(), row.len()) };
        return row_sum::sum_f32_as_f64(row);
    }
    fold_row(row, 0.0, &|a: f64, x: T| a + x.to_f64(), &|x: f64, y: f64| x + y)
}

/// `f(0..n)` in order, on the thread pool when `parallel`: the same values either way.
fn map_indices<R: Send>(n: usize, parallel: bool, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if parallel {
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// The extreme values of an element type: the identities of max and min.
trait Bounded: Element {
    const LOWEST: Self;
    const HIGHEST: Self;
}

macro_rules! bounded {
    ($($t:ty: $lo:expr, $hi:expr;)*) => {
        $(impl Bounded for $t {
            const LOWEST: Self = $lo;
            const HIGHEST: Self = $hi;
        })*
    };
}

bounded! {
    f32: f32::NEG_INFINITY, f32::INFINITY;
    f64: f64::NEG_INFINITY, f64::INFINITY;
    half::f16: half::f16::NEG_INFINITY, half::f16::INFINITY;
    half::bf16: half::bf16::NEG_INFINITY, half::bf16::INFINITY;
    i64: i64::MIN, i64::MAX;
    i32: i32::MIN, i32::MAX;
    u8: u8::MIN, u8::MAX;
    i16: i16::MIN, i16::MAX;
    i8: i8::MIN, i8::MAX;
    bool: false, true;
}

/// NaN test that also compiles for integers (always false there).
#[inline(always)]
#[allow(clippy::eq_op)]
fn is_nan<T: PartialEq>(x: T) -> bool {
    x != x
}

/// Max step: NaN wins and stays, as in PyTorch.
#[inline(always)]
fn max_step<T: PartialOrd + Copy>(a: T, x: T) -> T {
    if x > a || is_nan(x) {
        x
    } else {
        a
    }
}

#[inline(always)]
fn min_step<T: PartialOrd + Copy>(a: T, x: T) -> T {
    if x < a || is_nan(x) {
        x
    } else {
        a
    }
}

/// Index and value of the first maximum (or minimum) of a non-empty row; the first NaN wins.
fn arg_best<T: PartialOrd + Copy>(row: &[T], is_max: bool) -> (usize, T) {
    let (mut bi, mut best) = (0, row[0]);
    if is_nan(best) {
        return (bi, best);
    }
    for (j, &x) in row.iter().enumerate().skip(1) {
        let better = if is_max { x > best } else { x < best };
        if better || is_nan(x) {
            bi = j;
            best = x;
            if is_nan(x) {
                break;
            }
        }
    }
    (bi, best)
}

/// `out[j] = prod_{k != j} row[k]` for each row, from prefix and suffix products: exact when
/// the row holds zeros, and no division.
fn exclusive_prod_rows<T: Element>(src: &[T], row_len: usize, out: &mut [T]) {
    let run = |x: &[T], o: &mut [T], pre: &mut Vec<f64>| {
        pre.clear();
        let mut p = 1.0f64;
        for &v in x {
            pre.push(p);
            p *= v.to_f64();
        }
        let mut suf = 1.0f64;
        for (j, (o, &v)) in o.iter_mut().zip(x).enumerate().rev() {
            *o = T::from_f64(pre[j] * suf);
            suf *= v.to_f64();
        }
    };
    if row_len == 0 {
        return;
    }
    if src.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(row_len).zip(src.par_chunks(row_len)).for_each_init(Vec::new, |pre, (o, x)| run(x, o, pre));
    } else {
        let mut pre = Vec::with_capacity(row_len);
        for (o, x) in out.chunks_mut(row_len).zip(src.chunks(row_len)) {
            run(x, o, &mut pre);
        }
    }
}

/// The vector-Jacobian product of [`exclusive_prod_rows`]: with `o_j = prod_{k != j} x_k`,
/// `out_j = sum_{i != j} g_i * prod_{k != i, j} x_k`, by running prefix and suffix sums of
/// partial products (exact with zeros, no division).
fn exclusive_prod_vjp_rows<T: Element>(x: &[T], g: &[T], row_len: usize, out: &mut [T]) {
    let run = |x: &[T], g: &[T], o: &mut [T], pre: &mut Vec<f64>| {
        // Forward: left_j = sum_{i<j} g_i prod_{k<j, k != i} x_k, pre_j = prod_{k<j} x_k.
        pre.clear();
        let (mut left, mut p) = (0.0f64, 1.0f64);
        for ((o, &xv), &gv) in o.iter_mut().zip(x).zip(g) {
            *o = T::from_f64(left);
            pre.push(p);
            let xv = xv.to_f64();
            left = left * xv + gv.to_f64() * p;
            p *= xv;
        }
        // Backward: right_j = sum_{i>j} g_i prod_{k>j, k != i} x_k, suf_j = prod_{k>j} x_k.
        let (mut right, mut suf) = (0.0f64, 1.0f64);
        for (j, ((o, &xv), &gv)) in o.iter_mut().zip(x).zip(g).enumerate().rev() {
            let l = o.to_f64();
            *o = T::from_f64(l * suf + pre[j] * right);
            let xv = xv.to_f64();
            right = right * xv + gv.to_f64() * suf;
            suf *= xv;
        }
    };
    if row_len == 0 {
        return;
    }
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(row_len).zip(x.par_chunks(row_len)).zip(g.par_chunks(row_len)).for_each_init(Vec::new, |pre, ((o, x), g)| run(x, g, o, pre));
    } else {
        let mut pre = Vec::with_capacity(row_len);
        for ((o, x), g) in out.chunks_mut(row_len).zip(x.chunks(row_len)).zip(g.chunks(row_len)) {
            run(x, g, o, &mut pre);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Ops
// ------------------------------------------------------------------------------------------

/// The device form of a `sum` or `max` (see `crate::cuda::reduce`).
fn device_reduce(op: &'static str, x: &Tensor, plan: &ReducePlan) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    return crate::cuda::reduce(op, x, plan);
    #[cfg(not(feature = "cuda"))]
    unreachable!("internal: {op} took the device path in a build without CUDA ({}, {plan:?})", x.device())
}

impl Tensor {
    /// Runs `f` on the input's elements arranged as `plan.rows` contiguous rows.
    pub(crate) fn with_reduce_rows<T: Element, R>(&self, plan: &ReducePlan, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        let l = self.layout().permute(&plan.perm);
        let storage = self.storage();
        let src = storage.cpu()?.as_slice::<T>();
        if l.is_contiguous() {
            Ok(f(&src[l.offset..l.offset + l.numel()]))
        } else {
            let mut buf = vec![T::default(); l.numel()];
            copy(src, l.offset, &l.shape, &l.strides, &mut buf);
            Ok(f(&buf))
        }
    }

    /// Runs `f` on the input's elements as an [`Ori`] block, reading storage in place when
    /// the reduced elements are rows (trailing dims after the permutation) or one consecutive
    /// block of dims of a contiguous tensor, and copying once otherwise.
    fn with_ori<T: Element, R>(&self, plan: &ReducePlan, f: impl FnOnce(&[T], Ori) -> R) -> Result<R> {
        let storage = self.storage();
        let src = storage.cpu()?.as_slice::<T>();
        let l = self.layout();
        let numel = l.numel();
        let rows = Ori { o: plan.rows, r: plan.row_len, i: 1 };
        let p = l.permute(&plan.perm);
        if p.is_contiguous() {
            return Ok(f(&src[p.offset..p.offset + numel], rows));
        }
        if l.is_contiguous() {
            // Reduced dims of size > 1 that sit next to each other (ignoring size-1 dims).
            let wide: Vec<usize> = plan.dims.iter().copied().filter(|&d| l.shape[d] != 1).collect();
            if let (Some(&lo), Some(&hi)) = (wide.first(), wide.last()) {
                if (lo..=hi).all(|d| l.shape[d] == 1 || plan.dims.contains(&d)) {
                    let o = l.shape[..lo].iter().product();
                    let i = l.shape[hi + 1..].iter().product();
                    return Ok(f(&src[l.offset..l.offset + numel], Ori { o, r: plan.row_len, i }));
                }
            }
        }
        let mut buf = vec![T::default(); numel];
        copy(src, p.offset, &p.shape, &p.strides, &mut buf);
        Ok(f(&buf, rows))
    }

    /// The f64 sum of each output of `plan`. A contiguous tensor whose kept dims are one block
    /// `[A, K, B]` between reduced ones (a bias or batch norm gradient: NCHW summed over
    /// `[0, 2, 3]`) is folded block by block where it lies; [`Tensor::with_ori`] would first
    /// permute a copy of all of it (that copy was 1.9% of `bench_all`'s conv block fwd+bwd).
    fn f64_sums<T: Element>(&self, plan: &ReducePlan) -> Result<Vec<f64>> {
        let step = |a: f64, x: T| a + x.to_f64();
        let add = |x: f64, y: f64| x + y;
        let row_sum = |row: &[T], acc: f64| acc + f64_row_sum(row);
        let l = self.layout();
        let kept: Vec<usize> = (0..l.shape.len()).filter(|d| !plan.dims.contains(d) && l.shape[*d] != 1).collect();
        if let (true, Some(&lo), Some(&hi)) = (l.is_contiguous(), kept.first(), kept.last()) {
            let (a, k, b) = (l.shape[..lo].iter().product::<usize>(), l.shape[lo..=hi].iter().product::<usize>(), l.shape[hi + 1..].iter().product::<usize>());
            if a > 1 && b > 1 && k == plan.rows {
                let storage = self.storage();
                let src = &storage.cpu()?.as_slice::<T>()[l.offset..l.offset + l.numel()];
                // Output `ch` adds up row `ch` (of `b` elements) of each `[K, B]` block, blocks
                // in order; a task per range of outputs, so one dispatch for the whole sum
                // (folding block by block dispatched once per block: 0.32 ms against PyTorch's
                // 0.06 for `[32, 32, 32, 32]` over `[0, 2, 3]`, 1 thread).
                let channel = |ch: usize| (0..a).fold(0.0f64, |t, blk| t + f64_row_sum(&src[(blk * k + ch) * b..][..b]));
                return Ok(map_indices(k, l.numel() >= PARALLEL_THRESHOLD && num_threads() > 1, channel));
            }
        }
        // Short rows stay in `fold_row`, inlined (a call per row of 32 cost more than the
        // sum); `row_sum` adds them in the same order.
        self.with_ori::<T, _>(plan, |src, ori| {
            if ori.r < row_sum::SHORT_ROW {
                fold(src, ori, |_| 0.0f64, step, add)
            } else {
                fold_with_rows(src, ori, |_| 0.0f64, step, add, row_sum)
            }
        })
    }

    /// Broadcasts a reduced gradient (in the plan's output shape) back to this tensor's shape.
    pub(crate) fn expand_reduced(g: &Tensor, plan: &ReducePlan, shape: &[usize]) -> Result<Tensor> {
        let keep: Vec<isize> = plan.keep_shape.iter().map(|&d| d as isize).collect();
        let target: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        g.try_reshape(&keep)?.try_expand(&target)
    }

    /// Sums or products of integers and bools, in i64 (wrapping) as PyTorch does.
    fn int_fold(&self, plan: &ReducePlan, identity: i64, step: fn(i64, i64) -> i64) -> Result<Tensor> {
        let x = self.try_to_dtype(crate::tensor::DType::I64)?;
        let v = x.with_ori::<i64, _>(plan, |src, ori| fold(src, ori, |_| identity, step, step))?;
        Ok(Tensor::from_vec(v, &plan.out_shape))
    }

    /// Sum over `dims` (all dims if empty). Integers and bools sum to i64, as in PyTorch.
    pub fn try_sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("sum", self.shape(), dims, keepdim)?;
        if !self.dtype().is_float() {
            return self.int_fold(&plan, 0, i64::wrapping_add);
        }
        let out = if super::on_device(self) { device_reduce("sum", self, &plan)? } else { float_dispatch!("sum", self.dtype(), T => {
            // Accumulate in f64: sums of many f32 values stay within PyTorch's (pairwise)
            // result.
            let v = self.f64_sums::<T>(&plan)?;
            Tensor::from_vec(v.into_iter().map(<T as Element>::from_f64).collect::<Vec<T>>(), &plan.out_shape)
        }) };
        let shape = self.shape().to_vec();
        Ok(record("sum", out, &[self], move |g, _| Ok(vec![Some(Tensor::expand_reduced(g, &plan, &shape)?)])))
    }

    /// Sum of every element, as a 0-d tensor.
    pub fn try_sum_all(&self) -> Result<Tensor> {
        self.try_sum(&[], false)
    }

    /// Mean over `dims` (all dims if empty). An empty reduction gives NaN, as in PyTorch.
    pub fn try_mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("mean", self.shape(), dims, keepdim)?;
        let n = plan.row_len as f64;
        let out = if super::on_device(self) && self.dtype().is_float() { device_reduce("sum", self, &plan)?.try_mul_scalar(1.0 / n)? } else { float_dispatch!("mean", self.dtype(), T => {
            let v = self.f64_sums::<T>(&plan)?;
            Tensor::from_vec(v.into_iter().map(|s| <T as Element>::from_f64(s / n)).collect::<Vec<T>>(), &plan.out_shape)
        }) };
        let shape = self.shape().to_vec();
        Ok(record("mean", out, &[self], move |g, _| {
            Ok(vec![Some(Tensor::expand_reduced(&g.try_mul_scalar(1.0 / n)?, &plan, &shape)?)])
        }))
    }

    /// Product over `dims` (all dims if empty); the product of nothing is 1. The gradient is
    /// exact when the input holds zeros (no division by the input there).
    pub fn try_prod(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("prod", self.shape(), dims, keepdim)?;
        if !self.dtype().is_float() {
            return self.int_fold(&plan, 1, i64::wrapping_mul);
        }
        let out = float_dispatch!("prod", self.dtype(), T => {
            let v = self.with_ori::<T, _>(&plan, |src, ori| fold(src, ori, |_| 1.0f64, |a, x: T| a * x.to_f64(), |a, b| a * b))?;
            Tensor::from_vec(v.into_iter().map(<T as Element>::from_f64).collect::<Vec<T>>(), &plan.out_shape)
        });
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("prod", out, &[self], move |g, _| {
            let gk = g.try_reshape(&plan.keep_shape_signed())?;
            let has_zero = float_dispatch!("prod", x.dtype(), T => {
                x.with_contiguous::<T, _>(|s| s.iter().any(|&v| v == T::default()))?
            });
            let d = if has_zero {
                // d out / d x_j = prod of the other elements (PyTorch's safe-zeros path).
                x.try_prod_others(&plan)?
            } else {
                // out / x, as PyTorch does when no element is zero.
                let p = if is_grad_enabled() { x.try_prod(&plan.signed_dims(), true)? } else { saved.try_reshape(&plan.keep_shape_signed())? };
                p.try_div(&x)?
            };
            Ok(vec![Some(gk.try_mul(&d)?)])
        }))
    }

    /// Each element replaced by the product of the other elements of its reduction group
    /// (the derivative of `prod`), differentiable once more.
    fn try_prod_others(&self, plan: &ReducePlan) -> Result<Tensor> {
        let shape = self.shape().to_vec();
        let out = float_dispatch!("prod", self.dtype(), T => {
            let mut v = vec![T::default(); self.numel()];
            self.with_reduce_rows::<T, _>(plan, |src| exclusive_prod_rows(src, plan.row_len, &mut v))?;
            plan.rows_to_tensor(v, &shape)
        });
        let (x, plan) = (self.clone(), plan.clone());
        Ok(record("prod_backward", out, &[self], move |g, _| {
            let v = float_dispatch!("prod", x.dtype(), T => {
                let gv = g.with_reduce_rows::<T, _>(&plan, |s| s.to_vec())?;
                let mut v = vec![T::default(); x.numel()];
                x.with_reduce_rows::<T, _>(&plan, |xs| exclusive_prod_vjp_rows(xs, &gv, plan.row_len, &mut v))?;
                plan.rows_to_tensor(v, x.shape())
            });
            Ok(vec![Some(record("prod_backward_backward", v, &[&x, g], |_, _| {
                Err(Error::Autograd(
                    "prod: derivatives above the second at inputs that hold zeros are not implemented".into(),
                ))
            }))])
        }))
    }

    /// Largest value over `dims` (all dims if empty), like `torch.amax`. On ties the gradient
    /// is split evenly among the maxima. NaN propagates.
    pub fn try_max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme("max", dims, keepdim, true)
    }

    /// Smallest value over `dims` (all dims if empty), like `torch.amin`.
    pub fn try_min(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme("min", dims, keepdim, false)
    }

    fn extreme(&self, op: &'static str, dims: &[isize], keepdim: bool, is_max: bool) -> Result<Tensor> {
        let plan = ReducePlan::new(op, self.shape(), dims, keepdim)?;
        plan.check_nonempty(op, self.shape())?;
        let out = if super::on_device(self) && is_max { device_reduce("max", self, &plan)? } else { any_dispatch!(self.dtype(), T => {
            let v: Vec<T> = self.with_ori::<T, _>(&plan, |src, ori| {
                if is_max {
                    fold(src, ori, |_| T::LOWEST, max_step::<T>, max_step::<T>)
                } else {
                    fold(src, ori, |_| T::HIGHEST, min_step::<T>, min_step::<T>)
                }
            })?;
            Tensor::from_vec(v, &plan.out_shape)
        }) };
        let (x, saved) = (self.clone(), out.detach());
        let dims = dims.to_vec();
        Ok(record(op, out, &[self], move |g, _| Ok(vec![Some(extreme_backward(&x, &saved, g, &dims, keepdim)?)])))
    }

    /// Variance over `dims` (all dims if empty), dividing by `N - correction` (1 = unbiased,
    /// PyTorch's default; 0 = population). Two passes: the mean, then squared deviations.
    pub fn try_var(&self, dims: &[isize], keepdim: bool, correction: usize) -> Result<Tensor> {
        self.var_std("var", dims, keepdim, correction, false)
    }

    /// Standard deviation: the square root of [`Tensor::try_var`].
    pub fn try_std(&self, dims: &[isize], keepdim: bool, correction: usize) -> Result<Tensor> {
        self.var_std("std", dims, keepdim, correction, true)
    }

    fn var_std(&self, op: &'static str, dims: &[isize], keepdim: bool, correction: usize, sqrt: bool) -> Result<Tensor> {
        let plan = ReducePlan::new(op, self.shape(), dims, keepdim)?;
        let n = plan.row_len as f64;
        let dof = n - correction as f64;
        let out = float_dispatch!(op, self.dtype(), T => {
            let v = self.with_ori::<T, _>(&plan, |src, ori| {
                let sums = fold(src, ori, |_| 0.0f64, |a, x: T| a + x.to_f64(), |a, b| a + b);
                let means: Vec<f64> = sums.into_iter().map(|s| s / n).collect();
                fold(
                    src,
                    ori,
                    |k| (0.0f64, means[k]),
                    |(s, m), x: T| {
                        let d = x.to_f64() - m;
                        (s + d * d, m)
                    },
                    |(a, m), (b, _)| (a + b, m),
                )
            })?;
            // PyTorch divides by max(0, N - correction): 0/0 is NaN, x/0 is inf.
            let v: Vec<T> = v
                .into_iter()
                .map(|(s, _)| {
                    let var = s / dof.max(0.0);
                    <T as Element>::from_f64(if sqrt { var.sqrt() } else { var })
                })
                .collect();
            Tensor::from_vec(v, &plan.out_shape)
        });
        let (x, saved) = (self.clone(), out.detach());
        // PyTorch's gradient differs between `dim=None` (here: `dims` empty) and an explicit
        // list of dims once `N - correction <= 0`; see [`var_backward`].
        let all_dims = dims.is_empty();
        Ok(record(op, out, &[self], move |g, _| {
            let (keep, red) = (plan.keep_shape_signed(), plan.signed_dims());
            let gk = g.try_reshape(&keep)?;
            let gk = if sqrt {
                // d std = d var / (2 std), and 0 where std == 0 (PyTorch's masked_fill), so a
                // constant input has gradient 0 rather than 0/0.
                let s = if is_grad_enabled() { x.try_std(&red, true, correction)? } else { saved.try_reshape(&keep)? };
                let zero_std = s.try_eq(&s.scalar_like(0.0)?)?;
                gk.try_div(&s.try_mul_scalar(2.0)?)?.try_masked_fill(&zero_std, 0.0)?
            } else {
                gk
            };
            Ok(vec![Some(var_backward(&x, &gk, &red, dof, all_dims)?)])
        }))
    }

    /// `log(sum(exp(x)))` over `dims` (all dims if empty), computed stably by subtracting the
    /// maximum first. An empty reduction gives -inf.
    pub fn try_logsumexp(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let plan = ReducePlan::new("logsumexp", self.shape(), dims, keepdim)?;
        let out = float_dispatch!("logsumexp", self.dtype(), T => {
            let v = self.with_ori::<T, _>(&plan, |src, ori| {
                let maxes: Vec<T> = fold(src, ori, |_| T::LOWEST, max_step::<T>, max_step::<T>);
                // An infinite max is replaced by 0 (PyTorch does the same), so rows of -inf give
                // log(0) = -inf and a +inf gives +inf rather than NaN from inf - inf.
                let maxes: Vec<f64> = maxes.into_iter().map(|m| m.to_f64()).map(|m| if m.is_infinite() { 0.0 } else { m }).collect();
                fold(src, ori, |k| (maxes[k], 0.0f64), |(m, s), x: T| (m, s + (x.to_f64() - m).exp()), |(m, a), (_, b)| (m, a + b))
            })?;
            let v: Vec<T> = v.into_iter().map(|(m, s)| <T as Element>::from_f64(m + s.ln())).collect();
            Tensor::from_vec(v, &plan.out_shape)
        });
        let (x, saved) = (self.clone(), out.detach());
        Ok(record("logsumexp", out, &[self], move |g, _| {
            let keep = plan.keep_shape_signed();
            let lse = if is_grad_enabled() { x.try_logsumexp(&plan.signed_dims(), true)? } else { saved.try_reshape(&keep)? };
            Ok(vec![Some(g.try_reshape(&keep)?.try_mul(&x.try_sub(&lse)?.try_exp()?)?)])
        }))
    }

    /// Index of the first maximum along `dim`, or in the flattened tensor for `None`, as an i64
    /// tensor (no gradient). With `None` and `keepdim`, the result has the input's rank with
    /// every dim 1, as in PyTorch 2.x. NaN counts as the maximum.
    pub fn try_argmax(&self, dim: Option<isize>, keepdim: bool) -> Result<Tensor> {
        if super::on_device(self) {
            return self.arg_reduce_on_device("argmax", dim, keepdim, true);
        }
        let (plan, idx, _) = self.arg_reduce("argmax", dim, keepdim, true, false)?;
        Ok(Tensor::from_vec(idx, &plan.out_shape))
    }

    /// Index of the first minimum along `dim` (or of the flattened tensor); see
    /// [`Tensor::try_argmax`].
    pub fn try_argmin(&self, dim: Option<isize>, keepdim: bool) -> Result<Tensor> {
        if super::on_device(self) {
            return self.arg_reduce_on_device("argmin", dim, keepdim, false);
        }
        let (plan, idx, _) = self.arg_reduce("argmin", dim, keepdim, false, false)?;
        Ok(Tensor::from_vec(idx, &plan.out_shape))
    }

    /// Maximum values along `dim` and their (first) indices, like `torch.max(x, dim)`. The
    /// gradient goes to the returned index only.
    pub fn try_max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extreme_dim("max_dim", dim, keepdim, true)
    }

    /// Minimum values along `dim` and their (first) indices, like `torch.min(x, dim)`.
    pub fn try_min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extreme_dim("min_dim", dim, keepdim, false)
    }

    fn extreme_dim(&self, op: &'static str, dim: isize, keepdim: bool, is_max: bool) -> Result<(Tensor, Tensor)> {
        let (plan, idx, values) = self.arg_reduce(op, Some(dim), keepdim, is_max, true)?;
        let values = values.expect("values were asked for");
        let indices = Tensor::from_vec(idx.clone(), &plan.out_shape);
        let shape = self.shape().to_vec();
        let values = record(op, values, &[self], move |g, _| {
            // One-hot mask of the selected elements, in the input's shape.
            let mask = float_dispatch!(op, g.dtype(), T => {
                let mut m = vec![T::default(); plan.rows * plan.row_len];
                for (r, &j) in idx.iter().enumerate() {
                    m[r * plan.row_len + j as usize] = <T as Element>::from_f64(1.0);
                }
                plan.rows_to_tensor(m, &shape)
            });
            Ok(vec![Some(g.try_reshape(&plan.keep_shape_signed())?.try_mul(&mask)?)])
        });
        Ok((values, indices))
    }

    /// argmax/argmin of a tensor on a GPU: the same plan and checks as [`Tensor::arg_reduce`],
    /// the indices computed and kept on the device.
    fn arg_reduce_on_device(&self, op: &'static str, dim: Option<isize>, keepdim: bool, is_max: bool) -> Result<Tensor> {
        let dims: Vec<isize> = dim.into_iter().collect();
        let plan = ReducePlan::new(op, self.shape(), &dims, keepdim)?;
        if dim.is_none() && self.numel() == 0 {
            return Err(Error::invalid(op, self.shape(), format!("{op} of an empty tensor is undefined")));
        }
        plan.check_nonempty(op, self.shape())?;
        super::device::arg_reduce(self, &plan, is_max)
    }

    /// Shared scan of argmax/argmin/max_dim/min_dim: the plan, first best index per row, and
    /// optionally the best values.
    fn arg_reduce(&self, op: &'static str, dim: Option<isize>, keepdim: bool, is_max: bool, values: bool) -> Result<(ReducePlan, Vec<i64>, Option<Tensor>)> {
        let dims: Vec<isize> = dim.into_iter().collect();
        let plan = ReducePlan::new(op, self.shape(), &dims, keepdim)?;
        if dim.is_none() && self.numel() == 0 {
            return Err(Error::invalid(op, self.shape(), format!("{op} of an empty tensor is undefined")));
        }
        plan.check_nonempty(op, self.shape())?;
        let row_len = plan.row_len;
        Ok(any_dispatch!(self.dtype(), T => {
            let best: Vec<(usize, T)> = self.with_reduce_rows::<T, _>(&plan, |src| reduce_rows(src, row_len, plan.rows, |row| arg_best(row, is_max)))?;
            let idx: Vec<i64> = best.iter().map(|&(i, _)| i as i64).collect();
            let vals = values.then(|| Tensor::from_vec(best.iter().map(|&(_, v)| v).collect::<Vec<T>>(), &plan.out_shape));
            (plan, idx, vals)
        }))
    }
}

panicking! {
    /// Sum over `dims` (all dims when empty), keeping them as size 1 if `keepdim`.
    fn sum / try_sum(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Sum of every element, as a 0-d tensor.
    fn sum_all / try_sum_all(&self) -> Tensor;
    /// Mean over `dims` (all dims when empty).
    fn mean / try_mean(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Product over `dims` (all dims when empty).
    fn prod / try_prod(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Largest value over `dims` (all dims when empty); PyTorch's `amax`.
    fn max / try_max(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Smallest value over `dims` (all dims when empty); PyTorch's `amin`.
    fn min / try_min(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// Variance over `dims` with `N - correction` in the denominator.
    fn var / try_var(&self, dims: &[isize], keepdim: bool, correction: usize) -> Tensor;
    /// Standard deviation over `dims` with `N - correction` in the denominator.
    fn std / try_std(&self, dims: &[isize], keepdim: bool, correction: usize) -> Tensor;
    /// `log(sum(exp(self)))` over `dims`, computed stably.
    fn logsumexp / try_logsumexp(&self, dims: &[isize], keepdim: bool) -> Tensor;
    /// First index of the maximum along `dim` (flattened for `None`), as i64.
    fn argmax / try_argmax(&self, dim: Option<isize>, keepdim: bool) -> Tensor;
    /// First index of the minimum along `dim` (flattened for `None`), as i64.
    fn argmin / try_argmin(&self, dim: Option<isize>, keepdim: bool) -> Tensor;
    /// `(values, indices)` of the maximum along `dim`, like `torch.max(x, dim)`.
    fn max_dim / try_max_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor);
    /// `(values, indices)` of the minimum along `dim`, like `torch.min(x, dim)`.
    fn min_dim / try_min_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor);
}

/// The input gradient of a variance over `red` (the reduced dims, as signed dims) from `gk`,
/// the output gradient shaped with those dims kept: `2 / (N - correction) * g * (x - mean)`.
/// As in PyTorch's `var_backward`, a reduction over every dim by default (`all_dims`) with
/// `N - correction <= 0` gives `g * (x == mean ? NaN : inf)` instead.
fn var_backward(x: &Tensor, gk: &Tensor, red: &[isize], dof: f64, all_dims: bool) -> Result<Tensor> {
    let centered = x.try_sub(&x.try_mean(red, true)?)?;
    if all_dims && dof <= 0.0 {
        let at_mean = centered.try_eq(&centered.scalar_like(0.0)?)?;
        let factor = Tensor::try_where_cond(&at_mean, &centered.scalar_like(f64::NAN)?, &centered.scalar_like(f64::INFINITY)?)?;
        return gk.try_mul(&factor);
    }
    gk.try_mul(&centered)?.try_mul_scalar(2.0 / dof)
}

/// The input gradient of `max`/`min` over `dims` (amax's rule): `g * (x == y) / count(x == y)`,
/// splitting ties evenly. `y` is the reduction's output. Shared by the tape and generated code.
pub(crate) fn extreme_backward(x: &Tensor, y: &Tensor, g: &Tensor, dims: &[isize], keepdim: bool) -> Result<Tensor> {
    let plan = ReducePlan::new("max_backward", x.shape(), dims, keepdim)?;
    let keep = plan.keep_shape_signed();
    let mask = x.try_eq(&y.try_reshape(&keep)?)?.try_to_dtype(g.dtype())?;
    let count = mask.try_sum(&plan.signed_dims(), true)?;
    g.try_reshape(&keep)?.try_div(&count)?.try_mul(&mask)
}
