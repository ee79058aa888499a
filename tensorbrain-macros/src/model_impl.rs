//! `#[model]` on an impl: compiles `forward` into checked IR and emits Rust for it.
//!
//! The attribute cannot see the struct, so it expands to a call of the macro the struct's
//! expansion defined (`__tb_model_Net!`), which hands both to [`expand`].

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, ReturnType, Token, Type};
use tensorbrain_ir::autodiff::{self, Backward};
use std::collections::{BTreeMap, BTreeSet};

use tensorbrain_ir::{NodeId, Op};

use crate::fusion_plan;
use crate::layers::Layer;
use crate::lower::{Field, Holder, Lowering, Source};
use crate::tb::TbSpec;

pub fn forward_to_struct_macro(item: ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(path, "#[model] goes on the model's own impl (the one with `forward`), not on a trait impl"));
    }
    let Type::Path(p) = &*item.self_ty else {
        return Err(syn::Error::new_spanned(&item.self_ty, "#[model] impl must be for a #[model] struct"));
    };
    let Some(name) = p.path.get_ident() else {
        return Err(syn::Error::new_spanned(&item.self_ty, "#[model] impl must name the struct directly (`impl Net`), in the struct's module"));
    };
    let bridge = format_ident!("__tb_model_{}", name);
    Ok(quote!(#bridge! { #item }))
}

/// `struct Name { field: Type, ... } impl Name { ... }`, as the bridge macro passes them.
struct Input {
    name: Ident,
    fields: Vec<(Ident, Type)>,
    item: ItemImpl,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        let body;
        syn::braced!(body in input);
        let mut fields = Vec::new();
        while !body.is_empty() {
            let f: Ident = body.parse()?;
            body.parse::<Token![:]>()?;
            let ty: Type = body.parse()?;
            body.parse::<Token![,]>()?;
            fields.push((f, ty));
        }
        let item: ItemImpl = input.parse()?;
        Ok(Input { name, fields, item })
    }
}

/// The parsed signature of `forward`.
struct Signature {
    inputs: Vec<(Ident, TbSpec)>,
    output: TbSpec,
    symbols: Vec<Ident>,
}

fn signature(f: &ImplItemFn) -> syn::Result<Signature> {
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
        for s in spec.symbols() {
            if !symbols.contains(&s) {
                symbols.push(s);
            }
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

pub fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let Input { name, fields, mut item } = syn::parse2(tokens)?;
    let fields: Vec<Field> = fields.iter().map(|(f, ty)| Ok(Field { name: f.clone(), layer: Layer::from_type(ty)? })).collect::<syn::Result<_>>()?;

    let forward_pos = item.items.iter().position(|i| matches!(i, ImplItem::Fn(f) if f.sig.ident == "forward"));
    let Some(forward_pos) = forward_pos else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            format!("#[model] impl {name} needs a `forward` method: `pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {{ ... }}`"),
        ));
    };
    let ImplItem::Fn(forward) = item.items.remove(forward_pos) else { unreachable!() };
    let sig = signature(&forward)?;

    // Lower once per training mode; most models give the same graph twice. On a shape error,
    // still declare `forward` (it can never run: the crate does not compile) so the user sees
    // the one real error rather than a cascade of "no method named forward".
    let lowered = lower(&fields, &sig, &forward, true).and_then(|t| Ok((t, lower(&fields, &sig, &forward, false)?)));
    let (train, eval) = match lowered {
        Ok(pair) => pair,
        Err(e) => return Ok(with_declared_forward(e, &item, &forward, &sig)),
    };
    let modes: Vec<(Lowering, [Backward; 2])> = if train.0.graph == eval.0.graph { vec![train] } else { vec![train, eval] };

    let vis = &forward.vis;
    let attrs = &forward.attrs;
    let symbols = &sig.symbols;
    let in_names: Vec<&Ident> = sig.inputs.iter().map(|(n, _)| n).collect();
    let in_types: Vec<TokenStream> = sig.inputs.iter().map(|(_, s)| s.to_type()).collect();
    let out_type = sig.output.to_type();
    let n_inputs = sig.inputs.len();
    let saved_enum = format_ident!("__TbSaved{}", name);

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
            let code = Emitter { lowering, bw, sname: &sname, n_inputs };
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

    // Run-time checks for the dynamic path: each input's static dims and shared symbols.
    let checks = sig.inputs.iter().enumerate().map(|(k, (n, spec))| {
        let dims = spec.dims.iter().map(|d| match d {
            crate::tb::DimSpec::Known(v, _) => quote!(::tensorbrain::nn::DimCheck::Known(#v)),
            crate::tb::DimSpec::Sym(s) => {
                let s = s.to_string();
                quote!(::tensorbrain::nn::DimCheck::Sym(#s))
            }
            crate::tb::DimSpec::Any(_) => quote!(::tensorbrain::nn::DimCheck::Any),
        });
        let n = n.to_string();
        let dtype = spec.dtype_name();
        quote!((#n, #dtype, &[#(#dims),*][..], &inputs[#k]))
    });
    let model_name = name.to_string();
    let forward_doc = format!("The forward pass, shape-checked at compile time: {}.", describe_sig(&sig));

    let self_ty = &item.self_ty;
    // One-input models are layers too: usable in `Sequential` and other `dyn Forward` code.
    let forward_trait = if n_inputs == 1 {
        quote! {
            impl ::tensorbrain::nn::Forward for #self_ty {
                fn forward(&self, x: &::tensorbrain::Tensor) -> ::tensorbrain::Result<::tensorbrain::Tensor> {
                    self.forward_dyn(::std::slice::from_ref(x))
                }
            }
        }
    } else {
        quote!()
    };
    let signature_impl = crate::signature::emit(self_ty, &model_name, &sig.inputs, &sig.output);
    let user_items = &item.items;
    let generics = &item.generics;
    let impl_attrs = &item.attrs;
    Ok(quote! {
        #(#impl_attrs)*
        impl #generics #self_ty {
            #(#user_items)*

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

        impl ::tensorbrain::nn::StaticModel for #self_ty {
            type Saved = #saved_enum;

            fn forward_infer(&self, inputs: &[::tensorbrain::Tensor]) -> ::tensorbrain::Result<::tensorbrain::Tensor> {
                match #pick { #(#infer_arms)* _ => unreachable!() }
            }

            fn forward_train(&self, inputs: &[::tensorbrain::Tensor], input_grads: bool) -> ::tensorbrain::Result<(::tensorbrain::Tensor, Self::Saved)> {
                match (#pick, input_grads) { #(#train_arms)* _ => unreachable!() }
            }

            fn backward(saved: &Self::Saved, grad: &::tensorbrain::Tensor) -> ::tensorbrain::Result<(::std::vec::Vec<::std::option::Option<::tensorbrain::Tensor>>, ::std::vec::Vec<::std::option::Option<::tensorbrain::Tensor>>)> {
                match saved { #(#backward_arms)* }
            }
        }
    })
}

/// The compile error plus the impl with `forward` declared but unusable.
fn with_declared_forward(e: syn::Error, item: &ItemImpl, forward: &ImplItemFn, sig: &Signature) -> TokenStream {
    let error = e.into_compile_error();
    let (vis, symbols) = (&forward.vis, &sig.symbols);
    let in_names: Vec<&Ident> = sig.inputs.iter().map(|(n, _)| n).collect();
    let in_types: Vec<TokenStream> = sig.inputs.iter().map(|(_, s)| s.to_type()).collect();
    let out_type = sig.output.to_type();
    let (generics, self_ty, items) = (&item.generics, &item.self_ty, &item.items);
    quote! {
        #error
        impl #generics #self_ty {
            #(#items)*
            #[allow(unused_variables)]
            #vis fn forward<#(#symbols: ::tensorbrain::shape::Dim),*>(&self, #(#in_names: #in_types),*) -> #out_type {
                unreachable!("forward did not compile")
            }
        }
    }
}

fn describe_sig(sig: &Signature) -> String {
    let ins: Vec<String> = sig.inputs.iter().map(|(n, s)| format!("`{n}: {}`", s.shape())).collect();
    format!("{} -> `{}`", ins.join(", "), sig.output.shape())
}

/// The lowered forward and its backward passes: `[parameters only, inputs too]`.
fn lower<'a>(fields: &'a [Field], sig: &Signature, forward: &ImplItemFn, training: bool) -> syn::Result<(Lowering<'a>, [Backward; 2])> {
    let mut l = Lowering::new(fields, training);
    for (name, spec) in &sig.inputs {
        l.input(name, spec.shape());
    }
    let out = l
        .block(&forward.block.stmts)?
        .ok_or_else(|| syn::Error::new(forward.block.span(), "forward must end with the tensor it returns (no `;` after it)"))?;
    let declared = sig.output.shape();
    let got = l.graph.shape(out).clone();
    if !got.is_unknown() && got != declared {
        let msg = format!("forward returns {got}, but its signature declares {declared}");
        return Err(match forward.block.stmts.last() {
            Some(last) => syn::Error::new_spanned(last, msg),
            None => syn::Error::new(forward.block.span(), msg),
        });
    }
    l.graph.outputs = vec![out];
    let bw = |inputs| {
        autodiff::backward_with(&l.graph, inputs).map_err(|e| syn::Error::new(forward.sig.ident.span(), format!("cannot generate the backward pass: {e}")))
    };
    let bws = [bw(false)?, bw(true)?];
    Ok((l, bws))
}

/// Emits Rust for one graph variant.
struct Emitter<'a> {
    lowering: &'a Lowering<'a>,
    bw: &'a Backward,
    sname: &'a Ident,
    n_inputs: usize,
}

fn n(i: NodeId) -> Ident {
    format_ident!("n{}", i)
}

impl Emitter<'_> {
    fn holders(&self) -> &[Holder] {
        &self.lowering.holders
    }

    /// Code building the graph's ops (forward and backward), indexed by node id.
    fn ops_table(&self) -> TokenStream {
        let ops = self.bw.graph.nodes.iter().map(|node| op_tokens(&node.op));
        quote! {
            static OPS: ::std::sync::OnceLock<::std::vec::Vec<::tensorbrain::ir::Op>> = ::std::sync::OnceLock::new();
            let ops = OPS.get_or_init(|| vec![#(#ops),*]);
        }
    }

    /// Statement computing forward node `i`; `train` selects nested models' training path.
    fn forward_node(&self, i: NodeId, train: bool) -> TokenStream {
        let node = &self.bw.graph.nodes[i];
        let id = n(i);
        match (&node.op, self.lowering.sources.get(&i)) {
            (Op::Input { .. }, _) => {
                let k = self.bw.graph.inputs().iter().position(|&x| x == i).expect("input");
                quote!(let #id = inputs[#k].clone();)
            }
            (Op::Param { .. }, Some(Source::Param { holder, name, .. })) => {
                let access = &self.holders()[*holder].access;
                let field = format_ident!("{}", name);
                quote!(let #id = ::tensorbrain::nn::AsParam::as_param(&#access.#field).clone();)
            }
            (Op::Call { .. }, Some(Source::Call { holder, ty })) => {
                let access = &self.holders()[*holder].access;
                let x = n(node.inputs[0]);
                let c = format_ident!("c{}", i);
                if train {
                    let input_grads = self.bw.needs[node.inputs[0]];
                    quote!(let (#id, #c) = <#ty as ::tensorbrain::nn::StaticModel>::forward_train(&#access, &[#x.clone()], #input_grads)?;)
                } else {
                    quote!(let #id = <#ty as ::tensorbrain::nn::StaticModel>::forward_infer(&#access, &[#x.clone()])?;)
                }
            }
            _ => {
                let args = node.inputs.iter().map(|&a| n(a));
                quote!(let #id = ::tensorbrain::exec::apply(&ops[#i], &[#(&#args),*], &[])?;)
            }
        }
    }

    /// (saved struct fields, inference body, training-forward body, backward body, graph body,
    /// fusion plans)
    fn emit(&self) -> (TokenStream, TokenStream, TokenStream, TokenStream, TokenStream, Fusion) {
        let g = &self.bw.graph;
        let fwd_len = self.bw.forward_len;
        let out = self.bw.forward_output;
        let ops = self.ops_table();
        let out_id = n(out);

        let fuse = fusion_plan::fusion_enabled();
        let infer_plan = fusion_plan::plan(g, 0, fwd_len, &BTreeSet::from([out]), fuse);
        let infer_stmts = self.forward_steps(&infer_plan, false);
        let infer_kernels = kernels_table(&infer_plan);
        let infer = quote! {
            #ops
            #infer_kernels
            #(#infer_stmts)*
            Ok(#out_id)
        };

        let saved = self.bw.saved();
        let shapes = self.bw.saved_shapes();
        let calls: Vec<NodeId> = (0..fwd_len).filter(|i| matches!(g.nodes[*i].op, Op::Call { .. })).collect();
        let holder_count = self.holders().len();
        let mut decl = Vec::new();
        let mut init = Vec::new();
        for &i in &saved {
            let id = n(i);
            decl.push(quote!(#id: ::tensorbrain::Tensor,));
            init.push(quote!(#id: #id.clone(),));
        }
        for &i in &shapes {
            let s = format_ident!("s{}", i);
            let id = n(i);
            decl.push(quote!(#s: ::std::vec::Vec<usize>,));
            init.push(quote!(#s: #id.shape().to_vec(),));
        }
        for &i in &calls {
            let c = format_ident!("c{}", i);
            let Some(Source::Call { ty, .. }) = self.lowering.sources.get(&i) else { unreachable!() };
            decl.push(quote!(#c: <#ty as ::tensorbrain::nn::StaticModel>::Saved,));
            init.push(quote!(#c,));
        }
        let counts = self.holders().iter().map(|h| {
            let access = &h.access;
            quote!(::tensorbrain::nn::count_params(&#access))
        });
        decl.push(quote!(counts: [usize; #holder_count],));
        init.push(quote!(counts: [#(#counts),*],));
        let sname = self.sname;
        // Saved values, saved shapes and nested calls (whose saved state the backward needs)
        // stay materialised.
        let train_pins: BTreeSet<NodeId> = std::iter::once(out).chain(saved.iter().copied()).chain(shapes.iter().copied()).chain(calls.iter().copied()).collect();
        let train_plan = fusion_plan::plan(g, 0, fwd_len, &train_pins, fuse);
        let train_stmts = self.forward_steps(&train_plan, true);
        let train_kernels = kernels_table(&train_plan);
        let fwd_train = quote! {
            #ops
            #train_kernels
            #(#train_stmts)*
            let saved = #sname { #(#init)* };
            (#out_id, saved)
        };

        // Backward: saved values come from `saved`; each node as in forward.
        let mut stmts = Vec::new();
        for &i in &saved {
            let id = n(i);
            stmts.push(quote!(let #id = &saved.#id;));
        }
        let go = n(self.bw.grad_output);
        stmts.push(quote!(let #go = grad;));
        stmts.push(quote! {
            let mut offsets = [0usize; #holder_count + 1];
            for (k, c) in saved.counts.iter().enumerate() { offsets[k + 1] = offsets[k] + c; }
            let mut param_grads: ::std::vec::Vec<::std::option::Option<::tensorbrain::Tensor>> = vec![None; offsets[#holder_count]];
        });
        // The backward region starts after the output gradient; every nested backward runs (it
        // fills parameter gradients even when its input gradient is unused).
        debug_assert_eq!(self.bw.grad_output, fwd_len);
        let backward_pins: BTreeSet<NodeId> = self
            .bw
            .grads
            .iter()
            .filter_map(|&(_, gr)| gr)
            .chain((fwd_len + 1..g.nodes.len()).filter(|&i| matches!(g.nodes[i].op, Op::CallBackward { .. })))
            .collect();
        let backward_plan = fusion_plan::plan(g, fwd_len + 1, g.nodes.len(), &backward_pins, fuse);
        // Backward intermediates are dropped after their last read, so that later kernels
        // reuse their memory instead of taking fresh pages from the system (which, for
        // megabyte-sized activation gradients, costs more than the kernels themselves).
        let reads = |step: &fusion_plan::Step| -> Vec<NodeId> {
            match step {
                fusion_plan::Step::Node(i) => g.nodes[*i].inputs.clone(),
                fusion_plan::Step::Fused { inputs, .. } | fusion_plan::Step::Epilogue { inputs, .. } => inputs.clone(),
            }
        };
        let mut last_read: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (k, step) in backward_plan.steps.iter().enumerate() {
            for a in reads(step) {
                last_read.insert(a, k);
            }
        }
        let kept: BTreeSet<NodeId> = self.bw.grads.iter().filter_map(|&(_, gr)| gr).collect();
        let mut drops_after: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
        for (&v, &k) in &last_read {
            if v > fwd_len && !kept.contains(&v) {
                drops_after.entry(k).or_default().push(v);
            }
        }
        for (k, step) in backward_plan.steps.iter().enumerate() {
            let drops = drops_after.get(&k).map(|vs| vs.iter().map(|&v| n(v)).collect::<Vec<_>>()).unwrap_or_default();
            let drops = quote!(#(drop(#drops);)*);
            let i = match step {
                fusion_plan::Step::Node(i) => *i,
                other => {
                    stmts.push(fused_step(other));
                    stmts.push(drops);
                    continue;
                }
            };
            let node = &g.nodes[i];
            let id = n(i);
            match &node.op {
                Op::CallBackward { forward, .. } => {
                    let Some(Source::Call { holder, ty }) = self.lowering.sources.get(forward) else { unreachable!() };
                    let c = format_ident!("c{}", forward);
                    let gin = n(node.inputs[0]);
                    // The call's input gradient is read only when gradients flow on through
                    // its input; a call on data is differentiated for its parameters alone.
                    let input_grad = if self.bw.needs[g.nodes[*forward].inputs[0]] {
                        quote!(let #id = gi.into_iter().next().flatten().ok_or_else(|| ::tensorbrain::Error::Autograd("nested model gave no input gradient".into()))?;)
                    } else {
                        quote!(let _ = gi;)
                    };
                    stmts.push(quote! {
                        let (gi, gp) = <#ty as ::tensorbrain::nn::StaticModel>::backward(&saved.#c, &#gin)?;
                        for (k, gk) in gp.into_iter().enumerate() { param_grads[offsets[#holder] + k] = gk; }
                        #input_grad
                    });
                }
                _ => {
                    let args = node.inputs.iter().map(|&a| n(a));
                    let shape_args = node.shape_of.iter().map(|&s| {
                        let f = format_ident!("s{}", s);
                        quote!(&saved.#f[..])
                    });
                    stmts.push(quote!(let #id = ::tensorbrain::exec::apply(&ops[#i], &[#(&#args),*], &[#(#shape_args),*])?;));
                }
            }
            stmts.push(drops);
        }
        let mut input_grads = Vec::new();
        for (leaf, grad) in &self.bw.grads {
            let grad_tokens = match grad {
                Some(gid) => {
                    let id = n(*gid);
                    quote!(Some(#id.clone()))
                }
                None => quote!(None),
            };
            match (&g.nodes[*leaf].op, self.lowering.sources.get(leaf)) {
                (Op::Input { .. }, _) => input_grads.push(grad_tokens),
                (Op::Param { .. }, Some(Source::Param { holder, param, .. })) => {
                    stmts.push(quote!(param_grads[offsets[#holder] + #param] = #grad_tokens;));
                }
                _ => {}
            }
        }
        debug_assert_eq!(input_grads.len(), self.n_inputs);
        let backward_kernels = kernels_table(&backward_plan);
        let backward = quote! {
            #ops
            #backward_kernels
            #(#stmts)*
            Ok((vec![#(#input_grads),*], param_grads))
        };

        let graph = graph_tokens(self.bw);
        let fusion = Fusion { infer: infer_plan, train: train_plan, backward: backward_plan };
        (quote!(#(#decl)*), infer, fwd_train, backward, graph, fusion)
    }

    /// Statements of a forward region's plan.
    fn forward_steps(&self, plan: &fusion_plan::RegionPlan, train: bool) -> Vec<TokenStream> {
        plan.steps
            .iter()
            .map(|step| match step {
                fusion_plan::Step::Node(i) => self.forward_node(*i, train),
                other => fused_step(other),
            })
            .collect()
    }
}

/// The compile-time fusion plans of one graph variant.
struct Fusion {
    infer: fusion_plan::RegionPlan,
    train: fusion_plan::RegionPlan,
    backward: fusion_plan::RegionPlan,
}

impl Fusion {
    /// `KernelCounts { .. }` for `kernel_counts()`.
    fn counts_tokens(&self) -> TokenStream {
        let (f, fu) = (self.infer.kernel_count, self.infer.unfused_count);
        let (t, tu) = (self.train.kernel_count, self.train.unfused_count);
        let (b, bu) = (self.backward.kernel_count, self.backward.unfused_count);
        quote!(::tensorbrain::compile::KernelCounts {
            forward: #f, train_forward: #t, backward: #b, forward_unfused: #fu, train_forward_unfused: #tu, backward_unfused: #bu,
        })
    }

    fn report(&self, model: &str) -> String {
        let part = |what: &str, p: &fusion_plan::RegionPlan| format!("{what}: {} kernels (unfused {})\n{}", p.kernel_count, p.unfused_count, p.report);
        format!(
            "{model}, fused at compile time\n{}{}{}",
            part("forward (inference)", &self.infer),
            part("forward (training step)", &self.train),
            part("backward (parameter gradients)", &self.backward)
        )
    }
}

/// The static table of a region's generated kernels (their programs and epilogue heads).
fn kernels_table(plan: &fusion_plan::RegionPlan) -> TokenStream {
    if plan.kernels.is_empty() {
        return quote!();
    }
    let k = &plan.kernels;
    quote! {
        static KERNELS: ::std::sync::OnceLock<::std::vec::Vec<::tensorbrain::compile::codegen::GeneratedKernel>> = ::std::sync::OnceLock::new();
        let kernels = KERNELS.get_or_init(|| vec![#(#k),*]);
    }
}

/// The statement computing a fused step.
fn fused_step(step: &fusion_plan::Step) -> TokenStream {
    match step {
        fusion_plan::Step::Fused { out, inputs, kernel, program } => {
            let id = n(*out);
            let args: Vec<TokenStream> = inputs.iter().map(|&a| {
                let a = n(a);
                quote!(#a)
            }).collect();
            let call = fusion_plan::elementwise_call(program, *kernel, &args);
            quote!(let #id = #call;)
        }
        fusion_plan::Step::Epilogue { out, inputs, kernel } => {
            let id = n(*out);
            let args = inputs.iter().map(|&a| n(a));
            quote!(let #id = ::tensorbrain::compile::codegen::run_epilogue(&kernels[#kernel], &[#(::tensorbrain::compile::codegen::tensor(&#args)),*])?;)
        }
        fusion_plan::Step::Node(_) => unreachable!("plain nodes are emitted by the caller"),
    }
}

/// Tokens naming unary op `u` as a variant of the enum at `path` (`UnaryOp`, or the kernels'
/// `UnaryFn`, whose variants have the same names).
pub(crate) fn unary_tokens(u: &tensorbrain_ir::UnaryOp, path: TokenStream) -> TokenStream {
    let name = format_ident!("{}", format!("{u:?}").split('(').next().unwrap().to_string());
    match u.arg() {
        Some(a) => quote!(#path::#name(#a)),
        None => quote!(#path::#name),
    }
}

/// Tokens constructing an IR op value.
pub(crate) fn op_tokens(op: &Op) -> TokenStream {
    use tensorbrain_ir::{BinaryOp, PoolKind, ReduceOp, ScalarOp, UnaryOp};
    let ir = quote!(::tensorbrain::ir);
    let unary = |u: &UnaryOp| unary_tokens(u, quote!(#ir::UnaryOp));
    let ident = |d: &dyn std::fmt::Debug| format_ident!("{}", format!("{d:?}"));
    let conv = |g: &tensorbrain_ir::op::ConvGeometry| {
        let (s, p, d, gr) = (g.stride, g.padding, g.dilation, g.groups);
        let (s0, s1, p0, p1, d0, d1) = (s[0], s[1], p[0], p[1], d[0], d[1]);
        quote!(#ir::op::ConvGeometry { stride: [#s0, #s1], padding: [#p0, #p1], dilation: [#d0, #d1], groups: #gr })
    };
    let pool = |g: &tensorbrain_ir::op::PoolGeometry| {
        let (k0, k1, s0, s1, p0, p1) = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.padding[0], g.padding[1]);
        quote!(#ir::op::PoolGeometry { kernel: [#k0, #k1], stride: [#s0, #s1], padding: [#p0, #p1] })
    };
    let _: Option<(BinaryOp, PoolKind, ReduceOp, ScalarOp)> = None;
    match op {
        Op::Input { name, shape } => {
            let shape = shape_tokens(shape);
            quote!(#ir::Op::Input { name: #name.to_string(), shape: #shape })
        }
        Op::Param { path, shape } => {
            let shape = shape_tokens(shape);
            quote!(#ir::Op::Param { path: #path.to_string(), shape: #shape })
        }
        Op::Fill { value, shape } => {
            let shape = shape_tokens(shape);
            quote!(#ir::Op::Fill { value: #value, shape: #shape })
        }
        Op::Unary(u) => {
            let u = unary(u);
            quote!(#ir::Op::Unary(#u))
        }
        Op::UnaryBackward(u) => {
            let u = unary(u);
            quote!(#ir::Op::UnaryBackward(#u))
        }
        Op::Binary(b) => {
            let b = ident(b);
            quote!(#ir::Op::Binary(#ir::BinaryOp::#b))
        }
        Op::Scalar { op, value } => {
            let o = ident(op);
            quote!(#ir::Op::Scalar { op: #ir::ScalarOp::#o, value: #value })
        }
        Op::Matmul => quote!(#ir::Op::Matmul),
        Op::Transpose { dim0, dim1 } => quote!(#ir::Op::Transpose { dim0: #dim0, dim1: #dim1 }),
        Op::Permute { dims } => quote!(#ir::Op::Permute { dims: vec![#(#dims),*] }),
        Op::Reshape { shape } => {
            let shape = shape_tokens(shape);
            quote!(#ir::Op::Reshape { shape: #shape })
        }
        Op::Expand { shape } => {
            let shape = shape_tokens(shape);
            quote!(#ir::Op::Expand { shape: #shape })
        }
        Op::SumTo => quote!(#ir::Op::SumTo),
        Op::ReshapeAs => quote!(#ir::Op::ReshapeAs),
        Op::ExpandAs => quote!(#ir::Op::ExpandAs),
        Op::Flatten { start } => quote!(#ir::Op::Flatten { start: #start }),
        Op::Reduce { op, dims, keepdim } => {
            let o = ident(op);
            quote!(#ir::Op::Reduce { op: #ir::ReduceOp::#o, dims: vec![#(#dims),*], keepdim: #keepdim })
        }
        Op::ReduceBackward { mean, dims, keepdim } => quote!(#ir::Op::ReduceBackward { mean: #mean, dims: vec![#(#dims),*], keepdim: #keepdim }),
        Op::ReduceMaxBackward { dims, keepdim } => quote!(#ir::Op::ReduceMaxBackward { dims: vec![#(#dims),*], keepdim: #keepdim }),
        Op::Softmax { dim } => quote!(#ir::Op::Softmax { dim: #dim }),
        Op::LogSoftmax { dim } => quote!(#ir::Op::LogSoftmax { dim: #dim }),
        Op::SoftmaxBackward { dim } => quote!(#ir::Op::SoftmaxBackward { dim: #dim }),
        Op::LogSoftmaxBackward { dim } => quote!(#ir::Op::LogSoftmaxBackward { dim: #dim }),
        Op::Conv2d(g) => {
            let g = conv(g);
            quote!(#ir::Op::Conv2d(#g))
        }
        Op::Conv2dBackwardInput(g) => {
            let g = conv(g);
            quote!(#ir::Op::Conv2dBackwardInput(#g))
        }
        Op::Conv2dBackwardWeight(g) => {
            let g = conv(g);
            quote!(#ir::Op::Conv2dBackwardWeight(#g))
        }
        Op::Pool2d { kind, geometry, count_include_pad } => {
            let (k, g) = (ident(kind), pool(geometry));
            quote!(#ir::Op::Pool2d { kind: #ir::PoolKind::#k, geometry: #g, count_include_pad: #count_include_pad })
        }
        Op::Pool2dBackward { kind, geometry, count_include_pad } => {
            let (k, g) = (ident(kind), pool(geometry));
            quote!(#ir::Op::Pool2dBackward { kind: #ir::PoolKind::#k, geometry: #g, count_include_pad: #count_include_pad })
        }
        Op::DropoutMask { p } => quote!(#ir::Op::DropoutMask { p: #p }),
        Op::Embedding => quote!(#ir::Op::Embedding),
        Op::EmbeddingBackward => quote!(#ir::Op::EmbeddingBackward),
        Op::Concat { dim } => quote!(#ir::Op::Concat { dim: #dim }),
        Op::Narrow { dim, start, len } => quote!(#ir::Op::Narrow { dim: #dim, start: #start, len: #len }),
        Op::NarrowBackward { dim, start } => quote!(#ir::Op::NarrowBackward { dim: #dim, start: #start }),
        Op::Call { path, out } => {
            let out = shape_tokens(out);
            quote!(#ir::Op::Call { path: #path.to_string(), out: #out })
        }
        Op::CallBackward { path, forward } => quote!(#ir::Op::CallBackward { path: #path.to_string(), forward: #forward }),
    }
}

fn graph_tokens(bw: &Backward) -> TokenStream {
    let nodes = bw.graph.nodes.iter().map(|node| {
        let op = op_tokens(&node.op);
        let inputs = &node.inputs;
        let shape_of = &node.shape_of;
        let shape = shape_tokens(&node.shape);
        let label = &node.label;
        quote!(::tensorbrain::ir::Node { op: #op, inputs: vec![#(#inputs),*], shape_of: vec![#(#shape_of),*], shape: #shape, label: #label.to_string() })
    });
    let outputs = &bw.graph.outputs;
    let forward_len = bw.forward_len;
    let grad_output = bw.grad_output;
    let forward_output = bw.forward_output;
    let needs = &bw.needs;
    let grads = bw.grads.iter().map(|(a, b)| match b {
        Some(b) => quote!((#a, Some(#b))),
        None => quote!((#a, None)),
    });
    quote! {
        ::tensorbrain::ir::autodiff::Backward {
            graph: ::tensorbrain::ir::Graph { nodes: vec![#(#nodes),*], outputs: vec![#(#outputs),*] },
            forward_len: #forward_len,
            forward_output: #forward_output,
            grad_output: #grad_output,
            grads: vec![#(#grads),*],
            needs: vec![#(#needs),*],
        }
    }
}

pub(crate) fn shape_tokens(s: &tensorbrain_ir::Shape) -> TokenStream {
    let dims = s.0.iter().map(|d| match d {
        tensorbrain_ir::Dim::Known(v) => quote!(::tensorbrain::ir::Dim::Known(#v)),
        tensorbrain_ir::Dim::Sym(name) => quote!(::tensorbrain::ir::Dim::Sym(#name.to_string())),
    });
    quote!(::tensorbrain::ir::Shape(vec![#(#dims),*]))
}

