//! The shifted convolution's f32 register tiles: an implicit GEMM that reads the padded input
//! where it lies instead of handing `gemm` one thin product per kernel tap.
//!
//! In the shifted form (`conv_shifted.rs`) output position `p` of channel `o` is
//! `Σ_k W[o, k] · xp[offset[k] + p]` over `k = (input channel, tap)`, with `offset[k]` the
//! channel's plane plus the tap's shift. For a fixed `k` the input values of consecutive
//! positions are consecutive in memory, so a tile of `OB` output channels × `NR` positions is
//! a GEMM micro-kernel whose B rows are plain unaligned loads at `xp + offset[k] + p`: nothing
//! is packed but the weights (`[O/OB][K][OB]`, a few KiB per sample), and each output element
//! is written once, after all `K` products, instead of being read and written back once per
//! tap. The per-tap `gemm` calls it replaces had to pack every tap's `[C, 512]` input slice
//! (a copy of the input per tap) and contracted over only `C` (16 for `bench_fusion`'s conv),
//! which kept them near 45% of the FMA peak.
//!
//! The tile keeps its `OB × NR` sums in registers: 8 × 48 (24 zmm) with AVX-512, 6 × 16
//! (12 ymm) with AVX2, the shapes whose loads (`NR/lanes` vector loads and `OB` broadcasts per
//! `k`) stay under the FMAs. There is no scalar tile: at the scalar level (and for f64) the
//! per-tap GEMMs run. The tiles are tested against sums in f64, here and through the
//! convolution tests at every level `.ci/run` pins.

use crate::cpu::CpuLevel;

/// A register tile shape: `ob` output channels × `nr` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tile {
    pub ob: usize,
    pub nr: usize,
    level: CpuLevel,
}

#[cfg(target_arch = "x86_64")]
const AVX512_TILE: (usize, usize) = (8, 3);
#[cfg(target_arch = "x86_64")]
const AVX2_TILE: (usize, usize) = (6, 2);

impl Tile {
    /// The tile of `level`, or `None` where there is none (scalar code, other architectures).
    pub(super) fn for_level(level: CpuLevel) -> Option<Tile> {
        match level {
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512Vnni => Some(Tile { ob: AVX512_TILE.0, nr: AVX512_TILE.1 * 16, level }),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => Some(Tile { ob: AVX2_TILE.0, nr: AVX2_TILE.1 * 8, level }),
            _ => None,
        }
    }

    /// Weights `w_taps` (`[taps, o, c]`, tap-major as the shifted GEMMs take them) packed as
    /// `[ceil(o/ob)][c·taps][ob]` with `k = channel·taps + tap`, zero in the rows past `o`.
    pub(super) fn pack_weights(&self, w_taps: &[f32], taps: usize, o: usize, c: usize, packed: &mut Vec<f32>) {
        let (ob, k) = (self.ob, c * taps);
        let blocks = o.div_ceil(ob);
        packed.clear();
        packed.resize(blocks * k * ob, 0.0);
        for (blk, dst) in packed.chunks_mut(k * ob).enumerate() {
            for r in 0..ob.min(o - blk * ob) {
                let ch = blk * ob + r;
                for t in 0..taps {
                    let row = &w_taps[(t * o + ch) * c..][..c];
                    for (ci, &v) in row.iter().enumerate() {
                        dst[(ci * taps + t) * ob + r] = v;
                    }
                }
            }
        }
    }

    /// Computes the `ob × nr` tile of output channels `blk·ob..` at positions `p..p+nr`:
    /// `tile[r·nr + j] = Σ_k packed_blk[k·ob + r] · xp[offsets[k] + p + j]`.
    ///
    /// # Safety
    /// The CPU must support the tile's level; `xp[offsets[k] + p + nr - 1]` must be in bounds
    /// for every `k`; `packed_blk` holds `offsets.len() · ob` values and `tile` `ob · nr`.
    #[inline]
    pub(super) unsafe fn compute(&self, offsets: &[usize], xp: &[f32], p: usize, packed_blk: &[f32], tile: &mut [f32]) {
        debug_assert!(packed_blk.len() >= offsets.len() * self.ob && tile.len() >= self.ob * self.nr);
        debug_assert!(offsets.iter().all(|&o| o + p + self.nr <= xp.len()));
        let x = xp.as_ptr().add(p);
        match self.level {
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512Vnni => x86::tile_avx512::<{ AVX512_TILE.0 }, { AVX512_TILE.1 }>(offsets, x, packed_blk.as_ptr(), tile.as_mut_ptr()),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => x86::tile_avx2::<{ AVX2_TILE.0 }, { AVX2_TILE.1 }>(offsets, x, packed_blk.as_ptr(), tile.as_mut_ptr()),
            _ => unreachable!("no register tile at the {} level", self.level),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One `OB × (NV·LANES)` tile function per instruction set, from one body: per `k`, `NV`
    /// vector loads of the input and `OB` broadcast weights feed `OB·NV` FMAs.
    macro_rules! tile_fn {
        ($(#[$doc:meta])* $name:ident, $features:literal, $lanes:literal, $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const OB: usize, const NV: usize>(offsets: &[usize], x: *const f32, w: *const f32, out: *mut f32) {
                let mut acc = [[$zero(); NV]; OB];
                for (k, &off) in offsets.iter().enumerate() {
                    let xk = x.add(off);
                    let mut b = [$zero(); NV];
                    for (v, bv) in b.iter_mut().enumerate() {
                        *bv = $load(xk.add(v * $lanes));
                    }
                    let wk = w.add(k * OB);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let a = $splat(*wk.add(r));
                        for (v, s) in row.iter_mut().enumerate() {
                            *s = $fma(a, b[v], *s);
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (v, s) in row.iter().enumerate() {
                        $store(out.add((r * NV + v) * $lanes), *s);
                    }
                }
            }
        };
    }

    tile_fn!(
        /// The AVX2 tile: 8-lane ymm vectors.
        tile_avx2, "avx2,fma", 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    tile_fn!(
        /// The AVX-512 tile: 16-lane zmm vectors.
        tile_avx512, "avx2,fma,avx512f", 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
    );
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Each tile against the sum written out in f64, on ragged `o` (a partial last block) and
    /// offsets that are not multiples of the vector width.
    #[test]
    fn tiles_match_the_f64_sum() {
        for level in CpuLevel::supported() {
            let Some(tile) = Tile::for_level(level) else { continue };
            let (taps, o, c) = (3, tile.ob + 3, 5);
            let k = taps * c;
            let w_taps: Vec<f32> = (0..taps * o * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
            let offsets: Vec<usize> = (0..k).map(|i| i * 7 + (i % 3)).collect();
            let xp: Vec<f32> = (0..offsets[k - 1] + 3 + tile.nr).map(|i| ((i * 53 % 97) as f32 - 48.0) / 32.0).collect();
            let mut packed = Vec::new();
            tile.pack_weights(&w_taps, taps, o, c, &mut packed);
            let mut out = vec![0.0f32; tile.ob * tile.nr];
            for blk in 0..o.div_ceil(tile.ob) {
                // SAFETY: the level is supported and xp reaches offsets[k-1] + 3 + nr.
                unsafe { tile.compute(&offsets, &xp, 3, &packed[blk * k * tile.ob..], &mut out) };
                for r in 0..tile.ob {
                    let ch = blk * tile.ob + r;
                    for j in 0..tile.nr {
                        let want: f64 = if ch < o {
                            (0..c).flat_map(|ci| (0..taps).map(move |t| (ci, t))).map(|(ci, t)| w_taps[(t * o + ch) * c + ci] as f64 * xp[offsets[ci * taps + t] + 3 + j] as f64).sum()
                        } else {
                            0.0
                        };
                        let got = out[r * tile.nr + j] as f64;
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{level}: channel {ch} position {j}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
