//! Quantizing a `#[model]` in place: its inference `forward` (same type, same typed
//! signature) runs the int8 graph through the model's inference override.
//!
//! ```text
//! model.eval();
//! let graph = model.graph();
//! let q = quant::quantize(&mut model, &graph, &calib_batches, &QuantConfig::static_ptq())?;
//! println!("{}", q.report());        // which layers run in int8, which ops stayed f32
//! q.save("mlp-int8.safetensors")?;   // int8 weights + scales/zero points as tensors
//! let y = model.forward(&x);         // int8 from now on
//! ```

use std::path::Path;
use std::sync::Arc;

use tensorbrain_ir::autodiff::Backward;

use super::config::QuantConfig;
use super::runner::QuantizedGraph;
use crate::compile::{self, Params};
use crate::nn::{InferenceOverride, ModuleExt, StaticModel};
use crate::tensor::{Error, Result, Tensor};

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
