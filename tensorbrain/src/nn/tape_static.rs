//! [`StaticModel`] for layers whose forward is written with tape ops: the training forward
//! records the layer on a private tape and the backward asks that tape for the gradients
//! (`autograd::grad`), so `#[model]` can call any such layer without a hand-written backward.
//! The hand-written ones (`BatchNorm`, `RMSNorm`) stay for speed; these are for breadth.

use super::static_model::one_input;
use super::{Forward, GradReady, Module, ModuleExt, Sequential, StaticModel};
use super::{AvgPool2dWith, ConvTranspose2dOf, EmbeddingBagOf, GroupNormOf, InstanceNormOf, LeakyReLU, LogSoftmax, MaxPool2dWith, Softmax, ELU};
use crate::autograd::{enable_grad, grad, no_grad};
use crate::shape::Size;
use crate::tensor::{Result, Tensor};

/// What a layer run on the tape keeps for backward: its output, still attached to the
/// private tape, and the leaves that tape starts from.
pub struct TapeSaved {
    output: Tensor,
    /// Detached copies of the inputs; the float ones require grad when the caller asked for
    /// input gradients.
    inputs: Vec<Tensor>,
    /// The layer's parameters in `visit_params` order.
    params: Vec<Tensor>,
}

/// The training forward of a tape layer: `forward` runs with grad mode on, from detached
/// inputs, so the recorded graph ends at this layer (the caller's tape holds the layer as one
/// node, as it does every static model).
pub fn tape_forward_train<M: Module + ?Sized>(
    layer: &M,
    inputs: &[Tensor],
    input_grads: bool,
    forward: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<(Tensor, TapeSaved)> {
    let inputs: Vec<Tensor> = inputs
        .iter()
        .map(|x| {
            let leaf = x.detach();
            if input_grads && leaf.dtype().is_float() {
                leaf.set_requires_grad(true)
            } else {
                leaf
            }
        })
        .collect();
    let params = layer.parameters();
    let output = enable_grad(|| forward(&inputs))?;
    Ok((output.detach(), TapeSaved { output, inputs, params }))
}

/// Gradients of the inputs and parameters of a layer run by [`tape_forward_train`]; `None`
/// for those that need none (integer inputs, frozen parameters). The private tape finishes
/// them all at once, so they are reported to `ready` together.
#[allow(clippy::type_complexity)]
pub fn tape_backward(saved: &TapeSaved, grad_output: &Tensor, ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
    let leaves: Vec<&Tensor> = saved.inputs.iter().chain(&saved.params).collect();
    let wanted: Vec<Tensor> = leaves.iter().filter(|t| t.requires_grad()).map(|t| (*t).clone()).collect();
    let mut found = if wanted.is_empty() || !saved.output.requires_grad() {
        Vec::new().into_iter()
    } else {
        grad(&saved.output, &wanted, Some(grad_output), false)?.into_iter()
    };
    let mut all: Vec<Option<Tensor>> = leaves.iter().map(|t| if t.requires_grad() { found.next().flatten() } else { None }).collect();
    let params = all.split_off(saved.inputs.len());
    ready.report_all(&params)?;
    Ok((all, params))
}

/// `StaticModel` through the tape for a one-input layer with an inherent `forward(&Tensor)`.
macro_rules! static_via_tape {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> StaticModel for $ty {
            type Saved = TapeSaved;

            fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
                let x = one_input(&self.kind(), inputs)?;
                no_grad(|| <$ty>::forward(self, x))
            }

            fn forward_train(&self, inputs: &[Tensor], input_grads: bool) -> Result<(Tensor, TapeSaved)> {
                let kind = self.kind();
                tape_forward_train(self, inputs, input_grads, |xs| <$ty>::forward(self, one_input(&kind, xs)?))
            }

            fn backward(saved: &TapeSaved, grad: &Tensor, ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
                tape_backward(saved, grad, ready)
            }
        }
    };
}

static_via_tape!([const G: usize, C: Size] GroupNormOf<G, C>);
static_via_tape!([C: Size, const SPATIAL: usize] InstanceNormOf<C, SPATIAL>);
static_via_tape!([CI: Size, CO: Size, const K: usize, const S: usize, const P: usize, const OP: usize] ConvTranspose2dOf<CI, CO, K, S, P, OP>);
static_via_tape!([V: Size, D: Size] EmbeddingBagOf<V, D>);
static_via_tape!([] MaxPool2dWith);
static_via_tape!([] AvgPool2dWith);
static_via_tape!([] LeakyReLU);
static_via_tape!([] ELU);
static_via_tape!([] Softmax);
static_via_tape!([] LogSoftmax);

/// `Sequential`'s layers are chosen at run time; `#[model]` calls it with shapes checked then.
impl StaticModel for Sequential {
    type Saved = TapeSaved;

    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let x = one_input("Sequential", inputs)?;
        no_grad(|| Forward::forward(self, x))
    }

    fn forward_train(&self, inputs: &[Tensor], input_grads: bool) -> Result<(Tensor, TapeSaved)> {
        tape_forward_train(self, inputs, input_grads, |xs| Forward::forward(self, one_input("Sequential", xs)?))
    }

    fn backward(saved: &TapeSaved, grad: &Tensor, ready: &mut GradReady<'_>) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        tape_backward(saved, grad, ready)
    }
}
