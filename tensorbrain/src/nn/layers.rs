//! Layers with sizes as generic numbers: `Linear<784, 256>`, `Conv2d<3, 16, 3>`, ...
//!
//! Each is a `Module` (parameters named as in PyTorch, PyTorch's default initialisation) with
//! an eager `forward` on runtime tensors; `#[model]` knows their shape rules and compiles calls
//! to them into the IR.
//!
//! A layer's feature sizes are types (`LinearOf<I, O>` with `I, O: Size`), so that a generic
//! model can size it by its parameters (`LinearOf<D, Prod<Const<4>, D>>`); the names users
//! write with numbers are aliases (`Linear<784, 256>` is `LinearOf<Const<784>, Const<256>>`).

use std::marker::PhantomData;

use super::{join, Module};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Result, Tensor};

/// `U(-bound, bound)` as a leaf that requires grad.
fn uniform(shape: &[usize], bound: f64, gen: &mut Generator) -> Tensor {
    (Tensor::rand_with(shape, DType::F32, gen).mul_scalar(2.0 * bound).add_scalar(-bound)).set_requires_grad(true)
}

fn param(t: Tensor) -> Tensor {
    t.set_requires_grad(true)
}

/// `y = x Wᵀ + b` with `W: [OUT, IN]`. `Linear<IN, OUT, false>` has no bias.
pub type Linear<const IN: usize, const OUT: usize, const BIAS: bool = true> = LinearOf<Const<IN>, Const<OUT>, BIAS>;

/// [`Linear`] with its sizes as types.
pub struct LinearOf<I: Size, O: Size, const BIAS: bool = true> {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    _sizes: PhantomData<(I, O)>,
}

impl<I: Size, O: Size, const BIAS: bool> Module for LinearOf<I, O, BIAS> {
    fn init_with(gen: &mut Generator) -> Self {
        // PyTorch: kaiming_uniform(a=sqrt(5)) for W and U(±1/sqrt(fan_in)) for b.
        let bound = 1.0 / (I::N as f64).sqrt();
        let weight = uniform(&[O::N, I::N], bound, gen);
        let bias = BIAS.then(|| uniform(&[O::N], bound, gen));
        LinearOf { weight, bias, _sizes: PhantomData }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn collect_params(&self, out: &mut Vec<Tensor>) {
        out.push(self.weight.clone());
        out.extend(self.bias.clone());
    }
    fn param_count(&self) -> usize {
        1 + self.bias.is_some() as usize
    }
}

impl<I: Size, O: Size, const BIAS: bool> LinearOf<I, O, BIAS> {
    /// Applies the layer to `[.., IN]`, giving `[.., OUT]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_linear(&self.weight, self.bias.as_ref())
    }
}

/// 2-D convolution over `[N, C_IN, H, W]` with a `K x K` kernel, stride `S`, padding `P`.
pub type Conv2d<const C_IN: usize, const C_OUT: usize, const K: usize, const S: usize = 1, const P: usize = 0> =
    Conv2dOf<Const<C_IN>, Const<C_OUT>, K, S, P>;

/// [`Conv2d`] with its channel counts as types.
pub struct Conv2dOf<CI: Size, CO: Size, const K: usize, const S: usize = 1, const P: usize = 0> {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    _sizes: PhantomData<(CI, CO)>,
}

impl<CI: Size, CO: Size, const K: usize, const S: usize, const P: usize> Module for Conv2dOf<CI, CO, K, S, P> {
    fn init_with(gen: &mut Generator) -> Self {
        let bound = 1.0 / ((CI::N * K * K) as f64).sqrt();
        Conv2dOf { weight: uniform(&[CO::N, CI::N, K, K], bound, gen), bias: Some(uniform(&[CO::N], bound, gen)), _sizes: PhantomData }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
    fn collect_params(&self, out: &mut Vec<Tensor>) {
        out.push(self.weight.clone());
        out.extend(self.bias.clone());
    }
    fn param_count(&self) -> usize {
        1 + self.bias.is_some() as usize
    }
}

impl<CI: Size, CO: Size, const K: usize, const S: usize, const P: usize> Conv2dOf<CI, CO, K, S, P> {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_conv2d(&self.weight, self.bias.as_ref(), [S, S], [P, P], [1, 1], 1)
    }
}

/// Layers without parameters.
macro_rules! stateless {
    ($(#[$m:meta])* $name:ident $(<$(const $c:ident: usize $(= $d:literal)?),*>)?, |$self_:ident, $x:ident| $body:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name $(<$(const $c: usize $(= $d)?),*>)? {
            training: bool,
        }

        impl $(<$(const $c: usize),*>)? Module for $name $(<$($c),*>)? {
            fn init_with(_: &mut Generator) -> Self {
                $name { training: true }
            }
            fn visit_params(&self, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
            fn visit_params_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Tensor)) {}
            fn collect_params(&self, _: &mut Vec<Tensor>) {}
            fn param_count(&self) -> usize {
                0
            }
            fn set_training(&mut self, training: bool) {
                self.training = training;
            }
        }

        impl $(<$(const $c: usize),*>)? $name $(<$($c),*>)? {
            pub fn forward(&$self_, $x: &Tensor) -> Result<Tensor> {
                $body
            }
        }
    };
}

stateless!(
    /// 2-D max pooling with a `K x K` window and stride `S` (0 means `K`, PyTorch's default).
    MaxPool2d<const K: usize, const S: usize = 0>, |self, x| {
    let s = if S == 0 { K } else { S };
    x.try_max_pool2d([K, K], [s, s], [0, 0])
});

stateless!(
    /// 2-D average pooling with a `K x K` window and stride `S` (0 means `K`).
    AvgPool2d<const K: usize, const S: usize = 0>, |self, x| {
    let s = if S == 0 { K } else { S };
    x.try_avg_pool2d([K, K], [s, s], [0, 0], true)
});

stateless!(
    /// Flattens all dims after the first: `[N, C, H, W]` to `[N, C*H*W]`.
    Flatten, |self, x| x.try_flatten(1, -1));

stateless!(
    /// Zeroes each element with probability `PERCENT / 100` in training (scaling the rest), and
    /// does nothing in eval mode.
    Dropout<const PERCENT: usize>, |self, x| {
    if !self.training || PERCENT == 0 {
        return Ok(x.clone());
    }
    let p = PERCENT as f64 / 100.0;
    let keep = Tensor::rand(x.shape(), x.dtype()).try_ge(&Tensor::full(&[], p, x.dtype()))?.try_to_dtype(x.dtype())?;
    x.try_mul(&keep)?.try_mul_scalar(1.0 / (1.0 - p))
});

stateless!(ReLU, |self, x| x.try_relu());
stateless!(GELU, |self, x| x.try_gelu());
stateless!(Sigmoid, |self, x| x.try_sigmoid());
stateless!(Tanh, |self, x| x.try_tanh());
stateless!(SiLU, |self, x| x.try_silu());

/// A lookup table of `V` vectors of size `D`, indexed by i64 tensors.
pub type Embedding<const V: usize, const D: usize> = EmbeddingOf<Const<V>, Const<D>>;

/// [`Embedding`] with its sizes as types.
pub struct EmbeddingOf<V: Size, D: Size> {
    pub weight: Tensor,
    _sizes: PhantomData<(V, D)>,
}

impl<V: Size, D: Size> Module for EmbeddingOf<V, D> {
    fn init_with(gen: &mut Generator) -> Self {
        EmbeddingOf { weight: param(Tensor::randn_with(&[V::N, D::N], DType::F32, gen)), _sizes: PhantomData }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
}

impl<V: Size, D: Size> EmbeddingOf<V, D> {
    pub fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        let op = tensorbrain_ir::Op::Embedding;
        crate::exec::apply(&op, &[&self.weight, indices], &[])
    }
}

/// Normalises over the last dim (size `D`) with a learned scale and shift; eps = 1e-5.
pub type LayerNorm<const D: usize> = LayerNormOf<Const<D>>;

/// [`LayerNorm`] with its size as a type.
pub struct LayerNormOf<D: Size> {
    pub weight: Tensor,
    pub bias: Tensor,
    _size: PhantomData<D>,
}

impl<D: Size> Module for LayerNormOf<D> {
    fn init_with(_: &mut Generator) -> Self {
        LayerNormOf { weight: param(Tensor::ones(&[D::N], DType::F32)), bias: param(Tensor::zeros(&[D::N], DType::F32)), _size: PhantomData }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }
}

impl<D: Size> LayerNormOf<D> {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.try_mean(&[-1], true)?;
        let xc = x.try_sub(&mean)?;
        let var = xc.try_mul(&xc)?.try_mean(&[-1], true)?;
        let xn = xc.try_mul(&var.try_add_scalar(1e-5)?.try_pow_scalar(-0.5)?)?;
        xn.try_mul(&self.weight)?.try_add(&self.bias)
    }
}
