//! Fused elementwise programs (the `#[model]` graphs' fusion groups, forward and generated
//! backward) on a GPU: one generated CUDA kernel per program and dtype (`cuda::codegen`, from
//! the same `fused::Program` the CPU interpreter runs), compiled by NVRTC on first use.

use tensorbrain_kernels::cuda::runtime::Strided;
use tensorbrain_kernels::fused::Program;

use super::{device_buffer, device_error, kernel_dtype, runtime, wrap};
use crate::tensor::layout::Layout;
use crate::tensor::{DType, Device, Result, Tensor};

/// Whether the generated kernel can run `inputs`: all on one GPU, all f32 or all f64.
pub(crate) fn runs_on_device(inputs: &[&Tensor]) -> bool {
    let Some(first) = inputs.first() else { return false };
    let (device, dtype) = (first.device(), first.dtype());
    device != Device::Cpu && matches!(dtype, DType::F32 | DType::F64) && inputs.iter().all(|t| t.device() == device && t.dtype() == dtype)
}

/// `program` over `inputs` broadcast to `shape` (checked by [`runs_on_device`]); not recorded.
pub(crate) fn fused(program: &Program, inputs: &[&Tensor], shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "fused";
    let (device, dtype) = (inputs[0].device(), inputs[0].dtype());
    let dt = kernel_dtype(OP, dtype, device)?;
    let rt = runtime(device, OP)?;
    let layouts: Vec<Layout> = inputs.iter().map(|t| t.layout().broadcast_to(shape)).collect();
    // Read locks on every input until the launch is queued (two inputs may share a storage:
    // read locks do not conflict).
    let guards: Vec<_> = inputs.iter().map(|t| t.storage()).collect();
    let strided: Vec<Strided<'_>> =
        guards.iter().zip(&layouts).map(|(g, l)| Strided { buf: device_buffer(g), offset: l.offset, strides: &l.strides }).collect();
    let buf = rt.fused(program, dt, shape, &strided).map_err(|e| device_error(OP, device, e))?;
    Ok(wrap(buf, dtype, shape))
}
