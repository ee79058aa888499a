//! [`Forward`]: the object-safe face of a layer, "a module with an eager forward on runtime
//! tensors", so that layers of different types can sit in one container ([`Sequential`]).
//!
//! [`Sequential`]: super::Sequential

use super::{AdaptiveAvgPool2d, AvgPool2d, BatchNormOf, Dropout, Flatten, LeakyReLU, LogSoftmax, MaxPool2d, Module, ReLU, SiLU, Sigmoid, Softmax, Tanh, ELU, GELU};
use crate::tensor::{Result, Tensor};

/// A module that maps one runtime tensor to another. Every layer implements it; `#[model]`
/// implements it for models whose `forward` takes one input (through `forward_dyn`).
pub trait Forward: Module {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// Implements `Forward` by calling the type's own `forward` (inherent methods take precedence
/// over trait methods, so `<T>::forward` is the layer's).
macro_rules! forward_by_inherent {
    ($([$($generics:tt)*] $ty:ty;)*) => {
        $(
            impl<$($generics)*> Forward for $ty {
                fn forward(&self, x: &Tensor) -> Result<Tensor> {
                    <$ty>::forward(self, x)
                }
            }
        )*
    };
}

forward_by_inherent! {
    [I: crate::shape::Size, O: crate::shape::Size, const BIAS: bool] super::LinearOf<I, O, BIAS>;
    [CI: crate::shape::Size, CO: crate::shape::Size, const K: usize, const S: usize, const P: usize] super::Conv2dOf<CI, CO, K, S, P>;
    [const K: usize, const S: usize] MaxPool2d<K, S>;
    [const K: usize, const S: usize] AvgPool2d<K, S>;
    [] Flatten;
    [const PERCENT: usize] Dropout<PERCENT>;
    [] ReLU;
    [] GELU;
    [] Sigmoid;
    [] Tanh;
    [] SiLU;
    [V: crate::shape::Size, D: crate::shape::Size] super::EmbeddingOf<V, D>;
    [D: crate::shape::Size] super::LayerNormOf<D>;
    [C: crate::shape::Size, const SPATIAL: usize] BatchNormOf<C, SPATIAL>;
    [D: crate::shape::Size] super::RMSNormOf<D>;
    [const OH: usize, const OW: usize] AdaptiveAvgPool2d<OH, OW>;
    [] ELU;
    [] LeakyReLU;
    [] Softmax;
    [] LogSoftmax;
}
