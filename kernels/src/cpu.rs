//! Which instruction set the SIMD kernels run on (the integer GEMM, the float transposes and
//! the fused elementwise kernels), chosen once per process.
//!
//! The best level the CPU supports is used unless `TENSORBRAIN_CPU` pins one
//! (`scalar`, `avx2`, `avx512`; `auto` or unset means the best), so every path can be run and
//! compared on one machine. Pinning a level the CPU lacks is an error, never a silent fallback:
//! a test that asked for AVX-512 must not quietly measure the scalar code.

use std::sync::OnceLock;

/// The environment variable that pins the level.
pub const ENV_VAR: &str = "TENSORBRAIN_CPU";

/// An instruction-set level of the SIMD kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2 with FMA: 8-lane f32 kernels; the integer GEMM widens 8-bit operands to i16 and
    /// pair-sums them with `vpmaddwd`.
    Avx2,
    /// AVX-512 (F, BW, DQ, VL) with VNNI: 16-lane f32 kernels; the integer GEMM sums four
    /// u8×i8 products into each i32 lane with `vpdpbusd`.
    Avx512Vnni,
}

impl CpuLevel {
    pub const ALL: [CpuLevel; 3] = [CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::Avx512Vnni];

    /// The name `TENSORBRAIN_CPU` takes.
    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "scalar",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512Vnni => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<CpuLevel> {
        CpuLevel::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            CpuLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512Vnni => {
                CpuLevel::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The CPU features the level needs, for error messages.
    pub fn required_features(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "nothing",
            CpuLevel::Avx2 => "avx2 and fma",
            CpuLevel::Avx512Vnni => "avx2, fma, avx512f, avx512bw, avx512dq, avx512vl and avx512vnni",
        }
    }

    /// Every level this CPU supports, lowest first.
    pub fn supported() -> Vec<CpuLevel> {
        CpuLevel::ALL.into_iter().filter(|l| l.is_supported()).collect()
    }

    /// The best level this CPU supports.
    pub fn best() -> CpuLevel {
        *CpuLevel::supported().last().expect("scalar is always supported")
    }

    /// The level `TENSORBRAIN_CPU` asks for (the best one if unset or `auto`), or why it
    /// cannot be used.
    pub fn from_env() -> Result<CpuLevel, String> {
        let Ok(value) = std::env::var(ENV_VAR) else { return Ok(CpuLevel::best()) };
        if value.trim().is_empty() || value.trim().eq_ignore_ascii_case("auto") {
            return Ok(CpuLevel::best());
        }
        let level = CpuLevel::parse(&value).ok_or_else(|| {
            format!("{ENV_VAR}={value:?} is not a CPU level; expected one of auto, scalar, avx2, avx512")
        })?;
        if !level.is_supported() {
            return Err(format!(
                "{ENV_VAR}={value} asks for the {} kernels, but this CPU lacks {} (supported: {})",
                level.name(),
                level.required_features(),
                CpuLevel::supported().iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(level)
    }
}

impl std::fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The level the SIMD kernels use in this process: read from `TENSORBRAIN_CPU` on first use.
///
/// # Panics
/// If `TENSORBRAIN_CPU` names an unknown level or one this CPU cannot run.
pub fn active_level() -> CpuLevel {
    static LEVEL: OnceLock<Result<CpuLevel, String>> = OnceLock::new();
    match LEVEL.get_or_init(CpuLevel::from_env) {
        Ok(level) => *level,
        Err(msg) => panic!("{msg}"),
    }
}
