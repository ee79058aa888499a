//! Branch-free f32 `exp`, `log`, `tanh`, sigmoid, `erf`, the normal CDF and GELU that LLVM
//! vectorises, for the fused elementwise kernels and the eager ops that run through them.
//!
//! libm's `expf`/`tanhf`/`erff` are scalar calls, so a fused kernel full of sigmoids and tanhs
//! spends its time in them one element at a time, whatever fusion saves in memory traffic.
//! `exp`, `log` and `tanh` are the Cephes polynomials (as in SLEEF-style vector math libraries);
//! `erf` and the normal CDF use polynomials fitted for this module (Lawson-weighted least
//! squares toward minimax relative error, in float64). All are written with selects instead of
//! branches and keep libm's results at the edges: `exp` overflows to infinity above
//! ln(f32::MAX) and underflows through the subnormals to 0, `log` gives -inf at 0 and NaN below,
//! and every function passes NaN through. The ulp bounds below hold over every f32 input.

// The coefficients are written as fitted (or as Cephes gives them); rounding them to the
// nearest f32 is the compiler's job.
#![allow(clippy::excessive_precision)]

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `x - n ln 2` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds an f32 to the nearest integer (no SSE4.1 needed).
const ROUND: f32 = 12_582_912.0;
/// ln(f32::MAX): above it `exp` is infinite.
const EXP_MAX: f32 = 88.722_84;
/// Below this `exp` is 0 in f32 (under half the smallest subnormal).
const EXP_MIN: f32 = -104.0;

/// Bounds on the error, in f32 ulps against the exact (f64) result, over every f32 input.
/// `exhaustive_ulp_report` (ignored: 15 minutes on 2 cores) measured the maxima over all 2^32
/// inputs as exp 0.990, tanh 1.330, sigmoid 2.825, log 0.827, erf 2.813, Φ 6.528 and GELU
/// 7.024 ulp; the other tests check a spread-out 1/257 of all inputs against the same bounds.
pub const EXP_ULP: f64 = 1.0;
pub const TANH_ULP: f64 = 1.5;
/// `1 / (1 + exp(-x))` with [`exp_f32`].
pub const SIGMOID_ULP: f64 = 3.0;
/// The same functions with fused multiply-adds ([`exp_f32_fma`], ...): the single rounding
/// moves individual results by an ulp either way. Over all 2^32 inputs the maxima are exp
/// 1.010, tanh 1.330 and sigmoid 2.825 ulp (measured once, the same way as
/// `exhaustive_ulp_report`).
pub const EXP_FMA_ULP: f64 = 1.5;
pub const TANH_FMA_ULP: f64 = 1.5;
pub const SIGMOID_FMA_ULP: f64 = 3.0;
pub const LOG_ULP: f64 = 1.0;
pub const ERF_ULP: f64 = 3.0;
pub const NORMAL_CDF_ULP: f64 = 7.0;
/// `x·Φ(x)`, the exact GELU.
pub const GELU_ULP: f64 = 7.5;

/// 2^n for integer `n` in -127..=127, built from its exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `a·b + c`: one fused multiply-add (a single rounding) when `FMA`, else a product and a sum.
/// Both are exact IEEE operations, so a function computes the same bits on every SIMD level
/// either way; the fused form is 12 fewer instructions in `exp` but is a libm call wherever the
/// compiler may not assume the FMA instruction.
#[inline(always)]
fn mla<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x`, to within [`EXP_ULP`].
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp::<false>(x)
}

/// [`exp_f32`] with fused multiply-adds ([`EXP_FMA_ULP`]): for code compiled with FMA
/// enabled (the fused kernels' AVX2 and AVX-512 levels, where it is 1.4x faster); elsewhere
/// each multiply-add is a libm call.
#[inline(always)]
pub fn exp_f32_fma(x: f32) -> f32 {
    exp::<true>(x)
}

#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let (y, n) = exp_parts::<FMA>(xc);
    // n is in -150..=128: scale in two halves so each factor is a normal float.
    let half = n >> 1;
    let e = y * pow2(half) * pow2(n - half);
    let e = if x > EXP_MAX { f32::INFINITY } else { e };
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `e^x = y·2^n` for finite `x` in `[EXP_MIN, EXP_MAX]`: `y` in about [0.7, 1.42] and the
/// integer `n`.
#[inline(always)]
fn exp_parts<const FMA: bool>(x: f32) -> (f32, i32) {
    // t = n + 1.5·2^23 holds n in its low mantissa bits: the integer comes from the bits, not
    // from a saturating float-to-int conversion, which does not vectorise.
    let t = mla::<FMA>(x, LOG2E, ROUND);
    let n = t - ROUND;
    let r = mla::<FMA>(-n, LN2_LO, mla::<FMA>(-n, LN2_HI, x));
    let z = r * r;
    let p = mla::<FMA>(mla::<FMA>(mla::<FMA>(mla::<FMA>(mla::<FMA>(1.987_569_1e-4, r, 1.398_199_9e-3), r, 8.333_452e-3), r, 4.166_579_6e-2), r, 1.666_666_5e-1), r, 5.000_000_1e-1);
    let y = mla::<FMA>(p, z, r) + 1.0;
    (y, t.to_bits() as i32 - ROUND.to_bits() as i32)
}

/// `tanh x`, to within [`TANH_ULP`].
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    tanh::<false>(x)
}

/// [`tanh_f32`] with fused multiply-adds ([`TANH_FMA_ULP`]), for code compiled with FMA (see
/// [`exp_f32_fma`]).
#[inline(always)]
pub fn tanh_f32_fma(x: f32) -> f32 {
    tanh::<true>(x)
}

#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    let a = x.abs();
    // |x| < 0.625: odd polynomial (no cancellation near 0).
    let z = x * x;
    let p = mla::<FMA>(mla::<FMA>(mla::<FMA>(mla::<FMA>(-5.704_988_7e-3, z, 2.063_908_9e-2), z, -5.373_971_6e-2), z, 1.333_144_2e-1), z, -3.333_328_2e-1);
    let small = mla::<FMA>(x * z, p, x);
    // Otherwise 1 - 2 / (e^{2|x|} + 1). That is 1.0 in f32 from |x| = 10 on, so |x| is capped
    // there and e^{2|x|} needs none of `exp`'s overflow, underflow or two-step scaling: the
    // same bits as the general `exp` in fewer instructions. (The cap is written as a
    // comparison so that NaN passes through it.)
    let capped = if a > 10.0 { 10.0 } else { a };
    let (y, n) = exp_parts::<FMA>(2.0 * capped);
    let large = (1.0 - 2.0 / mla::<FMA>(y, pow2(n), 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 2^23, to lift a subnormal into the normal range before its exponent is read.
const TWO_POW_23: f32 = 8_388_608.0;

/// Natural logarithm: `x = m·2^e` with `m` in [√½, √2), then `ln(1+f)` for `f = m-1` by the
/// Cephes polynomial and `e·ln 2` added in two parts. Exponent and mantissa come from the bits,
/// so there is no branch and no libm call. 0 gives -inf, negatives and NaN give NaN, +inf gives
/// +inf, subnormals are scaled by 2^23 first.
#[inline(always)]
pub fn log_f32(x: f32) -> f32 {
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal { x * TWO_POW_23 } else { x };
    let bits = xs.to_bits() as i32;
    // m in [0.5, 1): the mantissa with the exponent of 0.5.
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    let e = ((bits >> 23) & 0xff) - 126 - if subnormal { 23 } else { 0 };
    let below = m < SQRT_HALF;
    let e = (e - below as i32) as f32;
    let f = if below { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let p = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f - 1.242_014_1e-1) * f + 1.424_932_3e-1) * f - 1.666_805_8e-1) * f
        + 2.000_071_5e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333_1e-1)
        * f
        * z;
    let y = p + e * LN2_LO - 0.5 * z;
    let r = f + y + e * LN2_HI;
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        r
    }
}


/// `1 / (1 + e^{-x})`, without overflow: for `x < 0` it is `e^x / (1 + e^x)`, so the tail
/// below -88.7 (where `e^{-x}` is infinite) goes through the subnormals to 0 as it should.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    sigmoid::<false>(x)
}

/// [`sigmoid_f32`] with fused multiply-adds ([`SIGMOID_FMA_ULP`]), for code compiled with FMA
/// (see [`exp_f32_fma`]).
#[inline(always)]
pub fn sigmoid_f32_fma(x: f32) -> f32 {
    sigmoid::<true>(x)
}

#[inline(always)]
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    // e^{-|x|}: the argument is never positive, so of `exp`'s edge cases only the underflow
    // remains (the same bits as `exp` in fewer instructions). The floor is a comparison so
    // that NaN passes through.
    let m = -x.abs();
    let (y, n) = exp_parts::<FMA>(if m < EXP_MIN { EXP_MIN } else { m });
    let half = n >> 1;
    let e = y * pow2(half) * pow2(n - half);
    let s = 1.0 / (1.0 + e);
    if x < 0.0 {
        e * s
    } else {
        s
    }
}

/// `e^{-s·a²}` for `s` = 1 or ½, with `a²` split exactly into `hi + lo` (Dekker's product,
/// no FMA, so every SIMD level gives the same bits): rounding `a²` first would cost up to
/// `s·a²·2^-24` of relative error, about 50 ulp where erfc is still a normal float.
#[inline(always)]
fn exp_neg_square(a: f32, s: f32) -> f32 {
    let a = a.clamp(-16.0, 16.0);
    let c = 4097.0 * a;
    let ah = c - (c - a);
    let al = a - ah;
    let hi = a * a;
    let lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al;
    exp_f32(-(s * hi)) * (1.0 - s * lo)
}

/// `erf(x)/x` as a polynomial in `x²` for |x| ≤ 1 (relative error 1.3e-9 in exact arithmetic).
#[inline(always)]
// The constant term is the fitted one, an ulp below 2/√π in f32: the ulp bounds were measured
// with it.
#[allow(clippy::approx_constant)]
fn erf_small(z: f32) -> f32 {
    (((((7.820_101_7e-5 * z - 8.000_356_6e-4) * z + 5.187_255_8e-3) * z - 2.685_327_5e-2) * z + 1.128_357_3e-1) * z - 3.761_262_6e-1) * z
        + 1.128_379_1
}

/// `erfc(a)·e^{a²}` for 0.5 ≤ a ≤ 10.1 (past which erfc is 0 in f32), as a polynomial in
/// `t = 1/(1 + a/2)` (relative error 1.5e-9 in exact arithmetic, 2.6e-7 evaluated in f32).
#[inline(always)]
fn erfcx_tail(a: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * a.min(10.5));
    ((((((((-7.448_787_2e-2 * t + 3.515_493_9e-1) * t - 6.115_243e-1) * t + 4.069_799e-1) * t - 1.085_527_8e-1) * t + 2.356_342_5e-1) * t
        + 2.347_548_8e-1)
        * t
        + 2.836_559_4e-1)
        * t
        + 2.819_788_5e-1)
        * t
        + 3.762_209e-6
}

/// The error function: `x·P(x²)` below 1, `1 - e^{-x²}·R(t)` above (the polynomials fitted
/// here for relative error; `benches/`-free, see the tests for the measured ulp bound).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let small = x * erf_small(x * x);
    let tail = (1.0 - exp_neg_square(a, 1.0) * erfcx_tail(a)).copysign(x);
    let r = if a < 1.0 { small } else { tail };
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// `Φ(x)` as three pieces that share one `e^{-x²/2}` and one tail polynomial: `scale·e·R`
/// below `x = -1/√2` (the lower tail, `erfc(-x/√2)/2`: not `1 + erf`, which cancels to
/// nothing long before `Φ` underflows), `½ + ½·erf(x/√2)` in the middle, `1 - e·R/2` above.
/// `e^{-x²/2}` is taken from `x`, not from the rounded `x/√2`.
#[inline(always)]
fn normal_cdf_scaled(x: f32, lower_scale: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let e = exp_neg_square(x, 0.5);
    let r = erfcx_tail(a);
    let middle = 0.5 + 0.5 * (z * erf_small(z * z));
    let out = if z < -0.5 {
        // (scale·e)·r: e is still a normal float where the product is.
        (lower_scale * e) * r
    } else if z < 1.0 {
        lower_scale * (2.0 * middle)
    } else {
        lower_scale * (2.0 - e * r)
    };
    if x.is_nan() {
        x
    } else {
        out
    }
}

/// The standard normal CDF `Φ(x) = erfc(-x/√2)/2`, accurate in both tails.
#[inline(always)]
pub fn normal_cdf_f32(x: f32) -> f32 {
    normal_cdf_scaled(x, 0.5)
}

/// Exact (erf) GELU, `x·Φ(x)`. In the lower tail `x/2` multiplies `e^{-x²/2}` before the
/// polynomial does, so no intermediate goes subnormal before the result does.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let lower = x * std::f32::consts::FRAC_1_SQRT_2 < -0.5;
    // One evaluation: in the lower tail the scale is x/2 and the result is final.
    let cdf = normal_cdf_scaled(x, if lower { 0.5 * x } else { 0.5 });
    if lower {
        cdf
    } else {
        x * cdf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far `got` is from the exact value `want`, in units of the f32 spacing at `want`
    /// (2^-149 among the subnormals). Both infinite with the same sign, or both NaN: 0.
    fn ulps(got: f32, want: f64) -> f64 {
        if got.is_nan() || want.is_nan() {
            return if got.is_nan() && want.is_nan() { 0.0 } else { f64::INFINITY };
        }
        let wf = want as f32;
        if got.is_infinite() || wf.is_infinite() {
            // f32 rounding of `want` overflows exactly when `want` reaches MAX + half an ulp.
            return if got == wf { 0.0 } else { f64::INFINITY };
        }
        let exponent = (((want.abs().to_bits() >> 52) & 0x7ff) as i32 - 1023).max(-126);
        (got as f64 - want).abs() / (2f64).powi(exponent - 23)
    }

    /// Every f32 bit pattern whose index is a multiple of `stride`, plus the edges.
    fn all_floats(stride: usize) -> impl Iterator<Item = f32> {
        (0..=u32::MAX)
            .step_by(stride)
            .map(f32::from_bits)
            .chain([0.0, -0.0, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1.0, -1.0, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN])
    }

    /// The largest error over the inputs, and where.
    fn worst(inputs: impl Iterator<Item = f32>, f: impl Fn(f32) -> f32, exact: impl Fn(f64) -> f64) -> (f64, f32) {
        inputs.map(|x| (ulps(f(x), exact(x as f64)), x)).fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    fn sigmoid_f64(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn normal_cdf_f64(x: f64) -> f64 {
        0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
    }

    fn gelu_f64(x: f64) -> f64 {
        x * normal_cdf_f64(x)
    }

    /// The ulp bounds the module's functions are documented with, over ~16.7M inputs spread
    /// over the whole float range (every 257th bit pattern). `exhaustive_ulp_report` checks all 2^32.
    const STRIDE: usize = 257;

    #[test]
    fn exp_is_within_its_ulp_bound_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), exp_f32, f64::exp);
        println!("exp: {err} ulp at {at:e}"); assert!(err <= EXP_ULP, "exp: {err} ulp at {at:e}");
    }

    #[test]
    fn tanh_is_within_its_ulp_bound_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), tanh_f32, f64::tanh);
        println!("tanh: {err} ulp at {at:e}"); assert!(err <= TANH_ULP, "tanh: {err} ulp at {at:e}");
    }

    #[test]
    fn sigmoid_is_within_its_ulp_bound_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), sigmoid_f32, sigmoid_f64);
        println!("sigmoid: {err} ulp at {at:e}"); assert!(err <= SIGMOID_ULP, "sigmoid: {err} ulp at {at:e}");
    }

    #[test]
    fn fma_variants_are_within_their_ulp_bounds_over_the_whole_range() {
        for (name, f, exact, bound) in [
            ("exp", exp_f32_fma as fn(f32) -> f32, f64::exp as fn(f64) -> f64, EXP_FMA_ULP),
            ("tanh", tanh_f32_fma, f64::tanh, TANH_FMA_ULP),
            ("sigmoid", sigmoid_f32_fma, sigmoid_f64, SIGMOID_FMA_ULP),
        ] {
            let (err, at) = worst(all_floats(STRIDE), f, exact);
            println!("{name} (fma): {err} ulp at {at:e}");
            assert!(err <= bound, "{name} (fma): {err} ulp at {at:e}");
        }
    }

    #[test]
    fn log_is_within_its_ulp_bound_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), log_f32, f64::ln);
        println!("log: {err} ulp at {at:e}"); assert!(err <= LOG_ULP, "log: {err} ulp at {at:e}");
    }

    #[test]
    fn erf_is_within_its_ulp_bound_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), erf_f32, libm::erf);
        println!("erf: {err} ulp at {at:e}");
        assert!(err <= ERF_ULP, "erf: {err} ulp at {at:e}");
    }

    #[test]
    fn normal_cdf_and_gelu_are_within_their_ulp_bounds_over_the_whole_range() {
        let (err, at) = worst(all_floats(STRIDE), normal_cdf_f32, normal_cdf_f64);
        println!("normal_cdf: {err} ulp at {at:e}");
        assert!(err <= NORMAL_CDF_ULP, "normal_cdf: {err} ulp at {at:e}");
        let (err, at) = worst(all_floats(STRIDE), gelu_f32, gelu_f64);
        println!("gelu: {err} ulp at {at:e}");
        assert!(err <= GELU_ULP, "gelu: {err} ulp at {at:e}");
    }

    #[test]
    fn special_values_match_libm() {
        for x in [0.0f32, -0.0, 1.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-45, -1e-45, f32::MAX, f32::MIN] {
            let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
            assert!(same(exp_f32(x), x.exp()) || ulps(exp_f32(x), (x as f64).exp()) <= EXP_ULP, "exp({x})");
            assert!(same(tanh_f32(x), x.tanh()), "tanh({x}) = {}", tanh_f32(x));
            assert!(same(exp_f32_fma(x), x.exp()) || ulps(exp_f32_fma(x), (x as f64).exp()) <= EXP_FMA_ULP, "exp_fma({x})");
            assert!(same(tanh_f32_fma(x), x.tanh()), "tanh_fma({x}) = {}", tanh_f32_fma(x));
            assert!(same(log_f32(x), x.ln()), "log({x}) = {}, libm {}", log_f32(x), x.ln());
        }
    }

    /// Every f32 input: `cargo test -p tensorbrain-kernels --release fast_math -- --ignored --nocapture`.
    #[test]
    #[ignore = "2^32 inputs per function: minutes; run by hand to re-measure the bounds"]
    fn exhaustive_ulp_report() {
        for (name, f, exact, bound) in [
            ("exp", exp_f32 as fn(f32) -> f32, f64::exp as fn(f64) -> f64, EXP_ULP),
            ("tanh", tanh_f32, f64::tanh, TANH_ULP),
            ("sigmoid", sigmoid_f32, sigmoid_f64, SIGMOID_ULP),
            ("exp_fma", exp_f32_fma, f64::exp, EXP_FMA_ULP),
            ("tanh_fma", tanh_f32_fma, f64::tanh, TANH_FMA_ULP),
            ("sigmoid_fma", sigmoid_f32_fma, sigmoid_f64, SIGMOID_FMA_ULP),
            ("erf", erf_f32, libm::erf, ERF_ULP),
            ("normal_cdf", normal_cdf_f32, normal_cdf_f64, NORMAL_CDF_ULP),
            ("gelu", gelu_f32, gelu_f64, GELU_ULP),
            ("log", log_f32, f64::ln, LOG_ULP),
        ] {
            use rayon::prelude::*;
            // 2^16 chunks of 2^16 bit patterns, on every core.
            let (err, at) = (0..=u16::MAX as u32)
                .into_par_iter()
                .map(|hi| worst((0..=u16::MAX as u32).map(|lo| f32::from_bits(hi << 16 | lo)), f, exact))
                .reduce(|| (0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
            println!("{name:<8} max {err:.3} ulp at {at:e} (bound {bound})");
            assert!(err <= bound);
        }
    }
}
