//! The interface `#[model]` generates: an inference path, a training path that saves what the
//! generated backward needs, and that backward. [`run_static`] joins it to the tape: under grad
//! mode a whole model forward is one tape node whose backward is the generated code, so models
//! compose with eager code around them.

use super::{Module, ModuleExt};
use crate::autograd::{custom_op, is_grad_enabled, no_grad};
use crate::tensor::{DType, Error, Result, Tensor};

/// Implemented by `#[model]` for each model.
pub trait StaticModel: Module {
    /// What the training forward keeps for backward.
    type Saved: Send + Sync + 'static;

    /// Forward without recording anything.
    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor>;

    /// Forward that also returns what backward needs; `input_grads` says whether backward
    /// must produce gradients for the inputs (not only the parameters).
    fn forward_train(&self, inputs: &[Tensor], input_grads: bool) -> Result<(Tensor, Self::Saved)>;

    /// The generated backward: gradients of the inputs, and of every parameter in
    /// `visit_params` order (`None` for parameters the forward does not use).
    #[allow(clippy::type_complexity)]
    fn backward(saved: &Self::Saved, grad: &Tensor) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)>;
}

/// Runs a model's forward: the inference path when nothing needs gradients, else the training
/// path recorded as one tape node.
pub fn run_static<M: StaticModel>(model: &M, inputs: &[Tensor]) -> Result<Tensor> {
    if !is_grad_enabled() {
        return model.forward_infer(inputs);
    }
    let params = model.parameters();
    if !inputs.iter().chain(&params).any(Tensor::requires_grad) {
        return model.forward_infer(inputs);
    }
    let input_grads = inputs.iter().any(Tensor::requires_grad);
    let (out, saved) = no_grad(|| model.forward_train(inputs, input_grads))?;
    let all: Vec<&Tensor> = inputs.iter().chain(&params).collect();
    let name = model_node_name(model);
    Ok(custom_op(name, out, &all, move |g, _need| {
        let (mut grads, param_grads) = M::backward(&saved, g)?;
        grads.extend(param_grads);
        Ok(grads)
    }))
}

/// What a nested model's training forward saved, with the backward that reads it. Generated
/// code of the outer model holds this instead of the nested model's `Saved` type, so the
/// outer's saved state needs no generic parameters (the nested type may depend on them).
pub struct NestedSaved {
    state: Box<dyn std::any::Any + Send + Sync>,
    #[allow(clippy::type_complexity)]
    backward: fn(&(dyn std::any::Any + Send + Sync), &Tensor) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)>,
}

impl NestedSaved {
    /// The nested model's generated backward: (input gradients, parameter gradients).
    #[allow(clippy::type_complexity)]
    pub fn backward(&self, grad: &Tensor) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        (self.backward)(&*self.state, grad)
    }
}

/// A nested model's inference forward, called from generated code; errors say which call.
pub fn call_infer<M: StaticModel>(model: &M, inputs: &[Tensor], at: &str) -> Result<Tensor> {
    model.forward_infer(inputs).map_err(|e| Error::Msg(format!("{at}: {e}")))
}

/// A nested model's training forward, called from generated code.
pub fn call_train<M: StaticModel>(model: &M, inputs: &[Tensor], input_grads: bool, at: &str) -> Result<(Tensor, NestedSaved)> {
    let (out, saved) = model.forward_train(inputs, input_grads).map_err(|e| Error::Msg(format!("{at}: {e}")))?;
    let backward = |state: &(dyn std::any::Any + Send + Sync), grad: &Tensor| {
        let saved = state.downcast_ref::<M::Saved>().expect("a nested model's saved state has its own type");
        M::backward(saved, grad)
    };
    Ok((out, NestedSaved { state: Box::new(saved), backward }))
}

fn model_node_name<M: Module>(_: &M) -> &'static str {
    // `my_crate::Wide<tensorbrain::shape::Const<4>>` -> `Wide`
    let full = std::any::type_name::<M>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Number of parameters (tensors, not elements) a module holds.
pub fn count_params<M: Module + ?Sized>(m: &M) -> usize {
    m.param_count()
}

/// How a declared dim is checked on the dynamic path.
#[derive(Clone, Copy, Debug)]
pub enum DimCheck {
    Known(usize),
    Sym(&'static str),
    Any,
}

/// Checks inputs against `forward`'s declared shapes: static dims must match, and a symbol
/// (`B`) must have one size across all inputs.
pub fn check_inputs(model: &str, inputs: &[(&str, &str, &[DimCheck], &Tensor)]) -> Result<()> {
    let mut bound: Vec<(&str, usize)> = Vec::new();
    for (name, dtype, dims, t) in inputs {
        let declared: Vec<String> = dims
            .iter()
            .map(|d| match d {
                DimCheck::Known(n) => n.to_string(),
                DimCheck::Sym(s) => s.to_string(),
                DimCheck::Any => "_".into(),
            })
            .collect();
        let declared = format!("[{}]", declared.join(", "));
        let bad = || Error::Msg(format!("{model}::forward: input `{name}` must have shape {declared}, got {:?}", t.shape()));
        if t.rank() != dims.len() {
            return Err(bad());
        }
        // Under autocast, inputs declared f32 may come in the compute dtype.
        let autocast = DType::from_name(dtype) == Some(DType::F32) && crate::train::autocast_dtype() == Some(t.dtype());
        if DType::from_name(dtype) != Some(t.dtype()) && !autocast {
            return Err(Error::Msg(format!("{model}::forward: input `{name}` must be {dtype}, got {}", t.dtype())));
        }
        for (d, &size) in dims.iter().zip(t.shape()) {
            match d {
                DimCheck::Known(n) if *n != size => return Err(bad()),
                DimCheck::Sym(s) => match bound.iter().find(|(b, _)| b == s) {
                    Some((_, v)) if *v != size => {
                        return Err(Error::Msg(format!(
                            "{model}::forward: size {s} is {v} in an earlier input but {size} in `{name}` {:?}",
                            t.shape()
                        )))
                    }
                    Some(_) => {}
                    None => bound.push((s, size)),
                },
                _ => {}
            }
        }
    }
    Ok(())
}

/// A layer's parameter slot: a tensor, or an optional one (a bias that may be disabled).
pub trait AsParam {
    fn as_param(&self) -> &Tensor;
}

impl AsParam for Tensor {
    fn as_param(&self) -> &Tensor {
        self
    }
}

impl AsParam for Option<Tensor> {
    fn as_param(&self) -> &Tensor {
        self.as_ref().expect("#[model] only reads parameters the layer has")
    }
}

/// The single input of a layer called through [`StaticModel`].
pub(crate) fn one_input<'a>(layer: &str, inputs: &'a [Tensor]) -> Result<&'a Tensor> {
    match inputs {
        [x] => Ok(x),
        _ => Err(Error::Msg(format!("{layer} takes one input tensor, got {}", inputs.len()))),
    }
}

/// An array of models applied in sequence, each to the previous one's output: what a
/// `#[model]` loop `for block in &self.blocks { h = block(h); }` over an array of generic
/// length (`[Block<C>; L]`) runs. Parameter gradients come in `visit_params` order (element 0
/// first), as the array's `Module` impl numbers them.
impl<M: StaticModel, const N: usize> StaticModel for [M; N] {
    type Saved = Vec<M::Saved>;

    fn forward_infer(&self, inputs: &[Tensor]) -> Result<Tensor> {
        let mut h = one_input("a sequence of models", inputs)?.clone();
        for m in self {
            h = m.forward_infer(std::slice::from_ref(&h))?;
        }
        Ok(h)
    }

    fn forward_train(&self, inputs: &[Tensor], input_grads: bool) -> Result<(Tensor, Self::Saved)> {
        let mut h = one_input("a sequence of models", inputs)?.clone();
        let mut saved = Vec::with_capacity(N);
        for (i, m) in self.iter().enumerate() {
            // Later elements pass gradients back to earlier ones.
            let (out, s) = m.forward_train(std::slice::from_ref(&h), input_grads || i > 0)?;
            saved.push(s);
            h = out;
        }
        Ok((h, saved))
    }

    fn backward(saved: &Self::Saved, grad: &Tensor) -> Result<(Vec<Option<Tensor>>, Vec<Option<Tensor>>)> {
        let mut g = Some(grad.clone());
        let mut per_element = Vec::with_capacity(saved.len());
        for s in saved.iter().rev() {
            let Some(gi) = &g else {
                return Err(Error::Autograd("a model in a sequence gave no input gradient".into()));
            };
            let (input_grads, param_grads) = M::backward(s, gi)?;
            per_element.push(param_grads);
            g = input_grads.into_iter().next().flatten();
        }
        let params = per_element.into_iter().rev().flatten().collect();
        Ok((vec![g], params))
    }
}
