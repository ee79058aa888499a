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
        }
    }
}

impl std::error::Error for CudaError {}
