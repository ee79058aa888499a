//! Tensor operations: the public API on [`Tensor`] with its forward dispatch and backward rules.
//!
//! Each file holds one op family. Every fallible op has a `try_` form returning [`Result`] and
//! a plain form that panics with the same message (pointing at the caller), like PyTorch raising
//! an exception. Forward code dispatches on dtype once and calls a slice kernel from
//! `tensorbrain-kernels`; backward rules are written with tensor ops so they can be
//! differentiated again.

pub(crate) mod activation;
pub mod attention;
pub(crate) mod binary;
pub(crate) mod cast;
pub(crate) mod conv;
pub(crate) mod creation;
pub(crate) mod device;
pub(crate) mod einsum;
pub(crate) mod index;
pub(crate) mod inplace;
pub(crate) mod integer;
pub(crate) mod logical;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod movement;
pub(crate) mod nn;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod products;
pub mod promote;
pub(crate) mod reduce;
pub(crate) mod remap;
pub(crate) mod scan;
pub(crate) mod scatter;
pub(crate) mod shape;
pub(crate) mod sort;
pub(crate) mod unary;

pub use conv::{Conv1dOptions, Conv2dOptions, ConvOptions, Padding};
pub use creation::{manual_seed, with_default_generator, Generator};
pub use pool::{AvgPoolOptions, Interpolation, MaxPoolOptions};
pub use remap::PadMode;
pub use scatter::Reduce as ScatterReduce;

use crate::tensor::Result;

/// Whether `t` lives on a GPU, so an op must take the device path (`crate::cuda`) rather than
/// its CPU kernel. Always false in a build without the `cuda` feature.
#[inline]
pub(crate) fn on_device(t: &crate::Tensor) -> bool {
    cfg!(feature = "cuda") && t.device() != crate::tensor::Device::Cpu
}

/// The device form of a unary elementwise op named `op` (see `crate::cuda::unary`).
pub(crate) fn device_unary(op: &'static str, x: &crate::Tensor) -> Result<crate::Tensor> {
    #[cfg(feature = "cuda")]
    return crate::cuda::unary(op, x);
    #[cfg(not(feature = "cuda"))]
    unreachable!("internal: {op} took the device path in a build without CUDA ({})", x.device())
}

/// The device form of a binary elementwise op over the broadcast `shape`.
pub(crate) fn device_binary(op: &'static str, a: &crate::Tensor, b: &crate::Tensor, shape: &[usize]) -> Result<crate::Tensor> {
    #[cfg(feature = "cuda")]
    return crate::cuda::binary(op, a, b, shape);
    #[cfg(not(feature = "cuda"))]
    unreachable!("internal: {op} took the device path in a build without CUDA ({}, {}, {shape:?})", a.device(), b.device())
}

/// The device form of a unary op with two scalar parameters (see `crate::cuda::unary_pq`).
pub(crate) fn device_unary_pq(kernel: &'static str, x: &crate::Tensor, p: f64, q: f64) -> Result<crate::Tensor> {
    #[cfg(feature = "cuda")]
    return crate::cuda::unary_pq(kernel, x, p, q);
    #[cfg(not(feature = "cuda"))]
    unreachable!("internal: {kernel}({p}, {q}) took the device path in a build without CUDA ({})", x.device())
}

/// Unwraps an op result, panicking with the op's own message at the caller's line.
#[track_caller]
#[inline]
pub(crate) fn ok<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `$body` with `$T` bound to the Rust type of a float dtype; other dtypes are an error
/// naming `$op`.
macro_rules! float_dispatch {
    ($op:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::tensor::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::tensor::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            other => {
                return Err($crate::tensor::Error::DType { op: $op, got: other, expected: "a floating-point dtype (f32, f64, f16, bf16)" })
            }
        }
    };
}

/// Like [`float_dispatch`] but over every dtype.
macro_rules! any_dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::tensor::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::tensor::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::tensor::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::tensor::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::tensor::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::tensor::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::tensor::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::tensor::DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of an integer dtype (i64, i32, i16, i8, u8);
/// `$other` handles the rest.
macro_rules! int_dispatch {
    ($dtype:expr, $T:ident => $body:expr, $other:ident => $fallback:expr) => {
        match $dtype {
            $crate::tensor::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::tensor::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::tensor::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::tensor::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::tensor::DType::U8 => {
                type $T = u8;
                $body
            }
            $other => $fallback,
        }
    };
}

/// Applies `|x: T| expr` elementwise to a float tensor, giving a new contiguous tensor of the
/// same dtype. `T` is in scope in the expression, with `kernels::Float` methods.
macro_rules! float_map {
    ($x:expr, $op:expr, |$v:ident| $body:expr) => {
        $crate::ops::float_map!($x, $op, device(|x| $crate::ops::device_unary($op, x)), |$v| $body)
    };
    // `device(f)`: what a tensor on a GPU runs instead (`f(x) -> Result<Tensor>`).
    ($x:expr, $op:expr, device($dev:expr), |$v:ident| $body:expr) => {{
        let x: &$crate::Tensor = $x;
        // Integer and bool inputs compute in f32, PyTorch's default dtype.
        let promoted;
        let x: &$crate::Tensor = if x.dtype().is_float() { x } else { promoted = x.to_float_input()?; &promoted };
        if $crate::ops::on_device(x) { ($dev)(x) } else {
        $crate::ops::float_dispatch!($op, x.dtype(), T => {
            #[allow(unused_imports)]
            use tensorbrain_kernels::Float as _;
            #[allow(unused_imports)]
            use num_traits::Float as _;
            let storage = x.storage();
            let src = storage.cpu()?.as_slice::<T>();
            let l = x.layout();
            let out = tensorbrain_kernels::strided::map_vec(src, l.offset, &l.shape, &l.strides, |$v: T| -> T { $body });
            Ok::<$crate::Tensor, $crate::Error>($crate::Tensor::from_storage(<T as $crate::tensor::StorageElement>::wrap(out), &l.shape))
        })
        }
    }};
}

pub(crate) use {any_dispatch, float_dispatch, float_map, int_dispatch};

/// Defines the panicking form of `try_` methods: `panicking! { fn exp(&self) -> Tensor; }`.
macro_rules! panicking {
    ($( $(#[$m:meta])* fn $name:ident / $try_name:ident ( &self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*) => {
        impl $crate::Tensor {
            $(
                $(#[$m])*
                #[track_caller]
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    $crate::ops::ok(self.$try_name($($arg),*))
                }
            )*
        }
    };
}
pub(crate) use panicking;
