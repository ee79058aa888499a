//! 2-D convolution (NCHW, PyTorch semantics) by im2col + GEMM, or, for stride-1 convolutions
//! with enough channels, by one GEMM per kernel tap without im2col (`conv_shifted.rs`).
//!
//! For one sample and one group, im2col unrolls the input into a matrix `col` of shape
//! `[C/g · KH · KW, OH · OW]` (zeros where the window hangs over the padding), so that
//!
//! * forward:          `out[g]  = W[g] · col`                    (`[O/g, OH·OW]`)
//! * backward (input): `col     = W[g]ᵀ · grad_out[g]`, then col2im scatters `col` back
//! * backward (weight): `gW[g]ᵀ += col · grad_out[g]ᵀ`, summed over the batch.
//!
//! Transposes are strided views (`matmul` copies one into row-major where `gemm` would read it
//! slowly). A 1×1 kernel with stride 1 and no padding needs
//! no unrolling at all: `col` is the input itself. Work is split across the batch with rayon
//! when there is enough of it; otherwise (e.g. batch 1) gemm threads each product instead.

use crate::gemm::matmul_with_threads;
use crate::{threads, Float};
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[path = "conv_shifted.rs"]
mod shifted;
#[path = "conv_direct.rs"]
mod direct;

/// Convolution hyper-parameters, as in `torch.nn.functional.conv2d`; `[height, width]` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Output `(OH, OW)` for an `h`×`w` input and a `kh`×`kw` kernel, or `None` if a size,
    /// stride, dilation or `groups` is zero or the (dilated) kernel exceeds the padded input.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        if self.groups == 0 {
            return None;
        }
        let oh = conv_out_len(h, kh, self.stride[0], self.padding[0], self.dilation[0])?;
        let ow = conv_out_len(w, kw, self.stride[1], self.padding[1], self.dilation[1])?;
        Some((oh, ow))
    }
}

/// floor((input + 2·pad − dil·(kernel−1) − 1) / stride) + 1, or `None` when invalid or empty.
fn conv_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> Option<usize> {
    if input == 0 || kernel == 0 || stride == 0 || dil == 0 {
        return None;
    }
    let span = dil.checked_mul(kernel - 1)?.checked_add(1)?;
    let padded = input.checked_add(pad.checked_mul(2)?)?;
    padded.checked_sub(span).map(|room| room / stride + 1)
}

/// All the sizes of one convolution, validated once.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    groups: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    /// Panics with a message naming the mismatch when the shapes and parameters disagree.
    fn new(x_shape: [usize; 4], w_shape: [usize; 4], p: &Conv2dParams) -> Self {
        let [n, c, h, w] = x_shape;
        let [o, cg, kh, kw] = w_shape;
        let g = p.groups;
        assert!(g > 0, "conv2d: groups must be positive");
        assert!(
            c % g == 0 && o % g == 0,
            "conv2d: channels in ({c}) and out ({o}) must be divisible by groups ({g})"
        );
        assert_eq!(cg, c / g, "conv2d: weight {w_shape:?} expects {} input channels, input {x_shape:?} has {c} in {g} group(s)", cg * g);
        let (oh, ow) = p.output_size(h, w, kh, kw).unwrap_or_else(|| {
            panic!("conv2d: no output for input {x_shape:?}, weight {w_shape:?}, {p:?}")
        });
        Geometry {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            oh,
            ow,
            groups: g,
            stride: p.stride,
            padding: p.padding,
            dilation: p.dilation,
        }
    }

    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn og(&self) -> usize {
        self.o / self.groups
    }
    fn in_plane(&self) -> usize {
        self.h * self.w
    }
    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of `col`: one per (input channel, kernel row, kernel column) of a group.
    fn col_rows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn x_len(&self) -> usize {
        self.n * self.c * self.in_plane()
    }
    fn w_len(&self) -> usize {
        self.o * self.col_rows()
    }
    fn out_len(&self) -> usize {
        self.n * self.o * self.out_plane()
    }
    /// Multiply-adds of the whole convolution, to decide on threading.
    fn work(&self) -> usize {
        self.out_len().saturating_mul(self.col_rows())
    }
    /// Whether `col` equals the input (1×1 kernel, stride 1, no padding): no unrolling needed.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }
    /// Whether to split the batch across threads (each gemm single-threaded) rather than let
    /// gemm thread each product: the batch split needs no synchronisation inside a sample but
    /// only balances when there are at least as many samples as threads.
    fn split_batch(&self) -> bool {
        self.n >= threads::num_threads() && threads::worth_parallelising(self.work())
    }
    /// Threads each gemm may use: one when the batch is already split.
    fn gemm_threads(&self) -> usize {
        if self.split_batch() {
            1
        } else {
            threads::num_threads()
        }
    }
}

/// Output positions `o` along one axis whose input index `o·stride + offset` lies in
/// `0..in_len`, as a range `lo..hi` of `0..out_len` (the valid positions are contiguous).
fn valid_range(out_len: usize, in_len: usize, stride: usize, offset: isize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + s - 1) / s
    };
    let room = in_len as isize - offset; // o·s < room
    let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
    let lo = (lo as usize).min(out_len);
    let hi = (hi as usize).clamp(lo, out_len);
    (lo, hi)
}

/// Calls `f(col_row, input_row, out_row, lo, hi, first)` for every (kernel tap, output row)
/// pair of one group: `col_row` is the `col` row index, `input_row` the input row index within
/// the group's channels (`None` when it falls in the padding), `out_row` the output row, and
/// output columns `lo..hi` read input columns `first, first + stride_w, ...` (the rest of the
/// output row reads padding).
///
/// Shared by im2col and col2im so their index arithmetic cannot drift apart.
fn for_each_tap(g: &Geometry, mut f: impl FnMut(usize, Option<usize>, usize, usize, usize, usize)) {
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    for ch in 0..g.cg() {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = (ch * g.kh + ki) * g.kw + kj;
                let off_w = (kj * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(g.ow, g.w, sw, off_w);
                // Unused when lo == hi, where it might point past the row.
                let first = if lo < hi {
                    (lo as isize * sw as isize + off_w) as usize
                } else {
                    0
                };
                for oy in 0..g.oh {
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    let in_row = (0..g.h as isize)
                        .contains(&iy)
                        .then(|| ch * g.h + iy as usize);
                    f(row, in_row, oy, lo, hi, first);
                }
            }
        }
    }
}

/// Unrolls one group of one sample (`x`: `[C/g, H, W]`) into `col` (`[C/g·KH·KW, OH·OW]`).
fn im2col<T: Float>(g: &Geometry, x: &[T], col: &mut [T]) {
    let (w, ow, ohw, sw) = (g.w, g.ow, g.out_plane(), g.stride[1]);
    for_each_tap(g, |row, in_row, oy, lo, hi, first| {
        let dst = &mut col[row * ohw + oy * ow..][..ow];
        let Some(iy) = in_row else {
            dst.fill(T::zero());
            return;
        };
        let src = &x[iy * w..][..w];
        dst[..lo].fill(T::zero());
        dst[hi..].fill(T::zero());
        let dst = &mut dst[lo..hi];
        if sw == 1 {
            dst.copy_from_slice(&src[first..first + dst.len()]);
        } else {
            for (d, s) in dst.iter_mut().zip(src[first..].iter().step_by(sw)) {
                *d = *s;
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds every `col` entry back onto the input cell it came from.
fn col2im<T: Float>(g: &Geometry, col: &[T], x: &mut [T]) {
    let (w, ow, ohw, sw) = (g.w, g.ow, g.out_plane(), g.stride[1]);
    for_each_tap(g, |row, in_row, oy, lo, hi, first| {
        let Some(iy) = in_row else { return };
        let src = &col[row * ohw + oy * ow..][lo..hi];
        let dst = &mut x[iy * w..][..w];
        if sw == 1 {
            for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                *d = *d + *s;
            }
        } else {
            for (d, s) in dst[first..].iter_mut().step_by(sw).zip(src) {
                *d = *d + *s;
            }
        }
    });
}

/// A strided matrix operand: element (i, j) of the matrix is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Operand<'a, T> {
    data: &'a [T],
    offset: usize,
    rs: isize,
    cs: isize,
}

impl<'a, T> Operand<'a, T> {
    /// A row-major matrix with `cols` columns starting at `data[offset]`.
    fn rows(data: &'a [T], offset: usize, cols: usize) -> Self {
        Operand {
            data,
            offset,
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose, as a view: the same elements with the strides swapped.
    fn t(self) -> Self {
        Operand {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `c` (row-major `m`×`n`) (+)= `a` (`m`×`k`) · `b` (`k`×`n`).
#[allow(clippy::too_many_arguments)]
fn matmul_into<T: Float>(
    threads: usize,
    m: usize,
    k: usize,
    n: usize,
    a: Operand<T>,
    b: Operand<T>,
    c: &mut [T],
    accumulate: bool,
) {
    let (a_data, b_data, c_rs) = (a.data, b.data, n as isize);
    #[rustfmt::skip]
    matmul_with_threads(
        threads, m, k, n,
        a_data, a.offset, a.rs, a.cs,
        b_data, b.offset, b.rs, b.cs,
        c, c_rs, 1,
        accumulate,
    );
}

/// `x` as the `col` matrix of one group: the input itself when pointwise, else unrolled into
/// `scratch`.
fn col_matrix<'a, T: Float>(g: &Geometry, x_group: &'a [T], scratch: &'a mut Vec<T>) -> &'a [T] {
    if g.is_pointwise() {
        return x_group;
    }
    scratch.resize(g.col_rows() * g.out_plane(), T::zero());
    im2col(g, x_group, scratch);
    scratch
}

/// Conv2d forward: `x` `[N, C, H, W]`, `w` `[O, C/groups, KH, KW]`, optional `bias` `[O]`;
/// returns the contiguous output `[N, O, OH, OW]`. All inputs contiguous.
///
/// # Panics
/// If the shapes disagree with each other, with the slices, or with `p` (see
/// [`Conv2dParams::output_size`]).
pub fn conv2d_forward<T: Float>(
    x: &[T],
    x_shape: [usize; 4],
    w: &[T],
    w_shape: [usize; 4],
    bias: Option<&[T]>,
    p: &Conv2dParams,
) -> Vec<T> {
    conv2d_forward_then(x, x_shape, w, w_shape, bias, p, |_, _| {})
}

/// [`conv2d_forward`], then `then(s, out_s)` on each sample's output `[O, OH, OW]` right after
/// it is computed, on the same thread and while it is still in cache: the place for a fused
/// elementwise epilogue (batch norm, activation), which then costs no extra pass over memory
/// and no extra split across threads.
///
/// # Panics
/// As [`conv2d_forward`].
pub fn conv2d_forward_then<T: Float, F: Fn(usize, &mut [T]) + Sync + Send>(
    x: &[T],
    x_shape: [usize; 4],
    w: &[T],
    w_shape: [usize; 4],
    bias: Option<&[T]>,
    p: &Conv2dParams,
    then: F,
) -> Vec<T> {
    let g = Geometry::new(x_shape, w_shape, p);
    assert_eq!(
        x.len(),
        g.x_len(),
        "conv2d_forward: input length vs shape {x_shape:?}"
    );
    assert_eq!(
        w.len(),
        g.w_len(),
        "conv2d_forward: weight length vs shape {w_shape:?}"
    );
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            g.o,
            "conv2d_forward: bias length vs {} output channels",
            g.o
        );
    }
    let gemm_threads = g.gemm_threads();
    let sample_work = if g.split_batch() { g.work() } else { 0 };
    if shifted::applies(&g) {
        let w_taps = shifted::forward_taps(&g, w);
        let sh = shifted::Shifted::forward(&g);
        let (og, in_len, group_w) = (g.og(), g.cg() * g.in_plane(), g.og() * g.col_rows());
        return filled_by_samples(g.out_len(), g.o * g.out_plane(), sample_work, shifted::Scratch::default, |scratch, s, out_s| {
            let x_s = &x[s * g.c * g.in_plane()..][..g.c * g.in_plane()];
            for (grp, out_g) in out_s.chunks_mut(og * g.out_plane()).enumerate() {
                let bias_of = |ch: usize| bias.map_or(T::zero(), |b| b[grp * og + ch]);
                sh.run(&x_s[grp * in_len..][..in_len], &w_taps[grp * group_w..][..group_w], out_g, bias_of, scratch, gemm_threads);
            }
            // SAFETY: `run` wrote every element of every group of this sample.
            then(s, unsafe { assume_init_mut(out_s) });
        });
    }
    let mut out = vec![T::zero(); g.out_len()];
    threads::for_each_chunk_mut_init(
        &mut out,
        g.o * g.out_plane(),
        sample_work,
        Vec::new,
        |col, s, out_s| {
            forward_sample(
                &g,
                &x[s * g.c * g.in_plane()..][..g.c * g.in_plane()],
                w,
                bias,
                out_s,
                col,
                gemm_threads,
            );
            then(s, out_s);
        },
    );
    out
}

fn forward_sample<T: Float>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    scratch: &mut Vec<T>,
    gemm_threads: usize,
) {
    let (k, ohw, og, in_len) = (g.col_rows(), g.out_plane(), g.og(), g.cg() * g.in_plane());
    for grp in 0..g.groups {
        let col = col_matrix(g, &x[grp * in_len..][..in_len], scratch);
        let col = Operand::rows(col, 0, ohw);
        let w_g = Operand::rows(w, grp * og * k, k);
        let out_g = &mut out[grp * og * ohw..][..og * ohw];
        // out_g [og, ohw] = W_g [og, k] · col [k, ohw]
        matmul_into(gemm_threads, og, k, ohw, w_g, col, out_g, false);
    }
    if let Some(b) = bias {
        for (plane, &b) in out.chunks_mut(ohw).zip(b) {
            plane.iter_mut().for_each(|v| *v = *v + b);
        }
    }
}

/// Gradient of conv2d with respect to its input: `grad_out` `[N, O, OH, OW]` and `w`
/// `[O, C/groups, KH, KW]` give `[N, C, H, W]`.
///
/// # Panics
/// As [`conv2d_forward`].
pub fn conv2d_backward_input<T: Float>(
    grad_out: &[T],
    w: &[T],
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    p: &Conv2dParams,
) -> Vec<T> {
    let g = Geometry::new(x_shape, w_shape, p);
    assert_eq!(
        grad_out.len(),
        g.out_len(),
        "conv2d_backward_input: grad_out length"
    );
    assert_eq!(
        w.len(),
        g.w_len(),
        "conv2d_backward_input: weight length vs shape {w_shape:?}"
    );
    let gemm_threads = g.gemm_threads();
    let sample_work = if g.split_batch() { g.work() } else { 0 };
    let go_len = g.o * g.out_plane();
    if shifted::applies_to_input_gradient(&g) {
        let w_taps = shifted::input_gradient_taps(&g, w);
        let sh = shifted::Shifted::input_gradient(&g);
        let (og_len, in_len, group_w) = (g.og() * g.out_plane(), g.cg() * g.in_plane(), g.og() * g.col_rows());
        return filled_by_samples(g.x_len(), g.c * g.in_plane(), sample_work, shifted::Scratch::default, |scratch, s, gx_s| {
            let go_s = &grad_out[s * go_len..][..go_len];
            for (grp, gx_g) in gx_s.chunks_mut(in_len).enumerate() {
                sh.run(&go_s[grp * og_len..][..og_len], &w_taps[grp * group_w..][..group_w], gx_g, |_| T::zero(), scratch, gemm_threads);
            }
        });
    }
    let mut grad_x = vec![T::zero(); g.x_len()];
    threads::for_each_chunk_mut_init(
        &mut grad_x,
        g.c * g.in_plane(),
        sample_work,
        Vec::new,
        |col, s, gx_s| {
            backward_input_sample(
                &g,
                &grad_out[s * go_len..][..go_len],
                w,
                gx_s,
                col,
                gemm_threads,
            );
        },
    );
    grad_x
}

fn backward_input_sample<T: Float>(
    g: &Geometry,
    grad_out: &[T],
    w: &[T],
    grad_x: &mut [T],
    scratch: &mut Vec<T>,
    gemm_threads: usize,
) {
    let (k, ohw, og, in_len) = (g.col_rows(), g.out_plane(), g.og(), g.cg() * g.in_plane());
    for grp in 0..g.groups {
        let go_g = Operand::rows(grad_out, grp * og * ohw, ohw);
        let gx_g = &mut grad_x[grp * in_len..][..in_len];
        // col [k, ohw] = W_gᵀ [k, og] · grad_out_g [og, ohw]
        let w_g_t = Operand::rows(w, grp * og * k, k).t();
        if g.is_pointwise() {
            // col is the input gradient itself: write the product straight into it.
            matmul_into(gemm_threads, k, og, ohw, w_g_t, go_g, gx_g, false);
        } else {
            scratch.resize(k * ohw, T::zero());
            matmul_into(gemm_threads, k, og, ohw, w_g_t, go_g, scratch, false);
            col2im(g, scratch, gx_g);
        }
    }
}

/// Gradient of conv2d with respect to its weight: `grad_out` `[N, O, OH, OW]` and `x`
/// `[N, C, H, W]` give `[O, C/groups, KH, KW]`, summed over the batch.
///
/// # Panics
/// As [`conv2d_forward`].
pub fn conv2d_backward_weight<T: Float>(
    grad_out: &[T],
    x: &[T],
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    p: &Conv2dParams,
) -> Vec<T> {
    let g = Geometry::new(x_shape, w_shape, p);
    assert_eq!(
        grad_out.len(),
        g.out_len(),
        "conv2d_backward_weight: grad_out length"
    );
    assert_eq!(
        x.len(),
        g.x_len(),
        "conv2d_backward_weight: input length vs shape {x_shape:?}"
    );
    let ranges = if g.split_batch() {
        threads::split_range(g.n, g.work())
    } else {
        Vec::new()
    };
    if shifted::applies(&g) {
        let sh = shifted::Shifted::forward(&g);
        let (og_len, in_len, group_w) = (g.og() * g.out_plane(), g.cg() * g.in_plane(), g.og() * g.col_rows());
        let sample = |s: usize, part: &mut [T], scratch: &mut shifted::Scratch<T>, gemm_threads: usize| {
            let x_s = &x[s * g.c * g.in_plane()..][..g.c * g.in_plane()];
            let go_s = &grad_out[s * g.o * g.out_plane()..][..g.o * g.out_plane()];
            for (grp, part_g) in part.chunks_mut(group_w).enumerate() {
                sh.weight_gradient(&x_s[grp * in_len..][..in_len], &go_s[grp * og_len..][..og_len], part_g, scratch, gemm_threads);
            }
        };
        let taps_t = if ranges.len() <= 1 {
            let mut sum = vec![T::zero(); g.w_len()];
            let mut scratch = shifted::Scratch::default();
            (0..g.n).for_each(|s| sample(s, &mut sum, &mut scratch, threads::num_threads()));
            sum
        } else {
            let partials: Vec<Vec<T>> = ranges
                .into_par_iter()
                .map(|range| {
                    let mut part = vec![T::zero(); g.w_len()];
                    let mut scratch = shifted::Scratch::default();
                    range.for_each(|s| sample(s, &mut part, &mut scratch, 1));
                    part
                })
                .collect();
            add_partials(partials)
        };
        return shifted::weight_from_taps(&g, &taps_t);
    }
    // Sums are kept transposed, `[groups, C/g·KH·KW, O/g]`: see `backward_weight_sample`.
    let grad_w_t = if ranges.len() <= 1 {
        let mut grad_w_t = vec![T::zero(); g.w_len()];
        let mut scratch = Vec::new();
        for s in 0..g.n {
            backward_weight_sample(&g, grad_out, x, s, &mut grad_w_t, &mut scratch, threads::num_threads());
        }
        grad_w_t
    } else {
        // Each thread sums its own run of samples; the partial sums are added at the end (the
        // weight is small next to the activations, so the extra copies are cheap).
        let partials: Vec<Vec<T>> = ranges
            .into_par_iter()
            .map(|range| {
                let mut part = vec![T::zero(); g.w_len()];
                let mut scratch = Vec::new();
                for s in range {
                    backward_weight_sample(&g, grad_out, x, s, &mut part, &mut scratch, 1);
                }
                part
            })
            .collect();
        add_partials(partials)
    };
    let (k, og) = (g.col_rows(), g.og());
    let mut grad_w = vec![T::zero(); g.w_len()];
    for (gw, gwt) in grad_w.chunks_mut(og * k).zip(grad_w_t.chunks(k * og)) {
        for (o, row) in gw.chunks_mut(k).enumerate() {
            row.iter_mut().zip(gwt[o..].iter().step_by(og)).for_each(|(d, &v)| *d = v);
        }
    }
    grad_w
}

/// A new vector of `len` elements written sample by sample: `fill(scratch, s, piece)` must
/// write every element of sample `s`'s `per_sample`-element piece. It is not zero-filled first.
fn filled_by_samples<T: Float, S>(
    len: usize,
    per_sample: usize,
    work: usize,
    scratch: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    threads::for_each_chunk_mut_init(&mut out.spare_capacity_mut()[..len], per_sample, work, scratch, fill);
    // SAFETY: the pieces cover `0..len` and `fill` wrote every element of each.
    unsafe { out.set_len(len) };
    out
}

/// `piece` as initialised values.
///
/// # Safety
/// Every element of `piece` must have been written.
unsafe fn assume_init_mut<T>(piece: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller vouches that all are written.
    unsafe { &mut *(piece as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// The sum of per-thread partial sums.
fn add_partials<T: Float>(partials: Vec<Vec<T>>) -> Vec<T> {
    let mut parts = partials.into_iter();
    let mut sum = parts.next().expect("at least one partial sum");
    for part in parts {
        sum.iter_mut().zip(&part).for_each(|(a, &b)| *a = *a + b);
    }
    sum
}

/// Adds sample `s`'s contribution to `grad_w_t`, the weight gradient transposed per group
/// (`[groups, C/g·KH·KW, O/g]`).
///
/// Computed as `gWᵀ += col · grad_outᵀ` rather than `gW += grad_out · colᵀ`: the contraction
/// runs over output pixels, which are contiguous in both `col` and `grad_out`, so one of them
/// has to be transposed for the GEMM (`matmul` does it), and `grad_out` (O/g rows) is the
/// smaller of the two (`col` has C/g·KH·KW rows: 9× more for a 3×3 kernel with C = O).
fn backward_weight_sample<T: Float>(
    g: &Geometry,
    grad_out: &[T],
    x: &[T],
    s: usize,
    grad_w_t: &mut [T],
    scratch: &mut Vec<T>,
    gemm_threads: usize,
) {
    let (k, ohw, og, in_len) = (g.col_rows(), g.out_plane(), g.og(), g.cg() * g.in_plane());
    let go_s = &grad_out[s * g.o * ohw..][..g.o * ohw];
    let x_s = &x[s * g.c * g.in_plane()..][..g.c * g.in_plane()];
    for grp in 0..g.groups {
        let col = Operand::rows(col_matrix(g, &x_s[grp * in_len..][..in_len], scratch), 0, ohw);
        let go_g_t = Operand::rows(go_s, grp * og * ohw, ohw).t();
        let gwt_g = &mut grad_w_t[grp * k * og..][..k * og];
        // gW_gᵀ [k, og] += col [k, ohw] · grad_out_gᵀ [ohw, og]
        matmul_into(gemm_threads, k, ohw, og, col, go_g_t, gwt_g, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::test_support::{assert_close, Rng};

    /// Input coordinate along one axis for output `o` and tap `k`, if inside the input.
    fn tap(o: usize, k: usize, stride: usize, pad: usize, dil: usize, len: usize) -> Option<usize> {
        let i = (o * stride + k * dil) as isize - pad as isize;
        (0..len as isize).contains(&i).then_some(i as usize)
    }

    /// Calls `f(x_index, w_index, out_index)` for every multiply-add of a direct convolution.
    fn for_each_mac(g: &Geometry, mut f: impl FnMut(usize, usize, usize)) {
        let (cg, og) = (g.cg(), g.og());
        for n in 0..g.n {
            for o in 0..g.o {
                let grp = o / og;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let out_i = ((n * g.o + o) * g.oh + oy) * g.ow + ox;
                        for ci in 0..cg {
                            let c = grp * cg + ci;
                            for ki in 0..g.kh {
                                let Some(iy) =
                                    tap(oy, ki, g.stride[0], g.padding[0], g.dilation[0], g.h)
                                else {
                                    continue;
                                };
                                for kj in 0..g.kw {
                                    let Some(ix) =
                                        tap(ox, kj, g.stride[1], g.padding[1], g.dilation[1], g.w)
                                    else {
                                        continue;
                                    };
                                    let x_i = ((n * g.c + c) * g.h + iy) * g.w + ix;
                                    let w_i = ((o * cg + ci) * g.kh + ki) * g.kw + kj;
                                    f(x_i, w_i, out_i);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
        v.iter().map(|&x| x.to_f64()).collect()
    }

    struct Case {
        x_shape: [usize; 4],
        w_shape: [usize; 4],
        p: Conv2dParams,
    }

    fn random_case(rng: &mut Rng) -> Case {
        let (cg, og) = (1 + rng.below(3), 1 + rng.below(3));
        let (sh, sw) = (1 + rng.below(3), 1 + rng.below(3));
        random_case_with(rng, cg, og, sh, sw)
    }

    /// A random case with `cg` input and `og` output channels per group.
    fn random_case_with(rng: &mut Rng, cg: usize, og: usize, stride_h: usize, stride_w: usize) -> Case {
        let groups = [1, 1, 2, 3][rng.below(4)];
        let kh = 1 + rng.below(3);
        let kw = 1 + rng.below(3);
        let p = Conv2dParams {
            stride: [stride_h, stride_w],
            padding: [rng.below(3), rng.below(3)],
            dilation: [1 + rng.below(2), 1 + rng.below(2)],
            groups,
        };
        let x_shape = [
            1 + rng.below(3),
            cg * groups,
            1 + rng.below(9),
            1 + rng.below(9),
        ];
        Case {
            x_shape,
            w_shape: [og * groups, cg, kh, kw],
            p,
        }
    }

    fn check_case<T: Float>(rng: &mut Rng, case: &Case, tol: f64) {
        let Case {
            x_shape,
            w_shape,
            p,
        } = case;
        let (x_shape, w_shape) = (*x_shape, *w_shape);
        let g = Geometry::new(x_shape, w_shape, p);
        let x: Vec<T> = rng.vec(g.x_len());
        let w: Vec<T> = rng.vec(g.w_len());
        let bias: Vec<T> = rng.vec(g.o);
        let go: Vec<T> = rng.vec(g.out_len());
        let (xf, wf, gof) = (to_f64(&x), to_f64(&w), to_f64(&go));

        let mut want_out = vec![0.0; g.out_len()];
        let mut want_gx = vec![0.0; g.x_len()];
        let mut want_gw = vec![0.0; g.w_len()];
        for_each_mac(&g, |xi, wi, oi| {
            want_out[oi] += xf[xi] * wf[wi];
            want_gx[xi] += gof[oi] * wf[wi];
            want_gw[wi] += gof[oi] * xf[xi];
        });
        let plane = g.out_plane();
        for (i, v) in want_out.iter_mut().enumerate() {
            *v += bias[(i / plane) % g.o].to_f64();
        }

        let what = format!("x {x_shape:?} w {w_shape:?} {p:?}");
        let out = conv2d_forward(&x, x_shape, &w, w_shape, Some(&bias), p);
        assert_close(&out, &want_out, tol, &format!("forward {what}"));
        let gx = conv2d_backward_input(&go, &w, x_shape, w_shape, p);
        assert_close(&gx, &want_gx, tol, &format!("backward_input {what}"));
        let gw = conv2d_backward_weight(&go, &x, x_shape, w_shape, p);
        assert_close(&gw, &want_gw, tol, &format!("backward_weight {what}"));
    }

    fn check_random<T: Float>(seed: u64, tol: f64) {
        let mut rng = Rng::new(seed);
        let mut checked = 0;
        while checked < 150 {
            let case = random_case(&mut rng);
            let [_, _, kh, kw] = case.w_shape;
            if case
                .p
                .output_size(case.x_shape[2], case.x_shape[3], kh, kw)
                .is_none()
            {
                continue;
            }
            check_case::<T>(&mut rng, &case, tol);
            checked += 1;
        }
    }

    /// Random stride-1 cases wide enough (16 channels per group) for the im2col-free path.
    fn check_random_shifted<T: Float>(seed: u64, tol: f64) {
        let mut rng = Rng::new(seed);
        let mut checked = 0;
        while checked < 40 {
            let case = random_case_with(&mut rng, 16, 16, 1, 1);
            let [_, _, kh, kw] = case.w_shape;
            if case.p.output_size(case.x_shape[2], case.x_shape[3], kh, kw).is_none() {
                continue;
            }
            let g = Geometry::new(case.x_shape, case.w_shape, &case.p);
            if !shifted::applies(&g) {
                continue;
            }
            check_case::<T>(&mut rng, &case, tol);
            checked += 1;
        }
    }

    #[test]
    fn conv_random_shifted() {
        check_random_shifted::<f64>(24, 1e-12);
        check_random_shifted::<f32>(25, 1e-4);
    }

    #[test]
    fn conv_random_f32() {
        check_random::<f32>(21, 1e-5);
    }

    #[test]
    fn conv_random_f64() {
        check_random::<f64>(22, 1e-12);
    }

    #[test]
    fn conv_special_shapes() {
        let mut rng = Rng::new(23);
        let p = |stride, padding, dilation, groups| Conv2dParams {
            stride,
            padding,
            dilation,
            groups,
        };
        let cases = [
            // pointwise (no im2col), and 1×1 with stride (im2col needed)
            Case {
                x_shape: [2, 6, 5, 7],
                w_shape: [4, 6, 1, 1],
                p: p([1, 1], [0, 0], [1, 1], 1),
            },
            Case {
                x_shape: [2, 6, 5, 7],
                w_shape: [4, 3, 1, 1],
                p: p([2, 1], [0, 0], [1, 1], 2),
            },
            // depthwise
            Case {
                x_shape: [3, 4, 8, 8],
                w_shape: [8, 1, 3, 3],
                p: p([1, 1], [1, 1], [1, 1], 4),
            },
            // kernel covers the whole padded input
            Case {
                x_shape: [1, 2, 3, 3],
                w_shape: [2, 2, 5, 5],
                p: p([1, 1], [1, 1], [1, 1], 1),
            },
            // large enough to go down the threaded paths (batch split and gemm threads)
            Case {
                x_shape: [4, 8, 20, 20],
                w_shape: [16, 8, 3, 3],
                p: p([1, 1], [1, 1], [1, 1], 1),
            },
            Case {
                x_shape: [1, 16, 24, 24],
                w_shape: [32, 8, 3, 3],
                p: p([2, 2], [1, 1], [2, 2], 2),
            },
            // im2col-free (shifted) path over several output tiles: 30 wide rows of 32 and
            // 27 of 35 positions, more than one 512-position tile; dilated, uneven padding,
            // grouped.
            Case {
                x_shape: [2, 16, 30, 30],
                w_shape: [16, 16, 3, 3],
                p: p([1, 1], [1, 1], [1, 1], 1),
            },
            Case {
                x_shape: [2, 32, 31, 33],
                w_shape: [32, 16, 3, 2],
                p: p([1, 1], [0, 1], [2, 2], 2),
            },
            // One sample: the register tiles share out the output channels across threads;
            // 20 channels leave a partial last tile at every tile height (8 and 6).
            Case {
                x_shape: [1, 16, 30, 30],
                w_shape: [20, 16, 3, 3],
                p: p([1, 1], [1, 1], [1, 1], 1),
            },
        ];
        for case in &cases {
            let g = Geometry::new(case.x_shape, case.w_shape, &case.p);
            if case.x_shape[2] >= 30 {
                assert!(shifted::applies(&g) && shifted::applies_to_input_gradient(&g), "the shifted path should take {:?}", case.p);
            }
            check_case::<f64>(&mut rng, case, 1e-12);
            // The large cases sum over ~2000 products: f32 rounding grows with that.
            check_case::<f32>(&mut rng, case, 1e-4);
        }
    }

    /// `then` sees every sample's finished output exactly once, and what it writes is returned.
    #[test]
    fn forward_then_runs_once_per_sample_on_the_finished_output() {
        let mut rng = Rng::new(21);
        let (x_shape, w_shape) = ([5, 3, 7, 6], [4, 3, 3, 3]);
        let p = Conv2dParams { padding: [1, 1], ..Default::default() };
        let x: Vec<f32> = rng.vec(5 * 3 * 7 * 6);
        let w: Vec<f32> = rng.vec(4 * 3 * 3 * 3);
        let plain = conv2d_forward(&x, x_shape, &w, w_shape, None, &p);
        let per_sample = plain.len() / 5;
        let seen = std::sync::Mutex::new(Vec::new());
        let out = conv2d_forward_then(&x, x_shape, &w, w_shape, None, &p, |s, out_s: &mut [f32]| {
            assert_eq!(out_s, &plain[s * per_sample..][..per_sample], "sample {s} before the epilogue");
            out_s.iter_mut().for_each(|v| *v = v.max(0.0) * 2.0);
            seen.lock().unwrap().push(s);
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert!(out.iter().zip(&plain).all(|(o, v)| *o == v.max(0.0) * 2.0));
    }

    #[test]
    fn conv_empty_batch() {
        let p = Conv2dParams::default();
        let out = conv2d_forward::<f32>(&[], [0, 2, 4, 4], &[0.0; 18], [1, 2, 3, 3], None, &p);
        assert!(out.is_empty());
        let gw = conv2d_backward_weight::<f32>(&[], &[], [0, 2, 4, 4], [1, 2, 3, 3], &p);
        assert_eq!(gw, vec![0.0; 18]);
    }

    #[test]
    fn output_size_matches_pytorch_formula() {
        let p = Conv2dParams {
            stride: [2, 3],
            padding: [1, 0],
            dilation: [2, 1],
            groups: 1,
        };
        // (7 + 2 - 2*2 - 1)/2 + 1 = 3, (10 - 2 - 1)/3 + 1 = 3
        assert_eq!(p.output_size(7, 10, 3, 3), Some((3, 3)));
        assert_eq!(p.output_size(2, 10, 3, 3), None);
        assert_eq!(
            Conv2dParams { groups: 0, ..p }.output_size(7, 10, 3, 3),
            None
        );
        assert_eq!(
            Conv2dParams {
                stride: [0, 1],
                ..p
            }
            .output_size(7, 10, 3, 3),
            None
        );
    }

    /// `cargo test -p tensorbrain-kernels --release -- --ignored --nocapture --test-threads=1`
    /// (one test at a time: the timings share the cores and the thread setting).
    #[test]
    #[ignore = "timing, run by hand"]
    fn conv_gflops() {
        let mut rng = Rng::new(24);
        let (x_shape, w_shape) = ([8, 64, 56, 56], [64, 64, 3, 3]);
        let p = Conv2dParams {
            padding: [1, 1],
            ..Default::default()
        };
        let g = Geometry::new(x_shape, w_shape, &p);
        let x: Vec<f32> = rng.vec(g.x_len());
        let w: Vec<f32> = rng.vec(g.w_len());
        let go: Vec<f32> = rng.vec(g.out_len());
        let flop = 2.0 * g.work() as f64;
        let time = |f: &dyn Fn()| {
            f(); // warm-up
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        };
        let report = |what: &str, secs: f64| {
            println!(
                "conv {x_shape:?} * {w_shape:?} {what}: {:.1} ms, {:.1} GFLOP/s",
                secs * 1e3,
                flop / secs / 1e9
            );
        };
        report(
            "forward",
            time(&|| drop(conv2d_forward(&x, x_shape, &w, w_shape, None, &p))),
        );
        report(
            "backward_input",
            time(&|| drop(conv2d_backward_input(&go, &w, x_shape, w_shape, &p))),
        );
        report(
            "backward_weight",
            time(&|| drop(conv2d_backward_weight(&go, &x, x_shape, w_shape, &p))),
        );
    }

    #[test]
    fn valid_range_brute_force() {
        for out_len in 0..6 {
            for in_len in 0..6 {
                for stride in 1..4 {
                    for offset in -5..6 {
                        let valid: Vec<usize> = (0..out_len)
                            .filter(|&o| {
                                (0..in_len as isize)
                                    .contains(&(o as isize * stride as isize + offset))
                            })
                            .collect();
                        let (lo, hi) = valid_range(out_len, in_len, stride, offset);
                        assert_eq!(
                            (lo..hi).collect::<Vec<_>>(),
                            valid,
                            "{out_len} {in_len} {stride} {offset}"
                        );
                    }
                }
            }
        }
    }
}
