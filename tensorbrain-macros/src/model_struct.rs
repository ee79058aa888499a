//! `#[model]` on a struct: derives `Module` and records the fields for the impl macro.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Fields, ItemStruct};

pub fn expand(mut item: ItemStruct) -> syn::Result<TokenStream> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&item.generics, "#[model] structs cannot have generic parameters yet; give layer sizes as numbers"));
    }
    let Fields::Named(named) = &item.fields else {
        return Err(syn::Error::new_spanned(&item.fields, "#[model] needs a struct with named fields, one per layer: `struct Net { fc1: Linear<784, 256> }`"));
    };
    let name = &item.ident;
    let fields: Vec<_> = named.named.iter().map(|f| (f.ident.clone().expect("named"), f.ty.clone())).collect();
    for (ident, _) in &fields {
        if ident.to_string().starts_with("__tb") {
            return Err(syn::Error::new(ident.span(), "field names starting with `__tb` are reserved for #[model]"));
        }
    }

    let inits = fields.iter().map(|(f, ty)| quote_spanned!(ty.span()=> #f: <#ty as ::tensorbrain::nn::Module>::init_with(gen)));
    let visit = |method: &str, mutability: TokenStream| {
        let m = format_ident!("{}", method);
        let calls = fields.iter().map(|(f, _)| {
            let key = f.to_string();
            quote!(::tensorbrain::nn::Module::#m(& #mutability self.#f, &::tensorbrain::nn::join(prefix, #key), f);)
        });
        quote!(#(#calls)*)
    };
    let visit_params = visit("visit_params", quote!());
    let visit_params_mut = visit("visit_params_mut", quote!(mut));
    let visit_buffers = visit("visit_buffers", quote!());
    let visit_buffers_mut = visit("visit_buffers_mut", quote!(mut));
    let field_names: Vec<_> = fields.iter().map(|(f, _)| f.clone()).collect();
    let field_keys: Vec<String> = fields.iter().map(|(f, _)| f.to_string()).collect();
    let kind = name.to_string();

    // The impl macro learns the fields through this macro (it cannot see the struct).
    let bridge = format_ident!("__tb_model_{}", name);
    let field_tokens = fields.iter().map(|(f, ty)| quote!(#f: #ty,));

    if let Fields::Named(named) = &mut item.fields {
        named.named.push(syn::parse_quote! {
            #[doc(hidden)]
            pub __tb_training: bool
        });
    }

    Ok(quote! {
        #item

        impl ::tensorbrain::nn::Module for #name {
            fn init_with(gen: &mut ::tensorbrain::Generator) -> Self {
                #name { #(#inits,)* __tb_training: true }
            }
            fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &::tensorbrain::Tensor)) {
                #visit_params
            }
            fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut ::tensorbrain::Tensor)) {
                #visit_params_mut
            }
            fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &::tensorbrain::Tensor)) {
                #visit_buffers
            }
            fn visit_buffers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut ::tensorbrain::Tensor)) {
                #visit_buffers_mut
            }
            fn collect_params(&self, out: &mut ::std::vec::Vec<::tensorbrain::Tensor>) {
                #(::tensorbrain::nn::Module::collect_params(&self.#field_names, out);)*
            }
            fn param_count(&self) -> usize {
                0 #(+ ::tensorbrain::nn::Module::param_count(&self.#field_names))*
            }
            fn set_training(&mut self, training: bool) {
                self.__tb_training = training;
                #(::tensorbrain::nn::Module::set_training(&mut self.#field_names, training);)*
            }
            fn summary_rows(&self, prefix: &str, rows: &mut ::std::vec::Vec<::tensorbrain::nn::SummaryRow>) {
                #(::tensorbrain::nn::Module::summary_rows(&self.#field_names, &::tensorbrain::nn::join(prefix, #field_keys), rows);)*
            }
            fn kind(&self) -> ::std::string::String {
                #kind.to_string()
            }
        }

        impl ::std::default::Default for #name {
            /// Initialised from this thread's default generator (see `manual_seed`).
            fn default() -> Self {
                ::tensorbrain::ops::with_default_generator(|gen| <Self as ::tensorbrain::nn::Module>::init_with(gen))
            }
        }

        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #bridge {
            ($($body:tt)*) => {
                ::tensorbrain::__model_impl! { struct #name { #(#field_tokens)* } $($body)* }
            };
        }
    })
}
