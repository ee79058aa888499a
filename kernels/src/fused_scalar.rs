//! The fused kernels' functions on one element, for code that `#[model]` generates at compile
//! time: each generated kernel is straight-line Rust calling these with constant function
//! arguments, so the `match` folds away after inlining.
//!
//! The formulas are those of the block interpreter in [`crate::fused`] (a test below checks
//! every function against it), so generated and interpreted kernels agree bit for bit.

use crate::fused::{BinaryFn, Cmp, FusedFloat, ScalarFn, UnaryFn};

#[inline(always)]
pub fn unary<T: FusedFloat>(f: UnaryFn, v: T) -> T {
    let c = T::from_f64;
    let (zero, one) = (T::zero(), T::one());
    match f {
        UnaryFn::Neg => -v,
        UnaryFn::Exp => v.fused_exp(),
        UnaryFn::Log => v.fused_log(),
        UnaryFn::Sqrt => v.sqrt(),
        UnaryFn::Rsqrt => one / v.sqrt(),
        UnaryFn::Abs => v.abs(),
        UnaryFn::Sin => v.sin(),
        UnaryFn::Cos => v.cos(),
        UnaryFn::Tanh => v.fused_tanh(),
        UnaryFn::Sigmoid => v.fused_sigmoid(),
        UnaryFn::Relu => {
            if v <= zero {
                zero
            } else {
                v
            }
        }
        UnaryFn::Gelu => v.fused_gelu(),
        UnaryFn::GeluTanh => c(0.5) * v * (one + (c(0.797_884_560_802_865_4) * (v + c(0.044715) * v * v * v)).fused_tanh()),
        UnaryFn::Silu => v * v.fused_sigmoid(),
        UnaryFn::Softplus => {
            if v > c(20.0) {
                v
            } else {
                v.exp().ln_1p()
            }
        }
        UnaryFn::Log1p => v.ln_1p(),
        UnaryFn::Square => v * v,
        UnaryFn::Reciprocal => one / v,
        UnaryFn::Erf => v.fused_erf(),
        UnaryFn::Elu(a) => {
            if v > zero {
                v
            } else {
                c(a) * v.exp_m1()
            }
        }
        UnaryFn::LeakyRelu(s) => {
            if v > zero {
                v
            } else {
                v * c(s)
            }
        }
        UnaryFn::Sign => {
            if v > zero {
                one
            } else if v < zero {
                -one
            } else {
                zero
            }
        }
    }
}

#[inline(always)]
pub fn binary<T: FusedFloat>(f: BinaryFn, a: T, b: T) -> T {
    match f {
        BinaryFn::Add => a + b,
        BinaryFn::Sub => a - b,
        BinaryFn::Mul => a * b,
        BinaryFn::Div => a / b,
        BinaryFn::Max => {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else if a >= b {
                a
            } else {
                b
            }
        }
        BinaryFn::Min => {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else if a <= b {
                a
            } else {
                b
            }
        }
    }
}

#[inline(always)]
pub fn scalar<T: FusedFloat>(f: ScalarFn, c: f64, v: T) -> T {
    let k = T::from_f64(c);
    match f {
        ScalarFn::Add => v + k,
        ScalarFn::Mul => v * k,
        ScalarFn::Pow if c == 2.0 => v * v,
        ScalarFn::Pow => v.powf(k),
        ScalarFn::RSub => k - v,
    }
}

/// `x cmp threshold ? a : b` (false for NaN).
#[inline(always)]
pub fn select<T: FusedFloat>(cmp: Cmp, x: T, threshold: f64, a: T, b: T) -> T {
    let t = T::from_f64(threshold);
    let take = match cmp {
        Cmp::Gt => x > t,
        Cmp::Ge => x >= t,
        Cmp::Lt => x < t,
        Cmp::Le => x <= t,
    };
    if take {
        a
    } else {
        b
    }
}

/// `out[e] = kernel(inputs[0][e], ..., inputs[N-1][e])` for every `e`, compiled for the
/// active SIMD level (as the interpreter's blocks are), so that the kernel's loop vectorises
/// at that width and `mul_add` in its `exp`/`tanh`/`sigmoid` is the FMA instruction instead of
/// a libm call.
///
/// # Panics
/// If an input is shorter than `out`.
pub fn map_elements<T: Copy, const N: usize>(inputs: [&[T]; N], out: &mut [T], kernel: impl Fn([T; N]) -> T) {
    assert!(inputs.iter().all(|x| x.len() >= out.len()), "map_elements: an input is shorter than the output");
    match crate::cpu::active_level() {
        // SAFETY: `active_level` only returns levels this CPU supports.
        #[cfg(target_arch = "x86_64")]
        crate::cpu::CpuLevel::Avx512Vnni => unsafe { map_avx512(inputs, out, kernel) },
        #[cfg(target_arch = "x86_64")]
        crate::cpu::CpuLevel::Avx2 => unsafe { map_avx2(inputs, out, kernel) },
        _ => map_body(inputs, out, kernel),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2<T: Copy, const N: usize>(inputs: [&[T]; N], out: &mut [T], kernel: impl Fn([T; N]) -> T) {
    map_body(inputs, out, kernel)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn map_avx512<T: Copy, const N: usize>(inputs: [&[T]; N], out: &mut [T], kernel: impl Fn([T; N]) -> T) {
    map_body(inputs, out, kernel)
}

#[inline(always)]
fn map_body<T: Copy, const N: usize>(inputs: [&[T]; N], out: &mut [T], kernel: impl Fn([T; N]) -> T) {
    let inputs: [&[T]; N] = std::array::from_fn(|k| &inputs[k][..out.len()]);
    for (e, o) in out.iter_mut().enumerate() {
        *o = kernel(std::array::from_fn(|k| inputs[k][e]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{eval_vec, Instr, Operand, Program};

    /// Inputs spanning signs, zero, the softplus threshold and NaN.
    fn samples() -> Vec<f64> {
        let mut v: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.61).collect();
        v.extend([0.0, -0.0, 20.0, 20.5, 1e-7, f64::NAN]);
        v
    }

    fn interpreted(instrs: &[Instr], n_inputs: usize, inputs: &[Vec<f64>]) -> Vec<f64> {
        let p = Program::new(instrs, n_inputs, instrs.len() - 1).unwrap();
        let ops: Vec<Operand<f64>> = inputs.iter().map(|x| Operand::Strided { data: x, offset: 0, strides: &[1] }).collect();
        eval_vec(&p, &ops, &[inputs[0].len()])
    }

    fn same(what: &str, got: f64, want: f64) {
        assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{what}: scalar {got} vs interpreter {want}");
    }

    #[test]
    fn every_function_matches_the_interpreter() {
        let x = samples();
        let y: Vec<f64> = x.iter().rev().copied().collect();
        use UnaryFn as U;
        let unaries = [
            U::Neg, U::Exp, U::Log, U::Sqrt, U::Rsqrt, U::Abs, U::Sin, U::Cos, U::Tanh, U::Sigmoid, U::Relu, U::Gelu, U::GeluTanh, U::Silu,
            U::Softplus, U::Log1p, U::Square, U::Reciprocal, U::Erf, U::Elu(0.7), U::LeakyRelu(0.01), U::Sign,
        ];
        for f in unaries {
            let want = interpreted(&[Instr::Load(0), Instr::Unary(f, 0)], 1, &[x.clone()]);
            x.iter().zip(&want).for_each(|(&v, &w)| same(&format!("{f:?}({v})"), unary(f, v), w));
        }
        // f32, where exp and tanh are the vectorised polynomials.
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        for f in unaries {
            let p = Program::new(&[Instr::Load(0), Instr::Unary(f, 0)], 1, 1).unwrap();
            let want = eval_vec(&p, &[Operand::Strided { data: &x32, offset: 0, strides: &[1] }], &[x32.len()]);
            x32.iter().zip(&want).for_each(|(&v, &w)| same(&format!("f32 {f:?}({v})"), unary(f, v) as f64, w as f64));
        }
        for f in [BinaryFn::Add, BinaryFn::Sub, BinaryFn::Mul, BinaryFn::Div, BinaryFn::Max, BinaryFn::Min] {
            let want = interpreted(&[Instr::Load(0), Instr::Load(1), Instr::Binary(f, 0, 1)], 2, &[x.clone(), y.clone()]);
            x.iter().zip(&y).zip(&want).for_each(|((&a, &b), &w)| same(&format!("{f:?}({a}, {b})"), binary(f, a, b), w));
        }
        for (f, c) in [(ScalarFn::Add, 1.5), (ScalarFn::Mul, -0.5), (ScalarFn::Pow, 2.0), (ScalarFn::Pow, 3.0), (ScalarFn::RSub, 1.0)] {
            let want = interpreted(&[Instr::Load(0), Instr::Scalar(f, c, 0)], 1, &[x.clone()]);
            x.iter().zip(&want).for_each(|(&v, &w)| same(&format!("{f:?} {c} ({v})"), scalar(f, c, v), w));
        }
        for cmp in [Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le] {
            let instrs = [Instr::Load(0), Instr::Load(1), Instr::Select { cmp, x: 0, threshold: 0.0, a: 0, b: 1 }];
            let want = interpreted(&instrs, 2, &[x.clone(), y.clone()]);
            x.iter().zip(&y).zip(&want).for_each(|((&a, &b), &w)| same(&format!("{cmp:?}({a})"), select(cmp, a, 0.0, a, b), w));
        }
    }

    /// The level-compiled loop gives the interpreter's bits for the functions whose f32 forms
    /// use fused multiply-adds.
    #[test]
    fn map_elements_matches_the_interpreter() {
        let x: Vec<f32> = (-3000..3000).map(|i| i as f32 * 0.0137).chain([f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0, -0.0, -95.0, 12.0]).collect();
        for f in [UnaryFn::Exp, UnaryFn::Tanh, UnaryFn::Sigmoid, UnaryFn::Silu, UnaryFn::GeluTanh] {
            let p = Program::new(&[Instr::Load(0), Instr::Unary(f, 0)], 1, 1).unwrap();
            let want = eval_vec(&p, &[Operand::Strided { data: &x, offset: 0, strides: &[1] }], &[x.len()]);
            let mut got = vec![0f32; x.len()];
            map_elements([&x[..]], &mut got, |[v]| unary(f, v));
            x.iter().zip(got.iter().zip(&want)).for_each(|(&v, (&g, &w))| same(&format!("f32 {f:?}({v})"), g as f64, w as f64));
        }
    }
}
