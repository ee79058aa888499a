//! Conversions between f32 and u8 activations, and the range scan that dynamic quantization
//! runs on every batch.

use super::epilogue::quantize_u8_one;

/// `dst[i] = clamp(round_half_even(src[i] / scale) + zero, 0, 255)`, with the division done as
/// a multiplication by the f32 reciprocal, as PyTorch (fbgemm) does.
///
/// # Panics
/// If the slices differ in length or the scale is not finite and positive.
pub fn quantize_u8(src: &[f32], scale: f32, zero: i32, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "quantize_u8: {} inputs but {} outputs", src.len(), dst.len());
    assert!(scale.is_finite() && scale > 0.0, "quantize_u8: scale must be finite and positive, got {scale}");
    let inv = 1.0 / scale;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quantize_u8_one(x, inv, zero);
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
