//! What one training step computes from a batch: the loss, and optionally scores to measure.

use crate::nn::ModuleExt;
use crate::tensor::{DType, Error, Result, Tensor};

/// The result of running the model on one batch.
pub struct StepOutput {
    /// A scalar: the batch's mean loss.
    pub loss: Tensor,
    /// Class scores `[N, C]` and labels `[N]`, to measure accuracy; `None` for other tasks.
    pub scores: Option<(Tensor, Tensor)>,
    /// Samples in the batch.
    pub batch_size: usize,
}

/// Computes a [`StepOutput`] from a model and a batch (the loader's fields, in order). Any
/// `Fn(&M, &[Tensor]) -> Result<StepOutput>` is one.
pub trait Objective<M: ?Sized> {
    fn step(&self, model: &M, batch: &[Tensor]) -> Result<StepOutput>;
}

impl<M: ?Sized, F: Fn(&M, &[Tensor]) -> Result<StepOutput>> Objective<M> for F {
    fn step(&self, model: &M, batch: &[Tensor]) -> Result<StepOutput> {
        self(model, batch)
    }
}

/// Classification with cross-entropy: `batch = [inputs, labels]`, `forward` maps inputs to
/// logits `[N, C]`. Logits in a low precision are scored in f32.
pub fn classification<M: ModuleExt + ?Sized>(
    forward: impl Fn(&M, &Tensor) -> Result<Tensor>,
) -> impl Fn(&M, &[Tensor]) -> Result<StepOutput> {
    move |model: &M, batch: &[Tensor]| {
        let [inputs, labels, ..] = batch else {
            return Err(Error::Msg(format!("classification: a batch needs [inputs, labels], got {} fields", batch.len())));
        };
        let logits = forward(model, inputs)?.try_to_dtype(DType::F32)?;
        let loss = crate::nn::loss::try_cross_entropy(&logits, labels)?;
        Ok(StepOutput { loss, batch_size: labels.shape().first().copied().unwrap_or(1), scores: Some((logits, labels.clone())) })
    }
}
