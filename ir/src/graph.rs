//! Graphs of ops in topological order.

use std::fmt;

use crate::op::Op;
use crate::shape::{Shape, ShapeError};

/// Index of a node in its graph.
pub type NodeId = usize;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Nodes whose *shapes* (not values) the op needs, e.g. the target of a `SumTo`. Kept
    /// apart from `inputs` so a training forward saves those shapes, not the tensors.
    pub shape_of: Vec<NodeId>,
    pub shape: Shape,
    /// Where the node came from in user code (`fc1`, `x.relu()`), for messages and listings.
    pub label: String,
}

/// A computation: nodes in topological order (inputs before their users) and the outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Appends a node after checking its shape rule.
    pub fn add(&mut self, op: Op, inputs: &[NodeId], label: impl Into<String>) -> Result<NodeId, ShapeError> {
        self.add_with_shapes(op, inputs, &[], label)
    }

    /// Appends a node that also reads the shapes of `shape_of` (see [`Node::shape_of`]).
    pub fn add_with_shapes(&mut self, op: Op, inputs: &[NodeId], shape_of: &[NodeId], label: impl Into<String>) -> Result<NodeId, ShapeError> {
        if let Some(&like) = shape_of.first() {
            // Shape-taking ops produce exactly the referenced shape.
            let shape = self.nodes[like].shape.clone();
            return Ok(self.push(Node { op, inputs: inputs.to_vec(), shape_of: shape_of.to_vec(), shape, label: label.into() }));
        }
        let shapes: Vec<&Shape> = inputs.iter().map(|&i| &self.nodes[i].shape).collect();
        // Past an unknown shape nothing can be checked statically; the run time checks it.
        let shape = match shapes.iter().find(|s| s.is_unknown()) {
            Some(unknown) => match &op {
                Op::Expand { shape } => shape.clone(),
                _ => (*unknown).clone(),
            },
            None => op.infer_shape(&shapes)?,
        };
        Ok(self.push(Node { op, inputs: inputs.to_vec(), shape_of: vec![], shape, label: label.into() }))
    }

    /// Appends a node whose shape is already known (passes rebuilding graphs use this).
    pub fn push(&mut self, node: Node) -> NodeId {
        debug_assert!(node.inputs.iter().all(|&i| i < self.nodes.len()), "inputs must come first");
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.nodes[id].shape
    }

    /// Ids of the graph inputs, in order.
    pub fn inputs(&self) -> Vec<NodeId> {
        self.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Op::Input { .. })).map(|(i, _)| i).collect()
    }

    /// Ids of parameter nodes, in order.
    pub fn params(&self) -> Vec<NodeId> {
        self.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Op::Param { .. })).map(|(i, _)| i).collect()
    }

    /// How many nodes do real work (inputs, parameters and constants are free).
    pub fn kernel_count(&self) -> usize {
        self.nodes.iter().filter(|n| !matches!(n.op, Op::Input { .. } | Op::Param { .. } | Op::Fill { .. } | Op::Reshape { .. } | Op::Transpose { .. } | Op::Permute { .. } | Op::Expand { .. })).count()
    }

    /// Number of users of each node (outputs count as users).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i] += 1;
            }
        }
        for &o in &self.outputs {
            uses[o] += 1;
        }
        uses
    }

    /// Graphviz DOT text of the graph.
    pub fn to_dot(&self) -> String {
        crate::dot::to_dot(self)
    }
}

/// A readable listing: one line per node, `%3 = matmul(%1, %2) : [B, 256]   // fc1`.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let args: Vec<String> = n.inputs.iter().map(|a| format!("%{a}")).collect();
            write!(f, "%{i} = {}", n.op.name())?;
            if !args.is_empty() {
                write!(f, "({})", args.join(", "))?;
            }
            write!(f, " : {}", n.shape)?;
            if !n.label.is_empty() {
                write!(f, "   // {}", n.label)?;
            }
            writeln!(f)?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|o| format!("%{o}")).collect();
        writeln!(f, "return {}", outs.join(", "))
    }
}
