//! One error type for the CUDA backend, so callers (the runtime's `Error::DeviceUnavailable`)
//! can show a user what was missing instead of a cudarc panic.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CudaError {
    /// The driver library could not be loaded (no NVIDIA driver installed on this machine).
    NoDriver { lib: String, why: String },
    /// NVRTC could not be loaded.
    NoNvrtc { tried: Vec<String>, why: String },
    /// A driver API call failed (the driver's own error name and what we were doing).
    Driver { during: String, error: String },
    /// The device ordinal does not exist.
    NoSuchDevice { ordinal: usize, count: usize },
    /// NVRTC rejected a source; `log` is NVRTC's program log.
    Compile { name: String, arch: String, log: String },
    /// The allocator could not get memory even after releasing its cache.
    OutOfMemory { requested: usize, reserved: usize, why: String },
    /// NCCL could not be loaded, lacks a symbol, or is too old.
    NoNccl { tried: Vec<String>, why: String },
    /// An NCCL call failed (what we were doing, NCCL's error string and its last-error text).
    Nccl { during: String, error: String },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NoDriver { lib, why } => write!(f, "no CUDA driver found ({lib}): {why}"),
            CudaError::NoNvrtc { tried, why } => write!(
                f,
                "NVRTC not found (tried {}): {why}; set TENSORBRAIN_NVRTC_LIB to the path of libnvrtc.so.12",
                tried.join(", ")
            ),
            CudaError::Driver { during, error } => write!(f, "CUDA driver error while {during}: {error}"),
            CudaError::NoSuchDevice { ordinal, count } => {
                write!(f, "CUDA device {ordinal} does not exist ({count} device(s) visible)")
            }
            CudaError::Compile { name, arch, log } => write!(f, "NVRTC failed to compile {name} for {arch}:\n{log}"),
            CudaError::OutOfMemory { requested, reserved, why } => write!(
                f,
                "CUDA out of memory: tried to allocate {requested} bytes with {reserved} bytes reserved by the caching allocator (after emptying its cache): {why}"
            ),
            CudaError::NoNccl { tried, why } => write!(
                f,
                "NCCL not usable (tried {}): {why}; install NCCL 2.14 or newer (apt-get install libnccl2, or pip install nvidia-nccl-cu12) or set TENSORBRAIN_NCCL_LIB to the path of libnccl.so.2",
                tried.join(", ")
            ),
            CudaError::Nccl { during, error } => write!(f, "NCCL error while {during}: {error}"),
        }
    }
}

impl std::error::Error for CudaError {}
