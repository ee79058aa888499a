//! AVX2 tile kernel, exact for every u8 × i8 input.
//!
//! `vpmaddubsw` (u8 × i8 pairs summed into i16) would be twice as dense, but its i16 sum
//! saturates (255·127·2 > 32 767) unless activations are cut to 7 bits or weights to a
//! narrower range. We widen instead: activations (u8 → i16) and weights (i8 → i16) are
//! sign/zero-extended and `vpmaddwd` forms exact i32 pair sums, so AVX2 gives the same bits as
//! the scalar and VNNI kernels with full 8-bit activations, at half the products per
//! instruction of `vpmaddubsw`.
//!
//! Per step (four k values) a 16-byte piece of the packed group (4 channels × 4 k) widens to
//! 16 i16; the row's four activations, widened and repeated, multiply it; `vpmaddwd` leaves two
//! partial sums per channel, which are added pairwise once at the end of the tile.

use std::arch::x86_64::*;

use super::pack::{K_GROUP, PANEL};

pub(crate) const MAX_ROWS: usize = 3;
pub(crate) const MAX_PANELS: usize = 1;

/// Channels in one 16-byte piece of a packed group.
const PIECE: usize = 4;
/// Pieces in one packed group.
const PIECES: usize = PANEL / PIECE;

/// See [`super::scalar::tile`] for the contract.
///
/// # Safety
/// The CPU must support avx2; slices as for [`super::avx512::tile`], with
/// `rows <= MAX_ROWS` and `np <= MAX_PANELS`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn tile(a: &[u8], lda: usize, rows: usize, k: usize, w: &[i8], k_padded: usize, np: usize, tile: &mut [i32]) {
    debug_assert!(rows <= MAX_ROWS && np <= MAX_PANELS);
    debug_assert!(w.len() >= np * PANEL * k_padded && tile.len() >= rows * np * PANEL);
    debug_assert!(rows == 0 || a.len() >= (rows - 1) * lda + k);
    let _ = k_padded;
    match rows {
        1 => tile_fixed::<1>(a.as_ptr(), lda, k, w.as_ptr(), tile.as_mut_ptr()),
        2 => tile_fixed::<2>(a.as_ptr(), lda, k, w.as_ptr(), tile.as_mut_ptr()),
        3 => tile_fixed::<3>(a.as_ptr(), lda, k, w.as_ptr(), tile.as_mut_ptr()),
        _ => unreachable!("tile of {rows} rows is outside 1..={MAX_ROWS}"),
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_fixed<const R: usize>(a: *const u8, lda: usize, k: usize, w: *const i8, out: *mut i32) {
    let mut acc = [[_mm256_setzero_si256(); PIECES]; R];
    let full_groups = k / K_GROUP;
    for g in 0..full_groups {
        let mut quads = [0i32; R];
        for (r, q) in quads.iter_mut().enumerate() {
            *q = a.add(r * lda + g * K_GROUP).cast::<i32>().read_unaligned();
        }
        step::<R>(&mut acc, g, quads, w);
    }
    let tail = k % K_GROUP;
    if tail != 0 {
        let mut quads = [0i32; R];
        for (r, q) in quads.iter_mut().enumerate() {
            let mut bytes = [0u8; K_GROUP];
            std::ptr::copy_nonoverlapping(a.add(r * lda + full_groups * K_GROUP), bytes.as_mut_ptr(), tail);
            *q = i32::from_le_bytes(bytes);
        }
        step::<R>(&mut acc, full_groups, quads, w);
    }
    // Each i32 lane pair holds one channel's sums over k mod 4 in {0,1} and {2,3}.
    for r in 0..R {
        for piece in 0..PIECES {
            let mut pairs = [0i32; 8];
            _mm256_storeu_si256(pairs.as_mut_ptr().cast(), acc[r][piece]);
            for c in 0..PIECE {
                *out.add(r * PANEL + piece * PIECE + c) = pairs[2 * c].wrapping_add(pairs[2 * c + 1]);
            }
        }
    }
}

/// One group of four k values for every row, piece by piece so that only one widened weight
/// vector is live at a time (R·4 accumulators + R activations + 1 weight ≤ 16 ymm registers).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step<const R: usize>(acc: &mut [[__m256i; PIECES]; R], g: usize, quads: [i32; R], w: *const i8) {
    let mut av = [_mm256_setzero_si256(); R];
    for r in 0..R {
        av[r] = _mm256_cvtepu8_epi16(_mm_set1_epi32(quads[r]));
    }
    for piece in 0..PIECES {
        let bytes = _mm_loadu_si128(w.add((g * PANEL + piece * PIECE) * K_GROUP).cast());
        let wv = _mm256_cvtepi8_epi16(bytes);
        for r in 0..R {
            acc[r][piece] = _mm256_add_epi32(acc[r][piece], _mm256_madd_epi16(av[r], wv));
        }
    }
}
