//! Compiled kernels on one device: NVRTC-compiles a `.cu` source or a fused program for the
//! device's architecture (through the PTX cache), loads it as a module once and hands out its
//! functions. This is the glue the GPU tests (and later the runtime's dispatch) launch through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use super::codegen::{kernel_name, module_source, DType};
use super::driver::Device;
use super::nvrtc::PtxCache;
use super::sources::full_source;
use super::CudaError;
use crate::fused::Program;

pub struct KernelLibrary {
    device: Device,
    arch: String,
    ptx: PtxCache,
    /// Loaded modules by source file name or generated kernel name.
    modules: Mutex<HashMap<String, Arc<CudaModule>>>,
}

impl KernelLibrary {
    pub fn new(device: Device) -> Result<KernelLibrary, CudaError> {
        let arch = device.arch()?;
        Ok(KernelLibrary { device, arch, ptx: PtxCache::new(), modules: Mutex::new(HashMap::new()) })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The SM architecture kernels are compiled for (`sm_90` on an H100/H200).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    fn module(&self, key: &str, source: impl FnOnce() -> Result<String, CudaError>) -> Result<Arc<CudaModule>, CudaError> {
        if let Some(m) = self.modules.lock().unwrap().get(key) {
            return Ok(m.clone());
        }
        let src = source()?;
        let compiled = self.ptx.get_or_compile(key, &src, &self.arch, &[])?;
        let module = self
            .device
            .context()
            .load_module(Ptx::from_src(compiled.ptx.clone()))
            .map_err(|e| CudaError::Driver { during: format!("loading the module of {key}"), error: format!("{e:?}") })?;
        Ok(self.modules.lock().unwrap().entry(key.to_string()).or_insert(module).clone())
    }

    /// Function `kernel` (e.g. `softmax_fwd_f32`) of the hand-written source `file`
    /// (e.g. `softmax.cu`).
    pub fn source_function(&self, file: &str, kernel: &str) -> Result<CudaFunction, CudaError> {
        let module = self.module(file, || {
            full_source(file).ok_or_else(|| CudaError::Compile { name: file.into(), arch: self.arch.clone(), log: "no such CUDA source".into() })
        })?;
        module
            .load_function(kernel)
            .map_err(|e| CudaError::Driver { during: format!("looking up {kernel} in {file}"), error: format!("{e:?}") })
    }

    /// The generated kernel of a fused program (compiled on first use).
    pub fn fused_function(&self, program: &Program, dtype: DType) -> Result<CudaFunction, CudaError> {
        let name = kernel_name(program, dtype);
        let module = self.module(&name, || Ok(module_source(program, &name, dtype)))?;
        module
            .load_function(&name)
            .map_err(|e| CudaError::Driver { during: format!("looking up {name}"), error: format!("{e:?}") })
    }

    /// Streaming multiprocessors, for [`super::launch::elementwise`].
    pub fn sm_count(&self) -> Result<u32, CudaError> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        self.device
            .context()
            .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|n| n.max(1) as u32)
            .map_err(|e| CudaError::Driver { during: "reading the SM count".into(), error: format!("{e:?}") })
    }
}
