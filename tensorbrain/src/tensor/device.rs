//! Where a tensor's memory lives.

/// A compute device. Device is a run-time property of a tensor, not a type parameter, so the
/// same model code runs anywhere. Only `Cpu` has kernels today; `Cuda(n)` is reserved for the
/// CUDA backend and every op on it returns [`crate::Error::DeviceUnavailable`] until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
