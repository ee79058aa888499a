//! The op set and each op's shape rule.

use crate::shape::{Dim, Shape, ShapeError};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Abs,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    Gelu,
    GeluTanh,
    Silu,
    Softplus,
    Log1p,
    Square,
    Reciprocal,
    Erf,
    Elu(f64),
    LeakyRelu(f64),
}

impl UnaryOp {
    /// Whether the derivative is computed from the op's output rather than its input (so a
    /// training forward saves only the one it needs): exp' = exp, sigmoid' = y (1 - y), ...
    pub fn grad_from_output(self) -> bool {
        matches!(self, UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Relu | UnaryOp::Reciprocal)
    }

    /// The runtime method name (`x.relu()`), also what users write in `forward`.
    pub fn method(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::Silu => "silu",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Log1p => "log1p",
            UnaryOp::Square => "square",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Erf => "erf",
            UnaryOp::Elu(_) => "elu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
        }
    }

    /// The op for a method name with no arguments.
    pub fn from_method(name: &str) -> Option<UnaryOp> {
        Some(match name {
            "neg" => UnaryOp::Neg,
            "exp" => UnaryOp::Exp,
            "log" => UnaryOp::Log,
            "sqrt" => UnaryOp::Sqrt,
            "rsqrt" => UnaryOp::Rsqrt,
            "abs" => UnaryOp::Abs,
            "sin" => UnaryOp::Sin,
            "cos" => UnaryOp::Cos,
            "tanh" => UnaryOp::Tanh,
            "sigmoid" => UnaryOp::Sigmoid,
            "relu" => UnaryOp::Relu,
            "gelu" => UnaryOp::Gelu,
            "gelu_tanh" => UnaryOp::GeluTanh,
            "silu" => UnaryOp::Silu,
            "softplus" => UnaryOp::Softplus,
            "log1p" => UnaryOp::Log1p,
            "square" => UnaryOp::Square,
            "reciprocal" => UnaryOp::Reciprocal,
            "erf" => UnaryOp::Erf,
            _ => return None,
        })
    }

    /// The scalar argument of parameterised activations.
    pub fn arg(self) -> Option<f64> {
        match self {
            UnaryOp::Elu(a) | UnaryOp::LeakyRelu(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl BinaryOp {
    pub fn method(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
}

/// An op between a tensor and a constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarOp {
    /// `x + c`
    Add,
    /// `x * c`
    Mul,
    /// `x ** c`
    Pow,
    /// `c - x`
    RSub,
    /// `c / x`
    RDiv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
}

impl ReduceOp {
    pub fn method(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

/// 2-D convolution geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// 2-D pooling geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// The parameters of a per-tensor affine u8 value: `real = scale · (q − zero_point)`, q in
/// 0..=255. Quantization rounds half to even and clamps, as PyTorch does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The int8 layer a [`Op::QLinear`] or [`Op::QConv2d`] runs: which packed weights (held by
/// the runtime beside the graph, by `layer` name), and what its epilogue does.
#[derive(Clone, Debug, PartialEq)]
pub struct QLayerOp {
    /// The layer's name in user code (`fc1`), which also keys its i8 weights, their scales and
    /// the f32 bias.
    pub layer: String,
    /// Output features (Linear) or channels (Conv2d).
    pub out: usize,
    /// ReLU fused into the epilogue.
    pub relu: bool,
    /// `None`: the input is f32 and quantized per call from its own range (dynamic
    /// quantization); `Some(p)`: the input is u8 in `p`.
    pub input: Option<QuantParams>,
    /// `None`: f32 output; `Some(p)`: the epilogue requantizes to u8 in `p`.
    pub output: Option<QuantParams>,
}

/// One IR op. Inputs are listed on the [`crate::Node`]; the comment on each variant says what
/// they are.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input (the argument of `forward`), with its declared shape.
    Input { name: String, shape: Shape },
    /// A model parameter by dotted path (`fc1.weight`), with its shape.
    Param { path: String, shape: Shape },
    /// A constant tensor filled with one value.
    Fill { value: f64, shape: Shape },
    /// [x]
    Unary(UnaryOp),
    /// [a, b] with broadcasting.
    Binary(BinaryOp),
    /// [x]
    Scalar { op: ScalarOp, value: f64 },
    /// [a, b] with torch.matmul semantics.
    Matmul,
    /// [x]
    Transpose { dim0: usize, dim1: usize },
    /// [x]
    Permute { dims: Vec<usize> },
    /// [x] to a shape with the same element count.
    Reshape { shape: Shape },
    /// [x] broadcast to `shape`.
    Expand { shape: Shape },
    /// [x] summed down to the shape of `shape_of[0]` (the adjoint of broadcasting).
    SumTo,
    /// [x] reshaped to the shape of `shape_of[0]` (the adjoint of a reshape or flatten).
    ReshapeAs,
    /// [x] broadcast to the shape of `shape_of[0]`.
    ExpandAs,
    /// [x] with dims `start..` merged into one.
    Flatten { start: usize },
    /// [x]
    Reduce { op: ReduceOp, dims: Vec<usize>, keepdim: bool },
    /// [x]
    Softmax { dim: usize },
    /// [x]
    LogSoftmax { dim: usize },
    /// [x, weight] or [x, weight, bias]
    Conv2d(ConvGeometry),
    /// [grad_out, weight] -> grad of the conv input (shape of `shape_of[0]`).
    Conv2dBackwardInput(ConvGeometry),
    /// [grad_out, x] -> grad of the conv weight (shape of `shape_of[0]`).
    Conv2dBackwardWeight(ConvGeometry),
    /// [x]
    Pool2d { kind: PoolKind, geometry: PoolGeometry, count_include_pad: bool },
    /// [x, grad_out] -> grad of the pool input.
    Pool2dBackward { kind: PoolKind, geometry: PoolGeometry, count_include_pad: bool },
    /// [x]: a random keep-mask scaled by 1/(1-p), same shape as x.
    DropoutMask { p: f64 },
    /// [s, grad_out] -> grad of a unary op's input, where `s` is the op's output if
    /// [`UnaryOp::grad_from_output`] holds, else its input.
    UnaryBackward(UnaryOp),
    /// [y, grad_out] -> grad of softmax's input, given its output y.
    SoftmaxBackward { dim: usize },
    /// [y, grad_out] -> grad of log_softmax's input, given its output y.
    LogSoftmaxBackward { dim: usize },
    /// [grad_out] -> grad of a sum or mean reduction's input (shape of `shape_of[0]`),
    /// broadcast back and divided by the reduced count for a mean.
    ReduceBackward { mean: bool, dims: Vec<usize>, keepdim: bool },
    /// [x, y, grad_out] -> grad of a max/min reduction's input (split evenly among ties).
    ReduceMaxBackward { dims: Vec<usize>, keepdim: bool },
    /// [weight, indices] -> rows of the embedding table.
    Embedding,
    /// [indices, grad_out] -> grad of the embedding table (shape of `shape_of[0]`).
    EmbeddingBackward,
    /// [inputs...] concatenated along `dim`.
    Concat { dim: usize },
    /// [grad_out] -> the gradient of one input of a Concat: the slice along `dim` as long as
    /// `shape_of[0]` (that input), starting after `shape_of[1..]` (the inputs before it). The
    /// sizes come from the shapes at run time, so symbolic sizes (`D`) are fine.
    ConcatBackward { dim: usize },
    /// [x] elements `start..end` along `dim`.
    Narrow { dim: usize, start: usize, len: usize },
    /// [x] zero-padded back to the shape of `shape_of[0]` along `dim` from `start` (the
    /// adjoint of Narrow).
    NarrowBackward { dim: usize, start: usize },
    /// [x]: a nested model's forward, called through its field path (`blocks.0`). Opaque here:
    /// the nested model has its own graph.
    Call { path: String, out: Shape },
    /// [grad_out]: the nested model's generated backward for the call at node `forward`;
    /// gives the grad of its input (shape of `shape_of[0]`).
    CallBackward { path: String, forward: usize },
    /// [x] f32 → u8 in the given parameters.
    Quantize(QuantParams),
    /// [q] u8 → f32.
    Dequantize(QuantParams),
    /// [q] u8 in `from` → u8 in `to`.
    Requantize { from: QuantParams, to: QuantParams },
    /// [x] `[..., in]` → `[..., out]`: an int8 Linear (u8 × i8 → i32) with bias, ReLU and
    /// requantization fused into its output stage.
    QLinear(QLayerOp),
    /// [x] `[N, C, H, W]` → `[N, out, H', W']`: an int8 convolution with a `kernel` window,
    /// through the same GEMM and epilogue as [`Op::QLinear`].
    QConv2d { layer: QLayerOp, kernel: [usize; 2], geometry: ConvGeometry },
    /// [indices] → `[..., dim]` f32: rows of an i8 embedding table (per-row scales, held by
    /// the runtime under `table`), dequantized.
    QEmbedding { table: String, dim: usize },
}

impl Op {
    /// Short display name for listings and DOT.
    pub fn name(&self) -> String {
        match self {
            Op::Input { name, .. } => format!("input {name}"),
            Op::Param { path, .. } => format!("param {path}"),
            Op::Fill { value, .. } => format!("fill {value}"),
            Op::Unary(u) => match u.arg() {
                Some(a) => format!("{}({a})", u.method()),
                None => u.method().to_string(),
            },
            Op::Binary(b) => b.method().to_string(),
            Op::Scalar { op, value } => match op {
                ScalarOp::Add => format!("add {value}"),
                ScalarOp::Mul => format!("mul {value}"),
                ScalarOp::Pow => format!("pow {value}"),
                ScalarOp::RSub => format!("{value} - x"),
                ScalarOp::RDiv => format!("{value} / x"),
            },
            Op::Matmul => "matmul".into(),
            Op::Transpose { dim0, dim1 } => format!("transpose({dim0}, {dim1})"),
            Op::Permute { dims } => format!("permute{dims:?}"),
            Op::Reshape { shape } => format!("reshape {shape}"),
            Op::Expand { shape } => format!("expand {shape}"),
            Op::SumTo => "sum_to".into(),
            Op::ReshapeAs => "reshape_as".into(),
            Op::ExpandAs => "expand_as".into(),
            Op::Flatten { start } => format!("flatten({start})"),
            Op::Reduce { op, dims, keepdim } => format!("{}{dims:?}{}", op.method(), if *keepdim { " keepdim" } else { "" }),
            Op::Softmax { dim } => format!("softmax({dim})"),
            Op::LogSoftmax { dim } => format!("log_softmax({dim})"),
            Op::Conv2d(g) => format!("conv2d s{:?} p{:?} d{:?} g{}", g.stride, g.padding, g.dilation, g.groups),
            Op::Conv2dBackwardInput { .. } => "conv2d_backward_input".into(),
            Op::Conv2dBackwardWeight { .. } => "conv2d_backward_weight".into(),
            Op::Pool2d { kind, geometry, .. } => format!("{}_pool2d k{:?} s{:?} p{:?}", kind_name(*kind), geometry.kernel, geometry.stride, geometry.padding),
            Op::Pool2dBackward { kind, .. } => format!("{}_pool2d_backward", kind_name(*kind)),
            Op::DropoutMask { p } => format!("dropout_mask({p})"),
            Op::UnaryBackward(u) => format!("{}_backward", u.method()),
            Op::SoftmaxBackward { dim } => format!("softmax_backward({dim})"),
            Op::LogSoftmaxBackward { dim } => format!("log_softmax_backward({dim})"),
            Op::ReduceMaxBackward { dims, .. } => format!("max_backward{dims:?}"),
            Op::ReduceBackward { mean, dims, .. } => format!("{}_backward{dims:?}", if *mean { "mean" } else { "sum" }),
            Op::Embedding => "embedding".into(),
            Op::EmbeddingBackward => "embedding_backward".into(),
            Op::Concat { dim } => format!("concat({dim})"),
            Op::Narrow { dim, start, len } => format!("narrow({dim}, {start}, {len})"),
            Op::ConcatBackward { dim } => format!("concat_backward({dim})"),
            Op::NarrowBackward { dim, start, .. } => format!("narrow_backward({dim}, {start})"),
            Op::Call { path, .. } => format!("call {path}"),
            Op::CallBackward { path, .. } => format!("call_backward {path}"),
            Op::Quantize(p) => format!("quantize s{} z{}", p.scale, p.zero_point),
            Op::Dequantize(p) => format!("dequantize s{} z{}", p.scale, p.zero_point),
            Op::Requantize { from, to } => format!("requantize s{} z{} -> s{} z{}", from.scale, from.zero_point, to.scale, to.zero_point),
            Op::QLinear(l) => format!("qlinear {}{}", l.layer, q_io(l)),
            Op::QConv2d { layer, kernel, .. } => format!("qconv2d {} {}x{}{}", layer.layer, kernel[0], kernel[1], q_io(layer)),
            Op::QEmbedding { table, .. } => format!("qembedding {table}"),
        }
    }

    /// Whether the op is elementwise (one output element from the same-index input elements,
    /// after broadcasting), the ops fusion may chain.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Scalar { .. } | Op::UnaryBackward(_))
    }

    /// The output shape for inputs of `inputs` shapes, or why the inputs do not fit.
    pub fn infer_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        let one = || inputs[0].clone();
        Ok(match self {
            Op::Input { shape, .. } | Op::Param { shape, .. } | Op::Fill { shape, .. } => shape.clone(),
            Op::Unary(_) | Op::Scalar { .. } | Op::DropoutMask { .. } => one(),
            Op::Binary(b) => broadcast(inputs[0], inputs[1]).map_err(|why| {
                ShapeError::new(format!("cannot apply `{}` to shapes {} and {}: {why}", b.symbol(), inputs[0], inputs[1]))
            })?,
            Op::UnaryBackward(_) | Op::ReduceMaxBackward { .. } => inputs[0].clone(),
            Op::ReduceBackward { .. } => return Err(ShapeError::new("reduce_backward takes its shape from another node")),
            Op::SoftmaxBackward { .. } | Op::LogSoftmaxBackward { .. } => inputs[0].clone(),
            Op::Matmul => matmul(inputs[0], inputs[1])?,
            Op::Transpose { dim0, dim1 } => {
                let mut s = one();
                check_axis("transpose", &s, *dim0)?;
                check_axis("transpose", &s, *dim1)?;
                s.0.swap(*dim0, *dim1);
                s
            }
            Op::Permute { dims } => {
                let s = one();
                let mut seen = vec![false; s.rank()];
                if dims.len() != s.rank() || dims.iter().any(|&d| d >= s.rank() || std::mem::replace(&mut seen[d], true)) {
                    return Err(ShapeError::new(format!("permute{dims:?} is not a permutation of the {} dims of {s}", s.rank())));
                }
                Shape(dims.iter().map(|&d| s.0[d].clone()).collect())
            }
            Op::Reshape { shape } => {
                if !same_numel(inputs[0], shape) {
                    return Err(ShapeError::new(format!(
                        "cannot reshape {} ({}) to {shape} ({}): the element counts differ",
                        inputs[0],
                        numel_text(inputs[0]),
                        numel_text(shape)
                    )));
                }
                shape.clone()
            }
            Op::Expand { shape } => {
                let b = broadcast(inputs[0], shape).map_err(|why| ShapeError::new(format!("cannot expand {} to {shape}: {why}", inputs[0])))?;
                if &b != shape {
                    return Err(ShapeError::new(format!("cannot expand {} to {shape}", inputs[0])));
                }
                shape.clone()
            }
            Op::SumTo | Op::ReshapeAs | Op::ExpandAs | Op::Conv2dBackwardInput(_) | Op::Conv2dBackwardWeight(_) => {
                return Err(ShapeError::new(format!("{} takes its shape from another node", self.name())))
            }
            Op::Flatten { start } => {
                let s = one();
                check_axis("flatten", &s, *start)?;
                let mut dims = s.0[..*start].to_vec();
                dims.push(product(&s.0[*start..]));
                Shape(dims)
            }
            Op::Reduce { dims, keepdim, .. } => {
                let s = one();
                for &d in dims {
                    check_axis("reduction", &s, d)?;
                }
                Shape(
                    s.0.iter()
                        .enumerate()
                        .filter_map(|(i, d)| match (dims.contains(&i) || dims.is_empty(), keepdim) {
                            (true, true) => Some(Dim::Known(1)),
                            (true, false) => None,
                            (false, _) => Some(d.clone()),
                        })
                        .collect(),
                )
            }
            Op::Softmax { dim } | Op::LogSoftmax { dim } => {
                check_axis("softmax", inputs[0], *dim)?;
                one()
            }
            Op::Conv2d(g) => conv2d(inputs, g)?,
            Op::Pool2d { kind, geometry, .. } => pool2d(inputs[0], *kind, geometry)?,
            Op::Pool2dBackward { .. } => inputs[0].clone(),
            Op::Embedding => {
                let (w, idx) = (inputs[0], inputs[1]);
                if w.rank() != 2 {
                    return Err(ShapeError::new(format!("embedding table must be 2-D, got {w}")));
                }
                let mut s = idx.clone();
                s.0.push(w.0[1].clone());
                s
            }
            Op::EmbeddingBackward | Op::NarrowBackward { .. } | Op::CallBackward { .. } | Op::ConcatBackward { .. } => {
                return Err(ShapeError::new(format!("{} takes its shape from another node", self.name())))
            }
            Op::Concat { dim } => concat(inputs, *dim)?,
            Op::Narrow { dim, start, len } => {
                let mut s = one();
                check_axis("narrow", &s, *dim)?;
                if let Dim::Known(n) = s.0[*dim] {
                    if start + len > n {
                        return Err(ShapeError::new(format!("narrow {start}..{} is out of range for dim {dim} of {s}", start + len)));
                    }
                }
                s.0[*dim] = Dim::Known(*len);
                s
            }

            Op::Call { out, .. } => out.clone(),
            Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize { .. } => one(),
            Op::QLinear(l) => {
                let mut s = one();
                if s.rank() == 0 {
                    return Err(ShapeError::new(format!("qlinear `{}` needs an input of rank >= 1", l.layer)));
                }
                *s.0.last_mut().expect("rank >= 1") = Dim::Known(l.out);
                s
            }
            Op::QConv2d { layer, kernel, geometry } => {
                let x = inputs[0];
                let c = match x.0.get(1) {
                    Some(c) => c.clone(),
                    None => return Err(ShapeError::new(format!("qconv2d `{}` expects [N, C, H, W], got {x}", layer.layer))),
                };
                let w = Shape(vec![Dim::Known(layer.out), c, Dim::Known(kernel[0]), Dim::Known(kernel[1])]);
                conv2d(&[x, &w], geometry)?
            }
            Op::QEmbedding { dim, .. } => {
                let mut s = one();
                s.0.push(Dim::Known(*dim));
                s
            }

        })
    }
}

/// ` u8 -> f32`-style suffix of an int8 layer's name.
fn q_io(l: &QLayerOp) -> String {
    let side = |p: &Option<QuantParams>| match p {
        Some(p) => format!("u8(s{} z{})", p.scale, p.zero_point),
        None => "f32".to_string(),
    };
    format!(" {}{} -> {}", side(&l.input), if l.relu { " +relu" } else { "" }, side(&l.output))
}

fn kind_name(k: PoolKind) -> &'static str {
    match k {
        PoolKind::Max => "max",
        PoolKind::Avg => "avg",
    }
}

/// The product of dims: a number when all are known, else an expression (`16*B`).
pub fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
}

fn check_axis(op: &str, s: &Shape, d: usize) -> Result<(), ShapeError> {
    if d >= s.rank() {
        return Err(ShapeError::new(format!("{op}: dim {d} is out of range for {s} of rank {}", s.rank())));
    }
    Ok(())
}

fn numel_text(s: &Shape) -> String {
    let n = s.numel_dim();
    match n {
        Dim::Known(k) => format!("{k} elements"),
        other => format!("{other} elements"),
    }
}

/// Equal element counts, as polynomials over the symbols.
fn same_numel(a: &Shape, b: &Shape) -> bool {
    a.numel_dim() == b.numel_dim()
}

/// NumPy broadcasting; a symbol only matches itself or 1.
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let rank = a.rank().max(b.rank());
    let get = |s: &Shape, i: usize| if i + s.rank() >= rank { s.0[i + s.rank() - rank].clone() } else { Dim::Known(1) };
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let (x, y) = (get(a, i), get(b, i));
        out.push(match (&x, &y) {
            _ if x == y => x,
            (Dim::Known(1), _) => y,
            (_, Dim::Known(1)) => x,
            _ => {
                let axis = i as isize - rank as isize;
                return Err(format!("dim {axis} is {x} in one and {y} in the other"));
            }
        });
    }
    Ok(Shape(out))
}

fn matmul(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let err = |why: String| ShapeError::new(format!("matmul of {a} and {b}: {why}"));
    if a.rank() == 0 || b.rank() == 0 {
        return Err(err("both operands need at least one dim".into()));
    }
    let k_a = &a.0[a.rank() - 1];
    let k_b = if b.rank() == 1 { &b.0[0] } else { &b.0[b.rank() - 2] };
    if k_a != k_b {
        return Err(err(format!("inner dims differ ({k_a} vs {k_b})")));
    }
    let batch_a = Shape(a.0[..a.rank().saturating_sub(2)].to_vec());
    let batch_b = Shape(b.0[..b.rank().saturating_sub(2)].to_vec());
    let mut out = broadcast(&batch_a, &batch_b).map_err(|why| err(format!("batch dims do not broadcast: {why}")))?.0;
    if a.rank() >= 2 {
        out.push(a.0[a.rank() - 2].clone());
    }
    if b.rank() >= 2 {
        out.push(b.0[b.rank() - 1].clone());
    }
    Ok(Shape(out))
}

/// `(size + 2p - d(k-1) - 1) / s + 1`, or None if the window does not fit.
pub fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (size + 2 * p >= span && s > 0).then(|| (size + 2 * p - span) / s + 1)
}

fn spatial(op: &str, x: &Shape, i: usize, k: usize, s: usize, p: usize, d: usize) -> Result<Dim, ShapeError> {
    let span = d * (k - 1) + 1;
    match &x.0[i] {
        Dim::Known(n) => conv_out(*n, k, s, p, d).map(Dim::Known).ok_or_else(|| {
            ShapeError::new(format!(
                "{op} output would be empty: input {x} has size {n} in dim {i}, but the kernel spans {span} (kernel {k}, dilation {d}) with padding {p}"
            ))
        }),
        // A symbolic size (a generic model's input): the same formula, kept symbolic.
        size => {
            if s == 0 {
                return Err(ShapeError::new(format!("{op}: stride must be positive")));
            }
            let reach = size.add(&Dim::Known(2 * p)).sub(&Dim::Known(span));
            let out = reach.div_floor(&Dim::Known(s)).map_err(ShapeError::new)?.add(&Dim::Known(1));
            if out.is_nonpositive_constant() {
                return Err(ShapeError::new(format!("{op} output would be empty for input {x}")));
            }
            Ok(out)
        }
    }
}

fn conv2d(inputs: &[&Shape], g: &ConvGeometry) -> Result<Shape, ShapeError> {
    let (x, w) = (inputs[0], inputs[1]);
    if x.rank() != 4 || w.rank() != 4 {
        return Err(ShapeError::new(format!("conv2d expects input [N, C, H, W] and weight [O, C/groups, KH, KW], got {x} and {w}")));
    }
    let (Some(kh), Some(kw)) = (w.0[2].known(), w.0[3].known()) else {
        return Err(ShapeError::new(format!("conv2d weight {w} must have known kernel sizes")));
    };
    if let (Some(c), Some(wc)) = (x.0[1].known(), w.0[1].known()) {
        if c != wc * g.groups {
            return Err(ShapeError::new(format!("conv2d expects {} input channels, got {x}", wc * g.groups)));
        }
    }
    let h = spatial("conv2d", x, 2, kh, g.stride[0], g.padding[0], g.dilation[0])?;
    let wd = spatial("conv2d", x, 3, kw, g.stride[1], g.padding[1], g.dilation[1])?;
    Ok(Shape(vec![x.0[0].clone(), w.0[0].clone(), h, wd]))
}

fn pool2d(x: &Shape, kind: PoolKind, g: &PoolGeometry) -> Result<Shape, ShapeError> {
    let op = format!("{}_pool2d", kind_name(kind));
    if x.rank() != 4 {
        return Err(ShapeError::new(format!("{op} expects [N, C, H, W], got {x}")));
    }
    let h = spatial(&op, x, 2, g.kernel[0], g.stride[0], g.padding[0], 1)?;
    let w = spatial(&op, x, 3, g.kernel[1], g.stride[1], g.padding[1], 1)?;
    Ok(Shape(vec![x.0[0].clone(), x.0[1].clone(), h, w]))
}

fn concat(inputs: &[&Shape], dim: usize) -> Result<Shape, ShapeError> {
    let first = inputs[0];
    check_axis("concat", first, dim)?;
    let mut total = Dim::Known(0);
    for s in inputs {
        if s.rank() != first.rank() || s.0.iter().zip(&first.0).enumerate().any(|(i, (a, b))| i != dim && a != b) {
            return Err(ShapeError::new(format!("cannot concatenate {first} and {s} along dim {dim}")));
        }
        total = total.add(&s.0[dim]);
    }
    let mut out = first.clone();
    out.0[dim] = total;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape;

    #[test]
    fn broadcast_names_the_mismatching_dim() {
        let e = Op::Binary(BinaryOp::Add).infer_shape(&[&shape!["B", "T"], &shape!["B", "S"]]).unwrap_err();
        assert_eq!(e.message, "cannot apply `+` to shapes [B, T] and [B, S]: dim -1 is T in one and S in the other");
    }

    #[test]
    fn conv_output_size_and_empty_output() {
        let g = ConvGeometry { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 };
        let s = Op::Conv2d(g).infer_shape(&[&shape!["B", 3, 32, 32], &shape![16, 3, 5, 5]]).unwrap();
        assert_eq!(s, shape!["B", 16, 28, 28]);
        let e = Op::Conv2d(g).infer_shape(&[&shape!["B", 3, 4, 4], &shape![16, 3, 5, 5]]).unwrap_err();
        assert!(e.message.contains("output would be empty"), "{e}");
    }

    #[test]
    fn matmul_and_reshape_rules() {
        assert_eq!(Op::Matmul.infer_shape(&[&shape!["B", 3, 4], &shape![4, 5]]).unwrap(), shape!["B", 3, 5]);
        assert!(Op::Matmul.infer_shape(&[&shape!["B", 3], &shape![4, 5]]).unwrap_err().message.contains("inner dims differ (3 vs 4)"));
        let r = Op::Reshape { shape: shape!["B", 400] };
        assert!(r.infer_shape(&[&shape!["B", 16, 5, 5]]).is_ok());
        let e = r.infer_shape(&[&shape!["B", 16, 4, 4]]).unwrap_err();
        assert_eq!(e.message, "cannot reshape [B, 16, 4, 4] (256*B elements) to [B, 400] (400*B elements): the element counts differ");
        // Several symbolic dims: products compare as polynomials.
        let heads = Op::Reshape { shape: shape!["B", "T", 4, 16] };
        assert_eq!(heads.infer_shape(&[&shape!["B", "T", 64]]).unwrap(), shape!["B", "T", 4, 16]);
        assert!(heads.infer_shape(&[&shape!["B", "T", 60]]).is_err());
        assert!(heads.infer_shape(&[&shape!["T", "T", 64]]).is_err());
    }

    #[test]
    fn symbolic_conv_and_concat() {
        let g = ConvGeometry { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1 };
        let out = conv2d(&[&shape!["N", 3, "H", "W"], &shape![8, 3, 3, 3]], &g).unwrap();
        assert_eq!(out.to_string(), "[N, 8, (H-1)/2+1, (W-1)/2+1]");
        let same = ConvGeometry { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };
        assert_eq!(conv2d(&[&shape!["N", 3, "H", "W"], &shape![8, 3, 3, 3]], &same).unwrap(), shape!["N", 8, "H", "W"]);
        let c = concat(&[&shape!["B", "D"], &shape!["B", "D"], &shape!["B", 3]], 1).unwrap();
        assert_eq!(c.to_string(), "[B, 2*D+3]");
    }
}
