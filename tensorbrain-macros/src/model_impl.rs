//! `#[model]` on an impl: compiles `forward` into checked IR and emits Rust for it.
//!
//! The attribute cannot see the struct, so it expands to a call of the macro the struct's
//! expansion defined (`__tb_model_Net!`), which hands both to [`expand`]. That first gathers the
//! signatures of nested models and helper functions (see [`crate::interface`]), then lowers
//! `forward` once per training mode, generates the backward, and emits the code.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, ItemStruct, ReturnType, Type};
use tensorbrain_ir::autodiff::{self, Backward};
use tensorbrain_ir::{Dim, Op};

use crate::dims::{self, Scope, SymKind};
use crate::emit::Emitter;
use crate::interface::{self, Gathered, Interface, ParamKind, TensorSig};
use crate::layers::Layer;
use crate::lower::{self, Field, Helpers, Lowering};
use crate::model_struct::{gathered_tokens, scope_of, sized_generics};
use crate::tb::TbSpec;

pub fn forward_to_struct_macro(item: ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(path, "#[model] goes on the model's own impl (the one with `forward`), not on a trait impl"));
    }
    let Type::Path(p) = &*item.self_ty else {
        return Err(syn::Error::new_spanned(&item.self_ty, "#[model] impl must be for a #[model] struct"));
    };
    if p.path.segments.len() != 1 {
        return Err(syn::Error::new_spanned(&item.self_ty, "#[model] impl must name the struct directly (`impl Net`), in the struct's module"));
    }
    let name = &p.path.segments[0].ident;
    let bridge = format_ident!("__tb_model_{}", name);
    Ok(quote!(#bridge! { #item }))
}

/// `(@sig {..} @for [..])* @struct { struct .. } impl ..`, as the bridge macro and the
/// signature continuations pass them.
struct Input {
    gathered: Gathered,
    strukt: ItemStruct,
    item: ItemImpl,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let gathered = interface::parse_gathered(input)?;
        input.parse::<syn::Token![@]>()?;
        input.parse::<syn::Token![struct]>()?;
        let content;
        syn::braced!(content in input);
        let strukt: ItemStruct = content.parse()?;
        let item: ItemImpl = input.parse()?;
        Ok(Input { gathered, strukt, item })
    }
}

/// The parsed signature of `forward`.
pub struct Signature {
    pub inputs: Vec<(Ident, TbSpec)>,
    pub output: TbSpec,
    /// Its symbolic sizes (`B`, `T`): generic `Dim` parameters of `forward`.
    pub symbols: Vec<Ident>,
}

fn signature(f: &ImplItemFn, scope: &Scope) -> syn::Result<Signature> {
    let mut inputs = Vec::new();
    let mut has_self = false;
    for arg in &f.sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                if r.reference.is_none() || r.mutability.is_some() {
                    return Err(syn::Error::new_spanned(r, "forward takes `&self`"));
                }
                has_self = true;
            }
            FnArg::Typed(t) => {
                let syn::Pat::Ident(name) = &*t.pat else { return Err(syn::Error::new_spanned(&t.pat, "name each input: `x: tb![B, 784]`")) };
                inputs.push((name.ident.clone(), tb_type(&t.ty)?));
            }
        }
    }
    if !has_self {
        return Err(syn::Error::new_spanned(&f.sig, "forward takes `&self` first"));
    }
    if inputs.is_empty() {
        return Err(syn::Error::new_spanned(&f.sig, "forward needs at least one tensor input: `fn forward(&self, x: tb![B, 784]) -> tb![B, 10]`"));
    }
    let ReturnType::Type(_, ret) = &f.sig.output else {
        return Err(syn::Error::new_spanned(&f.sig, "forward must declare what it returns: `-> tb![B, 10]`"));
    };
    let output = tb_type(ret)?;
    let mut symbols: Vec<Ident> = Vec::new();
    for spec in inputs.iter().map(|(_, s)| s).chain([&output]) {
        for s in spec.symbols(scope) {
            if !symbols.contains(&s) {
                symbols.push(s);
            }
        }
    }
    // A symbolic size is read from the inputs, so each must stand alone as some input's dim.
    for s in &symbols {
        let bound = inputs.iter().any(|(_, spec)| spec.dims.iter().any(|d| d.dim == Some(Dim::Sym(s.to_string()))));
        if !bound {
            return Err(syn::Error::new(
                s.span(),
                format!("`{s}` must be a whole dim of some input (`x: tb![{s}, ...]`) so that its size is known; to name a model's size, declare it on the struct (`struct Net<{s}: Dim>`)"),
            ));
        }
    }
    Ok(Signature { inputs, output, symbols })
}

/// Reads a `tb![...]` type.
pub(crate) fn tb_type(ty: &Type) -> syn::Result<TbSpec> {
    if let Type::Macro(m) = ty {
        if m.mac.path.is_ident("tb") || m.mac.path.segments.last().is_some_and(|s| s.ident == "tb") {
            return syn::parse2(m.mac.tokens.clone());
        }
    }
    Err(syn::Error::new_spanned(ty, "#[model] forward inputs and output are written with `tb![...]`, e.g. `tb![B, 784]`"))
}

/// Whether an impl method is a helper to inline (it takes or returns `tb![..]` tensors).
fn is_helper(f: &ImplItemFn) -> bool {
    let tb = |t: &Type| matches!(t, Type::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "tb"));
    f.sig.ident != "forward" && (f.sig.inputs.iter().any(|a| matches!(a, FnArg::Typed(t) if tb(&t.ty))) || matches!(&f.sig.output, ReturnType::Type(_, t) if tb(t)))
}

pub fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let Input { gathered, strukt, mut item } = syn::parse2(tokens)?;
    let name = strukt.ident.clone();
    let scope = scope_of(&strukt.generics)?;
    // The impl names the struct's parameters as the struct does.
    let impl_params: Vec<String> = item.generics.params.iter().filter_map(|p| match p {
        syn::GenericParam::Type(t) => Some(t.ident.to_string()),
        syn::GenericParam::Const(c) => Some(c.ident.to_string()),
        syn::GenericParam::Lifetime(_) => None,
    }).collect();
    let struct_params: Vec<String> = scope.type_params.iter().chain(&scope.const_params).cloned().collect();
    let mut sorted_impl = impl_params.clone();
    sorted_impl.sort();
    let mut sorted_struct = struct_params.clone();
    sorted_struct.sort();
    if sorted_impl != sorted_struct {
        let params = strukt.generics.params.iter().map(|p| p.to_token_stream().to_string().replace(" :", ":")).collect::<Vec<_>>().join(", ");
        return Err(syn::Error::new_spanned(
            &item.generics,
            format!("write the impl with the struct's generic parameters: `impl<{params}> {name}<{}>`", struct_params.join(", ")),
        ));
    }

    let syn::Fields::Named(named) = &strukt.fields else { return Err(syn::Error::new_spanned(&strukt, "internal: named fields")) };
    let fields: Vec<Field> = named
        .named
        .iter()
        .map(|f| Ok(Field { name: f.ident.clone().expect("named"), layer: Layer::from_type(&f.ty)? }))
        .collect::<syn::Result<_>>()?;

    let forward_pos = item.items.iter().position(|i| matches!(i, ImplItem::Fn(f) if f.sig.ident == "forward"));
    let Some(forward_pos) = forward_pos else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            format!("#[model] impl {name} needs a `forward` method: `pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {{ ... }}`"),
        ));
    };
    let ImplItem::Fn(forward) = item.items.remove(forward_pos) else { unreachable!() };
    let sig = signature(&forward, &scope)?;

    // Helper methods are inlined where forward calls them; other items stay as written.
    let mut helpers = Helpers { gathered: gathered.clone(), ..Helpers::default() };
    item.items.retain(|i| match i {
        ImplItem::Fn(f) if is_helper(f) => {
            helpers.methods.insert(f.sig.ident.to_string(), f.clone());
            false
        }
        _ => true,
    });

    // Signatures still missing: nested models, and functions forward or a helper calls.
    let mut needed: Vec<syn::Path> = Vec::new();
    for f in &fields {
        f.layer.nested_paths(&mut needed);
    }
    let mut bodies: Vec<&[syn::Stmt]> = vec![&forward.block.stmts];
    bodies.extend(helpers.methods.values().map(|m| m.block.stmts.as_slice()));
    let mut loops = Vec::new();
    for b in &bodies {
        loops.extend(lower::loop_variables(b));
    }
    for b in &bodies {
        let mut called = Vec::new();
        lower::called_functions(b, &mut called);
        for p in called {
            let local = p.get_ident().is_some_and(|i| loops.contains(&i.to_string()));
            if !local && !crate::layers::contains_path(&needed, &p) {
                needed.push(p);
            }
        }
    }
    // Helper functions may call further helpers: their signatures arrive with their bodies.
    for (_, iface) in &gathered.sigs {
        if let Some(item) = &iface.item {
            if let Ok(f) = syn::parse2::<syn::ItemFn>(item.clone()) {
                let mut called = Vec::new();
                lower::called_functions(&f.block.stmts, &mut called);
                for p in called {
                    if !crate::layers::contains_path(&needed, &p) {
                        needed.push(p);
                    }
                }
            }
        }
    }
    if let Some(next) = needed.iter().find(|p| gathered.get(p).is_none()) {
        let have = gathered_tokens(&gathered);
        // `forward` and the helpers were taken out of `item`; put them back for the next step.
        let mut full = item.clone();
        full.items.push(ImplItem::Fn(forward.clone()));
        full.items.extend(helpers.methods.values().cloned().map(ImplItem::Fn));
        return Ok(interface::request(next, "__model_impl", &have, quote!(@struct { #strukt } #full)));
    }

    let iface = interface_of(&name, &strukt, &scope, &sig);
    let exporter = iface.exporter(&name, matches!(strukt.vis, syn::Visibility::Public(_)));

    // Lower once per training mode; most models give the same graph twice. On a shape error,
    // still declare `forward` (it can never run: the crate does not compile) so the user sees
    // the one real error rather than a cascade of "no method named forward".
    let lowered = lower(&fields, &scope, &helpers, &sig, &forward, true).and_then(|t| Ok((t, lower(&fields, &scope, &helpers, &sig, &forward, false)?)));
    let (train, eval) = match lowered {
        Ok(pair) => pair,
        Err(e) => return Ok(with_declared_forward(e, &strukt, &item, &forward, &sig, &scope, exporter)),
    };

    // Requirements: divisibilities of generic sizes (checked per instantiation, and passed on
    // to models that nest this one) and equalities of named constants (checked by rustc).
    let mut requires: Vec<(Dim, Dim)> = train.0.requires.clone();
    for node in &train.0.graph.nodes {
        let shapes = std::iter::once(&node.shape).chain(match &node.op {
            Op::Reshape { shape } | Op::Expand { shape } | Op::Fill { shape, .. } | Op::Param { shape, .. } => Some(shape),
            _ => None,
        });
        for s in shapes {
            for d in &s.0 {
                for (n, den) in d.poly().exact_divisions() {
                    let (n, den) = (Dim::from_poly(n), Dim::from_poly(den));
                    if scope.is_static(&n) && scope.is_static(&den) && !requires.contains(&(n.clone(), den.clone())) {
                        requires.push((n, den));
                    }
                }
            }
        }
    }
    let iface = Interface { requires: requires.iter().filter(|(a, b)| !uses_named(a, &scope) && !uses_named(b, &scope)).cloned().collect(), ..iface };
    let exporter = iface.exporter(&name, matches!(strukt.vis, syn::Visibility::Public(_)));
    let requirement_checks = requires.iter().map(|(n, d)| {
        let (nv, dv) = (dims::dim_value(n, &scope), dims::dim_value(d, &scope));
        let msg = format!("{name}: the size {n} must be divisible by {d}");
        quote!(assert!((#dv) != 0 && (#nv) % (#dv) == 0, #msg);)
    });
    let mut const_asserts = Vec::new();
    for a in train.0.asserts.iter().chain(&eval.0.asserts) {
        let diff = dims::dim_value_signed(&a.left.sub(&a.right), &scope);
        let msg = format!("{}: {} must equal {}", a.message, a.left, a.right);
        const_asserts.push(quote::quote_spanned!(a.span=> const _: () = assert!((#diff) == 0, #msg);));
    }

    let modes: Vec<(Lowering, [Backward; 2])> = if train.0.graph == eval.0.graph { vec![train] } else { vec![train, eval] };

    let (impl_generics, ty_generics, where_clause) = {
        let g = sized_generics(&strukt.generics);
        (g.clone(), g, strukt.generics.where_clause.clone())
    };
    let (impl_generics, _, _) = impl_generics.split_for_impl();
    let (_, ty_generics, _) = ty_generics.split_for_impl();
    let self_ty = quote!(#name #ty_generics);

    let vis = &forward.vis;
    let attrs = &forward.attrs;
    let symbols = &sig.symbols;
    let in_names: Vec<&Ident> = sig.inputs.iter().map(|(n, _)| n).collect();
    let in_types: Vec<TokenStream> = sig.inputs.iter().map(|(_, s)| s.to_type(&scope)).collect();
    let out_type = sig.output.to_type(&scope);
    let n_inputs = sig.inputs.len();
    let saved_enum = format_ident!("__TbSaved{}", name);
    let env = env_tokens(&sig, &scope, &modes);

    // One variant per training mode and per whether the inputs need gradients (data inputs
    // skip their gradient, and the tensors only it would read are not saved).
    let mut saved_structs = Vec::new();
    let mut infer_arms = Vec::new();
    let mut train_arms = Vec::new();
    let mut backward_arms = Vec::new();
    let mut graph_arms = Vec::new();
    let mut saved_variants = Vec::new();
    let mut count_arms = Vec::new();
    let mut report_arms = Vec::new();
    for (m, (lowering, bws)) in modes.iter().enumerate() {
        for (with_inputs, bw) in [(false, &bws[0]), (true, &bws[1])] {
            let v = m * 2 + with_inputs as usize;
            let vident = format_ident!("V{}", v);
            let sname = format_ident!("__TbSaved{}{}", name, v);
            let code = Emitter { lowering, bw, sname: &sname, n_inputs, env: &env };
            let (fields_decl, infer, fwd_train, backward, graph, fusion) = code.emit();
            saved_structs.push(quote! {
                #[doc(hidden)]
                #[allow(non_camel_case_types, non_snake_case, dead_code)]
                pub struct #sname { #fields_decl }
            });
            saved_variants.push(quote!(#vident(#sname)));
            train_arms.push(quote!((#m, #with_inputs) => { let (out, saved) = { #fwd_train }; Ok((out, #saved_enum::#vident(saved))) }));
            backward_arms.push(quote!(#saved_enum::#vident(saved) => { #backward }));
            if with_inputs {
                infer_arms.push(quote!(#m => { #infer }));
                graph_arms.push(quote!(#m => { #graph }));
            } else {
                // Inference is the same in both variants; the parameter-only backward is what
                // a training step on data runs.
                let counts = fusion.counts_tokens();
                count_arms.push(quote!(#m => #counts,));
                let report = fusion.report(&name.to_string());
                if std::env::var("TENSORBRAIN_PRINT_FUSION").is_ok_and(|v| !v.is_empty() && v != "0") {
                    eprintln!("{report}");
                }
                report_arms.push(quote!(#m => #report,));
            }
        }
    }
    let pick = if modes.len() == 1 { quote!(0usize) } else { quote!(if self.__tb_training { 0usize } else { 1usize }) };

    // Run-time checks for the dynamic path: each input's sizes and shared symbols.
    let checks = sig.inputs.iter().enumerate().map(|(k, (n, spec))| {
        let dims = crate::signature::dim_checks(spec, &scope);
        let n = n.to_string();
        let dtype = spec.dtype_name();
        quote!((#n, #dtype, &[#(#dims),*][..], &inputs[#k]))
    });
    let model_name = name.to_string();
    let forward_doc = format!("The forward pass, shape-checked at compile time: {}.", describe_sig(&sig));

    // One-input models are layers too: usable in `Sequential` and other `dyn Forward` code.
    let forward_trait = if n_inputs == 1 {
        quote! {
            impl #impl_generics ::tensorbrain::nn::Forward for #self_ty #where_clause {
                fn forward(&self, x: &::tensorbrain::Tensor) -> ::tensorbrain::Result<::tensorbrain::Tensor> {
                    self.forward_dyn(::std::slice::from_ref(x))
                }
            }
        }
    } else {
        quote!()
    };
    let signature_impl = crate::signature::emit(
        quote!(impl #impl_generics ::tensorbrain::nn::ModelSignature for #self_ty #where_clause),
        &model_name,
        &sig.inputs,
        &sig.output,
        &scope,
    );
    let user_items = &item.items;
    let impl_attrs = &item.attrs;
    Ok(quote! {
        #(#impl_attrs)*
        impl #impl_generics #self_ty #where_clause {
            #(#user_items)*

            #[doc(hidden)]
            const __TB_REQUIRES: () = { #(#requirement_checks)* };

            #[doc = #forward_doc]
            #(#attrs)*
            #[track_caller]
            #vis fn forward<#(#symbols: ::tensorbrain::shape::Dim),*>(&self, #(#in_names: #in_types),*) -> #out_type {
                let inputs = [#(#in_names.into_runtime()),*];
                match ::tensorbrain::nn::run_static(self, &inputs) {
                    Ok(out) => ::tensorbrain::shape::Tensor::from_runtime_unchecked(out),
                    Err(e) => panic!("{}", e),
                }
            }

            /// The same forward on runtime tensors; the declared shapes are checked at run time.
            #vis fn forward_dyn(&self, inputs: &[::tensorbrain::Tensor]) -> ::tensorbrain::Result<::tensorbrain::Tensor> {
                if inputs.len() != #n_inputs {
                    return Err(::tensorbrain::Error::Msg(format!("{}::forward takes {} inputs, got {}", #model_name, #n_inputs, inputs.len())));
                }
                ::tensorbrain::nn::check_inputs(#model_name, &[#(#checks),*])?;
                ::tensorbrain::nn::run_static(self, inputs)
            }

            /// Kernel launches per step of the code `#[model]` generated for the current
            /// training mode, fused and unfused (see [`Self::fusion_report`]).
            #vis fn kernel_counts(&self) -> ::tensorbrain::compile::KernelCounts {
                match #pick { #(#count_arms)* _ => unreachable!() }
            }

            /// What `#[model]` fused at compile time in the current training mode: each
            /// generated kernel with the IR nodes it computes. (Set `TENSORBRAIN_PRINT_FUSION=1`
            /// while building to print it then.)
            #vis fn fusion_report(&self) -> &'static str {
                match #pick { #(#report_arms)* _ => unreachable!() }
            }

            /// The IR of `forward` in the current training mode, with the generated backward
            /// appended (print it, or call `to_dot()` for Graphviz).
            #vis fn graph(&self) -> ::tensorbrain::ir::autodiff::Backward {
                match #pick { #(#graph_arms)* _ => unreachable!() }
            }
        }

        #forward_trait
        #signature_impl

        #(#saved_structs)*

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        pub enum #saved_enum { #(#saved_variants),* }

        impl #impl_generics ::tensorbrain::nn::StaticModel for #self_ty #where_clause {
            type Saved = #saved_enum;

            fn forward_infer(&self, inputs: &[::tensorbrain::Tensor]) -> ::tensorbrain::Result<::tensorbrain::Tensor> {
                let () = Self::__TB_REQUIRES;
                if let Some(out) = self.__tb_exec.run(inputs) {
                    return out;
                }
                match #pick { #(#infer_arms)* _ => unreachable!() }
            }

            fn set_inference_override(&mut self, run: ::tensorbrain::nn::InferenceOverride) -> ::tensorbrain::Result<()> {
                self.__tb_exec = run;
                Ok(())
            }

            fn ir(&self) -> ::core::option::Option<::tensorbrain::ir::autodiff::Backward> {
                ::core::option::Option::Some(self.graph())
            }

            fn forward_train(&self, inputs: &[::tensorbrain::Tensor], input_grads: bool) -> ::tensorbrain::Result<(::tensorbrain::Tensor, Self::Saved)> {
                let () = Self::__TB_REQUIRES;
                match (#pick, input_grads) { #(#train_arms)* _ => unreachable!() }
            }

            fn backward(saved: &Self::Saved, grad: &::tensorbrain::Tensor, ready: &mut ::tensorbrain::nn::GradReady<'_>) -> ::tensorbrain::Result<(::std::vec::Vec<::std::option::Option<::tensorbrain::Tensor>>, ::std::vec::Vec<::std::option::Option<::tensorbrain::Tensor>>)> {
                match saved { #(#backward_arms)* }
            }
        }

        #(#const_asserts)*

        #exporter
    })
}

fn uses_named(d: &Dim, scope: &Scope) -> bool {
    d.symbols().iter().any(|s| scope.kind(s) == SymKind::NamedConst)
}

/// What nesting models see of this one.
fn interface_of(name: &Ident, strukt: &ItemStruct, scope: &Scope, sig: &Signature) -> Interface {
    let generics = strukt
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some((t.ident.to_string(), ParamKind::Type)),
            syn::GenericParam::Const(c) => Some((c.ident.to_string(), ParamKind::Const)),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let tensor = |n: &str, spec: &TbSpec| TensorSig { name: n.to_string(), dims: spec.dims.iter().map(|d| d.dim.clone()).collect(), dtype: spec.dtype_name() };
    let _ = scope;
    Interface {
        name: name.to_string(),
        generics,
        symbols: sig.symbols.iter().map(|s| s.to_string()).collect(),
        inputs: sig.inputs.iter().map(|(n, s)| tensor(&n.to_string(), s)).collect(),
        output: tensor("output", &sig.output),
        requires: vec![],
        item: None,
    }
}

/// Statements binding `env`: each symbolic size from the first input dim that is exactly it,
/// each generic size and named constant the graphs mention from its definition.
fn env_tokens(sig: &Signature, scope: &Scope, modes: &[(Lowering, [Backward; 2])]) -> TokenStream {
    let mut pairs: Vec<TokenStream> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for s in &sig.symbols {
        let s = s.to_string();
        'find: for (k, (_, spec)) in sig.inputs.iter().enumerate() {
            for (j, d) in spec.dims.iter().enumerate() {
                if d.dim == Some(Dim::Sym(s.clone())) {
                    pairs.push(quote!((#s, inputs[#k].shape()[#j])));
                    seen.push(s.clone());
                    break 'find;
                }
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    for (l, bws) in modes {
        for g in [&l.graph, &bws[0].graph, &bws[1].graph] {
            for node in &g.nodes {
                let shapes = std::iter::once(&node.shape).chain(match &node.op {
                    Op::Reshape { shape } | Op::Expand { shape } | Op::Fill { shape, .. } | Op::Param { shape, .. } | Op::Call { out: shape, .. } => Some(shape),
                    _ => None,
                });
                for sh in shapes {
                    for d in &sh.0 {
                        for s in d.symbols() {
                            if !names.contains(&s) {
                                names.push(s);
                            }
                        }
                    }
                }
            }
        }
    }
    for s in names {
        if seen.contains(&s) || scope.kind(&s) == SymKind::Forward {
            continue;
        }
        let v = dims::dim_value(&Dim::Sym(s.clone()), scope);
        pairs.push(quote!((#s, #v)));
    }
    quote!(let env = ::tensorbrain::exec::SymEnv::new(&[#(#pairs),*]);)
}

/// The compile error plus the impl with `forward` declared but unusable.
fn with_declared_forward(e: syn::Error, strukt: &ItemStruct, item: &ItemImpl, forward: &ImplItemFn, sig: &Signature, scope: &Scope, exporter: TokenStream) -> TokenStream {
    let error = e.into_compile_error();
    let (vis, symbols) = (&forward.vis, &sig.symbols);
    let in_names: Vec<&Ident> = sig.inputs.iter().map(|(n, _)| n).collect();
    let in_types: Vec<TokenStream> = sig.inputs.iter().map(|(_, s)| s.to_type(scope)).collect();
    let out_type = sig.output.to_type(scope);
    let g = sized_generics(&strukt.generics);
    let (impl_generics, ty_generics, where_clause) = g.split_for_impl();
    let name = &strukt.ident;
    let items = &item.items;
    quote! {
        #error
        impl #impl_generics #name #ty_generics #where_clause {
            #(#items)*
            #[allow(unused_variables)]
            #vis fn forward<#(#symbols: ::tensorbrain::shape::Dim),*>(&self, #(#in_names: #in_types),*) -> #out_type {
                unreachable!("forward did not compile")
            }
        }
        #exporter
    }
}

fn describe_sig(sig: &Signature) -> String {
    let ins: Vec<String> = sig.inputs.iter().map(|(n, s)| format!("`{n}: {}`", s.shape())).collect();
    format!("{} -> `{}`", ins.join(", "), sig.output.shape())
}

/// The lowered forward and its backward passes: `[parameters only, inputs too]`.
fn lower<'a>(fields: &'a [Field], scope: &'a Scope, helpers: &'a Helpers, sig: &Signature, forward: &ImplItemFn, training: bool) -> syn::Result<(Lowering<'a>, [Backward; 2])> {
    let symbols = sig.symbols.iter().map(|s| s.to_string()).collect();
    let mut l = Lowering::new(fields, scope, helpers, symbols, training)?;
    for (name, spec) in &sig.inputs {
        l.input(name, spec.shape(), &spec.dtype_name());
    }
    let out = l
        .block(&forward.block.stmts)?
        .ok_or_else(|| syn::Error::new(forward.block.span(), "forward must end with the tensor it returns (no `;` after it)"))?;
    let declared = sig.output.shape();
    let got = l.graph.shape(out).clone();
    let at = || match forward.block.stmts.last() {
        Some(last) => last.span(),
        None => forward.block.span(),
    };
    if !got.is_unknown() && !same_output(&mut l, &got, &declared, at()) {
        return Err(syn::Error::new(at(), format!("forward returns {got}, but its signature declares {declared}")));
    }
    if l.dtypes.get(&out).is_some_and(|d| *d != sig.output.dtype_name()) {
        return Err(syn::Error::new(at(), format!("forward returns a {} tensor, but its signature declares {}", l.dtypes[&out], sig.output.dtype_name())));
    }
    l.graph.outputs = vec![out];
    let bw = |inputs| {
        autodiff::backward_with(&l.graph, inputs).map_err(|e| syn::Error::new(forward.sig.ident.span(), format!("cannot generate the backward pass: {e}")))
    };
    let bws = [bw(false)?, bw(true)?];
    Ok((l, bws))
}

fn same_output(l: &mut Lowering, got: &tensorbrain_ir::Shape, declared: &tensorbrain_ir::Shape, span: Span) -> bool {
    l.same_shape(got, declared, span, "the output")
}
