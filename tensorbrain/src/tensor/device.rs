//! Where a tensor's memory lives.

/// A compute device. Device is a run-time property of a tensor, not a type parameter, so the
/// same model code runs anywhere. `Cuda(n)` holds tensors in a build with the `cuda` feature
/// on a machine whose driver sees GPU `n` (`tensor.to_device(Device::Cuda(0))`); elsewhere
/// moving a tensor there is [`crate::Error::DeviceUnavailable`] with
/// [`Device::why_unavailable`] as the reason. docs/cuda.md lists the ops that run on a GPU.
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

impl std::str::FromStr for Device {
    type Err = String;

    /// `cpu`, `cuda` (device 0) or `cuda:N`, as PyTorch writes devices.
    fn from_str(s: &str) -> Result<Device, String> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device {other:?}: expected cpu, cuda or cuda:N")),
        }
    }
}

impl Device {
    /// Why tensors cannot be placed on this device, or `None` if they can. For CUDA this asks
    /// the driver, so the message says what is missing on this machine: a build without the
    /// `cuda` feature, no driver library (naming it and the loader's reason), or no such
    /// device. It only counts devices; it does not create a context (which would take GPU
    /// memory).
    pub fn why_unavailable(&self) -> Option<String> {
        match *self {
            Device::Cpu => None,
            Device::Cuda(n) => cuda_unavailable(n),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_unavailable(_ordinal: usize) -> Option<String> {
    Some("built without the `cuda` feature".to_string())
}

#[cfg(feature = "cuda")]
fn cuda_unavailable(ordinal: usize) -> Option<String> {
    use tensorbrain_kernels::cuda::{driver::device_count, CudaError};
    match device_count() {
        Err(e) => Some(e.to_string()),
        Ok(count) if ordinal >= count => Some(CudaError::NoSuchDevice { ordinal, count }.to_string()),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_pytorch_writes_them() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
        assert_eq!(Device::Cuda(3).to_string().parse::<Device>(), Ok(Device::Cuda(3)));
        let err = "gpu".parse::<Device>().unwrap_err();
        assert!(err.contains("\"gpu\"") && err.contains("cuda:N"), "{err}");
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[test]
    fn cpu_is_available_and_cuda_says_why_not() {
        assert_eq!(Device::Cpu.why_unavailable(), None);
        #[cfg(not(feature = "cuda"))]
        let why = {
            let why = Device::Cuda(0).why_unavailable().unwrap();
            assert_eq!(why, "built without the `cuda` feature");
            why
        };
        // With the feature: on a machine without a driver, exactly the driver probe's reason;
        // with one, device 0 is available and a device past the last one is not.
        #[cfg(feature = "cuda")]
        let why = match tensorbrain_kernels::cuda::driver::probe_driver() {
            Err(e) => {
                let why = Device::Cuda(0).why_unavailable().unwrap();
                assert_eq!(why, e.to_string());
                assert!(why.starts_with("no CUDA driver found (libcuda.so.1): "), "{why}");
                why
            }
            Ok(()) => {
                let why = Device::Cuda(1 << 20).why_unavailable().unwrap();
                assert!(why.contains("does not exist"), "{why}");
                why
            }
        };
        let err = crate::Error::DeviceUnavailable { op: "to_device", device: Device::Cuda(0), why: why.clone() };
        assert_eq!(err.to_string(), format!("to_device: device cuda:0 is not available: {why}"));
    }
}
