//! The graph compiler: optimise an IR graph, fuse its elementwise ops, and run it.
//!
//! ```text
//! let g = model.graph();                               // #[model] forward + generated backward
//! let m = compile::compile_model(&model, &g, &compile::Options::default())?;
//! let y = m.forward(&[x])?;                            // fused inference
//! let step = m.forward_backward(&[x], &grad_y)?;       // fused forward + backward
//! ```
//!
//! [`compile`] runs the IR passes ([`tensorbrain_ir::passes`]: shape check, simplification,
//! constant folding, CSE, DCE), then fusion, and lowers each fused kernel for
//! `tensorbrain_kernels::fused`. [`CompiledGraph::run`] is an interpreter: one step per kernel,
//! ops through [`crate::exec::apply`] (the same kernels generated `#[model]` code calls), fused
//! programs in one pass over memory, and intermediate tensors freed after their last use.
//!
//! Graphs come from `#[model]` (`model.graph()`), from [`GraphBuilder`], or from
//! `tensorbrain_ir::autodiff::backward` of either. There is no tracing of eager code: eager ops
//! do not report themselves to anything, and a builder keeps graphs explicit.
//!
//! Set `TENSORBRAIN_PRINT_FUSION=1` to print what each [`compile`] call fused.
//!
//! `#[model]` applies the same fusion at compile time: its generated forward and backward run
//! fused kernels emitted as Rust ([`codegen`]), so a served model needs no run-time compiler.
//! `Net::kernel_counts()` and `Net::fusion_report()` say what it fused.

mod builder;
#[doc(hidden)]
pub mod codegen;
pub(crate) mod run;

use std::collections::{HashMap, HashSet};

use tensorbrain_ir::autodiff::Backward;
use tensorbrain_ir::passes::{self, FuseOptions, FusedGraph, Kernel};
use tensorbrain_ir::{Dim, Graph, Node, NodeId, Op, Shape};

use crate::autograd::no_grad;
use crate::nn::ModuleExt;
use crate::tensor::{Error, Result, Tensor};

pub use builder::GraphBuilder;
pub use codegen::KernelCounts;
use run::Lowered;

/// Parameter values by dotted path (`fc1.weight`), as `named_parameters` gives them.
pub type Params = HashMap<String, Tensor>;

/// What [`compile`] does.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Run the IR passes (simplification, constant folding, CSE, DCE).
    pub optimize: bool,
    pub passes: passes::Options,
    pub fuse: FuseOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options { optimize: true, passes: passes::Options::default(), fuse: FuseOptions::default() }
    }
}

impl Options {
    /// No passes, no fusion: one kernel per IR node (the reference interpreter).
    pub fn unfused() -> Options {
        Options { optimize: false, passes: passes::Options::default(), fuse: FuseOptions::none() }
    }

    /// The IR passes but no fusion.
    pub fn optimized_unfused() -> Options {
        Options { fuse: FuseOptions::none(), ..Options::default() }
    }
}

/// How one node runs.
#[derive(Clone, Debug)]
enum Step {
    Input(usize),
    Param(String),
    Op(Op),
    Fused(Lowered),
    Epilogue { head: Op, head_inputs: usize, tail: Lowered },
}

/// Kernel launches and an estimate of memory traffic (each kernel's input and output bytes)
/// of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub kernels: usize,
    pub bytes: usize,
}

/// One kernel of a run timed by [`CompiledGraph::time_kernels`].
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The node's index in the fused graph, and what it runs: an op's name, `fused` for an
    /// elementwise program, `<op>+epilogue` for an op with a fused tail.
    pub node: usize,
    pub name: String,
    pub out_shape: Vec<usize>,
    pub seconds: f64,
}

/// An optimised, fused graph ready to run.
#[derive(Clone, Debug)]
pub struct CompiledGraph {
    source: Graph,
    optimized: Graph,
    fused: FusedGraph,
    report: passes::Report,
    steps: Vec<Step>,
    /// Index of the last node reading each node's value (`usize::MAX` for outputs).
    last_use: Vec<usize>,
    input_shapes: Vec<(String, Shape)>,
    param_shapes: Vec<(String, Shape)>,
}

fn ir_err(e: tensorbrain_ir::ShapeError) -> Error {
    Error::Msg(format!("compile: {e}"))
}

/// Optimises and fuses `graph` (see the module docs).
pub fn compile(graph: &Graph, opts: &Options) -> Result<CompiledGraph> {
    if let Some(n) = graph.nodes.iter().find(|n| matches!(n.op, Op::Call { .. } | Op::CallBackward { .. })) {
        return Err(Error::Msg(format!(
            "compile: {} calls a nested model, which the compiler cannot see into; compile the nested model on its own",
            n.op.name()
        )));
    }
    passes::verify(graph).map_err(ir_err)?;
    let (optimized, report) = if opts.optimize { passes::optimize(graph, &opts.passes).map_err(ir_err)? } else { (graph.clone(), passes::Report::default()) };
    let fused = passes::fuse(&optimized, &opts.fuse);
    let mut inputs_seen = 0;
    let steps = fused
        .nodes
        .iter()
        .map(|n| {
            Ok(match &n.kernel {
                Kernel::Op(Op::Input { .. }) => {
                    inputs_seen += 1;
                    Step::Input(inputs_seen - 1)
                }
                Kernel::Op(Op::Param { path, .. }) => Step::Param(path.clone()),
                // A lone elementwise op still runs as a one-op fused program: the fused kernel's
                // vectorised exp/tanh beat the runtime op's scalar libm calls.
                Kernel::Op(op) if opts.fuse.elementwise && op.is_elementwise() => Step::Fused(Lowered::new(&passes::fusion::program_of(op, n.inputs.len()))?),
                Kernel::Op(op) => Step::Op(op.clone()),
                Kernel::Fused(p) => Step::Fused(Lowered::new(p)?),
                Kernel::Epilogue { head, head_inputs, tail } => Step::Epilogue { head: head.clone(), head_inputs: *head_inputs, tail: Lowered::new(tail)? },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut last_use = vec![0usize; fused.nodes.len()];
    for (i, n) in fused.nodes.iter().enumerate() {
        for &a in &n.inputs {
            last_use[a] = i;
        }
    }
    for &o in &fused.outputs {
        last_use[o] = usize::MAX;
    }
    let shapes_of = |want_input: bool| -> Vec<(String, Shape)> {
        fused
            .nodes
            .iter()
            .filter_map(|n| match &n.kernel {
                Kernel::Op(Op::Input { name, shape }) if want_input => Some((name.clone(), shape.clone())),
                Kernel::Op(Op::Param { path, shape }) if !want_input => Some((path.clone(), shape.clone())),
                _ => None,
            })
            .collect()
    };
    let (input_shapes, param_shapes) = (shapes_of(true), shapes_of(false));
    let c = CompiledGraph { source: graph.clone(), optimized, fused, report, steps, last_use, input_shapes, param_shapes };
    if std::env::var("TENSORBRAIN_PRINT_FUSION").is_ok_and(|v| v != "0" && !v.is_empty()) {
        eprintln!("{}", c.report());
    }
    Ok(c)
}

impl CompiledGraph {
    /// The graph as given.
    pub fn source(&self) -> &Graph {
        &self.source
    }

    /// The graph after the IR passes.
    pub fn optimized(&self) -> &Graph {
        &self.optimized
    }

    /// The kernels that run.
    pub fn fused(&self) -> &FusedGraph {
        &self.fused
    }

    /// Kernel launches per run.
    pub fn kernel_count(&self) -> usize {
        self.fused.kernel_count()
    }

    /// What the passes and fusion did, for people.
    pub fn report(&self) -> String {
        let src_kernels = self.source.nodes.iter().filter(|n| !passes::fusion::is_free(&n.op)).count();
        let mut s = format!(
            "compiled graph: {} nodes ({} kernels) -> {} nodes after passes -> {} kernels\n",
            self.source.nodes.len(),
            src_kernels,
            self.optimized.nodes.len(),
            self.kernel_count()
        );
        s += &self.report.to_string();
        s += &self.fused.fusion_report();
        s
    }

    /// Runs the graph: `inputs` in the order of the graph's `Input` nodes, parameters by path.
    /// Returns the outputs in order.
    pub fn run(&self, inputs: &[Tensor], params: &Params) -> Result<Vec<Tensor>> {
        self.execute(inputs, params, None, None)
    }

    /// [`CompiledGraph::run`], also counting kernels and bytes moved.
    pub fn profile(&self, inputs: &[Tensor], params: &Params) -> Result<(Vec<Tensor>, Stats)> {
        let mut stats = Stats::default();
        let out = self.execute(inputs, params, Some(&mut stats), None)?;
        Ok((out, stats))
    }

    /// Runs once and times each kernel, in execution order: where a compiled graph's time goes.
    pub fn time_kernels(&self, inputs: &[Tensor], params: &Params) -> Result<Vec<KernelTime>> {
        let mut times = Vec::new();
        self.execute(inputs, params, None, Some(&mut times))?;
        Ok(times)
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.input_shapes.len() {
            let names: Vec<&str> = self.input_shapes.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Msg(format!("compiled graph takes {} inputs ({}), got {}", names.len(), names.join(", "), inputs.len())));
        }
        let mut bound: HashMap<&str, usize> = HashMap::new();
        for ((name, shape), t) in self.input_shapes.iter().zip(inputs) {
            let bad = || Error::Msg(format!("compiled graph: input `{name}` must have shape {shape}, got {:?}", t.shape()));
            if shape.is_unknown() {
                continue;
            }
            if shape.rank() != t.rank() {
                return Err(bad());
            }
            for (d, &size) in shape.0.iter().zip(t.shape()) {
                match d {
                    Dim::Known(n) if *n != size => return Err(bad()),
                    Dim::Sym(s) => {
                        if let Some(&v) = bound.get(s.as_str()) {
                            if v != size {
                                return Err(Error::Msg(format!("compiled graph: size {s} is {v} in an earlier input but {size} in `{name}` {:?}", t.shape())));
                            }
                        }
                        bound.insert(s, size);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn param<'p>(&self, params: &'p Params, path: &str) -> Result<&'p Tensor> {
        let t = params.get(path).ok_or_else(|| Error::Msg(format!("compiled graph: no value for parameter `{path}`")))?;
        if let Some((_, shape)) = self.param_shapes.iter().find(|(p, _)| p == path) {
            let want: Option<Vec<usize>> = shape.0.iter().map(Dim::known).collect();
            if want.is_some_and(|w| w != t.shape()) {
                return Err(Error::Msg(format!("compiled graph: parameter `{path}` must have shape {shape}, got {:?}", t.shape())));
            }
        }
        Ok(t)
    }

    fn execute(&self, inputs: &[Tensor], params: &Params, mut stats: Option<&mut Stats>, mut times: Option<&mut Vec<KernelTime>>) -> Result<Vec<Tensor>> {
        self.check_inputs(inputs)?;
        no_grad(|| {
            let n = self.fused.nodes.len();
            let mut vals: Vec<Option<Tensor>> = vec![None; n];
            let mut shapes: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (i, (node, step)) in self.fused.nodes.iter().zip(&self.steps).enumerate() {
                let args: Vec<Tensor> = node.inputs.iter().map(|&a| vals[a].clone().expect("inputs are computed before use")).collect();
                let refs: Vec<&Tensor> = args.iter().collect();
                let shape_args: Vec<&[usize]> = node.shape_of.iter().map(|&a| shapes[a].as_slice()).collect();
                let started = std::time::Instant::now();
                let out = match step {
                    Step::Input(k) => inputs[*k].detach(),
                    Step::Param(path) => self.param(params, path)?.detach(),
                    Step::Op(op) => crate::exec::apply(op, &refs, &shape_args).map_err(|e| Error::Msg(format!("%{i} {}: {e}", op.name())))?,
                    Step::Fused(p) => run::run_fused(p, &refs)?,
                    Step::Epilogue { head, head_inputs, tail } => run::run_epilogue(head, *head_inputs, tail, &refs)?,
                };
                if let (Some(t), true) = (times.as_deref_mut(), node.is_kernel()) {
                    let name = match step {
                        Step::Op(op) => op.name().to_string(),
                        Step::Fused(_) => "fused".to_string(),
                        Step::Epilogue { head, .. } => format!("{}+epilogue", head.name()),
                        Step::Input(_) => "input".to_string(),
                        Step::Param(_) => "param".to_string(),
                    };
                    t.push(KernelTime { node: i, name, out_shape: out.shape().to_vec(), seconds: started.elapsed().as_secs_f64() });
                }
                if let Some(s) = stats.as_deref_mut() {
                    if node.is_kernel() {
                        s.kernels += 1;
                        s.bytes += refs.iter().map(|t| run::bytes_read(t)).sum::<usize>() + out.numel() * out.dtype().size_in_bytes();
                    }
                }
                shapes[i] = out.shape().to_vec();
                vals[i] = Some(out);
                drop(args);
                for &a in &node.inputs {
                    if self.last_use[a] == i {
                        vals[a] = None;
                    }
                }
            }
            Ok(self.fused.outputs.iter().map(|&o| vals[o].clone().expect("outputs are computed")).collect())
        })
    }
}

/// The forward part of a forward+backward graph, with the forward output as its output.
pub fn forward_graph(bw: &Backward) -> Graph {
    let mut g = Graph { nodes: bw.graph.nodes[..bw.forward_len].to_vec(), outputs: vec![bw.forward_output] };
    g = passes::dce(&g);
    g
}

/// The whole forward+backward graph with outputs `[forward output, gradients...]` (the
/// gradients of [`Backward::grads`] that exist, in order). Inputs: the forward inputs, then
/// the output gradient.
pub fn training_graph(bw: &Backward) -> Graph {
    let mut g = bw.graph.clone();
    g.outputs = std::iter::once(bw.forward_output).chain(bw.grads.iter().filter_map(|&(_, gr)| gr)).collect();
    g
}

/// Like [`training_graph`] but with only the parameters' gradients as outputs (what a training
/// step needs; the input gradient's computation is dropped).
pub fn param_training_graph(bw: &Backward) -> Graph {
    let mut g = bw.graph.clone();
    let params = bw.grads.iter().filter(|&&(leaf, _)| matches!(bw.graph.nodes[leaf].op, Op::Param { .. }));
    g.outputs = std::iter::once(bw.forward_output).chain(params.filter_map(|&(_, gr)| gr)).collect();
    passes::dce(&g)
}

/// Where a gradient goes.
#[derive(Clone, Debug, PartialEq)]
enum Leaf {
    Input,
    Param(String),
}

/// One compiled forward+backward step.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    pub output: Tensor,
    /// Gradients of the forward inputs, in order (`None` where the output does not depend on
    /// them).
    pub input_grads: Vec<Option<Tensor>>,
    /// Gradients of the parameters, by path.
    pub param_grads: Vec<(String, Option<Tensor>)>,
}

/// A `#[model]` compiled for inference and for training steps.
#[derive(Clone, Debug)]
pub struct CompiledModel {
    pub forward: CompiledGraph,
    pub train: CompiledGraph,
    /// Kind of each leaf of `Backward::grads`, and whether it has a gradient output.
    leaves: Vec<(Leaf, bool)>,
    params: Params,
}

/// Compiles a model's forward graph and its forward+backward graph. `graph` is the model's
/// `graph()` (which reflects its current training mode); parameters are bound by path from
/// `named_parameters` (the tensors share storage with the model's, so in-place updates are
/// seen; call [`CompiledModel::bind`] after replacing them).
pub fn compile_model<M: ModuleExt + ?Sized>(model: &M, graph: &Backward, opts: &Options) -> Result<CompiledModel> {
    let forward = compile(&forward_graph(graph), opts)?;
    let train = compile(&training_graph(graph), opts)?;
    let leaves = graph
        .grads
        .iter()
        .map(|&(leaf, gr)| {
            let kind = match &graph.graph.nodes[leaf].op {
                Op::Param { path, .. } => Leaf::Param(path.clone()),
                _ => Leaf::Input,
            };
            (kind, gr.is_some())
        })
        .collect();
    Ok(CompiledModel { forward, train, leaves, params: model.named_parameters().into_iter().collect() })
}

impl CompiledModel {
    /// Re-reads the parameter tensors from `model`.
    pub fn bind<M: ModuleExt + ?Sized>(&mut self, model: &M) {
        self.params = model.named_parameters().into_iter().collect();
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Inference.
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Tensor> {
        Ok(self.forward.run(inputs, &self.params)?.remove(0))
    }

    /// Forward and backward in one compiled graph, given the gradient of the output.
    pub fn forward_backward(&self, inputs: &[Tensor], grad_output: &Tensor) -> Result<TrainOutput> {
        let mut all = inputs.to_vec();
        all.push(grad_output.clone());
        let mut outs = self.train.run(&all, &self.params)?.into_iter();
        let output = outs.next().expect("the forward output comes first");
        let (mut input_grads, mut param_grads) = (Vec::new(), Vec::new());
        for (leaf, has) in &self.leaves {
            let g = if *has { outs.next() } else { None };
            match leaf {
                Leaf::Input => input_grads.push(g),
                Leaf::Param(p) => param_grads.push((p.clone(), g)),
            }
        }
        Ok(TrainOutput { output, input_grads, param_grads })
    }

    /// An inference graph with the parameters folded in: dropout removed, per-channel scales
    /// and shifts folded into the preceding conv/linear weights, constant subgraphs computed
    /// once (see [`freeze`]). Returns the compiled graph and the parameter values it reads.
    pub fn freeze(&self, opts: &Options) -> Result<(CompiledGraph, Params)> {
        let (g, params) = freeze(self.forward.source(), &self.params)?;
        Ok((compile(&g, opts)?, params))
    }
}

/// Inference-time freezing: removes dropout, folds constant per-channel affine layers into the
/// preceding conv or linear weights ([`passes::fold_affine`]), optimises, then evaluates every
/// subgraph that depends only on parameters once with `params` and replaces it by a new
/// parameter `frozen.N`. Returns the graph and the parameter values it reads.
pub fn freeze(graph: &Graph, params: &Params) -> Result<(Graph, Params)> {
    let g = passes::remove_dropout(graph);
    let g = passes::fold_affine(&g);
    let (g, _) = passes::optimize(&g, &passes::Options::default()).map_err(ir_err)?;
    let c = passes::const_nodes(&g);
    let users = passes::users(&g);
    let outputs: HashSet<NodeId> = g.outputs.iter().copied().collect();
    let shape_users: HashSet<NodeId> = g.nodes.iter().enumerate().filter(|(i, _)| !c[*i]).flat_map(|(_, n)| n.shape_of.iter().copied()).collect();
    let frontier: Vec<bool> = (0..g.nodes.len())
        .map(|i| {
            c[i] && !matches!(g.nodes[i].op, Op::Param { .. } | Op::Fill { .. })
                && (outputs.contains(&i) || users[i].iter().any(|&u| !c[u]) || shape_users.contains(&i))
        })
        .collect();
    // The constant nodes the frontier needs.
    let mut needed = frontier.clone();
    for i in (0..g.nodes.len()).rev() {
        if needed[i] {
            for &a in g.nodes[i].inputs.iter().chain(&g.nodes[i].shape_of) {
                needed[a] = true;
            }
        }
    }
    let mut vals: Vec<Option<Tensor>> = vec![None; g.nodes.len()];
    no_grad(|| -> Result<()> {
        for i in 0..g.nodes.len() {
            if !needed[i] {
                continue;
            }
            let n = &g.nodes[i];
            let t = match &n.op {
                Op::Param { path, .. } => params.get(path).ok_or_else(|| Error::Msg(format!("freeze: no value for parameter `{path}`")))?.detach(),
                op => {
                    let args: Vec<&Tensor> = n.inputs.iter().map(|&a| vals[a].as_ref().expect("computed in order")).collect();
                    let shapes: Vec<Vec<usize>> = n.shape_of.iter().map(|&a| vals[a].as_ref().expect("computed in order").shape().to_vec()).collect();
                    let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
                    crate::exec::apply(op, &args, &shape_refs)?
                }
            };
            vals[i] = Some(t);
        }
        Ok(())
    })?;
    let mut out = Graph::new();
    let mut map = vec![usize::MAX; g.nodes.len()];
    let mut new_params: Params = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let node = if frontier[i] {
            let t = vals[i].take().expect("frontier nodes are computed").try_contiguous()?;
            let path = format!("frozen.{}", new_params.len());
            let shape = Shape(t.shape().iter().map(|&d| Dim::Known(d)).collect());
            new_params.insert(path.clone(), t);
            let label = format!("folded {}", if n.label.is_empty() { n.op.name() } else { n.label.clone() });
            Node { op: Op::Param { path, shape: shape.clone() }, inputs: vec![], shape_of: vec![], shape, label }
        } else {
            Node {
                op: n.op.clone(),
                inputs: n.inputs.iter().map(|&a| map[a]).collect(),
                shape_of: n.shape_of.iter().map(|&a| map[a]).collect(),
                shape: n.shape.clone(),
                label: n.label.clone(),
            }
        };
        map[i] = out.push(node);
    }
    out.outputs = g.outputs.iter().map(|&o| map[o]).collect();
    let out = passes::dce(&out);
    passes::verify(&out).map_err(ir_err)?;
    for i in out.params() {
        if let Op::Param { path, .. } = &out.nodes[i].op {
            if !new_params.contains_key(path) {
                let t = params.get(path).ok_or_else(|| Error::Msg(format!("freeze: no value for parameter `{path}`")))?;
                new_params.insert(path.clone(), t.clone());
            }
        }
    }
    Ok((out, new_params))
}
