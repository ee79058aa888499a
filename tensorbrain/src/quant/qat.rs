//! Quantization-aware training: train with the int8 model's rounding in the loop, then convert
//! to the int8 graph that post-training quantization builds, with the ranges learnt in training.
//!
//! ```text
//! let graph = model.graph();
//! let mut qat = quant::Qat::prepare(&model, &graph, &QuantConfig::static_ptq())?;
//! for (x, y) in batches {
//!     let loss = cross_entropy(&qat.forward(&model, &[x])?, &y);  // fake-quantized, on the tape
//!     loss.backward();
//!     opt.step();                                               // the model's own parameters
//! }
//! model.eval();
//! let q = qat.convert(&mut model, &model.graph())?;             // int8, no calibration data
//! ```
//!
//! [`Qat::forward`] runs the model's forward graph on the tape with every layer the int8
//! runner quantizes (Linear, Conv2d with groups = 1) seeing its weight and its input through
//! [`fake_quantize`]: the weight symmetric i8 (per output channel or per tensor, as the config
//! says and as conversion will quantize it, from the weight's current range), the input u8
//! affine from a moving-average min-max range (PyTorch's default QAT observer, constant 0.01),
//! updated in training and frozen by [`Qat::eval`]. Gradients pass straight through the
//! rounding (the straight-through estimator) and are zero where a value was clamped, as
//! PyTorch's `fake_quantize_per_*_affine` define them.
//!
//! Not yet: nested layers inside the model (batch norms included: fold them, or train without
//! them), and the report's mode reads `Static` for a converted QAT model.

use std::collections::HashMap;
use std::sync::Arc;

use tensorbrain_ir::autodiff::Backward;
use tensorbrain_ir::{Graph, NodeId, Op};

use super::config::{Mode, QuantConfig};
use super::observer::{MovingAverageObserver, Observer};
use super::ops::channel_of;
use super::runner::QuantizedGraph;
use super::qlinear::weight_qparams;
use super::scheme::{Granularity, QParams, QSpec};
use crate::autograd::custom_op;
use crate::compile::{self, Params};
use crate::nn::{ModuleExt, StaticModel};
use crate::tensor::{DType, Error, Result, Tensor};

/// PyTorch's default averaging constant for QAT activation observers.
pub const QAT_AVERAGING_CONSTANT: f32 = 0.01;

/// `x` rounded to the grid of `params` and mapped back to f32:
/// `(clamp(round_half_even(x · (1/scale)) + zero, qmin, qmax) - zero) · scale`, per tensor or
/// per channel. On the tape its gradient is the output gradient where `x` fell inside the
/// representable range and zero where it was clamped (the straight-through estimator).
///
/// # Errors
/// If `x` is not f32 or `params` do not fit its shape.
pub fn fake_quantize(x: &Tensor, params: &QParams) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        return Err(Error::Msg(format!("fake_quantize: expected an f32 tensor, got {}", x.dtype())));
    }
    let channel = channel_of(x.shape(), params, "fake_quantize")?;
    let (qmin, qmax) = params.dtype.range();
    let (qmin, qmax) = (qmin as f32, qmax as f32);
    let inv: Vec<f32> = params.scales.iter().map(|s| 1.0 / s).collect();
    let values = x.to_vec::<f32>();
    let mut out = Vec::with_capacity(values.len());
    let mut inside = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        let c = channel(i);
        let z = params.zero_points[c] as f32;
        let q = tensorbrain_kernels::int8::round_half_even(v * inv[c]) + z;
        inside.push(if (qmin..=qmax).contains(&q) { 1.0f32 } else { 0.0 });
        out.push((q.clamp(qmin, qmax) - z) * params.scales[c]);
    }
    let out = Tensor::from_vec(out, x.shape());
    let mask = Tensor::from_vec(inside, x.shape());
    Ok(custom_op("fake_quantize", out, &[x], move |grad, needs| Ok(vec![needs[0].then(|| grad.try_mul(&mask)).transpose()?])))
}

/// Weight parameters for `w` as the converted layer will quantize it (symmetric i8, per
/// tensor or per output channel along `axis`), computed on the same rows as
/// [`QLinear::from_f32`](super::QLinear::from_f32) computes them.
fn weight_params(w: &Tensor, axis: usize, granularity: Granularity) -> Result<QParams> {
    // One row per output channel: a Linear's `Wᵀ` transposed back, a convolution's weight as is.
    let rows = if axis == 1 { w.try_transpose(0, 1)? } else { w.clone() };
    let channels = rows.shape()[0];
    let mut p = weight_qparams(&rows.to_vec::<f32>(), rows.numel() / channels.max(1), granularity)?;
    if p.axis.is_some() {
        p.axis = Some(axis);
    }
    Ok(p)
}

/// One layer the int8 runner will quantize: a Matmul with a parameter (or its transpose) on
/// the right, or a Conv2d with groups = 1 and a parameter weight.
struct Site {
    label: String,
    /// The output-channel axis of the head's weight operand as the graph holds it: 1 for the
    /// `Wᵀ` of a Linear (`[in, out]`), 0 for a convolution's `[O, C, KH, KW]`.
    weight_axis: usize,
    observer: MovingAverageObserver,
}

/// A model being trained with fake quantization (see the module docs).
pub struct Qat {
    graph: Graph,
    sites: HashMap<NodeId, Site>,
    config: QuantConfig,
    training: bool,
}

impl Qat {
    /// Finds the layers to fake-quantize in `model`'s forward graph (`graph = model.graph()`).
    ///
    /// # Errors
    /// A graph with nested layers (batch norms included), which QAT cannot run yet; a graph
    /// with no Linear or Conv2d to quantize; a graph that reads a parameter the model lacks.
    pub fn prepare<M: StaticModel + ModuleExt>(model: &M, graph: &Backward, config: &QuantConfig) -> Result<Qat> {
        let g = compile::forward_graph(graph);
        // The graph must be this model's: every parameter it reads, the model has.
        let state: Params = model.state_dict().into_iter().collect();
        if let Some(path) = g.nodes.iter().find_map(|n| match &n.op {
            Op::Param { path, .. } if !state.contains_key(path) => Some(path),
            _ => None,
        }) {
            return Err(Error::Msg(format!("QAT: the graph reads parameter `{path}`, which the model does not have (is `graph` this model's?)")));
        }
        let is_param = |i: NodeId| matches!(g.nodes[i].op, Op::Param { .. });
        let mut sites = HashMap::new();
        for (i, node) in g.nodes.iter().enumerate() {
            if let Op::Call { path, .. } = &node.op {
                return Err(Error::Msg(format!(
                    "QAT: the graph calls the nested layer `{path}` ({}); quantization-aware training runs models whose \
                     layers are fields of one #[model] without nested layers (fold batch norms first, or use post-training \
                     quantization)",
                    node.label
                )));
            }
            let weight_axis = match &node.op {
                Op::Conv2d(geometry) if geometry.groups == 1 && is_param(node.inputs[1]) => 0,
                Op::Matmul => match &g.nodes[node.inputs[1]].op {
                    Op::Transpose { dim0: 0, dim1: 1 } if is_param(g.nodes[node.inputs[1]].inputs[0]) => 1,
                    Op::Param { .. } => 1,
                    _ => continue,
                },
                _ => continue,
            };
            if is_param(node.inputs[0]) {
                continue;
            }
            let observer = MovingAverageObserver::new(QAT_AVERAGING_CONSTANT);
            sites.insert(i, Site { label: node.label.clone(), weight_axis, observer });
        }
        if sites.is_empty() {
            return Err(Error::Msg("QAT: the model has no Linear or Conv2d layer to quantize".into()));
        }
        Ok(Qat { graph: g, sites, config: *config, training: true })
    }

    /// Observers update their ranges on every forward (the default).
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Observers keep their ranges; forward still fake-quantizes.
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// The labels of the layers being fake-quantized, in graph order.
    pub fn layers(&self) -> Vec<String> {
        let mut ids: Vec<&NodeId> = self.sites.keys().collect();
        ids.sort();
        ids.into_iter().map(|i| self.sites[i].label.clone()).collect()
    }

    /// Runs the forward graph with fake quantization on `model`'s current parameters. The
    /// result is on the tape: `backward` reaches the model's parameters.
    ///
    /// # Errors
    /// A wrong number of inputs, a parameter the model lacks, NaN or Inf reaching a layer's
    /// input in training (naming the layer), or any op's own error.
    pub fn forward<M: ModuleExt>(&mut self, model: &M, inputs: &[Tensor]) -> Result<Tensor> {
        let state: Params = model.state_dict().into_iter().collect();
        let g = &self.graph;
        let expected = g.nodes.iter().filter(|n| matches!(n.op, Op::Input { .. })).count();
        if inputs.len() != expected {
            return Err(Error::Msg(format!("QAT forward takes {expected} input(s), got {}", inputs.len())));
        }
        let mut vals: Vec<Option<Tensor>> = vec![None; g.nodes.len()];
        let mut next_input = 0;
        for (i, node) in g.nodes.iter().enumerate() {
            let value = match &node.op {
                Op::Input { .. } => {
                    next_input += 1;
                    inputs[next_input - 1].clone()
                }
                Op::Param { path, .. } => {
                    state.get(path).cloned().ok_or_else(|| Error::Msg(format!("QAT: the model has no parameter `{path}`")))?
                }
                op => {
                    let mut args: Vec<Tensor> = node.inputs.iter().map(|&a| vals[a].clone().expect("inputs come first")).collect();
                    if let Some(site) = self.sites.get_mut(&i) {
                        let x = &args[0];
                        if self.training {
                            site.observer
                                .observe(&x.to_vec::<f32>())
                                .map_err(|e| Error::Msg(format!("QAT: the input of `{}` holds {e}", site.label)))?;
                        }
                        let act = site.observer.qparams(QSpec::ACTIVATIONS).map_err(|e| Error::Msg(format!("QAT: the input of `{}`: {e}", site.label)))?;
                        args[0] = fake_quantize(x, &act)?;
                        let wp = weight_params(&args[1], site.weight_axis, self.config.weights)?;
                        args[1] = fake_quantize(&args[1], &wp)?;
                    }
                    let refs: Vec<&Tensor> = args.iter().collect();
                    let shapes: Vec<Vec<usize>> = node.shape_of.iter().map(|&a| vals[a].as_ref().expect("inputs come first").shape().to_vec()).collect();
                    let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
                    crate::exec::apply(op, &refs, &shape_refs).map_err(|e| Error::Msg(format!("QAT: %{i} {} ({}): {e}", op.name(), node.label)))?
                }
            };
            vals[i] = Some(value);
        }
        match g.outputs.as_slice() {
            [o] => Ok(vals[*o].take().expect("outputs are computed")),
            outs => Err(Error::Msg(format!("QAT: the graph has {} outputs, expected 1", outs.len()))),
        }
    }

    /// The activation parameters each layer's input has learnt, by layer label.
    ///
    /// # Errors
    /// If a layer's observer saw nothing (no training step ran).
    pub fn input_params(&self) -> Result<HashMap<String, QParams>> {
        self.sites
            .values()
            .map(|s| {
                let p = s.observer.qparams(QSpec::ACTIVATIONS).map_err(|e| Error::Msg(format!("QAT: `{}`: {e}; run forward in training first", s.label)))?;
                Ok((s.label.clone(), p))
            })
            .collect()
    }

    /// Converts the trained model to int8 with the learnt activation ranges (no calibration
    /// data) and installs it as the model's inference forward, as [`super::quantize`] does.
    /// `graph` is `model.graph()`.
    ///
    /// # Errors
    /// As [`Qat::input_params`]; a layer of the frozen graph QAT did not train.
    pub fn convert<M: StaticModel + ModuleExt>(&self, model: &mut M, graph: &Backward) -> Result<Arc<QuantizedGraph>> {
        let ranges = self.input_params()?;
        let (frozen, params) = super::model::frozen_forward(model, graph)?;
        let config = QuantConfig { mode: Mode::Static, ..self.config };
        let plan = Arc::new(QuantizedGraph::build_with_ranges(&frozen, params, &ranges, &config)?);
        super::model::install(model, plan.clone())?;
        Ok(plan)
    }
}
