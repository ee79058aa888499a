//! Device, context and stream handles over cudarc's driver API.
//!
//! cudarc loads `libcuda` lazily on the first driver call and panics when it is missing. Asking
//! for a GPU on a machine without one is an ordinary user error, so [`probe_driver`] first opens
//! the library itself (with `libloading`) and turns a failure into [`CudaError::NoDriver`]; the
//! cudarc calls after it are also wrapped in `catch_unwind` in case a symbol is missing from an
//! old driver.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaStream, DriverError};

use super::CudaError;

/// The driver library's name: the one an NVIDIA driver installs (`libcuda.so` without the
/// version only exists with the development package).
pub const DRIVER_LIB: &str = if cfg!(windows) { "nvcuda.dll" } else { "libcuda.so.1" };

/// Opens `lib`, or says why it cannot be opened. The library stays loaded for the life of the
/// process (cudarc's own `dlopen` of the same library then finds it already mapped).
pub fn probe_library(lib: &str) -> Result<&'static libloading::Library, CudaError> {
    // SAFETY: loading a shared library runs its initialisers; libcuda's are what every CUDA
    // program runs too.
    match unsafe { libloading::Library::new(lib) } {
        Ok(l) => Ok(Box::leak(Box::new(l))),
        Err(e) => Err(CudaError::NoDriver { lib: lib.to_string(), why: loader_error(&e) }),
    }
}

/// The loader's reason: libloading's `Display` says only "dlopen failed" and keeps dlerror()'s
/// text (e.g. "libcuda.so.1: cannot open shared object file") in `source()`.
pub(crate) fn loader_error(e: &libloading::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Whether the driver library can be loaded, probed once per process.
pub fn probe_driver() -> Result<(), CudaError> {
    static PROBE: OnceLock<Result<(), CudaError>> = OnceLock::new();
    PROBE.get_or_init(|| probe_library(DRIVER_LIB).map(|_| ())).clone()
}

/// Runs a cudarc call, turning both its error and a panic inside it into a [`CudaError`].
pub fn guarded<T>(during: &str, f: impl FnOnce() -> Result<T, DriverError>) -> Result<T, CudaError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CudaError::Driver { during: during.to_string(), error: format!("{e:?}") }),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic without a message".to_string());
            Err(CudaError::Driver { during: during.to_string(), error: msg })
        }
    }
}

/// Number of visible CUDA devices; an error (not 0) when there is no driver, so callers can say
/// why.
pub fn device_count() -> Result<usize, CudaError> {
    probe_driver()?;
    let n = guarded("counting devices", CudaContext::device_count)?;
    Ok(n.max(0) as usize)
}

/// One GPU: its primary context.
#[derive(Clone, Debug)]
pub struct Device {
    ctx: Arc<CudaContext>,
}

impl Device {
    /// Opens device `ordinal`, or explains why not (no driver, no such device, driver error).
    pub fn new(ordinal: usize) -> Result<Device, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoSuchDevice { ordinal, count });
        }
        let ctx = guarded("creating a context", || CudaContext::new(ordinal))?;
        Ok(Device { ctx })
    }

    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    pub fn name(&self) -> Result<String, CudaError> {
        guarded("reading the device name", || self.ctx.name())
    }

    /// The cudarc context, for code in this module that launches kernels or copies memory.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The context's default stream.
    pub fn default_stream(&self) -> Stream {
        Stream { inner: self.ctx.default_stream() }
    }

    /// A new non-blocking stream.
    pub fn new_stream(&self) -> Result<Stream, CudaError> {
        Ok(Stream { inner: guarded("creating a stream", || self.ctx.new_stream())? })
    }

    /// The compute capability as `sm_XY`, the architecture NVRTC compiles for.
    pub fn arch(&self) -> Result<String, CudaError> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let major = guarded("reading the compute capability", || self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR))?;
        let minor = guarded("reading the compute capability", || self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))?;
        Ok(format!("sm_{major}{minor}"))
    }

    pub fn synchronize(&self) -> Result<(), CudaError> {
        guarded("synchronizing the device", || self.ctx.synchronize())
    }
}

/// Identifies a stream (the caching allocator keeps one free pool per stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// A stream; work on one stream runs in order. The caching allocator keys its pools by
/// [`Stream::id`].
#[derive(Clone, Debug)]
pub struct Stream {
    inner: Arc<CudaStream>,
}

impl Stream {
    pub fn cuda(&self) -> &Arc<CudaStream> {
        &self.inner
    }

    /// The driver's stream handle as a number: unique among live streams.
    pub fn id(&self) -> StreamId {
        StreamId(self.inner.cu_stream() as usize as u64)
    }

    pub fn synchronize(&self) -> Result<(), CudaError> {
        guarded("synchronizing a stream", || self.inner.synchronize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let err = probe_library("libtensorbrain-does-not-exist.so.1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("no CUDA driver found (libtensorbrain-does-not-exist.so.1): "), "{msg}");
        // The loader's reason is kept, so a user sees e.g. "cannot open shared object file".
        assert!(msg.contains("cannot open shared object file"), "{msg}");
    }
}
