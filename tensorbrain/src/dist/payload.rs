//! Flat f32/f64 buffers: what travels between ranks.

use super::error::{DistError, DistResult};
use crate::tensor::{DType, Device, Tensor};

/// A flat buffer of one of the dtypes collectives support.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The element types a [`Payload`] holds.
pub trait Elem: Copy + Default + Send + std::ops::AddAssign + 'static {
    fn wrap(v: Vec<Self>) -> Payload;
    fn unwrap(p: Payload) -> Result<Vec<Self>, Payload>;
    /// `self / by` (a division, so averaging 3 ranks' 1.0s gives exactly 1.0).
    fn div_by(self, by: f64) -> Self;
}

impl Elem for f32 {
    fn wrap(v: Vec<f32>) -> Payload {
        Payload::F32(v)
    }
    fn unwrap(p: Payload) -> Result<Vec<f32>, Payload> {
        match p {
            Payload::F32(v) => Ok(v),
            other => Err(other),
        }
    }
    fn div_by(self, by: f64) -> f32 {
        self / by as f32
    }
}

impl Elem for f64 {
    fn wrap(v: Vec<f64>) -> Payload {
        Payload::F64(v)
    }
    fn unwrap(p: Payload) -> Result<Vec<f64>, Payload> {
        match p {
            Payload::F64(v) => Ok(v),
            other => Err(other),
        }
    }
    fn div_by(self, by: f64) -> f64 {
        self / by
    }
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::F32(v) => v.len(),
            Payload::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Payload::F32(_) => DType::F32,
            Payload::F64(_) => DType::F64,
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Payload::F32(v) => v.len() * 4,
            Payload::F64(v) => v.len() * 8,
        }
    }

    /// A tensor's elements in row-major order; only f32/f64 CPU tensors are accepted.
    pub fn from_tensor(rank: usize, op: &'static str, t: &Tensor) -> DistResult<Payload> {
        if t.device() != Device::Cpu {
            return Err(DistError::Invalid { rank, op, msg: format!("the tensor is on {}; this backend exchanges CPU tensors (move it with to_device(Device::Cpu))", t.device()) });
        }
        match t.dtype() {
            DType::F32 => Ok(Payload::F32(t.to_vec::<f32>())),
            DType::F64 => Ok(Payload::F64(t.to_vec::<f64>())),
            other => Err(DistError::Invalid { rank, op, msg: format!("dtype {other} is not supported (expected f32 or f64)") }),
        }
    }

    /// Writes the buffer into `t` in place (same dtype and element count).
    pub fn write_into(self, rank: usize, op: &'static str, t: &Tensor) -> DistResult<()> {
        if self.dtype() != t.dtype() || self.len() != t.numel() {
            return Err(DistError::Invalid {
                rank,
                op,
                msg: format!(
                    "received {} {} elements for a local tensor of {} {} elements (shape {:?}); every rank must pass the same shape and dtype",
                    self.len(),
                    self.dtype(),
                    t.numel(),
                    t.dtype(),
                    t.shape()
                ),
            });
        }
        let shape = t.shape().to_vec();
        let src = self.into_tensor(rank, op, &shape)?;
        // The destination may be a parameter that requires grad: this is a data update, not
        // part of the graph.
        crate::autograd::no_grad(|| t.try_copy_from(&src)).map_err(DistError::from)
    }

    pub fn into_tensor(self, rank: usize, op: &'static str, shape: &[usize]) -> DistResult<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.len() {
            return Err(DistError::Invalid { rank, op, msg: format!("received {} elements for shape {shape:?} ({numel} elements); the ranks disagree about the shape", self.len()) });
        }
        Ok(match self {
            Payload::F32(v) => Tensor::try_from_vec(v, shape)?,
            Payload::F64(v) => Tensor::try_from_vec(v, shape)?,
        })
    }

    /// A shape as a message (f64 holds every realistic dimension exactly).
    pub fn shape_header(shape: &[usize]) -> Payload {
        Payload::F64(shape.iter().map(|&d| d as f64).collect())
    }

    pub fn into_shape(self, rank: usize, op: &'static str) -> DistResult<Vec<usize>> {
        match self {
            Payload::F64(v) => Ok(v.into_iter().map(|d| d as usize).collect()),
            Payload::F32(_) => Err(DistError::Invalid { rank, op, msg: "expected a shape header (f64) before the tensor data; the sender did not use send()".into() }),
        }
    }
}
