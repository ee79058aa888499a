//! `#[model]` on a struct: derives `Module`, writes layer sizes as types, and records the
//! struct for the impl macro.
//!
//! A generic model (`struct Ffn<D: Dim>`, `struct Mlp<const H: usize>`) is a family of models,
//! one per size: every type parameter gets a `Size` bound (its value is known per
//! instantiation), and each layer's sizes are written as types (`Linear<D, {4 * D}>` becomes
//! `LinearOf<D, Prod<Const<4>, D>>`), because const generics cannot do arithmetic on stable Rust.
//! When a field instantiates another generic model, whether each of its parameters is a type or
//! a const comes from that model's signature, so the expansion first gathers those (see
//! [`crate::interface`]).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Fields, GenericParam, ItemStruct};

use crate::dims::Scope;
use crate::interface::{self, Gathered};
use crate::layers::Layer;

/// The scope of a model's generic parameters; rejects what a model cannot be generic over.
pub fn scope_of(generics: &syn::Generics) -> syn::Result<Scope> {
    let mut scope = Scope::default();
    for p in &generics.params {
        match p {
            GenericParam::Type(t) => scope.type_params.push(t.ident.to_string()),
            GenericParam::Const(c) => {
                if c.ty.to_token_stream().to_string() != "usize" {
                    return Err(syn::Error::new_spanned(&c.ty, "model size parameters are `usize`: `const H: usize`"));
                }
                scope.const_params.push(c.ident.to_string())
            }
            GenericParam::Lifetime(l) => return Err(syn::Error::new_spanned(l, "#[model] structs hold their layers and cannot borrow; remove the lifetime")),
        }
    }
    Ok(scope)
}

/// The generics with `Size` added to every type parameter.
pub fn sized_generics(generics: &syn::Generics) -> syn::Generics {
    let mut g = generics.clone();
    for p in &mut g.params {
        if let GenericParam::Type(t) = p {
            t.bounds.push(syn::parse_quote!(::tensorbrain::shape::Size));
            t.default = None;
        }
    }
    g
}

pub fn expand(item: ItemStruct) -> syn::Result<TokenStream> {
    expand_with(item, Gathered::default())
}

/// `__model_struct! { (@sig {..} @for [..])* { struct .. } }`: the continuation.
pub fn continuation(tokens: TokenStream) -> syn::Result<TokenStream> {
    struct Input(Gathered, ItemStruct);
    impl Parse for Input {
        fn parse(input: ParseStream) -> syn::Result<Self> {
            let g = interface::parse_gathered(input)?;
            let content;
            syn::braced!(content in input);
            Ok(Input(g, content.parse()?))
        }
    }
    let Input(g, item) = syn::parse2(tokens)?;
    expand_with(item, g)
}

fn expand_with(mut item: ItemStruct, gathered: Gathered) -> syn::Result<TokenStream> {
    let scope = scope_of(&item.generics)?;
    let Fields::Named(named) = &item.fields else {
        return Err(syn::Error::new_spanned(&item.fields, "#[model] needs a struct with named fields, one per layer: `struct Net { fc1: Linear<784, 256> }`"));
    };
    let name = item.ident.clone();
    let original = item.clone();
    let mut fields = Vec::new();
    for f in &named.named {
        let ident = f.ident.clone().expect("named");
        if ident.to_string().starts_with("__tb") {
            return Err(syn::Error::new(ident.span(), "field names starting with `__tb` are reserved for #[model]"));
        }
        let layer = Layer::from_type(&f.ty)?;
        if let Layer::Nested { path, .. } = &layer {
            if path.get_ident().is_some_and(|i| scope.type_params.contains(&i.to_string())) {
                return Err(syn::Error::new_spanned(
                    &f.ty,
                    format!("`{}` is a size parameter of this model, not a layer; size a layer with it: `Linear<{}, 10>`", path.to_token_stream(), path.to_token_stream()),
                ));
            }
        }
        layer.validate(&scope, f.ty.span())?;
        fields.push((ident, f.ty.clone(), layer));
    }

    // Nested generic models need their signatures before their sizes can be written as types.
    let mut needed = Vec::new();
    for (_, _, layer) in &fields {
        let mut paths = Vec::new();
        layer.nested_paths(&mut paths);
        for p in paths {
            let generic = matches!(layer, Layer::Nested { args, .. } if !args.is_empty())
                || matches!(layer, Layer::Array { elem, .. } if matches!(&**elem, Layer::Nested { args, .. } if !args.is_empty()));
            if generic && gathered.get(&p).is_none() {
                needed.push(p);
            }
        }
    }
    if let Some(next) = needed.first() {
        let have = gathered_tokens(&gathered);
        let body = original.to_token_stream();
        return Ok(interface::request(next, "__model_struct", &have, quote!({ #body })));
    }

    // Layer sizes as types.
    let lookup = |p: &syn::Path| gathered.get(p).cloned();
    if let Fields::Named(named) = &mut item.fields {
        for (f, (_, ty, layer)) in named.named.iter_mut().zip(&fields) {
            let rewritten = layer.rust_type(&scope, ty.span(), &lookup)?;
            f.ty = syn::parse2(rewritten)?;
        }
        named.named.push(syn::parse_quote! {
            #[doc(hidden)]
            pub __tb_training: bool
        });
        // Size parameters may be used only by `forward` (a head count): mark them used.
        let tys: Vec<syn::Ident> = scope.type_params.iter().map(|t| format_ident!("{}", t)).collect();
        named.named.push(syn::parse_quote! {
            #[doc(hidden)]
            pub __tb_sizes: ::std::marker::PhantomData<fn() -> (#(#tys,)*)>
        });
    }
    item.generics = sized_generics(&item.generics);
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();

    // One `gen` for the parameter and its uses (a span from the field would make it another
    // variable under macro hygiene when this expansion runs inside a signature macro).
    let gen = format_ident!("gen");
    let inits = fields.iter().map(|(f, ty, _)| {
        let init = quote_spanned!(ty.span()=> ::tensorbrain::nn::Module::init_with(#gen));
        quote!(#f: #init)
    });
    let visit = |method: &str, mutability: TokenStream| {
        let m = format_ident!("{}", method);
        let calls = fields.iter().map(|(f, _, _)| {
            let key = f.to_string();
            quote!(::tensorbrain::nn::Module::#m(& #mutability self.#f, &::tensorbrain::nn::join(prefix, #key), f);)
        });
        quote!(#(#calls)*)
    };
    let visit_params = visit("visit_params", quote!());
    let visit_params_mut = visit("visit_params_mut", quote!(mut));
    let visit_buffers = visit("visit_buffers", quote!());
    let visit_buffers_mut = visit("visit_buffers_mut", quote!(mut));
    let field_names: Vec<_> = fields.iter().map(|(f, _, _)| f.clone()).collect();
    let field_keys: Vec<String> = fields.iter().map(|(f, _, _)| f.to_string()).collect();
    let kind = name.to_string();

    // The impl macro learns the struct through this macro (it cannot see the struct).
    let bridge = format_ident!("__tb_model_{}", name);
    let original_tokens = original.to_token_stream();

    Ok(quote! {
        #item

        impl #impl_generics ::tensorbrain::nn::Module for #name #ty_generics #where_clause {
            fn init_with(#gen: &mut ::tensorbrain::Generator) -> Self {
                #name { #(#inits,)* __tb_training: true, __tb_sizes: ::std::marker::PhantomData }
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

        impl #impl_generics ::std::default::Default for #name #ty_generics #where_clause {
            /// Initialised from this thread's default generator (see `manual_seed`).
            fn default() -> Self {
                ::tensorbrain::ops::with_default_generator(|gen| <Self as ::tensorbrain::nn::Module>::init_with(gen))
            }
        }

        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #bridge {
            ($($body:tt)*) => {
                ::tensorbrain::__model_impl! { @struct { #original_tokens } $($body)* }
            };
        }
    })
}

/// Re-emits gathered signatures for the next step of a continuation.
pub fn gathered_tokens(g: &Gathered) -> TokenStream {
    let parts = g.sigs.iter().map(|(k, iface)| {
        let path: syn::Path = syn::parse_str(k).expect("a gathered key is a path");
        let sig = iface.to_tokens();
        quote!(@sig #sig @for [#path])
    });
    quote!(#(#parts)*)
}
