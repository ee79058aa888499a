//! Tests that need a CUDA device are `#[ignore = "needs a CUDA device"]`; run them on a GPU
//! machine with `cargo test -p tensorbrain-kernels --features cuda --test cuda_device -- --ignored`
//! (and TENSORBRAIN_NVRTC_LIB set if libnvrtc is not on the loader path).
//!
//! The one test that is not ignored checks the other side: on a machine without a driver,
//! asking for a device is a clear error, not a panic.
#![cfg(feature = "cuda")]

use tensorbrain_kernels::cuda::driver::{device_count, Device, DRIVER_LIB};
use tensorbrain_kernels::cuda::CudaError;

/// Whether this machine has a loadable driver library (decides what the test below expects).
fn driver_present() -> bool {
    // SAFETY: only loads the library, as the backend itself would.
    unsafe { libloading::Library::new(DRIVER_LIB) }.is_ok()
}

#[test]
fn asking_for_a_device_without_a_driver_is_a_clear_error() {
    let got = std::panic::catch_unwind(|| Device::new(0).map(|d| d.ordinal()));
    let got = got.expect("Device::new panicked; it must return an error instead");
    if driver_present() {
        // On a GPU machine the same call must get past the probe.
        assert!(!matches!(got, Err(CudaError::NoDriver { .. })), "{got:?}");
        return;
    }
    let err = got.expect_err("a device without a driver");
    assert!(matches!(err, CudaError::NoDriver { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("no CUDA driver found ({DRIVER_LIB}): ")), "{msg}");
    // Asking again gives the same answer (the probe is cached, and cudarc was never reached).
    assert_eq!(Device::new(3).unwrap_err().to_string(), msg);
    assert_eq!(device_count().unwrap_err().to_string(), msg);
}
