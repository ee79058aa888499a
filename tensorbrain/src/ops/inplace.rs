//! In-place updates, for optimizers and initialisers. They bypass autograd: call them under
//! `no_grad` on leaves (parameters), as `torch.no_grad(): p.copy_(...)` would.

use tensorbrain_kernels::strided::{copy, copy_into};

use super::{any_dispatch, ok};
use crate::autograd::is_grad_enabled;
use crate::tensor::layout::broadcast_shapes;
use crate::tensor::{Error, Result, Tensor};

impl Tensor {
    /// Writes `src` (broadcast to this tensor's shape, same dtype) into this tensor's elements,
    /// through its view: every tensor sharing the storage sees the new values.
    pub fn try_copy_from(&self, src: &Tensor) -> Result<()> {
        const OP: &str = "copy_from";
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: src.dtype() });
        }
        if self.requires_grad() && is_grad_enabled() {
            return Err(Error::Autograd(
                "copy_from on a tensor that requires grad would bypass autograd; wrap the update in no_grad".into(),
            ));
        }
        let shape = broadcast_shapes(OP, self.shape(), src.shape())?;
        if shape.as_slice() != self.shape() {
            return Err(Error::shape(OP, self.shape(), src.shape(), "differ: the source must broadcast to the destination"));
        }
        // A source on a GPU is read on the host; a destination on a GPU is written from the
        // host (copy_from is for loading and initialising, not for a training step).
        let host_src;
        let src = if src.device() != crate::tensor::Device::Cpu {
            host_src = src.detach().try_to_device(crate::tensor::Device::Cpu)?;
            &host_src
        } else {
            src
        };
        #[cfg(feature = "cuda")]
        if super::on_device(self) {
            let target: Vec<isize> = self.shape().iter().map(|&d| d as isize).collect();
            let host = src.detach().try_expand(&target)?.try_contiguous()?;
            return crate::cuda::write_from_host(OP, self, &host);
        }
        // Gather the source first so no lock on it is held while this storage is written
        // (they may be the same storage).
        let l = src.layout().broadcast_to(self.shape());
        let dst = self.layout().clone();
        any_dispatch!(self.dtype(), T => {
            let mut buf = vec![T::default(); dst.numel()];
            {
                let s = src.storage();
                copy(s.cpu()?.as_slice::<T>(), l.offset, &l.shape, &l.strides, &mut buf);
            }
            let mut storage = self.storage_mut();
            copy_into(&buf, storage.cpu_mut()?.as_mut_slice::<T>(), dst.offset, &dst.shape, &dst.strides);
        });
        Ok(())
    }

    /// Writes `src` into this tensor; panics on a shape or dtype mismatch.
    #[track_caller]
    pub fn copy_from(&self, src: &Tensor) {
        ok(self.try_copy_from(src))
    }

    /// Sets every element to `value`.
    #[track_caller]
    pub fn fill_(&self, value: f64) {
        ok(self.try_copy_from(&Tensor::full(&[], value, self.dtype())))
    }
}
