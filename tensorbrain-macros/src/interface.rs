//! What one model (or helper function) tells the models that use it, across macro expansions.
//!
//! A proc macro sees one item at a time, so `#[model] impl Block` cannot tell `#[model] impl
//! Net` what `Block::forward` takes and returns through Rust's type system in time for Net's
//! expansion to check shapes. Instead each model's expansion also defines a `macro_rules!`
//! macro carrying its signature, and imports it under the model's own name in the macro
//! namespace (`use __tb_sig_Block as Block;`). Types and macros live in different namespaces,
//! so wherever the type `Block` (or `blocks::Block`) can be named, so can the macro
//! `Block!` (or `blocks::Block!`). A model that nests `Block` expands in steps (continuation
//! passing): it invokes `Block! { @tb_sig __model_impl <its own input> }`, which calls the
//! continuation back with Block's signature prepended; once every nested signature is in, the
//! model expands with the nested shapes known. Rust's macro expansion resolves the macros in
//! whatever order the items appear in.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::{braced, bracketed, Ident, Token};
use tensorbrain_ir::Dim;

use crate::dims;

/// Whether a model's generic parameter is a type (`D: Dim`) or a const (`const H: usize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Type,
    Const,
}

/// One tensor in a signature: its dims (`None` for `_`) and dtype.
#[derive(Clone, Debug)]
pub struct TensorSig {
    pub name: String,
    pub dims: Vec<Option<Dim>>,
    pub dtype: String,
}

/// A model's signature as other models see it.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    /// The model's generic size parameters, in order.
    pub generics: Vec<(String, ParamKind)>,
    /// The symbolic sizes of its `forward` (bound from the arguments at each call).
    pub symbols: Vec<String>,
    pub inputs: Vec<TensorSig>,
    pub output: TensorSig,
    /// Divisibilities its sizes must satisfy (`D % H == 0` for a head split), in terms of its
    /// generic parameters.
    pub requires: Vec<(Dim, Dim)>,
    /// For a helper function: its whole item, inlined at each call.
    pub item: Option<TokenStream>,
}

fn dims_tokens(dims: &[Option<Dim>]) -> TokenStream {
    let ds = dims.iter().map(|d| match d {
        Some(d) => syn::LitStr::new(&dims::dim_source(d), Span::call_site()).to_token_stream(),
        None => quote!(_),
    });
    quote!([#(#ds),*])
}

fn tensor_tokens(t: &TensorSig) -> TokenStream {
    let name = format_ident!("{}", t.name);
    let dims = dims_tokens(&t.dims);
    let dtype = format_ident!("{}", t.dtype);
    quote!(#name #dims #dtype)
}

impl Interface {
    /// The signature as tokens that [`Interface::parse`] reads back.
    pub fn to_tokens(&self) -> TokenStream {
        let name = format_ident!("{}", self.name);
        let generics = self.generics.iter().map(|(n, k)| {
            let n = format_ident!("{}", n);
            match k {
                ParamKind::Type => quote!(#n: type),
                ParamKind::Const => quote!(#n: const),
            }
        });
        let symbols = self.symbols.iter().map(|s| format_ident!("{}", s));
        let inputs = self.inputs.iter().map(tensor_tokens);
        let output = tensor_tokens(&self.output);
        let requires = self.requires.iter().map(|(a, b)| {
            let (a, b) = (dims::dim_source(a), dims::dim_source(b));
            quote!((#a, #b))
        });
        let item = match &self.item {
            Some(t) => quote!({ #t }),
            None => quote!({}),
        };
        quote!({ #name [#(#generics),*] [#(#symbols),*] [#(#inputs),*] #output [#(#requires),*] #item })
    }

    /// Replaces the generic parameters by the sizes a field gives them; checks the
    /// divisibilities that then become known.
    pub fn instantiate(&self, args: &[Dim]) -> Result<Interface, String> {
        let map = |s: &str| self.generics.iter().position(|(g, _)| g == s).map(|i| args[i].clone());
        let sub = |d: &Dim| d.substitute(&map);
        let sub_t = |t: &TensorSig| -> Result<TensorSig, String> {
            Ok(TensorSig { name: t.name.clone(), dims: t.dims.iter().map(|d| d.as_ref().map(sub).transpose()).collect::<Result<_, _>>()?, dtype: t.dtype.clone() })
        };
        let mut requires = Vec::new();
        for (num, den) in &self.requires {
            let (n, d) = (sub(num)?, sub(den)?);
            if let (Dim::Known(a), Dim::Known(b)) = (&n, &d) {
                if *b == 0 || a % b != 0 {
                    return Err(format!("its size {num}/{den} needs {num} divisible by {den}, but {a} is not divisible by {b}"));
                }
            } else {
                requires.push((n, d));
            }
        }
        Ok(Interface {
            name: self.name.clone(),
            generics: vec![],
            symbols: self.symbols.clone(),
            inputs: self.inputs.iter().map(sub_t).collect::<Result<_, _>>()?,
            output: sub_t(&self.output)?,
            requires,
            item: self.item.clone(),
        })
    }

    /// The `macro_rules!` carrying this signature, imported under the model's name. A `pub`
    /// model's is exported from the crate (at its root under a unique name, and re-exported
    /// beside the type), so models in other crates can nest it; others stay in the crate.
    pub fn exporter(&self, vis_name: &Ident, public: bool) -> TokenStream {
        let sig = self.to_tokens();
        if !public {
            let mac = format_ident!("__tb_sig_{}", vis_name);
            return quote! {
                #[doc(hidden)]
                #[allow(unused_macros)]
                macro_rules! #mac {
                    (@tb_sig $cont:ident $($rest:tt)*) => { ::tensorbrain::$cont! { @sig #sig $($rest)* } };
                }
                #[doc(hidden)]
                #[allow(unused_imports)]
                pub(crate) use #mac as #vis_name;
            };
        }
        // `#[macro_export]` names share the crate root: make this one unique to its definition.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let at = vis_name.span().unwrap();
        (vis_name.to_string(), at.file(), at.line(), at.column()).hash(&mut h);
        let mac = format_ident!("__tb_sig_{}_{:016x}", vis_name, h.finish());
        quote! {
            #[doc(hidden)]
            #[macro_export]
            macro_rules! #mac {
                (@tb_sig $cont:ident $($rest:tt)*) => { ::tensorbrain::$cont! { @sig #sig $($rest)* } };
            }
            #[doc(hidden)]
            #[allow(unused_imports, macro_expanded_macro_exports_accessed_by_absolute_paths)]
            pub use #mac as #vis_name;
        }
    }
}

fn parse_tensor(input: ParseStream) -> syn::Result<TensorSig> {
    let name: Ident = input.parse()?;
    let content;
    bracketed!(content in input);
    let mut dims = Vec::new();
    while !content.is_empty() {
        if content.peek(Token![_]) {
            content.parse::<Token![_]>()?;
            dims.push(None);
        } else {
            let s: syn::LitStr = content.parse()?;
            let e: syn::Expr = s.parse()?;
            dims.push(Some(dims::parse_dim_source(&e)?));
        }
        if content.peek(Token![,]) {
            content.parse::<Token![,]>()?;
        }
    }
    let dtype: Ident = input.parse()?;
    Ok(TensorSig { name: name.to_string(), dims, dtype: dtype.to_string() })
}

impl Parse for Interface {
    fn parse(outer: ParseStream) -> syn::Result<Self> {
        let input;
        braced!(input in outer);
        let name: Ident = input.parse()?;
        let content;
        bracketed!(content in input);
        let mut generics = Vec::new();
        while !content.is_empty() {
            let n: Ident = content.parse()?;
            content.parse::<Token![:]>()?;
            let kind = if content.peek(Token![type]) {
                content.parse::<Token![type]>()?;
                ParamKind::Type
            } else {
                content.parse::<Token![const]>()?;
                ParamKind::Const
            };
            generics.push((n.to_string(), kind));
            if content.peek(Token![,]) {
                content.parse::<Token![,]>()?;
            }
        }
        let content;
        bracketed!(content in input);
        let symbols: Vec<String> = content.parse_terminated(Ident::parse, Token![,])?.into_iter().map(|i| i.to_string()).collect();
        let content;
        bracketed!(content in input);
        let mut inputs = Vec::new();
        while !content.is_empty() {
            inputs.push(parse_tensor(&content)?);
            if content.peek(Token![,]) {
                content.parse::<Token![,]>()?;
            }
        }
        let output = parse_tensor(&input)?;
        let content;
        bracketed!(content in input);
        let mut requires = Vec::new();
        while !content.is_empty() {
            let pair;
            syn::parenthesized!(pair in content);
            let a: syn::LitStr = pair.parse()?;
            pair.parse::<Token![,]>()?;
            let b: syn::LitStr = pair.parse()?;
            requires.push((dims::parse_dim_source(&a.parse()?)?, dims::parse_dim_source(&b.parse()?)?));
            if content.peek(Token![,]) {
                content.parse::<Token![,]>()?;
            }
        }
        let content;
        braced!(content in input);
        let item: TokenStream = content.parse()?;
        let item = if item.is_empty() { None } else { Some(item) };
        Ok(Interface { name: name.to_string(), generics, symbols, inputs, output, requires, item })
    }
}

/// The signatures gathered so far, keyed by the path the user wrote (`blocks::Block`).
#[derive(Default, Clone)]
pub struct Gathered {
    pub sigs: Vec<(String, Interface)>,
}

impl Gathered {
    pub fn get(&self, path: &syn::Path) -> Option<&Interface> {
        let key = path_key(path);
        self.sigs.iter().find(|(k, _)| *k == key).map(|(_, i)| i)
    }
}

pub fn path_key(p: &syn::Path) -> String {
    p.to_token_stream().to_string().replace(' ', "")
}

/// Reads the signatures a continuation received: `@sig { .. } @for [path]` pairs, the
/// exporter having prepended each `@sig` to the `@for [path]` the request carried.
pub fn parse_gathered(input: ParseStream) -> syn::Result<Gathered> {
    let mut sigs = Vec::new();
    while input.peek(Token![@]) && input.peek2(Ident) {
        let fork = input.fork();
        fork.parse::<Token![@]>()?;
        if fork.parse::<Ident>()? != "sig" {
            break;
        }
        input.parse::<Token![@]>()?;
        input.parse::<Ident>()?;
        let iface: Interface = input.parse()?;
        input.parse::<Token![@]>()?;
        input.parse::<Token![for]>()?;
        let content;
        bracketed!(content in input);
        let path: syn::Path = content.parse()?;
        sigs.push((path_key(&path), iface));
    }
    Ok(Gathered { sigs })
}

/// The request for the next missing signature: `path! { @tb_sig cont @for [path] rest }`.
pub fn request(path: &syn::Path, cont: &str, gathered: &TokenStream, rest: TokenStream) -> TokenStream {
    let cont = format_ident!("{}", cont);
    quote!(#path! { @tb_sig #cont @for [#path] #gathered #rest })
}
