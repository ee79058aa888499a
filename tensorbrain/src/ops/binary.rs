//! Elementwise binary ops with NumPy broadcasting, comparisons, `where`, scalar forms and the
//! `+ - * /` operators.

use tensorbrain_kernels::strided::{zip3_map, zip_map, zip_map_vec};

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
        float_dispatch!($op, a.dtype(), T => {
            #[allow(unused_imports)]
            use tensorbrain_kernels::Float as _;
            #[allow(unused_imports)]
            use num_traits::Float as _;
            let (sa, sb) = (a.storage(), b.storage());
            let (sa, sb) = (sa.cpu().as_slice::<T>(), sb.cpu().as_slice::<T>());
            let f = |$x: T, $y: T| -> T { $body };
            let out = if shape.as_slice() != a.shape() && shape.as_slice() != b.shape() {
                // Both operands broadcast, so the output is bigger than either, maybe
                // impossibly so ([N, 1] - [N] is [N, N]): allocate it fallibly.
                let mut out = try_zeroed::<T>($op, &shape)?;
                zip_map(sa, la.offset, &la.strides, sb, lb.offset, &lb.strides, &shape, &mut out, &f);
                out
            } else {
                zip_map_vec(sa, la.offset, &la.strides, sb, lb.offset, &lb.strides, &shape, &f)
            };
            Ok::<Tensor, Error>(Tensor::from_storage(T::wrap(out), &shape))
        })
    }};
}

/// Broadcasting comparison of any dtype, giving a u8 mask.
fn compare(op: &'static str, a: &Tensor, b: &Tensor, f: fn(std::cmp::Ordering) -> bool) -> Result<Tensor> {
    check_same(op, a, b)?;
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let (la, lb) = (a.layout().broadcast_to(&shape), b.layout().broadcast_to(&shape));
    let (sa, sb) = (a.storage(), b.storage());
    let mut out = try_zeroed::<u8>(op, &shape)?;
    any_dispatch!(a.dtype(), T => {
        zip_map(sa.cpu().as_slice::<T>(), la.offset, &la.strides, sb.cpu().as_slice::<T>(), lb.offset, &lb.strides, &shape, &mut out,
            // NaN compares unequal to everything, as in IEEE and PyTorch.
            |x: T, y: T| x.partial_cmp(&y).map_or(op == "ne", f) as u8)
    });
    Ok(Tensor::from_storage(u8::wrap(out), &shape))
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

    pub fn try_add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "add", |x, y| x + y)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record("add", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(g.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    pub fn try_sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "sub", |x, y| x - y)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record("sub", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(g.try_neg()?.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    pub fn try_mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "mul", |x, y| x * y)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(record("mul", out, &[self, rhs], move |g, need| {
            Ok(vec![
                if need[0] { Some(g.try_mul(&b)?.sum_to_shape(a.shape())?) } else { None },
                if need[1] { Some(g.try_mul(&a)?.sum_to_shape(b.shape())?) } else { None },
            ])
        }))
    }

    pub fn try_div(&self, rhs: &Tensor) -> Result<Tensor> {
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

    /// `self ** exponent` elementwise, with broadcasting.
    pub fn try_pow(&self, exponent: &Tensor) -> Result<Tensor> {
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
                let a0 = a.try_eq(&a.try_zeros_like()?)?.try_mul_u8(&b.try_ge(&b.try_zeros_like()?)?)?;
                let d = Tensor::try_where_cond(&a0, &d.try_zeros_like()?, &d)?;
                Some(g.try_mul(&d)?.sum_to_shape(b.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// Elementwise maximum; on ties the gradient is split evenly, as in PyTorch.
    pub fn try_maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = float_zip!(self, rhs, "maximum", |x, y| if x.is_nan() || y.is_nan() { T::nan() } else if x >= y { x } else { y })?;
        self.record_select("maximum", rhs, out, |a, b| a.try_gt(b))
    }

    /// Elementwise minimum; on ties the gradient is split evenly, as in PyTorch.
    pub fn try_minimum(&self, rhs: &Tensor) -> Result<Tensor> {
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

    /// Logical and of two u8 masks.
    fn try_mul_u8(&self, rhs: &Tensor) -> Result<Tensor> {
        let shape = broadcast_shapes("logical_and", self.shape(), rhs.shape())?;
        let (la, lb) = (self.layout().broadcast_to(&shape), rhs.layout().broadcast_to(&shape));
        let (sa, sb) = (self.storage(), rhs.storage());
        let mut out = try_zeroed::<u8>("logical_and", &shape)?;
        zip_map(sa.cpu().as_slice::<u8>(), la.offset, &la.strides, sb.cpu().as_slice::<u8>(), lb.offset, &lb.strides, &shape, &mut out, |x, y| (x != 0 && y != 0) as u8);
        Ok(Tensor::from_storage(u8::wrap(out), &shape))
    }

    pub fn try_eq(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("eq", self, rhs, |o| o.is_eq())
    }
    pub fn try_ne(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("ne", self, rhs, |o| o.is_ne())
    }
    pub fn try_lt(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("lt", self, rhs, |o| o.is_lt())
    }
    pub fn try_le(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("le", self, rhs, |o| o.is_le())
    }
    pub fn try_gt(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("gt", self, rhs, |o| o.is_gt())
    }
    pub fn try_ge(&self, rhs: &Tensor) -> Result<Tensor> {
        compare("ge", self, rhs, |o| o.is_ge())
    }

    /// `cond ? on_true : on_false` elementwise, broadcasting all three (`torch.where`).
    /// `cond` is a u8 mask (as comparisons return).
    #[track_caller]
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
        ok(Tensor::try_where_cond(cond, on_true, on_false))
    }

    pub fn try_where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        const OP: &str = "where_cond";
        if cond.dtype() != DType::U8 {
            return Err(Error::DType { op: OP, got: cond.dtype(), expected: "u8 (a mask from a comparison)" });
        }
        check_same(OP, on_true, on_false)?;
        let shape = broadcast_shapes(OP, cond.shape(), on_true.shape())?;
        let shape = broadcast_shapes(OP, &shape, on_false.shape())?;
        let (lc, la, lb) = (cond.layout().broadcast_to(&shape), on_true.layout().broadcast_to(&shape), on_false.layout().broadcast_to(&shape));
        let out = any_dispatch!(on_true.dtype(), T => {
            let (sc, sa, sb) = (cond.storage(), on_true.storage(), on_false.storage());
            let mut out = try_zeroed::<T>(OP, &shape)?;
            zip3_map(
                (sc.cpu().as_slice::<u8>(), lc.offset, &lc.strides),
                (sa.cpu().as_slice::<T>(), la.offset, &la.strides),
                (sb.cpu().as_slice::<T>(), lb.offset, &lb.strides),
                &shape, &mut out, |c, a, b| if c != 0 { a } else { b });
            Tensor::from_storage(T::wrap(out), &shape)
        });
        let (c, sa, sb) = (cond.clone(), on_true.shape().to_vec(), on_false.shape().to_vec());
        Ok(record("where_cond", out, &[on_true, on_false], move |g, need| {
            let zero = g.try_zeros_like()?;
            Ok(vec![
                if need[0] { Some(Tensor::try_where_cond(&c, g, &zero)?.sum_to_shape(&sa)?) } else { None },
                if need[1] { Some(Tensor::try_where_cond(&c, &zero, g)?.sum_to_shape(&sb)?) } else { None },
            ])
        }))
    }

    pub fn try_add_scalar(&self, value: f64) -> Result<Tensor> {
        let out = float_map!(self, "add_scalar", |x| x + T::from_f64(value))?;
        Ok(record("add_scalar", out, &[self], |g, _| Ok(vec![Some(g.clone())])))
    }

    pub fn try_mul_scalar(&self, value: f64) -> Result<Tensor> {
        let out = float_map!(self, "mul_scalar", |x| x * T::from_f64(value))?;
        Ok(record("mul_scalar", out, &[self], move |g, _| Ok(vec![Some(g.try_mul_scalar(value)?)])))
    }

    pub fn try_div_scalar(&self, value: f64) -> Result<Tensor> {
        self.try_mul_scalar(1.0 / value)
    }

    pub fn try_sub_scalar(&self, value: f64) -> Result<Tensor> {
        self.try_add_scalar(-value)
    }

    /// `value - self`.
    pub fn try_rsub_scalar(&self, value: f64) -> Result<Tensor> {
        self.try_neg()?.try_add_scalar(value)
    }

    /// `self ** exponent` for a scalar exponent.
    pub fn try_pow_scalar(&self, exponent: f64) -> Result<Tensor> {
        let out = if exponent == 2.0 {
            float_map!(self, "pow_scalar", |x| x * x)?
        } else {
            float_map!(self, "pow_scalar", |x| x.powf(T::from_f64(exponent)))?
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
        float_dispatch!("scalar", self.dtype(), T => Ok(Tensor::from_vec(vec![<T as tensorbrain_kernels::Float>::from_f64(value)], &[])))
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
    /// `self == rhs` as a u8 mask.
    fn eq / try_eq(&self, rhs: &Tensor) -> Tensor;
    fn ne / try_ne(&self, rhs: &Tensor) -> Tensor;
    fn lt / try_lt(&self, rhs: &Tensor) -> Tensor;
    fn le / try_le(&self, rhs: &Tensor) -> Tensor;
    fn gt / try_gt(&self, rhs: &Tensor) -> Tensor;
    fn ge / try_ge(&self, rhs: &Tensor) -> Tensor;
    fn add_scalar / try_add_scalar(&self, value: f64) -> Tensor;
    fn sub_scalar / try_sub_scalar(&self, value: f64) -> Tensor;
    fn rsub_scalar / try_rsub_scalar(&self, value: f64) -> Tensor;
    fn mul_scalar / try_mul_scalar(&self, value: f64) -> Tensor;
    fn div_scalar / try_div_scalar(&self, value: f64) -> Tensor;
    fn pow_scalar / try_pow_scalar(&self, exponent: f64) -> Tensor;
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
