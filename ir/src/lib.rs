//! The one graph IR of TensorBrain.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order; each node applies an [`Op`] to
//! earlier nodes and has a [`Shape`] whose dims are numbers or symbols (`B`, `T`). Every op has
//! one shape rule ([`Op::infer_shape`]) and one derivative rule ([`autodiff`]). The
//! `#[model]` macro builds graphs while expanding user code and checks shapes with the same
//! rules the runtime uses on traced graphs.

pub mod autodiff;
pub mod dim;
mod dot;
pub mod graph;
pub mod op;
pub mod passes;
pub mod shape;

pub use graph::{Graph, Node, NodeId};
pub use op::{BinaryOp, Op, PoolKind, QLayerOp, QuantParams, ReduceOp, ScalarOp, UnaryOp};
pub use shape::{Atom, Dim, Poly, Shape, ShapeError};
