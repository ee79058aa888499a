//! The layers `#[model]` knows the shape rules of, read from field types like `Linear<784, 256>`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Expr, GenericArgument, Lit, PathArguments, Type};
use tensorbrain_ir::UnaryOp;

/// What a field is, as far as shape checking goes.
#[derive(Clone)]
pub enum Layer {
    Linear { inputs: usize, outputs: usize, bias: bool },
    Conv2d { in_channels: usize, out_channels: usize, kernel: usize, stride: usize, padding: usize },
    MaxPool2d { kernel: usize, stride: usize },
    AvgPool2d { kernel: usize, stride: usize },
    Flatten,
    Dropout { percent: usize },
    Embedding { vocab: usize, dim: usize },
    LayerNorm { dim: usize },
    Activation(UnaryOp),
    /// `[T; N]` of layers, used from `for` loops or by index.
    Array { elem: Box<Layer>, len: usize },
    /// A built-in layer with a hand-written static interface (`StaticModel`): called like a
    /// nested model, but with a shape rule, so checking goes on past it.
    Static { kind: StaticLayer, ty: Type },
    /// A nested `#[model]` (or any other module): called through its generated static
    /// interface; its shapes are checked by its own macro expansion and at run time.
    Nested { ty: Type },
}

/// The built-in layers `#[model]` calls through their `StaticModel` impl.
#[derive(Clone, Copy)]
pub enum StaticLayer {
    /// `BatchNorm1d<C>` (`spatial` 1) or `BatchNorm2d<C>` (`spatial` 2).
    BatchNorm { spatial: usize, channels: usize },
    RmsNorm { dim: usize },
    AdaptiveAvgPool2d { out_h: usize, out_w: usize },
}

impl Layer {
    /// Reads a field type. Unknown types are nested models.
    pub fn from_type(ty: &Type) -> syn::Result<Layer> {
        if let Type::Array(arr) = ty {
            let len = match &arr.len {
                Expr::Lit(l) => match &l.lit {
                    Lit::Int(i) => i.base10_parse()?,
                    _ => return Err(syn::Error::new_spanned(&arr.len, "array lengths of layers must be numbers")),
                },
                _ => return Err(syn::Error::new_spanned(&arr.len, "array lengths of layers must be numbers")),
            };
            return Ok(Layer::Array { elem: Box::new(Layer::from_type(&arr.elem)?), len });
        }
        let Type::Path(p) = ty else {
            return Ok(Layer::Nested { ty: ty.clone() });
        };
        let seg = p.path.segments.last().expect("a path has a segment");
        let args = generic_values(&seg.arguments)?;
        let name = seg.ident.to_string();
        let n = |i: usize, what: &str| -> syn::Result<usize> {
            match args.get(i) {
                Some(Value::Int(v)) => Ok(*v),
                Some(Value::Bool(_)) | None => Err(syn::Error::new_spanned(ty, format!("{name} needs {what} as a number: {}", usage(&name)))),
            }
        };
        let opt = |i: usize, default: usize| -> usize {
            match args.get(i) {
                Some(Value::Int(v)) => *v,
                _ => default,
            }
        };
        Ok(match name.as_str() {
            "Linear" => Layer::Linear {
                inputs: n(0, "the input size")?,
                outputs: n(1, "the output size")?,
                bias: !matches!(args.get(2), Some(Value::Bool(false))),
            },
            "Conv2d" => Layer::Conv2d {
                in_channels: n(0, "the input channels")?,
                out_channels: n(1, "the output channels")?,
                kernel: n(2, "the kernel size")?,
                stride: opt(3, 1),
                padding: opt(4, 0),
            },
            "MaxPool2d" | "AvgPool2d" => {
                let kernel = n(0, "the kernel size")?;
                let stride = match opt(1, 0) {
                    0 => kernel,
                    s => s,
                };
                if name == "MaxPool2d" {
                    Layer::MaxPool2d { kernel, stride }
                } else {
                    Layer::AvgPool2d { kernel, stride }
                }
            }
            "Flatten" => Layer::Flatten,
            "Dropout" => Layer::Dropout { percent: n(0, "the drop probability in percent")? },
            "Embedding" => Layer::Embedding { vocab: n(0, "the vocabulary size")?, dim: n(1, "the embedding size")? },
            "LayerNorm" => Layer::LayerNorm { dim: n(0, "the normalised size")? },
            "BatchNorm1d" | "BatchNorm2d" => Layer::Static {
                kind: StaticLayer::BatchNorm { spatial: if name == "BatchNorm1d" { 1 } else { 2 }, channels: n(0, "the channel count")? },
                ty: ty.clone(),
            },
            "RMSNorm" => Layer::Static { kind: StaticLayer::RmsNorm { dim: n(0, "the normalised size")? }, ty: ty.clone() },
            "AdaptiveAvgPool2d" => Layer::Static {
                kind: StaticLayer::AdaptiveAvgPool2d { out_h: n(0, "the output height")?, out_w: n(1, "the output width")? },
                ty: ty.clone(),
            },
            "ReLU" => Layer::Activation(UnaryOp::Relu),
            "GELU" => Layer::Activation(UnaryOp::Gelu),
            "Sigmoid" => Layer::Activation(UnaryOp::Sigmoid),
            "Tanh" => Layer::Activation(UnaryOp::Tanh),
            "SiLU" => Layer::Activation(UnaryOp::Silu),
            _ => Layer::Nested { ty: ty.clone() },
        })
    }

    /// How users write it, for messages: `Linear<784, 256>`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear { inputs, outputs, bias: true } => format!("Linear<{inputs}, {outputs}>"),
            Layer::Linear { inputs, outputs, bias: false } => format!("Linear<{inputs}, {outputs}, false>"),
            Layer::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
                format!("Conv2d<{in_channels}, {out_channels}, {kernel}, {stride}, {padding}>")
            }
            Layer::MaxPool2d { kernel, stride } => format!("MaxPool2d<{kernel}, {stride}>"),
            Layer::AvgPool2d { kernel, stride } => format!("AvgPool2d<{kernel}, {stride}>"),
            Layer::Flatten => "Flatten".into(),
            Layer::Dropout { percent } => format!("Dropout<{percent}>"),
            Layer::Embedding { vocab, dim } => format!("Embedding<{vocab}, {dim}>"),
            Layer::LayerNorm { dim } => format!("LayerNorm<{dim}>"),
            Layer::Activation(u) => u.method().to_string(),
            Layer::Array { elem, len, .. } => format!("[{}; {len}]", elem.describe()),
            Layer::Static { kind: StaticLayer::BatchNorm { spatial, channels }, .. } => format!("BatchNorm{spatial}d<{channels}>"),
            Layer::Static { kind: StaticLayer::RmsNorm { dim }, .. } => format!("RMSNorm<{dim}>"),
            Layer::Static { kind: StaticLayer::AdaptiveAvgPool2d { out_h, out_w }, .. } => format!("AdaptiveAvgPool2d<{out_h}, {out_w}>"),
            Layer::Nested { ty } => ty.to_token_stream().to_string().replace(' ', ""),
        }
    }

    /// Parameter names in the layer's `visit_params` order.
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Layer::Linear { bias: true, .. } | Layer::Conv2d { .. } | Layer::LayerNorm { .. } => &["weight", "bias"],
            Layer::Linear { bias: false, .. } | Layer::Embedding { .. } => &["weight"],
            _ => &[],
        }
    }

    /// The type tokens of a nested model or static layer (for calling its static interface).
    pub fn nested_type(&self) -> Option<TokenStream> {
        match self {
            Layer::Nested { ty } | Layer::Static { ty, .. } => Some(ty.to_token_stream()),
            _ => None,
        }
    }
}

fn usage(name: &str) -> &'static str {
    match name {
        "Linear" => "`Linear<IN, OUT>` or `Linear<IN, OUT, false>` without bias",
        "Conv2d" => "`Conv2d<C_IN, C_OUT, KERNEL>` with optional `STRIDE, PADDING` after",
        "MaxPool2d" | "AvgPool2d" => "`MaxPool2d<KERNEL>` or `MaxPool2d<KERNEL, STRIDE>`",
        "Dropout" => "`Dropout<PERCENT>`, e.g. `Dropout<10>` drops 10% of activations",
        "Embedding" => "`Embedding<VOCAB, DIM>`",
        "LayerNorm" => "`LayerNorm<DIM>`",
        "BatchNorm1d" => "`BatchNorm1d<CHANNELS>`",
        "BatchNorm2d" => "`BatchNorm2d<CHANNELS>`",
        "RMSNorm" => "`RMSNorm<DIM>`",
        "AdaptiveAvgPool2d" => "`AdaptiveAvgPool2d<OUT_H, OUT_W>`",
        _ => "",
    }
}

enum Value {
    Int(usize),
    Bool(bool),
}

fn generic_values(args: &PathArguments) -> syn::Result<Vec<Value>> {
    let PathArguments::AngleBracketed(ab) = args else { return Ok(vec![]) };
    let mut out = Vec::new();
    for a in &ab.args {
        let lit = match a {
            GenericArgument::Const(Expr::Lit(l)) => Some(&l.lit),
            GenericArgument::Const(Expr::Block(b)) => match b.block.stmts.as_slice() {
                [syn::Stmt::Expr(Expr::Lit(l), None)] => Some(&l.lit),
                _ => None,
            },
            _ => None,
        };
        match lit {
            Some(Lit::Int(i)) => out.push(Value::Int(i.base10_parse()?)),
            Some(Lit::Bool(b)) => out.push(Value::Bool(b.value)),
            // Types or const expressions: not a built-in layer's plain numbers.
            _ => return Ok(vec![]),
        }
    }
    Ok(out)
}
