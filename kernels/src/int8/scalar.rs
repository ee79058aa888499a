//! Portable kernels: the plain reference on unpacked weights that every level is checked
//! against, and the scalar tile kernel on the packed layout (the fallback on CPUs without AVX2).
//!
//! Sums use wrapping i32 arithmetic, as SIMD adds do, so all levels agree bit for bit even in
//! the (unreachable for k < 65 000) case of overflow.

use super::pack::{K_GROUP, PANEL};

/// `c[i*ldc + j] = Σ_p a[i*lda + p] · w[j*k + p]` (u8 × i8 → i32) with no packing: the
/// definition the packed kernels must match exactly.
pub fn gemm_u8i8_reference(m: usize, n: usize, k: usize, a: &[u8], lda: usize, w: &[i8], c: &mut [i32], ldc: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for p in 0..k {
                acc = acc.wrapping_add(i32::from(a[i * lda + p]) * i32::from(w[j * k + p]));
            }
            c[i * ldc + j] = acc;
        }
    }
}

/// Raw dot products of `rows` rows of A (row stride `lda`, `k` values each) against `np`
/// consecutive packed panels `w` (each `PANEL * k_padded` bytes), into `tile` with row
/// stride `np * PANEL`.
pub(crate) fn tile(a: &[u8], lda: usize, rows: usize, k: usize, w: &[i8], k_padded: usize, np: usize, tile: &mut [i32]) {
    let ldt = np * PANEL;
    tile[..rows * ldt].fill(0);
    for r in 0..rows {
        let row = &a[r * lda..r * lda + k];
        for p in 0..np {
            let panel = &w[p * PANEL * k_padded..(p + 1) * PANEL * k_padded];
            let out = &mut tile[r * ldt + p * PANEL..r * ldt + (p + 1) * PANEL];
            for (g, group) in panel.chunks_exact(PANEL * K_GROUP).enumerate() {
                let base = g * K_GROUP;
                let avail = K_GROUP.min(k - base);
                for (c, acc) in out.iter_mut().enumerate() {
                    let lanes = &group[c * K_GROUP..c * K_GROUP + avail];
                    for (&x, &wv) in row[base..base + avail].iter().zip(lanes) {
                        *acc = acc.wrapping_add(i32::from(x) * i32::from(wv));
                    }
                }
            }
        }
    }
}
