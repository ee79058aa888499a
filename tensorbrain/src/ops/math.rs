//! More elementwise math: `expm1`, `log2`, `log10`, `exp2`, `tan`, `atan`, `asin`, `acos`,
//! `sign`, rounding (`floor`, `ceil`, `round`, `trunc`), and the binary `atan2`, `remainder`,
//! `fmod`, `floor_divide`, `hypot` and `copysign`, with PyTorch's derivatives.
//!
//! These ops are not in the graph IR (so `#[model]` forwards cannot use them yet); each records
//! its own backward, written with differentiable ops so that gradients of gradients work.

use tensorbrain_kernels::strided::map_vec;

use super::binary::{check_same, float_zip};
use super::integer::{self, IntBinary, IntUnary};
use super::promote::promote_pair;
use super::unary::{math_map, MathFloat as _, OpMath};
use super::{float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{Error, Result, StorageElement, Tensor};

const LN_2: f64 = std::f64::consts::LN_2;
const LN_10: f64 = std::f64::consts::LN_10;

impl Tensor {
    /// Records `out = f(self)` with input gradient `g * deriv(self)`.
    fn record_pointwise(&self, name: &'static str, out: Tensor, deriv: fn(&Tensor) -> Result<Tensor>) -> Tensor {
        let x = self.clone();
        record(name, out, &[self], move |g, _| Ok(vec![Some(g.try_mul(&deriv(&x)?)?)]))
    }

    /// Records an op whose gradient is zero almost everywhere (rounding, `sign`).
    fn record_flat(&self, name: &'static str, out: Tensor) -> Tensor {
        record(name, out, &[self], |g, _| Ok(vec![Some(g.try_zeros_like()?)]))
    }

    /// `exp(x) - 1`, accurate near 0.
    pub fn try_expm1(&self) -> Result<Tensor> {
        let out = math_map!(self, "expm1", |x| x.exp_m1())?;
        Ok(self.record_pointwise("expm1", out, |x| x.try_exp()))
    }

    pub fn try_exp2(&self) -> Result<Tensor> {
        let out = math_map!(self, "exp2", |x| x.exp2())?;
        Ok(self.record_pointwise("exp2", out, |x| x.try_exp2()?.try_mul_scalar(LN_2)))
    }

    pub fn try_log2(&self) -> Result<Tensor> {
        let out = math_map!(self, "log2", |x| x.log2())?;
        Ok(self.record_pointwise("log2", out, |x| x.try_mul_scalar(LN_2)?.try_reciprocal()))
    }

    pub fn try_log10(&self) -> Result<Tensor> {
        let out = math_map!(self, "log10", |x| x.log10())?;
        Ok(self.record_pointwise("log10", out, |x| x.try_mul_scalar(LN_10)?.try_reciprocal()))
    }

    pub fn try_tan(&self) -> Result<Tensor> {
        let out = math_map!(self, "tan", |x| x.tan())?;
        // 1 + tan²(x)
        Ok(self.record_pointwise("tan", out, |x| x.try_tan()?.try_square()?.try_add_scalar(1.0)))
    }

    pub fn try_atan(&self) -> Result<Tensor> {
        let out = math_map!(self, "atan", |x| x.atan())?;
        Ok(self.record_pointwise("atan", out, |x| x.try_square()?.try_add_scalar(1.0)?.try_reciprocal()))
    }

    pub fn try_asin(&self) -> Result<Tensor> {
        let out = math_map!(self, "asin", |x| x.asin())?;
        Ok(self.record_pointwise("asin", out, |x| x.try_square()?.try_rsub_scalar(1.0)?.try_rsqrt()))
    }

    pub fn try_acos(&self) -> Result<Tensor> {
        let out = math_map!(self, "acos", |x| x.acos())?;
        Ok(self.record_pointwise("acos", out, |x| x.try_square()?.try_rsub_scalar(1.0)?.try_rsqrt()?.try_neg()))
    }

    pub fn try_sinh(&self) -> Result<Tensor> {
        let out = math_map!(self, "sinh", |x| x.sinh())?;
        Ok(self.record_pointwise("sinh", out, |x| x.try_cosh()))
    }

    pub fn try_cosh(&self) -> Result<Tensor> {
        let out = math_map!(self, "cosh", |x| x.cosh())?;
        Ok(self.record_pointwise("cosh", out, |x| x.try_sinh()))
    }

    /// -1, 0 or 1 by sign; 0 at ±0 and at NaN, as `torch.sign` computes `(0 < x) - (x < 0)`.
    /// Integer tensors stay integral.
    pub fn try_sign(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return integer::map("sign", IntUnary::Sign, self);
        }
        let out = math_map!(self, "sign", |x| {
            let (z, o) = (M::zero(), M::one());
            (if x > z { o } else { z }) - (if x < z { o } else { z })
        })?;
        Ok(self.record_flat("sign", out))
    }

    pub fn try_floor(&self) -> Result<Tensor> {
        // Integer tensors are returned as copies, as PyTorch does.
        if !self.dtype().is_float() {
            return self.try_contiguous_copy();
        }
        let out = math_map!(self, "floor", |x| x.floor())?;
        Ok(self.record_flat("floor", out))
    }

    pub fn try_ceil(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return self.try_contiguous_copy();
        }
        let out = math_map!(self, "ceil", |x| x.ceil())?;
        Ok(self.record_flat("ceil", out))
    }

    /// Rounds half to even, like `torch.round`.
    pub fn try_round(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return self.try_contiguous_copy();
        }
        let out = math_map!(self, "round", |x| x.round_even())?;
        Ok(self.record_flat("round", out))
    }

    pub fn try_trunc(&self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return self.try_contiguous_copy();
        }
        let out = math_map!(self, "trunc", |x| x.trunc())?;
        Ok(self.record_flat("trunc", out))
    }

    /// `atan2(self, other)`: the angle of the point `(other, self)`, in `(-pi, pi]`.
    pub fn try_atan2(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = float_operands("atan2", self, other)?;
        let out = float_zip!(&a, &b, "atan2", |y, x| y.atan2(x))?;
        let (ac, bc) = (a.clone(), b.clone());
        Ok(record("atan2", out, &[&a, &b], move |g, need| {
            // d/da = b / (a² + b²), d/db = -a / (a² + b²)
            let r = ac.try_square()?.try_add(&bc.try_square()?)?;
            let gr = g.try_div(&r)?;
            Ok(vec![
                if need[0] { Some(gr.try_mul(&bc)?.sum_to_shape(ac.shape())?) } else { None },
                if need[1] { Some(gr.try_mul(&ac)?.try_neg()?.sum_to_shape(bc.shape())?) } else { None },
            ])
        }))
    }

    /// `self - floor(self / other) * other`: the remainder with the divisor's sign (Python's
    /// `%`, `torch.remainder`). Integer division by zero is an error.
    pub fn try_remainder(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = promote_pair("remainder", self, other)?;
        if !a.dtype().is_float() {
            return integer::zip("remainder", IntBinary::Remainder, &a, &b);
        }
        let out = float_zip!(&a, &b, "remainder", |x, y| {
            let m = x % y;
            let zero = <T as tensorbrain_kernels::Float>::from_f64(0.0);
            if m != zero && ((y < zero) != (m < zero)) {
                m + y
            } else {
                m
            }
        })?;
        Ok(record_division_remainder("remainder", out, &a, &b, Tensor::try_floor_divide))
    }

    /// `self - trunc(self / other) * other`: the remainder with the dividend's sign (C's `fmod`,
    /// `torch.fmod`).
    pub fn try_fmod(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = promote_pair("fmod", self, other)?;
        if !a.dtype().is_float() {
            return integer::zip("fmod", IntBinary::Fmod, &a, &b);
        }
        let out = float_zip!(&a, &b, "fmod", |x, y| x % y)?;
        Ok(record_division_remainder("fmod", out, &a, &b, |a, b| a.try_div(b)?.try_trunc()))
    }

    /// `floor(self / other)` (`torch.floor_divide`, Python's `//`), computed as PyTorch does so
    /// that results agree where `self / other` rounds to an integer. Not differentiable (the
    /// gradient is zero).
    pub fn try_floor_divide(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = promote_pair("floor_divide", self, other)?;
        if !a.dtype().is_float() {
            return integer::zip("floor_divide", IntBinary::FloorDiv, &a, &b);
        }
        let out = float_zip!(&a, &b, "floor_divide", |x, y| {
            let x = x.to_f64();
            let y = y.to_f64();
            T::from_f64(floor_div_f64(x, y))
        })?;
        Ok(record_zero_grad("floor_divide", out, &a, &b))
    }

    /// `self / other` rounded toward zero (`torch.div(.., rounding_mode="trunc")`); integer
    /// tensors stay integral (division by zero is an error). Not differentiable.
    pub fn try_div_trunc(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = promote_pair("div_trunc", self, other)?;
        if !a.dtype().is_float() {
            return integer::zip("div_trunc", IntBinary::TruncDiv, &a, &b);
        }
        let out = crate::autograd::no_grad(|| a.try_div(&b)?.try_trunc())?;
        Ok(record_zero_grad("div_trunc", out, &a, &b))
    }

    /// `sqrt(self² + other²)` without overflow (`torch.hypot`).
    pub fn try_hypot(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = float_operands("hypot", self, other)?;
        let out = float_zip!(&a, &b, "hypot", |x, y| x.hypot(y))?;
        let (ac, bc) = (a.clone(), b.clone());
        Ok(record("hypot", out, &[&a, &b], move |g, need| {
            let h = ac.try_hypot(&bc)?;
            let gh = g.try_div(&h)?;
            Ok(vec![
                if need[0] { Some(gh.try_mul(&ac)?.sum_to_shape(ac.shape())?) } else { None },
                if need[1] { Some(gh.try_mul(&bc)?.sum_to_shape(bc.shape())?) } else { None },
            ])
        }))
    }

    /// `|self|` with the sign of `other` (the sign bit, so `-0.0` counts as negative), as
    /// `torch.copysign`. Integer inputs give f32.
    pub fn try_copysign(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = float_operands("copysign", self, other)?;
        let out = float_zip!(&a, &b, "copysign", |x, y| x.abs().copysign(y))?;
        let (ac, result, bc_shape) = (a.clone(), out.detach(), b.shape().to_vec());
        Ok(record("copysign", out, &[&a, &b], move |g, need| {
            // d/da = result / a (±1), 0 where a == 0; d/db = 0.
            let ga = if need[0] {
                let ratio = result.try_div(&ac)?;
                let zero = ac.try_eq(&ac.scalar_like(0.0)?)?;
                Some(g.try_mul(&ratio.try_masked_fill(&zero, 0.0)?)?.sum_to_shape(ac.shape())?)
            } else {
                None
            };
            let b_shape = bc_shape.clone();
            Ok(vec![ga, need[1].then(|| Tensor::zeros(&b_shape, g.dtype()))])
        }))
    }
}

/// Records a binary op whose gradient is zero (rounded quotients).
fn record_zero_grad(name: &'static str, out: Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    record(name, out, &[a, b], move |g, need| Ok(vec![need[0].then(|| Tensor::zeros(&sa, g.dtype())), need[1].then(|| Tensor::zeros(&sb, g.dtype()))]))
}

/// Both operands promoted to a common float dtype (integers compute in f32).
fn float_operands(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let (a, b) = promote_pair(op, a, b)?;
    Ok((a.to_float_input()?, b.to_float_input()?))
}

/// The backward of `a - q(a, b) * b` where `q` is the rounded quotient: `g` for `a`,
/// `-g * q(a, b)` for `b` (PyTorch's rule for `remainder` and `fmod`).
fn record_division_remainder(name: &'static str, out: Tensor, a: &Tensor, b: &Tensor, q: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Tensor {
    let (ac, bc) = (a.clone(), b.clone());
    record(name, out, &[a, b], move |g, need| {
        Ok(vec![
            if need[0] { Some(g.sum_to_shape(ac.shape())?) } else { None },
            if need[1] { Some(g.try_mul(&q(&ac.detach(), &bc.detach())?)?.try_neg()?.sum_to_shape(bc.shape())?) } else { None },
        ])
    })
}

/// PyTorch's `div_floor_floating`: floor division through `fmod`, so that `a // b` is exact
/// where the quotient is an integer.
fn floor_div_f64(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return a / b;
    }
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let floor = div.floor();
        if div - floor > 0.5 {
            floor + 1.0
        } else {
            floor
        }
    } else {
        0.0f64.copysign(a / b)
    }
}

panicking! {
    /// `exp(x) - 1` (`torch.expm1`).
    fn expm1 / try_expm1(&self) -> Tensor;
    /// `2 ** x` (`torch.exp2`).
    fn exp2 / try_exp2(&self) -> Tensor;
    /// Base-2 logarithm.
    fn log2 / try_log2(&self) -> Tensor;
    /// Base-10 logarithm.
    fn log10 / try_log10(&self) -> Tensor;
    /// Tangent.
    fn tan / try_tan(&self) -> Tensor;
    /// Arctangent.
    fn atan / try_atan(&self) -> Tensor;
    /// Arcsine (NaN outside [-1, 1]).
    fn asin / try_asin(&self) -> Tensor;
    /// Arccosine (NaN outside [-1, 1]).
    fn acos / try_acos(&self) -> Tensor;
    /// Hyperbolic sine.
    fn sinh / try_sinh(&self) -> Tensor;
    /// Hyperbolic cosine.
    fn cosh / try_cosh(&self) -> Tensor;
    /// -1, 0 or 1 (`torch.sign`; 0 at NaN).
    fn sign / try_sign(&self) -> Tensor;
    /// Rounds down.
    fn floor / try_floor(&self) -> Tensor;
    /// Rounds up.
    fn ceil / try_ceil(&self) -> Tensor;
    /// Rounds half to even (`torch.round`).
    fn round / try_round(&self) -> Tensor;
    /// Rounds toward zero.
    fn trunc / try_trunc(&self) -> Tensor;
    /// `atan2(self, other)` (`torch.atan2`).
    fn atan2 / try_atan2(&self, other: &Tensor) -> Tensor;
    /// Python's `%` (`torch.remainder`).
    fn remainder / try_remainder(&self, other: &Tensor) -> Tensor;
    /// C's `fmod` (`torch.fmod`).
    fn fmod / try_fmod(&self, other: &Tensor) -> Tensor;
    /// Python's `//` (`torch.floor_divide`).
    fn floor_divide / try_floor_divide(&self, other: &Tensor) -> Tensor;
    /// Division rounded toward zero (`torch.div(.., rounding_mode="trunc")`).
    fn div_trunc / try_div_trunc(&self, other: &Tensor) -> Tensor;
    /// `sqrt(self² + other²)` (`torch.hypot`).
    fn hypot / try_hypot(&self, other: &Tensor) -> Tensor;
    /// `|self|` with `other`'s sign (`torch.copysign`).
    fn copysign / try_copysign(&self, other: &Tensor) -> Tensor;
}
