//! `QuantizedGraph`: a frozen forward graph in which every Linear chain runs as a [`QLinear`],
//! every convolution chain as a [`QConv2d`], and every other op runs in f32 through the same op implementations the compiled graphs
//! use. Between two int8 layers of a statically quantized graph the activation stays u8.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tensorbrain_ir::passes::users;
use tensorbrain_ir::{Graph, NodeId, Op, PoolKind};
use tensorbrain_kernels::int8;

use super::chains::{find_chains, Analysis, Chain, ChainKind, ChannelAffine};
use super::config::{Mode, QuantConfig};
use super::observer::Observer;
use super::qconv::QConv2d;
use super::qlinear::{with_data, Act, InputQuant, QLinear};
use super::report::{QuantReport, QuantizedLayer};
use super::scheme::{QDType, QParams, QSpec};
use crate::autograd::no_grad;
use crate::compile::Params;
use crate::tensor::{Error, Result, Tensor};

/// An int8 layer of the graph.
#[derive(Clone, Debug)]
pub enum QLayer {
    Linear(QLinear),
    Conv2d(QConv2d),
}

impl QLayer {
    /// Builds the layer a chain describes.
    fn from_chain(ch: &Chain, config: &QuantConfig, input: InputQuant, output: Option<QParams>) -> Result<QLayer> {
        Ok(match ch.kind {
            ChainKind::Linear => QLayer::Linear(QLinear::from_f32(&ch.label, &ch.weight, ch.bias.as_ref(), ch.relu, config.weights, input, output)?),
            ChainKind::Conv2d(g) => {
                QLayer::Conv2d(QConv2d::from_f32(&ch.label, &ch.weight, ch.bias.as_ref(), ch.relu, g, config.weights, input, output)?)
            }
        })
    }

    pub fn forward(&self, x: &Act) -> Result<Act> {
        match self {
            QLayer::Linear(l) => l.forward(x),
            QLayer::Conv2d(c) => c.forward(x),
        }
    }

    /// The GEMM with its parameters (a convolution's weight flattened to `[O, C·KH·KW]`).
    pub fn gemm(&self) -> &QLinear {
        match self {
            QLayer::Linear(l) => l,
            QLayer::Conv2d(c) => c.linear(),
        }
    }

    /// The i8 weights in the f32 layer's order (`[out, in]`, or `[O, C, KH, KW]`).
    pub fn weight_i8(&self) -> Vec<i8> {
        match self {
            QLayer::Linear(l) => l.weight_i8(),
            QLayer::Conv2d(c) => c.weight_i8(),
        }
    }

    /// The weight's shape as the f32 layer has it.
    pub fn weight_shape(&self) -> Vec<usize> {
        match self {
            QLayer::Linear(l) => vec![l.out_features(), l.in_features()],
            QLayer::Conv2d(c) => c.weight_shape().to_vec(),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            QLayer::Linear(_) => "linear",
            QLayer::Conv2d(_) => "conv2d",
        }
    }
}

/// What the runner does at a node.
#[derive(Clone, Debug)]
enum Step {
    Input(usize),
    Param(String),
    Op,
    /// The chain ending here runs as `layers[layer]` on the value of `input`.
    Layer { layer: usize, input: NodeId },
    /// A batch norm that did not fold: `norms[k]` along dim 1, in f32.
    Affine(usize),
    /// Part of a chain (or a parameter only chains read): nothing to do.
    Folded,
}

/// A quantized inference graph (see the module docs of [`super`]).
#[derive(Clone, Debug)]
pub struct QuantizedGraph {
    graph: Graph,
    params: Params,
    steps: Vec<Step>,
    last_use: Vec<usize>,
    layers: Vec<QLayer>,
    norms: Vec<ChannelAffine>,
    report: QuantReport,
}

type Observe<'a> = &'a mut dyn FnMut(NodeId, &Tensor) -> Result<()>;

impl QuantizedGraph {
    /// Quantizes a frozen forward graph (see [`crate::compile::freeze`]) whose parameters are
    /// `params`. Static mode runs `calib` (each element: one batch of the graph's inputs) through
    /// the f32 graph to choose activation ranges.
    ///
    /// # Errors
    /// Static mode with no calibration batches; NaN or Inf in any observed activation (naming
    /// the layer and batch); a graph the runner cannot execute (nested model calls).
    pub fn build(graph: &Graph, params: Params, calib: &[Vec<Tensor>], config: &QuantConfig) -> Result<QuantizedGraph> {
        let Analysis { chains, kept, norms, all_norms } = find_chains(graph, &params)?;
        let flow = U8Flow::new(graph, &chains);
        let mut layers = Vec::with_capacity(chains.len());
        match config.mode {
            Mode::Dynamic => {
                for ch in &chains {
                    layers.push(QLayer::from_chain(ch, config, InputQuant::Dynamic, None)?);
                }
            }
            Mode::Static => {
                if calib.is_empty() {
                    return Err(Error::Msg(
                        "quantize: the calibration set is empty; static quantization needs at least one batch of inputs \
                         to choose activation ranges (or use QuantConfig::dynamic())"
                            .into(),
                    ));
                }
                let mut watched: HashMap<NodeId, (String, Box<dyn Observer>)> = HashMap::new();
                for ch in &chains {
                    // A layer reading a pooled (or flattened) u8 value takes the parameters of
                    // the value before the pool, which the layer producing it requantizes to.
                    let what = format!("input of `{}`", ch.label);
                    watched.entry(flow.source[ch.input]).or_insert_with(|| (what, config.observer.build()));
                    if flow.feeds_only_chains(ch) {
                        let what = format!("output of `{}`", ch.label);
                        watched.entry(ch.tail).or_insert_with(|| (what, config.observer.build()));
                    }
                }
                let f32_plan = QuantizedGraph::assemble(graph, params.clone(), &[], Vec::new(), all_norms, QuantReport { mode: config.mode, quantized: vec![], kept_f32: vec![] });
                for (b, batch) in calib.iter().enumerate() {
                    let mut observe = |node: NodeId, value: &Tensor| -> Result<()> {
                        let Some((what, obs)) = watched.get_mut(&node) else { return Ok(()) };
                        obs.observe(&value.to_vec::<f32>()).map_err(|e| Error::Msg(format!("the {what} holds {e}")))
                    };
                    f32_plan.execute(batch, Some(&mut observe)).map_err(|e| Error::Msg(format!("quantize: calibration batch {b}: {e}")))?;
                }
                let qparams = |node: NodeId| -> Result<QParams> {
                    let (what, obs) = &watched[&node];
                    obs.qparams(QSpec::ACTIVATIONS).map_err(|e| Error::Msg(format!("quantize: the {what}: {e}")))
                };
                for ch in &chains {
                    let input = InputQuant::Static(qparams(flow.source[ch.input])?);
                    let output = if flow.feeds_only_chains(ch) { Some(qparams(ch.tail)?) } else { None };
                    layers.push(QLayer::from_chain(ch, config, input, output)?);
                }
            }
        }
        let report = QuantReport { mode: config.mode, quantized: layers.iter().map(layer_report).collect(), kept_f32: kept };
        Ok(QuantizedGraph::assemble(graph, params, &chains, layers, norms, report))
    }

    /// Static quantization with activation parameters chosen elsewhere (quantization-aware
    /// training): `inputs` maps a layer's label to the u8 parameters of its input. A value
    /// several layers read takes the parameters of the first of them, so that the layer
    /// producing it can requantize to exactly what each reader expects.
    ///
    /// # Errors
    /// A layer of the graph with no entry in `inputs`; as [`QuantizedGraph::build`].
    pub fn build_with_ranges(graph: &Graph, params: Params, inputs: &HashMap<String, QParams>, config: &QuantConfig) -> Result<QuantizedGraph> {
        let Analysis { chains, kept, norms, .. } = find_chains(graph, &params)?;
        let flow = U8Flow::new(graph, &chains);
        // The parameters of a value: those of the first layer reading it (through pools).
        let params_of = |value: NodeId| -> Result<QParams> {
            let reader = chains.iter().find(|c| flow.source[c.input] == value).expect("only layer inputs are asked for");
            inputs.get(&reader.label).cloned().ok_or_else(|| {
                Error::Msg(format!("quantize: no activation range for the input of `{}` (the ranges given cover {:?})", reader.label, {
                    let mut k: Vec<&String> = inputs.keys().collect();
                    k.sort();
                    k
                }))
            })
        };
        let mut layers = Vec::with_capacity(chains.len());
        for ch in &chains {
            let input = InputQuant::Static(params_of(flow.source[ch.input])?);
            let output = if flow.feeds_only_chains(ch) { Some(params_of(ch.tail)?) } else { None };
            layers.push(QLayer::from_chain(ch, config, input, output)?);
        }
        let config = QuantConfig { mode: Mode::Static, ..*config };
        let report = QuantReport { mode: config.mode, quantized: layers.iter().map(layer_report).collect(), kept_f32: kept };
        Ok(QuantizedGraph::assemble(graph, params, &chains, layers, norms, report))
    }

    /// Lays out the steps: chains replace their nodes; parameters only chains read are dropped.
    fn assemble(
        graph: &Graph,
        mut params: Params,
        chains: &[Chain],
        layers: Vec<QLayer>,
        norms: Vec<(NodeId, ChannelAffine)>,
        report: QuantReport,
    ) -> QuantizedGraph {
        let n = graph.nodes.len();
        let mut inputs_seen = 0;
        let mut steps: Vec<Step> = graph
            .nodes
            .iter()
            .map(|node| match &node.op {
                Op::Input { .. } => {
                    inputs_seen += 1;
                    Step::Input(inputs_seen - 1)
                }
                Op::Param { path, .. } => Step::Param(path.clone()),
                _ => Step::Op,
            })
            .collect();
        for (k, (node, _)) in norms.iter().enumerate() {
            steps[*node] = Step::Affine(k);
        }
        let norms = norms.into_iter().map(|(_, n)| n).collect();
        for (c, ch) in chains.iter().enumerate() {
            ch.nodes.iter().for_each(|&i| steps[i] = Step::Folded);
            steps[ch.tail] = Step::Layer { layer: c, input: ch.input };
        }
        let deps = |i: usize, step: &Step| -> Vec<NodeId> {
            match step {
                Step::Op | Step::Affine(_) => graph.nodes[i].inputs.clone(),
                Step::Layer { input, .. } => vec![*input],
                _ => vec![],
            }
        };
        let mut last_use = vec![0usize; n];
        let mut read = vec![false; n];
        for (i, step) in steps.iter().enumerate() {
            for d in deps(i, step) {
                last_use[d] = i;
                read[d] = true;
            }
        }
        for &o in &graph.outputs {
            last_use[o] = usize::MAX;
            read[o] = true;
        }
        // Parameters nothing reads any more (chain weights now packed in the layers).
        let mut kept_paths = HashSet::new();
        for (i, step) in steps.iter_mut().enumerate() {
            if let Step::Param(path) = step {
                if read[i] {
                    kept_paths.insert(path.clone());
                } else {
                    *step = Step::Folded;
                }
            }
        }
        params.retain(|p, _| kept_paths.contains(p));
        QuantizedGraph { graph: graph.clone(), params, steps, last_use, layers, norms, report }
    }

    /// Runs the graph on `inputs` (in the order of its inputs); returns its outputs as f32.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.execute(inputs, None)
    }

    fn execute(&self, inputs: &[Tensor], mut observe: Option<Observe<'_>>) -> Result<Vec<Tensor>> {
        let expected = self.steps.iter().filter(|s| matches!(s, Step::Input(_))).count();
        if inputs.len() != expected {
            return Err(Error::Msg(format!("quantized graph takes {expected} input(s), got {}", inputs.len())));
        }
        no_grad(|| {
            let n = self.graph.nodes.len();
            let mut vals: Vec<Option<Act>> = vec![None; n];
            let mut shapes: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (i, (node, step)) in self.graph.nodes.iter().zip(&self.steps).enumerate() {
                let out = match step {
                    Step::Folded => continue,
                    Step::Input(k) => Act::F32(inputs[*k].detach()),
                    Step::Param(path) => Act::F32(
                        self.params.get(path).ok_or_else(|| Error::Msg(format!("quantized graph: no value for parameter `{path}`")))?.clone(),
                    ),
                    Step::Layer { layer, input } => {
                        let x = vals[*input].as_ref().expect("inputs are computed before use");
                        self.layers[*layer].forward(x)?
                    }
                    Step::Affine(k) => {
                        let x = vals[node.inputs[0]].clone().expect("inputs are computed before use").into_f32();
                        Act::F32(channel_affine(&x, &self.norms[*k])?)
                    }
                    Step::Op if passes_u8(&node.op) && matches!(vals[node.inputs[0]], Some(Act::U8 { .. })) => {
                        let Some(Act::U8 { data, scale, zero }) = &vals[node.inputs[0]] else { unreachable!("matched above") };
                        Act::U8 { data: u8_op(&node.op, data).map_err(|e| Error::Msg(format!("%{i} {} ({}): {e}", node.op.name(), node.label)))?, scale: *scale, zero: *zero }
                    }
                    Step::Op => {
                        let args: Vec<Tensor> =
                            node.inputs.iter().map(|&a| vals[a].clone().expect("inputs are computed before use").into_f32()).collect();
                        let refs: Vec<&Tensor> = args.iter().collect();
                        let shape_args: Vec<&[usize]> = node.shape_of.iter().map(|&a| shapes[a].as_slice()).collect();
                        let out = crate::exec::apply(&node.op, &refs, &shape_args)
                            .map_err(|e| Error::Msg(format!("%{i} {} ({}): {e}", node.op.name(), node.label)))?;
                        Act::F32(out)
                    }
                };
                if let (Some(obs), Act::F32(t)) = (observe.as_deref_mut(), &out) {
                    obs(i, t)?;
                }
                shapes[i] = out.shape().to_vec();
                vals[i] = Some(out);
                for &a in &node.inputs {
                    if self.last_use[a] == i {
                        vals[a] = None;
                    }
                }
                if let Step::Layer { input, .. } = step {
                    if self.last_use[*input] == i {
                        vals[*input] = None;
                    }
                }
            }
            Ok(self.graph.outputs.iter().map(|&o| vals[o].clone().expect("outputs are computed").into_f32()).collect())
        })
    }

    pub fn report(&self) -> &QuantReport {
        &self.report
    }

    pub fn layers(&self) -> &[QLayer] {
        &self.layers
    }
}

/// Ops that commute with quantization, so that a u8 value passes through them in its own
/// parameters: max pooling (quantization is monotonic) and flattening.
fn passes_u8(op: &Op) -> bool {
    matches!(op, Op::Pool2d { kind: PoolKind::Max, .. } | Op::Flatten { .. })
}

/// A [`passes_u8`] op on u8 data.
fn u8_op(op: &Op, x: &Tensor) -> Result<Tensor> {
    match op {
        Op::Flatten { start } => x.try_flatten(*start as isize, -1),
        Op::Pool2d { kind: PoolKind::Max, geometry: g, .. } => {
            let shape: [usize; 4] = x.shape().try_into().map_err(|_| Error::Msg(format!("max pool: input must be [N, C, H, W], got {:?}", x.shape())))?;
            let (out, out_shape) = with_data(x, |d: &[u8]| int8::max_pool2d_u8(d, shape, g.kernel, g.stride, g.padding));
            Ok(Tensor::from_vec(out, &out_shape))
        }
        other => Err(Error::Msg(format!("internal: {} does not run on u8", other.name()))),
    }
}

/// Where u8 activations can flow between int8 layers.
struct U8Flow<'g> {
    graph: &'g Graph,
    /// For each node, the node whose value it carries through [`passes_u8`] ops (itself for
    /// any other op).
    source: Vec<NodeId>,
    users: Vec<Vec<NodeId>>,
    /// Each layer head's input.
    head_inputs: HashMap<NodeId, NodeId>,
}

impl<'g> U8Flow<'g> {
    fn new(graph: &'g Graph, chains: &[Chain]) -> U8Flow<'g> {
        let mut source: Vec<NodeId> = (0..graph.nodes.len()).collect();
        for (i, node) in graph.nodes.iter().enumerate() {
            if passes_u8(&node.op) {
                source[i] = source[node.inputs[0]];
            }
        }
        U8Flow { graph, source, users: users(graph), head_inputs: chains.iter().map(|c| (c.head, c.input)).collect() }
    }

    /// Whether a layer's output reaches only other layers' inputs (through max pools and
    /// flattens), so that it can stay u8 (static mode).
    fn feeds_only_chains(&self, ch: &Chain) -> bool {
        self.only_layers_read(ch.tail)
    }

    fn only_layers_read(&self, value: NodeId) -> bool {
        !self.graph.outputs.contains(&value)
            && !self.users[value].is_empty()
            && self.users[value].iter().all(|&u| {
                self.head_inputs.get(&u) == Some(&value) || (passes_u8(&self.graph.nodes[u].op) && self.only_layers_read(u))
            })
    }
}

/// `y[:, c, ...] = x[:, c, ...]·scale[c] + shift[c]`.
fn channel_affine(x: &Tensor, norm: &ChannelAffine) -> Result<Tensor> {
    let c = norm.scale.len();
    if x.rank() < 2 || x.shape()[1] != c {
        return Err(Error::Msg(format!("batch norm `{}`: input must be [N, {c}, ...], got {:?}", norm.path, x.shape())));
    }
    let inner: usize = x.shape()[2..].iter().product();
    let v: Vec<f32> = x.to_vec::<f32>().iter().enumerate().map(|(i, v)| {
        let ch = (i / inner) % c;
        v * norm.scale[ch] + norm.shift[ch]
    }).collect();
    Ok(Tensor::from_vec(v, x.shape()))
}

fn layer_report(layer: &QLayer) -> QuantizedLayer {
    let l = layer.gemm();
    QuantizedLayer {
        kind: match layer {
            QLayer::Linear(_) => "Linear".into(),
            QLayer::Conv2d(c) => {
                let [_, _, kh, kw] = c.weight_shape();
                format!("Conv2d {kh}x{kw}")
            }
        },
        name: l.name().to_string(),
        in_features: l.in_features(),
        out_features: l.out_features(),
        relu: l.relu(),
        input: match l.input_quant() {
            InputQuant::Dynamic => "dynamic".into(),
            InputQuant::Static(p) => format!("scale {:.6} zero {}", p.scales[0], p.zero_points[0]),
        },
        output_u8: l.output_params().is_some(),
    }
}

// ---- safetensors ----

const META_KEY: &str = "tensorbrain.quant";

impl QuantizedGraph {
    /// Writes the int8 weights, their scales and zero points, biases, calibrated activation
    /// parameters and the f32 parameters of the ops that stayed f32, as safetensors. The
    /// layer list (names, ReLU, modes) goes in the file's metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut meta = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("int8.{i}");
            let l = layer.gemm();
            let n = l.out_features();
            tensors.push((format!("{p}.weight"), Tensor::from_vec(layer.weight_i8(), &layer.weight_shape())));
            let (s, z) = l.weight_params().to_tensors();
            tensors.push((format!("{p}.weight_scale"), s));
            tensors.push((format!("{p}.weight_zero_point"), z));
            if let Some(b) = l.bias() {
                tensors.push((format!("{p}.bias"), Tensor::from_slice(b, &[n])));
            }
            if let InputQuant::Static(q) = l.input_quant() {
                let (s, z) = q.to_tensors();
                tensors.push((format!("{p}.input_scale"), s));
                tensors.push((format!("{p}.input_zero_point"), z));
            }
            if let Some(q) = l.output_params() {
                let (s, z) = q.to_tensors();
                tensors.push((format!("{p}.output_scale"), s));
                tensors.push((format!("{p}.output_zero_point"), z));
            }
            meta.push(serde_json::json!({
                "kind": layer.kind_name(),
                "name": l.name(),
                "relu": l.relu(),
                "per_channel": l.weight_params().axis.is_some(),
            }));
        }
        for norm in &self.norms {
            tensors.push((format!("affine.{}.scale", norm.path), Tensor::from_slice(&norm.scale, &[norm.scale.len()])));
            tensors.push((format!("affine.{}.shift", norm.path), Tensor::from_slice(&norm.shift, &[norm.shift.len()])));
        }
        let mut f32_paths: Vec<&String> = self.params.keys().collect();
        f32_paths.sort();
        for path in f32_paths {
            tensors.push((format!("f32.{path}"), self.params[path].clone()));
        }
        let header = serde_json::json!({ "mode": format!("{:?}", self.report.mode), "layers": meta });
        let metadata = HashMap::from([(META_KEY.to_string(), header.to_string())]);
        let bytes = crate::checkpoint::to_safetensors_bytes(&tensors, Some(metadata))?;
        crate::checkpoint::write_atomically(path, &bytes)
    }

    /// Rebuilds a quantized graph from [`QuantizedGraph::save`]'s file and the same frozen
    /// graph structure (parameter values in `params` are not used: the file has them). No
    /// calibration data is needed.
    ///
    /// # Errors
    /// If the file is unreadable, is not a quantized-model file, or does not match the graph
    /// (another model, a missing tensor).
    pub fn load(graph: &Graph, params: &Params, path: &Path) -> Result<QuantizedGraph> {
        let (tensors, metadata) = crate::checkpoint::load_safetensors_with_metadata(path)?;
        let bad = |what: String| Error::Msg(format!("{}: {what}", path.display()));
        let header: serde_json::Value = metadata
            .get(META_KEY)
            .ok_or_else(|| bad(format!("no `{META_KEY}` metadata: not a file written by QuantizedGraph::save")))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("bad `{META_KEY}` metadata: {e}"))))?;
        let mode = match header["mode"].as_str() {
            Some("Dynamic") => Mode::Dynamic,
            Some("Static") => Mode::Static,
            other => return Err(bad(format!("unknown quantization mode {other:?}"))),
        };
        let entries = header["layers"].as_array().cloned().unwrap_or_default();
        let get = |name: &str| tensors.get(name).ok_or_else(|| bad(format!("missing tensor `{name}`")));
        let Analysis { chains, kept, norms, .. } = find_chains(graph, params)?;
        let norms = norms
            .into_iter()
            .map(|(node, n)| {
                let scale = get(&format!("affine.{}.scale", n.path))?.to_vec::<f32>();
                let shift = get(&format!("affine.{}.shift", n.path))?.to_vec::<f32>();
                Ok((node, ChannelAffine { path: n.path, scale, shift }))
            })
            .collect::<Result<Vec<_>>>()?;
        if chains.len() != entries.len() {
            return Err(bad(format!("the file has {} int8 layers but this model's graph has {}", entries.len(), chains.len())));
        }
        let act = |p: &str, what: &str| -> Result<Option<QParams>> {
            match (tensors.get(&format!("{p}.{what}_scale")), tensors.get(&format!("{p}.{what}_zero_point"))) {
                (Some(s), Some(z)) => Ok(Some(QParams::from_tensors(QDType::U8, None, s, z)?)),
                _ => Ok(None),
            }
        };
        let mut layers = Vec::with_capacity(chains.len());
        for (i, (ch, entry)) in chains.iter().zip(&entries).enumerate() {
            let p = format!("int8.{i}");
            let kind = match ch.kind {
                ChainKind::Linear => "linear",
                ChainKind::Conv2d(_) => "conv2d",
            };
            if entry["name"].as_str() != Some(ch.label.as_str()) || entry["relu"].as_bool() != Some(ch.relu) || entry["kind"].as_str() != Some(kind) {
                return Err(bad(format!("int8 layer {i} is {entry} in the file but `{}` (relu {}) in this graph", ch.label, ch.relu)));
            }
            let w = get(&format!("{p}.weight"))?;
            if w.shape() != ch.weight.shape() {
                return Err(bad(format!("`{p}.weight` is {:?} but layer `{}` is {:?}", w.shape(), ch.label, ch.weight.shape())));
            }
            let axis = entry["per_channel"].as_bool().unwrap_or(false).then_some(0);
            let wp = QParams::from_tensors(QDType::I8, axis, get(&format!("{p}.weight_scale"))?, get(&format!("{p}.weight_zero_point"))?)?;
            let bias = tensors.get(&format!("{p}.bias")).map(|b| b.to_vec::<f32>());
            let input = match act(&p, "input")? {
                Some(q) => InputQuant::Static(q),
                None if mode == Mode::Dynamic => InputQuant::Dynamic,
                None => return Err(bad(format!("static layer `{}` has no input scale", ch.label))),
            };
            let output = act(&p, "output")?;
            let wv = w.to_vec::<i8>();
            layers.push(match ch.kind {
                ChainKind::Linear => {
                    let (n, k) = (w.shape()[0], w.shape()[1]);
                    QLayer::Linear(QLinear::from_parts(&ch.label, &wv, n, k, wp, bias, ch.relu, input, output)?)
                }
                ChainKind::Conv2d(g) => QLayer::Conv2d(QConv2d::from_parts(&ch.label, &wv, w.shape(), wp, bias, ch.relu, g, input, output)?),
            });
        }
        let f32_params: Params = tensors.iter().filter_map(|(k, v)| k.strip_prefix("f32.").map(|p| (p.to_string(), v.clone()))).collect();
        let report = QuantReport { mode, quantized: layers.iter().map(layer_report).collect(), kept_f32: kept };
        let plan = QuantizedGraph::assemble(graph, f32_params, &chains, layers, norms, report);
        for step in &plan.steps {
            if let Step::Param(path) = step {
                if !plan.params.contains_key(path) {
                    return Err(bad(format!("missing f32 parameter `f32.{path}`")));
                }
            }
        }
        Ok(plan)
    }
}
