//! Procedural macros for TensorBrain.
//!
//! - `tb![B, 784]` writes a typed tensor type with plain numbers.
//! - `#[model]` on a struct derives `Module` (parameters, init, train/eval, save/load,
//!   summary); on the struct's impl it parses `forward` into the IR, checks every shape with
//!   spans pointing at the user's code, and emits the inference path, the training path with
//!   its generated backward, and `graph()`; on a free function it makes a helper that models
//!   inline into their graphs.
//!
//! Each expansion is parse -> validate (with `syn::Error` for every user mistake) -> expand.
//! Models learn the signatures of the models and helpers they use through macros those
//! define ([`interface`]).

mod dims;
mod emit;
mod fusion_plan;
mod interface;
mod layers;
mod lower;
mod model_fn;
mod model_impl;
mod model_struct;
mod signature;
mod tb;

use proc_macro::TokenStream;

/// A typed tensor type: `tb![B, 784]` is `Tensor<(B, Const<784>), f32>`; `tb![B, 3, 32, 32; f16]`
/// names the element type; `_` is a size known only at run time; `{4 * D}` is arithmetic on
/// a model's size parameters.
#[proc_macro]
pub fn tb(input: TokenStream) -> TokenStream {
    tb::expand(input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Marks a model: on a struct of layers, derives `Module`; on its impl, compiles `forward`; on
/// a function, makes a helper that `forward` can call.
#[proc_macro_attribute]
pub fn model(args: TokenStream, input: TokenStream) -> TokenStream {
    let args: proc_macro2::TokenStream = args.into();
    let result = if !args.is_empty() {
        Err(syn::Error::new_spanned(args, "#[model] takes no arguments"))
    } else {
        match syn::parse::<syn::Item>(input) {
            Ok(syn::Item::Struct(s)) => model_struct::expand(s),
            Ok(syn::Item::Impl(i)) => model_impl::forward_to_struct_macro(i),
            Ok(syn::Item::Fn(f)) => model_fn::expand(f),
            Ok(other) => Err(syn::Error::new_spanned(
                other,
                "#[model] goes on a struct whose fields are layers, on that struct's impl with `forward`, or on a helper function",
            )),
            Err(e) => Err(e),
        }
    };
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Implementation detail of `#[model]`: receives a struct's fields and its impl together
/// (and, step by step, the signatures of the models and helpers it uses).
#[doc(hidden)]
#[proc_macro]
pub fn __model_impl(input: TokenStream) -> TokenStream {
    model_impl::expand(input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Implementation detail of `#[model]`: a struct whose fields instantiate generic models,
/// once their signatures are in.
#[doc(hidden)]
#[proc_macro]
pub fn __model_struct(input: TokenStream) -> TokenStream {
    model_struct::continuation(input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Implementation detail of `#[model]`: a helper function whose body calls other helpers,
/// once their signatures are in.
#[doc(hidden)]
#[proc_macro]
pub fn __model_fn(input: TokenStream) -> TokenStream {
    model_fn::continuation(input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
