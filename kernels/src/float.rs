//! The element types kernels compute in.

use half::{bf16, f16};

/// A floating-point element that every float kernel accepts: f32, f64, f16 and bf16.
///
/// Half types compute through `num_traits::Float` (which widens to f32 per operation), so
/// kernels are written once; hot paths that matter (GEMM) special-case them.
pub trait Float:
    num_traits::Float + Default + Send + Sync + Copy + std::fmt::Debug + std::iter::Sum + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! impl_float {
    ($t:ty, $from:expr, $to:expr) => {
        impl Float for $t {
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                $to(self)
            }
        }
    };
}

impl_float!(f32, |v| v as f32, |x: f32| x as f64);
impl_float!(f64, |v| v, |x: f64| x);
impl_float!(f16, f16::from_f64, |x: f16| x.to_f64());
impl_float!(bf16, bf16::from_f64, |x: bf16| x.to_f64());
