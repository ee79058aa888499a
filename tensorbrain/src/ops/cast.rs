//! Dtype conversion.

use tensorbrain_kernels::strided::map;

use super::{any_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::{DType, Element, Result, StorageElement, Tensor};

impl Tensor {
    /// Converts to `dtype` (a copy; returns `self` when the dtype already matches). Float to
    /// integer truncates toward zero and integers convert exactly (i64 above 2^53 included),
    /// like PyTorch; anything to bool is `x != 0`. Gradients flow between float dtypes.
    pub fn try_to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        if super::on_device(self) {
            let out = crate::cuda::cast(self, dtype)?;
            let from = self.dtype();
            return Ok(if from.is_float() { record("to_dtype", out, &[self], move |g, _| Ok(vec![Some(g.try_to_dtype(from)?)])) } else { out });
        }
        let l = self.layout();
        let storage = self.storage();
        let out = any_dispatch!(self.dtype(), S => {
            let src = storage.cpu()?.as_slice::<S>();
            any_dispatch!(dtype, D => {
                let mut out = vec![D::default(); l.numel()];
                map(src, l.offset, &l.shape, &l.strides, &mut out, convert::<S, D>);
                Tensor::from_storage(D::wrap(out), &l.shape)
            })
        });
        drop(storage);
        if !dtype.is_float() {
            return Ok(out);
        }
        let from = self.dtype();
        Ok(record("to_dtype", out, &[self], move |g, _| Ok(vec![Some(g.try_to_dtype(from)?)])))
    }
}

/// Element conversion with one rounding, as PyTorch's `static_cast`: floats go through f64
/// (which holds every float of every dtype exactly, so f32 -> f16 matches PyTorch bit for bit),
/// integers through i64 (exact above 2^53, wrapping into narrower integers), and anything
/// becomes bool as `x != 0`.
#[inline(always)]
pub(crate) fn convert<S: Element, D: Element>(x: S) -> D {
    if D::DTYPE == DType::Bool || S::DTYPE.is_float() {
        D::from_f64(x.to_f64())
    } else {
        D::from_i64(x.to_i64())
    }
}

panicking! {
    fn to_dtype / try_to_dtype(&self, dtype: DType) -> Tensor;
}
