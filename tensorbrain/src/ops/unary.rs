//! Elementwise unary math and activations.
//!
//! Forward passes compute in each dtype's "op math" precision: f32 and f64 in themselves, f16
//! and bf16 widened to f32 per element (as PyTorch does), so half-precision results are the
//! correctly rounded f32 result. Backward rules are written with differentiable tensor ops so
//! that double backward works; rules that need the op's own output reuse the saved output unless
//! the backward pass is itself being recorded (then they recompute it, which keeps the graph
//! connected without a reference cycle).

use half::{bf16, f16};
use tensorbrain_kernels::fused::{self, Instr, Operand as FusedOperand, Program, UnaryFn as FusedUnary};
use tensorbrain_kernels::strided::map_vec;
use tensorbrain_kernels::Float;

mod fused_backward;

use super::integer::{self, IntUnary};
use super::{float_dispatch, float_map, panicking};
use crate::autograd::{is_grad_enabled, record};
use tensorbrain_ir::UnaryOp;

use crate::tensor::{Error, Result, StorageElement, Tensor};

/// A float that elementwise math is carried out in (f32 or f64).
pub(crate) trait MathFloat: Float {
    fn erf_fn(self) -> Self;
    /// Rounds half to even (C's `nearbyint`, what `torch.round` does).
    fn round_even(self) -> Self;
}

impl MathFloat for f32 {
    #[inline(always)]
    fn erf_fn(self) -> f32 {
        libm::erff(self)
    }
    #[inline(always)]
    fn round_even(self) -> f32 {
        self.round_ties_even()
    }
}

impl MathFloat for f64 {
    #[inline(always)]
    fn erf_fn(self) -> f64 {
        libm::erf(self)
    }
    #[inline(always)]
    fn round_even(self) -> f64 {
        self.round_ties_even()
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
    ($x:expr, $op:expr, |$v:ident| $body:expr) => {
        $crate::ops::unary::math_map!($x, $op, device(|x| $crate::ops::device_unary($op, x)), |$v| $body)
    };
    // `device(f)`: what a tensor on a GPU runs instead (`f(x) -> Result<Tensor>`).
    ($x:expr, $op:expr, device($dev:expr), |$v:ident| $body:expr) => {{
        let x: &Tensor = $x;
        // Integer and bool inputs compute in f32, PyTorch's default dtype.
        let promoted;
        let x: &Tensor = if x.dtype().is_float() { x } else { promoted = x.to_float_input()?; &promoted };
        if $crate::ops::on_device(x) { ($dev)(x) } else {
        float_dispatch!($op, x.dtype(), T => {
            #[allow(unused_imports)]
            use num_traits::{Float as _, One as _, Zero as _};
            #[allow(dead_code)]
            type M = <T as OpMath>::M;
            let storage = x.storage();
            let src = storage.cpu()?.as_slice::<T>();
            let l = x.layout();
            let out = map_vec(src, l.offset, &l.shape, &l.strides, |v: T| -> T {
                let $v: M = v.up();
                T::down($body)
            });
            Ok::<Tensor, Error>(Tensor::from_storage(T::wrap(out), &l.shape))
        })
        }
    }};
}

pub(crate) use math_map;

/// `f` over an f32 tensor through the fused elementwise kernel: the polynomial `exp`, `log`,
/// `tanh`, `erf` and GELU of `tensorbrain_kernels::fast_math` (ulp bounds stated and tested
/// there, over every f32 input) on the CPU's widest SIMD level, where a libm call per element
/// was 6× slower than PyTorch on a [256, 2048] tensor.
/// `None` for other dtypes, which take the generic map.
fn vectorised_f32(x: &Tensor, f: FusedUnary) -> Option<Tensor> {
    if x.dtype() != crate::DType::F32 {
        return None;
    }
    let program = Program::new(&[Instr::Load(0), Instr::Unary(f, 0)], 1, 1).expect("a load and one unary function form a valid program");
    let storage = x.storage();
    let l = x.layout();
    let input = FusedOperand::Strided { data: storage.cpu().ok()?.as_slice::<f32>(), offset: l.offset, strides: &l.strides };
    let out = fused::eval_vec(&program, &[input], &l.shape);
    Some(Tensor::from_storage(f32::wrap(out), &l.shape))
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

    /// Attaches the backward of unary op `u` to `out = u(self)`.
    fn record_unary(&self, u: UnaryOp, out: Tensor) -> Tensor {
        let x = self.clone();
        let saved = u.grad_from_output().then(|| out.detach());
        record(u.method(), out, &[self], move |g, _| {
            let s = match &saved {
                // Reuse the saved output unless the backward itself is being recorded: then
                // recompute it so the graph stays connected (without a reference cycle).
                Some(y) if !is_grad_enabled() => y.clone(),
                Some(_) => crate::exec::apply(&tensorbrain_ir::Op::Unary(u), &[&x], &[])?,
                None => x.clone(),
            };
            Ok(vec![Some(backward(u, &s, g)?)])
        })
    }

    pub fn try_neg(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return integer::map("neg", IntUnary::Neg, self);
        }
        let out = float_map!(self, "neg", |x| -x)?;
        Ok(self.record_unary(UnaryOp::Neg, out))
    }

    pub fn try_exp(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Exp) {
            Some(out) => out,
            None => float_map!(self, "exp", |x| x.exp())?,
        };
        Ok(self.record_unary(UnaryOp::Exp, out))
    }

    pub fn try_log(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Log) {
            Some(out) => out,
            None => float_map!(self, "log", |x| x.ln())?,
        };
        Ok(self.record_unary(UnaryOp::Log, out))
    }

    pub fn try_log1p(&self) -> Result<Tensor> {
        let out = math_map!(self, "log1p", |x| x.ln_1p())?;
        Ok(self.record_unary(UnaryOp::Log1p, out))
    }

    pub fn try_sqrt(&self) -> Result<Tensor> {
        let out = math_map!(self, "sqrt", |x| x.sqrt())?;
        Ok(self.record_unary(UnaryOp::Sqrt, out))
    }

    pub fn try_rsqrt(&self) -> Result<Tensor> {
        let out = math_map!(self, "rsqrt", |x| M::one() / x.sqrt())?;
        Ok(self.record_unary(UnaryOp::Rsqrt, out))
    }

    pub fn try_square(&self) -> Result<Tensor> {
        let out = math_map!(self, "square", |x| x * x)?;
        Ok(self.record_unary(UnaryOp::Square, out))
    }

    pub fn try_reciprocal(&self) -> Result<Tensor> {
        let out = math_map!(self, "reciprocal", |x| M::one() / x)?;
        Ok(self.record_unary(UnaryOp::Reciprocal, out))
    }

    pub fn try_abs(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return integer::map("abs", IntUnary::Abs, self);
        }
        let out = math_map!(self, "abs", |x| x.abs())?;
        Ok(self.record_unary(UnaryOp::Abs, out))
    }

    pub fn try_sin(&self) -> Result<Tensor> {
        let out = math_map!(self, "sin", |x| x.sin())?;
        Ok(self.record_unary(UnaryOp::Sin, out))
    }

    pub fn try_cos(&self) -> Result<Tensor> {
        let out = math_map!(self, "cos", |x| x.cos())?;
        Ok(self.record_unary(UnaryOp::Cos, out))
    }

    pub fn try_tanh(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Tanh) {
            Some(out) => out,
            None => math_map!(self, "tanh", |x| x.tanh())?,
        };
        Ok(self.record_unary(UnaryOp::Tanh, out))
    }

    pub fn try_sigmoid(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Sigmoid) {
            Some(out) => out,
            None => math_map!(self, "sigmoid", |x| M::one() / (M::one() + (-x).exp()))?,
        };
        Ok(self.record_unary(UnaryOp::Sigmoid, out))
    }

    pub fn try_erf(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Erf) {
            Some(out) => out,
            None => math_map!(self, "erf", |x| x.erf_fn())?,
        };
        Ok(self.record_unary(UnaryOp::Erf, out))
    }

    pub fn try_relu(&self) -> Result<Tensor> {
        // NaN stays NaN (the comparison is false), like PyTorch.
        let out = math_map!(self, "relu", |x| if x <= M::zero() { M::zero() } else { x })?;
        Ok(self.record_unary(UnaryOp::Relu, out))
    }

    pub fn try_leaky_relu(&self, negative_slope: f64) -> Result<Tensor> {
        let out = math_map!(self, "leaky_relu", device(|x| super::device_unary_pq("leaky_relu", x, negative_slope, 0.0)), |x| if x > M::zero() { x } else { x * M::from_f64(negative_slope) })?;
        Ok(self.record_unary(UnaryOp::LeakyRelu(negative_slope), out))
    }

    pub fn try_elu(&self, alpha: f64) -> Result<Tensor> {
        let out = math_map!(self, "elu", device(|x| super::device_unary_pq("elu", x, alpha, 0.0)), |x| if x > M::zero() { x } else { M::from_f64(alpha) * x.exp_m1() })?;
        Ok(self.record_unary(UnaryOp::Elu(alpha), out))
    }

    pub fn try_gelu(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Gelu) {
            Some(out) => out,
            None => math_map!(self, "gelu", |x| x * M::from_f64(0.5) * (M::one() + (x * M::from_f64(FRAC_1_SQRT_2)).erf_fn()))?,
        };
        Ok(self.record_unary(UnaryOp::Gelu, out))
    }

    pub fn try_gelu_tanh(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::GeluTanh) {
            Some(out) => out,
            None => math_map!(self, "gelu_tanh", |x| {
                let inner = M::from_f64(SQRT_2_OVER_PI) * (x + M::from_f64(GELU_TANH_KAPPA) * x * x * x);
                M::from_f64(0.5) * x * (M::one() + inner.tanh())
            })?,
        };
        Ok(self.record_unary(UnaryOp::GeluTanh, out))
    }

    pub fn try_silu(&self) -> Result<Tensor> {
        let out = match vectorised_f32(self, FusedUnary::Silu) {
            Some(out) => out,
            None => math_map!(self, "silu", |x| x / (M::one() + (-x).exp()))?,
        };
        Ok(self.record_unary(UnaryOp::Silu, out))
    }

    pub fn try_softplus(&self) -> Result<Tensor> {
        let out = math_map!(self, "softplus", |x| if x > M::from_f64(SOFTPLUS_THRESHOLD) { x } else { x.exp().ln_1p() })?;
        Ok(self.record_unary(UnaryOp::Softplus, out))
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
        let out = math_map!(self, OP, device(|x| super::device_unary_pq("clamp", x, lo, hi)), |x| {
            let y = if x < M::from_f64(lo) { M::from_f64(lo) } else { x };
            if y > M::from_f64(hi) { M::from_f64(hi) } else { y }
        })?;
        let x = self.clone();
        Ok(record(OP, out, &[self], move |g, _| {
            // Gradient 1 strictly inside (min, max), 0 at the bounds, outside and at NaN: the
            // rule of PyTorch 2.15, checked by tests/edge_cases.rs.
            let mut g = g.clone();
            if let Some(lo) = min {
                g = g.masked_keep(&x.compare_scalar(lo, Tensor::try_gt)?)?;
            }
            if let Some(hi) = max {
                g = g.masked_keep(&x.compare_scalar(hi, Tensor::try_lt)?)?;
            }
            Ok(vec![Some(g)])
        }))
    }
}

/// The gradient of unary op `u`'s input given `g`, the gradient of its output. `s` is the op's
/// output when [`UnaryOp::grad_from_output`] holds, else its input. The tape and the code
/// `#[model]` generates both use this one definition.
///
/// When the result is not recorded (first-order backward, the usual case) it is computed in one
/// pass by the fused elementwise kernel, from the program the fusion pass lowers this rule to
/// (op for op the same arithmetic as [`backward_ops`], so the same bits): PyTorch's
/// `tanh_backward` and `sigmoid_backward` are one kernel each, where the rule's three tensor ops
/// made three passes over memory and two temporaries (the tape's row of `bench_all`'s
/// elementwise block spent 40% of its backward there).
pub(crate) fn backward(u: UnaryOp, s: &Tensor, g: &Tensor) -> Result<Tensor> {
    if !crate::autograd::needs_grad(&[s, g]) {
        if let Some(grad) = fused_backward::run(u, s, g)? {
            return Ok(grad);
        }
    }
    backward_ops(u, s, g)
}

/// [`backward`] written with differentiable tensor ops, so that it can itself be differentiated
/// (double backward).
fn backward_ops(u: UnaryOp, s: &Tensor, g: &Tensor) -> Result<Tensor> {
    let dt = g.dtype();
    match u {
        UnaryOp::Neg => g.try_neg(),
        // exp' = exp = y
        UnaryOp::Exp => g.try_mul(s),
        UnaryOp::Log => g.try_div(s),
        UnaryOp::Log1p => g.try_div(&s.try_add_scalar(1.0)?),
        // d sqrt(x) = 1 / (2 sqrt(x)) = 1 / (2y)
        UnaryOp::Sqrt => g.try_div(&s.try_mul_scalar(2.0)?),
        // d x^(-1/2) = -x^(-3/2) / 2 = -y³ / 2
        UnaryOp::Rsqrt => g.try_mul(&s.try_mul(s)?.try_mul(s)?)?.try_mul_scalar(-0.5),
        UnaryOp::Square => g.try_mul(s)?.try_mul_scalar(2.0),
        // d (1/x) = -1/x² = -y²
        UnaryOp::Reciprocal => g.try_mul(&s.try_mul(s)?)?.try_neg(),
        UnaryOp::Abs => {
            // sign(x), with sign(0) = sign(NaN) = 0 as in PyTorch.
            let pos = s.compare_scalar(0.0, Tensor::try_gt)?.try_to_dtype(dt)?;
            let neg = s.compare_scalar(0.0, Tensor::try_lt)?.try_to_dtype(dt)?;
            g.try_mul(&pos.try_sub(&neg)?)
        }
        UnaryOp::Sin => g.try_mul(&s.try_cos()?),
        UnaryOp::Cos => g.try_mul(&s.try_sin()?)?.try_neg(),
        // 1 - y²
        UnaryOp::Tanh => g.try_mul(&s.try_mul(s)?.try_rsub_scalar(1.0)?),
        // y (1 - y)
        UnaryOp::Sigmoid => g.try_mul(&s.try_mul(&s.try_rsub_scalar(1.0)?)?),
        // 2/sqrt(pi) * exp(-x²)
        UnaryOp::Erf => g.try_mul(&s.try_square()?.try_neg()?.try_exp()?.try_mul_scalar(std::f64::consts::FRAC_2_SQRT_PI)?),
        // relu'(0) = 0; y > 0 exactly where x > 0.
        UnaryOp::Relu => g.masked_keep(&s.compare_scalar(0.0, Tensor::try_gt)?),
        UnaryOp::LeakyRelu(slope) => {
            // PyTorch: x > 0 ? g : g * negative_slope (so the slope applies at 0).
            let pos = s.compare_scalar(0.0, Tensor::try_gt)?;
            Tensor::try_where_cond(&pos, g, &g.try_mul_scalar(slope)?)
        }
        UnaryOp::Elu(alpha) => {
            // PyTorch: x <= 0 ? g * alpha * exp(x) : g (so elu'(0) = alpha). The exponent is
            // taken of min(x, 0) so the unused branch never overflows (0 * inf would be NaN in
            // double backward).
            let nonpos = s.compare_scalar(0.0, Tensor::try_le)?;
            let e = s.masked_keep(&nonpos)?.try_exp()?;
            let neg = g.try_mul(&e)?.try_mul_scalar(alpha)?;
            Tensor::try_where_cond(&nonpos, &neg, g)
        }
        UnaryOp::Gelu => {
            // Φ(x) + x φ(x)
            let cdf = s.try_mul_scalar(FRAC_1_SQRT_2)?.try_erf()?.try_add_scalar(1.0)?.try_mul_scalar(0.5)?;
            let pdf = s.try_square()?.try_mul_scalar(-0.5)?.try_exp()?.try_mul_scalar(FRAC_1_SQRT_2PI)?;
            g.try_mul(&cdf.try_add(&s.try_mul(&pdf)?)?)
        }
        UnaryOp::GeluTanh => {
            // With t = tanh(k (x + κx³)): 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3κx²).
            let x2 = s.try_square()?;
            let inner = x2.try_mul_scalar(GELU_TANH_KAPPA)?.try_add_scalar(1.0)?.try_mul(s)?.try_mul_scalar(SQRT_2_OVER_PI)?;
            let t = inner.try_tanh()?;
            let left = t.try_add_scalar(1.0)?.try_mul_scalar(0.5)?;
            let dinner = x2.try_mul_scalar(3.0 * GELU_TANH_KAPPA)?.try_add_scalar(1.0)?.try_mul_scalar(SQRT_2_OVER_PI)?;
            let right = s.try_mul_scalar(0.5)?.try_mul(&t.try_square()?.try_rsub_scalar(1.0)?)?.try_mul(&dinner)?;
            g.try_mul(&left.try_add(&right)?)
        }
        UnaryOp::Silu => {
            // σ (1 + x (1 - σ))
            let sig = s.try_sigmoid()?;
            g.try_mul(&sig.try_mul(&s.try_mul(&sig.try_rsub_scalar(1.0)?)?.try_add_scalar(1.0)?)?)
        }
        UnaryOp::Softplus => {
            // x > threshold ? g : g * sigmoid(x)
            let linear = s.compare_scalar(SOFTPLUS_THRESHOLD, Tensor::try_gt)?;
            Tensor::try_where_cond(&linear, g, &g.try_mul(&s.try_sigmoid()?)?)
        }
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
    /// The gradient is 1 strictly inside the interval and 0 at the bounds and outside, as in
    /// PyTorch 2.15.
    fn clamp / try_clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    const ALL: [UnaryOp; 21] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Abs,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Silu,
        UnaryOp::Softplus,
        UnaryOp::Log1p,
        UnaryOp::Square,
        UnaryOp::Reciprocal,
        UnaryOp::Erf,
        UnaryOp::Elu(0.7),
        UnaryOp::LeakyRelu(0.02),
    ];

    fn bits(t: &Tensor) -> Vec<u64> {
        t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect()
    }

    /// The one-pass backward gives the op-by-op rule's bits, for every op, in f32 and f64, on
    /// inputs that cross each rule's branch points (0, softplus' threshold 20) and include a
    /// strided (transposed) gradient.
    #[test]
    fn fused_backward_matches_the_op_by_op_rule_bit_for_bit() {
        let mut values: Vec<f64> = (0..600).map(|i| (i as f64 - 300.0) / 23.0).collect();
        values.extend([0.0, -0.0, 20.0, 20.5, 19.5, 1e-30, -1e-30, 40.0]);
        let n = values.len();
        for dtype in [DType::F32, DType::F64] {
            let s = Tensor::from_vec(values.clone(), &[n / 8, 8]).to_dtype(dtype);
            let g = Tensor::from_vec((0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0).collect(), &[8, n / 8]).to_dtype(dtype).t();
            for u in ALL {
                // Positive inputs where the rule divides by or takes the root of `s`.
                let s = if matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Log1p) { s.abs() + 0.25 } else { s.clone() };
                let fused = fused_backward::run(u, &s, &g).unwrap().expect("f32/f64 on the CPU take the fused kernel");
                let ops = backward_ops(u, &s, &g).unwrap();
                assert_eq!(fused.shape(), ops.shape(), "{u:?} {dtype:?}");
                assert_eq!(bits(&fused), bits(&ops), "{u:?} {dtype:?}: fused backward differs from the op-by-op rule");
            }
        }
    }

    /// Recorded backwards (double backward) keep the differentiable rule; other dtypes and
    /// mismatched shapes fall back to it.
    #[test]
    fn fused_backward_leaves_recorded_and_other_cases_to_the_rule() {
        let s = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3]).set_requires_grad(true);
        let g = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]);
        let grad = backward(UnaryOp::Tanh, &s, &g).unwrap();
        assert!(grad.requires_grad(), "a backward that is being recorded must stay on the tape");
        let h = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3]).to_dtype(DType::F16);
        assert!(fused_backward::run(UnaryOp::Tanh, &h, &h).unwrap().is_none());
        let wide = Tensor::from_vec(vec![1.0; 6], &[2, 3]);
        assert!(fused_backward::run(UnaryOp::Tanh, &g, &wide).unwrap().is_none());
        let _ = backward(UnaryOp::Tanh, &g, &wide).unwrap();
    }
}
