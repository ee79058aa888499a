//! Run-time support for the kernels `#[model]` generates at compile time.
//!
//! The macro runs the IR passes and elementwise fusion on each model's forward and backward
//! graphs while the crate compiles. For every fused elementwise group it emits a Rust function
//! computing the group's expression on one element (through [`unary`], [`binary`],
//! [`scalar`], [`select`], which inline to straight-line float code) and calls
//! [`run_elementwise`] with it. That function runs the generated code over contiguous inputs of
//! the output's shape, in parallel chunks; for broadcast or strided inputs, and for dtypes other
//! than f32/f64, it falls back to the `tensorbrain_kernels::fused` interpreter of the same
//! program, so every case computes the same values. GEMM/conv epilogues go through
//! [`run_epilogue`] (the compile-time interpreter's blocked kernel).
//!
//! Nothing here is meant to be called by hand; the items are public for generated code.

use tensorbrain_ir::passes::Program;
use tensorbrain_ir::Op;
use tensorbrain_kernels::threads;

pub use tensorbrain_kernels::fused::{BinaryFn, Cmp, FusedFloat, ScalarFn, UnaryFn};
pub use tensorbrain_kernels::fused_scalar::{binary, scalar, select, unary};

use super::run::{self, Lowered};
use crate::tensor::{DType, Element, Error, Result, Tensor};

/// Output elements per task of a generated kernel.
const CHUNK: usize = 1 << 13;

/// `c` in the kernel's float type.
#[inline(always)]
pub fn constant<T: FusedFloat>(c: f64) -> T {
    T::from_f64(c)
}

/// A fused group as the generated code holds it: the program (for the interpreter fallback
/// and for epilogues) and, for an epilogue, its GEMM/conv head.
#[derive(Clone, Debug)]
pub struct GeneratedKernel {
    lowered: std::result::Result<Lowered, String>,
    head: Option<(Op, usize)>,
}

impl GeneratedKernel {
    /// An elementwise group.
    pub fn elementwise(p: &Program) -> GeneratedKernel {
        GeneratedKernel { lowered: Lowered::new(p).map_err(|e| e.to_string()), head: None }
    }

    /// `head` (matmul or conv) on its first `head_inputs` inputs, then `tail` on each block.
    pub fn epilogue(head: Op, head_inputs: usize, tail: &Program) -> GeneratedKernel {
        GeneratedKernel { lowered: Lowered::new(tail).map_err(|e| e.to_string()), head: Some((head, head_inputs)) }
    }

    fn lowered(&self) -> Result<&Lowered> {
        self.lowered.as_ref().map_err(|e| Error::Msg(format!("generated fused kernel: {e}")))
    }
}

/// The elements of `t` in order, if it is a contiguous `T` tensor of `shape`.
fn dense<'a, T: Element>(t: &Tensor, data: &'a [T], shape: &[usize]) -> Option<&'a [T]> {
    let l = t.layout();
    (t.dtype() == T::DTYPE && t.shape() == shape && l.is_contiguous()).then(|| &data[l.offset..l.offset + l.numel()])
}

/// Runs `f` on every element of contiguous same-shape inputs, or `None` if they are not.
fn generated<T, const N: usize>(inputs: [&Tensor; N], shape: &[usize], f: impl Fn([T; N]) -> T + Sync) -> Option<Tensor>
where
    T: FusedFloat + Element,
{
    let guards: Vec<_> = inputs.iter().map(|t| t.storage()).collect();
    let mut slices: [&[T]; N] = [&[]; N];
    for k in 0..N {
        if inputs[k].dtype() != T::DTYPE {
            return None;
        }
        slices[k] = dense(inputs[k], guards[k].cpu().ok()?.as_slice::<T>(), shape)?;
    }
    let numel: usize = shape.iter().product();
    let mut out = vec![T::zero(); numel];
    threads::for_each_chunk_mut(&mut out, CHUNK, numel.saturating_mul(8), |c, piece| {
        let start = c * CHUNK;
        let ins: [&[T]; N] = std::array::from_fn(|k| &slices[k][start..start + piece.len()]);
        tensorbrain_kernels::fused_scalar::map_elements(ins, piece, &f);
    });
    drop(guards);
    Some(Tensor::from_storage(T::wrap(out), shape))
}

/// Runs a generated elementwise kernel: `f32k`/`f64k` are the same generated function at both
/// float types. Falls back to the interpreter where the inputs are broadcast, strided or of
/// another dtype.
pub fn run_elementwise<const N: usize>(
    kernel: &GeneratedKernel,
    inputs: [&Tensor; N],
    f32k: impl Fn([f32; N]) -> f32 + Sync,
    f64k: impl Fn([f64; N]) -> f64 + Sync,
) -> Result<Tensor> {
    let lowered = kernel.lowered()?;
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = run::out_shape(lowered, &shapes)?;
    let dtype = inputs.first().map_or(DType::F32, |t| t.dtype());
    let fast = match dtype {
        DType::F32 if N > 0 => generated(inputs, &shape, f32k),
        DType::F64 if N > 0 => generated(inputs, &shape, f64k),
        _ => None,
    };
    match fast {
        Some(t) => Ok(t),
        None => run::run_fused(lowered, &inputs),
    }
}

/// Runs a generated epilogue kernel (GEMM or conv followed by its elementwise tail).
pub fn run_epilogue(kernel: &GeneratedKernel, inputs: &[&Tensor]) -> Result<Tensor> {
    let lowered = kernel.lowered()?;
    match &kernel.head {
        Some((head, head_inputs)) => run::run_epilogue(head, *head_inputs, lowered, inputs),
        None => run::run_fused(lowered, inputs),
    }
}

/// Kernel launches of a `#[model]`'s generated code in its current training mode, fused (what
/// runs) and unfused (one per IR op), from the compile-time fusion plan. A nested model call
/// counts as one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Inference (`forward`).
    pub forward: usize,
    /// The forward of a training step (which keeps what the backward reads).
    pub train_forward: usize,
    /// The backward of a training step with parameter gradients only.
    pub backward: usize,
    pub forward_unfused: usize,
    pub train_forward_unfused: usize,
    pub backward_unfused: usize,
}

impl std::fmt::Display for KernelCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernels per step: inference {} (unfused {}), training forward {} (unfused {}), backward {} (unfused {})",
            self.forward, self.forward_unfused, self.train_forward, self.train_forward_unfused, self.backward, self.backward_unfused
        )
    }
}

/// `t` as a tensor reference, whether generated code holds it by value or by reference.
#[inline(always)]
pub fn tensor<B: std::borrow::Borrow<Tensor>>(t: &B) -> &Tensor {
    t.borrow()
}
