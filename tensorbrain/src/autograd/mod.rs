//! Dynamic (tape-based) reverse-mode autodiff.
//!
//! Every op that sees an input requiring grad (with grad mode on) gives its output a [`Node`]:
//! a backward closure plus edges to the inputs' nodes. `backward` walks the nodes reachable from
//! the root in reverse creation order — a valid topological order, since a node's inputs always
//! exist before it — and accumulates gradients into leaves.
//!
//! Backward closures are written with ordinary tensor ops, so running them with grad mode on
//! (`create_graph`) records a graph of the backward pass itself: that is double backward.

mod engine;
mod gradcheck;
mod grad_mode;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub use engine::{backward_with_hook, grad};
pub use gradcheck::{gradcheck, gradgradcheck, GradcheckOptions};
pub use grad_mode::{enable_grad, is_grad_enabled, no_grad, no_grad_guard, GradModeGuard};

use crate::tensor::{Result, Tensor, TensorInner};

/// Computes input gradients from the output gradient. The second argument says which inputs
/// need one; the result has one entry per input (`None` where not needed, or where the third
/// argument, `early(i, grad)`, already took input `i`'s gradient while backward still ran).
pub(crate) type BackwardFn = dyn Fn(&Tensor, &[bool], &mut EarlyGrad<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync;

/// Takes input `i`'s final gradient from a node's backward before it returns: a leaf's is
/// accumulated, and reported ready, at once (see [`custom_op_streaming`]).
pub type EarlyGrad<'a> = dyn FnMut(usize, Tensor) -> Result<()> + 'a;

/// Where a gradient flows to.
pub(crate) enum Edge {
    /// A leaf tensor that requires grad: its gradient accumulates in `.grad()`.
    Leaf(Arc<TensorInner>),
    /// An op output: the gradient flows on through that op's node.
    Node(Arc<Node>),
    /// An input that needs no gradient.
    None,
}

/// One recorded op.
pub struct Node {
    pub(crate) name: &'static str,
    pub(crate) seq: u64,
    pub(crate) inputs: Vec<Edge>,
    pub(crate) backward: Box<BackwardFn>,
    /// Shape of the op's output, to check gradients and to make ones for `backward()`.
    pub(crate) out_shape: crate::tensor::Dims,
    /// Set by `retain_grad` on the output: the gradient reaching this node is stored there too.
    pub(crate) retained: Mutex<Option<Weak<TensorInner>>>,
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Node {
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Whether an op over `inputs` must record a node.
#[inline]
pub(crate) fn needs_grad(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// Attaches a backward node to `out` if any input requires grad (and grad mode is on);
/// otherwise returns `out` unchanged. This is the one place ops talk to the tape.
pub(crate) fn record(
    name: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Tensor {
    if !needs_grad(inputs) {
        return out;
    }
    attach(name, out, inputs, Box::new(move |g: &Tensor, needs: &[bool], _: &mut EarlyGrad<'_>| backward(g, needs)))
}

/// Gives `out` a node with edges to `inputs`, for ops that need one.
fn attach(name: &'static str, out: Tensor, inputs: &[&Tensor], backward: Box<BackwardFn>) -> Tensor {
    let edges = inputs
        .iter()
        .map(|t| {
            if !t.requires_grad() {
                Edge::None
            } else if let Some(node) = &t.0.grad_fn {
                Edge::Node(node.clone())
            } else {
                Edge::Leaf(t.0.clone())
            }
        })
        .collect();
    let node = Arc::new(Node {
        name,
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        inputs: edges,
        backward,
        out_shape: out.shape().into(),
        retained: Mutex::new(None),
    });
    out.with_grad_fn(node)
}

/// Records a user-defined op: `out` was computed from `inputs` (without recording), and
/// `backward(grad_out, needs)` returns one gradient per input.
pub fn custom_op(
    name: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Tensor {
    record(name, out, inputs, backward)
}

/// Like [`custom_op`], for a backward that finishes some input gradients well before it
/// returns: it hands each to `early(i, grad)` as soon as it is final and returns `None` in its
/// slot. A leaf's gradient is then accumulated, and `backward_with_hook`'s hook told, while the
/// backward still runs. A `#[model]` forward is such a node, whose backward is generated code
/// that finishes its parameters layer by layer.
pub fn custom_op_streaming(
    name: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl Fn(&Tensor, &[bool], &mut EarlyGrad<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Tensor {
    if !needs_grad(inputs) {
        return out;
    }
    attach(name, out, inputs, Box::new(backward))
}

impl Tensor {
    /// Whether gradients flow to (a leaf) or through (an op output) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Marks a leaf as requiring grad; returns `self` for chaining:
    /// `let w = Tensor::randn(&[3, 4], DType::F32).set_requires_grad(true);`.
    pub fn set_requires_grad(self, requires_grad: bool) -> Tensor {
        self.try_set_requires_grad(requires_grad).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_set_requires_grad(self, requires_grad: bool) -> Result<Tensor> {
        if self.0.grad_fn.is_some() && !requires_grad {
            return Err(crate::Error::Autograd(
                "requires_grad can only be turned off on a leaf; use detach() on an op's output".into(),
            ));
        }
        if requires_grad && !self.dtype().is_float() {
            return Err(crate::Error::Autograd(format!(
                "only floating-point tensors can require gradients, this one is {}",
                self.dtype()
            )));
        }
        self.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(self)
    }

    /// A leaf is a tensor not produced by a recorded op (user-created, or a parameter).
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }

    /// The name of the op that produced this tensor on the tape, if any.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.0.grad_fn.as_ref().map(|n| n.name)
    }

    /// The accumulated gradient (for leaves, and non-leaves after `retain_grad`).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the stored gradient (optimizers and gradient clipping use this).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()) = grad;
    }

    /// Clears the stored gradient.
    pub fn zero_grad(&self) {
        self.set_grad(None);
    }

    /// Keeps the gradient of this non-leaf tensor after backward (leaves always keep theirs).
    pub fn retain_grad(&self) {
        if let Some(node) = &self.0.grad_fn {
            *node.retained.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(&self.0));
        }
    }

    /// The same data, cut off from the graph: a new leaf that does not require grad.
    pub fn detach(&self) -> Tensor {
        self.view_with(self.0.layout.clone())
    }

    /// Backpropagates from this scalar, accumulating gradients into every leaf that requires
    /// grad.
    pub fn backward(&self) {
        self.try_backward().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_backward(&self) -> Result<()> {
        engine::backward(self, None, false)
    }

    /// Backpropagates `gradient` (same shape as `self`), for non-scalar outputs.
    pub fn backward_with(&self, gradient: &Tensor) {
        self.try_backward_opts(Some(gradient), false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The general form: an optional explicit gradient, and `create_graph` to record the
    /// backward pass itself so that gradients can be differentiated again.
    pub fn try_backward_opts(&self, gradient: Option<&Tensor>, create_graph: bool) -> Result<()> {
        engine::backward(self, gradient, create_graph)
    }
}

/// Accumulates `g` into a tensor's `.grad`.
pub(crate) fn accumulate(inner: &TensorInner, g: Tensor) -> Result<()> {
    let mut slot = inner.grad.lock().unwrap_or_else(|p| p.into_inner());
    let new = match slot.take() {
        None => g,
        Some(old) => old.try_add(&g)?,
    };
    *slot = Some(new);
    Ok(())
}
