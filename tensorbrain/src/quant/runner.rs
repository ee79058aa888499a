//! `QuantizedGraph`: a frozen forward graph rewritten into int8 IR ops, and the interpreter
//! that runs it.
//!
//! Building one takes three steps, each a plain function:
//! 1. [`find_chains`] picks what can run in int8 (Linear and Conv2d chains, embeddings).
//! 2. [`insert_int8`] rewrites the graph: each chain becomes a [`Op::QLinear`] or
//!    [`Op::QConv2d`] reading its input through an [`Op::Quantize`] (static mode) or as f32
//!    (dynamic mode); each embedding a [`Op::QEmbedding`].
//! 3. [`fold_qdq`] removes the f32 round trips between int8 ops, so that in a static graph an
//!    activation stays u8 from one int8 layer to the next (through max pooling and flattening),
//!    each layer requantizing straight to the next one's input parameters.
//!
//! The result is ordinary IR (print it with [`QuantizedGraph::graph`]). The interpreter holds
//! the packed weights each int8 op names, and runs every other op in f32 through the same op
//! implementations the compiled graphs use.

use std::collections::HashMap;
use std::path::Path;

use tensorbrain_ir::passes::{fold_qdq, insert_int8, Replacement};
use tensorbrain_ir::{Graph, NodeId, Op, PoolKind, QLayerOp, QuantParams};
use tensorbrain_kernels::int8;

use super::chains::{find_chains, Analysis, Chain, ChainKind, ChannelAffine, EmbeddingUse};
use super::config::{Mode, QuantConfig};
use super::observer::Observer;
use super::qconv::QConv2d;
use super::qembedding::QEmbedding;
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
    fn from_chain(name: &str, ch: &Chain, config: &QuantConfig, input: InputQuant, output: Option<QParams>) -> Result<QLayer> {
        Ok(match ch.kind {
            ChainKind::Linear => QLayer::Linear(QLinear::from_f32(name, &ch.weight, ch.bias.as_ref(), ch.relu, config.weights, input, output)?),
            ChainKind::Conv2d(g) => QLayer::Conv2d(QConv2d::from_f32(name, &ch.weight, ch.bias.as_ref(), ch.relu, g, config.weights, input, output)?),
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

/// A quantized inference graph (see the module docs).
#[derive(Clone, Debug)]
pub struct QuantizedGraph {
    /// The int8 IR.
    graph: Graph,
    /// The f32 parameters it still reads.
    params: Params,
    /// One per chain, in the order [`find_chains`] gives them; `layer_index` maps an int8 op's
    /// layer name to its entry.
    layers: Vec<QLayer>,
    layer_index: HashMap<String, usize>,
    embeddings: Vec<QEmbedding>,
    embedding_index: HashMap<String, usize>,
    /// Batch norms that did not fold into a layer, by the path the graph calls.
    norms: Vec<ChannelAffine>,
    /// For each node, the last node that reads it (its value is dropped after that).
    last_use: Vec<usize>,
    report: QuantReport,
}

type Observe<'a> = &'a mut dyn FnMut(NodeId, &Tensor) -> Result<()>;

/// Builds the int8 layer for chain `c` (named `name`) with its input and output parameters.
type MakeLayer<'a> = dyn Fn(usize, &str, &Chain, InputQuant, Option<QParams>) -> Result<QLayer> + 'a;
/// Builds the int8 table for embedding `k` (named `name`).
type MakeTable<'a> = dyn Fn(usize, &str, &EmbeddingUse) -> Result<QEmbedding> + 'a;

/// Quantizes the f32 table.
fn table_from_f32(_: usize, name: &str, e: &EmbeddingUse) -> Result<QEmbedding> {
    QEmbedding::from_f32(name, &e.table)
}

impl QuantizedGraph {
    /// Quantizes a frozen forward graph (see [`crate::compile::freeze`]) whose parameters are
    /// `params`. Static mode runs `calib` (each element: one batch of the graph's inputs) through
    /// the f32 graph to choose activation ranges.
    ///
    /// # Errors
    /// Static mode with no calibration batches; NaN or Inf in any observed activation (naming
    /// the layer and batch); a graph the runner cannot execute (nested model calls).
    pub fn build(graph: &Graph, params: Params, calib: &[Vec<Tensor>], config: &QuantConfig) -> Result<QuantizedGraph> {
        let analysis = find_chains(graph, &params)?;
        let inputs: Vec<Option<QParams>> = match config.mode {
            Mode::Dynamic => vec![None; analysis.chains.len()],
            Mode::Static => calibrate(graph, &params, &analysis, calib, config)?,
        };
        let make: &MakeLayer = &|_, name, ch, input, output| QLayer::from_chain(name, ch, config, input, output);
        QuantizedGraph::assemble(graph, params, analysis, &inputs, make, &table_from_f32, config.mode)
    }

    /// Static quantization with activation parameters chosen elsewhere (quantization-aware
    /// training): `inputs` maps a layer's label to the u8 parameters of its input.
    ///
    /// # Errors
    /// A layer of the graph with no entry in `inputs`; as [`QuantizedGraph::build`].
    pub fn build_with_ranges(graph: &Graph, params: Params, inputs: &HashMap<String, QParams>, config: &QuantConfig) -> Result<QuantizedGraph> {
        let analysis = find_chains(graph, &params)?;
        let ranges = analysis
            .chains
            .iter()
            .map(|ch| {
                inputs.get(&ch.label).cloned().map(Some).ok_or_else(|| {
                    let mut known: Vec<&String> = inputs.keys().collect();
                    known.sort();
                    Error::Msg(format!("quantize: no activation range for the input of `{}` (the ranges given cover {known:?})", ch.label))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let make: &MakeLayer = &|_, name, ch, input, output| QLayer::from_chain(name, ch, config, input, output);
        QuantizedGraph::assemble(graph, params, analysis, &ranges, make, &table_from_f32, Mode::Static)
    }

    /// Rewrites the graph into int8 ops and builds the layers they name. `inputs[c]` is chain
    /// `c`'s input parameters (`None`: dynamic).
    fn assemble(
        graph: &Graph,
        mut params: Params,
        analysis: Analysis,
        inputs: &[Option<QParams>],
        make_layer: &MakeLayer,
        make_table: &MakeTable,
        mode: Mode,
    ) -> Result<QuantizedGraph> {
        let Analysis { chains, embeddings: uses, kept, norms, .. } = analysis;
        let names = layer_names(chains.iter().map(|c| c.label.as_str()));
        let table_names = layer_names(uses.iter().map(|e| e.label.as_str()));
        let mut replacements = Vec::with_capacity(chains.len() + uses.len());
        for ((ch, name), input) in chains.iter().zip(&names).zip(inputs) {
            let input = input.as_ref().map(ir_params);
            let layer = QLayerOp { layer: name.clone(), out: ch.weight.shape()[0], relu: ch.relu, input, output: None };
            let op = match ch.kind {
                ChainKind::Linear => Op::QLinear(layer),
                ChainKind::Conv2d(geometry) => Op::QConv2d { layer, kernel: [ch.weight.shape()[2], ch.weight.shape()[3]], geometry },
            };
            replacements.push(Replacement { node: ch.tail, input: ch.input, op, quantize_input: input });
        }
        for (e, name) in uses.iter().zip(&table_names) {
            let op = Op::QEmbedding { table: name.clone(), dim: e.table.shape()[1] };
            replacements.push(Replacement { node: e.node, input: e.indices, op, quantize_input: None });
        }
        let int8_graph = insert_int8(graph, &replacements).map_err(|e| Error::Msg(format!("quantize: {}", e.message)))?;
        let int8_graph = fold_qdq(&int8_graph);
        // What the folding decided each layer's output is.
        let mut outputs: HashMap<&str, Option<QParams>> = HashMap::new();
        for node in &int8_graph.nodes {
            if let Op::QLinear(l) | Op::QConv2d { layer: l, .. } = &node.op {
                outputs.insert(&l.layer, l.output.as_ref().map(|p| QParams::per_tensor(QDType::U8, p.scale, p.zero_point)));
            }
        }
        let mut layers = Vec::with_capacity(chains.len());
        for (c, ((ch, name), input)) in chains.iter().zip(&names).zip(inputs).enumerate() {
            let input = match input {
                Some(p) => InputQuant::Static(p.clone()),
                None => InputQuant::Dynamic,
            };
            let output = outputs.get(name.as_str()).cloned().flatten();
            layers.push(make_layer(c, name, ch, input, output)?);
        }
        let embeddings = uses.iter().zip(&table_names).enumerate().map(|(k, (e, name))| make_table(k, name, e)).collect::<Result<Vec<_>>>()?;
        // `find_chains` refused any nested call that is not a batch norm.
        let norms: Vec<ChannelAffine> = norms.into_iter().map(|(_, n)| n).collect();
        let read: std::collections::HashSet<&str> =
            int8_graph.nodes.iter().filter_map(|n| if let Op::Param { path, .. } = &n.op { Some(path.as_str()) } else { None }).collect();
        params.retain(|p, _| read.contains(p.as_str()));
        let mut quantized: Vec<QuantizedLayer> = layers.iter().map(layer_report).collect();
        quantized.extend(embeddings.iter().map(embedding_report));
        let report = QuantReport { mode, quantized, kept_f32: kept };
        Ok(QuantizedGraph {
            last_use: last_uses(&int8_graph),
            graph: int8_graph,
            params,
            layer_index: names.into_iter().enumerate().map(|(i, n)| (n, i)).collect(),
            layers,
            embedding_index: table_names.into_iter().enumerate().map(|(i, n)| (n, i)).collect(),
            embeddings,
            norms,
            report,
        })
    }

    /// The graph as it is, in f32, with every batch norm applied by the interpreter (what
    /// calibration observes).
    fn f32_plan(graph: &Graph, params: &Params, all_norms: &[(NodeId, ChannelAffine)], mode: Mode) -> QuantizedGraph {
        QuantizedGraph {
            graph: graph.clone(),
            params: params.clone(),
            layers: Vec::new(),
            layer_index: HashMap::new(),
            embeddings: Vec::new(),
            embedding_index: HashMap::new(),
            norms: all_norms.iter().map(|(_, n)| n.clone()).collect(),
            last_use: last_uses(graph),
            report: QuantReport { mode, quantized: vec![], kept_f32: vec![] },
        }
    }

    /// Runs the graph on `inputs` (in the order of its inputs); returns its outputs as f32.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.execute(inputs, None)
    }

    fn execute(&self, inputs: &[Tensor], mut observe: Option<Observe<'_>>) -> Result<Vec<Tensor>> {
        let expected = self.graph.inputs().len();
        if inputs.len() != expected {
            return Err(Error::Msg(format!("quantized graph takes {expected} input(s), got {}", inputs.len())));
        }
        no_grad(|| {
            let n = self.graph.nodes.len();
            let mut vals: Vec<Option<Act>> = vec![None; n];
            let mut shapes: Vec<Vec<usize>> = vec![Vec::new(); n];
            let mut next_input = 0;
            for (i, node) in self.graph.nodes.iter().enumerate() {
                let arg = |k: usize| vals[node.inputs[k]].as_ref().expect("inputs are computed before use");
                let at = |e: Error| Error::Msg(format!("%{i} {} ({}): {e}", node.op.name(), node.label));
                let out = match &node.op {
                    Op::Input { .. } => {
                        next_input += 1;
                        Act::F32(inputs[next_input - 1].detach())
                    }
                    Op::Param { path, .. } => Act::F32(
                        self.params.get(path).ok_or_else(|| Error::Msg(format!("quantized graph: no value for parameter `{path}`")))?.clone(),
                    ),
                    Op::Quantize(p) => quantize_act(&arg(0).clone().into_f32(), p)?,
                    Op::Dequantize(p) => match arg(0) {
                        Act::U8 { scale, zero, .. } | Act::U8ChannelsLast { scale, zero, .. } if (*scale, *zero) != (p.scale, p.zero_point) => {
                            return Err(at(Error::Msg(format!("the input is u8 in scale {scale} zero {zero}"))))
                        }
                        a => Act::F32(a.clone().into_f32()),
                    },
                    Op::Requantize { to, .. } => quantize_act(&arg(0).clone().into_f32(), to)?,
                    Op::QLinear(l) | Op::QConv2d { layer: l, .. } => {
                        let layer = self.layer_index.get(&l.layer).ok_or_else(|| at(Error::Msg(format!("no int8 layer `{}`", l.layer))))?;
                        self.layers[*layer].forward(arg(0))?
                    }
                    Op::QEmbedding { table, .. } => {
                        let e = self.embedding_index.get(table).ok_or_else(|| at(Error::Msg(format!("no int8 table `{table}`"))))?;
                        Act::F32(self.embeddings[*e].forward(&arg(0).clone().into_f32())?)
                    }
                    Op::Call { path, .. } => {
                        let norm = self.norms.iter().find(|n| &n.path == path).ok_or_else(|| at(Error::Msg("not a batch norm".into())))?;
                        Act::F32(channel_affine(&arg(0).clone().into_f32(), norm)?)
                    }
                    op if passes_u8(op) && arg(0).is_u8() => u8_op(op, arg(0)).map_err(at)?,
                    op => {
                        let args: Vec<Tensor> = node.inputs.iter().map(|&a| vals[a].clone().expect("inputs are computed before use").into_f32()).collect();
                        let refs: Vec<&Tensor> = args.iter().collect();
                        let shape_args: Vec<&[usize]> = node.shape_of.iter().map(|&a| shapes[a].as_slice()).collect();
                        Act::F32(crate::exec::apply(op, &refs, &shape_args).map_err(at)?)
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

    pub fn embeddings(&self) -> &[QEmbedding] {
        &self.embeddings
    }

    /// The int8 IR: quantize/requantize/dequantize, `qlinear`/`qconv2d` with their fused
    /// epilogues, `qembedding`, and the ops that stay f32 (print it, or `to_dot()`).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
}

/// Static mode: the input parameters of each chain, from the calibration batches run through
/// the f32 graph.
fn calibrate(graph: &Graph, params: &Params, analysis: &Analysis, calib: &[Vec<Tensor>], config: &QuantConfig) -> Result<Vec<Option<QParams>>> {
    if calib.is_empty() {
        return Err(Error::Msg(
            "quantize: the calibration set is empty; static quantization needs at least one batch of inputs \
             to choose activation ranges (or use QuantConfig::dynamic())"
                .into(),
        ));
    }
    let mut watched: HashMap<NodeId, (String, Box<dyn Observer>)> = HashMap::new();
    for ch in &analysis.chains {
        watched.entry(ch.input).or_insert_with(|| (format!("input of `{}`", ch.label), config.observer.build()));
    }
    let f32_plan = QuantizedGraph::f32_plan(graph, params, &analysis.all_norms, config.mode);
    for (b, batch) in calib.iter().enumerate() {
        let mut observe = |node: NodeId, value: &Tensor| -> Result<()> {
            let Some((what, obs)) = watched.get_mut(&node) else { return Ok(()) };
            obs.observe(&value.to_vec::<f32>()).map_err(|e| Error::Msg(format!("the {what} holds {e}")))
        };
        f32_plan.execute(batch, Some(&mut observe)).map_err(|e| Error::Msg(format!("quantize: calibration batch {b}: {e}")))?;
    }
    analysis
        .chains
        .iter()
        .map(|ch| {
            let (what, obs) = &watched[&ch.input];
            obs.qparams(QSpec::ACTIVATIONS).map(Some).map_err(|e| Error::Msg(format!("quantize: the {what}: {e}")))
        })
        .collect()
}

/// Unique names for int8 layers: the label, or `label#k` for the k-th further use of a layer
/// called more than once.
fn layer_names<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    labels
        .map(|l| {
            let k = seen.entry(l).or_insert(0);
            *k += 1;
            if *k == 1 {
                l.to_string()
            } else {
                format!("{l}#{}", *k - 1)
            }
        })
        .collect()
}

fn ir_params(p: &QParams) -> QuantParams {
    let (scale, zero_point) = p.get(0);
    QuantParams { scale, zero_point }
}

/// For each node, the last node that reads it; outputs are never dropped.
fn last_uses(graph: &Graph) -> Vec<usize> {
    let mut last_use = vec![0usize; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &d in &node.inputs {
            last_use[d] = i;
        }
    }
    for &o in &graph.outputs {
        last_use[o] = usize::MAX;
    }
    last_use
}

/// Quantizes an f32 value to u8 in `p`.
fn quantize_act(x: &Tensor, p: &QuantParams) -> Result<Act> {
    let q = with_data(x, |v: &[f32]| {
        let mut q = vec![0u8; v.len()];
        int8::quantize_u8(v, p.scale, p.zero_point, &mut q);
        q
    })?;
    Ok(Act::U8 { data: Tensor::from_vec(q, x.shape()), scale: p.scale, zero: p.zero_point })
}

/// Ops that commute with quantization, so that a u8 value passes through them in its own
/// parameters: max pooling (quantization is monotonic) and flattening.
fn passes_u8(op: &Op) -> bool {
    matches!(op, Op::Pool2d { kind: PoolKind::Max, .. } | Op::Flatten { .. })
}

/// A [`passes_u8`] op on a u8 value, in the value's own parameters: a max pool keeps the
/// layout it is given; flattening needs channels-first order.
fn u8_op(op: &Op, x: &Act) -> Result<Act> {
    let pool = |data: &Tensor, f: fn(&[u8], [usize; 4], [usize; 2], [usize; 2], [usize; 2]) -> (Vec<u8>, [usize; 4]), g: &tensorbrain_ir::op::PoolGeometry| -> Result<Tensor> {
        let shape: [usize; 4] = data.shape().try_into().map_err(|_| Error::Msg(format!("max pool: input must be 4-D, got {:?}", data.shape())))?;
        let (out, out_shape) = with_data(data, |d: &[u8]| f(d, shape, g.kernel, g.stride, g.padding))?;
        Ok(Tensor::from_vec(out, &out_shape))
    };
    Ok(match (op, x) {
        (Op::Pool2d { kind: PoolKind::Max, geometry: g, .. }, Act::U8 { data, scale, zero }) => {
            Act::U8 { data: pool(data, int8::max_pool2d_u8, g)?, scale: *scale, zero: *zero }
        }
        (Op::Pool2d { kind: PoolKind::Max, geometry: g, .. }, Act::U8ChannelsLast { data, scale, zero }) => {
            Act::U8ChannelsLast { data: pool(data, int8::max_pool2d_u8_nhwc, g)?, scale: *scale, zero: *zero }
        }
        (Op::Flatten { start }, x) => match x.clone().channels_first() {
            Act::U8 { data, scale, zero } => Act::U8 { data: data.try_flatten(*start as isize, -1)?, scale, zero },
            _ => return Err(Error::Msg("internal: flatten of a value that is not u8".into())),
        },
        (other, _) => return Err(Error::Msg(format!("internal: {} does not run on u8", other.name()))),
    })
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

fn embedding_report(e: &QEmbedding) -> QuantizedLayer {
    QuantizedLayer {
        kind: "Embedding".into(),
        name: e.name().to_string(),
        in_features: e.num_embeddings(),
        out_features: e.dim(),
        relu: false,
        input: "indices".into(),
        output_u8: false,
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
        let mut tables = Vec::new();
        for (i, e) in self.embeddings.iter().enumerate() {
            let p = format!("int8.embedding.{i}");
            tensors.push((format!("{p}.weight"), e.table().clone()));
            let (s, z) = e.params().to_tensors();
            tensors.push((format!("{p}.weight_scale"), s));
            tensors.push((format!("{p}.weight_zero_point"), z));
            tables.push(serde_json::json!({ "name": e.name() }));
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
        let header = serde_json::json!({ "mode": format!("{:?}", self.report.mode), "layers": meta, "embeddings": tables });
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
        let table_entries = header["embeddings"].as_array().cloned().unwrap_or_default();
        let get = |name: &str| tensors.get(name).ok_or_else(|| bad(format!("missing tensor `{name}`")));
        let mut analysis = find_chains(graph, params)?;
        for (_, norm) in &mut analysis.norms {
            norm.scale = get(&format!("affine.{}.scale", norm.path))?.to_vec::<f32>();
            norm.shift = get(&format!("affine.{}.shift", norm.path))?.to_vec::<f32>();
        }
        if analysis.chains.len() != entries.len() {
            return Err(bad(format!("the file has {} int8 layers but this model's graph has {}", entries.len(), analysis.chains.len())));
        }
        if analysis.embeddings.len() != table_entries.len() {
            return Err(bad(format!("the file has {} int8 embeddings but this model's graph has {}", table_entries.len(), analysis.embeddings.len())));
        }
        let act = |p: &str, what: &str| -> Result<Option<QParams>> {
            match (tensors.get(&format!("{p}.{what}_scale")), tensors.get(&format!("{p}.{what}_zero_point"))) {
                (Some(s), Some(z)) => Ok(Some(QParams::from_tensors(QDType::U8, None, s, z)?)),
                _ => Ok(None),
            }
        };
        let names = layer_names(analysis.chains.iter().map(|c| c.label.as_str()));
        let mut inputs = Vec::with_capacity(entries.len());
        for (i, ((ch, entry), name)) in analysis.chains.iter().zip(&entries).zip(&names).enumerate() {
            let kind = match ch.kind {
                ChainKind::Linear => "linear",
                ChainKind::Conv2d(_) => "conv2d",
            };
            if entry["name"].as_str() != Some(name.as_str()) || entry["relu"].as_bool() != Some(ch.relu) || entry["kind"].as_str() != Some(kind) {
                return Err(bad(format!("int8 layer {i} is {entry} in the file but `{name}` (relu {}) in this graph", ch.relu)));
            }
            match (act(&format!("int8.{i}"), "input")?, mode) {
                (Some(q), _) => inputs.push(Some(q)),
                (None, Mode::Dynamic) => inputs.push(None),
                (None, Mode::Static) => return Err(bad(format!("static layer `{name}` has no input scale"))),
            }
        }
        let make: &MakeLayer = &|i, name, ch, input, output| {
            let p = format!("int8.{i}");
            let w = get(&format!("{p}.weight"))?;
            if w.shape() != ch.weight.shape() {
                return Err(bad(format!("`{p}.weight` is {:?} but layer `{name}` is {:?}", w.shape(), ch.weight.shape())));
            }
            let axis = entries[i]["per_channel"].as_bool().unwrap_or(false).then_some(0);
            let wp = QParams::from_tensors(QDType::I8, axis, get(&format!("{p}.weight_scale"))?, get(&format!("{p}.weight_zero_point"))?)?;
            let bias = tensors.get(&format!("{p}.bias")).map(|b| b.to_vec::<f32>());
            let wv = w.to_vec::<i8>();
            Ok(match ch.kind {
                ChainKind::Linear => {
                    let (n, k) = (w.shape()[0], w.shape()[1]);
                    QLayer::Linear(QLinear::from_parts(name, &wv, n, k, wp, bias, ch.relu, input, output)?)
                }
                ChainKind::Conv2d(g) => QLayer::Conv2d(QConv2d::from_parts(name, &wv, w.shape(), wp, bias, ch.relu, g, input, output)?),
            })
        };
        let make_table: &MakeTable = &|k, name, e| {
            let p = format!("int8.embedding.{k}");
            if table_entries[k]["name"].as_str() != Some(name) {
                return Err(bad(format!("int8 embedding {k} is {} in the file but `{name}` in this graph", table_entries[k])));
            }
            let table = get(&format!("{p}.weight"))?;
            if table.shape() != e.table.shape() {
                return Err(bad(format!("`{p}.weight` is {:?} but embedding `{name}` is {:?}", table.shape(), e.table.shape())));
            }
            let params = QParams::from_tensors(QDType::I8, Some(0), get(&format!("{p}.weight_scale"))?, get(&format!("{p}.weight_zero_point"))?)?;
            QEmbedding::from_parts(name, table.clone(), &params)
        };
        let f32_params: Params = tensors.iter().filter_map(|(k, v)| k.strip_prefix("f32.").map(|p| (p.to_string(), v.clone()))).collect();
        let available: std::collections::HashSet<String> = f32_params.keys().cloned().collect();
        let plan = QuantizedGraph::assemble(graph, f32_params, analysis, &inputs, make, make_table, mode)?;
        for node in &plan.graph.nodes {
            if let Op::Param { path, .. } = &node.op {
                if !available.contains(path) {
                    return Err(bad(format!("missing f32 parameter `f32.{path}`")));
                }
            }
        }
        Ok(plan)
    }
}
