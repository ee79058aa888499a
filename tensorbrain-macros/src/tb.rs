//! `tb![B, 784]`, `tb![B, T, {4 * D}; f16]`: typed tensor types from plain numbers.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Ident, Token};
use tensorbrain_ir::{Dim, Shape};

use crate::dims::{self, Scope, SymKind};

/// One dim as written: a size (number, name or expression), or `_` (known only at run time).
#[derive(Clone, Debug)]
pub struct DimSpec {
    /// `None` for `_`.
    pub dim: Option<Dim>,
    pub span: Span,
}

/// The contents of `tb![...]`.
#[derive(Clone, Debug)]
pub struct TbSpec {
    pub dims: Vec<DimSpec>,
    pub dtype: Ident,
}

pub const DTYPES: &[&str] = &["f32", "f64", "f16", "bf16", "i64", "i32", "u8"];

impl Parse for TbSpec {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let span = input.span();
        let mut dims = Vec::new();
        while !input.is_empty() && !input.peek(Token![;]) {
            if input.peek(Token![_]) {
                let u: Token![_] = input.parse()?;
                dims.push(DimSpec { dim: None, span: u.span });
            } else {
                let e: syn::Expr = input.parse().map_err(|_| input.error("expected a dimension: a number (`784`), a size name (`B`), arithmetic (`{4 * D}`) or `_`"))?;
                let dim = dims::parse_dim(&e)?;
                if let Dim::Sym(s) = &dim {
                    if s == "_" {
                        return Err(syn::Error::new_spanned(&e, "bad dimension"));
                    }
                }
                dims.push(DimSpec { dim: Some(dim), span: e.span() });
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            } else if !input.is_empty() && !input.peek(Token![;]) {
                return Err(input.error("expected `,` between dimensions or `;` before the dtype"));
            }
        }
        if dims.len() > 6 {
            return Err(syn::Error::new(span, format!("tensors have at most 6 dimensions, this shape has {}", dims.len())));
        }
        let dtype = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            let d: Ident = input.parse()?;
            if !DTYPES.contains(&d.to_string().as_str()) {
                return Err(syn::Error::new(d.span(), format!("unknown dtype `{d}`; expected one of {}", DTYPES.join(", "))));
            }
            d
        } else {
            Ident::new("f32", span)
        };
        Ok(TbSpec { dims, dtype })
    }
}

impl TbSpec {
    /// The IR shape (`_` dims become fresh symbols `_0`, `_1`, ... by position).
    pub fn shape(&self) -> Shape {
        Shape(self.dims.iter().enumerate().map(|(i, d)| d.dim.clone().unwrap_or_else(|| Dim::Sym(format!("_{i}")))).collect())
    }

    /// Symbolic sizes of `forward` used, in order of first appearance.
    pub fn symbols(&self, scope: &Scope) -> Vec<Ident> {
        let mut out: Vec<Ident> = Vec::new();
        for d in &self.dims {
            for s in d.dim.as_ref().map(Dim::symbols).unwrap_or_default() {
                if scope.kind(&s) == SymKind::Forward && !out.iter().any(|o| o == &s) {
                    out.push(Ident::new(&s, d.span));
                }
            }
        }
        out
    }

    /// The Rust type: `::tensorbrain::shape::Tensor<(B, Const<784>), f32>`.
    pub fn to_type(&self, scope: &Scope) -> TokenStream {
        let dims = self.dims.iter().map(|d| match &d.dim {
            Some(dim) => dims::dim_type(dim, scope, d.span),
            None => quote_spanned!(d.span=> ::tensorbrain::shape::Dyn),
        });
        let elem = element_type(&self.dtype);
        quote!(::tensorbrain::shape::Tensor<(#(#dims,)*), #elem>)
    }

    pub fn dtype_name(&self) -> String {
        self.dtype.to_string()
    }
}

pub fn element_type(dtype: &Ident) -> TokenStream {
    match dtype.to_string().as_str() {
        "f16" => quote!(::tensorbrain::f16),
        "bf16" => quote!(::tensorbrain::bf16),
        _ => quote!(#dtype),
    }
}

/// Outside a model there is no scope: names follow the conventions of [`dims::Scope::kind`].
pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let spec: TbSpec = syn::parse2(input)?;
    Ok(spec.to_type(&Scope::default()))
}
