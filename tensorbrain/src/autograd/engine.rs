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

/// For `grad()`: the target tensors, keyed by their node (non-leaves) or inner (leaves), and
/// the gradients found for them.
struct Targets {
    wanted: HashMap<usize, usize>,
    results: Vec<Option<Tensor>>,
}

impl Targets {
    fn new(targets: &[Tensor]) -> Self {
        let key = |t: &Tensor| match &t.0.grad_fn {
            Some(n) => Arc::as_ptr(n) as usize,
            None => Arc::as_ptr(&t.0) as usize,
        };
        Targets { wanted: targets.iter().enumerate().map(|(i, t)| (key(t), i)).collect(), results: vec![None; targets.len()] }
    }

    /// Adds `g` to the result for `key`, if that is a target.
    fn deliver(&mut self, key: usize, g: &Tensor) -> Result<()> {
        if let Some(&i) = self.wanted.get(&key) {
            let r = &mut self.results[i];
            *r = Some(match r.take() {
                None => g.clone(),
                Some(old) => old.try_add(g)?,
            });
        }
        Ok(())
    }
}

/// Where gradients go during one backward pass: on to pending nodes, into leaves (or, for
/// `grad()`, into the targets' results), and to the gradient-ready hook.
struct Flow<'h> {
    only: Option<Targets>,
    /// Gradients summed so far for nodes that have not run yet.
    pending: HashMap<*const Node, Tensor>,
    /// For the hook: how many leaf edges of nodes still to run point at each leaf. A leaf's
    /// gradient is final once its count reaches zero, which (nodes run latest first) is
    /// usually well before backward ends: DDP starts all-reducing it then.
    leaf_uses: HashMap<*const TensorInner, usize>,
    hook: Option<&'h mut dyn FnMut(&Tensor) -> Result<()>>,
}

impl Flow<'_> {
    /// Sends gradient `g` from `node` along `edge`: into a leaf, or on to the input's node.
    fn send(&mut self, node: &Node, edge: &Edge, g: Tensor) -> Result<()> {
        let expected = match edge {
            Edge::None => return Ok(()),
            Edge::Leaf(inner) => &inner.layout.shape[..],
            Edge::Node(n) => &n.out_shape[..],
        };
        if g.shape() != expected {
            return Err(Error::Autograd(format!(
                "internal: backward of {} produced a gradient of shape {:?} for an input of shape {:?}",
                node.name,
                g.shape(),
                expected
            )));
        }
        match edge {
            Edge::None => {}
            Edge::Leaf(inner) => match &mut self.only {
                Some(targets) => targets.deliver(Arc::as_ptr(inner) as usize, &g)?,
                None => accumulate(inner, g)?,
            },
            Edge::Node(n) => {
                let key = Arc::as_ptr(n);
                let sum = match self.pending.remove(&key) {
                    None => g,
                    Some(old) => old.try_add(&g)?,
                };
                self.pending.insert(key, sum);
            }
        }
        Ok(())
    }

    /// Counts down one leaf edge of a node that is done with it; a leaf whose count reaches
    /// zero has its final gradient, and the hook hears of it.
    fn edge_done(&mut self, edge: &Edge) -> Result<()> {
        let (Some(hook), Edge::Leaf(inner)) = (self.hook.as_mut(), edge) else { return Ok(()) };
        let left = self.leaf_uses.get_mut(&Arc::as_ptr(inner)).expect("every leaf edge was counted");
        *left -= 1;
        if *left == 0 {
            hook(&Tensor(inner.clone()))?;
        }
        Ok(())
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

    let only = only.map(Targets::new);

    let Some(root_node) = root.0.grad_fn.clone() else {
        // The root is itself a leaf.
        if let Some(mut targets) = only {
            targets.deliver(Arc::as_ptr(&root.0) as usize, &seed)?;
            return Ok(Some(targets.results));
        }
        accumulate(&root.0, seed)?;
        if let Some(hook) = hook.as_mut() {
            hook(root)?;
        }
        return Ok(None);
    };

    let nodes = reachable(&root_node);
    let mut leaf_uses: HashMap<*const TensorInner, usize> = HashMap::new();
    if hook.is_some() {
        for edge in nodes.iter().flat_map(|node| &node.inputs) {
            if let Edge::Leaf(inner) = edge {
                *leaf_uses.entry(Arc::as_ptr(inner)).or_default() += 1;
            }
        }
    }
    let mut flow = Flow { only, pending: HashMap::from([(Arc::as_ptr(&root_node), seed)]), leaf_uses, hook };
    for node in nodes {
        let Some(grad_out) = flow.pending.remove(&Arc::as_ptr(&node)) else {
            // No gradient reached this node, so it delivers nothing to its leaves either.
            for edge in &node.inputs {
                flow.edge_done(edge)?;
            }
            continue;
        };
        if let Some(targets) = &mut flow.only {
            targets.deliver(Arc::as_ptr(&node) as usize, &grad_out)?;
        } else if let Some(target) = node.retained.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|w| w.upgrade()) {
            accumulate(&target, grad_out.clone())?;
        }
        let need: Vec<bool> = node.inputs.iter().map(|e| !matches!(e, Edge::None)).collect();
        // Inputs whose gradient the backward delivered early, while it was still running.
        let mut early = vec![false; node.inputs.len()];
        let grads = (node.backward)(&grad_out, &need, &mut |i, g| {
            let edge = node.inputs.get(i).ok_or_else(|| Error::Autograd(format!("internal: backward of {} delivered a gradient for input {i} of {}", node.name, node.inputs.len())))?;
            if std::mem::replace(&mut early[i], true) {
                return Err(Error::Autograd(format!("internal: backward of {} delivered input {i}'s gradient twice", node.name)));
            }
            flow.send(&node, edge, g)?;
            flow.edge_done(edge)
        })?;
        debug_assert_eq!(grads.len(), node.inputs.len(), "backward of {} returned the wrong number of gradients", node.name);
        for ((edge, g), early) in node.inputs.iter().zip(grads).zip(early) {
            if early {
                if g.is_some() {
                    return Err(Error::Autograd(format!("internal: backward of {} returned a gradient it had delivered early", node.name)));
                }
                continue;
            }
            if let Some(g) = g {
                flow.send(&node, edge, g)?;
            }
            flow.edge_done(edge)?;
        }
    }
    Ok(flow.only.map(|targets| targets.results))
}

pub(super) fn backward(root: &Tensor, gradient: Option<&Tensor>, create_graph: bool) -> Result<()> {
    run(root, gradient, create_graph, None, None).map(|_| ())
}

/// Backward that calls `hook(leaf)` as soon as a leaf's `.grad()` is final (no node still to
/// run delivers into it), in the order leaves become ready. A node that delivers gradients
/// early (a `#[model]`'s, per layer) makes its leaves ready before its backward returns. An
/// error from the hook stops the pass and is returned.
pub fn backward_with_hook(root: &Tensor, gradient: Option<&Tensor>, hook: &mut dyn FnMut(&Tensor) -> Result<()>) -> Result<()> {
    run(root, gradient, false, None, Some(hook)).map(|_| ())
}

/// Gradients of `output` with respect to `inputs`, returned rather than accumulated (like
/// `torch.autograd.grad`). With `create_graph` the results carry their own graph, so they can
/// be differentiated again. An input that `output` does not depend on gets `None`.
pub fn grad(output: &Tensor, inputs: &[Tensor], gradient: Option<&Tensor>, create_graph: bool) -> Result<Vec<Option<Tensor>>> {
    Ok(run(output, gradient, create_graph, Some(inputs), None)?.unwrap_or_default())
}
