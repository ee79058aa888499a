//! Branch-free f32 `exp` and `tanh` that LLVM vectorises, for the fused elementwise kernels.
//!
//! libm's `expf`/`tanhf` are scalar calls, so a fused kernel full of sigmoids and tanhs spends
//! its time in them one element at a time, whatever fusion saves in memory traffic. These are
//! the Cephes polynomials (as in SLEEF-style vector math libraries) written with selects
//! instead of branches, accurate to a few ulp (tests below: relative error under 4e-7 against
//! f64 `exp` and `tanh`), with libm's results at the edges: `exp`
//! overflows to infinity above ln(f32::MAX), underflows through the subnormals to 0, and both
//! pass NaN through.

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

/// 2^n for integer `n` in -127..=127, built from its exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    // t = n + 1.5·2^23 holds n in its low mantissa bits: the integer comes from the bits, not
    // from a saturating float-to-int conversion, which does not vectorise.
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5.000_000_1e-1;
    let y = p * z + r + 1.0;
    // n is in -150..=128: scale in two halves so each factor is a normal float.
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let half = n >> 1;
    let e = y * pow2(half) * pow2(n - half);
    let e = if x > EXP_MAX { f32::INFINITY } else { e };
    if x.is_nan() {
        x
    } else {
        e
    }
}

#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    // |x| < 0.625: odd polynomial (no cancellation near 0).
    let z = x * x;
    let p = (((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328_2e-1;
    let small = x + x * z * p;
    // Otherwise 1 - 2 / (e^{2|x|} + 1), which is 1 once e^{2|x|} overflows.
    let large = (1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 5e-4).chain([0.0, -0.0, 1e-30, -1e-30, 88.7, 88.72, -87.5, -103.0, -110.0, 89.0, 1e6, -1e6])
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for x in sweep() {
            let (got, want) = (exp_f32(x), (x as f64).exp());
            if want > f32::MAX as f64 {
                assert_eq!(got, f32::INFINITY, "exp({x})");
            } else if want < f32::MIN_POSITIVE as f64 {
                assert!((got as f64 - want).abs() <= 2.0 * 1.5e-45, "exp({x}) = {got}, want {want}");
            } else {
                assert!(((got as f64 - want) / want).abs() < 4e-7, "exp({x}) = {got}, want {want}");
            }
        }
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn tanh_is_within_a_few_ulp_of_libm() {
        for x in sweep() {
            let (got, want) = (tanh_f32(x), (x as f64).tanh());
            assert!((got as f64 - want).abs() <= 4e-7 * want.abs(), "tanh({x}) = {got}, want {want}");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
    }
}
