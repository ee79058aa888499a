//! What happens to a tile of i32 accumulators before it leaves the GEMM: the zero-point
//! correction, the per-channel scale, bias, ReLU, and either f32 output or requantization to
//! the next layer's u8 activations. Fused so the i32 results never go to memory.

use crate::cpu::CpuLevel;

/// Where and how the GEMM writes its results. Element (i, j) goes to `out[i * ldo + j]`.
pub enum Output<'a> {
    /// Raw accumulators Σ a·w, no zero-point correction.
    I32(&'a mut [i32]),
    /// `y = (acc - a_zero·Σw_j) · scale_j + bias_j`, then ReLU if asked.
    F32 { out: &'a mut [f32], epilogue: Epilogue<'a> },
    /// `y` as for `F32`, requantized: `clamp(round_half_even(y / out_scale) + out_zero, 0, 255)`.
    U8 { out: &'a mut [u8], epilogue: Epilogue<'a>, out_scale: f32, out_zero: i32 },
}

/// The affine map from accumulators to real values, shared by the `F32` and `U8` outputs.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// The activations' zero point (their u8 value for 0.0).
    pub a_zero: i32,
    /// Per output channel: activation scale × that channel's weight scale (length n).
    pub scales: &'a [f32],
    /// Per output channel, in real units (length n), if any.
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// The real value of channel `j`'s accumulator.
    #[inline]
    pub fn real(&self, j: usize, acc: i32, col_sum: i32) -> f32 {
        let centred = acc.wrapping_sub(self.a_zero.wrapping_mul(col_sum));
        let mut y = centred as f32 * self.scales[j];
        if let Some(b) = self.bias {
            y += b[j];
        }
        if self.relu {
            y = y.max(0.0);
        }
        y
    }
}

impl Epilogue<'_> {
    /// [`Epilogue::real`] for channels `j0..j0 + acc.len()`, each value handed to `store`: one
    /// pass over the row with the options decided once, so that the loop vectorises (the same
    /// arithmetic, in the same order, as `real`).
    #[inline(always)]
    fn each_real(&self, j0: usize, acc: &[i32], col_sums: &[i32], store: impl FnMut(usize, f32)) {
        match (self.bias, self.relu) {
            (Some(b), true) => self.each_real_with::<true, true>(j0, acc, col_sums, b, store),
            (Some(b), false) => self.each_real_with::<true, false>(j0, acc, col_sums, b, store),
            (None, true) => self.each_real_with::<false, true>(j0, acc, col_sums, &[], store),
            (None, false) => self.each_real_with::<false, false>(j0, acc, col_sums, &[], store),
        }
    }

    #[inline(always)]
    fn each_real_with<const BIAS: bool, const RELU: bool>(&self, j0: usize, acc: &[i32], col_sums: &[i32], bias: &[f32], mut store: impl FnMut(usize, f32)) {
        let n = acc.len();
        let (scales, sums) = (&self.scales[j0..j0 + n], &col_sums[j0..j0 + n]);
        let bias = if BIAS { &bias[j0..j0 + n] } else { &[][..] };
        let z = self.a_zero;
        for j in 0..n {
            let mut y = acc[j].wrapping_sub(z.wrapping_mul(sums[j])) as f32 * scales[j];
            if BIAS {
                y += bias[j];
            }
            if RELU {
                y = y.max(0.0);
            }
            store(j, y);
        }
    }
}

/// `clamp(round_half_even(x · inv_scale) + zero, 0, 255)`: PyTorch's rule (`nearbyint` under
/// the default rounding mode, multiplying by the f32 reciprocal of the scale).
#[inline]
pub fn quantize_u8_one(x: f32, inv_scale: f32, zero: i32) -> u8 {
    let q = round_half_even(x * inv_scale);
    // NaN ends up as 0 through `as`; callers reject NaN before quantizing.
    (q + zero as f32).clamp(0.0, 255.0) as u8
}

/// Round half to even without a libm call (`f32::round_ties_even` is one on baseline x86-64,
/// which has no `roundss`): adding 1.5·2²³ leaves no fraction bits, so the FPU's default
/// rounding (to nearest, ties to even) does the work, and the loop vectorises. Exact for
/// |x| ≤ 2²²; larger magnitudes are clamped first, which only matters beyond any 8-bit range.
#[inline]
pub fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    const LIMIT: f32 = 4_194_304.0; // 2^22
    (x.clamp(-LIMIT, LIMIT) + MAGIC) - MAGIC
}

impl Output<'_> {
    /// Validates the output against an m×n result with row stride `ldo`.
    pub(crate) fn check(&self, m: usize, n: usize, ldo: usize) {
        let len = match self {
            Output::I32(o) => o.len(),
            Output::F32 { out, epilogue } => {
                epilogue.check(n);
                out.len()
            }
            Output::U8 { out, epilogue, out_scale, .. } => {
                epilogue.check(n);
                assert!(
                    out_scale.is_finite() && *out_scale > 0.0,
                    "qgemm: output scale must be finite and positive, got {out_scale}"
                );
                out.len()
            }
        };
        assert!(ldo >= n, "qgemm: output row stride {ldo} is smaller than n = {n}");
        if m > 0 && n > 0 {
            let need = (m - 1) * ldo + n;
            assert!(len >= need, "qgemm: output has {len} elements, but {m}x{n} at row stride {ldo} needs {need}");
        }
    }
}

impl Epilogue<'_> {
    fn check(&self, n: usize) {
        assert_eq!(self.scales.len(), n, "qgemm: {} scales for {n} output channels", self.scales.len());
        if let Some(b) = self.bias {
            assert_eq!(b.len(), n, "qgemm: bias has {} values for {n} output channels", b.len());
        }
    }
}

/// A raw pointer to the output, shared by threads that write disjoint columns.
#[derive(Clone, Copy)]
pub(crate) enum OutPtr {
    I32(*mut i32),
    F32(*mut f32, Epilogue<'static>),
    U8(*mut u8, Epilogue<'static>, f32, i32),
}

// SAFETY: threads write disjoint (row, column) ranges; the epilogue's slices are only read.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Erases the output's lifetime; the driver keeps the borrow alive while threads run.
    pub(crate) fn new(out: &mut Output<'_>) -> OutPtr {
        // SAFETY: only extends the slices' lifetimes to 'static for the duration of one GEMM
        // call, which borrows `out` mutably the whole time.
        let erase = |e: &Epilogue<'_>| -> Epilogue<'static> { unsafe { std::mem::transmute(*e) } };
        match out {
            Output::I32(o) => OutPtr::I32(o.as_mut_ptr()),
            Output::F32 { out, epilogue } => OutPtr::F32(out.as_mut_ptr(), erase(epilogue)),
            Output::U8 { out, epilogue, out_scale, out_zero } => {
                OutPtr::U8(out.as_mut_ptr(), erase(epilogue), 1.0 / *out_scale, *out_zero)
            }
        }
    }

    /// Writes `cols` results of one row, channels `j0..j0+cols`, at element offset `at`, with
    /// the epilogue compiled for `level` (which the caller checked the CPU supports).
    ///
    /// # Safety
    /// `at..at+cols` must lie inside the output and belong to this thread; the CPU must
    /// support `level`.
    #[inline]
    pub(crate) unsafe fn write_row(&self, level: CpuLevel, at: usize, j0: usize, acc: &[i32], col_sums: &[i32]) {
        match level {
            CpuLevel::Scalar => self.write_row_body(at, j0, acc, col_sums),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => self.write_row_avx2(at, j0, acc, col_sums),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512Vnni => self.write_row_avx512(at, j0, acc, col_sums),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only scalar runs off x86_64"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn write_row_avx2(&self, at: usize, j0: usize, acc: &[i32], col_sums: &[i32]) {
        self.write_row_body(at, j0, acc, col_sums)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn write_row_avx512(&self, at: usize, j0: usize, acc: &[i32], col_sums: &[i32]) {
        self.write_row_body(at, j0, acc, col_sums)
    }

    /// The row write itself; no FMA contraction happens (Rust never fuses `a * b + c`), so
    /// every level gives the same bits.
    #[inline(always)]
    unsafe fn write_row_body(&self, at: usize, j0: usize, acc: &[i32], col_sums: &[i32]) {
        match *self {
            OutPtr::I32(p) => std::ptr::copy_nonoverlapping(acc.as_ptr(), p.add(at), acc.len()),
            OutPtr::F32(p, e) => {
                let out = std::slice::from_raw_parts_mut(p.add(at), acc.len());
                e.each_real(j0, acc, col_sums, |j, y| out[j] = y);
            }
            OutPtr::U8(p, e, inv_scale, zero) => {
                let out = std::slice::from_raw_parts_mut(p.add(at), acc.len());
                e.each_real(j0, acc, col_sums, |j, y| out[j] = quantize_u8_one(y, inv_scale, zero));
            }
        }
    }
}
