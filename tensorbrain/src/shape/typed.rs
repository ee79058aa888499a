//! `Tensor<S, E>`: a runtime tensor whose shape and element type are in its type.
//!
//! It is a thin wrapper: every method is a small inline shim over the runtime
//! [`crate::Tensor`], so generic code stays cheap to compile (dfdx's deep generic types made
//! models take minutes to build). It dereferences to the runtime tensor for everything the
//! typed surface does not cover.

use std::marker::PhantomData;

use super::{Dim, Shape};
use crate::tensor::{Element, Error, Result};

/// A tensor of shape `S` (a tuple of dims) and element type `E`. Written `tb![B, 784]`.
#[derive(Clone)]
pub struct Tensor<S: Shape, E: Element = f32> {
    inner: crate::Tensor,
    _shape: PhantomData<(S, E)>,
}

impl<S: Shape, E: Element> Tensor<S, E> {
    /// Checks a runtime tensor against `S` and `E` (static dims must match; symbolic dims
    /// take whatever size the tensor has).
    pub fn try_from_runtime(t: crate::Tensor) -> Result<Self> {
        if t.dtype() != E::DTYPE {
            return Err(Error::DTypeMismatch { op: "typed tensor", lhs: E::DTYPE, rhs: t.dtype() });
        }
        let expected = S::static_dims();
        let fits = t.rank() == S::RANK && expected.iter().zip(t.shape()).all(|(e, &d)| e.is_none_or(|e| e == d));
        if !fits {
            return Err(Error::Msg(format!(
                "typed tensor: expected shape {}, got {:?}",
                describe(&expected),
                t.shape()
            )));
        }
        Ok(Tensor { inner: t, _shape: PhantomData })
    }

    /// Wraps a runtime tensor that generated code has already shape-checked.
    #[doc(hidden)]
    #[inline]
    pub fn from_runtime_unchecked(t: crate::Tensor) -> Self {
        debug_assert_eq!(t.rank(), S::RANK);
        Tensor { inner: t, _shape: PhantomData }
    }

    /// The runtime tensor.
    #[inline]
    pub fn runtime(&self) -> &crate::Tensor {
        &self.inner
    }

    #[inline]
    pub fn into_runtime(self) -> crate::Tensor {
        self.inner
    }

    /// The runtime size of dim `i` (symbolic dims included).
    #[inline]
    pub fn dim_size(&self, i: usize) -> usize {
        self.inner.shape()[i]
    }
}

impl<S: Shape, E: Element> std::ops::Deref for Tensor<S, E> {
    type Target = crate::Tensor;
    #[inline]
    fn deref(&self) -> &crate::Tensor {
        &self.inner
    }
}

impl<S: Shape, E: Element> std::fmt::Debug for Tensor<S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

/// `[B, 784]`-style text for a shape's static dims.
fn describe(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.map_or("_".to_string(), |n| n.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

impl crate::Tensor {
    /// This tensor as a typed `Tensor<S, E>`, checking its rank, static dims and dtype.
    pub fn typed<S: Shape, E: Element>(&self) -> Result<Tensor<S, E>> {
        Tensor::try_from_runtime(self.clone())
    }
}

/// Shape-preserving elementwise ops keep the type.
macro_rules! same_shape_unary {
    ($($name:ident),*) => {
        impl<S: Shape, E: Element> Tensor<S, E> {
            $(
                #[inline]
                #[track_caller]
                pub fn $name(&self) -> Self {
                    Tensor::from_runtime_unchecked(crate::Tensor::$name(&self.inner))
                }
            )*
        }
    };
}

same_shape_unary!(relu, gelu, sigmoid, tanh, exp, neg, silu);

macro_rules! same_shape_binary {
    ($trait:ident, $method:ident) => {
        impl<S: Shape, E: Element> std::ops::$trait<&Tensor<S, E>> for &Tensor<S, E> {
            type Output = Tensor<S, E>;
            #[inline]
            #[track_caller]
            fn $method(self, rhs: &Tensor<S, E>) -> Tensor<S, E> {
                Tensor::from_runtime_unchecked(crate::Tensor::$method(&self.inner, &rhs.inner))
            }
        }
        impl<S: Shape, E: Element> std::ops::$trait<Tensor<S, E>> for Tensor<S, E> {
            type Output = Tensor<S, E>;
            #[inline]
            #[track_caller]
            fn $method(self, rhs: Tensor<S, E>) -> Tensor<S, E> {
                Tensor::from_runtime_unchecked(crate::Tensor::$method(&self.inner, &rhs.inner))
            }
        }
    };
}

same_shape_binary!(Add, add);
same_shape_binary!(Sub, sub);
same_shape_binary!(Mul, mul);
same_shape_binary!(Div, div);

impl<M: Dim, K: Dim, E: Element> Tensor<(M, K), E> {
    /// Matrix product; the inner dims must be the same type, so a mismatch does not compile.
    #[inline]
    #[track_caller]
    pub fn matmul<N: Dim>(&self, rhs: &Tensor<(K, N), E>) -> Tensor<(M, N), E> {
        Tensor::from_runtime_unchecked(self.inner.matmul(&rhs.inner))
    }
}
