//! The runtime tensor: shared storage, a layout over it, and autograd metadata.

mod allocator;
mod device;
mod display;
mod dtype;
mod error;
pub mod layout;
mod storage;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use layout::{Dims, Layout};
pub(crate) use storage::{try_filled, try_zeroed};
pub use storage::{CpuStorage, Storage, StorageElement};
#[cfg(feature = "cuda")]
pub(crate) use storage::CudaStorage;

use crate::autograd::Node;

/// An n-dimensional array with optional gradient tracking.
///
/// Cloning a `Tensor` is cheap: clones share the same data and autograd identity, like two
/// Python references to one `torch.Tensor`. Views (`reshape`, `transpose`, `slice`, ...) share
/// storage with a new layout.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

pub(crate) struct TensorInner {
    pub(crate) id: u64,
    pub(crate) storage: Arc<RwLock<Storage>>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) requires_grad: AtomicBool,
    /// The op that produced this tensor, for tensors that require grad and are not leaves.
    pub(crate) grad_fn: Option<Arc<Node>>,
    /// Accumulated gradient of a leaf (or of a non-leaf that called `retain_grad`).
    pub(crate) grad: Mutex<Option<Tensor>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Tensor {
    /// A tensor over `storage` with `layout`, outside any autograd graph.
    pub(crate) fn from_parts(storage: Arc<RwLock<Storage>>, layout: Layout, dtype: DType, device: Device) -> Tensor {
        allocator::keep_freed_memory();
        Tensor(Arc::new(TensorInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            dtype,
            device,
            requires_grad: AtomicBool::new(false),
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor produced by an op with a backward function.
    pub(crate) fn with_grad_fn(self, node: Arc<Node>) -> Tensor {
        let inner = Arc::try_unwrap(self.0).unwrap_or_else(|arc| TensorInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: arc.storage.clone(),
            layout: arc.layout.clone(),
            dtype: arc.dtype,
            device: arc.device,
            requires_grad: AtomicBool::new(false),
            grad_fn: None,
            grad: Mutex::new(None),
        });
        Tensor(Arc::new(TensorInner { requires_grad: AtomicBool::new(true), grad_fn: Some(node), ..inner }))
    }

    /// A fresh contiguous tensor owning `storage`.
    pub(crate) fn from_storage(storage: CpuStorage, shape: &[usize]) -> Tensor {
        debug_assert_eq!(storage.len(), shape.iter().product::<usize>());
        let dtype = storage.dtype();
        Tensor::from_parts(Arc::new(RwLock::new(Storage::Cpu(storage))), Layout::contiguous(shape), dtype, Device::Cpu)
    }

    /// A new view of this tensor's storage (no autograd edge; callers record one).
    pub(crate) fn view_with(&self, layout: Layout) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), layout, self.0.dtype, self.0.device)
    }

    /// Builds a tensor from a vector and a shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Tensor {
        Self::try_from_vec(data, shape).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let n = layout::checked_numel("from_vec", shape)?;
        if n != data.len() {
            return Err(Error::invalid("from_vec", shape, format!("{} elements given for a shape of {n}", data.len())));
        }
        Ok(Tensor::from_storage(T::wrap(data), shape))
    }

    /// Builds a tensor from a slice (copied).
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Tensor {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::from_vec(vec![value], &[])
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }

    /// Alias of [`Tensor::shape`], as in `torch.Tensor.size()`.
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }

    /// Size of one dimension (negative counts from the end).
    pub fn size(&self, dim: isize) -> usize {
        let d = layout::normalize_dim("size", dim, self.rank()).unwrap_or_else(|e| panic!("{e}"));
        self.shape().get(d).copied().unwrap_or(1)
    }

    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    pub fn device(&self) -> Device {
        self.0.device
    }

    /// This tensor on `device` (itself when already there), like `torch.Tensor.to(device)`:
    /// a copy whose gradient flows back to this tensor's device. `Device::Cuda(n)` needs the
    /// `cuda` feature and a driver; otherwise the error says which is missing.
    pub fn try_to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        {
            crate::cuda::to_device(self, device)
        }
        #[cfg(not(feature = "cuda"))]
        Err(Error::DeviceUnavailable { op: "to_device", device, why: device.why_unavailable().unwrap_or_default() })
    }

    /// The panicking form of [`Tensor::try_to_device`].
    #[track_caller]
    pub fn to_device(&self, device: Device) -> Tensor {
        self.try_to_device(device).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    pub fn strides(&self) -> &[usize] {
        &self.0.layout.strides
    }

    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// A process-unique identity (clones share it; views get their own).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Whether two tensors share storage (one is a view of the other, or both of a third).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The elements in row-major order, converted to `T`'s dtype if needed. For a tensor on a
    /// GPU this waits for its queued work and copies the elements to the host.
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        self.try_to_vec().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tensor::to_vec`], with a device error (a failed copy from the GPU) as a `Result`.
    pub fn try_to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.device() != Device::Cpu {
            return crate::autograd::no_grad(|| self.try_to_device(Device::Cpu))?.try_to_vec();
        }
        let t = if self.dtype() == T::DTYPE { self.clone() } else { crate::autograd::no_grad(|| self.try_to_dtype(T::DTYPE))? };
        let storage = t.storage();
        let src = storage.cpu()?.as_slice::<T>();
        let l = &t.0.layout;
        if l.is_contiguous() {
            return Ok(src[l.offset..l.offset + l.numel()].to_vec());
        }
        let mut out = vec![T::default(); l.numel()];
        tensorbrain_kernels::strided::copy(src, l.offset, &l.shape, &l.strides, &mut out);
        Ok(out)
    }

    /// The elements of a 2-D tensor as rows.
    pub fn to_vec2<T: Element>(&self) -> Vec<Vec<T>> {
        assert_eq!(self.rank(), 2, "to_vec2 needs a 2-D tensor, got shape {:?}", self.shape());
        let cols = self.shape()[1];
        let v = self.to_vec::<T>();
        if cols == 0 {
            return vec![vec![]; self.shape()[0]];
        }
        v.chunks(cols).map(|c| c.to_vec()).collect()
    }

    /// The value of a one-element tensor.
    pub fn item<T: Element>(&self) -> T {
        self.try_item().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_item<T: Element>(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(Error::invalid("item", self.shape(), "only one-element tensors can be converted to a scalar"));
        }
        Ok(self.try_to_vec::<T>()?[0])
    }

    /// The elements in row-major order as a new vector of this tensor's dtype `T`, allocated
    /// fallibly: an expanded view can describe far more elements than its storage holds, so the
    /// copy may be impossibly large (an error naming `op`, the shape and the bytes).
    pub(crate) fn try_contiguous_vec<T: Element>(&self, op: &'static str) -> Result<Vec<T>> {
        let mut out = try_zeroed::<T>(op, self.shape())?;
        let storage = self.storage();
        let l = &self.0.layout;
        tensorbrain_kernels::strided::copy(storage.cpu()?.as_slice::<T>(), l.offset, &l.shape, &l.strides, &mut out);
        Ok(out)
    }

    /// Runs `f` on a contiguous slice of this tensor's elements, copying only if it is a
    /// non-contiguous view. `T` must be this tensor's dtype. An error for a tensor on a GPU:
    /// the callers are CPU kernels.
    pub(crate) fn with_contiguous<T: Element, R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        let storage = self.storage();
        let src = storage.cpu()?.as_slice::<T>();
        let l = &self.0.layout;
        if l.is_contiguous() {
            Ok(f(&src[l.offset..l.offset + l.numel()]))
        } else {
            let mut buf = vec![T::default(); l.numel()];
            tensorbrain_kernels::strided::copy(src, l.offset, &l.shape, &l.strides, &mut buf);
            Ok(f(&buf))
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
