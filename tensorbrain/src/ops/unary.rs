//! Elementwise unary math and activations.
//!
//! Forward passes compute in each dtype's "op math" precision: f32 and f64 in themselves, f16
//! and bf16 widened to f32 per element (as PyTorch does), so half-precision results are the
//! correctly rounded f32 result. Backward rules are written with differentiable tensor ops so
//! that double backward works; rules that need the op's own output reuse the saved output unless
//! the backward pass is itself being recorded (then they recompute it, which keeps the graph
//! connected without a reference cycle).

use half::{bf16, f16};
use tensorbrain_kernels::strided::map;
use tensorbrain_kernels::Float;

use super::{float_dispatch, float_map, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// A float that elementwise math is carried out in (f32 or f64).
pub(crate) trait MathFloat: Float {
    fn erf_fn(self) -> Self;
}

impl MathFloat for f32 {
    #[inline(always)]
    fn erf_fn(self) -> f32 {
        libm::erff(self)
    }
}

impl MathFloat for f64 {
    #[inline(always)]
    fn erf_fn(self) -> f64 {
        libm::erf(self)
    }
}

/// The precision a storage float computes in, with the (free for f32/f64) conversions.
pub(crate) trait OpMath: Float {
    type M: MathFloat;
    fn up(self) -> Self::M;
    fn down(m: Self::M) -> Self;
}

impl OpMath for f32 {
    type M = f32;
    #[inline(always)]
    fn up(self) -> f32 {
        self
    }
    #[inline(always)]
    fn down(m: f32) -> f32 {
        m
    }
}

impl OpMath for f64 {
    type M = f64;
    #[inline(always)]
    fn up(self) -> f64 {
        self
    }
    #[inline(always)]
    fn down(m: f64) -> f64 {
        m
    }
}

impl OpMath for f16 {
    type M = f32;
    #[inline(always)]
    fn up(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn down(m: f32) -> f16 {
        f16::from_f32(m)
    }
}

impl OpMath for bf16 {
    type M = f32;
    #[inline(always)]
    fn up(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn down(m: f32) -> bf16 {
        bf16::from_f32(m)
    }
}

/// Applies `|x: M| expr` elementwise to a float tensor, where `M` (in scope in the expression)
/// is the dtype's op-math type; the result is rounded back to the tensor's dtype.
macro_rules! math_map {
    ($x:expr, $op:expr, |$v:ident| $body:expr) => {{
        let x: &Tensor = $x;
        float_dispatch!($op, x.dtype(), T => {
            #[allow(unused_imports)]
            use num_traits::{Float as _, One as _, Zero as _};
            #[allow(dead_code)]
            type M = <T as OpMath>::M;
            let storage = x.storage();
            let src = storage.cpu().as_slice::<T>();
            let l = x.layout();
            let mut out = vec![T::default(); l.numel()];
            map(src, l.offset, &l.shape, &l.strides, &mut out, |v: T| -> T {
                let $v: M = v.up();
                T::down($body)
            });
            Ok::<Tensor, Error>(Tensor::from_storage(T::wrap(out), &l.shape))
        })
    }};
}

/// `1/sqrt(2)`, `sqrt(2/pi)`, `1/sqrt(2*pi)`, `2/sqrt(pi)`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const GELU_TANH_KAPPA: f64 = 0.044715;
/// Above this input, softplus returns its input (PyTorch's default `threshold`).
const SOFTPLUS_THRESHOLD: f64 = 20.0;

impl Tensor {
    /// `cond ? self : 0` for a u8 mask `cond`, differentiable in `self`.
    fn masked_keep(&self, cond: &Tensor) -> Result<Tensor> {
        Tensor::try_where_cond(cond, self, &self.scalar_like(0.0)?)
    }

    /// A u8 mask comparing every element with the scalar `value`.
    fn compare_scalar(&self, value: f64, cmp: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
        cmp(self, &self.scalar_like(value)?)
    }

    pub fn try_neg(&self) -> Result<Tensor> {
        let out = float_map!(self, "neg", |x| -x)?;
        Ok(record("neg", out, &[self], |g, _| Ok(vec![Some(g.try_neg()?)])))
    }

    pub fn try_exp(&self) -> Result<Tensor> {
        let out = float_map!(self, "exp", |x| x.exp())?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("exp", out, &[self], move |g, _| {
            // Reuse the saved output unless the backward itself is being recorded.
            let y = if is_grad_enabled() { x.try_exp()? } else { y.clone() };
            Ok(vec![Some(g.try_mul(&y)?)])
        }))
    }

    pub fn try_log(&self) -> Result<Tensor> {
        let out = float_map!(self, "log", |x| x.ln())?;
        let x = self.clone();
        Ok(record("log", out, &[self], move |g, _| Ok(vec![Some(g.try_div(&x)?)])))
    }

    pub fn try_log1p(&self) -> Result<Tensor> {
        let out = math_map!(self, "log1p", |x| x.ln_1p())?;
        let x = self.clone();
        Ok(record("log1p", out, &[self], move |g, _| Ok(vec![Some(g.try_div(&x.try_add_scalar(1.0)?)?)])))
    }

    pub fn try_sqrt(&self) -> Result<Tensor> {
        let out = math_map!(self, "sqrt", |x| x.sqrt())?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("sqrt", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_sqrt()? } else { y.clone() };
            // d sqrt(x) = 1 / (2 sqrt(x))
            Ok(vec![Some(g.try_div(&y.try_mul_scalar(2.0)?)?)])
        }))
    }

    pub fn try_rsqrt(&self) -> Result<Tensor> {
        let out = math_map!(self, "rsqrt", |x| M::one() / x.sqrt())?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("rsqrt", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_rsqrt()? } else { y.clone() };
            // d x^(-1/2) = -x^(-3/2) / 2 = -y³ / 2
            let y3 = y.try_mul(&y)?.try_mul(&y)?;
            Ok(vec![Some(g.try_mul(&y3)?.try_mul_scalar(-0.5)?)])
        }))
    }

    pub fn try_square(&self) -> Result<Tensor> {
        let out = math_map!(self, "square", |x| x * x)?;
        let x = self.clone();
        Ok(record("square", out, &[self], move |g, _| Ok(vec![Some(g.try_mul(&x)?.try_mul_scalar(2.0)?)])))
    }

    pub fn try_reciprocal(&self) -> Result<Tensor> {
        let out = math_map!(self, "reciprocal", |x| M::one() / x)?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("reciprocal", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_reciprocal()? } else { y.clone() };
            // d (1/x) = -1/x² = -y²
            Ok(vec![Some(g.try_mul(&y.try_mul(&y)?)?.try_neg()?)])
        }))
    }

    pub fn try_abs(&self) -> Result<Tensor> {
        let out = math_map!(self, "abs", |x| x.abs())?;
        let x = self.clone();
        Ok(record("abs", out, &[self], move |g, _| {
            // sign(x), with sign(0) = sign(NaN) = 0 as in PyTorch.
            let dt = g.dtype();
            let pos = x.compare_scalar(0.0, Tensor::try_gt)?.try_to_dtype(dt)?;
            let neg = x.compare_scalar(0.0, Tensor::try_lt)?.try_to_dtype(dt)?;
            Ok(vec![Some(g.try_mul(&pos.try_sub(&neg)?)?)])
        }))
    }

    pub fn try_sin(&self) -> Result<Tensor> {
        let out = math_map!(self, "sin", |x| x.sin())?;
        let x = self.clone();
        Ok(record("sin", out, &[self], move |g, _| Ok(vec![Some(g.try_mul(&x.try_cos()?)?)])))
    }

    pub fn try_cos(&self) -> Result<Tensor> {
        let out = math_map!(self, "cos", |x| x.cos())?;
        let x = self.clone();
        Ok(record("cos", out, &[self], move |g, _| Ok(vec![Some(g.try_mul(&x.try_sin()?)?.try_neg()?)])))
    }

    pub fn try_tanh(&self) -> Result<Tensor> {
        let out = math_map!(self, "tanh", |x| x.tanh())?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("tanh", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_tanh()? } else { y.clone() };
            // 1 - y²
            let d = y.try_mul(&y)?.try_rsub_scalar(1.0)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    pub fn try_sigmoid(&self) -> Result<Tensor> {
        let out = math_map!(self, "sigmoid", |x| M::one() / (M::one() + (-x).exp()))?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("sigmoid", out, &[self], move |g, _| {
            let y = if is_grad_enabled() { x.try_sigmoid()? } else { y.clone() };
            // y (1 - y)
            let d = y.try_mul(&y.try_rsub_scalar(1.0)?)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    pub fn try_erf(&self) -> Result<Tensor> {
        let out = math_map!(self, "erf", |x| x.erf_fn())?;
        let x = self.clone();
        Ok(record("erf", out, &[self], move |g, _| {
            // 2/sqrt(pi) * exp(-x²)
            let d = x.try_square()?.try_neg()?.try_exp()?.try_mul_scalar(std::f64::consts::FRAC_2_SQRT_PI)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    pub fn try_relu(&self) -> Result<Tensor> {
        // NaN stays NaN (the comparison is false), like PyTorch.
        let out = math_map!(self, "relu", |x| if x <= M::zero() { M::zero() } else { x })?;
        let x = self.clone();
        Ok(record("relu", out, &[self], move |g, _| {
            // relu'(0) = 0.
            Ok(vec![Some(g.masked_keep(&x.compare_scalar(0.0, Tensor::try_gt)?)?)])
        }))
    }

    pub fn try_leaky_relu(&self, negative_slope: f64) -> Result<Tensor> {
        let out = math_map!(self, "leaky_relu", |x| if x > M::zero() { x } else { x * M::from_f64(negative_slope) })?;
        let x = self.clone();
        Ok(record("leaky_relu", out, &[self], move |g, _| {
            // PyTorch: x > 0 ? g : g * negative_slope (so the slope applies at 0).
            let pos = x.compare_scalar(0.0, Tensor::try_gt)?;
            Ok(vec![Some(Tensor::try_where_cond(&pos, g, &g.try_mul_scalar(negative_slope)?)?)])
        }))
    }

    pub fn try_elu(&self, alpha: f64) -> Result<Tensor> {
        let out = math_map!(self, "elu", |x| if x > M::zero() { x } else { M::from_f64(alpha) * x.exp_m1() })?;
        let x = self.clone();
        Ok(record("elu", out, &[self], move |g, _| {
            // PyTorch: x <= 0 ? g * alpha * exp(x) : g (so elu'(0) = alpha). The exponent is
            // taken of min(x, 0) so the unused branch never overflows (0 * inf would be NaN in
            // double backward).
            let nonpos = x.compare_scalar(0.0, Tensor::try_le)?;
            let e = x.masked_keep(&nonpos)?.try_exp()?;
            let neg = g.try_mul(&e)?.try_mul_scalar(alpha)?;
            Ok(vec![Some(Tensor::try_where_cond(&nonpos, &neg, g)?)])
        }))
    }

    pub fn try_gelu(&self) -> Result<Tensor> {
        let out = math_map!(self, "gelu", |x| x * M::from_f64(0.5) * (M::one() + (x * M::from_f64(FRAC_1_SQRT_2)).erf_fn()))?;
        let x = self.clone();
        Ok(record("gelu", out, &[self], move |g, _| {
            // Φ(x) + x φ(x)
            let cdf = x.try_mul_scalar(FRAC_1_SQRT_2)?.try_erf()?.try_add_scalar(1.0)?.try_mul_scalar(0.5)?;
            let pdf = x.try_square()?.try_mul_scalar(-0.5)?.try_exp()?.try_mul_scalar(FRAC_1_SQRT_2PI)?;
            let d = cdf.try_add(&x.try_mul(&pdf)?)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    pub fn try_gelu_tanh(&self) -> Result<Tensor> {
        let out = math_map!(self, "gelu_tanh", |x| {
            let inner = M::from_f64(SQRT_2_OVER_PI) * (x + M::from_f64(GELU_TANH_KAPPA) * x * x * x);
            M::from_f64(0.5) * x * (M::one() + inner.tanh())
        })?;
        let x = self.clone();
        Ok(record("gelu_tanh", out, &[self], move |g, _| {
            // With t = tanh(k (x + κx³)): 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3κx²).
            let x2 = x.try_square()?;
            let inner = x2.try_mul_scalar(GELU_TANH_KAPPA)?.try_add_scalar(1.0)?.try_mul(&x)?.try_mul_scalar(SQRT_2_OVER_PI)?;
            let t = inner.try_tanh()?;
            let left = t.try_add_scalar(1.0)?.try_mul_scalar(0.5)?;
            let dinner = x2.try_mul_scalar(3.0 * GELU_TANH_KAPPA)?.try_add_scalar(1.0)?.try_mul_scalar(SQRT_2_OVER_PI)?;
            let right = x.try_mul_scalar(0.5)?.try_mul(&t.try_square()?.try_rsub_scalar(1.0)?)?.try_mul(&dinner)?;
            Ok(vec![Some(g.try_mul(&left.try_add(&right)?)?)])
        }))
    }

    pub fn try_silu(&self) -> Result<Tensor> {
        let out = math_map!(self, "silu", |x| x / (M::one() + (-x).exp()))?;
        let x = self.clone();
        Ok(record("silu", out, &[self], move |g, _| {
            // s (1 + x (1 - s)) with s = sigmoid(x)
            let s = x.try_sigmoid()?;
            let d = s.try_mul(&x.try_mul(&s.try_rsub_scalar(1.0)?)?.try_add_scalar(1.0)?)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    pub fn try_softplus(&self) -> Result<Tensor> {
        let out = math_map!(self, "softplus", |x| if x > M::from_f64(SOFTPLUS_THRESHOLD) { x } else { x.exp().ln_1p() })?;
        let x = self.clone();
        Ok(record("softplus", out, &[self], move |g, _| {
            // x > threshold ? g : g * sigmoid(x)
            let linear = x.compare_scalar(SOFTPLUS_THRESHOLD, Tensor::try_gt)?;
            let smooth = g.try_mul(&x.try_sigmoid()?)?;
            Ok(vec![Some(Tensor::try_where_cond(&linear, g, &smooth)?)])
        }))
    }

    pub fn try_clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        const OP: &str = "clamp";
        if min.is_none() && max.is_none() {
            return Err(Error::invalid(OP, self.shape(), "at least one of min and max must be given"));
        }
        if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
            return Err(Error::invalid(OP, self.shape(), format!("bounds must not be NaN (min {min:?}, max {max:?})")));
        }
        let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
        // max(x, lo) then min(·, hi): when lo > hi everything becomes hi, and NaN stays NaN,
        // as in PyTorch.
        let out = math_map!(self, OP, |x| {
            let y = if x < M::from_f64(lo) { M::from_f64(lo) } else { x };
            if y > M::from_f64(hi) { M::from_f64(hi) } else { y }
        })?;
        let x = self.clone();
        Ok(record(OP, out, &[self], move |g, _| {
            // Gradient 1 on [min, max] (inclusive), 0 outside and at NaN.
            let mut g = g.clone();
            if let Some(lo) = min {
                g = g.masked_keep(&x.compare_scalar(lo, Tensor::try_ge)?)?;
            }
            if let Some(hi) = max {
                g = g.masked_keep(&x.compare_scalar(hi, Tensor::try_le)?)?;
            }
            Ok(vec![Some(g)])
        }))
    }
}

panicking! {
    /// `-self`.
    fn neg / try_neg(&self) -> Tensor;
    /// `e ** self`.
    fn exp / try_exp(&self) -> Tensor;
    /// Natural logarithm.
    fn log / try_log(&self) -> Tensor;
    /// `ln(1 + self)`, accurate near 0.
    fn log1p / try_log1p(&self) -> Tensor;
    /// Square root.
    fn sqrt / try_sqrt(&self) -> Tensor;
    /// `1 / sqrt(self)`.
    fn rsqrt / try_rsqrt(&self) -> Tensor;
    /// `self * self`.
    fn square / try_square(&self) -> Tensor;
    /// `1 / self`.
    fn reciprocal / try_reciprocal(&self) -> Tensor;
    /// Absolute value (gradient `sign(self)`, 0 at 0).
    fn abs / try_abs(&self) -> Tensor;
    /// Sine.
    fn sin / try_sin(&self) -> Tensor;
    /// Cosine.
    fn cos / try_cos(&self) -> Tensor;
    /// Hyperbolic tangent.
    fn tanh / try_tanh(&self) -> Tensor;
    /// Logistic sigmoid `1 / (1 + e^-x)`.
    fn sigmoid / try_sigmoid(&self) -> Tensor;
    /// Gauss error function (`torch.erf`).
    fn erf / try_erf(&self) -> Tensor;
    /// `max(self, 0)`; the gradient at 0 is 0.
    fn relu / try_relu(&self) -> Tensor;
    /// `x > 0 ? x : negative_slope * x` (`F.leaky_relu`); the gradient at 0 is `negative_slope`.
    fn leaky_relu / try_leaky_relu(&self, negative_slope: f64) -> Tensor;
    /// `x > 0 ? x : alpha * (e^x - 1)` (`F.elu`); the gradient at 0 is `alpha`, as in PyTorch.
    fn elu / try_elu(&self, alpha: f64) -> Tensor;
    /// GELU, exact form `x Φ(x)` with the erf CDF (`F.gelu`).
    fn gelu / try_gelu(&self) -> Tensor;
    /// GELU, tanh approximation (`F.gelu(x, approximate="tanh")`).
    fn gelu_tanh / try_gelu_tanh(&self) -> Tensor;
    /// SiLU / swish `x * sigmoid(x)` (`F.silu`).
    fn silu / try_silu(&self) -> Tensor;
    /// `ln(1 + e^x)`, returning `x` where `x > 20` (`F.softplus` with beta 1, threshold 20).
    fn softplus / try_softplus(&self) -> Tensor;
    /// Clamps into `[min, max]`; either bound may be `None` but not both (`torch.clamp`).
    /// The gradient is 1 inside the closed interval, 0 outside.
    fn clamp / try_clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor;
}
