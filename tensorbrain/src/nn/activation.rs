//! Activation layers with a setting (`ELU`'s alpha, `LeakyReLU`'s slope, the dim of `Softmax`
//! and `LogSoftmax`), as modules for containers like [`Sequential`](super::Sequential). The
//! setting-free ones (`ReLU`, `GELU`, ...) live in `layers.rs`.

use crate::nn::Module;
use crate::ops::Generator;
use crate::tensor::{Result, Tensor};

/// Implements `Module` for a layer without parameters whose state is its setting.
macro_rules! settings_only_module {
    ($name:ident) => {
        impl Module for $name {
            fn init_with(_: &mut Generator) -> Self {
                $name::default()
            }
            fn visit_params(&self, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
            fn visit_params_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Tensor)) {}
            fn collect_params(&self, _: &mut Vec<Tensor>) {}
            fn param_count(&self) -> usize {
                0
            }
        }
    };
}

/// `x > 0 ? x : alpha·(eˣ - 1)`; alpha defaults to 1.
#[derive(Clone, Copy, Debug)]
pub struct ELU {
    pub alpha: f64,
}

impl Default for ELU {
    fn default() -> Self {
        ELU { alpha: 1.0 }
    }
}

impl ELU {
    pub fn new(alpha: f64) -> Self {
        ELU { alpha }
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_elu(self.alpha)
    }
}
settings_only_module!(ELU);

/// `x > 0 ? x : negative_slope·x`; the slope defaults to 0.01.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReLU {
    pub negative_slope: f64,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU { negative_slope: 0.01 }
    }
}

impl LeakyReLU {
    pub fn new(negative_slope: f64) -> Self {
        LeakyReLU { negative_slope }
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_leaky_relu(self.negative_slope)
    }
}
settings_only_module!(LeakyReLU);

/// Softmax along `dim` (negative counts from the end; the default is -1, the last dim).
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    pub dim: isize,
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax { dim: -1 }
    }
}

impl Softmax {
    pub fn new(dim: isize) -> Self {
        Softmax { dim }
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_softmax(self.dim)
    }
}
settings_only_module!(Softmax);

/// Log-softmax along `dim` (negative counts from the end; the default is -1, the last dim).
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax {
    pub dim: isize,
}

impl Default for LogSoftmax {
    fn default() -> Self {
        LogSoftmax { dim: -1 }
    }
}

impl LogSoftmax {
    pub fn new(dim: isize) -> Self {
        LogSoftmax { dim }
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_log_softmax(self.dim)
    }
}
settings_only_module!(LogSoftmax);
