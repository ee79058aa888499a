//! Creating tensors: constants, ranges, identity, and seeded random numbers.
//!
//! Random tensors come from a [`Generator`] (ChaCha8). Every sampler consumes a fixed number of
//! 32-bit words per element, so a tensor of `n` elements is a pure function of the generator's
//! position and `n`: large tensors are filled in parallel chunks (each chunk seeks to its own
//! position in the stream) and still give the same values on any number of threads, and the
//! generator always advances by the same amount.

use std::cell::RefCell;

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tensorbrain_kernels::strided::PARALLEL_THRESHOLD;

use super::{any_dispatch, ok};
use crate::tensor::{try_filled, try_zeroed, DType, Element, Error, Result, StorageElement, Tensor};

/// A seedable random number generator (ChaCha8: fast, reproducible across platforms).
#[derive(Clone, Debug)]
pub struct Generator {
    pub(crate) rng: ChaCha8Rng,
    seed: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator { rng: ChaCha8Rng::seed_from_u64(seed), seed }
    }

    /// The seed this generator was created (or last re-seeded) with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The full state, for checkpoints: seed plus position (in 32-bit words) in the stream.
    pub fn state(&self) -> (u64, u128) {
        (self.seed, self.rng.get_word_pos())
    }

    /// Restores a state from [`Generator::state`]: the generator continues exactly where the
    /// saved one was.
    pub fn set_state(&mut self, (seed, pos): (u64, u128)) {
        *self = Generator::new(seed);
        self.rng.set_word_pos(pos);
    }

    /// Fills `out` from the stream. Element `i` is made from words `[i * w, (i + 1) * w)`
    /// (relative to the current position), in groups of `group` elements: `f(words, out)`
    /// receives `w * round_up(out.len(), group)` words. The generator advances by exactly that
    /// many words for the whole of `out`, whatever the thread count.
    fn fill<T: Send>(&mut self, out: &mut [T], w: usize, group: usize, f: impl Fn(&[u32], &mut [T]) + Sync) {
        // Elements per block of words taken from the rng at once (a multiple of every group).
        const BLOCK: usize = 1024;
        let fill_run = |rng: &mut ChaCha8Rng, out: &mut [T]| {
            let mut words = [0u32; 2 * BLOCK];
            for part in out.chunks_mut(BLOCK) {
                let nw = w * part.len().div_ceil(group) * group;
                rng.fill(&mut words[..nw]);
                f(&words[..nw], part);
            }
        };
        let base = self.rng.get_word_pos();
        let n = out.len();
        if n >= PARALLEL_THRESHOLD {
            // A multiple of BLOCK, so chunk boundaries fall on group boundaries.
            const CHUNK: usize = PARALLEL_THRESHOLD;
            let proto = self.rng.clone();
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| {
                let mut rng = proto.clone();
                rng.set_word_pos(base + (k * CHUNK * w) as u128);
                fill_run(&mut rng, chunk);
            });
        } else {
            fill_run(&mut self.rng, out);
        }
        self.rng.set_word_pos(base + (w * n.div_ceil(group) * group) as u128);
    }
}

impl Default for Generator {
    fn default() -> Generator {
        Generator::new(0)
    }
}

thread_local! {
    static DEFAULT_GENERATOR: RefCell<Generator> = RefCell::new(Generator::new(0));
}

/// Seeds this thread's default generator (used by `rand`, `randn`, layer init, dropout...).
pub fn manual_seed(seed: u64) {
    DEFAULT_GENERATOR.with(|g| *g.borrow_mut() = Generator::new(seed));
}

/// Runs `f` with this thread's default generator (to read or restore its state, or to pass it
/// to the `*_with` samplers).
pub fn with_default_generator<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    DEFAULT_GENERATOR.with(|g| f(&mut g.borrow_mut()))
}

// ----------------------------------------------------------------------------------------------
// Word-to-value conversions. Each is exact and branch-free so the loops vectorise.
// ----------------------------------------------------------------------------------------------

/// `[0, 1)` with 24 random bits.
#[inline(always)]
fn unit_f32(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// `(0, 1]` with 24 random bits (safe to take the log of).
#[inline(always)]
fn unit_open_f32(w: u32) -> f32 {
    ((w >> 8) + 1) as f32 * (1.0 / (1u32 << 24) as f32)
}

#[inline(always)]
fn word64(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

/// `[0, 1)` with 53 random bits.
#[inline(always)]
fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `(0, 1]` with 53 random bits.
#[inline(always)]
fn unit_open_f64(x: u64) -> f64 {
    ((x >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Box-Muller on one pair of words: two independent standard normals, in f32.
#[inline(always)]
fn normal_pair_f32(w0: u32, w1: u32) -> (f32, f32) {
    let r = (-2.0 * unit_open_f32(w0).ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * unit_f32(w1)).sin_cos();
    (r * c, r * s)
}

/// Box-Muller in f64 on two 64-bit draws.
#[inline(always)]
fn normal_pair_f64(x0: u64, x1: u64) -> (f64, f64) {
    let r = (-2.0 * unit_open_f64(x0).ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * unit_f64(x1)).sin_cos();
    (r * c, r * s)
}

/// Standard normals into `out` from pairs of `w`-word draws made by `pair`.
fn normals<T: Copy>(words: &[u32], out: &mut [T], w: usize, pair: impl Fn(&[u32]) -> (T, T)) {
    for (o, ws) in out.chunks_mut(2).zip(words.chunks_exact(2 * w)) {
        let (a, b) = pair(ws);
        o[0] = a;
        if let Some(o1) = o.get_mut(1) {
            *o1 = b;
        }
    }
}

fn check_float(op: &'static str, dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::DType { op, got: dtype, expected: "a floating-point dtype (f32, f64, f16, bf16)" })
    }
}

impl Tensor {
    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    #[track_caller]
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        ok(Tensor::try_full(shape, value, dtype))
    }

    /// [`Tensor::full`], or an error for a shape whose size overflows or cannot be allocated.
    pub fn try_full(shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        Tensor::filled("full", shape, value, dtype)
    }

    #[track_caller]
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        ok(Tensor::try_zeros(shape, dtype))
    }

    pub fn try_zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::filled("zeros", shape, 0.0, dtype)
    }

    #[track_caller]
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        ok(Tensor::try_ones(shape, dtype))
    }

    pub fn try_ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::filled("ones", shape, 1.0, dtype)
    }

    fn filled(op: &'static str, shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        Ok(any_dispatch!(dtype, T => Tensor::from_storage(T::wrap(try_filled(op, shape, <T as Element>::from_f64(value))?), shape)))
    }

    /// Zeros of this tensor's shape and dtype, on its device.
    pub fn zeros_like(&self) -> Tensor {
        ok(self.try_zeros_like())
    }

    pub fn ones_like(&self) -> Tensor {
        ok(Tensor::try_ones(self.shape(), self.dtype()).and_then(|t| t.try_to_device(self.device())))
    }

    pub fn full_like(&self, value: f64) -> Tensor {
        ok(Tensor::filled("full", self.shape(), value, self.dtype()).and_then(|t| t.try_to_device(self.device())))
    }

    pub(crate) fn try_zeros_like(&self) -> Result<Tensor> {
        Tensor::try_zeros_on(self.shape(), self.dtype(), self.device())
    }

    /// This tensor (made on the host: a constant, a table, a mask) on `device`, where the
    /// tensors it meets live; itself when that is the CPU.
    pub(crate) fn try_on(self, device: crate::tensor::Device) -> Result<Tensor> {
        if device == crate::tensor::Device::Cpu {
            Ok(self)
        } else {
            self.try_to_device(device)
        }
    }

    /// Zeros of `shape` and `dtype` on `device` (filled on the device, not uploaded).
    pub(crate) fn try_zeros_on(shape: &[usize], dtype: DType, device: crate::tensor::Device) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if device != crate::tensor::Device::Cpu {
            return crate::cuda::zeros(shape, dtype, device);
        }
        let _ = device;
        Tensor::try_zeros(shape, dtype)
    }

    // ------------------------------------------------------------------------------------------
    // Ranges and identity
    // ------------------------------------------------------------------------------------------

    /// `start, start + step, ...` up to but excluding `end`: `ceil((end - start) / step)`
    /// values, each computed as `start + i * step` in f64 and then converted to `dtype`, like
    /// `torch.arange`. Errors on a zero or non-finite step, non-finite bounds, or a step whose
    /// sign points away from `end` (`start == end` gives an empty tensor for either sign).
    #[track_caller]
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Tensor {
        ok(Tensor::try_arange(start, end, step, dtype))
    }

    pub fn try_arange(start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        let bad = |msg: String| Err(Error::invalid("arange", &[], msg));
        if !start.is_finite() || !end.is_finite() {
            return bad(format!("unsupported range {start} -> {end}: bounds must be finite"));
        }
        if step == 0.0 || !step.is_finite() {
            return bad(format!("step must be finite and nonzero, got {step}"));
        }
        if (step > 0.0 && end < start) || (step < 0.0 && end > start) {
            return bad(format!("step {step} has the wrong sign for the range {start} -> {end}"));
        }
        let len = ((end - start) / step).ceil();
        if len > (isize::MAX as f64) / (dtype.size_in_bytes() as f64) {
            return bad(format!("range {start} -> {end} with step {step} has too many elements ({len})"));
        }
        let n = len as usize;
        Ok(any_dispatch!(dtype, T => {
            let mut v = try_zeroed::<T>("arange", &[n])?;
            v.iter_mut().enumerate().for_each(|(i, x)| *x = T::from_f64(start + i as f64 * step));
            Tensor::from_vec(v, &[n])
        }))
    }

    /// `steps` values evenly spaced from `start` to `end` inclusive, like `torch.linspace`.
    ///
    /// Uses PyTorch's formula: `step = (end - start) / (steps - 1)`; the first half of the
    /// values are `start + i * step` and the second half `end - (steps - 1 - i) * step`, so both
    /// ends are exact. Computed in f64 for f64 and integer dtypes (then truncated), and in f32
    /// for f32, f16 and bf16. `steps == 1` gives `[start]`.
    pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType) -> Tensor {
        if steps <= 1 {
            return Tensor::full(&[steps], start, dtype);
        }
        fn values<F: num_traits::Float>(start: F, end: F, steps: usize) -> impl Iterator<Item = F> {
            let step = (end - start) / F::from(steps - 1).unwrap();
            let half = steps / 2;
            (0..steps).map(move |i| {
                if i < half {
                    start + step * F::from(i).unwrap()
                } else {
                    end - step * F::from(steps - 1 - i).unwrap()
                }
            })
        }
        match dtype {
            DType::F32 => Tensor::from_vec(values(start as f32, end as f32, steps).collect(), &[steps]),
            DType::F16 => Tensor::from_vec(values(start as f32, end as f32, steps).map(f16::from_f32).collect(), &[steps]),
            DType::BF16 => Tensor::from_vec(values(start as f32, end as f32, steps).map(bf16::from_f32).collect(), &[steps]),
            _ => {
                // Integer dtypes start from the bounds converted to the dtype, like PyTorch.
                let (s, e) = any_dispatch!(dtype, T => (T::from_f64(start).to_f64(), T::from_f64(end).to_f64()));
                let v: Vec<f64> = values(s, e, steps).collect();
                any_dispatch!(dtype, T => Tensor::from_vec(v.into_iter().map(T::from_f64).collect::<Vec<T>>(), &[steps]))
            }
        }
    }

    /// The `n x n` identity matrix.
    pub fn eye(n: usize, dtype: DType) -> Tensor {
        Tensor::eye_m(n, n, dtype)
    }

    /// An `n x m` matrix with ones on the main diagonal (`torch.eye(n, m)`).
    pub fn eye_m(n: usize, m: usize, dtype: DType) -> Tensor {
        any_dispatch!(dtype, T => {
            let mut v = ok(try_zeroed::<T>("eye", &[n, m]));
            let one = T::from_f64(1.0);
            for i in 0..n.min(m) {
                v[i * m + i] = one;
            }
            Tensor::from_vec(v, &[n, m])
        })
    }

    // ------------------------------------------------------------------------------------------
    // Random tensors
    // ------------------------------------------------------------------------------------------

    /// Uniform samples in `[0, 1)` from this thread's default generator (seed it with
    /// [`manual_seed`]). Float dtypes only; f32 values carry 24 random bits, f64 53, f16 11 and
    /// bf16 8 (so half-precision values are exact and never round up to 1).
    #[track_caller]
    pub fn rand(shape: &[usize], dtype: DType) -> Tensor {
        ok(Tensor::try_rand(shape, dtype))
    }

    pub fn try_rand(shape: &[usize], dtype: DType) -> Result<Tensor> {
        with_default_generator(|g| Tensor::try_rand_with(shape, dtype, g))
    }

    /// [`Tensor::rand`] drawing from an explicit generator.
    #[track_caller]
    pub fn rand_with(shape: &[usize], dtype: DType, gen: &mut Generator) -> Tensor {
        ok(Tensor::try_rand_with(shape, dtype, gen))
    }

    pub fn try_rand_with(shape: &[usize], dtype: DType, gen: &mut Generator) -> Result<Tensor> {
        check_float("rand", dtype)?;
        Ok(match dtype {
            DType::F32 => {
                let mut v = try_zeroed::<f32>("rand", shape)?;
                gen.fill(&mut v, 1, 1, |w, o| o.iter_mut().zip(w).for_each(|(o, &w)| *o = unit_f32(w)));
                Tensor::from_vec(v, shape)
            }
            DType::F64 => {
                let mut v = try_zeroed::<f64>("rand", shape)?;
                gen.fill(&mut v, 2, 1, |w, o| {
                    o.iter_mut().zip(w.chunks_exact(2)).for_each(|(o, w)| *o = unit_f64(word64(w[0], w[1])))
                });
                Tensor::from_vec(v, shape)
            }
            DType::F16 => {
                let mut v = try_zeroed::<f16>("rand", shape)?;
                let scale = 1.0 / (1u32 << 11) as f32;
                gen.fill(&mut v, 1, 1, |w, o| o.iter_mut().zip(w).for_each(|(o, &w)| *o = f16::from_f32((w >> 21) as f32 * scale)));
                Tensor::from_vec(v, shape)
            }
            DType::BF16 => {
                let mut v = try_zeroed::<bf16>("rand", shape)?;
                let scale = 1.0 / (1u32 << 8) as f32;
                gen.fill(&mut v, 1, 1, |w, o| o.iter_mut().zip(w).for_each(|(o, &w)| *o = bf16::from_f32((w >> 24) as f32 * scale)));
                Tensor::from_vec(v, shape)
            }
            _ => unreachable!("checked above"),
        })
    }

    /// Standard normal samples (mean 0, std 1) from this thread's default generator. Float
    /// dtypes only; f32, f16 and bf16 are sampled in f32 (Box-Muller), f64 in f64.
    #[track_caller]
    pub fn randn(shape: &[usize], dtype: DType) -> Tensor {
        ok(Tensor::try_randn(shape, dtype))
    }

    pub fn try_randn(shape: &[usize], dtype: DType) -> Result<Tensor> {
        with_default_generator(|g| Tensor::try_randn_with(shape, dtype, g))
    }

    /// [`Tensor::randn`] drawing from an explicit generator.
    #[track_caller]
    pub fn randn_with(shape: &[usize], dtype: DType, gen: &mut Generator) -> Tensor {
        ok(Tensor::try_randn_with(shape, dtype, gen))
    }

    pub fn try_randn_with(shape: &[usize], dtype: DType, gen: &mut Generator) -> Result<Tensor> {
        check_float("randn", dtype)?;
        Ok(match dtype {
            DType::F64 => {
                let mut v = try_zeroed::<f64>("randn", shape)?;
                gen.fill(&mut v, 2, 2, |w, o| normals(w, o, 2, |w| normal_pair_f64(word64(w[0], w[1]), word64(w[2], w[3]))));
                Tensor::from_vec(v, shape)
            }
            _ => {
                let mut v = try_zeroed::<f32>("randn", shape)?;
                gen.fill(&mut v, 1, 2, |w, o| normals(w, o, 1, |w| normal_pair_f32(w[0], w[1])));
                let t = Tensor::from_vec(v, shape);
                if dtype == DType::F32 {
                    t
                } else {
                    t.try_to_dtype(dtype)?
                }
            }
        })
    }

    /// Uniform random integers in `[low, high)` as an i64 tensor, from this thread's default
    /// generator (`torch.randint`). Errors if `low >= high`.
    #[track_caller]
    pub fn randint(low: i64, high: i64, shape: &[usize]) -> Tensor {
        ok(Tensor::try_randint(low, high, shape))
    }

    pub fn try_randint(low: i64, high: i64, shape: &[usize]) -> Result<Tensor> {
        with_default_generator(|g| Tensor::try_randint_with(low, high, shape, g))
    }

    /// [`Tensor::randint`] drawing from an explicit generator.
    #[track_caller]
    pub fn randint_with(low: i64, high: i64, shape: &[usize], gen: &mut Generator) -> Tensor {
        ok(Tensor::try_randint_with(low, high, shape, gen))
    }

    pub fn try_randint_with(low: i64, high: i64, shape: &[usize], gen: &mut Generator) -> Result<Tensor> {
        if low >= high {
            return Err(Error::invalid("randint", shape, format!("low ({low}) must be less than high ({high})")));
        }
        let range = high.wrapping_sub(low) as u64 as u128;
        let mut v = try_zeroed::<i64>("randint", shape)?;
        // One 64-bit draw per element scaled into the range by a widening multiply (Lemire):
        // the bias is below range / 2^64, far under anything measurable.
        gen.fill(&mut v, 2, 1, |w, o| {
            for (o, w) in o.iter_mut().zip(w.chunks_exact(2)) {
                let off = ((word64(w[0], w[1]) as u128 * range) >> 64) as i64;
                *o = low.wrapping_add(off);
            }
        });
        Ok(Tensor::from_vec(v, shape))
    }

    /// [`Tensor::rand`] with this tensor's shape and dtype.
    pub fn try_rand_like(&self) -> Result<Tensor> {
        Tensor::try_rand(self.shape(), self.dtype())
    }

    /// [`Tensor::randn`] with this tensor's shape and dtype.
    pub fn try_randn_like(&self) -> Result<Tensor> {
        Tensor::try_randn(self.shape(), self.dtype())
    }
}

super::panicking! {
    /// Uniform `[0, 1)` samples with this tensor's shape and dtype (float dtypes only).
    fn rand_like / try_rand_like(&self) -> Tensor;
    /// Standard normal samples with this tensor's shape and dtype (float dtypes only).
    fn randn_like / try_randn_like(&self) -> Tensor;
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Tensor>();
}
