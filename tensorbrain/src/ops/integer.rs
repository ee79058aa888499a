//! Elementwise arithmetic on integer and bool tensors, with PyTorch's semantics: `+ - *` wrap,
//! `//` and `%` follow Python (floor), `fmod` follows C (truncation), integer division by zero
//! is an error. Bool `+` is `or` and `*` is `and`; bool `-` is an error, as in PyTorch.
//! Nothing here records gradients: only floating-point tensors have them.

use tensorbrain_kernels::int::Int;
use tensorbrain_kernels::strided::{map_vec, zip_map_vec};

use super::int_dispatch;
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{DType, Error, Result, StorageElement, Tensor};

/// A binary op on integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntBinary {
    Add,
    Sub,
    Mul,
    Maximum,
    Minimum,
    /// Python's `//`.
    FloorDiv,
    /// C's `/`.
    TruncDiv,
    /// Python's `%` (`torch.remainder`).
    Remainder,
    /// C's `%` (`torch.fmod`).
    Fmod,
    Pow,
}

impl IntBinary {
    fn divides(self) -> bool {
        matches!(self, IntBinary::FloorDiv | IntBinary::TruncDiv | IntBinary::Remainder | IntBinary::Fmod)
    }
}

/// Applies `$f` to the broadcast operands `a` and `b` (of element type `T`) into a new tensor.
macro_rules! zip_with {
    ($a:expr, $b:expr, $shape:expr, $T:ty, $out:ty, |$x:ident, $y:ident| $body:expr) => {{
        let (a, b, shape): (&Tensor, &Tensor, &[usize]) = ($a, $b, $shape);
        let (la, lb) = (a.layout().broadcast_to(shape), b.layout().broadcast_to(shape));
        let (sa, sb) = (a.storage(), b.storage());
        let out: Vec<$out> = zip_map_vec(
            sa.cpu()?.as_slice::<$T>(),
            la.offset,
            &la.strides,
            sb.cpu()?.as_slice::<$T>(),
            lb.offset,
            &lb.strides,
            shape,
            |$x: $T, $y: $T| -> $out { $body },
        );
        Tensor::from_storage(<$out as StorageElement>::wrap(out), shape)
    }};
}

/// `op` on two tensors of one integer or bool dtype, with broadcasting.
pub(crate) fn zip(name: &'static str, op: IntBinary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    debug_assert_eq!(a.dtype(), b.dtype());
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    if a.dtype() == DType::Bool {
        return bool_zip(name, op, a, b, &shape);
    }
    int_dispatch!(a.dtype(), T => {
        if op.divides() && b.with_contiguous::<T, _>(|v| v.contains(&T::ZERO))? {
            return Err(Error::invalid(name, b.shape(), format!("integer division by zero ({} divisor holds a 0; PyTorch raises ZeroDivisionError)", a.dtype())));
        }
        Ok(match op {
            IntBinary::Add => zip_with!(a, b, &shape, T, T, |x, y| x.wadd(y)),
            IntBinary::Sub => zip_with!(a, b, &shape, T, T, |x, y| x.wsub(y)),
            IntBinary::Mul => zip_with!(a, b, &shape, T, T, |x, y| x.wmul(y)),
            IntBinary::Maximum => zip_with!(a, b, &shape, T, T, |x, y| x.max(y)),
            IntBinary::Minimum => zip_with!(a, b, &shape, T, T, |x, y| x.min(y)),
            IntBinary::FloorDiv => zip_with!(a, b, &shape, T, T, |x, y| x.floor_div(y)),
            IntBinary::TruncDiv => zip_with!(a, b, &shape, T, T, |x, y| x.trunc_div(y)),
            IntBinary::Remainder => zip_with!(a, b, &shape, T, T, |x, y| x.floor_rem(y)),
            IntBinary::Fmod => zip_with!(a, b, &shape, T, T, |x, y| x.trunc_rem(y)),
            IntBinary::Pow => zip_with!(a, b, &shape, T, T, |x, y| x.wpow(y)),
        })
    }, other => Err(Error::DType { op: name, got: other, expected: "an integer or bool dtype" }))
}

fn bool_zip(name: &'static str, op: IntBinary, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    Ok(match op {
        IntBinary::Add | IntBinary::Maximum => zip_with!(a, b, shape, bool, bool, |x, y| x | y),
        IntBinary::Mul | IntBinary::Minimum => zip_with!(a, b, shape, bool, bool, |x, y| x & y),
        IntBinary::Sub => {
            return Err(Error::invalid(
                name,
                a.shape(),
                "subtracting two bool tensors is not supported (as in PyTorch); use logical_xor, or convert to an integer dtype first",
            ))
        }
        _ => return Err(Error::DType { op: name, got: DType::Bool, expected: "a numeric dtype (bool tensors support +, *, maximum and minimum)" }),
    })
}

/// A unary op on integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntUnary {
    Neg,
    Abs,
    Sign,
}

/// `op` on an integer tensor (bool: `abs` and `sign` are the identity, `neg` is an error).
pub(crate) fn map(name: &'static str, op: IntUnary, x: &Tensor) -> Result<Tensor> {
    let l = x.layout();
    if x.dtype() == DType::Bool {
        return match op {
            IntUnary::Neg => Err(Error::invalid(name, x.shape(), "negating a bool tensor is not supported (as in PyTorch); use logical_not")),
            _ => x.try_contiguous_copy(),
        };
    }
    int_dispatch!(x.dtype(), T => {
        let s = x.storage();
        let src = s.cpu()?.as_slice::<T>();
        let out: Vec<T> = match op {
            IntUnary::Neg => map_vec(src, l.offset, &l.shape, &l.strides, |v: T| v.wneg()),
            IntUnary::Abs => map_vec(src, l.offset, &l.shape, &l.strides, |v: T| v.wabs()),
            IntUnary::Sign => map_vec(src, l.offset, &l.shape, &l.strides, |v: T| v.signum_int()),
        };
        Ok(Tensor::from_storage(T::wrap(out), &l.shape))
    }, other => Err(Error::DType { op: name, got: other, expected: "an integer or bool dtype" }))
}
