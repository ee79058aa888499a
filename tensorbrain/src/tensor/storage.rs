//! The memory behind tensors. Several tensors (views) may share one storage.

use half::{bf16, f16};

use super::layout::checked_numel;
use super::{DType, Device, Element, Error, Result};

/// A vector of `shape`'s element count of `value`, allocated fallibly: a shape whose element
/// count overflows, or whose memory the allocator refuses, is an error naming `op`, the shape
/// and the bytes, instead of an abort of the whole process. Every op that creates a tensor of a
/// size the caller chose (creation ops, matmul, broadcasting, copies of expanded views)
/// allocates through here.
pub(crate) fn try_filled<T: Element>(op: &'static str, shape: &[usize], value: T) -> Result<Vec<T>> {
    let n = checked_numel(op, shape)?;
    let bytes = n as u128 * std::mem::size_of::<T>() as u128;
    let error = |why| Error::Alloc { op, shape: shape.to_vec(), dtype: T::DTYPE, bytes, why };
    if bytes > isize::MAX as u128 {
        return Err(error("more than the largest possible allocation (isize::MAX bytes)"));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| error("out of memory"))?;
    v.resize(n, value);
    Ok(v)
}

/// [`try_filled`] with zeros (`T::default()`), for outputs a kernel overwrites.
pub(crate) fn try_zeroed<T: Element>(op: &'static str, shape: &[usize]) -> Result<Vec<T>> {
    try_filled(op, shape, T::default())
}

/// Host memory, one variant per dtype. Kernels borrow typed slices from it.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    Bool(Vec<bool>),
}

/// A tensor's memory: host memory, or (feature `cuda`) memory on a GPU.
///
/// CPU kernels reach host memory through [`Storage::cpu`], which is an error for device
/// memory: an op without a kernel for the tensor's device says so instead of reading memory it
/// cannot see. The CUDA dispatch (`crate::cuda`) takes the device variant before that point.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    #[cfg(feature = "cuda")]
    Cuda(CudaStorage),
}

/// Memory on a GPU: `len` elements of `dtype` in a block of the device's caching allocator
/// (returned to it when the last tensor sharing this storage is dropped).
#[cfg(feature = "cuda")]
#[derive(Debug)]
pub struct CudaStorage {
    pub(crate) buf: tensorbrain_kernels::cuda::runtime::DeviceBuffer,
    pub(crate) dtype: DType,
    pub(crate) len: usize,
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Device::Cuda(c.buf.ordinal()),
        }
    }

    /// Host memory, for CPU kernels; an error naming the device for memory on a GPU.
    pub fn cpu(&self) -> Result<&CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Err(self.not_on_cpu()),
        }
    }

    pub fn cpu_mut(&mut self) -> Result<&mut CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Err(self.not_on_cpu()),
        }
    }

    #[cfg(feature = "cuda")]
    fn not_on_cpu(&self) -> Error {
        Error::NoDeviceKernel { device: self.device() }
    }
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::I16(_) => DType::I16,
            CpuStorage::I8(_) => DType::I8,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::I32(v) => v.len(),
            CpuStorage::U8(v) => v.len(),
            CpuStorage::I16(v) => v.len(),
            CpuStorage::I8(v) => v.len(),
            CpuStorage::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage as a slice of `T`. Panics on a dtype mismatch: callers dispatch on dtype
    /// first, so a mismatch is a bug in TensorBrain, not in user code.
    #[inline]
    pub fn as_slice<T: Element>(&self) -> &[T] {
        T::slice(self).unwrap_or_else(|| {
            panic!("internal: storage holds {} but {} was requested", self.dtype(), T::DTYPE)
        })
    }

    #[inline]
    pub fn as_mut_slice<T: Element>(&mut self) -> &mut [T] {
        let dtype = self.dtype();
        T::slice_mut(self).unwrap_or_else(|| {
            panic!("internal: storage holds {dtype} but {} was requested", T::DTYPE)
        })
    }

    /// Raw bytes (little-endian on every supported host), for checkpoints.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
            CpuStorage::F16(v) => bytemuck::cast_slice(v),
            CpuStorage::BF16(v) => bytemuck::cast_slice(v),
            CpuStorage::I64(v) => bytemuck::cast_slice(v),
            CpuStorage::I32(v) => bytemuck::cast_slice(v),
            CpuStorage::U8(v) => v,
            CpuStorage::I16(v) => bytemuck::cast_slice(v),
            CpuStorage::I8(v) => bytemuck::cast_slice(v),
            // One byte per bool, 0 or 1 (what safetensors' BOOL and NumPy expect).
            CpuStorage::Bool(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Moving typed vectors in and out of [`CpuStorage`].
pub trait StorageElement: Sized {
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// The vector of a storage of this type, moved out (`None` for another dtype).
    fn take_vec(s: CpuStorage) -> Option<Vec<Self>>;
}

macro_rules! storage_element {
    ($t:ty, $variant:ident) => {
        impl StorageElement for $t {
            #[inline]
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            #[inline]
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            #[inline]
            fn wrap(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
            #[inline]
            fn take_vec(s: CpuStorage) -> Option<Vec<Self>> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

storage_element!(f32, F32);
storage_element!(f64, F64);
storage_element!(f16, F16);
storage_element!(bf16, BF16);
storage_element!(i64, I64);
storage_element!(i32, I32);
storage_element!(u8, U8);
storage_element!(i16, I16);
storage_element!(i8, I8);
storage_element!(bool, Bool);
