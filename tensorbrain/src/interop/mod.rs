//! Interop with the Rust and NumPy array ecosystems (the `ndarray` feature, on by default):
//!
//! - [`ndarray`](::ndarray) arrays to and from runtime tensors ([`Tensor::from_ndarray`],
//!   [`Tensor::try_into_ndarray`], [`Tensor::try_with_ndarray_view`], ...), without copying
//!   where the memory layouts allow, and typed [`crate::shape::Tensor`]s from fixed-rank
//!   arrays with their shape checked;
//! - NumPy's `.npy` and `.npz` files ([`read_npy`], [`write_npy`], [`load_npz`], [`save_npz`])
//!   through the `ndarray-npy` crate, so arrays cross to and from NumPy and PyTorch
//!   (`np.save`, `np.savez`, `np.savez_compressed`, `torch.from_numpy`).
//!
//! [`Tensor`]: crate::Tensor
//! [`Tensor::from_ndarray`]: crate::Tensor::from_ndarray
//! [`Tensor::try_into_ndarray`]: crate::Tensor::try_into_ndarray
//! [`Tensor::try_with_ndarray_view`]: crate::Tensor::try_with_ndarray_view

mod array;
mod npy;

pub use npy::{load_npz, read_npy, save_npz, write_npy};
