//! Weights packed once, at quantization time, into the layout every GEMM level reads.
//!
//! The n×k weight matrix (a Linear's `[out, in]` layout) is cut into panels of
//! [`PANEL`] = 16 output channels. Inside a panel, k runs in groups of four: for each group
//! the panel holds 16 channels × 4 consecutive k values, 64 bytes, exactly one AVX-512
//! register, so `vpdpbusd` multiplies a broadcast of four activation bytes against it and adds
//! the four products into each channel's i32 lane. AVX2 reads the same 64 bytes as four
//! 16-byte pieces. Channels past n and k past the end are zero, so kernels never branch on
//! edges inside the reduction.

/// Output channels per panel.
pub const PANEL: usize = 16;
/// Consecutive k values summed into one i32 lane per step.
pub const K_GROUP: usize = 4;

/// An i8 weight matrix in the packed layout, with each channel's weight sum (which the
/// zero-point correction of u8 activations needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// k rounded up to a multiple of [`K_GROUP`].
    k_padded: usize,
    data: Vec<i8>,
    col_sums: Vec<i32>,
}

impl PackedI8 {
    /// Packs a row-major `n`×`k` matrix (`weights[j*k + p]` is channel j's weight for input p).
    ///
    /// # Panics
    /// If `weights.len() != n * k`.
    pub fn pack(weights: &[i8], n: usize, k: usize) -> PackedI8 {
        assert_eq!(
            weights.len(),
            n * k,
            "PackedI8::pack: weights have {} values, but {n}x{k} needs {}",
            weights.len(),
            n * k
        );
        let k_padded = k.div_ceil(K_GROUP) * K_GROUP;
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0i8; panels * PANEL * k_padded];
        for (j, row) in weights.chunks_exact(k.max(1)).enumerate().take(n) {
            let (panel, c) = (j / PANEL, j % PANEL);
            let base = panel * PANEL * k_padded;
            for (p, &w) in row.iter().enumerate() {
                let (group, lane) = (p / K_GROUP, p % K_GROUP);
                data[base + (group * PANEL + c) * K_GROUP + lane] = w;
            }
        }
        let col_sums = if k == 0 {
            vec![0; n]
        } else {
            weights.chunks_exact(k).map(|row| row.iter().map(|&w| i32::from(w)).sum()).collect()
        };
        PackedI8 { n, k, k_padded, data, col_sums }
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Reduction length (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    pub(crate) fn k_padded(&self) -> usize {
        self.k_padded
    }

    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    /// The packed bytes of panel `p`: `k_padded / 4` groups of 64 bytes.
    pub(crate) fn panel(&self, p: usize) -> &[i8] {
        let len = PANEL * self.k_padded;
        &self.data[p * len..(p + 1) * len]
    }

    /// The packed bytes of `np` consecutive panels from panel `p0`.
    pub(crate) fn data_from_panel(&self, p0: usize, np: usize) -> &[i8] {
        let len = PANEL * self.k_padded;
        &self.data[p0 * len..(p0 + np) * len]
    }

    /// Sum of each channel's weights.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Recovers the row-major `n`×`k` matrix (for saving and for tests).
    pub fn unpack(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.n * self.k];
        for j in 0..self.n {
            let panel = self.panel(j / PANEL);
            for p in 0..self.k {
                out[j * self.k + p] = panel[((p / K_GROUP) * PANEL + j % PANEL) * K_GROUP + p % K_GROUP];
            }
        }
        out
    }

    /// Bytes the packed weights occupy.
    pub fn packed_bytes(&self) -> usize {
        self.data.len()
    }
}
