//! `tb![B, 784]` and `tb![B, 3, 32, 32; f16]`: typed tensor types from plain numbers.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitInt, Token};
use tensorbrain_ir::{Dim, Shape};

/// One dim as written.
#[derive(Clone, Debug)]
pub enum DimSpec {
    /// `784`
    Known(usize, Span),
    /// `B`: a symbolic size, a generic parameter of `forward`.
    Sym(Ident),
    /// `_`: a size known only at run time.
    Any(Span),
}

/// The contents of `tb![...]`.
#[derive(Clone, Debug)]
pub struct TbSpec {
    pub dims: Vec<DimSpec>,
    pub dtype: Ident,
}

const DTYPES: &[&str] = &["f32", "f64", "f16", "bf16", "i64", "i32", "u8"];

impl Parse for TbSpec {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let span = input.span();
        let mut dims = Vec::new();
        while !input.is_empty() && !input.peek(Token![;]) {
            if input.peek(LitInt) {
                let lit: LitInt = input.parse()?;
                dims.push(DimSpec::Known(lit.base10_parse()?, lit.span()));
            } else if input.peek(Token![_]) {
                let u: Token![_] = input.parse()?;
                dims.push(DimSpec::Any(u.span));
            } else if input.peek(Ident) {
                dims.push(DimSpec::Sym(input.parse()?));
            } else {
                return Err(input.error("expected a dimension: a number (`784`), a size name (`B`) or `_`"));
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
    /// The IR shape (`_` dims become fresh symbols).
    pub fn shape(&self) -> Shape {
        Shape(
            self.dims
                .iter()
                .enumerate()
                .map(|(i, d)| match d {
                    DimSpec::Known(n, _) => Dim::Known(*n),
                    DimSpec::Sym(s) => Dim::Sym(s.to_string()),
                    DimSpec::Any(_) => Dim::Sym(format!("_{i}")),
                })
                .collect(),
        )
    }

    /// Symbol names used, in order of first appearance.
    pub fn symbols(&self) -> Vec<Ident> {
        let mut out: Vec<Ident> = Vec::new();
        for d in &self.dims {
            if let DimSpec::Sym(s) = d {
                if !out.iter().any(|o| o == s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// The Rust type: `::tensorbrain::shape::Tensor<(B, Const<784>), f32>`.
    pub fn to_type(&self) -> TokenStream {
        let dims = self.dims.iter().map(|d| match d {
            DimSpec::Known(n, span) => quote_spanned!(*span=> ::tensorbrain::shape::Const<#n>),
            DimSpec::Sym(s) => quote!(#s),
            DimSpec::Any(span) => quote_spanned!(*span=> ::tensorbrain::shape::Dyn),
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

pub fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let spec: TbSpec = syn::parse2(input)?;
    Ok(spec.to_type())
}
