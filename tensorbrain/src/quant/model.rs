//! Quantizing a `#[model]` in place: its inference `forward` (same type, same typed
//! signature) runs the int8 graph through the model's inference override.
//!
//! ```text
//! use tensorbrain::quant::{Quantize, QuantConfig};
//! let q = model.quantize(calib_loader.iter().take(8), &QuantConfig::static_ptq())?;
//! println!("{}", q.report());        // which layers run in int8, which ops stayed f32
//! q.save("mlp-int8.safetensors")?;   // int8 weights + scales/zero points as tensors
//! let y = model.forward(&x);         // int8 from now on
//!
//! let mut fresh = Mlp::init(0);      // later, with no calibration data:
//! fresh.load_quantized("mlp-int8.safetensors")?;
//! ```
//!
//! The free functions [`quantize`] and [`load_quantized`] do the same given the graph.

use std::path::Path;
use std::sync::Arc;

use tensorbrain_ir::autodiff::Backward;

use super::config::QuantConfig;
use super::runner::QuantizedGraph;
use crate::compile::{self, Params};
use crate::nn::{InferenceOverride, ModuleExt, StaticModel};
use crate::tensor::{Error, Result, Tensor};

/// One calibration batch: the model's inputs, then anything else the loader yields (labels),
/// which calibration ignores.
pub trait CalibrationBatch {
    fn into_batch(self) -> Result<Vec<Tensor>>;
}

impl CalibrationBatch for Vec<Tensor> {
    fn into_batch(self) -> Result<Vec<Tensor>> {
        Ok(self)
    }
}

impl CalibrationBatch for &Vec<Tensor> {
    fn into_batch(self) -> Result<Vec<Tensor>> {
        Ok(self.clone())
    }
}

/// What a [`crate::data::DataLoader`] yields.
impl CalibrationBatch for Result<Vec<Tensor>> {
    fn into_batch(self) -> Result<Vec<Tensor>> {
        self
    }
}

/// A model with one input.
impl CalibrationBatch for Tensor {
    fn into_batch(self) -> Result<Vec<Tensor>> {
        Ok(vec![self])
    }
}

impl CalibrationBatch for &Tensor {
    fn into_batch(self) -> Result<Vec<Tensor>> {
        Ok(vec![self.clone()])
    }
}

/// Post-training quantization as a method of every `#[model]`:
/// `model.quantize(&loader, &QuantConfig::static_ptq())`.
pub trait Quantize: StaticModel + ModuleExt + Sized {
    /// Puts the model in eval mode, quantizes its forward graph and installs the int8 graph
    /// as its inference path (same type, same typed `forward`). Static mode calibrates on
    /// every batch `calib` yields (pass `loader.iter().take(n)` for the first `n`); dynamic
    /// mode reads none. Returns the quantized graph: its report says which layers run in int8
    /// and which ops stayed f32; `save` writes it.
    ///
    /// # Errors
    /// A model without an IR graph (not a `#[model]`); a loader error; a batch with fewer
    /// tensors than the model has inputs; an empty calibration set in static mode; NaN/Inf
    /// during calibration (naming the layer and batch).
    fn quantize<I>(&mut self, calib: I, config: &QuantConfig) -> Result<Arc<QuantizedGraph>>
    where
        I: IntoIterator,
        I::Item: CalibrationBatch,
    {
        self.eval();
        let graph = ir_of(self)?;
        let n_inputs = compile::forward_graph(&graph).inputs().len();
        let mut batches = Vec::new();
        if config.mode == super::Mode::Static {
            for (b, batch) in calib.into_iter().enumerate() {
                let mut batch = batch.into_batch().map_err(|e| Error::Msg(format!("quantize: calibration batch {b}: {e}")))?;
                if batch.len() < n_inputs {
                    return Err(Error::Msg(format!(
                        "quantize: calibration batch {b} holds {} tensor(s) but the model takes {n_inputs} input(s)",
                        batch.len()
                    )));
                }
                batch.truncate(n_inputs);
                batches.push(batch);
            }
        }
        quantize(self, &graph, &batches, config)
    }

    /// Loads a model saved by [`QuantizedGraph::save`] into this one (same type; its f32
    /// weights are not used), with no calibration data, and puts it in eval mode.
    ///
    /// # Errors
    /// As [`QuantizedGraph::load`].
    fn load_quantized(&mut self, path: impl AsRef<Path>) -> Result<Arc<QuantizedGraph>> {
        self.eval();
        let graph = ir_of(self)?;
        load_quantized(self, &graph, path.as_ref())
    }
}

impl<M: StaticModel + ModuleExt> Quantize for M {}

fn ir_of<M: StaticModel>(model: &M) -> Result<Backward> {
    model.ir().ok_or_else(|| {
        Error::Msg(format!("quantize: {} has no IR graph (only #[model] types can be quantized)", std::any::type_name::<M>()))
    })
}

/// Quantizes `model` (whose forward graph, `model.graph()` taken in eval mode, is `graph`) and
/// installs the result as its inference path. Batch norms after linear layers are folded in
/// first (the graph is frozen). Returns the quantized graph (report, save).
///
/// The model's parameters stop requiring gradients, so its typed `forward` takes the
/// inference path: a quantized model is for inference. Training code still sees the f32 weights.
///
/// # Errors
/// As [`QuantizedGraph::build`].
pub fn quantize<M: StaticModel + ModuleExt>(model: &mut M, graph: &Backward, calib: &[Vec<Tensor>], config: &QuantConfig) -> Result<Arc<QuantizedGraph>> {
    let (frozen, params) = frozen_forward(model, graph)?;
    let plan = Arc::new(QuantizedGraph::build(&frozen, params, calib, config)?);
    install(model, plan.clone())?;
    Ok(plan)
}

/// Loads a quantized model saved by [`QuantizedGraph::save`] into `model` (a model of the same
/// type, e.g. freshly initialised: its f32 weights are not used), with no calibration data.
pub fn load_quantized<M: StaticModel + ModuleExt>(model: &mut M, graph: &Backward, path: &Path) -> Result<Arc<QuantizedGraph>> {
    let (frozen, params) = frozen_forward(model, graph)?;
    let plan = Arc::new(QuantizedGraph::load(&frozen, &params, path)?);
    install(model, plan.clone())?;
    Ok(plan)
}

/// Makes `plan` the model's inference forward.
pub fn install<M: StaticModel + ModuleExt>(model: &mut M, plan: Arc<QuantizedGraph>) -> Result<()> {
    model.visit_params_mut("", &mut |_, t| *t = t.detach());
    model.set_inference_override(InferenceOverride::new(move |inputs: &[Tensor]| {
        let mut out = plan.run(inputs)?;
        match out.len() {
            1 => Ok(out.remove(0)),
            n => Err(Error::Msg(format!("quantized model: the graph has {n} outputs, expected 1"))),
        }
    }))
}

pub(super) fn frozen_forward<M: ModuleExt>(model: &M, graph: &Backward) -> Result<(tensorbrain_ir::Graph, Params)> {
    let forward = compile::forward_graph(graph);
    let state: Params = model.state_dict().into_iter().collect();
    let (frozen, mut params) = compile::freeze(&forward, &state)?;
    // Nested layers (batch norms) read their state outside the graph: keep it reachable.
    for (path, t) in state {
        params.entry(path).or_insert(t);
    }
    Ok((frozen, params))
}
