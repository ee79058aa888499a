//! Finding what can run in int8 in a frozen forward graph: chains `x @ Wᵀ (+ b) (relu)` and
//! `conv2d(x, W, b) (relu)` whose weight and bias are parameters, and embedding lookups into a
//! parameter table. Everything else is listed with the reason it stays f32.

use tensorbrain_ir::passes::users;
use tensorbrain_ir::op::ConvGeometry;
use tensorbrain_ir::{BinaryOp, Graph, NodeId, Op, UnaryOp};

use crate::compile::Params;
use crate::tensor::{Error, Result, Tensor};

/// The GEMM at the head of a chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChainKind {
    Linear,
    Conv2d(ConvGeometry),
}

/// One Linear (+ bias) (+ ReLU), or Conv2d (+ ReLU), in the graph.
#[derive(Clone, Debug)]
pub struct Chain {
    pub kind: ChainKind,
    /// The layer's name in user code (`fc1`).
    pub label: String,
    /// The activation input of the head.
    pub input: NodeId,
    /// A Linear's weight as `[out, in]` (transposed back if the graph holds `Wᵀ`); a
    /// convolution's as `[O, C, KH, KW]`.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub relu: bool,
    /// The last node of the chain, whose value the chain produces.
    pub tail: NodeId,
    /// Every node the chain replaces.
    pub nodes: Vec<NodeId>,
}

/// An embedding lookup whose table is a parameter: it runs on an i8 table.
#[derive(Clone, Debug)]
pub struct EmbeddingUse {
    /// The layer's name in user code (`embed`).
    pub label: String,
    /// The Embedding node.
    pub node: NodeId,
    /// The indices it reads.
    pub indices: NodeId,
    /// The f32 table, `[num_embeddings, dim]`.
    pub table: Tensor,
}

/// A compute node that stays f32, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptF32 {
    pub label: String,
    pub op: String,
    pub why: String,
}

/// A batch norm in eval mode, `y = x·scale[c] + shift[c]` along dim 1, that did not fold into
/// a layer before it: the runner applies it in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    /// The nested layer's path (`bn`).
    pub path: String,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

/// The epsilon batch norms are folded with: the layer's default (PyTorch's). The module tree
/// does not expose a layer's `eps`, so a model that changed it would fold slightly wrong.
pub const BATCH_NORM_EPS: f32 = 1e-5;

/// A nested call to a batch norm (recognised by its parameters and running statistics) as a
/// per-channel affine map; `None` for any other nested model.
fn batch_norm(path: &str, params: &Params) -> Option<ChannelAffine> {
    let get = |name: &str| params.get(&format!("{path}.{name}")).map(|t| t.to_vec::<f32>());
    let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + BATCH_NORM_EPS).sqrt()).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Some(ChannelAffine { path: path.to_string(), scale, shift })
}

/// Folds a per-output-channel affine map into a chain's weight and bias.
fn fold_into(chain: &mut Chain, norm: &ChannelAffine) -> Result<()> {
    let out = chain.weight.shape()[0];
    if norm.scale.len() != out {
        return Err(Error::Msg(format!("quantize: batch norm `{}` has {} channels but `{}` has {out}", norm.path, norm.scale.len(), chain.label)));
    }
    let per = chain.weight.numel() / out.max(1);
    let w: Vec<f32> = chain.weight.to_vec::<f32>().iter().enumerate().map(|(i, v)| v * norm.scale[i / per]).collect();
    chain.weight = Tensor::from_vec(w, chain.weight.shape());
    let b = chain.bias.as_ref().map_or_else(|| vec![0.0; out], |b| b.to_vec::<f32>());
    let b: Vec<f32> = b.iter().zip(&norm.scale).zip(&norm.shift).map(|((b, s), t)| b * s + t).collect();
    chain.bias = Some(Tensor::from_vec(b, &[out]));
    Ok(())
}

/// What [`find_chains`] found.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub chains: Vec<Chain>,
    pub embeddings: Vec<EmbeddingUse>,
    pub kept: Vec<KeptF32>,
    /// Batch norms that run in f32, by node.
    pub norms: Vec<(NodeId, ChannelAffine)>,
    /// Every batch norm, folded or not (what the f32 graph runs during calibration).
    pub all_norms: Vec<(NodeId, ChannelAffine)>,
}

/// Finds the chains; `params` gives parameter values by path (the frozen graph's and the
/// model's state dict, whose running statistics nested batch norms read).
pub fn find_chains(g: &Graph, params: &Params) -> Result<Analysis> {
    let users = users(g);
    let shape_refs: Vec<bool> = {
        let mut r = vec![false; g.nodes.len()];
        g.nodes.iter().flat_map(|n| n.shape_of.iter()).for_each(|&i| r[i] = true);
        r
    };
    let outputs = &g.outputs;
    // A node can be fused into the chain before it if that chain's value has no other use.
    let sole_user = |i: NodeId| -> Option<NodeId> {
        match users[i].as_slice() {
            [u] if !outputs.contains(&i) && !shape_refs[i] => Some(*u),
            _ => None,
        }
    };
    let param = |i: NodeId| -> Option<Tensor> {
        match &g.nodes[i].op {
            Op::Param { path, .. } => params.get(path).cloned(),
            _ => None,
        }
    };
    let mut chains = Vec::new();
    let mut embeddings = Vec::new();
    let mut kept = Vec::new();
    let mut norms = Vec::new();
    let mut taken = vec![false; g.nodes.len()];
    // Extends a chain over a batch norm that is its tail's only user.
    let fold_norm = |chain: &mut Chain| -> Result<()> {
        let Some(u) = sole_user(chain.tail) else { return Ok(()) };
        let Op::Call { path, .. } = &g.nodes[u].op else { return Ok(()) };
        let Some(norm) = batch_norm(path, params) else { return Ok(()) };
        fold_into(chain, &norm)?;
        chain.tail = u;
        chain.nodes.push(u);
        Ok(())
    };
    for (i, node) in g.nodes.iter().enumerate() {
        if let Op::Call { path, .. } = &node.op {
            if batch_norm(path, params).is_none() {
                return Err(Error::Msg(format!(
                    "quantize: the graph calls the nested model `{path}` ({}), which the int8 runner cannot execute yet \
                     (only batch norms are understood); quantize models whose layers are fields of one #[model]",
                    node.label
                )));
            }
        }
        if taken[i] {
            continue;
        }
        if let Op::Conv2d(geometry) = node.op {
            let (x, w) = (node.inputs[0], node.inputs[1]);
            let weight = param(w).filter(|t| t.rank() == 4);
            let bias = node.inputs.get(2).map(|&b| param(b));
            let why = match (&weight, &bias) {
                _ if geometry.groups != 1 => Some("grouped convolution: no int8 kernel"),
                (None, _) => Some("the weight is not a 4-D parameter"),
                (_, Some(None)) => Some("the bias is not a parameter"),
                _ if param(x).is_some() => Some("the input is a parameter"),
                _ => None,
            };
            if let Some(why) = why {
                kept.push(KeptF32 { label: node.label.clone(), op: node.op.name(), why: why.into() });
                continue;
            }
            let weight = weight.expect("checked above");
            let mut chain = Chain {
                kind: ChainKind::Conv2d(geometry),
                label: node.label.clone(),
                input: x,
                weight,
                bias: bias.flatten(),
                relu: false,
                tail: i,
                nodes: vec![i],
            };
            fold_norm(&mut chain)?;
            if let Some(u) = sole_user(chain.tail) {
                if let Op::Unary(UnaryOp::Relu) = g.nodes[u].op {
                    chain.relu = true;
                    chain.tail = u;
                    chain.nodes.push(u);
                }
            }
            chain.nodes.iter().for_each(|&c| taken[c] = true);
            chains.push(chain);
            continue;
        }
        if !matches!(node.op, Op::Matmul) {
            continue;
        }
        let (x, w) = (node.inputs[0], node.inputs[1]);
        // The weight: Wᵀ as a parameter (after freezing), or Transpose(W).
        let weight = match &g.nodes[w].op {
            Op::Param { .. } => param(w).filter(|t| t.rank() == 2).and_then(|t| t.try_transpose(0, 1).ok()),
            Op::Transpose { dim0: 0, dim1: 1 } => param(g.nodes[w].inputs[0]).filter(|t| t.rank() == 2),
            _ => None,
        };
        let Some(weight) = weight else {
            kept.push(KeptF32 { label: node.label.clone(), op: node.op.name(), why: "the right operand is not a 2-D parameter".into() });
            continue;
        };
        if param(x).is_some() {
            kept.push(KeptF32 { label: node.label.clone(), op: node.op.name(), why: "both operands are parameters".into() });
            continue;
        }
        let n = weight.shape()[0];
        let mut chain = Chain { kind: ChainKind::Linear, label: node.label.clone(), input: x, weight, bias: None, relu: false, tail: i, nodes: vec![i] };
        if let Some(u) = sole_user(chain.tail) {
            if let Op::Binary(BinaryOp::Add) = g.nodes[u].op {
                let other = if g.nodes[u].inputs[0] == chain.tail { g.nodes[u].inputs[1] } else { g.nodes[u].inputs[0] };
                if let Some(b) = param(other).filter(|b| b.shape() == [n]) {
                    chain.bias = Some(b);
                    chain.tail = u;
                    chain.nodes.push(u);
                }
            }
        }
        // A batch norm over the features of a 2-D output acts per output channel.
        if g.nodes[chain.tail].shape.rank() == 2 {
            fold_norm(&mut chain)?;
        }
        if let Some(u) = sole_user(chain.tail) {
            if let Op::Unary(UnaryOp::Relu) = g.nodes[u].op {
                chain.relu = true;
                chain.tail = u;
                chain.nodes.push(u);
            }
        }
        chain.nodes.iter().for_each(|&c| taken[c] = true);
        chains.push(chain);
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if taken[i] || matches!(node.op, Op::Matmul | Op::Conv2d(_)) {
            continue;
        }
        if let Op::Call { path, .. } = &node.op {
            if let Some(norm) = batch_norm(path, params) {
                kept.push(KeptF32 { label: node.label.clone(), op: "batch_norm".into(), why: "not after a conv/linear it could fold into: runs in f32".into() });
                norms.push((i, norm));
            }
            continue;
        }
        if let Op::Embedding = node.op {
            match param(node.inputs[0]).filter(|t| t.rank() == 2) {
                Some(table) => embeddings.push(EmbeddingUse { label: node.label.clone(), node: i, indices: node.inputs[1], table }),
                None => kept.push(KeptF32 { label: node.label.clone(), op: node.op.name(), why: "the table is not a 2-D parameter".into() }),
            }
            continue;
        }
        let why = match node.op {
            Op::Softmax { .. } | Op::LogSoftmax { .. } | Op::Reduce { .. } | Op::Pool2d { .. } => "not a GEMM: runs in f32",
            Op::Unary(_) | Op::Binary(_) | Op::Scalar { .. } => "elementwise op outside a Linear chain: runs in f32",
            _ => continue, // inputs, parameters and data movement
        };
        kept.push(KeptF32 { label: node.label.clone(), op: node.op.name(), why: why.into() });
    }
    let all_norms = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Call { path, .. } => batch_norm(path, params).map(|b| (i, b)),
            _ => None,
        })
        .collect();
    Ok(Analysis { chains, embeddings, kept, norms, all_norms })
}
