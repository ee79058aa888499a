//! Common-subexpression elimination: two nodes with the same op, the same inputs and the same
//! shape references compute the same value, so the later one is replaced by the earlier.
//! Random ops (dropout masks) and graph inputs are never merged; parameters with the same path
//! are.

use std::collections::HashMap;

use super::rewrite;
use crate::graph::Graph;
use crate::op::{BinaryOp, Op};

/// The graph with duplicate computations merged (run [`super::dce`] after it).
pub fn cse(g: &Graph) -> Graph {
    let mut seen: HashMap<String, usize> = HashMap::new();
    rewrite(g, |rw, i| {
        let n = &rw.old.nodes[i];
        if matches!(n.op, Op::DropoutMask { .. } | Op::Input { .. } | Op::Call { .. } | Op::CallBackward { .. }) {
            return None;
        }
        let mut inputs = rw.inputs(i);
        if matches!(n.op, Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Maximum | BinaryOp::Minimum)) {
            // Commutative: `a + b` and `b + a` are one value.
            inputs.sort_unstable();
        }
        let shape_of: Vec<usize> = n.shape_of.iter().map(|&a| rw.map[a]).collect();
        // `Op` holds floats, so it is keyed by its exact debug text (which tells 0.0 from -0.0).
        let key = format!("{:?}|{inputs:?}|{shape_of:?}|{}", n.op, n.shape);
        if let Some(&prev) = seen.get(&key) {
            return Some(prev);
        }
        let id = rw.copy(i);
        seen.insert(key, id);
        Some(id)
    })
}
