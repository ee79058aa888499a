//! Shape inference check: every node's recorded shape is what its op's shape rule gives for its
//! inputs, nodes come after their inputs, and outputs exist.

use crate::graph::Graph;
use crate::op::Op;
use crate::shape::ShapeError;

/// Re-infers every node's shape and compares it with the recorded one.
pub fn verify(g: &Graph) -> Result<(), ShapeError> {
    let err = |i: usize, why: String| ShapeError::new(format!("%{i} = {}: {why}", g.nodes[i].op.name()));
    for (i, n) in g.nodes.iter().enumerate() {
        if let Some(&bad) = n.inputs.iter().chain(&n.shape_of).find(|&&a| a >= i) {
            return Err(err(i, format!("reads %{bad}, which does not come before it")));
        }
        let arity_ok = match &n.op {
            Op::Input { .. } | Op::Param { .. } | Op::Fill { .. } => n.inputs.is_empty(),
            Op::Binary(_) | Op::Matmul | Op::UnaryBackward(_) | Op::SoftmaxBackward { .. } | Op::LogSoftmaxBackward { .. } => n.inputs.len() == 2,
            Op::Conv2d(_) => n.inputs.len() == 2 || n.inputs.len() == 3,
            Op::Concat { .. } => !n.inputs.is_empty(),
            Op::ReduceMaxBackward { .. } => n.inputs.len() == 3,
            Op::Pool2dBackward { .. } | Op::Embedding | Op::EmbeddingBackward | Op::Conv2dBackwardInput(_) | Op::Conv2dBackwardWeight(_) => {
                n.inputs.len() == 2
            }
            _ => n.inputs.len() == 1,
        };
        if !arity_ok {
            return Err(err(i, format!("has {} inputs", n.inputs.len())));
        }
        if let Some(&like) = n.shape_of.first() {
            if g.nodes[like].shape != n.shape {
                return Err(err(i, format!("takes the shape of %{like} ({}) but records {}", g.nodes[like].shape, n.shape)));
            }
            continue;
        }
        let shapes: Vec<_> = n.inputs.iter().map(|&a| &g.nodes[a].shape).collect();
        if shapes.iter().any(|s| s.is_unknown()) {
            continue;
        }
        let inferred = n.op.infer_shape(&shapes).map_err(|e| err(i, e.message))?;
        if inferred != n.shape {
            return Err(err(i, format!("records shape {} but its inputs give {inferred}", n.shape)));
        }
    }
    if let Some(&o) = g.outputs.iter().find(|&&o| o >= g.nodes.len()) {
        return Err(ShapeError::new(format!("output %{o} does not exist ({} nodes)", g.nodes.len())));
    }
    Ok(())
}

/// Checks that `after` has the same interface as `before`: the same inputs (names and shapes,
/// in order) and the same number of outputs with the same shapes.
pub fn verify_interface(before: &Graph, after: &Graph) -> Result<(), ShapeError> {
    let sig = |g: &Graph| -> Vec<Op> { g.inputs().into_iter().map(|i| g.nodes[i].op.clone()).collect() };
    if sig(before) != sig(after) {
        return Err(ShapeError::new("a pass changed the graph's inputs"));
    }
    if before.outputs.len() != after.outputs.len() {
        return Err(ShapeError::new(format!("a pass changed the number of outputs from {} to {}", before.outputs.len(), after.outputs.len())));
    }
    for (k, (&a, &b)) in before.outputs.iter().zip(&after.outputs).enumerate() {
        if before.shape(a) != after.shape(b) {
            return Err(ShapeError::new(format!("a pass changed output {k} from {} to {}", before.shape(a), after.shape(b))));
        }
    }
    Ok(())
}
