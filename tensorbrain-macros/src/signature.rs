//! Emits `impl ModelSignature` for a `#[model]`: the typed `forward` signature (input names,
//! dtypes, dims; the output's dtype and dims) as runtime data, for serving binaries and other
//! tools that see the model from outside.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;
use tensorbrain_ir::Dim;

use crate::dims::{self, Scope, SymKind};
use crate::tb::TbSpec;

/// How each dim of `spec` is checked at run time: a number (literal, named constant or generic
/// size, evaluated by the compiler), a forward symbol shared across inputs, or anything (`_`, or
/// an expression over forward symbols such as `{T + 1}`).
pub fn dim_checks(spec: &TbSpec, scope: &Scope) -> Vec<TokenStream> {
    spec.dims
        .iter()
        .map(|d| match &d.dim {
            Some(Dim::Known(v)) => quote!(::tensorbrain::nn::DimCheck::Known(#v)),
            Some(Dim::Sym(s)) if scope.kind(s) == SymKind::Forward => quote!(::tensorbrain::nn::DimCheck::Sym(#s)),
            Some(d) if scope.is_static(d) => {
                let v = dims::dim_value(d, scope);
                quote!(::tensorbrain::nn::DimCheck::Known(#v))
            }
            _ => quote!(::tensorbrain::nn::DimCheck::Any),
        })
        .collect()
}

/// `impl_head` is `impl<...> Model<...> where ...` as the rest of the expansion writes it.
pub fn emit(impl_head: TokenStream, model_name: &str, inputs: &[(Ident, TbSpec)], output: &TbSpec, scope: &Scope) -> TokenStream {
    let inputs = inputs.iter().map(|(name, spec)| tensor_spec(&name.to_string(), spec, scope));
    let output = tensor_spec("output", output, scope);
    quote! {
        #impl_head {
            fn signature() -> ::tensorbrain::nn::Signature {
                ::tensorbrain::nn::Signature { model: #model_name, inputs: ::std::vec![#(#inputs),*], output: #output }
            }
        }
    }
}

fn tensor_spec(name: &str, spec: &TbSpec, scope: &Scope) -> TokenStream {
    let dims = dim_checks(spec, scope);
    // `f32` -> `DType::F32`, `bf16` -> `DType::BF16`: the variants are the names in capitals.
    let dtype = format_ident!("{}", spec.dtype_name().to_uppercase());
    quote! {
        ::tensorbrain::nn::TensorSpec {
            name: #name,
            dtype: ::tensorbrain::DType::#dtype,
            dims: ::std::vec![#(#dims),*],
        }
    }
}
