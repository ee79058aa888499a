//! `nn.MaxPool2d` and `nn.AvgPool2d` configured by values, with everything PyTorch's
//! constructors take: rectangular kernels, stride, padding, dilation and `ceil_mode` (max),
//! `ceil_mode`, `count_include_pad` and `divisor_override` (average). The const-generic
//! [`MaxPool2d<K, S>`](crate::nn::MaxPool2d) and [`AvgPool2d<K, S>`](crate::nn::AvgPool2d) stay
//! the square, unpadded forms that `#[model]` shape-checks.
//!
//! ```
//! use tensorbrain::nn::MaxPool2dWith;
//! use tensorbrain::ops::MaxPoolOptions;
//! use tensorbrain::{DType, Tensor};
//!
//! // nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0))
//! let pool = MaxPool2dWith::new(MaxPoolOptions::new([3, 2]).stride([2, 1]).padding([1, 0]));
//! let y = pool.forward(&Tensor::zeros(&[1, 1, 6, 5], DType::F32)).unwrap();
//! assert_eq!(y.shape(), [1, 1, 3, 4]);
//! ```

use crate::nn::{Forward, Module};
use crate::ops::{AvgPoolOptions, Generator, MaxPoolOptions};
use crate::tensor::{Result, Tensor};

/// Max pooling of `[N, C, H, W]` (or `[C, H, W]`) with the options of `nn.MaxPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dWith {
    pub options: MaxPoolOptions<2>,
}

impl MaxPool2dWith {
    pub fn new(options: MaxPoolOptions<2>) -> Self {
        MaxPool2dWith { options }
    }

    /// The pooled values.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_indices(x)?.0)
    }

    /// The pooled values and the i64 index `h * W + w` of each maximum in its plane
    /// (`return_indices=True`).
    pub fn forward_with_indices(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        x.try_max_pool2d_with(&self.options)
    }
}

/// Average pooling of `[N, C, H, W]` (or `[C, H, W]`) with the options of `nn.AvgPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dWith {
    pub options: AvgPoolOptions<2>,
}

impl AvgPool2dWith {
    pub fn new(options: AvgPoolOptions<2>) -> Self {
        AvgPool2dWith { options }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_avg_pool2d_with(&self.options)
    }
}

/// Parameter-free modules; `init_with` gives PyTorch's most common pooling, a 2 x 2 window
/// with stride 2 (PyTorch itself has no default kernel size).
macro_rules! pooling_module {
    ($name:ident, $options:ident) => {
        impl Module for $name {
            fn init_with(_: &mut Generator) -> Self {
                $name::new($options::new([2, 2]))
            }
            fn visit_params(&self, _: &str, _: &mut dyn FnMut(&str, &Tensor)) {}
            fn visit_params_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Tensor)) {}
            fn kind(&self) -> String {
                let o = &self.options;
                format!("{}(kernel_size={:?}, stride={:?}, padding={:?})", &stringify!($name)[..9], o.kernel_size, o.stride, o.padding)
            }
        }

        impl Forward for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                $name::forward(self, x)
            }
        }
    };
}

pooling_module!(MaxPool2dWith, MaxPoolOptions);
pooling_module!(AvgPool2dWith, AvgPoolOptions);
