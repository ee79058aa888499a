//! PyTorch's type promotion: the dtype an op on mixed operands computes in and returns.
//!
//! Dtypes fall into three categories, bool < integer < floating. Within a category the wider
//! type wins (`promote_types`); across operands, tensors with dims outrank 0-d tensors, which
//! outrank Rust numbers ([`Scalar`]), and a lower-ranked operand only changes the result when
//! it is of a higher category (`torch.result_type`). So `f32 + f64 -> f64`, `i64 + f32 -> f32`,
//! `[3] f16 + 0-d f64 -> f16`, `i32 tensor + 2 -> i32`, `i32 tensor + 2.5 -> f32`.

use crate::tensor::{DType, Error, Result, Tensor};

/// A Rust number mixed into a tensor op (`x.add_scalar(2)`, `x.mul_scalar(0.5)`), typed like a
/// Python scalar: an integer keeps an integer tensor integral, a float makes it floating
/// (f32, PyTorch's default dtype), a bool keeps a bool tensor bool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Scalar {
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as u8 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Scalar::Float(_))
    }

    /// The dtype this scalar counts as in promotion: PyTorch's default dtype of its category.
    fn category_dtype(self) -> DType {
        match self {
            Scalar::Bool(_) => DType::Bool,
            Scalar::Int(_) => DType::I64,
            Scalar::Float(_) => DType::F32,
        }
    }

    /// A 0-d tensor of `dtype` holding this value (integers convert exactly, wrapping into
    /// narrow types as PyTorch does).
    pub(crate) fn to_tensor(self, dtype: DType) -> Tensor {
        super::any_dispatch!(dtype, T => {
            use crate::tensor::Element;
            let v = match self {
                Scalar::Bool(b) => T::from_i64(b as i64),
                Scalar::Int(i) => T::from_i64(i),
                Scalar::Float(f) => T::from_f64(f),
            };
            Tensor::from_vec(vec![v], &[])
        })
    }
}

macro_rules! scalar_from {
    ($($t:ty => $variant:ident as $as:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(v: $t) -> Scalar {
                Scalar::$variant(v as $as)
            }
        }
    )*};
}

scalar_from!(f64 => Float as f64, f32 => Float as f64, i64 => Int as i64, i32 => Int as i64, i16 => Int as i64, i8 => Int as i64, u8 => Int as i64, u32 => Int as i64, isize => Int as i64, usize => Int as i64);

impl From<bool> for Scalar {
    fn from(v: bool) -> Scalar {
        Scalar::Bool(v)
    }
}

/// 0 for bool, 1 for integers, 2 for floats.
fn category(d: DType) -> u8 {
    if d.is_float() {
        2
    } else if d == DType::Bool {
        0
    } else {
        1
    }
}

/// The smallest dtype both `a` and `b` convert to without leaving their categories
/// (`torch.promote_types`).
pub fn promote_types(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    match (category(a), category(b)) {
        (0, _) => b,
        (_, 0) => a,
        (2, 2) => {
            // f16 and bf16 meet in f32; otherwise the wider float wins.
            let rank = |d: DType| match d {
                F16 | BF16 => 1,
                F32 => 2,
                _ => 3,
            };
            match rank(a).cmp(&rank(b)) {
                std::cmp::Ordering::Equal => F32,
                std::cmp::Ordering::Greater => a,
                std::cmp::Ordering::Less => b,
            }
        }
        (2, _) => a,
        (_, 2) => b,
        _ => {
            // Integers: u8 with a signed type needs a signed type that holds 255.
            let (u, s) = match (a, b) {
                (U8, s) | (s, U8) => (true, s),
                _ => (false, a),
            };
            if u {
                return if s == I8 { I16 } else { s };
            }
            if a.size_in_bytes() >= b.size_in_bytes() {
                a
            } else {
                b
            }
        }
    }
}

/// The dtype of an op over `tensors` and `scalars` (`torch.result_type`).
pub fn result_type(tensors: &[&Tensor], scalars: &[Scalar]) -> DType {
    let fold = |acc: Option<DType>, d: DType| Some(acc.map_or(d, |a| promote_types(a, d)));
    let mut dimmed = None;
    let mut zero_dim = None;
    for t in tensors {
        if t.rank() > 0 {
            dimmed = fold(dimmed, t.dtype());
        } else {
            zero_dim = fold(zero_dim, t.dtype());
        }
    }
    let wrapped = scalars.iter().fold(None, |acc, s| fold(acc, s.category_dtype()));
    combine(dimmed, combine(zero_dim, wrapped)).expect("result_type of no operands")
}

/// Combines a higher-priority result with a lower-priority one: the lower one only matters if
/// it is of a higher category (PyTorch's `combine_categories`).
fn combine(higher: Option<DType>, lower: Option<DType>) -> Option<DType> {
    match (higher, lower) {
        (None, l) => l,
        (h, None) => h,
        (Some(h), Some(l)) => Some(if category(l) > category(h) || h == DType::Bool { promote_types(h, l) } else { h }),
    }
}

/// Both operands converted to their result type (no copy for an operand that already has it;
/// the conversion is on the tape, so gradients flow back to each operand's own dtype).
pub(crate) fn promote_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch { op, lhs: a.device(), rhs: b.device() });
    }
    if a.dtype() == b.dtype() {
        return Ok((a.clone(), b.clone()));
    }
    let dt = result_type(&[a, b], &[]);
    Ok((a.try_to_dtype(dt)?, b.try_to_dtype(dt)?))
}

/// `x` converted to its result type with scalar `s`, and `s` as a 0-d tensor of that type.
pub(crate) fn promote_scalar(x: &Tensor, s: Scalar) -> Result<(Tensor, Tensor)> {
    let dt = result_type(&[x], &[s]);
    Ok((x.try_to_dtype(dt)?, s.to_tensor(dt)))
}

impl Tensor {
    /// This tensor as a float tensor: itself when it is one, else converted to f32 (PyTorch's
    /// default dtype), as float-only ops such as `exp` treat integer inputs.
    pub(crate) fn to_float_input(&self) -> Result<Tensor> {
        if self.dtype().is_float() {
            Ok(self.clone())
        } else {
            self.try_to_dtype(DType::F32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn promote_types_follows_pytorch() {
        let cases = [
            (F32, F64, F64),
            (F16, BF16, F32),
            (F16, F32, F32),
            (BF16, F64, F64),
            (I64, F16, F16),
            (U8, I8, I16),
            (U8, I16, I16),
            (U8, I64, I64),
            (I8, I32, I32),
            (Bool, U8, U8),
            (Bool, F16, F16),
            (I32, I64, I64),
        ];
        for (a, b, want) in cases {
            assert_eq!(promote_types(a, b), want, "{a} with {b}");
            assert_eq!(promote_types(b, a), want, "{b} with {a}");
        }
    }

    #[test]
    fn result_type_ranks_dims_above_zero_dim_above_scalars() {
        let t = |d: DType, shape: &[usize]| Tensor::zeros(shape, d);
        let (v_f16, v_i32, s_f64, s_i64, v_bool) = (t(F16, &[2]), t(I32, &[2]), t(F64, &[]), t(I64, &[]), t(Bool, &[2]));
        assert_eq!(result_type(&[&v_f16, &s_f64], &[]), F16);
        assert_eq!(result_type(&[&v_i32, &s_f64], &[]), F64);
        assert_eq!(result_type(&[&v_i32, &s_i64], &[]), I32);
        assert_eq!(result_type(&[&v_bool, &s_i64], &[]), I64);
        assert_eq!(result_type(&[&v_i32], &[Scalar::Int(3)]), I32);
        assert_eq!(result_type(&[&v_i32], &[Scalar::Float(0.5)]), F32);
        assert_eq!(result_type(&[&v_f16], &[Scalar::Float(0.5)]), F16);
        assert_eq!(result_type(&[&s_i64], &[Scalar::Float(0.5)]), F32);
        assert_eq!(result_type(&[&s_f64], &[Scalar::Int(1)]), F64);
        assert_eq!(result_type(&[&v_bool], &[Scalar::Bool(true)]), Bool);
        assert_eq!(result_type(&[&v_bool], &[Scalar::Int(1)]), I64);
    }
}
