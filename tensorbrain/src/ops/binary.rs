//! Elementwise binary ops with NumPy broadcasting and PyTorch's type promotion, comparisons
//! (bool results), `where`, scalar forms and the `+ - * /` operators.
//!
//! Operands of different dtypes are first converted to their result type
//! ([`super::promote`]); float results run the float kernels here and record gradients,
//! integer and bool results run [`super::integer`].

use tensorbrain_kernels::strided::{zip3_map, zip_map};

use super::integer::{self, IntBinary};
use super::promote::{promote_pair, promote_scalar, Scalar};
use super::{any_dispatch, float_dispatch, float_map, ok, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{try_zeroed, DType, Error, Result, StorageElement, Tensor};

/// Checks that two operands can meet in one kernel: same dtype, same device.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch { op, lhs: a.device(), rhs: b.device() });
    }
    Ok(())
}

/// Broadcasts `a` and `b` and applies `|x: T, y: T| -> T` for float dtypes.
macro_rules! float_zip {
    ($a:expr, $b:expr, $op:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (a, b): (&Tensor, &Tensor) = ($a, $b);
        check_same($op, a, b)?;
        let shape = broadcast_shapes($op, a.shape(), b.shape())?;
        let (la, lb) = (a.layout().broadcast_to(&shape), b.layout().broadcast_to(&shape));
        if $crate::ops::on_device(a) { $crate::ops::device_binary($op, a, b, &shape) } else {
        float_dispatch!($op, a.dtype(), T => {
            #[allow(unused_imports)]
            use tensorbrain_kernels::Float as _;
            #[allow(unused_imports)]
            use num_traits::Float as _;
            let (sa, sb) = (a.storage(), b.storage());
            let (sa, sb) = (sa.cpu()?.as_slice::<T>(), sb.cpu()?.as_slice::<T>());
            let f = |$x: T, $y: T| -> T { $body };
            let out = if shape.as_slice() != a.shape() && shape.as_slice() != b.shape() {
                // Both operands broadcast, so the output is bigger than either, maybe
                // impossibly so ([N, 1] - [N] is [N, N]): allocate it fallibly.
                let mut out = $crate::tensor::try_zeroed::<T>($op, &shape)?;
                tensorbrain_kernels::strided::zip_map(sa, la.offset, &la.strides, sb, lb.offset, &lb.strides, &shape, &mut out, &f);
                out
            } else {
                tensorbrain_kernels::strided::zip_map_vec(sa, la.offset, &la.strides, sb, lb.offset, &lb.strides, &shape, &f)
            };
            Ok::<Tensor, Error>(Tensor::from_storage(T::wrap(out), &shape))
        })
        }
    }};
}

pub(crate) use float_zip;

/// Broadcasting comparison after promotion, giving a bool tensor.
/// An elementwise comparison.
#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn compare(op: &'static str, a: &Tensor, b: &Tensor, cmp: Cmp) -> Result<Tensor> {
    let (a, b) = promote_pair(op, a, b)?;
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    check_same(op, &a, &b)?;
    #[cfg(feature = "cuda")]
    if super::on_device(&a) {
        return crate::cuda::compare(op, &a, &b, &shape);
    }
    let (la, lb) = (a.layout().broadcast_to(&shape), b.layout().broadcast_to(&shape));
    let (sa, sb) = (a.storage(), b.storage());
    let mut out = try_zeroed::<bool>(op, &shape)?;
    any_dispatch!(a.dtype(), T => {
        let (x, y) = (sa.cpu()?.as_slice::<T>(), sb.cpu()?.as_slice::<T>());
        // One monomorphic loop per comparison (the operators, so NaN compares unequal to
        // everything, as in IEEE and PyTorch): an `Ordering` through a function pointer per
        // element made `x > 0` on a million floats 15x slower than `x * y`.
        macro_rules! run {
            ($f:expr) => {
                zip_map(x, la.offset, &la.strides, y, lb.offset, &lb.strides, &shape, &mut out, $f)
            };
        }
        match cmp {
            Cmp::Eq => run!(|x: T, y: T| x == y),
            Cmp::Ne => run!(|x: T, y: T| x != y),
            Cmp::Lt => run!(|x: T, y: T| x < y),
            Cmp::Le => run!(|x: T, y: T| x <= y),
            Cmp::Gt => run!(|x: T, y: T| x > y),
            Cmp::Ge => run!(|x: T, y: T| x >= y),
        }
    });
    Ok(Tensor::from_storage(bool::wrap(out), &shape))
}

/// A mask argument (bool, or the 0/1 u8 masks of older code) as a bool tensor.
pub(crate) fn bool_mask(op: &'static str, mask: &Tensor) -> Result<Tensor> {
    match mask.dtype() {
        DType::Bool => Ok(mask.clone()),
        DType::U8 => mask.try_to_dtype(DType::Bool),
        other => Err(Error::DType { op, got: other, expected: "a bool mask (as comparisons return), or a 0/1 u8 mask" }),
    }
}

/// PyTorch refuses `-` with a bool operand (a mask is inverted with `logical_not`).
fn no_bool_subtraction(op: &'static str, has_bool: bool) -> Result<()> {
    if has_bool {
        return Err(Error::Msg(format!(
            "{op}: subtraction with a bool tensor is not supported (as in PyTorch); to invert a mask use logical_not, or convert to a numeric dtype first"
        )));
    }
    Ok(())
}

/// Runs a binary op on operands promoted to their result type: `float` for float results,
/// the integer kernel `int_op` otherwise.
fn arith(op: &'static str, a: &Tensor, b: &Tensor, int_op: IntBinary, float: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (a, b) = promote_pair(op, a, b)?;
    if a.dtype().is_float() {
        float(&a, &b)
    } else {
        integer::zip(op, int_op, &a, &b)
    }
}

impl Tensor {
    /// Reduces a broadcast gradient back to `shape` by summing the broadcast dims.
    pub(crate) fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let extra = self.rank() - shape.len();
        let mut dims: Vec<isize> = (0..extra as isize).collect();
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 && self.shape()[extra + i] != 1 {
                dims.push((extra + i) as isize);
            }
        }
        self.try_sum(&dims, true)?.try_reshape(&shape.iter().map(|&d| d as isize).collect::<Vec<_>>())
    }

    /// Elementwise `self + rhs` with broadcasting and type promotion.
    pub fn try_add(&self, rhs: &Tensor) -> Result<Tensor> {
        arith("add", self, rhs, IntBinary::Add, Tensor::float_add)
    }

    /// `self - rhs`; like PyTorch, subtraction with a bool operand is an error.
    pub fn try_sub(&self, rhs: &Tensor) -> Result<Tensor> {
        no_bool_subtraction("sub", self.dtype() == DType::Bool || rhs.dtype() == DType::Bool)?;
        arith("sub", self, rhs, IntBinary::Sub, Tensor::float_sub)
    }

    pub fn try_mul(&self, rhs: &Tensor) -> Result<Tensor> {
        arith("mul", self, rhs, IntBinary::Mul, Tensor::float_mul)
    }

    /// True division: integer and bool operands divide as f32 (PyTorch's default dtype).
    pub fn try_div(&self, rhs: &Tensor) -> Result<Tensor> {
        let (a, b) = promote_pair("div", self, rhs)?;
        let (a, b) = (a.to_float_input()?, b.to_float_input()?);
        a.float_div(&b)
    }

    /// `self ** exponent` elementwise, with broadcasting. Integers to negative integer powers
    /// are an error, as in PyTorch.
    pub fn try_pow(&self, exponent: &Tensor) -> Result<Tensor> {
        arith("pow", self, exponent, IntBinary::Pow, Tensor::float_pow)
    }

    /// Elementwise maximum; NaN propagates, and on ties the gradient is split evenly, as in
    /// PyTorch.
    pub fn try_maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        arith("maximum", self, rhs, IntBinary::Maximum, Tensor::float_maximum)
    }

    /// Elementwise minimum; see [`Tensor::try_maximum`].
    pub fn try_minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        arith("minimum", self, rhs, IntBinary::Minimum, Tensor::float_minimum)
    }

    fn float_add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "add", |x, y| x + y)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record("add", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(g.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    fn float_sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "sub", |x, y| x - y)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record("sub", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(g.try_neg()?.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    fn float_mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "mul", |x, y| x * y)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(record("mul", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.try_mul(&b)?.sum_to_shape(a.shape())?) } else { None },
                if need[1] { Some(g.try_mul(&a)?.sum_to_shape(b.shape())?) } else { None },
            ])
        }))
    }

    fn float_div(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "div", |x, y| x / y)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(record("div", out, &[self, rhs], move |g, need| {
            let ga = g.try_div(&b)?;
            Ok(vec![
                if need[0] { Some(ga.sum_to_shape(a.shape())?) } else { None },
                // d(a/b)/db = -a/b² = -(g/b) * (a/b)
                if need[1] { Some(ga.try_mul(&a.try_div(&b)?)?.try_neg()?.sum_to_shape(b.shape())?) } else { None },
            ])
        }))
    }

    fn float_pow(&self, exponent: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, exponent, "pow", |x, y| x.powf(y))?;
        let (a, b, saved) = (self.clone(), exponent.clone(), out.detach());
        Ok(record("pow", out, &[self, exponent], move |g, need| {
            let ga = if need[0] {
                // b * a^(b-1); where b == 0 the term is 0 even at a == 0 (PyTorch's rule).
                let bm1 = b.try_add_scalar(-1.0)?;
                let d = b.try_mul(&a.try_pow(&bm1)?)?;
                let zero = b.try_eq(&b.try_zeros_like()?)?;
                let d = Tensor::try_where_cond(&zero, &d.try_zeros_like()?, &d)?;
                Some(g.try_mul(&d)?.sum_to_shape(a.shape())?)
            } else {
                None
            };
            let gb = if need[1] {
                // a^b * ln(a); PyTorch defines it as 0 where a == 0 and b >= 0.
                let y = if is_grad_enabled() { a.try_pow(&b)? } else { saved.clone() };
                let d = y.try_mul(&a.try_log()?)?;
                let a0 = a.try_eq(&a.try_zeros_like()?)?.try_logical_and(&b.try_ge(&b.try_zeros_like()?)?)?;
                let d = Tensor::try_where_cond(&a0, &d.try_zeros_like()?, &d)?;
                Some(g.try_mul(&d)?.sum_to_shape(b.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    fn float_maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "maximum", |x, y| if x.is_nan() || y.is_nan() { T::nan() } else if x >= y { x } else { y })?;
        self.record_select("maximum", rhs, out, |a, b| a.try_gt(b))
    }

    fn float_minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "minimum", |x, y| if x.is_nan() || y.is_nan() { T::nan() } else if x <= y { x } else { y })?;
        self.record_select("minimum", rhs, out, |a, b| a.try_lt(b))
    }

    /// Backward of maximum/minimum: the gradient goes to the selected side, halved on ties.
    fn record_select(&self, name: &'static str, rhs: &Tensor, out: Tensor, wins: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let (a, b) = (self.clone(), rhs.clone());
        Ok(record(name, out, &[self, rhs], move |g, need| {
            let dtype = g.dtype();
            let a_wins = wins(&a, &b)?.try_to_dtype(dtype)?;
            let tie = a.try_eq(&b)?.try_to_dtype(dtype)?.try_mul_scalar(0.5)?;
            let wa = a_wins.try_add(&tie)?;
            let ga = if need[0] { Some(g.try_mul(&wa)?.sum_to_shape(a.shape())?) } else { None };
            let gb = if need[1] {
                let wb = wa.try_neg()?.try_add_scalar(1.0)?;
                Some(g.try_mul(&wb)?.sum_to_shape(b.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    pub fn try_eq(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("eq", self, rhs, Cmp::Eq)
    }
    pub fn try_ne(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("ne", self, rhs, Cmp::Ne)
    }
    pub fn try_lt(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("lt", self, rhs, Cmp::Lt)
    }
    pub fn try_le(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("le", self, rhs, Cmp::Le)
    }
    pub fn try_gt(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("gt", self, rhs, Cmp::Gt)
    }
    pub fn try_ge(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("ge", self, rhs, Cmp::Ge)
    }

    /// `cond ? on_true : on_false` elementwise, broadcasting all three (`torch.where`).
    /// `cond` is a bool mask (as comparisons return; 0/1 u8 masks are accepted too);
    /// `on_true` and `on_false` are promoted to their result type.
    #[track_caller]
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
        ok(Tensor::try_where_cond(cond, on_true, on_false))
    }

    pub fn try_where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        const OP: &str = "where_cond";
        let cond = bool_mask(OP, cond)?;
        let (on_true, on_false) = promote_pair(OP, on_true, on_false)?;
        let shape = broadcast_shapes(OP, cond.shape(), on_true.shape())?;
        let shape = broadcast_shapes(OP, &shape, on_false.shape())?;
        check_same(OP, &on_true, &on_false)?;
        if cond.device() != on_true.device() {
            return Err(Error::DeviceMismatch { op: OP, lhs: cond.device(), rhs: on_true.device() });
        }
        let (lc, la, lb) = (cond.layout().broadcast_to(&shape), on_true.layout().broadcast_to(&shape), on_false.layout().broadcast_to(&shape));
        #[cfg(feature = "cuda")]
        let on_gpu = super::on_device(&on_true).then(|| crate::cuda::select(&cond, &on_true, &on_false, &shape));
        #[cfg(not(feature = "cuda"))]
        let on_gpu: Option<Result<Tensor>> = None;
        let out = if let Some(out) = on_gpu { out? } else { any_dispatch!(on_true.dtype(), T => {
            let (sc, sa, sb) = (cond.storage(), on_true.storage(), on_false.storage());
            let mut out = try_zeroed::<T>(OP, &shape)?;
            zip3_map(
                (sc.cpu()?.as_slice::<bool>(), lc.offset, &lc.strides),
                (sa.cpu()?.as_slice::<T>(), la.offset, &la.strides),
                (sb.cpu()?.as_slice::<T>(), lb.offset, &lb.strides),
                &shape, &mut out, |c, a, b| if c { a } else { b });
            Tensor::from_storage(T::wrap(out), &shape)
        }) };
        let (c, sa, sb) = (cond.clone(), on_true.shape().to_vec(), on_false.shape().to_vec());
        Ok(record("where_cond", out, &[&on_true, &on_false], move |g, need| {
            let zero = g.try_zeros_like()?;
            Ok(vec![
                if need[0] { Some(Tensor::try_where_cond(&c, g, &zero)?.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(Tensor::try_where_cond(&c, &zero, g)?.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    /// `cond ? on_true : value` with a number for the false branch (`torch.where(c, x, v)`).
    #[track_caller]
    pub fn where_scalar(cond: &Tensor, on_true: &Tensor, value: impl Into<Scalar>) -> Tensor {
        ok(Tensor::try_where_scalar(cond, on_true, value))
    }

    pub fn try_where_scalar(cond: &Tensor, on_true: &Tensor, value: impl Into<Scalar>) -> Result<Tensor> {
        let (x, v) = promote_scalar(on_true, value.into())?;
        Tensor::try_where_cond(cond, &x, &v)
    }

    /// `self + value`. A Rust integer keeps an integer tensor integral, a float gives a float
    /// tensor (PyTorch's scalar promotion: `i64 tensor + 0.5` is f32, `f16 tensor + 2` f16).
    pub fn try_add_scalar(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        let value = value.into();
        if !self.dtype().is_float() {
            return self.scalar_arith("add_scalar", value, IntBinary::Add, false, Tensor::try_add_scalar);
        }
        let v = value.to_f64();
        let out = float_map!(self, "add_scalar", device(|x| super::device_unary_pq("affine", x, 1.0, v)), |x| x + T::from_f64(v))?;
        Ok(record("add_scalar", out, &[self], |g, _| Ok(vec![Some(g.clone())])))
    }

    pub fn try_mul_scalar(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        let value = value.into();
        if !self.dtype().is_float() {
            return self.scalar_arith("mul_scalar", value, IntBinary::Mul, false, Tensor::try_mul_scalar);
        }
        let v = value.to_f64();
        let out = float_map!(self, "mul_scalar", device(|x| super::device_unary_pq("affine", x, v, 0.0)), |x| x * T::from_f64(v))?;
        Ok(record("mul_scalar", out, &[self], move |g, _| Ok(vec![Some(g.try_mul_scalar(v)?)])))
    }

    /// `self / value` (true division: an integer tensor gives f32).
    pub fn try_div_scalar(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        let value = value.into();
        let (x, _) = promote_scalar(self, value)?;
        x.to_float_input()?.try_mul_scalar(1.0 / value.to_f64())
    }

    pub fn try_sub_scalar(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        let value = value.into();
        no_bool_subtraction("sub_scalar", self.dtype() == DType::Bool || matches!(value, Scalar::Bool(_)))?;
        if !self.dtype().is_float() {
            return self.scalar_arith("sub_scalar", value, IntBinary::Sub, false, Tensor::try_sub_scalar);
        }
        self.try_add_scalar(-value.to_f64())
    }

    /// `value - self`.
    pub fn try_rsub_scalar(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        let value = value.into();
        no_bool_subtraction("rsub_scalar", self.dtype() == DType::Bool || matches!(value, Scalar::Bool(_)))?;
        if !self.dtype().is_float() {
            return self.scalar_arith("rsub_scalar", value, IntBinary::Sub, true, Tensor::try_rsub_scalar);
        }
        self.try_neg()?.try_add_scalar(value.to_f64())
    }

    /// An op between a non-float tensor and a scalar: integer arithmetic when the result type
    /// is an integer (or bool), else `float_op` on the converted tensor. `swap` puts the scalar
    /// on the left.
    fn scalar_arith(&self, op: &'static str, value: Scalar, int_op: IntBinary, swap: bool, float_op: fn(&Tensor, Scalar) -> Result<Tensor>) -> Result<Tensor> {
        let (x, v) = promote_scalar(self, value)?;
        if x.dtype().is_float() {
            return float_op(&x, value);
        }
        if swap {
            integer::zip(op, int_op, &v, &x)
        } else {
            integer::zip(op, int_op, &x, &v)
        }
    }

    /// `self ** exponent` for a scalar exponent (an integer tensor to an integer power stays
    /// integral; a negative integer power of one is an error, as in PyTorch).
    pub fn try_pow_scalar(&self, exponent: impl Into<Scalar>) -> Result<Tensor> {
        let value = exponent.into();
        if !self.dtype().is_float() {
            if matches!(value, Scalar::Int(e) if e < 0) {
                return Err(Error::invalid("pow_scalar", self.shape(), format!("integers to negative integer powers are not allowed ({} tensor to the power {value:?}); convert to a float dtype first", self.dtype())));
            }
            return self.scalar_arith("pow_scalar", value, IntBinary::Pow, false, Tensor::try_pow_scalar);
        }
        let exponent = value.to_f64();
        let out = if exponent == 2.0 {
            float_map!(self, "pow_scalar", device(|x| super::device_unary_pq("pow_scalar", x, 2.0, 0.0)), |x| x * x)?
        } else {
            float_map!(self, "pow_scalar", device(|x| super::device_unary_pq("pow_scalar", x, exponent, 0.0)), |x| x.powf(T::from_f64(exponent)))?
        };
        let x = self.clone();
        Ok(record("pow_scalar", out, &[self], move |g, _| {
            if exponent == 0.0 {
                return Ok(vec![Some(g.try_zeros_like()?)]);
            }
            let d = x.try_pow_scalar(exponent - 1.0)?.try_mul_scalar(exponent)?;
            Ok(vec![Some(g.try_mul(&d)?)])
        }))
    }

    /// A 0-d tensor of this tensor's (float) dtype, for mixing with Rust numbers.
    pub(crate) fn scalar_like(&self, value: f64) -> Result<Tensor> {
        let s = float_dispatch!("scalar", self.dtype(), T => Tensor::from_vec(vec![<T as tensorbrain_kernels::Float>::from_f64(value)], &[]));
        s.try_to_device(self.device())
    }
}

panicking! {
    /// Elementwise `self + rhs` with broadcasting.
    fn add / try_add(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `self - rhs` with broadcasting.
    fn sub / try_sub(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `self * rhs` with broadcasting.
    fn mul / try_mul(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `self / rhs` with broadcasting.
    fn div / try_div(&self, rhs: &Tensor) -> Tensor;
    /// Elementwise `self ** exponent` with broadcasting.
    fn pow / try_pow(&self, exponent: &Tensor) -> Tensor;
    fn maximum / try_maximum(&self, rhs: &Tensor) -> Tensor;
    fn minimum / try_minimum(&self, rhs: &Tensor) -> Tensor;
    /// `self == rhs` as a bool tensor (operands promoted to a common dtype).
    fn eq / try_eq(&self, rhs: &Tensor) -> Tensor;
    fn ne / try_ne(&self, rhs: &Tensor) -> Tensor;
    fn lt / try_lt(&self, rhs: &Tensor) -> Tensor;
    fn le / try_le(&self, rhs: &Tensor) -> Tensor;
    fn gt / try_gt(&self, rhs: &Tensor) -> Tensor;
    fn ge / try_ge(&self, rhs: &Tensor) -> Tensor;
    /// `self + value` (an integer keeps an integer tensor integral, a float makes it float).
    fn add_scalar / try_add_scalar(&self, value: impl Into<Scalar>) -> Tensor;
    /// `self - value`.
    fn sub_scalar / try_sub_scalar(&self, value: impl Into<Scalar>) -> Tensor;
    /// `value - self`.
    fn rsub_scalar / try_rsub_scalar(&self, value: impl Into<Scalar>) -> Tensor;
    /// `self * value`.
    fn mul_scalar / try_mul_scalar(&self, value: impl Into<Scalar>) -> Tensor;
    /// `self / value` (true division).
    fn div_scalar / try_div_scalar(&self, value: impl Into<Scalar>) -> Tensor;
    /// `self ** exponent`.
    fn pow_scalar / try_pow_scalar(&self, exponent: impl Into<Scalar>) -> Tensor;
}

// Operators: `&a + &b`, `a * 2.0`, `-&a`, ... on owned and borrowed tensors.
macro_rules! operator {
    ($trait:ident, $method:ident, $tensor_op:ident, $scalar_op:ident) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.$tensor_op(rhs)
            }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                (&self).$tensor_op(&rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                (&self).$tensor_op(rhs)
            }
        }
        impl std::ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.$tensor_op(&rhs)
            }
        }
        impl std::ops::$trait<f64> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor {
                self.$scalar_op(rhs)
            }
        }
        impl std::ops::$trait<f64> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor {
                (&self).$scalar_op(rhs)
            }
        }
    };
}

operator!(Add, add, add, add_scalar);
operator!(Sub, sub, sub, sub_scalar);
operator!(Mul, mul, mul, mul_scalar);
operator!(Div, div, div, div_scalar);

impl std::ops::Mul<&Tensor> for f64 {
    type Output = Tensor;
    #[track_caller]
    fn mul(self, rhs: &Tensor) -> Tensor {
        rhs.mul_scalar(self)
    }
}

impl std::ops::Add<&Tensor> for f64 {
    type Output = Tensor;
    #[track_caller]
    fn add(self, rhs: &Tensor) -> Tensor {
        rhs.add_scalar(self)
    }
}

impl std::ops::Sub<&Tensor> for f64 {
    type Output = Tensor;
    #[track_caller]
    fn sub(self, rhs: &Tensor) -> Tensor {
        rhs.rsub_scalar(self)
    }
}

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        self.neg()
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        (&self).neg()
    }
}
