//! Conversions between `ndarray` arrays and tensors.
//!
//! Both sides keep elements in one buffer with a shape and strides, so most conversions move
//! or borrow the buffer instead of copying it:
//!
//! | conversion | copies when |
//! |---|---|
//! | [`Tensor::from_ndarray`] (owned array in) | the array is not in standard (C) order from the start of its buffer |
//! | [`Tensor::try_into_ndarray`] (owned array out) | the tensor shares its storage (clones, views, autograd) or is a view of part of it |
//! | [`Tensor::try_with_ndarray_view`] (borrowed view) | never: any strided layout is a valid `ArrayView` |
//! | [`Tensor::from_ndarray_view`] | always (a tensor owns its storage) |
//!
//! The element type must be the tensor's dtype (`f32`, `f64`, `f16`, `bf16`, `i64`, `i32`,
//! `i16`, `i8`, `u8`, `bool`); a mismatch is an error naming both, never a silent conversion.

use std::sync::Arc;

use ndarray::{Array, ArrayBase, ArrayD, ArrayView, ArrayViewD, Data, Dimension, IxDyn, ShapeBuilder};

use crate::shape::Shape;
use crate::tensor::{Element, Error, Result, Storage, Tensor};

fn dtype_error(op: &'static str, t: &Tensor, want: &'static str) -> Error {
    Error::Msg(format!("{op}: the tensor holds {} but {want} was requested; convert with to_dtype first", t.dtype()))
}

impl Tensor {
    /// A tensor owning the array's buffer: moved without copying when the array is in
    /// standard (row-major) order starting at its buffer's first element, copied into that
    /// order otherwise (transposed, sliced or Fortran-order arrays).
    pub fn from_ndarray<T: Element, D: Dimension>(array: Array<T, D>) -> Tensor {
        let (shape, n) = (array.shape().to_vec(), array.len());
        if !array.is_standard_layout() {
            return Tensor::from_vec(array.iter().copied().collect(), &shape);
        }
        let (data, offset) = array.into_raw_vec_and_offset();
        let start = offset.unwrap_or(0);
        if start == 0 && data.len() == n {
            Tensor::from_vec(data, &shape)
        } else {
            // A standard-layout array over part of its buffer (rows sliced off): copy the part.
            Tensor::from_vec(data[start..start + n].to_vec(), &shape)
        }
    }

    /// A tensor holding a copy of the view's elements (a tensor owns its storage, so borrowing
    /// is only possible the other way: [`Tensor::try_with_ndarray_view`]).
    pub fn from_ndarray_view<T: Element, D: Dimension>(view: ArrayView<'_, T, D>) -> Tensor {
        Tensor::from_vec(view.iter().copied().collect(), view.shape())
    }

    /// Runs `f` on an `ArrayViewD` of this tensor's elements, borrowing its storage without
    /// copying, whatever the layout (transposed, sliced or broadcast views included). `T` must
    /// be the tensor's dtype. The storage is read-locked while `f` runs.
    pub fn try_with_ndarray_view<T: Element, R>(&self, f: impl FnOnce(ArrayViewD<'_, T>) -> R) -> Result<R> {
        const OP: &str = "with_ndarray_view";
        if self.dtype() != T::DTYPE {
            return Err(dtype_error(OP, self, T::DTYPE.name()));
        }
        let storage = self.storage();
        let layout = self.layout();
        let all = storage.cpu()?.as_slice::<T>();
        // An empty view has no elements to point at: give it the empty slice and plain strides
        // (ndarray rejects strides that step past an empty buffer).
        let view = if self.numel() == 0 {
            ArrayView::from_shape(IxDyn(&layout.shape), &all[..0])
        } else {
            ArrayView::from_shape(IxDyn(&layout.shape).strides(IxDyn(&layout.strides)), &all[layout.offset..])
        }
            .map_err(|e| Error::Msg(format!("{OP}: layout {:?} / strides {:?} does not fit the storage: {e}", layout.shape, layout.strides)))?;
        Ok(f(view))
    }

    /// An owned `ArrayD` of this tensor's elements. The buffer moves without copying when this
    /// handle is the only one on its storage and covers all of it in row-major order; otherwise
    /// the elements are copied. `T` must be the tensor's dtype.
    pub fn try_into_ndarray<T: Element>(self) -> Result<ArrayD<T>> {
        const OP: &str = "into_ndarray";
        if self.dtype() != T::DTYPE {
            return Err(dtype_error(OP, &self, T::DTYPE.name()));
        }
        if self.device() != crate::tensor::Device::Cpu {
            return self.try_to_device(crate::tensor::Device::Cpu)?.detach().try_into_ndarray();
        }
        let shape = self.shape().to_vec();
        let whole = self.is_contiguous() && self.layout().offset == 0 && self.storage().cpu()?.len() == self.numel();
        if !whole || self.0.grad_fn.is_some() {
            return self.try_to_ndarray();
        }
        let inner = match Arc::try_unwrap(self.0) {
            Ok(inner) => inner,
            Err(shared) => return Tensor(shared).try_to_ndarray(),
        };
        match Arc::try_unwrap(inner.storage) {
            Ok(lock) => {
                #[allow(irrefutable_let_patterns)]
                let Storage::Cpu(cpu) = lock.into_inner().unwrap_or_else(|p| p.into_inner()) else {
                    unreachable!("moved to the CPU above")
                };
                let data = T::take_vec(cpu).expect("dtype checked above");
                ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| Error::Msg(format!("{OP}: {e}")))
            }
            Err(storage) => Tensor::from_parts(storage, inner.layout, inner.dtype, inner.device).try_to_ndarray(),
        }
    }

    /// A copy of this tensor's elements as an `ArrayD<T>`. `T` must be the tensor's dtype.
    pub fn try_to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
        self.try_with_ndarray_view(|v: ArrayViewD<'_, T>| v.as_standard_layout().into_owned())
    }
}

impl<T: Element, D: Dimension> From<Array<T, D>> for Tensor {
    fn from(array: Array<T, D>) -> Tensor {
        Tensor::from_ndarray(array)
    }
}

impl<T: Element> TryFrom<Tensor> for ArrayD<T> {
    type Error = Error;
    fn try_from(t: Tensor) -> Result<ArrayD<T>> {
        t.try_into_ndarray()
    }
}

impl<T: Element> TryFrom<&Tensor> for ArrayD<T> {
    type Error = Error;
    fn try_from(t: &Tensor) -> Result<ArrayD<T>> {
        t.try_to_ndarray()
    }
}

impl<S: Shape, E: Element> crate::shape::Tensor<S, E> {
    /// A typed tensor from an array of any rank (`Array2`, `Array4`, `ArrayD`, ...), checking
    /// the rank and every static dim of `S` against the array's shape (symbolic dims take the
    /// array's size). The buffer moves as in [`Tensor::from_ndarray`].
    pub fn try_from_ndarray<D: Dimension>(array: Array<E, D>) -> Result<Self> {
        Self::try_from_runtime(Tensor::from_ndarray(array))
    }

    /// An owned array of the tensor's rank (`Ix2` for a 2-D `S`, ...), moved out without
    /// copying where [`Tensor::try_into_ndarray`] can.
    pub fn try_into_ndarray<D: Dimension>(self) -> Result<Array<E, D>> {
        let array = self.into_runtime().try_into_ndarray::<E>()?;
        array.into_dimensionality::<D>().map_err(|e| Error::Msg(format!("into_ndarray: {e} (the tensor has rank {})", S::RANK)))
    }
}

/// A typed tensor from a borrowed array of any `Data` kind: copies.
impl<S: Shape, E: Element> crate::shape::Tensor<S, E> {
    pub fn try_from_ndarray_ref<A: Data<Elem = E>, D: Dimension>(array: &ArrayBase<A, D>) -> Result<Self> {
        Self::try_from_runtime(Tensor::from_ndarray_view(array.view()))
    }
}
