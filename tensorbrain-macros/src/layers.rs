//! The layers `#[model]` knows the shape rules of, read from field types like `Linear<784, 256>`
//! or `Linear<D, {4 * D}>`, and the Rust types they are written back as.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Expr, GenericArgument, Lit, PathArguments, Type};
use tensorbrain_ir::{Dim, UnaryOp};

use crate::dims::{self, Scope};
use crate::interface::{Interface, ParamKind};

/// What a field is, as far as shape checking goes.
#[derive(Clone)]
pub enum Layer {
    Linear { inputs: Dim, outputs: Dim, bias: bool },
    Conv2d { in_channels: Dim, out_channels: Dim, kernel: usize, stride: usize, padding: usize },
    MaxPool2d { kernel: usize, stride: usize },
    AvgPool2d { kernel: usize, stride: usize },
    Flatten,
    Dropout { percent: usize },
    Embedding { vocab: Dim, dim: Dim },
    LayerNorm { dim: Dim },
    Activation(UnaryOp),
    /// `[T; N]` of layers, used from `for` loops or by index.
    Array { elem: Box<Layer>, len: ArrayLen, elem_ty: Box<Type> },
    /// A built-in layer with a hand-written static interface (`StaticModel`): called like a
    /// nested model, but with a shape rule, so checking goes on past it.
    Static { kind: StaticLayer },
    /// A nested `#[model]`: its signature comes from its own expansion (see [`Interface`]), so
    /// its input is checked and its output shape known here.
    Nested { path: syn::Path, args: Vec<GenericArgument>, span: Span },
    /// A module with no static signature (`Sequential`): its shapes are checked at run time.
    Dynamic { ty: Type },
}

/// The length of an array of layers.
#[derive(Clone)]
pub enum ArrayLen {
    /// A number: loops over the array are unrolled, each element its own graph nodes.
    Known(usize),
    /// A const parameter or named constant (`[Block<C>; L]`): a loop over the array is one
    /// call of the whole sequence.
    Sized(Dim),
}

impl std::fmt::Display for ArrayLen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArrayLen::Known(n) => write!(f, "{n}"),
            ArrayLen::Sized(d) => write!(f, "{d}"),
        }
    }
}

/// The built-in layers `#[model]` calls through their `StaticModel` impl.
#[derive(Clone)]
pub enum StaticLayer {
    /// `BatchNorm1d<C>` (`spatial` 1) or `BatchNorm2d<C>` (`spatial` 2).
    BatchNorm { spatial: usize, channels: Dim },
    RmsNorm { dim: Dim },
    AdaptiveAvgPool2d { out_h: usize, out_w: usize },
    /// `GroupNorm<G, C>`: `[N, C, ...]` kept as it is.
    GroupNorm { groups: usize, channels: Dim },
    /// `InstanceNorm1d<C>` / `InstanceNorm2d<C>`: `[N, C, L]` / `[N, C, H, W]`, or unbatched.
    InstanceNorm { spatial: usize, channels: Dim },
    /// `ConvTranspose2d<C_IN, C_OUT, K, S, P, OP>`: H becomes (H - 1)·S - 2·P + K + OP.
    ConvTranspose2d { in_channels: Dim, out_channels: Dim, kernel: usize, stride: usize, padding: usize, output_padding: usize },
    /// `EmbeddingBag<V, D>`: integer ids `[B, L]` to `[B, D]` (each row one bag).
    EmbeddingBag { vocab: Dim, dim: Dim },
    /// A parameter-free layer with a run-time setting that keeps the shape (`LeakyReLU`'s
    /// slope, `Softmax`'s dim).
    SameShape { name: &'static str },
}

/// Modules that `#[model]` calls without knowing their shapes.
const DYNAMIC: &[&str] = &["Sequential", "MaxPool2dWith", "AvgPool2dWith"];

/// Shape-keeping layers with a run-time setting, called through their `StaticModel` impl.
const SAME_SHAPE: &[&str] = &["LeakyReLU", "ELU", "Softmax", "LogSoftmax"];

/// Layers whose names `#[model]` knows (for messages listing them).
pub const KNOWN: &str = "Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Embedding, LayerNorm, RMSNorm, \
BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm1d, InstanceNorm2d, ConvTranspose2d, EmbeddingBag, ReLU, GELU, Sigmoid, Tanh, SiLU, \
LeakyReLU, ELU, Softmax, LogSoftmax; Sequential, MaxPool2dWith and AvgPool2dWith are checked at run time";

/// One generic argument of a layer type, read.
enum Arg {
    Size(Dim),
    Bool(bool),
}

impl Layer {
    /// Reads a field type. Unknown types are nested models.
    pub fn from_type(ty: &Type) -> syn::Result<Layer> {
        if let Type::Array(arr) = ty {
            let len = match dims::parse_dim(&arr.len) {
                Ok(Dim::Known(n)) => ArrayLen::Known(n),
                Ok(d) => ArrayLen::Sized(d),
                Err(_) => {
                    return Err(syn::Error::new_spanned(&arr.len, "the length of an array of layers is a number, a const parameter (`L`) or a constant (`N_LAYERS`)"))
                }
            };
            return Ok(Layer::Array { elem: Box::new(Layer::from_type(&arr.elem)?), len, elem_ty: arr.elem.clone() });
        }
        let Type::Path(p) = ty else {
            return Err(syn::Error::new_spanned(ty, format!("`{}` is not a layer; fields of a #[model] are layers ({KNOWN}), arrays of them, or other #[model]s", ty.to_token_stream())));
        };
        let seg = p.path.segments.last().expect("a path has a segment");
        let name = seg.ident.to_string();
        let raw_args: Vec<GenericArgument> = match &seg.arguments {
            PathArguments::AngleBracketed(ab) => ab.args.iter().cloned().collect(),
            PathArguments::None => vec![],
            PathArguments::Parenthesized(_) => return Err(syn::Error::new_spanned(ty, "not a layer type")),
        };
        let builtin = [
            "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "Dropout", "Embedding", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "RMSNorm",
            "AdaptiveAvgPool2d", "ReLU", "GELU", "Sigmoid", "Tanh", "SiLU", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "ConvTranspose2d", "EmbeddingBag",
        ];
        if let Some(&same) = SAME_SHAPE.iter().find(|n| **n == name) {
            if !raw_args.is_empty() {
                return Err(syn::Error::new_spanned(ty, format!("{name} takes no generic arguments: it starts with PyTorch's default setting, a public field you can change after `init`")));
            }
            return Ok(Layer::Static { kind: StaticLayer::SameShape { name: same } });
        }
        if !builtin.contains(&name.as_str()) {
            if DYNAMIC.contains(&name.as_str()) {
                return Ok(Layer::Dynamic { ty: ty.clone() });
            }
            let mut path = p.path.clone();
            path.segments.last_mut().unwrap().arguments = PathArguments::None;
            return Ok(Layer::Nested { path, args: raw_args, span: ty.span() });
        }
        let mut args = Vec::new();
        for a in &raw_args {
            args.push((read_arg(a)?, a.span()));
        }
        let (min, max) = arity(&name);
        if args.len() < min || args.len() > max {
            return Err(syn::Error::new_spanned(ty, format!("{name} takes {} generic argument{}: {}", arg_count(min, max), if max == 1 { "" } else { "s" }, usage(&name))));
        }
        // A size argument, or an error naming this argument and what it should be.
        let size = |i: usize, what: &str| -> syn::Result<Dim> {
            match &args[i] {
                (Arg::Size(d), _) => Ok(d.clone()),
                (Arg::Bool(_), span) => Err(syn::Error::new(*span, format!("{name} needs {what} here: {}", usage(&name)))),
            }
        };
        // A geometry argument (kernel, stride, padding): a plain number.
        let number = |i: usize, what: &str, default: usize| -> syn::Result<usize> {
            match args.get(i) {
                None => Ok(default),
                Some((Arg::Size(Dim::Known(n)), _)) => Ok(*n),
                Some((Arg::Size(d), span)) => Err(syn::Error::new(
                    *span,
                    format!("{name} needs {what} as a number, got `{d}`; only channel and feature sizes may be generic: {}", usage(&name)),
                )),
                Some((Arg::Bool(_), span)) => Err(syn::Error::new(*span, format!("{name} needs {what} as a number: {}", usage(&name)))),
            }
        };
        Ok(match name.as_str() {
            "Linear" => Layer::Linear {
                inputs: size(0, "the input size")?,
                outputs: size(1, "the output size")?,
                bias: match args.get(2) {
                    None => true,
                    Some((Arg::Bool(b), _)) => *b,
                    Some((_, span)) => return Err(syn::Error::new(*span, "the third argument of Linear says whether it has a bias: `true` or `false`")),
                },
            },
            "Conv2d" => Layer::Conv2d {
                in_channels: size(0, "the input channels")?,
                out_channels: size(1, "the output channels")?,
                kernel: number(2, "the kernel size", 0)?,
                stride: number(3, "the stride", 1)?,
                padding: number(4, "the padding", 0)?,
            },
            "MaxPool2d" | "AvgPool2d" => {
                let kernel = number(0, "the kernel size", 0)?;
                let stride = match number(1, "the stride", 0)? {
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
            "Dropout" => Layer::Dropout { percent: number(0, "the drop probability in percent", 0)? },
            "Embedding" => Layer::Embedding { vocab: size(0, "the vocabulary size")?, dim: size(1, "the embedding size")? },
            "LayerNorm" => Layer::LayerNorm { dim: size(0, "the normalised size")? },
            "BatchNorm1d" | "BatchNorm2d" => {
                Layer::Static { kind: StaticLayer::BatchNorm { spatial: if name == "BatchNorm1d" { 1 } else { 2 }, channels: size(0, "the channel count")? } }
            }
            "RMSNorm" => Layer::Static { kind: StaticLayer::RmsNorm { dim: size(0, "the normalised size")? } },
            "AdaptiveAvgPool2d" => Layer::Static {
                kind: StaticLayer::AdaptiveAvgPool2d { out_h: number(0, "the output height", 0)?, out_w: number(1, "the output width", 0)? },
            },
            "GroupNorm" => Layer::Static { kind: StaticLayer::GroupNorm { groups: number(0, "the number of groups", 0)?, channels: size(1, "the channel count")? } },
            "InstanceNorm1d" | "InstanceNorm2d" => Layer::Static {
                kind: StaticLayer::InstanceNorm { spatial: if name == "InstanceNorm1d" { 1 } else { 2 }, channels: size(0, "the channel count")? },
            },
            "ConvTranspose2d" => Layer::Static {
                kind: StaticLayer::ConvTranspose2d {
                    in_channels: size(0, "the input channels")?,
                    out_channels: size(1, "the output channels")?,
                    kernel: number(2, "the kernel size", 0)?,
                    stride: number(3, "the stride", 1)?,
                    padding: number(4, "the padding", 0)?,
                    output_padding: number(5, "the output padding", 0)?,
                },
            },
            "EmbeddingBag" => Layer::Static { kind: StaticLayer::EmbeddingBag { vocab: size(0, "the vocabulary size")?, dim: size(1, "the embedding size")? } },
            "ReLU" => Layer::Activation(UnaryOp::Relu),
            "GELU" => Layer::Activation(UnaryOp::Gelu),
            "Sigmoid" => Layer::Activation(UnaryOp::Sigmoid),
            "Tanh" => Layer::Activation(UnaryOp::Tanh),
            "SiLU" => Layer::Activation(UnaryOp::Silu),
            _ => unreachable!("listed above"),
        })
    }

    /// Checks the layer's sizes against what a model may use: every name must be a generic
    /// parameter of the model or a named constant (not a symbolic size of `forward`, which is
    /// unknown until run time), and literal sizes must be positive.
    pub fn validate(&self, scope: &Scope, span: Span) -> syn::Result<()> {
        let dims: Vec<&Dim> = match self {
            Layer::Linear { inputs, outputs, .. } => vec![inputs, outputs],
            Layer::Conv2d { in_channels, out_channels, kernel, .. } => {
                if *kernel == 0 {
                    return Err(syn::Error::new(span, "Conv2d needs a kernel size of at least 1"));
                }
                vec![in_channels, out_channels]
            }
            Layer::MaxPool2d { kernel, .. } | Layer::AvgPool2d { kernel, .. } if *kernel == 0 => {
                return Err(syn::Error::new(span, "pooling needs a kernel size of at least 1"))
            }
            Layer::Embedding { vocab, dim } => vec![vocab, dim],
            Layer::LayerNorm { dim } | Layer::Static { kind: StaticLayer::RmsNorm { dim } } => vec![dim],
            Layer::Static { kind: StaticLayer::BatchNorm { channels, .. } | StaticLayer::InstanceNorm { channels, .. } } => vec![channels],
            Layer::Static { kind: StaticLayer::GroupNorm { groups, channels } } => {
                if *groups == 0 {
                    return Err(syn::Error::new(span, "GroupNorm needs at least 1 group"));
                }
                if let Dim::Known(c) = channels {
                    if c % groups != 0 {
                        return Err(syn::Error::new(span, format!("GroupNorm<{groups}, {c}>: {groups} groups do not divide {c} channels")));
                    }
                }
                vec![channels]
            }
            Layer::Static { kind: StaticLayer::ConvTranspose2d { in_channels, out_channels, kernel, stride, output_padding, .. } } => {
                if *kernel == 0 || *stride == 0 {
                    return Err(syn::Error::new(span, "ConvTranspose2d needs a kernel size and a stride of at least 1"));
                }
                if output_padding >= stride {
                    return Err(syn::Error::new(span, format!("ConvTranspose2d: the output padding ({output_padding}) must be smaller than the stride ({stride})")));
                }
                vec![in_channels, out_channels]
            }
            Layer::Static { kind: StaticLayer::EmbeddingBag { vocab, dim } } => vec![vocab, dim],
            Layer::Array { elem, len, .. } => {
                if let ArrayLen::Sized(d) = len {
                    let ok = d.symbols().iter().all(|s| matches!(scope.kind(s), dims::SymKind::ConstParam | dims::SymKind::NamedConst));
                    let plain = matches!(d, Dim::Sym(_)) || d.symbols().iter().all(|s| scope.kind(s) == dims::SymKind::NamedConst);
                    if !ok || !plain {
                        return Err(syn::Error::new(
                            span,
                            format!("the length `{d}` of an array of layers must be a const parameter (`struct Deep<const L: usize>`) or a constant; Rust array lengths cannot be type-level sizes or arithmetic on parameters"),
                        ));
                    }
                    if !matches!(**elem, Layer::Nested { .. } | Layer::Static { .. }) {
                        return Err(syn::Error::new(span, format!("an array of generic length `{d}` holds #[model]s (a loop over it runs them in sequence); wrap `{}` in one", elem.describe())));
                    }
                }
                return elem.validate(scope, span);
            }
            _ => vec![],
        };
        for d in dims {
            if *d == Dim::Known(0) {
                return Err(syn::Error::new(span, format!("{} has a size of 0", self.describe())));
            }
            if !scope.is_static(d) {
                let bad: Vec<String> = d.symbols().into_iter().filter(|s| scope.kind(s) == dims::SymKind::Forward).collect();
                return Err(syn::Error::new(
                    span,
                    format!(
                        "`{}` is not a generic parameter of this model or a constant; declare it on the struct (`struct Net<{}: Dim>`) or define `const {}: usize = ...;`",
                        bad[0], bad[0], bad[0]
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The field's Rust type with sizes as types: `LinearOf<D, Prod<Const<4>, D>, true>`.
    /// Nested models need their signature to know whether each parameter is a type or a const.
    pub fn rust_type(&self, scope: &Scope, span: Span, nested: &dyn Fn(&syn::Path) -> Option<Interface>) -> syn::Result<TokenStream> {
        let nn = quote_spanned!(span=> ::tensorbrain::nn);
        let t = |d: &Dim| dims::dim_type(d, scope, span);
        Ok(match self {
            Layer::Linear { inputs, outputs, bias } => {
                let (i, o) = (t(inputs), t(outputs));
                quote_spanned!(span=> #nn::LinearOf<#i, #o, #bias>)
            }
            Layer::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
                let (i, o) = (t(in_channels), t(out_channels));
                quote_spanned!(span=> #nn::Conv2dOf<#i, #o, #kernel, #stride, #padding>)
            }
            Layer::MaxPool2d { kernel, stride } => quote_spanned!(span=> #nn::MaxPool2d<#kernel, #stride>),
            Layer::AvgPool2d { kernel, stride } => quote_spanned!(span=> #nn::AvgPool2d<#kernel, #stride>),
            Layer::Flatten => quote_spanned!(span=> #nn::Flatten),
            Layer::Dropout { percent } => quote_spanned!(span=> #nn::Dropout<#percent>),
            Layer::Embedding { vocab, dim } => {
                let (v, d) = (t(vocab), t(dim));
                quote_spanned!(span=> #nn::EmbeddingOf<#v, #d>)
            }
            Layer::LayerNorm { dim } => {
                let d = t(dim);
                quote_spanned!(span=> #nn::LayerNormOf<#d>)
            }
            Layer::Activation(u) => {
                let name = match u {
                    UnaryOp::Relu => quote!(ReLU),
                    UnaryOp::Gelu => quote!(GELU),
                    UnaryOp::Sigmoid => quote!(Sigmoid),
                    UnaryOp::Tanh => quote!(Tanh),
                    _ => quote!(SiLU),
                };
                quote_spanned!(span=> #nn::#name)
            }
            Layer::Static { kind: StaticLayer::BatchNorm { spatial, channels } } => {
                let c = t(channels);
                quote_spanned!(span=> #nn::BatchNormOf<#c, #spatial>)
            }
            Layer::Static { kind: StaticLayer::RmsNorm { dim } } => {
                let d = t(dim);
                quote_spanned!(span=> #nn::RMSNormOf<#d>)
            }
            Layer::Static { kind: StaticLayer::AdaptiveAvgPool2d { out_h, out_w } } => quote_spanned!(span=> #nn::AdaptiveAvgPool2d<#out_h, #out_w>),
            Layer::Static { kind: StaticLayer::GroupNorm { groups, channels } } => {
                let c = t(channels);
                quote_spanned!(span=> #nn::GroupNormOf<#groups, #c>)
            }
            Layer::Static { kind: StaticLayer::InstanceNorm { spatial, channels } } => {
                let c = t(channels);
                quote_spanned!(span=> #nn::InstanceNormOf<#c, #spatial>)
            }
            Layer::Static { kind: StaticLayer::ConvTranspose2d { in_channels, out_channels, kernel, stride, padding, output_padding } } => {
                let (i, o) = (t(in_channels), t(out_channels));
                quote_spanned!(span=> #nn::ConvTranspose2dOf<#i, #o, #kernel, #stride, #padding, #output_padding>)
            }
            Layer::Static { kind: StaticLayer::EmbeddingBag { vocab, dim } } => {
                let (v, d) = (t(vocab), t(dim));
                quote_spanned!(span=> #nn::EmbeddingBagOf<#v, #d>)
            }
            Layer::Static { kind: StaticLayer::SameShape { name } } => {
                let id = syn::Ident::new(name, span);
                quote_spanned!(span=> #nn::#id)
            }
            Layer::Array { elem, len, elem_ty } => {
                let e = elem.rust_type(scope, elem_ty.span(), nested)?;
                let n = match len {
                    ArrayLen::Known(n) => quote!(#n),
                    ArrayLen::Sized(Dim::Sym(s)) if scope.kind(s) == dims::SymKind::ConstParam => {
                        let id = syn::Ident::new(s, span);
                        quote!(#id)
                    }
                    ArrayLen::Sized(d) => {
                        let v = dims::dim_value(d, scope);
                        quote!({ #v })
                    }
                };
                quote_spanned!(span=> [#e; #n])
            }
            Layer::Dynamic { ty } => ty.to_token_stream(),
            Layer::Nested { path, args, span } => {
                if args.is_empty() {
                    return Ok(quote_spanned!(*span=> #path));
                }
                let Some(iface) = nested(path) else {
                    // Without generic arguments the type needs no rewriting; with them, the
                    // expansion waits for the signature (see `resolve`), so it is here.
                    return Err(syn::Error::new(*span, "internal: the signature of this nested model was not resolved"));
                };
                if iface.generics.len() != args.len() {
                    return Err(syn::Error::new(
                        *span,
                        format!("`{}` takes {} generic size argument{}, got {}", iface.name, iface.generics.len(), if iface.generics.len() == 1 { "" } else { "s" }, args.len()),
                    ));
                }
                let mut out = Vec::new();
                for ((pname, kind), a) in iface.generics.iter().zip(args) {
                    let Some(d) = dims::parse_dim_arg(a)? else {
                        out.push(a.to_token_stream());
                        continue;
                    };
                    if !scope.is_static(&d) {
                        return Err(syn::Error::new(a.span(), format!("`{d}` is not a generic parameter of this model or a constant, so it cannot size `{}`'s `{pname}`", iface.name)));
                    }
                    out.push(match kind {
                        ParamKind::Type => dims::dim_type(&d, scope, a.span()),
                        ParamKind::Const => {
                            // A const parameter takes a value computable without generics.
                            let uses_type_params = d.symbols().iter().any(|s| scope.kind(s) == dims::SymKind::TypeParam);
                            if uses_type_params || (!matches!(d, Dim::Known(_) | Dim::Sym(_)) && d.symbols().iter().any(|s| scope.kind(s) == dims::SymKind::ConstParam)) {
                                return Err(syn::Error::new(
                                    a.span(),
                                    format!(
                                        "`{}` takes `{pname}` as a const parameter, which cannot hold `{d}` on stable Rust; declare it as a size type (`struct {}<{pname}: Dim>`) to pass arithmetic",
                                        iface.name, iface.name
                                    ),
                                ));
                            }
                            let v = dims::dim_value(&d, scope);
                            quote!({ #v })
                        }
                    });
                }
                quote_spanned!(*span=> #path<#(#out),*>)
            }
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
            Layer::Static { kind: StaticLayer::BatchNorm { spatial, channels } } => format!("BatchNorm{spatial}d<{channels}>"),
            Layer::Static { kind: StaticLayer::RmsNorm { dim } } => format!("RMSNorm<{dim}>"),
            Layer::Static { kind: StaticLayer::AdaptiveAvgPool2d { out_h, out_w } } => format!("AdaptiveAvgPool2d<{out_h}, {out_w}>"),
            Layer::Static { kind: StaticLayer::GroupNorm { groups, channels } } => format!("GroupNorm<{groups}, {channels}>"),
            Layer::Static { kind: StaticLayer::InstanceNorm { spatial, channels } } => format!("InstanceNorm{spatial}d<{channels}>"),
            Layer::Static { kind: StaticLayer::ConvTranspose2d { in_channels, out_channels, kernel, stride, padding, output_padding } } => {
                format!("ConvTranspose2d<{in_channels}, {out_channels}, {kernel}, {stride}, {padding}, {output_padding}>")
            }
            Layer::Static { kind: StaticLayer::EmbeddingBag { vocab, dim } } => format!("EmbeddingBag<{vocab}, {dim}>"),
            Layer::Static { kind: StaticLayer::SameShape { name } } => name.to_string(),
            Layer::Nested { path, args, .. } => {
                let p = path.to_token_stream().to_string().replace(' ', "");
                if args.is_empty() {
                    p
                } else {
                    let a: Vec<String> = args.iter().map(|a| a.to_token_stream().to_string().replace(' ', "")).collect();
                    format!("{p}<{}>", a.join(", "))
                }
            }
            Layer::Dynamic { ty } => ty.to_token_stream().to_string().replace(' ', ""),
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

    /// Nested model paths this layer needs signatures of.
    pub fn nested_paths(&self, out: &mut Vec<syn::Path>) {
        match self {
            Layer::Nested { path, .. } => {
                if !out.iter().any(|p| same_path(p, path)) {
                    out.push(path.clone());
                }
            }
            Layer::Array { elem, .. } => elem.nested_paths(out),
            _ => {}
        }
    }
}

pub fn contains_path(list: &[syn::Path], p: &syn::Path) -> bool {
    list.iter().any(|q| same_path(q, p))
}

pub fn same_path(a: &syn::Path, b: &syn::Path) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

fn read_arg(a: &GenericArgument) -> syn::Result<Arg> {
    if let GenericArgument::Const(Expr::Lit(l)) = a {
        if let Lit::Bool(b) = &l.lit {
            return Ok(Arg::Bool(b.value));
        }
    }
    match dims::parse_dim_arg(a)? {
        Some(d) => Ok(Arg::Size(d)),
        None => Err(syn::Error::new_spanned(a, "expected a size: a number (`784`), a size parameter (`D`), a constant (`D_MODEL`) or arithmetic (`{4 * D}`)")),
    }
}

fn arity(name: &str) -> (usize, usize) {
    match name {
        "Linear" => (2, 3),
        "Conv2d" => (3, 5),
        "MaxPool2d" | "AvgPool2d" => (1, 2),
        "Dropout" | "LayerNorm" | "BatchNorm1d" | "BatchNorm2d" | "RMSNorm" | "InstanceNorm1d" | "InstanceNorm2d" => (1, 1),
        "Embedding" | "AdaptiveAvgPool2d" | "GroupNorm" | "EmbeddingBag" => (2, 2),
        "ConvTranspose2d" => (3, 6),
        _ => (0, 0),
    }
}

fn arg_count(min: usize, max: usize) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min} to {max}")
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
        "GroupNorm" => "`GroupNorm<GROUPS, CHANNELS>`",
        "InstanceNorm1d" => "`InstanceNorm1d<CHANNELS>`",
        "InstanceNorm2d" => "`InstanceNorm2d<CHANNELS>`",
        "ConvTranspose2d" => "`ConvTranspose2d<C_IN, C_OUT, KERNEL>` with optional `STRIDE, PADDING, OUTPUT_PADDING` after",
        "EmbeddingBag" => "`EmbeddingBag<VOCAB, DIM>`",
        "ReLU" | "GELU" | "Sigmoid" | "Tanh" | "SiLU" => "activations take no arguments",
        _ => "",
    }
}
