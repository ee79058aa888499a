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

fn model_node_name<M: Module>(_: &M) -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Number of parameters (tensors, not elements) a module holds.
pub fn count_params<M: Module + ?Sized>(m: &M) -> usize {
    m.param_count()
}

/// How a declared dim is checked on the dynamic path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
