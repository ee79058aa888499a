//! Building IR graphs by hand, with the layer shapes `#[model]` uses.

use tensorbrain_ir::op::{ConvGeometry, PoolGeometry};
use tensorbrain_ir::{BinaryOp, Dim, Graph, NodeId, Op, PoolKind, ReduceOp, ScalarOp, Shape, UnaryOp};

use crate::tensor::{Error, Result};

/// Builds a [`Graph`] op by op. Every method checks the op's shape rule and panics with its
/// message on a mismatch (use [`GraphBuilder::try_op`] to get the error instead).
///
/// ```text
/// let mut b = GraphBuilder::new();
/// let x = b.input("x", &[64, 784]);
/// let h = b.linear(x, "fc1", 784, 256);
/// let h = b.relu(h);
/// let y = b.linear(h, "fc2", 256, 10);
/// let y = b.log_softmax(y, 1);
/// let g = b.finish(&[y]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    g: Graph,
}

fn known(dims: &[usize]) -> Shape {
    Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
}

impl GraphBuilder {
    pub fn new() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// Appends `op` on `inputs`, or the shape rule's error.
    pub fn try_op(&mut self, op: Op, inputs: &[NodeId], label: &str) -> Result<NodeId> {
        self.g.add(op, inputs, label).map_err(|e| Error::Msg(e.message))
    }

    /// Appends `op` on `inputs`.
    #[track_caller]
    pub fn op(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        let label = op.name();
        match self.try_op(op, inputs, &label) {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// A graph input with known dims.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> NodeId {
        self.input_shape(name, known(dims))
    }

    /// A graph input with any shape (symbolic dims such as `B` allowed).
    pub fn input_shape(&mut self, name: &str, shape: Shape) -> NodeId {
        self.op(Op::Input { name: name.into(), shape }, &[])
    }

    /// A parameter bound by `path` at run time.
    pub fn param(&mut self, path: &str, dims: &[usize]) -> NodeId {
        self.op(Op::Param { path: path.into(), shape: known(dims) }, &[])
    }

    /// A constant.
    pub fn fill(&mut self, value: f64, dims: &[usize]) -> NodeId {
        self.op(Op::Fill { value, shape: known(dims) }, &[])
    }

    pub fn unary(&mut self, u: UnaryOp, x: NodeId) -> NodeId {
        self.op(Op::Unary(u), &[x])
    }
    pub fn relu(&mut self, x: NodeId) -> NodeId {
        self.unary(UnaryOp::Relu, x)
    }
    pub fn sigmoid(&mut self, x: NodeId) -> NodeId {
        self.unary(UnaryOp::Sigmoid, x)
    }
    pub fn tanh(&mut self, x: NodeId) -> NodeId {
        self.unary(UnaryOp::Tanh, x)
    }
    pub fn exp(&mut self, x: NodeId) -> NodeId {
        self.unary(UnaryOp::Exp, x)
    }
    pub fn neg(&mut self, x: NodeId) -> NodeId {
        self.unary(UnaryOp::Neg, x)
    }

    pub fn binary(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
        self.op(Op::Binary(b), &[x, y])
    }
    pub fn add(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.binary(BinaryOp::Add, x, y)
    }
    pub fn sub(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.binary(BinaryOp::Sub, x, y)
    }
    pub fn mul(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.binary(BinaryOp::Mul, x, y)
    }
    pub fn div(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.binary(BinaryOp::Div, x, y)
    }

    /// `op(x, value)`.
    pub fn scalar(&mut self, op: ScalarOp, x: NodeId, value: f64) -> NodeId {
        self.op(Op::Scalar { op, value }, &[x])
    }
    pub fn add_scalar(&mut self, x: NodeId, value: f64) -> NodeId {
        self.scalar(ScalarOp::Add, x, value)
    }
    pub fn mul_scalar(&mut self, x: NodeId, value: f64) -> NodeId {
        self.scalar(ScalarOp::Mul, x, value)
    }

    pub fn matmul(&mut self, x: NodeId, y: NodeId) -> NodeId {
        self.op(Op::Matmul, &[x, y])
    }
    pub fn transpose(&mut self, x: NodeId, dim0: usize, dim1: usize) -> NodeId {
        self.op(Op::Transpose { dim0, dim1 }, &[x])
    }
    pub fn reshape(&mut self, x: NodeId, dims: &[usize]) -> NodeId {
        self.op(Op::Reshape { shape: known(dims) }, &[x])
    }
    pub fn flatten(&mut self, x: NodeId, start: usize) -> NodeId {
        self.op(Op::Flatten { start }, &[x])
    }

    /// `x @ W^T + b` with parameters `{path}.weight` `[out, in]` and `{path}.bias` `[out]`, as
    /// `Linear` lowers.
    pub fn linear(&mut self, x: NodeId, path: &str, inputs: usize, outputs: usize) -> NodeId {
        let w = self.param(&format!("{path}.weight"), &[outputs, inputs]);
        let b = self.param(&format!("{path}.bias"), &[outputs]);
        let wt = self.transpose(w, 0, 1);
        let y = self.matmul(x, wt);
        self.add(y, b)
    }

    /// 2-D convolution with parameters `{path}.weight` `[out, in, k, k]` and `{path}.bias`.
    pub fn conv2d(&mut self, x: NodeId, path: &str, in_channels: usize, out_channels: usize, kernel: usize, stride: usize, padding: usize) -> NodeId {
        let w = self.param(&format!("{path}.weight"), &[out_channels, in_channels, kernel, kernel]);
        let b = self.param(&format!("{path}.bias"), &[out_channels]);
        let g = ConvGeometry { stride: [stride; 2], padding: [padding; 2], dilation: [1, 1], groups: 1 };
        self.op(Op::Conv2d(g), &[x, w, b])
    }

    /// Per-channel `x * {path}.scale + {path}.shift` with `[C, 1, 1]` parameters: batch norm
    /// in eval mode.
    pub fn channel_affine(&mut self, x: NodeId, path: &str, channels: usize) -> NodeId {
        let s = self.param(&format!("{path}.scale"), &[channels, 1, 1]);
        let t = self.param(&format!("{path}.shift"), &[channels, 1, 1]);
        let y = self.mul(x, s);
        self.add(y, t)
    }

    pub fn pool2d(&mut self, x: NodeId, kind: PoolKind, kernel: usize, stride: usize) -> NodeId {
        let geometry = PoolGeometry { kernel: [kernel; 2], stride: [stride; 2], padding: [0, 0] };
        self.op(Op::Pool2d { kind, geometry, count_include_pad: true }, &[x])
    }

    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, dims: &[usize], keepdim: bool) -> NodeId {
        self.op(Op::Reduce { op, dims: dims.to_vec(), keepdim }, &[x])
    }
    pub fn sum(&mut self, x: NodeId, dims: &[usize], keepdim: bool) -> NodeId {
        self.reduce(ReduceOp::Sum, x, dims, keepdim)
    }
    pub fn mean(&mut self, x: NodeId, dims: &[usize], keepdim: bool) -> NodeId {
        self.reduce(ReduceOp::Mean, x, dims, keepdim)
    }

    pub fn softmax(&mut self, x: NodeId, dim: usize) -> NodeId {
        self.op(Op::Softmax { dim }, &[x])
    }
    pub fn log_softmax(&mut self, x: NodeId, dim: usize) -> NodeId {
        self.op(Op::LogSoftmax { dim }, &[x])
    }

    /// `x * dropout_mask(x)`, as `Dropout` lowers in training mode.
    pub fn dropout(&mut self, x: NodeId, p: f64) -> NodeId {
        let m = self.op(Op::DropoutMask { p }, &[x]);
        self.mul(x, m)
    }

    /// The shape of a node.
    pub fn shape(&self, id: NodeId) -> &Shape {
        self.g.shape(id)
    }

    /// The graph with `outputs`.
    pub fn finish(mut self, outputs: &[NodeId]) -> Graph {
        self.g.outputs = outputs.to_vec();
        self.g
    }
}
