//! Dead-code elimination: drops nodes no output depends on (graph inputs are always kept, so
//! the graph's signature does not change).

use crate::graph::{Graph, Node};
use crate::op::Op;

/// Which nodes the outputs need (through values or shapes); inputs always count as live.
pub fn live(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.nodes.len()];
    for &o in &g.outputs {
        live[o] = true;
    }
    for i in (0..g.nodes.len()).rev() {
        if matches!(g.nodes[i].op, Op::Input { .. }) {
            live[i] = true;
        }
        if live[i] {
            for &a in g.nodes[i].inputs.iter().chain(&g.nodes[i].shape_of) {
                live[a] = true;
            }
        }
    }
    live
}

/// The graph without dead nodes; the order of the remaining nodes is kept.
pub fn dce(g: &Graph) -> Graph {
    let live = live(g);
    let mut map = vec![usize::MAX; g.nodes.len()];
    let mut out = Graph::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if !live[i] {
            continue;
        }
        map[i] = out.push(Node {
            op: n.op.clone(),
            inputs: n.inputs.iter().map(|&a| map[a]).collect(),
            shape_of: n.shape_of.iter().map(|&a| map[a]).collect(),
            shape: n.shape.clone(),
            label: n.label.clone(),
        });
    }
    out.outputs = g.outputs.iter().map(|&o| map[o]).collect();
    out
}
