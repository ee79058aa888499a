//! Emitting Rust for a lowered `forward`: the inference path, the training path that saves
//! what the generated backward reads, the backward itself, and the IR as data (`graph()`).

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;
use tensorbrain_ir::autodiff::Backward;
use tensorbrain_ir::{NodeId, Op};

use crate::dims::dim_tokens;
use crate::fusion_plan;
use crate::lower::{Holder, Lowering, Source};

pub(crate) fn shape_tokens(s: &tensorbrain_ir::Shape) -> TokenStream {
    let dims = s.0.iter().map(dim_tokens);
    quote!(::tensorbrain::ir::Shape(vec![#(#dims),*]))
}

/// Emits Rust for one graph variant.
pub struct Emitter<'a> {
    pub lowering: &'a Lowering<'a>,
    pub bw: &'a Backward,
    pub sname: &'a Ident,
    pub n_inputs: usize,
    /// Statements binding `env`, the value of every size name the graph mentions.
    pub env: &'a TokenStream,
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
            (Op::Call { path, out }, Some(Source::Call { holder, line })) => {
                let access = &self.holders()[*holder].access;
                let x = n(node.inputs[0]);
                let c = format_ident!("c{}", i);
                let at = format!("`self.{path}` (called at {line})");
                let call = if train {
                    let input_grads = self.bw.needs[node.inputs[0]];
                    quote!(let (#id, #c) = ::tensorbrain::nn::call_train(&#access, &[#x.clone()], #input_grads, #at)?;)
                } else {
                    quote!(let #id = ::tensorbrain::nn::call_infer(&#access, &[#x.clone()], #at)?;)
                };
                // A layer without a signature whose output shape `forward` declared with a
                // typed `let`: the graph after it was checked against the declaration, so the
                // run time holds the layer to it.
                if out.is_unknown() && !node.shape.is_unknown() {
                    let declared = shape_tokens(&node.shape);
                    quote!(#call ::tensorbrain::exec::check_declared(&#id, &#declared, &env, #at)?;)
                } else {
                    call
                }
            }
            _ => {
                let args = node.inputs.iter().map(|&a| n(a));
                quote!(let #id = ::tensorbrain::exec::apply_env(&ops[#i], &[#(&#args),*], &[], &env)?;)
            }
        }
    }

    /// (saved struct fields, inference body, training-forward body, backward body, graph body,
    /// fusion plans)
    pub fn emit(&self) -> (TokenStream, TokenStream, TokenStream, TokenStream, TokenStream, Fusion) {
        let g = &self.bw.graph;
        let fwd_len = self.bw.forward_len;
        let out = self.bw.forward_output;
        let ops = self.ops_table();
        let out_id = n(out);

        let fuse = fusion_plan::fusion_enabled();
        let infer_plan = fusion_plan::plan(g, 0, fwd_len, &BTreeSet::from([out]), fuse);
        let infer_stmts = self.forward_steps(&infer_plan, false);
        let infer_kernels = kernels_table(&infer_plan);
        let env = self.env;
        let infer = quote! {
            #env
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
            decl.push(quote!(#c: ::tensorbrain::nn::NestedSaved,));
            init.push(quote!(#c,));
        }
        let counts = self.holders().iter().map(|h| {
            let access = &h.access;
            quote!(::tensorbrain::nn::count_params(&#access))
        });
        decl.push(quote!(counts: [usize; #holder_count],));
        init.push(quote!(counts: [#(#counts),*],));
        decl.push(quote!(env: ::tensorbrain::exec::SymEnv,));
        init.push(quote!(env: env.clone(),));
        let sname = self.sname;
        // Saved values, saved shapes and nested calls (whose saved state the backward needs)
        // stay materialised.
        let train_pins: BTreeSet<NodeId> = std::iter::once(out).chain(saved.iter().copied()).chain(shapes.iter().copied()).chain(calls.iter().copied()).collect();
        let train_plan = fusion_plan::plan(g, 0, fwd_len, &train_pins, fuse);
        let train_stmts = self.forward_steps(&train_plan, true);
        let train_kernels = kernels_table(&train_plan);
        let fwd_train = quote! {
            #env
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
        stmts.push(quote!(let env = &saved.env;));
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
        // Gradients no step computes (the output gradient itself) are final from the start.
        let computed: BTreeSet<NodeId> = backward_plan.steps.iter().map(fusion_plan::Step::out).collect();
        let (mut reports, from_start): (BTreeMap<_, _>, BTreeMap<_, _>) = self.param_reports().into_iter().partition(|(gid, _)| computed.contains(gid));
        stmts.extend(from_start.into_values().flatten());
        let calls = self.nested_calls(&backward_plan);
        let mut calls_left = calls.clone();
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
            let report = reports.remove(&step.out()).unwrap_or_default();
            let i = match step {
                fusion_plan::Step::Node(i) => *i,
                other => {
                    stmts.push(fused_step(other));
                    stmts.extend(report);
                    stmts.push(drops);
                    continue;
                }
            };
            let node = &g.nodes[i];
            let id = n(i);
            match &node.op {
                Op::CallBackward { forward, .. } => {
                    let Some(Source::Call { holder, .. }) = self.lowering.sources.get(forward) else { unreachable!() };
                    let c = format_ident!("c{}", forward);
                    let gin = n(node.inputs[0]);
                    // The call's input gradient is read only when gradients flow on through
                    // its input; a call on data is differentiated for its parameters alone.
                    let input_grad = if self.bw.needs[g.nodes[*forward].inputs[0]] {
                        quote!(let #id = gi.into_iter().next().flatten().ok_or_else(|| ::tensorbrain::Error::Autograd("nested model gave no input gradient".into()))?;)
                    } else {
                        quote!(let _ = gi;)
                    };
                    let holder_grads = quote!(param_grads[offsets[#holder]..offsets[#holder + 1]]);
                    // A model called once reports its parameters as its own backward finishes
                    // them. One called several times (shared weights) sums its calls'
                    // gradients, final only after the last call's backward.
                    calls_left[*holder] -= 1;
                    let (sink, summed_ready) = match (calls[*holder], calls_left[*holder]) {
                        (1, _) => (quote!(&mut ready.nested(offsets[#holder])), quote!()),
                        (_, 0) => (quote!(&mut ::tensorbrain::nn::GradReady::none()), quote!(ready.nested(offsets[#holder]).report_all(&#holder_grads)?;)),
                        _ => (quote!(&mut ::tensorbrain::nn::GradReady::none()), quote!()),
                    };
                    stmts.push(quote! {
                        let (gi, gp) = saved.#c.backward(&#gin, #sink)?;
                        ::tensorbrain::nn::add_grads(&mut #holder_grads, gp)?;
                        #summed_ready
                        #input_grad
                    });
                }
                _ => {
                    let args = node.inputs.iter().map(|&a| n(a));
                    let shape_args = node.shape_of.iter().map(|&s| {
                        let f = format_ident!("s{}", s);
                        quote!(&saved.#f[..])
                    });
                    stmts.push(quote!(let #id = ::tensorbrain::exec::apply_env(&ops[#i], &[#(&#args),*], &[#(#shape_args),*], env)?;));
                }
            }
            stmts.extend(report);
            stmts.push(drops);
        }
        let input_grads: Vec<TokenStream> = self
            .bw
            .grads
            .iter()
            .filter(|(leaf, _)| matches!(g.nodes[*leaf].op, Op::Input { .. }))
            .map(|(_, grad)| match grad {
                Some(gid) => {
                    let id = n(*gid);
                    quote!(Some(#id.clone()))
                }
                None => quote!(None),
            })
            .collect();
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

    /// For each gradient node, statements storing it as the gradient of the parameters it
    /// belongs to and reporting it final. It is: autodiff sums every contribution to a leaf's
    /// gradient into that one node, so nothing after it adds to the parameter.
    fn param_reports(&self) -> BTreeMap<NodeId, Vec<TokenStream>> {
        let mut reports: BTreeMap<NodeId, Vec<TokenStream>> = BTreeMap::new();
        for (leaf, grad) in &self.bw.grads {
            if let (Some(gid), Some(Source::Param { holder, param, .. })) = (grad, self.lowering.sources.get(leaf)) {
                let id = n(*gid);
                reports.entry(*gid).or_default().push(quote!(ready.set(&mut param_grads, offsets[#holder] + #param, &#id)?;));
            }
        }
        reports
    }

    /// How many nested backward calls the backward plan makes for each holder.
    fn nested_calls(&self, plan: &fusion_plan::RegionPlan) -> Vec<usize> {
        let mut calls = vec![0; self.holders().len()];
        for step in &plan.steps {
            if let fusion_plan::Step::Node(i) = step {
                if let Op::CallBackward { forward, .. } = &self.bw.graph.nodes[*i].op {
                    if let Some(Source::Call { holder, .. }) = self.lowering.sources.get(forward) {
                        calls[*holder] += 1;
                    }
                }
            }
        }
        calls
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
pub struct Fusion {
    infer: fusion_plan::RegionPlan,
    train: fusion_plan::RegionPlan,
    backward: fusion_plan::RegionPlan,
}

impl Fusion {
    /// `KernelCounts { .. }` for `kernel_counts()`.
    pub fn counts_tokens(&self) -> TokenStream {
        let (f, fu) = (self.infer.kernel_count, self.infer.unfused_count);
        let (t, tu) = (self.train.kernel_count, self.train.unfused_count);
        let (b, bu) = (self.backward.kernel_count, self.backward.unfused_count);
        quote!(::tensorbrain::compile::KernelCounts {
            forward: #f, train_forward: #t, backward: #b, forward_unfused: #fu, train_forward_unfused: #tu, backward_unfused: #bu,
        })
    }

    pub fn report(&self, model: &str) -> String {
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
        Op::ConcatBackward { dim } => quote!(#ir::Op::ConcatBackward { dim: #dim }),
        Op::NarrowBackward { dim, start } => quote!(#ir::Op::NarrowBackward { dim: #dim, start: #start }),
        Op::Call { path, out } => {
            let out = shape_tokens(out);
            quote!(#ir::Op::Call { path: #path.to_string(), out: #out })
        }
        Op::CallBackward { path, forward } => quote!(#ir::Op::CallBackward { path: #path.to_string(), forward: #forward }),
        // The int8 ops come from the runtime's quantization pass, never from `forward`; they
        // are emitted like any other op so that every graph can be written out.
        Op::Quantize(p) => {
            let p = qparams(p);
            quote!(#ir::Op::Quantize(#p))
        }
        Op::Dequantize(p) => {
            let p = qparams(p);
            quote!(#ir::Op::Dequantize(#p))
        }
        Op::Requantize { from, to } => {
            let (from, to) = (qparams(from), qparams(to));
            quote!(#ir::Op::Requantize { from: #from, to: #to })
        }
        Op::QLinear(l) => {
            let l = qlayer(l);
            quote!(#ir::Op::QLinear(#l))
        }
        Op::QConv2d { layer, kernel, geometry } => {
            let (l, g, k0, k1) = (qlayer(layer), conv(geometry), kernel[0], kernel[1]);
            quote!(#ir::Op::QConv2d { layer: #l, kernel: [#k0, #k1], geometry: #g })
        }
        Op::QEmbedding { table, dim } => quote!(#ir::Op::QEmbedding { table: #table.to_string(), dim: #dim }),
    }
}

fn qparams(p: &tensorbrain_ir::QuantParams) -> TokenStream {
    let (s, z) = (p.scale, p.zero_point);
    quote!(::tensorbrain::ir::QuantParams { scale: #s, zero_point: #z })
}

fn qlayer(l: &tensorbrain_ir::QLayerOp) -> TokenStream {
    let opt = |p: &Option<tensorbrain_ir::QuantParams>| match p {
        Some(p) => {
            let p = qparams(p);
            quote!(Some(#p))
        }
        None => quote!(None),
    };
    let (name, out, relu, input, output) = (&l.layer, l.out, l.relu, opt(&l.input), opt(&l.output));
    quote!(::tensorbrain::ir::QLayerOp { layer: #name.to_string(), out: #out, relu: #relu, input: #input, output: #output })
}

pub fn graph_tokens(bw: &Backward) -> TokenStream {
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

