//! Emits `impl ModelSignature` for a `#[model]`: the typed `forward` signature (input names,
//! dtypes, dims; the output's dtype and dims) as runtime data, for serving binaries and other
//! tools that see the model from outside.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, Type};

use crate::tb::{DimSpec, TbSpec};

pub fn emit(self_ty: &Type, model_name: &str, inputs: &[(Ident, TbSpec)], output: &TbSpec) -> TokenStream {
    let inputs = inputs.iter().map(|(name, spec)| tensor_spec(&name.to_string(), spec));
    let output = tensor_spec("output", output);
    quote! {
        impl ::tensorbrain::nn::ModelSignature for #self_ty {
            fn signature() -> ::tensorbrain::nn::Signature {
                ::tensorbrain::nn::Signature { model: #model_name, inputs: ::std::vec![#(#inputs),*], output: #output }
            }
        }
    }
}

fn tensor_spec(name: &str, spec: &TbSpec) -> TokenStream {
    let dims = spec.dims.iter().map(|d| match d {
        DimSpec::Known(v, _) => quote!(::tensorbrain::nn::DimCheck::Known(#v)),
        DimSpec::Sym(s) => {
            let s = s.to_string();
            quote!(::tensorbrain::nn::DimCheck::Sym(#s))
        }
        DimSpec::Any(_) => quote!(::tensorbrain::nn::DimCheck::Any),
    });
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
