//! Conversions between f32 and u8 activations, and the range scan that dynamic quantization
//! runs on every batch.

use super::epilogue::quantize_u8_one;
use crate::cpu::{active_level, CpuLevel};

/// `dst[i] = clamp(round_half_even(src[i] / scale) + zero, 0, 255)`, with the division done as
/// a multiplication by the f32 reciprocal, as PyTorch (fbgemm) does; NaN gives 0 (callers
/// reject NaN first). Every level gives the same bytes.
///
/// # Panics
/// If the slices differ in length or the scale is not finite and positive.
pub fn quantize_u8(src: &[f32], scale: f32, zero: i32, dst: &mut [u8]) {
    quantize_u8_with_level(active_level(), src, scale, zero, dst)
}

/// [`quantize_u8`] on a given level (for tests that compare levels).
///
/// # Panics
/// As [`quantize_u8`], and if this CPU does not support `level`.
pub fn quantize_u8_with_level(level: CpuLevel, src: &[f32], scale: f32, zero: i32, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "quantize_u8: {} inputs but {} outputs", src.len(), dst.len());
    assert!(scale.is_finite() && scale > 0.0, "quantize_u8: scale must be finite and positive, got {scale}");
    assert!(level.is_supported(), "quantize_u8: this CPU cannot run the {level} kernels");
    let inv = 1.0 / scale;
    let done = match level {
        CpuLevel::Scalar => 0,
        // SAFETY: the CPU supports the level (checked above); the lengths are equal.
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => unsafe { simd::quantize_avx2(src, inv, zero, dst) },
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => unsafe { simd::quantize_avx512(src, inv, zero, dst) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => 0,
    };
    for (d, &x) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = quantize_u8_one(x, inv, zero);
    }
}

/// The vector forms of [`quantize_u8_one`]. They round with the hardware's round-to-nearest-even
/// (exact at any magnitude, where the scalar form clamps to ±2²² first: both then clamp to
/// 0..=255, so the bytes agree), and clamp with `max(x, 0)` first, which maps NaN to 0 as the
/// scalar `as u8` does. Each returns how many leading elements it wrote.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

    /// # Safety
    /// The CPU must support AVX-512 F/BW; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_avx512(src: &[f32], inv: f32, zero: i32, dst: &mut [u8]) -> usize {
        let (inv, zero, lo, hi) = (_mm512_set1_ps(inv), _mm512_set1_ps(zero as f32), _mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let n = src.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            let x = _mm512_loadu_ps(src.as_ptr().add(i));
            let r = _mm512_add_ps(_mm512_roundscale_ps::<ROUND>(_mm512_mul_ps(x, inv)), zero);
            let c = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(c)));
        }
        n
    }

    /// # Safety
    /// The CPU must support AVX2; `dst.len() == src.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_avx2(src: &[f32], inv: f32, zero: i32, dst: &mut [u8]) -> usize {
        let (inv, zero, lo, hi) = (_mm256_set1_ps(inv), _mm256_set1_ps(zero as f32), _mm256_setzero_ps(), _mm256_set1_ps(255.0));
        let one = |p: *const f32| {
            let r = _mm256_add_ps(_mm256_round_ps::<ROUND>(_mm256_mul_ps(_mm256_loadu_ps(p), inv)), zero);
            _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
        };
        // Packing works within 128-bit lanes; the final permute puts the four quarters back.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let n = src.len() / 32 * 32;
        for i in (0..n).step_by(32) {
            let p = src.as_ptr().add(i);
            let ab = _mm256_packus_epi32(one(p), one(p.add(8)));
            let cd = _mm256_packus_epi32(one(p.add(16)), one(p.add(24)));
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), bytes);
        }
        n
    }
}

/// `dst[i] = (src[i] - zero) · scale`.
pub fn dequantize_u8(src: &[u8], scale: f32, zero: i32, dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "dequantize_u8: {} inputs but {} outputs", src.len(), dst.len());
    for (d, &q) in dst.iter_mut().zip(src) {
        *d = (i32::from(q) - zero) as f32 * scale;
    }
}

/// The smallest and largest value, or `None` for an empty slice or one holding NaN.
pub fn min_max(src: &[f32]) -> Option<(f32, f32)> {
    // Eight independent lanes of compare-and-select, which vectorise (f32::min/max do not,
    // for their NaN rules); NaN is caught by x != x.
    const LANES: usize = 8;
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let chunks = src.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            let x = chunk[i];
            lo[i] = if x < lo[i] { x } else { lo[i] };
            hi[i] = if x > hi[i] { x } else { hi[i] };
            nan[i] |= x != x;
        }
    }
    for &x in tail {
        lo[0] = if x < lo[0] { x } else { lo[0] };
        hi[0] = if x > hi[0] { x } else { hi[0] };
        nan[0] |= x.is_nan();
    }
    if src.is_empty() || nan.iter().any(|&n| n) {
        return None;
    }
    Some((lo.iter().fold(f32::INFINITY, |a, &b| a.min(b)), hi.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))))
}
