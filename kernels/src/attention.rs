//! Scaled dot-product attention without the `Lq x Lk` score matrix: FlashAttention's tiled
//! online softmax on the CPU.
//!
//! The forward walks key blocks for one block of query rows at a time, keeping a running row
//! maximum `m`, a running normaliser `l` and an unnormalised output accumulator; scores live
//! only in a `BLOCK_Q x BLOCK_K` tile. It returns the output and, for training, the row
//! log-sum-exp `m + ln l`, which is all the backward needs to recompute each tile's
//! probabilities exactly (FlashAttention-2's backward): nothing of size `Lq x Lk` is saved.
//!
//! Operands are strided 4-D `[B, H, L, E]` views (a transposed `[B, L, H, E]` projection, or a
//! head dim broadcast with stride 0, multiply without a copy); tile products run through
//! `gemm` on one thread each while rayon spreads (batch, head, query block) items over cores.

use rayon::prelude::*;

use crate::gemm::matmul_with_threads;
use crate::{threads, Float};

/// Query rows per tile.
pub const BLOCK_Q: usize = 64;
/// Key rows per tile.
pub const BLOCK_K: usize = 64;

/// An element type the attention kernels compute in (f32 and f64; the op layer widens f16 and
/// bf16 to f32).
pub trait AttentionFloat: Float {
    /// `exp`, vectorisable for f32 (a few ulp; exact libm for f64).
    fn exp_fast(self) -> Self;
}

impl AttentionFloat for f32 {
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        crate::fast_math::exp_f32(self)
    }
}

impl AttentionFloat for f64 {
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        self.exp()
    }
}

/// A strided 4-D view `[B, H, L, E]` into a slice: element `(b, h, l, e)` is at
/// `offset + b*s[0] + h*s[1] + l*s[2] + e*s[3]`. A stride of 0 broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View4 {
    pub offset: usize,
    pub strides: [usize; 4],
}

impl View4 {
    /// The row-major view of a contiguous `[B, H, L, E]` array.
    pub fn contiguous(shape: [usize; 4]) -> View4 {
        View4 { offset: 0, strides: [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1] }
    }

    #[inline]
    fn at(&self, b: usize, h: usize, l: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1] + l * self.strides[2]
    }
}

/// Sizes of one attention call: `q: [batch, heads, lq, d]`, `k: [batch, heads, lk, d]`,
/// `v: [batch, heads, lk, dv]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

/// The operands of one attention call. `mask` is additive (0 where a key takes part, −∞ where
/// it does not, or any float bias) and broadcast to `[B, H, Lq, Lk]` by its view's strides.
/// `causal = Some(off)` hides key `j` from query `i` when `j > i + off` (0 is PyTorch's
/// `is_causal`, aligned at the top left; `lk - lq` aligns at the bottom right, as a decoder
/// reading a KV cache needs).
pub struct AttentionInputs<'a, T> {
    pub shape: AttentionShape,
    pub q: &'a [T],
    pub q_view: View4,
    pub k: &'a [T],
    pub k_view: View4,
    pub v: &'a [T],
    pub v_view: View4,
    pub mask: Option<(&'a [T], View4)>,
    pub scale: T,
    pub causal: Option<isize>,
}

impl<T: AttentionFloat> AttentionInputs<'_, T> {
    /// The last key a query row may see plus one (`lk` when nothing is hidden by causality).
    #[inline]
    fn key_end(&self, i: usize) -> usize {
        match self.causal {
            None => self.shape.lk,
            Some(off) => (i as isize + off + 1).clamp(0, self.shape.lk as isize) as usize,
        }
    }

    /// Scores of the tile `rows x cols` at query `i0`, key `j0` into `s` (row stride `cols`):
    /// `scale * q kᵀ + mask`, with causally hidden keys at −∞.
    fn scores(&self, b: usize, h: usize, i0: usize, rows: usize, j0: usize, cols: usize, s: &mut [T]) {
        let AttentionShape { d, .. } = self.shape;
        let (qv, kv) = (self.q_view, self.k_view);
        // S = Q_i · K_jᵀ: Kᵀ's element (e, j) sits at k(j) + e * k_stride_e.
        #[rustfmt::skip]
        matmul_with_threads(
            1, rows, d, cols,
            self.q, qv.at(b, h, i0), qv.strides[2] as isize, qv.strides[3] as isize,
            self.k, kv.at(b, h, j0), kv.strides[3] as isize, kv.strides[2] as isize,
            &mut s[..rows * cols], cols as isize, 1,
            false,
        );
        let neg_inf = T::neg_infinity();
        for r in 0..rows {
            let i = i0 + r;
            let row = &mut s[r * cols..(r + 1) * cols];
            match self.mask {
                Some((m, mv)) => {
                    let base = mv.at(b, h, i) + j0 * mv.strides[3];
                    let step = mv.strides[3];
                    for (c, x) in row.iter_mut().enumerate() {
                        *x = *x * self.scale + m[base + c * step];
                    }
                }
                None => row.iter_mut().for_each(|x| *x = *x * self.scale),
            }
            let visible = self.key_end(i).saturating_sub(j0).min(cols);
            row[visible..].iter_mut().for_each(|x| *x = neg_inf);
        }
    }
}

/// Per-thread scratch: one score tile and one accumulator tile.
struct Scratch<T> {
    s: Vec<T>,
    acc: Vec<T>,
    m: Vec<T>,
    l: Vec<T>,
}

impl<T: AttentionFloat> Scratch<T> {
    fn new(dv: usize) -> Self {
        Scratch { s: vec![T::zero(); BLOCK_Q * BLOCK_K], acc: vec![T::zero(); BLOCK_Q * dv], m: vec![T::zero(); BLOCK_Q], l: vec![T::zero(); BLOCK_Q] }
    }
}

/// Attention forward: `out` (contiguous `[B, H, Lq, Dv]`) and, when given, `lse` (contiguous
/// `[B, H, Lq]`, the natural log of each row's softmax normaliser of the scaled, masked
/// scores; −∞ for a row whose keys are all hidden, whose output is 0).
pub fn attention_forward<T: AttentionFloat>(x: &AttentionInputs<T>, out: &mut [T], lse: Option<&mut [T]>) {
    let AttentionShape { batch, heads, lq, dv, .. } = x.shape;
    assert_eq!(out.len(), batch * heads * lq * dv, "attention_forward: out has the wrong length");
    if out.is_empty() {
        return;
    }
    let mut lse_store;
    let lse: &mut [T] = match lse {
        Some(l) => {
            assert_eq!(l.len(), batch * heads * lq, "attention_forward: lse has the wrong length");
            l
        }
        None => {
            lse_store = vec![T::zero(); batch * heads * lq];
            &mut lse_store
        }
    };
    // One work item per (batch, head, query block), each owning its rows of `out` and `lse`.
    let mut items: Vec<(usize, usize, &mut [T], &mut [T])> = Vec::new();
    for (bh, (o, l)) in out.chunks_mut(lq * dv).zip(lse.chunks_mut(lq)).enumerate() {
        for (qb, (ob, lb)) in o.chunks_mut(BLOCK_Q * dv).zip(l.chunks_mut(BLOCK_Q)).enumerate() {
            items.push((bh, qb * BLOCK_Q, ob, lb));
        }
    }
    let work = batch * heads * lq * x.shape.lk * (x.shape.d + dv);
    let run = |scratch: &mut Scratch<T>, (bh, i0, o, l): (usize, usize, &mut [T], &mut [T])| {
        forward_block(x, bh / heads, bh % heads, i0, o, l, scratch)
    };
    if threads::worth_parallelising(work) && items.len() > 1 {
        let per_thread = items.len().div_ceil(threads::num_threads()).max(1);
        items.into_par_iter().with_min_len(per_thread.min(4)).for_each_init(|| Scratch::new(dv), run);
    } else {
        let mut scratch = Scratch::new(dv);
        items.into_iter().for_each(|it| run(&mut scratch, it));
    }
}

/// One block of query rows `i0..i0 + rows` against every visible key block.
fn forward_block<T: AttentionFloat>(x: &AttentionInputs<T>, b: usize, h: usize, i0: usize, out: &mut [T], lse: &mut [T], sc: &mut Scratch<T>) {
    let dv = x.shape.dv;
    let rows = lse.len();
    let neg_inf = T::neg_infinity();
    let Scratch { s, acc, m, l } = sc;
    m[..rows].iter_mut().for_each(|v| *v = neg_inf);
    l[..rows].iter_mut().for_each(|v| *v = T::zero());
    acc[..rows * dv].iter_mut().for_each(|v| *v = T::zero());
    // Keys past the last row's causal limit are hidden from the whole block.
    let end = x.key_end(i0 + rows - 1);
    let vv = x.v_view;
    let mut j0 = 0;
    while j0 < end {
        let cols = BLOCK_K.min(end - j0);
        x.scores(b, h, i0, rows, j0, cols, s);
        for r in 0..rows {
            let row = &mut s[r * cols..(r + 1) * cols];
            let tile_max = row.iter().fold(neg_inf, |a, &v| if v > a { v } else { a });
            let m_new = if tile_max > m[r] { tile_max } else { m[r] };
            if m_new == neg_inf {
                // Every key so far is hidden from this row: nothing to add.
                row.iter_mut().for_each(|v| *v = T::zero());
                continue;
            }
            let alpha = (m[r] - m_new).exp_fast();
            let mut sum = T::zero();
            for v in row.iter_mut() {
                *v = (*v - m_new).exp_fast();
                sum = sum + *v;
            }
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if alpha != T::one() {
                acc[r * dv..(r + 1) * dv].iter_mut().for_each(|a| *a = *a * alpha);
            }
        }
        // acc += P · V_j
        #[rustfmt::skip]
        matmul_with_threads(
            1, rows, cols, dv,
            &s[..rows * cols], 0, cols as isize, 1,
            x.v, vv.at(b, h, j0), vv.strides[2] as isize, vv.strides[3] as isize,
            &mut acc[..rows * dv], dv as isize, 1,
            true,
        );
        j0 += cols;
    }
    for r in 0..rows {
        let o = &mut out[r * dv..(r + 1) * dv];
        if l[r] > T::zero() {
            let inv = T::one() / l[r];
            o.iter_mut().zip(&acc[r * dv..(r + 1) * dv]).for_each(|(o, &a)| *o = a * inv);
            lse[r] = m[r] + l[r].ln();
        } else {
            o.iter_mut().for_each(|o| *o = T::zero());
            lse[r] = neg_inf;
        }
    }
}

/// Attention backward from the forward's `out` and `lse` and the output gradient `dout` (all
/// contiguous): writes `dq` `[B, H, Lq, D]`, `dk` `[B, H, Lk, D]` and `dv` `[B, H, Lk, Dv]`
/// (contiguous, overwritten), recomputing each tile's probabilities from `lse`.
pub fn attention_backward<T: AttentionFloat>(
    x: &AttentionInputs<T>,
    out: &[T],
    dout: &[T],
    lse: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let AttentionShape { batch, heads, lq, lk, d, dv: e } = x.shape;
    let bh_count = batch * heads;
    assert_eq!(out.len(), bh_count * lq * e, "attention_backward: out has the wrong length");
    assert_eq!(dout.len(), out.len(), "attention_backward: dout has the wrong length");
    assert_eq!(lse.len(), bh_count * lq, "attention_backward: lse has the wrong length");
    assert_eq!(dq.len(), bh_count * lq * d, "attention_backward: dq has the wrong length");
    assert_eq!(dk.len(), bh_count * lk * d, "attention_backward: dk has the wrong length");
    assert_eq!(dv.len(), bh_count * lk * e, "attention_backward: dv has the wrong length");
    dq.iter_mut().chain(dk.iter_mut()).chain(dv.iter_mut()).for_each(|v| *v = T::zero());
    if bh_count == 0 || lq == 0 || lk == 0 {
        return;
    }
    let items = dq.chunks_mut(lq * d).zip(dk.chunks_mut(lk * d)).zip(dv.chunks_mut(lk * e)).enumerate();
    let run = |scratch: &mut BackwardScratch<T>, (bh, ((dq, dk), dv)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
        let rows = bh * lq..(bh + 1) * lq;
        let grads = HeadGrads { dq, dk, dv };
        backward_head(x, bh / heads, bh % heads, &out[rows.start * e..rows.end * e], &dout[rows.start * e..rows.end * e], &lse[rows], grads, scratch)
    };
    let work = 2 * bh_count * lq * lk * (d + e);
    if threads::worth_parallelising(work) && bh_count > 1 {
        items.collect::<Vec<_>>().into_par_iter().with_min_len(1).for_each_init(BackwardScratch::new, run);
    } else {
        let mut scratch = BackwardScratch::new();
        items.for_each(|it| run(&mut scratch, it));
    }
}

struct HeadGrads<'a, T> {
    dq: &'a mut [T],
    dk: &'a mut [T],
    dv: &'a mut [T],
}

struct BackwardScratch<T> {
    p: Vec<T>,
    dp: Vec<T>,
    delta: Vec<T>,
}

impl<T: AttentionFloat> BackwardScratch<T> {
    fn new() -> Self {
        BackwardScratch { p: vec![T::zero(); BLOCK_Q * BLOCK_K], dp: vec![T::zero(); BLOCK_Q * BLOCK_K], delta: Vec::new() }
    }
}

/// The gradients of one (batch, head): for each key block, for each query block that can see
/// it, recompute `P = exp(S - lse)` and accumulate
/// `dV += Pᵀ dO`, `dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O))`, `dQ += scale dS K`, `dK += scale dSᵀ Q`.
#[allow(clippy::too_many_arguments)]
fn backward_head<T: AttentionFloat>(
    x: &AttentionInputs<T>,
    b: usize,
    h: usize,
    out: &[T],
    dout: &[T],
    lse: &[T],
    g: HeadGrads<T>,
    sc: &mut BackwardScratch<T>,
) {
    let AttentionShape { lq, lk, d, dv: e, .. } = x.shape;
    let (qv, kv, vv) = (x.q_view, x.k_view, x.v_view);
    let BackwardScratch { p, dp, delta } = sc;
    delta.clear();
    delta.extend(out.chunks(e).zip(dout.chunks(e)).map(|(o, g)| o.iter().zip(g).fold(T::zero(), |a, (&o, &g)| a + o * g)));
    let neg_inf = T::neg_infinity();
    let mut j0 = 0;
    while j0 < lk {
        let cols = BLOCK_K.min(lk - j0);
        // The first query that may see key j0 (all of them without causality).
        let first_row = match x.causal {
            None => 0,
            Some(off) => (j0 as isize - off).clamp(0, lq as isize) as usize,
        };
        let mut i0 = first_row - first_row % BLOCK_Q;
        while i0 < lq {
            let rows = BLOCK_Q.min(lq - i0);
            x.scores(b, h, i0, rows, j0, cols, p);
            for r in 0..rows {
                let l = lse[i0 + r];
                let row = &mut p[r * cols..(r + 1) * cols];
                if l == neg_inf {
                    row.iter_mut().for_each(|v| *v = T::zero());
                } else {
                    row.iter_mut().for_each(|v| *v = (*v - l).exp_fast());
                }
            }
            let p_tile = &p[..rows * cols];
            let do_rows = &dout[i0 * e..(i0 + rows) * e];
            // dV_j += Pᵀ · dO_i
            #[rustfmt::skip]
            matmul_with_threads(
                1, cols, rows, e,
                p_tile, 0, 1, cols as isize,
                do_rows, 0, e as isize, 1,
                &mut g.dv[j0 * e..(j0 + cols) * e], e as isize, 1,
                true,
            );
            // dP = dO_i · V_jᵀ
            #[rustfmt::skip]
            matmul_with_threads(
                1, rows, e, cols,
                do_rows, 0, e as isize, 1,
                x.v, vv.at(b, h, j0), vv.strides[3] as isize, vv.strides[2] as isize,
                &mut dp[..rows * cols], cols as isize, 1,
                false,
            );
            // dS (times scale, for the product with q kᵀ) in place of dP.
            for r in 0..rows {
                let dl = delta[i0 + r];
                let (pr, dr) = (&p_tile[r * cols..(r + 1) * cols], &mut dp[r * cols..(r + 1) * cols]);
                dr.iter_mut().zip(pr).for_each(|(ds, &pv)| *ds = pv * (*ds - dl) * x.scale);
            }
            let ds = &dp[..rows * cols];
            // dQ_i += dS · K_j
            #[rustfmt::skip]
            matmul_with_threads(
                1, rows, cols, d,
                ds, 0, cols as isize, 1,
                x.k, kv.at(b, h, j0), kv.strides[2] as isize, kv.strides[3] as isize,
                &mut g.dq[i0 * d..(i0 + rows) * d], d as isize, 1,
                true,
            );
            // dK_j += dSᵀ · Q_i
            #[rustfmt::skip]
            matmul_with_threads(
                1, cols, rows, d,
                ds, 0, 1, cols as isize,
                x.q, qv.at(b, h, i0), qv.strides[2] as isize, qv.strides[3] as isize,
                &mut g.dk[j0 * d..(j0 + cols) * d], d as isize, 1,
                true,
            );
            i0 += rows;
        }
        j0 += cols;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Materialised attention in f64 with the same masking rules, and its gradients.
    fn naive(x: &AttentionInputs<f64>, dout: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let AttentionShape { batch, heads, lq, lk, d, dv: e } = x.shape;
        let mut out = vec![0.0; batch * heads * lq * e];
        let (mut dq, mut dk, mut dv) = (vec![0.0; batch * heads * lq * d], vec![0.0; batch * heads * lk * d], vec![0.0; batch * heads * lk * e]);
        for b in 0..batch {
            for h in 0..heads {
                let bh = b * heads + h;
                let q = |i: usize, c: usize| x.q[x.q_view.at(b, h, i) + c * x.q_view.strides[3]];
                let k = |j: usize, c: usize| x.k[x.k_view.at(b, h, j) + c * x.k_view.strides[3]];
                let v = |j: usize, c: usize| x.v[x.v_view.at(b, h, j) + c * x.v_view.strides[3]];
                for i in 0..lq {
                    let s: Vec<f64> = (0..lk)
                        .map(|j| {
                            if j >= x.key_end(i) {
                                return f64::NEG_INFINITY;
                            }
                            let mask = x.mask.map_or(0.0, |(m, mv)| m[mv.at(b, h, i) + j * mv.strides[3]]);
                            (0..d).map(|c| q(i, c) * k(j, c)).sum::<f64>() * x.scale + mask
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> = if mx == f64::NEG_INFINITY { vec![0.0; lk] } else { s.iter().map(|&v| (v - mx).exp()).collect() };
                    let z: f64 = p.iter().sum();
                    let p: Vec<f64> = p.iter().map(|&v| if z > 0.0 { v / z } else { 0.0 }).collect();
                    let go = &dout[(bh * lq + i) * e..(bh * lq + i + 1) * e];
                    for c in 0..e {
                        out[(bh * lq + i) * e + c] = (0..lk).map(|j| p[j] * v(j, c)).sum();
                    }
                    let dpv: Vec<f64> = (0..lk).map(|j| (0..e).map(|c| go[c] * v(j, c)).sum()).collect();
                    let delta: f64 = (0..lk).map(|j| p[j] * dpv[j]).sum();
                    for j in 0..lk {
                        let ds = p[j] * (dpv[j] - delta) * x.scale;
                        for c in 0..d {
                            dq[(bh * lq + i) * d + c] += ds * k(j, c);
                            dk[(bh * lk + j) * d + c] += ds * q(i, c);
                        }
                        for c in 0..e {
                            dv[(bh * lk + j) * e + c] += p[j] * go[c];
                        }
                    }
                }
            }
        }
        (out, dq, dk, dv)
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn check(shape: AttentionShape, causal: Option<isize>, masked: bool, transposed_q: bool) {
        let AttentionShape { batch, heads, lq, lk, d, dv: e } = shape;
        let q = values(batch * heads * lq * d, 1);
        let k = values(batch * heads * lk * d, 2);
        let v = values(batch * heads * lk * e, 3);
        // The query as a [B, L, H, D] array read through transposed strides.
        let q_view = if transposed_q { View4 { offset: 0, strides: [lq * heads * d, d, heads * d, 1] } } else { View4::contiguous([batch, heads, lq, d]) };
        // A key-padding mask [B, 1, 1, Lk]: batch b hides its last b keys (all of them for b = 2 when lk = 2).
        let mask: Vec<f64> = (0..batch * lk).map(|i| if i % lk + i / lk >= lk { f64::NEG_INFINITY } else { 0.0 }).collect();
        let mask_view = View4 { offset: 0, strides: [lk, 0, 0, 1] };
        let x = AttentionInputs {
            shape,
            q: &q,
            q_view,
            k: &k,
            k_view: View4::contiguous([batch, heads, lk, d]),
            v: &v,
            v_view: View4::contiguous([batch, heads, lk, e]),
            mask: masked.then_some((&mask[..], mask_view)),
            scale: 1.0 / (d as f64).sqrt(),
            causal,
        };
        let dout = values(batch * heads * lq * e, 4);
        let (want_out, want_dq, want_dk, want_dv) = naive(&x, &dout);
        let mut out = vec![0.0; want_out.len()];
        let mut lse = vec![0.0; batch * heads * lq];
        attention_forward(&x, &mut out, Some(&mut lse));
        let (mut dq, mut dk, mut dv) = (vec![0.0; want_dq.len()], vec![0.0; want_dk.len()], vec![0.0; want_dv.len()]);
        attention_backward(&x, &out, &dout, &lse, &mut dq, &mut dk, &mut dv);
        for (name, got, want) in [("out", &out, &want_out), ("dq", &dq, &want_dq), ("dk", &dk, &want_dk), ("dv", &dv, &want_dv)] {
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert!((g - w).abs() < 1e-10, "{name}[{i}] {g} vs {w} ({shape:?}, causal {causal:?}, mask {masked})");
            }
        }
    }

    #[test]
    fn tiles_match_materialised_attention() {
        // Sizes that straddle the tile edges, causal at both alignments, masks, strided q.
        for (lq, lk) in [(1, 1), (3, 5), (70, 70), (65, 130), (130, 65)] {
            let shape = AttentionShape { batch: 2, heads: 2, lq, lk, d: 5, dv: 3 };
            for causal in [None, Some(0), Some(lk as isize - lq as isize)] {
                for masked in [false, true] {
                    check(shape, causal, masked, lq == 70);
                }
            }
        }
    }
}
