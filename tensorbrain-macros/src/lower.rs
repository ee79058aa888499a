//! Lowering `forward`'s body to the IR, checking every shape on the way. Errors carry the span
//! of the user's expression, so `cargo check` points at the offending line.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{BinOp, Expr, Ident, Lit, Pat, Stmt, Type, UnOp};
use tensorbrain_ir::op::{ConvGeometry, PoolGeometry};
use tensorbrain_ir::{BinaryOp, Dim, Graph, NodeId, Op, PoolKind, ReduceOp, ScalarOp, Shape, UnaryOp};

use crate::layers::{Layer, StaticLayer};

/// A field of the model struct.
pub struct Field {
    pub name: Ident,
    pub layer: Layer,
}

/// Something parameters and nested calls can live in: a field, or one element of an array
/// field. Its index orders parameter gradients (it follows `visit_params`).
#[derive(Clone)]
pub struct Holder {
    /// `self.fc1` or `self.blocks[2]`.
    pub access: TokenStream,
    /// `fc1` or `blocks.2`.
    pub path: String,
    pub layer: Layer,
}

/// Where a Param or Call node's value comes from.
#[derive(Clone)]
pub enum Source {
    /// Parameter `param` (index into the layer's parameter list) of holder `holder`.
    Param { holder: usize, param: usize, name: &'static str },
    /// The static interface of the nested model in holder `holder`.
    Call { holder: usize, ty: TokenStream },
}

pub struct Lowering<'a> {
    pub graph: Graph,
    pub sources: HashMap<NodeId, Source>,
    pub holders: Vec<Holder>,
    fields: &'a [Field],
    training: bool,
    vars: HashMap<String, NodeId>,
    /// Loop variables bound to layers: name -> holder.
    loop_layers: HashMap<String, usize>,
    /// Params already materialised, so two uses share a node.
    param_nodes: HashMap<(usize, usize), NodeId>,
}

const SUPPORTED: &str = "supported in forward: `let` bindings, assignments, `self.layer(x)`, tensor methods \
(relu, gelu, sigmoid, tanh, silu, exp, log, sqrt, softmax(dim), log_softmax(dim), flatten(start), reshape([..]), \
transpose(a, b), permute([..]), sum(dim), mean(dim), matmul(y)), `+ - * /` with tensors or numbers, \
`for layer in &self.layers { .. }` and `if self.training { .. } else { .. }`";

/// An error underlining all of `at` (stable proc macros cannot join spans, but
/// `new_spanned` marks from its first to its last token).
fn err(at: impl ToTokens, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(at, msg)
}

impl<'a> Lowering<'a> {
    pub fn new(fields: &'a [Field], training: bool) -> Self {
        let mut holders = Vec::new();
        for f in fields {
            let name = &f.name;
            match &f.layer {
                Layer::Array { elem, len, .. } => {
                    for i in 0..*len {
                        holders.push(Holder { access: quote!(self.#name[#i]), path: format!("{name}.{i}"), layer: (**elem).clone() });
                    }
                }
                layer => holders.push(Holder { access: quote!(self.#name), path: name.to_string(), layer: layer.clone() }),
            }
        }
        Lowering {
            graph: Graph::new(),
            sources: HashMap::new(),
            holders,
            fields,
            training,
            vars: HashMap::new(),
            loop_layers: HashMap::new(),
            param_nodes: HashMap::new(),
        }
    }

    pub fn input(&mut self, name: &Ident, shape: Shape) -> NodeId {
        let id = self.graph.add(Op::Input { name: name.to_string(), shape }, &[], name.to_string()).expect("inputs have no shape rule");
        self.vars.insert(name.to_string(), id);
        id
    }

    fn add(&mut self, op: Op, inputs: &[NodeId], span: &TokenStream, label: &str) -> syn::Result<NodeId> {
        self.graph.add(op, inputs, label).map_err(|e| err(span, e.message))
    }

    fn shape(&self, id: NodeId) -> &Shape {
        self.graph.shape(id)
    }

    /// Lowers a block's statements; returns its tail value, if any.
    pub fn block(&mut self, stmts: &[Stmt]) -> syn::Result<Option<NodeId>> {
        let mut tail = None;
        for (i, stmt) in stmts.iter().enumerate() {
            let last = i + 1 == stmts.len();
            match stmt {
                Stmt::Local(local) => {
                    let name = match &local.pat {
                        Pat::Ident(p) => p.ident.to_string(),
                        Pat::Type(t) => match &*t.pat {
                            Pat::Ident(p) => p.ident.to_string(),
                            other => return Err(err(other, "bind one tensor per `let`: `let h = ...;`")),
                        },
                        other => return Err(err(other, "bind one tensor per `let`: `let h = ...;`")),
                    };
                    let Some(init) = &local.init else { return Err(err(local, "`let` in forward needs a value")) };
                    let v = self.expr(&init.expr)?;
                    // `let h: tb![B, 8] = ...` states the shape: checked when known, adopted
                    // when the value comes from a nested model.
                    if let Pat::Type(t) = &local.pat {
                        let declared = crate::model_impl::tb_type(&t.ty)?.shape();
                        let got = self.graph.shape(v).clone();
                        if got.is_unknown() {
                            self.graph.nodes[v].shape = declared;
                        } else if got != declared {
                            return Err(err(&t.ty, format!("`{name}` is declared {declared} but the value is {got}")));
                        }
                    }
                    self.vars.insert(name, v);
                }
                Stmt::Expr(e, semi) => {
                    let v = self.statement_expr(e)?;
                    if last && semi.is_none() {
                        tail = v;
                    }
                }
                Stmt::Item(item) => return Err(err(item, format!("items cannot be declared inside forward; {SUPPORTED}"))),
                Stmt::Macro(m) => return Err(err(m, format!("macros are not supported inside forward; {SUPPORTED}"))),
            }
        }
        Ok(tail)
    }

    /// Expressions in statement position: assignments, loops, `if self.training`, `return`.
    fn statement_expr(&mut self, e: &Expr) -> syn::Result<Option<NodeId>> {
        match e {
            Expr::Assign(a) => {
                let Expr::Path(p) = &*a.left else { return Err(err(&a.left, "only variables can be assigned in forward")) };
                let name = p.path.to_token_stream().to_string();
                if !self.vars.contains_key(&name) {
                    return Err(err(&a.left, format!("`{name}` is not defined; bind it with `let` first")));
                }
                let v = self.expr(&a.right)?;
                // As in Rust, a variable keeps its type: assigning a different shape is an
                // error, and a value of unknown shape (from a nested model) takes the
                // variable's shape, which the run time then holds it to.
                let old = self.graph.shape(self.vars[&name]).clone();
                let new = self.graph.shape(v).clone();
                let v = if new.is_unknown() && !old.is_unknown() {
                    self.graph.nodes[v].shape = old;
                    v
                } else if !new.is_unknown() && !old.is_unknown() && new != old {
                    return Err(err(a, format!("`{name}` is {old} but this assigns {new}; bind the new shape with its own `let`")));
                } else {
                    v
                };
                self.vars.insert(name, v);
                Ok(None)
            }
            Expr::ForLoop(f) => {
                let Pat::Ident(var) = &*f.pat else { return Err(err(&f.pat, "loop over layers with a simple name: `for layer in &self.layers`")) };
                let field = self.loop_field(&f.expr)?;
                let first = self.holders.iter().position(|h| h.path.starts_with(&format!("{field}.")) || h.path == field);
                let len = match self.fields.iter().find(|fl| fl.name == field).map(|fl| &fl.layer) {
                    Some(Layer::Array { len, .. }) => *len,
                    _ => return Err(err(&f.expr, format!("`self.{field}` is not an array of layers; `for` loops run over fields like `layers: [Block; 4]`"))),
                };
                let first = first.expect("array fields have holders");
                for i in 0..len {
                    self.loop_layers.insert(var.ident.to_string(), first + i);
                    self.block(&f.body.stmts)?;
                }
                self.loop_layers.remove(&var.ident.to_string());
                Ok(None)
            }
            Expr::If(_) => self.expr(e).map(Some),
            Expr::Return(r) => match &r.expr {
                Some(v) => self.expr(v).map(Some),
                None => Err(err(r, "forward must return a tensor")),
            },
            other => self.expr(other).map(Some),
        }
    }

    /// `&self.blocks` or `self.blocks.iter()` -> "blocks".
    fn loop_field(&self, e: &Expr) -> syn::Result<String> {
        match e {
            Expr::Reference(r) => self.loop_field(&r.expr),
            Expr::MethodCall(m) if m.method == "iter" => self.loop_field(&m.receiver),
            Expr::Field(f) if is_self(&f.base) => Ok(f.member.to_token_stream().to_string()),
            other => Err(err(other, "`for` loops in forward run over a field of layers: `for layer in &self.layers`")),
        }
    }

    pub fn expr(&mut self, e: &Expr) -> syn::Result<NodeId> {
        match e {
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Group(g) => self.expr(&g.expr),
            Expr::Reference(r) => self.expr(&r.expr),
            Expr::Path(p) => {
                let name = p.path.to_token_stream().to_string();
                self.vars.get(&name).copied().ok_or_else(|| err(p, format!("`{name}` is not a tensor defined in forward")))
            }
            Expr::Block(b) => self.block(&b.block.stmts)?.ok_or_else(|| err(b, "this block has no value")),
            Expr::If(i) => {
                if !is_self_training(&i.cond) {
                    return Err(err(&i.cond, "forward branches only on `self.training`; other conditions would need data-dependent shapes"));
                }
                if self.training {
                    self.block(&i.then_branch.stmts)?.ok_or_else(|| err(&i.then_branch, "this branch has no value"))
                } else {
                    match &i.else_branch {
                        Some((_, e)) => self.expr(e),
                        None => Err(err(i, "`if self.training` used as a value needs an `else`")),
                    }
                }
            }
            Expr::Unary(u) => match u.op {
                UnOp::Neg(_) => {
                    let x = self.expr(&u.expr)?;
                    self.add(Op::Unary(UnaryOp::Neg), &[x], &u.to_token_stream(), "-x")
                }
                _ => Err(err(u, format!("unsupported operator; {SUPPORTED}"))),
            },
            Expr::Binary(b) => self.binary(b),
            Expr::MethodCall(m) => self.method_call(m),
            Expr::Call(c) => {
                // `layer(x)` for a loop variable bound to a layer, or `self.layers[i](x)`.
                let holder = match &*c.func {
                    Expr::Path(p) => {
                        let name = p.path.to_token_stream().to_string();
                        *self.loop_layers.get(&name).ok_or_else(|| err(p, format!("`{name}` is not a layer; call layers as `self.{name}(x)`")))?
                    }
                    Expr::Index(ix) => self.indexed_holder(ix)?,
                    other => return Err(err(other, format!("unsupported call; {SUPPORTED}"))),
                };
                let args = self.args(&c.args)?;
                self.layer_call(holder, &args, &c.to_token_stream())
            }
            other => Err(err(other, format!("{} not supported in forward; {SUPPORTED}", describe(other)))),
        }
    }

    fn indexed_holder(&self, ix: &syn::ExprIndex) -> syn::Result<usize> {
        let Expr::Field(f) = &*ix.expr else { return Err(err(ix, "index a field of layers: `self.layers[0](x)`")) };
        if !is_self(&f.base) {
            return Err(err(ix, "index a field of layers: `self.layers[0](x)`"));
        }
        let Some(i) = int_literal(&ix.index) else { return Err(err(&ix.index, "layer indices must be numbers")) };
        let path = format!("{}.{i}", f.member.to_token_stream());
        self.holders.iter().position(|h| h.path == path).ok_or_else(|| err(ix, format!("there is no layer `{path}`")))
    }

    fn args(&mut self, args: &syn::punctuated::Punctuated<Expr, syn::Token![,]>) -> syn::Result<Vec<NodeId>> {
        args.iter().map(|a| self.expr(a)).collect()
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> syn::Result<NodeId> {
        let op = match b.op {
            BinOp::Add(_) => BinaryOp::Add,
            BinOp::Sub(_) => BinaryOp::Sub,
            BinOp::Mul(_) => BinaryOp::Mul,
            BinOp::Div(_) => BinaryOp::Div,
            _ => return Err(err(b.op, format!("unsupported operator; {SUPPORTED}"))),
        };
        let span = &b.to_token_stream();
        let label = b.to_token_stream().to_string();
        match (number(&b.left), number(&b.right)) {
            (None, Some(c)) => {
                let x = self.expr(&b.left)?;
                let (sop, value) = match op {
                    BinaryOp::Add => (ScalarOp::Add, c),
                    BinaryOp::Sub => (ScalarOp::Add, -c),
                    BinaryOp::Mul => (ScalarOp::Mul, c),
                    BinaryOp::Div => (ScalarOp::Mul, 1.0 / c),
                    _ => unreachable!(),
                };
                self.add(Op::Scalar { op: sop, value }, &[x], span, &label)
            }
            (Some(c), None) => {
                let x = self.expr(&b.right)?;
                let (sop, value) = match op {
                    BinaryOp::Add => (ScalarOp::Add, c),
                    BinaryOp::Sub => (ScalarOp::RSub, c),
                    BinaryOp::Mul => (ScalarOp::Mul, c),
                    BinaryOp::Div => (ScalarOp::RDiv, c),
                    _ => unreachable!(),
                };
                self.add(Op::Scalar { op: sop, value }, &[x], span, &label)
            }
            (Some(_), Some(_)) => Err(err(b, "forward computes tensors; fold constant arithmetic into one number")),
            (None, None) => {
                let (l, r) = (self.expr(&b.left)?, self.expr(&b.right)?);
                self.add(Op::Binary(op), &[l, r], span, &label)
            }
        }
    }

    fn method_call(&mut self, m: &syn::ExprMethodCall) -> syn::Result<NodeId> {
        let span = &m.to_token_stream();
        let method = m.method.to_string();
        // `self.fc1(x)`: a layer call through its field name.
        if is_self(&m.receiver) {
            let holder = self
                .holders
                .iter()
                .position(|h| h.path == method)
                .ok_or_else(|| err(&m.method, format!("`{method}` is not a layer field of this model")))?;
            let args = self.args(&m.args)?;
            return self.layer_call(holder, &args, span);
        }
        // `self.fc1.forward(x)`
        if method == "forward" {
            if let Expr::Field(f) = &*m.receiver {
                if is_self(&f.base) {
                    let path = f.member.to_token_stream().to_string();
                    if let Some(holder) = self.holders.iter().position(|h| h.path == path) {
                        let args = self.args(&m.args)?;
                        return self.layer_call(holder, &args, span);
                    }
                }
            }
        }
        let x = self.expr(&m.receiver)?;
        let label = format!(".{method}()");
        if let Some(u) = UnaryOp::from_method(&method) {
            no_args(m, 0)?;
            return self.add(Op::Unary(u), &[x], span, &label);
        }
        let rank = if self.shape(x).is_unknown() { usize::MAX } else { self.shape(x).rank() };
        match method.as_str() {
            "elu" | "leaky_relu" => {
                no_args(m, 1)?;
                let a = number(&m.args[0]).ok_or_else(|| err(&m.args[0], "expected a number"))?;
                let u = if method == "elu" { UnaryOp::Elu(a) } else { UnaryOp::LeakyRelu(a) };
                self.add(Op::Unary(u), &[x], span, &label)
            }
            "softmax" | "log_softmax" => {
                no_args(m, 1)?;
                let dim = self.dim_arg(&m.args[0], rank)?;
                let op = if method == "softmax" { Op::Softmax { dim } } else { Op::LogSoftmax { dim } };
                self.add(op, &[x], span, &label)
            }
            "flatten" => {
                let start = if m.args.is_empty() { 1 } else { self.dim_arg(&m.args[0], rank)? };
                self.add(Op::Flatten { start }, &[x], span, &label)
            }
            "reshape" | "view" => {
                no_args(m, 1)?;
                let target = self.shape_arg(&m.args[0], x)?;
                self.add(Op::Reshape { shape: target }, &[x], span, &label)
            }
            "transpose" => {
                no_args(m, 2)?;
                let (a, b) = (self.dim_arg(&m.args[0], rank)?, self.dim_arg(&m.args[1], rank)?);
                self.add(Op::Transpose { dim0: a, dim1: b }, &[x], span, &label)
            }
            "t" => {
                no_args(m, 0)?;
                if rank != 2 && rank != usize::MAX {
                    return Err(err(span, format!("t() needs a 2-D tensor, got {}", self.shape(x))));
                }
                self.add(Op::Transpose { dim0: 0, dim1: 1 }, &[x], span, &label)
            }
            "permute" => {
                no_args(m, 1)?;
                let dims = self.list_arg(&m.args[0])?.iter().map(|&d| norm(d, rank).ok_or_else(|| err(&m.args[0], "dim out of range"))).collect::<syn::Result<Vec<_>>>()?;
                self.add(Op::Permute { dims }, &[x], span, &label)
            }
            "sum" | "mean" | "max" | "min" => {
                if m.args.is_empty() || m.args.len() > 2 {
                    return Err(err(span, format!("{method} takes a dim and an optional keepdim: `x.{method}(1)` or `x.{method}(1, true)`")));
                }
                let dim = self.dim_arg(&m.args[0], rank)?;
                let keepdim = match m.args.get(1) {
                    Some(Expr::Lit(l)) => matches!(&l.lit, Lit::Bool(b) if b.value),
                    Some(other) => return Err(err(other, "keepdim must be `true` or `false`")),
                    None => false,
                };
                let op = match method.as_str() {
                    "sum" => ReduceOp::Sum,
                    "mean" => ReduceOp::Mean,
                    "max" => ReduceOp::Max,
                    _ => ReduceOp::Min,
                };
                self.add(Op::Reduce { op, dims: vec![dim], keepdim }, &[x], span, &label)
            }
            "matmul" => {
                no_args(m, 1)?;
                let y = self.expr(&m.args[0])?;
                self.add(Op::Matmul, &[x, y], span, &label)
            }
            "pow" => {
                no_args(m, 1)?;
                let c = number(&m.args[0]).ok_or_else(|| err(&m.args[0], "pow takes a number"))?;
                self.add(Op::Scalar { op: ScalarOp::Pow, value: c }, &[x], span, &label)
            }
            _ => Err(err(&m.method, format!("`{method}` is not supported in forward; {SUPPORTED}"))),
        }
    }

    fn dim_arg(&self, e: &Expr, rank: usize) -> syn::Result<usize> {
        let d = signed_int(e).ok_or_else(|| err(e, "dims must be integer literals"))?;
        if rank == usize::MAX {
            // The rank is only known at run time (past a nested model): only dims counted from
            // the front mean the same thing then.
            return usize::try_from(d).map_err(|_| {
                err(e, "the shape here comes from a nested model and is only known at run time: count dims from the front, or state it with `let h: tb![...] = ...`")
            });
        }
        norm(d, rank).ok_or_else(|| err(e, format!("dim {d} is out of range for a tensor of rank {rank}")))
    }

    fn list_arg(&self, e: &Expr) -> syn::Result<Vec<i64>> {
        let elems = match e {
            Expr::Array(a) => a.elems.iter().collect::<Vec<_>>(),
            Expr::Tuple(t) => t.elems.iter().collect(),
            Expr::Reference(r) => return self.list_arg(&r.expr),
            other => return Err(err(other, "expected a list of integers: `[0, 2, 1]`")),
        };
        elems.into_iter().map(|x| signed_int(x).ok_or_else(|| err(x, "expected an integer"))).collect()
    }

    /// A reshape target: numbers, `-1`, and symbol names from the signature (`B`).
    fn shape_arg(&self, e: &Expr, x: NodeId) -> syn::Result<Shape> {
        let elems: Vec<&Expr> = match e {
            Expr::Array(a) => a.elems.iter().collect(),
            Expr::Tuple(t) => t.elems.iter().collect(),
            Expr::Reference(r) => return self.shape_arg(&r.expr, x),
            other => return Err(err(other, "reshape takes a list of sizes: `[B, 16, 4, 4]` (numbers, size names, or one -1)")),
        };
        let mut dims = Vec::new();
        let mut infer = None;
        for el in &elems {
            if let Some(v) = signed_int(el) {
                if v == -1 && infer.is_none() {
                    infer = Some(dims.len());
                    dims.push(Dim::Known(0));
                } else if v < 0 {
                    return Err(err(el, "sizes must be positive (one may be -1)"));
                } else {
                    dims.push(Dim::Known(v as usize));
                }
            } else if let Expr::Path(p) = el {
                dims.push(Dim::Sym(p.path.to_token_stream().to_string()));
            } else {
                return Err(err(el, "sizes are numbers, size names like `B`, or -1"));
            }
        }
        if let Some(i) = infer {
            let src = self.shape(x).clone();
            let known_src: usize = src.0.iter().filter_map(Dim::known).product();
            let known_dst: usize = dims.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, d)| d.known()).product();
            let mut src_syms: Vec<String> = src.0.iter().filter_map(|d| if let Dim::Sym(s) = d { Some(s.clone()) } else { None }).collect();
            let mut dst_syms: Vec<String> = dims.iter().filter_map(|d| if let Dim::Sym(s) = d { Some(s.clone()) } else { None }).collect();
            src_syms.sort();
            dst_syms.sort();
            if src_syms != dst_syms || known_dst == 0 || known_src % known_dst != 0 {
                return Err(err(e, format!("cannot infer -1 when reshaping {src} to {}", Shape(dims))));
            }
            dims[i] = Dim::Known(known_src / known_dst);
        }
        Ok(Shape(dims))
    }

    fn param(&mut self, holder: usize, index: usize, shape: Shape) -> NodeId {
        if let Some(&id) = self.param_nodes.get(&(holder, index)) {
            return id;
        }
        let name = self.holders[holder].layer.param_names()[index];
        let path = format!("{}.{name}", self.holders[holder].path);
        let id = self.graph.add(Op::Param { path: path.clone(), shape }, &[], path).expect("params have no shape rule");
        self.sources.insert(id, Source::Param { holder, param: index, name });
        self.param_nodes.insert((holder, index), id);
        id
    }

    /// The output shape of a static layer on input `xs`, or the input it expects.
    fn static_layer_shape(&self, kind: StaticLayer, xs: &Shape) -> Result<Shape, String> {
        let n = xs.0.first().map_or("N".to_string(), |d| d.to_string());
        match kind {
            StaticLayer::BatchNorm { spatial: 1, channels } => {
                if (xs.rank() == 2 || xs.rank() == 3) && xs.0[1] == Dim::Known(channels) {
                    return Ok(xs.clone());
                }
                Err(format!("[{n}, {channels}] or [{n}, {channels}, L]"))
            }
            StaticLayer::BatchNorm { channels, .. } => {
                if xs.rank() == 4 && xs.0[1] == Dim::Known(channels) {
                    return Ok(xs.clone());
                }
                Err(format!("[{n}, {channels}, H, W]"))
            }
            StaticLayer::RmsNorm { dim } => {
                if xs.0.last() == Some(&Dim::Known(dim)) {
                    return Ok(xs.clone());
                }
                let mut want = xs.0.clone();
                match want.last_mut() {
                    Some(d) => *d = Dim::Known(dim),
                    None => want.push(Dim::Known(dim)),
                }
                Err(Shape(want).to_string())
            }
            StaticLayer::AdaptiveAvgPool2d { out_h, out_w } => {
                if xs.rank() == 3 || xs.rank() == 4 {
                    let mut out = xs.0.clone();
                    let r = out.len();
                    out[r - 2] = Dim::Known(out_h);
                    out[r - 1] = Dim::Known(out_w);
                    return Ok(Shape(out));
                }
                Err(format!("[{n}, C, H, W] or [C, H, W]"))
            }
        }
    }

    /// A call of the layer in `holder` on `args`, with that layer's shape rule.
    fn layer_call(&mut self, holder: usize, args: &[NodeId], span: &TokenStream) -> syn::Result<NodeId> {
        let h = self.holders[holder].clone();
        let path = h.path.clone();
        let who = format!("`self.{path}` ({})", h.layer.describe());
        if args.len() != 1 {
            return Err(err(span, format!("{who} takes one tensor, got {} arguments", args.len())));
        }
        let x = args[0];
        let xs = self.shape(x).clone();
        let expects = |want: String| err(span, format!("{who} expects input {want}, but got {xs}"));
        // Past a nested model the shape is only known at run time, which checks it there.
        let known = !xs.is_unknown();
        match h.layer {
            Layer::Linear { inputs, outputs, bias } => {
                let last = xs.0.last().cloned();
                if known && last != Some(Dim::Known(inputs)) {
                    let mut want = xs.0.clone();
                    match want.last_mut() {
                        Some(d) => *d = Dim::Known(inputs),
                        None => want.push(Dim::Known(inputs)),
                    }
                    return Err(expects(Shape(want).to_string()));
                }
                let w = self.param(holder, 0, Shape(vec![Dim::Known(outputs), Dim::Known(inputs)]));
                let wt = self.add(Op::Transpose { dim0: 0, dim1: 1 }, &[w], span, &path)?;
                let mut y = self.add(Op::Matmul, &[x, wt], span, &path)?;
                if bias {
                    let b = self.param(holder, 1, Shape(vec![Dim::Known(outputs)]));
                    y = self.add(Op::Binary(BinaryOp::Add), &[y, b], span, &path)?;
                }
                Ok(y)
            }
            Layer::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
                if known && (xs.rank() != 4 || xs.0[1] != Dim::Known(in_channels)) {
                    let n = xs.0.first().map_or("N".to_string(), |d| d.to_string());
                    return Err(expects(format!("[{n}, {in_channels}, H, W]")));
                }
                let w = self.param(holder, 0, Shape(vec![Dim::Known(out_channels), Dim::Known(in_channels), Dim::Known(kernel), Dim::Known(kernel)]));
                let b = self.param(holder, 1, Shape(vec![Dim::Known(out_channels)]));
                let g = ConvGeometry { stride: [stride; 2], padding: [padding; 2], dilation: [1, 1], groups: 1 };
                self.graph.add(Op::Conv2d(g), &[x, w, b], &path).map_err(|e| err(span, format!("{who}: {}", e.message)))
            }
            Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
                let kind = if matches!(h.layer, Layer::MaxPool2d { .. }) { PoolKind::Max } else { PoolKind::Avg };
                let geometry = PoolGeometry { kernel: [kernel; 2], stride: [stride; 2], padding: [0, 0] };
                self.graph
                    .add(Op::Pool2d { kind, geometry, count_include_pad: true }, &[x], &path)
                    .map_err(|e| err(span, format!("{who}: {}", e.message)))
            }
            Layer::Flatten => {
                if known && xs.rank() < 2 {
                    return Err(expects("at least 2 dims [N, ...]".into()));
                }
                self.add(Op::Flatten { start: 1 }, &[x], span, &path)
            }
            Layer::Dropout { percent } => {
                if !self.training || percent == 0 {
                    return Ok(x);
                }
                let mask = self.add(Op::DropoutMask { p: percent as f64 / 100.0 }, &[x], span, &path)?;
                self.add(Op::Binary(BinaryOp::Mul), &[x, mask], span, &path)
            }
            Layer::Embedding { vocab, dim } => {
                let w = self.param(holder, 0, Shape(vec![Dim::Known(vocab), Dim::Known(dim)]));
                self.add(Op::Embedding, &[w, x], span, &path)
            }
            Layer::LayerNorm { dim } => {
                if known && xs.0.last() != Some(&Dim::Known(dim)) {
                    let mut want = xs.0.clone();
                    if let Some(d) = want.last_mut() {
                        *d = Dim::Known(dim);
                    }
                    return Err(expects(Shape(want).to_string()));
                }
                // (x - mean) / sqrt(var + eps) * weight + bias over the last dim, from primitives
                // so that autodiff and fusion see through it.
                let last = xs.rank() - 1;
                let mean = self.add(Op::Reduce { op: ReduceOp::Mean, dims: vec![last], keepdim: true }, &[x], span, &path)?;
                let xc = self.add(Op::Binary(BinaryOp::Sub), &[x, mean], span, &path)?;
                let sq = self.add(Op::Binary(BinaryOp::Mul), &[xc, xc], span, &path)?;
                let var = self.add(Op::Reduce { op: ReduceOp::Mean, dims: vec![last], keepdim: true }, &[sq], span, &path)?;
                let ve = self.add(Op::Scalar { op: ScalarOp::Add, value: 1e-5 }, &[var], span, &path)?;
                let rstd = self.add(Op::Scalar { op: ScalarOp::Pow, value: -0.5 }, &[ve], span, &path)?;
                let xn = self.add(Op::Binary(BinaryOp::Mul), &[xc, rstd], span, &path)?;
                let w = self.param(holder, 0, Shape(vec![Dim::Known(dim)]));
                let b = self.param(holder, 1, Shape(vec![Dim::Known(dim)]));
                let y = self.add(Op::Binary(BinaryOp::Mul), &[xn, w], span, &path)?;
                self.add(Op::Binary(BinaryOp::Add), &[y, b], span, &path)
            }
            Layer::Activation(u) => self.add(Op::Unary(u), &[x], span, &path),
            Layer::Array { .. } => Err(err(span, format!("`self.{path}` is an array of layers; loop over it (`for layer in &self.{path}`) or index it (`self.{path}[0](x)`)"))),
            Layer::Static { kind, .. } => {
                // Called through the layer's StaticModel impl, with its output shape known
                // (when the input's is) so checking goes on past it.
                let out = if known { self.static_layer_shape(kind, &xs).map_err(|want| expects(want))? } else { xs.clone() };
                let ty = h.layer.nested_type().expect("static layer type");
                let id = self.graph.add(Op::Call { path: path.clone(), out }, &[x], &path).map_err(|e| err(span, e.message))?;
                self.sources.insert(id, Source::Call { holder, ty });
                Ok(id)
            }
            Layer::Nested { .. } => {
                // Opaque here: its own expansion checked its body. The output shape is only
                // known at run time, so it gets fresh symbolic dims below.
                let ty = h.layer.nested_type().expect("nested");
                let out = Shape::unknown(&path);
                let id = self.graph.add(Op::Call { path: path.clone(), out }, &[x], &path).map_err(|e| err(span, e.message))?;
                self.sources.insert(id, Source::Call { holder, ty });
                Ok(id)
            }
        }
    }
}

/// What an unsupported expression is, in words.
fn describe(e: &Expr) -> &'static str {
    match e {
        Expr::While(_) => "`while` loops are",
        Expr::Loop(_) => "`loop` is",
        Expr::Match(_) => "`match` is",
        Expr::Closure(_) => "closures are",
        Expr::Macro(_) => "macros are",
        Expr::Index(_) => "indexing tensors is",
        Expr::Field(_) => "field access is",
        Expr::Lit(_) => "a bare literal is",
        Expr::Tuple(_) => "tuples are",
        Expr::Unsafe(_) => "`unsafe` is",
        _ => "this syntax is",
    }
}

fn is_self(e: &Expr) -> bool {
    matches!(e, Expr::Path(p) if p.path.is_ident("self"))
}

fn is_self_training(e: &Expr) -> bool {
    match e {
        Expr::Field(f) => is_self(&f.base) && f.member.to_token_stream().to_string() == "training",
        Expr::Paren(p) => is_self_training(&p.expr),
        _ => false,
    }
}

fn no_args(m: &syn::ExprMethodCall, n: usize) -> syn::Result<()> {
    if m.args.len() != n {
        return Err(err(m, format!("`{}` takes {n} argument{}", m.method, if n == 1 { "" } else { "s" })));
    }
    Ok(())
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Float(f) => f.base10_parse().ok(),
            Lit::Int(i) => i.base10_parse::<i64>().ok().map(|v| v as f64),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => number(&u.expr).map(|v| -v),
        Expr::Paren(p) => number(&p.expr),
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<usize> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn signed_int(e: &Expr) -> Option<i64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => signed_int(&u.expr).map(|v| -v),
        _ => None,
    }
}

fn norm(d: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let d = if d < 0 { d + r } else { d };
    (0..r).contains(&d).then_some(d as usize)
}

/// The IR type of a field, kept for the emitter.
#[allow(dead_code)]
pub fn field_type(ty: &Type) -> TokenStream {
    ty.to_token_stream()
}
