//! Layout helpers that let a convolution run on the int8 GEMM: im2col of u8 NCHW or NHWC activations
//! (padding filled with the zero point, which is the real value 0) and the transpose of the
//! GEMM's `[N·OH·OW, O]` result back to NCHW.

use crate::threads;

/// The geometry of a 2-D convolution on one NCHW input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl ConvShape {
    /// Output height and width, or `None` if the (dilated) kernel does not fit.
    pub fn output_size(&self) -> Option<(usize, usize)> {
        let out = |size: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d * (k - 1) + 1;
            (size + 2 * p).checked_sub(span).map(|r| r / s + 1)
        };
        Some((
            out(self.height, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0])?,
            out(self.width, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1])?,
        ))
    }

    /// GEMM rows (one per output pixel) and reduction length (one per kernel tap and channel).
    pub fn gemm_mk(&self) -> Option<(usize, usize)> {
        let (oh, ow) = self.output_size()?;
        Some((self.batch * oh * ow, self.channels * self.kernel[0] * self.kernel[1]))
    }
}

/// Row `(n·OH + oh)·OW + ow`, column `(c·KH + i)·KW + j` holds input
/// `x[n, c, oh·s - p + i·d, ow·s - p + j·d]`, or `pad` outside the image. Columns follow the
/// `[O, C, KH, KW]` weight's flattening, so the weight reshaped to `[O, C·KH·KW]` multiplies it.
///
/// # Panics
/// If `x` is not `batch·channels·height·width` long or the kernel does not fit.
pub fn im2col_u8(x: &[u8], s: &ConvShape, pad: u8) -> Vec<u8> {
    assert_eq!(x.len(), s.batch * s.channels * s.height * s.width, "im2col: input length does not match {s:?}");
    let (oh, ow) = s.output_size().unwrap_or_else(|| panic!("im2col: the kernel does not fit in {s:?}"));
    let (kh, kw) = (s.kernel[0], s.kernel[1]);
    let k = s.channels * kh * kw;
    let mut out = vec![pad; s.batch * oh * ow * k];
    if out.is_empty() {
        return out;
    }
    let plane_len = s.height * s.width;
    // One column (kernel tap and channel) at a time: for each output row, the taps inside the
    // image form one run of output pixels [lo, hi) reading an input row at a fixed stride, a
    // loop with no per-element bounds logic; everything outside stays `pad`. Looping pixel by
    // pixel and tap by tap instead cost about 1.5 ns per element (most of an int8 CNN's time).
    // Images are filled in parallel.
    let total = out.len();
    threads::for_each_chunk_mut(&mut out, oh * ow * k, total, |n, out_n| {
        for c in 0..s.channels {
            let plane = &x[(n * s.channels + c) * plane_len..][..plane_len];
            for i in 0..kh {
                for j in 0..kw {
                    let col = (c * kh + i) * kw + j;
                    let (lo, hi) = inside(ow, s.stride[1], j * s.dilation[1], s.padding[1], s.width);
                    for y in 0..oh {
                        let iy = (y * s.stride[0] + i * s.dilation[0]).wrapping_sub(s.padding[0]);
                        if iy >= s.height || lo >= hi {
                            continue;
                        }
                        let src = &plane[iy * s.width..][..s.width];
                        let rows = &mut out_n[y * ow * k..][..ow * k];
                        let first = lo * s.stride[1] + j * s.dilation[1] - s.padding[1];
                        let reads = src[first..].iter().step_by(s.stride[1]);
                        for (dst, &v) in rows[lo * k + col..].iter_mut().step_by(k).zip(reads).take(hi - lo) {
                            *dst = v;
                        }
                    }
                }
            }
        }
    });
    out
}

/// The output columns `[lo, hi)` whose input column `xo·stride + offset - padding` lies in
/// `0..width`.
fn inside(out_width: usize, stride: usize, offset: usize, padding: usize, width: usize) -> (usize, usize) {
    // xo·stride + offset >= padding  <=>  xo >= ceil((padding - offset) / stride)
    let lo = padding.saturating_sub(offset).div_ceil(stride);
    // xo·stride + offset < width + padding  <=>  xo < ceil((width + padding - offset) / stride)
    let hi = (width + padding).saturating_sub(offset).div_ceil(stride).min(out_width);
    (lo.min(hi), hi)
}

/// Like [`im2col_u8`] with the columns in tap-major order: column `(i·KW + j)·C + c`, which
/// multiplies a weight laid out `[O, KH, KW, C]` (see [`weight_taps_major`]). Each kernel tap
/// of an output pixel is then one contiguous run of `C` input bytes (the input is read
/// channels-last), a copy instead of `C` scattered stores.
///
/// # Panics
/// As [`im2col_u8`].
pub fn im2col_u8_taps(x: &[u8], s: &ConvShape, pad: u8) -> Vec<u8> {
    assert_eq!(x.len(), s.batch * s.channels * s.height * s.width, "im2col: input length does not match {s:?}");
    if s.channels == 1 {
        return im2col_u8(x, s, pad);
    }
    let last = pixels_last_to_channels_first(x, s.batch, s.channels, s.height * s.width);
    im2col_u8_nhwc(&last, s, pad)
}

/// [`im2col_u8_taps`] of an input already held channels-last (`[N, H, W, C]`, as the GEMM
/// leaves a convolution's output), with no transpose. Output rows are filled in parallel.
///
/// # Panics
/// If `x` does not hold `N·H·W·C` bytes, or the kernel does not fit.
pub fn im2col_u8_nhwc(x: &[u8], s: &ConvShape, pad: u8) -> Vec<u8> {
    assert_eq!(x.len(), s.batch * s.channels * s.height * s.width, "im2col: input length does not match {s:?}");
    let (oh, ow) = s.output_size().unwrap_or_else(|| panic!("im2col: the kernel does not fit in {s:?}"));
    let (kh, kw, c) = (s.kernel[0], s.kernel[1], s.channels);
    if c == 1 {
        // One channel: channels-last and channels-first are the same bytes.
        return im2col_u8(x, s, pad);
    }
    let k = c * kh * kw;
    let mut out = vec![pad; s.batch * oh * ow * k];
    let image_len = s.height * s.width * c;
    // One chunk per output row (ow pixels of k columns).
    threads::for_each_chunk_mut(&mut out, ow * k, s.batch * oh * ow * k, |row_index, rows| {
        let (n, y) = (row_index / oh, row_index % oh);
        let image = &x[n * image_len..][..image_len];
        for (xo, row) in rows.chunks_exact_mut(k).enumerate() {
            for i in 0..kh {
                let iy = (y * s.stride[0] + i * s.dilation[0]).wrapping_sub(s.padding[0]);
                if iy >= s.height {
                    continue;
                }
                for j in 0..kw {
                    let ix = (xo * s.stride[1] + j * s.dilation[1]).wrapping_sub(s.padding[1]);
                    if ix < s.width {
                        let at = (iy * s.width + ix) * c;
                        copy_small(&mut row[(i * kw + j) * c..][..c], &image[at..at + c]);
                    }
                }
            }
        }
    });
    out
}

#[inline]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    if src.len() >= 32 {
        dst.copy_from_slice(src);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
    }
}

/// A weight `[O, C, KH, KW]` (row-major) as `[O, KH, KW, C]`, the column order of
/// [`im2col_u8_taps`]; `inverse` maps back.
pub fn weight_taps_major<T: Copy>(w: &[T], o: usize, c: usize, taps: usize, inverse: bool) -> Vec<T> {
    assert_eq!(w.len(), o * c * taps, "weight_taps_major: length does not match [{o}, {c}, {taps}]");
    let mut out = w.to_vec();
    for (src, dst) in w.chunks_exact(c * taps).zip(out.chunks_exact_mut(c * taps)) {
        for ch in 0..c {
            for t in 0..taps {
                let (from, to) = (ch * taps + t, t * c + ch);
                if inverse {
                    dst[from] = src[to];
                } else {
                    dst[to] = src[from];
                }
            }
        }
    }
    out
}

/// `[batch, pixels, channels]` → `[batch, channels, pixels]`.
pub fn pixels_last_to_channels_first<T: Copy + Default>(y: &[T], batch: usize, pixels: usize, channels: usize) -> Vec<T> {
    assert_eq!(y.len(), batch * pixels * channels, "transpose: length does not match {batch}x{pixels}x{channels}");
    let mut out = vec![T::default(); y.len()];
    for n in 0..batch {
        let src = &y[n * pixels * channels..][..pixels * channels];
        let dst = &mut out[n * pixels * channels..][..pixels * channels];
        for p in 0..pixels {
            for c in 0..channels {
                dst[c * pixels + p] = src[p * channels + c];
            }
        }
    }
    out
}
