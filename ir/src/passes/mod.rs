//! Graph-to-graph passes: checks, clean-ups, constant folding, algebraic simplification,
//! inference-time freezing, elementwise fusion and the int8 rewrite.
//!
//! Every pass is a function from a [`Graph`] to a new [`Graph`] with the same inputs and the
//! same outputs (in order, with the same shapes); only the nodes in between change. [`optimize`]
//! runs the clean-up passes to a fixed point. [`fusion::fuse`] then turns the optimised graph
//! into a [`fusion::FusedGraph`], whose nodes are kernels (one IR op, a fused elementwise
//! program, or a GEMM/conv with an elementwise epilogue).

pub mod cse;
pub mod dce;
pub mod fold;
pub mod freeze;
pub mod fusion;
pub mod quantize;
pub mod simplify;
pub mod verify;

use std::fmt;

use crate::graph::{Graph, Node, NodeId};
use crate::op::Op;
use crate::shape::Shape;

pub use cse::cse;
pub use dce::dce;
pub use fold::{fold_constants, FoldOptions};
pub use freeze::{const_nodes, fold_affine, remove_dropout};
pub use fusion::{fuse, FuseOptions, FusedGraph, Kernel, Program};
pub use quantize::{fold_qdq, insert_int8, Replacement};
pub use simplify::simplify;
pub use verify::{verify, verify_interface};

/// What [`optimize`] may do.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub fold: FoldOptions,
    /// Common-subexpression elimination.
    pub cse: bool,
    /// Algebraic simplification (double transpose, reshape of reshape, neg of neg, ...).
    pub simplify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { fold: FoldOptions::default(), cse: true, simplify: true }
    }
}

/// Node counts of one pass run, for listings.
#[derive(Clone, Debug, PartialEq)]
pub struct PassStat {
    pub pass: &'static str,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

/// What [`optimize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub passes: Vec<PassStat>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.passes {
            if p.nodes_before != p.nodes_after {
                writeln!(f, "{:>10}: {} -> {} nodes", p.pass, p.nodes_before, p.nodes_after)?;
            }
        }
        Ok(())
    }
}

/// Runs simplification, constant folding, CSE and DCE until the graph stops changing (at most
/// eight rounds), checking shapes before and after.
pub fn optimize(g: &Graph, opts: &Options) -> Result<(Graph, Report), crate::ShapeError> {
    verify(g)?;
    let mut report = Report::default();
    let mut cur = dce(g);
    report.passes.push(PassStat { pass: "dce", nodes_before: g.nodes.len(), nodes_after: cur.nodes.len() });
    for _ in 0..8 {
        let before = cur.clone();
        let mut step = |name: &'static str, cur: &mut Graph, f: &dyn Fn(&Graph) -> Graph| {
            let next = f(cur);
            report.passes.push(PassStat { pass: name, nodes_before: cur.nodes.len(), nodes_after: next.nodes.len() });
            *cur = next;
        };
        if opts.simplify {
            step("simplify", &mut cur, &|g| dce(&simplify(g)));
        }
        step("fold", &mut cur, &|g| dce(&fold_constants(g, &opts.fold)));
        if opts.cse {
            step("cse", &mut cur, &|g| dce(&cse(g)));
        }
        if cur == before {
            break;
        }
    }
    verify(&cur)?;
    verify_interface(g, &cur)?;
    Ok((cur, report))
}

/// Rebuilds a graph node by node: each old node maps to a node of the new graph (a copy, a
/// replacement, or an existing node it is equal to).
pub(crate) struct Rewriter<'a> {
    pub old: &'a Graph,
    pub new: Graph,
    /// New id of each old node visited so far.
    pub map: Vec<NodeId>,
}

impl<'a> Rewriter<'a> {
    pub fn new(old: &'a Graph) -> Self {
        Rewriter { old, new: Graph::new(), map: Vec::with_capacity(old.nodes.len()) }
    }

    /// The new ids of old node `i`'s inputs.
    pub fn inputs(&self, i: NodeId) -> Vec<NodeId> {
        self.old.nodes[i].inputs.iter().map(|&a| self.map[a]).collect()
    }

    /// Copies old node `i` with its inputs remapped; returns its new id (not yet recorded).
    pub fn copy(&mut self, i: NodeId) -> NodeId {
        let n = &self.old.nodes[i];
        let node = Node {
            op: n.op.clone(),
            inputs: n.inputs.iter().map(|&a| self.map[a]).collect(),
            shape_of: n.shape_of.iter().map(|&a| self.map[a]).collect(),
            shape: n.shape.clone(),
            label: n.label.clone(),
        };
        self.new.push(node)
    }

    /// Appends a node whose shape is inferred; `None` when the shape rule rejects it.
    pub fn add(&mut self, op: Op, inputs: &[NodeId], label: &str) -> Option<NodeId> {
        self.new.add(op, inputs, label).ok()
    }

    /// Appends a node with a given shape.
    pub fn add_shaped(&mut self, op: Op, inputs: &[NodeId], shape_of: &[NodeId], shape: Shape, label: &str) -> NodeId {
        self.new.push(Node { op, inputs: inputs.to_vec(), shape_of: shape_of.to_vec(), shape, label: label.to_string() })
    }

    /// Records the new id of old node `i` (which must be the next one).
    pub fn set(&mut self, i: NodeId, new: NodeId) {
        debug_assert_eq!(self.map.len(), i);
        debug_assert!(
            self.old.nodes[i].shape.is_unknown() || self.new.nodes[new].shape == self.old.nodes[i].shape,
            "rewrite of %{i} changed its shape from {} to {}",
            self.old.nodes[i].shape,
            self.new.nodes[new].shape
        );
        self.map.push(new);
    }

    pub fn finish(mut self) -> Graph {
        self.new.outputs = self.old.outputs.iter().map(|&o| self.map[o]).collect();
        self.new
    }
}

/// Runs `rule` on every node in order; where it returns a new id the node is replaced, else it
/// is copied.
pub(crate) fn rewrite(g: &Graph, mut rule: impl FnMut(&mut Rewriter, NodeId) -> Option<NodeId>) -> Graph {
    let mut rw = Rewriter::new(g);
    for i in 0..g.nodes.len() {
        let new = match rule(&mut rw, i) {
            Some(n) => n,
            None => rw.copy(i),
        };
        rw.set(i, new);
    }
    rw.finish()
}

/// Users of each node (by value; `shape_of` references are not counted).
pub fn users(g: &Graph) -> Vec<Vec<NodeId>> {
    let mut users = vec![Vec::new(); g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for &a in &n.inputs {
            if !users[a].contains(&i) {
                users[a].push(i);
            }
        }
    }
    users
}

/// The value of a `Fill` node.
pub fn fill_value(g: &Graph, id: NodeId) -> Option<f64> {
    match g.nodes[id].op {
        Op::Fill { value, .. } => Some(value),
        _ => None,
    }
}
