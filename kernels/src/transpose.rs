//! Out-of-place transpose of a row-major f32 matrix with a row stride, in 8×8 (AVX) or 16×16
//! (AVX-512) register tiles.
//!
//! The GEMM needs it because `gemm` packs an operand whose contraction index is contiguous
//! (B given as a view of a row-major `[n, k]` matrix, as in `x·Wᵀ` and in the weight gradient
//! of a convolution) an element at a time, at 4 KiB strides: 16 GFLOP/s instead of 141 on a
//! 32×1024×144 product (`gemm_layouts` example). Transposing B once, with whole cache lines
//! read and written, costs far less than that.

use crate::cpu::{active_level, CpuLevel};

/// Side of the register tile.
const TILE: usize = 8;

/// Side of the cache block.
const BLOCK: usize = 64;

/// `dst[j·dst_ld + i] = src[offset + i·ld + j]` for `i < rows`, `j < cols`: `dst` gets the
/// `[cols, rows]` transpose (rows `dst_ld` apart) of the `[rows, cols]` matrix at
/// `src[offset..]` whose rows are `ld` apart.
///
/// A `dst_ld` whose byte size is a multiple of 4 KiB puts every destination row of a tile in
/// one L1 set and ran 7× slower (1024², 1.1 ms against 0.15); [`padded_ld`] picks one that
/// does not.
///
/// # Panics
/// If the matrix does not fit in `src` or `dst`.
pub fn transpose_f32(rows: usize, cols: usize, src: &[f32], offset: usize, ld: usize, dst: &mut [f32], dst_ld: usize) {
    transpose_f32_with_level(active_level(), rows, cols, src, offset, ld, dst, dst_ld)
}

/// A row stride of at least `len` f32s that is not a multiple of 1 KiB (where rows start to
/// share L1 sets).
pub fn padded_ld(len: usize) -> usize {
    if len >= 256 && len % 256 == 0 {
        len + 16
    } else {
        len
    }
}

/// [`transpose_f32`] on a chosen instruction-set level (for tests and benchmarks; `level` must
/// be supported by this CPU).
#[allow(clippy::too_many_arguments)]
pub fn transpose_f32_with_level(level: CpuLevel, rows: usize, cols: usize, src: &[f32], offset: usize, ld: usize, dst: &mut [f32], dst_ld: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(dst_ld >= rows && (cols - 1) * dst_ld + rows <= dst.len(), "transpose: destination of {} elements (row stride {dst_ld}) too short for the {cols}x{rows} transpose", dst.len());
    assert!(ld >= cols, "transpose: row stride {ld} shorter than a row of {cols}");
    assert!(offset + (rows - 1) * ld + cols <= src.len(), "transpose: {rows}x{cols} matrix (row stride {ld}, offset {offset}) overruns a slice of {}", src.len());
    assert!(level.is_supported(), "transpose: this CPU cannot run the {level} kernels");
    let src = &src[offset..];
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level is supported (checked above), and the asserts keep every tile's
        // reads and writes inside the slices.
        CpuLevel::Avx2 => unsafe { avx::transpose(rows, cols, src, ld, dst, dst_ld) },
        // SAFETY: as above. On the Intel Xeon (model 207) the 16×16 tiles, whose destination
        // rows are whole cache lines, took 69 µs (median) for a 256×784 matrix against 97 µs in
        // 8×8 AVX tiles, 29 against 42 at 128×784 (`transpose_levels` example, 200 interleaved
        // runs); at 512×2048, past L2, the two were level.
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => unsafe { avx512::transpose(rows, cols, src, ld, dst, dst_ld) },
        _ => scalar(rows, cols, src, ld, dst, dst_ld),
    }
}

/// The portable transpose, in `BLOCK`×`BLOCK` blocks so that both sides stay in cache.
fn scalar(rows: usize, cols: usize, src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
    for rb in (0..rows).step_by(BLOCK) {
        for cb in (0..cols).step_by(BLOCK) {
            for i in rb..(rb + BLOCK).min(rows) {
                for j in cb..(cb + BLOCK).min(cols) {
                    dst[j * dst_ld + i] = src[i * ld + j];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{BLOCK, TILE};
    use std::arch::x86_64::*;

    /// Transposes the 8×8 tile at `src` (rows `ld` apart) into `dst` (rows `ldd` apart).
    #[inline(always)]
    unsafe fn tile(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
        let r = |i: usize| _mm256_loadu_ps(src.add(i * ld));
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        let t0 = _mm256_unpacklo_ps(r0, r1);
        let t1 = _mm256_unpackhi_ps(r0, r1);
        let t2 = _mm256_unpacklo_ps(r2, r3);
        let t3 = _mm256_unpackhi_ps(r2, r3);
        let t4 = _mm256_unpacklo_ps(r4, r5);
        let t5 = _mm256_unpackhi_ps(r4, r5);
        let t6 = _mm256_unpacklo_ps(r6, r7);
        let t7 = _mm256_unpackhi_ps(r6, r7);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let w = |i: usize, v: __m256| _mm256_storeu_ps(dst.add(i * ldd), v);
        w(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
        w(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
        w(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
        w(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
        w(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
        w(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
        w(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
        w(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
    }

    /// # Safety
    /// The CPU has AVX; `src` holds `rows` rows of `cols` elements `ld` apart and `dst` holds
    /// `cols` rows of `rows` elements `dst_ld` apart.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose(rows: usize, cols: usize, src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
        let (rows8, cols8) = (rows / TILE * TILE, cols / TILE * TILE);
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        // Blocks of BLOCK×BLOCK whose source and destination lines (and pages, when rows are
        // 4 KiB apart) all stay in L1 while its 8×8 tiles are transposed.
        for ib in (0..rows8).step_by(BLOCK) {
            for jb in (0..cols8).step_by(BLOCK) {
                for i in (ib..(ib + BLOCK).min(rows8)).step_by(TILE) {
                    for j in (jb..(jb + BLOCK).min(cols8)).step_by(TILE) {
                        tile(s.add(i * ld + j), ld, d.add(j * dst_ld + i), dst_ld);
                    }
                }
            }
        }
        super::edges(rows, cols, src, ld, dst, dst_ld);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::BLOCK;
    use std::arch::x86_64::*;

    /// Side of the AVX-512 register tile: a destination row of it is one cache line.
    const TILE16: usize = 16;

    /// Transposes the 16×16 tile at `src` (rows `ld` apart) into `dst` (rows `ldd` apart).
    #[inline(always)]
    unsafe fn tile(src: *const f32, ld: usize, dst: *mut f32, ldd: usize) {
        let mut r = [_mm512_setzero_ps(); TILE16];
        for (i, row) in r.iter_mut().enumerate() {
            *row = _mm512_loadu_ps(src.add(i * ld));
        }
        // Interleave pairs of rows: t[2p] / t[2p+1] hold rows 2p and 2p+1 interleaved.
        let mut t = [_mm512_setzero_ps(); TILE16];
        for p in 0..8 {
            t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
            t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
        }
        // Pairs of pairs: in r[4q + c], 128-bit lane L holds rows 4q..4q+4 of column 4L + c.
        for q in 0..4 {
            let (a0, a1, b0, b1) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
            r[4 * q] = _mm512_shuffle_ps::<0x44>(a0, b0);
            r[4 * q + 1] = _mm512_shuffle_ps::<0xEE>(a0, b0);
            r[4 * q + 2] = _mm512_shuffle_ps::<0x44>(a1, b1);
            r[4 * q + 3] = _mm512_shuffle_ps::<0xEE>(a1, b1);
        }
        // Gather lane L of the four row groups into column 4L + c, in two rounds of 128-bit
        // lane shuffles (even lanes, odd lanes).
        for c in 0..4 {
            let (x0, x1, x2, x3) = (r[c], r[4 + c], r[8 + c], r[12 + c]);
            let y0 = _mm512_shuffle_f32x4::<0x88>(x0, x1);
            let y1 = _mm512_shuffle_f32x4::<0xDD>(x0, x1);
            let y2 = _mm512_shuffle_f32x4::<0x88>(x2, x3);
            let y3 = _mm512_shuffle_f32x4::<0xDD>(x2, x3);
            _mm512_storeu_ps(dst.add(c * ldd), _mm512_shuffle_f32x4::<0x88>(y0, y2));
            _mm512_storeu_ps(dst.add((4 + c) * ldd), _mm512_shuffle_f32x4::<0x88>(y1, y3));
            _mm512_storeu_ps(dst.add((8 + c) * ldd), _mm512_shuffle_f32x4::<0xDD>(y0, y2));
            _mm512_storeu_ps(dst.add((12 + c) * ldd), _mm512_shuffle_f32x4::<0xDD>(y1, y3));
        }
    }

    /// # Safety
    /// The CPU has AVX-512F; `src` holds `rows` rows of `cols` elements `ld` apart and `dst`
    /// holds `cols` rows of `rows` elements `dst_ld` apart.
    #[target_feature(enable = "avx,avx512f")]
    pub(super) unsafe fn transpose(rows: usize, cols: usize, src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
        let (rows16, cols16) = (rows / TILE16 * TILE16, cols / TILE16 * TILE16);
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        for ib in (0..rows16).step_by(BLOCK) {
            for jb in (0..cols16).step_by(BLOCK) {
                for i in (ib..(ib + BLOCK).min(rows16)).step_by(TILE16) {
                    for j in (jb..(jb + BLOCK).min(cols16)).step_by(TILE16) {
                        tile(s.add(i * ld + j), ld, d.add(j * dst_ld + i), dst_ld);
                    }
                }
            }
        }
        // The right strip (the columns past the last whole tile, for the tiled rows) and the
        // bottom strip (the rows past them, all columns) in 8×8 tiles and single elements.
        if cols16 < cols && rows16 > 0 {
            super::avx::transpose(rows16, cols - cols16, &src[cols16..], ld, &mut dst[cols16 * dst_ld..], dst_ld);
        }
        if rows16 < rows {
            super::avx::transpose(rows - rows16, cols, &src[rows16 * ld..], ld, &mut dst[rows16..], dst_ld);
        }
    }
}

/// Copies the elements outside the whole `TILE`×`TILE` tiles (the ragged right columns and
/// bottom rows) one at a time.
fn edges(rows: usize, cols: usize, src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
    let (rows_t, cols_t) = (rows / TILE * TILE, cols / TILE * TILE);
    for i in 0..rows {
        for j in if i < rows_t { cols_t } else { 0 }..cols {
            dst[j * dst_ld + i] = src[i * ld + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(rows: usize, cols: usize, src: &[f32], offset: usize, ld: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                out[j * rows + i] = src[offset + i * ld + j];
            }
        }
        out
    }

    #[test]
    fn every_level_matches_the_reference_on_ragged_shapes() {
        for level in CpuLevel::supported() {
            for &(rows, cols, pad, offset) in &[(1, 1, 0, 0), (8, 8, 0, 0), (16, 16, 3, 5), (17, 9, 0, 1), (7, 31, 2, 0), (40, 24, 8, 3), (3, 100, 0, 0), (100, 3, 1, 2), (0, 5, 0, 0), (33, 65, 7, 11), (48, 80, 5, 2), (35, 50, 0, 3), (16, 33, 1, 0), (31, 16, 0, 0)] {
                let ld = cols + pad;
                let src: Vec<f32> = (0..offset + rows * ld + 4).map(|i| i as f32 * 0.5 - 7.0).collect();
                for dst_ld in [rows, rows + 3] {
                    let mut dst = vec![f32::NAN; cols * dst_ld];
                    transpose_f32_with_level(level, rows, cols, &src, offset, ld, &mut dst, dst_ld);
                    let want = reference(rows, cols, &src, offset, ld);
                    for j in 0..cols {
                        let got = &dst[j * dst_ld..][..rows];
                        assert!(got.iter().zip(&want[j * rows..][..rows]).all(|(a, b)| a.to_bits() == b.to_bits()), "{level}: {rows}x{cols} ld {ld} offset {offset} dst_ld {dst_ld}");
                        // The padding between destination rows is left alone.
                        assert!(dst[j * dst_ld + rows..((j + 1) * dst_ld).min(dst.len())].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_matrix_past_the_slice_is_refused() {
        let mut dst = vec![0.0; 12];
        transpose_f32(3, 4, &[0.0; 11], 0, 4, &mut dst, 3);
    }
}
