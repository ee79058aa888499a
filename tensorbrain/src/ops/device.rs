//! The device forms of the window ops (convolution, pooling), the indexing ops and
//! argmax/argmin, which the ops dispatch to for tensors on a GPU. Each forwards to
//! `crate::cuda`; in a build without the `cuda` feature no tensor can be on a GPU, so the
//! device branch is unreachable there.

use tensorbrain_kernels::conv::Conv2dParams;

use super::nn::PoolWindow;
use super::reduce::ReducePlan;
use crate::tensor::{Result, Tensor};

macro_rules! forward_to_cuda {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) -> Result<$ret> {
            #[cfg(feature = "cuda")]
            return crate::cuda::$name($($arg),*);
            #[cfg(not(feature = "cuda"))]
            {
                $(let _ = $arg;)*
                unreachable!(concat!("internal: ", stringify!($name), " took the device path in a build without CUDA"))
            }
        }
    )*};
}

forward_to_cuda! {
    /// conv2d of validated 4-D operands, not recorded.
    fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Tensor;
    fn conv2d_input_grad(dy: &Tensor, w: &Tensor, x_shape: [usize; 4], p: &Conv2dParams) -> Tensor;
    fn conv2d_weight_grad(dy: &Tensor, x: &Tensor, w_shape: [usize; 4], p: &Conv2dParams) -> Tensor;
    /// Values (not recorded) and i64 indices on the device.
    fn max_pool2d(x: &Tensor, out_hw: [usize; 2], win: &PoolWindow) -> (Tensor, Tensor);
    fn max_pool2d_scatter(dy: &Tensor, idx: &Tensor, x_shape: [usize; 4], win: &PoolWindow) -> Tensor;
    fn max_pool2d_gather(u: &Tensor, idx: &Tensor, win: &PoolWindow) -> Tensor;
    fn avg_pool2d(x: &Tensor, out_hw: [usize; 2], win: &PoolWindow) -> Tensor;
    fn avg_pool2d_backward(dy: &Tensor, x_shape: [usize; 4], win: &PoolWindow) -> Tensor;
    /// `x`'s entries at a checked 1-D i64 `index` on its device, along dim `d`; not recorded.
    fn index_select(x: &Tensor, d: usize, index: &Tensor) -> Tensor;
    /// `base` plus `src` at checked host indices along dim `d`; not recorded.
    fn index_add(base: &Tensor, d: usize, idx: &[i64], src: &Tensor) -> Tensor;
    /// argmax (`max`) or argmin indices (i64) under a checked, non-empty `plan`.
    fn arg_reduce(x: &Tensor, plan: &ReducePlan, max: bool) -> Tensor;
}
