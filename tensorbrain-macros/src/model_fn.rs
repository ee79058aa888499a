//! `#[model]` on a free function: a helper that models can call in `forward`.
//!
//! The function exports its signature and body (see [`crate::interface`]), so a model calling
//! `pair_sum(h)` inlines it into its own graph: shapes are checked at the call against the
//! declared types, and the generated backward and fusion see through it.
//!
//! Called from plain Rust it is an ordinary function on typed tensors:
//! - with `tb![..]` parameters (`fn pair_sum<B: Dim>(x: tb![B, 64]) -> tb![B, 32]`), its body is
//!   forward's language (`x.reshape([B, 2, 32])` names sizes as values), so it is checked and
//!   compiled like a `forward`, into straight-line code on the tape;
//! - with whole-shape parameters (`fn swish<S: Shape>(x: Tensor<S>) -> Tensor<S>`), its body is
//!   ordinary Rust on typed tensors, kept as written, and rustc checks it by type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};
use tensorbrain_ir::{Dim, Op};

use crate::dims::Scope;
use crate::interface::{self, Gathered, Interface, TensorSig};
use crate::lower::{self, Helpers, Lowering};
use crate::model_impl::tb_type;
use crate::model_struct::gathered_tokens;
use crate::tb::TbSpec;

pub fn expand(item: ItemFn) -> syn::Result<TokenStream> {
    expand_with(item, Gathered::default())
}

/// `__model_fn! { (@sig {..} @for [..])* fn .. }`: the continuation.
pub fn continuation(tokens: TokenStream) -> syn::Result<TokenStream> {
    struct Input(Gathered, ItemFn);
    impl Parse for Input {
        fn parse(input: ParseStream) -> syn::Result<Self> {
            Ok(Input(interface::parse_gathered(input)?, input.parse()?))
        }
    }
    let Input(g, item) = syn::parse2(tokens)?;
    expand_with(item, g)
}

fn is_tb(t: &Type) -> bool {
    matches!(t, Type::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "tb"))
}

fn expand_with(mut item: ItemFn, gathered: Gathered) -> syn::Result<TokenStream> {
    if item.sig.asyncness.is_some() || item.sig.unsafety.is_some() {
        return Err(syn::Error::new_spanned(&item.sig, "#[model] helper functions are plain `fn`s on tensors"));
    }
    let ReturnType::Type(_, ret) = &item.sig.output else {
        return Err(syn::Error::new_spanned(&item.sig, "a #[model] helper returns a tensor: `-> tb![B, 10]` or `-> Tensor<S>`"));
    };
    let iface = Interface {
        name: item.sig.ident.to_string(),
        generics: vec![],
        symbols: vec![],
        inputs: vec![],
        output: TensorSig { name: "output".into(), dims: vec![], dtype: "f32".into() },
        requires: vec![],
        item: Some(item.to_token_stream()),
    };
    let exporter = iface.exporter(&item.sig.ident, matches!(item.vis, syn::Visibility::Public(_)));

    let params: Vec<&syn::PatType> = item
        .sig
        .inputs
        .iter()
        .map(|a| match a {
            FnArg::Typed(t) => Ok(t),
            FnArg::Receiver(r) => Err(syn::Error::new_spanned(r, "a #[model] helper function takes tensors, not `self`; put helpers that use layers in the model's impl")),
        })
        .collect::<syn::Result<_>>()?;
    if !(params.iter().all(|p| is_tb(&p.ty)) && is_tb(ret)) {
        // Whole-shape helpers are ordinary Rust on typed tensors.
        return Ok(quote!(#item #exporter));
    }

    // Helpers it calls in turn must be gathered first, as for a model.
    let mut called = Vec::new();
    lower::called_functions(&item.block.stmts, &mut called);
    if let Some(next) = called.iter().find(|p| gathered.get(p).is_none()) {
        let have = gathered_tokens(&gathered);
        return Ok(interface::request(next, "__model_fn", &have, item.to_token_stream()));
    }

    // Checked and compiled like a forward with no layers.
    let scope = Scope::default();
    let specs: Vec<(syn::Ident, TbSpec)> = params
        .iter()
        .map(|p| match &*p.pat {
            Pat::Ident(i) => Ok((i.ident.clone(), tb_type(&p.ty)?)),
            other => Err(syn::Error::new_spanned(other, "name each parameter: `x: tb![B, 64]`")),
        })
        .collect::<syn::Result<_>>()?;
    let out_spec = tb_type(ret)?;
    let mut symbols: Vec<syn::Ident> = Vec::new();
    for (_, s) in &specs {
        for sym in s.symbols(&scope) {
            if !symbols.contains(&sym) {
                symbols.push(sym);
            }
        }
    }
    let helpers = Helpers { gathered, ..Helpers::default() };
    let mut l = Lowering::new(&[], &scope, &helpers, symbols.iter().map(|s| s.to_string()).collect(), false)?;
    for (n, s) in &specs {
        l.input(n, s.shape(), &s.dtype_name());
    }
    let out = l.block(&item.block.stmts)?.ok_or_else(|| syn::Error::new(item.block.span(), "a helper must end with the tensor it returns"))?;
    let got = l.graph.shape(out).clone();
    let declared = out_spec.shape();
    if !l.same_shape(&got, &declared, item.block.span(), "the result") {
        return Err(syn::Error::new(item.block.span(), format!("`{}` returns {got}, but its signature declares {declared}", item.sig.ident)));
    }
    let const_asserts: Vec<TokenStream> = l
        .asserts
        .iter()
        .map(|a| {
            let diff = crate::dims::dim_value_signed(&a.left.sub(&a.right), &scope);
            let msg = format!("{}: {} must equal {}", a.message, a.left, a.right);
            quote::quote_spanned!(a.span=> const _: () = assert!((#diff) == 0, #msg);)
        })
        .collect();

    // Undeclared symbolic sizes become generic parameters, as for forward.
    for s in &symbols {
        let declared = item.sig.generics.params.iter().any(|g| matches!(g, syn::GenericParam::Type(t) if t.ident == *s));
        if !declared {
            item.sig.generics.params.push(syn::parse_quote!(#s: ::tensorbrain::shape::Dim));
        }
    }

    // Straight-line code on the tape: each node with the kernels the IR maps it to.
    let g = &l.graph;
    let ops = g.nodes.iter().map(|n| crate::emit::op_tokens(&n.op));
    let mut pairs = Vec::new();
    for s in &symbols {
        let s = s.to_string();
        'find: for (k, (_, spec)) in specs.iter().enumerate() {
            for (j, d) in spec.dims.iter().enumerate() {
                if d.dim == Some(Dim::Sym(s.clone())) {
                    pairs.push(quote!((#s, inputs[#k].shape()[#j])));
                    break 'find;
                }
            }
        }
    }
    let name = item.sig.ident.to_string();
    let mut stmts = Vec::new();
    let mut k = 0usize;
    for (i, node) in g.nodes.iter().enumerate() {
        let id = format_ident!("n{}", i);
        if let Op::Input { .. } = node.op {
            stmts.push(quote!(let #id = inputs[#k].clone();));
            k += 1;
            continue;
        }
        let args = node.inputs.iter().map(|&a| format_ident!("n{}", a));
        stmts.push(quote! {
            let #id = ::tensorbrain::exec::apply_env(&ops[#i], &[#(&#args),*], &[], &env).unwrap_or_else(|e| panic!("{}: {}", #name, e));
        });
    }
    let out_id = format_ident!("n{}", out);
    let names = specs.iter().map(|(n, _)| n);
    item.block = syn::parse_quote!({
        let inputs = [#(#names.into_runtime()),*];
        let env = ::tensorbrain::exec::SymEnv::new(&[#(#pairs),*]);
        static OPS: ::std::sync::OnceLock<::std::vec::Vec<::tensorbrain::ir::Op>> = ::std::sync::OnceLock::new();
        let ops = OPS.get_or_init(|| vec![#(#ops),*]);
        #(#stmts)*
        ::tensorbrain::shape::Tensor::from_runtime_unchecked(#out_id)
    });
    item.attrs.push(syn::parse_quote!(#[track_caller]));
    Ok(quote!(#item #(#const_asserts)* #exporter))
}
