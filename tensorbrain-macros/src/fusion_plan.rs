//! Compile-time fusion for `#[model]`: which kernels the generated forward and backward run,
//! and the Rust emitted for each fused elementwise group.
//!
//! A region (the forward, or the backward) is fused on its own with the IR's fusion pass
//! ([`tensorbrain_ir::passes::fuse`]): values the other region reads (saved tensors, shapes)
//! are pinned as outputs so they stay materialised, and forward values seen from the backward
//! are inputs of the backward region. Node ids are kept, so each kernel's result is bound to the
//! variable of the IR node it computes (`n{root}`), and unfused nodes are emitted as before.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use tensorbrain_ir::passes::fusion::{Cmp, Instr, Kernel};
use tensorbrain_ir::passes::{self, FuseOptions, FusedGraph, Program};
use tensorbrain_ir::{BinaryOp, Graph, Node, NodeId, Op, ScalarOp};

/// How one value of a region is computed.
pub enum Step {
    /// IR node `id`, one op (or a leaf) as it is.
    Node(NodeId),
    /// A fused elementwise group computing node `out` from `inputs` with `kernels[kernel]`.
    Fused { out: NodeId, inputs: Vec<NodeId>, kernel: usize, program: Program },
    /// A matmul/conv with an elementwise tail computing node `out`.
    Epilogue { out: NodeId, inputs: Vec<NodeId>, kernel: usize },
}

impl Step {
    /// The node this step computes.
    pub fn out(&self) -> NodeId {
        match self {
            Step::Node(i) => *i,
            Step::Fused { out, .. } | Step::Epilogue { out, .. } => *out,
        }
    }
}

/// The fusion plan of one region.
pub struct RegionPlan {
    pub steps: Vec<Step>,
    /// Tokens constructing each `GeneratedKernel` of the region, by index.
    pub kernels: Vec<TokenStream>,
    /// Kernel launches after and before fusion.
    pub kernel_count: usize,
    pub unfused_count: usize,
    /// What was fused, for people.
    pub report: String,
}

/// Fusion is on unless `TENSORBRAIN_NO_FUSION` is set (to anything but `0`) while the model
/// is compiled: one kernel per IR node, the baseline for measuring what fusion gains.
pub fn fusion_enabled() -> bool {
    !std::env::var("TENSORBRAIN_NO_FUSION").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Fuses the nodes `start..end` of `g`, keeping `pinned` materialised. Nodes before `start`
/// are inputs of the region. With `fuse` false every node is its own kernel.
pub fn plan(g: &Graph, start: usize, end: usize, pinned: &BTreeSet<NodeId>, fuse: bool) -> RegionPlan {
    let mut sub = Graph { nodes: Vec::with_capacity(end), outputs: pinned.iter().copied().filter(|&p| p < end).collect() };
    for (i, n) in g.nodes[..end].iter().enumerate() {
        sub.nodes.push(if i < start {
            Node { op: Op::Input { name: format!("n{i}"), shape: n.shape.clone() }, inputs: vec![], shape_of: vec![], shape: n.shape.clone(), label: n.label.clone() }
        } else {
            n.clone()
        });
    }
    let unfused_count = g.nodes[start..end].iter().filter(|n| !passes::fusion::is_free(&n.op)).count();
    if !fuse {
        return RegionPlan { steps: (start..end).map(Step::Node).collect(), kernels: vec![], kernel_count: unfused_count, unfused_count, report: String::new() };
    }
    let fused = passes::fuse(&sub, &FuseOptions::default());
    let root = |k: NodeId| *fused.nodes[k].members.iter().max().expect("every kernel computes a node");
    let mut steps = Vec::new();
    let mut kernels = Vec::new();
    for node in &fused.nodes {
        let out = *node.members.iter().max().expect("every kernel computes a node");
        let inputs: Vec<NodeId> = node.inputs.iter().map(|&a| root(a)).collect();
        match &node.kernel {
            Kernel::Op(_) if out < start => {}
            // A lone elementwise op becomes a one-op generated kernel (vectorised exp/tanh).
            Kernel::Op(op) if op.is_elementwise() && !node.shape.is_unknown() => {
                let p = passes::fusion::program_of(op, node.inputs.len());
                let ptoks = program_tokens(&p);
                kernels.push(quote!(::tensorbrain::compile::codegen::GeneratedKernel::elementwise(&#ptoks)));
                steps.push(Step::Fused { out, inputs, kernel: kernels.len() - 1, program: p });
            }
            Kernel::Op(_) => steps.push(Step::Node(out)),
            Kernel::Fused(p) => {
                let ptoks = program_tokens(p);
                kernels.push(quote!(::tensorbrain::compile::codegen::GeneratedKernel::elementwise(&#ptoks)));
                steps.push(Step::Fused { out, inputs, kernel: kernels.len() - 1, program: p.clone() });
            }
            Kernel::Epilogue { head, head_inputs, tail } => {
                let (htoks, ptoks) = (crate::emit::op_tokens(head), program_tokens(tail));
                kernels.push(quote!(::tensorbrain::compile::codegen::GeneratedKernel::epilogue(#htoks, #head_inputs, &#ptoks)));
                steps.push(Step::Epilogue { out, inputs, kernel: kernels.len() - 1 });
            }
        }
    }
    let kernel_count = fused.nodes.iter().filter(|n| n.is_kernel() && !matches!(n.kernel, Kernel::Op(Op::Input { .. }))).count();
    RegionPlan { steps, kernels, kernel_count, unfused_count, report: report(&fused) }
}

/// One line per fused kernel, with the IR nodes it computes.
fn report(fused: &FusedGraph) -> String {
    let mut s = String::new();
    for n in &fused.nodes {
        let ops: Vec<String> = n.members.iter().map(|&m| format!("%{m} {}", fused.source.nodes[m].op.name())).collect();
        match &n.kernel {
            Kernel::Op(_) => {}
            Kernel::Fused(p) => s += &format!("  fused {} ops into 1 generated kernel: [{}]\n      {p}\n", n.members.len(), ops.join(", ")),
            Kernel::Epilogue { head, tail, .. } => {
                s += &format!("  {} with a {}-op epilogue: [{}]\n      {tail}\n", head.name(), tail.op_count(), ops.join(", "))
            }
        }
    }
    if s.is_empty() {
        s = "  nothing fused\n".into();
    }
    s
}

/// Tokens building an IR fused program.
fn program_tokens(p: &Program) -> TokenStream {
    let f = quote!(::tensorbrain::ir::passes::fusion);
    let ir = quote!(::tensorbrain::ir);
    let instrs = p.instrs.iter().map(|ins| match *ins {
        Instr::Input(k) => quote!(#f::Instr::Input(#k)),
        Instr::Const(c) => {
            let c = float(c);
            quote!(#f::Instr::Const(#c))
        }
        Instr::Unary(u, x) => {
            let u = crate::emit::unary_tokens(&u, quote!(#ir::UnaryOp));
            quote!(#f::Instr::Unary(#u, #x))
        }
        Instr::Sign(x) => quote!(#f::Instr::Sign(#x)),
        Instr::Binary(b, x, y) => {
            let b = format_ident!("{}", format!("{b:?}"));
            quote!(#f::Instr::Binary(#ir::BinaryOp::#b, #x, #y))
        }
        Instr::Scalar(op, c, x) => {
            let (o, c) = (format_ident!("{}", format!("{op:?}")), float(c));
            quote!(#f::Instr::Scalar(#ir::ScalarOp::#o, #c, #x))
        }
        Instr::Select { cmp, x, threshold, a, b } => {
            let (c, t) = (format_ident!("{}", format!("{cmp:?}")), float(threshold));
            quote!(#f::Instr::Select { cmp: #f::Cmp::#c, x: #x, threshold: #t, a: #a, b: #b })
        }
    });
    let fills = p.fill_shapes.iter().map(crate::emit::shape_tokens);
    let (n_inputs, out) = (p.n_inputs, p.out);
    quote!(#f::Program { n_inputs: #n_inputs, instrs: vec![#(#instrs),*], out: #out, fill_shapes: vec![#(#fills),*] })
}

/// An f64 literal that survives infinities and NaN.
fn float(c: f64) -> TokenStream {
    let bits = c.to_bits();
    quote!(f64::from_bits(#bits))
}

/// The generated per-element function of `p` (generic over the float type) and the call that
/// runs it over `args`.
pub fn elementwise_call(p: &Program, kernel: usize, args: &[TokenStream]) -> TokenStream {
    let cg = quote!(::tensorbrain::compile::codegen);
    let v = |k: usize| format_ident!("v{}", k);
    let body = p.instrs.iter().enumerate().map(|(k, ins)| {
        let d = v(k);
        let rhs = match *ins {
            Instr::Input(j) => quote!(i[#j]),
            Instr::Const(c) => {
                let c = float(c);
                quote!(#cg::constant::<T>(#c))
            }
            Instr::Unary(u, x) => {
                let (u, x) = (crate::emit::unary_tokens(&u, quote!(#cg::UnaryFn)), v(x));
                quote!(#cg::unary(#u, #x))
            }
            Instr::Sign(x) => {
                let x = v(x);
                quote!(#cg::unary(#cg::UnaryFn::Sign, #x))
            }
            Instr::Binary(b, x, y) => {
                let b = format_ident!(
                    "{}",
                    match b {
                        BinaryOp::Add => "Add",
                        BinaryOp::Sub => "Sub",
                        BinaryOp::Mul => "Mul",
                        BinaryOp::Div => "Div",
                        BinaryOp::Maximum => "Max",
                        BinaryOp::Minimum => "Min",
                    }
                );
                let (x, y) = (v(x), v(y));
                quote!(#cg::binary(#cg::BinaryFn::#b, #x, #y))
            }
            Instr::Scalar(ScalarOp::RDiv, c, x) => {
                // c / x, as the runtime computes it: x ** -1 * c.
                let (c, m1, x) = (float(c), float(-1.0), v(x));
                quote!(#cg::scalar(#cg::ScalarFn::Mul, #c, #cg::scalar(#cg::ScalarFn::Pow, #m1, #x)))
            }
            Instr::Scalar(op, c, x) => {
                let o = format_ident!("{}", format!("{op:?}"));
                let (c, x) = (float(c), v(x));
                quote!(#cg::scalar(#cg::ScalarFn::#o, #c, #x))
            }
            Instr::Select { cmp, x, threshold, a, b } => {
                let c = format_ident!(
                    "{}",
                    match cmp {
                        Cmp::Gt => "Gt",
                        Cmp::Ge => "Ge",
                        Cmp::Lt => "Lt",
                        Cmp::Le => "Le",
                    }
                );
                let (t, x, a, b) = (float(threshold), v(x), v(a), v(b));
                quote!(#cg::select(#cg::Cmp::#c, #x, #t, #a, #b))
            }
        };
        quote!(let #d: T = #rhs;)
    });
    let n = p.n_inputs;
    let out = v(p.out);
    quote! {{
        #[inline(always)]
        #[allow(unused_variables, clippy::all)]
        fn kernel<T: #cg::FusedFloat>(i: [T; #n]) -> T {
            #(#body)*
            #out
        }
        #cg::run_elementwise(&kernels[#kernel], [#(#cg::tensor(&#args)),*], kernel::<f32>, kernel::<f64>)?
    }}
}
