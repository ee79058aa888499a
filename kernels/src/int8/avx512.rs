//! AVX-512 VNNI tile kernel: `vpdpbusd` multiplies 64 unsigned activation bytes by 64 signed
//! weight bytes and adds each group of four products into an i32 lane, exactly (no i16
//! intermediate, so no saturation on any u8 × i8 input).
//!
//! A tile is up to [`MAX_ROWS`] rows × [`MAX_PANELS`] panels (16 rows × 64 channels of i32
//! accumulators, 16 of the 32 zmm registers). Each step loads one 64-byte weight group per
//! panel and broadcasts four activation bytes per row.

use std::arch::x86_64::*;

use super::pack::{K_GROUP, PANEL};

pub(crate) const MAX_ROWS: usize = 4;
pub(crate) const MAX_PANELS: usize = 4;

/// See [`super::scalar::tile`] for the contract.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `a` must hold `rows` rows of `k`
/// bytes at stride `lda`, `w` `np` panels of `PANEL * k_padded` bytes, `tile`
/// `rows * np * PANEL` values; `rows <= MAX_ROWS`, `np <= MAX_PANELS`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile(a: &[u8], lda: usize, rows: usize, k: usize, w: &[i8], k_padded: usize, np: usize, tile: &mut [i32]) {
    debug_assert!(rows <= MAX_ROWS && np <= MAX_PANELS);
    debug_assert!(w.len() >= np * PANEL * k_padded && tile.len() >= rows * np * PANEL);
    debug_assert!(rows == 0 || a.len() >= (rows - 1) * lda + k);
    macro_rules! go {
        ($($r:literal, $p:literal);*) => {
            match (rows, np) {
                $(($r, $p) => tile_fixed::<$r, $p>(a.as_ptr(), lda, k, w.as_ptr(), k_padded, tile.as_mut_ptr()),)*
                _ => unreachable!("tile shape {rows}x{np} is outside {MAX_ROWS}x{MAX_PANELS}"),
            }
        };
    }
    go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile_fixed<const R: usize, const P: usize>(a: *const u8, lda: usize, k: usize, w: *const i8, k_padded: usize, out: *mut i32) {
    let panel_len = PANEL * k_padded;
    let mut acc = [[_mm512_setzero_si512(); P]; R];
    let full_groups = k / K_GROUP;
    for g in 0..full_groups {
        let mut quads = [0i32; R];
        for (r, q) in quads.iter_mut().enumerate() {
            *q = a.add(r * lda + g * K_GROUP).cast::<i32>().read_unaligned();
        }
        step::<R, P>(&mut acc, g, quads, w, panel_len);
    }
    let tail = k % K_GROUP;
    if tail != 0 {
        let mut quads = [0i32; R];
        for (r, q) in quads.iter_mut().enumerate() {
            let mut bytes = [0u8; K_GROUP];
            std::ptr::copy_nonoverlapping(a.add(r * lda + full_groups * K_GROUP), bytes.as_mut_ptr(), tail);
            *q = i32::from_le_bytes(bytes);
        }
        step::<R, P>(&mut acc, full_groups, quads, w, panel_len);
    }
    for r in 0..R {
        for p in 0..P {
            _mm512_storeu_si512(out.add(r * P * PANEL + p * PANEL).cast(), acc[r][p]);
        }
    }
}

/// One group of four k values: `acc[r][p] += a_quad[r] · w_group[p]` by `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn step<const R: usize, const P: usize>(acc: &mut [[__m512i; P]; R], g: usize, quads: [i32; R], w: *const i8, panel_len: usize) {
    let mut wv = [_mm512_setzero_si512(); P];
    for (p, v) in wv.iter_mut().enumerate() {
        *v = _mm512_loadu_si512(w.add(p * panel_len + g * PANEL * K_GROUP).cast());
    }
    for r in 0..R {
        let av = _mm512_set1_epi32(quads[r]);
        for p in 0..P {
            acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
        }
    }
}
