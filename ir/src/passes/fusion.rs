//! Elementwise fusion and GEMM/conv epilogues.
//!
//! [`fuse`] groups maximal DAGs of elementwise ops (unary, binary with broadcasting, scalar,
//! unary backward) into one kernel: a node joins the group of its users when every user is in
//! that one group, it is not a graph output, and it has the group's shape (so nothing is
//! recomputed). The group becomes a [`Program`], a list of register instructions the runtime
//! runs in one pass over memory. A `Matmul` or `Conv2d` whose only user is in a group of its
//! shape becomes the group's *head*: the runtime applies the program to each output block
//! right after computing it ([`Kernel::Epilogue`]).
//!
//! The result is a [`FusedGraph`], a graph of kernels. (It is a separate type rather than an
//! `Op::Fused` variant because the op set is matched exhaustively by the `#[model]` code
//! generator.)

use std::collections::HashMap;
use std::fmt;

use super::users;
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, Op, ScalarOp, UnaryOp};
use crate::shape::Shape;

/// A comparison against a constant, for [`Instr::Select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// One instruction of a fused program. Operands are indices of earlier instructions: each
/// instruction defines one value (SSA form); the runtime assigns registers.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// Input `k` of the fused node, broadcast to the output shape.
    Input(usize),
    Const(f64),
    Unary(UnaryOp, usize),
    /// `sign(x)`, with `sign(0) = sign(NaN) = 0`.
    Sign(usize),
    Binary(BinaryOp, usize, usize),
    /// `op(x, c)`; `RDiv` never appears (it is lowered to `pow -1` then `mul`, as the runtime
    /// computes it).
    Scalar(ScalarOp, f64, usize),
    /// `x cmp threshold ? a : b` (false for NaN).
    Select { cmp: Cmp, x: usize, threshold: f64, a: usize, b: usize },
}

/// A fused elementwise program: `instrs` over `n_inputs` inputs; the result is value `out`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub n_inputs: usize,
    pub instrs: Vec<Instr>,
    pub out: usize,
    /// Shapes of fills inlined as constants: they take part in broadcasting the output.
    pub fill_shapes: Vec<Shape>,
}

impl Program {
    /// Number of instructions that compute (not loads or constants).
    pub fn op_count(&self) -> usize {
        self.instrs.iter().filter(|i| !matches!(i, Instr::Input(_) | Instr::Const(_))).count()
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .instrs
            .iter()
            .enumerate()
            .map(|(k, ins)| {
                let rhs = match ins {
                    Instr::Input(i) => format!("in{i}"),
                    Instr::Const(c) => format!("{c}"),
                    Instr::Unary(u, x) => format!("{}(v{x})", u.method()),
                    Instr::Sign(x) => format!("sign(v{x})"),
                    Instr::Binary(b, x, y) => match b {
                        BinaryOp::Maximum | BinaryOp::Minimum => format!("{}(v{x}, v{y})", b.method()),
                        _ => format!("v{x} {} v{y}", b.symbol()),
                    },
                    Instr::Scalar(op, c, x) => match op {
                        ScalarOp::Add => format!("v{x} + {c}"),
                        ScalarOp::Mul => format!("v{x} * {c}"),
                        ScalarOp::Pow => format!("v{x} ** {c}"),
                        ScalarOp::RSub => format!("{c} - v{x}"),
                        ScalarOp::RDiv => format!("{c} / v{x}"),
                    },
                    Instr::Select { cmp, x, threshold, a, b } => {
                        let c = match cmp {
                            Cmp::Gt => ">",
                            Cmp::Ge => ">=",
                            Cmp::Lt => "<",
                            Cmp::Le => "<=",
                        };
                        format!("v{x} {c} {threshold} ? v{a} : v{b}")
                    }
                };
                format!("v{k} = {rhs}")
            })
            .collect();
        write!(f, "{{ {}; return v{} }}", parts.join("; "), self.out)
    }
}

/// Builds programs, reusing identical instructions.
#[derive(Default)]
struct Builder {
    instrs: Vec<Instr>,
    memo: HashMap<String, usize>,
}

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const GELU_TANH_KAPPA: f64 = 0.044715;
const SOFTPLUS_THRESHOLD: f64 = 20.0;

impl Builder {
    fn push(&mut self, i: Instr) -> usize {
        let key = format!("{i:?}");
        if let Some(&k) = self.memo.get(&key) {
            return k;
        }
        self.instrs.push(i);
        self.memo.insert(key, self.instrs.len() - 1);
        self.instrs.len() - 1
    }
    fn un(&mut self, u: UnaryOp, x: usize) -> usize {
        self.push(Instr::Unary(u, x))
    }
    fn bin(&mut self, b: BinaryOp, x: usize, y: usize) -> usize {
        self.push(Instr::Binary(b, x, y))
    }
    fn sc(&mut self, op: ScalarOp, c: f64, x: usize) -> usize {
        self.push(Instr::Scalar(op, c, x))
    }
    fn cons(&mut self, c: f64) -> usize {
        self.push(Instr::Const(c))
    }
    fn sel(&mut self, cmp: Cmp, x: usize, threshold: f64, a: usize, b: usize) -> usize {
        self.push(Instr::Select { cmp, x, threshold, a, b })
    }

    /// Lowers one elementwise IR op on program values `args`.
    fn op(&mut self, op: &Op, args: &[usize]) -> usize {
        match op {
            Op::Unary(u) => self.un(*u, args[0]),
            Op::Binary(b) => self.bin(*b, args[0], args[1]),
            Op::Scalar { op: ScalarOp::RDiv, value } => {
                let r = self.sc(ScalarOp::Pow, -1.0, args[0]);
                self.sc(ScalarOp::Mul, *value, r)
            }
            Op::Scalar { op, value } => self.sc(*op, *value, args[0]),
            Op::UnaryBackward(u) => self.unary_backward(*u, args[0], args[1]),
            other => unreachable!("{} is not elementwise", other.name()),
        }
    }

    /// The gradient of unary op `u`'s input, op for op as the runtime's rule computes it.
    fn unary_backward(&mut self, u: UnaryOp, s: usize, g: usize) -> usize {
        use BinaryOp::{Add, Div, Mul};
        use ScalarOp::{Add as AddC, Mul as MulC, RSub};
        match u {
            UnaryOp::Neg => self.un(UnaryOp::Neg, g),
            UnaryOp::Exp => self.bin(Mul, g, s),
            UnaryOp::Log => self.bin(Div, g, s),
            UnaryOp::Log1p => {
                let d = self.sc(AddC, 1.0, s);
                self.bin(Div, g, d)
            }
            UnaryOp::Sqrt => {
                let d = self.sc(MulC, 2.0, s);
                self.bin(Div, g, d)
            }
            UnaryOp::Rsqrt => {
                let s2 = self.bin(Mul, s, s);
                let s3 = self.bin(Mul, s2, s);
                let t = self.bin(Mul, g, s3);
                self.sc(MulC, -0.5, t)
            }
            UnaryOp::Square => {
                let t = self.bin(Mul, g, s);
                self.sc(MulC, 2.0, t)
            }
            UnaryOp::Reciprocal => {
                let s2 = self.bin(Mul, s, s);
                let t = self.bin(Mul, g, s2);
                self.un(UnaryOp::Neg, t)
            }
            UnaryOp::Abs => {
                let sg = self.push(Instr::Sign(s));
                self.bin(Mul, g, sg)
            }
            UnaryOp::Sin => {
                let c = self.un(UnaryOp::Cos, s);
                self.bin(Mul, g, c)
            }
            UnaryOp::Cos => {
                let c = self.un(UnaryOp::Sin, s);
                let t = self.bin(Mul, g, c);
                self.un(UnaryOp::Neg, t)
            }
            UnaryOp::Tanh => {
                let s2 = self.bin(Mul, s, s);
                let d = self.sc(RSub, 1.0, s2);
                self.bin(Mul, g, d)
            }
            UnaryOp::Sigmoid => {
                let one_minus = self.sc(RSub, 1.0, s);
                let d = self.bin(Mul, s, one_minus);
                self.bin(Mul, g, d)
            }
            UnaryOp::Erf => {
                let sq = self.un(UnaryOp::Square, s);
                let n = self.un(UnaryOp::Neg, sq);
                let e = self.un(UnaryOp::Exp, n);
                let d = self.sc(MulC, std::f64::consts::FRAC_2_SQRT_PI, e);
                self.bin(Mul, g, d)
            }
            UnaryOp::Relu => {
                let zero = self.cons(0.0);
                self.sel(Cmp::Gt, s, 0.0, g, zero)
            }
            UnaryOp::LeakyRelu(slope) => {
                let neg = self.sc(MulC, slope, g);
                self.sel(Cmp::Gt, s, 0.0, g, neg)
            }
            UnaryOp::Elu(alpha) => {
                let zero = self.cons(0.0);
                let kept = self.sel(Cmp::Le, s, 0.0, s, zero);
                let e = self.un(UnaryOp::Exp, kept);
                let t = self.bin(Mul, g, e);
                let neg = self.sc(MulC, alpha, t);
                self.sel(Cmp::Le, s, 0.0, neg, g)
            }
            UnaryOp::Gelu => {
                let a = self.sc(MulC, FRAC_1_SQRT_2, s);
                let e = self.un(UnaryOp::Erf, a);
                let e1 = self.sc(AddC, 1.0, e);
                let cdf = self.sc(MulC, 0.5, e1);
                let sq = self.un(UnaryOp::Square, s);
                let h = self.sc(MulC, -0.5, sq);
                let ex = self.un(UnaryOp::Exp, h);
                let pdf = self.sc(MulC, FRAC_1_SQRT_2PI, ex);
                let xp = self.bin(Mul, s, pdf);
                let d = self.bin(Add, cdf, xp);
                self.bin(Mul, g, d)
            }
            UnaryOp::GeluTanh => {
                let x2 = self.un(UnaryOp::Square, s);
                let k = self.sc(MulC, GELU_TANH_KAPPA, x2);
                let k1 = self.sc(AddC, 1.0, k);
                let kx = self.bin(Mul, k1, s);
                let inner = self.sc(MulC, SQRT_2_OVER_PI, kx);
                let t = self.un(UnaryOp::Tanh, inner);
                let t1 = self.sc(AddC, 1.0, t);
                let left = self.sc(MulC, 0.5, t1);
                let d3 = self.sc(MulC, 3.0 * GELU_TANH_KAPPA, x2);
                let d31 = self.sc(AddC, 1.0, d3);
                let dinner = self.sc(MulC, SQRT_2_OVER_PI, d31);
                let hx = self.sc(MulC, 0.5, s);
                let t2 = self.un(UnaryOp::Square, t);
                let omt = self.sc(RSub, 1.0, t2);
                let r1 = self.bin(Mul, hx, omt);
                let right = self.bin(Mul, r1, dinner);
                let d = self.bin(Add, left, right);
                self.bin(Mul, g, d)
            }
            UnaryOp::Silu => {
                let sig = self.un(UnaryOp::Sigmoid, s);
                let oms = self.sc(RSub, 1.0, sig);
                let xo = self.bin(Mul, s, oms);
                let xo1 = self.sc(AddC, 1.0, xo);
                let d = self.bin(Mul, sig, xo1);
                self.bin(Mul, g, d)
            }
            UnaryOp::Softplus => {
                let sig = self.un(UnaryOp::Sigmoid, s);
                let gs = self.bin(Mul, g, sig);
                self.sel(Cmp::Gt, s, SOFTPLUS_THRESHOLD, g, gs)
            }
        }
    }
}

/// Lowers a single elementwise op to a program over its own inputs (what the run time uses to
/// run an unfused elementwise node through the fused kernel, and tests use as a reference).
pub fn program_of(op: &Op, n_inputs: usize) -> Program {
    let mut b = Builder::default();
    let args: Vec<usize> = (0..n_inputs).map(|k| b.push(Instr::Input(k))).collect();
    let out = b.op(op, &args);
    Program { n_inputs, instrs: b.instrs, out, fill_shapes: vec![] }
}

/// What one node of a [`FusedGraph`] runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// One IR op, run as it is.
    Op(Op),
    /// A fused elementwise program over the node's inputs.
    Fused(Program),
    /// `head` (a `Matmul` or `Conv2d`) on the first `head_inputs` inputs, then `tail` on each
    /// output block: the tail's input 0 is the head's output, its input `k >= 1` is node input
    /// `head_inputs + k - 1`.
    Epilogue { head: Op, head_inputs: usize, tail: Program },
}

/// A node of a [`FusedGraph`].
#[derive(Clone, Debug, PartialEq)]
pub struct FusedNode {
    pub kernel: Kernel,
    pub inputs: Vec<NodeId>,
    pub shape_of: Vec<NodeId>,
    pub shape: Shape,
    pub label: String,
    /// The source graph nodes this kernel computes, in order.
    pub members: Vec<NodeId>,
}

impl FusedNode {
    /// Whether the node launches a kernel (inputs, parameters, fills and pure views do not).
    pub fn is_kernel(&self) -> bool {
        match &self.kernel {
            Kernel::Op(op) => !is_free(op),
            _ => true,
        }
    }

    /// A short name for listings.
    pub fn name(&self) -> String {
        match &self.kernel {
            Kernel::Op(op) => op.name(),
            Kernel::Fused(p) => format!("fused[{} ops]", p.op_count()),
            Kernel::Epilogue { head, tail, .. } => format!("{} + epilogue[{} ops]", head.name(), tail.op_count()),
        }
    }
}

/// Ops that launch no kernel: leaves and views.
pub fn is_free(op: &Op) -> bool {
    matches!(
        op,
        Op::Input { .. } | Op::Param { .. } | Op::Fill { .. } | Op::Reshape { .. } | Op::Transpose { .. } | Op::Permute { .. } | Op::Expand { .. } | Op::ExpandAs | Op::ReshapeAs | Op::Flatten { .. }
    )
}

/// A graph of kernels, in topological order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FusedGraph {
    pub nodes: Vec<FusedNode>,
    pub outputs: Vec<NodeId>,
    /// The graph it was made from.
    pub source: Graph,
}

/// What [`fuse`] may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuseOptions {
    /// Group elementwise ops.
    pub elementwise: bool,
    /// Attach elementwise tails to matmuls and convs.
    pub epilogue: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions { elementwise: true, epilogue: true }
    }
}

impl FuseOptions {
    /// No fusion: every IR node is its own kernel.
    pub fn none() -> Self {
        FuseOptions { elementwise: false, epilogue: false }
    }
}

/// Groups elementwise ops into fused kernels and attaches epilogues (see the module docs).
pub fn fuse(g: &Graph, opts: &FuseOptions) -> FusedGraph {
    let n = g.nodes.len();
    let users = users(g);
    let mut pinned = vec![false; n];
    for &o in &g.outputs {
        pinned[o] = true;
    }
    for node in &g.nodes {
        for &s in &node.shape_of {
            pinned[s] = true;
        }
    }

    // Group roots, found from the outputs backwards.
    let mut group: Vec<Option<NodeId>> = vec![None; n];
    if opts.elementwise {
        for i in (0..n).rev() {
            let node = &g.nodes[i];
            if !node.op.is_elementwise() || node.shape.is_unknown() {
                continue;
            }
            let joined = (!pinned[i] && !users[i].is_empty())
                .then(|| {
                    let r = group[users[i][0]]?;
                    (users[i].iter().all(|&u| group[u] == Some(r)) && g.shape(r) == &node.shape).then_some(r)
                })
                .flatten();
            group[i] = Some(joined.unwrap_or(i));
        }
    }
    let mut members: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for i in 0..n {
        if let Some(r) = group[i] {
            members.entry(r).or_default().push(i);
        }
    }

    // Epilogue heads: a matmul or conv read only by one group of its shape.
    let mut head_of: HashMap<NodeId, NodeId> = HashMap::new(); // head -> root
    let mut head: HashMap<NodeId, NodeId> = HashMap::new(); // root -> head
    if opts.epilogue {
        for (&r, ms) in &members {
            let candidate = ms
                .iter()
                .flat_map(|&m| g.nodes[m].inputs.iter().copied())
                .filter(|&e| group[e] != Some(r))
                .filter(|&e| {
                    matches!(g.nodes[e].op, Op::Matmul | Op::Conv2d(_))
                        && !pinned[e]
                        && users[e].len() == 1
                        && group[users[e][0]] == Some(r)
                        && g.shape(e) == g.shape(r)
                })
                .max();
            if let Some(e) = candidate {
                head_of.insert(e, r);
                head.insert(r, e);
            }
        }
    }

    let mut out = FusedGraph { nodes: Vec::new(), outputs: Vec::new(), source: g.clone() };
    let mut map = vec![usize::MAX; n];
    for i in 0..n {
        if head_of.contains_key(&i) {
            continue;
        }
        match group[i] {
            Some(r) if r != i => continue,
            Some(r) if members[&r].len() > 1 || head.contains_key(&r) => {
                let node = build_group(g, &members[&r], head.get(&r).copied(), &map);
                map[i] = out.nodes.len();
                out.nodes.push(node);
                continue;
            }
            _ => {}
        }
        let node = &g.nodes[i];
        map[i] = out.nodes.len();
        out.nodes.push(FusedNode {
            kernel: Kernel::Op(node.op.clone()),
            inputs: node.inputs.iter().map(|&a| map[a]).collect(),
            shape_of: node.shape_of.iter().map(|&a| map[a]).collect(),
            shape: node.shape.clone(),
            label: node.label.clone(),
            members: vec![i],
        });
    }
    out.outputs = g.outputs.iter().map(|&o| map[o]).collect();
    out.dce()
}

fn build_group(g: &Graph, members: &[NodeId], head: Option<NodeId>, map: &[NodeId]) -> FusedNode {
    let root = *members.last().expect("a group has a root");
    let mut b = Builder::default();
    let mut reg: HashMap<NodeId, usize> = HashMap::new();
    let mut externals: Vec<NodeId> = Vec::new();
    let mut fill_shapes = Vec::new();
    let offset = usize::from(head.is_some());
    if let Some(h) = head {
        reg.insert(h, b.push(Instr::Input(0)));
    }
    for &m in members {
        let mut args = Vec::new();
        for &a in &g.nodes[m].inputs {
            let v = match reg.get(&a) {
                Some(&v) => v,
                None => match &g.nodes[a].op {
                    Op::Fill { value, shape } if shape.numel().is_some() => {
                        if !fill_shapes.contains(shape) {
                            fill_shapes.push(shape.clone());
                        }
                        b.cons(*value)
                    }
                    _ => {
                        let k = match externals.iter().position(|&e| e == a) {
                            Some(k) => k,
                            None => {
                                externals.push(a);
                                externals.len() - 1
                            }
                        };
                        let v = b.push(Instr::Input(k + offset));
                        reg.insert(a, v);
                        v
                    }
                },
            };
            args.push(v);
        }
        let v = b.op(&g.nodes[m].op, &args);
        reg.insert(m, v);
    }
    let program = Program { n_inputs: externals.len() + offset, out: reg[&root], instrs: b.instrs, fill_shapes };
    let mut all_members: Vec<NodeId> = head.into_iter().chain(members.iter().copied()).collect();
    all_members.sort_unstable();
    let ext: Vec<NodeId> = externals.iter().map(|&e| map[e]).collect();
    let (kernel, inputs) = match head {
        Some(h) => {
            let hn = &g.nodes[h];
            let mut inputs: Vec<NodeId> = hn.inputs.iter().map(|&a| map[a]).collect();
            inputs.extend(ext);
            (Kernel::Epilogue { head: hn.op.clone(), head_inputs: hn.inputs.len(), tail: program }, inputs)
        }
        None => (Kernel::Fused(program), ext),
    };
    let label = head.map_or_else(|| g.nodes[root].label.clone(), |h| g.nodes[h].label.clone());
    FusedNode { kernel, inputs, shape_of: vec![], shape: g.nodes[root].shape.clone(), label, members: all_members }
}

impl FusedGraph {
    /// The graph without nodes nothing reads (graph inputs are kept).
    pub fn dce(mut self) -> FusedGraph {
        let n = self.nodes.len();
        let mut live = vec![false; n];
        for &o in &self.outputs {
            live[o] = true;
        }
        for i in (0..n).rev() {
            if matches!(self.nodes[i].kernel, Kernel::Op(Op::Input { .. })) {
                live[i] = true;
            }
            if live[i] {
                for &a in self.nodes[i].inputs.iter().chain(&self.nodes[i].shape_of) {
                    live[a] = true;
                }
            }
        }
        let mut map = vec![usize::MAX; n];
        let mut nodes = Vec::new();
        for (i, mut node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if !live[i] {
                continue;
            }
            node.inputs.iter_mut().chain(node.shape_of.iter_mut()).for_each(|a| *a = map[*a]);
            map[i] = nodes.len();
            nodes.push(node);
        }
        self.outputs = self.outputs.iter().map(|&o| map[o]).collect();
        self.nodes = nodes;
        self
    }

    /// How many kernels one run launches.
    pub fn kernel_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_kernel()).count()
    }

    /// Ids of the graph inputs, in order.
    pub fn inputs(&self) -> Vec<NodeId> {
        self.nodes.iter().enumerate().filter(|(_, n)| matches!(n.kernel, Kernel::Op(Op::Input { .. }))).map(|(i, _)| i).collect()
    }

    /// One line per fused kernel: which source nodes it computes and its program.
    pub fn fusion_report(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let ops: Vec<String> = n.members.iter().map(|&m| format!("%{m} {}", self.source.nodes[m].op.name())).collect();
            match &n.kernel {
                Kernel::Op(_) => continue,
                Kernel::Fused(p) => {
                    s += &format!("%{i} fused {} ops into 1 kernel: [{}]\n    {p}\n", n.members.len(), ops.join(", "));
                }
                Kernel::Epilogue { head, tail, .. } => {
                    s += &format!("%{i} {} with a {}-op epilogue: [{}]\n    {tail}\n", head.name(), tail.op_count(), ops.join(", "));
                }
            }
        }
        let source_kernels = self.source.nodes.iter().filter(|n| !is_free(&n.op)).count();
        s += &format!("{} kernels before fusion, {} after\n", source_kernels, self.kernel_count());
        s
    }

    /// Graphviz DOT text; fused kernels are orange.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph fused {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let (shape, color) = match &n.kernel {
                Kernel::Op(Op::Input { .. }) => ("ellipse", "lightblue"),
                Kernel::Op(Op::Param { .. }) => ("note", "lightyellow"),
                Kernel::Fused(_) | Kernel::Epilogue { .. } => ("box", "orange"),
                _ if self.outputs.contains(&i) => ("box", "palegreen"),
                _ => ("box", "white"),
            };
            let label = format!("{}\\n{}", n.name().replace('"', "\\\""), n.shape);
            s += &format!("  n{i} [label=\"{label}\", shape={shape}, style=filled, fillcolor={color}];\n");
            for &a in &n.inputs {
                s += &format!("  n{a} -> n{i};\n");
            }
        }
        s.push_str("}\n");
        s
    }
}

impl fmt::Display for FusedGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let args: Vec<String> = n.inputs.iter().map(|a| format!("%{a}")).collect();
            write!(f, "%{i} = {}", n.name())?;
            if !args.is_empty() {
                write!(f, "({})", args.join(", "))?;
            }
            write!(f, " : {}", n.shape)?;
            if !n.label.is_empty() {
                write!(f, "   // {}", n.label)?;
            }
            writeln!(f)?;
            match &n.kernel {
                Kernel::Fused(p) | Kernel::Epilogue { tail: p, .. } => writeln!(f, "      {p}")?,
                Kernel::Op(_) => {}
            }
        }
        let outs: Vec<String> = self.outputs.iter().map(|o| format!("%{o}")).collect();
        writeln!(f, "return {}", outs.join(", "))
    }
}
