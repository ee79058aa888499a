//! 8-bit integer GEMM for quantized inference: u8 activations × i8 weights → i32, with the
//! zero-point correction, scales, bias, ReLU and requantization fused into the output stage.
//!
//! ```text
//! let w = PackedI8::pack(&weights_i8, n, k);                 // once, at quantization time
//! qgemm(m, &x_u8, k, &w, Output::U8 { out, epilogue, out_scale, out_zero }, n);
//! ```
//!
//! Levels ([`CpuLevel`]): AVX-512 VNNI (`vpdpbusd`), AVX2 (widen to i16 + `vpmaddwd`) and a
//! scalar fallback, chosen at run time; `TENSORBRAIN_CPU=scalar|avx2|avx512` pins one. All
//! levels give identical bits: each is exact on the full u8 × i8 range (see `avx2.rs` for why
//! AVX2 does not use the saturating `vpmaddubsw`).
//!
//! Work is split across threads by output-channel panels, so batch 1 (one row) uses every
//! thread too; each thread keeps its panels' weights in cache while it walks all rows. Layers
//! with too few panels to go round are split by rows.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod convert;
mod epilogue;
mod im2col;
mod pack;
mod pool;
mod scalar;

pub use convert::{dequantize_u8, min_max, quantize_u8, quantize_u8_with_level};
pub use crate::cpu::{active_level, CpuLevel, ENV_VAR};
pub use epilogue::{quantize_u8_one, round_half_even, Epilogue, Output};
pub use im2col::{im2col_u8, im2col_u8_nhwc, im2col_u8_taps, pixels_last_to_channels_first, weight_taps_major, ConvShape};
pub use pack::{PackedI8, K_GROUP, PANEL};
pub use pool::{max_pool2d_u8, max_pool2d_u8_nhwc};
pub use scalar::gemm_u8i8_reference;

use crate::threads;
use epilogue::OutPtr;
use rayon::prelude::*;

/// The smallest GEMM (in multiply-adds) worth splitting across threads: about 20 µs of
/// `vpdpbusd` on one core. Waking a second thread cost more than it saved below that: the
/// 512-2048-512 block at batch 1 (1M multiply-adds a layer) took 0.23 ms on two threads and
/// 0.06 ms on one.
const MIN_PARALLEL_MACS: usize = 1 << 22;

/// The largest tile any level uses, in rows × panels.
const MAX_TILE_ROWS: usize = 4;
const MAX_TILE_PANELS: usize = 4;

/// `out = epilogue(A · Wᵀ)` on the level [`active_level`] picked. A is m×k u8, row stride
/// `lda`; W is packed n×k i8; output element (i, j) goes to index `i*ldo + j`.
///
/// # Panics
/// If a slice is too short for the shapes and strides, or the epilogue's lengths differ from n.
pub fn qgemm(m: usize, a: &[u8], lda: usize, w: &PackedI8, out: Output<'_>, ldo: usize) {
    qgemm_with_level(active_level(), m, a, lda, w, out, ldo)
}

/// [`qgemm`] on a given level (for tests and benchmarks that compare levels).
///
/// # Panics
/// As [`qgemm`], and if this CPU does not support `level`.
pub fn qgemm_with_level(level: CpuLevel, m: usize, a: &[u8], lda: usize, w: &PackedI8, mut out: Output<'_>, ldo: usize) {
    assert!(level.is_supported(), "qgemm: this CPU cannot run the {level} kernels (it lacks {})", level.required_features());
    let (n, k) = (w.n(), w.k());
    assert!(lda >= k, "qgemm: activation row stride {lda} is smaller than k = {k}");
    if m > 0 && k > 0 {
        let need = (m - 1) * lda + k;
        assert!(a.len() >= need, "qgemm: activations have {} bytes, but {m}x{k} at row stride {lda} needs {need}", a.len());
    }
    out.check(m, n, ldo);
    if m == 0 || n == 0 {
        return;
    }
    let (tile_rows, tile_panels) = tile_shape(level);
    let dst = OutPtr::new(&mut out);
    let blocks = w.panels().div_ceil(tile_panels);
    let work = m * n * k.max(1);
    let run = |blocks: std::ops::Range<usize>, rows: std::ops::Range<usize>| {
        let mut acc = [0i32; MAX_TILE_ROWS * MAX_TILE_PANELS * PANEL];
        for block in blocks {
            let p0 = block * tile_panels;
            let np = tile_panels.min(w.panels() - p0);
            let weights = &w.data_from_panel(p0, np);
            let j0 = p0 * PANEL;
            let cols = (np * PANEL).min(n - j0);
            let mut i0 = rows.start;
            while i0 < rows.end {
                let tile = tile_rows.min(rows.end - i0);
                let rows_a = &a[i0 * lda..];
                compute_tile(level, rows_a, lda, tile, k, weights, w.k_padded(), np, &mut acc);
                for r in 0..tile {
                    let row = &acc[r * np * PANEL..r * np * PANEL + cols];
                    // SAFETY: `out.check` proved (i0+r)*ldo + j0 + cols <= len, this thread
                    // alone owns these rows of columns j0..j0+cols, and the level was checked above.
                    unsafe { dst.write_row(level, (i0 + r) * ldo + j0, j0, row, w.col_sums()) };
                }
                i0 += tile;
            }
        }
    };
    // Threads take output-channel panels (each keeps its weights in cache over all rows), so
    // batch 1 uses every thread too. A layer too narrow for that (a convolution with 16
    // output channels over 50,000 pixels) is split by rows instead.
    let parallel = work >= MIN_PARALLEL_MACS && threads::worth_parallelising(work);
    let by_columns = if parallel { threads::split_range(blocks, work) } else { vec![0..blocks] };
    if by_columns.len() > 1 {
        by_columns.into_par_iter().for_each(|b| run(b, 0..m));
    } else if parallel && m >= 2 * tile_rows {
        let tiles = m.div_ceil(tile_rows);
        let per_thread = tiles.div_ceil(threads::num_threads()) * tile_rows;
        let row_ranges: Vec<_> = (0..m).step_by(per_thread).map(|r0| r0..(r0 + per_thread).min(m)).collect();
        row_ranges.into_par_iter().for_each(|r| run(0..blocks, r));
    } else {
        run(0..blocks, 0..m);
    }
}

/// Rows × panels per tile for a level.
fn tile_shape(level: CpuLevel) -> (usize, usize) {
    match level {
        CpuLevel::Scalar => (MAX_TILE_ROWS, 1),
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => (avx2::MAX_ROWS, avx2::MAX_PANELS),
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => (avx512::MAX_ROWS, avx512::MAX_PANELS),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only scalar runs off x86_64"),
    }
}

#[allow(clippy::too_many_arguments)]
fn compute_tile(level: CpuLevel, a: &[u8], lda: usize, rows: usize, k: usize, w: &[i8], k_padded: usize, np: usize, acc: &mut [i32]) {
    match level {
        CpuLevel::Scalar => scalar::tile(a, lda, rows, k, w, k_padded, np, acc),
        // SAFETY: `qgemm_with_level` checked the CPU supports the level; the slice lengths
        // were checked against m, k, lda there and the tile shape comes from `tile_shape`.
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => unsafe { avx2::tile(a, lda, rows, k, w, k_padded, np, acc) },
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => unsafe { avx512::tile(a, lda, rows, k, w, k_padded, np, acc) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only scalar runs off x86_64"),
    }
}

#[cfg(test)]
mod tests;
