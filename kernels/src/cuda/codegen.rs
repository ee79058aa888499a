//! CUDA C for fused elementwise programs (kernels/src/fused.rs): one kernel per program and
//! element type. The kernel is a grid-stride loop over the output; each iteration loads every
//! input through its own strides (so broadcast and transposed inputs need no copy), runs the
//! program's steps on scalar registers and stores one element. The formulas are the CPU
//! interpreter's (`fused::unary` and friends), written with common.cuh's `tb_*` overloads, so
//! both devices compute the same expressions.
//!
//! The parameters are `(long long n, TbShape shape, const T* in0, TbStrides s0, ..., T* out)`;
//! [`super::launch::kernel_layout`] builds `shape` and the strides.

use std::fmt::Write;

use crate::fused::{BinaryFn, Cmp, Instr, Program, ScalarFn, UnaryFn};

use super::sources::COMMON;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn c_name(self) -> &'static str {
        match self {
            DType::F32 => "float",
            DType::F64 => "double",
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A constant as a C expression of type `T` (the kernel's local typedef). Rust's `{:?}` prints
/// the shortest text that reads back as the same f64, always with a `.` or exponent, which is a
/// valid C double literal; `T(...)` then rounds it as `T::from_f64` does on the CPU.
fn lit(c: f64) -> String {
    if c.is_nan() {
        "tb_nan<T>()".to_string()
    } else if c == f64::INFINITY {
        "(-tb_neg_inf<T>())".to_string()
    } else if c == f64::NEG_INFINITY {
        "tb_neg_inf<T>()".to_string()
    } else {
        format!("T({c:?})")
    }
}

fn unary_expr(f: UnaryFn, x: &str) -> String {
    match f {
        UnaryFn::Neg => format!("-{x}"),
        UnaryFn::Exp => format!("tb_exp({x})"),
        UnaryFn::Log => format!("tb_log({x})"),
        UnaryFn::Sqrt => format!("tb_sqrt({x})"),
        UnaryFn::Rsqrt => format!("T(1) / tb_sqrt({x})"),
        UnaryFn::Abs => format!("tb_abs({x})"),
        UnaryFn::Sin => format!("tb_sin({x})"),
        UnaryFn::Cos => format!("tb_cos({x})"),
        UnaryFn::Tanh => format!("tb_tanh({x})"),
        UnaryFn::Sigmoid => format!("T(1) / (T(1) + tb_exp(-{x}))"),
        UnaryFn::Relu => format!("{x} <= T(0) ? T(0) : {x}"),
        UnaryFn::Gelu => format!("{x} * T(0.5) * (T(1) + tb_erf({x} * {}))", lit(std::f64::consts::FRAC_1_SQRT_2)),
        UnaryFn::GeluTanh => format!(
            "T(0.5) * {x} * (T(1) + tb_tanh({} * ({x} + {} * {x} * {x} * {x})))",
            lit(0.797_884_560_802_865_4),
            lit(0.044715)
        ),
        UnaryFn::Silu => format!("{x} / (T(1) + tb_exp(-{x}))"),
        UnaryFn::Softplus => format!("{x} > T(20) ? {x} : tb_log1p(tb_exp({x}))"),
        UnaryFn::Log1p => format!("tb_log1p({x})"),
        UnaryFn::Square => format!("{x} * {x}"),
        UnaryFn::Reciprocal => format!("T(1) / {x}"),
        UnaryFn::Erf => format!("tb_erf({x})"),
        UnaryFn::Elu(a) => format!("{x} > T(0) ? {x} : {} * tb_expm1({x})", lit(a)),
        UnaryFn::LeakyRelu(s) => format!("{x} > T(0) ? {x} : {x} * {}", lit(s)),
        UnaryFn::Sign => format!("{x} > T(0) ? T(1) : ({x} < T(0) ? T(-1) : T(0))"),
    }
}

fn binary_expr(f: BinaryFn, a: &str, b: &str) -> String {
    match f {
        BinaryFn::Add => format!("{a} + {b}"),
        BinaryFn::Sub => format!("{a} - {b}"),
        BinaryFn::Mul => format!("{a} * {b}"),
        BinaryFn::Div => format!("{a} / {b}"),
        BinaryFn::Max => format!("tb_max({a}, {b})"),
        BinaryFn::Min => format!("tb_min({a}, {b})"),
    }
}

fn scalar_expr(f: ScalarFn, c: f64, x: &str) -> String {
    match f {
        ScalarFn::Add => format!("{x} + {}", lit(c)),
        ScalarFn::Mul => format!("{x} * {}", lit(c)),
        // As on the CPU: squaring is a multiply, not powf (exact, and defined for x < 0).
        ScalarFn::Pow if c == 2.0 => format!("{x} * {x}"),
        ScalarFn::Pow => format!("tb_pow({x}, {})", lit(c)),
        ScalarFn::RSub => format!("{} - {x}", lit(c)),
    }
}

fn cmp_op(c: Cmp) -> &'static str {
    match c {
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
    }
}

/// A stable kernel name for `program`: the same program always gets the same name (so PTX
/// caches and profiles line up across runs), different programs different ones.
pub fn kernel_name(program: &Program, dtype: DType) -> String {
    // FNV-1a over the steps' Debug text: stable across Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{}:{:?}", program.n_inputs(), program.steps().collect::<Vec<_>>());
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fused_{h:016x}_{}", dtype.suffix())
}

/// The kernel alone (what the golden files hold); compile [`module_source`].
pub fn kernel_source(program: &Program, name: &str, dtype: DType) -> String {
    let t = dtype.c_name();
    let mut s = String::new();
    let _ = writeln!(s, "// Generated by tensorbrain-kernels cuda::codegen from a fused program; do not edit.");
    let _ = write!(s, "extern \"C\" __global__ void {name}(long long n, TbShape shape");
    for k in 0..program.n_inputs() {
        let _ = write!(s, ", const {t}* __restrict__ in{k}, TbStrides s{k}");
    }
    let _ = writeln!(s, ", {t}* __restrict__ out) {{");
    let _ = writeln!(s, "    typedef {t} T;");
    let _ = writeln!(s, "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {{");
    if program.registers() > 0 {
        let regs: Vec<String> = (0..program.registers()).map(|r| format!("r{r}")).collect();
        let _ = writeln!(s, "        T {};", regs.join(", "));
    }
    let r = |x: usize| format!("r{x}");
    for (instr, dst) in program.steps() {
        let expr = match instr {
            Instr::Load(k) => format!("in{k}[tb_offset(i, shape, s{k})]"),
            Instr::Const(c) => lit(c),
            Instr::Unary(f, x) => unary_expr(f, &r(x)),
            Instr::Binary(f, a, b) => binary_expr(f, &r(a), &r(b)),
            Instr::Scalar(f, c, x) => scalar_expr(f, c, &r(x)),
            // False for NaN, as on the CPU: C comparisons with NaN are false too.
            Instr::Select { cmp, x, threshold, a, b } => {
                format!("{} {} {} ? {} : {}", r(x), cmp_op(cmp), lit(threshold), r(a), r(b))
            }
        };
        match dst {
            Some(d) => {
                let _ = writeln!(s, "        r{d} = {expr};");
            }
            None => {
                let _ = writeln!(s, "        out[i] = {expr};");
            }
        }
    }
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    s
}

/// The full text to hand NVRTC: common.cuh and the kernel.
pub fn module_source(program: &Program, name: &str, dtype: DType) -> String {
    format!("{COMMON}\n#line 1 \"{name}.cu\"\n{}", kernel_source(program, name, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{Instr as I, ScalarFn as S, UnaryFn as U};

    fn golden_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cuda/golden")
    }

    /// Generated source vs the committed file; `TENSORBRAIN_BLESS=1` rewrites the files (then
    /// review the diff).
    #[test]
    fn generated_sources_match_the_golden_files() {
        let bless = std::env::var("TENSORBRAIN_BLESS").as_deref() == Ok("1");
        for (name, p, dt) in samples() {
            let got = kernel_source(&p, name, dt);
            let path = golden_dir().join(format!("{name}.cu"));
            if bless {
                std::fs::create_dir_all(golden_dir()).unwrap();
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (TENSORBRAIN_BLESS=1 writes it)", path.display()));
            assert_eq!(got, want, "{name}: generated CUDA differs from {}", path.display());
        }
    }

    #[test]
    fn no_stale_golden_files() {
        // A golden file whose sample was removed or renamed would otherwise linger, unchecked.
        let mut on_disk: Vec<String> = std::fs::read_dir(golden_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut expected: Vec<String> = samples().iter().map(|(n, _, _)| format!("{n}.cu")).collect();
        expected.sort();
        assert_eq!(on_disk, expected);
    }

    #[test]
    fn dead_values_are_not_generated_and_registers_are_reused() {
        // v2 = exp(v0) is dead; the chain neg(neg(neg(x))) needs one register at a time.
        let p = Program::new(&[I::Load(0), I::Unary(U::Neg, 0), I::Unary(U::Exp, 0), I::Unary(U::Neg, 1), I::Unary(U::Neg, 3)], 1, 4).unwrap();
        let src = kernel_source(&p, "k", DType::F32);
        assert!(!src.contains("tb_exp"), "{src}");
        assert!(src.contains("T r0, r1;"), "{src}");
        assert_eq!(src.matches("= -r").count(), 3, "{src}");
        assert!(src.contains("out[i] = -r"), "{src}");
    }

    #[test]
    fn constants_round_trip_and_special_values_are_spelled_out() {
        assert_eq!(lit(0.1), "T(0.1)");
        assert_eq!(lit(3.0), "T(3.0)");
        assert_eq!(lit(1e-12), "T(1e-12)");
        assert_eq!(lit(-2.5e300), "T(-2.5e300)");
        assert_eq!(lit(f64::NEG_INFINITY), "tb_neg_inf<T>()");
        assert_eq!(lit(f64::NAN), "tb_nan<T>()");
        for c in [0.1, 1.0 / 3.0, 1e-12, 6.02214076e23] {
            let text = lit(c);
            let back: f64 = text.trim_start_matches("T(").trim_end_matches(')').parse().unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn names_are_stable_and_distinguish_programs() {
        let a = Program::new(&[I::Load(0), I::Scalar(S::Mul, 2.0, 0)], 1, 1).unwrap();
        let b = Program::new(&[I::Load(0), I::Scalar(S::Mul, 3.0, 0)], 1, 1).unwrap();
        assert_eq!(kernel_name(&a, DType::F32), kernel_name(&a.clone(), DType::F32));
        assert_ne!(kernel_name(&a, DType::F32), kernel_name(&b, DType::F32));
        assert_ne!(kernel_name(&a, DType::F32), kernel_name(&a, DType::F64));
        // Pinned: the name must not change between builds (FNV-1a, not DefaultHasher).
        assert_eq!(kernel_name(&a, DType::F64), "fused_01585c8a4c6eb69b_f64");
    }
}

/// Sample programs covering every instruction kind, unary function and comparison: the golden
/// files and tests/nvrtc_compile.rs use them (hence public but hidden).
#[doc(hidden)]
pub fn samples() -> Vec<(&'static str, Program, DType)> {
    use crate::fused::{BinaryFn as B, Cmp as C, Instr as I, ScalarFn as S, UnaryFn as U};
    // out = sigmoid(a) * b + 0.5 (the CPU interpreter's own test program).
    let sigmoid_mul_add = Program::new(&[I::Load(0), I::Unary(U::Sigmoid, 0), I::Load(1), I::Binary(B::Mul, 1, 2), I::Scalar(S::Add, 0.5, 3)], 2, 4).unwrap();
    // Every unary function applied in turn to input 0, summed: one kernel that uses them all.
    let unaries = [
        U::Neg, U::Exp, U::Log, U::Sqrt, U::Rsqrt, U::Abs, U::Sin, U::Cos, U::Tanh, U::Sigmoid, U::Relu, U::Gelu, U::GeluTanh,
        U::Silu, U::Softplus, U::Log1p, U::Square, U::Reciprocal, U::Erf, U::Elu(1.0), U::LeakyRelu(0.01), U::Sign,
    ];
    let mut all = vec![I::Load(0)];
    let mut acc = None;
    for f in unaries {
        all.push(I::Unary(f, 0));
        let v = all.len() - 1;
        acc = Some(match acc {
            None => v,
            Some(a) => {
                all.push(I::Binary(B::Add, a, v));
                all.len() - 1
            }
        });
    }
    let all_unary = Program::new(&all, 1, acc.unwrap()).unwrap();
    // Binary, scalar, select and constants over three inputs.
    let mixed = Program::new(
        &[
            I::Load(0),                                                      // v0 = a
            I::Load(1),                                                      // v1 = b
            I::Binary(B::Sub, 0, 1),                                         // v2
            I::Binary(B::Div, 2, 1),                                         // v3
            I::Binary(B::Max, 3, 0),                                         // v4
            I::Binary(B::Min, 4, 1),                                         // v5
            I::Scalar(S::Pow, 2.0, 5),                                       // v6
            I::Scalar(S::Pow, 1.5, 6),                                       // v7
            I::Scalar(S::RSub, 1.0, 7),                                      // v8
            I::Scalar(S::Mul, 0.1, 8),                                       // v9
            I::Const(-0.0),                                                  // v10
            I::Select { cmp: C::Gt, x: 9, threshold: 0.0, a: 9, b: 10 },     // v11
            I::Select { cmp: C::Ge, x: 11, threshold: 1e-3, a: 11, b: 0 },   // v12
            I::Select { cmp: C::Lt, x: 12, threshold: -1.0, a: 1, b: 12 },   // v13
            I::Load(2),                                                      // v14 = c
            I::Select { cmp: C::Le, x: 14, threshold: 0.25, a: 13, b: 14 },  // v15
            I::Binary(B::Mul, 15, 14),                                       // v16
        ],
        3,
        16,
    )
    .unwrap();
    vec![
        ("sigmoid_mul_add_f32", sigmoid_mul_add.clone(), DType::F32),
        ("sigmoid_mul_add_f64", sigmoid_mul_add, DType::F64),
        ("all_unary_f32", all_unary.clone(), DType::F32),
        ("all_unary_f64", all_unary, DType::F64),
        ("mixed_f32", mixed.clone(), DType::F32),
        ("mixed_f64", mixed, DType::F64),
    ]
}
