//! Where a tensor's memory lives.

/// A compute device. Device is a run-time property of a tensor, not a type parameter, so the
/// same model code runs anywhere. Only `Cpu` has tensor storage today; `Cuda(n)` is for the
/// CUDA backend (kernels/src/cuda, feature `cuda`), and every op on it returns
/// [`crate::Error::DeviceUnavailable`] with [`Device::why_unavailable`] as the reason until
/// tensors can live on a GPU.
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

impl Device {
    /// Why tensors cannot be placed on this device, or `None` if they can (the CPU). For CUDA
    /// this asks the driver, so the message says what is missing on this machine: a build
    /// without the `cuda` feature, no driver library (naming it and the loader's reason), no
    /// such device, or that the device exists but the runtime has no CUDA tensor storage yet.
    /// It only counts devices; it does not create a context (which would take GPU memory).
    pub fn why_unavailable(&self) -> Option<String> {
        match *self {
            Device::Cpu => None,
            Device::Cuda(n) => Some(cuda_unavailable(n)),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_unavailable(_ordinal: usize) -> String {
    "built without the `cuda` feature".to_string()
}

#[cfg(feature = "cuda")]
fn cuda_unavailable(ordinal: usize) -> String {
    use tensorbrain_kernels::cuda::{driver::device_count, CudaError};
    match device_count() {
        Err(e) => e.to_string(),
        Ok(count) if ordinal >= count => CudaError::NoSuchDevice { ordinal, count }.to_string(),
        Ok(count) => format!(
            "the CUDA driver sees {count} device(s), but tensors cannot be stored on a GPU yet (the CUDA kernels exist in tensorbrain-kernels; the runtime does not dispatch to them)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_available_and_cuda_says_why_not() {
        assert_eq!(Device::Cpu.why_unavailable(), None);
        let why = Device::Cuda(0).why_unavailable().unwrap();
        #[cfg(not(feature = "cuda"))]
        assert_eq!(why, "built without the `cuda` feature");
        // With the feature: on a machine without a driver, exactly the driver probe's reason.
        #[cfg(feature = "cuda")]
        match tensorbrain_kernels::cuda::driver::probe_driver() {
            Err(e) => {
                assert_eq!(why, e.to_string());
                assert!(why.starts_with("no CUDA driver found (libcuda.so.1): "), "{why}");
            }
            Ok(()) => assert!(why.contains("CUDA"), "{why}"),
        }
        let err = crate::Error::DeviceUnavailable { op: "to_device", device: Device::Cuda(0), why: why.clone() };
        assert_eq!(err.to_string(), format!("to_device: device cuda:0 is not available: {why}"));
    }
}
