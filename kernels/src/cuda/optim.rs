//! The launcher of adam.cu's fused Adam/AdamW step: the parameter, its first and second
//! moments (and AMSGrad's running maximum) updated in place in one pass over device memory.

use super::codegen::DType;
use super::runtime::{CudaRuntime, DeviceBuffer, KernelArg};
use super::CudaError;

/// One step's scalars, computed on the host in f64 exactly as `tensorbrain/src/optim/adam.rs`
/// computes them, then rounded to the parameter's dtype by the launcher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f64,
    /// `1 - beta1` (the weight of the gradient in the first moment's lerp).
    pub w1: f64,
    pub beta2: f64,
    /// `1 - beta2`.
    pub w2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// `1 - lr * weight_decay` (AdamW's decoupled decay).
    pub decay_factor: f64,
    pub decay: AdamDecay,
    pub maximize: bool,
}

/// How weight decay enters the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdamDecay {
    None = 0,
    /// Adam's L2 term, added to the gradient.
    L2 = 1,
    /// AdamW's decoupled decay, applied to the parameter.
    Decoupled = 2,
}

/// A contiguous operand: `buf` from element `offset`.
pub type Operand<'a> = (&'a DeviceBuffer, usize);

impl CudaRuntime {
    /// One Adam step over `n` elements of `dtype`: `param`, `m`, `v` (and `vmax` with AMSGrad)
    /// are updated in place from `grad`. Every operand holds `n` contiguous elements from its
    /// offset, and no two of the written ones overlap.
    #[allow(clippy::too_many_arguments)]
    pub fn adam_step(
        &'static self,
        dtype: DType,
        n: usize,
        param: Operand<'_>,
        grad: Operand<'_>,
        m: Operand<'_>,
        v: Operand<'_>,
        vmax: Option<Operand<'_>>,
        s: &AdamScalars,
    ) -> Result<(), CudaError> {
        let ptr = |o: Operand<'_>| {
            assert!((o.1 + n) * dtype.size() <= o.0.bytes(), "internal: an Adam operand is shorter than the parameter");
            KernelArg::Ptr(o.0.at(dtype, o.1))
        };
        let scalar = |x: f64| match dtype {
            DType::F32 => KernelArg::F32(x as f32),
            DType::F64 => KernelArg::F64(x),
        };
        let args = [
            ptr(param),
            ptr(grad),
            ptr(m),
            ptr(v),
            vmax.map_or(KernelArg::Ptr(0), ptr),
            KernelArg::I64(n as i64),
            scalar(s.step_size),
            scalar(s.bc2_sqrt),
            scalar(s.w1),
            scalar(s.beta2),
            scalar(s.w2),
            scalar(s.eps),
            scalar(s.weight_decay),
            scalar(s.decay_factor),
            KernelArg::I32(s.decay as i32),
            KernelArg::I32(i32::from(s.maximize)),
        ];
        self.launch_elements("adam.cu", &format!("adam_step_{}", dtype.suffix()), n, &args)
    }
}
