//! The backward pass over recorded nodes.

use std::collections::HashMap;
use std::sync::Arc;

use super::{accumulate, Edge, GradModeGuard, Node};
use crate::tensor::{Error, Result, Tensor, TensorInner};

/// Every node reachable from `root`, latest first (reverse topological order).
fn reachable(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut seen: HashMap<*const Node, ()> = HashMap::new();
    let mut stack = vec![root.clone()];
    let mut nodes = Vec::new();
    seen.insert(Arc::as_ptr(root), ());
    while let Some(node) = stack.pop() {
        for edge in &node.inputs {
            if let Edge::Node(n) = edge {
                if seen.insert(Arc::as_ptr(n), ()).is_none() {
                    stack.push(n.clone());
                }
            }
        }
        nodes.push(node);
    }
    nodes.sort_unstable_by(|a, b| b.seq.cmp(&a.seq));
    nodes
}

fn seed_gradient(root: &Tensor, gradient: Option<&Tensor>) -> Result<Tensor> {
    match gradient {
        Some(g) => {
            if g.shape() != root.shape() {
                return Err(Error::shape("backward", root.shape(), g.shape(), "differ: the gradient must have the output's shape"));
            }
            Ok(g.detach())
        }
        None if root.numel() == 1 => Ok(Tensor::ones_like(root)),
        None => Err(Error::Autograd(format!(
            "backward() without a gradient needs a scalar output, got shape {:?}; pass one with backward_with",
            root.shape()
        ))),
    }
}

/// Runs the backward pass from `root`. Gradients for leaves accumulate in `.grad()`; when
/// `only` is given, gradients for exactly those tensors are returned instead.
fn run(
    root: &Tensor,
    gradient: Option<&Tensor>,
    create_graph: bool,
    only: Option<&[Tensor]>,
    mut hook: Option<&mut dyn FnMut(&Tensor) -> Result<()>>,
) -> Result<Option<Vec<Option<Tensor>>>> {
    if !root.requires_grad() {
        return Err(Error::Autograd(
            "the tensor does not require grad and has no grad_fn: no input of the computation had requires_grad set".into(),
        ));
    }
    let _mode = GradModeGuard::new(create_graph);
    let seed = seed_gradient(root, gradient)?;

    // For `grad()`: the targets, keyed by their node (non-leaves) or inner (leaves).
    let mut wanted: HashMap<usize, usize> = HashMap::new();
    let mut results: Vec<Option<Tensor>> = Vec::new();
    if let Some(targets) = only {
        for (i, t) in targets.iter().enumerate() {
            let key = match &t.0.grad_fn {
                Some(n) => Arc::as_ptr(n) as usize,
                None => Arc::as_ptr(&t.0) as usize,
            };
            wanted.insert(key, i);
        }
        results = vec![None; targets.len()];
    }
    let deliver = |key: usize, g: &Tensor, results: &mut Vec<Option<Tensor>>| -> Result<()> {
        if let Some(&i) = wanted.get(&key) {
            results[i] = Some(match results[i].take() {
                None => g.clone(),
                Some(old) => old.try_add(g)?,
            });
        }
        Ok(())
    };

    let Some(root_node) = root.0.grad_fn.clone() else {
        // The root is itself a leaf.
        if only.is_some() {
            deliver(Arc::as_ptr(&root.0) as usize, &seed, &mut results)?;
            return Ok(Some(results));
        }
        accumulate(&root.0, seed)?;
        if let Some(hook) = hook.as_mut() {
            hook(root)?;
        }
        return Ok(None);
    };

    let nodes = reachable(&root_node);
    // For the gradient-ready hook: how many reachable nodes still have to deliver into each
    // leaf. A leaf's gradient is final once its count reaches zero, which (nodes run latest
    // first) is usually well before backward ends: DDP starts all-reducing it then.
    let mut leaf_uses: HashMap<*const TensorInner, usize> = HashMap::new();
    if hook.is_some() {
        for node in &nodes {
            for edge in &node.inputs {
                if let Edge::Leaf(inner) = edge {
                    *leaf_uses.entry(Arc::as_ptr(inner)).or_default() += 1;
                }
            }
        }
    }
    let mut pending: HashMap<*const Node, Tensor> = HashMap::new();
    pending.insert(Arc::as_ptr(&root_node), seed);
    for node in nodes {
        let Some(grad_out) = pending.remove(&Arc::as_ptr(&node)) else {
            // No gradient reached this node, so it delivers nothing to its leaves either.
            if let Some(h) = hook.as_mut() {
                leaf_done(&node, &mut leaf_uses, &mut **h)?;
            }
            continue;
        };
        if only.is_some() {
            deliver(Arc::as_ptr(&node) as usize, &grad_out, &mut results)?;
        } else if let Some(target) = node.retained.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|w| w.upgrade()) {
            accumulate(&target, grad_out.clone())?;
        }
        let need: Vec<bool> = node.inputs.iter().map(|e| !matches!(e, Edge::None)).collect();
        let grads = (node.backward)(&grad_out, &need)?;
        debug_assert_eq!(grads.len(), node.inputs.len(), "backward of {} returned the wrong number of gradients", node.name);
        for (edge, g) in node.inputs.iter().zip(grads) {
            let Some(g) = g else { continue };
            match edge {
                Edge::None => {}
                Edge::Leaf(inner) => {
                    if g.shape() != &inner.layout.shape[..] {
                        return Err(Error::Autograd(format!(
                            "internal: backward of {} produced a gradient of shape {:?} for an input of shape {:?}",
                            node.name,
                            g.shape(),
                            inner.layout.shape
                        )));
                    }
                    if only.is_some() {
                        deliver(Arc::as_ptr(inner) as usize, &g, &mut results)?;
                    } else {
                        accumulate(inner, g)?;
                    }
                }
                Edge::Node(n) => {
                    if g.shape() != &n.out_shape[..] {
                        return Err(Error::Autograd(format!(
                            "internal: backward of {} produced a gradient of shape {:?} for an input of shape {:?}",
                            node.name,
                            g.shape(),
                            n.out_shape
                        )));
                    }
                    let key = Arc::as_ptr(n);
                    let sum = match pending.remove(&key) {
                        None => g,
                        Some(old) => old.try_add(&g)?,
                    };
                    pending.insert(key, sum);
                }
            }
        }
        if let Some(h) = hook.as_mut() {
                leaf_done(&node, &mut leaf_uses, &mut **h)?;
            }
    }
    Ok(only.map(|_| results))
}

/// Counts down `node`'s leaf edges; a leaf whose count reaches zero has its final gradient.
fn leaf_done(node: &Node, leaf_uses: &mut HashMap<*const TensorInner, usize>, hook: &mut dyn FnMut(&Tensor) -> Result<()>) -> Result<()> {
    for edge in &node.inputs {
        if let Edge::Leaf(inner) = edge {
            let left = leaf_uses.get_mut(&Arc::as_ptr(inner)).expect("every leaf edge was counted");
            *left -= 1;
            if *left == 0 {
                hook(&Tensor(inner.clone()))?;
            }
        }
    }
    Ok(())
}

pub(super) fn backward(root: &Tensor, gradient: Option<&Tensor>, create_graph: bool) -> Result<()> {
    run(root, gradient, create_graph, None, None).map(|_| ())
}

/// Backward that calls `hook(leaf)` as soon as a leaf's `.grad()` is final (no node still to
/// run delivers into it), in the order leaves become ready. An error from the hook stops the
/// pass and is returned.
pub fn backward_with_hook(root: &Tensor, gradient: Option<&Tensor>, hook: &mut dyn FnMut(&Tensor) -> Result<()>) -> Result<()> {
    run(root, gradient, false, None, Some(hook)).map(|_| ())
}

/// Gradients of `output` with respect to `inputs`, returned rather than accumulated (like
/// `torch.autograd.grad`). With `create_graph` the results carry their own graph, so they can
/// be differentiated again. An input that `output` does not depend on gets `None`.
pub fn grad(output: &Tensor, inputs: &[Tensor], gradient: Option<&Tensor>, create_graph: bool) -> Result<Vec<Option<Tensor>>> {
    Ok(run(output, gradient, create_graph, Some(inputs), None)?.unwrap_or_default())
}
