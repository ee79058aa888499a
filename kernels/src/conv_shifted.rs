//! Stride-1 convolutions without im2col: the "shifted GEMM" form.
//!
//! With the input zero-padded to `[C, Hp, Wp]` and the output computed over "wide" rows of `Wp`
//! positions (the last `Wp - OW` of each row are junk and dropped), output position
//! `p = y·Wp + x` of kernel tap `(ki, kj)` reads padded input element `p + ki·dh·Wp + kj·dw` of
//! each channel plane. So for a fixed tap the input is an ordinary strided `[C, P]` matrix (row
//! stride `Hp·Wp`, column stride 1) and the convolution is a sum of one GEMM per tap:
//! `out[O, P] = Σ_tap W_tap[O, C] · X_tap[C, P]`.
//!
//! im2col writes `KH·KW` copies of the input (7.2 MB per sample for ResNet's 64-channel 56×56
//! 3×3 conv) and the GEMM then reads them back from memory; here the only copy is the padded
//! input (0.86 MB), and the output is produced in tiles of [`TILE`] positions whose accumulator
//! and input slices stay in L2 across the taps.
//!
//! For f32 at a SIMD level the sum is not run as per-tap GEMMs but as one implicit GEMM over
//! all `(channel, tap)` pairs in register tiles (`conv_direct.rs`); the per-tap GEMMs remain
//! for f64 and the scalar level.
//!
//! The input gradient of a stride-1 convolution is itself such a convolution, of `grad_out`
//! with the kernel flipped and its channel axes swapped, padded by `d·(k-1) - p`; the weight
//! gradient is one GEMM per tap with the contraction over positions.

use std::any::TypeId;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::direct::Tile;
use super::{matmul_into, Geometry, Operand};
use crate::cpu::active_level;
use crate::Float;

/// Output positions per tile: the tile's accumulator (`O/g × TILE`) and each tap's input slice
/// (`C/g × TILE`) stay in L2 (128 KiB each at 64 channels).
const TILE: usize = 512;

/// Fewest channels a tap's GEMM may contract over or produce. Below it the per-tap GEMMs are
/// too thin and im2col's single deep one wins: MNIST's first conv (1 input channel) took
/// 2.5 ms shifted against 0.6 ms with im2col, forward, and 1.5–2.0 against 0.5–0.6 for its
/// input gradient (32 → 1 channel), batch 64, 1 thread (`conv_parts`).
const MIN_CHANNELS: usize = 16;

/// Whether the forward and the weight gradient take the shifted form: stride 1, a kernel
/// larger than 1×1 (pointwise convs need no unrolling anyway), padding no larger than the
/// dilated kernel's reach (so that the input gradient is a convolution with non-negative
/// padding), and wide enough GEMMs.
pub(super) fn applies(g: &Geometry) -> bool {
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    g.stride == [1, 1] && !g.is_pointwise() && ph <= dh * (g.kh - 1) && pw <= dw * (g.kw - 1) && g.cg().min(g.og()) >= MIN_CHANNELS
}

/// Whether the input gradient takes the shifted form: only for padded convolutions. The input
/// gradient of an unpadded one is a "full" convolution, and there im2col measured faster:
/// MNIST's conv2 (32 → 64, 26×26, batch 64) took 10.5–11.2 ms with im2col against 12.9–13.5
/// shifted, 1 thread, while padded 16- and 64-channel convs gained 15–25%.
pub(super) fn applies_to_input_gradient(g: &Geometry) -> bool {
    applies(g) && g.padding != [0, 0]
}

/// The padded, wide-row geometry of one convolution of `c` channels of `h`×`w` planes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shifted {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    oh: usize,
    ow: usize,
}

impl Shifted {
    /// Forward of one group: `c = C/g` inputs, `o = O/g` outputs.
    pub(super) fn forward(g: &Geometry) -> Shifted {
        Shifted {
            c: g.cg(),
            h: g.h,
            w: g.w,
            o: g.og(),
            kh: g.kh,
            kw: g.kw,
            ph: g.padding[0],
            pw: g.padding[1],
            dh: g.dilation[0],
            dw: g.dilation[1],
            oh: g.oh,
            ow: g.ow,
        }
    }

    /// The input gradient of one group as a forward convolution of `grad_out`: `O/g` input
    /// channels of `OH×OW`, `C/g` outputs of `H×W`, padding `d·(k-1) - p`.
    pub(super) fn input_gradient(g: &Geometry) -> Shifted {
        let [dh, dw] = g.dilation;
        Shifted {
            c: g.og(),
            h: g.oh,
            w: g.ow,
            o: g.cg(),
            kh: g.kh,
            kw: g.kw,
            ph: dh * (g.kh - 1) - g.padding[0],
            pw: dw * (g.kw - 1) - g.padding[1],
            dh,
            dw,
            oh: g.h,
            ow: g.w,
        }
    }

    fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    fn plane(&self) -> usize {
        self.hp() * self.wp()
    }
    /// Wide output positions: `OH` rows of `Wp`.
    fn positions(&self) -> usize {
        self.oh * self.wp()
    }
    fn taps(&self) -> usize {
        self.kh * self.kw
    }
    /// Offset of tap `t`'s window in a padded plane.
    fn shift(&self, t: usize) -> usize {
        let (ki, kj) = (t / self.kw, t % self.kw);
        ki * self.dh * self.wp() + kj * self.dw
    }
    /// Padded input length: the last tap of the last wide position reads `(KW-1)·dw` past
    /// the last plane (junk columns only), so that much zero tail follows it.
    fn padded_len(&self) -> usize {
        self.c * self.plane() + (self.kw - 1) * self.dw
    }

    /// `x` (`[c, h, w]`) zero-padded into `xp` (`[c, Hp, Wp]` plus the tail and `extra` more
    /// zeros, for readers that run past the last position).
    fn pad<T: Float>(&self, x: &[T], xp: &mut Vec<T>, extra: usize) {
        let (h, w, wp, ph, pw) = (self.h, self.w, self.wp(), self.ph, self.pw);
        // Not cleared: only the border is zeroed and the interior copied, so each element is
        // written once (zero-filling the whole buffer first doubled the writes).
        xp.resize(self.padded_len() + extra, T::zero());
        let plane = self.plane();
        for ch in 0..self.c {
            let dst = &mut xp[ch * plane..][..plane];
            dst[..ph * wp + pw].fill(T::zero());
            for y in 0..h {
                let row = (y + ph) * wp;
                dst[row + pw..][..w].copy_from_slice(&x[(ch * h + y) * w..][..w]);
                // The right border of this row and the left border of the next, adjacent.
                let gap_end = (row + wp + pw).min(plane);
                dst[row + pw + w..gap_end].fill(T::zero());
            }
            dst[(h + ph) * wp..].fill(T::zero());
        }
        xp[self.c * plane..].fill(T::zero());
    }

    /// Convolution of one group: `x` `[c, h, w]`, `w_taps` `[taps, o, c]` (tap-major), into
    /// `out` `[o, OH, OW]`, each output channel starting from `init(channel)`. Every element of
    /// `out` is written, so it may start uninitialised (no zero-fill of a buffer that is about
    /// to be overwritten: memset was 5% of a ResNet block's training step).
    pub(super) fn run<T: Float>(&self, x: &[T], w_taps: &[T], out: &mut [MaybeUninit<T>], init: impl Fn(usize) -> T + Sync, scratch: &mut Scratch<T>, gemm_threads: usize) {
        if let Some(tile) = register_tile::<T>() {
            return self.run_tiles(tile, x, w_taps, out, init, scratch, gemm_threads);
        }
        let (c, o, ohw) = (self.c, self.o, self.oh * self.ow);
        self.pad(x, &mut scratch.padded, 0);
        let positions = self.positions();
        let mut p0 = 0;
        while p0 < positions {
            let n = TILE.min(positions - p0);
            scratch.acc.resize(o * n, T::zero());
            for t in 0..self.taps() {
                let a = Operand::rows(w_taps, t * o * c, c);
                let b = Operand { data: &scratch.padded[..], offset: p0 + self.shift(t), rs: self.plane() as isize, cs: 1 };
                matmul_into(gemm_threads, o, c, n, a, b, &mut scratch.acc, t > 0);
            }
            self.valid_runs(p0, n, &mut scratch.runs);
            for ch in 0..o {
                write_runs(&scratch.runs, &scratch.acc[ch * n..][..n], &mut out[ch * ohw..][..ohw], init(ch));
            }
            p0 += n;
        }
    }

    /// [`run`](Self::run) for f32 with the CPU's register tile (`conv_direct.rs`): every output
    /// element is summed over all channels and taps in registers and written once. With
    /// `threads > 1` the output channels are shared out in whole tiles.
    #[allow(clippy::too_many_arguments)]
    fn run_tiles<T: Float>(&self, tile: Tile, x: &[T], w_taps: &[T], out: &mut [MaybeUninit<T>], init: impl Fn(usize) -> T + Sync, scratch: &mut Scratch<T>, threads: usize) {
        let (c, o, ohw, taps, positions) = (self.c, self.o, self.oh * self.ow, self.taps(), self.positions());
        // The last tile reads up to `nr - 1` positions past the last one (junk, never written).
        self.pad(x, &mut scratch.padded, tile.nr);
        scratch.offsets.clear();
        scratch.offsets.extend((0..c * taps).map(|k| (k / taps) * self.plane() + self.shift(k % taps)));
        // Packed once per thread and group, not per sample: a scratch lives for one
        // convolution, whose weights stay put meanwhile.
        let key = (w_taps.as_ptr() as usize, w_taps.len());
        if scratch.packed_from != Some(key) {
            tile.pack_weights(as_f32(w_taps), taps, o, c, &mut scratch.packed);
            scratch.packed_from = Some(key);
        }
        let (xp, offsets, packed) = (as_f32(&scratch.padded), &scratch.offsets[..], &scratch.packed[..]);
        let block_len = offsets.len() * tile.ob;
        // Output channels `blk0·ob..` (as many whole tiles as `out_part` holds), every position.
        let fill = |blk0: usize, out_part: &mut [MaybeUninit<T>]| {
            let mut buf = [0.0f32; MAX_TILE];
            let mut runs = Vec::new();
            let blocks = out_part.len().div_ceil(tile.ob * ohw);
            let mut p = 0;
            while p < positions {
                let n = tile.nr.min(positions - p);
                self.valid_runs(p, n, &mut runs);
                for b in 0..blocks {
                    let blk = blk0 + b;
                    // SAFETY: the tile's level is the active one (checked supported); the
                    // padding's extra `nr` zeros keep every read in bounds.
                    unsafe { tile.compute(offsets, xp, p, &packed[blk * block_len..][..block_len], &mut buf) };
                    for r in 0..tile.ob.min(o - blk * tile.ob) {
                        write_runs(&runs, as_t(&buf[r * tile.nr..][..n]), &mut out_part[(b * tile.ob + r) * ohw..][..ohw], init(blk * tile.ob + r));
                    }
                }
                p += n;
            }
        };
        let blocks = o.div_ceil(tile.ob);
        if threads > 1 && blocks > 1 {
            let per_thread = blocks.div_ceil(threads) * tile.ob * ohw;
            out.par_chunks_mut(per_thread).enumerate().for_each(|(i, part)| fill(i * per_thread / (tile.ob * ohw), part));
        } else {
            fill(0, out);
        }
    }

    /// The valid columns among wide positions `p0..p0 + n` as runs `(first position - p0,
    /// index in an output plane, length)`; the junk columns fall between them. Found once per
    /// tile and shared by its channels (dividing by `Wp` per channel and row took 10% of
    /// `bench_all`'s conv rows against the register tiles' 36%, `perf`, 1 thread).
    fn valid_runs(&self, p0: usize, n: usize, runs: &mut Vec<(usize, usize, usize)>) {
        runs.clear();
        let (wp, ow, end) = (self.wp(), self.ow, p0 + n);
        let (mut y, mut x0, mut p) = (p0 / wp, p0 % wp, p0);
        while p < end {
            let run_end = (p - x0 + wp).min(end);
            if x0 < ow {
                runs.push((p - p0, y * ow + x0, ow.min(x0 + run_end - p) - x0));
            }
            (p, y, x0) = (run_end, y + 1, 0);
        }
    }

    /// Adds the weight gradient of one group to `grad_w_taps` (`[taps, c, o]`: tap-major, each
    /// tap's block transposed): `Σ_p X_tap[c, p] · grad_out_wide[o, p]`, with `grad_out`
    /// (`[o, OH, OW]`) laid out wide and transposed once into `scratch.acc` (`[P, o]`, zero in
    /// the junk rows) so every tap's GEMM reads it row-major.
    pub(super) fn weight_gradient<T: Float>(&self, x: &[T], grad_out: &[T], grad_w_taps: &mut [T], scratch: &mut Scratch<T>, gemm_threads: usize) {
        let (c, o, wp, ow, ohw) = (self.c, self.o, self.wp(), self.ow, self.oh * self.ow);
        self.pad(x, &mut scratch.padded, 0);
        let positions = self.positions();
        let go_t = &mut scratch.acc;
        // Not cleared: every element is written below (the valid rows by the transpose, the
        // junk rows with zeros), so zero-filling the whole buffer first was a wasted pass.
        go_t.resize(positions * o, T::zero());
        for y in 0..self.oh {
            // Row `y` of every channel, `[o, OW]`, into wide rows `y·Wp..y·Wp+OW` of `go_t`.
            transpose_into(o, ow, grad_out, y * ow, ohw, &mut go_t[y * wp * o..], o);
            go_t[(y * wp + ow) * o..][..(wp - ow) * o].fill(T::zero());
        }
        for t in 0..self.taps() {
            let a = Operand { data: &scratch.padded[..], offset: self.shift(t), rs: self.plane() as isize, cs: 1 };
            let b = Operand::rows(&go_t[..], 0, o);
            matmul_into(gemm_threads, c, positions, o, a, b, &mut grad_w_taps[t * c * o..][..c * o], true);
        }
    }
}

/// `dst[j·dst_ld + i] = src[offset + i·ld + j]` for `i < rows`, `j < cols`: the AVX tile
/// transpose for f32 (element-by-element scattered writes were 45% of a 16→32-channel conv's
/// weight gradient), a plain loop otherwise.
fn transpose_into<T: Float>(rows: usize, cols: usize, src: &[T], offset: usize, ld: usize, dst: &mut [T], dst_ld: usize) {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked just above), so the slice casts are identities.
        let (src, dst) = unsafe { (std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), src.len()), std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len())) };
        crate::transpose::transpose_f32(rows, cols, src, offset, ld, dst, dst_ld);
        return;
    }
    for i in 0..rows {
        for (j, &v) in src[offset + i * ld..][..cols].iter().enumerate() {
            dst[j * dst_ld + i] = v;
        }
    }
}

/// Writes the `runs` (see [`Shifted::valid_runs`]) of one output channel's `acc` into its plane
/// `out_ch` (`[OH, OW]`), each value plus `bias`.
fn write_runs<T: Float>(runs: &[(usize, usize, usize)], acc: &[T], out_ch: &mut [MaybeUninit<T>], bias: T) {
    for &(from, to, len) in runs {
        for (d, &v) in out_ch[to..][..len].iter_mut().zip(&acc[from..][..len]) {
            *d = MaybeUninit::new(v + bias);
        }
    }
}

/// Per-thread buffers: the padded input and the tile accumulator (or the transposed wide
/// `grad_out` for the weight gradient); for the register tiles, the input offset of each
/// `(channel, tap)` and the packed weights.
pub(super) struct Scratch<T> {
    padded: Vec<T>,
    acc: Vec<T>,
    offsets: Vec<usize>,
    packed: Vec<f32>,
    /// Address and length of the weights `packed` holds.
    packed_from: Option<(usize, usize)>,
    runs: Vec<(usize, usize, usize)>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch { padded: Vec::new(), acc: Vec::new(), offsets: Vec::new(), packed: Vec::new(), packed_from: None, runs: Vec::new() }
    }
}

/// Largest `ob · nr` of any register tile (AVX-512's 8 × 48).
const MAX_TILE: usize = 8 * 48;

/// The register tile for `T` at the active CPU level: only f32 has tiles, and only at a SIMD
/// level (the scalar level runs the per-tap GEMMs).
fn register_tile<T: 'static>() -> Option<Tile> {
    let tile = if TypeId::of::<T>() == TypeId::of::<f32>() { Tile::for_level(active_level()) } else { None };
    debug_assert!(tile.is_none_or(|t| t.ob * t.nr <= MAX_TILE));
    tile
}

/// `s` as f32, for a `T` the caller knows is f32.
fn as_f32<T: 'static>(s: &[T]) -> &[f32] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "register tiles are f32 only");
    // SAFETY: T is f32 (asserted just above), so the cast is an identity.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
}

/// `s` as `T`, for a `T` the caller knows is f32.
fn as_t<T: 'static>(s: &[f32]) -> &[T] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "register tiles are f32 only");
    // SAFETY: T is f32 (asserted just above), so the cast is an identity.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<T>(), s.len()) }
}

/// A weight-sized buffer with element `(group, o, c, tap)` moved from index `from(..)` of
/// `src` to index `to(..)` of the result: the three layouts below differ only in these maps.
fn relayout<T: Float>(g: &Geometry, src: &[T], from: impl Fn(usize, usize, usize, usize) -> usize, to: impl Fn(usize, usize, usize, usize) -> usize) -> Vec<T> {
    let (og, cg, taps) = (g.og(), g.cg(), g.kh * g.kw);
    let mut out = vec![T::zero(); src.len()];
    for grp in 0..g.groups {
        for o in 0..og {
            for c in 0..cg {
                for t in 0..taps {
                    out[to(grp, o, c, t)] = src[from(grp, o, c, t)];
                }
            }
        }
    }
    out
}

/// PyTorch's weight layout `[O, C/g, KH, KW]`.
fn weight_index(g: &Geometry) -> impl Fn(usize, usize, usize, usize) -> usize {
    let (og, cg, taps) = (g.og(), g.cg(), g.kh * g.kw);
    move |grp, o, c, t| ((grp * og + o) * cg + c) * taps + t
}

/// `w` `[O, C/g, KH, KW]` as `[groups, taps, O/g, C/g]`: each tap's `[O/g, C/g]` block
/// row-major, the forward GEMM's A operand.
pub(super) fn forward_taps<T: Float>(g: &Geometry, w: &[T]) -> Vec<T> {
    let (og, cg, taps) = (g.og(), g.cg(), g.kh * g.kw);
    relayout(g, w, weight_index(g), |grp, o, c, t| ((grp * taps + t) * og + o) * cg + c)
}

/// `w` as the input gradient's kernel, `[groups, taps, C/g, O/g]`: flipped in space (tap `t`
/// of the gradient is tap `taps-1-t` of the forward) with the channel axes swapped.
pub(super) fn input_gradient_taps<T: Float>(g: &Geometry, w: &[T]) -> Vec<T> {
    let (og, cg, taps) = (g.og(), g.cg(), g.kh * g.kw);
    relayout(g, w, weight_index(g), |grp, o, c, t| ((grp * taps + (taps - 1 - t)) * cg + c) * og + o)
}

/// The weight gradient from its tap-major, transposed form `[groups, taps, C/g, O/g]` to
/// `[O, C/g, KH, KW]`.
pub(super) fn weight_from_taps<T: Float>(g: &Geometry, taps_t: &[T]) -> Vec<T> {
    let (og, cg, taps) = (g.og(), g.cg(), g.kh * g.kw);
    relayout(g, taps_t, |grp, o, c, t| ((grp * taps + t) * cg + c) * og + o, weight_index(g))
}
