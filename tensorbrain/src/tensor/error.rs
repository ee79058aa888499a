//! The error type of every fallible TensorBrain operation.

use super::{DType, Device};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, naming the op and the values involved, so the message alone is enough to fix
/// the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shapes {lhs:?} and {rhs:?} {why}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize>, why: &'static str },

    #[error("{op}: {msg} (input shape {shape:?})")]
    InvalidArgument { op: &'static str, shape: Vec<usize>, msg: String },

    #[error("{op}: dimension {dim} is out of range for a tensor of rank {rank} (expected {min}..={max})", min = -(*rank as isize).max(1), max = (*rank as isize - 1).max(0))]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },

    #[error("{op}: dtype {got} is not supported here (expected {expected})")]
    DType { op: &'static str, got: DType, expected: &'static str },

    #[error("{op}: dtypes {lhs} and {rhs} differ; convert one with to_dtype first")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },

    #[error("{op}: tensors are on different devices ({lhs} and {rhs})")]
    DeviceMismatch { op: &'static str, lhs: Device, rhs: Device },

    /// `why` says what was found: no `cuda` feature in this build, no driver (and which
    /// library failed to load), no such device, or a GPU that tensors cannot use yet.
    #[error("{op}: device {device} is not available: {why}")]
    DeviceUnavailable { op: &'static str, device: Device, why: String },

    /// An op on a device failed or is not available there (`why` says which).
    #[error("{op} on {device}: {why}")]
    DeviceOp { op: &'static str, device: Device, why: String },

    /// An op ran on a tensor whose memory is on a device the op has no kernel for yet.
    #[error("this op has no kernel for {device} yet, and its input is there (docs/cuda.md lists the ops that run on a GPU); move the input with .to_device(Device::Cpu) first")]
    NoDeviceKernel { device: Device },

    #[error("{op}: index {index} is out of bounds for dimension {dim} of size {size}")]
    IndexOutOfBounds { op: &'static str, index: i64, dim: usize, size: usize },

    #[error("{op}: shape {shape:?} has too many elements: the product of its sizes overflows a {bits}-bit usize", bits = usize::BITS)]
    ShapeOverflow { op: &'static str, shape: Vec<usize> },

    #[error("{op}: cannot allocate {bytes} bytes ({human}) for shape {shape:?} of {dtype}: {why}", human = human_bytes(*bytes))]
    Alloc { op: &'static str, shape: Vec<usize>, dtype: DType, bytes: u128, why: &'static str },

    #[error("autograd: {0}")]
    Autograd(String),

    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error("{0}")]
    Msg(String),
}

/// `bytes` in binary units with one decimal: `256.0 PiB`.
fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Error {
    pub(crate) fn shape(
        op: &'static str,
        lhs: &[usize],
        rhs: &[usize],
        why: &'static str,
    ) -> Error {
        Error::ShapeMismatch { op, lhs: lhs.to_vec(), rhs: rhs.to_vec(), why }
    }

    pub(crate) fn invalid(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Error {
        Error::InvalidArgument { op, shape: shape.to_vec(), msg: msg.into() }
    }
}
