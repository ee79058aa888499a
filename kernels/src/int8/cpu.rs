//! Which instruction set the integer kernels run on, chosen once per process.
//!
//! The best level the CPU supports is used unless `TENSORBRAIN_CPU` pins one
//! (`scalar`, `avx2`, `avx512`; `auto` or unset means the best), so every path can be run and
//! compared on one machine. Pinning a level the CPU lacks is an error, never a silent fallback:
//! a test that asked for AVX-512 must not quietly measure the scalar code.

use std::sync::OnceLock;

/// The environment variable that pins the level.
pub const ENV_VAR: &str = "TENSORBRAIN_CPU";

/// An instruction-set level of the integer GEMM, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2: 8-bit operands widened to i16, multiplied and pair-summed by `vpmaddwd`.
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`, four u8×i8 products summed into each i32 lane.
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
            CpuLevel::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
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
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512Vnni => "avx512f, avx512bw and avx512vnni",
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

/// The level the integer kernels use in this process: read from `TENSORBRAIN_CPU` on first use.
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
