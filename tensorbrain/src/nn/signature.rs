//! A model's typed `forward` signature at run time: the name, dtype and shape of each input and
//! of the output, as written in `tb![...]`. `#[model]` implements [`ModelSignature`], so tools
//! that see a model only from outside (a serving binary, an exporter) take names, dtypes and
//! shapes from the one place they are declared.

use super::DimCheck;
use crate::tensor::{DType, Error, Result, Tensor};

/// One tensor of a signature: `x: tb![B, 784]` is `{ name: "x", dtype: F32, dims: [Sym("B"), Known(784)] }`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub dtype: DType,
    pub dims: Vec<DimCheck>,
}

/// The inputs and output of a model's `forward`.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The model's type name, e.g. `Mlp`.
    pub model: &'static str,
    pub inputs: Vec<TensorSpec>,
    /// `forward` returns one unnamed tensor; it is called [`Signature::OUTPUT_NAME`].
    pub output: TensorSpec,
}

/// Implemented by `#[model]` for every model.
pub trait ModelSignature {
    fn signature() -> Signature;
}

impl TensorSpec {
    /// The shape as written, `[B, 784]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                DimCheck::Known(n) => n.to_string(),
                DimCheck::Sym(s) => s.to_string(),
                DimCheck::Any => "_".into(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }

    /// The shape with `-1` for every size fixed only at run time (`[-1, 784]`), as the Open
    /// Inference Protocol and ONNX write it.
    pub fn shape_with_wildcards(&self) -> Vec<i64> {
        self.dims
            .iter()
            .map(|d| match d {
                DimCheck::Known(n) => *n as i64,
                DimCheck::Sym(_) | DimCheck::Any => -1,
            })
            .collect()
    }
}

impl Signature {
    /// The name given to `forward`'s result.
    pub const OUTPUT_NAME: &'static str = "output";

    /// The symbol that every input and the output start with (`B` in `[B, 784] -> [B, 10]`):
    /// the dim along which requests can be stacked into a batch. `None` when there is none.
    pub fn batch_symbol(&self) -> Option<&'static str> {
        let first = |spec: &TensorSpec| match spec.dims.first() {
            Some(DimCheck::Sym(s)) => Some(*s),
            _ => None,
        };
        let s = first(&self.output)?;
        self.inputs.iter().all(|i| first(i) == Some(s)).then_some(s)
    }

    /// Checks runtime inputs against the declared names' shapes and dtypes (what
    /// `forward_dyn` checks), with the same messages.
    pub fn check(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Msg(format!("{}::forward takes {} inputs, got {}", self.model, self.inputs.len(), inputs.len())));
        }
        let checks: Vec<(&str, &str, &[DimCheck], &Tensor)> =
            self.inputs.iter().zip(inputs).map(|(s, t)| (s.name, s.dtype.name(), &s.dims[..], t)).collect();
        super::check_inputs(self.model, &checks)
    }
}

impl std::fmt::Display for Signature {
    /// `Mlp(x: [B, 784] f32) -> [B, 10] f32`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inputs: Vec<String> = self.inputs.iter().map(|i| format!("{}: {} {}", i.name, i.shape_string(), i.dtype)).collect();
        write!(f, "{}({}) -> {} {}", self.model, inputs.join(", "), self.output.shape_string(), self.output.dtype)
    }
}
