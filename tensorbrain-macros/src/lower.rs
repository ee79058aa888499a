//! Lowering `forward`'s body to the IR, checking every shape on the way. Errors carry the span
//! of the user's expression, so `cargo check` points at the offending line.
//!
//! Sizes are symbolic ([`Dim`]): numbers, the model's generic sizes (`D`), named constants
//! (`D_MODEL`), the symbolic sizes of `forward` (`B`, `T`) and arithmetic on them. A check
//! holds when the two sides are equal as polynomials; one that depends on the value of a named
//! constant becomes a `const` assertion that rustc evaluates ([`Lowering::asserts`]); one that
//! depends on a generic size must hold for every value of it, except divisibility (`D / H`),
//! which is required of each instantiation ([`Lowering::requires`]).

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{BinOp, Expr, FnArg, Ident, Lit, Pat, ReturnType, Stmt, Type, UnOp};
use tensorbrain_ir::op::{ConvGeometry, PoolGeometry};
use tensorbrain_ir::{BinaryOp, Dim, Graph, NodeId, Op, PoolKind, Poly, ReduceOp, ScalarOp, Shape, UnaryOp};

use crate::dims::{self, Scope, SymKind};
use crate::interface::{Gathered, Interface};
use crate::layers::{ArrayLen, Layer, StaticLayer};
use crate::tb::TbSpec;

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
    /// For a nested model: its signature with this field's sizes put in.
    pub iface: Option<Interface>,
}

/// Where a Param or Call node's value comes from.
#[derive(Clone)]
pub enum Source {
    /// Parameter `param` (index into the layer's parameter list) of holder `holder`.
    Param { holder: usize, param: usize, name: &'static str },
    /// The static interface of the nested model in holder `holder`, called at `line`.
    Call { holder: usize, line: String },
}

/// `left == right`, which depends on named constants: checked by a `const` assertion.
pub struct Assert {
    pub left: Dim,
    pub right: Dim,
    pub message: String,
    pub span: Span,
}

/// Helper methods of the model's impl and `#[model] fn`s it calls, inlined at each call.
#[derive(Default)]
pub struct Helpers {
    /// Methods of the `#[model] impl` other than `forward`, by name.
    pub methods: HashMap<String, syn::ImplItemFn>,
    /// Signatures of other models and `#[model] fn`s, by the path used.
    pub gathered: Gathered,
}

pub struct Lowering<'a> {
    pub graph: Graph,
    pub sources: HashMap<NodeId, Source>,
    pub holders: Vec<Holder>,
    /// Each node's element type (`f32`, `i64`, ...).
    pub dtypes: HashMap<NodeId, String>,
    pub asserts: Vec<Assert>,
    /// Divisibilities the model's generic sizes must satisfy.
    pub requires: Vec<(Dim, Dim)>,
    fields: &'a [Field],
    scope: &'a Scope,
    helpers: &'a Helpers,
    training: bool,
    /// The symbolic sizes of `forward`.
    symbols: Vec<String>,
    vars: HashMap<String, NodeId>,
    /// Loop variables bound to layers: name -> holder.
    loop_layers: HashMap<String, usize>,
    /// Params already materialised, so two uses share a node.
    param_nodes: HashMap<(usize, usize), NodeId>,
    /// Inside an inlined helper: its size names and what they are at this call.
    subst: Vec<HashMap<String, Dim>>,
}

const SUPPORTED: &str = "supported in forward: `let` bindings, assignments, `self.layer(x)`, helper methods and `#[model] fn`s, tensor methods \
(relu, gelu, sigmoid, tanh, silu, exp, log, sqrt, softmax(dim), log_softmax(dim), flatten(start), reshape([..]), \
transpose(a, b), permute([..]), narrow(dim, start, len), sum(dim), mean(dim), matmul(y)), `cat([a, b], dim)`, `+ - * /` with tensors or numbers, \
`for layer in &self.layers { .. }` and `if self.training { .. } else { .. }`";

/// An error underlining all of `at` (stable proc macros cannot join spans, but
/// `new_spanned` marks from its first to its last token).
fn err(at: impl ToTokens, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(at, msg)
}

/// `file:line` of a span, for run-time errors that point back at the model's source.
pub fn source_line(span: Span) -> String {
    let s = span.unwrap();
    format!("{}:{}", s.file(), s.line())
}

const FLOATS: &[&str] = &["f32", "f64", "f16", "bf16"];

impl<'a> Lowering<'a> {
    pub fn new(fields: &'a [Field], scope: &'a Scope, helpers: &'a Helpers, symbols: Vec<String>, training: bool) -> syn::Result<Self> {
        let mut holders = Vec::new();
        for f in fields {
            let name = &f.name;
            let iface = |layer: &Layer| -> syn::Result<Option<Interface>> {
                let Layer::Nested { path, args, span } = layer else { return Ok(None) };
                let Some(sig) = helpers.gathered.get(path) else {
                    return Err(syn::Error::new(*span, "internal: the signature of this nested model was not resolved"));
                };
                let mut values = Vec::new();
                for a in args {
                    match dims::parse_dim_arg(a)? {
                        Some(d) => values.push(d),
                        None => return Err(err(a, "expected a size")),
                    }
                }
                if values.len() != sig.generics.len() {
                    return Err(syn::Error::new(*span, format!("`{}` takes {} generic size arguments, got {}", sig.name, sig.generics.len(), values.len())));
                }
                sig.instantiate(&values).map(Some).map_err(|why| syn::Error::new(*span, format!("`{}`: {why}", layer.describe())))
            };
            match &f.layer {
                Layer::Array { elem, len: ArrayLen::Known(len), .. } => {
                    let iface = iface(elem)?;
                    for i in 0..*len {
                        holders.push(Holder { access: quote!(self.#name[#i]), path: format!("{name}.{i}"), layer: (**elem).clone(), iface: iface.clone() });
                    }
                }
                // A generic-length array is one holder: loops call the whole sequence.
                Layer::Array { elem, .. } => {
                    let iface = iface(elem)?;
                    holders.push(Holder { access: quote!(self.#name), path: name.to_string(), layer: f.layer.clone(), iface });
                }
                layer => holders.push(Holder { access: quote!(self.#name), path: name.to_string(), layer: layer.clone(), iface: iface(layer)? }),
            }
        }
        let mut requires = Vec::new();
        for h in &holders {
            if let Some(i) = &h.iface {
                requires.extend(i.requires.iter().cloned());
            }
        }
        Ok(Lowering {
            graph: Graph::new(),
            sources: HashMap::new(),
            holders,
            dtypes: HashMap::new(),
            asserts: Vec::new(),
            requires,
            fields,
            scope,
            helpers,
            training,
            symbols,
            vars: HashMap::new(),
            loop_layers: HashMap::new(),
            param_nodes: HashMap::new(),
            subst: Vec::new(),
        })
    }

    pub fn input(&mut self, name: &Ident, shape: Shape, dtype: &str) -> NodeId {
        let id = self.graph.add(Op::Input { name: name.to_string(), shape }, &[], name.to_string()).expect("inputs have no shape rule");
        self.vars.insert(name.to_string(), id);
        self.dtypes.insert(id, dtype.to_string());
        id
    }

    fn add(&mut self, op: Op, inputs: &[NodeId], span: &TokenStream, label: &str) -> syn::Result<NodeId> {
        let dtype = match &op {
            Op::Embedding => "f32".to_string(),
            _ => inputs.first().and_then(|i| self.dtypes.get(i)).cloned().unwrap_or_else(|| "f32".into()),
        };
        if let Op::Binary(_) = op {
            let (a, b) = (&self.dtypes[&inputs[0]], &self.dtypes[&inputs[1]]);
            if a != b {
                return Err(err(span, format!("cannot combine a {a} tensor with a {b} tensor; convert one first")));
            }
        }
        let id = self.graph.add(op, inputs, label).map_err(|e| err(span, e.message))?;
        self.dtypes.insert(id, dtype);
        Ok(id)
    }

    fn shape(&self, id: NodeId) -> &Shape {
        self.graph.shape(id)
    }

    fn dtype(&self, id: NodeId) -> &str {
        self.dtypes.get(&id).map(String::as_str).unwrap_or("f32")
    }

    /// Errors unless `x` holds floats (layers and math need them; integer tensors are ids).
    fn require_float(&self, x: NodeId, who: &str, span: &TokenStream) -> syn::Result<()> {
        let d = self.dtype(x);
        if FLOATS.contains(&d) {
            return Ok(());
        }
        Err(err(span, format!("{who} takes a floating-point tensor, but this one holds {d} (ids go into an `Embedding`)")))
    }

    /// A size as written here, with an inlined helper's names replaced by this call's sizes.
    fn resolve(&self, d: &Dim) -> Dim {
        match self.subst.last() {
            Some(map) if !map.is_empty() => d.substitute(&|s| map.get(s).cloned()).unwrap_or_else(|_| d.clone()),
            _ => d.clone(),
        }
    }

    fn resolve_shape(&self, s: &Shape) -> Shape {
        Shape(s.0.iter().map(|d| self.resolve(d)).collect())
    }

    /// Whether two sizes are the same. Equal polynomials are; sizes that differ only in named
    /// constants (`D_MODEL` against `64`) are assumed equal and asserted at compile time.
    fn same_dim(&mut self, a: &Dim, b: &Dim, message: &dyn Fn() -> String, span: Span) -> bool {
        if a == b {
            return true;
        }
        let diff = a.sub(b);
        let names = diff.symbols();
        if !names.is_empty() && names.iter().all(|s| self.scope.kind(s) == SymKind::NamedConst) {
            self.asserts.push(Assert { left: a.clone(), right: b.clone(), message: message(), span });
            return true;
        }
        false
    }

    /// Lowers a block's statements; returns its tail value, if any.
    pub fn block(&mut self, stmts: &[Stmt]) -> syn::Result<Option<NodeId>> {
        let mut tail = None;
        for (i, stmt) in stmts.iter().enumerate() {
            let last = i + 1 == stmts.len();
            match stmt {
                Stmt::Local(local) if matches!(&local.pat, Pat::Tuple(_)) => {
                    // `let (q, k, v) = (a, b, c);` binds each.
                    let (Pat::Tuple(pats), Some(init)) = (&local.pat, &local.init) else { unreachable!() };
                    let Expr::Tuple(vals) = &*init.expr else {
                        return Err(err(&init.expr, "a tuple pattern takes a tuple of tensors: `let (q, k) = (self.q(x), self.k(x));`"));
                    };
                    if pats.elems.len() != vals.elems.len() {
                        return Err(err(local, format!("{} names for {} values", pats.elems.len(), vals.elems.len())));
                    }
                    for (p, v) in pats.elems.iter().zip(&vals.elems) {
                        let Pat::Ident(p) = p else { return Err(err(p, "bind tensors to plain names")) };
                        let id = self.expr(v)?;
                        self.vars.insert(p.ident.to_string(), id);
                    }
                }
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
                    // when the value's shape is only known at run time.
                    if let Pat::Type(t) = &local.pat {
                        let spec = crate::model_impl::tb_type(&t.ty)?;
                        let declared = self.resolve_shape(&spec.shape());
                        let got = self.graph.shape(v).clone();
                        if got.is_unknown() {
                            self.graph.nodes[v].shape = declared;
                        } else if !self.same_shape(&got, &declared, t.ty.span(), &format!("`{name}`")) {
                            return Err(err(&t.ty, format!("`{name}` is declared {declared} but the value is {got}")));
                        }
                        if spec.dtype_name() != self.dtype(v) {
                            return Err(err(&t.ty, format!("`{name}` is declared {} but the value holds {}", spec.dtype_name(), self.dtype(v))));
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

    /// Shapes equal dim by dim (with named-constant assertions, see [`Self::same_dim`]).
    pub fn same_shape(&mut self, got: &Shape, want: &Shape, span: Span, what: &str) -> bool {
        if got.rank() != want.rank() {
            return false;
        }
        let msg = || format!("{what} is declared {want} but the value is {got}");
        got.0.iter().zip(&want.0).all(|(a, b)| {
            // `_` in a declaration matches anything.
            matches!(b, Dim::Sym(s) if s.starts_with('_')) || self.same_dim(a, b, &msg, span)
        })
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
                // error, and a value of unknown shape takes the variable's shape, which the
                // run time then holds it to.
                let old = self.graph.shape(self.vars[&name]).clone();
                let new = self.graph.shape(v).clone();
                if new.is_unknown() && !old.is_unknown() {
                    self.graph.nodes[v].shape = old;
                } else if !new.is_unknown() && !old.is_unknown() && !self.same_shape(&new, &old, a.span(), &format!("`{name}`")) {
                    return Err(err(a, format!("`{name}` is {old} but this assigns {new}; bind the new shape with its own `let`")));
                }
                self.vars.insert(name, v);
                Ok(None)
            }
            Expr::ForLoop(f) => {
                let Pat::Ident(var) = &*f.pat else { return Err(err(&f.pat, "loop over layers with a simple name: `for layer in &self.layers`")) };
                let field = self.loop_field(&f.expr)?;
                let first = self.holders.iter().position(|h| h.path.starts_with(&format!("{field}.")) || h.path == field);
                let len = match self.fields.iter().find(|fl| fl.name == field).map(|fl| &fl.layer) {
                    Some(Layer::Array { len: ArrayLen::Known(len), .. }) => *len,
                    Some(Layer::Array { len: ArrayLen::Sized(len), .. }) => {
                        let len = len.clone();
                        return self.loop_sequence(f, &field, &len).map(|_| None);
                    }
                    Some(_) => return Err(err(&f.expr, format!("`self.{field}` is not an array of layers; `for` loops run over fields like `layers: [Block; 4]`"))),
                    None => return Err(err(&f.expr, format!("`{field}` is not a field of this model{}", self.suggest(&field)))),
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

    /// `for block in &self.blocks { h = block(h); }` over an array of generic length: one call
    /// of the whole sequence, whose elements must keep their input's shape.
    fn loop_sequence(&mut self, f: &syn::ExprForLoop, field: &str, len: &Dim) -> syn::Result<()> {
        let Pat::Ident(var) = &*f.pat else { unreachable!("checked by the caller") };
        let usage = || {
            err(
                &f.body,
                format!("`self.{field}` has the generic length `{len}`, so a loop over it runs its elements in sequence: write its body as `h = {}(h);`", var.ident),
            )
        };
        let [stmt] = f.body.stmts.as_slice() else { return Err(usage()) };
        let Stmt::Expr(Expr::Assign(a), _) = stmt else { return Err(usage()) };
        let (Expr::Path(target), Expr::Call(c)) = (&*a.left, &*a.right) else { return Err(usage()) };
        let called = matches!(&*c.func, Expr::Path(p) if p.path.is_ident(&var.ident));
        let arg_is_target = c.args.len() == 1 && matches!(&c.args[0], Expr::Path(p) if crate::layers::same_path(&p.path, &target.path));
        if !called || !arg_is_target {
            return Err(usage());
        }
        let name = target.path.to_token_stream().to_string();
        let x = *self.vars.get(&name).ok_or_else(|| err(target, format!("`{name}` is not defined; bind it with `let` first")))?;
        let holder = self.holders.iter().position(|h| h.path == field).expect("a generic-length array has one holder");
        let h = self.holders[holder].clone();
        let Layer::Array { elem, .. } = &h.layer else { unreachable!() };
        let who = format!("each of `self.{field}` ({})", elem.describe());
        let span = c.to_token_stream();
        let xs = self.shape(x).clone();
        let out = match &**elem {
            Layer::Nested { .. } => self.nested_output(h.iface.as_ref().expect("nested"), &who, x, &span)?,
            Layer::Static { kind } => self.static_layer_shape(kind, &xs, span.span()).map_err(|want| err(&span, format!("{who} expects input {want}, but got {xs}")))?,
            _ => unreachable!("validated: generic-length arrays hold models"),
        };
        if !self.same_shape(&out, &xs, span.span(), &who) {
            return Err(err(&span, format!("{who} maps {xs} to {out}; in a loop over an array of generic length each element must keep its input's shape")));
        }
        let id = self.call_node(holder, x, xs, &span)?;
        if let Some(iface) = &h.iface {
            self.dtypes.insert(id, iface.output.dtype.clone());
        }
        self.vars.insert(name, id);
        Ok(())
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

    /// " ; did you mean `fc_3`?" when a field or helper has a close name.
    fn suggest(&self, name: &str) -> String {
        let mut names: Vec<String> = self.fields.iter().map(|f| f.name.to_string()).collect();
        names.extend(self.helpers.methods.keys().cloned());
        let best = names.iter().map(|n| (edit_distance(&n.replace('_', ""), &name.replace('_', "")).min(edit_distance(n, name)), n)).min();
        match best {
            Some((d, n)) if d <= 2 && d < name.len() => format!("; did you mean `{n}`?"),
            _ => String::new(),
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
            Expr::Call(c) => self.call(c),
            other => Err(err(other, format!("{} not supported in forward; {SUPPORTED}", describe(other)))),
        }
    }

    /// `layer(x)` for a loop variable, `self.layers[i](x)`, `cat([a, b], dim)`, or a
    /// `#[model] fn` helper.
    fn call(&mut self, c: &syn::ExprCall) -> syn::Result<NodeId> {
        let span = c.to_token_stream();
        if let Expr::Path(p) = &*c.func {
            if is_builtin_function(&p.path) {
                return self.concat(c);
            }
        }
        let holder = match &*c.func {
            Expr::Path(p) => {
                let name = p.path.to_token_stream().to_string();
                match self.loop_layers.get(&name) {
                    Some(&h) => h,
                    None => {
                        let Some(iface) = self.helpers.gathered.get(&p.path).cloned() else {
                            return Err(err(p, format!("`{name}` is not a layer or a helper this model can see; call layers as `self.{name}(x)`, and mark helper functions `#[model] fn {name}(...)`")));
                        };
                        let Some(item) = &iface.item else {
                            return Err(err(p, format!("`{name}` is a model, not a function; hold it in a field and call it as `self.field(x)`")));
                        };
                        let item: syn::ItemFn = syn::parse2(item.clone())?;
                        let args = self.args(&c.args)?;
                        return self.inline(&item.sig, &item.block.stmts, &args, &span);
                    }
                }
            }
            Expr::Index(ix) => self.indexed_holder(ix)?,
            other => return Err(err(other, format!("unsupported call; {SUPPORTED}"))),
        };
        let args = self.args(&c.args)?;
        self.layer_call(holder, &args, &span)
    }

    /// `cat([a, b, ..], dim)`: sizes along `dim` add up (`D + D` is `2*D`).
    fn concat(&mut self, c: &syn::ExprCall) -> syn::Result<NodeId> {
        let span = c.to_token_stream();
        if c.args.len() != 2 {
            return Err(err(c, "cat takes a list of tensors and a dim: `cat([a, b], 1)`"));
        }
        let list = match &c.args[0] {
            Expr::Array(a) => a.elems.iter().collect::<Vec<_>>(),
            Expr::Reference(r) => match &*r.expr {
                Expr::Array(a) => a.elems.iter().collect(),
                other => return Err(err(other, "cat takes a list of tensors: `cat([a, b], 1)`")),
            },
            other => return Err(err(other, "cat takes a list of tensors: `cat([a, b], 1)`")),
        };
        if list.is_empty() {
            return Err(err(c, "cat needs at least one tensor"));
        }
        let xs = list.into_iter().map(|e| self.expr(e)).collect::<syn::Result<Vec<_>>>()?;
        let rank = self.shape(xs[0]).rank();
        let dim = self.dim_arg(&c.args[1], rank)?;
        self.add(Op::Concat { dim }, &xs, &span, "cat")
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
        // `self.fc1(x)`: a layer call through its field name, or a helper method.
        if is_self(&m.receiver) {
            if let Some(holder) = self.holders.iter().position(|h| h.path == method) {
                let args = self.args(&m.args)?;
                return self.layer_call(holder, &args, span);
            }
            if let Some(f) = self.helpers.methods.get(&method).cloned() {
                let args = self.args(&m.args)?;
                return self.inline(&f.sig, &f.block.stmts, &args, span);
            }
            let what = if self.fields.iter().any(|f| f.name == method) { "an array of layers; index it (`self.x[0](h)`) or loop over it" } else { "not a layer field or helper method of this model" };
            return Err(err(&m.method, format!("`{method}` is {what}{}", self.suggest(&method))));
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
            if u != UnaryOp::Neg {
                self.require_float(x, &format!("`{method}`"), span)?;
            }
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
                self.require_float(x, &format!("`{method}`"), span)?;
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
                self.require_float(x, "`matmul`", span)?;
                self.add(Op::Matmul, &[x, y], span, &label)
            }
            "narrow" => {
                no_args(m, 3)?;
                let dim = self.dim_arg(&m.args[0], rank)?;
                let (Some(start), Some(len)) = (int_literal(&m.args[1]), int_literal(&m.args[2])) else {
                    return Err(err(span, "narrow takes a dim, a start and a length, as numbers: `x.narrow(1, 0, 16)`"));
                };
                if let Dim::Known(n) = self.shape(x).0[dim] {
                    if start + len > n {
                        return Err(err(span, format!("narrow {start}..{} is out of range for dim {dim} of {}", start + len, self.shape(x))));
                    }
                }
                self.add(Op::Narrow { dim, start, len }, &[x], span, &label)
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
            // The rank is only known at run time: only dims counted from the front mean the
            // same thing then.
            return usize::try_from(d).map_err(|_| {
                err(e, "the shape here is only known at run time: count dims from the front, or state it with `let h: tb![...] = ...`")
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

    /// Whether a size name means something in this forward (a symbolic size of its
    /// signature, a generic size of the model, a named constant, or a helper's size).
    fn known_name(&self, s: &str) -> bool {
        self.symbols.iter().any(|x| x == s) || self.scope.kind(s) != SymKind::Forward || self.subst.last().is_some_and(|m| m.contains_key(s))
    }

    /// A reshape target: sizes (numbers, names like `B` or `D_MODEL`, arithmetic like
    /// `D / H`) and at most one `-1`, inferred symbolically.
    fn shape_arg(&mut self, e: &Expr, x: NodeId) -> syn::Result<Shape> {
        let elems: Vec<&Expr> = match e {
            Expr::Array(a) => a.elems.iter().collect(),
            Expr::Tuple(t) => t.elems.iter().collect(),
            Expr::Reference(r) => return self.shape_arg(&r.expr, x),
            other => return Err(err(other, "reshape takes a list of sizes: `[B, T, 4, 16]` (numbers, size names, arithmetic like `D / H`, or one -1)")),
        };
        let mut dims = Vec::new();
        let mut infer = None;
        for el in &elems {
            if let Some(v) = signed_int(el) {
                if v == -1 && infer.is_none() {
                    infer = Some(dims.len());
                    dims.push(Dim::Known(1));
                    continue;
                } else if v <= 0 {
                    return Err(err(el, "sizes must be positive (one may be -1)"));
                }
            }
            let d = dims::parse_dim(el)?;
            for s in d.symbols() {
                if !self.known_name(&s) {
                    return Err(err(el, format!("`{s}` is not a size of this forward: use the names in its signature, the model's generic sizes or constants")));
                }
            }
            dims.push(self.resolve(&d));
        }
        let src = self.shape(x).clone();
        if let Some(i) = infer {
            if src.is_unknown() {
                return Err(err(e, "the shape here is only known at run time; state it with `let h: tb![...] = ...` before reshaping with -1"));
            }
            let rest = Shape(dims.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, d)| d.clone()).collect()).numel_dim();
            let total = src.numel_dim();
            dims[i] = match total.div_exact(&rest) {
                Ok(d) if !d.is_nonpositive_constant() => d,
                _ => return Err(err(e, format!("cannot infer -1 when reshaping {src} ({total} elements) into a multiple of {rest}"))),
            };
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
        self.dtypes.insert(id, "f32".into());
        id
    }

    /// The output shape of a static layer on input `xs`, or the input it expects.
    fn static_layer_shape(&mut self, kind: &StaticLayer, xs: &Shape, span: Span) -> Result<Shape, String> {
        let n = xs.0.first().map_or("N".to_string(), |d| d.to_string());
        let msg = || "a layer's size".to_string();
        match kind {
            StaticLayer::BatchNorm { spatial: 1, channels } => {
                if (xs.rank() == 2 || xs.rank() == 3) && self.same_dim(&xs.0[1], channels, &msg, span) {
                    return Ok(xs.clone());
                }
                Err(format!("[{n}, {channels}] or [{n}, {channels}, L]"))
            }
            StaticLayer::BatchNorm { channels, .. } => {
                if xs.rank() == 4 && self.same_dim(&xs.0[1], channels, &msg, span) {
                    return Ok(xs.clone());
                }
                Err(format!("[{n}, {channels}, H, W]"))
            }
            StaticLayer::RmsNorm { dim } => {
                if let Some(last) = xs.0.last() {
                    if self.same_dim(last, dim, &msg, span) {
                        return Ok(xs.clone());
                    }
                }
                Err(with_last(xs, dim).to_string())
            }
            StaticLayer::AdaptiveAvgPool2d { out_h, out_w } => {
                if xs.rank() == 3 || xs.rank() == 4 {
                    let mut out = xs.0.clone();
                    let r = out.len();
                    out[r - 2] = Dim::Known(*out_h);
                    out[r - 1] = Dim::Known(*out_w);
                    return Ok(Shape(out));
                }
                Err(format!("[{n}, C, H, W] or [C, H, W]"))
            }
            StaticLayer::GroupNorm { channels, .. } => {
                if xs.rank() >= 2 && self.same_dim(&xs.0[1], channels, &msg, span) {
                    return Ok(xs.clone());
                }
                Err(format!("[{n}, {channels}, ...]"))
            }
            StaticLayer::InstanceNorm { spatial, channels } => {
                let batched = xs.rank() == 2 + spatial && self.same_dim(&xs.0[1], channels, &msg, span);
                let unbatched = xs.rank() == 1 + spatial && self.same_dim(&xs.0[0], channels, &msg, span);
                if batched || unbatched {
                    return Ok(xs.clone());
                }
                Err(if *spatial == 1 { format!("[{n}, {channels}, L] or [{channels}, L]") } else { format!("[{n}, {channels}, H, W] or [{channels}, H, W]") })
            }
            StaticLayer::ConvTranspose2d { in_channels, out_channels, kernel, stride, padding, output_padding } => {
                let channel_dim = xs.rank().checked_sub(3);
                let fits = matches!(xs.rank(), 3 | 4) && self.same_dim(&xs.0[channel_dim.unwrap_or(0)], in_channels, &msg, span);
                if !fits {
                    return Err(format!("[{n}, {in_channels}, H, W] or [{in_channels}, H, W]"));
                }
                // (size - 1)·stride - 2·padding + kernel + output_padding, kept symbolic.
                let grow = (*kernel + *output_padding) as i64 - 2 * *padding as i64 - *stride as i64;
                let upsample = |d: &Dim| Dim::from_poly(d.poly().mul(&Poly::constant(*stride as i64)).add(&Poly::constant(grow)));
                let mut out = xs.0.clone();
                let r = out.len();
                out[r - 3] = out_channels.clone();
                out[r - 2] = upsample(&xs.0[r - 2]);
                out[r - 1] = upsample(&xs.0[r - 1]);
                if out[r - 2].is_nonpositive_constant() || out[r - 1].is_nonpositive_constant() {
                    return Err(format!("an input larger than {xs} (the output would be empty)"));
                }
                Ok(Shape(out))
            }
            StaticLayer::EmbeddingBag { dim, .. } => {
                if xs.rank() == 2 {
                    return Ok(Shape(vec![xs.0[0].clone(), dim.clone()]));
                }
                Err(format!("ids [{n}, L] (one bag per row)"))
            }
            StaticLayer::SameShape { .. } => Ok(xs.clone()),
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
        let sp = span.span();
        let expects = |want: String, hint: String| err(span, format!("{who} expects input {want}, but got {xs}{hint}"));
        // Past a module with no static signature, the shape is only known at run time,
        // which checks it there.
        let known = !xs.is_unknown();
        let mismatch = || format!("{who}: the input size does not match the layer's");
        match h.layer {
            Layer::Linear { ref inputs, ref outputs, bias } => {
                if known {
                    self.require_float(x, &who, span)?;
                    let fits = match xs.0.last() {
                        Some(last) => self.same_dim(&last.clone(), inputs, &mismatch, sp),
                        None => false,
                    };
                    if !fits {
                        // A rank-3+ input whose trailing sizes multiply to the width wants a flatten.
                        if xs.rank() >= 3 && Shape(xs.0[1..].to_vec()).numel_dim() == *inputs {
                            let flat = format!("[{}, {inputs}]", xs.0[0]);
                            return Err(expects(flat.clone(), format!("; flatten it first (`.flatten(1)` gives {flat})")));
                        }
                        return Err(expects(with_last(&xs, inputs).to_string(), String::new()));
                    }
                }
                // The weight takes the input's own name for its width, which the check above
                // found equal (perhaps by a const assertion: `D_MODEL` against `64`).
                let width = if known { xs.0.last().cloned().unwrap_or_else(|| inputs.clone()) } else { inputs.clone() };
                let w = self.param(holder, 0, Shape(vec![outputs.clone(), width]));
                let wt = self.add(Op::Transpose { dim0: 0, dim1: 1 }, &[w], span, &path)?;
                let mut y = self.add(Op::Matmul, &[x, wt], span, &path)?;
                if bias {
                    let b = self.param(holder, 1, Shape(vec![outputs.clone()]));
                    y = self.add(Op::Binary(BinaryOp::Add), &[y, b], span, &path)?;
                }
                Ok(y)
            }
            Layer::Conv2d { ref in_channels, ref out_channels, kernel, stride, padding } => {
                if known {
                    self.require_float(x, &who, span)?;
                    if xs.rank() != 4 || !self.same_dim(&xs.0[1].clone(), in_channels, &mismatch, sp) {
                        let n = xs.0.first().map_or("N".to_string(), |d| d.to_string());
                        return Err(expects(format!("[{n}, {in_channels}, H, W]"), String::new()));
                    }
                }
                let w = self.param(holder, 0, Shape(vec![out_channels.clone(), in_channels.clone(), Dim::Known(kernel), Dim::Known(kernel)]));
                let b = self.param(holder, 1, Shape(vec![out_channels.clone()]));
                let g = ConvGeometry { stride: [stride; 2], padding: [padding; 2], dilation: [1, 1], groups: 1 };
                self.add(Op::Conv2d(g), &[x, w, b], span, &path).map_err(|e| err(span, format!("{who}: {}", e.to_string().trim_start_matches("conv2d "))))
            }
            Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
                let kind = if matches!(h.layer, Layer::MaxPool2d { .. }) { PoolKind::Max } else { PoolKind::Avg };
                let geometry = PoolGeometry { kernel: [kernel; 2], stride: [stride; 2], padding: [0, 0] };
                self.add(Op::Pool2d { kind, geometry, count_include_pad: true }, &[x], span, &path).map_err(|e| err(span, format!("{who}: {e}")))
            }
            Layer::Flatten => {
                if known && xs.rank() < 2 {
                    return Err(expects("at least 2 dims [N, ...]".into(), String::new()));
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
            Layer::Embedding { ref vocab, ref dim } => {
                let d = self.dtype(x).to_string();
                if !matches!(d.as_str(), "i64" | "i32") {
                    return Err(err(span, format!("{who} looks up integer ids (`tb![B, T; i64]`), but this tensor holds {d}")));
                }
                let w = self.param(holder, 0, Shape(vec![vocab.clone(), dim.clone()]));
                self.add(Op::Embedding, &[w, x], span, &path)
            }
            Layer::LayerNorm { ref dim } => {
                if known {
                    self.require_float(x, &who, span)?;
                    let fits = match xs.0.last() {
                        Some(last) => self.same_dim(&last.clone(), dim, &mismatch, sp),
                        None => false,
                    };
                    if !fits {
                        return Err(expects(with_last(&xs, dim).to_string(), String::new()));
                    }
                }
                // (x - mean) / sqrt(var + eps) * weight + bias over the last dim, from primitives
                // so that autodiff and fusion see through it.
                let last = if known { xs.rank() - 1 } else { return Err(err(span, format!("{who}: the rank of its input is only known at run time; state it with `let h: tb![...] = ...`"))) };
                let mean = self.add(Op::Reduce { op: ReduceOp::Mean, dims: vec![last], keepdim: true }, &[x], span, &path)?;
                let xc = self.add(Op::Binary(BinaryOp::Sub), &[x, mean], span, &path)?;
                let sq = self.add(Op::Binary(BinaryOp::Mul), &[xc, xc], span, &path)?;
                let var = self.add(Op::Reduce { op: ReduceOp::Mean, dims: vec![last], keepdim: true }, &[sq], span, &path)?;
                let ve = self.add(Op::Scalar { op: ScalarOp::Add, value: 1e-5 }, &[var], span, &path)?;
                let rstd = self.add(Op::Scalar { op: ScalarOp::Pow, value: -0.5 }, &[ve], span, &path)?;
                let xn = self.add(Op::Binary(BinaryOp::Mul), &[xc, rstd], span, &path)?;
                let width = xs.0[last].clone();
                let w = self.param(holder, 0, Shape(vec![width.clone()]));
                let b = self.param(holder, 1, Shape(vec![width]));
                let y = self.add(Op::Binary(BinaryOp::Mul), &[xn, w], span, &path)?;
                self.add(Op::Binary(BinaryOp::Add), &[y, b], span, &path)
            }
            Layer::Activation(u) => {
                self.require_float(x, &who, span)?;
                self.add(Op::Unary(u), &[x], span, &path)
            }
            Layer::Array { .. } => Err(err(span, format!("`self.{path}` is an array of layers; loop over it (`for layer in &self.{path}`) or index it (`self.{path}[0](x)`)"))),
            Layer::Static { ref kind } => {
                // Called through the layer's StaticModel impl, with its output shape known
                // (when the input's is) so checking goes on past it.
                let looks_up_ids = matches!(kind, StaticLayer::EmbeddingBag { .. });
                if looks_up_ids {
                    let d = self.dtype(x).to_string();
                    if !matches!(d.as_str(), "i64" | "i32") {
                        return Err(err(span, format!("{who} looks up integer ids (`tb![B, L; i64]`), but this tensor holds {d}")));
                    }
                }
                let out = if known {
                    if !looks_up_ids {
                        self.require_float(x, &who, span)?;
                    }
                    self.static_layer_shape(kind, &xs, sp).map_err(|want| expects(want, String::new()))?
                } else {
                    xs.clone()
                };
                let id = self.call_node(holder, x, out, span)?;
                if looks_up_ids {
                    self.dtypes.insert(id, "f32".into());
                }
                Ok(id)
            }
            Layer::Nested { .. } => {
                let iface = h.iface.clone().expect("nested models have signatures");
                let out = self.nested_output(&iface, &who, x, span)?;
                let id = self.call_node(holder, x, out, span)?;
                self.dtypes.insert(id, iface.output.dtype.clone());
                Ok(id)
            }
            Layer::Dynamic { .. } => {
                // No signature: the output shape is only known at run time.
                let out = Shape::unknown(&path);
                self.call_node(holder, x, out, span)
            }
        }
    }

    fn call_node(&mut self, holder: usize, x: NodeId, out: Shape, span: &TokenStream) -> syn::Result<NodeId> {
        let path = self.holders[holder].path.clone();
        let id = self.add(Op::Call { path: path.clone(), out }, &[x], span, &path)?;
        self.sources.insert(id, Source::Call { holder, line: source_line(span.span()) });
        Ok(id)
    }

    /// Checks `x` against a nested model's (instantiated) input and gives its output shape:
    /// the model's symbolic sizes (`B`) are bound to the argument's dims.
    fn nested_output(&mut self, iface: &Interface, who: &str, x: NodeId, span: &TokenStream) -> syn::Result<Shape> {
        let [input] = iface.inputs.as_slice() else {
            return Err(err(span, format!("{who}: nested models called from forward take one tensor for now; its forward takes {}", iface.inputs.len())));
        };
        let xs = self.shape(x).clone();
        let want = Shape(input.dims.iter().enumerate().map(|(i, d)| d.clone().unwrap_or_else(|| Dim::Sym(format!("_{i}")))).collect());
        if xs.is_unknown() {
            return Err(err(span, format!("{who} expects input {want}, but this value's shape is only known at run time; state it with `let h: tb![...] = ...`")));
        }
        let mismatch = || err(span, format!("{who} expects input {want}, but got {xs}"));
        if xs.rank() != input.dims.len() {
            return Err(mismatch());
        }
        let mut bound: HashMap<String, Dim> = HashMap::new();
        for (p, a) in input.dims.iter().zip(&xs.0) {
            let Some(p) = p else { continue };
            if let Dim::Sym(s) = p {
                if iface.symbols.contains(s) {
                    match bound.get(s) {
                        None => {
                            bound.insert(s.clone(), a.clone());
                            continue;
                        }
                        Some(b) if b == a => continue,
                        Some(_) => return Err(mismatch()),
                    }
                }
            }
            let p = p.substitute(&|s| bound.get(s).cloned()).map_err(|w| err(span, w))?;
            let msg = || format!("{who}: input size mismatch");
            if !self.same_dim(a, &p, &msg, span.span()) {
                return Err(mismatch());
            }
        }
        if input.dtype != self.dtype(x) {
            return Err(err(span, format!("{who} takes {} input, but this tensor holds {}", input.dtype, self.dtype(x))));
        }
        let mut out = Vec::new();
        for (i, d) in iface.output.dims.iter().enumerate() {
            let Some(d) = d else {
                out.push(Dim::Sym(format!("?{}.{i}", iface.name)));
                continue;
            };
            for s in d.symbols() {
                if iface.symbols.contains(&s) && !bound.contains_key(&s) {
                    return Err(err(span, format!("{who}: its output size `{s}` is not a size of its input, so it cannot be known here")));
                }
            }
            out.push(d.substitute(&|s| bound.get(s).cloned()).map_err(|w| err(span, w))?);
        }
        Ok(Shape(out))
    }

    /// Inlines a helper (a method of the impl or a `#[model] fn`) at a call: its parameters
    /// are bound to the arguments (their sizes unified with the declared ones), its body is
    /// lowered in place, and the result is checked against its declared return type.
    fn inline(&mut self, sig: &syn::Signature, body: &[Stmt], args: &[NodeId], span: &TokenStream) -> syn::Result<NodeId> {
        let name = sig.ident.to_string();
        if self.subst.len() > 16 {
            return Err(err(span, format!("`{name}` calls itself too deeply to inline")));
        }
        // The helper's own generic parameters: sizes (`B: Dim`) and whole shapes (`S: Shape`).
        let mut shape_params: Vec<String> = Vec::new();
        let mut own_sizes: Vec<String> = Vec::new();
        for g in &sig.generics.params {
            if let syn::GenericParam::Type(t) = g {
                if t.bounds.iter().any(|b| b.to_token_stream().to_string().ends_with("Shape")) {
                    shape_params.push(t.ident.to_string());
                } else {
                    own_sizes.push(t.ident.to_string());
                }
            }
        }
        let params: Vec<&syn::PatType> = sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect();
        if params.len() != args.len() {
            return Err(err(span, format!("`{name}` takes {} tensor{}, got {}", params.len(), if params.len() == 1 { "" } else { "s" }, args.len())));
        }
        let mut sizes: HashMap<String, Dim> = HashMap::new();
        let mut shapes: HashMap<String, Shape> = HashMap::new();
        let mut bindings = Vec::new();
        for (p, &a) in params.iter().zip(args) {
            let Pat::Ident(pname) = &*p.pat else { return Err(err(&p.pat, "helper parameters are plain names")) };
            let got = self.shape(a).clone();
            match param_type(&p.ty, &shape_params)? {
                ParamType::Tb(spec) => {
                    let want = spec.shape();
                    let bad = || err(span, format!("`{name}` takes `{}: {want}`, but got {got}", pname.ident));
                    if got.rank() != want.rank() {
                        return Err(bad());
                    }
                    for (w, g) in want.0.iter().zip(&got.0) {
                        match w {
                            Dim::Sym(s) if s.starts_with('_') => {}
                            // The helper's own sizes (and undeclared single-letter ones) bind to
                            // the argument's; the model's sizes and constants are checked.
                            Dim::Sym(s) if own_sizes.contains(s) || self.scope.kind(s) == SymKind::Forward => match sizes.get(s) {
                                None => {
                                    sizes.insert(s.clone(), g.clone());
                                }
                                Some(b) if b == g => {}
                                Some(_) => return Err(bad()),
                            },
                            w => {
                                let w = self.resolve(&w.substitute(&|s| sizes.get(s).cloned()).map_err(|e| err(span, e))?);
                                let msg = || format!("`{name}`: argument size mismatch");
                                if !self.same_dim(g, &w, &msg, span.span()) {
                                    return Err(bad());
                                }
                            }
                        }
                    }
                    if spec.dtype_name() != self.dtype(a) {
                        return Err(err(span, format!("`{name}` takes {} `{}`, but got {}", spec.dtype_name(), pname.ident, self.dtype(a))));
                    }
                }
                ParamType::Shape(s) => match shapes.get(&s) {
                    None => {
                        shapes.insert(s, got.clone());
                    }
                    Some(b) if *b == got => {}
                    Some(b) => return Err(err(span, format!("`{name}` takes two tensors of one shape `{s}`, got {b} and {got}"))),
                },
            }
            bindings.push((pname.ident.to_string(), a));
        }
        // Lower the body in its own scope of variables, with its size names mapped.
        let saved_vars = std::mem::take(&mut self.vars);
        let saved_loops = std::mem::take(&mut self.loop_layers);
        for (n, a) in &bindings {
            self.vars.insert(n.clone(), *a);
        }
        let mut map = self.subst.last().cloned().unwrap_or_default();
        map.extend(sizes.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.subst.push(map);
        let result = self.block(body);
        self.subst.pop();
        self.vars = saved_vars;
        self.loop_layers = saved_loops;
        let out = result?.ok_or_else(|| err(span, format!("`{name}` must end with the tensor it returns")))?;
        // The declared return type.
        let ReturnType::Type(_, ret) = &sig.output else { return Err(err(&sig.ident, format!("`{name}` must declare the tensor it returns"))) };
        let got = self.shape(out).clone();
        let declared = match param_type(ret, &shape_params)? {
            ParamType::Tb(spec) => {
                let d = spec.shape().0.iter().map(|d| d.substitute(&|s| sizes.get(s).cloned())).collect::<Result<Vec<_>, _>>().map_err(|e| err(span, e))?;
                self.resolve_shape(&Shape(d))
            }
            ParamType::Shape(s) => shapes.get(&s).cloned().ok_or_else(|| err(ret, format!("`{s}` is not the shape of any parameter of `{name}`")))?,
        };
        if !self.same_shape(&got, &declared, span.span(), &format!("`{name}`'s result")) {
            return Err(err(span, format!("`{name}` returns {got}, but its signature declares {declared}")));
        }
        Ok(out)
    }
}

/// How a helper declares a tensor: `tb![B, 64]` or a whole-shape parameter `Tensor<S>`.
enum ParamType {
    Tb(TbSpec),
    Shape(String),
}

fn param_type(ty: &Type, shape_params: &[String]) -> syn::Result<ParamType> {
    if let Type::Macro(_) = ty {
        return crate::model_impl::tb_type(ty).map(ParamType::Tb);
    }
    if let Type::Reference(r) = ty {
        return param_type(&r.elem, shape_params);
    }
    if let Type::Path(p) = ty {
        let seg = p.path.segments.last().expect("segment");
        if seg.ident == "Tensor" {
            if let syn::PathArguments::AngleBracketed(ab) = &seg.arguments {
                if let Some(syn::GenericArgument::Type(Type::Path(s))) = ab.args.first() {
                    let name = s.path.to_token_stream().to_string();
                    if shape_params.contains(&name) {
                        return Ok(ParamType::Shape(name));
                    }
                }
            }
        }
    }
    Err(err(ty, "helper tensors are written `tb![B, 64]`, or `Tensor<S>` with `S: Shape` for any shape"))
}

/// `xs` with its last dim replaced by `d` (what a layer on the last dim wants).
fn with_last(xs: &Shape, d: &Dim) -> Shape {
    let mut want = xs.0.clone();
    match want.last_mut() {
        Some(l) => *l = d.clone(),
        None => want.push(d.clone()),
    }
    Shape(want)
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + usize::from(a[i - 1] != b[j - 1]));
        }
        prev = cur;
    }
    prev[b.len()]
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

/// Functions forward knows itself: `cat([a, b], dim)` (also as `Tensor::cat`).
fn is_builtin_function(p: &syn::Path) -> bool {
    let s = p.to_token_stream().to_string().replace(' ', "");
    s == "cat" || s == "Tensor::cat"
}

/// Free functions and paths called in a body (`swish(x)`, `helpers::head(h)`), which need
/// signatures; loop variables are excluded by the caller.
pub fn called_functions(stmts: &[Stmt], out: &mut Vec<syn::Path>) {
    use syn::visit::Visit;
    struct V<'o>(&'o mut Vec<syn::Path>);
    impl<'ast> Visit<'ast> for V<'_> {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            if let Expr::Path(p) = &*c.func {
                if p.qself.is_none() && !is_builtin_function(&p.path) && !crate::layers::contains_path(self.0, &p.path) {
                    self.0.push(p.path.clone());
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
    }
    let mut v = V(out);
    for s in stmts {
        v.visit_stmt(s);
    }
}

/// Names bound by `for x in ...` loops in a body.
pub fn loop_variables(stmts: &[Stmt]) -> Vec<String> {
    use syn::visit::Visit;
    struct V(Vec<String>);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
            if let Pat::Ident(p) = &*f.pat {
                self.0.push(p.ident.to_string());
            }
            syn::visit::visit_expr_for_loop(self, f);
        }
    }
    let mut v = V(vec![]);
    for s in stmts {
        v.visit_stmt(s);
    }
    v.0
}
